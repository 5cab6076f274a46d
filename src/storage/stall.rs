//! Uploads whose body streams at its source's pace have no limit on their
//! whole time (a capped or cross-region 500 MiB binlog takes minutes), only
//! on standing still: an upload that sends no byte for [`STALL_LIMIT`], or
//! gets no answer that long after its last byte, fails.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use super::ByteStream;
use crate::error::{Error, Result};

/// How long an upload may stand still.
pub(crate) const STALL_LIMIT: Duration = Duration::from_secs(60);

/// When one upload last moved.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    start: Instant,
    /// Milliseconds from `start` to the last chunk taken from the body.
    last_ms: Arc<AtomicU64>,
}

impl Progress {
    pub(crate) fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: Arc::default(),
        }
    }

    fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }

    /// `body`, each chunk taken from it counted as progress.
    pub(crate) fn track(&self, body: ByteStream) -> ByteStream {
        let progress = self.clone();
        Box::pin(body.inspect(move |_| {
            let now = progress.start.elapsed().as_millis() as u64;
            progress.last_ms.store(now, Ordering::Relaxed);
        }))
    }

    /// Runs `upload` (whose body is [`Self::track`]ed) to its end, failing it
    /// once it stood still for [`STALL_LIMIT`].
    pub(crate) async fn watch<T>(
        &self,
        upload: impl Future<Output = Result<T>>,
        operation: &'static str,
        key: &str,
    ) -> Result<T> {
        tokio::pin!(upload);
        loop {
            tokio::select! {
                done = &mut upload => return done,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            if self.idle() >= STALL_LIMIT {
                return Err(Error::Storage {
                    operation,
                    key: key.to_string(),
                    reason: format!(
                        "the upload stood still for {} s (no byte sent, or no answer)",
                        STALL_LIMIT.as_secs()
                    ),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that yields now and then is never cut short; one that stands
    /// still fails the upload after the limit, naming the operation.
    #[tokio::test(start_paused = true)]
    async fn only_an_upload_that_stands_still_fails() {
        use futures::TryStreamExt;
        let drained = |body: ByteStream| async move {
            body.try_fold(0usize, |n, b| async move { Ok(n + b.len()) })
                .await
        };
        let slow = futures::stream::unfold(0, |i| async move {
            (i < 10).then_some(())?;
            tokio::time::sleep(STALL_LIMIT / 2).await;
            Some((Ok(bytes::Bytes::from_static(b"x")), i + 1))
        });
        let progress = Progress::new();
        let body = progress.track(Box::pin(slow));
        let sent = progress.watch(drained(body), "PutObject", "k").await;
        assert_eq!(sent.unwrap(), 10, "five limits long, never still");

        let still = futures::stream::pending::<Result<bytes::Bytes>>();
        let progress = Progress::new();
        let body = progress.track(Box::pin(still));
        let started = tokio::time::Instant::now();
        let err = progress
            .watch(drained(body), "PutObject", "k")
            .await
            .unwrap_err();
        assert!(started.elapsed() >= STALL_LIMIT, "{:?}", started.elapsed());
        assert!(err.to_string().contains("stood still"), "{err}");
    }
}
