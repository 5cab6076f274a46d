//! A restore that ended with its cleanup unfinished (Milvus away) keeps its
//! target to that cleanup, on the real Milvus 2.3.5 and S3, with a server
//! on a backup root of its own: a later restore into the collection that
//! cleanup would drop is refused, naming the restore whose cleanup is due,
//! and the cleanup then runs as before.

mod common;

use std::time::Duration;

use common::data::{self, Spec};
use common::flows;
use common::process;
use milvus_backup::api::proto as pb;
use milvus_backup::milvus::MilvusApi;
use milvus_backup::model::CollectionRef;

/// What the server logs when its look could not run an ended restore's
/// cleanup again (here: its target held), which it then tries 30 s later.
const NOT_NOW: &str = "cannot clean up the ended restore now; tried again later";

/// Restore R1 into a new database fails while Milvus cannot be reached
/// (a switchable proxy, off once R1 made its collection at
/// `restore.created`), so its cleanup is due. Once Milvus answers, the
/// server's first try of that cleanup finds the target held (by hand, as
/// another job would) and waits 30 s. In that window a restore into that
/// collection (`skip_create_collection`) is refused FAILED_PRECONDITION,
/// naming R1: on the code before it was accepted, filled the collection,
/// and R1's cleanup dropped it afterwards. The cleanup then drops the
/// collection and the database R1 made.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restore_into_a_collection_an_unfinished_cleanup_would_drop_is_refused() {
    use std::sync::atomic::Ordering;
    let mut cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("due_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..50, 6).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let (via_proxy, up) = common::faults::milvus_through_switch(&cfg).await;
    let release = std::env::temp_dir().join(common::unique("due_release"));
    let failpoint = format!("restore.created@{}", release.display());
    let root = common::unique("due_root");
    let mut server =
        process::Proc::start_rooted_paused(&via_proxy, "due-state", &root, "", Some(&failpoint))
            .await;
    let backup = common::unique("due_b");
    flows::backup_collections(&mut server.client, &backup, &[&spec.name]).await;
    let db = common::unique("due_db");
    let into_db = |skip_create: bool| pb::RestoreRequest {
        backup_name: backup.clone(),
        collection_renames: [(
            format!("default.{}", spec.name),
            format!("{db}.{}", spec.name),
        )]
        .into(),
        skip_create_collection: skip_create,
        ..Default::default()
    };
    let first = flows::start_restore(&mut server.client, into_db(false)).await;
    server.wait_paused(Duration::from_secs(180)).await;
    assert!(m.has_collection(&db, &spec.name).await.unwrap(), "made");

    common::faults::switch_off(&up).await;
    std::fs::write(&release, b"").unwrap();
    let job = tokio::time::timeout(
        Duration::from_secs(400),
        flows::watch_restore_to_end(&mut server.client, &first),
    )
    .await
    .expect("the restore ends");
    assert_eq!(job.state, pb::JobState::Failed as i32, "{job:?}");

    // The target held by hand (as another job would) before Milvus answers
    // again: the server's first try of the cleanup is refused, and the
    // next waits 30 s.
    cfg.minio.backup_root_path = root.clone();
    let ctx = milvus_backup::context::Context::from_config(&cfg).unwrap();
    let target = CollectionRef::parse(&format!("{db}.{}", spec.name)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let held = loop {
        match ctx
            .leases()
            .hold_targets("held-by-hand", std::slice::from_ref(&target))
            .await
        {
            Ok(held) => break held,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("not held yet: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the target is let go by R1 within 60 s: {e}"),
        }
    };
    up.store(true, Ordering::SeqCst);
    process::wait_for_log(&server.log, NOT_NOW, Duration::from_secs(120)).await;
    milvus_backup::jobs::lease::release_all(held).await;
    assert!(
        m.has_collection(&db, &spec.name).await.unwrap(),
        "the cleanup waits"
    );

    let refused = server
        .client
        .restore(into_db(true))
        .await
        .expect_err("a restore into what R1's cleanup would drop is refused");
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    assert!(
        refused.message().contains(&first) && refused.message().contains("cleanup"),
        "the refusal names the restore whose cleanup is due: {refused:?}"
    );

    flows::database_dropped(
        &m,
        &db,
        "the cleanup tried again drops the collection and the database",
    )
    .await;

    let _ = std::fs::remove_file(&release);
    server.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}
