//! A local-filesystem backend: a directory whose files are the objects. Writes
//! go to a temporary file first and are renamed into place, so a reader never
//! sees half an object.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio::io::AsyncWriteExt;

use super::{ByteStream, CondPut, ObjectInfo, ObjectStore, Place, Source};
use crate::error::{Error, Result};

/// A directory used as a bucket.
#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
    place: Place,
}

impl LocalDir {
    /// The store rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let place = Place {
            service: "local",
            owner: String::new(),
            endpoint: String::new(),
            bucket: root.display().to_string(),
            identity: None,
        };
        Self { root, place }
    }

    /// The file of `key`, refusing keys that would leave the root.
    fn path(&self, key: &str) -> Result<PathBuf> {
        let mut p = self.root.clone();
        for part in key.split('/').filter(|s| !s.is_empty()) {
            if part == ".." || part == "." {
                return Err(Error::invalid(format!(
                    "object key {key:?} leaves the backup directory"
                )));
            }
            p.push(part);
        }
        Ok(p)
    }

    fn io_error(&self, operation: &'static str, key: &str, e: std::io::Error) -> Error {
        Error::Storage {
            operation,
            key: format!("{}/{key}", self.place.bucket),
            reason: e.to_string(),
        }
    }

    /// Every file under `dir`, as keys. Files come and go while it reads
    /// (others' writes rename their temporary files into place, conditional
    /// writes remove their lock files, deletes remove objects): an entry gone
    /// between the directory's read and its look is not listed, and a
    /// temporary or lock file is skipped by its name before its size is asked.
    async fn walk(&self, dir: PathBuf, out: &mut Vec<ObjectInfo>) -> Result<()> {
        let mut stack = vec![dir];
        while let Some(dir) = stack.pop() {
            for (path, is_dir) in self.entries(&dir).await? {
                if is_dir {
                    stack.push(path);
                    continue;
                }
                // Temporary files (`.tmp-…`) and lock files (`.….tmp-lock`)
                // are skipped by name: they are the ones that vanish.
                if is_temp(&path) {
                    continue;
                }
                let meta = match tokio::fs::symlink_metadata(&path).await {
                    Ok(m) => m,
                    Err(e) => {
                        self.gone_while_listed(&path, e)?;
                        continue;
                    }
                };
                out.push(ObjectInfo {
                    key: self.key_of(&path),
                    size: meta.len(),
                    etag: None,
                });
            }
        }
        Ok(())
    }

    /// The entries of directory `dir`, each with whether it is a directory
    /// (known from the directory's read, mostly): none when `dir` is gone,
    /// and without an entry gone between the read and its look.
    async fn entries(&self, dir: &Path) -> Result<Vec<(PathBuf, bool)>> {
        let mut entries = match tokio::fs::read_dir(dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io_error("list", &dir.display().to_string(), e)),
        };
        let mut out = Vec::new();
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| self.io_error("list", &dir.display().to_string(), e))?
        {
            let path = entry.path();
            match entry.file_type().await {
                Ok(t) => out.push((path, t.is_dir())),
                Err(e) => self.gone_while_listed(&path, e)?,
            }
        }
        Ok(out)
    }

    /// `Ok` when `e`, met looking at an entry a listing read, says the entry
    /// is gone (it is then not listed); the listing's error otherwise.
    fn gone_while_listed(&self, path: &Path, e: std::io::Error) -> Result<()> {
        match e.kind() {
            ErrorKind::NotFound => Ok(()),
            _ => Err(self.io_error("list", &path.display().to_string(), e)),
        }
    }

    fn key_of(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/")
    }

    /// Writes through a temporary file renamed into place. A write that
    /// fails (its body cut, say) leaves no file and no directory it made.
    async fn write_with(&self, key: &str, body: ByteStream) -> Result<()> {
        let path = self.path(key)?;
        let tmp = temp_beside(&path);
        // A write that fails, or is dropped mid-way (its job cancelled),
        // leaves no temporary file.
        let mut guard = TempFile(Some((tmp.clone(), self.root.clone())));
        let result = async {
            let mut file = create_with_parents(&tmp).await?;
            let mut body = body;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(std::io::Error::other)?;
                file.write_all(&chunk).await?;
            }
            file.sync_all().await?;
            tokio::fs::rename(&tmp, &path).await
        }
        .await;
        if let Err(e) = result {
            // The guard removes the temporary file and the folders it left empty.
            drop(guard);
            return Err(self.io_error("write", key, e));
        }
        guard.0 = None;
        Ok(())
    }

    /// Removes the directories above `path` that are empty, up to the root.
    async fn remove_empty_parents(&self, path: &Path) {
        let mut dir = path.parent().map(Path::to_path_buf);
        while let Some(d) = dir {
            if d == self.root || tokio::fs::remove_dir(&d).await.is_err() {
                break;
            }
            dir = d.parent().map(Path::to_path_buf);
        }
    }
}

