//! The command-line tool: the Go tool's commands, run in-process against an
//! [`Engine`], with progress bars on a terminal and plain lines otherwise.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;

use crate::backup::BackupRequest;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::jobs::{BackupSnapshot, JobState, Progress, RestoreSnapshot};
use crate::names::CollectionRef;
use crate::restore::RestoreRequest;

/// The exit code for a failure: one per kind, so scripts can tell them apart.
pub fn exit_code(err: &Error) -> i32 {
    match err {
        Error::InvalidArgument(_) => 2,
        Error::NotFound { .. } => 3,
        Error::AlreadyExists { .. } => 4,
        Error::FailedPrecondition(_) => 5,
        Error::Unavailable { .. } | Error::ShuttingDown => 6,
        Error::DataLoss(_) => 7,
        Error::Unauthenticated(_) => 10,
        Error::ResourceExhausted(_) => 8,
        Error::Cancelled(_) => 9,
        Error::Milvus { .. } | Error::Storage { .. } | Error::Internal(_) => 1,
    }
}

/// Splits `a,b,,c` into `["a", "b", "c"]`.
pub fn split_list(s: &[String]) -> Vec<String> {
    s.iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect()
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

/// `create`: backs up and waits for the end.
pub async fn create(engine: &Arc<Engine>, req: BackupRequest) -> Result<()> {
    let started = Instant::now();
    let name = req.name.clone();
    let rx = engine.create_backup(req).await?;
    let last: BackupSnapshot = follow(rx, "backup", |s: &BackupSnapshot| {
        (s.state, s.progress.clone())
    })
    .await;
    if last.state != JobState::Succeeded {
        return Err(Error::Internal(format!(
            "backup {name:?} failed: {}",
            last.error.unwrap_or_default()
        )));
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
    let name = req.backup_name.clone();
    let rx = engine.restore(req).await?;
    let last: RestoreSnapshot = follow(rx, "restore", |s: &RestoreSnapshot| {
        (s.state, s.progress.clone())
    })
    .await;
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
        return Err(Error::Internal(format!(
            "restore of {name:?} failed: {}",
            last.error.unwrap_or_default()
        )));
    }
    println!(
        "restore {} of {name} succeeded, duration: {}s",
        last.id,
        started.elapsed().as_secs()
    );
    Ok(())
}

/// `list`: one line per backup.
pub async fn list(engine: &Arc<Engine>, collection: Option<String>) -> Result<()> {
    let filter = collection
        .as_deref()
        .map(CollectionRef::parse)
        .transpose()?;
    let backups = engine.list_backups(filter.as_ref()).await?;
    println!(">> Backups:");
    for b in backups {
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
pub async fn get(engine: &Arc<Engine>, name: &str, detail: bool) -> Result<()> {
    crate::names::validate_backup_name(name)?;
    let mut info = engine
        .context()
        .catalog
        .read(name)
        .await?
        .ok_or_else(|| Error::not_found("backup", name))?;
    for c in &mut info.collection_backups {
        c.schema_proto_base64.clear();
        if !detail {
            c.partition_backups.clear();
        }
    }
    println!("{}", serde_json::to_string_pretty(&info)?);
    Ok(())
}

/// `delete`.
pub async fn delete(engine: &Arc<Engine>, name: &str) -> Result<()> {
    let n = engine.delete_backup(name).await?;
    println!("deleted backup {name} ({n} objects)");
    Ok(())
}

/// `verify`: re-reads the backup; `DataLoss` names every damaged object.
pub async fn verify(engine: &Arc<Engine>, name: &str) -> Result<()> {
    let reporter = std::sync::Mutex::new(Reporter::new("verify"));
    let last = engine
        .verify_backup(name, |p| {
            let progress = Progress {
                bytes_done: p.bytes_done,
                bytes_total: p.bytes_total,
                files_done: p.objects_done,
                files_total: p.objects_total,
                ..Default::default()
            };
            let state = if p.objects_done == p.objects_total {
                JobState::Succeeded
            } else {
                JobState::Running
            };
            reporter
                .lock()
                .expect("reporter")
                .show("verify", state, &progress);
        })
        .await?;
    reporter.lock().expect("reporter").finish();
    if let Some(report) = last.damage_report(name) {
        return Err(Error::DataLoss(report));
    }
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
    Ok(())
}
