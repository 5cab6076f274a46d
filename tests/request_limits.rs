//! Oversized requests and the REST edges, against our real server on
//! 127.0.0.1:0 (over the real Milvus 2.3.5 and S3 of the test environment),
//! driven by raw sockets, curl and tonic:
//! - a 10 MB REST body answers 413 with the envelope (with and without a
//!   length, with and without `Expect: 100-continue`);
//! - unknown paths answer 404, wrong methods 405, `get_restore` without an id
//!   400, all with the envelope; gRPC (service, health, reflection, unknown
//!   methods), `/metrics` and the docs keep working;
//! - gRPC messages over the limit fail with OUT_OF_RANGE, both ways; ones over
//!   tonic's default 4 MiB but under ours go through.

mod common;

use common::curl::json as curl;
use common::wire::{assert_envelope, header, http, read_response, start, stop};
use milvus_backup::api::ServerLimits;
use milvus_backup::api::proto as pb;
use milvus_backup::api::proto::backup_service_client::BackupServiceClient;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tonic::Code;

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
    common::connect(addr)
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
    let mut client = common::connect(server.addr).await;
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
    let mut client = common::connect(addr).await;
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
