//! The generated clients work against our server and the real Milvus 2.3.5:
//! the Python client's example (installed from clients/python into its own
//! venv by scripts/test.sh) and the Go client's example (built offline with
//! Debian's Go by scripts/build_go_client.sh) each back up a collection, watch
//! it, restore it and watch the restore; the restored rows are compared here.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::data::{self, Spec};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

async fn check_restored(m: &milvus_backup::milvus::MilvusClient, spec: &Spec, suffix: &str) {
    let target = format!("{}{suffix}", spec.name);
    data::index(m, &spec.db, &target).await;
    data::load(m, &spec.db, &target).await;
    let a = data::rows(m, spec, &spec.db, &spec.name, &[]).await;
    let b = data::rows(m, spec, &spec.db, &target, &[]).await;
    assert_eq!(a.len(), 120);
    data::assert_rows_equal(&target, &a, &b);
    data::drop_if_exists(m, &spec.db, &target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn python_and_go_clients_back_up_and_restore() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let addr = server.handle.addr.to_string();
    let spec = Spec::new(&common::unique("clients_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..120, 71).await;
    data::index(&m, &spec.db, &spec.name).await;
    data::load(&m, &spec.db, &spec.name).await;

    let python = root().join(".it-env/pyclient/bin/python");
    assert!(
        python.exists(),
        "the Python client venv is missing: run scripts/test.sh (ensure_python_client)"
    );
    let out = tokio::task::block_in_place(|| {
        Command::new(&python)
            .arg(root().join("clients/python/examples/backup_and_restore.py"))
            .args([
                "--server",
                &addr,
                "--collection",
                &spec.name,
                "--suffix",
                "_py",
                "--name",
                &common::unique("py"),
            ])
            .output()
            .unwrap()
    });
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python example: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("-> ") && text.contains("120 rows"), "{text}");
    check_restored(&m, &spec, "_py").await;

    let bin_dir = std::env::temp_dir().join(common::unique("go-client"));
    let out = tokio::task::block_in_place(|| {
        Command::new("bash")
            .arg(root().join("scripts/build_go_client.sh"))
            .arg(&bin_dir)
            .output()
            .unwrap()
    });
    assert!(
        out.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tokio::task::block_in_place(|| {
        Command::new(bin_dir.join("backup_and_restore"))
            .args([
                "-server",
                &addr,
                "-collection",
                &spec.name,
                "-suffix",
                "_go",
                "-name",
                &common::unique("go"),
            ])
            .output()
            .unwrap()
    });
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "go example: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("120 rows"), "{text}");
    check_restored(&m, &spec, "_go").await;

    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    let _ = std::fs::remove_dir_all(bin_dir);
    server.handle.stop().await.unwrap();
}
