//! Faults: through proxies that answer every 20th S3 request (5%) with 503
//! SlowDown, drop every 20th connection unanswered (another 5%), and cut
//! every 25th PutObject request body and every 25th GetObject response body
//! partway (GetObjects while a backup copies, see
//! `CUT_GET_EVERY_WHILE_READING`), backups (server-side and streaming)
//! verify and restores end with equal rows. Each proxy of each run is counted
//! on its own, and each must have injected every kind. When Milvus goes away
//! mid-job the job fails naming Milvus's address, its cleanup finishes once
//! Milvus is back, and a new job succeeds. A store that refuses deletes leaves folders of ours that a
//! later DeleteBackup removes once it may. Against the real Milvus 2.3.5 and
//! S3 servers.

mod common;
#[path = "common/figures.rs"]
mod figures;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::data::{self, Spec};
use common::faults::{Counts, FaultProxy, Rates};
use common::flows;
use common::process::Proc;
use milvus_backup::api::proto as pb;
use milvus_backup::milvus::MilvusApi;
use milvus_backup::storage::ObjectStore;

async fn collection(
    m: &milvus_backup::milvus::MilvusClient,
) -> (Spec, Vec<milvus_backup::milvus::rows::Row>) {
    let spec = Spec::new(&common::unique("faults_src"));
    data::create(m, &spec).await;
    for i in 0..4 {
        data::insert(m, &spec, "", i * 150..(i + 1) * 150, 111).await;
        data::flush(m, &spec.db, &spec.name).await;
    }
    data::delete(m, &spec, "pk in [3, 300]").await;
    data::index(m, &spec.db, &spec.name).await;
    data::load(m, &spec.db, &spec.name).await;
    let rows = data::rows(m, &spec, &spec.db, &spec.name, &[]).await;
    (spec, rows)
}

const RATES: Rates = Rates {
    error_503_every: 20,
    reset_every: 20,
    cut_get_every: 25,
    cut_put_every: 25,
};

/// GetObject bodies are cut while a backup copies, and while it is verified
/// and restored: each of those reads is retried whole.
const CUT_GET_EVERY_WHILE_READING: u64 = RATES.cut_get_every;

