//! SIGKILL the server in the middle of jobs, restart it on the same job
//! records, and check that every killed backup and restore is resumed to its
//! end under the same id, and that nothing that existed before is lost. The
//! real binary, the real Milvus 2.3.5 and S3.
//!
//! - Backups are killed mid-copy: the copies are rate-limited, and the kill
//!   comes once the job's stream showed `0 < files_done < files_total` (at a
//!   quarter, half and three quarters of the objects); the objects in the
//!   storage at the kill are counted. The restarted server resumes each one
//!   (the same job id), which verifies; it copies no more than the bytes
//!   left at the kill plus 10%.
//! - Restores are killed mid-import: the `restore.importing` failpoint holds
//!   the job once its imports are started and not awaited; Milvus lists the
//!   imports into the collection being filled. Into a new collection, as a
//!   replace of an existing one, and staged from a backup on another S3. The
//!   restarted server resumes each: it follows the recorded imports (Milvus
//!   has no more tasks after than at the kill) and the rows equal the source.
//! - Lease handling: a killed backup's name is held by the dead job until
//!   the lease expires, when the restarted server takes it over to resume;
//!   a resumed restore releases its leases at its end.
//!
//! The kills at each step of the replace's swap are in `restore_resume.rs`,
//! and those between the backup's meta writes in `restore_safety.rs`.

mod common;
#[path = "common/figures.rs"]
mod figures;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::data::{self, Spec};
use common::flows::{self, eventually, get_restore};
use common::process::{self, ServerProcess};
use milvus_backup::api::proto as pb;
use milvus_backup::api::proto::backup_service_client::BackupServiceClient;
use milvus_backup::config::Config;
use milvus_backup::milvus::MilvusApi;
use milvus_backup::storage::{ObjectStore, S3Bucket};
use tonic::transport::Channel;

/// Lease TTL of the killed processes: long enough that a released lease
/// was released, not expired.
const LEASE_TTL_SECONDS: u64 = 10;
/// Backups are killed once this many quarters of their objects are copied.
const BACKUP_KILL_QUARTERS: [u64; 3] = [1, 2, 3];
/// How long a rate-limited backup copies its objects.
const COPY_SECONDS: f64 = 10.0;

/// A server config: the test environment, with the backups on the second S3
/// when `offsite` is set, and `extra` `backup:` lines.
fn write_config(cfg: &Config, tag: &str, offsite: bool, extra: &str) -> (PathBuf, PathBuf) {
    let state = std::env::temp_dir().join(common::unique(tag));
    let config = state.with_extension("yaml");
    let backup_storage = if offsite {
        let (host, port) = common::second_s3();
        format!(
            "  backupAddress: {host}\n  backupPort: {port}\n  backupAccessKeyID: {}\n  \
             backupSecretAccessKey: {}\n  backupBucketName: {OFFSITE_BUCKET}\n",
            cfg.minio.access_key_id,
            cfg.minio.secret_access_key.expose()
        )
    } else {
        format!("  backupBucketName: {}\n", cfg.minio.bucket_name)
    };
    let yaml = format!(
        "{}backup:\n  stateDir: {}\n  leaseTtlSeconds: {LEASE_TTL_SECONDS}\n{extra}",
        process::config_yaml(cfg, &backup_storage),
        state.display(),
    );
    std::fs::write(&config, yaml).unwrap();
    (state, config)
}

const OFFSITE_BUCKET: &str = "crash-offsite";

/// The test environment's config with the backups on the second S3.
fn offsite(cfg: &Config) -> Config {
    let (host, port) = common::second_s3();
    let mut c = cfg.clone();
    c.minio.backup_address = host;
    c.minio.backup_port = port;
    c.minio.backup_bucket_name = OFFSITE_BUCKET.into();
    c
}

