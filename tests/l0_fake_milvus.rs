//! Milvus 2.4+ paths (L0 delete segments, `l0_import`) on hand-built responses.
//! NOT run against a real 2.4+ server: none can be installed here (only the
//! PyPI `milvus==2.3.5` exists). A fake `MilvusApi` answers as a 2.4 server
//! would; both "buckets" are local directories. The same flows run against
//! the real 2.3.5 in the other tests.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use milvus_backup::context::{Context, Timing};
use milvus_backup::engine::Engine;
use milvus_backup::error::{Error, Result};
use milvus_backup::jobs::{JobState, until_terminal};
use milvus_backup::meta::{BackupLayout, Catalog, MilvusLayout};
use milvus_backup::milvus::proto::schema::{CollectionSchema, DataType, FieldSchema};
use milvus_backup::milvus::*;
use milvus_backup::model::{BackupInput, BackupRequest, RestoreInput, RestoreRequest};
use milvus_backup::storage::{Copier, LocalDir};
use prost::Message;

/// Partition, files and options of one import.
type ImportSummary = (String, Vec<String>, Vec<(String, String)>);

const FLUSH_TS: u64 = 1_700_000_000_000u64 << 18;

/// Answers as a Milvus of `version` with one collection `c` (id 1) whose
/// partition `_default` (id 10) has a data segment 100, a partition-level L0
/// segment 200 and a collection-level L0 segment 300 (partition -1).
struct FakeMilvus {
    version: &'static str,
    imports: Mutex<Vec<ImportRequest>>,
    created: Mutex<Vec<String>>,
}

