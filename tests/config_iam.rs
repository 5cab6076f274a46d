//! `minio.useIAM: true` takes the credentials from the AWS default chain, for
//! real: the web-identity path (EKS IRSA) exchanges a token file for
//! temporary credentials at STS (moto's `AssumeRoleWithWebIdentity`, on the
//! test environment's S3 port), `iamEndpoint` points the instance-metadata
//! step at a fake IMDS, and `milvus-backup check` reaches Milvus and the
//! bucket with them. Without useIAM the config's keys (and `minio.token`)
//! sign the requests.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(common::unique("config-iam"));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The test environment's config, with `extra` lines under `minio:`.
fn config(dir: &Path, minio_extra: &str) -> PathBuf {
    let cfg = common::config();
    let yaml = format!(
        "milvus:\n  address: {}\n  port: {}\n\
         minio:\n  address: {}\n  port: {}\n  bucketName: {}\n  rootPath: {}\n  \
         backupBucketName: {}\n  backupRootPath: backup\n{minio_extra}",
        cfg.milvus.address,
        cfg.milvus.port,
        cfg.minio.address,
        cfg.minio.port,
        cfg.minio.bucket_name,
        cfg.minio.root_path,
        cfg.minio.bucket_name,
    );
    let path = dir.join(format!("{}.yaml", common::unique("backup")));
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Runs `check` with an environment cleared of the machine's AWS settings.
fn check(config: &Path, env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_milvus-backup"));
    cmd.arg("--config").arg(config).arg("check");
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_STS",
        "MINIO_ACCESS_KEY",
        "MINIO_SECRET_KEY",
        "MINIO_TOKEN",
        "MINIO_USE_IAM",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("AWS_CONFIG_FILE", "/nonexistent/aws-config").env(
        "AWS_SHARED_CREDENTIALS_FILE",
        "/nonexistent/aws-credentials",
    );
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line {prefix:?} in {out}"))
}

/// A minimal EC2 instance metadata service (IMDSv2) giving one role's
/// credentials, for as long as the test runs; returns the requests it saw.
fn fake_imds() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            reader.read_line(&mut first).unwrap();
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap() == 0 || header == "\r\n" {
                    break;
                }
            }
            let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
            log.lock().unwrap().push(format!(
                "{} {path}",
                first.split_whitespace().next().unwrap_or("")
            ));
            let body = match path.as_str() {
                "/latest/api/token" => "fake-imds-token".to_string(),
                "/latest/meta-data/iam/security-credentials/" => "milvus-node-role".to_string(),
                "/latest/meta-data/iam/security-credentials/milvus-node-role" => {
                    r#"{"Code":"Success","LastUpdated":"2026-01-01T00:00:00Z","Type":"AWS-HMAC",
                    "AccessKeyId":"ASIAFAKEIMDSCRED0001","SecretAccessKey":"imds-secret",
                    "Token":"imds-session-token","Expiration":"2099-01-01T00:00:00Z"}"#
                        .to_string()
                }
                _ => {
                    let _ = stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    );
                    continue;
                }
            };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-aws-ec2-metadata-token-ttl-seconds: 21600\r\n\
                 connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, seen)
}

#[test]
fn use_iam_takes_credentials_from_the_aws_default_chain() {
    let env = common::config();
    let s3 = format!("http://{}:{}", env.minio.address, env.minio.port);
    let d = dir();

    // Without useIAM: the config's keys, long-term; with minio.token, temporary.
    let out = check(
        &config(
            &d,
            "  accessKeyID: minioadmin\n  secretAccessKey: minioadmin\n",
        ),
        &[],
    );
    let text = show(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        line(&text, "Milvus storage credentials:")
            .contains("mini…dmin (long-term) from the config"),
        "{text}"
    );
    let out = check(
        &config(
            &d,
            "  accessKeyID: minioadmin\n  secretAccessKey: minioadmin\n",
        ),
        &[("MINIO_TOKEN", "a-session-token".into())],
    );
    let text = show(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        line(&text, "Milvus storage credentials:").contains("(temporary) from the config"),
        "{text}"
    );

    // useIAM with a web identity: STS (moto) exchanges the token file for
    // temporary credentials, which reach the bucket; the config has no keys.
    let token_file = d.join("token");
    std::fs::write(
        &token_file,
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJtaWx2dXMtYmFja3VwIn0.c2ln",
    )
    .unwrap();
    let irsa = vec![
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            token_file.display().to_string(),
        ),
        (
            "AWS_ROLE_ARN",
            "arn:aws:iam::123456789012:role/milvus-backup".to_string(),
        ),
        ("AWS_ROLE_SESSION_NAME", "milvus-backup-test".to_string()),
        ("AWS_ENDPOINT_URL_STS", s3.clone()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
    ];
    let iam = config(
        &d,
        "  useIAM: true\n  accessKeyID: \"\"\n  secretAccessKey: \"\"\n",
    );
    let out = check(&iam, &irsa);
    let text = show(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("Succeed to connect to milvus and storage"),
        "{text}"
    );
    for which in ["Milvus storage credentials:", "Backup storage credentials:"] {
        let l = line(&text, which);
        assert!(
            l.contains("access key ASIA") && l.contains("(temporary)"),
            "STS credentials: {l}"
        );
        assert!(
            l.contains("AWS default credential chain (minio.useIAM)"),
            "{l}"
        );
    }
    // The variable turns it on as well.
    let out = check(
        &config(&d, "  accessKeyID: \"\"\n  secretAccessKey: \"\"\n"),
        &[irsa.clone(), vec![("MINIO_USE_IAM", "true".to_string())]].concat(),
    );
    assert!(
        line(&show(&out), "Milvus storage credentials:").contains("ASIA"),
        "{}",
        show(&out)
    );

    // STS unreachable: the failure names the key that asked for the chain.
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let mut broken = irsa.clone();
    broken.retain(|(k, _)| *k != "AWS_ENDPOINT_URL_STS");
    broken.push(("AWS_ENDPOINT_URL_STS", dead_url));
    let out = check(&iam, &broken);
    let text = show(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("minio.useIAM is true"), "{text}");

    // No web identity: the last step asks the instance metadata service, at
    // minio.iamEndpoint.
    let (imds, seen) = fake_imds();
    let out = check(
        &config(
            &d,
            &format!(
                "  useIAM: true\n  iamEndpoint: {imds}\n  accessKeyID: \"\"\n  secretAccessKey: \"\"\n"
            ),
        ),
        &[("AWS_REGION", "us-east-1".to_string())],
    );
    let text = show(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        line(&text, "Milvus storage credentials:").contains("ASIA…0001 (temporary)"),
        "{text}"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen[..3],
        [
            "PUT /latest/api/token",
            "GET /latest/meta-data/iam/security-credentials/",
            "GET /latest/meta-data/iam/security-credentials/milvus-node-role"
        ],
        "{text}"
    );
}
