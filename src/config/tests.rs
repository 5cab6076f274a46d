//! Unit tests of the configuration.

use super::*;

#[test]
fn reads_go_tool_keys() {
    let cfg = Config::parse(
        "milvus:\n  address: 10.0.0.1\n  port: 19531\n  user: u\n  password: p\n\
         minio:\n  address: s3.local\n  port: 9100\n  accessKeyID: ak\n  secretAccessKey: sk\n  \
         useSSL: true\n  bucketName: mb\n  rootPath: /files/\n  backupBucketName: bb\n  \
         backupRootPath: backups\n\
         backup:\n  parallelism:\n    copydata: 7\n",
    )
    .unwrap();
    assert_eq!(cfg.milvus.url(), "http://10.0.0.1:19531");
    let m = cfg.minio.milvus_bucket().unwrap();
    assert_eq!(m.endpoint, "https://s3.local:9100");
    assert_eq!(m.root_path, "files");
    let b = cfg.minio.backup_bucket().unwrap();
    assert_eq!((b.bucket.as_str(), b.root_path.as_str()), ("bb", "backups"));
    assert_eq!(b.endpoint, m.endpoint);
    assert_eq!(cfg.backup.parallelism.copydata, 7);
}

#[test]
fn never_prints_secrets() {
    let cfg = Config::parse("milvus:\n  password: hunter2\n").unwrap();
    assert!(!format!("{cfg:?}").contains("hunter2"));
}

#[test]
fn environment_overrides_the_file() {
    let mut cfg = Config::parse("milvus:\n  address: file-host\n").unwrap();
    let env: std::collections::HashMap<&str, &str> = [
        ("MILVUS_ADDRESS", "env-host"),
        ("MILVUS_PORT", "19999"),
        ("MINIO_BUCKET_NAME", "env-bucket"),
        ("MINIO_USE_SSL", "true"),
        ("MINIO_BACKUP_ROOT_PATH", ""),
    ]
    .into();
    cfg.apply_env(|k| env.get(k).map(|v| v.to_string()))
        .unwrap();
    assert_eq!(cfg.milvus.url(), "http://env-host:19999");
    assert_eq!(cfg.minio.bucket_name, "env-bucket");
    assert!(cfg.minio.use_ssl);
    assert_eq!(
        cfg.minio.backup_root_path, "backup",
        "empty variables are ignored"
    );
    let err = cfg
        .apply_env(|k| (k == "MILVUS_PORT").then(|| "lots".to_string()))
        .unwrap_err();
    assert!(err.to_string().contains("MILVUS_PORT"), "{err}");
}

#[test]
fn unknown_keys_are_refused_with_key_and_line() {
    let err = Config::parse("milvus:\n  address: x\n  adress: y\n").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("adress") && msg.contains("line 3"), "{msg}");
}

#[test]
fn ports_may_be_strings() {
    let cfg = Config::parse("minio:\n  port: \"9100\"\n").unwrap();
    assert_eq!(cfg.minio.port, 9100);
}

#[test]
fn the_shipped_config_loads() {
    let text = include_str!("../../configs/backup.yaml");
    Config::parse(text).unwrap();
}

#[test]
fn wrong_type_names_the_line() {
    let err = Config::parse("milvus:\n  port: notaport\n").unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
}

#[test]
fn tls_settings_are_checked_together() {
    let err = Config::parse("security:\n  tls:\n    certPath: /x.pem\n").unwrap_err();
    assert!(err.to_string().contains("keyPath"), "{err}");
    let err = Config::parse("milvus:\n  tlsMode: 3\n").unwrap_err();
    assert!(err.to_string().contains("tlsMode 3"), "{err}");
    let err = Config::parse("milvus:\n  tlsMode: 2\n").unwrap_err();
    assert!(err.to_string().contains("mtlsCertPath"), "{err}");
    let cfg =
        Config::parse("backup:\n  rateLimitMiBps: 12.5\nminio:\n  multipartCopyThresholdMiB: 64\n")
            .unwrap();
    assert_eq!(cfg.backup.rate_limit_mi_bps, 12.5);
    assert_eq!(
        cfg.minio.milvus_bucket().unwrap().multipart_copy_threshold,
        64 << 20
    );
}

