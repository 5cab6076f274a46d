//! A backup whose server died, recovered while the backup storage fails to
//! answer for its shared record: it is left to the takeover, never ended
//! with its copies removed (a replica may be resuming it). The store is a
//! real directory; only the reads of job records fail, as a 503 would.

use std::sync::Arc;

use bytes::Bytes;

use super::job::BackupJob;
use crate::config::MilvusConfig;
use crate::context::{Context, Timing};
use crate::error::Error;
use crate::jobs::runner::JobKind;
use crate::jobs::{BackupOrder, BackupSnapshot, JobState};
use crate::meta::{BackupLayout, Catalog, MilvusLayout};
use crate::milvus::MilvusClient;
use crate::storage::intercepted::{Intercepted, Op};
use crate::storage::{Copier, LocalDir, ObjectStore};

/// A directory whose job records cannot be read.
fn records_unreadable(dir: LocalDir) -> Intercepted {
    Intercepted::new(
        dir,
        Arc::new(|op, key| {
            let refused = op == Op::Read && key.contains("/_jobs/");
            let key = key.to_string();
            Box::pin(async move {
                match refused {
                    true => Err(Error::Storage {
                        operation: "GetObject",
                        key,
                        reason: "503 Slow Down (injected)".into(),
                    }),
                    false => Ok(()),
                }
            })
        }),
    )
}

#[tokio::test]
async fn an_unreadable_shared_record_leaves_the_backup_to_the_takeover() {
    let root = std::env::temp_dir().join(format!("mb-recover-{}", uuid::Uuid::new_v4().simple()));
    let dir = LocalDir::new(root.join("backups"));
    let store: Arc<dyn ObjectStore> = Arc::new(records_unreadable(dir));
    let ctx = Context {
        // Never called: recovery of a backup reads only the backup storage.
        milvus: Arc::new(MilvusClient::new(&MilvusConfig::default()).unwrap()),
        milvus_store: Arc::new(LocalDir::new(root.join("milvus"))),
        milvus_id: Arc::new(crate::milvus::identity::MilvusIdentity::new(
            Arc::new(LocalDir::new(root.join("milvus"))),
            "files",
        )),
        milvus_layout: MilvusLayout::new("files"),
        catalog: Catalog::new(store.clone(), BackupLayout::new("backup")),
        copier: Copier::new(2),
        timing: Timing::default(),
        collections_at_once: 1,
        incremental_by_default: false,
        segment_group_bytes: 1 << 30,
    };
    // What the dead server left: its plan (the folder is its job's) and a copy.
    let (name, job) = ("nightly", "job-1");
    let plan =
        serde_json::json!({ "job": job, "started_ms": 0, "collections": [], "partial": true });
    let kept = [
        "backup/nightly/resume-plan.json",
        "backup/nightly/binlogs/insert_log/1/2/3/4/5",
    ];
    store
        .write(kept[0], Bytes::from(plan.to_string()))
        .await
        .unwrap();
    store
        .write(kept[1], Bytes::from_static(b"binlog"))
        .await
        .unwrap();

    let mut b = BackupSnapshot::pending(job.into(), name.into(), false);
    b.state = JobState::Running;
    b.order = Some(BackupOrder {
        collections: vec!["default.c".into()],
        ..Default::default()
    });
    let recovered = BackupJob::recover(&ctx, b).await;
    assert!(
        recovered.resume,
        "left to the takeover: {:?}",
        recovered.now
    );
    assert_eq!(recovered.now.state, JobState::Running);
    for key in kept {
        assert!(
            store.head(key).await.unwrap().is_some(),
            "{key} was removed"
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}
