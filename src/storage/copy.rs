//! The copy engine: server-side copy where the stores share an endpoint, a
//! streaming copy otherwise, with one global bound on copies in flight.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use tokio::sync::Semaphore;

use super::ObjectStore;
use crate::error::{Error, Result};

/// One object to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyTask {
    pub src_key: String,
    pub dst_key: String,
    pub size: u64,
}

/// Copies objects between stores. Clones share one bound on copies in flight,
/// so concurrent jobs together never exceed it.
#[derive(Debug, Clone)]
pub struct Copier {
    permits: Arc<Semaphore>,
    parallelism: usize,
}

impl Copier {
    /// A copier with at most `parallelism` copies in flight.
    pub fn new(parallelism: usize) -> Self {
        let parallelism = parallelism.max(1);
        Self {
            permits: Arc::new(Semaphore::new(parallelism)),
            parallelism,
        }
    }

    /// Copies every task, calling `on_copied` after each one. Stops at the first error.
    pub async fn copy_all<F>(
        &self,
        src: &dyn ObjectStore,
        dst: &dyn ObjectStore,
        tasks: Vec<CopyTask>,
        on_copied: F,
    ) -> Result<()>
    where
        F: Fn(&CopyTask) + Sync,
    {
        let server_side = match (src.endpoint_identity(), dst.endpoint_identity()) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        };
        futures::stream::iter(tasks)
            .map(|task| {
                let on_copied = &on_copied;
                async move {
                    let _permit = self
                        .permits
                        .acquire()
                        .await
                        .map_err(|_| Error::Internal("copier closed".into()))?;
                    copy_one(src, dst, &task, server_side).await?;
                    crate::metrics::global().object_copied(task.size);
                    on_copied(&task);
                    Ok::<_, Error>(())
                }
            })
            .buffer_unordered(self.parallelism)
            .try_collect::<()>()
            .await
    }
}

async fn copy_one(
    src: &dyn ObjectStore,
    dst: &dyn ObjectStore,
    task: &CopyTask,
    server_side: bool,
) -> Result<()> {
    if server_side {
        return dst
            .copy_in(src.bucket(), &task.src_key, &task.dst_key)
            .await;
    }
    let (size, body) = src.get_stream(&task.src_key).await?;
    dst.put_stream(&task.dst_key, size, body).await
}
