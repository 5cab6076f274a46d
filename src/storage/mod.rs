//! Object storage: a small trait over one bucket, its S3 backend and the copy engine.

mod azure;
mod cloud;
mod copy;
mod gcs;
#[cfg(test)]
pub(crate) mod intercepted;
mod local;
mod rate;
mod s3;
mod s3_list;
mod s3_parts;
mod stall;

use std::fmt;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

use crate::config::{Backend, BucketConfig};
use crate::error::{Error, Result};

pub use azure::AzureContainer;
pub use copy::{Copied, Copier, CopyTask};
pub use gcs::GcsBucket;
pub use local::LocalDir;
pub use rate::{RateLimit, paced};
pub use s3::S3Bucket;

/// One object: its key, its size, and the store's ETag when it gives one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
}

/// Where a store is: its bucket, how messages name it, and which other
/// stores can copy into it server-side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// `s3`, `azure`, `gcs` or `local`.
    pub service: &'static str,
    /// Whose storage, for messages: `account "name"`, a key file (empty for S3 and local).
    pub owner: String,
    pub endpoint: String,
    /// The bucket (Azure: the container; local: the directory).
    pub bucket: String,
    /// Stores with equal identities copy between their buckets server-side.
    pub identity: Option<String>,
}

impl Place {
    /// `endpoint/bucket`, prefixed by the service where it is not S3.
    pub fn location(&self) -> String {
        match self.service {
            "s3" => format!("{}/{}", self.endpoint, self.bucket),
            "local" => format!("file://{}", self.bucket),
            service => format!("{service} {}/{}", self.endpoint, self.bucket),
        }
    }
}

/// An object of another store with the same endpoint identity, to copy from.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub size: u64,
    /// Once cancelled, a copy made in several requests sends no more of them.
    stop: Option<&'a tokio_util::sync::CancellationToken>,
}

impl<'a> Source<'a> {
    pub fn new(bucket: &'a str, key: &'a str, size: u64) -> Self {
        Self {
            bucket,
            key,
            size,
            stop: None,
        }
    }

    /// This source, for a copy that stops between its requests (parts,
    /// rewrite calls) once `stop` is cancelled, without making the object.
    /// A request already sent is answered first.
    pub fn until(self, stop: &'a tokio_util::sync::CancellationToken) -> Self {
        Self {
            stop: Some(stop),
            ..self
        }
    }

    /// [`crate::error::Error::Cancelled`] once the copy was asked to stop.
    pub fn check_stop(&self) -> crate::error::Result<()> {
        match self.stop.is_some_and(|s| s.is_cancelled()) {
            true => Err(crate::error::Error::Cancelled(format!(
                "the copy of {}/{} was stopped: its job ended",
                self.bucket, self.key
            ))),
            false => Ok(()),
        }
    }
}

impl Source<'_> {
    /// `e`, the error of a copy from this source, naming the source when what
    /// is missing is an object: a copy's destination is never the one missing.
    pub fn missing_named(&self, e: crate::error::Error) -> crate::error::Error {
        match e {
            crate::error::Error::NotFound { kind: "object", .. } => {
                crate::error::Error::not_found("object", format!("{}/{}", self.bucket, self.key))
            }
            e => e,
        }
    }
}

/// The outcome of a conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CondPut {
    /// Written; the object's new version tag (ETag).
    Written(String),
    /// The condition did not hold: the object exists, or changed since it was read.
    Conflict,
}

impl CondPut {
    /// This outcome of writing `body` to `key` of `store`, with a conflict
    /// checked: a store that retried the write after its answer was lost
    /// reports a conflict with our own write, and the object then holds
    /// exactly `body`. Callers whose bodies are unique per attempt (a time,
    /// a nonce) can take that for their own write.
    pub async fn confirmed(self, store: &dyn ObjectStore, key: &str, body: &[u8]) -> Result<Self> {
        if self != CondPut::Conflict {
            return Ok(self);
        }
        Ok(match store.read_versioned(key).await? {
            Some((now, tag)) if now.as_ref() == body => CondPut::Written(tag),
            _ => CondPut::Conflict,
        })
    }