/// A temporary file (and the directories above it up to the root, when
/// empty) removed when dropped while set: a write whose future is dropped
/// before it ends (a job cancelled) leaves nothing behind.
struct TempFile(Option<(PathBuf, PathBuf)>);

impl Drop for TempFile {
    fn drop(&mut self) {
        let Some((path, root)) = self.0.take() else {
            return;
        };
        let _ = std::fs::remove_file(&path);
        let mut dir = path.parent();
        while let Some(d) = dir.filter(|d| *d != root && std::fs::remove_dir(d).is_ok()) {
            dir = d.parent();
        }
    }
}

/// Creates the file at `path` and the directories above it. A directory
/// removed meanwhile (left empty by a delete or a failed write beside) is
/// made again.
async fn create_with_parents(path: &Path) -> std::io::Result<tokio::fs::File> {
    let mut tries = 0;
    loop {
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        match tokio::fs::File::create(path).await {
            Err(e) if e.kind() == ErrorKind::NotFound && tries < 3 => tries += 1,
            created => return created,
        }
    }
}

/// The version tag of a local object: the MD5 of its content.
fn etag_of(data: &[u8]) -> String {
    use md5::Digest;
    format!("{:x}", md5::Md5::digest(data))
}

/// How long a conditional write waits for another process's before it fails.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

impl LocalDir {
    /// Runs `f` while holding an OS lock on `{file}.tmp-lock`, so that
    /// compare-and-swap writes from several processes serialise. The OS frees
    /// the lock of a process that dies; a paused holder keeps it. The lock
    /// file is removed while still locked: a waiter that then gets the lock
    /// of the removed file sees that the path is no longer its file and
    /// tries again.
    async fn with_lock<T>(
        &self,
        key: &str,
        f: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let path = self.path(key)?;
        let lock = lock_beside(&path);
        if let Some(parent) = lock.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| self.io_error("lock", key, e))?;
        }
        let started = std::time::Instant::now();
        let held = loop {
            let attempt = {
                let lock = lock.clone();
                tokio::task::spawn_blocking(move || try_lock(&lock))
                    .await
                    .map_err(|e| Error::Internal(format!("lock task: {e}")))?
            };
            match attempt {
                Ok(Some(file)) => break file,
                Ok(None) => {}
                // Its folder removed meanwhile (left empty by a delete): made again.
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    if let Some(parent) = lock.parent() {
                        tokio::fs::create_dir_all(parent)
                            .await
                            .map_err(|e| self.io_error("lock", key, e))?;
                    }
                }
                Err(e) if locks_unsupported(&e) => {
                    return Err(Error::FailedPrecondition(format!(
                        "the filesystem of {} does not support file locks ({e}): the conditional \
                         writes that leases need cannot be made safely there",
                        self.root.display()
                    )));
                }
                Err(e) => return Err(self.io_error("lock", key, e)),
            }
            if started.elapsed() > LOCK_WAIT {
                return Err(self.io_error(
                    "lock",
                    key,
                    std::io::Error::other("another process held the lock too long"),
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        };
        let out = f.await;
        let _ = std::fs::remove_file(&lock);
        drop(held);
        out
    }
}

