//! The copy engine: server-side copy where the stores share an endpoint, a
//! streaming copy otherwise, with one global bound on copies in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use futures::{Stream, StreamExt, TryStreamExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::{ObjectStore, RateLimit, Source};
use crate::error::{Error, Result};
use crate::retry::{Backoff, retry, storage_transient};

/// Streaming copies one job runs at once: each holds read and write buffers
/// (a few hundred KiB), and past a few dozen streams the disk or network is
/// the limit, not the count. Server-side copies hold no buffers.
const STREAMS_PER_JOB: usize = 32;

/// One object to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyTask {
    pub src_key: String,
    pub dst_key: String,
    pub size: u64,
    /// The caller's own mark (say, which collection the object belongs to),
    /// handed back unchanged with the task when it is copied.
    pub owner: usize,
}

/// What a copy learned about the object's content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Copied {
    /// The destination's ETag.
    pub etag: Option<String>,
    /// CRC32C of the bytes, when they passed through us (streaming copies).
    pub crc32c: Option<u32>,
}

/// Copies objects between stores. Clones share one bound on copies in flight,
/// so concurrent jobs together never exceed it.
#[derive(Debug, Clone)]
pub struct Copier {
    permits: Arc<Semaphore>,
    parallelism: usize,
    /// The bandwidth cap, shared by the clones.
    rate_limit: Option<Arc<RateLimit>>,
}

impl Copier {
    /// A copier with at most `parallelism` copies in flight.
    pub fn new(parallelism: usize) -> Self {
        let parallelism = parallelism.max(1);
        Self {
            permits: Arc::new(Semaphore::new(parallelism)),
            parallelism,
            rate_limit: None,
        }
    }

    /// Caps the copies of all clones at `mib_per_second` MiB/s (0: no cap).
    pub fn with_rate_limit(mut self, mib_per_second: f64) -> Self {
        self.rate_limit = RateLimit::new(mib_per_second).map(Arc::new);
        self
    }

    /// The cap its copies share, for other reads to share it too.
    pub fn rate_limit(&self) -> Option<Arc<RateLimit>> {
        self.rate_limit.clone()
    }

    /// Whether a bandwidth cap paces the copies.
    pub fn is_capped(&self) -> bool {
        self.rate_limit.is_some()
    }

    /// Copies every task, calling `on_copied` after each one with what the copy
    /// learned of the content. Stops at the first error.
    ///
    /// Each attempt runs on `attempts`: dropped (its job cancelled, or a
    /// sibling copy failed), the copy starts no more attempts, but one in
    /// flight ends with its answer, so that whoever waits for `attempts`
    /// before cleaning up sees every object that landed. A store finishes a
    /// request it has received even when its caller hangs up. A streaming
    /// attempt stops sending its body at once; an object whose body was all
    /// sent waits for its answer.
    pub async fn copy_all<F>(
        &self,
        src: &Arc<dyn ObjectStore>,
        dst: &Arc<dyn ObjectStore>,
        tasks: Vec<CopyTask>,
        attempts: &TaskTracker,
        on_copied: F,
    ) -> Result<()>
    where
        F: Fn(&CopyTask, &Copied) + Sync,
    {
        self.copy_stream(src, dst, futures::stream::iter(tasks), attempts, on_copied)
            .await
    }

