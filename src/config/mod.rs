//! `configs/backup.yaml`, with the Go tool's keys.

use std::fmt;

use serde::Deserialize;

use crate::error::{Error, Result};

mod buckets;
mod env;
mod keys;
mod load;

pub use buckets::{AzureAccess, AzureCredential, Backend, BucketConfig, GcsAccess};
pub use env::VARIABLES as ENV_VARIABLES;
pub use keys::STORAGE_TYPES;

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
    /// Settings that have no effect here, each named once (logged at start).
    #[serde(skip)]
    pub warnings: Vec<String>,
    /// Keys set by an environment variable: `milvus.address` → `MILVUS_ADDRESS`.
    #[serde(skip)]
    pub env_keys: std::collections::BTreeMap<String, &'static str>,
    /// The file it was read from and where each key is in it.
    #[serde(skip)]
    origin: Option<load::Origin>,
}

/// `security.*` (ours): optional bearer-token authentication of the API.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct SecurityConfig {
    /// When set, every call but health, reflection, the Swagger UI and
    /// `/metrics` needs `authorization: Bearer <token>`.
    pub token: Secret,
    /// TLS for the server's port (gRPC and REST alike).
    pub tls: ServerTlsConfig,
}

/// `security.tls.*` (ours): serve TLS, and optionally require client certificates.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// PEM certificate chain; with `keyPath`, the port speaks TLS only.
    pub cert_path: String,
    /// PEM private key of the certificate.
    pub key_path: String,
    /// PEM CA bundle; when set, clients must present a certificate it signed (mTLS).
    pub client_ca_path: String,
}

impl ServerTlsConfig {
    /// Whether TLS is configured at all.
    pub fn enabled(&self) -> bool {
        !self.cert_path.is_empty() || !self.key_path.is_empty() || !self.client_ca_path.is_empty()
    }
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
    /// The Go tool's newer key for the same.
    pub filename: String,
    pub max_size: u64,
    pub max_age: u64,
    pub max_backups: u64,
}

/// `http.*`: the server's port (gRPC and REST alike).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpConfig {
    pub simple_response: bool,
    pub enabled: bool,
    #[serde(rename = "debug_mode")]
    pub debug_mode: bool,
    /// Ours: a connection must deliver its first request's headers (HTTP/1.1
    /// and HTTP/2 alike) within this many seconds, and an HTTP/1.1 request's
    /// headers arrive within it; an idle HTTP/1.1 keep-alive connection is
    /// closed after it.
    pub header_read_timeout_seconds: u64,
    /// Ours: a connection with no request in flight (an idle HTTP/2 or gRPC
    /// channel) is closed after this many seconds.
    pub idle_timeout_seconds: u64,
    /// Ours: connections served at once (TLS handshakes included); further
    /// ones wait in the listen backlog until one closes.
    pub max_connections: u64,
    /// Ours: largest REST request body; larger ones answer HTTP 413.
    pub max_rest_body_bytes: u64,
    /// Ours: largest gRPC message received or sent; larger ones fail with OUT_OF_RANGE.
    pub max_grpc_message_bytes: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            simple_response: true,
            enabled: true,
            debug_mode: false,
            header_read_timeout_seconds: 10,
            idle_timeout_seconds: 300,
            max_connections: 1024,
            max_rest_body_bytes: 1 << 20,
            max_grpc_message_bytes: 16 << 20,
        }
    }
}