#[async_trait]
impl MilvusApi for FakeMilvus {
    fn address(&self) -> &str {
        "fake-milvus"
    }
    async fn version(&self) -> Result<MilvusVersion> {
        Ok(MilvusVersion::parse(self.version))
    }
    async fn list_databases(&self) -> Result<Vec<String>> {
        Ok(vec!["default".into()])
    }
    async fn create_database(&self, _db: &str) -> Result<()> {
        Ok(())
    }
    async fn drop_database(&self, _db: &str) -> Result<()> {
        Ok(())
    }
    async fn list_collections(&self, _db: &str) -> Result<Vec<String>> {
        Ok(vec!["c".into()])
    }
    async fn has_collection(&self, _db: &str, name: &str) -> Result<bool> {
        Ok(name == "c" || self.created.lock().unwrap().iter().any(|c| c == name))
    }
    async fn describe_collection(&self, db: &str, name: &str) -> Result<CollectionInfo> {
        let schema = CollectionSchema {
            name: name.into(),
            fields: vec![
                FieldSchema {
                    field_id: 100,
                    name: "pk".into(),
                    is_primary_key: true,
                    data_type: DataType::Int64 as i32,
                    ..Default::default()
                },
                FieldSchema {
                    field_id: 101,
                    name: "v".into(),
                    data_type: DataType::FloatVector as i32,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        Ok(CollectionInfo {
            id: 1,
            db: db.into(),
            name: name.into(),
            schema: schema.encode_to_vec().into(),
            shards_num: 1,
            consistency_level: 0,
            properties: vec![],
            num_partitions: 1,
            created_timestamp: 0,
            aliases: vec![],
        })
    }
    async fn create_collection(&self, new: &NewCollection) -> Result<()> {
        self.created.lock().unwrap().push(new.name.clone());
        Ok(())
    }
    async fn drop_collection(&self, _db: &str, _name: &str) -> Result<()> {
        Ok(())
    }
    async fn rename_collection(&self, _db: &str, _from: &str, _to: &str) -> Result<()> {
        Ok(())
    }
    async fn list_partitions(&self, _db: &str, _c: &str) -> Result<Vec<PartitionInfo>> {
        Ok(vec![PartitionInfo {
            id: 10,
            name: "_default".into(),
        }])
    }
    async fn create_partition(&self, _db: &str, _c: &str, _p: &str) -> Result<()> {
        Ok(())
    }
    async fn describe_indexes(&self, _db: &str, _c: &str) -> Result<Vec<IndexInfo>> {
        Ok(vec![])
    }
    async fn loading_progress(&self, _db: &str, _c: &str) -> Result<i64> {
        Ok(0)
    }
    async fn flush(&self, _db: &str, _c: &str) -> Result<FlushResult> {
        Ok(FlushResult {
            segment_ids: vec![100],
            flush_ts: FLUSH_TS,
        })
    }
    async fn is_flushed(&self, _db: &str, _c: &str, _f: &FlushResult) -> Result<bool> {
        Ok(true)
    }
    async fn persistent_segments(&self, _db: &str, _c: &str) -> Result<Vec<SegmentInfo>> {
        let seg = |id, partition_id, level| SegmentInfo {
            id,
            collection_id: 1,
            partition_id,
            num_rows: 5,
            state: SEGMENT_STATE_FLUSHED,
            level,
        };
        Ok(vec![seg(100, 10, 2), seg(200, 10, 1), seg(300, -1, 1)])
    }
    async fn create_index(&self, _db: &str, _c: &str, _i: &IndexInfo) -> Result<()> {
        Ok(())
    }
    async fn load_shape(&self, _db: &str, _c: &str) -> Result<LoadShape> {
        Ok(LoadShape::default())
    }
    async fn load_collection(&self, _db: &str, _c: &str, _s: &LoadShape) -> Result<()> {
        Ok(())
    }
    async fn release_collection(&self, _db: &str, _c: &str) -> Result<()> {
        Ok(())
    }
    async fn import(&self, req: &ImportRequest) -> Result<Vec<i64>> {
        self.imports.lock().unwrap().push(req.clone());
        Ok(vec![1])
    }
    async fn collection_imports(&self, _db: &str, _c: &str) -> Result<Vec<ImportStatus>> {
        Ok(vec![])
    }
    async fn all_imports(&self) -> Result<Vec<ImportStatus>> {
        Ok(vec![])
    }
    async fn import_state(&self, _task: i64) -> Result<ImportStatus> {
        Ok(ImportStatus {
            phase: ImportPhase::Completed,
            row_count: 5,
            ..Default::default()
        })
    }
}

fn context(version: &'static str, root: &std::path::Path) -> (Context, Arc<FakeMilvus>) {
    let fake = Arc::new(FakeMilvus {
        version,
        imports: Mutex::default(),
        created: Mutex::default(),
    });
    let ctx = Context {
        milvus: fake.clone(),
        milvus_store: Arc::new(LocalDir::new(root.join("milvus-bucket"))),
        milvus_id: Arc::new(milvus_backup::milvus::identity::MilvusIdentity::new(
            Arc::new(LocalDir::new(root.join("milvus-bucket"))),
            "files",
        )),
        milvus_layout: MilvusLayout::new("files"),
        catalog: Catalog::new(
            Arc::new(LocalDir::new(root.join("backups"))),
            BackupLayout::new("backup"),
        ),
        copier: Copier::new(4),
        timing: Timing::default(),
        collections_at_once: 2,
        incremental_by_default: false,
        segment_group_bytes: 2 << 30,
    };
    (ctx, fake)
}

async fn seed_binlogs(ctx: &Context) {
    for key in [
        "files/insert_log/1/10/100/100/1",
        "files/insert_log/1/10/100/101/1",
        "files/delta_log/1/10/100/2",
        "files/delta_log/1/10/200/7",
        "files/delta_log/1/-1/300/8",
    ] {
        ctx.milvus_store
            .write(key, Bytes::from_static(b"binlog"))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn l0_segments_are_backed_up_and_imported_with_l0_import() {
    let root = std::env::temp_dir().join(format!("mb-l0-{}", uuid::Uuid::new_v4().simple()));
    let (ctx, fake) = context("v2.4.5", &root);
    seed_binlogs(&ctx).await;

    // Through the engine's door, as every adapter calls it.
    let engine = Engine::new(ctx.clone());
    let req = BackupRequest::parse(BackupInput {
        name: "b".into(),
        collections: vec!["c".into()],
        ..Default::default()
    })
    .unwrap();
    let done = until_terminal(engine.create_backup(req).await.unwrap()).await;
    assert_eq!(done.state, JobState::Succeeded, "{:?}", done.error);

    let info = ctx.catalog.read("b").await.unwrap().unwrap();
    let c = &info.collection_backups[0];
    assert_eq!(c.l0_segments.len(), 1, "collection-level L0 segment");
    assert_eq!(
        (
            c.l0_segments[0].segment_id,
            c.l0_segments[0].partition_id,
            c.l0_segments[0].group_id
        ),
        (300, -1, 0)
    );
    assert!(c.l0_segments[0].is_l0 && c.l0_segments[0].binlogs.is_empty());
    let segs = &c.partition_backups[0].segment_backups;
    assert_eq!(
        segs.iter()
            .map(|s| (s.segment_id, s.is_l0))
            .collect::<Vec<_>>(),
        [(100, false), (200, true)]
    );
    let keys: Vec<String> = ctx
        .catalog
        .store()
        .list("backup/b/binlogs/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        keys,
        [
            "backup/b/binlogs/delta_log/1/-1/300/8",
            "backup/b/binlogs/delta_log/1/10/100/100/2",
            "backup/b/binlogs/delta_log/1/10/200/200/7",
            "backup/b/binlogs/insert_log/1/10/100/100/100/1",
            "backup/b/binlogs/insert_log/1/10/100/100/101/1",
        ]
    );

    let restore_req = |suffix: &str| {
        RestoreRequest::parse(RestoreInput {
            backup_name: "b".into(),
            suffix: suffix.into(),
            ..Default::default()
        })
        .unwrap()
    };
    let done = until_terminal(engine.restore(restore_req("_r")).await.unwrap()).await;
    assert_eq!(done.state, JobState::Succeeded, "{:?}", done.error);
    let staging = format!("restore-temp-{}/", done.id);
    let imports = fake.imports.lock().unwrap().clone();
    let summary: Vec<ImportSummary> = imports
        .into_iter()
        .map(|i| (i.partition, i.files, i.options))
        .collect();
    let end_ts = ("end_ts".to_string(), "1700000000001".to_string());
    assert_eq!(
        summary,
        [
            (
                "_default".into(),
                vec![
                    format!("{staging}binlogs/insert_log/1/10/"),
                    format!("{staging}binlogs/delta_log/1/10/")
                ],
                vec![("backup".into(), "true".into()), end_ts.clone()]
            ),
            (
                "_default".into(),
                vec![format!("{staging}binlogs/delta_log/1/10/200/")],
                vec![("l0_import".into(), "true".into()), end_ts.clone()]
            ),
            (
                "".into(),
                vec![format!("{staging}binlogs/delta_log/1/-1/300/")],
                vec![("l0_import".into(), "true".into()), end_ts]
            ),
        ]
    );
    assert!(
        ctx.milvus_store.list(&staging).await.unwrap().is_empty(),
        "staging removed"
    );

    // The same backup cannot go into a 2.3 server, which has no L0 import:
    // refused before any job starts.
    let (old, _) = context("v2.3.5", &root);
    let err = Engine::new(old)
        .restore(restore_req("_old"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::FailedPrecondition(ref m) if m.contains("L0")),
        "{err}"
    );
    std::fs::remove_dir_all(root).unwrap();
}
