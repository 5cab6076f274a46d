//! Several servers on one backup storage, on the real Milvus 2.3.5 and S3:
//! any replica answers for any job, whichever runs it. Three server processes
//! share one bucket (each with its own port and state directory); calls go to
//! one replica after the other.

mod common;
#[path = "common/figures.rs"]
mod figures;

use std::time::Duration;

use common::flows::{self, eventually};
use common::hello;
use common::process::Proc;
use milvus_backup::api::proto as pb;
use milvus_backup::milvus::MilvusApi;

const FIELDS: &[&str] = &["pk", "random", "var", "embeddings"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn any_replica_answers_for_any_job_and_a_cancel_reaches_its_owner() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let coll = common::unique("replica_src");
    hello::create(&m, &coll, 3000, 3, 31).await;
    let rows = hello::rows(&m, "default", &coll, "pk >= 0", FIELDS).await;
    let cx_target = format!("default.{coll}_cx");

    // A is slowed (a backup takes seconds) and pauses the import of one
    // restore target, so that its jobs are seen running from B and C.
    let a = Proc::start(
        &cfg,
        "replica-a",
        "  rateLimitMiBps: 0.02\n",
        Some(&format!("restore.importing:{cx_target}")),
    )
    .await;
    let b = Proc::start(&cfg, "replica-b", "", None).await;
    let c = Proc::start(&cfg, "replica-c", "", None).await;
    let (mut on_a, mut on_b, mut on_c) = (a.client.clone(), b.client.clone(), c.client.clone());

    // CreateBackup on A, WatchBackup on B, GetBackup and ListBackups on C.
    let name = common::unique("replica_b");
    let mut created = on_a
        .create_backup(flows::backup_request(&name, &[&coll]))
        .await
        .expect("CreateBackup on A")
        .into_inner();
    created.message().await.unwrap().expect("a first snapshot");
    drop(created);
    let watched: Vec<pb::Backup> = flows::drain(
        on_b.watch_backup(pb::WatchBackupRequest { name: name.clone() })
            .await
            .expect("WatchBackup on B")
            .into_inner(),
    )
    .await
    .into_iter()
    .filter_map(|r| r.backup)
    .collect();
    let first = watched.first().expect("B's first snapshot");
    let last = watched.last().unwrap();
    assert!(
        first.state != pb::JobState::Succeeded as i32,
        "B followed the running job, not only its end: {first:?}"
    );
    assert_eq!(last.state, pb::JobState::Succeeded as i32, "{last:?}");
    let got = flows::get_backup(&mut on_c, &name).await;
    assert_eq!((got.state, got.id.clone()), (last.state, last.id.clone()));
    assert!(
        flows::listed(&mut on_c)
            .await
            .iter()
            .any(|b| b.name == name)
    );

    // Restore on A, WatchRestore on B, GetRestore on C.
    let id = flows::start_restore(&mut on_a, flows::restore_loaded_request(&name, "_r1")).await;
    let end = flows::watch_restore_to_end(&mut on_b, &id).await;
    assert_eq!(end.state, pb::JobState::Succeeded as i32, "{end:?}");
    assert_eq!(flows::get_restore(&mut on_c, &id).await.state, end.state);
    let restored = hello::rows(&m, "default", &format!("{coll}_r1"), "pk >= 0", FIELDS).await;
    hello::assert_rows_equal(&rows, &restored);

    // A restore on A, cancelled through C: A stops it and drops what it made.
    let id = flows::start_restore(&mut on_a, flows::restore_request(&name, "_cx")).await;
    a.wait_paused(Duration::from_secs(120)).await;
    let asked = std::time::Instant::now();
    on_c.cancel_restore(pb::CancelRestoreRequest { id: id.clone() })
        .await
        .expect("CancelRestore on C");
    let end = flows::watch_restore_to_end(&mut on_b, &id).await;
    let took = asked.elapsed();
    assert_eq!(end.state, pb::JobState::Cancelled as i32, "{end:?}");
    eventually(
        "the cancelled restore's collection is dropped",
        Duration::from_secs(60),
        || async {
            !m.has_collection("default", &format!("{coll}_cx"))
                .await
                .unwrap()
        },
    )
    .await;
    // A cancel of a job that ended is refused, from any replica.
    let refused = on_b
        .cancel_restore(pb::CancelRestoreRequest { id })
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    figures::publish(
        "any_replica_answers_for_any_job_and_a_cancel_reaches_its_owner",
        &[format!(
            "a cancel sent to replica C stopped the restore on replica A; B saw the end {:.1} s after the cancel",
            took.as_secs_f64()
        )],
    );

    for p in [a, b, c] {
        p.finish();
    }
    for t in [coll.clone(), format!("{coll}_r1")] {
        hello::drop_if_exists(&m, "default", &t).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_traceparent_is_carried_into_the_jobs_log_lines_and_record() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let coll = common::unique("traced_src");
    hello::create(&m, &coll, 500, 1, 41).await;
    let (state, config) = common::process::config_for(&cfg, "traced");
    let log = state.with_extension("jsonlog");
    let (mut server, _, mut client) = common::process::start_server_args(
        &config,
        common::process::log_file(&log),
        &[],
        &["--log-format", "json"],
    )
    .await;

    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let name = common::unique("traced_b");
    let mut req = tonic::Request::new(flows::backup_request(&name, &[&coll]));
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{trace}-00f067aa0ba902b7-01").parse().unwrap(),
    );
    let last = flows::last_backup(client.create_backup(req).await.unwrap().into_inner()).await;
    assert_eq!(last.state, pb::JobState::Succeeded as i32, "{last:?}");

    // Every log line about the job carries its id and the trace id.
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|l: &serde_json::Value| l["span"]["id"] == last.id.as_str())
        .collect();
    assert!(lines.len() >= 3, "the job's log lines: {text}");
    assert!(
        lines.iter().all(|l| l["span"]["trace_id"] == trace),
        "{lines:?}"
    );
    // So does the job's record (the shared one, read by any replica).
    let record = common::TestServer::start(&cfg)
        .await
        .ctx
        .catalog
        .store()
        .read(&format!("backup/_jobs/backups/{name}.json"))
        .await
        .unwrap();
    let record: serde_json::Value = serde_json::from_slice(&record).unwrap();
    assert_eq!(record["trace_id"], trace, "{record}");

    // A verification and a delete carry their callers' traces too.
    let traced = |trace: &str| {
        format!("00-{trace}-00f067aa0ba902b7-01")
            .parse::<tonic::metadata::MetadataValue<_>>()
            .unwrap()
    };
    let (verify_trace, delete_trace) = (
        "5bf92f3577b34da6a3ce929d0e0e4737",
        "6bf92f3577b34da6a3ce929d0e0e4738",
    );
    let mut req = tonic::Request::new(pb::VerifyBackupRequest {
        name: name.clone(),
        detached: false,
    });
    req.metadata_mut()
        .insert("traceparent", traced(verify_trace));
    let mut stream = client.verify_backup(req).await.unwrap().into_inner();
    while stream.message().await.unwrap().is_some() {}
    let mut req = tonic::Request::new(pb::DeleteBackupRequest {
        name: name.clone(),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("traceparent", traced(delete_trace));
    let deleted = client.delete_backup(req).await.unwrap().into_inner();
    let delete_id = deleted.job.expect("the delete job").id;
    let text = std::fs::read_to_string(&log).unwrap();
    for (kind, trace) in [("verify", verify_trace), ("delete", delete_trace)] {
        let lines: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|l: &serde_json::Value| l["span"]["kind"] == kind)
            .collect();
        assert!(lines.len() >= 2, "the {kind} job's log lines: {text}");
        assert!(
            lines.iter().all(|l| l["span"]["trace_id"] == trace),
            "{kind}: {lines:?}"
        );
    }
    let record = common::TestServer::start(&cfg)
        .await
        .ctx
        .catalog
        .store()
        .read(&format!("backup/_jobs/deletes/{delete_id}.json"))
        .await
        .unwrap();
    let record: serde_json::Value = serde_json::from_slice(&record).unwrap();
    assert_eq!(record["trace_id"], delete_trace, "{record}");

    server.kill();
    let _ = std::fs::remove_dir_all(&state);
    hello::drop_if_exists(&m, "default", &coll).await;
}

