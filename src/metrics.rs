//! Process-wide counters, rendered in the Prometheus text format at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::error::Error;

/// Upper bounds (seconds) of the job duration histogram.
const DURATION_BUCKETS: [f64; 10] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0,
];

/// Bucket counts, sum and count of a histogram.
type Histogram = ([u64; DURATION_BUCKETS.len()], f64, u64);

/// The counters.
#[derive(Debug, Default)]
pub struct Metrics {
    copied_bytes: AtomicU64,
    copied_files: AtomicU64,
    /// (kind, state) → count of jobs that ended so.
    jobs_ended: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// kind → jobs running now.
    jobs_running: Mutex<BTreeMap<&'static str, i64>>,
    /// kind → its duration histogram.
    durations: Mutex<BTreeMap<&'static str, Histogram>>,
    /// (service, kind of error) → count.
    errors: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

/// The metrics of this process.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::default)
}

impl Metrics {
    /// One object copied.
    pub fn object_copied(&self, bytes: u64) {
        self.copied_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.copied_files.fetch_add(1, Ordering::Relaxed);
    }

    /// A job of `kind` (`backup`, `restore`) started.
    pub fn job_started(&self, kind: &'static str) {
        *self
            .jobs_running
            .lock()
            .expect("metrics")
            .entry(kind)
            .or_default() += 1;
    }

    /// A job of `kind` ended with `result` after `took`; the error of a
    /// failed job is counted here (it is never answered as an error).
    pub fn job_ended(&self, kind: &'static str, result: &Result<(), Error>, took: Duration) {
        let state = match result {
            Ok(()) => "succeeded",
            Err(Error::Cancelled(_)) => "cancelled",
            Err(e) => {
                self.error(e);
                "failed"
            }
        };
        *self
            .jobs_running
            .lock()
            .expect("metrics")
            .entry(kind)
            .or_default() -= 1;
        *self
            .jobs_ended
            .lock()
            .expect("metrics")
            .entry((kind, state))
            .or_default() += 1;
        let secs = took.as_secs_f64();
        let mut d = self.durations.lock().expect("metrics");
        let (buckets, sum, count) = d.entry(kind).or_default();
        for (i, le) in DURATION_BUCKETS.iter().enumerate() {
            if secs <= *le {
                buckets[i] += 1;
            }
        }
        *sum += secs;
        *count += 1;
    }

    /// An error of Milvus or of an object store (others are not counted).
    pub fn error(&self, err: &Error) {
        let key = match err {
            Error::Milvus { .. } => ("milvus", "error"),
            Error::Unavailable {
                service: "milvus", ..
            } => ("milvus", "unavailable"),
            Error::Unavailable { .. } => ("storage", "unavailable"),
            Error::Storage { .. } => ("storage", "error"),
            Error::PermissionDenied(_) => ("storage", "denied"),
            _ => return,
        };
        *self.errors.lock().expect("metrics").entry(key).or_default() += 1;
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP milvus_backup_copied_bytes_total Bytes of binlogs copied.\n# TYPE milvus_backup_copied_bytes_total counter"
        );
        let _ = writeln!(
            out,
            "milvus_backup_copied_bytes_total {}",
            self.copied_bytes.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP milvus_backup_copied_files_total Objects copied.\n# TYPE milvus_backup_copied_files_total counter"
        );
        let _ = writeln!(
            out,
            "milvus_backup_copied_files_total {}",
            self.copied_files.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP milvus_backup_jobs_running Jobs running now.\n# TYPE milvus_backup_jobs_running gauge"
        );
        for kind in ["backup", "restore"] {
            let n = self
                .jobs_running
                .lock()
                .expect("metrics")
                .get(kind)
                .copied()
                .unwrap_or(0);
            let _ = writeln!(out, "milvus_backup_jobs_running{{kind=\"{kind}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP milvus_backup_jobs_total Jobs ended, by kind and final state.\n# TYPE milvus_backup_jobs_total counter"
        );
        for ((kind, state), n) in self.jobs_ended.lock().expect("metrics").iter() {
            let _ = writeln!(
                out,
                "milvus_backup_jobs_total{{kind=\"{kind}\",state=\"{state}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP milvus_backup_job_duration_seconds Job durations.\n# TYPE milvus_backup_job_duration_seconds histogram"
        );
        for (kind, (buckets, sum, count)) in self.durations.lock().expect("metrics").iter() {
            for (le, n) in DURATION_BUCKETS.iter().zip(buckets) {
                let _ = writeln!(
                    out,
                    "milvus_backup_job_duration_seconds_bucket{{kind=\"{kind}\",le=\"{le}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "milvus_backup_job_duration_seconds_bucket{{kind=\"{kind}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "milvus_backup_job_duration_seconds_sum{{kind=\"{kind}\"}} {sum}"
            );
            let _ = writeln!(
                out,
                "milvus_backup_job_duration_seconds_count{{kind=\"{kind}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP milvus_backup_errors_total Errors of Milvus and of the object stores.\n# TYPE milvus_backup_errors_total counter"
        );
        for ((service, kind), n) in self.errors.lock().expect("metrics").iter() {
            let _ = writeln!(
                out,
                "milvus_backup_errors_total{{service=\"{service}\",kind=\"{kind}\"}} {n}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::default();
        m.object_copied(10);
        m.job_started("backup");
        m.job_ended("backup", &Ok(()), Duration::from_secs(2));
        m.error(&Error::milvus("Flush", "boom"));
        let text = m.render();
        assert!(text.contains("milvus_backup_copied_bytes_total 10"));
        assert!(text.contains("milvus_backup_jobs_total{kind=\"backup\",state=\"succeeded\"} 1"));
        assert!(
            text.contains("milvus_backup_job_duration_seconds_bucket{kind=\"backup\",le=\"5\"} 1")
        );
        assert!(text.contains("milvus_backup_errors_total{service=\"milvus\",kind=\"error\"} 1"));
        assert!(text.contains("milvus_backup_jobs_running{kind=\"backup\"} 0"));
    }
}