impl HttpConfig {
    /// Refuses limits that would make the server unusable, naming the key.
    fn validate(&self) -> Result<()> {
        const DAY: u64 = 86_400;
        const FOUR_GIB: u64 = u32::MAX as u64;
        for (key, value, max, unit) in [
            (
                "headerReadTimeoutSeconds",
                self.header_read_timeout_seconds,
                DAY,
                "a day (86400)",
            ),
            (
                "idleTimeoutSeconds",
                self.idle_timeout_seconds,
                DAY,
                "a day (86400)",
            ),
            ("maxConnections", self.max_connections, 1 << 20, "1048576"),
            (
                "maxRestBodyBytes",
                self.max_rest_body_bytes,
                FOUR_GIB,
                "4294967295",
            ),
            (
                "maxGrpcMessageBytes",
                self.max_grpc_message_bytes,
                FOUR_GIB,
                "4294967295",
            ),
        ] {
            if value == 0 {
                return Err(Error::invalid(format!(
                    "http.{key} must be at least 1 (it is 0)"
                )));
            }
            if value > max {
                return Err(Error::invalid(format!(
                    "http.{key} must be at most {unit} (it is {value})"
                )));
            }
        }
        Ok(())
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
    /// Unset: Milvus's `useSSL`, as the Go tool reads it.
    #[serde(rename = "backupUseSSL")]
    pub backup_use_ssl: Option<bool>,
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
    #[serde(deserialize_with = "bool_or_text")]
    pub cross_storage: bool,
    /// Ours: a PEM CA bundle trusted, besides the system's, for `https` endpoints.
    pub ca_cert_path: String,
    /// Objects above this many MiB are copied server-side in parts (UploadPartCopy).
    #[serde(rename = "multipartCopyThresholdMiB")]
    pub multipart_copy_threshold_mib: u64,
    /// Ours: an Azure Storage connection string for Milvus's storage with
    /// `storageType: azure` (also `AZURE_STORAGE_CONNECTION_STRING`, as Milvus reads it).
    pub azure_connection_string: Secret,
    /// Ours: the same for the backup storage with `backupStorageType: azure`.
    pub backup_azure_connection_string: Secret,
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
            backup_use_ssl: None,
            backup_region: String::new(),
            // Unset: `bucketName`, as in the Go tool.
            backup_bucket_name: String::new(),
            backup_root_path: "backup".into(),
            backup_use_iam: false,
            backup_iam_endpoint: String::new(),
            token: Secret::default(),
            backup_token: Secret::default(),
            gcp_credential_json: Secret::default(),
            backup_gcp_credential_json: Secret::default(),
            cross_storage: false,
            ca_cert_path: String::new(),
            multipart_copy_threshold_mib: 500,
            azure_connection_string: Secret::default(),
            backup_azure_connection_string: Secret::default(),
        }
    }
}

/// A boolean written as one or as the text `"true"`/`"false"` (the Go
/// tool's config quotes some).
fn bool_or_text<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    struct BoolVisitor;
    impl serde::de::Visitor<'_> for BoolVisitor {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("true or false")
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> std::result::Result<bool, E> {
            Ok(v)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<bool, E> {
            match v.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" | "" => Ok(false),
                _ => Err(E::custom(format!("{v:?} is not true or false"))),
            }
        }
    }
    d.deserialize_any(BoolVisitor)
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
    /// Ours: on SIGTERM, how long running jobs may take to finish before they
    /// are cancelled (and cleaned up).
    pub shutdown_grace_seconds: u64,
    /// Ours: caps the copy throughput of all jobs together, in MiB/s (0: no cap).
    #[serde(rename = "rateLimitMiBps")]
    pub rate_limit_mi_bps: f64,
    /// Ours: how long a job's hold on a backup name or restore target lasts
    /// without renewal (renewed every third of it while the job runs).
    pub lease_ttl_seconds: u64,
    /// Ours: whether a backup whose request does not say is incremental.
    pub incremental: bool,
}

impl BackupConfig {
    /// `maxSegmentGroupSize` in bytes: a number with an optional unit `k`,
    /// `kb`, `m`, `mb`, `g` or `gb` (any case, powers of 1024), as the Go tool reads it.
    pub fn segment_group_bytes(&self) -> Result<u64> {
        let text = self.max_segment_group_size.trim();
        let lower = text.to_ascii_lowercase();
        let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let shift = match &lower[digits.len()..] {
            "" => 0,
            "k" | "kb" => 10,
            "m" | "mb" => 20,
            "g" | "gb" => 30,
            _ => u32::MAX,
        };
        digits
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0 && shift != u32::MAX)
            .and_then(|n| n.checked_mul(1u64.checked_shl(shift)?))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "backup.maxSegmentGroupSize {text:?} is not a size such as 2G, 512MB or 64k"
                ))
            })
    }
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
            shutdown_grace_seconds: 30,
            rate_limit_mi_bps: 0.0,
            lease_ttl_seconds: 30,
            incremental: false,
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
    /// The Go tool's segments copied at once (warned about: objects are
    /// copied `copydata` at once, whatever their segment).
    pub backup_segment: usize,
}

