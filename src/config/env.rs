//! The Go tool's environment variables, over the file.

use super::{Config, Secret};
use crate::error::{Error, Result};

impl Config {
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
        let mut set: Vec<(&'static str, &'static str)> = Vec::new();
        macro_rules! env {
            ($name:literal, $key:literal => $field:expr, string) => {
                if let Some(v) = var($name) {
                    set.push(($key, $name));
                    $field = v;
                }
            };
            ($name:literal, $key:literal => $field:expr, secret) => {
                if let Some(v) = var($name) {
                    set.push(($key, $name));
                    $field = Secret::new(v);
                }
            };
            ($name:literal, $key:literal => $field:expr, bool) => {
                if let Some(v) = var($name) {
                    set.push(($key, $name));
                    $field = boolean($name, v)?;
                }
            };
            ($name:literal, $key:literal => $field:expr, some_bool) => {
                if let Some(v) = var($name) {
                    set.push(($key, $name));
                    $field = Some(boolean($name, v)?);
                }
            };
            ($name:literal, $key:literal => $field:expr, parse) => {
                if let Some(v) = var($name) {
                    set.push(($key, $name));
                    $field = parsed($name, v)?;
                }
            };
        }
        let (m, s, b) = (&mut self.milvus, &mut self.minio, &mut self.backup);
        env!("MILVUS_ADDRESS", "milvus.address" => m.address, string);
        env!("MILVUS_PORT", "milvus.port" => m.port, parse);
        env!("MILVUS_AUTHORIZATION_ENABLED", "milvus.authorizationEnabled" => m.authorization_enabled, bool);
        env!("MILVUS_USER", "milvus.user" => m.user, string);
        env!("MILVUS_PASSWORD", "milvus.password" => m.password, secret);
        env!("MILVUS_TLS_MODE", "milvus.tlsMode" => m.tls_mode, parse);
        env!("MILVUS_CA_CERT_PATH", "milvus.caCertPath" => m.ca_cert_path, string);
        env!("MILVUS_SERVER_NAME", "milvus.serverName" => m.server_name, string);
        env!("MILVUS_MTLS_CERT_PATH", "milvus.mtlsCertPath" => m.mtls_cert_path, string);
        env!("MILVUS_MTLS_KEY_PATH", "milvus.mtlsKeyPath" => m.mtls_key_path, string);
        env!("MINIO_ADDRESS", "minio.address" => s.address, string);
        env!("MINIO_PORT", "minio.port" => s.port, parse);
        env!("MINIO_REGION", "minio.region" => s.region, string);
        env!("MINIO_ACCESS_KEY", "minio.accessKeyID" => s.access_key_id, string);
        env!("MINIO_SECRET_KEY", "minio.secretAccessKey" => s.secret_access_key, secret);
        env!("MINIO_TOKEN", "minio.token" => s.token, secret);
        env!("MINIO_USE_SSL", "minio.useSSL" => s.use_ssl, bool);
        env!("MINIO_USE_IAM", "minio.useIAM" => s.use_iam, bool);
        env!("MINIO_IAM_ENDPOINT", "minio.iamEndpoint" => s.iam_endpoint, string);
        env!("MINIO_BUCKET_NAME", "minio.bucketName" => s.bucket_name, string);
        env!("MINIO_ROOT_PATH", "minio.rootPath" => s.root_path, string);
        env!("MINIO_BACKUP_ADDRESS", "minio.backupAddress" => s.backup_address, string);
        env!("MINIO_BACKUP_PORT", "minio.backupPort" => s.backup_port, parse);
        env!("MINIO_BACKUP_REGION", "minio.backupRegion" => s.backup_region, string);
        env!("MINIO_BACKUP_ACCESS_KEY", "minio.backupAccessKeyID" => s.backup_access_key_id, string);
        env!("MINIO_BACKUP_SECRET_KEY", "minio.backupSecretAccessKey" => s.backup_secret_access_key, secret);
        env!("MINIO_BACKUP_TOKEN", "minio.backupToken" => s.backup_token, secret);
        env!("MINIO_BACKUP_USE_SSL", "minio.backupUseSSL" => s.backup_use_ssl, some_bool);
        env!("MINIO_BACKUP_USE_IAM", "minio.backupUseIAM" => s.backup_use_iam, bool);
        env!("MINIO_BACKUP_IAM_ENDPOINT", "minio.backupIamEndpoint" => s.backup_iam_endpoint, string);
        env!("MINIO_BACKUP_BUCKET_NAME", "minio.backupBucketName" => s.backup_bucket_name, string);
        env!("MINIO_BACKUP_ROOT_PATH", "minio.backupRootPath" => s.backup_root_path, string);
        env!("BACKUP_MAX_SEGMENT_GROUP_SIZE", "backup.maxSegmentGroupSize" => b.max_segment_group_size, string);
        env!("BACKUP_PARALLELISM_BACKUP_COLLECTION", "backup.parallelism.backupCollection" => b.parallelism.backup_collection, parse);
        env!("BACKUP_PARALLELISM_COPYDATA", "backup.parallelism.copydata" => b.parallelism.copydata, parse);
        env!("BACKUP_PARALLELISM_RESTORE_COLLECTION", "backup.parallelism.restoreCollection" => b.parallelism.restore_collection, parse);
        env!("BACKUP_KEEP_TEMP_FILES", "backup.keepTempFiles" => b.keep_temp_files, bool);
        env!("MINIO_CA_CERT_PATH", "minio.caCertPath" => s.ca_cert_path, string);
        env!("AZURE_STORAGE_CONNECTION_STRING", "minio.azureConnectionString" => s.azure_connection_string, secret);
        env!("MINIO_BACKUP_AZURE_CONNECTION_STRING", "minio.backupAzureConnectionString" => s.backup_azure_connection_string, secret);
        env!("GCP_KEY_JSON", "minio.gcpCredentialJSON" => s.gcp_credential_json, secret);
        env!("BACKUP_GCP_KEY_JSON", "minio.backupGcpCredentialJSON" => s.backup_gcp_credential_json, secret);
        // The Go tool's settings that do nothing here: set as their keys are,
        // so that they are warned about in the same way.
        env!("MILVUS_RPC_CHANNEL_NAME", "milvus.rpcChannelName" => m.rpc_channel_name, string);
        for (name, key, field) in [
            ("BACKUP_GC_PAUSE_ENABLE", "backup.gcPause", "enable"),
            (
                "BACKUP_GC_PAUSE_SECONDS",
                "backup.gcPause.seconds",
                "seconds",
            ),
            (
                "BACKUP_GC_PAUSE_ADDRESS",
                "backup.gcPause.address",
                "address",
            ),
        ] {
            if let Some(v) = var(name) {
                // Read as the Go tool reads it (`t`, `1`...), never refused:
                // it only decides whether to warn.
                let value = match field {
                    "enable" => serde_yaml::Value::Bool(matches!(
                        v.trim().to_ascii_lowercase().as_str(),
                        "1" | "t" | "true" | "yes" | "on"
                    )),
                    _ => serde_yaml::Value::String(v),
                };
                if !b.gc_pause.is_mapping() {
                    b.gc_pause = serde_yaml::Value::Mapping(Default::default());
                }
                if let Some(map) = b.gc_pause.as_mapping_mut() {
                    map.insert(field.into(), value);
                }
                set.push((key, name));
            }
        }
        env!("MILVUS_BACKUP_TOKEN", "security.token" => self.security.token, secret);
        let tls = &mut self.security.tls;
        env!("MILVUS_BACKUP_TLS_CERT_PATH", "security.tls.certPath" => tls.cert_path, string);
        env!("MILVUS_BACKUP_TLS_KEY_PATH", "security.tls.keyPath" => tls.key_path, string);
        env!("MILVUS_BACKUP_TLS_CLIENT_CA_PATH", "security.tls.clientCaPath" => tls.client_ca_path, string);
        for (key, var) in set {
            self.env_keys.insert(key.to_string(), var);
        }
        Ok(())
    }
}