#[test]
fn the_segment_group_size_is_read_with_the_go_tools_units() {
    let size = |v: &str| Config::parse(&format!("backup:\n  maxSegmentGroupSize: {v}\n"));
    assert_eq!(
        Config::parse("")
            .unwrap()
            .backup
            .segment_group_bytes()
            .unwrap(),
        2 << 30
    );
    for (text, bytes) in [
        ("4G", 4u64 << 30),
        ("512mb", 512 << 20),
        ("64k", 64 << 10),
        ("100", 100),
    ] {
        assert_eq!(
            size(text).unwrap().backup.segment_group_bytes().unwrap(),
            bytes,
            "{text}"
        );
    }
    for bad in ["0", "2T", "lots", "-1G", "99999999999G"] {
        let err = size(bad).unwrap_err().to_string();
        assert!(
            err.contains("backup.maxSegmentGroupSize") && err.contains(bad),
            "{err}"
        );
    }
}

#[test]
fn server_limits_have_defaults_and_are_read() {
    let cfg = Config::parse("").unwrap();
    assert_eq!(cfg.http.header_read_timeout_seconds, 10);
    assert_eq!(cfg.http.idle_timeout_seconds, 300);
    assert_eq!(cfg.http.max_connections, 1024);
    assert_eq!(cfg.http.max_rest_body_bytes, 1 << 20);
    assert_eq!(cfg.http.max_grpc_message_bytes, 16 << 20);
    // The shipped file documents the defaults.
    let shipped = Config::parse(include_str!("../../configs/backup.yaml")).unwrap();
    assert_eq!(format!("{:?}", shipped.http), format!("{:?}", cfg.http));
    let cfg = Config::parse(
        "http:\n  simpleResponse: true\n  headerReadTimeoutSeconds: 3\n  idleTimeoutSeconds: 60\n  \
         maxConnections: 10\n  maxRestBodyBytes: 2048\n  maxGrpcMessageBytes: 4096\n",
    )
    .unwrap();
    assert_eq!(
        (
            cfg.http.header_read_timeout_seconds,
            cfg.http.idle_timeout_seconds,
            cfg.http.max_connections,
            cfg.http.max_rest_body_bytes,
            cfg.http.max_grpc_message_bytes
        ),
        (3, 60, 10, 2048, 4096)
    );
}

#[test]
fn server_limits_refuse_zero_and_negative_values_naming_the_key() {
    for key in [
        "headerReadTimeoutSeconds",
        "idleTimeoutSeconds",
        "maxConnections",
        "maxRestBodyBytes",
        "maxGrpcMessageBytes",
    ] {
        let err = Config::parse(&format!("http:\n  {key}: 0\n")).unwrap_err();
        assert!(err.to_string().contains(&format!("http.{key}")), "{err}");
        let err = Config::parse(&format!("http:\n  {key}: -5\n")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(key) && msg.contains("line 2"), "{msg}");
    }
    let err = Config::parse("http:\n  headerReadTimeoutSeconds: 99999999999\n").unwrap_err();
    assert!(err.to_string().contains("at most"), "{err}");
    let err = Config::parse("http:\n  maxConections: 5\n").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("maxConections") && msg.contains("line 2"),
        "{msg}"
    );
}

#[test]
fn backup_root_must_be_its_own_folder() {
    let with = |milvus_root: &str, backup_root: &str, other_bucket: &str| {
        Config::parse(&format!(
            "minio:\n  bucketName: b\n  rootPath: {milvus_root:?}\n  backupRootPath: {backup_root:?}\n  backupBucketName: {other_bucket:?}\n"
        ))
    };
    let err = with("files", "", "").unwrap_err().to_string();
    assert!(
        err.contains("minio.backupRootPath must not be empty"),
        "{err}"
    );
    for (m, b) in [
        ("files", "files"),
        ("files", "files/backup"),
        ("", "insert_log"),
        ("a/b", "a"),
    ] {
        let err = with(m, b, "").unwrap_err().to_string();
        assert!(
            err.contains("overlaps Milvus's minio.rootPath"),
            "{m} / {b}: {err}"
        );
        assert!(err.contains(&format!("{b:?}")), "names the value: {err}");
    }
    assert!(with("files", "backup", "").is_ok());
    assert!(with("files", "filesbackup", "").is_ok());
    assert!(with("", "backup", "").is_ok());
    // Another bucket may use any folder.
    assert!(with("files", "files", "other").is_ok());
}

