//! Where Milvus's bucket and the backup bucket live, and how each is reached.

use super::{MinioConfig, Secret};
use crate::error::{Error, Result};

/// Where one bucket lives and how to reach it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketConfig {
    /// `http(s)://host:port`.
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing `/`.
    pub root_path: String,
    /// A PEM CA bundle trusted besides the system's (empty: the system's only).
    pub ca_cert_path: String,
    /// Objects above this many bytes are copied server-side in parts.
    pub multipart_copy_threshold: u64,
    /// A session token sent with the static keys (`minio.token`; empty: none).
    pub session_token: Secret,
    /// Credentials from the AWS default chain (environment, profile, web
    /// identity, ECS, IMDS) instead of the keys (`minio.useIAM`).
    pub use_iam: bool,
    /// The instance metadata (IMDS) endpoint of that chain (`minio.iamEndpoint`;
    /// empty: the standard one).
    pub iam_endpoint: String,
    /// The key that turned `use_iam` on, for messages (`minio.useIAM`).
    pub use_iam_key: &'static str,
    /// The service the bucket is on; the fields above are S3's.
    pub backend: Backend,
}

/// The service a bucket is on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Backend {
    /// An S3-compatible endpoint (`storageType` minio, s3 or aws).
    #[default]
    S3,
    /// Azure Blob Storage (`storageType: azure`); the bucket is a container.
    Azure(AzureAccess),
    /// Google Cloud Storage through its JSON API (`storageType: gcpnative`).
    Gcs(GcsAccess),
}

/// How an Azure storage account is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureAccess {
    pub account: String,
    /// The Blob service's URL, such as `https://{account}.blob.core.windows.net`
    /// (Azurite: `http://127.0.0.1:10000/devstoreaccount1`).
    pub blob_endpoint: String,
    pub credential: AzureCredential,
}

/// What Azure requests are authorized with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AzureCredential {
    /// The account's shared key (base64).
    Key(Secret),
    /// A SAS token's query string, without the leading `?`.
    Sas(Secret),
}

/// How Google Cloud Storage is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcsAccess {
    /// The JSON API's base URL, such as `https://storage.googleapis.com`.
    pub endpoint: String,
    /// A service account key file (`gcpCredentialJSON`); empty: the application
    /// default credentials (`GOOGLE_APPLICATION_CREDENTIALS`, or the metadata server).
    pub credential_json: String,
}

impl BucketConfig {
    /// The service a bucket is on, for comparing two buckets' places.
    pub fn service(&self) -> String {
        match &self.backend {
            Backend::S3 => self.endpoint.clone(),
            Backend::Azure(a) => format!("azure {}", a.blob_endpoint),
            Backend::Gcs(g) => format!("gcs {}", g.endpoint),
        }
    }
}

/// Which of the two buckets a setting is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Milvus,
    Backup,
}

/// The folders Milvus keeps under its `rootPath`.
const MILVUS_DIRS: [&str; 4] = ["insert_log", "delta_log", "stats_log", "index_files"];

impl MinioConfig {
    /// Refuses a backup root that is empty, or that overlaps Milvus's
    /// `rootPath` in the same bucket: a backup's folder there could hold, and
    /// a delete could remove, Milvus's own files.
    pub fn check_backup_root(&self) -> Result<()> {
        if self.backups_are_local() {
            return Ok(());
        }
        let (milvus, backup) = (self.milvus_bucket()?, self.backup_bucket()?);
        if backup.root_path.is_empty() {
            return Err(Error::invalid(
                "minio.backupRootPath must not be empty: backups need a folder of their own \
                 (the Go tool's default is \"backup\")",
            ));
        }
        if milvus.service() == backup.service() && milvus.bucket == backup.bucket {
            let (m, b) = (&milvus.root_path, &backup.root_path);
            let inside = |a: &str, b: &str| a == b || b.starts_with(&format!("{a}/"));
            // With an empty rootPath, Milvus's folders sit at the bucket's root.
            let milvus_dir = MILVUS_DIRS.contains(&b.split('/').next().unwrap_or_default());
            if (m.is_empty() && milvus_dir) || (!m.is_empty() && (inside(m, b) || inside(b, m))) {
                return Err(Error::invalid(format!(
                    "minio.backupRootPath {b:?} overlaps Milvus's minio.rootPath {m:?} in bucket {:?}; \
                     give backups a folder outside Milvus's (for example \"backup\")",
                    backup.bucket
                )));
            }
        }
        Ok(())
    }

