//! The limits of the shared port and the REST edges, against our real server
//! on 127.0.0.1:0 (over the real Milvus 2.3.5 and S3 of the test environment),
//! driven by raw sockets, curl, hyper and tonic:
//! - a client that dribbles its headers (slowloris), sends nothing, or stops
//!   after the HTTP/2 preface is disconnected after the header read timeout,
//!   not before; an idle HTTP/1.1 keep-alive connection too;
//! - an idle HTTP/2 connection is closed after the idle timeout;
//! - with the connection cap reached, a further connection is not served
//!   until one closes, then it is;
//! - a 10 MB REST body answers 413 with the envelope (with and without a
//!   length, with and without `Expect: 100-continue`);
//! - unknown paths answer 404, wrong methods 405, `get_restore` without an id
//!   400, all with the envelope; gRPC (service, health, reflection, unknown
//!   methods), `/metrics` and the docs keep working;
//! - gRPC messages over the limit fail with OUT_OF_RANGE, both ways; ones over
//!   tonic's default 4 MiB but under ours go through.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::curl::json as curl;
use milvus_backup::api::proto as pb;
use milvus_backup::api::proto::backup_service_client::BackupServiceClient;
use milvus_backup::api::{Server, ServerHandle, ServerLimits};
use milvus_backup::context::Context;
use milvus_backup::engine::Engine;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;