/// The owner of a backup is SIGKILLed mid-copy; of two live replicas exactly
/// one takes the job over once the owner's lease expires (3 s here), keeps
/// what was copied, copies the rest, and the backup verifies and restores.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_whose_server_died_is_finished_by_another_replica() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let coll = common::unique("takeover_src");
    hello::create(&m, &coll, 3000, 3, 37).await;
    let rows = hello::rows(&m, "default", &coll, "pk >= 0", FIELDS).await;
    let store = common::process::rooted_bucket(&cfg);

    // A backup root of its own: no other test's server takes this job over.
    let root = common::unique("takeover_root");
    let mut owner = Proc::start_rooted(&cfg, "owner", &root, "  rateLimitMiBps: 0.05\n").await;
    let b = Proc::start_rooted(&cfg, "taker-b", &root, "").await;
    let c = Proc::start_rooted(&cfg, "taker-c", &root, "").await;
    let name = common::unique("taken_over");
    let mut stream = owner
        .client
        .clone()
        .create_backup(flows::backup_request(&name, &[&coll]))
        .await
        .unwrap()
        .into_inner();
    let (id, total_bytes) = loop {
        let s = stream
            .message()
            .await
            .unwrap()
            .expect("snapshots until the kill");
        let b = s.backup.unwrap();
        let p = b.progress.unwrap_or_default();
        assert!(
            b.state < pb::JobState::Succeeded as i32,
            "ended before the kill: {b:?}"
        );
        if p.files_total > 0 && p.files_done * 3 >= p.files_total {
            break (b.id, p.bytes_total);
        }
    };
    owner.kill();
    let at_kill: u64 = store
        .list(&format!("{root}/{name}/binlogs/"))
        .await
        .unwrap()
        .iter()
        .map(|o| o.size)
        .sum();
    assert!(
        at_kill > 0 && at_kill < total_bytes,
        "mid-copy: {at_kill} of {total_bytes}"
    );

    let mut on_b = b.client.clone();
    let end = flows::watch_backup_to_end(&mut on_b, &name, Duration::from_secs(120)).await;
    assert_eq!(end.state, pb::JobState::Succeeded as i32, "{end:?}");
    assert_eq!(end.id, id, "the same job, resumed");
    flows::assert_verifies(&mut on_b, &name, "taken over").await;
    let took = |p: &Proc| {
        std::fs::read_to_string(&p.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("took over a backup whose server died") && l.contains(&name))
            .count()
    };
    assert_eq!(took(&b) + took(&c), 1, "exactly one replica took it over");
    let copied = common::curl::copied_bytes(b.port) + common::curl::copied_bytes(c.port);
    let remainder = total_bytes - at_kill;
    assert!(
        copied as f64 <= remainder as f64 * 1.1,
        "copied {copied} bytes after the takeover; {remainder} were left at the kill"
    );
    flows::restore(&mut on_b, flows::restore_loaded_request(&name, "_to")).await;
    let restored = hello::rows(&m, "default", &format!("{coll}_to"), "pk >= 0", FIELDS).await;
    hello::assert_rows_equal(&rows, &restored);
    figures::publish(
        "a_backup_whose_server_died_is_finished_by_another_replica",
        &[format!(
            "owner SIGKILLed with {at_kill} of {total_bytes} bytes copied; one of two replicas \
             took the backup over and copied {copied} bytes ({remainder} were left), verified, \
             restored row for row"
        )],
    );
    for p in [b, c] {
        p.finish();
    }
    owner.finish();
    hello::drop_if_exists(&m, "default", &coll).await;
    hello::drop_if_exists(&m, "default", &format!("{coll}_to")).await;
}

