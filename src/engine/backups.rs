//! Backups as callers see them: this server's backup jobs and the complete
//! backups in storage, found, listed, read, verified and deleted.

use futures::StreamExt;
use tokio::sync::watch;
use tracing::info;

use super::{BackupInfo, Engine};
use crate::error::{Error, Result};
use crate::jobs::{BackupSnapshot, JobState, VerifyProgress};
use crate::meta::index::IndexEntry;
use crate::meta::summary::snapshot_of;
use crate::model::{BackupLookup, BackupName, CollectionRef};

/// What a delete removed and kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    pub objects: u64,
    /// Objects kept because other backups reference them.
    pub kept: u64,
}

/// Backups whose meta ListBackups reads at once.
const LIST_READ_PARALLELISM: usize = 16;

impl Engine {
    /// The snapshots of backup `name`: a job of this server, or a complete
    /// backup in storage (one terminal snapshot).
    pub async fn watch_backup(&self, name: &BackupName) -> Result<watch::Receiver<BackupSnapshot>> {
        if let Some(rx) = self.backups.registry().get(name) {
            return Ok(rx);
        }
        let info = self
            .ctx
            .catalog
            .read(name)
            .await?
            .ok_or_else(|| Error::not_found("backup", name.as_str()))?;
        Ok(watch::channel(snapshot_of(&info)).1)
    }

    /// One backup, by name, or by id among this server's jobs and the stored backups.
    pub async fn get_backup(&self, lookup: &BackupLookup) -> Result<BackupSnapshot> {
        let id = match lookup {
            BackupLookup::Name(name) => return Ok(self.watch_backup(name).await?.borrow().clone()),
            BackupLookup::Id(id) => id,
        };
        if let Some(s) = self
            .backups
            .registry()
            .all()
            .into_iter()
            .find(|s| &s.id == id)
        {
            return Ok(s);
        }
        // The index names each backup with its id: only that one is read.
        let index = self.ctx.catalog.index().await?;
        if let Some(e) = index.values().find(|e| &e.id == id)
            && let Ok(Some(info)) = self.ctx.catalog.read(&e.name).await
            && &info.id == id
        {
            return Ok(snapshot_of(&info));
        }
        // Backups without an index entry (copied in by hand, the Go tool's).
        for name in self.ctx.catalog.names().await? {
            if index.contains_key(&name) {
                continue;
            }
            if let Ok(Some(info)) = self.ctx.catalog.read(&name).await
                && &info.id == id
            {
                return Ok(snapshot_of(&info));
            }
        }
        Err(Error::not_found("backup id", id))
    }

    /// Every backup: complete ones in storage, then this server's jobs that are
    /// not (yet) complete, optionally only those holding `collection`.
    pub async fn list_backups(
        &self,
        collection: Option<&CollectionRef>,
    ) -> Result<Vec<BackupSnapshot>> {
        // Two listings: the root's folders (what exists) and the index (what
        // is complete, with its id). A summary read once is kept: it never
        // changes. A folder without an entry is read from its meta.
        let (names, index) =
            futures::try_join!(self.ctx.catalog.names(), self.ctx.catalog.index())?;
        let reads = futures::stream::iter(names)
            .map(|name| {
                let entry = index.get(&name);
                async move { (self.summary(&name, entry).await, name) }
            })
            .buffered(LIST_READ_PARALLELISM);
        let mut out: Vec<BackupSnapshot> = reads
            .filter_map(|(read, name)| async move {
                match read {
                    Ok(found) => found,
                    Err(e) => {
                        tracing::warn!(backup = %name, error = %e, "unreadable backup skipped");
                        None
                    }
                }
            })
            .collect()
            .await;
        self.summaries
            .lock()
            .expect("summaries")
            .retain(|key, _| index.values().any(|e| &e.key == key));
        for job in self.backups.registry().all() {
            if job.state != JobState::Succeeded && !out.iter().any(|b| b.name == job.name) {
                out.push(job);
            }
        }
        if let Some(c) = collection {
            out.retain(|b| {
                b.collections
                    .iter()
                    .any(|s| s.db == c.db() && s.name == c.name())
            });
        }
        Ok(out)
    }