/// Our server with `limits`, over the test environment.
async fn start(limits: ServerLimits) -> ServerHandle {
    let cfg = common::config();
    let engine = Engine::new(Context::from_config(&cfg).expect("context"));
    Server::new(engine)
        .limits(limits)
        .spawn(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("server")
}

/// Reads until the peer closes (EOF or reset), or `within` passes. Returns
/// what was read and when the connection closed (None: still open).
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, Option<Instant>) {
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
async fn read_response(stream: &mut TcpStream) -> (u16, Vec<(String, String)>, Vec<u8>) {
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
async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, Vec<(String, String)>, Value) {
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

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The Go tool's envelope with `code`, no data and a message containing `msg`.
fn assert_envelope(json: &Value, code: i64, msg: &str) {
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

async fn grpc_client(addr: SocketAddr) -> BackupServiceClient<tonic::transport::Channel> {
    common::connect(addr).await
}

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
    let mut client = grpc_client(addr).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rest_body_over_the_limit_is_413_with_the_envelope() {
    // The default limits: 1 MiB.
    let server = start(ServerLimits::default()).await;
    assert_eq!(ServerLimits::default().max_rest_body_bytes, 1 << 20);
    let addr = server.addr;
    let dir = std::env::temp_dir().join(common::unique("body-limit"));
    std::fs::create_dir_all(&dir).unwrap();
    // 10 MB of valid JSON: a backup with very many collections.
    let big = dir.join("big.json");
    let names: Vec<String> = (0..700_000).map(|i| format!("c{i:012}")).collect();
    let text = serde_json::json!({"backup_name": "too_big", "collection_names": names}).to_string();
    assert!(text.len() > 10_000_000, "{}", text.len());
    std::fs::write(&big, &text).unwrap();
    let big_arg = format!("@{}", big.display());
    let url = format!("http://{addr}/api/v1/create");
    let restore_url = format!("http://{addr}/api/v1/restore");
    let json_type = "Content-Type: application/json";
    for (what, extra) in [
        ("with a length", vec![]),
        ("without Expect: 100-continue", vec!["-H", "Expect:"]),
        (
            "chunked, no length",
            vec!["-H", "Transfer-Encoding: chunked"],
        ),
    ] {
        for url in [&url, &restore_url] {
            let mut args = vec!["-X", "POST", url.as_str(), "-H", json_type, "--data-binary"];
            args.push(&big_arg);
            args.extend(extra.iter().copied());
            let (status, json) = tokio::task::block_in_place(|| curl_oversized(&args));
            assert_eq!(status, 413, "{what} {url}: {json}");
            assert_envelope(&json, 400, "http.maxRestBodyBytes");
        }
    }
    // Under the limit, the body is read and checked as usual.
    let under = dir.join("under.json");
    std::fs::write(
        &under,
        format!(
            r#"{{"backup_name": "../x", "collection_names": ["{}"]}}"#,
            "r".repeat(1_000_000)
        ),
    )
    .unwrap();
    let under_arg = format!("@{}", under.display());
    let (status, json) = tokio::task::block_in_place(|| {
        curl(&[
            "-X",
            "POST",
            &url,
            "-H",
            json_type,
            "--data-binary",
            &under_arg,
        ])
    });
    assert_eq!((status, json["code"].as_i64()), (400, Some(400)), "{json}");
    assert!(json["msg"].as_str().unwrap().contains("../x"), "{json}");
    // The server is still fine.
    grpc_client(addr)
        .await
        .list_backups(pb::ListBackupsRequest::default())
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rest_edges_answer_with_the_envelope_and_the_rest_keeps_working() {
    let server = start(ServerLimits::default()).await;
    let addr = server.addr;

    // Unknown paths: 404, code 404 (Request_Object_Not_Found), JSON.
    for (method, path) in [
        ("GET", "/api/v1/no_such_thing"),
        ("POST", "/api/v1/create/extra"),
        ("GET", "/api/v2/list"),
        ("GET", "/nothing/here"),
        ("GET", "/api/v1/docs/nope.html"),
    ] {
        let (status, headers, json) = http(addr, method, path).await;
        assert_eq!(status, 404, "{method} {path}: {json}");
        assert!(
            header(&headers, "content-type").is_some_and(|t| t.starts_with("application/json")),
            "{method} {path}: {headers:?}"
        );
        assert!(header(&headers, "grpc-status").is_none(), "{headers:?}");
        assert_envelope(&json, 404, "");
    }

    // Known paths, wrong methods: 405, code 1 (Not_Support), and Allow.
    for (method, path, allow) in [
        ("GET", "/api/v1/create", "POST"),
        ("POST", "/api/v1/list", "GET"),
        ("DELETE", "/api/v1/get_backup?backup_name=x", "GET"),
        ("GET", "/api/v1/delete?backup_name=x", "DELETE"),
        ("PUT", "/api/v1/restore", "POST"),
        ("POST", "/api/v1/get_restore?id=x", "GET"),
        ("POST", "/metrics", "GET"),
    ] {
        let (status, headers, json) = http(addr, method, path).await;
        assert_eq!(status, 405, "{method} {path}: {json}");
        assert!(
            header(&headers, "allow").is_some_and(|a| a.contains(allow)),
            "{method} {path}: {headers:?}"
        );
        assert_envelope(&json, 1, method);
    }

    // get_restore without an id is a parameter error, as get_backup without arguments.
    for path in [
        "/api/v1/get_restore",
        "/api/v1/get_restore?id=",
        "/api/v1/get_backup",
    ] {
        let (status, _, json) = http(addr, "GET", path).await;
        assert_eq!(status, 400, "{path}: {json}");
        assert_envelope(&json, 400, "empty");
    }
    let (status, _, json) = http(addr, "GET", "/api/v1/get_restore?id=no_such_restore").await;
    assert_eq!((status, json["code"].as_i64()), (404, Some(404)), "{json}");

    // What must keep working on the port.
    let (status, _, json) = http(addr, "GET", "/api/v1/list").await;
    assert_eq!((status, json["code"].as_i64()), (200, Some(0)), "{json}");
    let mut s = TcpStream::connect(addr).await.unwrap();
    for (path, kind) in [
        ("/metrics", "text/plain"),
        ("/api/v1/docs/index.html", "text/html"),
        ("/api/v1/docs/openapi.json", "application/json"),
    ] {
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let (status, headers, _) = read_response(&mut s).await;
        assert_eq!(status, 200, "{path}");
        assert!(
            header(&headers, "content-type").is_some_and(|t| t.starts_with(kind)),
            "{path}: {headers:?}"
        );
    }
    s.write_all(b"GET /api/v1/docs HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (status, headers, _) = read_response(&mut s).await;
    assert_eq!(status, 308);
    assert_eq!(
        header(&headers, "location"),
        Some("/api/v1/docs/index.html")
    );

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let mut reflection =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
            channel.clone(),
        );
    let req = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let listed = format!("{:?}", answers.message().await.unwrap());
    assert!(
        listed.contains("milvus.backup.v1.BackupService"),
        "{listed}"
    );
    let mut client = BackupServiceClient::new(channel.clone());
    let err = client
        .get_backup(pb::GetBackupRequest {
            name: common::unique("no_such_backup"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    // A gRPC call of a method we do not have stays a gRPC UNIMPLEMENTED.
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let err = grpc
        .unary::<pb::CheckRequest, pb::CheckRequest, _>(
            tonic::Request::new(pb::CheckRequest::default()),
            "/milvus.backup.v1.BackupService/NoSuchMethod"
                .parse()
                .unwrap(),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grpc_messages_over_the_limit_fail_with_out_of_range() {
    // The default limit (16 MiB) lets a 5 MiB request through, which tonic's
    // default (4 MiB) would refuse: the request reaches our validation.
    assert_eq!(ServerLimits::default().max_grpc_message_bytes, 16 << 20);
    let server = start(ServerLimits::default()).await;
    let mut client = grpc_client(server.addr).await;
    let err = client
        .get_backup(pb::GetBackupRequest {
            name: "n".repeat(5 << 20),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("longer than"), "{err:?}");
    // Over it: OUT_OF_RANGE before our code sees it.
    let err = client
        .get_backup(pb::GetBackupRequest {
            name: "n".repeat(17 << 20),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    assert!(err.message().contains("too large"), "{err:?}");
    stop(server).await;

    // A small limit: requests over it fail, smaller ones go through, and an
    // answer over it fails too (reflection's file descriptor is larger).
    let server = start(ServerLimits {
        max_grpc_message_bytes: 2048,
        ..ServerLimits::default()
    })
    .await;
    let addr = server.addr;
    let mut client = grpc_client(addr).await;
    let err = client
        .create_backup(pb::CreateBackupRequest {
            backup_name: common::unique("too_big"),
            collection_names: (0..200).map(|i| format!("collection_{i:05}")).collect(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    assert!(
        err.message().contains("found") && err.message().contains("2048"),
        "{err:?}"
    );
    let err = client
        .get_backup(pb::GetBackupRequest {
            name: common::unique("no_such_backup"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::NotFound,
        "a small request goes through: {err:?}"
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut reflection =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(channel);
    let req = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::FileContainingSymbol(
                "milvus.backup.v1.BackupService".into(),
            ),
        ),
    };
    let answer = reflection
        .server_reflection_info(tokio_stream::iter([req]))
        .await;
    let err = match answer {
        Err(status) => status,
        Ok(resp) => resp
            .into_inner()
            .message()
            .await
            .expect_err("a reflection answer over the limit"),
    };
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    stop(server).await;
}

/// Stops the server gracefully, within 30 s.
async fn stop(server: ServerHandle) {
    tokio::time::timeout(Duration::from_secs(30), server.stop())
        .await
        .expect("the server stops within 30 s")
        .expect("the server stops cleanly");
}

/// curl with an oversized upload. The server answers 413 as soon as the body
/// passes the limit and closes the connection; a client still uploading may
/// then fail its send (curl 55) or lose the answer to the reset before reading
/// it. An answer curl did read counts even when the send failed after it; an
/// attempt that read no answer at all is tried again (at most 5 times).
fn curl_oversized(args: &[&str]) -> (u16, Value) {
    let mut failures = Vec::new();
    for _ in 0..5 {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "60", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .expect("curl (apt curl) is needed");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "000"));
        if let (Ok(code), Ok(json)) = (code.trim().parse::<u16>(), serde_json::from_str(body))
            && code != 0
        {
            return (code, json);
        }
        failures.push(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    panic!("curl {args:?} read no answer in 5 attempts: {failures:?}");
}
