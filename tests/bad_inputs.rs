//! A table of bad inputs over gRPC and REST: names with `..`, `/`, nothing,
//! 10 KB, unicode tricks; conflicting options; malformed JSON and wrong types;
//! huge lists; backups whose meta is corrupt or truncated. Each gets the right
//! code (REST: the HTTP status and the envelope's `code`), the server stays
//! up, and nothing is written: after each case, the full set of objects in
//! Milvus's bucket (which holds the backup storage, its staging prefixes and
//! Milvus's own data) with their sizes and ETags, the server's job records
//! and Milvus's databases and collections are what they were before it.
//! Against the real Milvus 2.3.5 and S3.

mod common;
#[path = "common/figures.rs"]
mod figures;
#[path = "common/snapshot_sets.rs"]
mod snapshot_sets;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use bytes::Bytes;
use common::data::{self, Spec};
use common::flows;
use milvus_backup::api::proto as pb;
use milvus_backup::milvus::MilvusClient;
use snapshot_sets::{BucketLister, Listed};
use tonic::Code;

/// How many bad inputs the table holds; every one must run.
const CASES: usize = 60;

/// Everything a refused request could have written, and the cases checked so far.
struct World {
    lister: BucketLister,
    milvus_root: String,
    state: PathBuf,
    m: MilvusClient,
    bucket: BTreeMap<String, Listed>,
    records: BTreeMap<PathBuf, Vec<u8>>,
    milvus: BTreeMap<String, Option<i64>>,
    cases: usize,
    /// Keys Milvus itself added, removed or rewrote under its root meanwhile.
    milvus_own: usize,
}

impl World {
    async fn new(cfg: &milvus_backup::config::Config, state: PathBuf) -> Self {
        let mut w = Self {
            lister: BucketLister::milvus_bucket(cfg),
            milvus_root: cfg.minio.root_path.clone(),
            state,
            m: common::milvus(cfg),
            bucket: BTreeMap::new(),
            records: BTreeMap::new(),
            milvus: BTreeMap::new(),
            cases: 0,
            milvus_own: 0,
        };
        w.take().await;
        w
    }

    /// Takes the snapshots that the next case is compared with.
    async fn take(&mut self) {
        self.bucket = self.lister.snapshot().await;
        self.records = snapshot_sets::dir_snapshot(&self.state);
        self.milvus = snapshot_sets::milvus_snapshot(&self.m).await;
    }

    /// Case `case` ran: nothing changed since the last snapshot.
    async fn unchanged(&mut self, case: &str) {
        let (bucket, records, milvus) = (
            self.lister.snapshot().await,
            snapshot_sets::dir_snapshot(&self.state),
            snapshot_sets::milvus_snapshot(&self.m).await,
        );
        let d = snapshot_sets::diff(&self.bucket, &bucket);
        let (own, ours): (Vec<&String>, Vec<&String>) = d
            .keys()
            .partition(|k| snapshot_sets::is_milvus_own_data(&self.milvus_root, k));
        assert!(
            ours.is_empty(),
            "{case}: objects in {} changed: {d:?}",
            self.lister.bucket
        );
        self.milvus_own += own.len();
        let d = snapshot_sets::diff(&self.records, &records);
        assert!(d.is_empty(), "{case}: job records changed: {d:?}");
        let d = snapshot_sets::diff(&self.milvus, &milvus);
        assert!(d.is_empty(), "{case}: Milvus's collections changed: {d:?}");
        (self.bucket, self.records, self.milvus) = (bucket, records, milvus);
        self.cases += 1;
    }
}

