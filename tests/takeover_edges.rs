//! The edges of taking over a restore whose server stopped, on the real
//! Milvus 2.3.5 and S3, with server processes on a backup root of their own
//! (so that no other test's server takes the job over):
//! - a cancel sent to another replica while the owner is dead ends the job
//!   CANCELLED, the collection it created dropped;
//! - an owner that is paused (SIGSTOP) past its lease, while another replica
//!   finishes the job, stops when it wakes without cleaning up or writing
//!   the shared record: the job stays SUCCEEDED and its collection stays.

mod common;

use std::time::Duration;

use common::data::{self, Spec};
use common::flows;
use common::process::Proc;
use milvus_backup::api::proto as pb;
use milvus_backup::milvus::rows::Row;
use milvus_backup::milvus::{MilvusApi, MilvusClient};

/// A loaded collection of 300 rows; its spec and rows.
async fn source(m: &MilvusClient, tag: &str) -> (Spec, Vec<Row>) {
    let spec = Spec::new(&common::unique(tag));
    data::create(m, &spec).await;
    data::insert(m, &spec, "", 0..300, 53).await;
    data::flush(m, &spec.db, &spec.name).await;
    data::index(m, &spec.db, &spec.name).await;
    data::load(m, &spec.db, &spec.name).await;
    let rows = data::rows(m, &spec, &spec.db, &spec.name, &[]).await;
    (spec, rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_sent_while_the_owner_is_dead_ends_the_restore_cancelled() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let (spec, _) = source(&m, "cxdead_src").await;
    let root = common::unique("cxdead_root");
    let mut owner =
        Proc::start_rooted_paused(&cfg, "cxowner", &root, "", Some("restore.importing")).await;
    let name = common::unique("cxdead_b");
    flows::backup_collections(&mut owner.client, &name, &[&spec.name]).await;
    let target = format!("{}_cx", spec.name);
    let id = flows::start_restore(&mut owner.client, flows::restore_request(&name, "_cx")).await;
    owner.wait_paused(Duration::from_secs(120)).await;
    assert!(m.has_collection(&spec.db, &target).await.unwrap());
    owner.kill();

    // Sent before any replica runs: the cancel marker waits for the takeover.
    let b = Proc::start_rooted(&cfg, "cxtaker", &root, "").await;
    b.client
        .clone()
        .cancel_restore(pb::CancelRestoreRequest { id: id.clone() })
        .await
        .expect("CancelRestore on the other replica");
    let end = tokio::time::timeout(
        Duration::from_secs(300),
        flows::watch_restore_to_end(&mut b.client.clone(), &id),
    )
    .await
    .expect("the restore ends");
    assert_eq!(end.state, pb::JobState::Cancelled as i32, "{end:?}");
    assert!(
        end.error_message
            .contains("cancelled while its server was down"),
        "{end:?}"
    );
    assert!(
        !m.has_collection(&spec.db, &target).await.unwrap(),
        "the collection the job created is dropped"
    );
    b.finish();
    owner.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_owner_that_wakes_after_the_takeover_leaves_the_job_alone() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let (spec, rows) = source(&m, "paused_src").await;
    let root = common::unique("paused_root");
    let mut owner =
        Proc::start_rooted_paused(&cfg, "powner", &root, "", Some("restore.importing")).await;
    let b = Proc::start_rooted(&cfg, "ptaker", &root, "").await;
    let name = common::unique("paused_b");
    flows::backup_collections(&mut owner.client, &name, &[&spec.name]).await;
    let target = format!("{}_pz", spec.name);
    let id = flows::start_restore(
        &mut owner.client,
        flows::restore_loaded_request(&name, "_pz"),
    )
    .await;
    owner.wait_paused(Duration::from_secs(120)).await;
    owner.signal("STOP");

    let end = tokio::time::timeout(
        Duration::from_secs(300),
        flows::watch_restore_to_end(&mut b.client.clone(), &id),
    )
    .await
    .expect("the restore ends");
    assert_eq!(end.state, pb::JobState::Succeeded as i32, "{end:?}");
    let restored_id = m.collection_id(&spec.db, &target).await.unwrap();

    // Woken: it finds its leases taken and stops, leaving the job alone.
    owner.signal("CONT");
    common::process::wait_for_log(
        &owner.log,
        "left to the process that took it over",
        Duration::from_secs(30),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = flows::get_restore(&mut b.client.clone(), &id).await;
    assert_eq!(after.state, pb::JobState::Succeeded as i32, "{after:?}");
    assert_eq!(
        m.collection_id(&spec.db, &target).await.unwrap(),
        restored_id,
        "the restored collection stays"
    );
    let now = data::rows(&m, &spec, &spec.db, &target, &[]).await;
    data::assert_rows_equal("restored", &rows, &now);
    b.finish();
    owner.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    data::drop_if_exists(&m, &spec.db, &target).await;
}
