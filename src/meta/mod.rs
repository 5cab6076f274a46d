//! The backup layout and the JSON meta model, and the catalog that reads and
//! writes backups' meta in a store.

mod delete;
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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::jobs::Fence;
use crate::storage::{CondPut, ObjectStore};
pub use delete::DeletePlan;
pub use layout::{BackupLayout, LogKind, META_FILES, MilvusLayout};
use manifest::{MANIFEST_FILE, Manifest, ManifestEntry};
use model::{BackupInfo, CollectionBackupInfo, LevelInfos, PartitionBackupInfo, SegmentBackupInfo};

/// The backups kept in one store under one root.
#[derive(Debug, Clone)]
pub struct Catalog {
    store: Arc<dyn ObjectStore>,
    layout: BackupLayout,
    /// Summaries read from the catalog index, by entry key (see `scan`).
    summaries: Arc<Mutex<HashMap<String, crate::jobs::BackupSnapshot>>>,
    /// The packs of summaries known (see `packs`).
    packs: Arc<Mutex<packs::PackState>>,
    /// The bandwidth cap that whole-object reads share with the copies.
    read_limit: Option<Arc<crate::storage::RateLimit>>,
    /// The bytes of manifests a scan of the other backups holds at once.
    manifest_budget: u64,
}

impl Catalog {
    /// The catalog of `store` under `layout`'s root.
    pub fn new(store: Arc<dyn ObjectStore>, layout: BackupLayout) -> Self {
        Self {
            store,
            layout,
            summaries: Arc::default(),
            packs: Arc::default(),
            read_limit: None,
            manifest_budget: scan::MANIFEST_BYTES_AT_ONCE,
        }
    }

    /// This catalog, holding at most `bytes` of manifests at once when it
    /// reads the other backups' (default [`scan::MANIFEST_BYTES_AT_ONCE`]).
    pub fn with_manifest_budget(mut self, bytes: u64) -> Self {
        self.manifest_budget = bytes;
        self
    }

    /// This catalog, its whole-object reads ([`Catalog::read_stream`])
    /// paced by `limit` (`backup.rateLimitMiBps`, shared with the copies).
    pub fn with_read_limit(mut self, limit: Option<Arc<crate::storage::RateLimit>>) -> Self {
        self.read_limit = limit;
        self
    }

