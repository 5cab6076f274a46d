//! Verifications as callers see them: a job of the verify kind
//! ([`crate::verify::VerifyJob`]) that stops when its caller goes away,
//! unless the caller detached it.

use std::sync::Arc;

use tokio::sync::watch;
use tracing::info;

use super::Engine;
use crate::error::{Error, Result};
use crate::jobs::{JobSnapshot, Runner, VerifySnapshot, until_terminal};
use crate::model::{BackupName, Caller};
use crate::verify::{VerifyJob, VerifyRequest};

/// A verification started for a caller. Dropped before its end, it stops
/// (freeing its job slot and its hold on the backup), unless detached.
pub struct Verification {
    snapshots: watch::Receiver<VerifySnapshot>,
    runner: Arc<Runner<VerifyJob>>,
    detached: bool,
}

impl Verification {
    /// Lets it run to its end after this is dropped.
    pub fn detach(&mut self) {
        self.detached = true;
    }

    /// Its snapshots, from now to its end.
    pub fn snapshots(&self) -> watch::Receiver<VerifySnapshot> {
        self.snapshots.clone()
    }

    /// Waits for its end: the last snapshot of a backup found intact, or what
    /// ended it (`DataLoss` naming every damaged object; the snapshots list
    /// them too).
    pub async fn ended(&self) -> Result<VerifySnapshot> {
        until_terminal(self.snapshots.clone()).await.succeeded()
    }
}

impl Drop for Verification {
    fn drop(&mut self) {
        let (id, name, ended) = {
            let s = self.snapshots.borrow();
            (s.id.clone(), s.backup_name.clone(), s.state.is_terminal())
        };
        if !self.detached && !ended {
            info!(backup = %name, "verification stopped: its caller went away");
            // It may have ended meanwhile: nothing left to stop then.
            let _ = self.runner.cancel(&id);
        }
    }
}

impl Engine {
    /// Starts a verification of backup `name`: it re-reads every object and
    /// checks it against its checksums. It takes a slot of the job limit and
    /// holds the backup as a reader (a delete waits for it).
    pub async fn verify_backup(&self, name: &BackupName, caller: Caller) -> Result<Verification> {
        let req = VerifyRequest::new(name.clone(), caller);
        let (runner, ctx) = (self.verifies.clone(), self.ctx.clone());
        // Started apart from the caller, which may go away while the start
        // waits for a writer's hold: the verification is then dropped where
        // it was to be handed over, and so stopped.
        let (handed, taken) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let started = runner.start(&ctx, req).await.map(|snapshots| Verification {
                snapshots,
                runner: runner.clone(),
                detached: false,
            });
            let _ = handed.send(started);
        });
        taken.await.unwrap_or_else(|_| {
            Err(Error::Internal(
                "the start of a verification was lost".into(),
            ))
        })
    }
}
