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
        env!("MINIO_CA_CERT_PATH" => s.ca_cert_path, string);
        env!("MILVUS_BACKUP_TOKEN" => self.security.token, secret);
        let tls = &mut self.security.tls;
        env!("MILVUS_BACKUP_TLS_CERT_PATH" => tls.cert_path, string);
        env!("MILVUS_BACKUP_TLS_KEY_PATH" => tls.key_path, string);
        env!("MILVUS_BACKUP_TLS_CLIENT_CA_PATH" => tls.client_ca_path, string);
        Ok(())
    }
}
