//! Tests only: a local directory whose calls first pass a test's hook, which
//! can fail or delay one kind of call while the rest stays real.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;

use super::{ByteStream, CondPut, LocalDir, ObjectInfo, ObjectStore, Place, Source};
use crate::error::Result;

/// The kind of call a hook sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    List,
    Head,
    /// `read`, `read_versioned` and `get_stream`.
    Read,
    /// `write` and `put_stream`.
    Write,
    PutIfAbsent,
    PutIfMatch,
    Copy,
    Delete,
}

/// Run before each call with its kind and key (a delete's first key); an
/// error is the call's answer.
pub(crate) type Hook = Arc<dyn Fn(Op, &str) -> BoxFuture<'static, Result<()>> + Send + Sync>;

/// A [`LocalDir`] behind a [`Hook`].
pub(crate) struct Intercepted {
    dir: LocalDir,
    hook: Hook,
}

impl Intercepted {
    pub(crate) fn new(dir: LocalDir, hook: Hook) -> Self {
        Self { dir, hook }
    }

    async fn pass(&self, op: Op, key: &str) -> Result<()> {
        (self.hook)(op, key).await
    }
}

impl fmt::Debug for Intercepted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Intercepted").field(&self.dir).finish()
    }
}

#[async_trait]
impl ObjectStore for Intercepted {
    fn place(&self) -> &Place {
        self.dir.place()
    }
    async fn ensure_bucket(&self, create: bool) -> Result<()> {
        self.dir.ensure_bucket(create).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.pass(Op::List, prefix).await?;
        self.dir.list(prefix).await
    }
    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>> {
        self.pass(Op::List, prefix).await?;
        self.dir.list_dirs(prefix).await
    }
    async fn head(&self, key: &str) -> Result<Option<u64>> {
        self.pass(Op::Head, key).await?;
        self.dir.head(key).await
    }
    async fn read(&self, key: &str) -> Result<Bytes> {
        self.pass(Op::Read, key).await?;
        self.dir.read(key).await
    }
    async fn write(&self, key: &str, data: Bytes) -> Result<()> {
        self.pass(Op::Write, key).await?;
        self.dir.write(key, data).await
    }
    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<CondPut> {
        self.pass(Op::PutIfAbsent, key).await?;
        self.dir.put_if_absent(key, data).await
    }
    async fn put_if_match(&self, key: &str, data: Bytes, etag: &str) -> Result<CondPut> {
        self.pass(Op::PutIfMatch, key).await?;
        self.dir.put_if_match(key, data, etag).await
    }
    async fn read_versioned(&self, key: &str) -> Result<Option<(Bytes, String)>> {
        self.pass(Op::Read, key).await?;
        self.dir.read_versioned(key).await
    }
    async fn get_stream(&self, key: &str) -> Result<(u64, ByteStream)> {
        self.pass(Op::Read, key).await?;
        self.dir.get_stream(key).await
    }
    async fn put_stream(&self, key: &str, size: u64, body: ByteStream) -> Result<Option<String>> {
        self.pass(Op::Write, key).await?;
        self.dir.put_stream(key, size, body).await
    }
    async fn copy_in(&self, from: Source<'_>, dst_key: &str) -> Result<Option<String>> {
        self.pass(Op::Copy, dst_key).await?;
        self.dir.copy_in(from, dst_key).await
    }
    async fn delete(&self, keys: &[String]) -> Result<()> {
        self.pass(Op::Delete, keys.first().map_or("", String::as_str))
            .await?;
        self.dir.delete(keys).await
    }
}