    /// [`Copier::copy_all`] over tasks that arrive as a stream; ends when
    /// the stream ends and every copy started is done.
    pub async fn copy_stream<S, F>(
        &self,
        src: &Arc<dyn ObjectStore>,
        dst: &Arc<dyn ObjectStore>,
        tasks: S,
        attempts: &TaskTracker,
        on_copied: F,
    ) -> Result<()>
    where
        S: futures::Stream<Item = CopyTask>,
        F: Fn(&CopyTask, &Copied) + Sync,
    {
        let server_side = match (src.endpoint_identity(), dst.endpoint_identity()) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        };
        tasks
            .map(|task| {
                let on_copied = &on_copied;
                async move {
                    // Held by the attempts too: one that outlives this copy
                    // (its job cancelled) still counts against the bound.
                    let permit = Arc::new(
                        self.permits
                            .clone()
                            .acquire_owned()
                            .await
                            .map_err(|_| Error::Internal("copier closed".into()))?,
                    );
                    let limit = self.rate_limit.clone();
                    if let (true, Some(limit)) = (server_side, &limit) {
                        // No bytes pass through us: the cap paces whole objects.
                        limit.take(task.size).await;
                    }
                    // Cancelled when this copy is dropped: a streaming attempt
                    // stops its body, one in parts or polled stops between
                    // its requests.
                    let stop = CancellationToken::new();
                    let _stop_when_dropped = stop.clone().drop_guard();
                    let copied = retry(Backoff::COPY, storage_transient, || {
                        let attempt = copy_one(
                            src.clone(),
                            dst.clone(),
                            task.clone(),
                            server_side,
                            limit.clone(),
                            stop.clone(),
                        );
                        let permit = permit.clone();
                        let attempt = attempts.spawn(
                            async move {
                                let _permit = permit;
                                attempt.await
                            }
                            .in_current_span(),
                        );
                        async move {
                            attempt.await.map_err(|e| {
                                Error::Internal(format!("a copy attempt did not end: {e}"))
                            })?
                        }
                    })
                    .await?;
                    crate::metrics::global().object_copied(task.size);
                    on_copied(&task, &copied);
                    Ok::<_, Error>(())
                }
            })
            .buffer_unordered(if server_side {
                self.parallelism
            } else {
                self.parallelism.min(STREAMS_PER_JOB)
            })
            .try_collect::<()>()
            .await
    }
}

/// Copies one object. A streaming copy is paced chunk by chunk by `limit`,
/// so the cap holds within every second, whatever the object's size.
/// Once `stop` is cancelled, a server-side copy sends no further request
/// (one sent is answered first) and a streaming one's body ends in an error.
async fn copy_one(
    src: Arc<dyn ObjectStore>,
    dst: Arc<dyn ObjectStore>,
    task: CopyTask,
    server_side: bool,
    limit: Option<Arc<RateLimit>>,
    stop: CancellationToken,
) -> Result<Copied> {
    if stop.is_cancelled() {
        return Err(stopped());
    }
    if server_side {
        let from = Source::new(src.bucket(), &task.src_key, task.size).until(&stop);
        let etag = dst
            .copy_in(from, &task.dst_key)
            .await
            .map_err(|e| from.missing_named(e))?;
        check_copied_size(dst.as_ref(), src.bucket(), &task).await?;
        return Ok(Copied { etag, crc32c: None });
    }
    let (size, body) = src.get_stream(&task.src_key).await?;
    // As a server-side copy is checked after it: a source of another size
    // than planned changed since it was listed or proven. Nothing is written.
    if size != task.size {
        return Err(Error::DataLoss(format!(
            "{}/{} holds {size} bytes, not the {} planned: it changed since it was listed or \
             proven; it was not copied",
            src.bucket(),
            task.src_key,
            task.size
        )));
    }
    // The chunks pass in order through one consumer: a running CRC is enough.
    let crc = Arc::new(AtomicU32::new(0));
    let running = crc.clone();
    let body = body.inspect_ok(move |chunk| {
        let next = crc32c::crc32c_append(running.load(Ordering::Relaxed), chunk);
        running.store(next, Ordering::Relaxed);
    });
    // Stopped while a chunk waits for the cap too; counted as they pass it.
    let body = stopped_by(super::rate::paced(Box::pin(body), limit), stop)
        .inspect_ok(|chunk| crate::metrics::global().bytes_streamed(chunk.len() as u64));
    let etag = dst.put_stream(&task.dst_key, size, Box::pin(body)).await?;
    Ok(Copied {
        etag,
        crc32c: Some(crc.load(Ordering::Relaxed)),
    })
}

