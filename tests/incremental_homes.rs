//! A delete of an incremental backup B removes what B reused from a deleted
//! base H (B's orphans) only under a writer's hold on H, and never what a
//! backup R reusing from H needs, against the real Milvus 2.3.5 and S3.
//! Here H is retired (its index entry and commit point removed) while R is
//! paused holding H: the state a delete of H leaves when it stops (ABORTED)
//! on finding R after retiring H. The last test makes H again under its name
//! before R holds it.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::incr::{FIELDS, assert_restores, backup, backup_in, delete, try_delete};
use common::{flows, hello, process::Proc};
use milvus_backup::api::proto as pb;
use milvus_backup::milvus::rows::Row;
use milvus_backup::storage::ObjectStore;
use std::sync::Arc;

type Client = milvus_backup::api::proto::backup_service_client::BackupServiceClient<
    tonic::transport::Channel,
>;

/// A server started with `failpoint` making an incremental backup of `coll`
/// named after `tag`, waited for until it pauses there: the server, the
/// backup's name, and the backup's last report once it ends.
async fn paused_incremental(
    cfg: &milvus_backup::config::Config,
    tag: &str,
    failpoint: &str,
    coll: &str,
) -> (Proc, String, tokio::task::JoinHandle<pb::Backup>) {
    let creator = Proc::start(cfg, tag, "", Some(failpoint)).await;
    let mut c = creator.client.clone();
    let name = common::unique(&format!("{tag}_inc"));
    let req = pb::CreateBackupRequest {
        incremental: Some(true),
        ..flows::backup_request(&name, &[coll])
    };
    let created = tokio::spawn(async move {
        flows::last_backup(c.create_backup(req).await.unwrap().into_inner()).await
    });
    creator.wait_paused(Duration::from_secs(60)).await;
    (creator, name, created)
}

/// A base H, an incremental backup B of it, and a server making backup R
/// paused while it holds H for reuse, with H half-deleted.
struct HalfDeletedHome {
    coll: String,
    rows: Vec<Row>,
    base: String,
    inc: String,
    reuser: String,
    creator: Proc,
    release: PathBuf,
    created: tokio::task::JoinHandle<pb::Backup>,
    base_binlogs: String,
    before: usize,
}

impl HalfDeletedHome {
    async fn make(
        cfg: &milvus_backup::config::Config,
        client: &mut Client,
        catalog: &milvus_backup::meta::Catalog,
        tag: &str,
    ) -> Self {
        let m = common::milvus(cfg);
        let coll = common::unique(&format!("{tag}_coll"));
        hello::create(&m, &coll, 600, 2, 25).await;
        let rows = hello::rows(&m, "default", &coll, "pk >= 0", FIELDS).await;
        let (base, inc) = (
            common::unique(&format!("{tag}_full")),
            common::unique(&format!("{tag}_inc")),
        );
        backup(client, &base, &coll, false).await;
        let b = backup_in(client, &inc, &coll).await;
        assert_eq!(b.based_on, vec![base.clone()]);

        let release = std::env::temp_dir().join(common::unique(&format!("{tag}_release")));
        let failpoint = format!("backup.incremental.bases_held@{}", release.display());
        let (creator, reuser, created) =
            paused_incremental(cfg, &format!("{tag}_reuser"), &failpoint, &coll).await;
        let base_binlogs = format!("backup/{base}/binlogs/");
        let before = catalog.store().list(&base_binlogs).await.unwrap().len();
        assert!(before > 0);
        // What a delete of H whose lease expired unnoticed does before it
        // finds R reading H and stops (rule 3 of docs/incremental.md): the
        // index entry and the commit point go.
        catalog.retire(&base).await.unwrap();
        assert!(!catalog.is_complete(&base).await.unwrap());
        Self {
            coll,
            rows,
            base,
            inc,
            reuser,
            creator,
            release,
            created,
            base_binlogs,
            before,
        }
    }

