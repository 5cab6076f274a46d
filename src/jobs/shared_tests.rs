//! Tests of the shared job records, on a local directory.

use super::*;
use crate::jobs::{BackupSnapshot, JobState};
use crate::storage::LocalDir;

/// The mirror of `job`: its sender, cancel token, stop token and task.
fn mirrored(
    records: &SharedRecords,
    job: &BackupSnapshot,
) -> (
    watch::Sender<BackupSnapshot>,
    CancellationToken,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = watch::channel(job.clone());
    let (token, stop) = (CancellationToken::new(), CancellationToken::new());
    let mirror = tokio::spawn(records.clone().mirror(
        rx,
        Vec::new(),
        Arc::default(),
        token.clone(),
        stop.clone(),
    ));
    (tx, token, stop, mirror)
}

#[tokio::test]
async fn a_cancel_reaches_the_running_job_only() {
    let dir = std::env::temp_dir().join(format!("shared-{}", uuid::Uuid::new_v4().simple()));
    let records = SharedRecords::new(Arc::new(LocalDir::new(&dir)), "backup");
    let mut old = BackupSnapshot::pending("1".into(), "b".into(), false);
    old.state = JobState::Running;
    records.save(&old).await.unwrap();
    // A cancel for a job whose owner died before it ended.
    records.request_cancel(&old).await.unwrap();
    // A new job of the same name starts: the old marker does not cancel it.
    let new = BackupSnapshot::pending("2".into(), "b".into(), false);
    records.start(&new).await.unwrap();
    let (tx, token, stop, mirror) = mirrored(&records, &new);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!token.is_cancelled());
    // A cancel for it does.
    records.request_cancel(&new).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), token.cancelled())
        .await
        .expect("cancelled within the mirror's interval");
    stop.cancel();
    mirror.await.unwrap();
    drop(tx);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A cancel asked on the job's own server leaves the marker, which the
