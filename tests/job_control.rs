//! Control of jobs: cancellation (nothing left behind), idempotent retries by
//! request_id, a limit on concurrent jobs, no race on one backup name, and job
//! records that answer after a restart (each request id its own, also ids
//! that differ only in punctuation and one of 256 bytes); a backup whose commit point landed
//! though every answer to its write was lost ends SUCCEEDED; a delete refused
//! before it removed anything changes nothing; the same request sent twice at
//! once is one job. Against the
//! real Milvus 2.3.5 and S3.

mod common;

use common::data::{self, Spec};
use common::flows::{self, backup_request, last_backup, last_restore};
use common::process;
use milvus_backup::api::proto as pb;
use milvus_backup::milvus::MilvusApi;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelled_jobs_leave_nothing_behind() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client().await;
    let spec = data::three_segments(&m, "cancel_src").await;

    // Cancel a backup right after it started.
    let name = common::unique("cancelled");
    let mut stream = client
        .create_backup(backup_request(&name, &[&spec.name]))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap().backup.unwrap();
    assert!(first.state != pb::JobState::Succeeded as i32);
    client
        .cancel_backup(pb::CancelBackupRequest { name: name.clone() })
        .await
        .unwrap();
    let end = last_backup(stream).await;
    assert_eq!(end.state, pb::JobState::Cancelled as i32, "{end:?}");
    let store = server.ctx.catalog.store().clone();
    assert!(
        store
            .list(&format!("backup/{name}/"))
            .await
            .unwrap()
            .is_empty(),
        "objects left behind"
    );
    let err = client
        .cancel_backup(pb::CancelBackupRequest {
            name: "never_ran_x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Cancel a restore of two collections right after it started: what it
    // created is dropped, and no collection stays PENDING in the ended job
    // (one it never started says so; on the code before, it stayed PENDING).
    let second = data::three_segments(&m, "cancel_two").await;
    let done = common::unique("to_restore");
    flows::backup_collections(&mut client, &done, &[&spec.name, &second.name]).await;
    let mut stream = client
        .restore(pb::RestoreRequest {
            backup_name: done.clone(),
            collection_suffix: "_c".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap().restore.unwrap();
    client
        .cancel_restore(pb::CancelRestoreRequest {
            id: first.id.clone(),
        })
        .await
        .unwrap();
    let end = last_restore(stream).await;
    assert_eq!(end.state, pb::JobState::Cancelled as i32, "{end:?}");
    assert_eq!(end.collections.len(), 2, "{end:?}");
    for c in &end.collections {
        assert_eq!(c.state, pb::JobState::Cancelled as i32, "{c:?}");
    }
    let last = end.collections.last().unwrap();
    assert!(
        last.error_message
            .contains("not started: the job ended before it"),
        "{last:?}"
    );
    // In the Go tool's REST shape, a task its job never reached is INITIAL (0).
    let url = format!(
        "http://{}/api/v1/get_restore?id={}",
        server.handle.addr, end.id
    );
    let (_, got) = tokio::task::block_in_place(|| common::curl::json(&[&url]));
    let tasks = got["data"]["collection_restore_tasks"].as_array().unwrap();
    assert_eq!(tasks.last().unwrap()["state_code"], 0, "{got}");
    for s in [&spec, &second] {
        assert!(
            !m.has_collection(&s.db, &format!("{}_c", s.name))
                .await
                .unwrap(),
            "created collection left behind"
        );
        data::drop_if_exists(&m, &s.db, &s.name).await;
    }
    server.handle.stop().await.unwrap();
}

/// A cancel that lands after the backup wrote its commit point
/// (`backup.committed`, its bases not yet let go nor its entry published)
/// comes too late: the backup is complete, so the job ends SUCCEEDED, and
/// the backup is listed and verifies. The code before ended it CANCELLED
/// while the complete backup stayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_past_the_commit_point_leaves_a_succeeded_backup() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = data::three_segments(&m, "late_cancel_src").await;
    let root = common::unique("late_cancel_root");
    let (mut server, go) =
        flows::held_rooted_at(&cfg, "late-cancel", &root, &["backup.committed"]).await;
    let release = &go[0];
    let name = common::unique("late_cancel");
    let stream = server
        .client
        .create_backup(backup_request(&name, &[&spec.name]))
        .await
        .expect("CreateBackup accepted")
        .into_inner();
    server.wait_paused(Duration::from_secs(120)).await;
    server
        .client
        .cancel_backup(pb::CancelBackupRequest { name: name.clone() })
        .await
        .expect("cancel accepted while the job runs");
    tokio::time::sleep(Duration::from_millis(500)).await;
    std::fs::write(release, b"").unwrap();

    let end = tokio::time::timeout(Duration::from_secs(120), last_backup(stream))
        .await
        .expect("the backup ends");
    assert_eq!(end.state, pb::JobState::Succeeded as i32, "{end:?}");
    assert!(end.size_bytes > 0, "its size is known: {end:?}");
    let got = flows::get_backup(&mut server.client, &name).await;
    assert_eq!(got.state, pb::JobState::Succeeded as i32, "{got:?}");
    assert_eq!(got.collections.len(), 1, "{got:?}");
    flows::assert_verifies(&mut server.client, &name, "late cancel").await;

    let _ = std::fs::remove_file(release);
    server.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A backup paused past its commit point, its job still holding the name:
/// another server already reads it as SUCCEEDED, and a VerifyBackup and a
/// restore asked there wait for the job to end (a moment later) instead of
/// being refused ABORTED; both then succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_read_as_complete_is_verified_and_restored_while_its_job_ends() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = data::three_segments(&m, "ending_src").await;
    data::index(&m, &spec.db, &spec.name).await;
    let root = common::unique("ending_root");
    let (mut owner, go) =
        flows::held_rooted_at(&cfg, "ending-owner", &root, &["backup.committed"]).await;
    let release = &go[0];
    let mut reader = process::Proc::start_rooted(&cfg, "ending-reader", &root, "").await;
    let name = common::unique("ending");
    let stream = owner
        .client
        .create_backup(backup_request(&name, &[&spec.name]))
        .await
        .expect("CreateBackup accepted")
        .into_inner();
    owner.wait_paused(Duration::from_secs(120)).await;
    let got = flows::get_backup(&mut reader.client, &name).await;
    assert_eq!(got.state, pb::JobState::Succeeded as i32, "{got:?}");

    let verify = tokio::spawn({
        let mut c = reader.client.clone();
        let name = name.clone();
        async move { flows::last_message(flows::verify_stream(&mut c, &name).await).await }
    });
    let restore = tokio::spawn({
        let mut c = reader.client.clone();
        let req = flows::restore_request(&name, "_e");
        async move { flows::restore_job(&mut c, req).await }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!verify.is_finished(), "the verification waits for the job");
    std::fs::write(release, b"").unwrap();
    let end = tokio::time::timeout(Duration::from_secs(120), last_backup(stream))
        .await
        .expect("the backup ends");
    assert_eq!(end.state, pb::JobState::Succeeded as i32, "{end:?}");
    let verified = verify.await.unwrap().expect("verified, not refused");
    assert!(verified.is_some(), "a verification answer");
    let restored = restore.await.unwrap();
    assert_eq!(
        restored.state,
        pb::JobState::Succeeded as i32,
        "{restored:?}"
    );

    let _ = std::fs::remove_file(release);
    owner.finish();
    reader.finish();
    for name in [spec.name.clone(), format!("{}_e", spec.name)] {
        data::drop_if_exists(&m, &spec.db, &name).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retries_limits_races_and_restarts() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = data::three_segments(&m, "control_src").await;
    let state = std::env::temp_dir().join(common::unique("job-records"));
    let server = common::TestServer::start_with_records(&cfg, &state, 2).await;
    let mut client = server.client().await;

    // The same request_id twice is the same job.
    let name = common::unique("idem");
    let req = pb::CreateBackupRequest {
        backup_name: name.clone(),
        collection_names: vec![spec.name.clone()],
        request_id: common::unique("req"),
        ..Default::default()
    };
    let a = last_backup(
        client
            .create_backup(req.clone())
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    let b = last_backup(
        client
            .create_backup(req.clone())
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    assert_eq!((a.id.clone(), a.state), (b.id, b.state));
    let rreq = pb::RestoreRequest {
        backup_name: name.clone(),
        collection_suffix: "_idem".into(),
        request_id: common::unique("rreq"),
        ..Default::default()
    };
    let ra = last_restore(client.restore(rreq.clone()).await.unwrap().into_inner()).await;
    let rb = last_restore(client.restore(rreq.clone()).await.unwrap().into_inner()).await;
    assert_eq!(ra.id, rb.id);
    assert_eq!(ra.state, pb::JobState::Succeeded as i32);
    // The same request_id with other parameters is refused, naming it: never
    // the other job's answer (a backup not made, a restore not done).
    let other = pb::CreateBackupRequest {
        backup_name: common::unique("idem_other"),
        ..req.clone()
    };
    let err = client.create_backup(other.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains(&req.request_id), "{err:?}");
    let err = client
        .restore(pb::RestoreRequest {
            collection_suffix: "_idem2".into(),
            ..rreq
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    // A later job of the name (the backup deleted, then made again by
    // another request): a retry of the first request is refused naming both
    // jobs, never answered with the later one (it was, before).
    client
        .delete_backup(pb::DeleteBackupRequest {
            name: name.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let later = pb::CreateBackupRequest {
        request_id: common::unique("req_later"),
        ..req.clone()
    };
    let c = last_backup(client.create_backup(later).await.unwrap().into_inner()).await;
    assert_eq!(c.state, pb::JobState::Succeeded as i32, "{c:?}");
    let err = client.create_backup(req.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains(&a.id) && err.message().contains(&c.id),
        "{err:?}"
    );

    // Two jobs on one name: one runs, the other is refused.
    let racy = common::unique("racy");
    let mut c1 = server.client().await;
    let mut c2 = server.client().await;
    let mk = |n: &str| backup_request(n, &[&spec.name]);
    let (r1, r2) = tokio::join!(c1.create_backup(mk(&racy)), c2.create_backup(mk(&racy)));
    let outcomes = [r1.map(|r| r.into_inner()), r2.map(|r| r.into_inner())];
    let refused: Vec<&Status> = outcomes.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(refused.len(), 1, "exactly one of two jobs on one name runs");
    assert!(
        matches!(refused[0].code(), Code::AlreadyExists | Code::Aborted),
        "{:?}",
        refused[0]
    );
    for s in outcomes.into_iter().flatten() {
        assert_eq!(last_backup(s).await.state, pb::JobState::Succeeded as i32);
    }

    // At most two jobs at once: a third is RESOURCE_EXHAUSTED.
    let mut streams = Vec::new();
    for i in 0..2 {
        streams.push(
            client
                .create_backup(mk(&format!("{racy}_{i}")))
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let err = client
        .create_backup(mk(&format!("{racy}_2")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    for s in streams {
        last_backup(s).await;
    }

    // Request ids that differ only in punctuation, and one of the longest
    // allowed (256 bytes), each keep a job record of their own (the code
    // before named the records of `a.x` and `a_x` both `a_x.json`, and could
    // not write the 261-byte name of the long one).
    let base = common::unique("punct");
    let request_ids = [
        format!("{base}.x"),
        format!("{base}_x"),
        format!("{base}{}", "L".repeat(256 - base.len())),
    ];
    let mut by_request_id = Vec::new();
    for (i, request_id) in request_ids.into_iter().enumerate() {
        let req = pb::CreateBackupRequest {
            backup_name: format!("{base}_{i}"),
            collection_names: vec![spec.name.clone()],
            request_id,
            ..Default::default()
        };
        let stream = client.create_backup(req.clone()).await.unwrap();
        let done = last_backup(stream.into_inner()).await;
        assert_eq!(
            done.state,
            pb::JobState::Succeeded as i32,
            "{}: {done:?}",
            req.request_id
        );
        by_request_id.push((req, done.id));
    }

    // After a restart, old jobs still answer.
    server.handle.stop().await.unwrap();
    drop(server.engine);
    let again = common::TestServer::start_with_records(&cfg, &state, 2).await;
    let mut client = again.client().await;
    let got = flows::get_restore(&mut client, &ra.id).await;
    assert_eq!(got.state, pb::JobState::Succeeded as i32);
    assert_eq!(got.collections[0].imported_rows, 300);
    let watched = client
        .watch_restore(pb::WatchRestoreRequest { id: ra.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(last_restore(watched).await.id, ra.id);
    // A retry of each request id is its own job, read from its record.
    for (req, id) in by_request_id {
        let retried = client.create_backup(req.clone()).await;
        let retried = retried.unwrap_or_else(|e| panic!("{}: {e:?}", req.request_id));
        let last = last_backup(retried.into_inner()).await;
        assert_eq!(
            (last.id, last.name),
            (id, req.backup_name),
            "{}",
            req.request_id
        );
    }

    for c in [spec.name.clone(), format!("{}_idem", spec.name)] {
        data::drop_if_exists(&m, &spec.db, &c).await;
    }
    let _ = std::fs::remove_dir_all(state);
    again.handle.stop().await.unwrap();
}

use tonic::Status;

/// Every answer to the PutObject of a backup's commit point
/// (`meta/full_meta.json`) lost: a proxy forwards each try to S3, then hangs
/// up. The write landed, so the backup is complete: the job reads the commit
/// point back, finds its own bytes, and ends SUCCEEDED; the backup verifies.
/// The code before ended it FAILED, the backup complete and listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_commit_point_whose_answers_were_lost_completes_the_backup() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("lostans_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..200, 17).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let s3: std::net::SocketAddr = format!("{}:{}", cfg.minio.address, cfg.minio.port)
        .parse()
        .unwrap();
    let proxy = common::faults::start(s3, common::faults::Rates::default()).await;
    proxy.lose_put_answers_for("/meta/full_meta.json");
    let (state, config) = process::config_with(&cfg, "lostans", "");
    process::route_s3_through(&cfg, &config, proxy.addr.port());
    process::root_backups_at(&config, &common::unique("lostans_root"));
    let server = process::Proc::on(state, config, None).await;
    let mut client = server.client.clone();
    let name = common::unique("lostans");
    let backup = flows::backup_collections(&mut client, &name, &[&spec.name]).await;
    assert_eq!(backup.state, pb::JobState::Succeeded as i32, "{backup:?}");
    let lost = proxy
        .counts
        .lost_answers
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(lost >= 1, "the commit point's answers were lost ({lost})");
    flows::assert_verifies(&mut client, &name, "the backup whose answers were lost").await;

    server.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A copy the store completes after a cancelled backup's cleanup emptied its
/// folder (a CopyObject in flight at the cancel; written here by hand, as the
/// store would) leaves an object and no mark under the name. CreateBackup of
/// the name is ALREADY_EXISTS pointing to DeleteBackup, and DeleteBackup
/// removes it, since the name's last writer was that cancelled job; the name
/// then takes a backup that verifies. The same object under a name whose last
/// writer was a delete is not ours to remove: refused, left. On the code
/// before, both deletes were refused and the cancelled name stayed taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_lands_after_a_cancelled_backups_cleanup_can_be_deleted() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client().await;
    let spec = data::three_segments(&m, "late_src").await;
    let store = server.ctx.catalog.store().clone();
    let deleter = client.clone();
    let delete = |name: &str| {
        let mut c = deleter.clone();
        let name = name.to_string();
        async move {
            c.delete_backup(pb::DeleteBackupRequest {
                name,
                ..Default::default()
            })
            .await
        }
    };
    let late = |name: &str| format!("backup/{name}/binlogs/insert_log/1/2/3/4/5/6");

    let name = common::unique("late");
    flows::cancelled_backup(&mut client, &name, &spec.name).await;
    store
        .write(&late(&name), bytes::Bytes::from_static(b"a late copy"))
        .await
        .unwrap();
    let err = client
        .create_backup(backup_request(&name, &[&spec.name]))
        .await
        .expect_err("the name holds the late copy");
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert!(err.message().contains("DeleteBackup removes it"), "{err:?}");
    delete(&name)
        .await
        .expect("the cancelled job's leftover is deleted");
    let folder = format!("backup/{name}/");
    assert!(store.list(&folder).await.unwrap().is_empty(), "removed");
    flows::backup_collections(&mut client, &name, &[&spec.name]).await;
    flows::assert_verifies(&mut client, &name, "made again under the name").await;

    // Deleted (its last writer a delete), the name is free; an object put
    // there afterwards is someone else's.
    delete(&name).await.expect("the backup is deleted");
    store
        .write(&late(&name), bytes::Bytes::from_static(b"someone else's"))
        .await
        .unwrap();
    let err = delete(&name).await.expect_err("not ours to remove");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(
        store.list(&folder).await.unwrap().len(),
        1,
        "left as it was"
    );
    store.delete(&[late(&name)]).await.unwrap();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    server.handle.stop().await.unwrap();
}

/// A delete refused before it removed anything changes nothing, the name's
/// last writer included: the next DeleteBackup of a cancelled backup's late
/// copy (as above) still finds the cancelled job as that writer and removes
/// it. Here the first delete cannot read the job's record (a proxy answers
/// its GetObject 403) and fails with the folder left as it was. On the code
/// before, its release made it the name's last writer, and every later
/// delete was refused: the folder is not ours.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_delete_leaves_the_next_one_its_proof() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = data::three_segments(&m, "refused_src").await;
    let (proxy, server, root) = process::behind_fault_proxy(&cfg, "refused").await;
    let mut client = server.client.clone();
    let bucket = process::rooted_bucket(&cfg);
    let delete = |name: &str| {
        let mut c = server.client.clone();
        let name = name.to_string();
        async move {
            c.delete_backup(pb::DeleteBackupRequest {
                name,
                ..Default::default()
            })
            .await
        }
    };

    let name = common::unique("refused");
    flows::cancelled_backup(&mut client, &name, &spec.name).await;
    let folder = format!("{root}/{name}/");
    let late = format!("{folder}binlogs/insert_log/1/2/3/4/5/6");
    bucket
        .write(&late, bytes::Bytes::from_static(b"a late copy"))
        .await
        .unwrap();

    proxy.refuse_gets_for(Some(&format!("/_jobs/backups/{name}.json")));
    let err = delete(&name)
        .await
        .expect_err("the job's record cannot be read");
    let refused = proxy.counts.refused_gets.load(Ordering::Relaxed);
    assert!(refused >= 1, "the record's GetObject refused ({refused})");
    assert_ne!(err.code(), Code::Ok);
    assert!(err.message().contains("AccessDenied"), "{err:?}");
    assert_eq!(
        bucket.list(&folder).await.unwrap().len(),
        1,
        "left as it was"
    );

    proxy.refuse_gets_for(None);
    delete(&name)
        .await
        .expect("the cancelled job's leftover is deleted by the next delete");
    assert!(bucket.list(&folder).await.unwrap().is_empty(), "removed");

    server.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// The same CreateBackup sent twice at once (a client retrying before its
/// first call was answered) is one job: the second waits for the first's plan
/// and follows its job. On the code before, both were planned under the same
/// job id; the second took the first's lease (this process's own job) and,
/// found a retry after its plan, handed it back released: the first job lost
/// its lease within a third of the TTL and stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_sent_while_the_first_is_planned_follows_its_job() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = data::three_segments(&m, "twice_src").await;
    // A root of its own: a server on the shared one may take over another
    // test's backup left running, which pauses at the same point.
    let root = common::unique("twice_root");
    let (server, go) =
        flows::held_rooted_at(&cfg, "twice", &root, &["backup.held", "backup.describing"]).await;
    let (planned, described) = (&go[0], &go[1]);
    let name = common::unique("twice");
    let req = pb::CreateBackupRequest {
        request_id: common::unique("twice_req"),
        ..backup_request(&name, &[&spec.name])
    };
    let send = |req: pb::CreateBackupRequest| {
        let mut client = server.client.clone();
        tokio::spawn(async move { client.create_backup(req).await })
    };
    let first = send(req.clone());
    server.wait_paused(Duration::from_secs(60)).await;
    let retry = send(req);
    tokio::time::sleep(Duration::from_secs(2)).await;
    std::fs::write(planned, b"").unwrap();
    let first = first.await.unwrap().unwrap().into_inner();
    let retry = retry.await.unwrap().unwrap().into_inner();
    // Both answered; held past the 3 s lease TTL before it describes, a job
    // whose lease was taken has stopped by now.
    tokio::time::sleep(Duration::from_secs(4)).await;
    std::fs::write(described, b"").unwrap();
    let (first, retry) = (last_backup(first).await, last_backup(retry).await);
    assert_eq!(first.state, pb::JobState::Succeeded as i32, "{first:?}");
    assert_eq!((&first.id, first.state), (&retry.id, retry.state));
    let log = std::fs::read_to_string(&server.log).unwrap();
    let plans: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("failpoint reached") && l.contains("backup.held"))
        .collect();
    assert_eq!(plans.len(), 1, "the request was planned once: {log}");
    let mut client = server.client.clone();
    flows::assert_verifies(&mut client, &name, "the backup asked for twice at once").await;

    server.finish();
    let _ = std::fs::remove_file(planned);
    let _ = std::fs::remove_file(described);
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A CreateBackup whose caller gives up while its job is being planned (a
/// 1 s deadline: the call is dropped on both sides) still starts the job: the
/// start runs apart from the call, so no hold is left taken without a job and
/// no job half registered. A retry of the request follows that job, planned
/// once, which ends SUCCEEDED and verifies. On the code before, the dropped
/// call dropped the plan with it, and the retry was refused ABORTED by the
/// hold it left on the name until its TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_create_whose_caller_gave_up_mid_plan_still_runs_its_job() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = data::three_segments(&m, "gaveup_src").await;
    let root = common::unique("gaveup_root");
    let (server, go) = flows::held_rooted_at(&cfg, "gaveup", &root, &["backup.held"]).await;
    let name = common::unique("gaveup");
    let req = pb::CreateBackupRequest {
        request_id: common::unique("gaveup_req"),
        ..backup_request(&name, &[&spec.name])
    };
    let mut client = server.client.clone();
    let mut call = tonic::Request::new(req.clone());
    call.set_timeout(Duration::from_secs(1));
    let err = client
        .create_backup(call)
        .await
        .expect_err("the caller gave up");
    assert!(
        matches!(err.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{err:?}"
    );
    server.wait_paused(Duration::from_secs(60)).await;
    std::fs::write(&go[0], b"").unwrap();

    // The retry waits for that start, then follows its job to the end.
    let end = last_backup(client.create_backup(req).await.unwrap().into_inner()).await;
    assert_eq!(end.state, pb::JobState::Succeeded as i32, "{end:?}");
    assert_eq!(flows::get_backup(&mut client, &name).await.id, end.id);
    let log = std::fs::read_to_string(&server.log).unwrap();
    let plans = log
        .lines()
        .filter(|l| l.contains("failpoint reached") && l.contains("backup.held"))
        .count();
    assert_eq!(plans, 1, "planned once, by the call that gave up: {log}");
    flows::assert_verifies(&mut client, &name, "the backup whose caller gave up").await;

    server.finish();
    let _ = std::fs::remove_file(&go[0]);
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}