    /// Lets R go on and waits until it is complete, based on H.
    async fn complete_reuser(&mut self) {
        std::fs::write(&self.release, b"").unwrap();
        let r = (&mut self.created).await.unwrap();
        assert_eq!(r.state, pb::JobState::Succeeded as i32, "{r:?}");
        assert_eq!(r.based_on, vec![self.base.clone()], "{r:?}");
    }

    /// H's objects are all still there, and R verifies and restores equal.
    async fn assert_reuser_whole(
        &self,
        client: &mut Client,
        store: &Arc<dyn ObjectStore>,
        m: &milvus_backup::milvus::MilvusClient,
    ) {
        let after = store.list(&self.base_binlogs).await.unwrap().len();
        assert_eq!(after, self.before, "the base's objects stay: R reuses them");
        flows::assert_verifies(client, &self.reuser, &self.reuser).await;
        assert_restores(client, m, &self.reuser, &self.coll, &self.rows).await;
    }

    async fn finish(self, client: &mut Client, m: &milvus_backup::milvus::MilvusClient) {
        for name in [&self.reuser, &self.base] {
            delete(client, name).await;
        }
        let _ = std::fs::remove_file(&self.release);
        self.creator.finish();
        hello::drop_if_exists(m, "default", &self.coll).await;
    }
}

/// While R still holds H, B's delete waits for it (twice the 3 s TTL), then
/// stops ABORTED naming R, with B no longer listed and nothing removed.
/// Once R completed, B's delete is run again and removes B only: R
/// references H's objects. Before, B's first delete ended SUCCEEDED and left
/// H's objects in place without asking again, unowned when R did not need
/// them (H's name then stayed taken for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_waits_for_a_backup_reusing_from_its_deleted_base_then_stops() {
    let mut cfg = common::config();
    cfg.backup.lease_ttl_seconds = 3;
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client.clone();
    let store = server.ctx.catalog.store().clone();
    let mut h = HalfDeletedHome::make(&cfg, &mut client, &server.ctx.catalog, "home_wait").await;

    let err = try_delete(&mut client, &h.inc).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Aborted, "{err:?}");
    assert!(err.message().contains(&h.base), "names the home: {err:?}");
    assert!(
        err.message().contains("delete it again"),
        "says what to do: {err:?}"
    );
    let still = store.list(&format!("backup/{}/", h.inc)).await.unwrap();
    assert!(
        still.iter().any(|o| o.key.ends_with("checksums.json")),
        "B stays marked as ours, to be deleted again: {still:?}"
    );
    assert_eq!(
        store.list(&h.base_binlogs).await.unwrap().len(),
        h.before,
        "nothing of H removed"
    );

    h.complete_reuser().await;
    delete(&mut client, &h.inc).await;
    assert!(
        store
            .list(&format!("backup/{}/", h.inc))
            .await
            .unwrap()
            .is_empty(),
        "B deleted once R ended"
    );
    h.assert_reuser_whole(&mut client, &store, &m).await;
    h.finish(&mut client, &m).await;
}

/// R completes between B's delete reading references (paused at
/// `delete.planned`, R still running) and B's delete holding H: the delete
/// reads the references again under that hold and keeps what R reuses.
/// Before, it removed H's objects under R, which then failed its verify
/// with DATA_LOSS.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_completed_while_a_delete_planned_keeps_what_it_reuses() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client.clone();
    let store = server.ctx.catalog.store().clone();
    let mut h = HalfDeletedHome::make(&cfg, &mut client, &server.ctx.catalog, "home_race").await;

    let planned = std::env::temp_dir().join(common::unique("home_planned"));
    let failpoint = format!("delete.planned@{}", planned.display());
    let deleter = Proc::start(&cfg, "home-deleter", "", Some(&failpoint)).await;
    let mut d = deleter.client.clone();
    let inc = h.inc.clone();
    let deleted = tokio::spawn(async move { try_delete(&mut d, &inc).await });
    deleter.wait_paused(Duration::from_secs(60)).await;

    h.complete_reuser().await;
    std::fs::write(&planned, b"").unwrap();
    deleted.await.unwrap().expect("the delete of B succeeds");
    h.assert_reuser_whole(&mut client, &store, &m).await;

    let _ = std::fs::remove_file(&planned);
    deleter.finish();
    h.finish(&mut client, &m).await;
}

