//! The backup layout and the JSON meta model, and the catalog that reads and
//! writes backups' meta in a store.

pub mod index;
pub mod layout;
pub mod leftover;
pub mod manifest;
pub mod model;
pub mod packs;
pub mod scan;
pub mod schema;
pub mod summary;
pub mod verify;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::jobs::Fence;
use crate::storage::{CondPut, ObjectStore};
pub use layout::{BackupLayout, LogKind, META_FILES, MilvusLayout};
use manifest::{MANIFEST_FILE, Manifest, ManifestEntry};
use model::{BackupInfo, CollectionBackupInfo, LevelInfos, PartitionBackupInfo, SegmentBackupInfo};

/// Objects a delete removes per request (and per progress step).
const DELETE_BATCH: usize = 1000;

/// What a delete of one backup removes beside its folder, and keeps in it.
#[derive(Debug, Clone, Default)]
pub struct DeletePlan {
    /// Objects of its folder that other complete backups reference, by key
    /// relative to the folder.
    pub keep: HashSet<String>,
    /// Objects it reused from backups deleted since, that nothing else
    /// references any more (store keys).
    pub orphans: Vec<String>,
}

/// The backups kept in one store under one root.
#[derive(Debug, Clone)]
pub struct Catalog {
    store: Arc<dyn ObjectStore>,
    layout: BackupLayout,
    /// Summaries read from the catalog index, by entry key (see `scan`).
    summaries: Arc<Mutex<HashMap<String, crate::jobs::BackupSnapshot>>>,
    /// The packs of summaries known (see `packs`).
    packs: Arc<Mutex<packs::PackState>>,
}

impl Catalog {
    /// The catalog of `store` under `layout`'s root.
    pub fn new(store: Arc<dyn ObjectStore>, layout: BackupLayout) -> Self {
        Self {
            store,
            layout,
            summaries: Arc::default(),
            packs: Arc::default(),
        }
    }

    /// The store backups live in.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The layout of the backup tree.
    pub fn layout(&self) -> &BackupLayout {
        &self.layout
    }

    /// Whether anything at all is stored under the backup's name.
    pub async fn is_taken(&self, name: &str) -> Result<bool> {
        let prefix = self.layout.backup_prefix(name);
        let (dirs, objects) =
            tokio::try_join!(self.store.list_dirs(&prefix), self.store.list(&prefix))?;
        Ok(!dirs.is_empty() || !objects.is_empty())
    }

    /// Whether backup `name` is complete: its commit point is written (or it
    /// is an older Go-tool backup with its `backup_meta.json`).
    pub async fn is_complete(&self, name: &str) -> Result<bool> {
        let key = |file: &str| self.layout.meta_key(name, file);
        if self.store.head(&key("full_meta.json")).await?.is_some() {
            return Ok(true);
        }
        Ok(self.store.head(&key(MANIFEST_FILE)).await?.is_none()
            && self.store.head(&key("backup_meta.json")).await?.is_some())
    }

