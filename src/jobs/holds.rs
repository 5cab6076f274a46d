//! What jobs hold, as leases in the backup storage:
//! - `backup/{name}`: a job that writes backup `name` (a create, a delete);
//! - `reads/{name}/{job}`: each job that reads it (a restore, a verify);
//! - `target/{db}.{coll}` (`target/{db}/{coll}` for long names, see
//!   [`target`]): a restore into that collection;
//! - `policy/{name}/{slot}`: the run of a policy's slot (slot in ms since the epoch).
//!
//! A writer waits for no reader and a reader for no writer: the one that
//! comes second is refused with ABORTED, naming the holder.

use super::lease::{Lease, Leases, release_all};
use crate::error::{Error, Result};
use crate::model::{CollectionRef, MAX_NAME_LEN};

/// The purpose a job that creates a backup holds its name for.
pub const CREATE: &str = "create";

/// The purpose a job that deletes a backup holds its name for.
pub const DELETE: &str = "delete";

/// The lease of the job that writes (creates or deletes) backup `backup`.
pub fn writer(backup: &str) -> String {
    format!("backup/{backup}")
}

/// The lease of job `job` that reads backup `backup`. A job id is the
/// caller's request id when one was given (up to 256 bytes of anything): one
/// that is no plain file name (`/`, `.`, `..`, over 128 bytes, other
/// characters) is named by its MD5 instead, so that its lease can be
/// written on every store, a local directory too.
pub fn reader(backup: &str, job: &str) -> String {
    let plain = job.len() <= 128
        && !matches!(job, "" | "." | "..")
        && job
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if plain {
        format!("reads/{backup}/{job}")
    } else {
        format!("reads/{backup}/md5-{}", super::md5_hex(job))
    }
}

/// The folder of policy `policy`'s slot leases.
pub fn policy_slots(policy: &str) -> String {
    format!("policy/{policy}")
}

/// The lease of the run of policy `policy`'s slot `slot_ms`.
pub fn policy_slot(policy: &str, slot_ms: i64) -> String {
    format!("{}/{slot_ms}", policy_slots(policy))
}

/// The slot of a lease named by [`policy_slot`].
pub fn slot_of(lease: &str) -> Option<i64> {
    lease.rsplit('/').next()?.parse().ok()
}

/// The lease of restore target `t`: `target/{db}.{name}`, or
/// `target/{db}/{name}` when that is longer than a file name on a local
/// disk can be (255 bytes) and a name is longer than the Go tool's 128:
/// earlier versions refused those names, and took the first form for every
/// other target, so that replicas of both versions exclude each other.
/// (Two names of 127 or 128 together still fail on a local disk, as before.)
fn target(t: &CollectionRef) -> String {
    let (db, name) = (t.db().len(), t.name().len());
    if (db > MAX_NAME_LEN || name > MAX_NAME_LEN) && db + 1 + name > 255 {
        format!("target/{}/{}", t.db(), t.name())
    } else {
        format!("target/{}.{}", t.db(), t.name())
    }
}

impl Leases {
    /// Holds backup `name` for job `job` that writes it; refused while
    /// another job writes or reads it.
    pub async fn hold_for_writing(&self, name: &str, job: &str, purpose: &str) -> Result<Lease> {
        let (lease, ()) = self
            .hold_for_writing_then(name, job, purpose, async { Ok(()) })
            .await?;
        Ok(lease)
    }

    /// [`Leases::hold_for_writing`], running `check` under the lease beside
    /// the look for readers (a future starts only when polled: after the
    /// lease is held). Either failing hands the lease back (see
    /// [`Lease::hand_back`]): a holder refused at once changed nothing.
    pub async fn hold_for_writing_then<T>(
        &self,
        name: &str,
        job: &str,
        purpose: &str,
        check: impl std::future::Future<Output = Result<T>>,
    ) -> Result<(Lease, T)> {
        let lease = self.acquire(&writer(name), job, purpose).await?;
        let (unread, checked) = tokio::join!(self.ensure_unread(name), check);
        let refused = match (unread, checked) {
            (Err(e), _) | (_, Err(e)) => e,
            (Ok(()), Ok(t)) => return Ok((lease, t)),
        };
        lease.hand_back().await;
        Err(refused)
    }

    /// Fails with [`Error::Aborted`] naming a job that holds backup `name`
    /// for reading.
    pub async fn ensure_unread(&self, name: &str) -> Result<()> {
        match self.sweep_under(&format!("reads/{name}")).await?.first() {
            None => Ok(()),
            Some((_, held)) => Err(Error::Aborted(format!(
                "backup {name:?} is being read by job {} ({}); retry when it ends",
                held.job, held.purpose
            ))),
        }
    }

