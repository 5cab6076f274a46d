//! The command-line tool: the Go tool's commands, run in-process against an
//! [`Engine`], with progress bars on a terminal and plain lines otherwise.

pub mod policy;

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;

use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::jobs::{JobSnapshot, JobState, Progress};
use crate::model::{BackupName, BackupRequest, Caller, CollectionFilter, RestoreRequest};

/// The exit code for a failure: one per kind, so scripts can tell them apart.
pub fn exit_code(err: &Error) -> i32 {
    match err.kind() {
        ErrorKind::InvalidArgument => 2,
        ErrorKind::NotFound => 3,
        ErrorKind::AlreadyExists => 4,
        ErrorKind::FailedPrecondition => 5,
        ErrorKind::Unavailable | ErrorKind::ShuttingDown => 6,
        ErrorKind::DataLoss => 7,
        ErrorKind::Unauthenticated => 10,
        ErrorKind::ResourceExhausted => 8,
        ErrorKind::Cancelled => 9,
        ErrorKind::Aborted => 11,
        ErrorKind::PermissionDenied => 13,
        ErrorKind::Milvus | ErrorKind::Storage | ErrorKind::Internal => 1,
    }
}

/// The items of list flag `flag` (`a,b` or repeated), trimmed. An empty
/// item (`-c ""`, `-c a,,b`) is refused: left out, the flag means every
/// collection, which an empty variable in a script must never ask for.
pub fn split_list(flag: &str, s: &[String]) -> Result<Vec<String>> {
    let items: Vec<String> = s
        .iter()
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .collect();
    if items.iter().any(String::is_empty) {
        return Err(Error::invalid(format!(
            "{flag} {:?} has an empty item: name each one, or leave the flag out",
            s.join(",")
        )));
    }
    Ok(items)
}

/// The exit code when the server's port is already taken.
pub const EXIT_PORT_IN_USE: i32 = 12;

/// The request fields of `create` and the flags that set them.
pub const CREATE_FLAGS: &[(&str, &str)] = &[
    ("backup_name", "--name"),
    ("collection_names", "--colls"),
    ("database_names", "--databases"),
    ("meta_only", "--meta_only"),
    ("incremental", "--incremental"),
];

/// The request fields of `restore` and the flags that set them.
pub const RESTORE_FLAGS: &[(&str, &str)] = &[
    ("backup_name", "--name"),
    ("collection_names", "--collections"),
    ("database_names", "--databases"),
    ("collection_suffix", "--suffix"),
    ("collection_renames", "--rename"),
    ("drop_existing_collections", "--drop_exist_collection"),
    ("skip_create_collection", "--skip_create_collection"),
    ("restore_index", "--restore_index"),
    ("load", "--load"),
    ("meta_only", "--meta_only"),
];

/// Rewrites an error message of the core, which names the request's fields
/// (`drop_existing_collections`), in the words of the CLI's flags
/// (`--drop_exist_collection`); see [`crate::model::in_words`].
pub fn in_flag_words(msg: &str, flags: &[(&str, &str)]) -> String {
    crate::model::in_words(msg, flags)
}

/// The start-up warning of a server that anyone who reaches the port may
/// use: listening beyond loopback with neither a token nor TLS.
pub fn exposure_warning(ip: std::net::IpAddr, token: bool, tls: bool) -> Option<String> {
    if ip.is_loopback() || token || tls {
        return None;
    }
    Some(format!(
        "listening on {ip} without authentication or TLS: anyone who can reach this port can \
         create, restore and delete backups. Turn authentication on with security.token in \
         the config (or MILVUS_BACKUP_TOKEN=<secret>; clients then send \
         \"authorization: Bearer <secret>\"), add TLS with security.tls.certPath and keyPath, \
         or listen on this machine only with --address 127.0.0.1"
    ))
}

/// Shows a job's progress: a bar on a terminal, a line per second otherwise.
struct Reporter {
    bar: Option<ProgressBar>,
    last_line: Instant,
}