    /// Milvus's own bucket.
    pub fn milvus_bucket(&self) -> Result<BucketConfig> {
        Ok(BucketConfig {
            endpoint: endpoint(&self.address, self.port, self.use_ssl),
            region: region_or_default(&self.region),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            bucket: self.bucket_name.clone(),
            root_path: trim_slashes(&self.root_path),
            ca_cert_path: self.ca_cert_path.clone(),
            multipart_copy_threshold: self.multipart_copy_threshold_mib.max(1) * 1024 * 1024,
            session_token: self.token.clone(),
            use_iam: self.use_iam,
            iam_endpoint: self.iam_endpoint.clone(),
            use_iam_key: "minio.useIAM",
            backend: self.backend(Side::Milvus)?,
        })
    }

    /// The backup bucket: on Milvus's endpoint unless `backupAddress` names
    /// another one, or `backupStorageType` another service.
    pub fn backup_bucket(&self) -> Result<BucketConfig> {
        let own = self.milvus_bucket()?;
        let same_endpoint = self.backup_address.is_empty();
        let mut bucket = if same_endpoint {
            // Milvus's endpoint, with Milvus's credentials.
            BucketConfig {
                use_iam_key: if own.use_iam {
                    "minio.useIAM"
                } else {
                    "minio.backupUseIAM"
                },
                ..own
            }
        } else {
            let port = if self.backup_port == 0 {
                self.port
            } else {
                self.backup_port
            };
            BucketConfig {
                endpoint: endpoint(&self.backup_address, port, self.backup_use_ssl()),
                region: region_or_default(if self.backup_region.is_empty() {
                    &self.region
                } else {
                    &self.backup_region
                }),
                access_key_id: self.backup_access_key_id.clone(),
                secret_access_key: self.backup_secret_access_key.clone(),
                session_token: self.backup_token.clone(),
                use_iam_key: "minio.backupUseIAM",
                ..own
            }
        };
        if self.backup_use_iam || !same_endpoint {
            bucket.use_iam = self.backup_use_iam;
            bucket.iam_endpoint = if self.backup_iam_endpoint.is_empty() && same_endpoint {
                self.iam_endpoint.clone()
            } else {
                self.backup_iam_endpoint.clone()
            };
        }
        bucket.bucket = if self.backup_bucket_name.is_empty() {
            self.bucket_name.clone()
        } else {
            self.backup_bucket_name.clone()
        };
        bucket.root_path = trim_slashes(&self.backup_root_path);
        bucket.backend = self.backend(Side::Backup)?;
        Ok(bucket)
    }

    /// Whether the backup endpoint uses TLS: `backupUseSSL`, or unset, `useSSL`.
    fn backup_use_ssl(&self) -> bool {
        self.backup_use_ssl.unwrap_or(self.use_ssl)
    }

    /// Whether the `backup*` connection settings (keys, region, port, SSL,
    /// token) are used: with `backupAddress`, or on Azure or GCS named by
    /// `backupStorageType` apart from Milvus's service. On an S3-protocol
    /// service without `backupAddress`, backups use Milvus's endpoint and
    /// credentials; local backups use no connection.
    pub(super) fn backup_connection_applies(&self) -> bool {
        let kind = self.service_type(Side::Backup);
        match kind.as_str() {
            "local" => false,
            "azure" | "gcpnative" => {
                !self.backup_address.is_empty() || kind != self.service_type(Side::Milvus)
            }
            _ => !self.backup_address.is_empty(),
        }
    }

