//! Restores of collections made for the test: a loaded source, its backup,
//! and the rows of a restored collection.

use std::time::Duration;

use milvus_backup::api::proto as pb;
use milvus_backup::milvus::rows::Row;
use milvus_backup::milvus::{MilvusApi, MilvusClient};

use super::data::{self, Spec};
use super::flows;

/// A collection of `rows` rows in two flushed segments, indexed and loaded; its rows.
pub async fn source(m: &MilvusClient, name: &str, rows: i64) -> (Spec, Vec<Row>) {
    let spec = Spec::new(name);
    data::create(m, &spec).await;
    data::insert(m, &spec, "", 0..rows / 2, 7).await;
    data::flush(m, &spec.db, &spec.name).await;
    data::insert(m, &spec, "", rows / 2..rows, 7).await;
    data::flush(m, &spec.db, &spec.name).await;
    data::index(m, &spec.db, &spec.name).await;
    data::load(m, &spec.db, &spec.name).await;
    let all = data::rows(m, &spec, &spec.db, &spec.name, &[]).await;
    assert_eq!(all.len() as i64, rows);
    (spec, all)
}

/// The rows of `db.name` after indexing and loading it.
pub async fn rows_of(m: &MilvusClient, spec: &Spec, name: &str) -> Vec<Row> {
    if m.describe_indexes(&spec.db, name).await.unwrap().is_empty() {
        data::index(m, &spec.db, name).await;
    }
    data::load(m, &spec.db, name).await;
    data::rows(m, spec, &spec.db, name, &[]).await
}

/// A Restore of `backup` into the names plus `suffix`, replacing existing ones if `drop_existing`.
pub fn restore_req(backup: &str, suffix: &str, drop_existing: bool) -> pb::RestoreRequest {
    pb::RestoreRequest {
        backup_name: backup.into(),
        collection_suffix: suffix.into(),
        drop_existing_collections: drop_existing,
        ..Default::default()
    }
}

/// A source collection of `rows` rows and a backup of it (through an in-process server).
pub async fn backed_up(
    cfg: &milvus_backup::config::Config,
    m: &MilvusClient,
    tag: &str,
    rows: i64,
) -> (Spec, Vec<Row>, String) {
    let (spec, all) = source(m, &super::unique(tag), rows).await;
    let backup = super::unique(&format!("{tag}_b"));
    let server = super::TestServer::start(cfg).await;
    flows::backup_collections(&mut server.client.clone(), &backup, &[&spec.name]).await;
    (spec, all, backup)
}

/// A replace (`drop_existing_collections`) of a loaded collection of 100
/// rows, paused at `failpoint` of its swap until `go` exists.
#[allow(dead_code)]
pub struct PausedReplace {
    pub spec: Spec,
    pub rows: Vec<Row>,
    /// The original's id, before the restore.
    pub original: Option<i64>,
    /// The restored copy, `{name}_restoring_{job}`.
    pub copy: String,
    pub server: super::process::Proc,
    pub go: std::path::PathBuf,
    pub id: String,
}

/// Starts a server paused at `failpoint` (a `restore.swap.*` point), backs
/// up a new collection there and starts its replace, with `restore_index`.
#[allow(dead_code)]
pub async fn replace_paused_at(
    cfg: &milvus_backup::config::Config,
    m: &MilvusClient,
    tag: &str,
    failpoint: &str,
    restore_index: bool,
) -> PausedReplace {
    let spec = Spec::new(&super::unique(&format!("{tag}_src")));
    data::create(m, &spec).await;
    data::insert(m, &spec, "", 0..100, 21).await;
    let rows = flows::flushed_and_loaded(m, &spec).await;
    let (mut server, go) = flows::held_at(cfg, tag, failpoint).await;
    let backup = super::unique(&format!("{tag}_b"));
    flows::backup_collections(&mut server.client, &backup, &[&spec.name]).await;
    let original = m.collection_id(&spec.db, &spec.name).await.unwrap();
    let id = flows::start_restore(
        &mut server.client,
        pb::RestoreRequest {
            backup_name: backup,
            drop_existing_collections: true,
            restore_index,
            ..Default::default()
        },
    )
    .await;
    server.wait_paused(Duration::from_secs(180)).await;
    let copy = m
        .list_collections(&spec.db)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.starts_with(&format!("{}_restoring_", spec.name)))
        .expect("the restored copy");
    PausedReplace {
        spec,
        rows,
        original,
        copy,
        server,
        go,
        id,
    }
}

impl PausedReplace {
    /// Lets the paused replace go on and waits for its end (at most 300 s),
    /// which must be FAILED naming the copy.
    #[allow(dead_code)]
    pub async fn go_on_to_failure(&mut self) -> pb::RestoreJob {
        std::fs::write(&self.go, b"").unwrap();
        let job = tokio::time::timeout(
            Duration::from_secs(300),
            flows::watch_restore_to_end(&mut self.server.client, &self.id),
        )
        .await
        .expect("the restore ends");
        assert_eq!(job.state, pb::JobState::Failed as i32, "{job:?}");
        assert!(job.error_message.contains(&self.copy), "{job:?}");
        job
    }
}
