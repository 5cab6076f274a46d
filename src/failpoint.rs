//! Named pause points for the crash tests: when `MILVUS_BACKUP_FAILPOINTS`
//! (a comma-separated list) names a point, a job that reaches it logs
//! "failpoint reached" and waits there for good, so that a test can SIGKILL the
//! process at exactly that step. Unset (always, outside tests) it costs one
//! environment lookup per point.
//!
//! The points: `restore.importing` and `restore.importing:{db}.{coll}`
//! (imports started, not awaited), `restore.swap.before_drop`,
//! `restore.swap.dropped` (dropped, not yet recorded), `restore.swap.after_drop`,
//! `restore.swap.renamed` (renamed, not yet recorded), `restore.swap.after_rename`,
//! `backup.describing` (a full backup flushed, nothing described yet; the
//! early copy runs on), `backup.described` (every collection described; the
//! copies run on),
//! `backup.meta.before_backup_meta`, `backup.meta.before_full_meta`,
//! `backup.incremental.bases_held` (an incremental backup holds the backups it
//! reuses), `delete.planned` (what to keep is known), `delete.after_commit_point`
//! (the backup is no longer complete; its objects are still there),
//! `verify.started`.

/// Pauses forever at `name` when the environment asks for it.
pub async fn pause_at(name: &str) {
    let Ok(list) = std::env::var("MILVUS_BACKUP_FAILPOINTS") else {
        return;
    };
    if list.split(',').any(|p| p.trim() == name) {
        tracing::warn!(failpoint = name, "failpoint reached; pausing here");
        std::future::pending::<()>().await;
    }
}
