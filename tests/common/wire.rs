//! Our server on 127.0.0.1:0 with chosen limits, and raw HTTP/1.1 over a
//! socket: what the tests of the shared port's limits read and send.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use milvus_backup::api::{Server, ServerHandle, ServerLimits};
use milvus_backup::context::Context;
use milvus_backup::engine::Engine;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Our server with `limits`, over the test environment.
pub async fn start(limits: ServerLimits) -> ServerHandle {
    let cfg = super::config();
    let engine = Engine::new(Context::from_config(&cfg).expect("context"));
    Server::new(engine)
        .limits(limits)
        .spawn(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("server")
}

/// Reads until the peer closes (EOF or reset), or `within` passes. Returns
/// what was read and when the connection closed (None: still open).
pub async fn read_until_closed(
    stream: &mut TcpStream,
    within: Duration,
) -> (Vec<u8>, Option<Instant>) {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (got, None),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, Some(Instant::now())),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// One HTTP/1.1 response read off a kept-alive connection: status, headers
/// (lower-case names) and body (the server always sends a length).
pub async fn read_response(stream: &mut TcpStream) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.expect("read a response");
        assert_eq!(
            n,
            1,
            "closed mid-headers: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .expect("a content-length");
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.unwrap();
    (status, headers, body)
}

/// A raw HTTP/1.1 request on its own connection: status, headers, JSON body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
) -> (u16, Vec<(String, String)>, Value) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (status, headers, body) =
        tokio::time::timeout(Duration::from_secs(30), read_response(&mut s))
            .await
            .expect("an answer");
    let json = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "{method} {path}: not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    });
    (status, headers, json)
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The Go tool's envelope with `code`, no data and a message containing `msg`.
pub fn assert_envelope(json: &Value, code: i64, msg: &str) {
    assert_eq!(json["code"].as_i64(), Some(code), "{json}");
    assert!(json["data"].is_null(), "{json}");
    assert!(
        json["requestId"].as_str().is_some_and(|r| !r.is_empty()),
        "{json}"
    );
    assert!(
        json["msg"].as_str().is_some_and(|m| m.contains(msg)),
        "msg should contain {msg:?}: {json}"
    );
}

/// Stops the server gracefully, within 30 s.
pub async fn stop(server: ServerHandle) {
    tokio::time::timeout(Duration::from_secs(30), server.stop())
        .await
        .expect("the server stops within 30 s")
        .expect("the server stops cleanly");
}
