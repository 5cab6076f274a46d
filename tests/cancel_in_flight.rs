//! A cancel and the copies in flight, against the real Milvus 2.3.5 and S3:
//! the cancel waits for the answers of the server-side copies already sent
//! (a store completes a request whose caller hung up), so the cleanup sees
//! every object that landed, and stops the bodies of streaming copies at
//! once, even while they wait for the bandwidth cap.

mod common;

use common::data;
use common::flows::{self, backup_request, last_backup, last_restore};
use common::process;
use milvus_backup::api::proto as pb;
use milvus_backup::meta::leftover::DELETE_MARKER;
use milvus_backup::milvus::MilvusApi;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

/// A copy request the store received before a cancel, and completes after it,
/// lands before the job's cleanup looks: the cancel waits for the answers of
/// the copies in flight (it starts no new ones), so nothing is left behind.
/// A proxy holds every server-side copy until a second after the job is
/// cancelled, then lets S3 complete each one, as a store finishes a request
/// whose caller hung up. For a backup, its folder is left empty; for the
/// restore of an incremental backup, its staging folder in Milvus's bucket.
/// On the code before, the cancel dropped the requests, the cleanup ran at
/// once, and the held copies landed after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_waits_for_the_copies_in_flight_and_leaves_nothing() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = data::three_segments(&m, "inflight_src").await;
    let (proxy, server, root) = process::behind_fault_proxy(&cfg, "inflight").await;
    let mut client = server.client.clone();
    let bucket = process::rooted_bucket(&cfg);

    let name = common::unique("inflight");
    proxy.hold_copies(true);
    let mut stream = client
        .create_backup(backup_request(&name, &[&spec.name]))
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().unwrap();
    held_copy(&proxy).await;
    client
        .cancel_backup(pb::CancelBackupRequest { name: name.clone() })
        .await
        .unwrap();
    let_go_of_copies(&proxy).await;
    let end = last_backup(stream).await;
    assert_eq!(end.state, pb::JobState::Cancelled as i32, "{end:?}");
    copies_completed(&proxy).await;
    let left = bucket.list(&format!("{root}/{name}/")).await.unwrap();
    assert!(
        left.is_empty(),
        "the cancelled backup left {} objects, first {:?}",
        left.len(),
        left.first()
    );

    // The restore of an incremental backup stages its objects (server-side
    // copies into Milvus's bucket) before the import.
    let full = common::unique("inflight_full");
    flows::backup_collections(&mut client, &full, &[&spec.name]).await;
    let incr = common::unique("inflight_incr");
    let mut req = backup_request(&incr, &[&spec.name]);
    req.incremental = Some(true);
    flows::backup(&mut client, req).await;
    proxy.hold_copies(true);
    let mut stream = client
        .restore(flows::restore_request(&incr, "_inflight"))
        .await
        .unwrap()
        .into_inner();
    let id = stream.message().await.unwrap().unwrap().restore.unwrap().id;
    held_copy(&proxy).await;
    client
        .cancel_restore(pb::CancelRestoreRequest { id: id.clone() })
        .await
        .unwrap();
    let_go_of_copies(&proxy).await;
    let end = last_restore(stream).await;
    assert_eq!(end.state, pb::JobState::Cancelled as i32, "{end:?}");
    copies_completed(&proxy).await;
    let left = bucket.list(&format!("restore-temp-{id}/")).await.unwrap();
    assert!(
        left.is_empty(),
        "the cancelled restore left {} staged objects, first {:?}",
        left.len(),
        left.first()
    );
    let restored = format!("{}_inflight", spec.name);
    assert!(
        !m.has_collection(&spec.db, &restored).await.unwrap(),
        "the cancelled restore's collection is dropped"
    );

    server.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// Waits until the proxy holds a copy now (one S3 has not completed).
async fn held_copy(proxy: &common::faults::FaultProxy) {
    let counts = &proxy.counts;
    flows::eventually(
        "a copy held by the proxy",
        Duration::from_secs(60),
        || async { counts.held_copies.load(SeqCst) > counts.late_copies.load(SeqCst) },
    )
    .await;
}

/// A second after the cancel, lets the held copies reach S3.
async fn let_go_of_copies(proxy: &common::faults::FaultProxy) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.hold_copies(false);
}

/// Waits until S3 has answered every copy the proxy held, and checks that
/// it made each one (so that an object left would show).
async fn copies_completed(proxy: &common::faults::FaultProxy) {
    let counts = &proxy.counts;
    flows::eventually(
        "every held copy answered",
        Duration::from_secs(30),
        || async { counts.late_copies.load(SeqCst) == counts.held_copies.load(SeqCst) },
    )
    .await;
    assert_eq!(
        counts.late_copies_made.load(SeqCst),
        counts.held_copies.load(SeqCst),
        "S3 made every held copy"
    );
}

