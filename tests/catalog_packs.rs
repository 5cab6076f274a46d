//! Packs of catalog summaries (`src/meta/packs.rs`), against the real S3 of
//! the test environment (moto) and the real Milvus 2.3.5: a CLI `list` of
//! many backups reads each index entry once and packs them; the next `list`
//! (a new process, nothing kept) reads the pack instead, and still lists
//! exactly what is there after deletes and new backups; a pack that cannot
//! be read is passed over and replaced. S3 requests are counted by a proxy.

mod common;
#[path = "common/figures.rs"]
mod figures;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use common::data::{self, Spec};
use common::faults::{FaultProxy, Rates};
use futures::{StreamExt, TryStreamExt};
use milvus_backup::storage::ObjectStore;

/// Backups made by cloning the template's meta (more than `PACK_AFTER`).
const CLONES: usize = 150;

/// `milvus-backup list` with `config`: its lines, sorted, and the S3
/// requests it made.
fn list(config: &Path, proxy: &FaultProxy) -> (Vec<String>, u64) {
    let before = proxy.counts.forwarded.load(Ordering::Relaxed);
    let out = Command::new(env!("CARGO_BIN_EXE_milvus-backup"))
        .arg("--config")
        .arg(config)
        .args(["list", "--long"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "list: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<String> = stdout
        .lines()
        .filter(|l| !l.starts_with(">>"))
        .map(str::to_string)
        .collect();
    lines.sort();
    let requests = proxy.counts.forwarded.load(Ordering::Relaxed) - before;
    (lines, requests)
}

fn cli(config: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_milvus-backup"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Copies backup `template`'s meta and index entry under `root` as backups
/// `names` (each with an id of its own), as `bench_tool clone-backups` does.
async fn clone_backups(store: &dyn ObjectStore, root: &str, template: &str, names: &[String]) {
    let from = format!("{root}/{template}/");
    let mut files = Vec::new();
    for o in store.list(&format!("{from}meta/")).await.unwrap() {
        let text = String::from_utf8(store.read(&o.key).await.unwrap().to_vec()).unwrap();
        files.push((Some(o.key[from.len()..].to_string()), text));
    }
    let entries = store
        .list(&format!("{root}/_catalog/{template}/"))
        .await
        .unwrap();
    assert_eq!(entries.len(), 1, "the template's index entry");
    let id = entries[0].key.rsplit('/').next().unwrap().to_string();
    let text = String::from_utf8(store.read(&entries[0].key).await.unwrap().to_vec()).unwrap();
    files.push((None, text));
    let (id, files) = (&id, &files);
    let writes = names.iter().flat_map(|name| {
        let new_id = format!("{id}-{name}");
        files.iter().map(move |(rest, text)| {
            let key = match rest {
                Some(rest) => format!("{root}/{name}/{rest}"),
                None => format!("{root}/_catalog/{name}/{new_id}"),
            };
            let body = text.replace(template, name).replace(id.as_str(), &new_id);
            (key, body)
        })
    });
    futures::stream::iter(writes)
        .map(|(key, body)| async move { store.write(&key, Bytes::from(body)).await })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
}

async fn packs(store: &dyn ObjectStore, root: &str) -> Vec<String> {
    let keys = store
        .list(&format!("{root}/_catalog/.packs/"))
        .await
        .unwrap();
    keys.into_iter().map(|o| o.key).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cold_listing_reads_a_pack_instead_of_every_entry_and_stays_exact() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let s3 = format!("{}:{}", cfg.minio.address, cfg.minio.port)
        .parse()
        .unwrap();
    let proxy = common::faults::start(s3, Rates::default()).await;
    let root = common::unique("packs_root");
    let state: PathBuf = std::env::temp_dir().join(common::unique("packs_state"));
    let config = std::env::temp_dir().join(format!("{}.yaml", common::unique("packs")));
    common::process::write_config(&cfg, &config, &format!("  stateDir: {}\n", state.display()));
    common::process::root_backups_at(&config, &root);
    common::process::route_s3_through(&cfg, &config, proxy.addr.port());
    let store = common::process::rooted_bucket(&cfg);

    // A real (meta-only) backup, cloned.
    let spec = Spec::new(&common::unique("packs_src"));
    data::create(&m, &spec).await;
    let template = common::unique("packs_tmpl");
    tokio::task::block_in_place(|| {
        cli(
            &config,
            &["create", "-n", &template, "-c", &spec.name, "--meta_only"],
        )
    });
    let names: Vec<String> = (0..CLONES).map(|i| format!("clone_{i:04}")).collect();
    clone_backups(store.as_ref(), &root, &template, &names).await;

    // Cold, no pack: every entry is read, then packed.
    let (first, cold) = tokio::task::block_in_place(|| list(&config, &proxy));
    assert_eq!(first.len(), CLONES + 1, "{first:?}");
    assert!(first.iter().any(|l| l.starts_with("clone_0042\t")));
    assert!(cold > CLONES as u64, "{cold} requests for {CLONES} entries");
    let written = packs(store.as_ref(), &root).await;
    assert!(!written.is_empty(), "no pack written");

    // Cold again: the pack instead of the entries, the same lines.
    let (second, warm) = tokio::task::block_in_place(|| list(&config, &proxy));
    assert_eq!(second, first);
    assert!(warm < 30, "{warm} requests with a pack (cold: {cold})");

    // A clone deleted and two made after the pack: listed exactly.
    tokio::task::block_in_place(|| cli(&config, &["delete", "-n", "clone_0007"]));
    let new = vec!["clone_9000".to_string(), "clone_9001".to_string()];
    clone_backups(store.as_ref(), &root, &template, &new).await;
    let (third, after) = tokio::task::block_in_place(|| list(&config, &proxy));
    let mut want: Vec<String> = first
        .iter()
        .filter(|l| !l.starts_with("clone_0007\t"))
        .cloned()
        .collect();
    let line_of = |name: &str| {
        first
            .iter()
            .find(|l| l.starts_with("clone_0042\t"))
            .unwrap()
            .replacen("clone_0042", name, 1)
    };
    want.extend(new.iter().map(|n| line_of(n)));
    want.sort();
    assert_eq!(third, want);
    assert!(after < 30, "{after} requests with a pack and 2 new entries");

    // Packs that cannot be read are passed over (every entry read again,
    // the same lines), and replaced.
    for key in &written {
        store
            .write(key, Bytes::from_static(b"not a pack"))
            .await
            .unwrap();
    }
    let (fourth, unpacked) = tokio::task::block_in_place(|| list(&config, &proxy));
    assert_eq!(fourth, want);
    assert!(
        unpacked > CLONES as u64,
        "{unpacked} requests, packs unreadable"
    );
    let now = packs(store.as_ref(), &root).await;
    assert!(
        !now.is_empty() && now.iter().all(|k| !written.contains(k)),
        "{now:?}"
    );
    let (fifth, repacked) = tokio::task::block_in_place(|| list(&config, &proxy));
    assert_eq!(fifth, want);
    assert!(repacked < 30, "{repacked} requests with the new pack");

    figures::publish(
        "catalog_packs",
        &[format!(
            "S3 requests of a CLI list of {} backups: {cold} with no pack, {warm} with one, \
             {after} with one and 2 new backups, {unpacked} with an unreadable one, {repacked} \
             with its replacement",
            CLONES + 1
        )],
    );
    store.delete_under(&format!("{root}/")).await.unwrap();
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    let _ = std::fs::remove_dir_all(&state);
    let _ = std::fs::remove_file(&config);
}

/// A backup's folder removed by hand leaves its catalog index entry; a
/// backup made again under the name withdraws it as it publishes its own:
/// ListBackups and GetBackup by id show the new backup, and one entry is
/// left. Before, both entries stayed, and whichever sorted last answered
/// for the name (the old summary listed, the new id not found by GetBackup).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_made_again_after_its_folder_was_removed_by_hand_replaces_its_entry() {
    use common::flows;
    use milvus_backup::api::proto as pb;
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = Spec::new(&common::unique("stale_src"));
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..50, 9).await;
    data::flush(&m, &spec.db, &spec.name).await;
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client.clone();
    let store = server.ctx.catalog.store().clone();
    let name = common::unique("stale_b");
    let entries = |store: std::sync::Arc<dyn ObjectStore>, name: String| async move {
        store
            .list(&format!("backup/_catalog/{name}/"))
            .await
            .unwrap()
            .len()
    };
    // Several rounds: which of two entries sorts last is down to their ids.
    let mut last = String::new();
    for round in 0..3 {
        let made = flows::backup_collections(&mut client, &name, &[&spec.name]).await;
        assert_eq!(
            entries(store.clone(), name.clone()).await,
            1,
            "round {round}"
        );
        let got = client
            .get_backup(pb::GetBackupRequest {
                id: made.id.clone(),
                ..Default::default()
            })
            .await
            .expect("GetBackup by the new id")
            .into_inner()
            .backup
            .unwrap();
        assert_eq!(
            (got.name.as_str(), got.id.as_str()),
            (name.as_str(), made.id.as_str())
        );
        let listed: Vec<_> = flows::listed(&mut client)
            .await
            .into_iter()
            .filter(|b| b.name == name)
            .map(|b| b.id)
            .collect();
        assert_eq!(listed, vec![made.id.clone()], "round {round}");
        assert_ne!(made.id, last);
        last = made.id;
        // The folder removed by hand; its index entry stays.
        let keys: Vec<String> = store
            .list(&format!("backup/{name}/"))
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        store.delete(&keys).await.unwrap();
    }
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
}
