//! Backup policies on the real Milvus 2.3.5 and S3, run by server processes
//! that share one backup root of their own (so no other test's server sees
//! these policies): each slot once across replicas, retention, a replica
//! killed mid-run, a catch-up after all replicas were down, bad input, and
//! updates leaving `enabled` unset checked with the stored policy's.
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
use milvus_backup::policy::{POLICIES_DIR, RunRecord, RunState};

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
    let mut runs = settled_runs(&store, &name, Duration::from_secs(120)).await;
    runs.sort_by_key(|r| r.slot_ms);
    let slots: Vec<i64> = runs.iter().map(|r| r.slot_ms).collect();
    let names: BTreeSet<&str> = runs.iter().map(|r| r.backup.as_str()).collect();
    assert_eq!(
        names.len(),
        runs.len(),
        "one backup name per slot: {runs:?}"
    );
    // About 12 slots in 60 s; under load a run may outlast the 5 s between
    // slots, and the slots due meanwhile are left (see below).
    assert!(runs.len() >= 5, "at least 5 of the 12 slots ran: {slots:?}");
    assert!(
        runs.iter().all(|r| r.state == RunState::Succeeded),
        "{runs:?}"
    );
    assert!(
        slots.windows(2).all(|w| w[0] < w[1]) && slots.iter().all(|s| s % 5000 == 0),
        "one run per slot, each of the 5 s schedule: {slots:?}"
    );
    // Only one run of a policy at a time, across replicas: each starts once
    // the one before ended.
    for w in runs.windows(2) {
        let ended = w[0].ended_ms.expect("an ended run has its end time");
        assert!(
            w[1].started_ms >= ended,
            "the run of slot {} started before the run of slot {} ended: {runs:?}",
            w[1].slot_ms,
            w[0].slot_ms
        );
    }
    // A slot is left only when it came due while a run of the policy still
    // held its lease: the next run is the newest slot due once it let go.
    // That run's record may have ended before the slot (its retention still
    // holds the lease), so a replica's log line that the slot waited for it
    // says so too.
    let logs = std::fs::read_to_string(&a.log).unwrap_or_default()
        + &std::fs::read_to_string(&b.log).unwrap_or_default();
    let waited = |slot_ms: i64| {
        let at = chrono::DateTime::<Utc>::from_timestamp_millis(slot_ms).unwrap();
        let said = format!("policy={name} slot={at}");
        logs.lines().any(|l| {
            l.contains("the slot waits for the policy's run still running") && l.contains(&said)
        })
    };
    for w in runs.windows(2) {
        for skipped in (w[0].slot_ms + 5000..w[1].slot_ms).step_by(5000) {
            let running = w[0].ended_ms.is_some_and(|ended| ended > skipped);
            assert!(
                running || waited(skipped),
                "slot {skipped} was not run, yet the run of slot {} had ended ({:?}) and no \
                 replica said the slot waited for a run: {runs:?}",
                w[0].slot_ms,
                w[0].ended_ms
            );
        }
    }
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
    // The policy's slots are 9, 5 s apart, from a few seconds from now, then
    // none for 20 s (the same seconds of every minute): the server comes
    // back after the last of them, so the catch-up is that slot's run, told
    // apart from a run of a slot due after the restart by its slot alone.
    let first_ms = (Utc::now().timestamp_millis() + 3000) / 5000 * 5000 + 5000;
    let last_ms = first_ms + 8 * 5000;
    let mut seconds: Vec<i64> = (0..9).map(|i| (first_ms / 1000 + 5 * i) % 60).collect();
    seconds.sort_unstable();
    let seconds: Vec<String> = seconds.iter().map(i64::to_string).collect();
    let schedule = format!("{} * * * * *", seconds.join(","));
    let down_name = common::unique("catchup");
    let down = policy(&down_name, &schedule, &coll, 0);
    let mut pb2 = policy_client(&b2).await;
    pb2.create_policy(pb::CreatePolicyRequest {
        policy: Some(down.clone()),
    })
    .await
    .unwrap();
    wait_for_log(
        &b2.log,
        &format!("policy run succeeded policy={down_name}"),
        Duration::from_secs(60),
    )
    .await;
    let mut b2 = b2;
    b2.kill();
    a_slow.finish();
    // Every replica is down past the last slot. What ran before: the last
    // run may have been cut short RUNNING by the kill (the restarted server
    // ends it superseded, with no backup).
    let wait = last_ms + 300 - Utc::now().timestamp_millis();
    tokio::time::sleep(Duration::from_millis(wait.max(0) as u64)).await;
    let before = store.runs(&down_name).await.unwrap();
    let last_before = before
        .iter()
        .map(|r| r.slot_ms)
        .max()
        .expect("a run before the replicas went down");
    let restart_ms = Utc::now().timestamp_millis();
    let b3 = b2.kill_and_restart().await;
    // The policy is turned off once the catch-up began, well before its
    // next slot (20 s after the last).
    flows::eventually(
        "a run after the replicas came back",
        Duration::from_secs(60),
        || async {
            let runs = store.runs(&down_name).await.unwrap();
            runs.iter().any(|r| r.slot_ms > last_before)
        },
    )
    .await;
    let mut pb3 = policy_client(&b3).await;
    set_enabled(&mut pb3, down.clone(), false).await;
    let after = settled_runs(&store, &down_name, Duration::from_secs(60)).await;
    let caught_up: Vec<&RunRecord> = after.iter().filter(|r| r.slot_ms > last_before).collect();
    assert_eq!(
        caught_up.len(),
        1,
        "one run after the replicas came back (last before {last_before}): {after:?}"
    );
    let back = caught_up[0];
    // The slots after the last run before, up to the run after: all were
    // due while every replica was down, and only the newest ran, as the
    // server came back (no slot came due between the restart and the run).
    assert!(
        back.slot_ms == last_ms && back.slot_ms < restart_ms,
        "the catch-up ran the newest slot due at the restart ({last_ms}, restart at \
         {restart_ms}): {back:?}"
    );
    let missed = (back.slot_ms - last_before) / 5000;
    assert!(
        missed >= 3,
        "3 slots passed while down and one run covered them (last before {last_before}, \
         first after {}): {after:?}",
        back.slot_ms
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

/// `enabled` left unset by an update keeps what the policy had, and the
/// update is checked with it. A policy turned off whose name template has
/// no year and whose backups no rule deletes (accepted: it makes no run) is
/// updated with another schedule and `enabled` unset over gRPC, REST and
/// the CLI: each is accepted and the policy stays off (on the code before,
/// each was refused INVALID_ARGUMENT "has no year field", checked as if it
/// turned the policy on). Turned on by an update (on each of the three), or
/// given that template by an update leaving `enabled` unset while it is on,
/// it is refused naming `name_template`, and its stored definition is not
/// rewritten. A create leaving `enabled` unset is on, and refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_update_leaving_enabled_unset_is_checked_as_the_policy_stays() {
    let cfg = common::config();
    let root = common::unique("off_root");
    let store = store_of(&cfg, &root);
    let bucket = rooted_bucket(&cfg);
    let definition = |n: &str| format!("{root}/{POLICIES_DIR}/{n}/policy.json");
    let server = Proc::start_rooted(&cfg, "policy-off", &root, "").await;
    let mut c = policy_client(&server).await;
    // Never run (off, or refused), so the collection need not exist.
    let coll = common::unique("off_src");
    let yearless = |name: &str, schedule: &str, enabled: Option<bool>| pb::Policy {
        name_template: "{policy}_{MMdd}".into(),
        retention: None,
        enabled,
        ..policy(name, schedule, &coll, 0)
    };
    let refused = |err: tonic::Status| {
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(
            err.message().contains("name_template") && err.message().contains("has no year field"),
            "{err:?}"
        );
    };

    // A create leaving `enabled` unset is on: refused, nothing stored.
    let on = common::unique("on");
    let err = c
        .create_policy(pb::CreatePolicyRequest {
            policy: Some(yearless(&on, "0 3 * * *", None)),
        })
        .await
        .unwrap_err();
    refused(err);
    assert!(store.get(&on).await.unwrap().is_none(), "nothing stored");

    let name = common::unique("off");
    c.create_policy(pb::CreatePolicyRequest {
        policy: Some(yearless(&name, "0 3 * * *", Some(false))),
    })
    .await
    .expect("CreatePolicy of a policy turned off");

    // gRPC: accepted, still off.
    let answer = c
        .update_policy(pb::UpdatePolicyRequest {
            policy: Some(yearless(&name, "0 4 * * *", None)),
        })
        .await
        .expect("UpdatePolicy leaving enabled unset")
        .into_inner()
        .status
        .unwrap()
        .policy
        .unwrap();
    assert_eq!(answer.enabled, Some(false), "{answer:?}");
    let shown = status_of(&mut c, &name).await;
    let p = shown.policy.clone().unwrap();
    assert_eq!(
        (p.enabled, p.schedule.as_str()),
        (Some(false), "0 4 * * *"),
        "{shown:?}"
    );
    assert!(shown.next_run.is_none(), "off: no next run: {shown:?}");

    // REST: accepted, still off.
    let put = |body: serde_json::Value| {
        curl::json(&[
            "-X",
            "PUT",
            &format!("http://127.0.0.1:{}/api/v1/policies/{name}", server.port),
            "-H",
            "Content-Type: application/json",
            "-d",
            &body.to_string(),
        ])
    };
    let (code, answer) = put(serde_json::json!({
        "schedule": "0 5 * * *", "collection_names": [coll], "name_template": "{policy}_{MMdd}"
    }));
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["data"]["policy"]["enabled"], false, "{answer}");
    assert_eq!(
        answer["data"]["policy"]["schedule"], "0 5 * * *",
        "{answer}"
    );

    // The CLI, without --enabled or --disabled: accepted, still off.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_milvus-backup"))
            .arg("--config")
            .arg(server.config())
            .arg("policy")
            .args(args)
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let update: [&str; 9] = [
        "update",
        "-n",
        &name,
        "--schedule",
        "0 6 * * *",
        "-c",
        &coll,
        "--name_template",
        "{policy}_{MMdd}",
    ];
    let (code, out, err) = cli(&update);
    assert_eq!(code, Some(0), "{out}{err}");
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["policy"]["enabled"], false, "{out}");
    let p = status_of(&mut c, &name).await.policy.unwrap();
    assert_eq!((p.enabled, p.schedule.as_str()), (Some(false), "0 6 * * *"));

    // Turned on: refused on each, and the definition is not rewritten.
    let before = bucket.read(&definition(&name)).await.unwrap();
    let err = c
        .update_policy(pb::UpdatePolicyRequest {
            policy: Some(yearless(&name, "0 7 * * *", Some(true))),
        })
        .await
        .unwrap_err();
    refused(err);
    let (code, answer) = put(serde_json::json!({
        "schedule": "0 7 * * *", "collection_names": [coll], "name_template": "{policy}_{MMdd}",
        "enabled": true
    }));
    assert_eq!(code, 400, "{answer}");
    let msg = answer["msg"].as_str().unwrap_or_default();
    assert!(
        msg.contains("name_template") && msg.contains("has no year field"),
        "{answer}"
    );
    let mut turn_on = update.to_vec();
    turn_on.push("--enabled");
    let (code, out, err) = cli(&turn_on);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        err.contains("name_template") && err.contains("has no year field"),
        "{err}"
    );
    assert_eq!(
        bucket.read(&definition(&name)).await.unwrap(),
        before,
        "nothing written"
    );
    let shown = status_of(&mut c, &name).await;
    let p = shown.policy.clone().unwrap();
    assert_eq!(
        (p.enabled, p.schedule.as_str()),
        (Some(false), "0 6 * * *"),
        "still off, its schedule unchanged: {shown:?}"
    );

    // A policy on, given that template by an update leaving `enabled`
    // unset: refused once the stored policy shows it on, nothing written.
    // Not due while the test runs.
    let mut yearly = policy(&on, "0 0 1 1 *", &coll, 0);
    yearly.retention = None;
    c.create_policy(pb::CreatePolicyRequest {
        policy: Some(yearly),
    })
    .await
    .expect("CreatePolicy with the default template's year");
    let before = bucket.read(&definition(&on)).await.unwrap();
    let err = c
        .update_policy(pb::UpdatePolicyRequest {
            policy: Some(yearless(&on, "0 3 * * *", None)),
        })
        .await
        .unwrap_err();
    refused(err);
    assert_eq!(
        bucket.read(&definition(&on)).await.unwrap(),
        before,
        "nothing written"
    );
    let p = status_of(&mut c, &on).await.policy.unwrap();
    assert_eq!(
        (p.enabled, p.schedule.as_str(), p.name_template.as_str()),
        (Some(true), "0 0 1 1 *", "{policy}_{yyyyMMdd_HHmmss}")
    );

    for p in [&name, &on] {
        c.delete_policy(pb::DeletePolicyRequest { name: p.clone() })
            .await
            .unwrap();
    }
    server.finish();
}
