//! Process-wide counters, rendered in the Prometheus text format at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::AddAssign;
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

/// Label values of a job counter: (kind, state) or (service, kind of error).
type LabelPair = (&'static str, &'static str);

/// The counters.
#[derive(Debug, Default)]
pub struct Metrics {
    copied_bytes: AtomicU64,
    copied_files: AtomicU64,
    streamed_bytes: AtomicU64,
    /// (kind, state) → count of jobs that ended so.
    jobs_ended: Tally<LabelPair, u64>,
    /// kind → jobs running now.
    jobs_running: Tally<&'static str, i64>,
    /// kind → its duration histogram.
    durations: Mutex<BTreeMap<&'static str, Histogram>>,
    /// (service, kind of error) → count.
    errors: Tally<LabelPair, u64>,
    /// (policy, result) → runs ended so.
    policy_runs: Tally<(String, &'static str), u64>,
    /// policy → (last success, next run), seconds since the epoch.
    policy_times: Mutex<BTreeMap<String, PolicyTimes>>,
}

/// A policy's gauges: its last success and its next run, in seconds since the epoch.
type PolicyTimes = (Option<i64>, Option<i64>);

/// One of a policy's gauges.
type PickTime = fn(&PolicyTimes) -> Option<i64>;

/// Numbers by key, behind a lock.
#[derive(Debug)]
struct Tally<K, N>(Mutex<BTreeMap<K, N>>);

impl<K, N> Default for Tally<K, N> {
    fn default() -> Self {
        Self(Mutex::new(BTreeMap::new()))
    }
}

impl<K: Ord, N: Copy + Default + AddAssign> Tally<K, N> {
    /// Adds `n` to the number of `key`.
    fn add(&self, key: K, n: N) {
        *self.0.lock().expect("metrics").entry(key).or_default() += n;
    }

    /// The number of `key` (zero when never added to).
    fn get(&self, key: &K) -> N {
        self.0
            .lock()
            .expect("metrics")
            .get(key)
            .copied()
            .unwrap_or_default()
    }
}

impl Tally<LabelPair, u64> {
    /// Writes counter `name`, one sample per pair of values of `labels`.
    fn write_counter(&self, out: &mut String, name: &str, labels: [&str; 2], help: &str) {
        describe(out, name, "counter", help);
        let [first, second] = labels;
        for ((a, b), n) in self.0.lock().expect("metrics").iter() {
            let _ = writeln!(out, "{name}{{{first}=\"{a}\",{second}=\"{b}\"}} {n}");
        }
    }
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

    /// Bytes that passed through us in a streaming copy, counted as they pass.
    pub fn bytes_streamed(&self, bytes: u64) {
        self.streamed_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A job of `kind` (`backup`, `restore`, `delete`, `verify`) started.
    pub fn job_started(&self, kind: &'static str) {
        self.jobs_running.add(kind, 1);
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
        self.jobs_running.add(kind, -1);
        self.jobs_ended.add((kind, state), 1);
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
            // The caller's, the jobs', or counted already (a recorded end).
            Error::InvalidArgument(_)
            | Error::NotFound { .. }
            | Error::AlreadyExists { .. }
            | Error::FailedPrecondition(_)
            | Error::DataLoss(_)
            | Error::Unauthenticated(_)
            | Error::Aborted(_)
            | Error::ResourceExhausted(_)
            | Error::Cancelled(_)
            | Error::ShuttingDown
            | Error::Internal(_)
            | Error::Recorded { .. } => return,
        };
        self.errors.add(key, 1);
    }

    /// A run of `policy` ended (`succeeded` or `failed`).
    pub fn policy_run_ended(&self, policy: &str, result: &'static str) {
        self.policy_runs.add((policy.to_string(), result), 1);
    }

    /// What the shared records say of `policy`: its last success and next run
    /// (seconds since the epoch); `None` forgets a deleted policy.
    pub fn policy_times(&self, policy: &str, times: Option<PolicyTimes>) {
        let mut t = self.policy_times.lock().expect("metrics");
        match times {
            Some(times) => t.insert(policy.to_string(), times),
            None => t.remove(policy),
        };
    }

