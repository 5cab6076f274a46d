//! Bearer-token authentication on gRPC and REST (health, reflection, Swagger
//! and /metrics stay open), and no secret in the logs of a full run at debug
//! level: Milvus password, S3 secret keys and the token never appear. The real
//! binary, the real Milvus 2.3.5 and S3.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::data::{self, Spec};
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
    let config = dir.join("backup.yaml");
    std::fs::write(
        &config,
        format!(
            "milvus:\n  address: {}\n  port: {}\n  user: root\n  password: {MILVUS_PASSWORD}\n\
             minio:\n  address: {}\n  port: {}\n  accessKeyID: minioadmin\n  secretAccessKey: {S3_SECRET}\n  \
             bucketName: {}\n  rootPath: {}\n  backupBucketName: {}\n\
             backup:\n  stateDir: {}\nsecurity:\n  token: {TOKEN}\n",
            cfg.milvus.address, cfg.milvus.port, cfg.minio.address, cfg.minio.port,
            cfg.minio.bucket_name, cfg.minio.root_path, cfg.minio.bucket_name, dir.join("state").display()
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_milvus-backup"))
        .arg("--config")
        .arg(&config)
        .args(["--log-format", "json", "server", "-p", &port.to_string()])
        .env("RUST_LOG", "debug")
        .stderr(std::fs::File::create(dir.join("server.log")).unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let channel = loop {
        if let Ok(c) = Channel::from_shared(url.clone()).unwrap().connect().await {
            break c;
        }
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

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
    let mut s = client
        .create_backup(pb::CreateBackupRequest {
            backup_name: name.clone(),
            collection_names: vec![spec.name.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(msg) = s.message().await.unwrap() {
        last = msg.backup;
    }
    assert_eq!(last.unwrap().state, pb::JobState::Succeeded as i32);
    let mut s = client
        .restore(pb::RestoreRequest {
            backup_name: name.clone(),
            collection_suffix: "_sec".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(msg) = s.message().await.unwrap() {
        last = msg.restore;
    }
    assert_eq!(last.unwrap().state, pb::JobState::Succeeded as i32);

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
    let (code, _) =
        tokio::task::block_in_place(|| curl(&[&format!("{url}/api/v1/docs/index.html")]));
    assert_eq!(code, "200");
    let (code, _) = tokio::task::block_in_place(|| curl(&[&format!("{url}/metrics")]));
    assert_eq!(code, "200");

    // Stop, then read every log line.
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let _ = child.wait();
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap();
    assert!(
        log.contains("backup succeeded") && log.lines().count() > 10,
        "the log is too thin to judge:\n{log}"
    );
    let basic = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("root:{MILVUS_PASSWORD}"))
    };
    for secret in [TOKEN, MILVUS_PASSWORD, S3_SECRET, &basic] {
        assert!(!log.contains(secret), "a secret is in the log: {secret}");
    }
    println!("log lines checked for secrets: {}", log.lines().count());
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    data::drop_if_exists(&m, &spec.db, &format!("{}_sec", spec.name)).await;
    let _ = std::fs::remove_dir_all(dir);
}
