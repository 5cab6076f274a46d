//! The real `curl`, for the REST routes.

use std::process::Command;

use serde_json::Value;

/// Runs curl with `args` (at most 60 s); returns the HTTP status and the
/// parsed JSON body. Panics when curl fails or the body is not JSON.
pub fn json(args: &[&str]) -> (u16, Value) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl (apt curl) is needed");
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    (code.parse().unwrap(), json)
}

/// POSTs JSON `body` to `url`: the HTTP status and the answer.
#[allow(dead_code)]
pub fn post_json(url: &str, body: &str) -> (u16, Value) {
    json(&[
        "-X",
        "POST",
        url,
        "-H",
        "Content-Type: application/json",
        "-d",
        body,
    ])
}

/// The body of a GET of `url` (at most 60 s), as text.
#[allow(dead_code)]
pub fn text(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60", url])
        .output()
        .expect("curl (apt curl) is needed");
    assert!(out.status.success(), "curl {url} failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The `/metrics` text of the server on `port`.
#[allow(dead_code)]
pub fn metrics(port: u16) -> String {
    text(&format!("http://127.0.0.1:{port}/metrics"))
}

/// The bytes the server on `port` has copied (`milvus_backup_copied_bytes_total`).
#[allow(dead_code)]
pub fn copied_bytes(port: u16) -> u64 {
    metrics(port)
        .lines()
        .find_map(|l| l.strip_prefix("milvus_backup_copied_bytes_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the copied bytes counter")
}
