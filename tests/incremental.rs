//! Incremental backups against the real Milvus 2.3.5 and S3: a full backup,
//! an incremental one with nothing changed, 10% more rows and some deleted,
//! another incremental one. Each restores equal to its moment; deleting the
//! full one, then the middle one, leaves the last restorable and verified.

mod common;
#[path = "common/figures.rs"]
mod figures;

use common::flows;
use common::hello;
use common::incr::{FIELDS, assert_restores, backup, backup_in, delete};
use milvus_backup::api::proto as pb;
use milvus_backup::milvus::proto::milvus as mpb;
use milvus_backup::milvus::{MilvusApi, MilvusClient};
use rand::SeedableRng;

async fn delete_rows(m: &MilvusClient, coll: &str, expr: &str) {
    let req = mpb::DeleteRequest {
        collection_name: coll.into(),
        expr: expr.into(),
        ..Default::default()
    };
    let resp = m
        .raw()
        .delete(m.request("default", req))
        .await
        .expect("Delete")
        .into_inner();
    milvus_backup::milvus::check_status("Delete", resp.status.as_ref()).expect("Delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_incremental_chain_restores_each_moment_and_survives_deletes() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client.clone();
    let store = server.ctx.catalog.store().clone();

    let coll = common::unique("incr_src");
    hello::create(&m, &coll, 2000, 2, 11).await;
    let moment0 = hello::rows(&m, "default", &coll, "pk >= 0", FIELDS).await;
    assert_eq!(moment0.len(), 2000);

    // A full backup, then an incremental one with nothing changed.
    let full = common::unique("incr_full");
    let b0 = backup(&mut client, &full, &coll, false).await;
    assert!(!b0.incremental && b0.files_reused == 0);
    let full_files = b0.progress.unwrap().files_total;
    let full_bytes = b0.progress.unwrap().bytes_total;
    let inc1 = common::unique("incr_one");
    let b1 = backup(&mut client, &inc1, &coll, true).await;
    assert!(b1.incremental, "{b1:?}");
    assert_eq!(b1.based_on, vec![full.clone()]);
    let p1 = b1.progress.unwrap();
    let copied1 = p1.bytes_total - b1.bytes_reused;
    assert_eq!(
        (b1.files_reused, b1.bytes_reused),
        (full_files, full_bytes),
        "nothing changed: every object is reused ({b1:?})"
    );
    assert_eq!(copied1, 0);
    let own: Vec<String> = store
        .list(&format!("backup/{inc1}/binlogs/"))
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert!(
        own.is_empty(),
        "an unchanged incremental copies no binlog: {own:?}"
    );

    // 10% more rows, and some deleted; then another incremental backup.
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    hello::insert(&m, &coll, 2000..2200, &mut rng).await;
    delete_rows(&m, &coll, "pk < 50").await;
    let flush = m.flush("default", &coll).await.expect("Flush");
    flows::eventually("the flush", std::time::Duration::from_secs(120), || async {
        m.is_flushed("default", &coll, &flush)
            .await
            .expect("GetFlushState")
    })
    .await;
    let moment2 = hello::rows(&m, "default", &coll, "pk >= 0", FIELDS).await;
    assert_eq!(moment2.len(), 2150);
    let inc2 = common::unique("incr_two");
    let b2 = backup(&mut client, &inc2, &coll, true).await;
    let p2 = b2.progress.unwrap();
    let copied2 = p2.bytes_total - b2.bytes_reused;
    assert!(b2.bytes_reused > 0 && copied2 > 0, "{b2:?}");
    assert!(
        b2.based_on.contains(&full) && !b2.based_on.contains(&inc2),
        "{b2:?}"
    );
    figures::publish(
        "an_incremental_chain_restores_each_moment_and_survives_deletes",
        &[
            format!("full backup: {full_files} objects, {full_bytes} bytes"),
            format!(
                "incremental, nothing changed: {copied1} bytes copied, {} reused",
                b1.bytes_reused
            ),
            format!(
                "incremental after +10% rows and deletes: {copied2} bytes copied ({:.1}% of the full), {} reused",
                100.0 * copied2 as f64 / full_bytes as f64,
                b2.bytes_reused
            ),
        ],
    );

    // Each backup is listed, verifies, and restores equal to its moment.
    let listed = flows::listed(&mut client).await;
    for name in [&full, &inc1, &inc2] {
        assert!(listed.iter().any(|b| &b.name == name), "{name} listed");
        flows::assert_verifies(&mut client, name, name).await;
    }
    assert_restores(&mut client, &m, &full, &coll, &moment0).await;
    assert_restores(&mut client, &m, &inc1, &coll, &moment0).await;
    assert_restores(&mut client, &m, &inc2, &coll, &moment2).await;

    // Deleting the full backup keeps what the others reference.
    let d = delete(&mut client, &full).await;
    assert!(d.objects_kept > 0 && d.objects_deleted > 0, "{d:?}");
    assert!(
        store
            .head(&format!("backup/{full}/meta/full_meta.json"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !flows::listed(&mut client)
            .await
            .iter()
            .any(|b| b.name == full)
    );
    flows::assert_verifies(&mut client, &inc1, "inc1").await;
    flows::assert_verifies(&mut client, &inc2, "inc2").await;
    // Asked again (a retry), the delete says the backup is gone, naming the
    // delete and what it kept (FAILED_PRECONDITION "it was not deleted" before).
    let again = common::incr::try_delete(&mut client, &full)
        .await
        .expect_err("nothing to delete");
    assert_eq!(again.code(), tonic::Code::NotFound, "{again:?}");
    assert!(
        again.message().contains(&d.job.as_ref().unwrap().id)
            && again
                .message()
                .contains(&format!("keeps {} objects", d.objects_kept)),
        "{again:?}"
    );
    // Then the middle one, as a detached job followed to its end: the last
    // still verifies and restores.
    let job = flows::detached_delete(&mut client, &inc1).await;
    let end = flows::watched_delete_end(&mut client, &job.id).await;
    assert_eq!(end.state, pb::JobState::Succeeded as i32, "{end:?}");
    assert!(
        end.objects_total > 0 && end.objects_deleted == end.objects_total,
        "{end:?}"
    );
    assert!(
        !flows::listed(&mut client)
            .await
            .iter()
            .any(|b| b.name == inc1)
    );
    flows::assert_verifies(&mut client, &inc2, "inc2").await;
    assert_restores(&mut client, &m, &inc2, &coll, &moment2).await;

    // Deleting the last one leaves nothing of the chain behind.
    let d = delete(&mut client, &inc2).await;
    assert_eq!(d.objects_kept, 0, "{d:?}");
    for name in [&full, &inc1, &inc2] {
        let left = store.list(&format!("backup/{name}/")).await.unwrap();
        assert!(left.is_empty(), "{name}: {left:?}");
    }
    hello::drop_if_exists(&m, "default", &coll).await;
}

/// The test environment's config with the backups under a root of their
/// own (named from `tag`), in the bucket the server processes of
/// `Proc::start_rooted` keep them in: no server of another test takes over
/// a job these tests kill, or runs one into their failpoints.
fn rooted_config(tag: &str) -> (milvus_backup::config::Config, String) {
    let mut cfg = common::config();
    let root = common::unique(tag);
    cfg.minio.backup_bucket_name = cfg.minio.bucket_name.clone();
    cfg.minio.backup_root_path = root.clone();
    (cfg, root)
}

/// Starts a job through `start` in the background (its stream is never read).
fn in_background<F>(start: F)
where
    F: std::future::Future + Send + 'static,
{
    tokio::spawn(async move {
        let _ = start.await;
    });
}

/// The answer of a DeleteBackup started in the background.
type DeleteAnswer =
    tokio::task::JoinHandle<Result<tonic::Response<pb::DeleteBackupResponse>, tonic::Status>>;

/// Starts the delete of `name` through `client` in the background.
fn deleting(
    mut client: milvus_backup::api::proto::backup_service_client::BackupServiceClient<
        tonic::transport::Channel,
    >,
    name: &str,
) -> DeleteAnswer {
    let name = name.to_string();
    tokio::spawn(async move {
        client
            .delete_backup(pb::DeleteBackupRequest {
                name,
                ..Default::default()
            })
            .await
    })
}

/// A base and an incremental backup reusing all its objects, made by an
/// in-process server with a 3 s lease TTL on a backup root of its own (no
/// other server runs a job into these tests' failpoints).
struct BaseAndIncremental {
    cfg: milvus_backup::config::Config,
    root: String,
    m: MilvusClient,
    server: common::TestServer,
    store: std::sync::Arc<dyn milvus_backup::storage::ObjectStore>,
    coll: String,
    base: String,
    inc: String,
}

impl BaseAndIncremental {
    async fn new(tag: &str, seed: u64) -> Self {
        let (mut cfg, root) = rooted_config(&format!("{tag}_root"));
        cfg.backup.lease_ttl_seconds = 3;
        let m = common::milvus(&cfg);
        let server = common::TestServer::start(&cfg).await;
        let mut client = server.client.clone();
        let store = server.ctx.catalog.store().clone();
        let coll = common::unique(tag);
        hello::create(&m, &coll, 600, 2, seed).await;
        let (base, inc) = (
            common::unique(&format!("{tag}_full")),
            common::unique(&format!("{tag}_inc")),
        );
        backup(&mut client, &base, &coll, false).await;
        let b = backup_in(&mut client, &inc, &coll).await;
        assert_eq!(b.based_on, vec![base.clone()]);
        Self {
            cfg,
            root,
            m,
            server,
            store,
            coll,
            base,
            inc,
        }
    }

    /// A server process on the root, held at `point` until `go` exists,
    /// once the delete of `name` it runs reached it; with that delete.
    async fn delete_held(
        &self,
        tag: &str,
        point: &str,
        go: &std::path::Path,
        name: &str,
    ) -> (common::process::Proc, DeleteAnswer) {
        let point = format!("{point}@{}", go.display());
        let deleter = common::process::Proc::start_rooted_paused(
            &self.cfg,
            tag,
            &self.root,
            "",
            Some(&point),
        )
        .await;
        let answer = deleting(deleter.client.clone(), name);
        deleter
            .wait_paused(std::time::Duration::from_secs(60))
            .await;
        (deleter, answer)
    }

    /// Asserts that neither backup left an object in its folder.
    async fn assert_both_gone(&self) {
        for name in [&self.base, &self.inc] {
            let left = self
                .store
                .list(&format!("{}/{name}/", self.root))
                .await
                .unwrap();
            assert!(left.is_empty(), "{name}: {left:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deletes_racing_incremental_backups_and_killed_deletes_leave_every_backup_whole() {
    // A root of its own: the jobs it kills are left to its own servers.
    let (cfg, root) = rooted_config("incr_race_root");
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client.clone();
    let store = server.ctx.catalog.store().clone();
    let coll = common::unique("incr_race");
    hello::create(&m, &coll, 1000, 2, 21).await;
    let rows = hello::rows(&m, "default", &coll, "pk >= 0", FIELDS).await;

    let full = common::unique("race_full");
    backup(&mut client, &full, &coll, false).await;
    let inc0 = common::unique("race_inc0");
    let b = backup_in(&mut client, &inc0, &coll).await;
    assert_eq!(b.based_on, vec![full.clone()]);

    // A delete of the full backup killed after its commit point went: the
    // full one is no longer listed, its objects are still there.
    let mut deleter = common::process::Proc::start_rooted_paused(
        &cfg,
        "incr-del",
        &root,
        "",
        Some("delete.after_commit_point"),
    )
    .await;
    let mut c = deleter.client.clone();
    let name = full.clone();
    in_background(async move {
        c.delete_backup(pb::DeleteBackupRequest {
            name,
            ..Default::default()
        })
        .await
    });
    deleter
        .wait_paused(std::time::Duration::from_secs(60))
        .await;
    // Meanwhile an incremental backup cannot reuse the backup being deleted:
    // it copies what it needs itself.
    let inc1 = common::unique("race_inc1");
    let b1 = backup_in(&mut client, &inc1, &coll).await;
    assert!(!b1.based_on.contains(&full), "{b1:?}");
    deleter.kill();
    assert!(
        !flows::listed(&mut client)
            .await
            .iter()
            .any(|b| b.name == full),
        "a half-deleted backup is not listed"
    );
    // The delete is run again once the killed one's hold expires.
    flows::delete_eventually(&client, &full, "the delete runs again").await;
    let mut c = client.clone();
    for name in [&inc0, &inc1] {
        flows::assert_verifies(&mut c, name, name).await;
    }
    assert_restores(&mut client, &m, &inc0, &coll, &rows).await;

    // An incremental backup that holds its base (paused while choosing what
    // to reuse) keeps a delete of that base away: ABORTED, naming it.
    let mut creator = common::process::Proc::start_rooted_paused(
        &cfg,
        "incr-create",
        &root,
        "",
        Some("backup.incremental.bases_held"),
    )
    .await;
    let mut c = creator.client.clone();
    let req = pb::CreateBackupRequest {
        incremental: Some(true),
        ..flows::backup_request(&common::unique("race_inc2"), &[&coll])
    };
    in_background(async move { c.create_backup(req).await });
    creator
        .wait_paused(std::time::Duration::from_secs(60))
        .await;
    let refused = client
        .delete_backup(pb::DeleteBackupRequest {
            name: inc1.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Aborted, "{refused:?}");
    assert!(
        refused.message().contains("reuse by incremental backup"),
        "{refused:?}"
    );
    creator.kill();
    // Once its hold expires the delete goes through, and keeps nothing of
    // the killed backup's (it never completed).
    flows::delete_eventually(&client, &inc1, "the base can be deleted").await;
    flows::assert_verifies(&mut client, &inc0, &inc0).await;
    assert_restores(&mut client, &m, &inc0, &coll, &rows).await;
    // The last one through REST, as a job: `async=true` answers at once
    // with its id, `get_delete` follows it to its end.
    let base = format!("http://{}", server.handle.addr);
    let (status, body) = common::curl::json(&[
        "-X",
        "DELETE",
        &format!("{base}/api/v1/delete?backup_name={inc0}&async=true"),
    ]);
    assert_eq!((status, body["code"].as_i64()), (200, Some(0)), "{body}");
    let id = body["data"]["id"]
        .as_str()
        .expect("the delete job's id")
        .to_string();
    flows::eventually(
        "the delete job ends",
        std::time::Duration::from_secs(60),
        || {
            let url = format!("{base}/api/v1/get_delete?id={id}");
            async move {
                let (_, body) = common::curl::json(&[&url]);
                body["data"]["state"] == "Succeeded" && body["data"]["objects_kept"] == 0
            }
        },
    )
    .await;
    let (status, body) = common::curl::json(&[&format!("{base}/api/v1/get_delete?id=")]);
    assert_eq!((status, body["code"].as_i64()), (400, Some(400)), "{body}");
    for name in [&full, &inc0, &inc1] {
        let left = store.list(&format!("{root}/{name}/")).await.unwrap();
        assert!(left.is_empty(), "{name}: {left:?}");
    }
    deleter.finish();
    creator.finish();
    hello::drop_if_exists(&m, "default", &coll).await;
}

/// Two deletes at once, of a base and of the incremental backup that reuses
/// all its objects. The base's delete has read its references (the
/// incremental one complete: its objects are kept) and is held at `point`
/// while the other delete runs: that one waits for the base's delete,
/// however long it runs (8 s here, past twice the 3 s TTL), then removes
/// what it reused. Each removes its commit point before reading references,
/// so no shared object is left behind, and both names are free.
async fn a_base_and_its_incremental_backup_deleted_at_once(point: &str) {
    let t = BaseAndIncremental::new("two", 23).await;
    let release = std::env::temp_dir().join(common::unique("two_release"));
    let folder = format!("{}/{}/", t.root, t.base);
    let in_base = t.store.list(&folder).await.unwrap().len() as u64;
    let (deleter, base_delete) = t.delete_held("incr-two", point, &release, &t.base).await;
    let inc_delete = deleting(t.server.client.clone(), &t.inc);
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    assert!(
        !inc_delete.is_finished(),
        "{point}: the incremental backup's delete waits for the base's"
    );
    std::fs::write(&release, b"").unwrap();
    inc_delete
        .await
        .unwrap()
        .expect("the incremental backup is deleted");
    flows::eventually(
        "the base's delete ends with its folder empty",
        std::time::Duration::from_secs(60),
        || {
            let (store, folder) = (t.store.clone(), format!("{}/{}/", t.root, t.base));
            async move { store.list(&folder).await.unwrap().is_empty() }
        },
    )
    .await;
    t.assert_both_gone().await;
    // Held before its last look, the base's delete removed what it had kept
    // for the backup deleted meanwhile, and says so (before: "N kept", its
    // folder empty).
    let d = base_delete.await.unwrap().expect("the base is deleted");
    let d = d.into_inner();
    if point == "delete.planned" {
        assert!(
            d.objects_kept == 0 && d.objects_deleted + 1 >= in_base,
            "{in_base} objects in its folder: {d:?}"
        );
    }
    let _ = std::fs::remove_file(&release);
    deleter.finish();
    hello::drop_if_exists(&t.m, "default", &t.coll).await;
}

/// The base's delete held before it removes anything (`delete.planned`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_base_and_its_incremental_backup_deleted_at_once_leave_nothing_behind() {
    a_base_and_its_incremental_backup_deleted_at_once("delete.planned").await;
}

/// The base's delete held after its last look at what backups deleted since
/// its plan freed (`delete.freed_checked`). Before, the other delete left
/// the shared objects to it after twice the TTL and succeeded, and they
/// stayed in the base's folder with nothing to remove them: the base's name
/// taken for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_base_deleted_past_its_last_look_leaves_nothing_behind() {
    a_base_and_its_incremental_backup_deleted_at_once("delete.freed_checked").await;
}

/// The incremental backup's delete is refused its hold on the base while
/// the base's delete runs, and looks at who holds the base only after the
/// base's delete ended (held at `delete.home_refused` past twice the TTL):
/// nothing holds it any more, so it takes the hold and ends SUCCEEDED.
/// Before, it read "not being deleted" as another holder and stopped
/// ABORTED, naming the delete that had just ended (seen once in CI).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_refused_by_a_base_delete_that_ends_meanwhile_still_succeeds() {
    let t = BaseAndIncremental::new("late", 24).await;
    let (base_go, inc_go) = (
        std::env::temp_dir().join(common::unique("late_base")),
        std::env::temp_dir().join(common::unique("late_inc")),
    );
    let (base_deleter, _) = t
        .delete_held("late-base", "delete.planned", &base_go, &t.base)
        .await;
    let (inc_deleter, inc_delete) = t
        .delete_held("late-inc", "delete.home_refused", &inc_go, &t.inc)
        .await;
    // Past twice the TTL, then the base's delete runs to its end.
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    std::fs::write(&base_go, b"").unwrap();
    let leases = t.server.ctx.leases();
    let writer = milvus_backup::jobs::holds::writer(&t.base);
    flows::eventually(
        "the base's delete ends and lets go of its name",
        std::time::Duration::from_secs(60),
        || {
            let (leases, writer) = (leases.clone(), writer.clone());
            async move { leases.holder(&writer).await.unwrap().is_none() }
        },
    )
    .await;
    assert!(!inc_delete.is_finished(), "held at delete.home_refused");
    std::fs::write(&inc_go, b"").unwrap();
    inc_delete
        .await
        .unwrap()
        .expect("the incremental backup is deleted");
    t.assert_both_gone().await;
    for f in [&base_go, &inc_go] {
        let _ = std::fs::remove_file(f);
    }
    base_deleter.finish();
    inc_deleter.finish();
    hello::drop_if_exists(&t.m, "default", &t.coll).await;
}

/// Reuse follows a collection's id, not its name, and does not need the
/// catalog index: after a rename, an incremental backup of the new name
/// reuses every object of a full backup taken under the old name, even with
/// that backup's index entry gone (as for a backup copied in by hand). A
/// backup of another collection is among them and is not reused from. A
/// damaged shared object is named by the verify of each backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_incremental_backup_after_a_rename_reuses_by_collection_id_without_the_index() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client.clone();
    let store = server.ctx.catalog.store().clone();

    let coll = common::unique("incr_ren");
    let other = common::unique("incr_other");
    hello::create(&m, &coll, 1000, 2, 21).await;
    hello::create(&m, &other, 300, 1, 22).await;
    let moment = hello::rows(&m, "default", &coll, "pk >= 0", FIELDS).await;
    assert_eq!(moment.len(), 1000);
    let full = common::unique("incr_ren_full");
    let b0 = backup(&mut client, &full, &coll, false).await;
    let full_bytes = b0.progress.unwrap().bytes_total;
    let unrelated = common::unique("incr_ren_other");
    backup(&mut client, &unrelated, &other, false).await;

    let renamed = format!("{coll}_new");
    m.rename_collection("default", &coll, &renamed)
        .await
        .expect("RenameCollection");
    let entry = format!("backup/_catalog/{full}/");
    assert_eq!(store.delete_under(&entry).await.unwrap(), 1, "{entry}");

    let inc = common::unique("incr_ren_inc");
    let b1 = backup(&mut client, &inc, &renamed, true).await;
    assert_eq!(b1.based_on, vec![full.clone()], "{b1:?}");
    assert_eq!(b1.bytes_reused, full_bytes, "{b1:?}");
    assert_eq!(b1.progress.unwrap().bytes_total, full_bytes, "{b1:?}");
    figures::publish(
        "an_incremental_backup_after_a_rename_reuses_by_collection_id_without_the_index",
        &[format!(
            "after the rename, with the full backup's index entry removed: {} of {full_bytes} bytes reused, based on {:?}",
            b1.bytes_reused, b1.based_on
        )],
    );

    // A damaged object the two share: each verify names it with DATA_LOSS,
    // the full backup's with the backups that also reference it, the
    // incremental one's with the backup that holds it.
    let prefix = format!("backup/{full}/");
    let shared = store.list(&format!("{prefix}binlogs/")).await.unwrap()[0]
        .key
        .clone();
    let rel = &shared[prefix.len()..];
    let sound = store.read(&shared).await.unwrap();
    let mut bytes = sound.to_vec();
    bytes[0] ^= 0x01;
    store.write(&shared, bytes.into()).await.unwrap();
    for (name, says) in [
        (&full, format!("also referenced by backups [\"{inc}\"]")),
        (&inc, format!("the object is held by backup \"{full}\"")),
    ] {
        let stream = flows::verify_stream(&mut client, name).await;
        let err = flows::last_message(stream)
            .await
            .expect_err("a damaged shared object verified");
        assert_eq!(err.code(), tonic::Code::DataLoss, "{name}: {err:?}");
        assert!(
            err.message().contains(rel) && err.message().contains(&says),
            "{name}: {err:?}"
        );
    }
    store.write(&shared, sound).await.unwrap();

    // Deleting the full backup keeps what the incremental one references.
    let d = delete(&mut client, &full).await;
    assert!(d.objects_kept > 0, "{d:?}");
    flows::assert_verifies(&mut client, &inc, "incremental after the rename").await;
    assert_restores(&mut client, &m, &inc, &renamed, &moment).await;
    for name in [&inc, &unrelated] {
        delete(&mut client, name).await;
    }
    hello::drop_if_exists(&m, "default", &renamed).await;
    hello::drop_if_exists(&m, "default", &other).await;
}
