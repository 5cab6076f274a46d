//! The S3 backend (aws-sdk-s3): custom endpoints, path-style addressing, plain or TLS.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::provider_config::ProviderConfig;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream as SdkByteStream, SdkBody};
use aws_sdk_s3::types::{Delete, ObjectIdentifier, ServerSideEncryption};
use aws_smithy_http_client::tls;
use bytes::Bytes;
use futures::TryStreamExt;

use super::{ByteStream, CondPut, ObjectInfo, ObjectStore, Place, Source};
use crate::config::BucketConfig;
use crate::error::{Error, Result};

/// How long a connection to the endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `self.client.$op().bucket(&self.place.bucket).key($key)`: a request on one object.
macro_rules! on_object {
    ($s:ident, $op:ident, $key:expr) => {
        $s.client.$op().bucket(&$s.place.bucket).key($key)
    };
}

/// One bucket on an S3-compatible endpoint.
#[derive(Debug, Clone)]
pub struct S3Bucket {
    pub(super) client: Client,
    /// What requests are signed with (the keys, or the AWS default chain).
    credentials: SharedCredentialsProvider,
    pub(super) place: Place,
    /// Where to split the listings of large prefixes (see `s3_list.rs`).
    pub(super) splits: super::s3_list::Splits,
    /// Objects above this size are copied server-side in parts.
    multipart_copy_threshold: u64,
    /// The size of those parts.
    pub(super) copy_part_bytes: u64,
}

impl S3Bucket {
    /// A client for `cfg`'s bucket. Nothing is sent until the first call.
    /// A `caCertPath` that cannot be read is refused here, naming the file.
    pub fn new(cfg: &BucketConfig) -> Result<Self> {
        let mut trust = tls::TrustStore::default();
        if !cfg.ca_cert_path.is_empty() {
            trust = trust
                .with_pem_certificate(crate::tls::read_pem("minio.caCertPath", &cfg.ca_cert_path)?);
        }
        let tls_context = tls::TlsContext::builder()
            .with_trust_store(trust)
            .build()
            .map_err(|e| Error::invalid(format!("minio.caCertPath {:?}: {e}", cfg.ca_cert_path)))?;
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .tls_context(tls_context)
            .build_https();
        let credentials = credentials_provider(cfg, http.clone())?;
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&cfg.endpoint)
            .region(Region::new(cfg.region.clone()))
            .force_path_style(true)
            .credentials_provider(credentials.clone())
            .http_client(http)
            // Checksums only where S3 requires them: MinIO, moto and Garage differ here.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    // A server that stops answering is a failure, not a hang
                    // (streamed uploads: see `put_stream`).
                    .read_timeout(Duration::from_secs(30))
                    .build(),
            )
            // 500, 503, SlowDown, timeouts and resets: exponential backoff with jitter.
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(6)
                    .with_initial_backoff(Duration::from_millis(100))
                    .with_max_backoff(Duration::from_secs(5)),
            )
            .build();
        Ok(Self {
            client: Client::from_conf(conf),
            credentials,
            place: Place {
                service: "s3",
                owner: String::new(),
                endpoint: cfg.endpoint.clone(),
                bucket: cfg.bucket.clone(),
                // Same endpoint and same credentials: one can read what the other writes.
                identity: Some(if cfg.use_iam {
                    format!("{}|iam:{}", cfg.endpoint, cfg.iam_endpoint)
                } else {
                    format!("{}|{}", cfg.endpoint, cfg.access_key_id)
                }),
            },
            splits: Default::default(),
            multipart_copy_threshold: cfg.multipart_copy_threshold,
            copy_part_bytes: super::s3_parts::COPY_PART_BYTES,
        })
    }

    /// Copies server-side in parts of `part_bytes` (at least S3's 5 MiB) above
    /// `threshold` bytes.
    pub fn with_multipart_copy(mut self, threshold: u64, part_bytes: u64) -> Self {
        self.multipart_copy_threshold = threshold;
        self.copy_part_bytes = part_bytes.max(5 * 1024 * 1024);
        self
    }

    pub(super) fn error<E>(
        &self,
        operation: &'static str,
        key: &str,
        err: SdkError<E, HttpResponse>,
    ) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match &err {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => Error::Unavailable {
                service: "object store",
                address: self.place.endpoint.clone(),
                detail: format!("{operation} {}: {}", self.place.bucket, display_chain(&err)),
            },
            _ => {
                let reason = match (err.code(), err.message()) {
                    (Some(c), Some(m)) => format!("{c}: {m}"),
                    (Some(c), None) => c.to_string(),
                    _ => display_chain(&err),
                };
                let status = err.raw_response().map(|r| r.status().as_u16());
                // Missing is an answer, not a fault to retry: a missing
                // object is NOT_FOUND (a bare 404 only from an object's own
                // operations), a missing bucket a configuration to fix.
                let object_operation = matches!(
                    operation,
                    "GetObject" | "HeadObject" | "CopyObject" | "UploadPartCopy"
                );
                match (status, err.code()) {
                    (_, Some("NoSuchBucket")) => {
                        return Error::FailedPrecondition(format!(
                            "s3 {operation}: bucket {:?} does not exist at {}",
                            self.place.bucket, self.place.endpoint
                        ));
                    }
                    (_, Some("NoSuchKey")) | (Some(404), None | Some("NotFound"))
                        if object_operation || err.code() == Some("NoSuchKey") =>
                    {
                        return Error::not_found("object", format!("{}/{key}", self.place.bucket));
                    }
                    _ => {}
                }
                if matches!(status, Some(500 | 502 | 503 | 504)) {
                    return Error::Unavailable {
                        service: "object store",
                        address: self.place.endpoint.clone(),
                        detail: format!("{operation} {}/{key}: {reason}", self.place.bucket),
                    };
                }
                if matches!(status, Some(401 | 403)) {
                    // The keys are wrong, or not allowed to do this.
                    return Error::PermissionDenied(format!(
                        "s3 {} refused {operation} on bucket {:?} ({reason}): check the credentials \
                         and their rights",
                        self.place.endpoint, self.place.bucket
                    ));
                }
                Error::Storage {
                    operation,
                    key: format!("{}/{key}", self.place.bucket),
                    reason,
                }
            }
        }
    }
}

