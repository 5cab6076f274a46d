//! A bound on the bytes of manifests one scan holds at once. Manifests are
//! read many at once, and a large backup's manifest can be large: the bound
//! is on their size in the store (the JSON; once parsed, about as much
//! again), taken before the body is read, and held until the caller has
//! used the manifest.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The bytes of manifests one scan holds at once by default.
pub const MANIFEST_BYTES_AT_ONCE: u64 = 256 << 20;

/// The budget's unit: permits count KiB, so that any budget fits a
/// semaphore.
const UNIT: u64 = 1024;

/// Bytes of manifests held at once, within a budget.
#[derive(Debug)]
pub(super) struct ManifestBudget {
    units: Arc<Semaphore>,
    total_units: u32,
    held: Arc<AtomicU64>,
    peak: AtomicU64,
}

/// The part of the budget one manifest holds; given back when dropped.
#[derive(Debug)]
pub(super) struct Held {
    /// The bytes it holds.
    pub(super) bytes: u64,
    _permit: OwnedSemaphorePermit,
    held: Arc<AtomicU64>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.held.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl ManifestBudget {
    /// A budget of `bytes` (at least one unit).
    pub(super) fn new(bytes: u64) -> Self {
        let total_units = (bytes / UNIT).clamp(1, u64::from(u32::MAX >> 3)) as u32;
        Self {
            units: Arc::new(Semaphore::new(total_units as usize)),
            total_units,
            held: Arc::default(),
            peak: AtomicU64::default(),
        }
    }

    /// Waits until `bytes` fit beside what is held. A manifest larger than
    /// the whole budget waits until nothing else is held, then is read alone.
    pub(super) async fn hold(&self, bytes: u64) -> Held {
        let permit = Arc::clone(&self.units)
            .acquire_many_owned(self.units_of(bytes))
            .await
            .expect("the budget's semaphore is never closed");
        self.held(permit, bytes)
    }

    /// [`ManifestBudget::hold`] if `bytes` fit now.
    pub(super) fn try_hold(&self, bytes: u64) -> Option<Held> {
        let permit = Arc::clone(&self.units)
            .try_acquire_many_owned(self.units_of(bytes))
            .ok()?;
        Some(self.held(permit, bytes))
    }

    fn units_of(&self, bytes: u64) -> u32 {
        bytes.div_ceil(UNIT).clamp(1, u64::from(self.total_units)) as u32
    }

    fn held(&self, permit: OwnedSemaphorePermit, bytes: u64) -> Held {
        let now = self.held.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
        Held {
            _permit: permit,
            bytes,
            held: Arc::clone(&self.held),
        }
    }

    /// The most bytes held at once so far.
    pub(super) fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}
