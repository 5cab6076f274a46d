//! A job's end reaches the shared record before any server may resume the
//! job, on the real Milvus 2.3.5 and S3, with server processes on a backup
//! root of their own: a restore that failed while the store refused the
//! writes of its record for a while (it cannot record its imports, so it
//! stops and drops the collection it made) is not taken over by a replica,
//! or by its own server, in the meantime. Its end is written once the store
//! takes writes again. On the code before, the replica resumed it 0.15 s
//! after it let go of its leases (a reader's lease object went at once) and
//! ended it with an error of its own.

mod common;

use std::time::Duration;

use common::data::{self, Spec};
use common::flows;
use common::process::{self, Proc};
use milvus_backup::api::proto as pb;
use milvus_backup::milvus::MilvusApi;

/// How long the store refuses the record's writes once the job's end was
/// first refused: more than the takeover's sweep period (1 s with the tests'
/// 3 s lease TTL), less than the time before a takeover may resume a job
/// whose leases were released (their last expiry plus half a TTL).
const REFUSED_FOR: Duration = Duration::from_millis(1800);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_restore_whose_end_is_recorded_late_is_not_resumed_by_a_takeover() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("lateend_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..300, 61).await;
    data::flush(&m, &spec.db, &spec.name).await;

    // The owner reaches S3 through a fault proxy and pauses once its
    // imports are asked, until `go` exists; the replica reaches S3 directly.
    let go = std::env::temp_dir().join(common::unique("lateend_go"));
    let pause = format!("restore.importing@{}", go.display());
    let (proxy, mut owner, root) =
        process::behind_fault_proxy_paused(&cfg, "lateend_owner", Some(&pause)).await;
    let replica = Proc::start_rooted(&cfg, "lateend_replica", &root, "").await;

    let name = common::unique("lateend_b");
    flows::backup_collections(&mut owner.client, &name, &[&spec.name]).await;
    let target = format!("{}_le", spec.name);
    let id = flows::start_restore(&mut owner.client, flows::restore_request(&name, "_le")).await;
    owner.wait_paused(Duration::from_secs(120)).await;

    // From here the store refuses every write of the job's shared record.
    proxy.refuse_puts_for(Some(&format!("/_jobs/restores/{id}.json")));
    std::fs::write(&go, b"").unwrap();
    process::wait_for_log(
        &owner.log,
        "cannot write the shared job record; trying again",
        Duration::from_secs(300),
    )
    .await;
    tokio::time::sleep(REFUSED_FOR).await;
    proxy.refuse_puts_for(None);
    let refused = proxy
        .counts
        .refused_puts
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        refused >= 2,
        "the end was refused more than once ({refused})"
    );

    let end = tokio::time::timeout(
        Duration::from_secs(60),
        flows::watch_restore_to_end(&mut replica.client.clone(), &id),
    )
    .await
    .expect("the end is recorded once the store takes it");
    // The owner's end: it could not record its imports.
    let failed = |r: &pb::RestoreJob| {
        r.state == pb::JobState::Failed as i32
            && r.error_message.contains("cannot record restore job")
    };
    assert!(failed(&end), "{end:?}");
    // Past the time a takeover would have needed to act on it.
    tokio::time::sleep(Duration::from_secs(6)).await;

    for (server, log) in [("replica", &replica.log), ("owner", &owner.log)] {
        let text = std::fs::read_to_string(log).unwrap();
        let resumed = text
            .lines()
            .any(|l| l.contains("took over a restore") && l.contains(&id));
        assert!(!resumed, "the {server} resumed the restore that had ended");
    }
    let after = flows::get_restore(&mut replica.client.clone(), &id).await;
    assert!(failed(&after), "{after:?}");
    assert!(
        !m.has_collection(&spec.db, &target).await.unwrap(),
        "the collection the restore made is dropped by its cleanup, and not made again"
    );

    replica.finish();
    owner.finish();
    let _ = std::fs::remove_file(&go);
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    data::drop_if_exists(&m, &spec.db, &target).await;
}