impl Reporter {
    fn new(what: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(100);
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:40}] {pos:>3}% {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(what.to_string());
            bar
        });
        Self {
            bar,
            last_line: Instant::now() - Duration::from_secs(10),
        }
    }

    fn show(&mut self, what: &str, state: JobState, p: &Progress) {
        let percent = p.percent(state);
        let msg = format!(
            "{}/{} files, {}/{} bytes, {}/{} collections",
            p.files_done,
            p.files_total,
            p.bytes_done,
            p.bytes_total,
            p.collections_done,
            p.collections_total
        );
        match &self.bar {
            Some(bar) => {
                bar.set_position(percent as u64);
                bar.set_message(msg);
            }
            None if state.is_terminal() || self.last_line.elapsed() >= Duration::from_secs(1) => {
                eprintln!("{what} {state:?} {percent}% {msg}");
                self.last_line = Instant::now();
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

/// Follows a job to its end, showing progress; returns the last snapshot.
async fn follow<T: Clone>(
    mut rx: watch::Receiver<T>,
    what: &str,
    view: impl Fn(&T) -> (JobState, Progress),
) -> T {
    let mut reporter = Reporter::new(what);
    loop {
        let snap = rx.borrow_and_update().clone();
        let (state, progress) = view(&snap);
        reporter.show(what, state, &progress);
        if state.is_terminal() || rx.changed().await.is_err() {
            reporter.finish();
            return rx.borrow().clone();
        }
    }
}

/// Shows each backup job of `name` (a policy run's attempts) to its end,
/// until the caller stops waiting.
async fn show_backup_jobs(engine: &Arc<Engine>, name: &BackupName) {
    let mut shown = std::collections::HashSet::new();
    loop {
        if let Ok(rx) = engine.watch_backup(name).await {
            let id = rx.borrow().id.clone();
            if shown.insert(id) {
                follow(rx, "backup", |s| (s.state, s.progress.clone())).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The error of a job that did not succeed: "`what` failed: `error`", of
/// the job's kind of failure, which picks the exit code (DATA_LOSS: 7, ...).
fn job_failed(what: &str, error_kind: Option<String>, error: Option<String>) -> Error {
    Error::recorded(
        error_kind.as_deref().unwrap_or_default(),
        format!("{what} failed: {}", error.unwrap_or_default()),
    )
}

/// `create`: backs up and waits for the end.
pub async fn create(engine: &Arc<Engine>, req: BackupRequest) -> Result<()> {
    let started = Instant::now();
    let name = req.name().clone();
    let rx = engine.create_backup(req).await?;
    let last = follow(rx, "backup", |s| (s.state, s.progress.clone())).await;
    if last.state != JobState::Succeeded {
        let what = format!("backup {:?}", name.as_str());
        return Err(job_failed(&what, last.error_kind, last.error));
    }
    let rows: i64 = last.collections.iter().map(|c| c.row_count).sum();
    println!(
        "backup {name} succeeded: {} collections, {rows} rows, {} bytes, duration: {}s",
        last.collections.len(),
        last.size_bytes,
        started.elapsed().as_secs()
    );
    Ok(())
}

/// `restore`: restores and waits for the end.
pub async fn restore(engine: &Arc<Engine>, req: RestoreRequest) -> Result<()> {
    let started = Instant::now();
    let name = req.backup_name().clone();
    let rx = engine.restore(req).await?;
    let last = follow(rx, "restore", |s| (s.state, s.progress.clone())).await;
    for c in &last.collections {
        println!(
            "{} -> {}: {:?}, {} rows imported{}",
            c.source,
            c.target,
            c.state,
            c.imported_rows,
            c.error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
    }
    if last.state != JobState::Succeeded {
        let what = format!("restore of {:?}", name.as_str());
        return Err(job_failed(&what, last.error_kind, last.error));
    }
    println!(
        "restore {} of {name} succeeded, duration: {}s",
        last.id,
        started.elapsed().as_secs()
    );
    Ok(())
}

/// `list`: one backup name per line, as the Go tool prints them (scripts
/// read them); `long`: with its state, size and collections.
pub async fn list(
    engine: &Arc<Engine>,
    filter: Option<CollectionFilter>,
    long: bool,
) -> Result<()> {
    let backups = engine.list_backups(filter.as_ref()).await?;
    println!(">> Backups:");
    for b in backups {
        if !long {
            println!("{}", b.name);
            continue;
        }
        let colls: Vec<String> = b
            .collections
            .iter()
            .map(|c| format!("{}.{}", c.db, c.name))
            .collect();
        println!(
            "{}\t{:?}\t{} bytes\t{}",
            b.name,
            b.state,
            b.size_bytes,
            colls.join(",")
        );
    }
    Ok(())
}

/// `get`: the backup's stored meta as indented JSON (the Go tool's shape).
pub async fn get(engine: &Arc<Engine>, name: &BackupName, detail: bool) -> Result<()> {
    let info = engine
        .backup_meta(name, detail)
        .await?
        .ok_or_else(|| Error::not_found("backup", name.as_str()))?;
    println!("{}", serde_json::to_string_pretty(&info)?);
    Ok(())
}

/// `delete`.
pub async fn delete(engine: &Arc<Engine>, name: &BackupName) -> Result<()> {
    // Its objects as it removes them (a delete reads every other backup's
    // checksums first, then removes what none names).
    let rx = engine.delete_backup(name, &Caller::default()).await?;
    let d = follow(rx, "delete", |d| {
        let progress = Progress {
            files_done: d.objects_deleted,
            files_total: d.objects_total,
            ..Progress::default()
        };
        (d.state, progress)
    })
    .await
    .succeeded()?;
    if d.objects_kept > 0 {
        println!(
            "deleted backup {name} ({} objects; {} kept: later incremental backups reference them)",
            d.objects_deleted, d.objects_kept
        );
    } else {
        println!("deleted backup {name} ({} objects)", d.objects_deleted);
    }
    Ok(())
}

/// `verify`: re-reads the backup; `DataLoss` names every damaged object.
pub async fn verify(engine: &Arc<Engine>, name: &BackupName) -> Result<()> {
    let mut reporter = Reporter::new("verify");
    let verification = engine.verify_backup(name, Caller::default()).await?;
    let mut snapshots = verification.snapshots();
    loop {
        let now = snapshots.borrow_and_update().clone();
        let p = &now.progress;
        let progress = Progress {
            bytes_done: p.bytes_done,
            bytes_total: p.bytes_total,
            files_done: p.objects_done,
            files_total: p.objects_total,
            ..Default::default()
        };
        reporter.show("verify", now.state, &progress);
        if now.state.is_terminal() || snapshots.changed().await.is_err() {
            break;
        }
    }
    reporter.finish();
    let last = verification.ended().await?.progress;
    println!(
        "backup {name} verified: {} objects, {} bytes, all sizes and checksums match",
        last.objects_total, last.bytes_total
    );
    Ok(())
}

/// `check`.
pub async fn check(engine: &Arc<Engine>) -> Result<()> {
    let r = engine.check().await?;
    println!("Succeed to connect to milvus and storage.");
    println!("Milvus {} at {}", r.milvus_version, r.milvus_address);
    println!("Milvus storage: {}", r.milvus_storage);
    println!(
        "Backup storage: {} ({} backups)",
        r.backup_storage, r.backup_count
    );
    println!(
        "Conditional writes (leases between jobs and processes): {}",
        if r.conditional_writes {
            "honoured"
        } else {
            "NOT honoured: jobs of different processes cannot exclude each other"
        }
    );
    Ok(())
}

/// `check`, continued: which credentials each bucket's requests are signed
/// with (the secret never shown).
pub async fn credentials(cfg: &crate::config::Config) -> Result<()> {
    async fn describe(b: &crate::config::BucketConfig) -> Result<String> {
        use crate::config::{AzureCredential, Backend};
        match &b.backend {
            Backend::S3 => {}
            Backend::Azure(a) => {
                let kind = match a.credential {
                    AzureCredential::Key(_) => "the account key",
                    AzureCredential::Sas(_) => "a SAS token",
                };
                return Ok(format!("azure account {:?} with {kind}", a.account));
            }
            Backend::Gcs(g) => {
                return Ok(if g.credential_json.is_empty() {
                    "the Google application default credentials".to_string()
                } else {
                    format!("the service account key in {:?}", g.credential_json)
                });
            }
        }
        let summary = crate::storage::S3Bucket::new(b)?
            .credentials_summary()
            .await?;
        Ok(if b.use_iam {
            format!(
                "{summary} from the AWS default credential chain ({})",
                b.use_iam_key
            )
        } else {
            format!("{summary} from the config")
        })
    }
    let milvus = cfg.minio.milvus_bucket()?;
    println!("Milvus storage credentials: {}", describe(&milvus).await?);
    if !cfg.minio.backups_are_local() {
        let backup = cfg.minio.backup_bucket()?;
        println!("Backup storage credentials: {}", describe(&backup).await?);
    }
    Ok(())
}