/// The locked lock file at `lock`, or `None` while another process holds it
/// (or removed it between our open and our lock).
fn try_lock(lock: &Path) -> std::io::Result<Option<std::fs::File>> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    let ours = file.metadata()?;
    match std::fs::metadata(lock) {
        Ok(now) if same_file(&now, &ours) => Ok(Some(file)),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// Elsewhere an open file cannot be removed, so the path is always ours.
#[cfg(not(unix))]
fn same_file(_: &std::fs::Metadata, _: &std::fs::Metadata) -> bool {
    true
}

/// Whether `e` says the filesystem has no file locks (ENOLCK, EOPNOTSUPP:
/// Linux's numbers).
fn locks_unsupported(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::Unsupported || matches!(e.raw_os_error(), Some(37 | 95))
}

/// A new temporary file beside `path`, named apart from it: a name of up
/// to 255 bytes (a disk's limit) can be written.
fn temp_beside(path: &Path) -> PathBuf {
    path.with_file_name(format!(".tmp-{}", uuid::Uuid::new_v4().simple()))
}

/// The lock file of `path` (see [`LocalDir::with_lock`]): `.{name}.tmp-lock`,
/// or, when that is longer than a file name can be, named by the MD5 of the
/// name (no earlier version could lock such a name).
fn lock_beside(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let lock = format!(".{name}.tmp-lock");
    if lock.len() <= 255 {
        return path.with_file_name(lock);
    }
    path.with_file_name(format!(".{}.tmp-lock", etag_of(name.as_bytes())))
}

fn is_temp(path: &Path) -> bool {
    path.file_name()
        .map(|n| n.to_string_lossy().contains(".tmp-"))
        .unwrap_or(false)
}

#[async_trait]
impl ObjectStore for LocalDir {
    fn place(&self) -> &Place {
        &self.place
    }

    async fn ensure_bucket(&self, create: bool) -> Result<()> {
        if tokio::fs::metadata(&self.root).await.is_ok() {
            return Ok(());
        }
        if !create {
            return Err(Error::not_found("backup directory", &self.place.bucket));
        }
        tokio::fs::create_dir_all(&self.root)
            .await
            .map_err(|e| self.io_error("mkdir", "", e))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        // Walk from the deepest directory the prefix names, then filter.
        let dir_part = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let mut out = Vec::new();
        self.walk(self.path(dir_part)?, &mut out).await?;
        out.retain(|o| o.key.starts_with(prefix));
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>> {
        let dir = self.path(prefix)?;
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io_error("list", prefix, e)),
        };
        let mut out = Vec::new();
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| self.io_error("list", prefix, e))?
        {
            if entry.file_type().await.map(|t| t.is_dir()).unwrap_or(false) {
                out.push(format!("{prefix}{}/", entry.file_name().to_string_lossy()));
            }
        }
        out.sort();
        Ok(out)
    }

    async fn head(&self, key: &str) -> Result<Option<u64>> {
        match tokio::fs::metadata(self.path(key)?).await {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io_error("stat", key, e)),
        }
    }

    async fn read(&self, key: &str) -> Result<Bytes> {
        match tokio::fs::read(self.path(key)?).await {
            Ok(b) => Ok(b.into()),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(Error::not_found(
                "object",
                format!("{}/{key}", self.place.bucket),
            )),
            Err(e) => Err(self.io_error("read", key, e)),
        }
    }

    async fn write(&self, key: &str, data: Bytes) -> Result<()> {
        self.write_with(key, Box::pin(futures::stream::once(async { Ok(data) })))
            .await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<CondPut> {
        // Written beside, then hard-linked into place: link(2) fails when the
        // name exists, atomically, and the object is never seen half-written.
        let path = self.path(key)?;
        let tmp = temp_beside(&path);
        let etag = etag_of(&data);
        self.write_with(
            &self.key_of(&tmp),
            Box::pin(futures::stream::once(async { Ok(data) })),
        )
        .await?;
        // Under the key's lock: never between a compare-and-swap's read and
        // its write (the swap would replace this object).
        let linked = self
            .with_lock(key, async { Ok(tokio::fs::hard_link(&tmp, &path).await) })
            .await;
        let _ = tokio::fs::remove_file(&tmp).await;
        let linked = linked?;
        match linked {
            Ok(()) => Ok(CondPut::Written(etag)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(CondPut::Conflict),
            Err(e) => Err(self.io_error("create", key, e)),
        }
    }

    async fn put_if_match(&self, key: &str, data: Bytes, etag: &str) -> Result<CondPut> {
        self.with_lock(key, async {
            let current = match tokio::fs::read(self.path(key)?).await {
                Ok(b) => etag_of(&b),
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(CondPut::Conflict),
                Err(e) => return Err(self.io_error("read", key, e)),
            };
            if current != etag.trim_matches('"') {
                return Ok(CondPut::Conflict);
            }
            let new = etag_of(&data);
            self.write(key, data).await?;
            Ok(CondPut::Written(new))
        })
        .await
    }

    async fn read_versioned(&self, key: &str) -> Result<Option<(Bytes, String)>> {
        match tokio::fs::read(self.path(key)?).await {
            Ok(b) => {
                let etag = etag_of(&b);
                Ok(Some((b.into(), etag)))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io_error("read", key, e)),
        }
    }

    async fn get_stream(&self, key: &str) -> Result<(u64, ByteStream)> {
        let path = self.path(key)?;
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(Error::not_found(
                    "object",
                    format!("{}/{key}", self.place.bucket),
                ));
            }
            Err(e) => return Err(self.io_error("read", key, e)),
        };
        let size = file
            .metadata()
            .await
            .map_err(|e| self.io_error("read", key, e))?
            .len();
        let owned = key.to_string();
        let name = self.place.bucket.clone();
        let stream = tokio_util::io::ReaderStream::new(file).map_err(move |e| Error::Storage {
            operation: "read",
            key: format!("{name}/{owned}"),
            reason: e.to_string(),
        });
        Ok((size, Box::pin(stream)))
    }

    async fn put_stream(&self, key: &str, size: u64, body: ByteStream) -> Result<Option<String>> {
        let place = format!("{}/{key}", self.place.bucket);
        self.write_with(key, super::exactly(size, place, body))
            .await
            .map(|()| None)
    }

    async fn copy_in(&self, _: Source<'_>, dst_key: &str) -> Result<Option<String>> {
        Err(Error::Internal(format!(
            "server-side copy into a local directory ({dst_key})"
        )))
    }

    async fn remove_leftovers(&self, prefix: &str) -> Result<()> {
        let dir = self.path(prefix)?;
        let mut dirs = Vec::new();
        let mut stack = vec![dir.clone()];
        while let Some(d) = stack.pop() {
            for (path, is_dir) in self.entries(&d).await? {
                if is_dir {
                    stack.push(path);
                } else if is_temp(&path) {
                    match tokio::fs::remove_file(&path).await {
                        Ok(()) => {}
                        Err(e) if e.kind() == ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(self.io_error("delete", &path.display().to_string(), e));
                        }
                    }
                }
            }
            dirs.push(d);
        }
        // Deepest first; a folder that still holds an object stays.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in &dirs {
            let _ = tokio::fs::remove_dir(d).await;
        }
        self.remove_empty_parents(&dir).await;
        Ok(())
    }

    async fn delete(&self, keys: &[String]) -> Result<()> {
        for key in keys {
            let path = self.path(key)?;
            // A key already gone needs no lock (nor its folders made again).
            if tokio::fs::symlink_metadata(&path).await.is_err() {
                continue;
            }
            // Under the key's lock: never between a compare-and-swap's read
            // and its write (the swap would make the object again).
            self.with_lock(key, async {
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(self.io_error("delete", key, e)),
                }
            })
            .await?;
            // Once the lock file beside it is gone too.
            self.remove_empty_parents(&path).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
