//! The limits of the shared port, against our real server on 127.0.0.1:0
//! (over the real Milvus 2.3.5 and S3 of the test environment), driven by raw
//! sockets, hyper and tonic:
//! - a client that dribbles its headers (slowloris), sends nothing, or stops
//!   after the HTTP/2 preface is disconnected after the header read timeout,
//!   not before; an idle HTTP/1.1 keep-alive connection too;
//! - an idle HTTP/2 connection is closed after the idle timeout;
//! - with the connection cap reached, a further connection is not served
//!   until one closes, then it is.
//!
//! Oversized bodies and messages and the REST edges are in `request_limits.rs`.

mod common;

use std::time::{Duration, Instant};

use common::wire::{assert_envelope, read_response, read_until_closed, start, stop};
use milvus_backup::api::ServerLimits;
use milvus_backup::api::proto as pb;
use milvus_backup::api::proto::backup_service_client::BackupServiceClient;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_or_silent_clients_are_disconnected_after_the_header_read_timeout() {
    let timeout = Duration::from_millis(1500);
    let server = start(ServerLimits {
        header_read_timeout: timeout,
        ..ServerLimits::default()
    })
    .await;
    let addr = server.addr;

    // Slowloris: a request line, then one header byte every 200 ms, forever.
    let start = Instant::now();
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let dribbler = tokio::spawn(async move {
        wr.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            .await?;
        loop {
            for b in b"X-Slow: a\r\n" {
                wr.write_all(&[*b]).await?;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        #[allow(unreachable_code)]
        Ok::<(), std::io::Error>(())
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(10), rd.read(&mut buf)).await {
            Err(_) => panic!("a slowloris client was still connected after 10 s"),
            Ok(Ok(0)) | Ok(Err(_)) => break start.elapsed(),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    };
    let answer = String::from_utf8_lossy(&got);
    assert!(!answer.contains(" 200 "), "it was served: {answer}");
    assert!(
        closed >= timeout - Duration::from_millis(100) && closed < timeout + Duration::from_secs(2),
        "closed after {closed:?}, the timeout is {timeout:?}"
    );
    // The dribbler's next writes fail: the server is really gone.
    let write = tokio::time::timeout(Duration::from_secs(5), dribbler).await;
    assert!(
        matches!(write, Ok(Ok(Err(_)))),
        "the dribbler could keep writing: {write:?}"
    );

    // A client that connects and says nothing; one that stops after the HTTP/2 preface.
    for (what, hello) in [
        ("silent", &b""[..]),
        (
            "HTTP/2 preface only",
            &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
        ),
    ] {
        let start = Instant::now();
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(hello).await.unwrap();
        let (_, closed) = read_until_closed(&mut s, Duration::from_secs(10)).await;
        let after = closed
            .unwrap_or_else(|| panic!("{what}: still connected after 10 s"))
            .duration_since(start);
        assert!(
            after >= timeout - Duration::from_millis(100)
                && after < timeout + Duration::from_secs(2),
            "{what}: closed after {after:?}, the timeout is {timeout:?}"
        );
    }

    // An HTTP/2 client that finishes its handshake but sends no request is
    // told to go away (GOAWAY) after the timeout, and the connection ends.
    let start = Instant::now();
    let io = hyper_util::rt::TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (_sender, conn) = hyper::client::conn::http2::handshake::<
        _,
        _,
        http_body_util::Empty<bytes::Bytes>,
    >(hyper_util::rt::TokioExecutor::new(), io)
    .await
    .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
    let after = start.elapsed();
    assert!(
        ended.is_ok(),
        "a request-less HTTP/2 connection was still open after 10 s"
    );
    assert!(
        after >= timeout - Duration::from_millis(100) && after < timeout + Duration::from_secs(2),
        "request-less HTTP/2: closed after {after:?}, the timeout is {timeout:?}"
    );
    // A gRPC channel connected early and used only later still works.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    tokio::time::sleep(timeout + Duration::from_secs(1)).await;
    BackupServiceClient::new(channel)
        .list_backups(pb::ListBackupsRequest::default())
        .await
        .expect("a call on a channel idle since it connected");

    // A prompt client is served, and its idle keep-alive connection is
    // closed after the same timeout.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (status, _, _) = read_response(&mut s).await;
    assert_eq!(status, 200);
    let idle_from = Instant::now();
    let (_, closed) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    let after = closed
        .expect("an idle HTTP/1.1 connection stays open")
        .duration_since(idle_from);
    assert!(
        after >= timeout - Duration::from_millis(100) && after < timeout + Duration::from_secs(2),
        "idle keep-alive closed after {after:?}"
    );
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_http2_connections_are_closed_after_the_idle_timeout() {
    let idle = Duration::from_secs(2);
    let server = start(ServerLimits {
        idle_timeout: idle,
        ..ServerLimits::default()
    })
    .await;
    let addr = server.addr;
    let io = hyper_util::rt::TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = hyper::Request::get(format!("http://{addr}/metrics"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    // Read the body to the end: the request is done, the connection idle.
    http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap();
    let idle_from = Instant::now();
    let ended = tokio::time::timeout(idle + Duration::from_secs(10), conn).await;
    let after = idle_from.elapsed();
    assert!(
        ended.is_ok(),
        "an idle HTTP/2 connection was still open after {after:?}"
    );
    assert!(
        after >= idle - Duration::from_millis(200),
        "closed after {after:?}, before the idle timeout {idle:?}"
    );

    // A gRPC client gets over it: its channel reconnects.
    let mut client = common::connect(addr).await;
    client
        .list_backups(pb::ListBackupsRequest::default())
        .await
        .unwrap();
    tokio::time::sleep(idle + Duration::from_secs(1)).await;
    client
        .list_backups(pb::ListBackupsRequest::default())
        .await
        .expect("a call after the idle close");
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_connection_cap_holds_further_connections_until_one_closes() {
    let server = start(ServerLimits {
        max_connections: 2,
        header_read_timeout: Duration::from_secs(60),
        ..ServerLimits::default()
    })
    .await;
    let addr = server.addr;
    let request = b"GET /api/v1/docs/nope HTTP/1.1\r\nHost: x\r\n\r\n";

    // Two kept-alive connections take both slots; each is served.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let (status, _, _) = tokio::time::timeout(Duration::from_secs(10), read_response(&mut s))
            .await
            .expect("served while a slot is free");
        assert_eq!(status, 404);
        held.push(s);
    }

    // The third connects (the kernel's backlog) but is not served.
    let mut third = TcpStream::connect(addr).await.unwrap();
    third.write_all(request).await.unwrap();
    let waiting = tokio::time::timeout(Duration::from_secs(2), read_response(&mut third)).await;
    assert!(
        waiting.is_err(),
        "a third connection was served with the cap at 2"
    );
    // Still served on the held ones meanwhile.
    held[0].write_all(request).await.unwrap();
    assert_eq!(read_response(&mut held[0]).await.0, 404);

    // One closes: the third is served.
    let closed_at = Instant::now();
    drop(held.remove(0));
    let (status, _, body) =
        tokio::time::timeout(Duration::from_secs(10), read_response(&mut third))
            .await
            .expect("the third connection is served once a slot frees up");
    assert_eq!(status, 404);
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_envelope(&json, 404, "nope");
    assert!(closed_at.elapsed() < Duration::from_secs(5));

    // And a fourth waits again until another one goes.
    let mut fourth = TcpStream::connect(addr).await.unwrap();
    fourth.write_all(request).await.unwrap();
    let waiting = tokio::time::timeout(Duration::from_secs(1), read_response(&mut fourth)).await;
    assert!(
        waiting.is_err(),
        "a fourth connection was served with the cap at 2"
    );
    drop(third);
    let (status, _, _) = tokio::time::timeout(Duration::from_secs(10), read_response(&mut fourth))
        .await
        .expect("the fourth connection is served once the third closes");
    assert_eq!(status, 404);
    drop((held, fourth));
    stop(server).await;
}
