//! A segment still Flushing when a backup lists its collection's segments,
//! against the real Milvus 2.3.5 and S3. Milvus 2.3.5 shows that state only
//! for milliseconds (after GetFlushState already counts the segment flushed,
//! and while a compaction's result waits for its data node), so no test can
//! make it answer so on demand: here every call goes to the real Milvus,
//! and only the first GetPersistentSegmentInfo answer of the backup is
//! changed, its segments said Flushing (state 5) as Milvus says them in
//! that window. The binlogs, the backup, the restore and the rows are real.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use async_trait::async_trait;
use common::data::{self, Spec};
use milvus_backup::context::Context;
use milvus_backup::engine::Engine;
use milvus_backup::error::Result;
use milvus_backup::jobs::{JobState, until_terminal};
use milvus_backup::milvus::*;
use milvus_backup::model::{BackupInput, BackupRequest, RestoreInput, RestoreRequest};

/// The real Milvus, but for the first GetPersistentSegmentInfo answer on
/// `collection` after its flush point passed (the backup's look at what to
/// back up; an early look, before, is answered as Milvus answers it), whose
/// segments it says Flushing.
struct FlushingOnce {
    inner: Arc<dyn MilvusApi>,
    collection: String,
    /// GetFlushState said the flush point passed.
    flushed: AtomicBool,
    said: AtomicBool,
    /// GetPersistentSegmentInfo calls on the collection after the flush.
    lists: AtomicU32,
}

#[async_trait]
impl MilvusApi for FlushingOnce {
    fn address(&self) -> &str {
        self.inner.address()
    }
    async fn version(&self) -> Result<MilvusVersion> {
        self.inner.version().await
    }
    async fn list_databases(&self) -> Result<Vec<String>> {
        self.inner.list_databases().await
    }
    async fn create_database(&self, db: &str) -> Result<()> {
        self.inner.create_database(db).await
    }
    async fn drop_database(&self, db: &str) -> Result<()> {
        self.inner.drop_database(db).await
    }
    async fn list_collections(&self, db: &str) -> Result<Vec<String>> {
        self.inner.list_collections(db).await
    }
    async fn has_collection(&self, db: &str, name: &str) -> Result<bool> {
        self.inner.has_collection(db, name).await
    }
    async fn describe_collection(&self, db: &str, name: &str) -> Result<CollectionInfo> {
        self.inner.describe_collection(db, name).await
    }
    async fn create_collection(&self, new: &NewCollection) -> Result<()> {
        self.inner.create_collection(new).await
    }
    async fn drop_collection(&self, db: &str, name: &str) -> Result<()> {
        self.inner.drop_collection(db, name).await
    }
    async fn rename_collection(&self, db: &str, from: &str, to: &str) -> Result<()> {
        self.inner.rename_collection(db, from, to).await
    }
    async fn list_partitions(&self, db: &str, collection: &str) -> Result<Vec<PartitionInfo>> {
        self.inner.list_partitions(db, collection).await
    }
    async fn create_partition(&self, db: &str, collection: &str, partition: &str) -> Result<()> {
        self.inner.create_partition(db, collection, partition).await
    }
    async fn describe_indexes(&self, db: &str, collection: &str) -> Result<Vec<IndexInfo>> {
        self.inner.describe_indexes(db, collection).await
    }
    async fn loading_progress(&self, db: &str, collection: &str) -> Result<i64> {
        self.inner.loading_progress(db, collection).await
    }
    async fn flush(&self, db: &str, collection: &str) -> Result<FlushResult> {
        self.inner.flush(db, collection).await
    }
    async fn is_flushed(&self, db: &str, collection: &str, flush: &FlushResult) -> Result<bool> {
        let flushed = self.inner.is_flushed(db, collection, flush).await?;
        if flushed && collection == self.collection {
            self.flushed.store(true, Ordering::SeqCst);
        }
        Ok(flushed)
    }
    async fn persistent_segments(&self, db: &str, collection: &str) -> Result<Vec<SegmentInfo>> {
        let mut segments = self.inner.persistent_segments(db, collection).await?;
        if collection == self.collection && self.flushed.load(Ordering::SeqCst) {
            self.lists.fetch_add(1, Ordering::SeqCst);
            if !self.said.swap(true, Ordering::SeqCst) {
                for s in &mut segments {
                    s.state = SEGMENT_STATE_FLUSHING;
                }
            }
        }
        Ok(segments)
    }
    async fn create_index(&self, db: &str, collection: &str, index: &IndexInfo) -> Result<()> {
        self.inner.create_index(db, collection, index).await
    }
    async fn load_shape(&self, db: &str, collection: &str) -> Result<LoadShape> {
        self.inner.load_shape(db, collection).await
    }
    async fn load_collection(&self, db: &str, collection: &str, shape: &LoadShape) -> Result<()> {
        self.inner.load_collection(db, collection, shape).await
    }
    async fn release_collection(&self, db: &str, collection: &str) -> Result<()> {
        self.inner.release_collection(db, collection).await
    }
    async fn import(&self, req: &ImportRequest) -> Result<Vec<i64>> {
        self.inner.import(req).await
    }
    async fn import_state(&self, task: i64) -> Result<ImportStatus> {
        self.inner.import_state(task).await
    }
    async fn collection_imports(&self, db: &str, collection: &str) -> Result<Vec<ImportStatus>> {
        self.inner.collection_imports(db, collection).await
    }
    async fn all_imports(&self) -> Result<Vec<ImportStatus>> {
        self.inner.all_imports().await
    }
}

