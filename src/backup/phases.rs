//! The phases of a backup job, timed: published on the job as each ends and
//! logged (`phase ended`), so that the next bottleneck is visible.

use crate::jobs::{BackupSnapshot, JobHandle};

/// The wall-clock time of each phase of a job, published on it as each ends.
pub struct Phases<'a> {
    job: &'a JobHandle<BackupSnapshot>,
    backup: &'a str,
    since: std::time::Instant,
    ended: Vec<(String, u64)>,
}

impl<'a> Phases<'a> {
    /// Starts timing; the first phase began at `since` (when the job began
    /// to run, not when it was queued).
    pub fn new(
        job: &'a JobHandle<BackupSnapshot>,
        backup: &'a str,
        since: std::time::Instant,
    ) -> Self {
        Self {
            job,
            backup,
            since,
            ended: Vec::new(),
        }
    }

    /// Ends the phase `name`; the next one starts now.
    pub fn end(&mut self, name: &str) {
        let ms = self.since.elapsed().as_millis() as u64;
        self.since = std::time::Instant::now();
        let seconds = ms as f64 / 1000.0;
        tracing::info!(backup = %self.backup, phase = name, seconds, "phase ended");
        self.ended.push((name.to_string(), ms));
        let ended = self.ended.clone();
        self.job.update(|s| s.phases = ended);
    }
}

impl std::fmt::Display for Phases<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .ended
            .iter()
            .map(|(name, ms)| format!("{name} {:.2} s", *ms as f64 / 1000.0))
            .collect();
        f.write_str(&parts.join(", "))
    }
}
