//! The Go tool's REST API, driven by the real `curl` with the commands of the
//! Go tool's "back up and restore using APIs" guide, unchanged but for the
//! port: create (async) → list → get_backup → restore with `_recover` → poll
//! get_restore → rows equal. Plus the envelope on errors, and gRPC and REST on
//! one port. Against the real Milvus 2.3.5 and S3.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::hello;
use serde_json::Value;

/// Runs curl with `args`; returns the HTTP status and the parsed JSON body.
fn curl(args: &[&str]) -> (u16, Value) {
    let out = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl (apt curl) is needed");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    (code.parse().unwrap(), json)
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
    let deadline = Instant::now() + Duration::from_secs(120);
    let backup = loop {
        let (_, got) = tokio::task::block_in_place(|| {
            curl(&[
                "--location",
                "--request",
                "GET",
                &format!("{base}/api/v1/get_backup?backup_id={name}&backup_name={name}"),
                "--header",
                "Content-Type: application/json",
            ])
        });
        assert_eq!(got["code"], 0, "{got}");
        if got["data"]["state_code"] == 2 {
            break got;
        }
        assert!(Instant::now() < deadline, "backup did not finish: {got}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
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
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        let (_, got) = tokio::task::block_in_place(|| {
            curl(&[
                "--location",
                "--request",
                "GET",
                &format!("{base}/api/v1/get_restore?id={id}"),
                "--header",
                "Content-Type: application/json",
            ])
        });
        assert_eq!(got["code"], 0, "{got}");
        if got["data"]["state_code"] == 2 {
            break got;
        }
        assert_ne!(got["data"]["state_code"], 3, "restore failed: {got}");
        assert!(Instant::now() < deadline, "restore did not finish: {got}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
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

    // Errors keep the envelope, with the Go tool's codes.
    let (status, err) = tokio::task::block_in_place(|| {
        curl(&[
            "--request",
            "GET",
            &format!("{base}/api/v1/get_backup?backup_name=no_such_backup_x"),
        ])
    });
    assert_eq!((status, err["code"].as_i64()), (404, Some(404)), "{err}");
    assert!(err["msg"].as_str().unwrap().contains("no_such_backup_x"));
    let (status, err) = tokio::task::block_in_place(|| {
        curl(&[
            "--request",
            "POST",
            &format!("{base}/api/v1/create"),
            "--header",
            "Content-Type: application/json",
            "--data-raw",
            "{not json",
        ])
    });
    assert_eq!((status, err["code"].as_i64()), (400, Some(400)), "{err}");
    let (status, err) = tokio::task::block_in_place(|| {
        curl(&[
            "--request",
            "POST",
            &format!("{base}/api/v1/create"),
            "--header",
            "Content-Type: application/json",
            "--data-raw",
            r#"{"backup_name":"../x"}"#,
        ])
    });
    assert_eq!((status, err["code"].as_i64()), (400, Some(400)), "{err}");
    assert!(err["msg"].as_str().unwrap().contains("../x"));
    let (status, err) = tokio::task::block_in_place(|| {
        curl(&[
            "--request",
            "POST",
            &format!("{base}/api/v1/create"),
            "--header",
            "Content-Type: application/json",
            "--data-raw",
            &format!(r#"{{"backup_name":"{name}"}}"#),
        ])
    });
    assert_eq!((status, err["code"].as_i64()), (409, Some(400)), "{err}");
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