/// The wait above is for answers, not for bytes: a streaming copy in flight
/// stops its body at the cancel, even while it waits for the bandwidth cap.
/// A backup to a local directory under a 5 KiB/s cap is cancelled once its
/// first bytes streamed: the job ends CANCELLED, the server streams at most
/// 8 KiB more after the cancel (`milvus_backup_streamed_bytes_total`),
/// far less than the backup left to copy, and its folder is gone. Without the
/// stop, the copies in flight (the whole backup here) streamed to their end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_stops_the_streaming_copies_in_flight() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = data::three_segments(&m, "stopstream_src").await;
    let dir = std::env::temp_dir().join(common::unique("stopstream_backups"));
    let state = std::env::temp_dir().join(common::unique("stopstream"));
    let config = state.with_extension("yaml");
    let yaml = process::config_yaml(&cfg, "  backupStorageType: local\n").replace(
        "backupRootPath: backup\n",
        &format!("backupRootPath: {}\n", dir.display()),
    );
    std::fs::write(
        &config,
        format!(
            "{yaml}backup:\n  stateDir: {}\n  rateLimitMiBps: 0.005\n",
            state.display()
        ),
    )
    .unwrap();
    let server = process::Proc::on(state, config, None).await;
    let mut client = server.client.clone();
    let streamed = || {
        let text = common::curl::metrics(server.port);
        text.lines()
            .find_map(|l| l.strip_prefix("milvus_backup_streamed_bytes_total "))
            .map_or(0.0, |v| v.trim().parse::<f64>().unwrap())
    };

    let name = common::unique("stopstream");
    let mut stream = client
        .create_backup(backup_request(&name, &[&spec.name]))
        .await
        .unwrap()
        .into_inner();
    while streamed() == 0.0 {
        stream.message().await.unwrap().expect("the job runs");
    }
    client
        .cancel_backup(pb::CancelBackupRequest { name: name.clone() })
        .await
        .unwrap();
    let at_cancel = streamed();
    let end = last_backup(stream).await;
    assert_eq!(end.state, pb::JobState::Cancelled as i32, "{end:?}");
    // The plan's total, from the last snapshot: a snapshot seen before the
    // cancel may predate the listing (the first copy starts right after it).
    let total = end.progress.as_ref().map_or(0, |p| p.bytes_total);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = streamed() - at_cancel;
    let left = total as f64 - at_cancel;
    assert!(
        left > 20_000.0,
        "the backup had {left} bytes left to stream at the cancel"
    );
    assert!(
        after <= 8192.0,
        "{after} bytes streamed after the cancel, of the {left} left"
    );
    let files = files_under(&dir.join(&name));
    assert!(files.is_empty(), "the cancelled backup left {files:?}");
    assert!(
        !dir.join(&name).exists(),
        "nor a directory: a stopped write removes those it made"
    );

    server.finish();
    let _ = std::fs::remove_dir_all(&dir);
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// The files under `dir`, at any depth (none when it does not exist).
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flat_map(|e| {
            let path = e.unwrap().path();
            match path.is_dir() {
                true => files_under(&path),
                false => vec![path],
            }
        })
        .collect()
}

/// The delete of what lands after a cancelled backup's cleanup (a copy that
/// timed out on our side; written here by hand, as the store would) survives
/// a SIGKILL of its server: before it marked the folder as being deleted
/// (`delete.planned`), and after (`delete.meta_removed`). Another replica
/// resumes the delete under its id and empties the folder. A resumed delete
/// needs no proof that the folder is ours: its own record says it began on
/// it. The backup is made and cancelled on the other replica (its cleanup
/// passes the same pause points). This guards the resume of such a delete;
/// it did not fail before.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_of_a_late_copy_killed_mid_way_is_finished_by_another_replica() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = data::three_segments(&m, "latekill_src").await;
    let bucket = process::rooted_bucket(&cfg);
    let root = common::unique("latekill_root");
    let taker = process::Proc::start_rooted(&cfg, "latetaker", &root, "").await;
    for point in ["delete.planned", "delete.meta_removed"] {
        let mut owner =
            process::Proc::start_rooted_paused(&cfg, "lateowner", &root, "", Some(point)).await;
        // The backup is cancelled on the other server: its cleanup passes
        // the delete's pause points too.
        let mut client = taker.client.clone();
        let name = common::unique("latekill");
        flows::cancelled_backup(&mut client, &name, &spec.name).await;
        let folder = format!("{root}/{name}/");
        bucket
            .write(
                &format!("{folder}binlogs/insert_log/1/2/3/4/5/6"),
                bytes::Bytes::from_static(b"a late copy"),
            )
            .await
            .unwrap();

        let id = flows::detached_delete(&mut owner.client, &name).await.id;
        owner.wait_paused(Duration::from_secs(60)).await;
        let at_kill = bucket.list(&folder).await.unwrap();
        // Killed before the folder was marked as being deleted, or after.
        let marked = at_kill
            .iter()
            .any(|o| o.key == format!("{folder}{DELETE_MARKER}"));
        assert_eq!(
            marked,
            point == "delete.meta_removed",
            "{point}: {at_kill:?}"
        );
        assert!(
            at_kill.iter().any(|o| o.key.contains("/insert_log/")),
            "{point}: the late copy is still there at the kill"
        );
        owner.kill();

        let mut on_taker = taker.client.clone();
        let end = flows::watched_delete_end(&mut on_taker, &id).await;
        assert_eq!(
            end.state,
            pb::JobState::Succeeded as i32,
            "{point}: {end:?}"
        );
        assert_eq!(end.id, id, "{point}: the same job, resumed");
        let left = bucket.list(&folder).await.unwrap();
        assert!(
            left.is_empty(),
            "{point}: {} objects left at the kill ({:?}), {left:?} after the resume",
            at_kill.len(),
            at_kill.iter().map(|o| &o.key).collect::<Vec<_>>()
        );
        owner.finish();
    }
    taker.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}
