//! Job records on disk: one JSON file per job, rewritten as the job goes, so
//! that a restarted server still answers for old jobs and can tell which were
//! interrupted. The newest records are kept; older ones are removed.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{BackupSnapshot, DeleteSnapshot, JobSnapshot, RestoreSnapshot};
use crate::error::{Error, Result};

/// The kinds of job that keep records.
const KINDS: [&str; 3] = [
    BackupSnapshot::KIND,
    RestoreSnapshot::KIND,
    DeleteSnapshot::KIND,
];

/// Records kept per kind of job.
pub const MAX_RECORDS: usize = 1000;

/// A directory of job records.
#[derive(Debug, Clone)]
pub struct JobStore {
    dir: PathBuf,
    /// An exclusive lock on `dir/lock`, held while any clone lives: two
    /// servers on one directory would each take the other's running jobs
    /// for interrupted ones. The kernel releases it when the process dies.
    _lock: Arc<File>,
    /// One writer at a time, so that writes of one record never interleave.
    writing: Arc<std::sync::Mutex<()>>,
}

impl JobStore {
    /// Records under `dir` (created when missing).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        Self::open_migrating(dir.into(), usize::MAX).map(|(store, _)| store)
    }

    /// [`JobStore::open`], whose renaming of old records stops after `steps`
    /// renames and removals (as a crash would, in the tests); with the steps
    /// taken.
    fn open_migrating(dir: PathBuf, steps: usize) -> Result<(Self, usize)> {
        for kind in KINDS {
            std::fs::create_dir_all(dir.join(kind)).map_err(|e| {
                Error::invalid(format!(
                    "cannot create the job state directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let path = dir.join("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::invalid(format!("cannot open {}: {e}", path.display())))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(Error::FailedPrecondition(format!(
                    "the job state directory {} is in use by another milvus-backup server; \
                     give each server its own backup.stateDir",
                    dir.display()
                )));
            }
            Err(TryLockError::Error(e)) => {
                return Err(Error::invalid(format!(
                    "cannot lock {}: {e}",
                    path.display()
                )));
            }
        }
        let store = Self {
            dir,
            _lock: Arc::new(lock),
            writing: Arc::default(),
        };
        let taken = store.migrate_names(steps);
        Ok((store, taken))
    }

    fn path(&self, kind: &str, id: &str) -> PathBuf {
        self.dir.join(kind).join(format!("{}.json", file_stem(id)))
    }

    /// Renames the records written under the file names of earlier versions
    /// (which mapped every other character to `_`, so `a.b` and `a_b`
    /// shared one) to [`file_stem`]'s, keeping their times. A name can be
    /// another record's old one, not renamed yet: passes go on while any
    /// record moves (a new name is never an old one's own, so each chain
    /// ends). Two files of one job (an older version ran again after an
    /// upgrade) keep the newer. Each step (a rename or a removal) is
    /// atomic, so a crash between two leaves every record under its old
    /// name or its new one, and the next open goes on. At most `steps`
    /// steps; the steps taken.
    fn migrate_names(&self, steps: usize) -> usize {
        let mut left = steps;
        for kind in KINDS {
            while left > 0 && self.migrate_pass(kind, &mut left) > 0 {}
        }
        steps - left
    }

    /// One pass of [`JobStore::migrate_names`] over `kind`, of at most
    /// `left` steps (counted down): the records moved.
    fn migrate_pass(&self, kind: &str, left: &mut usize) -> usize {
        let Ok(entries) = std::fs::read_dir(self.dir.join(kind)) else {
            return 0;
        };
        let id_in = |path: &Path| -> Option<String> {
            let record = read::<serde_json::Value>(path).ok()?;
            Some(record.get("id")?.as_str()?.to_string())
        };
        let mut moved = 0;
        for path in entries.flatten().map(|e| e.path()) {
            if *left == 0 {
                break;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let Some(id) = id_in(&path) else { continue };
            let named = self.path(kind, &id);
            if named == path {
                continue;
            }
            let done = match id_in(&named) {
                None if !named.exists() => std::fs::rename(&path, &named),
                Some(theirs) if theirs == id => match modified(&path) > modified(&named) {
                    true => std::fs::rename(&path, &named),
                    false => std::fs::remove_file(&path),
                },
                // Another job's record, itself still to move (or unreadable): next pass.
                _ => continue,
            };
            match done {
                Ok(()) => {
                    moved += 1;
                    *left -= 1;
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot rename job record");
                }
            }
        }
        moved
    }

    /// Writes a record durably: a temporary file, synced, renamed into place,
    /// and the folder synced. Writers take turns.
    fn write<T: Serialize>(&self, kind: &str, id: &str, record: &T) -> std::io::Result<()> {
        use std::io::Write;
        let path = self.path(kind, id);
        let tmp = path.with_extension("json.tmp");
        let body = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        let mut file = File::create(&tmp)?;
        file.write_all(&body)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        File::open(self.dir.join(kind))?.sync_all()
    }

    /// Saves a job's record (a write that fails is logged).
    pub fn save<T: JobSnapshot>(&self, s: &T) {
        let _turn = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = self.write(T::KIND, s.id(), s) {
            tracing::warn!(id = %s.id(), error = %e, "cannot save job record");
        }
    }

    /// Saves the newest state of a running job, read while holding the
    /// writer's turn: a writer that read an older state earlier can never
    /// overwrite it. `latest` must only copy the state out (no lock held
    /// while writing). The last state is written by [`JobStore::save_last_then`], once.
    pub fn save_latest<T: JobSnapshot>(&self, latest: impl FnOnce() -> T) {
        let _turn = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let s = latest();
        if s.state().is_terminal() {
            return;
        }
        if let Err(e) = self.write(T::KIND, s.id(), &s) {
            tracing::warn!(id = %s.id(), error = %e, "cannot save job record");
        }
    }

    /// Saves a job's last state, then runs `publish` (which shows it to the
    /// watchers) in the same turn: no writer of the newest state can write an
    /// older one after it, and a watcher that sees the end finds it recorded.
    pub fn save_last_then<T: JobSnapshot>(&self, s: &T, publish: impl FnOnce()) {
        let _turn = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = self.write(T::KIND, s.id(), s) {
            tracing::warn!(id = %s.id(), error = %e, "cannot save job record");
        }
        publish();
    }

    /// Saves a job's record before a step that recovery must know of; an
    /// error means the step must not be taken.
    pub fn checkpoint<T: JobSnapshot>(&self, s: &T) -> crate::Result<()> {
        let _turn = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        self.write(T::KIND, s.id(), s).map_err(|e| {
            crate::Error::Internal(format!(
                "cannot record {} {} before its next step: {e}",
                T::NOUN,
                s.id()
            ))
        })
    }

    fn load<T: DeserializeOwned>(&self, kind: &str) -> Vec<(std::time::SystemTime, T)> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(self.dir.join(kind)) else {
            return out;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match read(&path) {
                Ok(r) => out.push((modified(&path), r)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable job record skipped")
                }
            }
        }
        out.sort_by_key(|(t, _)| *t);
        out
    }

    /// Every record of one kind of job, oldest first.
    pub fn records<T: JobSnapshot>(&self) -> Vec<T> {
        self.load(T::KIND).into_iter().map(|(_, r)| r).collect()
    }

    /// Removes the oldest records beyond [`MAX_RECORDS`] of each kind.
    pub fn prune(&self) {
        for kind in KINDS {
            let Ok(entries) = std::fs::read_dir(self.dir.join(kind)) else {
                continue;
            };
            let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
                .flatten()
                .map(|e| (modified(&e.path()), e.path()))
                .collect();
            if files.len() <= MAX_RECORDS {
                continue;
            }
            files.sort();
            for (_, path) in &files[..files.len() - MAX_RECORDS] {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// Longest file name stem kept whole; a longer one is cut and hashed.
const MAX_STEM: usize = 200;

/// A job id as a file name stem, one to one also where file names ignore
/// case: lower-case ASCII letters, digits and `-` stay, every other byte is
/// written `_XX` (hex). A stem over [`MAX_STEM`] bytes (a long request id)
/// keeps its first 150 and the SHA-256 of the id after a `~`, which no
/// written byte makes.
fn file_stem(id: &str) -> String {
    let mut stem = String::with_capacity(id.len());
    for b in id.bytes() {
        match b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' {
            true => stem.push(char::from(b)),
            false => stem.push_str(&format!("_{b:02x}")),
        }
    }
    if stem.len() > MAX_STEM {
        use sha2::Digest;
        stem.truncate(150);
        stem.push_str(&format!("~{:x}", sha2::Sha256::digest(id.as_bytes())));
    }
    stem
}

/// When the file at `path` was last written (the epoch when unknown).
fn modified(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(std::time::UNIX_EPOCH)
}

fn read<T: DeserializeOwned>(path: &Path) -> std::io::Result<T> {
    let body = std::fs::read(path)?;
    serde_json::from_slice(&body).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_server_per_state_directory() {
        let dir = std::env::temp_dir().join(format!("job-store-lock-{}", std::process::id()));
        let first = JobStore::open(&dir).unwrap();
        let err = JobStore::open(&dir).unwrap_err().to_string();
        assert!(
            err.contains("in use by another milvus-backup server"),
            "{err}"
        );
        drop(first);
        JobStore::open(&dir).expect("free again once the first is gone");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn fresh_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("job-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// Writes a record of job `id` as `file` under `kind`, as an earlier version may have.
    fn write_as(kind: &Path, file: &str, id: &str) {
        let r = DeleteSnapshot::pending(id.into(), "b".into());
        std::fs::write(kind.join(file), serde_json::to_vec(&r).unwrap()).unwrap();
    }

    /// The files under `kind`, sorted.
    fn files(kind: &Path) -> Vec<String> {
        let mut files: Vec<String> = std::fs::read_dir(kind)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        files
    }

    fn ids(store: &JobStore) -> Vec<String> {
        let mut ids: Vec<String> = store
            .records::<DeleteSnapshot>()
            .into_iter()
            .map(|r| r.id)
            .collect();
        ids.sort();
        ids
    }

    #[test]
    fn every_id_keeps_its_own_record() {
        let dir = fresh_dir("ids");
        let store = JobStore::open(&dir).unwrap();
        let long = "r".repeat(256);
        let longer = format!("{long}x");
        let given = [
            "ops.nightly",
            "ops_nightly",
            "ops nightly",
            "é",
            &long,
            &longer,
        ];
        for id in given {
            store
                .checkpoint(&DeleteSnapshot::pending(id.into(), "b".into()))
                .unwrap_or_else(|e| panic!("{id}: {e}"));
        }
        let mut want: Vec<String> = given.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(ids(&store), want);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn records_under_the_old_names_are_renamed_at_open() {
        let dir = fresh_dir("old-names");
        let kind = dir.join(DeleteSnapshot::KIND);
        std::fs::create_dir_all(&kind).unwrap();
        // As the earlier versions named them: `.` and `_` both became `_`.
        write_as(&kind, "ops_nightly.json", "ops.nightly");
        write_as(&kind, "4b2e-uuid.json", "4b2e-uuid");
        let store = JobStore::open(&dir).unwrap();
        assert!(kind.join("ops_2enightly.json").exists());
        assert!(!kind.join("ops_nightly.json").exists());
        assert!(
            kind.join("4b2e-uuid.json").exists(),
            "a uuid's name is unchanged"
        );
        // The other id of the old shared name now has a record of its own.
        let other = DeleteSnapshot::pending("ops_nightly".into(), "b".into());
        store.checkpoint(&other).unwrap();
        assert_eq!(ids(&store), ["4b2e-uuid", "ops.nightly", "ops_nightly"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_new_name_held_by_another_jobs_old_file_waits_for_it_to_move() {
        let dir = fresh_dir("chain");
        let kind = dir.join(DeleteSnapshot::KIND);
        old_records(&kind);
        let store = JobStore::open(&dir).unwrap();
        assert_migrated(&store, &kind, "whole");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `old_records` under their new names, one per job, each the newer copy.
    fn assert_migrated(store: &JobStore, kind: &Path, how: &str) {
        assert_eq!(
            ids(store),
            ["Up.Case", "q.b", "r.1", "r_2e1", "s.x"],
            "{how}"
        );
        for r in store.records::<DeleteSnapshot>() {
            let newer = r.id == "q.b" || r.id == "s.x";
            assert_eq!(
                r.objects_total == 7,
                newer,
                "{how}: the newer copy of {}",
                r.id
            );
        }
        let want = [
            "_55p_2e_43ase.json",
            "q_2eb.json",
            "r_2e1.json",
            "r_5f2e1.json",
            "s_2ex.json",
        ];
        assert_eq!(files(kind), want, "{how}");
    }

    /// Records of earlier versions that need every kind of step: a chain of
    /// renames (`r.1` moves where `r_2e1` was), a plain one (`Up.Case`), and
    /// two jobs in two files each, the newer kept: under the old name
    /// (`q_b.json`, renamed over the other) and under the new (`s_2ex.json`,
    /// the other removed).
    fn old_records(kind: &Path) {
        std::fs::create_dir_all(kind).unwrap();
        write_as(kind, "r_1.json", "r.1");
        write_as(kind, "r_2e1.json", "r_2e1");
        write_as(kind, "Up_Case.json", "Up.Case");
        write_as(kind, "q_2eb.json", "q.b");
        write_as(kind, "s_x.json", "s.x");
        std::thread::sleep(std::time::Duration::from_millis(20));
        for (file, id) in [("q_b.json", "q.b"), ("s_2ex.json", "s.x")] {
            let mut newer = DeleteSnapshot::pending(id.into(), "b".into());
            newer.objects_total = 7;
            std::fs::write(kind.join(file), serde_json::to_vec(&newer).unwrap()).unwrap();
        }
    }

    /// A migration cut short after any of its steps (a crash: each rename
    /// or removal is atomic) loses no record and keeps the newer copy of a
    /// job; the next open finishes it.
    #[test]
    fn a_migration_cut_short_at_any_step_is_finished_by_the_next_open() {
        let dir = fresh_dir("steps");
        old_records(&dir.join(DeleteSnapshot::KIND));
        let (_, total) = JobStore::open_migrating(dir.clone(), usize::MAX).unwrap();
        assert_eq!(total, 5, "4 renames and a removal");
        let _ = std::fs::remove_dir_all(&dir);
        for steps in 0..total {
            let dir = fresh_dir(&format!("cut-{steps}"));
            let kind = dir.join(DeleteSnapshot::KIND);
            old_records(&kind);
            let (cut, taken) = JobStore::open_migrating(dir.clone(), steps).unwrap();
            assert_eq!(taken, steps);
            drop(cut);
            let store = JobStore::open(&dir).unwrap();
            assert_migrated(&store, &kind, &format!("cut after {steps} steps"));
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
