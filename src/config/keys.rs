//! No silently ignored setting: each key of the Go tool that this tool does
//! not act on is refused when its value asks for something we cannot do, and
//! otherwise named in one warning when it is set to anything but its default.

use super::{Config, LogConfig};
use crate::error::{Error, Result};

/// The S3-speaking storage types: Milvus's bucket must be one of them.
pub const STORAGE_TYPES: [&str; 5] = ["minio", "s3", "aws", "azure", "gcpnative"];

/// `log.level` values, with the Go tool's (zap) names mapped to ours.
const LOG_LEVELS: [(&str, &str); 10] = [
    ("trace", "trace"),
    ("debug", "debug"),
    ("info", "info"),
    ("warn", "warn"),
    ("warning", "warn"),
    ("error", "error"),
    ("dpanic", "error"),
    ("panic", "error"),
    ("fatal", "error"),
    ("off", "off"),
];

impl LogConfig {
    /// The tracing level of `log.level` (validated by [`Config::check_keys`]).
    pub fn filter_level(&self) -> &'static str {
        let level = self.level.trim().to_ascii_lowercase();
        LOG_LEVELS
            .iter()
            .find(|(name, _)| *name == level)
            .map_or("info", |(_, ours)| ours)
    }
}

impl Config {
    /// Refuses values we cannot honour, naming the key; returns one warning
    /// for each set key that has no effect here.
    pub(super) fn check_keys(&self) -> Result<Vec<String>> {
        let mut warn = Vec::new();
        let mut unused = |set: bool, key: &str, why: &str| {
            if set {
                warn.push(format!("{key} has no effect here and is ignored: {why}"));
            }
        };
        let level = self.log.level.trim().to_ascii_lowercase();
        if !LOG_LEVELS.iter().any(|(name, _)| *name == level) {
            return Err(Error::invalid(format!(
                "log.level {:?} is not a log level: use error, warn, info, debug or trace",
                self.log.level
            )));
        }
        let m = &self.minio;
        let storage = m.storage_type.trim().to_ascii_lowercase();
        if !storage.is_empty() && !STORAGE_TYPES.contains(&storage.as_str()) {
            return Err(Error::invalid(format!(
                "minio.storageType {:?} is not supported: use minio, s3 or aws (any S3-compatible \
                 endpoint), azure (Azure Blob Storage) or gcpnative (Google Cloud Storage)",
                m.storage_type
            )));
        }
        let backup_storage = m.backup_storage_type.trim().to_ascii_lowercase();
        if !backup_storage.is_empty()
            && backup_storage != "local"
            && !STORAGE_TYPES.contains(&backup_storage.as_str())
        {
            return Err(Error::invalid(format!(
                "minio.backupStorageType {:?} is not supported: use minio, s3, aws, azure, gcpnative \
                 or local (empty: the same as minio.storageType)",
                m.backup_storage_type
            )));
        }
        let provider = m.cloud_provider.trim().to_ascii_lowercase();
        if !provider.is_empty() && !["aws", "minio", "azure"].contains(&provider.as_str()) {
            return Err(Error::invalid(format!(
                "minio.cloudProvider {:?} is not supported: use aws or minio for the S3 API (another \
                 cloud's S3-compatible endpoint: keep aws and set minio.address), azure, or set \
                 minio.storageType gcpnative for Google Cloud Storage",
                m.cloud_provider
            )));
        }
        // Each side's service and what reaches it: refused here, naming the key.
        m.milvus_bucket()?;
        if backup_storage != "local" {
            m.backup_bucket()?;
        }
        let milvus = &self.milvus;
        if milvus.authorization_enabled && milvus.user.is_empty() {
            return Err(Error::invalid(
                "milvus.authorizationEnabled is true but milvus.user is empty: set the user and \
                 password Milvus should check",
            ));
        }
        let defaults = super::MilvusConfig::default();
        unused(
            !milvus.authorization_enabled
                && (milvus.user != defaults.user || milvus.password != defaults.password),
            "milvus.user/milvus.password",
            "milvus.authorizationEnabled is false, so no credentials are sent to Milvus; set it \
             to true if Milvus checks them",
        );
        unused(
            milvus.tls_mode == 0
                && (!milvus.ca_cert_path.is_empty() || !milvus.server_name.is_empty()),
            "milvus.caCertPath/milvus.serverName",
            "milvus.tlsMode is 0, so the connection to Milvus is plain text (credentials \
             included); set milvus.tlsMode to 1 (TLS) or 2 (mutual TLS) to use them",
        );
        unused(
            milvus.tls_mode < 2
                && (!milvus.mtls_cert_path.is_empty() || !milvus.mtls_key_path.is_empty()),
            "milvus.mtlsCertPath/milvus.mtlsKeyPath",
            "they are used only with milvus.tlsMode: 2 (mutual TLS)",
        );
        unused(
            !milvus.rpc_channel_name.is_empty(),
            "milvus.rpcChannelName",
            "it names the CDC replication channel of the Go tool, which this tool does not feed",
        );
        unused(
            !self.log.console,
            "log.console",
            "logs always go to stderr (redirect it to keep a file; RUST_LOG=off silences them)",
        );
        let file = &self.log.file;
        unused(
            !file.root_path.is_empty()
                || !file.filename.is_empty()
                || file.max_size != 0
                || file.max_age != 0
                || file.max_backups != 0,
            "log.file",
            "logs go to stderr; redirect it (and rotate with logrotate or the service manager)",
        );
        unused(
            !self.http.enabled,
            "http.enabled",
            "the REST API shares the port with gRPC and is always served",
        );
        unused(
            self.http.debug_mode,
            "http.debug_mode",
            "RUST_LOG=milvus_backup=debug shows every request",
        );
        unused(
            !self.cloud.is_null() && self.cloud.as_mapping().is_none_or(|c| !c.is_empty()),
            "cloud",
            "Zilliz Cloud backups are not supported",
        );
        unused(
            m.cross_storage,
            "minio.crossStorage",
            "copies between different storages are streamed through this process \
             automatically, and server-side otherwise",
        );
        let differs = |backup: &str, milvus: &str| !backup.is_empty() && backup != milvus;
        let backup_connection: Vec<&str> = [
            (
                differs(&m.backup_access_key_id, &m.access_key_id),
                "minio.backupAccessKeyID",
            ),
            (
                differs(
                    m.backup_secret_access_key.expose(),
                    m.secret_access_key.expose(),
                ),
                "minio.backupSecretAccessKey",
            ),
            (differs(&m.backup_region, &m.region), "minio.backupRegion"),
            (
                m.backup_port != 0 && m.backup_port != m.port,
                "minio.backupPort",
            ),
            (
                m.backup_use_ssl.is_some_and(|b| b != m.use_ssl),
                "minio.backupUseSSL",
            ),
            (
                differs(m.backup_token.expose(), m.token.expose()),
                "minio.backupToken",
            ),
        ]
        .into_iter()
        .filter_map(|(set, key)| set.then_some(key))
        .collect();
        if m.backups_are_local() {
            let mut keys = backup_connection;
            if !m.backup_address.is_empty() {
                keys.insert(0, "minio.backupAddress");
            }
            keys.extend(
                [
                    (!m.backup_bucket_name.is_empty(), "minio.backupBucketName"),
                    (m.backup_use_iam, "minio.backupUseIAM"),
                    (!m.backup_iam_endpoint.is_empty(), "minio.backupIamEndpoint"),
                    (
                        !m.backup_gcp_credential_json.expose().is_empty(),
                        "minio.backupGcpCredentialJSON",
                    ),
                    (
                        !m.backup_azure_connection_string.expose().is_empty(),
                        "minio.backupAzureConnectionString",
                    ),
                ]
                .into_iter()
                .filter_map(|(set, key)| set.then_some(key)),
            );
            unused(
                !keys.is_empty(),
                &keys.join("/"),
                "minio.backupStorageType is local: backups are kept in the directory \
                 minio.backupRootPath, through no connection",
            );
        } else {
            unused(
                !m.backup_connection_applies() && !backup_connection.is_empty(),
                &backup_connection.join("/"),
                "minio.backupAddress is empty, so backups go to Milvus's endpoint with Milvus's \
                 credentials; set minio.backupAddress (Milvus's own address too) to use them",
            );
        }
        unused(
            !m.use_iam && !m.iam_endpoint.is_empty(),
            "minio.iamEndpoint",
            "it is used only with minio.useIAM: true",
        );
        unused(
            !m.backups_are_local() && !m.backup_use_iam && !m.backup_iam_endpoint.is_empty(),
            "minio.backupIamEndpoint",
            "it is used only with minio.backupUseIAM: true",
        );
        unused(
            m.use_iam && !m.access_key_id.is_empty() && m.access_key_id != "minioadmin",
            "minio.accessKeyID/minio.secretAccessKey",
            "minio.useIAM is true, so credentials come from the AWS default chain",
        );
        let b = &self.backup;
        let bd = super::BackupConfig::default();
        unused(
            b.keep_temp_files,
            "backup.keepTempFiles",
            "the binlogs a restore stages in Milvus's bucket (restore-temp-<id>/) are removed \
             when it ends",
        );
        unused(
            b.parallelism.restore_collection != bd.parallelism.restore_collection,
            "backup.parallelism.restoreCollection",
            "a restore job imports its collections one after another (run several jobs for more)",
        );
        unused(
            b.parallelism.backup_segment != bd.parallelism.backup_segment,
            "backup.parallelism.backupSegment",
            "objects are copied backup.parallelism.copydata at once, whatever their segment",
        );
        unused(
            b.parallelism.import_job != bd.parallelism.import_job,
            "backup.parallelism.importJob",
            "Milvus 2.3 runs one import at a time",
        );
        let gc_pause_on = b
            .gc_pause
            .get("enable")
            .and_then(|v| {
                // The Go tool reads `"true"` as true too.
                v.as_bool()
                    .or_else(|| v.as_str().map(|s| s.trim().eq_ignore_ascii_case("true")))
            })
            .unwrap_or(false);
        unused(
            gc_pause_on,
            "backup.gcPause",
            "this tool does not pause Milvus's garbage collection; a backup copies each \
             segment's binlogs right after flushing it",
        );
        Ok(warn)
    }
}
