//! A server paused (SIGSTOP) past its lease's expiry, on the real Milvus
//! 2.3.5 and S3, with its own backup root (so that no other test's server
//! takes its job over): when it wakes, its job stops as one whose lease was
//! lost, is neither failed nor cleaned up, and is resumed from its records
//! by the takeover (here, the same server's): a `drop_existing` restore
//! paused right after it dropped the original ends with the restored copy
//! under the target's name, never with the target missing.

mod common;

use std::time::{Duration, Instant};

use common::data::{self, Spec};
use common::flows;
use common::process::Proc;
use milvus_backup::api::proto as pb;
use milvus_backup::milvus::MilvusApi;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replace_paused_past_its_lease_after_the_drop_is_resumed_to_the_copy() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("lexp_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..300, 61).await;
    data::flush(&m, &spec.db, &spec.name).await;
    data::index(&m, &spec.db, &spec.name).await;
    data::load(&m, &spec.db, &spec.name).await;
    let backed_up = data::rows(&m, &spec, &spec.db, &spec.name, &[]).await;
    let root = common::unique("lexp_root");
    let release = std::env::temp_dir().join(common::unique("lexp_release"));
    let failpoint = format!("restore.swap.after_drop@{}", release.display());
    let mut server = Proc::start_rooted_paused(&cfg, "lexp", &root, "", Some(&failpoint)).await;
    let name = common::unique("lexp_b");
    flows::backup_collections(&mut server.client, &name, &[&spec.name]).await;
    // The original moves on after the backup; the replace restores the backup.
    data::insert(&m, &spec, "", 300..400, 61).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let original = m.collection_id(&spec.db, &spec.name).await.unwrap();

    let id = flows::start_restore(
        &mut server.client,
        pb::RestoreRequest {
            backup_name: name.clone(),
            drop_existing_collections: true,
            ..flows::restore_loaded_request(&name, "")
        },
    )
    .await;
    server.wait_paused(Duration::from_secs(180)).await;
    assert!(
        !m.has_collection(&spec.db, &spec.name).await.unwrap(),
        "paused after the drop"
    );
    // Paused past its 3 s lease, then let on.
    server.signal("STOP");
    tokio::time::sleep(Duration::from_secs(5)).await;
    std::fs::write(&release, b"").unwrap();
    server.signal("CONT");

    let deadline = Instant::now() + Duration::from_secs(120);
    let job = loop {
        let job = flows::get_restore(&mut server.client.clone(), &id).await;
        if job.state >= pb::JobState::Succeeded as i32 || Instant::now() > deadline {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(job.state, pb::JobState::Succeeded as i32, "{job:?}");
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(
        log.contains("expired before it was renewed")
            || log.contains("another process took it over"),
        "the job stopped for its lease"
    );
    let now = m.collection_id(&spec.db, &spec.name).await.unwrap();
    assert_ne!(now, original, "the target is the restored copy");
    let temp = &job.collections[0].temp_collection_name;
    assert!(
        !m.has_collection(&spec.db, temp).await.unwrap(),
        "the temporary collection is renamed away"
    );
    let rows = data::rows(&m, &spec, &spec.db, &spec.name, &[]).await;
    data::assert_rows_equal("after the pause", &backed_up, &rows);
    println!(
        "resumed to the copy: {} rows, job {id} SUCCEEDED",
        rows.len()
    );
    let _ = std::fs::remove_file(&release);
    server.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}