    /// The summary of backup `name`: from its index entry (kept once read),
    /// or from its meta; `None` when it is not complete.
    async fn summary(
        &self,
        name: &str,
        entry: Option<&IndexEntry>,
    ) -> Result<Option<BackupSnapshot>> {
        let Some(entry) = entry else {
            return Ok(self.ctx.catalog.read(name).await?.map(|i| snapshot_of(&i)));
        };
        if let Some(s) = self.summaries.lock().expect("summaries").get(&entry.key) {
            return Ok(Some(s.clone()));
        }
        let s = self.ctx.catalog.read_entry(entry).await?;
        self.summaries
            .lock()
            .expect("summaries")
            .insert(entry.key.clone(), s.clone());
        Ok(Some(s))
    }

    /// The stored meta of a complete backup, as the Go tool shows it: without
    /// the schemas' bytes, and without partitions and segments unless `detail`.
    /// `None` while the backup is not complete.
    pub async fn backup_meta(&self, name: &str, detail: bool) -> Result<Option<BackupInfo>> {
        let Some(mut info) = self.ctx.catalog.read(name).await? else {
            return Ok(None);
        };
        for c in &mut info.collection_backups {
            c.schema_proto_base64.clear();
            if !detail {
                c.partition_backups.clear();
            }
        }
        Ok(Some(info))
    }

    /// Deletes backup `name`, but the objects that other complete backups
    /// (incremental ones) reference; returns how many objects went and how
    /// many were kept. Refused while any job writes or reads the backup (an
    /// incremental backup that is choosing to reuse its objects holds it as
    /// a reader).
    pub async fn delete_backup(&self, name: &BackupName) -> Result<Deleted> {
        if let Some(rx) = self.backups.registry().get(name)
            && !rx.borrow().state.is_terminal()
        {
            return Err(Error::FailedPrecondition(format!(
                "backup {:?} is still running",
                name.as_str()
            )));
        }
        if !self.ctx.catalog.is_taken(name).await? {
            return Err(Error::not_found("backup", name.as_str()));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let lease = self
            .ctx
            .leases()
            .hold_for_writing(name, &id, "delete")
            .await?;
        let deleted = async {
            // Only a folder with backup meta is a backup: anything else under
            // the root is not ours to remove. A folder with our checksums but
            // no commit point is one of ours left half-way (a delete or a
            // create that was killed); under the hold none is running, so it
            // may go.
            let catalog = &self.ctx.catalog;
            if catalog.read(name).await?.is_none() && catalog.read_manifest(name).await?.is_none() {
                return Err(Error::FailedPrecondition(format!(
                    "{:?} under the backup root has no complete backup meta; \
                     it is not a backup and was not deleted",
                    name.as_str()
                )));
            }
            // Read under the hold: no incremental backup can start reusing
            // this one's objects now, and those that did are complete.
            let plan = catalog.delete_plan(name).await?;
            crate::failpoint::pause_at("delete.planned").await;
            let objects = catalog.delete_as_planned(name, &plan).await?;
            Ok(Deleted {
                objects,
                kept: plan.keep.len() as u64,
            })
        }
        .await;
        lease.release().await;
        let deleted = deleted?;
        self.backups.registry().forget(name);
        info!(backup = %name, objects = deleted.objects, kept = deleted.kept, "backup deleted");
        Ok(deleted)
    }

    /// Re-reads backup `name` and checks every object against its checksums.
    /// `on_progress` sees each step; the result lists every damaged object.
    /// It takes a slot of the job limit and holds the backup as a reader (a
    /// delete waits for it) until it ends or its future is dropped.
    pub async fn verify_backup(
        &self,
        name: &BackupName,
        on_progress: impl Fn(&VerifyProgress),
    ) -> Result<VerifyProgress> {
        let _slot = self.pool.take_slot()?;
        let id = uuid::Uuid::new_v4().to_string();
        let lease = self
            .ctx
            .leases()
            .hold_for_reading(name, &id, "verify")
            .await?;
        let result = async {
            crate::failpoint::pause_at("verify.started").await;
            crate::meta::verify::verify(&self.ctx.catalog, name, on_progress).await
        }
        .await;
        lease.release().await;
        result
    }
}
