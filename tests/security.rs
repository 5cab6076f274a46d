//! Bearer-token authentication on gRPC and REST (health, reflection, Swagger
//! and /metrics stay open), and no secret in the logs of a full run at debug
//! level (which do hold DEBUG lines, ours and the S3 client's), nor in the
//! error responses and logs of a failed Milvus login and a failed S3 login:
//! Milvus password, S3 secret keys and the token never appear. The real
//! binary, the real Milvus 2.3.5 and S3; the failed logins against
//! stand-ins that refuse them as Milvus and S3 do (the test environment's
//! Milvus has authentication off, and moto accepts any key).

mod common;
#[path = "common/figures.rs"]
mod figures;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::data::{self, Spec};
use common::flows;
use milvus_backup::api::proto as pb;
use milvus_backup::api::proto::backup_service_client::BackupServiceClient;
use tonic::Code;
use tonic::transport::Channel;

const TOKEN: &str = "TokenSecret-7f3a91";
const MILVUS_PASSWORD: &str = "MilvusSecretPw-51c2";
const S3_SECRET: &str = "S3SecretKey-a8d4e0";

fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.to_string(), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_required_and_no_secret_in_the_logs() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("secure_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..100, 121).await;

    let dir = std::env::temp_dir().join(common::unique("security"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = write_config(
        &dir,
        "backup",
        (&cfg.milvus.address, cfg.milvus.port),
        (&cfg.minio.address, cfg.minio.port, "minioadmin"),
        &cfg,
    );
    let (child, url, channel) = start(&config, &dir.join("server.log")).await;

    // Without a token: UNAUTHENTICATED; health and reflection stay open.
    let mut anonymous = BackupServiceClient::new(channel.clone());
    let err = anonymous.check(pb::CheckRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health is open");
    let wrong = format!("Bearer {TOKEN}x");
    let mut wrong_client =
        BackupServiceClient::with_interceptor(channel.clone(), move |mut r: tonic::Request<()>| {
            r.metadata_mut()
                .insert("authorization", wrong.parse().unwrap());
            Ok(r)
        });
    assert_eq!(
        wrong_client
            .check(pb::CheckRequest {})
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );

    // With it: a whole backup and restore.
    let bearer = format!("Bearer {TOKEN}");
    let mut client =
        BackupServiceClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
            r.metadata_mut()
                .insert("authorization", bearer.parse().unwrap());
            Ok(r)
        });
    client
        .check(pb::CheckRequest {})
        .await
        .expect("check with the token");
    let name = common::unique("secure");
    let s = client
        .create_backup(flows::backup_request(&name, &[&spec.name]))
        .await
        .unwrap()
        .into_inner();
    let backup = flows::last_backup(s).await;
    assert_eq!(backup.state, pb::JobState::Succeeded as i32);
    let s = client
        .restore(pb::RestoreRequest {
            backup_name: name.clone(),
            collection_suffix: "_sec".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let restore = flows::last_restore(s).await;
    assert_eq!(restore.state, pb::JobState::Succeeded as i32);

    // REST: 401 without, 200 with; docs and metrics open.
    let (code, body) = tokio::task::block_in_place(|| curl(&[&format!("{url}/api/v1/list")]));
    assert_eq!(code, "401", "{body}");
    let (code, _) = tokio::task::block_in_place(|| {
        curl(&[
            "-H",
            &format!("Authorization: Bearer {TOKEN}"),
            &format!("{url}/api/v1/list"),
        ])
    });
    assert_eq!(code, "200");
    // The scheme's name in any case (RFC 7235; 401 "missing bearer token" before).
    let (code, body) = tokio::task::block_in_place(|| {
        curl(&[
            "-H",
            &format!("authorization: bearer {TOKEN}"),
            &format!("{url}/api/v1/list"),
        ])
    });
    assert_eq!(code, "200", "{body}");
    let (code, _) =
        tokio::task::block_in_place(|| curl(&[&format!("{url}/api/v1/docs/index.html")]));
    assert_eq!(code, "200");
    let (code, _) = tokio::task::block_in_place(|| curl(&[&format!("{url}/metrics")]));
    assert_eq!(code, "200");
    // The Go tool's liveness answer, open like health (404 before).
    let (code, body) = tokio::task::block_in_place(|| curl(&[&format!("{url}/api/v1/hello")]));
    assert_eq!(
        (code.as_str(), body.as_str()),
        ("200", "Hello, This is backup service")
    );

    // Failed logins: every error response and log line is free of secrets.
    let failed = failed_logins(&cfg, &dir).await;

    // Stop, then read every log line.
    let log = stop(child, &dir.join("server.log"));
    assert!(
        log.contains("backup succeeded") && log.lines().count() > 10,
        "the log is too thin to judge:\n{log}"
    );
    let debug = assert_debug_lines("the full run", &log);
    assert_no_secret("the full run's log", &log);
    figures::publish(
        "security",
        &[
            format!(
                "a full run at debug level: {} log lines ({debug} DEBUG) free of secrets",
                log.lines().count()
            ),
            failed,
        ],
    );
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    data::drop_if_exists(&m, &spec.db, &format!("{}_sec", spec.name)).await;
    let _ = std::fs::remove_dir_all(dir);
}

/// The base64 of `root:{MILVUS_PASSWORD}`, as Milvus's authorization metadata carries it.
fn milvus_basic() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("root:{MILVUS_PASSWORD}"))
}

/// Asserts that `text` holds none of the secrets.
fn assert_no_secret(what: &str, text: &str) {
    for secret in [TOKEN, MILVUS_PASSWORD, S3_SECRET, &milvus_basic()] {
        assert!(
            !text.contains(secret),
            "{what}: a secret is in it: {secret}"
        );
    }
}

/// Asserts that the JSON log holds DEBUG lines, ours and the S3 client's
/// (where a request's signing would show); how many.
fn assert_debug_lines(what: &str, log: &str) -> usize {
    let debug: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["level"] == "DEBUG")
        .collect();
    let from = |prefix: &str| {
        debug
            .iter()
            .filter(|v| v["target"].as_str().is_some_and(|t| t.starts_with(prefix)))
            .count()
    };
    assert!(
        from("milvus_backup") > 0 && from("aws") > 0,
        "{what}: the log must hold DEBUG lines of ours and of the S3 client: {} DEBUG lines, \
         {} ours, {} aws",
        debug.len(),
        from("milvus_backup"),
        from("aws")
    );
    debug.len()
}

