//! A user changes a restore's target while the restore runs, against the
//! real Milvus 2.3.5 and S3. Milvus 2.3.5's proxy crashes when asked about an
//! import whose collection was dropped, so the restore must notice by id, not
//! by name, and must leave what the user made alone.

mod common;

use std::time::Duration;

use common::data::{self, Spec};
use common::{flows, process};
use milvus_backup::api::proto as pb;
use milvus_backup::milvus::MilvusApi;

/// The restore waits on its imports at `restore.importing`; meanwhile the
/// user drops the target and makes a collection of their own under the name.
/// The job ends FAILED, naming both ids, without asking Milvus about the
/// imports of the dropped collection; Milvus still answers, and the user's
/// collection and rows are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_target_made_again_under_its_name_mid_import_is_noticed_by_id() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("race_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..300, 5).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let release = std::env::temp_dir().join(common::unique("race_release"));
    let failpoint = format!("restore.importing@{}", release.display());
    let root = common::unique("race_root");
    let mut server =
        process::Proc::start_rooted_paused(&cfg, "race-state", &root, "", Some(&failpoint)).await;
    let backup = common::unique("race_b");
    flows::backup_collections(&mut server.client, &backup, &[&spec.name]).await;
    let id = flows::start_restore(
        &mut server.client,
        pb::RestoreRequest {
            backup_name: backup.clone(),
            collection_suffix: "_t".into(),
            ..Default::default()
        },
    )
    .await;
    server.wait_paused(Duration::from_secs(120)).await;

    let target = format!("{}_t", spec.name);
    let restored_id = m.collection_id(&spec.db, &target).await.unwrap().unwrap();
    data::drop_after_imports(&m, &spec.db, &target).await;
    let mine = Spec::new(&target);
    data::create(&m, &mine).await;
    data::insert(&m, &mine, "", 0..40, 9).await;
    data::flush(&m, &mine.db, &mine.name).await;
    let my_id = m.collection_id(&mine.db, &target).await.unwrap().unwrap();
    std::fs::write(&release, b"").unwrap();

    let job = tokio::time::timeout(
        Duration::from_secs(120),
        flows::watch_restore_to_end(&mut server.client, &id),
    )
    .await
    .expect("the restore ends");
    assert_eq!(job.state, pb::JobState::Failed as i32, "{job:?}");
    assert!(
        job.error_message.contains(&format!("id {restored_id}"))
            && job
                .error_message
                .contains(&format!("made again (id {my_id})")),
        "{job:?}"
    );
    m.version().await.expect("Milvus still answers");
    assert_eq!(
        m.collection_id(&mine.db, &target).await.unwrap(),
        Some(my_id)
    );
    data::index(&m, &mine.db, &target).await;
    data::load(&m, &mine.db, &target).await;
    let rows = data::rows(&m, &mine, &mine.db, &target, &[]).await;
    assert_eq!(rows.len(), 40, "the user's rows are untouched");

    let _ = std::fs::remove_file(&release);
    server.finish();
    data::drop_if_exists(&m, &mine.db, &target).await;
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}