    /// Names of every folder under the root, complete backups or not.
    pub async fn names(&self) -> Result<Vec<String>> {
        let dirs = self.store.list_dirs(&self.layout.root_prefix()).await?;
        let mut names: Vec<String> = dirs
            .iter()
            .filter_map(|d| self.layout.name_of(d))
            .filter(|n| !crate::model::RESERVED_BACKUP_NAMES.contains(&n.as_str()))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Reads a complete backup: `full_meta.json`, or else `backup_meta.json` and
    /// the level files as older Go-tool backups have them. `None` when the
    /// backup is not complete: no meta, or one of ours (it has checksums)
    /// whose commit point `full_meta.json` was never written.
    pub async fn read(&self, name: &str) -> Result<Option<BackupInfo>> {
        if let Some(full) = self.read_json::<BackupInfo>(name, "full_meta.json").await? {
            return Ok(Some(full));
        }
        if self
            .store
            .head(&self.layout.meta_key(name, MANIFEST_FILE))
            .await?
            .is_some()
        {
            return Ok(None);
        }
        let Some(mut info) = self
            .read_json::<BackupInfo>(name, "backup_meta.json")
            .await?
        else {
            return Ok(None);
        };
        let collections = self
            .read_json::<LevelInfos<CollectionBackupInfo>>(name, "collection_meta.json")
            .await?
            .unwrap_or_default()
            .infos;
        let partitions = self
            .read_json::<LevelInfos<PartitionBackupInfo>>(name, "partition_meta.json")
            .await?
            .unwrap_or_default()
            .infos;
        let segments = self
            .read_json::<LevelInfos<SegmentBackupInfo>>(name, "segment_meta.json")
            .await?
            .unwrap_or_default()
            .infos;
        info.collection_backups = levels_to_tree(collections, partitions, segments);
        Ok(Some(info))
    }

    /// Where an object of backup `name`'s manifest is stored: in its own
    /// folder, or in the folder of the backup it reuses it from.
    pub fn object_key(&self, name: &str, entry: &ManifestEntry) -> String {
        format!(
            "{}{}",
            self.layout.backup_prefix(entry.home_of(name)),
            entry.key
        )
    }

    /// The sizes of the objects stored under `rel_dirs` (relative to a backup
    /// folder) in the folders of backup `name` and of every backup its
    /// manifest reuses from, by store key.
    pub async fn stored_sizes(
        &self,
        name: &str,
        manifest: &Manifest,
        rel_dirs: &[String],
    ) -> Result<HashMap<String, u64>> {
        let mut homes: Vec<&str> = manifest.objects.iter().map(|e| e.home_of(name)).collect();
        homes.push(name);
        homes.sort();
        homes.dedup();
        let mut out = HashMap::new();
        for home in homes {
            let prefix = self.layout.backup_prefix(home);
            for dir in rel_dirs {
                for o in self.store.list(&format!("{prefix}{dir}")).await? {
                    out.insert(o.key, o.size);
                }
            }
        }
        Ok(out)
    }

    /// The objects among `wanted` (by store key) that the complete backups
    /// other than `except` reference, with the backups that reference each.
    /// Every other backup is read, whatever the index says: a delete relies
    /// on it. Only what `wanted` keeps is held, so memory follows the
    /// caller's own backup, not all of them.
    pub async fn references(
        &self,
        except: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<HashMap<String, Vec<String>>> {
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        self.for_other_manifests(None, except, scan::Among::Every, |other, manifest| {
            // A Go-tool backup (no checksums) references only its own folder.
            if let Some(m) = manifest? {
                for e in &m.objects {
                    let key = self.object_key(&other, e);
                    if wanted(&key) {
                        out.entry(key).or_default().push(other.clone());
                    }
                }
            }
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// What deleting backup `name` may remove: the objects of its folder that
    /// no other complete backup references (`keep` holds the others, relative
    /// to its folder), and the objects it reused from backups deleted since
    /// that no other complete backup references any more.
    pub async fn delete_plan(&self, name: &str) -> Result<DeletePlan> {
        let prefix = self.layout.backup_prefix(name);
        let own = self.read_manifest(name).await?;
        let reused: HashSet<String> = own
            .iter()
            .flat_map(|m| &m.objects)
            .filter(|e| !e.home.is_empty())
            .map(|e| self.object_key(name, e))
            .collect();
        let referenced = self
            .references(name, |k| k.starts_with(&prefix) || reused.contains(k))
            .await?;
        let keep: HashSet<String> = referenced
            .keys()
            .filter_map(|k| k.strip_prefix(prefix.as_str()))
            .map(str::to_string)
            .collect();
        let mut orphans = Vec::new();
        if let Some(m) = own {
            let mut dead_homes: HashMap<String, bool> = HashMap::new();
            for e in m.objects.iter().filter(|e| !e.home.is_empty()) {
                let dead = match dead_homes.get(&e.home) {
                    Some(d) => *d,
                    None => {
                        let d = !self.is_complete(&e.home).await?;
                        dead_homes.insert(e.home.clone(), d);
                        d
                    }
                };
                let key = self.object_key(name, e);
                if dead && !referenced.contains_key(&key) {
                    orphans.push(key);
                }
            }
        }
        Ok(DeletePlan { keep, orphans })
    }

    /// The checksums of backup `name`, if it has them.
    pub async fn read_manifest(&self, name: &str) -> Result<Option<Manifest>> {
        self.read_json(name, MANIFEST_FILE).await
    }

    /// Writes the meta of a finished backup. The checksums and the level files
    /// go first, at once; then `backup_meta.json`; then `full_meta.json`, the
    /// commit point. A crash between them leaves a backup that [`Catalog::read`]
    /// does not take for complete.
    pub async fn write(
        &self,
        info: &BackupInfo,
        manifest: &Manifest,
        fences: &[Fence],
        margin: std::time::Duration,
    ) -> Result<()> {
        let manifest = serde_json::to_vec(manifest)?;
        let collections = info.collection_backups.clone();
        let partitions: Vec<PartitionBackupInfo> = collections
            .iter()
            .flat_map(|c| c.partition_backups.iter())
            .map(|p| PartitionBackupInfo {
                segment_backups: Vec::new(),
                ..p.clone()
            })
            .collect();
        let segments: Vec<SegmentBackupInfo> = collections
            .iter()
            .flat_map(|c| c.partition_backups.iter())
            .flat_map(|p| p.segment_backups.iter().cloned())
            .collect();
        let top = BackupInfo {
            collection_backups: Vec::new(),
            ..info.clone()
        };
        let files: [(&str, Vec<u8>); 5] = [
            (
                "segment_meta.json",
                serde_json::to_vec(&LevelInfos { infos: segments })?,
            ),
            (
                "partition_meta.json",
                serde_json::to_vec(&LevelInfos { infos: partitions })?,
            ),
            (
                "collection_meta.json",
                serde_json::to_vec(&LevelInfos { infos: collections })?,
            ),
            ("backup_meta.json", serde_json::to_vec(&top)?),
            ("full_meta.json", serde_json::to_vec(info)?),
        ];
        debug_assert!(files.iter().map(|f| f.0).eq(META_FILES));
        let [segment, partition, collection, backup, full] = files;
        let completed =
            || Error::Aborted(format!("backup {} was completed by another job", info.name));
        // Another process that resumed the backup (this one paused past its
        // lease) may have committed it: its meta files are never overwritten.
        if self.is_complete(&info.name).await? {
            return Err(completed());
        }
        // Before each write, the writer's leases still hold (with `margin` to
        // spare): a process paused past them, whose folder another may be
        // deleting or resuming, writes nothing more.
        let held = || Fence::hold_all(fences, margin);
        held().await?;
        let write = |(file, body): (&str, Vec<u8>)| {
            let key = self.layout.meta_key(&info.name, file);
            async move { self.store.write(&key, Bytes::from(body)).await }
        };
        futures::future::try_join_all([
            write((MANIFEST_FILE, manifest)),
            write(segment),
            write(partition),
            write(collection),
        ])
        .await?;
        crate::failpoint::pause_at("backup.meta.before_backup_meta").await;
        held().await?;
        write(backup).await?;
        crate::failpoint::pause_at("backup.meta.before_full_meta").await;
        held().await?;
        // The commit point is written once: a job whose lease expired while
        // another resumed the backup cannot commit over the other's.
        let (file, body) = full;
        let key = self.layout.meta_key(&info.name, file);
        let body = Bytes::from(body);
        // A retried write whose first answer was lost finds its own commit
        // point: the very bytes this job wrote.
        let written = self.store.put_if_absent(&key, body.clone()).await?;
        match written.confirmed(self.store.as_ref(), &key, &body).await {
            Ok(CondPut::Written(_)) => Ok(()),
            _ => Err(completed()),
        }
    }

    /// The first step of a delete of backup `name`: out of the index, then,
    /// for a backup with checksums, its commit point removed. From then on no
    /// new incremental backup takes it as a base, and each delete computing
    /// its references ([`Catalog::delete_plan`]) no longer counts it: of two
    /// backups deleted at once, the later to compute sees both gone.
    pub async fn retire(&self, name: &str) -> Result<()> {
        self.withdraw(name).await?;
        let meta_key = |f: &str| self.layout.meta_key(name, f);
        if self.store.head(&meta_key(MANIFEST_FILE)).await?.is_some() {
            self.store.delete(&[meta_key("full_meta.json")]).await?;
        }
        crate::failpoint::pause_at("delete.after_commit_point").await;
        Ok(())
    }

    /// Deletes the objects of the folder of an incomplete backup `name` (a
    /// job's partial backup) that no other complete backup references;
    /// returns how many went. A folder that was once complete may hold
    /// objects that backups made since reuse: those stay. Stops with
    /// [`Error::Aborted`] once one of `fences` has expired.
    pub async fn delete(&self, name: &str, fences: &[Fence]) -> Result<u64> {
        let plan = self.delete_plan(name).await?;
        self.delete_as_planned(name, &plan, fences, |_, _| {}).await
    }

    /// Deletes the objects of backup `name` as `plan` says (see
    /// [`Catalog::delete_plan`]); returns how many went. `progress` sees
    /// how many are gone of how many will go. For a backup of ours that was
    /// complete, after [`Catalog::retire`]: its index entry and commit point
    /// are gone already.
    pub async fn delete_as_planned(
        &self,
        name: &str,
        plan: &DeletePlan,
        fences: &[Fence],
        progress: impl Fn(u64, u64),
    ) -> Result<u64> {
        // Checked before every request that removes: a process paused past
        // its lease stops before it removes what the next holder relies on.
        let held = || Fence::check_all(fences, std::time::Duration::ZERO);
        let keep = &plan.keep;
        let prefix = self.layout.backup_prefix(name);
        let keys: Vec<String> = self
            .store
            .list(&prefix)
            .await?
            .into_iter()
            .map(|o| o.key)
            .filter(|k| !keep.contains(&k[prefix.len()..]))
            .collect();
        // The meta first (a Go-tool backup's commit point is its
        // `backup_meta.json`) and what marks the folder as ours last (the
        // checksums, the plan of a backup cut short, the delete's own marker):
        // at every moment in between, `read` takes what is left for an
        // incomplete backup of ours, never for a complete one (of ours, or of
        // the Go tool's shape), and a delete cut short can be run again.
        let meta_key = |f: &str| self.layout.meta_key(name, f);
        let (full, backup_meta) = (meta_key("full_meta.json"), meta_key("backup_meta.json"));
        let mut marks: Vec<String> = self
            .mark_keys(name)
            .into_iter()
            .filter(|k| keys.contains(k))
            .collect();
        let first: Vec<String> = [&full, &backup_meta]
            .into_iter()
            .filter(|k| keys.contains(k))
            .cloned()
            .collect();
        let rest: Vec<String> = keys
            .iter()
            .filter(|k| !first.contains(k) && !marks.contains(k))
            .cloned()
            .collect();
        let total = (keys.len() + plan.orphans.len()) as u64;
        progress(0, total);
        if marks.is_empty() && !(first.is_empty() && rest.is_empty() && plan.orphans.is_empty()) {
            // A Go-tool backup: nothing of ours marks it once its meta goes.
            held()?;
            marks.push(self.mark_deleting(name).await?);
        }
        held()?;
        self.store.delete(&first).await?;
        crate::failpoint::pause_at("delete.meta_removed").await;
        let mut done = first.len() as u64;
        for batch in rest
            .chunks(DELETE_BATCH)
            .chain(plan.orphans.chunks(DELETE_BATCH))
        {
            held()?;
            self.store.delete(batch).await?;
            done += batch.len() as u64;
            progress(done, total);
        }
        held()?;
        self.store.delete(&marks).await?;
        // An entry a writer published late (paused past its lease) goes too.
        self.withdraw(name).await?;
        progress(total, total);
        Ok(total)
    }

    async fn read_json<T: DeserializeOwned>(&self, name: &str, file: &str) -> Result<Option<T>> {
        let key = self.layout.meta_key(name, file);
        // A read cut off mid-body is read again.
        let read = crate::retry::retry(
            crate::retry::Backoff::COPY,
            crate::retry::storage_transient,
            || self.store.read(&key),
        );
        let bytes = match read.await {
            Ok(b) => b,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::DataLoss(format!("backup {name:?}: {key} is not valid meta: {e}")))
    }
}

/// Rebuilds the tree from the level files, filling only what the collection
/// file does not already nest.
fn levels_to_tree(
    mut collections: Vec<CollectionBackupInfo>,
    partitions: Vec<PartitionBackupInfo>,
    segments: Vec<SegmentBackupInfo>,
) -> Vec<CollectionBackupInfo> {
    let mut segs_by_part: HashMap<(i64, i64), Vec<SegmentBackupInfo>> = HashMap::new();
    for s in segments {
        segs_by_part
            .entry((s.collection_id, s.partition_id))
            .or_default()
            .push(s);
    }
    let mut parts_by_coll: HashMap<i64, Vec<PartitionBackupInfo>> = HashMap::new();
    for p in partitions {
        parts_by_coll.entry(p.collection_id).or_default().push(p);
    }
    for c in &mut collections {
        if c.partition_backups.is_empty() {
            c.partition_backups = parts_by_coll.remove(&c.collection_id).unwrap_or_default();
        }
        for p in &mut c.partition_backups {
            if p.segment_backups.is_empty() {
                p.segment_backups = segs_by_part
                    .remove(&(c.collection_id, p.partition_id))
                    .unwrap_or_default();
            }
        }
    }
    collections
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalDir;

    /// A writer whose lease will not hold for the margin it asks (a process
    /// paused past its lease, whose folder another may be deleting) writes
    /// no meta file at all.
    #[tokio::test]
    async fn a_writer_without_its_lease_writes_no_meta() {
        let root = std::env::temp_dir().join(format!("mb-meta-{}", uuid::Uuid::new_v4().simple()));
        let store: Arc<dyn ObjectStore> = Arc::new(LocalDir::new(&root));
        let catalog = Catalog::new(store.clone(), BackupLayout::new("backup"));
        let leases = crate::jobs::Leases::new(store, "backup", std::time::Duration::from_secs(1));
        let lease = leases
            .acquire("backup/b2", "job-2", "create")
            .await
            .unwrap();
        let info = BackupInfo {
            id: "job-2".into(),
            name: "b2".into(),
            ..Default::default()
        };
        let manifest = Manifest {
            version: 1,
            objects: Vec::new(),
        };
        let err = catalog
            .write(
                &info,
                &manifest,
                &[lease.fence()],
                std::time::Duration::from_secs(5),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Aborted(_)), "{err}");
        let written = catalog
            .store
            .list(&catalog.layout.backup_prefix("b2"))
            .await
            .unwrap();
        assert!(written.is_empty(), "{written:?}");
        lease.release().await;
        let _ = std::fs::remove_dir_all(root);
    }

    /// A second writer of one backup (a process paused past its lease while
    /// another resumed and completed it) is refused before it writes any
    /// meta file: the completed backup's files stay as they were.
    #[tokio::test]
    async fn a_completed_backup_is_never_written_over() {
        let root = std::env::temp_dir().join(format!("mb-meta-{}", uuid::Uuid::new_v4().simple()));
        let catalog = Catalog::new(Arc::new(LocalDir::new(&root)), BackupLayout::new("backup"));
        let manifest = || Manifest {
            version: 1,
            objects: Vec::new(),
        };
        let first = BackupInfo {
            id: "job-1".into(),
            name: "b1".into(),
            backup_timestamp: 1,
            ..Default::default()
        };
        catalog
            .write(&first, &manifest(), &[], std::time::Duration::ZERO)
            .await
            .unwrap();
        let backup_meta = catalog.layout.meta_key("b1", "backup_meta.json");
        let before = catalog.store.read(&backup_meta).await.unwrap();

        let second = BackupInfo {
            backup_timestamp: 2,
            ..first.clone()
        };
        let err = catalog
            .write(&second, &manifest(), &[], std::time::Duration::ZERO)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Aborted(m) if m.contains("completed by another job")),
            "{err}"
        );
        assert_eq!(catalog.read("b1").await.unwrap(), Some(first));
        assert_eq!(catalog.store.read(&backup_meta).await.unwrap(), before);
        std::fs::remove_dir_all(root).unwrap();
    }
}
