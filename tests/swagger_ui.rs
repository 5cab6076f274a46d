//! The Swagger UI at `/api/v1/docs/index.html` renders in a real headless
//! Chromium (Debian `chromium`, installed by scripts/test.sh) from the vendored
//! assets and lists every REST endpoint; its Authorize dialog sends the bearer
//! token (driven by puppeteer-core, npm, installed by scripts/test.sh); the
//! OpenAPI document lists every status each route can answer.

mod common;

use std::process::Command;

use milvus_backup::api::Server;
use milvus_backup::config::{Config, Secret};
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

#[test]
fn the_openapi_document_lists_every_status_and_a_bearer_scheme() {
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("../src/api/swagger/openapi.json")).unwrap();
    assert_eq!(
        doc["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
    assert_eq!(doc["security"][0]["bearerAuth"], serde_json::json!([]));
    let expect: &[(&str, &str, &[&str])] = &[
        (
            "/api/v1/create",
            "post",
            &[
                "200", "400", "401", "403", "404", "409", "412", "413", "429", "500", "503",
            ],
        ),
        (
            "/api/v1/list",
            "get",
            &["200", "400", "401", "403", "500", "503"],
        ),
        (
            "/api/v1/get_backup",
            "get",
            &["200", "400", "401", "403", "404", "500", "503"],
        ),
        (
            "/api/v1/delete",
            "delete",
            &[
                "200", "400", "401", "403", "404", "409", "412", "429", "500", "503",
            ],
        ),
        (
            "/api/v1/restore",
            "post",
            &[
                "200", "400", "401", "403", "404", "409", "412", "413", "429", "500", "503",
            ],
        ),
        (
            "/api/v1/get_restore",
            "get",
            &["200", "400", "401", "403", "404", "500", "503"],
        ),
        (
            "/api/v1/get_delete",
            "get",
            &["200", "400", "401", "403", "404", "500", "503"],
        ),
        ("/api/v1/hello", "get", &["200"]),
        (
            "/api/v1/check",
            "get",
            &["200", "400", "401", "403", "404", "412", "500", "503"],
        ),
        (
            "/api/v1/verify",
            "get",
            &[
                "200", "400", "401", "403", "404", "409", "412", "429", "500", "503",
            ],
        ),
        (
            "/api/v1/policies",
            "post",
            &["200", "400", "401", "403", "409", "413", "500", "503"],
        ),
        (
            "/api/v1/policies",
            "get",
            &["200", "400", "401", "403", "500", "503"],
        ),
        (
            "/api/v1/policies/{name}",
            "get",
            &["200", "400", "401", "403", "404", "500", "503"],
        ),
        (
            "/api/v1/policies/{name}",
            "put",
            &[
                "200", "400", "401", "403", "404", "409", "413", "500", "503",
            ],
        ),
        (
            "/api/v1/policies/{name}",
            "delete",
            &["200", "400", "401", "403", "404", "500", "503"],
        ),
        (
            "/api/v1/policies/{name}/run",
            "post",
            &["200", "400", "401", "403", "404", "409", "500", "503"],
        ),
        (
            "/api/v1/policies/{name}/preview",
            "get",
            &["200", "400", "401", "403", "404", "500", "503"],
        ),
    ];
    let routes: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|methods| methods.as_object().unwrap().len())
        .sum();
    assert_eq!(routes, expect.len(), "a route without its statuses");
    for (path, method, statuses) in expect {
        let responses = doc["paths"][path][method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} missing"));
        let listed: Vec<&str> = responses.keys().map(String::as_str).collect();
        assert_eq!(&listed, statuses, "{method} {path}");
        for (status, r) in responses {
            let r = match r["$ref"].as_str() {
                Some(name) => &doc["components"]["responses"][name.rsplit('/').next().unwrap()],
                None => r,
            };
            assert!(
                r["description"].as_str().is_some_and(|d| !d.is_empty()),
                "{method} {path} {status}"
            );
            // The Go tool's hello answers plain text; every other route the envelope.
            let media = match *path {
                "/api/v1/hello" => "text/plain",
                _ => "application/json",
            };
            assert!(
                r["content"][media]["schema"].is_object(),
                "{method} {path} {status}: the envelope"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorize_dialog_sends_the_bearer_token() {
    let node_modules =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".it-env/node/node_modules");
    assert!(
        node_modules.join("puppeteer-core").exists(),
        "puppeteer-core is missing: run scripts/test.sh (ensure_tools installs it)"
    );
    let token = "swagger-token-4b1d";
    // A backup folder of its own: the list the page asks for stays small.
    let mut cfg = common::config();
    cfg.minio.backup_root_path = common::unique("swagger-backups");
    let engine = Engine::new(Context::from_config(&cfg).unwrap());
    let server = Server::new(engine)
        .token(Secret::new(token))
        .spawn(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let url = format!("http://{}/api/v1/docs/index.html", server.addr);
    let profile =
        std::env::temp_dir().join(format!("mb-chromium-{}", uuid::Uuid::new_v4().simple()));
    let which = Command::new("sh")
        .args(["-c", &format!("command -v {}", chromium())])
        .output()
        .unwrap();
    let (browser, script) = (
        String::from_utf8_lossy(&which.stdout).trim().to_string(),
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/swagger/authorize.cjs"),
    );
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .env("NODE_PATH", node_modules)
            .args([script, &browser, profile.to_str().unwrap(), &url, token])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let bearer = format!("Bearer {token}");
    // Before Authorize: no header, and the server's 401; after: the token,
    // which the server (it requires that token) accepts: 200.
    assert_eq!(
        result["statuses"],
        serde_json::json!(["401", "200"]),
        "{stdout}"
    );
    assert_eq!(
        result["sent"],
        serde_json::json!([null, bearer]),
        "what the page sent: {stdout}"
    );
    server.stop().await.unwrap();
}
