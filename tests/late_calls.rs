//! A process paused past its leases right before it asks Milvus for a step
//! by name, against the real Milvus 2.3.5 and S3, with server processes on
//! a backup root of their own (3 s leases): once another replica took the
//! job over, the late call is never sent; a target dropped and made again
//! by the user while the drop of the original waited is never dropped.

mod common;

use std::time::Duration;

use common::data::{self, Spec};
use common::flows;
use common::process::{Proc, wait_for_log};
use common::restores::rows_of;
use milvus_backup::api::proto as pb;
use milvus_backup::milvus::MilvusApi;

/// A replace whose owner is paused (SIGSTOP) right before it asks Milvus to
/// drop the original (`restore.swap.dropping@PATH`), past its leases.
/// Another replica takes the restore over, drops the original and swaps
/// the restored copy in: SUCCEEDED. Woken and let go, the owner does not
/// send its drop (its deadline, its leases' expiry, has passed): the
/// restored collection and its rows stay. On the code before, the late
/// DropCollection by name landed and dropped the restored collection: the
/// original and the copy were both gone, and the job said SUCCEEDED.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drop_asked_after_a_takeover_is_never_sent() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("late_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..100, 21).await;
    let rows = flows::flushed_and_loaded(&m, &spec).await;
    let root = common::unique("late_root");
    let go = std::env::temp_dir().join(common::unique("late_go"));
    let failpoint = format!("restore.swap.dropping@{}", go.display());
    let mut owner = Proc::start_rooted_paused(&cfg, "lateowner", &root, "", Some(&failpoint)).await;
    let backup = common::unique("late_b");
    flows::backup_collections(&mut owner.client, &backup, &[&spec.name]).await;
    // Rows added after the backup: the replace puts the backup's rows back.
    data::insert(&m, &spec, "", 100..150, 22).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let id = flows::start_restore(
        &mut owner.client,
        pb::RestoreRequest {
            backup_name: backup.clone(),
            drop_existing_collections: true,
            restore_index: true,
            ..Default::default()
        },
    )
    .await;
    owner.wait_paused(Duration::from_secs(180)).await;
    owner.signal("STOP");

    // Past its 3 s leases, another replica takes the restore over.
    let b = Proc::start_rooted(&cfg, "latetaker", &root, "").await;
    let end = tokio::time::timeout(
        Duration::from_secs(300),
        flows::watch_restore_to_end(&mut b.client.clone(), &id),
    )
    .await
    .expect("the restore ends");
    assert_eq!(end.state, pb::JobState::Succeeded as i32, "{end:?}");
    let restored = m
        .collection_id(&spec.db, &spec.name)
        .await
        .unwrap()
        .expect("the copy swapped in");

    // Woken and let go: its drop by name would drop the restored copy.
    std::fs::write(&go, b"").unwrap();
    owner.signal("CONT");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        m.collection_id(&spec.db, &spec.name).await.unwrap(),
        Some(restored),
        "the restored collection stays"
    );
    let now = rows_of(&m, &spec, &spec.name).await;
    data::assert_rows_equal("restored", &rows, &now);
    wait_for_log(&owner.log, "was not sent", Duration::from_secs(30)).await;
    let after = flows::get_restore(&mut b.client.clone(), &id).await;
    assert_eq!(after.state, pb::JobState::Succeeded as i32, "{after:?}");

    owner.finish();
    b.finish();
    let _ = std::fs::remove_file(&go);
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}

/// A replace held right after its checks of the target, before it drops
/// the original (`restore.swap.checked@PATH`); the
/// user then drops the target and makes it again with 30 rows of their own.
/// Let go, the restore reads the target's id again right before the drop,
/// leaves the user's collection and rows alone, and FAILS
/// FAILED_PRECONDITION saying so; its restored copy is dropped. On the code
/// before, it dropped the user's collection by name and swapped its copy
/// in: SUCCEEDED, and the user's rows gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_target_made_again_right_before_the_drop_is_left_alone() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("again_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..100, 21).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let root = common::unique("again_root");
    let go = std::env::temp_dir().join(common::unique("again_go"));
    let failpoint = format!("restore.swap.checked@{}", go.display());
    let mut owner =
        Proc::start_rooted_paused(&cfg, "againowner", &root, "", Some(&failpoint)).await;
    let backup = common::unique("again_b");
    flows::backup_collections(&mut owner.client, &backup, &[&spec.name]).await;
    let id = flows::start_restore(
        &mut owner.client,
        pb::RestoreRequest {
            backup_name: backup.clone(),
            drop_existing_collections: true,
            ..Default::default()
        },
    )
    .await;
    owner.wait_paused(Duration::from_secs(180)).await;

    // The user's own collection under the name, made while the drop waits.
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 1000..1030, 23).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let theirs = m.collection_id(&spec.db, &spec.name).await.unwrap();
    let their_rows = rows_of(&m, &spec, &spec.name).await;
    assert_eq!(their_rows.len(), 30);

    std::fs::write(&go, b"").unwrap();
    let end = tokio::time::timeout(
        Duration::from_secs(300),
        flows::watch_restore_to_end(&mut owner.client.clone(), &id),
    )
    .await
    .expect("the restore ends");
    assert_eq!(end.state, pb::JobState::Failed as i32, "{end:?}");
    assert!(
        end.collections[0].error_message.contains("made again"),
        "the error says the target was made again: {end:?}"
    );
    assert_eq!(
        m.collection_id(&spec.db, &spec.name).await.unwrap(),
        theirs,
        "the user's collection stays"
    );
    let now = rows_of(&m, &spec, &spec.name).await;
    data::assert_rows_equal("the user's rows", &their_rows, &now);
    flows::eventually(
        "the restored copy is dropped",
        Duration::from_secs(60),
        || {
            let (m, db) = (m.clone(), spec.db.clone());
            let copy = format!("{}_restoring_", spec.name);
            async move {
                !m.list_collections(&db)
                    .await
                    .unwrap()
                    .iter()
                    .any(|c| c.starts_with(&copy))
            }
        },
    )
    .await;

    owner.finish();
    let _ = std::fs::remove_file(&go);
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}