/// The owner of a restore of a collection with three partitions is SIGKILLed
/// right after Milvus accepted the first partition's import, before the
/// owner recorded Milvus's task: the ambiguous step. Another replica takes
/// the job over, finds that task in Milvus's list and follows it, imports
/// the two partitions not yet asked for, and ends SUCCEEDED under the same
/// id: exactly one import task per partition, and the rows equal the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restore_whose_server_died_is_finished_by_another_replica() {
    use common::data::{self, Spec};
    use milvus_backup::jobs::RestoreSnapshot;
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("rtake_src"));
    data::create(&m, &spec).await;
    let partitions = ["_default", "p1", "p2"];
    for p in &partitions[1..] {
        data::create_partition(&m, &spec, p).await;
    }
    for (i, p) in partitions.iter().enumerate() {
        let start = i as i64 * 300;
        data::insert(&m, &spec, p, start..start + 200 + 50 * i as i64, 43).await;
    }
    data::flush(&m, &spec.db, &spec.name).await;
    data::index(&m, &spec.db, &spec.name).await;
    data::load(&m, &spec.db, &spec.name).await;
    let source = data::rows(&m, &spec, &spec.db, &spec.name, &[]).await;
    let store = common::process::rooted_bucket(&cfg);

    // A backup root of its own: no other test's server takes this job over.
    let root = common::unique("rtake_root");
    let mut owner =
        Proc::start_rooted_paused(&cfg, "rowner", &root, "", Some("restore.import_asked")).await;
    let b = Proc::start_rooted(&cfg, "rtaker-b", &root, "").await;
    let c = Proc::start_rooted(&cfg, "rtaker-c", &root, "").await;
    let name = common::unique("rtake_b");
    flows::backup_collections(&mut owner.client, &name, &[&spec.name]).await;
    let target = format!("{}_rt", spec.name);
    let id = flows::start_restore(
        &mut owner.client,
        flows::restore_loaded_request(&name, "_rt"),
    )
    .await;
    owner.wait_paused(Duration::from_secs(180)).await;

    // At the kill: Milvus has one import into the target; the record names
    // one import as asked for, without its task.
    let asked = m.collection_imports(&spec.db, &target).await.unwrap();
    assert_eq!(asked.len(), 1, "Milvus's imports at the kill: {asked:?}");
    let record: RestoreSnapshot = serde_json::from_slice(
        &store
            .read(&format!("{root}/_jobs/restores/{id}.json"))
            .await
            .unwrap(),
    )
    .unwrap();
    let recorded = &record.collections[0].imports;
    assert!(
        recorded.len() == 1 && recorded[0].tasks.is_empty() && !recorded[0].done,
        "{recorded:?}"
    );
    owner.kill();

    let end = flows::watch_restore_to_end(&mut c.client.clone(), &id).await;
    assert_eq!(end.state, pb::JobState::Succeeded as i32, "{end:?}");
    let count = |p: &Proc, what: &str| {
        std::fs::read_to_string(&p.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(what) && l.contains(&id))
            .count()
    };
    let took = "took over a restore whose server died";
    assert_eq!(
        count(&b, took) + count(&c, took),
        1,
        "one replica took it over"
    );
    let followed = "Milvus had the import the job's previous server asked for";
    assert_eq!(
        count(&b, followed) + count(&c, followed),
        1,
        "the asked import is followed"
    );

    // One import task per partition: none asked twice, none skipped.
    let tasks = m.collection_imports(&spec.db, &target).await.unwrap();
    let mut per_partition: Vec<&str> = tasks.iter().map(|t| t.partition.as_str()).collect();
    per_partition.sort();
    assert_eq!(per_partition, partitions, "{tasks:?}");
    let restored = data::rows(&m, &spec, &spec.db, &target, &[]).await;
    data::assert_rows_equal("restored after the takeover", &source, &restored);
    for p in partitions {
        let want = data::rows(&m, &spec, &spec.db, &spec.name, &[p]).await;
        let got = data::rows(&m, &spec, &spec.db, &target, &[p]).await;
        data::assert_rows_equal(&format!("partition {p}"), &want, &got);
    }
    figures::publish(
        "a_restore_whose_server_died_is_finished_by_another_replica",
        &[format!(
            "owner SIGKILLed after Milvus accepted the first of 3 partition imports, before \
             recording it; one of two replicas took the restore over, followed that task and \
             imported the other 2: {} import tasks ({}), {} rows equal to the source",
            tasks.len(),
            per_partition.join(", "),
            restored.len()
        )],
    );
    for p in [b, c] {
        p.finish();
    }
    owner.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    data::drop_if_exists(&m, &spec.db, &target).await;
}

