//! How a restore asks Milvus 2.3.5 for its imports, against the real server
//! and S3: Milvus fails an import still queued or running 15 minutes after it
//! was asked for (`importTaskExpiration`), so a restore queues few imports
//! ahead and splits a large partition by segment group.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::data::{self, Spec};
use common::{flows, process};
use milvus_backup::milvus::{ImportPhase, MilvusApi};

/// A partition larger than `backup.maxSegmentGroupSize` (1 KiB here) is
/// imported one segment group (one segment) at a time: one task per segment
/// of the backup, each reading its group's folders, never two running at
/// once. Its rows, deletes applied, equal the source's. The same backup
/// restored with the default (2G) is one import of the partition's folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_partition_is_imported_one_segment_group_at_a_time() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("groups_src"));
    data::create(&m, &spec).await;
    for batch in 0..3 {
        data::insert(
            &m,
            &spec,
            "",
            batch * 100..(batch + 1) * 100,
            40 + batch as u64,
        )
        .await;
        data::flush(&m, &spec.db, &spec.name).await;
    }
    // Deletes in two of the segments: their groups carry delta logs.
    data::delete(&m, &spec, "pk in [3, 150]").await;
    flows::flushed_and_loaded(&m, &spec).await;
    let mut split = process::Proc::start(&cfg, "groups", "  maxSegmentGroupSize: 1k\n", None).await;
    let mut more = 3;
    let (backup, segments) = loop {
        let backup = common::unique("groups_b");
        flows::backup_collections(&mut split.client, &backup, &[&spec.name]).await;
        let segments = flows::get_backup(&mut split.client, &backup)
            .await
            .collections[0]
            .segment_count;
        if segments >= 2 || more == 5 {
            break (backup, segments);
        }
        // Milvus's compaction merged the batches before the backup: one
        // more flushed batch is another segment.
        data::insert(
            &m,
            &spec,
            "",
            more * 100..(more + 1) * 100,
            40 + more as u64,
        )
        .await;
        data::flush(&m, &spec.db, &spec.name).await;
        more += 1;
    };
    assert!(segments >= 2, "a segment per flushed batch: {segments}");
    let rows = data::rows(&m, &spec, &spec.db, &spec.name, &[]).await;

    let target = format!("{}_g", spec.name);
    let job_id = flows::start_restore(
        &mut split.client,
        flows::restore_loaded_request(&backup, "_g"),
    )
    .await;
    let mut most_running = 0;
    let mut restoring = flows::get_restore(&mut split.client, &job_id).await;
    while restoring.state == milvus_backup::api::proto::JobState::Running as i32 {
        // Listed only once the restore made the target: Milvus is asked
        // nothing about a collection that is not there.
        if m.collection_id(&spec.db, &target).await.unwrap().is_some() {
            let tasks = m.collection_imports(&spec.db, &target).await.unwrap();
            let running = tasks
                .iter()
                .filter(|t| t.phase == ImportPhase::Running)
                .count();
            most_running = most_running.max(running);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        restoring = flows::get_restore(&mut split.client, &job_id).await;
    }
    assert_eq!(
        restoring.state,
        milvus_backup::api::proto::JobState::Succeeded as i32,
        "{restoring:?}"
    );
    assert_eq!(most_running, 1, "imports running at once");
    let tasks = m.collection_imports(&spec.db, &target).await.unwrap();
    assert_eq!(
        tasks.len(),
        segments as usize,
        "one import per segment group: {tasks:?}"
    );
    let groups: BTreeSet<&str> = tasks
        .iter()
        .map(|t| {
            let insert = t.files[0].trim_end_matches('/');
            assert!(insert.contains("/insert_log/"), "{t:?}");
            insert.rsplit('/').next().unwrap()
        })
        .collect();
    assert_eq!(
        groups.len(),
        tasks.len(),
        "each import reads its own group: {tasks:?}"
    );
    let with_deltas = tasks.iter().filter(|t| !t.files[1].is_empty()).count();
    assert!(
        (1..=2).contains(&with_deltas),
        "the groups with deletes: {tasks:?}"
    );
    assert_eq!(data::rows(&m, &spec, &spec.db, &target, &[]).await, rows);
    split.finish();

    let mut whole = process::Proc::start(&cfg, "groups-whole", "", None).await;
    let whole_target = format!("{}_w", spec.name);
    flows::restore(
        &mut whole.client,
        flows::restore_loaded_request(&backup, "_w"),
    )
    .await;
    let tasks = m.collection_imports(&spec.db, &whole_target).await.unwrap();
    assert_eq!(tasks.len(), 1, "one import of the partition: {tasks:?}");
    assert_eq!(
        data::rows(&m, &spec, &spec.db, &whole_target, &[]).await,
        rows
    );
    whole.finish();
    for name in [&spec.name, &target, &whole_target] {
        data::drop_if_exists(&m, &spec.db, name).await;
    }
}

/// A collection of 10 partitions with data: a restore asks for at most 8
/// imports ahead of the one it waits for (seen paused at
/// `restore.importing`, once every import was asked for), and restores
/// every partition row for row. Before, all were queued in Milvus at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restore_queues_at_most_8_imports_of_a_collection() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("queue_src"));
    data::create(&m, &spec).await;
    for i in 0..10 {
        let partition = format!("p{i}");
        data::create_partition(&m, &spec, &partition).await;
        data::insert(&m, &spec, &partition, i * 20..(i + 1) * 20, 30 + i as u64).await;
    }
    let rows = flows::flushed_and_loaded(&m, &spec).await;
    let (mut server, go) = flows::held_at(&cfg, "import-queue", "restore.importing").await;
    let backup = common::unique("queue_b");
    flows::backup_collections(&mut server.client, &backup, &[&spec.name]).await;
    let job_id = flows::start_restore(
        &mut server.client,
        flows::restore_loaded_request(&backup, "_q"),
    )
    .await;
    server.wait_paused(Duration::from_secs(300)).await;
    let target = format!("{}_q", spec.name);
    let tasks = m.collection_imports(&spec.db, &target).await.unwrap();
    assert_eq!(tasks.len(), 10, "every import asked for: {tasks:?}");
    let queued = tasks
        .iter()
        .filter(|t| t.phase == ImportPhase::Running)
        .count();
    assert!(queued <= 8, "{queued} imports queued at once: {tasks:?}");
    flows::released_to_success(&mut server, &go, &job_id).await;
    let restored = data::rows(&m, &spec, &spec.db, &target, &[]).await;
    assert_eq!(restored, rows);
    server.finish();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    data::drop_if_exists(&m, &spec.db, &target).await;
}