/// An incremental backup cancelled while it holds its base (paused at
/// `backup.incremental.bases_held`) lets go of the base as it ends: a delete
/// of the base right after succeeds. Before, the hold stayed until it
/// expired (30 s here), and the delete was ABORTED naming the cancelled job.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_incremental_backup_lets_go_of_its_base_at_once() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client.clone();
    let coll = common::unique("letgo_coll");
    hello::create(&m, &coll, 300, 1, 25).await;
    let base = common::unique("letgo_full");
    backup(&mut client, &base, &coll, false).await;

    let (creator, inc, created) =
        paused_incremental(&cfg, "letgo", "backup.incremental.bases_held", &coll).await;
    creator
        .client
        .clone()
        .cancel_backup(pb::CancelBackupRequest { name: inc.clone() })
        .await
        .expect("cancel accepted");
    let ended = tokio::time::timeout(Duration::from_secs(60), created)
        .await
        .expect("the backup ends")
        .unwrap();
    assert_eq!(ended.state, pb::JobState::Cancelled as i32, "{ended:?}");
    try_delete(&mut client, &base)
        .await
        .expect("the base is no longer held by the cancelled backup");

    creator.finish();
    hello::drop_if_exists(&m, "default", &coll).await;
}

/// Base H is deleted and made again under its name, as a backup of another
/// collection, between an incremental backup R choosing what to reuse from H
/// (paused at `backup.incremental.bases_chosen`) and R holding H. R reads
/// H's manifest again under its hold, finds none of the objects it chose,
/// lets H go and copies them: R is based on nothing, verifies and restores
/// equal. Before, R reused from the new H objects its folder never held
/// (based on H), and its verify failed with DATA_LOSS.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_base_made_again_before_it_is_held_is_not_reused() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client.clone();
    let (coll, other) = (common::unique("again_coll"), common::unique("again_other"));
    hello::create(&m, &coll, 300, 1, 25).await;
    hello::create(&m, &other, 200, 1, 25).await;
    let rows = hello::rows(&m, "default", &coll, "pk >= 0", FIELDS).await;
    let base = common::unique("again_full");
    backup(&mut client, &base, &coll, false).await;

    let release = std::env::temp_dir().join(common::unique("again_release"));
    let failpoint = format!("backup.incremental.bases_chosen@{}", release.display());
    let (creator, reuser, created) = paused_incremental(&cfg, "again", &failpoint, &coll).await;
    delete(&mut client, &base).await;
    let again = backup(&mut client, &base, &other, false).await;
    let names: Vec<&str> = again
        .collections
        .iter()
        .map(|c| &*c.collection_name)
        .collect();
    assert_eq!(
        names,
        vec![other.as_str()],
        "H is now a backup of the other collection"
    );

    std::fs::write(&release, b"").unwrap();
    let r = created.await.unwrap();
    assert_eq!(r.state, pb::JobState::Succeeded as i32, "{r:?}");
    assert!(r.based_on.is_empty(), "the new H holds none of it: {r:?}");
    flows::assert_verifies(&mut client, &reuser, &reuser).await;
    assert_restores(&mut client, &m, &reuser, &coll, &rows).await;

    for name in [&reuser, &base] {
        delete(&mut client, name).await;
    }
    let _ = std::fs::remove_file(&release);
    creator.finish();
    for c in [&coll, &other] {
        hello::drop_if_exists(&m, "default", c).await;
    }
}