/// Checks that the server-side copy of `task` into `dst` holds the bytes
/// planned: the store copies its source as it is now, and a source changed
/// since it was listed or proven (grown, shrunk, truncated) is another
/// object. A copy of another size is removed (it is this copy's own, just
/// made; nothing of the source is touched) and the copy fails
/// [`Error::DataLoss`] naming the source and both sizes.
async fn check_copied_size(dst: &dyn ObjectStore, src_bucket: &str, task: &CopyTask) -> Result<()> {
    let copied = match dst.head(&task.dst_key).await? {
        Some(size) if size == task.size => return Ok(()),
        Some(size) => size,
        None => {
            return Err(Error::Storage {
                operation: "Copy",
                key: format!("{}/{}", dst.bucket(), task.dst_key),
                reason: "the copy was reported made, and no object is there".into(),
            });
        }
    };
    if let Err(e) = dst.delete(std::slice::from_ref(&task.dst_key)).await {
        tracing::warn!(
            key = %task.dst_key,
            error = %e,
            "cannot remove a server-side copy of another size than planned"
        );
    }
    Err(Error::DataLoss(format!(
        "{src_bucket}/{} was copied with {copied} bytes, not the {} planned: it changed since it \
         was listed or proven; its copy {}/{} was removed",
        task.src_key,
        task.size,
        dst.bucket(),
        task.dst_key
    )))
}

/// The error of a copy stopped because its job ended.
fn stopped() -> Error {
    Error::Cancelled("the copy was stopped: its job ended".into())
}

/// `body` until `stop` is cancelled, then an error: the upload it feeds fails
/// instead of completing.
fn stopped_by(
    body: impl Stream<Item = Result<bytes::Bytes>> + Send + Sync + Unpin + 'static,
    stop: CancellationToken,
) -> impl Stream<Item = Result<bytes::Bytes>> + Send + Sync + 'static {
    futures::stream::unfold(Some((body, stop)), |state| async move {
        let (mut body, stop) = state?;
        tokio::select! {
            biased;
            () = stop.cancelled() => Some((Err(stopped()), None)),
            next = body.next() => next.map(|item| (item, Some((body, stop)))),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalDir;

    /// A source and a destination directory under `dir`, made.
    async fn two_dirs(dir: &std::path::Path) -> (Arc<dyn ObjectStore>, Arc<dyn ObjectStore>) {
        let (src, dst): (Arc<dyn ObjectStore>, Arc<dyn ObjectStore>) = (
            Arc::new(LocalDir::new(dir.join("a"))),
            Arc::new(LocalDir::new(dir.join("b"))),
        );
        src.ensure_bucket(true).await.unwrap();
        dst.ensure_bucket(true).await.unwrap();
        (src, dst)
    }

    /// One object three times the cap's budget of a second streams over about
    /// three seconds (virtual time), not at full speed after one reservation.
    #[tokio::test(start_paused = true)]
    async fn a_streaming_copy_is_paced_chunk_by_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = two_dirs(dir.path()).await;
        let size = 3 * 1024 * 1024;
        src.write("big", bytes::Bytes::from(vec![7u8; size]))
            .await
            .unwrap();
        let copier = Copier::new(4).with_rate_limit(1.0);
        let task = CopyTask {
            src_key: "big".into(),
            dst_key: "big".into(),
            size: size as u64,
            owner: 0,
        };
        let started = tokio::time::Instant::now();
        copier
            .copy_all(&src, &dst, vec![task], &TaskTracker::new(), |_, _| {})
            .await
            .unwrap();
        let took = started.elapsed();
        assert!(
            took >= std::time::Duration::from_secs(2),
            "paced over {took:?}"
        );
        assert_eq!(dst.head("big").await.unwrap(), Some(size as u64));
    }

    /// A source whose size differs from the planned one (it changed since
    /// it was listed) fails the streaming copy DATA_LOSS naming it and both
    /// sizes, and nothing is written. Before, the copy succeeded with the
    /// new bytes under the planned size, and only a later verify told.
    #[tokio::test]
    async fn a_streamed_source_of_another_size_than_planned_is_not_copied() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = two_dirs(dir.path()).await;
        src.write("log", bytes::Bytes::from(vec![7u8; 10]))
            .await
            .unwrap();
        let task = CopyTask {
            src_key: "log".into(),
            dst_key: "copy".into(),
            size: 12,
            owner: 0,
        };
        let err = Copier::new(1)
            .copy_all(&src, &dst, vec![task], &TaskTracker::new(), |_, _| {})
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::DataLoss(m) if m.contains("log") && m.contains("10 bytes") && m.contains("12 planned")),
            "{err}"
        );
        assert_eq!(dst.head("copy").await.unwrap(), None, "nothing written");
    }
}