impl S3Bucket {
    /// Resolves the credentials this bucket signs with (from the AWS default
    /// chain with `useIAM`) and describes them without the secret:
    /// `access key ASIA…WXYZ (temporary)`.
    pub async fn credentials_summary(&self) -> Result<String> {
        let creds =
            self.credentials
                .provide_credentials()
                .await
                .map_err(|e| Error::Unavailable {
                    service: "credentials",
                    address: self.place.endpoint.clone(),
                    detail: display_chain(&e),
                })?;
        let key = creds.access_key_id();
        let shown = if key.len() > 8 {
            format!("{}…{}", &key[..4], &key[key.len() - 4..])
        } else {
            "…".to_string()
        };
        let kind = if creds.session_token().is_some() {
            "temporary"
        } else {
            "long-term"
        };
        Ok(format!("access key {shown} ({kind})"))
    }
}

/// The keys of the config, or with `useIAM` the AWS default credential chain:
/// environment, profile, web identity (EKS IRSA: `AWS_WEB_IDENTITY_TOKEN_FILE`,
/// `AWS_ROLE_ARN`; STS at `AWS_ENDPOINT_URL_STS` when set), ECS, then the
/// instance metadata service (at `iamEndpoint` when set).
fn credentials_provider(
    cfg: &BucketConfig,
    http: aws_sdk_s3::config::SharedHttpClient,
) -> Result<SharedCredentialsProvider> {
    if !cfg.use_iam {
        let token = cfg.session_token.expose();
        return Ok(SharedCredentialsProvider::new(Credentials::new(
            &cfg.access_key_id,
            cfg.secret_access_key.expose(),
            (!token.is_empty()).then(|| token.to_string()),
            None,
            "milvus-backup-config",
        )));
    }
    let conf = ProviderConfig::without_region()
        .with_region(Some(Region::new(cfg.region.clone())))
        .with_http_client(http);
    let mut imds = aws_config::imds::Client::builder().configure(&conf);
    if !cfg.iam_endpoint.is_empty() {
        let key = cfg
            .use_iam_key
            .replace("UseIAM", "IamEndpoint")
            .replace("useIAM", "iamEndpoint");
        imds = imds.endpoint(&cfg.iam_endpoint).map_err(|e| {
            Error::invalid(format!("{key} {:?} is not a URL: {e}", cfg.iam_endpoint))
        })?;
    }
    Ok(SharedCredentialsProvider::new(IamChain {
        key: cfg.use_iam_key,
        conf,
        imds: imds.build(),
        chain: tokio::sync::OnceCell::new(),
    }))
}