/// Starts the binary on `config`, its log lines going to `log`; with its port.
async fn start_on_port(
    config: &Path,
    log: &Path,
) -> (ServerProcess, u16, BackupServiceClient<Channel>) {
    process::start_server_with(config, process::log_file(log), &[]).await
}

/// Starts the binary on `config`, its log lines going to `log`.
async fn start(
    config: &Path,
    log: &Path,
    envs: &[(&str, &str)],
) -> (ServerProcess, BackupServiceClient<Channel>) {
    let (server, _, client) =
        process::start_server_with(config, process::log_file(log), envs).await;
    (server, client)
}

/// The raw lease object `name` in `store` (under `backup/_leases/`): it was
/// taken, and then released on purpose (not merely expired). A reader's
/// lease object (its key is the job's own) goes once its job's end is
/// recorded, which may be between any two reads here.
async fn lease_released(store: &S3Bucket, name: &str) -> bool {
    let key = format!("backup/_leases/{name}");
    match store.read(&key).await {
        Err(milvus_backup::error::Error::NotFound { .. }) => name.starts_with("reads/"),
        Err(e) => panic!("reading {key}: {e}"),
        Ok(body) => {
            let record: serde_json::Value = serde_json::from_slice(&body).unwrap();
            record["released"] == serde_json::Value::Bool(true)
        }
    }
}

/// How a restore killed mid-import is set up.
#[derive(Clone, Copy, Debug, PartialEq)]
enum RestoreKill {
    /// Into a new collection (a suffix).
    NewCollection,
    /// Replacing an existing collection: the kill lands while the temporary copy imports.
    Replace,
    /// From a backup on another S3: the binlogs are staged in Milvus's bucket first.
    Staged,
}