    /// Streams object `key` of the backup store, paced by the read limit:
    /// verify and a restore's proof read every byte of a backup.
    pub async fn read_stream(&self, key: &str) -> Result<(u64, crate::storage::ByteStream)> {
        let (size, body) = self.store.get_stream(key).await?;
        Ok((size, crate::storage::paced(body, self.read_limit.clone())))
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
        info.collection_backups = levels_to_tree(collections, partitions, segments)
            .map_err(|orphan| Error::DataLoss(format!("backup {name:?}: {orphan}")))?;
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
        // point: the very bytes this job wrote. (A write whose every answer
        // was lost is read back by the store itself.)
        let written = self.store.put_if_absent(&key, body.clone()).await?;
        // A read that fails says nothing about whose commit point it is.
        match written.confirmed(self.store.as_ref(), &key, &body).await? {
            CondPut::Written(_) => Ok(()),
            CondPut::Conflict => Err(completed()),
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

/// Rebuilds the tree from the level files: each partition and segment they
/// hold is put under its collection and partition, unless the collection
/// file nests it already (by id). One whose collection or partition is in
/// none of the files is an error naming it: left out, its rows would
/// silently not be restored.
fn levels_to_tree(
    mut collections: Vec<CollectionBackupInfo>,
    partitions: Vec<PartitionBackupInfo>,
    segments: Vec<SegmentBackupInfo>,
) -> std::result::Result<Vec<CollectionBackupInfo>, String> {
    for p in partitions {
        let Some(c) = collections
            .iter_mut()
            .find(|c| c.collection_id == p.collection_id)
        else {
            return Err(format!(
                "partition_meta.json has partition {} ({:?}) of collection {}, which is not in \
                 collection_meta.json",
                p.partition_id, p.partition_name, p.collection_id
            ));
        };
        if !c
            .partition_backups
            .iter()
            .any(|n| n.partition_id == p.partition_id)
        {
            c.partition_backups.push(p);
        }
    }
    for s in segments {
        let Some(c) = collections
            .iter_mut()
            .find(|c| c.collection_id == s.collection_id)
        else {
            return Err(orphan_segment(&s, "collection_meta.json"));
        };
        // A collection-level L0 segment is nested in its collection.
        if c.l0_segments.iter().any(|l| l.segment_id == s.segment_id) {
            continue;
        }
        let Some(p) = c
            .partition_backups
            .iter_mut()
            .find(|p| p.partition_id == s.partition_id)
        else {
            return Err(orphan_segment(&s, "the backup's partitions"));
        };
        if !p
            .segment_backups
            .iter()
            .any(|n| n.segment_id == s.segment_id)
        {
            p.segment_backups.push(s);
        }
    }
    Ok(collections)
}

fn orphan_segment(s: &SegmentBackupInfo, missing_from: &str) -> String {
    format!(
        "segment_meta.json has segment {} of partition {} of collection {}, which is not in \
         {missing_from}",
        s.segment_id, s.partition_id, s.collection_id
    )
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

    /// A level file's partition or segment whose collection or partition is
    /// in no file is named; one the collection file nests already is not an
    /// orphan, nor is a collection-level L0 segment; what a collection file
    /// nests only in part is completed from the level files.
    #[test]
    fn levels_with_an_orphan_partition_or_segment_are_refused() {
        let coll = |id| CollectionBackupInfo {
            collection_id: id,
            ..Default::default()
        };
        let part = |c, p| PartitionBackupInfo {
            collection_id: c,
            partition_id: p,
            partition_name: format!("p{p}"),
            ..Default::default()
        };
        let seg = |c, p, s| SegmentBackupInfo {
            collection_id: c,
            partition_id: p,
            segment_id: s,
            ..Default::default()
        };
        let tree = levels_to_tree(vec![coll(1)], vec![part(1, 10)], vec![seg(1, 10, 100)]).unwrap();
        assert_eq!(tree[0].partition_backups[0].segment_backups.len(), 1);

        let err =
            levels_to_tree(vec![coll(1)], vec![part(1, 10), part(2, 20)], vec![]).unwrap_err();
        assert!(
            err.contains("partition 20 (\"p20\") of collection 2"),
            "{err}"
        );
        let err =
            levels_to_tree(vec![coll(1)], vec![part(1, 10)], vec![seg(1, 11, 101)]).unwrap_err();
        assert!(
            err.contains("segment 101 of partition 11 of collection 1"),
            "{err}"
        );
        let err = levels_to_tree(vec![coll(1)], vec![], vec![seg(2, 20, 102)]).unwrap_err();
        assert!(
            err.contains("segment 102 of partition 20 of collection 2"),
            "{err}"
        );

        // A collection file that nests only some: the others are added.
        let mut some = coll(1);
        some.partition_backups = vec![part(1, 10)];
        some.partition_backups[0].segment_backups = vec![seg(1, 10, 100)];
        let levels = vec![seg(1, 10, 100), seg(1, 10, 103), seg(1, 11, 104)];
        let tree = levels_to_tree(vec![some], vec![part(1, 10), part(1, 11)], levels).unwrap();
        let ids = |p: &PartitionBackupInfo| -> Vec<i64> {
            p.segment_backups.iter().map(|s| s.segment_id).collect()
        };
        let parts = &tree[0].partition_backups;
        assert_eq!(
            parts.iter().map(|p| p.partition_id).collect::<Vec<_>>(),
            [10, 11]
        );
        assert_eq!(
            (ids(&parts[0]), ids(&parts[1])),
            (vec![100, 103], vec![104])
        );

        // Nested already: the level files' copies are left over, not orphans.
        let mut nested = coll(1);
        nested.partition_backups = vec![part(1, 10)];
        nested.partition_backups[0].segment_backups = vec![seg(1, 10, 100)];
        nested.l0_segments = vec![seg(1, -1, 200)];
        let levels = vec![seg(1, 10, 100), seg(1, -1, 200)];
        let tree = levels_to_tree(vec![nested.clone()], vec![part(1, 10)], levels).unwrap();
        assert_eq!(tree, vec![nested]);
    }
}