/// The AWS default credential chain, built on first use (building it is
/// async); the S3 client caches what it provides until shortly before expiry.
#[derive(Debug)]
struct IamChain {
    key: &'static str,
    conf: ProviderConfig,
    imds: aws_config::imds::Client,
    chain: tokio::sync::OnceCell<DefaultCredentialsChain>,
}

impl ProvideCredentials for IamChain {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let chain = self
                .chain
                .get_or_init(|| {
                    DefaultCredentialsChain::builder()
                        .configure(self.conf.clone())
                        .imds_client(self.imds.clone())
                        .build()
                })
                .await;
            chain.provide_credentials().await.map_err(|e| {
                CredentialsError::provider_error(format!(
                    "{} is true but the AWS default credential chain (environment, profile, web \
                     identity, ECS, instance metadata) gave no credentials: {}",
                    self.key,
                    display_chain(&e)
                ))
            })
        })
    }
}

impl S3Bucket {
    /// Sends a PutObject that carries its condition. 412 PreconditionFailed
    /// is a conflict, as is 404 NoSuchKey (an `If-Match` on an object gone
    /// meanwhile). 409 ConditionalRequestConflict, a conditional write that
    /// raced another one to the key, wrote nothing and says nothing of the
    /// condition: it is sent again, as AWS advises, and is UNAVAILABLE once
    /// the tries run out.
    async fn put_conditional(
        &self,
        put: impl Fn() -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder,
        operation: &'static str,
        key: &str,
        data: Bytes,
    ) -> Result<CondPut> {
        let tries = crate::retry::Backoff::COPY;
        let mut attempt = 1;
        loop {
            let sent = put()
                .bucket(&self.place.bucket)
                .key(key)
                .body(SdkByteStream::from(data.clone()))
                .send()
                .await;
            let e = match sent {
                Ok(out) => return Ok(CondPut::Written(out.e_tag.unwrap_or_default())),
                Err(e) => e,
            };
            match e.code() {
                Some("PreconditionFailed" | "NoSuchKey") => return Ok(CondPut::Conflict),
                Some("ConditionalRequestConflict") if attempt < tries.attempts => {
                    attempt += 1;
                    tokio::time::sleep(tries.delay(attempt)).await;
                }
                Some("ConditionalRequestConflict") => {
                    let err = Error::Unavailable {
                        service: "object store",
                        address: self.place.endpoint.clone(),
                        detail: format!(
                            "{operation} {}/{key}: 409 ConditionalRequestConflict {attempt} \
                             times in a row (other conditional writes to the key)",
                            self.place.bucket
                        ),
                    };
                    return CondPut::landed(err, self.read_versioned(key), &data).await;
                }
                _ => {
                    let err = self.error(operation, key, e);
                    return CondPut::landed(err, self.read_versioned(key), &data).await;
                }
            }
        }
    }
}

fn display_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        s.push_str(": ");
        s.push_str(&e.to_string());
        cur = e.source();
    }
    s
}

#[async_trait]
impl ObjectStore for S3Bucket {
    fn place(&self) -> &Place {
        &self.place
    }

