//! Named pause points for the crash tests: when `MILVUS_BACKUP_FAILPOINTS`
//! (a comma-separated list) names a point, a job that reaches it logs
//! "failpoint reached" and waits there for good, so that a test can SIGKILL the
//! process at exactly that step (or, as `point@PATH`, until PATH exists). Unset (always, outside tests) it costs one
//! environment lookup per point.
//!
//! The points: `restore.importing` and `restore.importing:{db}.{coll}`
//! (imports started, not awaited), `restore.created` (Milvus made the
//! collection, the job has not recorded it yet), `restore.swap.before_drop`,
//! `restore.swap.dropping` (its drop's deadline set, the drop not yet
//! sent), `restore.swap.dropped` (dropped, not yet recorded), `restore.swap.after_drop`,
//! `restore.swap.renamed` (renamed, not yet recorded), `restore.swap.after_rename`,
//! `backup.held` (a backup planned under its hold, not yet started),
//! `backup.describing` (a full backup flushed, nothing described yet; the
//! early copy runs on), `backup.described` (every collection described; the
//! copies run on),
//! `backup.meta.before_backup_meta`, `backup.meta.before_full_meta`,
//! `backup.committed` (its commit point written, its bases not yet let go),
//! `backup.incremental.bases_chosen` (an incremental backup chose what to
//! reuse, its bases not held yet), `backup.incremental.bases_held` (an
//! incremental backup holds the backups it reuses), `delete.after_commit_point` (the backup is no longer complete, its
//! objects are still there, the readers not yet looked at again),
//! `delete.planned` (what to keep is known), `delete.freed_checked` (its
//! last look at what backups deleted since its plan freed),
//! `delete.home_refused` (the hold on a deleted backup whose objects this
//! one reused was refused, its holders not yet looked at),
//! `delete.meta_removed` (its meta files are gone, its binlogs not yet),
//! `lease.reading` (a reader's lease is written, the writer not yet looked
//! at), `verify.started`, `storage.copy_in_parts` (a copy in parts began its
//! upload, no part copied yet).

/// Pauses at `name` when the environment asks for it: for good, or, for
/// `name@PATH`, until a file appears at PATH (a test that changes Milvus at
/// that step, then lets the job go on).
pub async fn pause_at(name: &str) {
    let Ok(list) = std::env::var("MILVUS_BACKUP_FAILPOINTS") else {
        return;
    };
    for point in list.split(',').map(str::trim) {
        let (point, until) = match point.split_once('@') {
            Some((point, path)) => (point, Some(path)),
            None => (point, None),
        };
        if point != name {
            continue;
        }
        tracing::warn!(failpoint = name, "failpoint reached; pausing here");
        let Some(path) = until else {
            return std::future::pending::<()>().await;
        };
        while !std::path::Path::new(path).exists() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        tracing::warn!(failpoint = name, "failpoint released");
        return;
    }
}
