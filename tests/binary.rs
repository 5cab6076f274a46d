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

#[test]
fn server_stops_gracefully_on_sigterm() {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_milvus-backup"))
        .args([
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/configs/backup.yaml"),
        ])
        .args(["server", "-p", &port.to_string()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
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

#[test]
fn a_bad_config_is_refused_with_the_key_and_line() {
    let dir = std::env::temp_dir().join(format!("mb-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.yaml");
    std::fs::write(&path, "milvus:\n  address: x\n  port: not-a-port\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_milvus-backup"))
        .args(["--config", path.to_str().unwrap(), "server", "-p", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("milvus.port") && err.contains("line 3"),
        "{err}"
    );
}
