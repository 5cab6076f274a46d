//! The Go tool's REST API, driven by the real `curl` with the commands of the
//! Go tool's "back up and restore using APIs" guide, unchanged but for the
//! port: create (async) → list → get_backup → restore with `_recover` → poll
//! get_restore → rows equal. Plus the envelope on errors, and gRPC and REST on
//! one port. Against the real Milvus 2.3.5 and S3.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::curl::{json as curl, post_json};
use common::data::{self, Spec};
use common::hello;
use common::process::Proc;
use serde_json::Value;

/// GETs `url` (the guide's get_backup or get_restore, as the guide writes
/// them) until the job's `state_code` is 2 (success), for at most two
/// minutes; a `state_code` 3 (failed) ends it. Returns the last answer.
async fn poll_until_done(what: &str, url: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, got) = tokio::task::block_in_place(|| {
            curl(&[
                "--location",
                "--request",
                "GET",
                url,
                "--header",
                "Content-Type: application/json",
            ])
        });
        assert_eq!(got["code"], 0, "{got}");
        if got["data"]["state_code"] == 2 {
            return got;
        }
        assert_ne!(got["data"]["state_code"], 3, "{what} failed: {got}");
        assert!(Instant::now() < deadline, "{what} did not finish: {got}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_go_tool_guide_works_unchanged() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let base = format!("http://{}", server.handle.addr);
    hello::drop_if_exists(&m, "default", "hello_milvus_recover").await;
    hello::create(&m, "hello_milvus", 3000, 3, 99).await;
    let source = hello::rows(
        &m,
        "default",
        "hello_milvus",
        "pk >= 0",
        &["pk", "random", "var", "embeddings"],
    )
    .await;
    let name = common::unique("test_backup");

    let (status, created) = tokio::task::block_in_place(|| {
        curl(&[
            "--location",
            "--request",
            "POST",
            &format!("{base}/api/v1/create"),
            "--header",
            "Content-Type: application/json",
            "--data-raw",
            &format!(
                r#"{{
  "async": true,
  "backup_name": "{name}",
  "collection_names": ["hello_milvus"]
}}"#
            ),
        ])
    });
    assert_eq!(
        (status, created["code"].as_i64()),
        (200, Some(0)),
        "{created}"
    );
    assert_eq!(created["msg"], "create backup is executing asynchronously");
    assert_eq!(created["data"]["name"], name.as_str());
    assert!(created["requestId"].as_str().is_some_and(|r| !r.is_empty()));

    // get_backup until the backup is done (state_code 2 = BACKUP_SUCCESS).
    let backup = poll_until_done(
        "the backup",
        &format!("{base}/api/v1/get_backup?backup_id={name}&backup_name={name}"),
    )
    .await;
    let coll = &backup["data"]["collection_backups"][0];
    assert_eq!(coll["collection_name"], "hello_milvus");
    assert_eq!(backup["data"]["progress"], 100);
    assert!(
        coll["schema"]["fields"]
            .as_array()
            .is_some_and(|f| f.len() == 4),
        "{coll}"
    );
    assert!(
        coll.get("partition_backups")
            .is_none_or(|p| p.as_array().is_some_and(|a| a.is_empty())),
        "simple response"
    );

    let (_, listed) = tokio::task::block_in_place(|| {
        curl(&[
            "--location",
            "--request",
            "GET",
            &format!("{base}/api/v1/list"),
            "--header",
            "Content-Type: application/json",
        ])
    });
    assert_eq!(listed["code"], 0);
    assert!(
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["name"] == name.as_str()),
        "{listed}"
    );

    let (_, restored) = tokio::task::block_in_place(|| {
        curl(&[
            "--location",
            "--request",
            "POST",
            &format!("{base}/api/v1/restore"),
            "--header",
            "Content-Type: application/json",
            "--data-raw",
            &format!(
                r#"{{
    "async": true,
    "collection_names": ["hello_milvus"],
    "collection_suffix": "_recover",
    "backup_name":"{name}"
}}"#
            ),
        ])
    });
    assert_eq!(restored["code"], 0, "{restored}");
    let id = restored["data"]["id"].as_str().unwrap().to_string();
    let done = poll_until_done("the restore", &format!("{base}/api/v1/get_restore?id={id}")).await;
    let task = &done["data"]["collection_restore_tasks"][0];
    assert_eq!(task["target_collection_name"], "hello_milvus_recover");
    assert_eq!(done["data"]["progress"], 100);

    hello::index_and_load(&m, "hello_milvus_recover").await;
    let rows = hello::rows(
        &m,
        "default",
        "hello_milvus_recover",
        "pk >= 0",
        &["pk", "random", "var", "embeddings"],
    )
    .await;
    hello::assert_rows_equal(&source, &rows);

    // REST keeps the metas it listed; a backup made again under the name has
    // another id and is listed with its own meta, not the kept one.
    let first_id = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name.as_str())
        .map(|b| b["id"].clone())
        .unwrap();
    let call = |args: &[&str]| tokio::task::block_in_place(|| curl(args));
    let (_, deleted) = call(&[
        "--request",
        "DELETE",
        &format!("{base}/api/v1/delete?backup_name={name}"),
    ]);
    assert_eq!(deleted["code"], 0, "{deleted}");
    let again = format!(r#"{{"backup_name":"{name}","collection_names":["hello_milvus"]}}"#);
    let create = format!("{base}/api/v1/create");
    let (_, made) = call(&[
        "-X",
        "POST",
        &create,
        "-H",
        "Content-Type: application/json",
        "-d",
        &again,
    ]);
    assert_eq!(made["code"], 0, "{made}");
    let (_, relisted) = call(&["--request", "GET", &format!("{base}/api/v1/list")]);
    let entry = relisted["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name.as_str())
        .cloned()
        .unwrap();
    assert_ne!(entry["id"], first_id, "{entry}");
    assert_eq!(entry["id"], made["data"]["id"], "{entry}");

    // Errors keep the envelope, with the Go tool's codes: the method, the
    // route, the JSON body, the HTTP status and `code`, and the value `msg` names.
    let taken = format!(r#"{{"backup_name":"{name}"}}"#);
    let not_json = Some("{not json");
    for (method, route, body, want, named) in [
        (
            "GET",
            "get_backup?backup_name=no_such_backup_x",
            None,
            (404, Some(404)),
            Some("no_such_backup_x"),
        ),
        ("POST", "create", not_json, (400, Some(400)), None),
        (
            "POST",
            "create",
            Some(r#"{"backup_name":"../x"}"#),
            (400, Some(400)),
            Some("../x"),
        ),
        (
            "POST",
            "create",
            Some(taken.as_str()),
            (409, Some(400)),
            None,
        ),
    ] {
        let url = format!("{base}/api/v1/{route}");
        let mut args = vec!["--request", method, &url];
        if let Some(body) = body {
            args.extend([
                "--header",
                "Content-Type: application/json",
                "--data-raw",
                body,
            ]);
        }
        let (status, err) = tokio::task::block_in_place(|| curl(&args));
        assert_eq!(
            (status, err["code"].as_i64()),
            want,
            "{method} {route}: {err}"
        );
        if let Some(named) = named {
            assert!(err["msg"].as_str().unwrap().contains(named), "{err}");
        }
    }
    let (_, check) = tokio::task::block_in_place(|| curl(&[&format!("{base}/api/v1/check")]));
    assert_eq!(check["code"], 0, "{check}");
    assert_eq!(check["data"]["milvus_version"], "v2.3.5");

    // Delete, then it is gone.
    let (_, deleted) = tokio::task::block_in_place(|| {
        curl(&[
            "--request",
            "DELETE",
            &format!("{base}/api/v1/delete?backup_name={name}"),
        ])
    });
    assert_eq!(deleted["code"], 0, "{deleted}");
    let (status, _) = tokio::task::block_in_place(|| {
        curl(&[&format!("{base}/api/v1/get_backup?backup_name={name}")])
    });
    assert_eq!(status, 404);

    // Prometheus metrics on the same port.
    let metrics = tokio::task::block_in_place(|| {
        Command::new("curl")
            .args(["-sS", &format!("{base}/metrics")])
            .output()
            .unwrap()
    });
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in:\n{metrics}"))
    };
    assert!(value("milvus_backup_copied_bytes_total") > 0.0);
    assert!(value("milvus_backup_copied_files_total") > 0.0);
    assert!(value("milvus_backup_jobs_total{kind=\"backup\",state=\"succeeded\"}") >= 1.0);
    assert!(value("milvus_backup_jobs_total{kind=\"restore\",state=\"succeeded\"}") >= 1.0);
    assert!(value("milvus_backup_job_duration_seconds_count{kind=\"restore\"}") >= 1.0);

    // gRPC still answers on the same port.
    let mut grpc = server.client().await;
    grpc.check(milvus_backup::api::proto::CheckRequest {})
        .await
        .expect("gRPC on the REST port");
    hello::drop_if_exists(&m, "default", "hello_milvus_recover").await;
    server.handle.stop().await.unwrap();
}

/// A synchronous create whose job fails is answered as that failure, as the
/// Go tool answers it: `code` 3 with the error as `msg` and the failed backup
/// as `data` (HTTP 500 here), never `code` 0. The collection is dropped while
/// the backup waits at its failpoint, flushed and not yet described.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_synchronous_create_whose_job_fails_is_answered_as_its_error() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("rest_fails"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..100, 17).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let release = std::env::temp_dir().join(common::unique("release"));
    let failpoint = format!("backup.describing@{}", release.display());
    let root = common::unique("rest_fails_root");
    let owner = Proc::start_rooted_paused(&cfg, "rest_fails", &root, "", Some(&failpoint)).await;
    let name = common::unique("rest_fails_b");
    let url = format!("http://127.0.0.1:{}/api/v1/create", owner.port);
    let body = serde_json::json!({"backup_name": name, "collection_names": [spec.name]});
    let call = std::thread::spawn(move || post_json(&url, &body.to_string()));
    owner.wait_paused(Duration::from_secs(60)).await;
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    std::fs::write(&release, b"").unwrap();
    let (status, answer) = tokio::task::spawn_blocking(move || call.join().unwrap())
        .await
        .unwrap();
    let _ = std::fs::remove_file(&release);
    // The collection is gone: Milvus's "collection not found", the caller's 404.
    assert_eq!(
        (status, &answer["code"]),
        (404, &Value::from(404)),
        "{answer}"
    );
    let msg = answer["msg"].as_str().unwrap();
    assert!(
        msg.contains(&spec.name),
        "the error names the collection: {msg}"
    );
    assert_eq!(answer["data"]["name"], name.as_str(), "{answer}");
    // BACKUP_FAIL, with the same error, as the job recorded it.
    assert_eq!(answer["data"]["state_code"], 3, "{answer}");
    assert_eq!(answer["data"]["errorMessage"], msg, "{answer}");
    println!("HTTP {status}, code {}: {msg}", answer["code"]);
    drop(owner);
}

/// The storage errors that `/metrics` of the server on `port` has counted.
fn storage_errors(port: u16) -> u64 {
    common::curl::metrics(port)
        .lines()
        .filter(|l| l.starts_with("milvus_backup_errors_total{service=\"storage\""))
        .filter_map(|l| l.rsplit_once(' ')?.1.trim().parse::<u64>().ok())
        .sum()
}

/// Waits until `log` holds `line` `times` times.
async fn wait_for_lines(log: &std::path::Path, line: &str, times: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.matches(line).count() >= times {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{line:?} not {times} times in {log:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_synchronous_delete_that_fails_is_answered_as_its_error_and_counted_once() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("rest_delfail"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..100, 19).await;
    data::flush(&m, &spec.db, &spec.name).await;
    // Our server reaches S3 through a proxy that the test switches off.
    let s3: std::net::SocketAddr = format!("{}:{}", cfg.minio.address, cfg.minio.port)
        .parse()
        .unwrap();
    let (proxy, s3_up) = common::faults::switchable_proxy(s3).await;
    let (state, config) = common::process::config_with(&cfg, "rest_delfail", "");
    common::process::route_s3_through(&cfg, &config, proxy.port());
    // A lease of 10 s, not 3: the delete fails on the store before it loses
    // its lease, whose renewals the outage stops too.
    common::process::set_lease_ttl(&config, 10);
    let release = std::env::temp_dir().join(common::unique("release"));
    let failpoint = format!("delete.planned@{}", release.display());
    let server = Proc::on(state, config, Some(&failpoint)).await;
    let base = format!("http://127.0.0.1:{}", server.port);
    let name = common::unique("rest_delfail_b");
    let body = serde_json::json!({"backup_name": name, "collection_names": [spec.name]});
    let (_, made) = tokio::task::block_in_place(|| {
        post_json(&format!("{base}/api/v1/create"), &body.to_string())
    });
    assert_eq!(made["code"], 0, "{made}");
    let counted = storage_errors(server.port);

    // REST: the delete pauses once it knows what to keep, S3 goes away, and
    // the delete goes on into the outage.
    let url = format!("{base}/api/v1/delete?backup_name={name}");
    let call = std::thread::spawn(move || curl(&["--request", "DELETE", &url]));
    server.wait_paused(Duration::from_secs(60)).await;
    s3_up.store(false, std::sync::atomic::Ordering::SeqCst);
    std::fs::write(&release, b"").unwrap();
    let (status, answer) = tokio::task::spawn_blocking(move || call.join().unwrap())
        .await
        .unwrap();
    s3_up.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = std::fs::remove_file(&release);
    assert_eq!(
        (status, &answer["code"]),
        (503, &Value::from(3)),
        "{answer}"
    );
    let msg = answer["msg"].as_str().unwrap();
    assert!(msg.contains("unavailable"), "{answer}");
    assert_eq!(answer["data"]["backup_name"], name.as_str(), "{answer}");
    assert_eq!(answer["data"]["state"], "Failed", "{answer}");
    assert_eq!(answer["data"]["error_message"], msg, "{answer}");
    assert_eq!(
        storage_errors(server.port),
        counted + 1,
        "the failed delete is counted once"
    );
    // Its commit point went first (before the references were read): the
    // backup is no longer listed, and its objects wait for the delete to be
    // run again.
    let get = format!("{base}/api/v1/get_backup?backup_name={name}");
    let (_, retired) = tokio::task::block_in_place(|| curl(&["--request", "GET", &get]));
    assert_eq!(retired["code"], 404, "{retired}");
    let folder = format!("backup/{name}/");
    let left = common::process::rooted_bucket(&cfg)
        .list(&folder)
        .await
        .unwrap();
    assert!(!left.is_empty(), "the failed delete removed nothing else");

    // gRPC: the same, answered UNAVAILABLE and counted once.
    let mut client = server.client.clone();
    let request = milvus_backup::api::proto::DeleteBackupRequest {
        name: name.clone(),
        ..Default::default()
    };
    let grpc = tokio::spawn({
        let request = request.clone();
        async move { client.delete_backup(request).await }
    });
    wait_for_lines(&server.log, "failpoint reached", 2).await;
    s3_up.store(false, std::sync::atomic::Ordering::SeqCst);
    std::fs::write(&release, b"").unwrap();
    let failed = grpc.await.unwrap().expect_err("the delete failed");
    s3_up.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(failed.code(), tonic::Code::Unavailable, "{failed:?}");
    assert_eq!(
        storage_errors(server.port),
        counted + 2,
        "each failed delete is counted once"
    );

    // With S3 back, the delete succeeds and the backup is gone. The failed
    // delete could not free its lease in the outage: it expires by itself
    // (10 s here), and until then a new delete is told who holds the backup.
    let mut client = server.client.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.delete_backup(request.clone()).await {
            Ok(_) => break,
            Err(e) if e.code() == tonic::Code::Aborted && Instant::now() < deadline => {
                assert!(e.message().contains("(delete)"), "{e:?}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("the delete after the outage: {e:?}"),
        }
    }
    let left = common::process::rooted_bucket(&cfg)
        .list(&folder)
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
    println!("HTTP {status}, code 3: {msg}; gRPC {:?}", failed.code());
    let _ = std::fs::remove_file(&release);
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    server.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_synchronous_restore_of_a_damaged_backup_is_answered_as_data_loss() {
    use milvus_backup::milvus::MilvusApi as _;
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("rest_dmg"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..300, 23).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let root = common::unique("rest_dmg_root");
    let server = Proc::start_rooted(&cfg, "rest_dmg", &root, "").await;
    let base = format!("http://127.0.0.1:{}", server.port);
    let post = |route: &str, body: Value| {
        let url = format!("{base}/api/v1/{route}");
        tokio::task::block_in_place(|| post_json(&url, &body.to_string()))
    };
    let name = common::unique("rest_dmg_b");
    let (_, made) = post(
        "create",
        serde_json::json!({"backup_name": name, "collection_names": [spec.name]}),
    );
    assert_eq!(made["code"], 0, "{made}");

    // One byte of the largest insert binlog flipped, its size kept.
    let store = common::process::rooted_bucket(&cfg);
    let folder = format!("{root}/{name}/");
    let damaged = data::flip_largest_object(&*store, &folder, "binlogs/insert_log/").await;

    let (status, answer) = post(
        "restore",
        serde_json::json!({"backup_name": name, "collection_suffix": "_dmg"}),
    );
    assert_eq!(
        (status, &answer["code"]),
        (500, &Value::from(3)),
        "{answer}"
    );
    let msg = answer["msg"].as_str().unwrap();
    assert!(msg.contains(&damaged), "the error names {damaged}: {msg}");
    assert_eq!(answer["data"]["error_kind"], "data_loss", "{answer}");
    assert_eq!(answer["data"]["state_code"], 3, "{answer}");
    // Milvus never saw it: it answers, and no restored collection exists.
    m.version().await.expect("Milvus answers after the restore");
    let target = format!("{}_dmg", spec.name);
    assert!(
        !m.has_collection(&spec.db, &target).await.unwrap(),
        "{target} was made"
    );
    println!("HTTP {status}, code 3: {msg}");
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    server.finish();
}

/// A backup whose meta is no longer JSON is listed by REST `/list` as failed,
/// saying its meta cannot be read, while the other backups are listed as
/// they are. (Before, `/list` answered 500 naming it, and listed nothing;
/// gRPC ListBackups listed both.) On a backup root of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_whose_meta_cannot_be_read_is_listed_as_failed_beside_the_others() {
    let mut cfg = common::config();
    cfg.minio.backup_root_path = common::unique("rest_list_root");
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client().await;
    let spec = Spec::new(&common::unique("rest_list"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..50, 86).await;
    let sound = common::unique("rest_list_sound");
    let damaged = common::unique("rest_list_damaged");
    common::flows::backup_collections(&mut client, &sound, &[&spec.name]).await;
    common::flows::backup_collections(&mut client, &damaged, &[&spec.name]).await;
    let key = format!(
        "{}/{damaged}/meta/full_meta.json",
        cfg.minio.backup_root_path
    );
    let store = server.ctx.catalog.store().clone();
    store
        .write(&key, bytes::Bytes::from_static(b"{not json"))
        .await
        .unwrap();

    // A server that never read the meta before.
    let fresh = common::TestServer::start(&cfg).await;
    let url = format!("http://{}/api/v1/list", fresh.handle.addr);
    let (status, got) = tokio::task::block_in_place(|| curl(&[&url]));
    assert_eq!((status, &got["code"]), (200, &Value::from(0)), "{got}");
    let listed = got["data"].as_array().expect("a list");
    let find = |name: &str| {
        listed
            .iter()
            .find(|b| b["name"] == name)
            .unwrap_or_else(|| panic!("{name} listed: {got}"))
    };
    assert_eq!(find(&sound)["state_code"], 2, "{got}");
    let listed_damaged = find(&damaged);
    assert_eq!(listed_damaged["state_code"], 3, "{got}");
    assert!(
        listed_damaged["errorMessage"]
            .as_str()
            .unwrap()
            .contains("meta cannot be read"),
        "{got}"
    );
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}
