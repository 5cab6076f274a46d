//! The example scripts of examples/ (pymilvus, as in the Go tool's guide):
//! prepare_data.py → backup over gRPC → restore with `_recover` →
//! verify_data.py (which asserts rows, partitions, dynamic keys and a search)
//! → clean_data.py. Against the real Milvus 2.3.5 and S3.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::flows;
use milvus_backup::milvus::MilvusApi;

fn python(script: &str, uri: &str) -> std::process::Output {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let py = root.join(".it-env/pymilvus/bin/python");
    assert!(
        py.exists(),
        "pymilvus venv missing: run scripts/test.sh (ensure_pymilvus)"
    );
    Command::new(py)
        .arg(root.join("examples").join(script))
        .args(["--uri", uri])
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prepare_backup_restore_verify_clean() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let uri = cfg.milvus.url();
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client().await;

    let out = tokio::task::block_in_place(|| python("clean_data.py", &uri));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tokio::task::block_in_place(|| python("prepare_data.py", &uri));
    assert!(
        out.status.success(),
        "prepare: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let name = common::unique("guide");
    flows::backup_collections(&mut client, &name, &["hello_milvus", "hello_milvus2"]).await;
    flows::restore(
        &mut client,
        flows::restore_loaded_request(&name, "_recover"),
    )
    .await;

    let out = tokio::task::block_in_place(|| python("verify_data.py", &uri));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "verify: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("hello_milvus2_recover/part_b") && text.contains("verified"),
        "{text}"
    );

    let out = tokio::task::block_in_place(|| python("clean_data.py", &uri));
    assert!(out.status.success());
    for c in [
        "hello_milvus",
        "hello_milvus2",
        "hello_milvus_recover",
        "hello_milvus2_recover",
    ] {
        assert!(
            !m.has_collection("default", c).await.unwrap(),
            "{c} still exists"
        );
    }
    server.handle.stop().await.unwrap();
}
