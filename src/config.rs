//! `configs/backup.yaml`, with the Go tool's keys.

use std::fmt;
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

/// A secret value: never printed by `Debug` or `Display`.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub log: LogConfig,
    pub http: HttpConfig,
    /// `cloud.*` (Zilliz Cloud; accepted for compatibility, unused).
    pub cloud: serde_yaml::Value,
    pub milvus: MilvusConfig,
    pub minio: MinioConfig,
    pub backup: BackupConfig,
    /// Ours: who may call the server.
    pub security: SecurityConfig,
}

/// `security.*` (ours): optional bearer-token authentication of the API.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct SecurityConfig {
    /// When set, every call but health, reflection, the Swagger UI and
    /// `/metrics` needs `authorization: Bearer <token>`.
    pub token: Secret,
}

/// `log.*`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub level: String,
    pub console: bool,
    pub file: LogFileConfig,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            console: true,
            file: LogFileConfig::default(),
        }
    }
}

/// `log.file.*` (accepted for compatibility; logs go to stderr).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct LogFileConfig {
    pub root_path: String,
    pub max_size: u64,
    pub max_age: u64,
    pub max_backups: u64,
}

/// `http.*`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpConfig {
    pub simple_response: bool,
    pub enabled: bool,
    #[serde(rename = "debug_mode")]
    pub debug_mode: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            simple_response: true,
            enabled: true,
            debug_mode: false,
        }
    }
}

/// `milvus.*`: how to reach the Milvus proxy.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct MilvusConfig {
    pub address: String,
    #[serde(deserialize_with = "port")]
    pub port: u16,
    pub authorization_enabled: bool,
    /// 0: plain, 1: one-way TLS, 2: mutual TLS.
    pub tls_mode: u8,
    pub user: String,
    pub password: Secret,
    pub ca_cert_path: String,
    pub server_name: String,
    pub mtls_cert_path: String,
    pub mtls_key_path: String,
    pub rpc_channel_name: String,
}

impl Default for MilvusConfig {
    fn default() -> Self {
        Self {
            address: "localhost".into(),
            port: 19530,
            authorization_enabled: false,
            tls_mode: 0,
            user: "root".into(),
            password: Secret::new("Milvus"),
            ca_cert_path: String::new(),
            server_name: String::new(),
            mtls_cert_path: String::new(),
            mtls_key_path: String::new(),
            rpc_channel_name: String::new(),
        }
    }
}

impl MilvusConfig {
    /// The proxy's URL, e.g. `http://127.0.0.1:19530`.
    pub fn url(&self) -> String {
        let scheme = if self.tls_mode > 0 { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.address, self.port)
    }
}

/// `minio.*`: Milvus's own bucket and where backups go.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct MinioConfig {
    pub storage_type: String,
    pub address: String,
    #[serde(deserialize_with = "port")]
    pub port: u16,
    #[serde(rename = "accessKeyID")]
    pub access_key_id: String,
    pub secret_access_key: Secret,
    #[serde(rename = "useSSL")]
    pub use_ssl: bool,
    #[serde(rename = "useIAM")]
    pub use_iam: bool,
    pub iam_endpoint: String,
    pub cloud_provider: String,
    pub region: String,
    pub bucket_name: String,
    pub root_path: String,

    pub backup_storage_type: String,
    pub backup_address: String,
    #[serde(deserialize_with = "port")]
    pub backup_port: u16,
    #[serde(rename = "backupAccessKeyID")]
    pub backup_access_key_id: String,
    pub backup_secret_access_key: Secret,
    #[serde(rename = "backupUseSSL")]
    pub backup_use_ssl: bool,
    pub backup_region: String,
    pub backup_bucket_name: String,
    pub backup_root_path: String,
    #[serde(rename = "backupUseIAM")]
    pub backup_use_iam: bool,
    pub backup_iam_endpoint: String,
    pub token: Secret,
    pub backup_token: Secret,
    #[serde(rename = "gcpCredentialJSON")]
    pub gcp_credential_json: Secret,
    #[serde(rename = "backupGcpCredentialJSON")]
    pub backup_gcp_credential_json: Secret,
    pub cross_storage: bool,
}

impl Default for MinioConfig {
    fn default() -> Self {
        Self {
            storage_type: "minio".into(),
            address: "localhost".into(),
            port: 9000,
            access_key_id: "minioadmin".into(),
            secret_access_key: Secret::new("minioadmin"),
            use_ssl: false,
            use_iam: false,
            iam_endpoint: String::new(),
            cloud_provider: "aws".into(),
            region: String::new(),
            bucket_name: "a-bucket".into(),
            root_path: "files".into(),
            backup_storage_type: String::new(),
            backup_address: String::new(),
            backup_port: 0,
            backup_access_key_id: String::new(),
            backup_secret_access_key: Secret::default(),
            backup_use_ssl: false,
            backup_region: String::new(),
            backup_bucket_name: "a-bucket".into(),
            backup_root_path: "backup".into(),
            backup_use_iam: false,
            backup_iam_endpoint: String::new(),
            token: Secret::default(),
            backup_token: Secret::default(),
            gcp_credential_json: Secret::default(),
            backup_gcp_credential_json: Secret::default(),
            cross_storage: false,
        }
    }
}