/// Every variable [`Config::apply_env`] reads, with the key it sets (the
/// README's table lists the same).
pub const VARIABLES: &[(&str, &str)] = &[
    (
        "MILVUS_AUTHORIZATION_ENABLED",
        "milvus.authorizationEnabled",
    ),
    ("MILVUS_ADDRESS", "milvus.address"),
    ("MILVUS_PORT", "milvus.port"),
    ("MILVUS_USER", "milvus.user"),
    ("MILVUS_PASSWORD", "milvus.password"),
    ("MILVUS_TLS_MODE", "milvus.tlsMode"),
    ("MILVUS_CA_CERT_PATH", "milvus.caCertPath"),
    ("MILVUS_SERVER_NAME", "milvus.serverName"),
    ("MILVUS_MTLS_CERT_PATH", "milvus.mtlsCertPath"),
    ("MILVUS_MTLS_KEY_PATH", "milvus.mtlsKeyPath"),
    ("MINIO_ADDRESS", "minio.address"),
    ("MINIO_PORT", "minio.port"),
    ("MINIO_REGION", "minio.region"),
    ("MINIO_ACCESS_KEY", "minio.accessKeyID"),
    ("MINIO_SECRET_KEY", "minio.secretAccessKey"),
    ("MINIO_TOKEN", "minio.token"),
    ("MINIO_USE_SSL", "minio.useSSL"),
    ("MINIO_USE_IAM", "minio.useIAM"),
    ("MINIO_IAM_ENDPOINT", "minio.iamEndpoint"),
    ("MINIO_BUCKET_NAME", "minio.bucketName"),
    ("MINIO_ROOT_PATH", "minio.rootPath"),
    ("MINIO_BACKUP_ADDRESS", "minio.backupAddress"),
    ("MINIO_BACKUP_PORT", "minio.backupPort"),
    ("MINIO_BACKUP_REGION", "minio.backupRegion"),
    ("MINIO_BACKUP_ACCESS_KEY", "minio.backupAccessKeyID"),
    ("MINIO_BACKUP_SECRET_KEY", "minio.backupSecretAccessKey"),
    ("MINIO_BACKUP_TOKEN", "minio.backupToken"),
    ("MINIO_BACKUP_USE_SSL", "minio.backupUseSSL"),
    ("MINIO_BACKUP_USE_IAM", "minio.backupUseIAM"),
    ("MINIO_BACKUP_IAM_ENDPOINT", "minio.backupIamEndpoint"),
    ("MINIO_BACKUP_BUCKET_NAME", "minio.backupBucketName"),
    ("MINIO_BACKUP_ROOT_PATH", "minio.backupRootPath"),
    (
        "BACKUP_MAX_SEGMENT_GROUP_SIZE",
        "backup.maxSegmentGroupSize",
    ),
    (
        "BACKUP_PARALLELISM_BACKUP_COLLECTION",
        "backup.parallelism.backupCollection",
    ),
    ("BACKUP_PARALLELISM_COPYDATA", "backup.parallelism.copydata"),
    (
        "BACKUP_PARALLELISM_RESTORE_COLLECTION",
        "backup.parallelism.restoreCollection",
    ),
    ("BACKUP_KEEP_TEMP_FILES", "backup.keepTempFiles"),
    ("MINIO_CA_CERT_PATH", "minio.caCertPath"),
    (
        "AZURE_STORAGE_CONNECTION_STRING",
        "minio.azureConnectionString",
    ),
    (
        "MINIO_BACKUP_AZURE_CONNECTION_STRING",
        "minio.backupAzureConnectionString",
    ),
    ("GCP_KEY_JSON", "minio.gcpCredentialJSON"),
    ("BACKUP_GCP_KEY_JSON", "minio.backupGcpCredentialJSON"),
    ("MILVUS_RPC_CHANNEL_NAME", "milvus.rpcChannelName"),
    ("BACKUP_GC_PAUSE_ENABLE", "backup.gcPause"),
    ("BACKUP_GC_PAUSE_SECONDS", "backup.gcPause.seconds"),
    ("BACKUP_GC_PAUSE_ADDRESS", "backup.gcPause.address"),
    ("MILVUS_BACKUP_TOKEN", "security.token"),
    ("MILVUS_BACKUP_TLS_CERT_PATH", "security.tls.certPath"),
    ("MILVUS_BACKUP_TLS_KEY_PATH", "security.tls.keyPath"),
    (
        "MILVUS_BACKUP_TLS_CLIENT_CA_PATH",
        "security.tls.clientCaPath",
    ),
];