/// Asserts that `proxy` injected 503s and resets (and with `mid_body`, cut
/// both a response and a request body); its counts.
fn injected(run: &str, proxy: &str, p: &FaultProxy, mid_body: bool) -> Counts {
    let c = p.counts.now();
    assert!(
        c.errors_503 > 0 && c.resets > 0,
        "{run}, {proxy}: both 503s and resets must be injected: {c}"
    );
    if mid_body {
        assert!(
            c.cut_responses > 0 && c.cut_requests > 0,
            "{run}, {proxy}: response and request bodies must be cut: {c}"
        );
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_errors_resets_and_cut_bodies_are_survived() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let (spec, source) = collection(&m).await;
    let s3: SocketAddr = format!("{}:{}", cfg.minio.address, cfg.minio.port)
        .parse()
        .unwrap();
    let (host_b, port_b) = common::second_s3();
    let s3b: SocketAddr = format!("{host_b}:{port_b}").parse().unwrap();

    let mut lines = Vec::new();
    for (run, streaming) in [("server-side", false), ("streaming", true)] {
        // Fresh proxies: each run is counted on its own.
        let proxy = common::faults::start(s3, RATES).await;
        let proxy_b = common::faults::start(s3b, RATES).await;
        let mut c = cfg.clone();
        c.minio.port = proxy.addr.port();
        if streaming {
            c.minio.backup_address = "127.0.0.1".into();
            c.minio.backup_port = proxy_b.addr.port();
            c.minio.backup_bucket_name = "faulty-offsite".into();
            milvus_backup::storage::S3Bucket::new(&{
                let mut direct = c.clone();
                direct.minio.backup_port = port_b;
                direct.minio.backup_bucket().unwrap()
            })
            .unwrap()
            .ensure_bucket(true)
            .await
            .unwrap();
        }
        let server = common::TestServer::start(&c).await;
        let mut client = server.client().await;
        let name = common::unique("faulty");
        flows::backup_collections(&mut client, &name, &[&spec.name]).await;
        let copied = proxy.counts.now();
        if streaming {
            // The copies read Milvus's bucket and write the backup storage.
            assert!(
                copied.cut_responses > 0,
                "{run}: the copies' GetObject bodies must be cut: {copied}"
            );
            let written = proxy_b.counts.now();
            assert!(
                written.cut_requests > 0,
                "{run}: the copies' PutObject bodies must be cut: {written}"
            );
        }
        for p in [&proxy, &proxy_b] {
            p.cut_get_every(CUT_GET_EVERY_WHILE_READING);
        }

        // The backup verifies despite the faults.
        flows::assert_verifies(&mut client, &name, run).await;
        let suffix = format!("_{}", run.replace('-', "_"));
        flows::restore(&mut client, flows::restore_loaded_request(&name, &suffix)).await;
        let target = format!("{}{suffix}", spec.name);
        let restored = data::rows(&m, &spec, &spec.db, &target, &[]).await;
        data::assert_rows_equal(run, &source, &restored);
        data::drop_if_exists(&m, &spec.db, &target).await;
        client
            .delete_backup(pb::DeleteBackupRequest {
                name,
                ..Default::default()
            })
            .await
            .expect("delete despite the faults");
        server.handle.stop().await.unwrap();

        if streaming {
            // Milvus's bucket: the backup reads it (bodies cut), the restore
            // stages the binlogs into it (bodies cut).
            let a = injected(run, "Milvus's bucket", &proxy, true);
            // The backup storage: the backup writes it (bodies cut); verify
            // and the restore read it.
            let b = injected(run, "backup storage", &proxy_b, false);
            assert!(b.cut_requests > 0, "{run}: {b}");
            lines.push(format!("{run}, proxy to Milvus's bucket: {a}"));
            lines.push(format!("{run}, proxy to the backup storage: {b}"));
        } else {
            // Both buckets through one proxy: the copies are CopyObjects.
            let a = injected(run, "the one S3", &proxy, false);
            assert_eq!(proxy_b.counts.now(), Counts::default(), "unused");
            lines.push(format!("{run}, proxy to the one S3: {a}"));
        }
    }
    figures::publish("faults", &lines);
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// Milvus goes away while a restore waits on its imports (held at
/// `restore.importing`, then released with Milvus off): the job fails naming
/// Milvus's address, and its cleanup, which cannot reach Milvus either, tries
/// again until Milvus is back, then drops the collection the job made
/// (before, the cleanup failed at once and left it in Milvus for good).
/// Back again, a new restore succeeds, rows equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn milvus_going_away_fails_the_job_clearly() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let (spec, source) = collection(&m).await;
    let (via_proxy, up) = common::faults::milvus_through_switch(&cfg).await;
    let release = std::env::temp_dir().join(common::unique("gone_release"));
    let failpoint = format!("restore.importing@{}", release.display());
    // A root of its own: switched off, its Milvus would fail any job of
    // another test's server it took over.
    let root = common::unique("gone_root");
    let server =
        Proc::start_rooted_paused(&via_proxy, "milvus-gone", &root, "", Some(&failpoint)).await;
    let mut client = server.client.clone();
    let name = common::unique("fine");
    flows::backup_collections(&mut client, &name, &[&spec.name]).await;

    let gone = format!("{}_gone", spec.name);
    let mut c = client.clone();
    let req = flows::restore_request(&name, "_gone");
    let restore = tokio::spawn(async move {
        flows::last_restore(c.restore(req).await.unwrap().into_inner()).await
    });
    server.wait_paused(Duration::from_secs(120)).await;
    assert!(m.has_collection(&spec.db, &gone).await.unwrap());
    common::faults::switch_off(&up).await;
    std::fs::write(&release, b"").unwrap();
    common::process::wait_for_log(
        &server.log,
        "cleanup cannot reach Milvus",
        Duration::from_secs(120),
    )
    .await;
    up.store(true, Ordering::SeqCst);
    let job = restore.await.unwrap();
    assert_eq!(job.state, pb::JobState::Failed as i32, "{job:?}");
    assert!(
        job.error_message.contains("unavailable")
            && job
                .error_message
                .contains(&via_proxy.milvus.port.to_string()),
        "{}",
        job.error_message
    );
    assert!(
        !m.has_collection(&spec.db, &gone).await.unwrap(),
        "the collection the failed restore made is dropped once Milvus is back"
    );

    // Back again: a new job succeeds.
    flows::restore(&mut client, flows::restore_loaded_request(&name, "_back")).await;
    let restored = data::rows(&m, &spec, &spec.db, &format!("{}_back", spec.name), &[]).await;
    data::assert_rows_equal("after Milvus came back", &source, &restored);
    for c in [spec.name.clone(), format!("{}_back", spec.name)] {
        data::drop_if_exists(&m, &spec.db, &c).await;
    }
    let _ = std::fs::remove_file(&release);
    server.finish();
}

/// A server with its backups under a root of its own, whose S3 requests all
/// go through `proxy`, paused at `failpoints`.
async fn server_through(
    cfg: &milvus_backup::config::Config,
    proxy: &FaultProxy,
    root: &str,
    failpoints: Option<&str>,
) -> Proc {
    let (state, config) = common::process::config_with(cfg, "refdel", "");
    common::process::route_s3_through(cfg, &config, proxy.addr.port());
    common::process::root_backups_at(&config, root);
    Proc::on(state, config, failpoints).await
}

/// How often `server`'s jobs reached failpoint `point`.
fn times_paused_at(server: &Proc, point: &str) -> usize {
    std::fs::read_to_string(&server.log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("failpoint reached") && l.contains(point))
        .count()
}

fn delete_request(name: &str) -> pb::DeleteBackupRequest {
    pb::DeleteBackupRequest {
        name: name.to_string(),
        ..Default::default()
    }
}

/// The keys under `prefix`, relative to it.
async fn keys_under(store: &dyn ObjectStore, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = store
        .list(prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key[prefix.len()..].to_string())
        .collect();
    keys.sort();
    keys
}

/// A store that refuses deletes (credentials without the right to delete,
/// or an outage of that one request) leaves folders of ours behind: a backup
/// cancelled while its cleanup could not delete (binlogs and its plan, no
/// meta), and a backup in the Go tool's shape (`backup_meta.json` and the
/// level files, no checksums and no `full_meta.json`; made here by removing
/// ours from a real backup) whose delete removed its meta and was then
/// refused. Neither blocks its name: DeleteBackup answers PERMISSION_DENIED
/// while the store refuses, removes nothing of what is left, and removes each
/// folder whole once the store lets it; then the names can be used again. A
/// folder that nothing marks as ours is still refused (`restore_safety.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn folders_left_by_refused_deletes_are_deleted_once_the_store_allows() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("refdel_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..200, 113).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let s3: SocketAddr = format!("{}:{}", cfg.minio.address, cfg.minio.port)
        .parse()
        .unwrap();
    let proxy = common::faults::start(s3, Rates::default()).await;
    let root = common::unique("refdel_root");
    let (described, meta_removed) = (
        std::env::temp_dir().join(common::unique("refdel_a")),
        std::env::temp_dir().join(common::unique("refdel_b")),
    );
    let failpoints = format!(
        "backup.described@{},delete.meta_removed@{}",
        described.display(),
        meta_removed.display()
    );
    // The cleanup of part 1 passes `delete.meta_removed`; part 2 pauses there.
    std::fs::write(&meta_removed, b"").unwrap();
    let server = server_through(&cfg, &proxy, &root, Some(&failpoints)).await;
    let mut client = server.client.clone();
    let store = common::process::rooted_bucket(&cfg);
    let refused = |e: &tonic::Status| {
        e.code() == tonic::Code::PermissionDenied && e.message().contains("AccessDenied")
    };

    // 1. A backup cancelled while the store refuses deletes keeps its folder.
    let partial = common::unique("refdel_partial");
    let mut stream = client
        .create_backup(flows::backup_request(&partial, &[&spec.name]))
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap();
    server.wait_paused(Duration::from_secs(120)).await;
    proxy.refuse_deletes(true);
    client
        .cancel_backup(pb::CancelBackupRequest {
            name: partial.clone(),
        })
        .await
        .unwrap();
    let ended = flows::last_backup(stream).await;
    assert_eq!(ended.state, pb::JobState::Cancelled as i32, "{ended:?}");
    let prefix = format!("{root}/{partial}/");
    let left = keys_under(store.as_ref(), &prefix).await;
    assert!(
        left.contains(&"resume-plan.json".to_string())
            && left.iter().any(|k| k.starts_with("binlogs/"))
            && !left.iter().any(|k| k.starts_with("meta/")),
        "the cleanup could not delete: {left:?}"
    );
    // While the store refuses, the delete says so and removes nothing.
    let err = client
        .delete_backup(delete_request(&partial))
        .await
        .expect_err("deletes are refused");
    assert!(refused(&err), "{err:?}");
    assert_eq!(keys_under(store.as_ref(), &prefix).await, left);
    // Once it lets them, the folder goes whole (before: FAILED_PRECONDITION,
    // "no complete backup meta", and the name blocked for good).
    proxy.refuse_deletes(false);
    let gone = client
        .delete_backup(delete_request(&partial))
        .await
        .expect("the partial backup is deleted")
        .into_inner();
    assert_eq!(gone.objects_deleted as usize, left.len(), "{gone:?}");
    assert_eq!(
        keys_under(store.as_ref(), &prefix).await,
        Vec::<String>::new()
    );

    // 2. A Go-tool-shaped backup whose delete is refused after its meta went.
    std::fs::write(&described, b"").unwrap();
    let go = common::unique("refdel_go");
    flows::backup_collections(&mut client, &go, &[&spec.name]).await;
    let prefix = format!("{root}/{go}/");
    store
        .delete(&[
            format!("{prefix}meta/checksums.json"),
            format!("{prefix}meta/full_meta.json"),
        ])
        .await
        .unwrap();
    assert_eq!(
        flows::get_backup(&mut client, &go).await.state,
        pb::JobState::Succeeded as i32,
        "a complete backup in the Go tool's shape"
    );
    let binlogs: Vec<String> = keys_under(store.as_ref(), &prefix)
        .await
        .into_iter()
        .filter(|k| k.starts_with("binlogs/"))
        .collect();
    assert!(!binlogs.is_empty());
    let _ = std::fs::remove_file(&meta_removed);
    let paused_before = times_paused_at(&server, "delete.meta_removed");
    let call = tokio::spawn({
        let mut c = client.clone();
        let go = go.clone();
        async move { c.delete_backup(delete_request(&go)).await }
    });
    flows::eventually("the delete pauses", Duration::from_secs(60), || async {
        times_paused_at(&server, "delete.meta_removed") > paused_before
    })
    .await;
    proxy.refuse_deletes(true);
    std::fs::write(&meta_removed, b"").unwrap();
    let err = call.await.unwrap().expect_err("deletes are refused");
    assert!(refused(&err), "{err:?}");
    let left = keys_under(store.as_ref(), &prefix).await;
    assert!(
        !left.contains(&"meta/backup_meta.json".to_string())
            && left.contains(&"deleting.json".to_string())
            && binlogs.iter().all(|b| left.contains(b)),
        "its meta went, its binlogs stayed, the delete's marker says so: {left:?}"
    );
    let err = client
        .delete_backup(delete_request(&go))
        .await
        .expect_err("deletes are still refused");
    assert!(
        refused(&err),
        "run again, it is refused by the store only: {err:?}"
    );
    proxy.refuse_deletes(false);
    client
        .delete_backup(delete_request(&go))
        .await
        .expect("the rest of the Go-tool backup is deleted");
    assert_eq!(
        keys_under(store.as_ref(), &prefix).await,
        Vec::<String>::new()
    );
    println!(
        "refused deletes: {} (the cleanup, then the deletes); both folders deleted once allowed",
        proxy.counts.refused_deletes.load(Ordering::Relaxed)
    );

    // 3. Both names can be used again.
    for name in [&partial, &go] {
        let made = flows::backup_collections(&mut client, name, &[&spec.name]).await;
        assert_eq!(made.state, pb::JobState::Succeeded as i32, "{made:?}");
    }
    for f in [described, meta_removed] {
        let _ = std::fs::remove_file(f);
    }
    server.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A restore whose every collection is restored, but whose staged binlogs
/// the store will not let it remove (deletes refused), has succeeded: it
/// ends SUCCEEDED with equal rows and names the prefix it left in
/// `staging_left` (before: FAILED, with the collections restored). An
/// incremental backup is staged even with the backups in Milvus's bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restore_that_cannot_remove_its_staging_succeeds_and_names_it() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("stleft_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..200, 117).await;
    data::flush(&m, &spec.db, &spec.name).await;
    data::index(&m, &spec.db, &spec.name).await;
    data::load(&m, &spec.db, &spec.name).await;
    let source = data::rows(&m, &spec, &spec.db, &spec.name, &[]).await;
    let s3: SocketAddr = format!("{}:{}", cfg.minio.address, cfg.minio.port)
        .parse()
        .unwrap();
    let proxy = common::faults::start(s3, Rates::default()).await;
    let root = common::unique("stleft_root");
    let server = server_through(&cfg, &proxy, &root, None).await;
    let mut client = server.client.clone();
    let (full, incr) = (common::unique("stleft_f"), common::unique("stleft_i"));
    flows::backup_collections(&mut client, &full, &[&spec.name]).await;
    let made = flows::backup(
        &mut client,
        pb::CreateBackupRequest {
            incremental: Some(true),
            ..flows::backup_request(&incr, &[&spec.name])
        },
    )
    .await;
    assert!(made.files_reused > 0, "{made:?}");

    proxy.refuse_deletes(true);
    let job = flows::restore(&mut client, flows::restore_loaded_request(&incr, "_st")).await;
    let target = format!("{}_st", spec.name);
    let restored = data::rows(&m, &spec, &spec.db, &target, &[]).await;
    data::assert_rows_equal("restored while deletes are refused", &source, &restored);
    assert_eq!(
        job.staging_left,
        format!("restore-temp-{}/", job.id),
        "{job:?}"
    );
    let store = common::process::rooted_bucket(&cfg);
    let staged = store.list(&job.staging_left).await.unwrap();
    assert!(!staged.is_empty(), "the staged binlogs are still there");
    assert!(proxy.counts.refused_deletes.load(Ordering::Relaxed) > 0);
    // Removed by hand once the store lets them go.
    proxy.refuse_deletes(false);
    store.delete_under(&job.staging_left).await.unwrap();
    println!(
        "restore SUCCEEDED with {} rows; {} staged objects left under {}",
        restored.len(),
        staged.len(),
        job.staging_left
    );
    server.finish();
    for c in [&spec.name, &target] {
        data::drop_if_exists(&m, &spec.db, c).await;
    }
}