    /// Whether backups go to the local directory `backupRootPath`
    /// (`backupStorageType: local`, in any case, spaces around it allowed).
    pub fn backups_are_local(&self) -> bool {
        self.service_type(Side::Backup) == "local"
    }

    /// The service type of one side: `backupStorageType`, when set, else Milvus's.
    fn service_type(&self, side: Side) -> String {
        let milvus = if self.cloud_provider.trim().eq_ignore_ascii_case("azure") {
            "azure".to_string()
        } else {
            self.storage_type.trim().to_ascii_lowercase()
        };
        let backup = self.backup_storage_type.trim().to_ascii_lowercase();
        match side {
            Side::Backup if !backup.is_empty() => backup,
            _ => milvus,
        }
    }

    /// The service of one side, with what reaches it; a missing or malformed
    /// setting is refused here, naming its key.
    fn backend(&self, side: Side) -> Result<Backend> {
        let kind = self.service_type(side);
        // The backup side has settings of its own when it names another
        // endpoint or another service; otherwise it shares Milvus's.
        let own = side == Side::Milvus
            || !self.backup_address.is_empty()
            || kind != self.service_type(Side::Milvus);
        let pick = |milvus: &str, backup: &str| -> (String, &'static str) {
            match side {
                Side::Milvus => (milvus.to_string(), ""),
                Side::Backup if own => (backup.to_string(), "backup"),
                Side::Backup => (milvus.to_string(), ""),
            }
        };
        let key = |prefix: &str, name: &str| {
            if prefix.is_empty() {
                format!("minio.{name}")
            } else {
                let mut c = name.chars();
                let first = c.next().map(|f| f.to_ascii_uppercase()).unwrap_or_default();
                format!("minio.{prefix}{first}{}", c.as_str())
            }
        };
        match kind.as_str() {
            "azure" => {
                let (conn, p) = match side {
                    Side::Backup if !self.backup_azure_connection_string.expose().is_empty() => {
                        (self.backup_azure_connection_string.clone(), "backup")
                    }
                    Side::Backup if own => (Secret::default(), "backup"),
                    _ => (self.azure_connection_string.clone(), ""),
                };
                if !conn.expose().is_empty() {
                    let access = parse_connection_string(conn.expose()).map_err(|why| {
                        Error::invalid(format!("{} {why}", key(p, "azureConnectionString")))
                    })?;
                    return Ok(Backend::Azure(access));
                }
                let (account, p) = pick(&self.access_key_id, &self.backup_access_key_id);
                let secret = if p.is_empty() {
                    &self.secret_access_key
                } else {
                    &self.backup_secret_access_key
                };
                let use_iam = if p.is_empty() {
                    self.use_iam
                } else {
                    self.backup_use_iam
                };
                if use_iam {
                    return Err(Error::invalid(format!(
                        "{} is not supported with Azure: give the account's key or a SAS token in {}, \
                         or a connection string in {}",
                        key(p, "useIAM"),
                        key(p, "secretAccessKey"),
                        key(p, "azureConnectionString"),
                    )));
                }
                if account.is_empty() || secret.expose().is_empty() {
                    return Err(Error::invalid(format!(
                        "Azure storage needs the account name in {} and its key or a SAS token in {} \
                         (or a connection string in {})",
                        key(p, "accessKeyID"),
                        key(p, "secretAccessKey"),
                        key(p, "azureConnectionString"),
                    )));
                }
                let (address, _) = pick(&self.address, &self.backup_address);
                let port = match side {
                    // Azure itself, when no address is given.
                    _ if address.trim().is_empty() => 443,
                    Side::Backup if own && self.backup_port != 0 => self.backup_port,
                    _ => self.port,
                };
                let address = match address.trim() {
                    "" => "core.windows.net".to_string(),
                    _ => address,
                };
                let blob_endpoint =
                    if address.starts_with("http://") || address.starts_with("https://") {
                        address.trim_end_matches('/').to_string()
                    } else if matches!(port, 0 | 443) {
                        format!("https://{account}.blob.{address}")
                    } else {
                        format!("https://{account}.blob.{address}:{port}")
                    };
                let credential = azure_credential(secret.expose());
                if let AzureCredential::Key(k) = &credential
                    && !is_base64(k.expose())
                {
                    return Err(Error::invalid(format!(
                        "{} is not an Azure account key (base64) nor a SAS token (sv=...)",
                        key(p, "secretAccessKey")
                    )));
                }
                Ok(Backend::Azure(AzureAccess {
                    account,
                    blob_endpoint,
                    credential,
                }))
            }
            "gcpnative" => {
                let (address, p) = pick(&self.address, &self.backup_address);
                let (port, ssl) = if p.is_empty() {
                    (self.port, self.use_ssl)
                } else {
                    (
                        if self.backup_port == 0 {
                            self.port
                        } else {
                            self.backup_port
                        },
                        self.backup_use_ssl(),
                    )
                };
                // The backup side's key file is its own whatever its address
                // (as the Go tool reads it); unset, Milvus's.
                let json = match side {
                    Side::Backup if !self.backup_gcp_credential_json.expose().is_empty() => {
                        self.backup_gcp_credential_json.expose()
                    }
                    _ => self.gcp_credential_json.expose(),
                };
                let endpoint = if address.is_empty() || address == "storage.googleapis.com" {
                    "https://storage.googleapis.com".to_string()
                } else {
                    endpoint(&address, port, ssl)
                };
                Ok(Backend::Gcs(GcsAccess {
                    endpoint,
                    credential_json: json.to_string(),
                }))
            }
            _ => Ok(Backend::S3),
        }
    }
}