/// A config file in `dir` (`{name}.yaml`) with the secrets: Milvus at
/// `milvus` as root with the password (sent on every call, which the test
/// environment's Milvus ignores), S3 at `s3` with the secret key.
fn write_config(
    dir: &Path,
    name: &str,
    milvus: (&str, u16),
    s3: (&str, u16, &str),
    cfg: &milvus_backup::config::Config,
) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "milvus:\n  address: {}\n  port: {}\n  user: root\n  password: {MILVUS_PASSWORD}\n  authorizationEnabled: true\n\
             minio:\n  address: {}\n  port: {}\n  accessKeyID: {}\n  secretAccessKey: {S3_SECRET}\n  \
             bucketName: {}\n  rootPath: {}\n  backupBucketName: {}\n\
             backup:\n  stateDir: {}\nsecurity:\n  token: {TOKEN}\n",
            milvus.0,
            milvus.1,
            s3.0,
            s3.1,
            s3.2,
            cfg.minio.bucket_name,
            cfg.minio.root_path,
            cfg.minio.bucket_name,
            dir.join(format!("{name}-state")).display()
        ),
    )
    .unwrap();
    path
}

/// A server process; SIGKILLed if dropped before [`stop`] (when the test fails).
struct Server(Option<Child>);

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts the binary on `config` at debug level with JSON logs into `log`.
async fn start(config: &Path, log: &Path) -> (Server, String, Channel) {
    let port = common::process::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_milvus-backup"))
        .arg("--config")
        .arg(config)
        .args([
            "--log-format",
            "json",
            "server",
            "--address",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .env("RUST_LOG", "debug")
        .stderr(std::fs::File::create(log).unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let child = Server(Some(child));
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let channel = loop {
        if let Ok(c) = Channel::from_shared(url.clone()).unwrap().connect().await {
            break c;
        }
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    (child, url, channel)
}

/// SIGTERM, wait, and the log.
fn stop(mut server: Server, log: &Path) -> String {
    let mut child = server.0.take().expect("running");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let _ = child.wait();
    std::fs::read_to_string(log).unwrap()
}

/// Headers a stand-in was sent (`authorization`).
type Seen = Arc<Mutex<Vec<String>>>;

/// Serves `app` (HTTP/1 and HTTP/2) on 127.0.0.1; its port.
async fn serve(app: axum::Router) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

/// A stand-in that records the `authorization` header of every request and
/// answers each with `answer()`; its port and what it was sent.
async fn stand_in<R>(answer: fn() -> R) -> (u16, Seen)
where
    R: axum::response::IntoResponse + Send + 'static,
{
    let seen: Seen = Arc::default();
    let kept = seen.clone();
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let kept = kept.clone();
        async move {
            if let Some(a) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
                kept.lock().unwrap().push(a.to_string());
            }
            answer()
        }
    });
    (serve(app).await, seen)
}

/// A stand-in for Milvus 2.3 with authentication on, given a wrong
/// password: every call is answered UNAUTHENTICATED with Milvus's message.
async fn milvus_refusing_logins() -> (u16, Seen) {
    stand_in(|| {
    (
        [
            ("content-type", "application/grpc"),
            ("grpc-status", "16"),
            (
                "grpc-message",
                "auth%20check%20failure%2C%20please%20check%20username%20and%20password%20are%20correct",
            ),
        ],
        "",
    )
    })
    .await
}

/// A stand-in for S3 refusing the key, as S3 answers a wrong secret:
/// 403 SignatureDoesNotMatch to every request.
async fn s3_refusing_logins() -> (u16, Seen) {
    stand_in(|| {
        (
            axum::http::StatusCode::FORBIDDEN,
            [("content-type", "application/xml")],
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SignatureDoesNotMatch</Code>\
         <Message>The request signature we calculated does not match the signature you \
         provided. Check your key and signing method.</Message>\
         <AWSAccessKeyId>AKIDFAILEDLOGIN</AWSAccessKeyId><RequestId>stand-in</RequestId></Error>",
        )
    })
    .await
}

/// A server whose Milvus login fails and one whose S3 login fails: Check and
/// CreateBackup over gRPC and REST answer with the failure, and neither the
/// answers nor the logs hold a secret. A summary.
async fn failed_logins(cfg: &milvus_backup::config::Config, dir: &Path) -> String {
    let (milvus_port, milvus_seen) = milvus_refusing_logins().await;
    let (s3_port, s3_seen) = s3_refusing_logins().await;
    let cases = [
        (
            "failed Milvus login",
            write_config(
                dir,
                "bad-milvus",
                ("127.0.0.1", milvus_port),
                (&cfg.minio.address, cfg.minio.port, "minioadmin"),
                cfg,
            ),
            // What Check and CreateBackup answer: Milvus's refusal.
            ["auth check failure", "auth check failure"],
        ),
        (
            "failed S3 login",
            write_config(
                dir,
                "bad-s3",
                (&cfg.milvus.address, cfg.milvus.port),
                ("127.0.0.1", s3_port, "AKIDFAILEDLOGIN"),
                cfg,
            ),
            // Check's HeadBucket gets a 403 without a body (as from S3);
            // CreateBackup's listing gets S3's refusal.
            ["HeadBucket", "SignatureDoesNotMatch"],
        ),
    ];
    let mut answers = 0;
    let mut log_lines = 0;
    for (what, config, [check_fails, create_fails]) in cases {
        let log_path = config.with_extension("log");
        let (child, url, channel) = start(&config, &log_path).await;
        let bearer = format!("Bearer {TOKEN}");
        let mut client =
            BackupServiceClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
                r.metadata_mut()
                    .insert("authorization", bearer.parse().unwrap());
                Ok(r)
            });
        let mut responses: Vec<(&str, String)> = Vec::new();
        let err = client
            .check(pb::CheckRequest {})
            .await
            .expect_err("Check fails");
        responses.push(("gRPC Check", format!("{err:?} {}", err.message())));
        let create = client
            .create_backup(pb::CreateBackupRequest {
                backup_name: common::unique("never"),
                collection_names: vec!["c".into()],
                ..Default::default()
            })
            .await;
        let text = match create {
            Err(e) => format!("{e:?} {}", e.message()),
            Ok(s) => {
                let mut s = s.into_inner();
                let mut last = String::new();
                while let Ok(Some(msg)) = s.message().await {
                    last = format!("{msg:?}");
                }
                last
            }
        };
        responses.push(("gRPC CreateBackup", text));
        for (method, path, body) in [
            ("GET", "/api/v1/check", None),
            (
                "POST",
                "/api/v1/create",
                Some(r#"{"backup_name": "never_rest", "collection_names": ["c"]}"#),
            ),
        ] {
            let mut args = vec![
                "-X".to_string(),
                method.to_string(),
                "-H".to_string(),
                format!("Authorization: Bearer {TOKEN}"),
            ];
            if let Some(b) = body {
                args.extend(["-H".into(), "Content-Type: application/json".into()]);
                args.extend(["--data-binary".into(), b.into()]);
            }
            args.push(format!("{url}{path}"));
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let (code, text) = tokio::task::block_in_place(|| curl(&refs));
            assert_ne!(code, "200", "{what}: REST {path}: {text}");
            responses.push((path, format!("{code} {text}")));
        }
        for (kind, text) in &responses {
            assert_no_secret(&format!("{what}: {kind} answer"), text);
        }
        if what == "failed S3 login" {
            // S3 refusing the keys is PERMISSION_DENIED, as Azure and GCS are.
            assert!(
                responses[0].1.contains("PermissionDenied"),
                "{what}: {}",
                responses[0].1
            );
        }
        // The answers are the failure itself, not something else.
        for ((kind, text), failure) in
            responses
                .iter()
                .zip([check_fails, create_fails, check_fails, create_fails])
        {
            assert!(
                text.contains(failure),
                "{what}: the {kind} answer names {failure:?}: {text}"
            );
        }
        let log = stop(child, &log_path);
        assert_debug_lines(what, &log);
        assert_no_secret(&format!("{what}: log"), &log);
        answers += responses.len();
        log_lines += log.lines().count();
    }
    // The logins were tried with the secrets.
    assert!(
        milvus_seen
            .lock()
            .unwrap()
            .iter()
            .any(|a| a.contains(&milvus_basic())),
        "the Milvus stand-in was sent the password: {:?}",
        milvus_seen.lock().unwrap()
    );
    assert!(
        s3_seen
            .lock()
            .unwrap()
            .iter()
            .any(|a| a.contains("Credential=AKIDFAILEDLOGIN/")),
        "the S3 stand-in was sent signed requests: {:?}",
        s3_seen.lock().unwrap()
    );
    format!(
        "failed Milvus and S3 logins: {answers} error answers and {log_lines} log lines free of secrets"
    )
}

/// A token that no `authorization` header can carry (a Secret made from a
/// file ends with a newline) stops the server at start, naming the variable
/// and never the token. (Before, the server started, and every call was
/// refused "wrong bearer token": no client could ever log in.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_with_a_line_break_is_refused_at_start_naming_its_variable() {
    let cfg = common::config();
    let dir = std::env::temp_dir().join(common::unique("security_nl"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = write_config(
        &dir,
        "backup",
        (&cfg.milvus.address, cfg.milvus.port),
        (&cfg.minio.address, cfg.minio.port, "minioadmin"),
        &cfg,
    );
    let port = common::process::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_milvus-backup"))
        .arg("--config")
        .arg(&config)
        .args(["server", "--address", "127.0.0.1", "-p", &port.to_string()])
        .env("MILVUS_BACKUP_TOKEN", format!("{TOKEN}\n"))
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the server started with a token no client can send");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("MILVUS_BACKUP_TOKEN") && !stderr.contains(TOKEN),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
