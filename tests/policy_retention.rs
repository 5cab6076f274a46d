//! Retention of backup policies against the real Milvus 2.3.5 and S3, on a
//! backup root of their own: it deletes only the backup its run made (by
//! id; a delete of its that stopped after the backup was retired is
//! finished by a later run: `retention_stopped.rs`); a failed run is retried in its slot, and
//! retention previews runs with hand-made dates.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::curl;
use common::flows;
use common::hello;
use common::policies::{policy, policy_client, set_enabled, settled_runs, status_of, store_of};
use common::process::{Proc, rooted_bucket};
use milvus_backup::api::proto as pb;
use milvus_backup::api::proto::policy_service_client::PolicyServiceClient;
use milvus_backup::config::Config;
use milvus_backup::context::Context;
use milvus_backup::delete::DeleteRequest;
use milvus_backup::engine::Engine;
use milvus_backup::model::{BackupName, Policy, PolicyInput, PolicyName, RetentionInput};
use milvus_backup::policy::{PolicyStore, RunRecord, RunState};
use tonic::transport::Channel;

/// Retention deletes by id, not by name: a delete that names the id it saw
/// is refused once another backup is under the name (deleted by hand and
/// made again while retention ran), and leaves it whole, as is one that
/// finishes a stopped delete (it takes only what is left of a backup no
/// longer complete); with the id of the backup there, it deletes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_by_id_leaves_a_backup_made_again_under_the_name() {
    let mut cfg = common::config();
    let root = common::unique("byid_root");
    cfg.minio.backup_bucket_name = cfg.minio.bucket_name.clone();
    cfg.minio.backup_root_path = root.clone();
    let engine = Engine::new(Context::from_config(&cfg).unwrap());
    let store = rooted_bucket(&cfg);
    let backup = common::unique("byid");
    let meta_key = format!("{root}/{backup}/meta/full_meta.json");
    let meta = serde_json::json!({ "id": "made-again", "name": backup });
    store
        .write(&meta_key, bytes::Bytes::from(meta.to_string()))
        .await
        .unwrap();
    let name = BackupName::parse(&backup).unwrap();

    let refused = engine
        .start_delete(DeleteRequest::of_id(
            name.clone(),
            "retention-saw-this".into(),
        ))
        .await
        .expect_err("another backup is under the name");
    assert_eq!(
        refused.kind(),
        milvus_backup::error::ErrorKind::FailedPrecondition,
        "{refused}"
    );
    assert!(
        refused.to_string().contains("retention-saw-this")
            && refused.to_string().contains("made-again"),
        "{refused}"
    );
    assert!(store.head(&meta_key).await.unwrap().is_some(), "left whole");
    // Retention finishing a delete it started (the backup seen incomplete)
    // is refused as well once a complete backup is under the name.
    let refused = engine
        .start_delete(DeleteRequest::of_incomplete(name.clone()))
        .await
        .expect_err("a complete backup is under the name");
    assert_eq!(
        refused.kind(),
        milvus_backup::error::ErrorKind::FailedPrecondition,
        "{refused}"
    );
    assert!(refused.to_string().contains("made-again"), "{refused}");
    assert!(store.head(&meta_key).await.unwrap().is_some(), "left whole");

    let rx = engine
        .start_delete(DeleteRequest::of_id(name, "made-again".into()))
        .await
        .unwrap();
    let end = milvus_backup::jobs::until_terminal(rx).await;
    assert_eq!(
        end.state,
        milvus_backup::jobs::JobState::Succeeded,
        "{end:?}"
    );
    assert!(store.head(&meta_key).await.unwrap().is_none(), "deleted");
}

