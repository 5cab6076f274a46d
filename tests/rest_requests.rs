//! REST requests restore exactly what they name and refuse what they cannot
//! honour, against the real Milvus 2.3.5 and S3: a whole database named in
//! `db_collections` (`{"db1": []}`) restores that database only; the Go
//! tool's options this server does not offer (`bucket_name`, `path`, `rbac`,
//! ...) are refused by name when set, and a name the Go tool never had (a
//! typo) at any value, naming the field meant; a body on a route that reads
//! none is refused; nothing is started by any of them; a rename of a collection
//! the restore leaves out is refused; a listing filtered by a bare collection
//! name finds it in any database. A create that names no backup (the
//! server names it, as the Go tool does) is retried by its request id alone:
//! the first job comes back, on the same server and on another one sharing
//! the storage, never a second backup.

mod common;

use common::curl::json as curl;
use common::data::{self, Spec};
use milvus_backup::milvus::MilvusApi;
use serde_json::Value;

fn post(url: &str, body: &str) -> (u16, Value) {
    tokio::task::block_in_place(|| common::curl::post_json(url, body))
}

/// `method` on `url`, with `body` when it is not empty.
fn call(method: &str, url: &str, body: &str) -> (u16, Value) {
    tokio::task::block_in_place(|| {
        let mut args = vec!["-X", method, url];
        if !body.is_empty() {
            args.extend(["-d", body]);
        }
        curl(&args)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restore_of_a_whole_database_restores_that_database_only() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let base = format!("http://{}/api/v1", server.handle.addr);
    let db = common::unique("restdb");
    data::ensure_db(&m, &db).await;
    let a = Spec::new(&common::unique("resta"));
    let mut b = Spec::new(&common::unique("restb"));
    b.db = db.clone();
    for spec in [&a, &b] {
        data::create(&m, spec).await;
        data::insert(&m, spec, "", 0..120, 7).await;
        data::flush(&m, &spec.db, &spec.name).await;
        data::index(&m, &spec.db, &spec.name).await;
        data::load(&m, &spec.db, &spec.name).await;
    }
    let name = common::unique("restdbs");
    let (status, made) = post(
        &format!("{base}/create"),
        &format!(
            r#"{{"backup_name":"{name}","db_collections":{{"default":["{}"],"{db}":[]}}}}"#,
            a.name
        ),
    );
    assert_eq!((status, made["code"].as_i64()), (200, Some(0)), "{made}");

    // The whole database: only its collection comes back.
    let (status, restored) = post(
        &format!("{base}/restore"),
        &format!(
            r#"{{"backup_name":"{name}","db_collections":{{"{db}":[]}},"collection_suffix":"_r"}}"#
        ),
    );
    assert_eq!(
        (status, restored["code"].as_i64()),
        (200, Some(0)),
        "{restored}"
    );
    let tasks = restored["data"]["collection_restore_tasks"]
        .as_array()
        .unwrap();
    assert_eq!(tasks.len(), 1, "{restored}");
    let b_r = format!("{}_r", b.name);
    assert!(m.has_collection(&db, &b_r).await.unwrap());
    let a_r = format!("{}_r", a.name);
    assert!(
        !m.has_collection("default", &a_r).await.unwrap(),
        "{a_r} restored too"
    );
    data::index(&m, &db, &b_r).await;
    data::load(&m, &db, &b_r).await;
    let source = data::rows(&m, &b, &db, &b.name, &[]).await;
    let rows = data::rows(&m, &b, &db, &b_r, &[]).await;
    data::assert_rows_equal("the database's collection", &source, &rows);

    // Refused, naming the value, with nothing created: a database the backup
    // does not hold, an option this server does not offer, a rename of a
    // collection left out.
    let refusals = [
        (
            format!(
                r#"{{"backup_name":"{name}","db_collections":{{"nodb":[]}},"collection_suffix":"_x"}}"#
            ),
            404,
            "nodb",
        ),
        (
            format!(
                r#"{{"backup_name":"{name}","bucket_name":"prod","path":"backup","collection_suffix":"_x"}}"#
            ),
            400,
            "bucket_name",
        ),
        (
            format!(
                r#"{{"backup_name":"{name}","collection_names":["{}"],"collection_renames":{{"{db}.{}":"{db}.elsewhere"}}}}"#,
                a.name, b.name
            ),
            400,
            "collection_renames",
        ),
        // A target without a database, from another database than the
        // default: the Go tool takes it for `default.elsewhere`, this server
        // took it for `{db}.elsewhere`; refused, naming both.
        (
            format!(
                r#"{{"backup_name":"{name}","collection_renames":{{"{db}.{}":"elsewhere"}}}}"#,
                b.name
            ),
            400,
            &format!(r#""{db}.elsewhere" or "default.elsewhere""#),
        ),
        // Named as the REST body names them (it said drop_existing_collections).
        (
            format!(
                r#"{{"backup_name":"{name}","dropExistCollection":true,"skipCreateCollection":true,"collection_suffix":"_x"}}"#
            ),
            400,
            "dropExistCollection and skipCreateCollection",
        ),
    ];
    for (body, want, named) in refusals {
        let (status, answer) = post(&format!("{base}/restore"), &body);
        assert_eq!(status, want, "{body}: {answer}");
        assert_eq!(answer["code"], want, "{answer}");
        assert!(answer["msg"].as_str().unwrap().contains(named), "{answer}");
    }
    assert!(
        !m.has_collection("default", &format!("{}_x", a.name))
            .await
            .unwrap()
    );
    assert!(
        !m.has_collection(&db, &format!("{}_x", b.name))
            .await
            .unwrap()
    );
    assert!(!m.has_collection(&db, "elsewhere").await.unwrap());
    assert!(!m.has_collection("default", "elsewhere").await.unwrap());

    // `list?collection_name=` with a bare name matches it in any database,
    // as the Go tool's does (it matched only the default database before);
    // `db.coll` matches that database only.
    let listed = |filter: &str| {
        let (status, answer) = call("GET", &format!("{base}/list?collection_name={filter}"), "");
        assert_eq!(status, 200, "{answer}");
        answer["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["name"] == name.as_str())
    };
    assert!(listed(&b.name), "a bare name, in database {db}");
    assert!(listed(&format!("{db}.{}", b.name)));
    assert!(!listed(&format!("default.{}", b.name)));

    let other = common::unique("restrbac");
    let (status, answer) = post(
        &format!("{base}/create"),
        &format!(
            r#"{{"backup_name":"{other}","collection_names":["{}"],"rbac":true}}"#,
            a.name
        ),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["msg"].as_str().unwrap().contains("\"rbac\""),
        "{answer}"
    );
    let (status, answer) =
        tokio::task::block_in_place(|| curl(&[&format!("{base}/get_backup?backup_name={other}")]));
    assert_eq!(status, 404, "the refused backup exists: {answer}");
    let (status, answer) = tokio::task::block_in_place(|| {
        curl(&[&format!(
            "{base}/get_backup?backup_name={name}&bucket_name=prod"
        )])
    });
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["msg"].as_str().unwrap().contains("bucket_name"),
        "{answer}"
    );
    // Routes that take a body (or nothing) take no query parameters: one
    // given is refused, naming it, with nothing started (before, `?async=true`
    // on a restore was dropped and the call blocked until the job ended).
    let queried = common::unique("restquery");
    for (method, url, body, named) in [
        (
            "POST",
            format!("{base}/restore?async=true"),
            format!(r#"{{"backup_name":"{name}","collection_suffix":"_q"}}"#),
            "async",
        ),
        (
            "POST",
            format!("{base}/create?backup_name={queried}"),
            format!(r#"{{"collection_names":["{}"]}}"#, a.name),
            "backup_name",
        ),
        ("GET", format!("{base}/check?foo=1"), String::new(), "foo"),
        (
            "GET",
            format!("{base}/policies?all=true"),
            String::new(),
            "all",
        ),
    ] {
        let (status, answer) = call(method, &url, &body);
        assert_eq!(status, 400, "{method} {url}: {answer}");
        assert!(
            answer["msg"]
                .as_str()
                .unwrap()
                .contains(&format!("\"{named}\"")),
            "{method} {url}: {answer}"
        );
    }
    assert!(
        !m.has_collection("default", &format!("{}_q", a.name))
            .await
            .unwrap()
    );
    let (status, answer) = tokio::task::block_in_place(|| {
        curl(&[&format!("{base}/get_backup?backup_name={queried}")])
    });
    assert_eq!(status, 404, "the refused backup exists: {answer}");

    // The Go tool reads a body as JSON whatever its Content-Type says (curl
    // -d alone sends a form type); a query string that does not parse is
    // answered in the envelope, naming what is wrong.
    let plain = common::unique("restplain");
    let (status, answer) = tokio::task::block_in_place(|| {
        curl(&[
            "-X",
            "POST",
            &format!("{base}/create"),
            "-d",
            &format!(
                r#"{{"backup_name":"{plain}","collection_names":["{}"]}}"#,
                a.name
            ),
        ])
    });
    assert_eq!(
        (status, answer["code"].as_i64()),
        (200, Some(0)),
        "{answer}"
    );
    let (status, answer) = tokio::task::block_in_place(|| {
        curl(&[
            "-X",
            "DELETE",
            &format!("{base}/delete?backup_name={plain}&async=yes"),
        ])
    });
    assert_eq!(
        (status, answer["code"].as_i64()),
        (400, Some(400)),
        "{answer}"
    );
    assert!(
        answer["msg"].as_str().unwrap().contains("async"),
        "{answer}"
    );
    // A query parameter the route does not know is refused by name, with
    // nothing done (before, each was dropped: the delete went through on the
    // configured bucket, the list listed everything).
    for (url, named) in [
        (
            format!("{base}/delete?backup_name={plain}&bucket_name=other"),
            "bucket_name",
        ),
        (
            format!("{base}/list?collection=nothing_like_it"),
            "collection",
        ),
        (format!("{base}/get_restore?id=x&verbose=1"), "verbose"),
        // A cache-buster is let through on a GET only.
        (format!("{base}/delete?backup_name={plain}&_=1"), "\"_\""),
    ] {
        let method = if url.contains("/delete?") {
            "DELETE"
        } else {
            "GET"
        };
        let (status, answer) = tokio::task::block_in_place(|| curl(&["-X", method, &url]));
        assert_eq!(
            (status, answer["code"].as_i64()),
            (400, Some(400)),
            "{url}: {answer}"
        );
        assert!(
            answer["msg"].as_str().unwrap().contains(named),
            "{url}: {answer}"
        );
    }
    // A name the Go tool never had is a typo: refused at any value, naming
    // the field meant (before, one at a default-looking value was dropped). A
    // body on a route that reads none is refused (before, it was dropped: the
    // delete below went through, the run ran).
    let typo = common::unique("resttypo");
    for (method, url, body, named) in [
        (
            "POST",
            format!("{base}/create"),
            format!(
                r#"{{"backup_name":"{typo}","collection_names":["{}"],"incremantal":false}}"#,
                a.name
            ),
            r#""incremantal" is not known to this server (nor to the Go tool); did you mean "incremental"?"#,
        ),
        (
            "POST",
            format!("{base}/restore"),
            format!(r#"{{"backup_name":"{plain}","collection_suffix":"_t","restoreIndx":false}}"#),
            r#"did you mean "restoreIndex"?"#,
        ),
        (
            "GET",
            format!("{base}/list?colection_name="),
            String::new(),
            r#"did you mean "collection_name"?"#,
        ),
        (
            "DELETE",
            format!("{base}/delete?backup_name={plain}"),
            format!(r#"{{"backup_name":"{plain}"}}"#),
            "DELETE /api/v1/delete takes no request body",
        ),
        (
            "POST",
            format!("{base}/policies/no_such_policy/run"),
            r#"{"dry_run":true}"#.to_string(),
            "POST /api/v1/policies/no_such_policy/run takes no request body",
        ),
    ] {
        let (status, answer) = call(method, &url, &body);
        assert_eq!(
            (status, answer["code"].as_i64()),
            (400, Some(400)),
            "{method} {url} {body}: {answer}"
        );
        assert!(
            answer["msg"].as_str().unwrap().contains(named),
            "{method} {url}: {answer}"
        );
    }
    let (status, answer) =
        tokio::task::block_in_place(|| curl(&[&format!("{base}/get_backup?backup_name={typo}")]));
    assert_eq!(status, 404, "the refused backup exists: {answer}");
    assert!(
        !m.has_collection("default", &format!("{}_t", a.name))
            .await
            .unwrap(),
        "the refused restore created a collection"
    );
    // An empty body, `{}` or `null` asks for nothing and is taken.
    let (status, answer) = tokio::task::block_in_place(|| {
        curl(&[
            "-X",
            "GET",
            &format!("{base}/get_backup?backup_name={plain}"),
            "-d",
            "{}",
        ])
    });
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = tokio::task::block_in_place(|| {
        curl(&[&format!(
            "{base}/get_backup?backup_name={plain}&_=1764900000000"
        )])
    });
    assert_eq!(status, 200, "the refused deletes left it: {answer}");
    // A create that names no backup gets a name, as the Go tool gives one.
    let (status, unnamed) = post(
        &format!("{base}/create"),
        &format!(r#"{{"collection_names":["{}"]}}"#, a.name),
    );
    assert_eq!(
        (status, unnamed["code"].as_i64()),
        (200, Some(0)),
        "{unnamed}"
    );
    let generated = unnamed["data"]["name"].as_str().unwrap().to_string();
    assert!(generated.starts_with("backup_20"), "{unnamed}");

    data::drop_if_exists(&m, &db, &b_r).await;
    for spec in [&a, &b] {
        data::drop_if_exists(&m, &spec.db, &spec.name).await;
    }
    let mut client = server.client().await;
    common::flows::delete_eventually(&client, &name, "the backup").await;
    common::flows::delete_eventually(&client, &plain, "the backup").await;
    common::flows::delete_eventually(&client, &generated, "the backup").await;
    let _ = &mut client;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_create_that_names_no_backup_is_retried_by_its_request_id_on_any_replica() {
    retried_by_its_request_id_on_any_replica(false).await;
}

/// The same with a name: before, the retry on the replica was refused
/// ALREADY_EXISTS (ABORTED while the first ran), though the request id
/// promises the same job back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_create_that_names_its_backup_is_retried_by_its_request_id_on_any_replica() {
    retried_by_its_request_id_on_any_replica(true).await;
}

async fn retried_by_its_request_id_on_any_replica(named: bool) {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let (first, replica) = tokio::join!(
        common::TestServer::start(&cfg),
        common::TestServer::start(&cfg)
    );
    let spec = Spec::new(&common::unique("unnamed"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..50, 3).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let request_id = common::unique("unnamed_req");
    let given = common::unique("named_by_caller");
    let name_field = match named {
        true => format!(r#""backup_name":"{given}","#),
        false => String::new(),
    };
    let body = format!(
        r#"{{{name_field}"collection_names":["{}"],"requestId":"{request_id}"}}"#,
        spec.name
    );
    let create = |server: &common::TestServer| {
        let (status, made) = post(
            &format!("http://{}/api/v1/create", server.handle.addr),
            &body,
        );
        assert_eq!((status, made["code"].as_i64()), (200, Some(0)), "{made}");
        let data = &made["data"];
        (
            data["id"].clone(),
            data["name"].clone(),
            data["state_code"].clone(),
        )
    };
    let made = create(&first);
    let name = made.1.as_str().unwrap().to_string();
    match named {
        true => assert_eq!(name, given),
        false => assert!(name.starts_with("backup_"), "the Go tool's name: {name}"),
    }
    // The retry here and on the replica: the same backup, not a new one.
    assert_eq!(create(&first), made, "a retry on the same server");
    assert_eq!(create(&replica), made, "a retry on another server");
    let (status, listed) = tokio::task::block_in_place(|| {
        curl(&[&format!(
            "http://{}/api/v1/list?collection_name={}",
            replica.handle.addr, spec.name
        )])
    });
    assert_eq!(status, 200, "{listed}");
    let names: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["name"].as_str())
        .collect();
    assert_eq!(names, [name.as_str()], "one backup of the collection");
}