#[test]
fn the_go_tools_newer_config_keys_load_with_warnings() {
    let cfg = Config::parse(
        "log:\n  file:\n    filename: \"logs/backup.log\"\n\
         minio:\n  crossStorage: \"false\"\n\
         backup:\n  parallelism:\n    backupSegment: 512\n",
    )
    .unwrap();
    assert!(!cfg.minio.cross_storage);
    let warned = cfg.check_keys().unwrap().join("\n");
    for key in ["log.file", "backup.parallelism.backupSegment"] {
        assert!(warned.contains(key), "{key}: {warned}");
    }
    assert!(
        Config::parse("minio:\n  crossStorage: \"TRUE\"\n")
            .unwrap()
            .minio
            .cross_storage
    );
    let err = Config::parse("minio:\n  crossStorage: \"maybe\"\n").unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
}

#[test]
fn numbers_that_would_be_quietly_changed_are_refused_naming_the_key() {
    for (yaml, key) in [
        ("backup:\n  maxJobs: 0\n", "backup.maxJobs"),
        (
            "backup:\n  parallelism:\n    backupCollection: 0\n",
            "backup.parallelism.backupCollection",
        ),
        (
            "minio:\n  multipartCopyThresholdMiB: 0\n",
            "minio.multipartCopyThresholdMiB",
        ),
        // Above S3's 5 GiB for one request: objects between would fail.
        (
            "minio:\n  multipartCopyThresholdMiB: 6000\n",
            "minio.multipartCopyThresholdMiB",
        ),
        ("backup:\n  rateLimitMiBps: -5\n", "backup.rateLimitMiBps"),
        ("backup:\n  rateLimitMiBps: .nan\n", "backup.rateLimitMiBps"),
        (
            "backup:\n  leaseTtlSeconds: 999999999\n",
            "backup.leaseTtlSeconds",
        ),
    ] {
        let err = Config::parse(yaml).unwrap_err();
        assert!(err.to_string().contains(key), "{yaml}: {err}");
    }
}

#[test]
fn backup_credentials_without_a_backup_address_are_warned_about() {
    let cfg = Config::parse(
        "minio:\n  accessKeyID: milvus\n  backupAccessKeyID: writer\n  backupRegion: eu-west-1\n",
    )
    .unwrap();
    let warned = cfg.check_keys().unwrap().join("\n");
    assert!(
        warned.contains("minio.backupAccessKeyID/minio.backupRegion")
            && warned.contains("minio.backupAddress is empty"),
        "{warned}"
    );
    let with_address = Config::parse(
        "minio:\n  accessKeyID: milvus\n  backupAddress: localhost\n  backupAccessKeyID: writer\n",
    )
    .unwrap();
    let warned = with_address.check_keys().unwrap().join("\n");
    assert!(!warned.contains("backupAccessKeyID"), "{warned}");
    // The Go tool's config repeats Milvus's values: nothing to say.
    let same = Config::parse(
        "minio:\n  backupAccessKeyID: minioadmin\n  backupSecretAccessKey: minioadmin\n  backupPort: 9000\n",
    )
    .unwrap();
    assert!(same.check_keys().unwrap().is_empty());
}

/// Backups on Azure beside Milvus on S3, with no `backupAddress`: the
/// account and key are the backup side's (no warning that they are unused),
/// and the endpoint is Azure's own (it was `https://acct.blob.:9000`).
#[test]
fn an_azure_backup_side_without_an_address_is_azure_itself() {
    let cfg = Config::parse(
        "minio:\n  storageType: minio\n  port: 9000\n  backupStorageType: azure\n  \
         backupAccessKeyID: acct\n  backupSecretAccessKey: a2V5\n  backupBucketName: c\n",
    )
    .unwrap();
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    let b = cfg.minio.backup_bucket().unwrap();
    match b.backend {
        Backend::Azure(a) => {
            assert_eq!(a.account, "acct");
            assert_eq!(a.blob_endpoint, "https://acct.blob.core.windows.net");
        }
        other => panic!("{other:?}"),
    }
}

/// Milvus's TLS keys without the TLS mode that uses them are warned about,
/// naming them (the connection is plain text): never silently dropped.
#[test]
fn milvus_tls_keys_without_their_tls_mode_are_warned_about() {
    let cfg = Config::parse(
        "milvus:\n  caCertPath: /ca.pem\n  mtlsCertPath: /c.pem\n  mtlsKeyPath: /k.pem\n",
    )
    .unwrap();
    let all = cfg.warnings.join("\n");
    assert!(all.contains("milvus.caCertPath"), "{all}");
    assert!(all.contains("milvus.mtlsCertPath"), "{all}");
    let one_way = Config::parse("milvus:\n  tlsMode: 1\n  caCertPath: /ca.pem\n").unwrap();
    assert!(one_way.warnings.is_empty(), "{:?}", one_way.warnings);
}

