//! What a server costs the backup storage while nothing happens, and what
//! its policy scheduler reads again before a slot runs. Against the real S3
//! of the test environment (requests counted by a proxy) and the real Milvus.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;
use common::faults::Rates;
use common::hello;
use common::policies::{policy, policy_client, settled_runs, store_of};
use common::process::{Proc, config_with, root_backups_at, route_s3_through, set_lease_ttl};
use milvus_backup::api::proto as pb;
use milvus_backup::config::Config;
use milvus_backup::model::{Policy, PolicyInput, PolicyUpdate};
use milvus_backup::policy::RunState;

/// A server config on backup root `root` with a lease TTL of `ttl_s`
/// seconds (not the tests' 3), its S3 through `proxy_port` if given.
fn config_ttl(
    cfg: &Config,
    tag: &str,
    root: &str,
    ttl_s: u32,
    proxy_port: Option<u16>,
) -> (PathBuf, PathBuf) {
    let (state, config) = config_with(cfg, tag, "");
    set_lease_ttl(&config, ttl_s);
    root_backups_at(&config, root);
    if let Some(port) = proxy_port {
        route_s3_through(cfg, &config, port);
    }
    (state, config)
}

/// An idle server with the default 30 s lease TTL and one policy (made by
/// another server, not due for months): over 20 s it lists the storage a few
/// times, and reads the policy at most once. Before, it listed the policies
/// and read each every second, and looked for jobs to take over every 2 s:
/// about 60 LISTs and 20 GETs of the policy in the same 20 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_server_lists_the_storage_rarely() {
    let cfg = common::config();
    let s3 = format!("{}:{}", cfg.minio.address, cfg.minio.port)
        .parse()
        .unwrap();
    let proxy = common::faults::start(s3, Rates::default()).await;
    let root = common::unique("idle_root");
    let store = store_of(&cfg, &root);
    let name = common::unique("idle_p");
    let yearly = Policy::parse(PolicyInput {
        name: name.clone(),
        schedule: "0 0 1 1 *".into(),
        all_collections: true,
        ..Default::default()
    })
    .unwrap();
    store.create(&yearly, None).await.unwrap();

    let (state, config) = config_ttl(&cfg, "idle", &root, 30, Some(proxy.addr.port()));
    let server = Proc::on(state, config, None).await;
    // Past its start (recovery, the first looks).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let from = proxy.counts.seen.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(20)).await;
    let seen = proxy.counts.seen.lock().unwrap()[from..].to_vec();
    server.finish();

    let lists: Vec<_> = seen
        .iter()
        .filter(|r| r.starts_with("GET ") && r.contains("list-type=2"))
        .collect();
    let policy_key = format!("{root}/_policies/{name}/policy.json");
    let policy_reads = seen
        .iter()
        .filter(|r| r.starts_with("GET ") && r.contains(&policy_key))
        .count();
    eprintln!(
        "idle 20 s: {} requests, {} LISTs, {policy_reads} reads of the policy",
        seen.len(),
        lists.len()
    );
    assert!(
        lists.len() <= 10,
        "{} LISTs in 20 s idle: {lists:#?}",
        lists.len()
    );
    assert!(
        policy_reads <= 1,
        "the policy read {policy_reads} times in 20 s idle: {seen:#?}"
    );
    assert!(!lists.is_empty(), "it still looks for jobs to take over");
    store.delete(&name).await.unwrap();
}

/// A server keeps its listing of the policies for a lease TTL, at most 30 s
/// (the cap here), so it has not seen a policy turned off through another
/// server: it reads the policy again when its slot is due, and does not
/// run it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_policy_turned_off_elsewhere_does_not_run_from_an_old_listing() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let coll = common::unique("stale_src");
    hello::create(&m, &coll, 100, 1, 11).await;
    let root = common::unique("stale_root");
    let store = store_of(&cfg, &root);
    let (state, config) = config_ttl(&cfg, "stale", &root, 300, None);
    let server = Proc::on(state, config, None).await;
    let mut client = policy_client(&server).await;
    let name = common::unique("stale_p");
    client
        .create_policy(pb::CreatePolicyRequest {
            policy: Some(policy(&name, "*/5 * * * * *", &coll, 2)),
        })
        .await
        .unwrap();

    // It runs from this server's listing, made after the creation.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let runs = store.runs(&name).await.unwrap();
        if runs.iter().any(|r| r.state == RunState::Succeeded) {
            break;
        }
        assert!(Instant::now() < deadline, "no run succeeded: {runs:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The gauges follow the run made here, not the next look at the
    // records (a lease TTL away).
    let gauges = [
        format!("milvus_backup_policy_last_success_timestamp_seconds{{policy=\"{name}\"}}"),
        format!("milvus_backup_policy_next_run_timestamp_seconds{{policy=\"{name}\"}}"),
    ];
    let port = server.port;
    common::flows::eventually("the policy's gauges", Duration::from_secs(10), || {
        let metrics = common::curl::metrics(port);
        let shown = gauges.iter().all(|g| metrics.contains(g.as_str()));
        async move { shown }
    })
    .await;

    // A change made through this server: it lists the policies anew at its
    // next tick, so its listing is a few seconds old when the policy is...
    // The change moves the slots to 2 s past every fifth second, so the
    // next-run gauge, set from the listing at every tick, shows when the
    // server has listed the changed policy.
    let moved: Vec<String> = (0..12).map(|i| (5 * i + 2).to_string()).collect();
    let moved = format!("{} * * * * *", moved.join(","));
    client
        .update_policy(pb::UpdatePolicyRequest {
            policy: Some(policy(&name, &moved, &coll, 3)),
        })
        .await
        .unwrap();
    let next_run = &gauges[1];
    common::flows::eventually(
        "the server listed the changed policy",
        Duration::from_secs(30),
        || {
            let metrics = common::curl::metrics(port);
            let next: Option<i64> = metrics
                .lines()
                .find_map(|l| l.strip_prefix(next_run.as_str()))
                .and_then(|v| v.trim().parse().ok());
            async move { next.is_some_and(|s| s % 5 == 2) }
        },
    )
    .await;
    // ... turned off as another server would: through the storage. (A tick
    // that listed before the change may have read the policy again already:
    // only what is said from here counts.)
    let changed = "the policy changed since it was listed";
    let said_before = server.logged(changed);
    let stored = store.get(&name).await.unwrap().unwrap();
    let off = PolicyUpdate::parse(PolicyInput {
        enabled: Some(false),
        ..stored.policy.input().clone()
    })
    .unwrap();
    store.update(&off, None).await.unwrap();
    let off_ms = Utc::now().timestamp_millis();
    // Three slots pass.
    tokio::time::sleep(Duration::from_secs(16)).await;
    let runs = settled_runs(&store, &name, Duration::from_secs(120)).await;
    let said = server.logged(changed);
    server.finish();

    let late: Vec<_> = runs.iter().filter(|r| r.slot_ms > off_ms).collect();
    assert!(
        late.is_empty(),
        "slots after it was turned off ran: {late:#?}"
    );
    assert!(
        said > said_before,
        "the due slot read the policy again once it was turned off"
    );
    store.delete(&name).await.unwrap();
}