impl Default for Parallelism {
    fn default() -> Self {
        Self {
            backup_collection: 4,
            copydata: 128,
            restore_collection: 2,
            import_job: 768,
            backup_segment: 1024,
        }
    }
}

impl Config {
    /// Parses YAML text and checks the values (no environment variables).
    pub fn parse(text: &str) -> Result<Self> {
        let mut cfg: Config =
            serde_yaml::from_str(text).map_err(|e| Error::invalid(e.to_string()))?;
        cfg.validate()?;
        cfg.warnings = cfg.check_keys()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        self.http.validate()?;
        let b = &self.backup;
        // Bounded above too: a count past these would only exhaust memory
        // or overflow (a threshold over S3's largest object, 5 TiB).
        for (key, value, most) in [
            (
                "backup.parallelism.copydata",
                b.parallelism.copydata as u64,
                4096,
            ),
            (
                "backup.parallelism.backupCollection",
                b.parallelism.backup_collection as u64,
                1024,
            ),
            ("backup.maxJobs", b.max_jobs as u64, 10_000),
            (
                "minio.multipartCopyThresholdMiB",
                self.minio.multipart_copy_threshold_mib,
                // S3's limit of one PutObject or CopyObject (5 GiB).
                5 * 1024,
            ),
        ] {
            if !(1..=most).contains(&value) {
                return Err(Error::invalid(format!(
                    "{key} must be between 1 and {most} (it is {value})"
                )));
            }
        }
        b.segment_group_bytes()?;
        if !(b.rate_limit_mi_bps.is_finite() && b.rate_limit_mi_bps >= 0.0) {
            return Err(Error::invalid(format!(
                "backup.rateLimitMiBps {} must be a number of MiB/s, 0 for no cap",
                b.rate_limit_mi_bps
            )));
        }
        // A day: past it, a dead server's jobs would wait a day to be taken over.
        if b.lease_ttl_seconds > 86_400 {
            return Err(Error::invalid(format!(
                "backup.leaseTtlSeconds {} is more than a day (86400)",
                b.lease_ttl_seconds
            )));
        }
        if self.minio.bucket_name.is_empty() {
            return Err(Error::invalid("minio.bucketName must not be empty"));
        }
        self.minio.check_backup_root()?;
        if self.backup.lease_ttl_seconds == 0 {
            return Err(Error::invalid("backup.leaseTtlSeconds must be at least 1"));
        }
        // Sent in a header, a token is visible ASCII: with a space or a line
        // break (a Secret made from a file), no client could ever match it.
        if let Some(c) = self
            .security
            .token
            .expose()
            .chars()
            .find(|c| !c.is_ascii_graphic())
        {
            return Err(Error::invalid(format!(
                "security.token holds {c:?}: a bearer token is visible ASCII only, with no \
                 space or line break (a file's trailing newline?), or no client could send it"
            )));
        }
        let tls = &self.security.tls;
        if tls.enabled() && (tls.cert_path.is_empty() || tls.key_path.is_empty()) {
            return Err(Error::invalid(
                "security.tls needs both certPath and keyPath (clientCaPath is optional)",
            ));
        }
        if self.milvus.tls_mode > 2 {
            return Err(Error::invalid(format!(
                "milvus.tlsMode {} is not 0 (plain), 1 (TLS) or 2 (mutual TLS)",
                self.milvus.tls_mode
            )));
        }
        if self.milvus.tls_mode == 2
            && (self.milvus.mtls_cert_path.is_empty() || self.milvus.mtls_key_path.is_empty())
        {
            return Err(Error::invalid(
                "milvus.tlsMode 2 needs milvus.mtlsCertPath and milvus.mtlsKeyPath",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