fn is_base64(s: &str) -> bool {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).is_ok()
}

/// A key, or a SAS token (it holds `sv=`, the service version).
fn azure_credential(secret: &str) -> AzureCredential {
    let s = secret.trim().trim_start_matches('?');
    if s.starts_with("sv=") || s.contains("&sv=") {
        AzureCredential::Sas(Secret::new(s))
    } else {
        AzureCredential::Key(Secret::new(s))
    }
}

/// Reads an Azure Storage connection string (`AccountName=...;AccountKey=...;
/// BlobEndpoint=...`); the error never repeats the string, which holds the key.
fn parse_connection_string(conn: &str) -> std::result::Result<AzureAccess, String> {
    let mut fields = std::collections::HashMap::new();
    for part in conn.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or("is not a connection string: each part is Name=value")?;
        fields.insert(k.to_ascii_lowercase(), v.to_string());
    }
    let get = |k: &str| fields.get(k).cloned().unwrap_or_default();
    let account = get("accountname");
    let credential = match (get("accountkey"), get("sharedaccesssignature")) {
        (key, _) if !key.is_empty() && !is_base64(&key) => {
            return Err("has an AccountKey that is not base64".into());
        }
        (key, _) if !key.is_empty() => AzureCredential::Key(Secret::new(key)),
        (_, sas) if !sas.is_empty() => {
            AzureCredential::Sas(Secret::new(sas.trim_start_matches('?')))
        }
        _ => return Err("has neither AccountKey nor SharedAccessSignature".into()),
    };
    let blob_endpoint = match get("blobendpoint") {
        e if !e.is_empty() => e.trim_end_matches('/').to_string(),
        _ if account.is_empty() => return Err("has neither AccountName nor BlobEndpoint".into()),
        _ => {
            let protocol = match get("defaultendpointsprotocol") {
                p if p.is_empty() => "https".to_string(),
                p => p,
            };
            let suffix = match get("endpointsuffix") {
                s if s.is_empty() => "core.windows.net".to_string(),
                s => s,
            };
            format!("{protocol}://{account}.blob.{suffix}")
        }
    };
    let account = if account.is_empty() {
        // Azurite's path-style endpoint names the account as its first segment.
        blob_endpoint
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string()
    } else {
        account
    };
    Ok(AzureAccess {
        account,
        blob_endpoint,
        credential,
    })
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