/// Where one bucket lives and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketConfig {
    /// `http(s)://host:port`.
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing `/`.
    pub root_path: String,
}

impl MinioConfig {
    /// Milvus's own bucket.
    pub fn milvus_bucket(&self) -> BucketConfig {
        BucketConfig {
            endpoint: endpoint(&self.address, self.port, self.use_ssl),
            region: region_or_default(&self.region),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            bucket: self.bucket_name.clone(),
            root_path: trim_slashes(&self.root_path),
        }
    }

    /// The backup bucket: on Milvus's endpoint unless `backupAddress` names another one.
    pub fn backup_bucket(&self) -> BucketConfig {
        let own = self.milvus_bucket();
        let (endpoint, region, access_key_id, secret_access_key) = if self.backup_address.is_empty()
        {
            (
                own.endpoint,
                own.region,
                own.access_key_id,
                own.secret_access_key,
            )
        } else {
            let port = if self.backup_port == 0 {
                self.port
            } else {
                self.backup_port
            };
            (
                endpoint(&self.backup_address, port, self.backup_use_ssl),
                region_or_default(if self.backup_region.is_empty() {
                    &self.region
                } else {
                    &self.backup_region
                }),
                self.backup_access_key_id.clone(),
                self.backup_secret_access_key.clone(),
            )
        };
        BucketConfig {
            endpoint,
            region,
            access_key_id,
            secret_access_key,
            bucket: if self.backup_bucket_name.is_empty() {
                self.bucket_name.clone()
            } else {
                self.backup_bucket_name.clone()
            },
            root_path: trim_slashes(&self.backup_root_path),
        }
    }
}

/// A port written as a number or as a string (the Go tool accepts both).
fn port<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<u16, D::Error> {
    struct PortVisitor;
    impl serde::de::Visitor<'_> for PortVisitor {
        type Value = u16;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a port number from 0 to 65535")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<u16, E> {
            u16::try_from(v).map_err(|_| E::custom(format!("port {v} is not from 0 to 65535")))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<u16, E> {
            u16::try_from(v).map_err(|_| E::custom(format!("port {v} is not from 0 to 65535")))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<u16, E> {
            if v.is_empty() {
                return Ok(0);
            }
            v.parse()
                .map_err(|_| E::custom(format!("port {v:?} is not a number from 0 to 65535")))
        }
    }
    d.deserialize_any(PortVisitor)
}

fn endpoint(address: &str, port: u16, ssl: bool) -> String {
    if address.starts_with("http://") || address.starts_with("https://") {
        return address.trim_end_matches('/').to_string();
    }
    let scheme = if ssl { "https" } else { "http" };
    format!("{scheme}://{address}:{port}")
}

fn region_or_default(region: &str) -> String {
    if region.is_empty() {
        "us-east-1".into()
    } else {
        region.into()
    }
}

fn trim_slashes(s: &str) -> String {
    s.trim_matches('/').to_string()
}

/// `backup.*`: tuning of the jobs.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupConfig {
    pub max_segment_group_size: String,
    pub parallelism: Parallelism,
    pub keep_temp_files: bool,
    /// `backup.gcPause.*` (accepted for compatibility; not used).
    pub gc_pause: serde_yaml::Value,
    /// Ours: where the server keeps its job records.
    pub state_dir: String,
    /// Ours: jobs running at once; more are refused with RESOURCE_EXHAUSTED.
    pub max_jobs: usize,
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self {
            max_segment_group_size: "2G".into(),
            parallelism: Parallelism::default(),
            keep_temp_files: false,
            gc_pause: serde_yaml::Value::Null,
            state_dir: ".milvus-backup".into(),
            max_jobs: 8,
        }
    }
}

/// `backup.parallelism.*`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Parallelism {
    pub backup_collection: usize,
    /// Objects copied at once, over all jobs.
    pub copydata: usize,
    pub restore_collection: usize,
    pub import_job: usize,
}

impl Default for Parallelism {
    fn default() -> Self {
        Self {
            backup_collection: 4,
            copydata: 128,
            restore_collection: 2,
            import_job: 768,
        }
    }
}