    /// A conditional write of `body` that failed with `error` (its every
    /// answer lost, or a last error after it landed), given the object as
    /// `read` reads it back: written when it holds these very bytes (a
    /// lease's carry its own nonce), else the error.
    pub async fn landed(
        error: Error,
        read: impl std::future::Future<Output = Result<Option<(Bytes, String)>>>,
        body: &[u8],
    ) -> Result<Self> {
        match read.await {
            Ok(Some((now, tag))) if now.as_ref() == body => Ok(CondPut::Written(tag)),
            _ => Err(error),
        }
    }
}

/// The bytes of one object, as they arrive.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send + Sync>>;

/// `body`, failing at its end (or as soon as it gives too much) unless it
/// gave exactly `size` bytes: a short or long source never makes a whole
/// object. Its last byte goes on only once the source ended. `place` names
/// the object in the error.
pub fn exactly(size: u64, place: String, body: ByteStream) -> ByteStream {
    let counted = futures::stream::unfold((body, 0u64, false), move |(mut body, seen, done)| {
        let place = place.clone();
        async move {
            if done {
                return None;
            }
            let wrong = |seen: u64| crate::error::Error::Storage {
                operation: "Put",
                key: place.clone(),
                reason: format!("the source gave {seen} bytes, not {size}"),
            };
            match futures::StreamExt::next(&mut body).await {
                Some(Ok(chunk)) => {
                    let seen = seen + chunk.len() as u64;
                    if seen > size {
                        return Some((Err(wrong(seen)), (body, seen, true)));
                    }
                    // The last byte: the source must end here, seen before
                    // the chunk goes on (a writer that sent the length stops
                    // reading there, and would store a longer source cut).
                    if seen == size {
                        loop {
                            match futures::StreamExt::next(&mut body).await {
                                None => return Some((Ok(chunk), (body, seen, true))),
                                Some(Ok(more)) if more.is_empty() => {}
                                Some(Ok(more)) => {
                                    let seen = seen + more.len() as u64;
                                    return Some((Err(wrong(seen)), (body, seen, true)));
                                }
                                Some(Err(e)) => return Some((Err(e), (body, seen, true))),
                            }
                        }
                    }
                    Some((Ok(chunk), (body, seen, false)))
                }
                Some(Err(e)) => Some((Err(e), (body, seen, true))),
                None if seen != size => Some((Err(wrong(seen)), (body, seen, true))),
                None => None,
            }
        }
    });
    Box::pin(counted)
}

/// One bucket (or folder) of objects addressed by `/`-separated keys.
#[async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// Where this store is.
    fn place(&self) -> &Place;
    /// Where this store is, for messages: `endpoint/bucket`.
    fn location(&self) -> String {
        self.place().location()
    }
    /// The bucket name.
    fn bucket(&self) -> &str {
        &self.place().bucket
    }
    /// Stores with equal identities can copy between their buckets server-side.
    fn endpoint_identity(&self) -> Option<String> {
        self.place().identity.clone()
    }

    /// Checks that the bucket is reachable; creates it when `create` is set and it is missing.
    async fn ensure_bucket(&self, create: bool) -> Result<()>;
    /// Every object under `prefix`, recursively, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>>;
    /// The immediate "folders" under `prefix` (which ends with `/`), as full prefixes.
    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>>;
    /// The size of one object, or `None` when it does not exist.
    async fn head(&self, key: &str) -> Result<Option<u64>>;
    /// Reads a small object whole (meta files). Missing objects are `NotFound`.
    async fn read(&self, key: &str) -> Result<Bytes>;
    /// Writes a small object whole.
    async fn write(&self, key: &str, data: Bytes) -> Result<()>;
    /// Creates `key` only if no object is there (`If-None-Match: *`). Here
    /// and in [`ObjectStore::put_if_match`], a write whose every answer was
    /// lost is read back: `Written` when the object holds these very bytes.
    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<CondPut>;
    /// Replaces `key` only if its version tag is still `etag` (`If-Match`).
    async fn put_if_match(&self, key: &str, data: Bytes, etag: &str) -> Result<CondPut>;
    /// Reads a small object whole with its version tag; `None` when missing.
    async fn read_versioned(&self, key: &str) -> Result<Option<(Bytes, String)>>;
    /// Streams an object out: its size and its bytes.
    async fn get_stream(&self, key: &str) -> Result<(u64, ByteStream)>;
    /// Streams an object of known size in; returns the store's ETag, if it has one.
    async fn put_stream(&self, key: &str, size: u64, body: ByteStream) -> Result<Option<String>>;
    /// Copies `from` to `dst_key` of this bucket without the bytes passing
    /// through us; returns the copy's ETag. Only valid when the identities
    /// match. Large objects may be copied in parts.
    async fn copy_in(&self, from: Source<'_>, dst_key: &str) -> Result<Option<String>>;
    /// Deletes objects; missing ones are ignored.
    async fn delete(&self, keys: &[String]) -> Result<()>;

    /// Removes what writers that died left under `prefix` beside objects (a
    /// local directory's temporary and lock files, and the folders they
    /// kept): for a prefix no live writer writes under, such as a backup
    /// folder under its delete's hold. A no-op where a store keeps no such
    /// files.
    async fn remove_leftovers(&self, _prefix: &str) -> Result<()> {
        Ok(())
    }

    /// Deletes every object under `prefix`; returns how many there were.
    async fn delete_under(&self, prefix: &str) -> Result<usize> {
        let keys: Vec<String> = self
            .list(prefix)
            .await?
            .into_iter()
            .map(|o| o.key)
            .collect();
        self.delete(&keys).await?;
        Ok(keys.len())
    }
}

