//! The `milvus-backup` binary: `server -p PORT` serves, and SIGTERM stops it
//! gracefully (exit code 0). Needs no Milvus: the server connects lazily.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether a server answers HTTP on `port`. A bare connect is not proof: to
/// a port in the ephemeral range nothing listens on, the kernel can connect
/// a socket to itself, which echoes the request back.
fn answers_http(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut head = [0u8; 5];
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").is_ok()
        && s.read_exact(&mut head).is_ok()
        && &head == b"HTTP/"
}

/// The shipped `configs/backup.yaml` with a state directory of its own: one
/// server owns a state directory, and these tests run servers side by side.
fn shipped_config() -> std::path::PathBuf {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/backup.yaml"))
        .unwrap();
    let dir = std::env::temp_dir().join(format!(
        "binary-test-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let text = text.replacen(
        "\nbackup:\n",
        &format!("\nbackup:\n  stateDir: {}\n", dir.join("state").display()),
        1,
    );
    assert!(
        text.contains("stateDir"),
        "no backup: section in configs/backup.yaml"
    );
    let path = dir.join("backup.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn server_stops_gracefully_on_sigterm() {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_milvus-backup"))
        .arg("--config")
        .arg(shipped_config())
        .args(["server", "--address", "127.0.0.1", "-p", &port.to_string()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !answers_http(port) {
        assert!(Instant::now() < deadline, "server did not listen on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "server did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(exit.success(), "exit {exit:?}; log:\n{log}");
    assert!(
        log.contains("NOT_SERVING"),
        "no graceful shutdown in the log:\n{log}"
    );
    assert!(log.contains("server stopped"), "{log}");
}

/// `server -p 443` (we run as root here) serves REST and gRPC on that port.
#[test]
fn server_serves_rest_and_grpc_on_port_443() {
    if std::net::TcpListener::bind("0.0.0.0:443").is_err() {
        panic!(
            "port 443 is taken or not allowed (tests run as root on a machine where it is free)"
        );
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_milvus-backup"))
        .arg("--config")
        .arg(shipped_config())
        .args(["server", "--address", "127.0.0.1", "-p", "443"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The port accepts connections a moment before the server answers on
    // it: each call is tried until it gets an HTTP answer (curl's 000 is none).
    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = |args: &[&str]| loop {
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(args)
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout) != "000" || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let rest = answer(&["http://127.0.0.1:443/api/v1/docs/index.html"]);
    let grpc = answer(&[
        "--http2-prior-knowledge",
        "-X",
        "POST",
        "-H",
        "content-type: application/grpc",
        "--data-binary",
        "@/dev/null",
        "http://127.0.0.1:443/grpc.health.v1.Health/Check",
    ]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(String::from_utf8_lossy(&rest.stdout), "200");
    assert_eq!(
        String::from_utf8_lossy(&grpc.stdout),
        "200",
        "gRPC over HTTP/2 on 443"
    );
}

#[test]
fn a_bad_config_is_refused_with_the_key_and_line() {
    let dir = std::env::temp_dir().join(format!("mb-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.yaml");
    std::fs::write(&path, "milvus:\n  address: x\n  port: not-a-port\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_milvus-backup"))
        .args([
            "--config",
            path.to_str().unwrap(),
            "server",
            "--address",
            "127.0.0.1",
            "-p",
            "0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("milvus.port") && err.contains("line 3"),
        "{err}"
    );
}