/// Binlogs that Milvus removes while a backup waits to copy them (compaction
/// and garbage collection would): the job ends FAILED_PRECONDITION naming
/// a *source* object in Milvus's bucket and saying to back up again, and
/// leaves no backup. (Before, the missing source read as a storage fault,
/// was retried five times, and named nothing useful.) An incremental backup
/// with nothing to reuse describes everything first, so it is held at
/// `backup.incremental.bases_held` while the object goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_binlog_removed_before_its_copy_fails_the_backup_naming_it() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let (spec, _) = collection(&m).await;
    let release = tempfile::tempdir().unwrap();
    let go = release.path().join("go");
    let failpoint = format!("backup.incremental.bases_held@{}", go.display());
    let server = Proc::start(&cfg, "faults-gone", "", Some(&failpoint)).await;
    let mut client = server.client.clone();
    let name = common::unique("gone_src");
    let req = pb::CreateBackupRequest {
        incremental: Some(true),
        ..flows::backup_request(&name, &[&spec.name])
    };
    let stream = client.create_backup(req).await.unwrap().into_inner();
    server.wait_paused(Duration::from_secs(60)).await;
    fails_naming_a_removed_insert_log(&cfg, &m, &spec, &go, stream).await;
    // Its cleanup removed what it had copied: no backup folder is left.
    let backups =
        milvus_backup::storage::S3Bucket::new(&cfg.minio.backup_bucket().unwrap()).unwrap();
    let left = backups.list(&format!("backup/{name}/")).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    server.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// The same for a full backup, which copies while it describes: its binlogs
