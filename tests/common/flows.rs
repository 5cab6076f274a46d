//! Backup and restore through the gRPC API, asserting the job succeeded.

use std::time::{Duration, Instant};

use milvus_backup::api::proto as pb;
use milvus_backup::api::proto::backup_service_client::BackupServiceClient;
use milvus_backup::milvus::MilvusClient;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

/// Every message of a stream, read to its end; panics on an error.
pub async fn drain<T>(mut stream: Streaming<T>) -> Vec<T> {
    let mut out = Vec::new();
    while let Some(msg) = stream.message().await.expect("stream message") {
        out.push(msg);
    }
    out
}

/// The last message of a stream, read to its end (`None` when it sent none),
/// or the first error.
pub async fn last_message<T>(mut stream: Streaming<T>) -> Result<Option<T>, Status> {
    let mut last = None;
    while let Some(msg) = stream.message().await? {
        last = Some(msg);
    }
    Ok(last)
}

/// A message of a job's stream: CreateBackup and WatchBackup carry a backup,
/// Restore and WatchRestore a restore job.
pub trait Snapshot {
    type Job;
    fn job(self) -> Option<Self::Job>;
}

macro_rules! snapshot {
    ($($message:ty => $field:ident: $job:ty),* $(,)?) => {$(
        impl Snapshot for $message {
            type Job = $job;
            fn job(self) -> Option<$job> {
                self.$field
            }
        }
    )*};
}

snapshot! {
    pb::CreateBackupResponse => backup: pb::Backup,
    pb::WatchBackupResponse => backup: pb::Backup,
    pb::RestoreResponse => restore: pb::RestoreJob,
    pb::WatchRestoreResponse => restore: pb::RestoreJob,
}

/// The job's snapshot in the last message of its stream, read to its end, or
/// the first error.
pub async fn last_snapshot<T: Snapshot>(stream: Streaming<T>) -> Result<Option<T::Job>, Status> {
    Ok(last_message(stream).await?.and_then(Snapshot::job))
}

/// The last snapshot of a CreateBackup or WatchBackup stream (any state).
/// Every snapshot on the way is checked: never more done than the totals
/// say, even while they grow (a full backup copies while it describes).
pub async fn last_backup<T: Snapshot<Job = pb::Backup>>(mut stream: Streaming<T>) -> pb::Backup {
    let mut last = None;
    while let Some(msg) = stream.message().await.unwrap() {
        if let Some(b) = msg.job() {
            if let Some(p) = &b.progress {
                assert!(
                    p.bytes_done <= p.bytes_total && p.files_done <= p.files_total,
                    "more done than the totals: {p:?}"
                );
            }
            last = Some(b);
        }
    }
    last.expect("a snapshot")
}

/// The last snapshot of a Restore or WatchRestore stream (any state).
pub async fn last_restore<T: Snapshot<Job = pb::RestoreJob>>(
    stream: Streaming<T>,
) -> pb::RestoreJob {
    last_snapshot(stream).await.unwrap().expect("a snapshot")
}

/// Follows restore job `id` with WatchRestore to its end (any state).
pub async fn watch_restore_to_end(
    client: &mut BackupServiceClient<Channel>,
    id: &str,
) -> pb::RestoreJob {
    let stream = client
        .watch_restore(pb::WatchRestoreRequest { id: id.into() })
        .await
        .expect("WatchRestore")
        .into_inner();
    last_restore(stream).await
}

