//! Policies made for the tests: their client, their status, their store, a
//! policy on one collection, and their runs once settled.

use std::time::Duration;

use milvus_backup::api::proto as pb;
use milvus_backup::api::proto::policy_service_client::PolicyServiceClient;
use milvus_backup::config::Config;
use milvus_backup::policy::{PolicyStore, RunRecord, RunState};
use tonic::transport::Channel;

use super::process::{Proc, rooted_bucket};

/// A client of the policy service of server `p`.
pub async fn policy_client(p: &Proc) -> PolicyServiceClient<Channel> {
    PolicyServiceClient::connect(format!("http://127.0.0.1:{}", p.port))
        .await
        .unwrap()
}

/// GetPolicy's status of policy `name`.
#[allow(dead_code)]
pub async fn status_of(c: &mut PolicyServiceClient<Channel>, name: &str) -> pb::PolicyStatus {
    c.get_policy(pb::GetPolicyRequest { name: name.into() })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
}

/// The policies and runs of the servers on backup root `root`.
pub fn store_of(cfg: &Config, root: &str) -> PolicyStore {
    PolicyStore::new(rooted_bucket(cfg), root)
}

/// A policy on `coll` with `keep_last`.
pub fn policy(name: &str, schedule: &str, coll: &str, keep_last: i32) -> pb::Policy {
    pb::Policy {
        name: name.into(),
        schedule: schedule.into(),
        collection_names: vec![coll.into()],
        name_template: "{policy}_{yyyyMMdd_HHmmss}".into(),
        retention: Some(pb::Retention {
            keep_last,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Turns policy `p` on or off.
pub async fn set_enabled(c: &mut PolicyServiceClient<Channel>, mut p: pb::Policy, on: bool) {
    p.enabled = Some(on);
    c.update_policy(pb::UpdatePolicyRequest { policy: Some(p) })
        .await
        .expect("UpdatePolicy");
}

/// Waits until no run of `name` is RUNNING; returns every run, oldest first.
pub async fn settled_runs(store: &PolicyStore, name: &str, timeout: Duration) -> Vec<RunRecord> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let runs = store.runs(name).await.unwrap();
        if runs.iter().all(|r| r.state != RunState::Running) {
            return runs;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "runs of {name} still running after {timeout:?}: {runs:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Asks `c` to run policy `name` now, a second after any run before (backup
/// names go by the second); the name of the run's backup.
#[allow(dead_code)]
pub async fn run_now(c: &PolicyServiceClient<Channel>, name: &str) -> String {
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.clone()
        .run_policy_now(pb::RunPolicyNowRequest { name: name.into() })
        .await
        .expect("RunPolicyNow")
        .into_inner()
        .run
        .unwrap()
        .backup_name
}