/// stream one at a time into a directory under a 5 KiB/s cap, and Milvus's
/// insert logs of the collection go once it is described (held at
/// `backup.described`). The job ends FAILED_PRECONDITION naming a source
/// and saying to back up again, and leaves no folder. (Before, a full
/// backup said only "object … not found", a NOT_FOUND read as a missing
/// backup or collection.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_binlog_removed_while_a_full_backup_copies_fails_it_naming_it() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let (spec, _) = collection(&m).await;
    let release = tempfile::tempdir().unwrap();
    let go = release.path().join("go");
    let dir = release.path().join("backups");
    let state = release.path().join("state");
    let config = release.path().join("backup.yaml");
    let yaml = common::process::config_yaml(&cfg, "  backupStorageType: local\n").replace(
        "backupRootPath: backup\n",
        &format!("backupRootPath: {}\n", dir.display()),
    );
    std::fs::write(
        &config,
        format!(
            "{yaml}backup:\n  stateDir: {}\n  rateLimitMiBps: 0.005\n  parallelism:\n    copydata: 1\n",
            state.display()
        ),
    )
    .unwrap();
    let failpoint = format!("backup.described@{}", go.display());
    let server = Proc::on(state, config, Some(&failpoint)).await;
    let mut client = server.client.clone();
    let name = common::unique("gone_full");
    let stream = client
        .create_backup(flows::backup_request(&name, &[&spec.name]))
        .await
        .unwrap()
        .into_inner();
    server.wait_paused(Duration::from_secs(60)).await;
    fails_naming_a_removed_insert_log(&cfg, &m, &spec, &go, stream).await;
    assert!(
        !dir.join(&name).exists(),
        "its cleanup removed what it had copied"
    );
    server.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// Removes every insert log of `spec` from Milvus's bucket (the listing also
