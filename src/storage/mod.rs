//! Object storage: a small trait over one bucket, its S3 backend and the copy engine.

mod azure;
mod cloud;
mod copy;
mod gcs;
mod local;
mod rate;
mod s3;
mod s3_list;
mod s3_parts;

use std::fmt;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

use crate::config::{Backend, BucketConfig};
use crate::error::Result;

pub use azure::AzureContainer;
pub use copy::{Copied, Copier, CopyTask};
pub use gcs::GcsBucket;
pub use local::LocalDir;
pub use rate::RateLimit;
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
}

impl<'a> Source<'a> {
    pub fn new(bucket: &'a str, key: &'a str, size: u64) -> Self {
        Self { bucket, key, size }
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

/// The bytes of one object, as they arrive.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send + Sync>>;

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
    /// Creates `key` only if no object is there (`If-None-Match: *`).
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
    use super::join_key;

    #[test]
    fn joins_keys() {
        assert_eq!(join_key(["", "a/", "/b", "c"]), "a/b/c");
        assert_eq!(join_key(["root", "x"]), "root/x");
    }
}