/// job's written end removes.
#[tokio::test]
async fn a_local_cancel_leaves_the_marker_until_the_end_is_written() {
    let dir = std::env::temp_dir().join(format!("shared-{}", uuid::Uuid::new_v4().simple()));
    let records = SharedRecords::new(Arc::new(LocalDir::new(&dir)), "backup");
    let mut job = BackupSnapshot::pending("1".into(), "b".into(), false);
    records.start(&job).await.unwrap();
    let (tx, token, stop, mirror) = mirrored(&records, &job);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !records
            .cancel_requested::<BackupSnapshot>("b")
            .await
            .unwrap()
    );
    token.cancel();
    let started = std::time::Instant::now();
    while !records
        .cancel_requested::<BackupSnapshot>("b")
        .await
        .unwrap()
    {
        assert!(started.elapsed() < Duration::from_secs(5), "no marker");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    mirror.await.unwrap();
    job.state = JobState::Cancelled;
    records.finish(&job).await;
    assert!(
        !records
            .cancel_requested::<BackupSnapshot>("b")
            .await
            .unwrap()
    );
    drop(tx);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A cancelled job whose end cannot be written keeps its marker, so
/// that the takeover ends it rather than resuming it.
#[tokio::test(start_paused = true)]
async fn a_cancelled_job_whose_end_is_not_written_keeps_its_marker() {
    let dir = std::env::temp_dir().join(format!("shared-{}", uuid::Uuid::new_v4().simple()));
    let records = SharedRecords::new(Arc::new(LocalDir::new(&dir)), "backup");
    let mut job = BackupSnapshot::pending("1".into(), "b".into(), false);
    records.start(&job).await.unwrap();
    records.request_cancel(&job).await.unwrap();
    // The record's path is a folder now: writing it fails.
    let record = dir.join(records.record_key::<BackupSnapshot>("b"));
    std::fs::remove_file(&record).unwrap();
    std::fs::create_dir_all(record.join("in_the_way")).unwrap();
    job.state = JobState::Cancelled;
    records.finish(&job).await;
    assert!(
        records
            .cancel_requested::<BackupSnapshot>("b")
            .await
            .unwrap()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Finished records beyond the newest `keep` go; running ones stay.
#[tokio::test]
async fn pruning_keeps_the_newest_finished_and_every_running_record() {
    let dir = std::env::temp_dir().join(format!("shared-{}", uuid::Uuid::new_v4().simple()));
    let records = SharedRecords::new(Arc::new(LocalDir::new(&dir)), "backup");
    let t0 = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    for i in 0..8u64 {
        let mut s = BackupSnapshot::pending(i.to_string(), format!("b{i}"), false);
        if i < 6 {
            s.state = JobState::Succeeded;
            s.end_time = Some(t0 + Duration::from_secs(i));
        } else {
            s.state = JobState::Running;
        }
        records.save(&s).await.unwrap();
    }
    assert_eq!(records.prune::<BackupSnapshot>(4).await.unwrap(), 2);
    let mut left: Vec<String> = records
        .all::<BackupSnapshot>()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    left.sort();
    assert_eq!(left, ["b2", "b3", "b4", "b5", "b6", "b7"]);
    assert_eq!(records.prune::<BackupSnapshot>(4).await.unwrap(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A request id is claimed once; the claim goes with its job's record.
#[tokio::test]
async fn a_request_id_is_claimed_once_and_pruned_with_its_record() {
    let dir = std::env::temp_dir().join(format!("shared-{}", uuid::Uuid::new_v4().simple()));
    let records = SharedRecords::new(Arc::new(LocalDir::new(&dir)), "backup");
    let mut first = BackupSnapshot::pending("1".into(), "b1".into(), false);
    first.set_request_id("r/1");
    let claim = |key: &'static str| records.claim_request::<BackupSnapshot>("r/1", key, "job");
    assert_eq!(claim("b1").await.unwrap(), None);
    // Also before its job's record is written.
    assert_eq!(claim("b2").await.unwrap().as_deref(), Some("b1"));
    records.save(&first).await.unwrap();
    assert_eq!(claim("b2").await.unwrap().as_deref(), Some("b1"));
    assert_eq!(claim("b1").await.unwrap(), None, "its own claim");
    let claimed = records.claimed::<BackupSnapshot>("r/1").await.unwrap();
    assert_eq!(claimed, Some(("b1".to_string(), "job".to_string())));
    first.state = JobState::Succeeded;
    first.end_time = Some(std::time::SystemTime::now());
    records.save(&first).await.unwrap();
    assert_eq!(records.prune::<BackupSnapshot>(0).await.unwrap(), 1);
    assert_eq!(
        records.claimed::<BackupSnapshot>("r/1").await.unwrap(),
        None
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The cleanup a restarted process ran for its own ended job is written
/// over the end it recovered (before, the recovered end was kept, so each
/// restart cleaned up again), never over an end another process wrote
/// since, nor over another job's record.
#[tokio::test]
async fn a_recovered_jobs_cleanup_is_written_unless_another_process_ended_it() {
    let dir = std::env::temp_dir().join(format!("shared-{}", uuid::Uuid::new_v4().simple()));
    let records = SharedRecords::new(Arc::new(LocalDir::new(&dir)), "backup");
    let mut ended = BackupSnapshot::pending("1".into(), "b".into(), false);
    ended.state = JobState::Failed;
    ended.error = Some("cleanup pending".into());
    records.finish(&ended).await;
    let mut cleaned = ended.clone();
    cleaned.error = Some("cleaned up".into());

    let got = records.finish_cleaned(&ended, cleaned.clone()).await;
    assert_eq!(got, cleaned);
    let shared = records.load::<BackupSnapshot>("b").await.unwrap();
    assert_eq!(shared, Some(cleaned.clone()), "written");

    // Another process wrote another end meanwhile: kept.
    let mut theirs = ended.clone();
    theirs.state = JobState::Cancelled;
    records.finish(&theirs).await;
    let got = records.finish_cleaned(&ended, cleaned.clone()).await;
    assert_eq!(got, theirs);
    let shared = records.load::<BackupSnapshot>("b").await.unwrap();
    assert_eq!(shared, Some(theirs), "kept");

    // Another job's record under the key: left alone.
    let mut other = BackupSnapshot::pending("2".into(), "b".into(), false);
    other.state = JobState::Succeeded;
    records.finish(&other).await;
    let got = records.finish_cleaned(&ended, cleaned.clone()).await;
    assert_eq!(got, cleaned);
    let shared = records.load::<BackupSnapshot>("b").await.unwrap();
    assert_eq!(shared, Some(other), "another job's record left alone");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A takeover's end, written while it holds the job's leases: at once while
/// they hold, never once one has expired (another server may own the job).
#[tokio::test(flavor = "current_thread")]
async fn an_end_under_leases_is_written_only_while_they_hold() {
    let dir = std::env::temp_dir().join(format!("shared-{}", uuid::Uuid::new_v4().simple()));
    let store: Arc<dyn ObjectStore> = Arc::new(LocalDir::new(&dir));
    let records = SharedRecords::new(store.clone(), "backup");
    let leases = crate::jobs::Leases::new(store, "backup", Duration::from_millis(1_000));
    let mut job = BackupSnapshot::pending("1".into(), "b".into(), false);
    records.start(&job).await.unwrap();
    job.state = JobState::Cancelled;

    let held = leases.acquire("backup/b", "t1", "clean up").await.unwrap();
    // This only thread blocked past the lease's expiry: no renewal ran.
    std::thread::sleep(Duration::from_millis(1_100));
    assert!(!records.finish_held(&job, &[held.fence()]).await);
    let kept = records.load::<BackupSnapshot>("b").await.unwrap().unwrap();
    assert_eq!(kept.state, JobState::Pending, "not written once expired");
    held.release().await;

    let held = leases.acquire("backup/b", "t2", "clean up").await.unwrap();
    assert!(records.finish_held(&job, &[held.fence()]).await);
    held.release().await;
    let ended = records.load::<BackupSnapshot>("b").await.unwrap().unwrap();
    assert_eq!(ended.state, JobState::Cancelled);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The ended records a caller still wants (a restore whose cleanup is due)
/// are listed with the unended ones; the others are not.
#[tokio::test]
async fn ended_records_still_wanted_are_listed_with_the_unended() {
    let dir = std::env::temp_dir().join(format!("shared-{}", uuid::Uuid::new_v4().simple()));
    let records = SharedRecords::new(Arc::new(LocalDir::new(&dir)), "backup");
    for (id, state) in [
        ("run", JobState::Running),
        ("due", JobState::Failed),
        ("done", JobState::Failed),
    ] {
        let mut s = BackupSnapshot::pending(id.into(), format!("b_{id}"), false);
        s.state = state;
        records.save(&s).await.unwrap();
    }
    let listed = |wanted: fn(&BackupSnapshot) -> bool| {
        let records = records.clone();
        async move {
            let mut seen = std::collections::HashSet::new();
            let mut ids: Vec<String> = records
                .unfinished_or(&mut seen, wanted)
                .await
                .unwrap()
                .into_iter()
                .map(|s| s.id)
                .collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(listed(|s| s.id == "due").await, ["due", "run"]);
    assert_eq!(listed(|_| false).await, ["run"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A new job's record appears only after the marker an earlier job of the
/// key left is gone: a cancel asked of the new job as soon as its record
/// shows it is kept. Before, both were written at once, and a slow delete
/// removed that cancel (the delete here takes 300 ms).
#[tokio::test]
async fn a_cancel_asked_as_soon_as_a_new_job_shows_is_kept() {
    use crate::storage::intercepted::{Intercepted, Op};
    let dir = std::env::temp_dir().join(format!("shared-{}", uuid::Uuid::new_v4().simple()));
    let slow_delete = Intercepted::new(
        LocalDir::new(&dir),
        Arc::new(|op, _key| {
            Box::pin(async move {
                if op == Op::Delete {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Ok(())
            })
        }),
    );
    let records = SharedRecords::new(Arc::new(slow_delete), "backup");
    let mut old = BackupSnapshot::pending("1".into(), "b".into(), false);
    old.state = JobState::Running;
    records.save(&old).await.unwrap();
    records.request_cancel(&old).await.unwrap();
    let new = BackupSnapshot::pending("2".into(), "b".into(), false);
    let starting = tokio::spawn({
        let (records, new) = (records.clone(), new.clone());
        async move { records.start(&new).await }
    });
    // Another server sees the new job and asks it to cancel.
    loop {
        let shown = records.load::<BackupSnapshot>("b").await.unwrap();
        if shown.is_some_and(|s| s.id == new.id) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    records.request_cancel(&new).await.unwrap();
    starting.await.unwrap().unwrap();
    assert!(
        records
            .cancel_requested::<BackupSnapshot>("b")
            .await
            .unwrap(),
        "the cancel asked of the new job is kept"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A mirror write the store is slow to take is given up once the job's
/// lease leaves no time for it to land: it never lands over the record of
/// the process that took the job over. Here the lease cannot be renewed
/// (its renewals hang) and expires after 1 s, and each write of the record
/// takes 3 s; another process writes its record at 2 s. On the code
/// before, the owner's write landed over it at 3 s.
#[tokio::test]
async fn a_slow_mirror_write_never_lands_after_the_lease_expired() {
    use crate::jobs::Leases;
    use crate::storage::intercepted::{Intercepted, Op};
    let dir = std::env::temp_dir().join(format!("shared-{}", uuid::Uuid::new_v4().simple()));
    let hanging_renewals = Intercepted::new(
        LocalDir::new(&dir),
        Arc::new(|op, _key| {
            Box::pin(async move {
                if op == Op::PutIfMatch {
                    std::future::pending::<()>().await;
                }
                Ok(())
            })
        }),
    );
    let leases = Leases::new(Arc::new(hanging_renewals), "backup", Duration::from_secs(1));
    let lease = leases.acquire("backup/b", "1", "back up").await.unwrap();
    let slow_writes = Intercepted::new(
        LocalDir::new(&dir),
        Arc::new(|op, _key| {
            Box::pin(async move {
                if op == Op::Write {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                Ok(())
            })
        }),
    );
    let owner = SharedRecords::new(Arc::new(slow_writes), "backup");
    let taker = SharedRecords::new(Arc::new(LocalDir::new(&dir)), "backup");

    let mut job = BackupSnapshot::pending("1".into(), "b".into(), false);
    job.state = JobState::Running;
    let (_tx, rx) = watch::channel(job.clone());
    let (token, stop) = (CancellationToken::new(), CancellationToken::new());
    let mirror = tokio::spawn(owner.clone().mirror(
        rx,
        vec![lease.fence()],
        Arc::default(),
        token,
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(lease.fence().check().is_err(), "the lease expired");
    let mut taken = job.clone();
    taken.size_bytes = 42;
    taker.save(&taken).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let shown = taker.load::<BackupSnapshot>("b").await.unwrap().unwrap();
    assert_eq!(
        shown.size_bytes, 42,
        "the record is the taker's, not the owner's late write"
    );
    stop.cancel();
    mirror.await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