/// Polls GetBackup of `name` until it ends (at most `timeout`): its last state.
#[allow(dead_code)]
pub async fn watch_backup_to_end(
    client: &mut BackupServiceClient<Channel>,
    name: &str,
    timeout: std::time::Duration,
) -> pb::Backup {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let b = get_backup(client, name).await;
        if b.state >= pb::JobState::Succeeded as i32 || std::time::Instant::now() > deadline {
            return b;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

/// Polls GetRestore of `id` until it ends (at most `timeout`): its last state.
#[allow(dead_code)]
pub async fn poll_restore_to_end(
    client: &mut BackupServiceClient<Channel>,
    id: &str,
    timeout: std::time::Duration,
) -> pb::RestoreJob {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let r = get_restore(client, id).await;
        if r.state >= pb::JobState::Succeeded as i32 || std::time::Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

/// A CreateBackup request for the named collections (`coll` or `db.coll`).
pub fn backup_request(name: &str, collections: &[&str]) -> pb::CreateBackupRequest {
    pb::CreateBackupRequest {
        backup_name: name.into(),
        collection_names: collections.iter().map(|c| c.to_string()).collect(),
        ..Default::default()
    }
}

/// A Restore request of backup `name` into the collections' names plus `suffix`.
pub fn restore_request(name: &str, suffix: &str) -> pb::RestoreRequest {
    pb::RestoreRequest {
        backup_name: name.into(),
        collection_suffix: suffix.into(),
        ..Default::default()
    }
}

/// `restore_request` with the indexes restored and the collections loaded.
pub fn restore_loaded_request(name: &str, suffix: &str) -> pb::RestoreRequest {
    pb::RestoreRequest {
        restore_index: true,
        load: true,
        ..restore_request(name, suffix)
    }
}

/// A VerifyBackup stream of backup `name`, waited for.
pub async fn verify_stream(
    client: &mut BackupServiceClient<Channel>,
    name: &str,
) -> Streaming<pb::VerifyBackupResponse> {
    client
        .verify_backup(pb::VerifyBackupRequest {
            name: name.into(),
            detached: false,
        })
        .await
        .unwrap()
        .into_inner()
}

/// VerifyBackup of backup `name` to its end; panics unless every object
/// verified intact (`label` names the case). The last report.
pub async fn assert_verifies(
    client: &mut BackupServiceClient<Channel>,
    name: &str,
    label: &str,
) -> pb::VerifyBackupResponse {
    let stream = verify_stream(client, name).await;
    let last = last_message(stream)
        .await
        .unwrap_or_else(|e| panic!("{label}: the backup verifies: {e:?}"))
        .expect("the verification reports");
    assert!(
        last.objects_total > 0
            && last.objects_done == last.objects_total
            && last.damaged.is_empty(),
        "{label}: every object verified intact: {last:?}"
    );
    last
}

/// Runs a backup to its end; panics unless it succeeded.
pub async fn backup(
    client: &mut BackupServiceClient<Channel>,
    req: pb::CreateBackupRequest,
) -> pb::Backup {
    let stream = client
        .create_backup(req)
        .await
        .expect("CreateBackup accepted")
        .into_inner();
    let last = last_backup(stream).await;
    assert_eq!(
        last.state,
        pb::JobState::Succeeded as i32,
        "backup failed: {last:?}"
    );
    last
}

/// Backs up the named collections (`coll` or `db.coll`).
pub async fn backup_collections(
    client: &mut BackupServiceClient<Channel>,
    name: &str,
    collections: &[&str],
) -> pb::Backup {
    backup(client, backup_request(name, collections)).await
}

/// Backs up the named collections incrementally (`coll` or `db.coll`).
#[allow(dead_code)]
pub async fn incremental_backup(
    client: &mut BackupServiceClient<Channel>,
    name: &str,
    collections: &[&str],
) -> pb::Backup {
    let req = pb::CreateBackupRequest {
        incremental: Some(true),
        ..backup_request(name, collections)
    };
    backup(client, req).await
}

/// Runs a restore to its end and returns the last snapshot (any state).
pub async fn restore_job(
    client: &mut BackupServiceClient<Channel>,
    req: pb::RestoreRequest,
) -> pb::RestoreJob {
    let stream = client
        .restore(req)
        .await
        .expect("Restore accepted")
        .into_inner();
    last_restore(stream).await
}

/// Runs a restore to its end; panics unless it succeeded.
pub async fn restore(
    client: &mut BackupServiceClient<Channel>,
    req: pb::RestoreRequest,
) -> pb::RestoreJob {
    let job = restore_job(client, req).await;
    assert_eq!(
        job.state,
        pb::JobState::Succeeded as i32,
        "restore failed: {job:?}"
    );
    job
}

/// GetBackup by name; panics unless the server answers with a backup.
pub async fn get_backup(client: &mut BackupServiceClient<Channel>, name: &str) -> pb::Backup {
    client
        .get_backup(pb::GetBackupRequest {
            name: name.into(),
            ..Default::default()
        })
        .await
        .expect("GetBackup")
        .into_inner()
        .backup
        .expect("a backup")
}

/// Waits until `check` holds, polling; panics with `what` after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits (at most 180 s) until Milvus has no database `db`; panics with
/// `what` after that.
#[allow(dead_code)]
pub async fn database_dropped(m: &MilvusClient, db: &str, what: &str) {
    use milvus_backup::milvus::MilvusApi;
    eventually(what, Duration::from_secs(180), || async {
        !m.list_databases().await.unwrap().iter().any(|d| d == db)
    })
    .await;
}

/// Every backup ListBackups streams.
pub async fn listed(client: &mut BackupServiceClient<Channel>) -> Vec<pb::Backup> {
    let s = client
        .list_backups(pb::ListBackupsRequest::default())
        .await
        .unwrap()
        .into_inner();
    drain(s)
        .await
        .into_iter()
        .map(|m| m.backup.unwrap())
        .collect()
}

/// The state ListBackups gives backup `name`, if it lists it.
pub async fn listed_state(client: &mut BackupServiceClient<Channel>, name: &str) -> Option<i32> {
    listed(client)
        .await
        .into_iter()
        .rfind(|b| b.name == name)
        .map(|b| b.state)
}

pub async fn get_restore(client: &mut BackupServiceClient<Channel>, id: &str) -> pb::RestoreJob {
    client
        .get_restore(pb::GetRestoreRequest { id: id.into() })
        .await
        .expect("the restore is remembered")
        .into_inner()
        .restore
        .unwrap()
}

/// Starts a restore and returns its job id (the stream is not read further).
pub async fn start_restore(
    client: &mut BackupServiceClient<Channel>,
    req: pb::RestoreRequest,
) -> String {
    let mut stream = client
        .restore(req)
        .await
        .expect("restore accepted")
        .into_inner();
    stream.message().await.unwrap().unwrap().restore.unwrap().id
}

/// Deletes backup `name`, retrying until no other job holds it (a killed
/// job's hold expires).
/// Starts DeleteBackup of `name` as a detached job; its job (id and first state).
#[allow(dead_code)]
pub async fn detached_delete(
    client: &mut BackupServiceClient<Channel>,
    name: &str,
) -> pb::DeleteJob {
    client
        .delete_backup(pb::DeleteBackupRequest {
            name: name.into(),
            detached: true,
        })
        .await
        .expect("DeleteBackup accepted")
        .into_inner()
        .job
        .expect("the delete job")
}

/// The last snapshot of delete job `id`, watched to its end.
#[allow(dead_code)]
pub async fn watched_delete_end(
    client: &mut BackupServiceClient<Channel>,
    id: &str,
) -> pb::DeleteJob {
    let stream = client
        .watch_delete(pb::WatchDeleteRequest { id: id.into() })
        .await
        .expect("WatchDelete")
        .into_inner();
    drain(stream)
        .await
        .into_iter()
        .filter_map(|r| r.delete)
        .next_back()
        .expect("the delete's snapshots")
}

pub async fn delete_eventually(client: &BackupServiceClient<Channel>, name: &str, what: &str) {
    eventually(what, Duration::from_secs(30), || {
        let (mut c, name) = (client.clone(), name.to_string());
        async move {
            c.delete_backup(pb::DeleteBackupRequest {
                name,
                ..Default::default()
            })
            .await
            .is_ok()
        }
    })
    .await;
}

/// `spec`'s rows once it is flushed, indexed and loaded.
pub async fn flushed_and_loaded(
    m: &MilvusClient,
    spec: &super::data::Spec,
) -> Vec<milvus_backup::milvus::rows::Row> {
    super::data::flush(m, &spec.db, &spec.name).await;
    super::data::index(m, &spec.db, &spec.name).await;
    super::data::load(m, &spec.db, &spec.name).await;
    super::data::rows(m, spec, &spec.db, &spec.name, &[]).await
}

/// A server pausing its jobs at `failpoint` until the file it returns is made.
pub async fn held_at(
    cfg: &milvus_backup::config::Config,
    tag: &str,
    failpoint: &str,
) -> (super::process::Proc, std::path::PathBuf) {
    let go = std::env::temp_dir().join(super::unique(&format!("{tag}_go")));
    let failpoint = format!("{failpoint}@{}", go.display());
    (
        super::process::Proc::start(cfg, tag, "", Some(&failpoint)).await,
        go,
    )
}

/// Cancels restore `id` (paused or running) and waits for its end, which
/// must be CANCELLED.
#[allow(dead_code)]
pub async fn cancelled_restore(
    client: &mut BackupServiceClient<Channel>,
    id: &str,
) -> pb::RestoreJob {
    client
        .cancel_restore(pb::CancelRestoreRequest { id: id.into() })
        .await
        .expect("cancel accepted");
    let job = tokio::time::timeout(Duration::from_secs(400), watch_restore_to_end(client, id))
        .await
        .expect("the restore ends");
    assert_eq!(job.state, pb::JobState::Cancelled as i32, "{job:?}");
    job
}

/// A server on backup root `root` pausing its jobs at each of `points` until
/// the file returned for it (in the same order) is made.
#[allow(dead_code)]
pub async fn held_rooted_at(
    cfg: &milvus_backup::config::Config,
    tag: &str,
    root: &str,
    points: &[&str],
) -> (super::process::Proc, Vec<std::path::PathBuf>) {
    let go: Vec<_> = points
        .iter()
        .map(|p| std::env::temp_dir().join(super::unique(&format!("{tag}_{p}_go"))))
        .collect();
    let failpoints: Vec<String> = points
        .iter()
        .zip(&go)
        .map(|(p, go)| format!("{p}@{}", go.display()))
        .collect();
    let server =
        super::process::Proc::start_rooted_paused(cfg, tag, root, "", Some(&failpoints.join(",")))
            .await;
    (server, go)
}

/// Lets the restore `id` held at its failpoint go on (makes `go`); its end,
/// which must be SUCCEEDED.
pub async fn released_to_success(
    server: &mut super::process::Proc,
    go: &std::path::Path,
    id: &str,
) {
    std::fs::write(go, b"").unwrap();
    let job = tokio::time::timeout(
        Duration::from_secs(300),
        watch_restore_to_end(&mut server.client, id),
    )
    .await
    .expect("the restore ends");
    assert_eq!(job.state, pb::JobState::Succeeded as i32, "{job:?}");
    let _ = std::fs::remove_file(go);
}

/// Starts backup `name` of `collection`, cancels it once it runs, and waits
/// for it to end CANCELLED (its cleanup done).
#[allow(dead_code)]
pub async fn cancelled_backup(
    client: &mut BackupServiceClient<Channel>,
    name: &str,
    collection: &str,
) {
    let mut stream = client
        .create_backup(backup_request(name, &[collection]))
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().unwrap();
    client
        .cancel_backup(pb::CancelBackupRequest { name: name.into() })
        .await
        .unwrap();
    let end = last_backup(stream).await;
    assert_eq!(end.state, pb::JobState::Cancelled as i32, "{end:?}");
}

/// Whether every reader's lease object under `folder` (of the backup
/// storage `store`) is released or gone: a reader lets go as it ends, and
/// its lease object goes once its job's end is recorded, which may be
/// between the listing and the read.
#[allow(dead_code)]
pub async fn readers_released(
    store: &dyn milvus_backup::storage::ObjectStore,
    folder: &str,
) -> bool {
    for o in store.list(folder).await.unwrap() {
        let bytes = match store.read(&o.key).await {
            Ok(bytes) => bytes,
            Err(milvus_backup::error::Error::NotFound { .. }) => continue,
            Err(e) => panic!("reading {}: {e}", o.key),
        };
        let record: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        if record["released"] != serde_json::Value::Bool(true) {
            return false;
        }
    }
    true
}

/// The owner of a backup and a restore about to be killed: a server on
/// backup root `root` that started backup `name` of `collection` and a
/// restore of `base` into the names plus `suffix`, both paused (failpoints
/// `backup.described`, `restore.importing`). The server, the backup's id
/// and the restore's id.
#[allow(dead_code)]
pub async fn owner_of_paused_jobs(
    cfg: &milvus_backup::config::Config,
    tag: &str,
    root: &str,
    (name, collection): (&str, &str),
    (base, suffix): (&str, &str),
) -> (super::process::Proc, String, String) {
    let failpoints = "backup.described,restore.importing";
    let mut owner =
        super::process::Proc::start_rooted_paused(cfg, tag, root, "", Some(failpoints)).await;
    let mut backup = owner
        .client
        .create_backup(backup_request(name, &[collection]))
        .await
        .unwrap()
        .into_inner();
    let backup_id = backup.message().await.unwrap().unwrap().backup.unwrap().id;
    let restore_id = start_restore(&mut owner.client, restore_loaded_request(base, suffix)).await;
    eventually("both jobs paused", Duration::from_secs(120), || async {
        owner.logged("failpoint reached") == 2
    })
    .await;
    (owner, backup_id, restore_id)
}
