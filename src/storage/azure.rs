//! Azure Blob Storage: one container, through the `object_store` crate's
//! client, plus the two calls it lacks (creating a container, and Copy Blob
//! from another container of the same account), signed here with the
//! account's shared key or a SAS token.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use object_store::azure::{MicrosoftAzure, MicrosoftAzureBuilder};
use reqwest::{Method, StatusCode};

use super::cloud::{self, Cloud};
use super::{ByteStream, CondPut, ObjectInfo, ObjectStore, Place, Source};
use crate::config::{AzureAccess, AzureCredential};
use crate::error::{Error, Result};

/// The REST version our own requests speak.
const API_VERSION: &str = "2021-08-06";

/// One container of an Azure storage account.
#[derive(Debug, Clone)]
pub struct AzureContainer {
    cloud: Cloud,
    access: AzureAccess,
    http: reqwest::Client,
}

impl AzureContainer {
    /// A client for `container` of the account `access` reaches. Nothing is
    /// sent until the first call.
    pub fn new(access: &AzureAccess, container: &str) -> Result<Self> {
        let mut builder = MicrosoftAzureBuilder::new()
            .with_account(&access.account)
            .with_container_name(container)
            .with_endpoint(access.blob_endpoint.clone())
            .with_retry(cloud::retry_config())
            .with_client_options(cloud::client_options())
            .with_allow_http(access.blob_endpoint.starts_with("http://"));
        builder = match &access.credential {
            AzureCredential::Key(key) => builder.with_access_key(key.expose()),
            AzureCredential::Sas(sas) => builder.with_sas_authorization(sas_pairs(sas.expose())),
        };
        let store: MicrosoftAzure = builder.build().map_err(|e| {
            Error::invalid(format!(
                "azure account {:?} at {}: {}",
                access.account,
                access.blob_endpoint,
                cloud::redact(&e.to_string())
            ))
        })?;
        let store: Arc<dyn object_store::ObjectStore> = Arc::new(store);
        Ok(Self {
            cloud: Cloud::new(
                Place {
                    service: "azure",
                    owner: format!("account {:?}", access.account),
                    endpoint: access.blob_endpoint.clone(),
                    bucket: container.to_string(),
                    identity: Some(copy_identity(access)),
                },
                store,
            ),
            access: access.clone(),
            http: reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(5))
                .timeout(std::time::Duration::from_secs(300))
                .build()
                .map_err(|e| Error::Internal(format!("azure http client: {e}")))?,
        })
    }

    /// Sends one request of ours to `{endpoint}/{path}?{query}`, signed.
    async fn send(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, String)],
    ) -> Result<reqwest::Response> {
        let mut url = reqwest::Url::parse(&format!("{}/{path}", self.access.blob_endpoint))
            .map_err(|e| {
                Error::invalid(format!("azure endpoint {}: {e}", self.access.blob_endpoint))
            })?;
        for (k, v) in query {
            url.query_pairs_mut().append_pair(k, v);
        }
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let mut all: Vec<(String, String)> = vec![
            ("x-ms-date".into(), date),
            ("x-ms-version".into(), API_VERSION.into()),
        ];
        all.extend(headers.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let mut req = self.http.request(method.clone(), url.clone());
        match &self.access.credential {
            AzureCredential::Key(key) => {
                let auth = shared_key(&self.access.account, key.expose(), &method, &url, &all)?;
                req = req.header("authorization", auth);
            }
            AzureCredential::Sas(sas) => {
                let mut signed = url.clone();
                signed
                    .query_pairs_mut()
                    .extend_pairs(sas_pairs(sas.expose()));
                req = self.http.request(method.clone(), signed);
            }
        }
        for (k, v) in &all {
            req = req.header(k.as_str(), v.as_str());
        }
        req.header("content-length", "0")
            .send()
            .await
            .map_err(|e| self.cloud.transport_error(operation, path, &e))
    }

    /// The service's answer to one of our requests, as an error.
    async fn refused(&self, operation: &'static str, key: &str, resp: reqwest::Response) -> Error {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        let code = between(&body, "<Code>", "</Code>").unwrap_or(status.as_str());
        self.cloud
            .status_error(operation, key, status.as_u16(), code)
    }

    /// Copy Blob from `from` (a container of the same account, this one
    /// too); waits while the service reports the copy pending. A pending
    /// copy that fails, is replaced, outlasts its wait or is stopped (`from`)
    /// is aborted, so that it stops writing into the blob (which an abort
    /// leaves empty, for the caller's cleanup to find).
    async fn copy_blob(&self, from: Source<'_>, dst_key: &str) -> Result<()> {
        let (src_container, src_key, size) = (from.bucket, from.key, from.size);
        let mut source = format!(
            "{}/{src_container}/{}",
            self.access.blob_endpoint,
            encode_key(src_key)
        );
        if let AzureCredential::Sas(sas) = &self.access.credential {
            source = format!("{source}?{}", sas.expose());
        }
        let path = format!("{}/{}", self.cloud.bucket.as_str(), encode_key(dst_key));
        let resp = self
            .send(
                "CopyBlob",
                Method::PUT,
                &path,
                &[],
                &[("x-ms-copy-source", source)],
            )
            .await?;
        if !resp.status().is_success() {
            return Err(self.refused("CopyBlob", dst_key, resp).await);
        }
        match copy_status(&resp).as_deref() {
            Some("success") => return Ok(()),
            Some("pending") => {}
            None => return Err(self.copy_error(dst_key, "the answer tells no copy status".into())),
            Some(other) => return Err(self.copy_error(dst_key, format!("copy ended {other}"))),
        }
        let Some(copy_id) = header(&resp, "x-ms-copy-id") else {
            return Err(self.copy_error(dst_key, "a pending copy without its id".into()));
        };
        let mut pending = PendingCopy {
            store: Some(self.clone()),
            path,
            dst_key: dst_key.to_string(),
            copy_id,
        };
        let waited = self
            .wait_for_copy(&pending.path, dst_key, &pending.copy_id, size, from)
            .await;
        if waited.is_err() {
            // Cancelled during this abort, the guard aborts once more.
            self.abort_copy(&pending.path, dst_key, &pending.copy_id)
                .await;
        }
        pending.store = None;
        waited
    }

    /// Follows pending copy `copy_id` into `dst_key` until it ends: two
    /// minutes, and a second more per 10 MiB. A few failed looks in a row
    /// are let pass; a blob that no longer carries this copy's id was
    /// written over, and a status that is not there is no success.
    async fn wait_for_copy(
        &self,
        path: &str,
        dst_key: &str,
        copy_id: &str,
        size: u64,
        from: Source<'_>,
    ) -> Result<()> {
        const FAILED_LOOKS: u32 = 5;
        let wait = std::time::Duration::from_secs(120 + size / (10 << 20));
        let deadline = std::time::Instant::now() + wait;
        let mut failed = 0;
        loop {
            if std::time::Instant::now() > deadline {
                return Err(self.copy_error(
                    dst_key,
                    format!("copy still pending after {} s", wait.as_secs()),
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            from.check_stop()?;
            let head = match self
                .send("GetBlobProperties", Method::HEAD, path, &[], &[])
                .await
            {
                Ok(head) if head.status().is_success() => head,
                Ok(head) if failed < FAILED_LOOKS && transient(head.status()) => {
                    failed += 1;
                    continue;
                }
                Ok(head) => return Err(self.refused("GetBlobProperties", dst_key, head).await),
                Err(_) if failed < FAILED_LOOKS => {
                    failed += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            failed = 0;
            if header(&head, "x-ms-copy-id").as_deref() != Some(copy_id) {
                return Err(self.copy_error(
                    dst_key,
                    "another write replaced the blob while it was being copied".into(),
                ));
            }
            match copy_status(&head).as_deref() {
                Some("pending") => {}
                Some("success") => return Ok(()),
                Some(other) => {
                    return Err(self.copy_error(dst_key, format!("copy ended {other}")));
                }
                None => {
                    return Err(self.copy_error(dst_key, "the blob tells no copy status".into()));
                }
            }
        }
    }

    /// Aborts pending copy `copy_id` (Abort Copy Blob); a failure is logged.
    async fn abort_copy(&self, path: &str, dst_key: &str, copy_id: &str) {
        let query = [("comp", "copy"), ("copyid", copy_id)];
        let abort = [("x-ms-copy-action", "abort".to_string())];
        match self
            .send("AbortCopyBlob", Method::PUT, path, &query, &abort)
            .await
        {
            Ok(resp) if resp.status().is_success() => {
                tracing::info!(key = %dst_key, "aborted the pending copy")
            }
            Ok(resp) => {
                let e = self.refused("AbortCopyBlob", dst_key, resp).await;
                tracing::warn!(key = %dst_key, error = %e, "cannot abort the pending copy")
            }
            Err(e) => tracing::warn!(key = %dst_key, error = %e, "cannot abort the pending copy"),
        }
    }

    fn copy_error(&self, dst_key: &str, reason: String) -> Error {
        Error::Storage {
            operation: "CopyBlob",
            key: format!("{}/{dst_key}", self.cloud.bucket.as_str()),
            reason,
        }
    }
}

#[async_trait]
impl ObjectStore for AzureContainer {
    fn place(&self) -> &Place {
        &self.cloud
    }

    async fn ensure_bucket(&self, create: bool) -> Result<()> {
        let path = self.cloud.bucket.as_str().to_string();
        let query = [("restype", "container")];
        let mut resp = self
            .send("GetContainerProperties", Method::HEAD, &path, &query, &[])
            .await?;
        // A SAS scoped to the container may not read its properties: a
        // listing of one blob, which it may, says whether it is there.
        let mut operation = "GetContainerProperties";
        if resp.status() == StatusCode::FORBIDDEN {
            let list = [
                ("restype", "container"),
                ("comp", "list"),
                ("maxresults", "1"),
            ];
            operation = "ListBlobs";
            resp = self.send(operation, Method::GET, &path, &list, &[]).await?;
        }
        if resp.status().is_success() {
            return Ok(());
        }
        if resp.status() != StatusCode::NOT_FOUND {
            return Err(self.refused(operation, "", resp).await);
        }
        if !create {
            return Err(Error::NotFound {
                kind: "azure container",
                name: self.cloud.location(),
            });
        }
        let resp = self
            .send("CreateContainer", Method::PUT, &path, &query, &[])
            .await?;
        if resp.status().is_success() || resp.status() == StatusCode::CONFLICT {
            return Ok(());
        }
        Err(self.refused("CreateContainer", "", resp).await)
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.cloud.list(prefix).await
    }
    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>> {
        self.cloud.list_dirs(prefix).await
    }
    async fn head(&self, key: &str) -> Result<Option<u64>> {
        self.cloud.head(key).await
    }
    async fn read(&self, key: &str) -> Result<Bytes> {
        self.cloud.read(key).await
    }
    async fn write(&self, key: &str, data: Bytes) -> Result<()> {
        self.cloud.write(key, data).await
    }
    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<CondPut> {
        self.cloud.put_if_absent(key, data).await
    }
    async fn put_if_match(&self, key: &str, data: Bytes, etag: &str) -> Result<CondPut> {
        self.cloud.put_if_match(key, data, etag).await
    }
    async fn read_versioned(&self, key: &str) -> Result<Option<(Bytes, String)>> {
        self.cloud.read_versioned(key).await
    }
    async fn get_stream(&self, key: &str) -> Result<(u64, ByteStream)> {
        self.cloud.get_stream(key).await
    }
    async fn put_stream(&self, key: &str, size: u64, body: ByteStream) -> Result<Option<String>> {
        self.cloud.put_stream(key, size, body).await
    }
    async fn copy_in(&self, from: Source<'_>, dst_key: &str) -> Result<Option<String>> {
        // Copy Blob in either case, followed while the service reports it pending.
        self.copy_blob(from, dst_key).await?;
        Ok(self.cloud.etag_of(dst_key).await?)
    }
    async fn delete(&self, keys: &[String]) -> Result<()> {
        self.cloud.delete(keys).await
    }
}

/// Who can Copy Blob from whom: with the account key, any container of the
/// account; with a SAS (which a container may scope), only a store signing
/// with the same SAS, which the copy's source is signed with.
fn copy_identity(access: &AzureAccess) -> String {
    let base = format!("azure|{}|{}", access.blob_endpoint, access.account);
    match &access.credential {
        AzureCredential::Key(_) => base,
        AzureCredential::Sas(sas) => {
            use md5::Digest as _;
            let digest = md5::Md5::digest(sas.expose().as_bytes());
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            format!("{base}|sas {hex}")
        }
    }
}

/// `sv=...&sig=...` as query pairs.
fn sas_pairs(sas: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{}", sas.trim_start_matches('?')))
        .map(|u| {
            u.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// A blob name as it stands in a URL path: each segment percent-encoded.
fn encode_key(key: &str) -> String {
    key.split('/')
        .map(|s| percent_encoding::utf8_percent_encode(s, SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A Copy Blob the service reports pending, while it is followed: dropped
/// before it ended (its job was cancelled), it is aborted on a task of its
/// own, so that it stops writing into a blob the job's cleanup removes (not
/// when the runtime itself is shutting down: the task is then dropped).
struct PendingCopy {
    /// Taken once the copy is followed to its end.
    store: Option<AzureContainer>,
    path: String,
    dst_key: String,
    copy_id: String,
}

impl Drop for PendingCopy {
    fn drop(&mut self) {
        let (Some(store), Ok(runtime)) = (self.store.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let (path, dst_key, copy_id) = (
            std::mem::take(&mut self.path),
            std::mem::take(&mut self.dst_key),
            std::mem::take(&mut self.copy_id),
        );
        runtime.spawn(async move { store.abort_copy(&path, &dst_key, &copy_id).await });
    }
}

fn copy_status(resp: &reqwest::Response) -> Option<String> {
    header(resp, "x-ms-copy-status")
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// An answer worth asking again: the service busy or failing for a while.
fn transient(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)? + start.len();
    Some(&s[from..from + s[from..].find(end)?])
}

/// The `SharedKey` authorization header of a request with no body
/// (<https://learn.microsoft.com/rest/api/storageservices/authorize-with-shared-key>).
fn shared_key(
    account: &str,
    key: &str,
    method: &Method,
    url: &reqwest::Url,
    headers: &[(String, String)],
) -> Result<String> {
    use base64::Engine as _;
    let secret = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|_| {
            Error::invalid(format!(
                "the key of azure account {account:?} is not base64"
            ))
        })?;
    let mut ms: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| k.starts_with("x-ms-"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    ms.sort();
    let mut query: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.into_owned()))
        .collect();
    query.sort();
    // Method, then eleven standard headers (all empty for our bodiless
    // requests: Content-Length 0 is written empty), then ours and the resource.
    let mut s = format!("{method}\n\n\n\n\n\n\n\n\n\n\n\n");
    for (k, v) in &ms {
        s.push_str(&format!("{k}:{v}\n"));
    }
    s.push_str(&format!("/{account}{}", url.path()));
    for (k, v) in &query {
        s.push_str(&format!("\n{k}:{v}"));
    }
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret),
        s.as_bytes(),
    );
    Ok(format!(
        "SharedKey {account}:{}",
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    ))
}