/// holds segments that Milvus compacted away and has not collected yet,
/// which the plan does not copy, so removing one chosen key could miss the
/// plan), lets the held backup go (`go`), and asserts that it ends FAILED
/// naming one of them and saying to back up again.
async fn fails_naming_a_removed_insert_log(
    cfg: &milvus_backup::config::Config,
    m: &milvus_backup::milvus::MilvusClient,
    spec: &Spec,
    go: &std::path::Path,
    stream: tonic::Streaming<pb::CreateBackupResponse>,
) {
    let milvus_bucket =
        milvus_backup::storage::S3Bucket::new(&cfg.minio.milvus_bucket().unwrap()).unwrap();
    let id = MilvusApi::collection_id(m, &spec.db, &spec.name)
        .await
        .unwrap()
        .expect("the collection exists");
    let gone: Vec<String> = milvus_bucket
        .list(&format!("files/insert_log/{id}/"))
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert!(gone.len() > 2, "the collection has insert logs: {gone:?}");
    milvus_bucket.delete(&gone).await.unwrap();
    std::fs::write(go, b"").unwrap();
    let last = flows::last_backup(stream).await;
    assert_eq!(last.state, pb::JobState::Failed as i32, "{last:?}");
    assert!(
        last.error_message.contains("Milvus removed")
            && gone.iter().any(|key| last.error_message.contains(key))
            && last.error_message.contains("back up again"),
        "{}",
        last.error_message
    );
}