/// Retention decides among the backups of one selection, as restic groups
/// snapshots by paths: a policy narrowed from every collection to one keeps
/// the newest backup of every collection under `keep_last 1` (before, the
/// backups of the narrowed policy deleted the only ones of the others).
/// Runs recorded without a selection (by an earlier version) are a group of
/// their own. Hand-made run records and commit points, previewed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_keeps_the_last_backups_of_a_selection_the_policy_dropped() {
    let mut cfg = common::config();
    let root = common::unique("narrow_root");
    cfg.minio.backup_bucket_name = cfg.minio.bucket_name.clone();
    cfg.minio.backup_root_path = root.clone();
    let engine = Engine::new(Context::from_config(&cfg).unwrap());
    let name = common::unique("narrowed");
    let input = |collections: Vec<String>| PolicyInput {
        name: name.clone(),
        schedule: "0 0 1 1 *".into(),
        all_collections: collections.is_empty(),
        collection_names: collections,
        retention: RetentionInput {
            keep_last: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    let everything = Policy::parse(input(Vec::new())).unwrap();
    let narrowed = Policy::parse(input(vec!["orders".into()])).unwrap();
    engine.create_policy(everything.clone()).await.unwrap();
    let runs = PolicyStore::new(rooted_bucket(&cfg), &root);
    let store = rooted_bucket(&cfg);
    let made = |backup: String, slot: &str, selection: String| {
        let slot_ms = chrono::DateTime::parse_from_rfc3339(slot)
            .unwrap()
            .timestamp_millis();
        let record = RunRecord {
            selection,
            ..common::runs::succeeded(slot_ms, &backup)
        };
        let (runs, store, root, name) = (runs.clone(), store.clone(), root.clone(), name.clone());
        async move {
            assert!(runs.start_run(&name, &record).await.unwrap());
            let meta = serde_json::json!({ "id": record.jobs[0], "name": backup });
            store
                .write(
                    &format!("{root}/{backup}/meta/full_meta.json"),
                    bytes::Bytes::from(meta.to_string()),
                )
                .await
                .unwrap();
        }
    };
    let b = |i: u32| format!("{name}_{i}");
    // Runs of an earlier version recorded no selection: a group of their own.
    made(b(0), "2026-10-30T00:00:00Z", String::new()).await;
    made(b(9), "2026-10-31T00:00:00Z", String::new()).await;
    made(b(1), "2026-11-01T00:00:00Z", everything.selection().key()).await;
    made(b(2), "2026-11-02T00:00:00Z", everything.selection().key()).await;
    engine.update_policy(narrowed.clone().into()).await.unwrap();
    made(b(3), "2026-11-03T00:00:00Z", narrowed.selection().key()).await;
    made(b(4), "2026-11-04T00:00:00Z", narrowed.selection().key()).await;

    let pname = PolicyName::parse(&name).unwrap();
    let decisions = engine.preview_retention(&pname).await.unwrap();
    let kept: Vec<(String, bool)> = decisions.iter().map(|d| (d.name.clone(), d.keep)).collect();
    assert_eq!(
        kept,
        vec![
            (b(4), true),
            (b(3), false),
            (b(2), true),
            (b(1), false),
            (b(9), true),
            (b(0), false)
        ],
        "{decisions:?}"
    );
    let old = decisions.iter().find(|d| d.name == b(2)).unwrap();
    assert!(
        old.reason.contains("keep_last 1") && old.reason.contains("selection all"),
        "{old:?}"
    );
    engine.delete_policy(&pname).await.unwrap();
    for i in [0, 1, 2, 3, 4, 9] {
        store
            .delete(&[format!("{root}/{}/meta/full_meta.json", b(i))])
            .await
            .unwrap();
    }
}

/// Writes a succeeded run of `policy` for `backup` at `slot`, and the
/// backup's commit point (retention decides over complete backups): with
/// the id of the run's job when `ours`, else another (the backup deleted by
/// hand and made again under its name).
async fn hand_made_run(
    cfg: &Config,
    root: &str,
    store: &PolicyStore,
    (policy, backup, slot): (&str, &str, &str),
    ours: bool,
) {
    let slot_ms = DateTime::parse_from_rfc3339(slot)
        .unwrap()
        .timestamp_millis();
    let record = common::runs::succeeded(slot_ms, backup);
    assert!(store.start_run(policy, &record).await.unwrap());
    let id = if ours {
        record.jobs[0].clone()
    } else {
        "someone-else".into()
    };
    let meta = serde_json::json!({ "id": id, "name": backup });
    rooted_bucket(cfg)
        .write(
            &format!("{root}/{backup}/meta/full_meta.json"),
            bytes::Bytes::from(meta.to_string()),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_run_is_retried_in_its_slot_and_retention_previews_hand_made_dates() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let root = common::unique("policies_root");
    let store = store_of(&cfg, &root);
    let server = Proc::start_rooted(&cfg, "policy-retry", &root, "").await;
    let mut c = policy_client(&server).await;

    // A policy on a collection that does not exist yet: its first attempt
    // fails; once the collection exists, a retry in the same slot succeeds.
    let coll = common::unique("policy_late");
    let name = common::unique("retried");
    let late = policy(&name, "*/30 * * * * *", &coll, 0);
    c.create_policy(pb::CreatePolicyRequest {
        policy: Some(late.clone()),
    })
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let failing = loop {
        let runs = store.runs(&name).await.unwrap();
        if let Some(r) = runs.iter().find(|r| r.error.is_some()) {
            break r.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no failed attempt: {runs:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(failing.state, RunState::Running, "retrying: {failing:?}");
    assert!(
        failing.error.as_deref().unwrap().contains(&coll),
        "{failing:?}"
    );
    // The attempt's kind of error is recorded with it in the run record.
    assert_eq!(
        failing.error_kind.as_deref(),
        Some("not_found"),
        "{failing:?}"
    );
    let status = status_of(&mut c, &name).await;
    let shown = status.last_failure.expect("the failing attempt is shown");
    assert!(shown.error_message.contains(&coll), "{shown:?}");
    assert_eq!(shown.error_kind, "not_found", "{shown:?}");
    hello::create(&m, &coll, 200, 1, 5).await;
    set_enabled(&mut c, late, false).await;
    let runs = settled_runs(&store, &name, Duration::from_secs(60)).await;
    let run = runs.iter().find(|r| r.slot_ms == failing.slot_ms).unwrap();
    assert_eq!(run.state, RunState::Succeeded, "{run:?}");
    assert!(run.attempts >= 2, "{run:?}");
    flows::assert_verifies(&mut server.client.clone(), &run.backup, "retried run").await;
    let metrics = curl::metrics(server.port);
    assert!(
        metrics.contains(&format!(
            "milvus_backup_policy_runs_total{{policy=\"{name}\",result=\"succeeded\"}} 1"
        )),
        "{metrics}"
    );

    // PreviewRetention on hand-made dates: keep_daily 2, keep_weekly 2,
    // max_age 3d. The newest (an hour old) is kept by max_age; the daily rule
    // keeps it and the newest of 2025-03-10; the weekly rule adds nothing
    // new (its weeks are today's and 2025-W11); the rest goes.
    let table = common::unique("table");
    let mut rules = policy(&table, "0 3 * * *", "any", 0);
    rules.enabled = Some(false);
    rules.retention = Some(pb::Retention {
        keep_daily: 2,
        keep_weekly: 2,
        max_age: "3d".into(),
        ..Default::default()
    });
    c.create_policy(pb::CreatePolicyRequest {
        policy: Some(rules),
    })
    .await
    .unwrap();
    let hour_ago = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let dates = [
        ("t_now", hour_ago.as_str()),
        ("t_mar10_noon", "2025-03-10T12:00:00Z"),
        ("t_mar10_morning", "2025-03-10T08:00:00Z"),
        ("t_mar05", "2025-03-05T12:00:00Z"),
        ("t_feb20", "2025-02-20T12:00:00Z"),
    ];
    for (backup, date) in dates {
        let backup = format!("{table}_{backup}");
        hand_made_run(&cfg, &root, &store, (&table, &backup, date), true).await;
    }
    let preview = |c: &mut PolicyServiceClient<Channel>, n: String| {
        let mut c = c.clone();
        async move {
            c.preview_retention(pb::PreviewRetentionRequest { name: n })
                .await
                .unwrap()
                .into_inner()
                .decisions
        }
    };
    let decisions = preview(&mut c, table.clone()).await;
    let got: Vec<(String, bool)> = decisions
        .iter()
        .map(|d| {
            (
                d.backup_name
                    .trim_start_matches(&format!("{table}_"))
                    .to_string(),
                d.keep,
            )
        })
        .collect();
    let want: Vec<(String, bool)> = [
        ("t_now", true),
        ("t_mar10_noon", true),
        ("t_mar10_morning", false),
        ("t_mar05", false),
        ("t_feb20", false),
    ]
    .iter()
    .map(|(n, k)| (n.to_string(), *k))
    .collect();
    assert_eq!(got, want, "{decisions:?}");
    let reason = |n: &str| {
        decisions
            .iter()
            .find(|d| d.backup_name.ends_with(n))
            .unwrap()
            .reason
            .clone()
    };
    assert!(reason("t_now").contains("max_age 3d"), "{decisions:?}");
    assert!(
        reason("t_mar10_noon").contains("keep_daily"),
        "{decisions:?}"
    );
    assert!(
        reason("t_mar10_noon").contains("keep_weekly"),
        "{decisions:?}"
    );
    assert!(
        reason("t_mar05").contains("no rule keeps it"),
        "{decisions:?}"
    );

    // Only max_age 1h, every backup older: the newest is never deleted.
    let old = common::unique("oldonly");
    let mut rules = policy(&old, "0 3 * * *", "any", 0);
    rules.enabled = Some(false);
    rules.retention = Some(pb::Retention {
        max_age: "1h".into(),
        ..Default::default()
    });
    c.create_policy(pb::CreatePolicyRequest {
        policy: Some(rules),
    })
    .await
    .unwrap();
    // `c`, the newest, was deleted by hand and made again under its name by
    // someone else: retention leaves it out (it would have kept it as the
    // newest and deleted `a`), and never deletes it.
    for (backup, date, ours) in [
        ("a", "2025-01-02T00:00:00Z", true),
        ("b", "2025-01-01T00:00:00Z", true),
        ("c", "2025-01-03T00:00:00Z", false),
    ] {
        let backup = format!("{old}_{backup}");
        hand_made_run(&cfg, &root, &store, (&old, &backup, date), ours).await;
    }
    let decisions = preview(&mut c, old.clone()).await;
    assert_eq!(decisions.len(), 2, "{decisions:?}");
    assert!(
        decisions.iter().all(|d| !d.backup_name.ends_with("_c")),
        "{decisions:?}"
    );
    assert!(
        decisions[0].keep && decisions[0].reason.contains("never deleted"),
        "{decisions:?}"
    );
    assert!(!decisions[1].keep, "{decisions:?}");
    for p in [&name, &table, &old] {
        c.delete_policy(pb::DeletePolicyRequest {
            name: p.to_string(),
        })
        .await
        .unwrap();
    }
    server.finish();
}

/// The sweep prunes the records of ended runs beyond the newest 50, but
/// never one that holds its backup: a failed run whose job completed after
/// the run gave up keeps its record (its backup stays the policy's, shown
/// by GetPolicy and under retention); a failed run whose name was another
/// backup's goes. Hand-made records and commit points, pruned by a real
/// server's sweep. On the code before, every failed run's record went, and
/// the backup was the policy's no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sweep_keeps_the_record_of_a_failed_run_whose_backup_exists() {
    let cfg = common::config();
    let root = common::unique("prune_root");
    let store = store_of(&cfg, &root);
    let server = Proc::start_rooted(&cfg, "prune", &root, "").await;
    let mut c = policy_client(&server).await;
    let name = common::unique("prune");
    c.create_policy(pb::CreatePolicyRequest {
        policy: Some(pb::Policy {
            name: name.clone(),
            schedule: "0 0 1 1 *".into(),
            all_collections: true,
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    let slot = |day: i64| {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .timestamp_millis()
            + day * 86_400_000
    };
    let gave_up = format!("{name}_gave_up");
    let taken = format!("{name}_taken");
    hand_made_run(
        &cfg,
        &root,
        &store,
        (&name, &gave_up, "2026-01-01T00:00:00Z"),
        true,
    )
    .await;
    let failed = |backup: &str, kind: &str| RunRecord {
        state: RunState::Failed,
        error: Some(format!("{kind} (hand-made)")),
        error_kind: Some(kind.into()),
        ..common::runs::succeeded(slot(0), backup)
    };
    store
        .save_run(&name, &failed(&gave_up, "aborted"))
        .await
        .unwrap();
    hand_made_run(
        &cfg,
        &root,
        &store,
        (&name, &taken, "2026-01-02T00:00:00Z"),
        false,
    )
    .await;
    store
        .save_run(
            &name,
            &RunRecord {
                slot_ms: slot(1),
                ..failed(&taken, "already_exists")
            },
        )
        .await
        .unwrap();
    // 50 newer ended runs, whose backups are gone.
    for day in 2..52 {
        let gone = common::runs::succeeded(slot(day), &format!("{name}_gone_{day}"));
        assert!(store.start_run(&name, &gone).await.unwrap());
    }

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let runs = loop {
        let runs = store.runs(&name).await.unwrap();
        if runs.len() < 52 {
            break runs;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never pruned: {} runs",
            runs.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let slots: Vec<i64> = runs.iter().map(|r| r.slot_ms).collect();
    assert_eq!(
        runs.len(),
        51,
        "only the already_exists run's record goes: {slots:?}"
    );
    assert!(
        slots.contains(&slot(0)),
        "the failed run holding its backup is kept"
    );
    assert!(
        !slots.contains(&slot(1)),
        "the run whose name was another backup's goes"
    );
    let status = status_of(&mut c, &name).await;
    assert_eq!(status.backups, vec![gave_up.clone()], "still the policy's");

    c.delete_policy(pb::DeletePolicyRequest { name: name.clone() })
        .await
        .unwrap();
    server.finish();
    let bucket = rooted_bucket(&cfg);
    for backup in [&gave_up, &taken] {
        bucket
            .delete(&[format!("{root}/{backup}/meta/full_meta.json")])
            .await
            .unwrap();
    }
}

/// A policy on a database with `keep_last 1`: its first run backs up the
/// database's one collection. Once that collection is dropped, each
/// attempt of the next run fails FAILED_PRECONDITION saying the database
/// has no collection, and makes no backup; the first backup, the only one
/// holding data, stays (retention runs after a success only). On the code
/// before, the run succeeded with a backup of nothing, and its retention
/// deleted the first backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_that_would_back_up_no_collection_fails_and_retention_keeps_the_last_backup() {
    use milvus_backup::milvus::MilvusApi;
    let mut cfg = common::config();
    let m = common::milvus(&cfg);
    let db = common::unique("emptied_db");
    common::data::ensure_db(&m, &db).await;
    let mut spec = common::data::Spec::new(&common::unique("emptied_src"));
    spec.db = db.clone();
    common::data::create(&m, &spec).await;
    common::data::insert(&m, &spec, "", 0..50, 31).await;
    common::data::flush(&m, &spec.db, &spec.name).await;
    let root = common::unique("emptied_root");
    cfg.minio.backup_bucket_name = cfg.minio.bucket_name.clone();
    cfg.minio.backup_root_path = root.clone();
    let ctx = Context::from_config(&cfg).unwrap();
    let catalog = ctx.catalog.clone();
    let engine = Engine::new(ctx);
    let name = common::unique("emptied");
    let policy = Policy::parse(PolicyInput {
        name: name.clone(),
        schedule: "0 0 1 1 *".into(),
        database_names: vec![db.clone()],
        name_template: "{policy}_{yyyyMMdd_HHmmss}".into(),
        retention: RetentionInput {
            keep_last: 1,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    engine.create_policy(policy).await.unwrap();
    let pname = PolicyName::parse(&name).unwrap();
    let first = engine.run_policy_and_wait(&pname, |_| {}).await.unwrap();
    assert_eq!(first.state, RunState::Succeeded, "{first:?}");

    common::data::drop_if_exists(&m, &spec.db, &spec.name).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The run tries again with backoff within its slot (the database may
    // get collections again): its first failed attempt is watched for.
    let second = tokio::spawn({
        let (engine, pname) = (engine.clone(), pname.clone());
        async move { engine.run_policy_and_wait(&pname, |_| {}).await }
    });
    let store = PolicyStore::new(rooted_bucket(&cfg), &root);
    let failed = |store: PolicyStore, name: String, first: String| async move {
        let runs = store.runs(&name).await.unwrap();
        runs.into_iter()
            .find(|r| r.backup != first && r.error.is_some())
    };
    flows::eventually(
        "the second run's first attempt fails",
        Duration::from_secs(60),
        || {
            let attempt = failed(store.clone(), name.clone(), first.backup.clone());
            async move { attempt.await.is_some() }
        },
    )
    .await;
    let attempt = failed(store.clone(), name.clone(), first.backup.clone())
        .await
        .unwrap();
    let error = attempt.error.clone().unwrap_or_default();
    assert!(
        error.contains("selects no collection") && error.contains(&db),
        "the run's error names the empty database: {attempt:?}"
    );
    assert_eq!(
        attempt.error_kind.as_deref(),
        Some("failed_precondition"),
        "{attempt:?}"
    );
    assert!(
        !catalog.is_taken(&attempt.backup).await.unwrap(),
        "no backup {} was made",
        attempt.backup
    );
    assert!(
        catalog.read(&first.backup).await.unwrap().is_some(),
        "the first backup, the only one holding data, is kept"
    );

    // A deleted policy's run ends at its next attempt.
    engine.delete_policy(&pname).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(120), second)
        .await
        .expect("the run ends once its policy is deleted")
        .unwrap();
    assert!(
        !matches!(&ended, Ok(r) if r.state == RunState::Succeeded),
        "{ended:?}"
    );
    assert!(
        catalog.read(&first.backup).await.unwrap().is_some(),
        "the first backup is still there"
    );
    let _ = m.drop_database(&db).await;
}