/// A full backup whose first look at the collection's segments finds them
/// all Flushing waits until Milvus says them Flushed, and holds every row:
/// its restore is equal, row for row. On the code before, the Flushing
/// segments were left out without a word: the backup COMPLETED with none
/// of the rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn segments_still_flushing_are_waited_for_never_left_out() {
    let mut cfg = common::config();
    cfg.minio.backup_root_path = common::unique("flushing_root");
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("flushing_src"));
    let rows = data::populated(&m, &spec, 300, 100, 31).await;
    let mut ctx = Context::from_config(&cfg).unwrap();
    let wrapped = Arc::new(FlushingOnce {
        inner: ctx.milvus.clone(),
        collection: spec.name.clone(),
        flushed: AtomicBool::new(false),
        said: AtomicBool::new(false),
        lists: AtomicU32::new(0),
    });
    ctx.milvus = wrapped.clone();
    let engine = Engine::new(ctx.clone());
    let name = common::unique("flushing_b");
    let req = BackupRequest::parse(BackupInput {
        name: name.clone(),
        collections: vec![spec.name.clone()],
        incremental: Some(false),
        ..Default::default()
    })
    .unwrap();
    let done = until_terminal(engine.create_backup(req).await.unwrap()).await;
    assert_eq!(done.state, JobState::Succeeded, "{:?}", done.error);
    assert!(
        wrapped.said.load(Ordering::SeqCst),
        "the Flushing answer was given"
    );
    let info = ctx.catalog.read(&name).await.unwrap().unwrap();
    let backed_up: i64 = info.collection_backups[0]
        .partition_backups
        .iter()
        .flat_map(|p| &p.segment_backups)
        .map(|s| s.num_of_rows)
        .sum();
    // The rows inserted (a row deleted in each partition may be counted
    // still, its delete in a delta log).
    assert!(
        backed_up >= rows.len() as i64,
        "{backed_up} rows backed up of {}",
        rows.len()
    );
    assert!(
        wrapped.lists.load(Ordering::SeqCst) >= 2,
        "the segments were listed again"
    );

    let restore = RestoreRequest::parse(RestoreInput {
        backup_name: name.clone(),
        suffix: "_r".into(),
        ..Default::default()
    })
    .unwrap();
    let done = until_terminal(engine.restore(restore).await.unwrap()).await;
    assert_eq!(done.state, JobState::Succeeded, "{:?}", done.error);
    let target = format!("{}_r", spec.name);
    let restored = common::restores::rows_of(&m, &spec, &target).await;
    data::assert_rows_equal("restored", &rows, &restored);
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    data::drop_if_exists(&m, &spec.db, &target).await;
}