/// The owner of a detached delete is SIGKILLed after the backup's commit
/// point is gone and before its objects are. Another replica resumes the
/// delete under the same id: WatchDelete on it ends SUCCEEDED, and the
/// backup's folder is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_whose_server_died_is_finished_by_another_replica() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let coll = common::unique("dtake_src");
    hello::create(&m, &coll, 500, 2, 47).await;
    let store = common::process::rooted_bucket(&cfg);
    // A backup root of its own: no other test's server takes this job over.
    let root = common::unique("dtake_root");
    let mut owner =
        Proc::start_rooted_paused(&cfg, "downer", &root, "", Some("delete.after_commit_point"))
            .await;
    let b = Proc::start_rooted(&cfg, "dtaker", &root, "").await;
    let name = common::unique("dtake_b");
    flows::backup_collections(&mut owner.client, &name, &[&coll]).await;
    let id = flows::detached_delete(&mut owner.client, &name).await.id;
    owner.wait_paused(Duration::from_secs(60)).await;
    let folder = format!("{root}/{name}/");
    let at_kill = store.list(&folder).await.unwrap().len();
    assert!(at_kill > 0, "objects left at the kill");
    owner.kill();

    let mut on_b = b.client.clone();
    let end = flows::watched_delete_end(&mut on_b, &id).await;
    assert_eq!(end.state, pb::JobState::Succeeded as i32, "{end:?}");
    assert_eq!(end.id, id, "the same job, resumed");
    assert!(
        store.list(&folder).await.unwrap().is_empty(),
        "the folder is emptied"
    );
    let took = std::fs::read_to_string(&b.log)
        .unwrap()
        .lines()
        .any(|l| l.contains("took over a delete whose server died") && l.contains(&id));
    assert!(took, "the other replica took the delete over");
    let err = on_b
        .get_backup(pb::GetBackupRequest {
            name: name.clone(),
            ..Default::default()
        })
        .await
        .expect_err("the backup is gone");
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    figures::publish(
        "a_delete_whose_server_died_is_finished_by_another_replica",
        &[format!(
            "delete owner SIGKILLed after the commit point with {at_kill} objects left; the \
             other replica resumed it under the same id and emptied the folder"
        )],
    );
    b.finish();
    owner.finish();
    hello::drop_if_exists(&m, "default", &coll).await;
}

