//! A backup that names nothing holds every collection of every database, and
//! a restore can pick some of them. In its own test binary, so no other test
//! of this process creates or drops collections while it runs. Against the
//! real Milvus 2.3.5 and S3 of the test environment.

mod common;

use common::data::{self, Spec};
use common::flows;
use milvus_backup::api::proto as pb;
use milvus_backup::milvus::MilvusApi;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_named_backs_up_every_database() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client().await;
    let db = common::unique("db_all");
    data::ensure_db(&m, &db).await;
    let in_default = Spec::new(&common::unique("all_default"));
    let mut in_db = Spec::new("in_db");
    in_db.db = db.clone();
    for s in [&in_default, &in_db] {
        data::create(&m, s).await;
        data::insert(&m, s, "", 0..80, 41).await;
        data::index(&m, &s.db, &s.name).await;
        data::load(&m, &s.db, &s.name).await;
    }

    let name = common::unique("everything");
    let b = flows::backup(
        &mut client,
        pb::CreateBackupRequest {
            backup_name: name.clone(),
            ..Default::default()
        },
    )
    .await;
    let held: Vec<String> = b
        .collections
        .iter()
        .map(|c| format!("{}.{}", c.db_name, c.collection_name))
        .collect();
    let mut expected = Vec::new();
    for d in m.list_databases().await.unwrap() {
        for c in m.list_collections(&d).await.unwrap() {
            expected.push(format!("{d}.{c}"));
        }
    }
    let mut sorted = held.clone();
    sorted.sort();
    expected.sort();
    assert_eq!(sorted, expected, "every collection of every database");
    assert!(
        held.contains(&format!("default.{}", in_default.name))
            && held.contains(&format!("{db}.in_db"))
    );

    flows::restore(
        &mut client,
        pb::RestoreRequest {
            backup_name: name.clone(),
            collection_names: vec![in_default.name.clone(), format!("{db}.in_db")],
            collection_suffix: "_r".into(),
            restore_index: true,
            load: true,
            ..Default::default()
        },
    )
    .await;
    for s in [&in_default, &in_db] {
        let a = data::rows(&m, s, &s.db, &s.name, &[]).await;
        let b = data::rows(&m, s, &s.db, &format!("{}_r", s.name), &[]).await;
        data::assert_rows_equal(&s.name, &a, &b);
        data::drop_if_exists(&m, &s.db, &s.name).await;
        data::drop_if_exists(&m, &s.db, &format!("{}_r", s.name)).await;
    }
}