impl RestoreKill {
    fn label(self) -> &'static str {
        match self {
            RestoreKill::NewCollection => "into a new collection",
            RestoreKill::Replace => "replacing a collection",
            RestoreKill::Staged => "staged from another S3",
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_backups_and_restores_are_resumed_by_the_restarted_server() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let store = S3Bucket::new(&cfg.minio.backup_bucket().unwrap()).unwrap();
    let offsite_cfg = offsite(&cfg);
    let offsite_store = S3Bucket::new(&offsite_cfg.minio.backup_bucket().unwrap()).unwrap();
    offsite_store.ensure_bucket(true).await.unwrap();
    let milvus_store = S3Bucket::new(&cfg.minio.milvus_bucket().unwrap()).unwrap();
    let spec = Spec::new(&common::unique("crash_src"));
    data::create(&m, &spec).await;
    for i in 0..4 {
        data::insert(&m, &spec, "", i * 200..(i + 1) * 200, 101).await;
        data::flush(&m, &spec.db, &spec.name).await;
    }
    data::index(&m, &spec.db, &spec.name).await;
    data::load(&m, &spec.db, &spec.name).await;
    let source = data::rows(&m, &spec, &spec.db, &spec.name, &[]).await;
    assert_eq!(source.len(), 800);

    // Unthrottled in-process servers on the same storages: the base backups
    // for the restores, and a second process's view of the storage.
    let local = common::TestServer::start(&cfg).await;
    let mut fast = local.client.clone();
    let base = common::unique("crash_base");
    let b = flows::backup_collections(&mut fast, &base, &[&spec.name]).await;
    let (files, bytes) = {
        let p = b.progress.unwrap();
        (p.files_total, p.bytes_total)
    };
    assert!(
        files >= 8,
        "too few objects to kill a copy between them: {files}"
    );
    let remote = common::TestServer::start(&offsite_cfg).await;
    let base_off = common::unique("crash_base_off");
    flows::backup_collections(&mut remote.client.clone(), &base_off, &[&spec.name]).await;

    // ---- Backups killed mid-copy. ----
    let rate = bytes as f64 / COPY_SECONDS / (1024.0 * 1024.0);
    let (state, config) = write_config(
        &cfg,
        "crash-backup",
        false,
        &format!("  rateLimitMiBps: {rate:.6}\n"),
    );
    let log = state.with_extension("log");
    let mut backup_kills = Vec::new();
    let mut lease_figure = String::new();
    let leases = milvus_backup::context::Context::from_config(&cfg)
        .unwrap()
        .leases();
    for (i, quarter) in BACKUP_KILL_QUARTERS.into_iter().enumerate() {
        let (mut child, mut client) = start(&config, &log, &[]).await;
        let name = common::unique(&format!("killed{i}"));
        let mut stream = client
            .create_backup(flows::backup_request(&name, &[&spec.name]))
            .await
            .unwrap()
            .into_inner();
        let (id, done, total, job_bytes) = loop {
            let b = stream
                .message()
                .await
                .unwrap()
                .expect("the backup's stream goes on until the kill")
                .backup
                .unwrap();
            assert!(
                b.state < pb::JobState::Succeeded as i32,
                "kill {i}: the backup ended before its kill point: {b:?}"
            );
            let p = b.progress.unwrap_or_default();
            if p.files_total > 0 && p.files_done * 4 >= p.files_total * quarter {
                break (b.id, p.files_done, p.files_total, p.bytes_total);
            }
        };
        child.kill();
        let killed = Instant::now();
        let held_at_kill = leases
            .holder(&format!("backup/{name}"))
            .await
            .unwrap()
            .is_some_and(|h| h.job == id);
        // Mid-copy: some objects were copied, not all, and no meta was written.
        assert!(0 < done && done < total, "kill {i}: {done}/{total}");
        let written = store.list(&format!("backup/{name}/")).await.unwrap();
        assert!(
            !written.is_empty() && (written.len() as u64) < total,
            "kill {i}: {} objects in the storage at the kill of {total}",
            written.len()
        );
        assert!(
            written.iter().all(|o| !o.key.contains("/meta/")),
            "kill {i}: meta written before the copies ended: {written:?}"
        );

        // The restarted server resumes the backup once the dead process's
        // lease on the name expires: it keeps what was copied and copies the
        // rest, then writes the meta.
        let at_kill: u64 = written
            .iter()
            .filter(|o| o.key.contains("/binlogs/"))
            .map(|o| o.size)
            .sum();
        let (mut child, port, mut client) = start_on_port(&config, &log).await;
        let deadline = Instant::now() + Duration::from_secs(120);
        let got = loop {
            let got = flows::get_backup(&mut client, &name).await;
            if got.state == pb::JobState::Succeeded as i32 || Instant::now() > deadline {
                break got;
            }
            assert_ne!(got.state, pb::JobState::Failed as i32, "kill {i}: {got:?}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        let resumed_after = killed.elapsed();
        assert_eq!(
            got.state,
            pb::JobState::Succeeded as i32,
            "kill {i}: resumed to its end: {got:?}"
        );
        assert_eq!(got.id, id, "kill {i}: the same job, resumed");
        flows::assert_verifies(&mut client, &name, &name).await;
        let copied = common::curl::copied_bytes(port);
        let remainder = job_bytes - at_kill;
        assert!(
            copied as f64 <= remainder as f64 * 1.1,
            "kill {i}: the resumed job copied {copied} bytes; {remainder} were left at the kill"
        );
        if i == 0 {
            assert!(
                held_at_kill,
                "the dead job held its name's lease at the kill"
            );
            let restored = format!("{}_resumed", spec.name);
            flows::restore(
                &mut client,
                flows::restore_loaded_request(&name, "_resumed"),
            )
            .await;
            let rows = data::rows(&m, &spec, &spec.db, &restored, &[]).await;
            data::assert_rows_equal("restored from the resumed backup", &source, &rows);
            data::drop_if_exists(&m, &spec.db, &restored).await;
            lease_figure = format!(
                "a killed backup resumed by the restarted server {:.1} s after the kill \
                 (lease TTL {LEASE_TTL_SECONDS} s), verified and restored row for row",
                resumed_after.as_secs_f64()
            );
        }
        child.kill();
        fast.delete_backup(pb::DeleteBackupRequest {
            name: name.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
        backup_kills.push(format!(
            "{done}/{total} files ({} objects, {at_kill} of {job_bytes} bytes) at the kill; \
             {copied} bytes copied after the restart",
            written.len()
        ));
    }
    let _ = std::fs::remove_dir_all(&state);
    let _ = std::fs::remove_file(&config);
    let _ = std::fs::remove_file(&log);

    // ---- Restores killed mid-import. ----
    let victim = Spec::new(&common::unique("crash_victim"));
    data::create(&m, &victim).await;
    data::insert(&m, &victim, "", 0..50, 77).await;
    data::flush(&m, &victim.db, &victim.name).await;
    data::index(&m, &victim.db, &victim.name).await;
    data::load(&m, &victim.db, &victim.name).await;
    let victim_id = m.collection_id(&victim.db, &victim.name).await.unwrap();
    let mut restore_kills = Vec::new();
    let mut staging_removed = false;
    for (i, kind) in [
        RestoreKill::NewCollection,
        RestoreKill::Replace,
        RestoreKill::Staged,
    ]
    .into_iter()
    .enumerate()
    {
        let staged = kind == RestoreKill::Staged;
        let (state, config) = write_config(&cfg, "crash-restore", staged, "");
        let log = state.with_extension("log");
        let (mut child, mut client) = start(
            &config,
            &log,
            &[("MILVUS_BACKUP_FAILPOINTS", "restore.importing")],
        )
        .await;
        let (backup, leases_in) = if staged {
            (&base_off, &offsite_store)
        } else {
            (&base, &store)
        };
        let mut req = pb::RestoreRequest {
            backup_name: backup.clone(),
            restore_index: true,
            load: true,
            ..Default::default()
        };
        let target = if kind == RestoreKill::Replace {
            req.collection_renames = [(spec.name.clone(), victim.name.clone())].into();
            req.drop_existing_collections = true;
            victim.name.clone()
        } else {
            req.collection_suffix = format!("_k{i}");
            format!("{}_k{i}", spec.name)
        };
        let mut stream = client
            .restore(req)
            .await
            .expect("restore accepted")
            .into_inner();
        let id = stream.message().await.unwrap().unwrap().restore.unwrap().id;
        process::wait_for_log(&log, "failpoint reached", Duration::from_secs(180)).await;

        // Mid-import: the job is in its import phase with nothing imported yet,
        // and Milvus has the imports into the collection being filled.
        let job = get_restore(&mut client, &id).await;
        assert_eq!(job.state, pb::JobState::Running as i32, "{job:?}");
        assert_eq!(job.phase, "import", "{job:?}");
        let p = job.progress.unwrap();
        assert!(p.files_done == 0 && p.files_total > 0, "{p:?}");
        let filling = if kind == RestoreKill::Replace {
            let temp = job.collections[0].temp_collection_name.clone();
            assert!(
                !temp.is_empty(),
                "a replace fills a temporary copy: {job:?}"
            );
            temp
        } else {
            target.clone()
        };
        let imports = m.collection_imports(&spec.db, &filling).await.unwrap();
        assert!(!imports.is_empty(), "no import into {filling} at the kill");
        let phases: Vec<String> = imports
            .iter()
            .map(|t| format!("{:?}", t.phase).to_lowercase())
            .collect();
        let staging = format!("restore-temp-{id}/");
        if staged {
            assert!(
                !milvus_store.list(&staging).await.unwrap().is_empty(),
                "the binlogs are staged before the import"
            );
        }
        child.kill();

        let (mut child, mut client) = start(&config, &log, &[]).await;
        // The restarted server resumes the job under the same id once the
        // dead process's leases expire: it follows the imports it recorded.
        let job = tokio::time::timeout(
            Duration::from_secs(300),
            flows::watch_restore_to_end(&mut client, &id),
        )
        .await
        .unwrap_or_else(|_| panic!("{kind:?}: the restore did not end"));
        assert_eq!(
            job.state,
            pb::JobState::Succeeded as i32,
            "{kind:?}: {job:?}"
        );
        assert_eq!(job.id, id, "the same job, resumed");
        let resumed = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .any(|l| l.contains("took over a restore whose server died") && l.contains(&id));
        assert!(resumed, "{kind:?}: resumed by the restarted server");
        let restored = data::rows(&m, &spec, &spec.db, &target, &[]).await;
        data::assert_rows_equal(&format!("{kind:?}: restored"), &source, &restored);
        // No import was asked twice.
        let after = m.collection_imports(&spec.db, &target).await.unwrap();
        assert_eq!(after.len(), imports.len(), "{kind:?}: {after:?}");
        assert!(!m.has_collection(&spec.db, &filling).await.unwrap() || filling == target);
        let target_lease = format!("target/{}.{target}", spec.db);
        let reads_lease = format!("reads/{backup}/{id}");
        eventually(
            &format!("{kind:?}: the resumed job released its leases"),
            Duration::from_secs(30),
            || async {
                lease_released(leases_in, &target_lease).await
                    && lease_released(leases_in, &reads_lease).await
            },
        )
        .await;
        if staged {
            assert!(
                milvus_store.list(&staging).await.unwrap().is_empty(),
                "the staged objects under {staging} are removed at the end"
            );
            staging_removed = true;
        }
        if kind == RestoreKill::Replace {
            assert_ne!(
                m.collection_id(&victim.db, &victim.name).await.unwrap(),
                victim_id,
                "the replaced collection is the restored copy"
            );
        }
        child.kill();
        restore_kills.push(format!(
            "{} (Milvus's imports at the kill: {}; after: {})",
            kind.label(),
            phases.join(", "),
            imports.len()
        ));
        let _ = std::fs::remove_dir_all(&state);
        let _ = std::fs::remove_file(&config);
        let _ = std::fs::remove_file(&log);
    }

    // Nothing that existed before is lost.
    let after = data::rows(&m, &spec, &spec.db, &spec.name, &[]).await;
    data::assert_rows_equal("source after the kills", &source, &after);
    flows::assert_verifies(&mut fast, &base, &base).await;
    flows::assert_verifies(&mut remote.client.clone(), &base_off, &base_off).await;

    assert_eq!(backup_kills.len(), BACKUP_KILL_QUARTERS.len());
    assert_eq!(restore_kills.len(), 3);
    figures::publish(
        "crash_safety",
        &[
            format!(
                "backup kills mid-copy: {n} of {n} resumed by the restarted server, \
                 verified, copying only the remainder ({})",
                backup_kills.join("; "),
                n = backup_kills.len()
            ),
            format!(
                "restore kills mid-import: {n} of {n} resumed by the restarted server under the \
                 same id, rows equal, no import asked twice, leases released ({})",
                restore_kills.join("; "),
                n = restore_kills.len()
            ),
            lease_figure,
            format!(
                "staged restore killed mid-import: its staged objects removed at its end: {}",
                if staging_removed { "yes" } else { "not run" }
            ),
        ],
    );

    for name in [&base] {
        let _ = fast
            .delete_backup(pb::DeleteBackupRequest {
                name: name.clone(),
                ..Default::default()
            })
            .await;
    }
    let _ = remote
        .client
        .clone()
        .delete_backup(pb::DeleteBackupRequest {
            name: base_off.clone(),
            ..Default::default()
        })
        .await;
    data::drop_if_exists(&m, &victim.db, &victim.name).await;
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    local.handle.stop().await.unwrap();
    remote.handle.stop().await.unwrap();
}
