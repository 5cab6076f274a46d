//! The operations of [`super::ObjectStore`] over an `object_store` client
//! (one container or bucket), with its errors told apart: unreachable,
//! refused credentials, or an answer naming the key. No message ever holds
//! a secret or a SAS signature.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    ClientOptions, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig, UpdateVersion, WriteMultipart,
};

use super::{ByteStream, CondPut, ObjectInfo, Place};
use crate::error::{Error, Result};

/// Objects up to this size are written in one request; larger ones in
/// blocks of this size, two in flight, so memory stays flat.
const BLOCK_BYTES: usize = 8 * 1024 * 1024;
const BLOCKS_IN_FLIGHT: usize = 2;

/// 5xx, throttling, timeouts and resets: exponential backoff, then the error.
pub fn retry_config() -> RetryConfig {
    RetryConfig {
        max_retries: 5,
        retry_timeout: Duration::from_secs(60),
        ..RetryConfig::default()
    }
}

/// A server that stops answering is a failure, not a hang: no answer, or
/// no byte of a body being read, for 2 minutes. No limit on a whole request:
/// a read streamed at a capped copy's pace takes as long as it takes (a
/// limit of 300 s failed every read of a large blob longer than that, again
/// at each retry). (Also makes ring, as everywhere else here, the process's
/// TLS crypto, which reqwest needs.)
pub fn client_options() -> ClientOptions {
    let _ = rustls::crypto::ring::default_provider().install_default();
    ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout_disabled()
        .with_read_timeout(Duration::from_secs(120))
}

impl Place {
    /// A request that got no answer: the service is unavailable.
    pub fn transport_error(
        &self,
        operation: &str,
        key: &str,
        err: &dyn std::fmt::Display,
    ) -> Error {
        Error::Unavailable {
            service: "object store",
            address: self.endpoint.clone(),
            detail: format!(
                "{} {operation} {}/{key}: {}",
                self.service,
                self.bucket,
                redact(&err.to_string())
            ),
        }
    }

    /// An answer with an error status (`code`: the service's own, or the reason phrase).
    pub fn status_error(
        &self,
        operation: &'static str,
        key: &str,
        status: u16,
        code: &str,
    ) -> Error {
        if status == 401 || status == 403 {
            return Error::PermissionDenied(format!(
                "{} {} refused {operation} on {:?} ({status} {code}): check the credentials and \
                 their rights",
                self.service, self.owner, self.bucket
            ));
        }
        if status == 404 {
            return Error::not_found("object", format!("{}/{key}", self.bucket));
        }
        Error::Storage {
            operation,
            key: format!("{}/{key}", self.bucket),
            reason: format!("{status} {code}"),
        }
    }
}

/// One container or bucket of a cloud service, through `object_store`.
#[derive(Debug, Clone)]
pub struct Cloud {
    place: Place,
    store: Arc<dyn ObjectStore>,
}

impl std::ops::Deref for Cloud {
    type Target = Place;
    fn deref(&self) -> &Place {
        &self.place
    }
}

impl Cloud {
    pub fn new(place: Place, store: Arc<dyn ObjectStore>) -> Self {
        Self { place, store }
    }

    /// Tells an `object_store` error apart.
    fn error(&self, operation: &'static str, key: &str, err: object_store::Error) -> Error {
        if let object_store::Error::NotFound { .. } = err {
            return Error::not_found("object", format!("{}/{key}", self.bucket));
        }
        let text = redact(&chain(&err));
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
        while let Some(e) = source {
            if e.downcast_ref::<object_store::client::HttpError>()
                .is_some()
            {
                return self.transport_error(operation, key, &text);
            }
            source = e.source();
        }
        for status in [401u16, 403] {
            if text.contains(&format!("status code: {status}")) {
                let code = [
                    "AuthenticationFailed",
                    "AuthorizationFailure",
                    "AuthorizationPermissionMismatch",
                ]
                .into_iter()
                .find(|c| text.contains(c))
                .unwrap_or("Forbidden");
                return self.status_error(operation, key, status, code);
            }
        }
        Error::Storage {
            operation,
            key: format!("{}/{key}", self.bucket),
            reason: text,
        }
    }

