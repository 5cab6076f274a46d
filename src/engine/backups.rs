//! Backups as callers see them: this server's backup jobs and the complete
//! backups in storage, found, listed, read and deleted.

use futures::StreamExt;
use tokio::sync::watch;

use super::{BackupInfo, Engine};
use crate::delete::DeleteRequest;
use crate::error::{Error, Result};
use crate::jobs::{BackupSnapshot, DeleteSnapshot, JobState, until_terminal};
use crate::meta::index::IndexEntry;
use crate::meta::scan::READ_PARALLELISM;
use crate::meta::summary::snapshot_of;
use crate::model::{BackupLookup, BackupName, Caller, CollectionFilter};

/// Go-tool metas REST keeps, at most (a few KB each without partitions).
const MAX_KEPT_METAS: usize = 50_000;

impl Engine {
    /// The snapshots of backup `name`: a job of this server, or a complete
    /// backup in storage (one terminal snapshot).
    pub async fn watch_backup(&self, name: &BackupName) -> Result<watch::Receiver<BackupSnapshot>> {
        // A job running here is the newest of the name.
        let here = self.backups.registry().get(name);
        if let Some(rx) = &here
            && !rx.borrow().state.is_terminal()
        {
            return Ok(rx.clone());
        }
        // A complete backup in storage (another server may have deleted one
        // that succeeded here, or made one again after one failed here).
        if let Some(info) = self.ctx.catalog.read(name).await? {
            return Ok(watch::channel(snapshot_of(&info)).1);
        }
        // The newest job of the name that has not succeeded, wherever it
        // runs or ran (a succeeded one is in the catalog unless deleted):
        // its shared record, else this server's own end of it.
        let newest = match (self.backups.find_shared(name).await?, here) {
            // The same job: this server's end of it is the newest word.
            (Some(shared), Some(here)) if shared.borrow().id == here.borrow().id => Some(here),
            (Some(shared), _) => Some(shared),
            (None, here) => here,
        };
        match newest {
            Some(rx) if rx.borrow().state != JobState::Succeeded => Ok(rx),
            _ => {
                self.backups.registry().forget_finished(name);
                Err(Error::not_found("backup", name.as_str()))
            }
        }
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
        collection: Option<&CollectionFilter>,
    ) -> Result<Vec<BackupSnapshot>> {
        // Three listings at once: the root's folders (what exists), the index
        // (what is complete, with its id) and the shared job records (what
        // runs anywhere). A summary read once is kept: it never changes. A
        // folder without an entry is read from its meta. A finished record is
        // read once (by key and ETag).
        let running = async {
            let Some(shared) = self.pool.shared() else {
                return Ok(Vec::new());
            };
            let mut seen = self.finished_records.lock().expect("records").clone();
            let unfinished = shared.unfinished::<BackupSnapshot>(&mut seen).await?;
            self.finished_records.lock().expect("records").extend(seen);
            Ok::<_, Error>(unfinished)
        };
        let (names, index, running) =
            futures::try_join!(self.ctx.catalog.names(), self.ctx.catalog.index(), running)?;
        // Summaries kept from earlier calls or held by packs are taken at
        // once; the others are read. The order is the listing's.
        self.ctx.catalog.load_packs_for(&index).await;
        let mut slots: Vec<Option<BackupSnapshot>> = Vec::with_capacity(names.len());
        let mut unread = Vec::new();
        for name in names {
            let found = index
                .get(&name)
                .and_then(|e| self.ctx.catalog.kept_summary(e));
            if found.is_none() {
                unread.push((slots.len(), name));
            }
            slots.push(found);
        }
        let reads = futures::stream::iter(unread)
            .map(|(slot, name)| {
                let entry = index.get(&name);
                async move { (slot, self.summary(&name, entry).await, name) }
            })
            .buffered(READ_PARALLELISM);
        let mut reads = std::pin::pin!(reads);
        while let Some((slot, read, name)) = reads.next().await {
            match read {
                Ok(found) => slots[slot] = found,
                Err(e) => tracing::warn!(backup = %name, error = %e, "unreadable backup skipped"),
            }
        }
        let mut out: Vec<BackupSnapshot> = slots.into_iter().flatten().collect();
        self.ctx.catalog.keep_summaries_of(&index);
        self.ctx.catalog.pack_if_worth(&index).await;
        // Jobs of every server that are not complete (yet): this one's, then
        // the others' through their shared records.
        // Those running here first (the freshest progress), then the shared
        // records, then ends here: an older job of a name that ended here
        // does not hide a newer one running elsewhere.
        let (mut jobs, ended): (Vec<_>, Vec<_>) = (self.backups.registry().all())
            .into_iter()
            .partition(|s| !s.state.is_terminal());
        // A record still running of a job that ended here is behind its end.
        jobs.extend(
            running
                .into_iter()
                .filter(|r| !ended.iter().any(|e| e.id == r.id)),
        );
        jobs.extend(ended);
        for job in jobs {
            if job.state != JobState::Succeeded && !out.iter().any(|b| b.name == job.name) {
                out.push(job);
            }
        }
        if let Some(c) = collection {
            out.retain(|b| b.collections.iter().any(|s| c.matches(&s.db, &s.name)));
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
        self.ctx.catalog.summary(entry).await.map(Some)
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

    /// [`Engine::backup_meta`] of the complete backup `name` whose id is `id`
    /// (a listed one), kept after the first read when without `detail`: a
    /// complete backup's meta never changes, and a backup made again under
    /// the name has another id.
    pub async fn listed_backup_meta(
        &self,
        name: &str,
        id: &str,
        detail: bool,
    ) -> Result<Option<BackupInfo>> {
        if !detail
            && let Some(info) = self.metas.lock().expect("metas").get(name)
            && info.id == id
        {
            return Ok(Some(info.as_ref().clone()));
        }
        let info = self.backup_meta(name, detail).await?;
        if let Some(i) = &info
            && !detail
            && i.id == id
        {
            let mut metas = self.metas.lock().expect("metas");
            // Bounded: names of deleted backups are not pruned one by one.
            if metas.len() >= MAX_KEPT_METAS {
                metas.clear();
            }
            metas.insert(name.to_string(), std::sync::Arc::new(i.clone()));
        }
        Ok(info)
    }

    /// Starts a delete of backup `name` as a job and returns its snapshots.
    /// It removes what no other complete backup references (incremental
    /// ones); it is refused while any job writes or reads the backup (an
    /// incremental backup choosing to reuse its objects holds it as a reader).
    pub async fn delete_backup(
        &self,
        name: &BackupName,
        caller: &Caller,
    ) -> Result<watch::Receiver<DeleteSnapshot>> {
        self.start_delete(DeleteRequest::new(name.clone()).for_caller(caller))
            .await
    }

    /// Starts the delete `req` asks for (see [`Engine::delete_backup`]).
    pub async fn start_delete(
        &self,
        req: DeleteRequest,
    ) -> Result<watch::Receiver<DeleteSnapshot>> {
        let name = req.name().clone();
        let name = &name;
        if let Some(rx) = self.backups.registry().get(name)
            && !rx.borrow().state.is_terminal()
        {
            return Err(Error::FailedPrecondition(format!(
                "backup {:?} is still running",
                name.as_str()
            )));
        }
        let rx = self.deletes.start(&self.ctx, req).await?;
        // A deleted backup's finished job is forgotten with it.
        let (end, backups, name) = (rx.clone(), self.backups.clone(), name.to_string());
        tokio::spawn(async move {
            if until_terminal(end).await.state == JobState::Succeeded {
                backups.registry().forget_finished(&name);
            }
        });
        Ok(rx)
    }

    /// Deletes backup `name` and waits for the delete to end: its last
    /// snapshot, whether it succeeded or failed (see
    /// [`JobSnapshot::succeeded`]). An error only when it could not start.
    pub async fn delete_backup_until_ended(
        &self,
        name: &BackupName,
        caller: &Caller,
    ) -> Result<DeleteSnapshot> {
        let last = until_terminal(self.delete_backup(name, caller).await?).await;
        if last.state == JobState::Succeeded {
            self.backups.registry().forget_finished(name);
        }
        Ok(last)
    }

    /// The snapshots of delete job `id`, also after it ended.
    pub async fn watch_delete(&self, id: &str) -> Result<watch::Receiver<DeleteSnapshot>> {
        self.deletes
            .find(id)
            .await?
            .ok_or_else(|| Error::not_found("delete job", id))
    }
}