fn curl(method: &str, url: &str, body: Option<&str>) -> (u16, serde_json::Value) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-w", "\n%{http_code}", "-X", method, url]);
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (
        code.parse().unwrap(),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_inputs_are_refused_with_the_right_code_and_write_nothing() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    // A server with job records of its own, holding one real backup: the
    // refused restores name it, and its record must not move.
    let state = std::env::temp_dir().join(common::unique("bad-inputs-state"));
    let server = common::TestServer::start_with_records(&cfg, &state, 4).await;
    let mut client = server.client().await;
    let store = server.ctx.catalog.store().clone();
    let spec = Spec::new(&common::unique("bad_inputs_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..100, 5).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let real = common::unique("bad_inputs_real");
    common::flows::backup_collections(&mut client, &real, &[&spec.name]).await;
    let mut w = World::new(&cfg, state.clone()).await;
    let long = "n".repeat(10 * 1024);

    // gRPC CreateBackup: bad backup names.
    let bad_names = [
        "..",
        "/",
        "",
        " ",
        "a/b",
        "a\\b",
        "../etc",
        long.as_str(),
        "ｂａｃｋｕｐ",
        "back\u{200b}up",
        "backup\n",
        "名字",
        "a..b",
        "-x",
        "x;rm -rf",
        "café",
        "a b",
    ];
    for name in bad_names {
        let err = client
            .create_backup(pb::CreateBackupRequest {
                backup_name: name.into(),
                collection_names: vec![spec.name.clone()],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{name:?}: {err:?}");
        assert!(err.message().len() < 1000, "the message echoes 10 KB back");
        w.unchanged(&format!("CreateBackup {name:.20?}")).await;
    }
    // Bad collection and database names, and huge lists.
    let huge: Vec<String> = (0..20_001).map(|i| format!("c{i}")).collect();
    let bad_requests = [
        pb::CreateBackupRequest {
            backup_name: "ok_name".into(),
            collection_names: vec!["db.c.d".into()],
            ..Default::default()
        },
        pb::CreateBackupRequest {
            backup_name: "ok_name".into(),
            collection_names: vec!["".into()],
            ..Default::default()
        },
        pb::CreateBackupRequest {
            backup_name: "ok_name".into(),
            collection_names: vec!["../x".into()],
            ..Default::default()
        },
        pb::CreateBackupRequest {
            backup_name: "ok_name".into(),
            collection_names: vec![long.clone()],
            ..Default::default()
        },
        pb::CreateBackupRequest {
            backup_name: "ok_name".into(),
            database_names: vec!["db/x".into()],
            ..Default::default()
        },
        pb::CreateBackupRequest {
            backup_name: "ok_name".into(),
            collection_names: huge.clone(),
            ..Default::default()
        },
    ];
    for (i, req) in bad_requests.into_iter().enumerate() {
        let err = client.create_backup(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        w.unchanged(&format!("CreateBackup request {i}")).await;
    }
    // Restore of the real backup: conflicting options, bad suffixes and
    // renames, huge lists; and a bad backup name.
    let bad_restores = [
        pb::RestoreRequest {
            backup_name: real.clone(),
            drop_existing_collections: true,
            skip_create_collection: true,
            ..Default::default()
        },
        pb::RestoreRequest {
            backup_name: real.clone(),
            collection_suffix: "-x".into(),
            ..Default::default()
        },
        pb::RestoreRequest {
            backup_name: real.clone(),
            collection_suffix: "/..".into(),
            ..Default::default()
        },
        pb::RestoreRequest {
            backup_name: real.clone(),
            collection_renames: [(spec.name.clone(), "b/c".to_string())].into(),
            ..Default::default()
        },
        pb::RestoreRequest {
            backup_name: real.clone(),
            collection_renames: [("a.b.c".to_string(), "d".to_string())].into(),
            ..Default::default()
        },
        pb::RestoreRequest {
            backup_name: "..".into(),
            ..Default::default()
        },
        pb::RestoreRequest {
            backup_name: real.clone(),
            collection_names: huge.clone(),
            ..Default::default()
        },
    ];
    for (i, req) in bad_restores.into_iter().enumerate() {
        let err = client.restore(req.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{i}: {err:?}");
        w.unchanged(&format!("Restore request {i}")).await;
    }
    for name in ["..", "a/b", ""] {
        assert_eq!(
            client
                .delete_backup(pb::DeleteBackupRequest {
                    name: name.into(),
                    ..Default::default()
                })
                .await
                .unwrap_err()
                .code(),
            Code::InvalidArgument
        );
        w.unchanged(&format!("DeleteBackup {name:?}")).await;
        assert_eq!(
            client
                .verify_backup(pb::VerifyBackupRequest {
                    name: name.into(),
                    detached: false
                })
                .await
                .unwrap_err()
                .code(),
            Code::InvalidArgument
        );
        w.unchanged(&format!("VerifyBackup {name:?}")).await;
    }

    // REST: malformed JSON, wrong types, bad names, missing parameters: the
    // HTTP status and the Go tool's envelope code (400: Parameter_Error).
    let base = format!("http://{}/api/v1", server.handle.addr);
    let restore_conflict = format!(
        r#"{{"backup_name": "{real}", "dropExistCollection": true, "skipCreateCollection": true}}"#
    );
    let restore_rename =
        format!(r#"{{"backup_name": "{real}", "collection_renames": {{"a": "b/c"}}}}"#);
    let restore_auto_index = format!(r#"{{"backup_name": "{real}", "useAutoIndex": true}}"#);
    let rest_cases: Vec<(&str, String, Option<&str>, u16, i64)> = vec![
        (
            "POST",
            format!("{base}/create"),
            Some("{not json"),
            400,
            400,
        ),
        ("POST", format!("{base}/create"), Some("[]"), 400, 400),
        (
            "POST",
            format!("{base}/create"),
            Some(r#"{"backup_name": 123}"#),
            400,
            400,
        ),
        (
            "POST",
            format!("{base}/create"),
            Some(r#"{"backup_name": "ok", "async": "maybe"}"#),
            400,
            400,
        ),
        (
            "POST",
            format!("{base}/create"),
            Some(r#"{"backup_name": "ok", "collection_names": [1, 2]}"#),
            400,
            400,
        ),
        (
            "POST",
            format!("{base}/create"),
            Some(r#"{"backup_name": "../x"}"#),
            400,
            400,
        ),
        (
            "POST",
            format!("{base}/create"),
            Some(r#"{"backup_name": "ok", "db_collections": "not json"}"#),
            400,
            400,
        ),
        (
            "POST",
            format!("{base}/create"),
            Some(r#"{"backup_name": "ok", "db_collections": {"a.b": ["c"]}}"#),
            400,
            400,
        ),
        ("POST", format!("{base}/create"), Some(""), 400, 400),
        (
            "POST",
            format!("{base}/restore"),
            Some(restore_conflict.as_str()),
            400,
            400,
        ),
        (
            "POST",
            format!("{base}/restore"),
            Some(restore_rename.as_str()),
            400,
            400,
        ),
        (
            "POST",
            format!("{base}/restore"),
            Some(restore_auto_index.as_str()),
            400,
            400,
        ),
        ("GET", format!("{base}/get_backup"), None, 400, 400),
        (
            "GET",
            format!("{base}/get_backup?backup_name=a%2Fb"),
            None,
            400,
            400,
        ),
        ("GET", format!("{base}/get_restore?id="), None, 400, 400),
        (
            "DELETE",
            format!("{base}/delete?backup_name=.."),
            None,
            400,
            400,
        ),
        (
            "GET",
            format!("{base}/list?collection_name=a.b.c"),
            None,
            400,
            400,
        ),
    ];
    for (method, url, body, want_http, want_code) in &rest_cases {
        let (http, json) = tokio::task::block_in_place(|| curl(method, url, *body));
        let case = format!("{method} {url} {body:?}");
        assert_eq!(http, *want_http, "{case}: {json}");
        assert_eq!(json["code"], *want_code, "{case}: envelope code: {json}");
        assert!(
            json["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "{case}: envelope msg: {json}"
        );
        w.unchanged(&case).await;
    }
    // The message names the field, and a key given twice (JSON would keep
    // the last one, dropping the first database or rename) is refused.
    let renamed_twice =
        format!(r#"{{"backup_name": "{real}", "collection_renames": {{"a": "x", "a": "y"}}}}"#);
    let named_cases = [
        (
            "create",
            r#"{"backup_name": "ok", "async": "maybe"}"#,
            "async: invalid type",
        ),
        (
            "create",
            r#"{"backup_name": "ok", "db_collections": {"default": ["a"], "default": ["b"]}}"#,
            r#"db_collections: key "default" is given twice"#,
        ),
        (
            "restore",
            renamed_twice.as_str(),
            r#"collection_renames: key "a" is given twice"#,
        ),
    ];
    for (route, body, named) in named_cases {
        let url = format!("{base}/{route}");
        let (http, json) = tokio::task::block_in_place(|| curl("POST", &url, Some(body)));
        let case = format!("POST {url} {body}");
        assert_eq!(
            (http, &json["code"]),
            (400, &serde_json::json!(400)),
            "{case}: {json}"
        );
        assert!(
            json["msg"].as_str().is_some_and(|m| m.contains(named)),
            "{case}: the message names {named:?}: {json}"
        );
        w.unchanged(&case).await;
    }

    // Backups whose meta is corrupt or truncated.
    let good_meta =
        serde_json::json!({"name": "x", "state_code": 2, "collection_backups": []}).to_string();
    for (name, body) in [
        (
            common::unique("corrupt_meta"),
            "{\"name\": \"corrupt_meta\", \"collection_b".to_string(),
        ),
        (
            common::unique("truncated_meta"),
            good_meta[..good_meta.len() / 2].to_string(),
        ),
    ] {
        let key = format!("backup/{name}/meta/full_meta.json");
        store.write(&key, Bytes::from(body)).await.unwrap();
        w.take().await;
        let err = client
            .get_backup(pb::GetBackupRequest {
                name: name.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::DataLoss, "{err:?}");
        assert!(err.message().contains(&name));
        w.unchanged(&format!("GetBackup {name}")).await;
        let err = client
            .restore(flows::restore_request(&name, "_r"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::DataLoss, "{err:?}");
        // Listing skips it rather than failing.
        let mut s = client
            .list_backups(pb::ListBackupsRequest::default())
            .await
            .unwrap()
            .into_inner();
        while let Some(msg) = s.message().await.unwrap() {
            assert_ne!(msg.backup.unwrap().name, name);
        }
        w.unchanged(&format!("Restore {name}")).await;
        store.delete(&[key]).await.unwrap();
    }

    // Every case ran, and the server is still up.
    assert_eq!(w.cases, CASES, "bad inputs checked");
    client
        .list_backups(pb::ListBackupsRequest::default())
        .await
        .expect("the server is still up");
    figures::publish(
        "bad_inputs",
        &[format!(
            "bad inputs refused with the right code, nothing written: {} of {CASES} \
             (each compared as sets: {} objects in {}, the job records, {} Milvus \
             databases and collections; {} keys Milvus itself changed under {}/ meanwhile)",
            w.cases,
            w.bucket.len(),
            w.lister.bucket,
            w.milvus.len(),
            w.milvus_own,
            w.milvus_root,
        )],
    );
    client
        .delete_backup(pb::DeleteBackupRequest {
            name: real,
            ..Default::default()
        })
        .await
        .unwrap();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    server.handle.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&state);
}
