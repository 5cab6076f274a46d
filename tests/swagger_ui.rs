//! The Swagger UI at `/api/v1/docs/index.html` renders in a real headless
//! Chromium (Debian `chromium`, installed by scripts/test.sh) from the vendored
//! assets, and lists every REST endpoint. Needs no Milvus.

use std::process::Command;

use milvus_backup::api::Server;
use milvus_backup::config::Config;
use milvus_backup::context::Context;
use milvus_backup::engine::Engine;

fn chromium() -> String {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {c}")])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return c.to_string();
        }
    }
    panic!("no Chromium: install Debian's `chromium` (scripts/test.sh does)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swagger_ui_renders_and_lists_the_endpoints() {
    let engine = Engine::new(Context::from_config(&Config::default()).unwrap());
    let server = Server::new(engine)
        .spawn(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let url = format!("http://{}/api/v1/docs/index.html", server.addr);
    let profile =
        std::env::temp_dir().join(format!("mb-chromium-{}", uuid::Uuid::new_v4().simple()));
    let browser = chromium();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--virtual-time-budget=15000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(["--dump-dom", &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("milvus-backup REST API"),
        "the UI did not render the document:\n{}",
        &dom[..dom.len().min(2000)]
    );
    for path in [
        "/api/v1/create",
        "/api/v1/list",
        "/api/v1/get_backup",
        "/api/v1/delete",
        "/api/v1/restore",
        "/api/v1/get_restore",
        "/api/v1/check",
    ] {
        assert!(dom.contains(path), "{path} not listed by the Swagger UI");
    }
    server.stop().await.unwrap();
}