    async fn ensure_bucket(&self, create: bool) -> Result<()> {
        let bucket = &self.place.bucket;
        match self.client.head_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_not_found() && create => {
                match self.client.create_bucket().bucket(bucket).send().await {
                    Ok(_) => Ok(()),
                    Err(e) if e.code() == Some("BucketAlreadyOwnedByYou") => Ok(()),
                    Err(e) => Err(self.error("CreateBucket", "", e)),
                }
            }
            Err(SdkError::ServiceError(e)) if e.err().is_not_found() => {
                Err(Error::not_found("bucket", self.location()))
            }
            Err(e) => Err(self.error("HeadBucket", "", e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.list_items(prefix, false).await
    }

    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>> {
        Ok(self
            .list_items(prefix, true)
            .await?
            .into_iter()
            .map(|d| d.key)
            .collect())
    }

    async fn head(&self, key: &str) -> Result<Option<u64>> {
        match on_object!(self, head_object, key).send().await {
            Ok(o) => Ok(Some(o.content_length().unwrap_or(0).max(0) as u64)),
            Err(SdkError::ServiceError(e)) if e.err().is_not_found() => Ok(None),
            Err(e) => Err(self.error("HeadObject", key, e)),
        }
    }

    async fn read(&self, key: &str) -> Result<Bytes> {
        match self.read_versioned(key).await? {
            Some((data, _)) => Ok(data),
            None => Err(Error::not_found(
                "object",
                format!("{}/{key}", self.place.bucket),
            )),
        }
    }

    async fn write(&self, key: &str, data: Bytes) -> Result<()> {
        self.client
            .put_object()
            .bucket(&self.place.bucket)
            .key(key)
            .body(SdkByteStream::from(data))
            .send()
            .await
            .map_err(|e| self.error("PutObject", key, e))?;
        Ok(())
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<CondPut> {
        let put = || self.client.put_object().if_none_match("*");
        self.put_conditional(put, "PutObject If-None-Match", key, data)
            .await
    }

    async fn put_if_match(&self, key: &str, data: Bytes, etag: &str) -> Result<CondPut> {
        // An empty If-Match is no condition at all to some stores (moto).
        if etag.is_empty() {
            return Ok(CondPut::Conflict);
        }
        let put = || self.client.put_object().if_match(etag);
        self.put_conditional(put, "PutObject If-Match", key, data)
            .await
    }

    async fn read_versioned(&self, key: &str) -> Result<Option<(Bytes, String)>> {
        let out = match on_object!(self, get_object, key).send().await {
            Ok(o) => o,
            Err(SdkError::ServiceError(e)) if e.err().is_no_such_key() => return Ok(None),
            // A bare 404 (some gateways give no error code).
            Err(e) => match self.error("GetObject", key, e) {
                Error::NotFound { .. } => return Ok(None),
                other => return Err(other),
            },
        };
        let etag = out.e_tag.clone().unwrap_or_default();
        let data = out.body.collect().await.map_err(|e| Error::Storage {
            operation: "GetObject",
            key: key.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Some((data.into_bytes(), etag)))
    }

    async fn get_stream(&self, key: &str) -> Result<(u64, ByteStream)> {
        let out = on_object!(self, get_object, key)
            .send()
            .await
            .map_err(|e| self.error("GetObject", key, e))?;
        let size = match out.content_length() {
            Some(n) => n.max(0) as u64,
            // An answer without its length: asked for it.
            None => self.head(key).await?.unwrap_or_default(),
        };
        let owned_key = key.to_string();
        let stream = futures::stream::unfold(out.body, |mut body| async move {
            body.next().await.map(|chunk| (chunk, body))
        })
        .map_err(move |e| Error::Storage {
            operation: "GetObject",
            key: owned_key.clone(),
            reason: e.to_string(),
        });
        Ok((size, Box::pin(stream)))
    }

    async fn put_stream(&self, key: &str, size: u64, body: ByteStream) -> Result<Option<String>> {
        if size > self.multipart_copy_threshold {
            return self.put_in_parts(key, size, body).await;
        }
        // A source of another size fails the upload: the length sent would
        // cut a longer one short, and store the cut as the whole object.
        let body = super::exactly(size, format!("{}/{key}", self.place.bucket), body);
        // The body moves at its source's pace: no read timeout (it would
        // limit the whole upload), a limit on standing still instead.
        let progress = super::stall::Progress::new();
        let frames = progress.track(body).map_ok(http_body::Frame::data);
        let sdk_body = SdkBody::from_body_1_x(http_body_util::StreamBody::new(frames));
        let upload = on_object!(self, put_object, key)
            .content_length(size as i64)
            .body(SdkByteStream::new(sdk_body))
            .customize()
            .config_override(
                aws_sdk_s3::config::Builder::default().timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(CONNECT_TIMEOUT)
                        .disable_read_timeout()
                        .build(),
                ),
            )
            .send();
        let upload = async { upload.await.map_err(|e| self.error("PutObject", key, e)) };
        let out = progress.watch(upload, "PutObject", key).await?;
        Ok(md5_etag(
            out.e_tag(),
            out.server_side_encryption(),
            out.sse_customer_algorithm(),
        ))
    }

    async fn copy_in(&self, from: Source<'_>, dst_key: &str) -> Result<Option<String>> {
        let source = format!("{}/{}", from.bucket, encode_copy_source(from.key));
        if from.size > self.multipart_copy_threshold {
            return self.copy_in_parts(from, &source, dst_key).await;
        }
        let out = on_object!(self, copy_object, dst_key)
            .copy_source(source)
            .send()
            .await
            .map_err(|e| self.error("CopyObject", dst_key, e))?;
        Ok(md5_etag(
            out.copy_object_result().and_then(|r| r.e_tag()),
            out.server_side_encryption(),
            out.sse_customer_algorithm(),
        ))
    }

    async fn delete(&self, keys: &[String]) -> Result<()> {
        for chunk in keys.chunks(1000) {
            let objects = chunk
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::Internal(e.to_string()))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| Error::Internal(e.to_string()))?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.place.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| self.error("DeleteObjects", &chunk[0], e))?;
            if let Some(err) = out.errors().first() {
                return Err(Error::Storage {
                    operation: "DeleteObjects",
                    key: err.key().unwrap_or_default().to_string(),
                    reason: err.message().unwrap_or_default().to_string(),
                });
            }
        }
        Ok(())
    }
}

