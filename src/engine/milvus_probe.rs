//! Whether Milvus answers this server: asked before it takes on work that
//! needs Milvus and that a replica reaching Milvus could do instead (a dead
//! server's backup or restore, a scheduled policy slot).

use std::time::Duration;

use super::Engine;
use crate::error::Error;

/// How long Milvus is given to answer with its version.
pub(super) const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

impl Engine {
    /// Why Milvus cannot be reached from this server (unreachable, or no
    /// answer within [`PROBE_TIMEOUT`]); `None` on any answer, a refusal of
    /// our credentials too (the work then fails naming it, as it should).
    /// Asked once: a refused connection is an answer at once, not after the
    /// retries of a read.
    pub(super) async fn milvus_unreachable(&self) -> Option<String> {
        match tokio::time::timeout(PROBE_TIMEOUT, self.ctx.milvus.version_once()).await {
            Err(_) => Some(format!("no answer within {PROBE_TIMEOUT:?}")),
            Ok(Err(e @ Error::Unavailable { .. })) => Some(e.to_string()),
            Ok(_) => None,
        }
    }
}