/// Orphaned backups (a shared record RUNNING, its name's lease expired, as a
/// server that died leaves them) are raced for by three live replicas, 20 of
/// them at once: exactly one replica takes each over, and each ends
/// SUCCEEDED under its own job id.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_race_for_orphaned_backups_and_one_wins_each() {
    use milvus_backup::jobs::{BackupOrder, BackupSnapshot, JobState, LeaseRecord};
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let coll = common::unique("race_src");
    hello::create(&m, &coll, 200, 1, 41).await;
    let store = common::process::rooted_bucket(&cfg);
    // A backup root of its own: only these three servers see the orphans.
    let root = common::unique("race_root");
    let replicas = [
        Proc::start_rooted(&cfg, "race-a", &root, "").await,
        Proc::start_rooted(&cfg, "race-b", &root, "").await,
        Proc::start_rooted(&cfg, "race-c", &root, "").await,
    ];
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut orphans = Vec::new();
    for i in 0..20 {
        let name = common::unique(&format!("orphan{i}"));
        let id = uuid::Uuid::new_v4().to_string();
        let mut record = BackupSnapshot::pending(id.clone(), name.clone(), false);
        record.state = JobState::Running;
        record.order = Some(BackupOrder {
            collections: vec![format!("default.{coll}")],
            ..Default::default()
        });
        let lease = LeaseRecord {
            job: id.clone(),
            purpose: "create".into(),
            process: "dead-host:1".into(),
            nonce: uuid::Uuid::new_v4().to_string(),
            expires_at_ms: now_ms - 1000,
            released: false,
        };
        store
            .write(
                &format!("{root}/_leases/backup/{name}"),
                serde_json::to_vec(&lease).unwrap().into(),
            )
            .await
            .unwrap();
        store
            .write(
                &format!("{root}/_jobs/backups/{name}.json"),
                serde_json::to_vec(&record).unwrap().into(),
            )
            .await
            .unwrap();
        orphans.push((name, id));
    }
    let mut client = replicas[0].client.clone();
    for (name, id) in &orphans {
        let end = flows::watch_backup_to_end(&mut client, name, Duration::from_secs(180)).await;
        assert_eq!(end.state, pb::JobState::Succeeded as i32, "{name}: {end:?}");
        assert_eq!(&end.id, id, "{name}: resumed under its own id");
    }
    let logs: Vec<String> = replicas
        .iter()
        .map(|p| std::fs::read_to_string(&p.log).unwrap_or_default())
        .collect();
    let mut winners = [0usize; 3];
    for (name, _) in &orphans {
        let takers: Vec<usize> = (0..3)
            .filter(|&r| {
                logs[r].lines().any(|l| {
                    l.contains("took over a backup whose server died") && l.contains(name.as_str())
                })
            })
            .collect();
        assert_eq!(takers.len(), 1, "{name}: taken over by replicas {takers:?}");
        winners[takers[0]] += 1;
    }
    flows::assert_verifies(&mut client, &orphans[0].0, "an orphan taken over").await;
    for (name, _) in &orphans {
        flows::delete_eventually(&client, name, "clean up").await;
    }
    figures::publish(
        "three_replicas_race_for_orphaned_backups_and_one_wins_each",
        &[format!(
            "20 orphaned backups raced for by 3 replicas: each taken over exactly once \
             (wins per replica {winners:?}), all SUCCEEDED under their own ids"
        )],
    );
    for p in replicas {
        p.finish();
    }
    hello::drop_if_exists(&m, "default", &coll).await;
}
