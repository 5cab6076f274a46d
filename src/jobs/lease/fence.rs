//! The check a job makes, by its own clock, that it still holds a lease.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::now_ms;
use crate::error::{Error, Result};

/// Marks a lease lost: every fence of it fails from now on, whatever expiry
/// its last renewal gave (a lease another holder took still looks valid by
/// that expiry), and its holder is told through `lost`.
pub(super) fn revoke(expires_at_ms: &AtomicU64, lost: &tokio_util::sync::CancellationToken) {
    expires_at_ms.store(0, Ordering::SeqCst);
    lost.cancel();
}

/// Checks, by this process's clock, that a held lease has not expired: a
/// process that was paused past its lease's expiry stops before its next
/// step, even before its renewal finds the lease taken.
#[derive(Debug, Clone)]
pub struct Fence {
    pub(super) name: String,
    pub(super) expires_at_ms: Arc<AtomicU64>,
    /// How long past the lease's expiry a takeover waits before it resumes
    /// the job that held it (see [`super::Leases::settle`]).
    pub(super) settle: Duration,
}

impl Fence {
    /// Until when (ms since the epoch, by this process's clock) a job that
    /// held `fences` and released them at its end can still write that end
    /// to its shared record before a takeover may resume it: their earliest
    /// expiry plus half the settle. The other half is the margin for the
    /// other servers' clocks and for the write itself. `None` without fences.
    pub fn end_deadline_ms(fences: &[Fence]) -> Option<u64> {
        fences
            .iter()
            .map(|f| f.expires_at_ms.load(Ordering::SeqCst) + f.settle.as_millis() as u64 / 2)
            .min()
    }

    /// How long, by this process's clock, a write may still be started under
    /// `fences` without a further renewal: until their earliest expiry less
    /// a quarter TTL (half the settle), the time left for it to land. Zero
    /// once that passed, or without fences.
    pub fn left_to_write(fences: &[Fence]) -> Duration {
        let until = fences
            .iter()
            .map(|f| {
                let spare = f.settle.as_millis() as u64 / 2;
                f.expires_at_ms.load(Ordering::SeqCst).saturating_sub(spare)
            })
            .min()
            .unwrap_or(0);
        Duration::from_millis(until.saturating_sub(now_ms()))
    }

    /// The instant by which a call to Milvus made under `fences` that a
    /// takeover could repeat (drops, renames and imports go by name) must
    /// have ended: once each stays valid for `margin` more (a late renewal
    /// waited for, as [`Fence::hold_all`]), their earliest expiry. A
    /// takeover resumes the job a settle later, so a call bounded so (see
    /// [`crate::milvus::ended_by`]) never lands after the takeover's own.
    /// `None` without fences.
    pub async fn calls_end_by(
        fences: &[Fence],
        margin: Duration,
    ) -> Result<Option<tokio::time::Instant>> {
        Self::hold_all(fences, margin).await?;
        let now = now_ms();
        Ok(fences
            .iter()
            .map(|f| f.expires_at_ms.load(Ordering::SeqCst))
            .min()
            .map(|until| {
                tokio::time::Instant::now() + Duration::from_millis(until.saturating_sub(now))
            }))
    }

    /// [`Error::Aborted`] once the lease has expired.
    pub fn check(&self) -> Result<()> {
        self.check_for(Duration::ZERO)
    }

    /// [`Fence::check_for`] over every fence of a job.
    pub fn check_all(fences: &[Fence], margin: Duration) -> Result<()> {
        fences.iter().try_for_each(|f| f.check_for(margin))
    }

    /// Waits until every fence of a job stays valid for `margin` more, as
    /// [`Fence::hold_for`].
    pub async fn hold_all(fences: &[Fence], margin: Duration) -> Result<()> {
        for fence in fences {
            fence.hold_for(margin).await?;
        }
        Ok(())
    }

    /// Waits until the lease stays valid for `margin` more: when the last
    /// renewal is older than that (a slow store answers late), the renewals
    /// that land before its current expiry are waited for.
    /// [`Error::Aborted`] when none gave the margin by then.
    pub async fn hold_for(&self, margin: Duration) -> Result<()> {
        let deadline = self.expires_at_ms.load(Ordering::SeqCst);
        loop {
            let held = self.check_for(margin);
            if held.is_ok() || now_ms() >= deadline {
                return held;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// [`Error::Aborted`] unless the lease stays valid for `margin` more: for
    /// a step that must finish while it is held.
    pub fn check_for(&self, margin: Duration) -> Result<()> {
        let until = now_ms() + margin.as_millis() as u64;
        match until < self.expires_at_ms.load(Ordering::SeqCst) {
            true => Ok(()),
            false => Err(Error::Aborted(format!(
                "{} expired before it was renewed: the job stops (another process may own it now)",
                self.name
            ))),
        }
    }
}
