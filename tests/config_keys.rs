//! Every key of `configs/backup.yaml` and every documented environment
//! variable works, or is refused or warned about naming it; config errors say
//! what is wrong and where (file, key, line, column, or the variable).

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use milvus_backup::config::{Config, ENV_VARIABLES};

/// Writes `yaml` to a config file of its own.
fn file(yaml: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(common::unique("config-keys"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("backup.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

fn load(yaml: &str) -> Result<Config, String> {
    Config::load(&file(yaml)).map_err(|e| e.to_string())
}

/// Runs the binary with a config file and extra environment variables.
fn run(config: &PathBuf, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_milvus-backup"));
    cmd.arg("--config").arg(config).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.env_remove("RUST_LOG").output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The shipped file, with the test environment's addresses kept as they are.
fn shipped() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/backup.yaml")).unwrap()
}

#[test]
fn the_shipped_config_loads_without_a_warning() {
    let cfg = load(&shipped()).unwrap();
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
}

#[test]
fn keys_without_effect_are_warned_about_once_with_their_line() {
    let yaml = "\
log:
  level: info
  console: false
  file:
    rootPath: /var/log/milvus-backup
http:
  enabled: false
  debug_mode: true
cloud:
  address: https://api.cloud.zilliz.com
milvus:
  rpcChannelName: by-dev-replicate-msg
  user: admin
  password: secret
minio:
  crossStorage: true
  iamEndpoint: http://169.254.169.254
backup:
  maxSegmentGroupSize: 4G
  keepTempFiles: true
  parallelism:
    restoreCollection: 4
    importJob: 12
  gcPause:
    enable: true
    seconds: 7200
";
    let cfg = load(yaml).unwrap();
    let expect = [
        ("log.console", 3),
        ("log.file", 4),
        ("http.enabled", 7),
        ("http.debug_mode", 8),
        ("milvus.rpcChannelName", 12),
        ("milvus.user", 13),
        ("minio.crossStorage", 16),
        ("minio.iamEndpoint", 17),
        ("backup.keepTempFiles", 20),
        ("backup.parallelism.restoreCollection", 22),
        ("backup.parallelism.importJob", 23),
        ("backup.gcPause", 24),
    ];
    for (key, line) in expect {
        let hits: Vec<&String> = cfg
            .warnings
            .iter()
            .filter(|w| w.starts_with(&format!("{key} ")) || w.starts_with(&format!("{key}/")))
            .collect();
        assert_eq!(hits.len(), 1, "one warning for {key}: {:?}", cfg.warnings);
        assert!(hits[0].contains("no effect"), "{}", hits[0]);
        assert!(
            hits[0].contains(&format!("line {line})")),
            "{key}: {}",
            hits[0]
        );
    }
    assert!(
        cfg.warnings
            .iter()
            .any(|w| w.starts_with("cloud ") && w.contains("line 9)")),
        "{:?}",
        cfg.warnings
    );
    assert_eq!(cfg.warnings.len(), expect.len() + 1, "{:?}", cfg.warnings);

    // The binary logs them once each at start, also for the one-shot commands.
    let out = run(&file(yaml), &[], &["get", "-n", "no_such_backup"]);
    let err = stderr(&out);
    assert_eq!(
        err.matches("backup.keepTempFiles has no effect").count(),
        1,
        "{err}"
    );
}

/// The Go tool's variables for settings that do nothing here are warned
/// about as their keys are, naming the variable (they were dropped without a
/// word before); `"true"` as a string turns `gcPause` on, as in the Go tool.
/// `GCP_KEY_JSON` sets `minio.gcpCredentialJSON`: a missing key file is
/// refused naming it (the variable was dropped before, and the default
/// credentials used instead).
#[test]
fn the_go_tools_variables_without_effect_are_warned_about_naming_them() {
    let quiet = "milvus:\n  address: localhost\n";
    let env = [
        ("MILVUS_RPC_CHANNEL_NAME", "by-dev-replicate-msg"),
        // The Go tool's reading of a boolean: `t` is true (never refused).
        ("BACKUP_GC_PAUSE_ENABLE", "t"),
        ("MILVUSCONF", "/etc/milvus-backup/"),
    ];
    let out = run(&file(quiet), &env, &["get", "-n", "no_such_backup"]);
    let err = stderr(&out);
    for (key, var) in [
        ("milvus.rpcChannelName", "MILVUS_RPC_CHANNEL_NAME"),
        ("backup.gcPause", "BACKUP_GC_PAUSE_ENABLE"),
    ] {
        let line = err
            .lines()
            .find(|l| l.contains(&format!("{key} has no effect")))
            .unwrap_or_else(|| panic!("no warning for {key}: {err}"));
        assert!(line.contains(var), "{line}");
    }
    assert!(
        err.lines()
            .any(|l| l.contains("MILVUSCONF") && l.contains("no effect") && l.contains("--config")),
        "{err}"
    );
    let cfg = load("backup:\n  gcPause:\n    enable: \"true\"\n").unwrap();
    assert!(
        cfg.warnings
            .iter()
            .any(|w| w.starts_with("backup.gcPause ")),
        "{:?}",
        cfg.warnings
    );

    let gcs = "minio:\n  storageType: gcpnative\n  bucketName: b\n";
    let out = run(
        &file(gcs),
        &[("GCP_KEY_JSON", "/no/such/key.json")],
        &["get", "-n", "no_such_backup"],
    );
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("/no/such/key.json") && err.contains("gcpCredentialJSON"),
        "{err}"
    );
}

/// The backup side's connection keys are used only with `backupAddress` on
/// an S3-protocol service (or on Azure or GCS named apart from Milvus's
/// service): `backupStorageType: s3` beside `storageType: minio` without
/// `backupAddress` still goes to Milvus's endpoint with Milvus's
/// credentials, and local backups use no connection; each says so, naming
/// the keys (before, both were silent).
#[test]
fn backup_connection_keys_that_are_not_used_are_warned_about() {
    let keys = "  backupAccessKeyID: AK\n  backupSecretAccessKey: SK\n  backupRegion: eu-west-1\n";
    for (yaml, named, why) in [
        (
            format!("minio:\n  storageType: minio\n  backupStorageType: s3\n{keys}"),
            "minio.backupAccessKeyID/minio.backupSecretAccessKey/minio.backupRegion ",
            "backupAddress is empty",
        ),
        (
            format!(
                "minio:\n  backupStorageType: local\n  backupRootPath: /tmp/b\n  \
                 backupAddress: s3.example.com\n{keys}"
            ),
            "minio.backupAddress/minio.backupAccessKeyID/",
            "backupStorageType is local",
        ),
    ] {
        let cfg = load(&yaml).unwrap();
        let hits: Vec<&String> = cfg
            .warnings
            .iter()
            .filter(|w| w.starts_with(named))
            .collect();
        assert_eq!(hits.len(), 1, "{yaml}: {:?}", cfg.warnings);
        assert!(
            hits[0].contains(why) && hits[0].contains("no effect"),
            "{}",
            hits[0]
        );
    }
    // Used: with backupAddress, and on Azure apart from Milvus's S3.
    for yaml in [
        format!("minio:\n  backupStorageType: s3\n  backupAddress: s3.example.com\n{keys}"),
        "minio:\n  backupStorageType: azure\n  backupAccessKeyID: acct\n  \
         backupSecretAccessKey: c2VjcmV0\n"
            .to_string(),
    ] {
        let cfg = load(&yaml).unwrap();
        assert!(cfg.warnings.is_empty(), "{yaml}: {:?}", cfg.warnings);
    }
}

/// Counts past what a server can honour are refused naming the key, not
/// left to overflow or to panic at start.
#[test]
fn counts_too_large_to_honour_are_refused_naming_the_key() {
    for (yaml, key) in [
        (
            "minio:\n  multipartCopyThresholdMiB: 17592186044416\n",
            "minio.multipartCopyThresholdMiB",
        ),
        (
            "backup:\n  parallelism:\n    copydata: 2305843009213693952\n",
            "backup.parallelism.copydata",
        ),
        (
            "backup:\n  maxJobs: 2305843009213693952\n",
            "backup.maxJobs",
        ),
    ] {
        let err = load(yaml).unwrap_err();
        assert!(
            err.contains(key) && err.contains("between 1 and"),
            "{yaml}: {err}"
        );
    }
}

#[test]
fn values_that_cannot_be_honoured_are_refused_naming_key_and_line() {
    for (yaml, key, line) in [
        ("minio:\n  storageType: hdfs\n", "minio.storageType", 2),
        (
            "minio:\n  backupStorageType: ftp\n",
            "minio.backupStorageType",
            2,
        ),
        ("minio:\n  cloudProvider: gcp\n", "minio.cloudProvider", 2),
        (
            "minio:\n  storageType: azure\n  accessKeyID: acct\n  secretAccessKey: \"not base64!\"\n",
            "minio.secretAccessKey",
            4,
        ),
        (
            "minio:\n  storageType: azure\n  useIAM: true\n",
            "minio.useIAM",
            3,
        ),
        (
            "minio:\n  backupStorageType: azure\n  backupAzureConnectionString: nonsense\n",
            "minio.backupAzureConnectionString",
            3,
        ),
        (
            "milvus:\n  authorizationEnabled: true\n  user: \"\"\n",
            "milvus.authorizationEnabled",
            2,
        ),
        ("log:\n  level: loud\n", "log.level", 2),
        ("milvus:\n  address: x\n  tlsMode: 7\n", "milvus.tlsMode", 3),
        (
            "backup:\n  parallelism:\n    copydata: 0\n",
            "backup.parallelism.copydata",
            3,
        ),
        ("minio:\n  bucketName: \"\"\n", "minio.bucketName", 2),
        (
            "backup:\n  keepTempFiles: false\n  maxSegmentGroupSize: 2T\n",
            "backup.maxSegmentGroupSize",
            3,
        ),
    ] {
        let err = load(yaml).unwrap_err();
        assert!(err.contains(key), "{yaml}: {err}");
        assert!(err.contains(&format!("line {line}")), "{yaml}: {err}");
        assert!(err.contains("backup.yaml"), "names the file: {err}");
    }
    for ok in ["minio", "s3", "aws", "S3", "gcpnative"] {
        load(&format!("minio:\n  storageType: {ok}\n")).unwrap();
    }
    load("minio:\n  storageType: azure\n  accessKeyID: acct\n  secretAccessKey: a2V5\n").unwrap();
    load("minio:\n  backupStorageType: local\n  backupRootPath: /tmp/b\n").unwrap();
    for ok in ["error", "warn", "info", "debug", "trace", "fatal", "DEBUG"] {
        load(&format!("log:\n  level: {ok}\n")).unwrap();
    }
}

#[test]
fn a_bad_log_level_stops_the_binary_with_its_name() {
    let out = run(
        &file("log:\n  level: loud\n"),
        &[],
        &["server", "--address", "127.0.0.1", "-p", "0"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("log.level \"loud\"") && err.contains("line 2"),
        "{err}"
    );
}

#[test]
fn an_empty_or_missing_file_says_so() {
    for text in ["", "\n# only comments\n", "---\n"] {
        let err = load(text).unwrap_err();
        assert!(err.contains("is empty"), "{text:?}: {err}");
    }
    let missing = std::env::temp_dir()
        .join(common::unique("no-such-config"))
        .join("b.yaml");
    let err = Config::load(&missing).unwrap_err().to_string();
    assert!(
        err.contains("does not exist") && err.contains("--config"),
        "{err}"
    );
    let out = run(&missing, &[], &["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

#[test]
fn yaml_syntax_errors_and_wrong_types_have_line_and_column() {
    let err = load("milvus:\n  address: [x\n  port: 1\n").unwrap_err();
    assert!(err.contains("YAML syntax error at line"), "{err}");
    assert!(err.contains(", column "), "{err}");
    let err = load("milvus:\n  address: x\n   port: 1\n").unwrap_err();
    assert!(err.contains("YAML syntax error at line 3"), "{err}");
    // A wrong type is not a syntax error.
    let err = load("milvus:\n  port: many\n").unwrap_err();
    assert!(!err.contains("syntax"), "{err}");
    assert!(
        err.contains("milvus.port") && err.contains("line 2, column"),
        "{err}"
    );
    // An unknown key on the very first line still gets its line.
    let err = load("adress: x\n").unwrap_err();
    assert!(
        err.contains("adress") && err.contains("line 1, column 1"),
        "{err}"
    );
}

#[test]
fn environment_variables_each_set_their_key_and_are_named_in_errors() {
    let base = Config::parse("").unwrap();
    for (var, key) in ENV_VARIABLES {
        let value = match *var {
            v if v.ends_with("_PORT") => "12345",
            "MILVUS_TLS_MODE" => "1",
            v if v.contains("_PARALLELISM_") => "7",
            v if v.ends_with("_USE_SSL")
                || v.ends_with("_USE_IAM")
                || v.ends_with("_ENABLED")
                || v.ends_with("_ENABLE")
                || v.ends_with("_TEMP_FILES") =>
            {
                "true"
            }
            _ => "from-env",
        };
        let mut cfg = Config::parse("").unwrap();
        cfg.apply_env(|k| (k == *var).then(|| value.to_string()))
            .unwrap();
        assert_eq!(cfg.env_keys.get(*key), Some(var), "{var} sets {key}");
        if *var == "MILVUS_PASSWORD" {
            assert_eq!(cfg.milvus.password.expose(), "from-env");
        } else {
            assert_ne!(
                format!("{:?}", cfg),
                format!("{:?}", base),
                "{var}={value} changes nothing"
            );
        }
    }
    // A bad value set by a variable names the variable, not a line of the file.
    let out = run(
        &file(&shipped()),
        &[("MILVUS_TLS_MODE", "7")],
        &["server", "--address", "127.0.0.1", "-p", "0"],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("milvus.tlsMode 7") && err.contains("MILVUS_TLS_MODE"),
        "{err}"
    );
}

#[tokio::test]
async fn authorization_enabled_decides_whether_milvus_gets_credentials() {
    let sent = |yaml: &str| {
        let cfg = Config::parse(yaml).unwrap();
        let client = milvus_backup::milvus::MilvusClient::new(&cfg.milvus).unwrap();
        client
            .request("", ())
            .metadata()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(sent("milvus:\n  user: u\n  password: p\n"), None);
    assert_eq!(
        sent("milvus:\n  authorizationEnabled: true\n  user: u\n  password: p\n"),
        Some("dTpw".to_string()), // base64("u:p")
    );
}

/// The README's reference is complete: every config key, environment
/// variable, RPC, CLI command and REST route has its row.
#[test]
fn the_readme_lists_every_key_variable_rpc_command_and_route() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    assert!(readme.lines().count() <= 420, "the README stays short");
    // Keys: every field of the configuration, read from its pretty Debug
    // form (one field a line), compared without case and underscores
    // (`access_key_id` is `accessKeyID`).
    let norm = |k: &str| k.replace('_', "").to_ascii_lowercase();
    let debug = format!("{:#?}", Config::default());
    let mut keys = Vec::new();
    let mut stack: Vec<String> = Vec::new();
    for line in debug.lines().skip(1) {
        let depth = (line.len() - line.trim_start().len()) / 4;
        let Some((name, rest)) = line.trim().split_once(": ") else {
            continue;
        };
        stack.truncate(depth.saturating_sub(1));
        if rest.ends_with('{') && rest.split(' ').count() == 2 {
            stack.push(name.to_string());
        } else if depth == stack.len() + 1 && !["warnings", "env_keys", "origin"].contains(&name) {
            let path = [stack.join("."), name.to_string()].join(".");
            keys.push(norm(path.trim_start_matches('.')));
        }
    }
    assert!(keys.len() > 60, "{keys:?}");
    let rows: Vec<&str> = readme.lines().filter(|l| l.starts_with("| `")).collect();
    // The keys the README's rows name: `section.key`, a bare `key` after one
    // of its section, or `section.*` for all of a section.
    let (mut named, mut sections) = (Vec::new(), Vec::new());
    for row in &rows {
        let first = row.split('|').nth(1).unwrap_or("");
        let mut section = String::new();
        for token in first.split('`').skip(1).step_by(2) {
            if let Some(prefix) = token.strip_suffix(".*") {
                sections.push(norm(prefix));
            } else if let Some((s, _)) = token.rsplit_once('.') {
                section = s.to_string();
                named.push(norm(token));
            } else if !section.is_empty() {
                named.push(norm(&format!("{section}.{token}")));
            }
        }
    }
    for key in &keys {
        let listed = named.contains(key)
            || sections
                .iter()
                .any(|s| key == s || key.starts_with(&format!("{s}.")));
        assert!(listed, "config key {key} has no row in the README");
    }
    for (var, _) in ENV_VARIABLES {
        assert!(
            readme.contains(&format!("`{var}`")),
            "variable {var} not in the README"
        );
    }
    for var in [
        "RUST_LOG",
        "NO_COLOR",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_ENDPOINT_URL_STS",
    ] {
        assert!(
            readme.contains(&format!("`{var}`")),
            "variable {var} not in the README"
        );
    }
    let proto =
        std::fs::read_to_string(format!("{root}/proto/milvus/backup/v1/backup.proto")).unwrap();
    let rpcs: Vec<&str> = proto
        .lines()
        .filter_map(|l| l.trim().strip_prefix("rpc "))
        .map(|l| l.split('(').next().unwrap())
        .collect();
    assert!(rpcs.len() >= 12, "{rpcs:?}");
    for rpc in rpcs {
        assert!(
            rows.iter().any(|r| r.starts_with(&format!("| `{rpc}"))),
            "rpc {rpc} has no row in the README"
        );
    }
    let help = Command::new(env!("CARGO_BIN_EXE_milvus-backup"))
        .arg("-h")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for command in help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
    {
        assert!(
            rows.iter().any(|r| r.starts_with(&format!("| `{command}"))),
            "command {command} has no row in the README"
        );
    }
    let openapi: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/src/api/swagger/openapi.json")).unwrap(),
    )
    .unwrap();
    for (path, methods) in openapi["paths"].as_object().unwrap() {
        for method in methods.as_object().unwrap().keys() {
            let route = format!("| `{} {path}", method.to_uppercase());
            assert!(
                rows.iter().any(|r| r.starts_with(&route)),
                "route {route} has no row in the README"
            );
        }
    }
}

/// Checks made after loading (files that cannot be read) name the key and
/// its line too.
#[test]
fn later_checks_name_the_key_and_line() {
    let yaml = "milvus:\n  address: 127.0.0.1\nminio:\n  address: 127.0.0.1\n  caCertPath: /nonexistent/ca.pem\n";
    let out = run(&file(yaml), &[], &["list"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("minio.caCertPath") && err.contains("line 5)"),
        "{err}"
    );
    let yaml =
        "security:\n  tls:\n    certPath: /nonexistent/c.pem\n    keyPath: /nonexistent/k.pem\n";
    let out = run(
        &file(yaml),
        &[],
        &["server", "--address", "127.0.0.1", "-p", "0"],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("line 3)"), "{err}");
}