    fn path(&self, key: &str) -> Result<Path> {
        Path::parse(key).map_err(|e| Error::invalid(format!("object key {key:?}: {e}")))
    }

    /// Every object under `prefix` (a string prefix, as S3's).
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        // object_store lists by folder: list the folder the prefix ends in, then filter.
        let folder = prefix.rsplit_once('/').map_or("", |(f, _)| f);
        let path = (!folder.is_empty())
            .then(|| self.path(folder))
            .transpose()?;
        let listed: std::result::Result<Vec<ObjectMeta>, _> =
            self.store.list(path.as_ref()).try_collect().await;
        let listed = match listed {
            Ok(l) => l,
            Err(e) if missing_bucket(&e) => return Ok(Vec::new()),
            Err(e) => return Err(self.error("List", prefix, e)),
        };
        let mut out: Vec<ObjectInfo> = listed
            .into_iter()
            .filter(|m| m.location.as_ref().starts_with(prefix))
            .map(|m| ObjectInfo {
                key: m.location.to_string(),
                size: m.size,
                etag: m.e_tag.map(|t| t.trim_matches('"').to_string()),
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// The folders right under `prefix` (which ends with `/`), each ending with `/`.
    pub async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>> {
        let folder = prefix.trim_end_matches('/');
        let path = (!folder.is_empty())
            .then(|| self.path(folder))
            .transpose()?;
        let listed = match self.store.list_with_delimiter(path.as_ref()).await {
            Ok(l) => l,
            Err(e) if missing_bucket(&e) => return Ok(Vec::new()),
            Err(e) => return Err(self.error("List", prefix, e)),
        };
        let mut dirs: Vec<String> = listed
            .common_prefixes
            .into_iter()
            .map(|p| format!("{p}/"))
            .collect();
        dirs.sort();
        Ok(dirs)
    }

    pub async fn head(&self, key: &str) -> Result<Option<u64>> {
        match self.store.head(&self.path(key)?).await {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("Head", key, e)),
        }
    }

    /// The ETag of an object that exists.
    pub async fn etag_of(&self, key: &str) -> Result<Option<String>> {
        let m = self
            .store
            .head(&self.path(key)?)
            .await
            .map_err(|e| self.error("Head", key, e))?;
        Ok(m.e_tag.map(|t| t.trim_matches('"').to_string()))
    }

    pub async fn read(&self, key: &str) -> Result<Bytes> {
        let got = self
            .store
            .get(&self.path(key)?)
            .await
            .map_err(|e| self.error("Get", key, e))?;
        got.bytes().await.map_err(|e| self.error("Get", key, e))
    }

    pub async fn write(&self, key: &str, data: Bytes) -> Result<()> {
        self.store
            .put(&self.path(key)?, PutPayload::from(data))
            .await
            .map_err(|e| self.error("Put", key, e))?;
        Ok(())
    }

    async fn put_mode(&self, key: &str, data: Bytes, mode: PutMode) -> Result<CondPut> {
        let opts = PutOptions {
            mode,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&self.path(key)?, PutPayload::from(data.clone()), opts)
            .await
        {
            // The ETag, never the version id an Azure account with blob
            // versioning also returns: If-Match takes the ETag.
            Ok(r) => Ok(CondPut::Written(r.e_tag.unwrap_or_default())),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(CondPut::Conflict),
            Err(e) => {
                let err = self.error("ConditionalPut", key, e);
                CondPut::landed(err, self.read_versioned(key), &data).await
            }
        }
    }

    pub async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<CondPut> {
        self.put_mode(key, data, PutMode::Create).await
    }

    /// Replaces `key` if its ETag is still the one given.
    pub async fn put_if_match(&self, key: &str, data: Bytes, e_tag: &str) -> Result<CondPut> {
        // A store that gave no ETag: an empty If-Match would be no condition.
        if e_tag.is_empty() {
            return Ok(CondPut::Conflict);
        }
        let v = UpdateVersion {
            e_tag: Some(e_tag.to_string()),
            version: None,
        };
        self.put_mode(key, data, PutMode::Update(v)).await
    }

    /// The object with the ETag [`Self::put_if_match`] takes.
    pub async fn read_versioned(&self, key: &str) -> Result<Option<(Bytes, String)>> {
        let got = match self.store.get(&self.path(key)?).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.error("Get", key, e)),
        };
        let tag = got.meta.e_tag.clone().unwrap_or_default();
        let body = got.bytes().await.map_err(|e| self.error("Get", key, e))?;
        Ok(Some((body, tag)))
    }

    pub async fn get_stream(&self, key: &str) -> Result<(u64, ByteStream)> {
        let got = self
            .store
            .get(&self.path(key)?)
            .await
            .map_err(|e| self.error("Get", key, e))?;
        let size = got.meta.size;
        // The client's stream is not `Sync`: a task forwards it, two chunks ahead.
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let (this, key) = (self.clone(), key.to_string());
        let mut stream = got.into_stream();
        tokio::spawn(async move {
            while let Some(chunk) = stream.next().await {
                let failed = chunk.is_err();
                if tx
                    .send(chunk.map_err(|e| this.error("Get", &key, e)))
                    .await
                    .is_err()
                    || failed
                {
                    break;
                }
            }
        });
        Ok((
            size,
            Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)),
        ))
    }

    /// Writes a stream of known size: in one request when small, else in
    /// blocks (never more than a few blocks in memory).
    pub async fn put_stream(
        &self,
        key: &str,
        size: u64,
        mut body: ByteStream,
    ) -> Result<Option<String>> {
        let path = self.path(key)?;
        if size <= BLOCK_BYTES as u64 {
            let mut body = super::exactly(size, format!("{}/{key}", self.bucket), body);
            let mut buf = Vec::with_capacity(size as usize);
            while let Some(chunk) = body.next().await {
                buf.extend_from_slice(&chunk?);
            }
            let r = self
                .store
                .put(&path, PutPayload::from(buf))
                .await
                .map_err(|e| self.error("Put", key, e))?;
            return Ok(r.e_tag.map(|t| t.trim_matches('"').to_string()));
        }
        let upload = self
            .store
            .put_multipart(&path)
            .await
            .map_err(|e| self.error("PutMultipart", key, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, BLOCK_BYTES);
        let mut written = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(e);
                }
            };
            written += chunk.len() as u64;
            if let Err(e) = writer.wait_for_capacity(BLOCKS_IN_FLIGHT).await {
                return Err(self.error("PutBlock", key, e));
            }
            writer.put(chunk);
        }
        if written != size {
            let _ = writer.abort().await;
            return Err(Error::Storage {
                operation: "Put",
                key: format!("{}/{key}", self.bucket),
                reason: format!("the source gave {written} bytes, not {size}"),
            });
        }
        let r = writer
            .finish()
            .await
            .map_err(|e| self.error("PutBlockList", key, e))?;
        Ok(r.e_tag.map(|t| t.trim_matches('"').to_string()))
    }

    /// Deletes objects; missing ones are ignored.
    pub async fn delete(&self, keys: &[String]) -> Result<()> {
        let paths: Vec<Path> = keys.iter().map(|k| self.path(k)).collect::<Result<_>>()?;
        let mut results = self
            .store
            .delete_stream(futures::stream::iter(paths.into_iter().map(Ok)).boxed());
        while let Some(r) = results.next().await {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.error("Delete", "", e)),
            }
        }
        Ok(())
    }
}

/// A container or bucket that does not exist yet holds nothing.
fn missing_bucket(err: &object_store::Error) -> bool {
    let text = chain(err);
    text.contains("ContainerNotFound") || text.contains("NoSuchBucket")
}

/// An error with its causes, `a: b: c`.
fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        source = e.source();
    }
    out
}

/// Hides SAS signatures and tokens that a URL in a message may carry.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("sig=") {
        out.push_str(&rest[..i + 4]);
        out.push_str("REDACTED");
        rest = &rest[i + 4..];
        let end = rest
            .find(|c: char| c == '&' || c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(rest.len());
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn signatures_are_redacted() {
        assert_eq!(
            redact("GET http://a/b?sv=1&sig=abc%2Bdef&se=2 failed"),
            "GET http://a/b?sv=1&sig=REDACTED&se=2 failed"
        );
        assert_eq!(redact("no secret"), "no secret");
    }
}
