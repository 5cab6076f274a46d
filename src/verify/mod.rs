//! Verification of a backup as a job kind: it holds the backup as a reader
//! (a delete waits for it), re-reads every object the backup references and
//! compares sizes and checksums (`meta::verify`). Damage ends the job with
//! `DataLoss` naming every damaged object; the last snapshot lists them.
//!
//! It answers its caller and keeps no record: nothing is written, so there is
//! nothing to clean up or resume, and a restart ends it with the process.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::jobs::runner::Recovered;
use crate::jobs::{INTERRUPTED, JobHandle, JobKind, JobSnapshot, JobState, Lease, VerifySnapshot};
use crate::model::{BackupName, Caller};

/// A verification of one backup, for a caller (whose trace its log lines
/// carry).
#[derive(Debug, Clone)]
pub struct VerifyRequest {
    name: BackupName,
    caller: Caller,
}

impl VerifyRequest {
    pub fn new(name: BackupName, caller: Caller) -> Self {
        Self { name, caller }
    }
}

/// A running verification of one backup.
pub struct VerifyJob {
    ctx: Context,
    name: BackupName,
    /// Its hold on the backup as a reader.
    hold: Lease,
}

impl JobKind for VerifyJob {
    type Snapshot = VerifySnapshot;
    type Request = VerifyRequest;
    type Env = Context;
    const NAME: &'static str = "verify";
    const RECORD_INTERVAL: Duration = Duration::from_secs(1);
    const KEEPS_RECORDS: bool = false;

    fn request_id(_: &VerifyRequest) -> &str {
        ""
    }

    async fn plan(ctx: &Context, req: VerifyRequest) -> Result<(Self, VerifySnapshot)> {
        let VerifyRequest { name, caller } = req;
        let id = uuid::Uuid::new_v4().to_string();
        let hold = ctx.hold_backup_for_reading(&name, &id, "verify").await?;
        let mut snapshot = VerifySnapshot::pending(id, name.to_string());
        snapshot.trace_id = caller.trace().map(|t| t.as_str().to_string());
        let job = Self {
            ctx: ctx.clone(),
            name,
            hold,
        };
        Ok((job, snapshot))
    }

    async fn run(&self, job: &JobHandle<VerifySnapshot>) -> Result<()> {
        job.update(|s| s.state = JobState::Running);
        crate::failpoint::pause_at("verify.started").await;
        let last = crate::meta::verify::verify(&self.ctx.catalog, &self.name, |p| {
            job.update(|s| s.progress = p.clone())
        })
        .await?;
        let damage = last.damage_report(&self.name);
        job.update(|s| s.progress = last);
        match damage {
            None => Ok(()),
            // Past its hold's expiry (this process was paused), a delete may
            // have removed what reads as damage: ABORTED, not DATA_LOSS.
            Some(report) => Err(job.fence().err().unwrap_or(Error::DataLoss(report))),
        }
    }

    async fn clean_up(&self, _: &Error, _: &JobHandle<VerifySnapshot>) {
        // It only reads; its hold is let go in `release`.
    }

    fn lost(&self) -> CancellationToken {
        // A delete may take the name once the hold is lost: what it removes
        // would then read as damage, so the verification stops instead.
        self.hold.lost()
    }

    async fn release(self) {
        self.hold.release().await;
    }

    fn fences(&self) -> Vec<crate::jobs::Fence> {
        vec![self.hold.fence()]
    }

    fn describe(&self) -> String {
        format!("verification of backup {}", self.name)
    }

    async fn recover(_: &Context, mut record: VerifySnapshot) -> Recovered<VerifySnapshot> {
        // No record is kept, so none is found; one would end interrupted.
        if !record.state.is_terminal() {
            record.finish(&Err(Error::Cancelled(INTERRUPTED.to_string())));
        }
        Recovered::at_once(record)
    }
}
