//! Backup policies on the real Milvus 2.3.5 and S3, run by server processes
//! that share one backup root of their own (so no other test's server sees
//! these policies): each slot once across replicas, retention, a replica
//! killed mid-run, a catch-up after all replicas were down, and bad input.
//! A failed run retried in its slot is in `policy_retention.rs`.

mod common;
#[path = "common/figures.rs"]
mod figures;

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use common::curl;
use common::flows;
use common::hello;
use common::policies::{policy, policy_client, set_enabled, settled_runs, status_of, store_of};
use common::process::{Proc, rooted_bucket, wait_for_log};
use milvus_backup::api::proto as pb;
use milvus_backup::policy::RunState;

const FIELDS: &[&str] = &["pk", "random", "var", "embeddings"];

/// A change that makes a policy invalid.
type Edit = fn(&mut pb::Policy);

fn count_in(path: &std::path::Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .matches(needle)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn policies_run_each_slot_once_across_replicas_and_keep_what_retention_says() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let coll = common::unique("policy_src");
    hello::create(&m, &coll, 600, 2, 47).await;
    let rows = hello::rows(&m, "default", &coll, "pk >= 0", FIELDS).await;
    let root = common::unique("policies_root");
    let store = store_of(&cfg, &root);

    let a = Proc::start_rooted(&cfg, "policy-a", &root, "").await;
    let mut b = Proc::start_rooted(&cfg, "policy-b", &root, "").await;
    let (mut pa, mut pb_) = (policy_client(&a).await, policy_client(&b).await);

    // Bad input: INVALID_ARGUMENT naming the field, and nothing stored.
    let bad = |f: fn(&mut pb::Policy)| {
        let mut p = policy("bad_policy", "*/5 * * * * *", &coll, 3);
        f(&mut p);
        p
    };
    let cases: [(Edit, &str); 5] = [
        (|p| p.schedule = "61 * * * *".into(), "61 * * * *"),
        (|p| p.time_zone = "Mars/Olympus".into(), "Mars/Olympus"),
        (|p| p.collection_names.clear(), "selection is empty"),
        (
            |p| p.retention.as_mut().unwrap().keep_daily = -2,
            "retention.keep_daily -2",
        ),
        (|p| p.schedule = "* * *".into(), "* * *"),
    ];
    for (f, needle) in cases {
        let err = pa
            .create_policy(pb::CreatePolicyRequest {
                policy: Some(bad(f)),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(
            err.message().contains(needle),
            "{needle:?} named in {err:?}"
        );
    }
    assert!(store.list().await.unwrap().is_empty(), "nothing was stored");
    let (code, body) = curl::json(&[
        "-X",
        "POST",
        &format!("http://127.0.0.1:{}/api/v1/policies", a.port),
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"name":"bad_policy","schedule":"0 3 * * *","all_collections":true,"retention":{"keep_lst":3}}"#,
    ]);
    assert_eq!(code, 400, "an unknown field is refused: {body}");
    assert!(body["msg"].as_str().unwrap().contains("keep_lst"), "{body}");

    // Two replicas, one policy every 5 s, keep_last 3, created over REST.
    let name = common::unique("every5s");
    let every5 = policy(&name, "*/5 * * * * *", &coll, 3);
    let rest_body = serde_json::json!({
        "name": name, "schedule": "*/5 * * * * *", "collection_names": [coll],
        "name_template": "{policy}_{yyyyMMdd_HHmmss}", "retention": {"keep_last": 3}
    });
    let (code, body) = curl::json(&[
        "-X",
        "POST",
        &format!("http://127.0.0.1:{}/api/v1/policies", b.port),
        "-H",
        "Content-Type: application/json",
        "-d",
        &rest_body.to_string(),
    ]);
    assert_eq!(code, 200, "{body}");
    assert!(body["data"]["next_run"].is_string(), "{body}");
    let dup = pa
        .create_policy(pb::CreatePolicyRequest {
            policy: Some(every5.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(dup.code(), tonic::Code::AlreadyExists, "{dup:?}");

    tokio::time::sleep(Duration::from_secs(60)).await;
    set_enabled(&mut pa, every5.clone(), false).await;
    let runs = settled_runs(&store, &name, Duration::from_secs(120)).await;
    let slots: Vec<i64> = runs.iter().map(|r| r.slot_ms).collect();
    let names: BTreeSet<&str> = runs.iter().map(|r| r.backup.as_str()).collect();
    assert_eq!(
        names.len(),
        runs.len(),
        "one backup name per slot: {runs:?}"
    );
    assert!(runs.len() >= 10, "about 12 slots in 60 s: {slots:?}");
    assert!(
        runs.iter().all(|r| r.state == RunState::Succeeded),
        "{runs:?}"
    );
    let gaps = slots.windows(2).filter(|w| w[1] - w[0] != 5000).count();
    assert!(
        gaps <= 1,
        "consecutive 5 s slots, at most one missed: {slots:?}"
    );
    // Each slot succeeded exactly once across both replicas' logs.
    let succeeded =
        count_in(&a.log, "policy run succeeded") + count_in(&b.log, "policy run succeeded");
    assert_eq!(
        succeeded,
        runs.len(),
        "one success per slot across replicas"
    );
    let ran_on: BTreeSet<&str> = runs.iter().map(|r| r.owner.as_str()).collect();

    // Retention kept the 3 newest (the last run's retention may still be
    // deleting); each restores equal and verifies.
    let mut a_client = a.client.clone();
    flows::eventually(
        "retention leaves 3 backups",
        Duration::from_secs(60),
        || {
            let mut c = a_client.clone();
            let name = name.clone();
            async move {
                flows::listed(&mut c)
                    .await
                    .iter()
                    .filter(|b| b.name.starts_with(&name))
                    .count()
                    == 3
            }
        },
    )
    .await;
    let newest: Vec<String> = runs
        .iter()
        .rev()
        .take(3)
        .map(|r| r.backup.clone())
        .collect();
    // A backup leaves the listing as its delete begins, and the policy's
    // status once its folder is gone: the status may lag by that delete.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = status_of(&mut pb_.clone(), &name).await;
        if status.backups == newest {
            break;
        }
        if std::time::Instant::now() >= deadline {
            // What a failure needs to be understood: the folders left, and the runs.
            let folders = rooted_bucket(&cfg)
                .list_dirs(&format!("{root}/"))
                .await
                .unwrap();
            let runs = store.runs(&name).await.unwrap();
            panic!(
                "the policy's status holds {:?}, not the 3 newest {newest:?}; folders: \
                 {folders:?}; runs: {runs:#?}",
                status.backups
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let listed: Vec<String> = flows::listed(&mut a_client)
        .await
        .into_iter()
        .map(|b| b.name)
        .filter(|n| n.starts_with(&name))
        .collect();
    assert_eq!(listed.len(), 3, "only the kept backups exist: {listed:?}");
    let status = status_of(&mut pb_, &name).await;
    assert_eq!(status.backups, newest, "{status:?}");
    let last = status.last_success.expect("a last success");
    assert_eq!(last.backup_name, newest[0]);
    assert!(status.next_run.is_none(), "disabled: no next run");
    for (i, backup) in newest.iter().enumerate() {
        flows::assert_verifies(&mut a.client.clone(), backup, "kept backup").await;
        let suffix = format!("_p{i}");
        flows::restore(
            &mut b.client.clone(),
            flows::restore_loaded_request(backup, &suffix),
        )
        .await;
        let restored =
            hello::rows(&m, "default", &format!("{coll}{suffix}"), "pk >= 0", FIELDS).await;
        hello::assert_rows_equal(&rows, &restored);
    }
    let preview = pa
        .preview_retention(pb::PreviewRetentionRequest { name: name.clone() })
        .await
        .unwrap()
        .into_inner()
        .decisions;
    assert_eq!(preview.len(), 3);
    assert!(
        preview
            .iter()
            .all(|d| d.keep && d.reason.contains("keep_last")),
        "{preview:?}"
    );
    let metrics = curl::metrics(a.port);
    assert!(
        metrics.contains(&format!(
            "milvus_backup_policy_last_success_timestamp_seconds{{policy=\"{name}\"}}"
        )),
        "{metrics}"
    );

    // A replica killed while it runs a slot: the other one finishes the slot,
    // with exactly one backup for it.
    let slow_name = common::unique("killed");
    let slow = policy(&slow_name, "*/30 * * * * *", &coll, 0);
    b.kill();
    a.finish();
    let mut a_slow =
        Proc::start_rooted(&cfg, "policy-slow", &root, "  rateLimitMiBps: 0.005\n").await;
    let mut pa = policy_client(&a_slow).await;
    pa.create_policy(pb::CreatePolicyRequest {
        policy: Some(slow.clone()),
    })
    .await
    .unwrap();
    wait_for_log(&a_slow.log, "backup started", Duration::from_secs(60)).await;
    let b2 = b.kill_and_restart().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    a_slow.kill();
    let mut pb2 = policy_client(&b2).await;
    set_enabled(&mut pb2, slow.clone(), false).await;
    wait_for_log(&b2.log, "taking over a policy run", Duration::from_secs(60)).await;
    let runs = settled_runs(&store, &slow_name, Duration::from_secs(180)).await;
    assert_eq!(runs.len(), 1, "one slot ran: {runs:?}");
    let taken = &runs[0];
    assert_eq!(taken.state, RunState::Succeeded, "{taken:?}");
    assert!(
        taken.attempts >= 2,
        "the other replica made a new attempt: {taken:?}"
    );
    flows::assert_verifies(&mut b2.client.clone(), &taken.backup, "taken-over run").await;
    let of_slot: Vec<String> = flows::listed(&mut b2.client.clone())
        .await
        .into_iter()
        .map(|b| b.name)
        .filter(|n| n.starts_with(&slow_name))
        .collect();
    assert_eq!(
        of_slot,
        vec![taken.backup.clone()],
        "exactly one backup for the slot"
    );

    // Every replica down for 3 slots: one catch-up run when one comes back.
    let down_name = common::unique("catchup");
    let down = policy(&down_name, "*/5 * * * * *", &coll, 0);
    let mut pb2 = policy_client(&b2).await;
    pb2.create_policy(pb::CreatePolicyRequest {
        policy: Some(down.clone()),
    })
    .await
    .unwrap();
    wait_for_log(
        &b2.log,
        &format!("policy run succeeded policy={down_name}"),
        Duration::from_secs(30),
    )
    .await;
    let before = settled_runs(&store, &down_name, Duration::from_secs(30)).await;
    let mut b2 = b2;
    b2.kill();
    a_slow.finish();
    tokio::time::sleep(Duration::from_secs(17)).await;
    let b3 = b2.kill_and_restart().await;
    let back_ms = Utc::now().timestamp_millis();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut pb3 = policy_client(&b3).await;
    set_enabled(&mut pb3, down.clone(), false).await;
    let after = settled_runs(&store, &down_name, Duration::from_secs(60)).await;
    let last_before = before.iter().map(|r| r.slot_ms).max().unwrap();
    let back = after
        .iter()
        .filter(|r| r.slot_ms > last_before)
        .min_by_key(|r| r.slot_ms)
        .expect("a run after the replicas came back");
    // The slots after the last run before, up to the first run after: all
    // were due while every replica was down, and only the newest ran.
    let missed = (back.slot_ms - last_before) / 5000;
    assert!(
        missed >= 3,
        "3 slots passed while down and one run covered them (last before {last_before}, \
         first after {}): {after:?}",
        back.slot_ms
    );
    assert!(
        back.started_ms <= back_ms + 3000,
        "the catch-up ran as the server came back, not at the next slot: {back:?}"
    );
    assert_eq!(back.state, RunState::Succeeded, "{back:?}");

    // The CLI: errors name the flags; `run` makes a backup and applies
    // retention (keep_last 1), as `preview` then shows.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_milvus-backup"))
            .arg("--config")
            .arg(b3.config())
            .args(["policy"])
            .args(args)
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let (code, _, err) = cli(&[
        "create",
        "-n",
        "cli_bad",
        "--schedule",
        "61 * * * *",
        "--all",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--schedule \"61 * * * *\""), "{err}");
    let (code, _, err) = cli(&[
        "create",
        "-n",
        "cli_bad",
        "--schedule",
        "0 3 * * *",
        "--all",
        "--keep_daily",
        "-1",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--keep_daily -1"), "{err}");
    let cli_name = common::unique("yearly");
    let (code, out, err) = cli(&[
        "create",
        "-n",
        &cli_name,
        "--schedule",
        "0 0 1 1 *",
        "-c",
        &coll,
        "--keep_last",
        "1",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    let mut made = Vec::new();
    for _ in 0..2 {
        let (code, out, err) = cli(&["run", "-n", &cli_name]);
        assert_eq!(code, Some(0), "{out}{err}");
        // The run's backup is shown as it goes (a line a second off a terminal).
        assert!(err.contains("backup Succeeded 100%"), "{err}");
        let run: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(run["state"], "succeeded", "{out}");
        made.push(run["backup"].as_str().unwrap().to_string());
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let (code, out, err) = cli(&["preview", "-n", &cli_name]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out.lines().count(),
        1,
        "retention kept only the newest: {out}"
    );
    assert!(out.starts_with("keep") && out.contains(&made[1]), "{out}");
    let (_, out, _) = cli(&["list"]);
    assert!(out.contains(&cli_name), "{out}");
    assert!(
        !flows::listed(&mut b3.client.clone())
            .await
            .iter()
            .any(|b| b.name == made[0])
    );

    // A run whose name is taken by a backup it did not make is refused
    // with exit 4 (AlreadyExists), naming the backup.
    let clash = common::unique("clash");
    let (code, out, err) = cli(&[
        "create",
        "-n",
        &clash,
        "--schedule",
        "0 0 1 1 *",
        "--name_template",
        "{policy}_{yyyy}",
        "-c",
        &coll,
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    let year = chrono::Utc::now().format("%Y").to_string();
    flows::backup_collections(&mut b3.client.clone(), &format!("{clash}_{year}"), &[&coll]).await;
    let (code, out, err) = cli(&["run", "-n", &clash]);
    assert_eq!(code, Some(4), "{out}{err}");
    assert!(err.contains(&format!("{clash}_{year}")), "{err}");
    let (code, _, err) = cli(&["delete", "-n", &clash]);
    assert_eq!(code, Some(0), "{err}");
    // A run now that would take the name of the policy's next slot (a
    // yearly one, in the year's last second, named by the year) is refused
    // with exit 5 (FailedPrecondition), naming the backup: run, it would
    // make that slot's run fail ALREADY_EXISTS. Nothing is run.
    let early = common::unique("early");
    let (code, out, err) = cli(&[
        "create",
        "-n",
        &early,
        "--schedule",
        "59 59 23 31 12 *",
        "--name_template",
        "{policy}_{yyyy}",
        "-c",
        &coll,
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = cli(&["run", "-n", &early]);
    assert_eq!(code, Some(5), "{out}{err}");
    assert!(
        err.contains(&format!("{early}_{year}")) && err.contains("next slot"),
        "{err}"
    );
    assert!(store.runs(&early).await.unwrap().is_empty(), "nothing ran");
    let (code, _, err) = cli(&["delete", "-n", &early]);
    assert_eq!(code, Some(0), "{err}");

    // Deleting a policy keeps its backups.
    for p in [&name, &slow_name, &down_name, &cli_name] {
        pb3.delete_policy(pb::DeletePolicyRequest {
            name: p.to_string(),
        })
        .await
        .unwrap();
    }
    assert!(store.list().await.unwrap().is_empty());
    let gone = pb3
        .get_policy(pb::GetPolicyRequest { name: name.clone() })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    assert!(
        flows::listed(&mut b3.client.clone())
            .await
            .iter()
            .any(|b| b.name == newest[0])
    );

    figures::publish(
        "policies_run_each_slot_once_across_replicas_and_keep_what_retention_says",
        &[format!(
            "policies: 2 replicas ran {} slots of an every-5-s policy once each (on {} servers), \
             kept 3; a killed owner's slot finished by the other replica in {} attempts; \
             1 catch-up run for {missed} slots missed while every replica was down",
            slots.len(),
            ran_on.len(),
            taken.attempts
        )],
    );
    b3.finish();
}