    /// Holds backup `name` for job `job` that reads it; refused while a job
    /// creates or deletes it.
    pub async fn hold_for_reading(&self, name: &str, job: &str, purpose: &str) -> Result<Lease> {
        let lease = self.acquire(&reader(name, job), job, purpose).await?;
        crate::failpoint::pause_at("lease.reading").await;
        match self.ensure_free(&writer(name)).await {
            Ok(()) => Ok(lease),
            Err(e) => {
                lease.release().await;
                Err(e)
            }
        }
    }

    /// What the job that writes backup `name` holds it for ([`CREATE`],
    /// [`DELETE`], ...), if one holds it.
    pub async fn writer_purpose(&self, name: &str) -> Result<Option<String>> {
        Ok(self.holder(&writer(name)).await?.map(|h| h.purpose))
    }

    /// Whether any job holds backup `name` for reading.
    pub async fn is_read(&self, name: &str) -> Result<bool> {
        Ok(!self.sweep_under(&format!("reads/{name}")).await?.is_empty())
    }

    /// Holds what a restore needs besides `reading`, its hold on the backup:
    /// each target (on a refusal, `reading` is let go too).
    pub async fn hold_for_restore(
        &self,
        job: &str,
        reading: Lease,
        targets: &[CollectionRef],
    ) -> Result<Vec<Lease>> {
        self.hold_each_target(vec![reading], job, targets, "restore into")
            .await
    }

    /// Holds the targets of restore `job` (of a process that died) to clean
    /// them up; refused while any is held live.
    pub async fn hold_targets(&self, job: &str, targets: &[CollectionRef]) -> Result<Vec<Lease>> {
        self.hold_each_target(Vec::new(), job, targets, "clean up")
            .await
    }

    /// Adds a lease on each of `targets` to `held`; on the first refusal,
    /// releases everything held (`held` too) and returns the refusal.
    async fn hold_each_target(
        &self,
        mut held: Vec<Lease>,
        job: &str,
        targets: &[CollectionRef],
        purpose: &str,
    ) -> Result<Vec<Lease>> {
        for t in targets {
            match self.acquire(&target(t), job, purpose).await {
                Ok(lease) => held.push(lease),
                Err(e) => {
                    release_all(held).await;
                    return Err(e);
                }
            }
        }
        Ok(held)
    }

    /// Frees every reader's hold job `job` still has in this process, on
    /// any backup: an
    /// incremental backup that ended on an error path lets go of its bases
    /// at once, not when the holds expire (a delete of one is refused
    /// meanwhile).
    pub async fn release_reads_of(&self, job: &str) {
        let held = match self.holders_under("reads").await {
            Ok(held) => held,
            Err(e) => {
                return tracing::warn!(job, error = %e, "cannot list the holds to release");
            }
        };
        // Only this process's: a takeover resumes a job under its id.
        let mine = |r: &super::LeaseRecord| r.job == job && r.process == super::host_pid();
        for (name, _) in held.into_iter().filter(|(_, r)| mine(r)) {
            if let Err(e) = self.release_for_job(&name, job).await {
                tracing::warn!(job, lease = %name, error = %e, "cannot release the lease");
            }
        }
    }

    /// Frees what the stopped process of restore `job` held on its backup and
    /// its targets, once it is cleaned up (rather than when the leases
    /// expire), but the leases `held` here, which the caller lets go of
    /// after: called while those are still held, so that none of these can
    /// be a resumed job's by then (a takeover resumes a restore under its
    /// id, and takes its targets first).
    pub async fn release_stopped_restore(
        &self,
        job: &str,
        backup: &str,
        targets: &[CollectionRef],
        held: &[Lease],
    ) {
        let names = std::iter::once(reader(backup, job)).chain(targets.iter().map(target));
        let not_held = names.filter(|name| held.iter().all(|l| l.name() != name));
        for name in not_held {
            if let Err(e) = self.release_for_job(&name, job).await {
                tracing::warn!(restore = %job, lease = %name, error = %e, "cannot release the lease");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_lease_keeps_the_earlier_form_for_every_name_it_could_take() {
        let at = |db: usize, c: usize| {
            target(&CollectionRef::normalized(&"d".repeat(db), &"c".repeat(c)))
        };
        assert_eq!(at(7, 5), "target/ddddddd.ccccc");
        // The longest names an earlier version accepted: the same lease.
        assert_eq!(
            at(128, 128),
            format!("target/{}.{}", "d".repeat(128), "c".repeat(128))
        );
        assert_eq!(at(7, 250), format!("target/ddddddd/{}", "c".repeat(250)));
        assert_eq!(at(7, 248), format!("target/ddddddd/{}", "c".repeat(248)));
        assert_eq!(at(7, 200), format!("target/ddddddd.{}", "c".repeat(200)));
        assert_eq!(
            at(129, 128),
            format!("target/{}/{}", "d".repeat(129), "c".repeat(128))
        );
    }
}