/// The bucket `cfg` names, on its service.
pub fn open(cfg: &BucketConfig) -> Result<std::sync::Arc<dyn ObjectStore>> {
    Ok(match &cfg.backend {
        Backend::S3 => std::sync::Arc::new(S3Bucket::new(cfg)?),
        Backend::Azure(access) => std::sync::Arc::new(AzureContainer::new(access, &cfg.bucket)?),
        Backend::Gcs(access) => std::sync::Arc::new(GcsBucket::new(access, &cfg.bucket)?),
    })
}

/// Joins key parts with `/`, dropping empty parts and stray slashes.
pub fn join_key<I, S>(parts: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = String::new();
    for p in parts {
        let p = p.as_ref().trim_matches('/');
        if p.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A conflict with our own bytes (a write the store retried after its
    /// answer was lost) is our write; a conflict with anything else stays one.
    #[tokio::test]
    async fn a_conflict_with_our_own_bytes_is_our_write() {
        let root = std::env::temp_dir().join(format!("mb-cond-{}", uuid::Uuid::new_v4().simple()));
        let dir = LocalDir::new(&root);
        dir.ensure_bucket(true).await.unwrap();
        let ours = Bytes::from_static(b"{\"created_ms\":1}");
        let first = dir.put_if_absent("p", ours.clone()).await.unwrap();
        assert!(matches!(first, CondPut::Written(_)));
        let again = dir.put_if_absent("p", ours.clone()).await.unwrap();
        assert_eq!(again, CondPut::Conflict);
        let confirmed = again.confirmed(&dir, "p", &ours).await.unwrap();
        assert_eq!(confirmed, first, "our write, with its tag");
        let theirs = b"{\"created_ms\":2}";
        let other = dir
            .put_if_absent("p", Bytes::from_static(theirs))
            .await
            .unwrap();
        assert_eq!(
            other.confirmed(&dir, "p", theirs).await.unwrap(),
            CondPut::Conflict
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn a_source_giving_fewer_or_more_bytes_than_its_size_makes_no_object() {
        use futures::TryStreamExt as _;
        let body = || -> ByteStream {
            Box::pin(futures::stream::iter(
                [&b"0123"[..], b"4567"].map(|c| Ok(Bytes::from_static(c))),
            ))
        };
        let all: Vec<Bytes> = exactly(8, "b/k".into(), body())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(all.concat(), b"01234567");
        for size in [7, 9] {
            let err = exactly(size, "b/k".into(), body())
                .try_collect::<Vec<Bytes>>()
                .await
                .unwrap_err();
            assert!(err.to_string().contains(&format!("not {size}")), "{err}");
        }
        // A local directory keeps nothing under the key.
        let root = std::env::temp_dir().join(format!("mb-exact-{}", uuid::Uuid::new_v4().simple()));
        let dir = LocalDir::new(&root);
        dir.ensure_bucket(true).await.unwrap();
        assert!(dir.put_stream("k", 9, body()).await.is_err());
        assert_eq!(dir.head("k").await.unwrap(), None);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn joins_keys() {
        assert_eq!(join_key(["", "a/", "/b", "c"]), "a/b/c");
        assert_eq!(join_key(["root", "x"]), "root/x");
    }
}