    /// Moves `policy`'s next run (seconds since the epoch), keeping its last
    /// success.
    pub fn policy_next_run(&self, policy: &str, next: Option<i64>) {
        let mut t = self.policy_times.lock().expect("metrics");
        t.entry(policy.to_string()).or_default().1 = next;
    }

    /// A run of `policy` here succeeded at `ended` (seconds since the epoch):
    /// its last success, before the next look at the shared records.
    pub fn policy_succeeded_at(&self, policy: &str, ended: i64) {
        let mut t = self.policy_times.lock().expect("metrics");
        let times = t.entry(policy.to_string()).or_default();
        times.0 = Some(times.0.map_or(ended, |s| s.max(ended)));
    }

    /// Forgets the gauges of policies not in `names` (deleted anywhere).
    pub fn policy_retain(&self, names: &[&str]) {
        self.policy_times
            .lock()
            .expect("metrics")
            .retain(|p, _| names.contains(&p.as_str()));
    }

    /// Writes the policy counters and gauges.
    fn write_policies(&self, out: &mut String) {
        let name = "milvus_backup_policy_runs_total";
        describe(
            out,
            name,
            "counter",
            "Policy runs this process ended, by result.",
        );
        for ((policy, result), n) in self.policy_runs.0.lock().expect("metrics").iter() {
            let _ = writeln!(out, "{name}{{policy=\"{policy}\",result=\"{result}\"}} {n}");
        }
        let times = self.policy_times.lock().expect("metrics");
        let gauges: [(&str, &str, PickTime); 2] = [
            (
                "milvus_backup_policy_last_success_timestamp_seconds",
                "When the policy's last successful run ended (any server).",
                |t| t.0,
            ),
            (
                "milvus_backup_policy_next_run_timestamp_seconds",
                "When the policy is next due.",
                |t| t.1,
            ),
        ];
        for (name, help, pick) in gauges {
            describe(out, name, "gauge", help);
            for (policy, t) in times.iter() {
                if let Some(v) = pick(t) {
                    let _ = writeln!(out, "{name}{{policy=\"{policy}\"}} {v}");
                }
            }
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let copied = [
            (
                "milvus_backup_copied_bytes_total",
                "Bytes of binlogs copied.",
                &self.copied_bytes,
            ),
            (
                "milvus_backup_copied_files_total",
                "Objects copied.",
                &self.copied_files,
            ),
            (
                "milvus_backup_streamed_bytes_total",
                "Bytes passed through this process by streaming copies, as they pass (a retried copy's again).",
                &self.streamed_bytes,
            ),
        ];
        for (name, help, count) in copied {
            describe(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {}", count.load(Ordering::Relaxed));
        }
        let name = "milvus_backup_jobs_running";
        describe(&mut out, name, "gauge", "Jobs running now.");
        for kind in ["backup", "restore", "delete", "verify"] {
            let n = self.jobs_running.get(&kind);
            let _ = writeln!(out, "{name}{{kind=\"{kind}\"}} {n}");
        }
        self.jobs_ended.write_counter(
            &mut out,
            "milvus_backup_jobs_total",
            ["kind", "state"],
            "Jobs ended, by kind and final state.",
        );
        self.write_durations(&mut out);
        self.errors.write_counter(
            &mut out,
            "milvus_backup_errors_total",
            ["service", "kind"],
            "Errors of Milvus and of the object stores.",
        );
        self.write_policies(&mut out);
        out
    }

    /// Writes the job duration histogram.
    fn write_durations(&self, out: &mut String) {
        let name = "milvus_backup_job_duration_seconds";
        describe(out, name, "histogram", "Job durations.");
        for (kind, (buckets, sum, count)) in self.durations.lock().expect("metrics").iter() {
            for (le, n) in DURATION_BUCKETS.iter().zip(buckets) {
                let _ = writeln!(out, "{name}_bucket{{kind=\"{kind}\",le=\"{le}\"}} {n}");
            }
            let _ = writeln!(out, "{name}_bucket{{kind=\"{kind}\",le=\"+Inf\"}} {count}");
            let _ = writeln!(out, "{name}_sum{{kind=\"{kind}\"}} {sum}");
            let _ = writeln!(out, "{name}_count{{kind=\"{kind}\"}} {count}");
        }
    }
}

/// Writes the `# HELP` and `# TYPE` lines of metric `name`.
fn describe(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
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
