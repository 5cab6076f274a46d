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
#[serde(default)]
pub struct Config {
    pub log: LogConfig,
    pub http: HttpConfig,
    pub milvus: MilvusConfig,
    pub minio: MinioConfig,
    pub backup: BackupConfig,
}

/// `log.*`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
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
#[serde(default, rename_all = "camelCase")]
pub struct LogFileConfig {
    pub root_path: String,
}

/// `http.*`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpConfig {
    pub simple_response: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            simple_response: true,
        }
    }
}

/// `milvus.*`: how to reach the Milvus proxy.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct MilvusConfig {
    pub address: String,
    pub port: u16,
    pub authorization_enabled: bool,
    /// 0: plain, 1: one-way TLS, 2: mutual TLS.
    pub tls_mode: u8,
    pub user: String,
    pub password: Secret,
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
#[serde(default, rename_all = "camelCase")]
pub struct MinioConfig {
    pub storage_type: String,
    pub address: String,
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
    pub backup_port: u16,
    #[serde(rename = "backupAccessKeyID")]
    pub backup_access_key_id: String,
    pub backup_secret_access_key: Secret,
    #[serde(rename = "backupUseSSL")]
    pub backup_use_ssl: bool,
    pub backup_region: String,
    pub backup_bucket_name: String,
    pub backup_root_path: String,
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
#[serde(default, rename_all = "camelCase")]
pub struct BackupConfig {
    pub max_segment_group_size: String,
    pub parallelism: Parallelism,
    pub keep_temp_files: bool,
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self {
            max_segment_group_size: "2G".into(),
            parallelism: Parallelism::default(),
            keep_temp_files: false,
        }
    }
}

/// `backup.parallelism.*`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Parallelism {
    pub backup_collection: usize,
    /// Objects copied at once, over all jobs.
    pub copydata: usize,
    pub restore_collection: usize,
}

impl Default for Parallelism {
    fn default() -> Self {
        Self {
            backup_collection: 4,
            copydata: 128,
            restore_collection: 2,
        }
    }
}

impl Config {
    /// Reads a YAML file; errors name the file and, for syntax and type errors, the line.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::invalid(format!("cannot read config {}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| Error::invalid(format!("config {}: {e}", path.display())))
    }

    /// Parses YAML text and checks the values.
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
    fn wrong_type_names_the_line() {
        let err = Config::parse("milvus:\n  port: notaport\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