/// `backupUseSSL` unset follows `useSSL`, as the Go tool reads it; set, it
/// is the backup endpoint's own.
#[test]
fn backup_use_ssl_unset_follows_use_ssl() {
    let cfg =
        Config::parse("minio:\n  useSSL: true\n  port: 443\n  backupAddress: backup.example.com\n")
            .unwrap();
    let b = cfg.minio.backup_bucket().unwrap();
    assert_eq!(b.endpoint, "https://backup.example.com:443");
    let plain = Config::parse(
        "minio:\n  useSSL: true\n  port: 443\n  backupAddress: b.example.com\n  \
         backupUseSSL: false\n  backupPort: 9000\n",
    )
    .unwrap();
    assert_eq!(
        plain.minio.backup_bucket().unwrap().endpoint,
        "http://b.example.com:9000"
    );
}

/// A backup key file of its own is used for the backup bucket whatever the
/// address (it was used only with `backupAddress`: the backups then went
/// out with Milvus's key).
#[test]
fn a_backup_gcp_key_file_is_used_without_a_backup_address() {
    let cfg = Config::parse(
        "minio:\n  storageType: gcpnative\n  gcpCredentialJSON: /a.json\n  \
         bucketName: mb\n  backupBucketName: bk\n  backupGcpCredentialJSON: /b.json\n",
    )
    .unwrap();
    match cfg.minio.backup_bucket().unwrap().backend {
        Backend::Gcs(g) => assert_eq!(g.credential_json, "/b.json"),
        other => panic!("{other:?}"),
    }
    match cfg.minio.milvus_bucket().unwrap().backend {
        Backend::Gcs(g) => assert_eq!(g.credential_json, "/a.json"),
        other => panic!("{other:?}"),
    }
}

/// Without `backupBucketName`, backups go to `bucketName`, as with the Go
/// tool (they went to `a-bucket` before, made there by the first backup).
#[test]
fn backups_go_to_milvus_bucket_unless_another_is_named() {
    let cfg = Config::parse("minio:\n  bucketName: milvus-bucket\n").unwrap();
    assert_eq!(cfg.minio.backup_bucket().unwrap().bucket, "milvus-bucket");
    let cfg = Config::parse("minio:\n  bucketName: milvus-bucket\n  backupBucketName: backups\n")
        .unwrap();
    assert_eq!(cfg.minio.backup_bucket().unwrap().bucket, "backups");
    let cfg = Config::parse("minio:\n  rootPath: files\n").unwrap();
    assert_eq!(cfg.minio.backup_bucket().unwrap().bucket, "a-bucket");
}

#[test]
fn a_token_no_header_can_carry_is_refused_without_showing_it() {
    for token in ["|\n    s3cr3t\n", "\"s3cr3t \"", "\"s3c r3t\""] {
        let err = Config::parse(&format!("security:\n  token: {token}\n")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("security.token") && !msg.contains("s3c"),
            "{token:?}: {msg}"
        );
    }
    let cfg = Config::parse("security:\n  token: s3cr3t-TOKEN_1.2~\n").unwrap();
    assert_eq!(cfg.security.token.expose(), "s3cr3t-TOKEN_1.2~");
}

/// The backup side's bucket, IAM and cloud keys that nothing reads are
/// warned about, naming them: with local backups all of them, and
/// `backupIamEndpoint` without `backupUseIAM` whatever `backupAddress` says.
#[test]
fn backup_keys_nothing_reads_are_warned_about() {
    let local = Config::parse(
        "minio:\n  backupStorageType: local\n  backupBucketName: prod\n  backupUseIAM: true\n  \
         backupIamEndpoint: http://169.254.169.254\n  backupAzureConnectionString: x\n",
    )
    .unwrap();
    let warned = local.warnings.join("\n");
    for key in [
        "minio.backupBucketName",
        "minio.backupUseIAM",
        "minio.backupIamEndpoint",
        "minio.backupAzureConnectionString",
    ] {
        assert!(warned.contains(key), "{key}: {warned}");
    }
    let no_iam = Config::parse("minio:\n  backupIamEndpoint: http://169.254.169.254\n").unwrap();
    let warned = no_iam.warnings.join("\n");
    assert!(
        warned.contains("minio.backupIamEndpoint") && warned.contains("minio.backupUseIAM"),
        "{warned}"
    );
    let used = Config::parse(
        "minio:\n  backupUseIAM: true\n  backupIamEndpoint: http://169.254.169.254\n",
    )
    .unwrap();
    assert!(used.warnings.is_empty(), "{:?}", used.warnings);
}
