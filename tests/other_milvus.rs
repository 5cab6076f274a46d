//! Two Milvus instances may share one backup storage (one cluster backs up,
//! another restores from the same bucket). A server of the other Milvus
//! never takes over a dead server's backup or restore (resumed there, a
//! restore would write into a Milvus nobody asked to change, a backup would
//! hold the other Milvus's collections); a replica of the job's own Milvus
//! does. Against the real Milvus 2.3.5 and S3: "another Milvus" is the test
//! Milvus's storage under another `minio.rootPath`, whose id
//! (`{rootPath}/milvus-backup/instance.json`) is another one.

mod common;

use std::time::Duration;

use common::flows;
use common::process::Proc;
use milvus_backup::api::proto as pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_of_another_milvus_never_takes_over_a_dead_servers_jobs() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let (spec, rows) = common::restores::source(&m, &common::unique("om_src"), 200).await;
    let root = common::unique("om_root");
    // The backup to restore from, made by a server that then stops.
    let mut maker = Proc::start_rooted(&cfg, "ommaker", &root, "").await;
    let base = common::unique("om_base");
    flows::backup_collections(&mut maker.client, &base, &[&spec.name]).await;
    maker.finish();

    let mut elsewhere = cfg.clone();
    elsewhere.minio.root_path = common::unique("om_files");
    let other = Proc::start_rooted(&elsewhere, "omother", &root, "").await;
    let name = common::unique("om_b");
    let (mut owner, backup_id, restore_id) =
        flows::owner_of_paused_jobs(&cfg, "omowner", &root, (&name, &spec.name), (&base, "_om"))
            .await;
    owner.kill();

    // The 3 s leases expire, half a TTL passes, and the other server looks
    // every second: it names both jobs once, and leaves them.
    flows::eventually(
        "the other server looks",
        Duration::from_secs(60),
        || async { other.logged("is of another Milvus") + other.logged("took over a") >= 2 },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut on_other = other.client.clone();
    let backup = flows::get_backup(&mut on_other, &name).await;
    let restore = flows::get_restore(&mut on_other, &restore_id).await;
    assert_eq!(other.logged("took over a"), 0, "it took a job over");
    assert_eq!(other.logged("is not resumed"), 0, "it ended a job");
    assert_eq!(other.logged("is of another Milvus"), 2, "said once per job");
    assert!(
        backup.state < pb::JobState::Succeeded as i32
            && restore.state < pb::JobState::Succeeded as i32,
        "left alone, unended: {backup:?} {restore:?}"
    );

    // A replica of the job's own Milvus resumes both under their ids.
    let mut same = Proc::start_rooted(&cfg, "omsame", &root, "").await;
    let end = flows::watch_backup_to_end(&mut same.client, &name, Duration::from_secs(120)).await;
    assert_eq!(
        (end.state, end.id.clone()),
        (pb::JobState::Succeeded as i32, backup_id),
        "{end:?}"
    );
    flows::assert_verifies(
        &mut same.client,
        &name,
        "resumed by its own Milvus's replica",
    )
    .await;
    let end = flows::watch_restore_to_end(&mut same.client, &restore_id).await;
    assert_eq!(end.state, pb::JobState::Succeeded as i32, "{end:?}");
    let target = format!("{}_om", spec.name);
    let restored = common::data::rows(&m, &spec, &spec.db, &target, &[]).await;
    common::data::assert_rows_equal("resumed by its own Milvus's replica", &rows, &restored);
    assert_eq!(
        other.logged("took over a"),
        0,
        "the other server never took it"
    );
    same.finish();
    other.finish();
    owner.finish();
    common::data::drop_if_exists(&m, &spec.db, &spec.name).await;
    common::data::drop_if_exists(&m, &spec.db, &target).await;
}

/// A policy backs up the Milvus of the server that created it: a server of
/// another Milvus on the same backup storage never runs its slots (it says
/// so once) and refuses to run it now (FAILED_PRECONDITION naming it); a
/// server of its own Milvus runs its next slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_policy_runs_only_on_servers_of_its_own_milvus() {
    use milvus_backup::api::proto::policy_service_client::PolicyServiceClient;
    use milvus_backup::policy::{PolicyStore, RunState};
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = common::data::Spec::new(&common::unique("omp_src"));
    common::data::create(&m, &spec).await;
    common::data::insert(&m, &spec, "", 0..40, 5).await;
    common::data::flush(&m, &spec.db, &spec.name).await;
    let root = common::unique("omp_root");
    let policies = |p: &Proc| PolicyServiceClient::connect(format!("http://127.0.0.1:{}", p.port));
    // Made on a server of the test Milvus, which then stops.
    let creator = Proc::start_rooted(&cfg, "ompcreator", &root, "").await;
    let name = common::unique("omp");
    policies(&creator)
        .await
        .unwrap()
        .create_policy(pb::CreatePolicyRequest {
            policy: Some(pb::Policy {
                name: name.clone(),
                schedule: "*/4 * * * * *".into(),
                collection_names: vec![spec.name.clone()],
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    creator.finish();
    let store = PolicyStore::new(common::process::rooted_bucket(&cfg), &root);
    let first_runs = store.runs(&name).await.unwrap().len();

    let mut elsewhere = cfg.clone();
    elsewhere.minio.root_path = common::unique("omp_files");
    let other = Proc::start_rooted(&elsewhere, "ompother", &root, "").await;
    let refused = policies(&other)
        .await
        .unwrap()
        .run_policy_now(pb::RunPolicyNowRequest { name: name.clone() })
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    assert!(refused.message().contains(&name), "{refused:?}");
    // Three slots pass with only the other Milvus's server up.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        store.runs(&name).await.unwrap().len(),
        first_runs,
        "no slot ran on the other Milvus's server"
    );
    assert_eq!(other.logged("backs up another Milvus"), 1, "said once");

    let same = Proc::start_rooted(&cfg, "ompsame", &root, "").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let runs = store.runs(&name).await.unwrap();
        if runs
            .iter()
            .skip(first_runs)
            .any(|r| r.state == RunState::Succeeded)
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{runs:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut on_same = policies(&same).await.unwrap();
    on_same
        .delete_policy(pb::DeletePolicyRequest { name: name.clone() })
        .await
        .unwrap();
    same.finish();
    other.finish();
    common::data::drop_if_exists(&m, &spec.db, &spec.name).await;
}
