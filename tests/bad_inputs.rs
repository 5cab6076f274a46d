//! A table of bad inputs over gRPC and REST: names with `..`, `/`, nothing,
//! 10 KB, unicode tricks; conflicting options; malformed JSON and wrong types;
//! huge lists; backups whose meta is corrupt or truncated. Each gets the right
//! code, the server stays up, and nothing is written. Against the real
//! Milvus 2.3.5 and S3.

mod common;

use std::process::Command;

use bytes::Bytes;
use milvus_backup::api::proto as pb;
use tonic::Code;

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
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client().await;
    let store = server.engine.context().catalog.store().clone();
    let before = store.list("backup/").await.unwrap().len();
    let long = "n".repeat(10 * 1024);
    let mut rejected = 0;

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
                collection_names: vec!["c".into()],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{name:?}: {err:?}");
        assert!(err.message().len() < 1000, "the message echoes 10 KB back");
        rejected += 1;
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
    for req in bad_requests {
        let err = client.create_backup(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        rejected += 1;
    }
    // Restore: conflicting options, bad suffixes and renames, huge lists.
    let bad_restores = [
        pb::RestoreRequest {
            backup_name: "b".into(),
            drop_existing_collections: true,
            skip_create_collection: true,
            ..Default::default()
        },
        pb::RestoreRequest {
            backup_name: "b".into(),
            collection_suffix: "-x".into(),
            ..Default::default()
        },
        pb::RestoreRequest {
            backup_name: "b".into(),
            collection_suffix: "/..".into(),
            ..Default::default()
        },
        pb::RestoreRequest {
            backup_name: "b".into(),
            collection_renames: [("a".to_string(), "b/c".to_string())].into(),
            ..Default::default()
        },
        pb::RestoreRequest {
            backup_name: "b".into(),
            collection_renames: [("a.b.c".to_string(), "d".to_string())].into(),
            ..Default::default()
        },
        pb::RestoreRequest {
            backup_name: "..".into(),
            ..Default::default()
        },
        pb::RestoreRequest {
            backup_name: "b".into(),
            collection_names: huge.clone(),
            ..Default::default()
        },
    ];
    for req in bad_restores {
        let err = client.restore(req.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{req:?}: {err:?}");
        rejected += 1;
    }
    for name in ["..", "a/b", ""] {
        assert_eq!(
            client
                .delete_backup(pb::DeleteBackupRequest { name: name.into() })
                .await
                .unwrap_err()
                .code(),
            Code::InvalidArgument
        );
        assert_eq!(
            client
                .verify_backup(pb::VerifyBackupRequest { name: name.into() })
                .await
                .unwrap_err()
                .code(),
            Code::InvalidArgument
        );
        rejected += 2;
    }

    // REST: malformed JSON, wrong types, bad names, missing parameters.
    let base = format!("http://{}/api/v1", server.handle.addr);
    let rest_cases: Vec<(&str, String, Option<&str>, u16)> = vec![
        ("POST", format!("{base}/create"), Some("{not json"), 400),
        ("POST", format!("{base}/create"), Some("[]"), 400),
        (
            "POST",
            format!("{base}/create"),
            Some(r#"{"backup_name": 123}"#),
            400,
        ),
        (
            "POST",
            format!("{base}/create"),
            Some(r#"{"backup_name": "ok", "async": "maybe"}"#),
            400,
        ),
        (
            "POST",
            format!("{base}/create"),
            Some(r#"{"backup_name": "ok", "collection_names": [1, 2]}"#),
            400,
        ),
        (
            "POST",
            format!("{base}/create"),
            Some(r#"{"backup_name": "../x"}"#),
            400,
        ),
        (
            "POST",
            format!("{base}/create"),
            Some(r#"{"backup_name": "ok", "db_collections": "not json"}"#),
            400,
        ),
        ("POST", format!("{base}/create"), Some(""), 400),
        (
            "POST",
            format!("{base}/restore"),
            Some(
                r#"{"backup_name": "b", "dropExistCollection": true, "skipCreateCollection": true}"#,
            ),
            400,
        ),
        (
            "POST",
            format!("{base}/restore"),
            Some(r#"{"backup_name": "b", "collection_renames": {"a": "b/c"}}"#),
            400,
        ),
        (
            "POST",
            format!("{base}/restore"),
            Some(r#"{"backup_name": "b", "useAutoIndex": true}"#),
            400,
        ),
        ("GET", format!("{base}/get_backup"), None, 400),
        (
            "GET",
            format!("{base}/get_backup?backup_name=a%2Fb"),
            None,
            400,
        ),
        ("GET", format!("{base}/get_restore?id="), None, 404),
        ("DELETE", format!("{base}/delete?backup_name=.."), None, 400),
        (
            "GET",
            format!("{base}/list?collection_name=a.b.c"),
            None,
            400,
        ),
    ];
    for (method, url, body, want) in &rest_cases {
        let (code, json) = tokio::task::block_in_place(|| curl(method, url, *body));
        assert_eq!(code, *want, "{method} {url} {body:?}: {json}");
        assert!(
            json.get("code").is_some() && json.get("msg").is_some(),
            "envelope kept: {json}"
        );
        rejected += 1;
    }

    // Backups whose meta is corrupt or truncated.
    let good_meta =
        serde_json::json!({"name": "x", "state_code": 2, "collection_backups": []}).to_string();
    for (name, body) in [
        (
            "corrupt_meta_x1",
            "{\"name\": \"corrupt_meta_x1\", \"collection_b".to_string(),
        ),
        (
            "truncated_meta_x1",
            good_meta[..good_meta.len() / 2].to_string(),
        ),
    ] {
        store
            .write(
                &format!("backup/{name}/meta/full_meta.json"),
                Bytes::from(body),
            )
            .await
            .unwrap();
        let err = client
            .get_backup(pb::GetBackupRequest {
                name: name.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::DataLoss, "{err:?}");
        assert!(err.message().contains(name));
        let err = client
            .restore(pb::RestoreRequest {
                backup_name: name.into(),
                collection_suffix: "_r".into(),
                ..Default::default()
            })
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
        store
            .delete(&[format!("backup/{name}/meta/full_meta.json")])
            .await
            .unwrap();
        rejected += 2;
    }

    // Nothing was written, and the server is still up.
    assert_eq!(
        store.list("backup/").await.unwrap().len(),
        before,
        "a refused request wrote objects"
    );
    client
        .list_backups(pb::ListBackupsRequest::default())
        .await
        .expect("the server is still up");
    println!("bad inputs rejected: {rejected}");
    assert!(rejected >= 30);
    server.handle.stop().await.unwrap();
}