/// Percent-encodes a key for the `x-amz-copy-source` header, keeping `/`.
fn encode_copy_source(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The ETag of a write when it is the MD5 of the bytes written: not under
/// SSE-KMS or SSE-C, whose ETags are not (a backup's checksums would then
/// call a sound object altered).
fn md5_etag(
    etag: Option<&str>,
    sse: Option<&ServerSideEncryption>,
    sse_customer_algorithm: Option<&str>,
) -> Option<String> {
    let kms = matches!(
        sse,
        Some(ServerSideEncryption::AwsKms | ServerSideEncryption::AwsKmsDsse)
    );
    (!kms && sse_customer_algorithm.is_none())
        .then(|| etag.map(str::to_string))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_etag_without_kms_or_customer_keys_is_taken_for_an_md5() {
        let tag = Some("\"9e107d9d372bb6826bd81d3542a419d6\"");
        assert_eq!(md5_etag(tag, None, None).as_deref(), tag);
        let s3_keys = ServerSideEncryption::Aes256;
        assert_eq!(md5_etag(tag, Some(&s3_keys), None).as_deref(), tag);
        for kms in [
            ServerSideEncryption::AwsKms,
            ServerSideEncryption::AwsKmsDsse,
        ] {
            assert_eq!(md5_etag(tag, Some(&kms), None), None, "{kms:?}");
        }
        assert_eq!(md5_etag(tag, None, Some("AES256")), None, "SSE-C");
    }
}