impl Config {
    /// Reads a YAML file, then the Go tool's environment variables over it.
    /// Errors name the file, the key and the line, or the variable.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::invalid(format!("cannot read config {}: {e}", path.display())))?;
        let mut cfg: Config = serde_yaml::from_str(&text)
            .map_err(|e| Error::invalid(format!("config {}: {e}", path.display())))?;
        cfg.apply_env(|k| std::env::var(k).ok())?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Applies the Go tool's environment variables (`MILVUS_ADDRESS`,
    /// `MINIO_BUCKET_NAME`, ...): each one set and not empty overrides its key.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<()> {
        let var = |k: &str| var(k).filter(|v| !v.is_empty());
        fn parsed<T: std::str::FromStr>(name: &str, v: String) -> Result<T> {
            v.parse().map_err(|_| {
                Error::invalid(format!("environment variable {name}={v:?} has a bad value"))
            })
        }
        fn boolean(name: &str, v: String) -> Result<bool> {
            match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(Error::invalid(format!(
                    "environment variable {name}={v:?} is not true or false"
                ))),
            }
        }
        macro_rules! env {
            ($name:literal => $field:expr, string) => {
                if let Some(v) = var($name) {
                    $field = v;
                }
            };
            ($name:literal => $field:expr, secret) => {
                if let Some(v) = var($name) {
                    $field = Secret::new(v);
                }
            };
            ($name:literal => $field:expr, bool) => {
                if let Some(v) = var($name) {
                    $field = boolean($name, v)?;
                }
            };
            ($name:literal => $field:expr, parse) => {
                if let Some(v) = var($name) {
                    $field = parsed($name, v)?;
                }
            };
        }
        let (m, s, b) = (&mut self.milvus, &mut self.minio, &mut self.backup);
        env!("MILVUS_ADDRESS" => m.address, string);
        env!("MILVUS_PORT" => m.port, parse);
        env!("MILVUS_USER" => m.user, string);
        env!("MILVUS_PASSWORD" => m.password, secret);
        env!("MILVUS_TLS_MODE" => m.tls_mode, parse);
        env!("MILVUS_CA_CERT_PATH" => m.ca_cert_path, string);
        env!("MILVUS_SERVER_NAME" => m.server_name, string);
        env!("MILVUS_MTLS_CERT_PATH" => m.mtls_cert_path, string);
        env!("MILVUS_MTLS_KEY_PATH" => m.mtls_key_path, string);
        env!("MINIO_ADDRESS" => s.address, string);
        env!("MINIO_PORT" => s.port, parse);
        env!("MINIO_REGION" => s.region, string);
        env!("MINIO_ACCESS_KEY" => s.access_key_id, string);
        env!("MINIO_SECRET_KEY" => s.secret_access_key, secret);
        env!("MINIO_TOKEN" => s.token, secret);
        env!("MINIO_USE_SSL" => s.use_ssl, bool);
        env!("MINIO_USE_IAM" => s.use_iam, bool);
        env!("MINIO_IAM_ENDPOINT" => s.iam_endpoint, string);
        env!("MINIO_BUCKET_NAME" => s.bucket_name, string);
        env!("MINIO_ROOT_PATH" => s.root_path, string);
        env!("MINIO_BACKUP_ADDRESS" => s.backup_address, string);
        env!("MINIO_BACKUP_PORT" => s.backup_port, parse);
        env!("MINIO_BACKUP_REGION" => s.backup_region, string);
        env!("MINIO_BACKUP_ACCESS_KEY" => s.backup_access_key_id, string);
        env!("MINIO_BACKUP_SECRET_KEY" => s.backup_secret_access_key, secret);
        env!("MINIO_BACKUP_TOKEN" => s.backup_token, secret);
        env!("MINIO_BACKUP_USE_SSL" => s.backup_use_ssl, bool);
        env!("MINIO_BACKUP_USE_IAM" => s.backup_use_iam, bool);
        env!("MINIO_BACKUP_IAM_ENDPOINT" => s.backup_iam_endpoint, string);
        env!("MINIO_BACKUP_BUCKET_NAME" => s.backup_bucket_name, string);
        env!("MINIO_BACKUP_ROOT_PATH" => s.backup_root_path, string);
        env!("BACKUP_MAX_SEGMENT_GROUP_SIZE" => b.max_segment_group_size, string);
        env!("BACKUP_PARALLELISM_BACKUP_COLLECTION" => b.parallelism.backup_collection, parse);
        env!("BACKUP_PARALLELISM_COPYDATA" => b.parallelism.copydata, parse);
        env!("BACKUP_PARALLELISM_RESTORE_COLLECTION" => b.parallelism.restore_collection, parse);
        env!("BACKUP_KEEP_TEMP_FILES" => b.keep_temp_files, bool);
        env!("MILVUS_BACKUP_TOKEN" => self.security.token, secret);
        Ok(())
    }

    /// Parses YAML text and checks the values (no environment variables).
    pub fn parse(text: &str) -> Result<Self> {
        let cfg: Config = serde_yaml::from_str(text).map_err(|e| Error::invalid(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        if self.backup.parallelism.copydata == 0 {
            return Err(Error::invalid(
                "backup.parallelism.copydata must be at least 1",
            ));
        }
        if self.minio.bucket_name.is_empty() {
            return Err(Error::invalid("minio.bucketName must not be empty"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
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
        let m = cfg.minio.milvus_bucket();
        assert_eq!(m.endpoint, "https://s3.local:9100");
        assert_eq!(m.root_path, "files");
        let b = cfg.minio.backup_bucket();
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
        let text = include_str!("../configs/backup.yaml");
        Config::parse(text).unwrap();
    }

    #[test]
    fn wrong_type_names_the_line() {
        let err = Config::parse("milvus:\n  port: notaport\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
