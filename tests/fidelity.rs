//! Restores are exact: every data type, primary keys (auto_id too), dynamic
//! keys, partition keys, user and empty partitions, deletes, many segments,
//! collection properties, and every restore option. Each case compares the
//! source and the restored collection row by row, every field included,
//! against the real Milvus 2.3.5 and S3 of the test environment.

mod common;

use common::data::{self, Spec};
use common::flows::{self, restore_loaded_request as restore_req};
use milvus_backup::api::proto as pb;
use milvus_backup::meta::schema;
use milvus_backup::milvus::proto::common::ConsistencyLevel;
use milvus_backup::milvus::{LoadShape, MilvusApi, MilvusClient};
use tonic::Code;

/// Asserts two collections have the same definition: schema (fields, types,
/// params, descriptions), consistency, shards, properties, partitions, indexes.
async fn assert_same_definition(m: &MilvusClient, a: (&str, &str), b: (&str, &str)) {
    let (da, db) = (
        m.describe_collection(a.0, a.1).await.unwrap(),
        m.describe_collection(b.0, b.1).await.unwrap(),
    );
    let (sa, sb) = (
        schema::to_meta(&da.schema).unwrap(),
        schema::to_meta(&db.schema).unwrap(),
    );
    assert_eq!(sa.fields, sb.fields, "fields of {a:?} and {b:?}");
    assert_eq!(sa.description, sb.description);
    assert_eq!(sa.enable_dynamic_field, sb.enable_dynamic_field);
    assert_eq!(da.consistency_level, db.consistency_level, "consistency");
    assert_eq!(da.shards_num, db.shards_num, "shards");
    let sorted = |mut v: Vec<(String, String)>| {
        v.sort();
        v
    };
    assert_eq!(
        sorted(da.properties.clone()),
        sorted(db.properties.clone()),
        "properties"
    );
    assert_eq!(da.num_partitions, db.num_partitions, "num_partitions");
    let names = |p: Vec<milvus_backup::milvus::PartitionInfo>| {
        let mut n: Vec<String> = p.into_iter().map(|p| p.name).collect();
        n.sort();
        n
    };
    assert_eq!(
        names(m.list_partitions(a.0, a.1).await.unwrap()),
        names(m.list_partitions(b.0, b.1).await.unwrap()),
        "partitions"
    );
}

/// Asserts both collections have the same indexes (name, field, type and params).
async fn assert_same_indexes(m: &MilvusClient, a: (&str, &str), b: (&str, &str)) {
    let shape = |v: Vec<milvus_backup::milvus::IndexInfo>| {
        let mut v: Vec<_> = v
            .into_iter()
            .map(|i| {
                let mut p = i.params;
                p.sort();
                (i.name, i.field_name, p)
            })
            .collect();
        v.sort();
        v
    };
    let (ia, ib) = (
        shape(m.describe_indexes(a.0, a.1).await.unwrap()),
        shape(m.describe_indexes(b.0, b.1).await.unwrap()),
    );
    assert!(!ia.is_empty());
    assert_eq!(ia, ib, "indexes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_type_dynamic_keys_deletes_and_many_segments() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client().await;
    let mut spec = Spec::new(&common::unique("all_types"));
    spec.dynamic = true;
    spec.shards = 2;
    spec.consistency = ConsistencyLevel::Bounded;
    spec.properties = vec![("collection.ttl.seconds".into(), "8640000".into())];
    data::create(&m, &spec).await;
    // Deletes in the same segment as their rows (before the flush)...
    data::insert(&m, &spec, "", 0..500, 1).await;
    data::delete(&m, &spec, "pk in [3, 5, 7]").await;
    data::flush(&m, &spec.db, &spec.name).await;
    data::insert(&m, &spec, "", 500..1000, 1).await;
    data::flush(&m, &spec.db, &spec.name).await;
    data::insert(&m, &spec, "", 1000..1500, 1).await;
    data::flush(&m, &spec.db, &spec.name).await;
    // ...and deletes of rows already sealed, flushed on their own.
    data::delete(&m, &spec, "pk in [600, 601, 1200]").await;
    data::flush(&m, &spec.db, &spec.name).await;
    data::index(&m, &spec.db, &spec.name).await;
    data::load(&m, &spec.db, &spec.name).await;
    let source = data::rows(&m, &spec, &spec.db, &spec.name, &[]).await;
    assert_eq!(source.len(), 1494);
    assert!(
        source[0].contains_key("$meta") || source[0].keys().any(|k| k.starts_with("extra_")),
        "{:?}",
        source[0].keys()
    );

    let name = common::unique("all_types");
    let backup = flows::backup_collections(&mut client, &name, &[&spec.name]).await;
    assert!(backup.collections[0].segment_count >= 3, "{backup:?}");

    // Changes after the backup must not leak into the restore.
    data::insert(&m, &spec, "", 5000..5010, 9).await;
    data::delete(&m, &spec, "pk in [10, 11]").await;

    // Loaded at backup time + restore_index: the restored collection is loaded too.
    let target = format!("{}_r", spec.name);
    let job = flows::restore(
        &mut client,
        pb::RestoreRequest {
            load: false,
            ..restore_req(&name, "_r")
        },
    )
    .await;
    assert_eq!(job.collections[0].target_collection_name, target);
    assert_eq!(
        m.loading_progress(&spec.db, &target).await.unwrap(),
        100,
        "loaded as at backup time"
    );
    let restored = data::rows(&m, &spec, &spec.db, &target, &[]).await;
    data::assert_rows_equal("all types", &source, &restored);
    assert_same_definition(&m, (&spec.db, &spec.name), (&spec.db, &target)).await;
    assert_same_indexes(&m, (&spec.db, &spec.name), (&spec.db, &target)).await;

    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    data::drop_if_exists(&m, &spec.db, &target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn varchar_keys_and_auto_id_keep_their_primary_keys() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client().await;
    let mut varchar = Spec::new(&common::unique("varchar_pk"));
    varchar.varchar_pk = true;
    varchar.binary_vector = true;
    let mut auto = Spec::new(&common::unique("auto_id"));
    auto.auto_id = true;
    auto.dynamic = true;
    for spec in [&varchar, &auto] {
        data::create(&m, spec).await;
        data::insert(&m, spec, "", 0..300, 2).await;
        data::flush(&m, &spec.db, &spec.name).await;
        data::insert(&m, spec, "", 300..600, 2).await;
        data::index(&m, &spec.db, &spec.name).await;
        data::load(&m, &spec.db, &spec.name).await;
    }
    data::delete(&m, &varchar, r#"pk in ["k000001", "k000400"]"#).await;
    let sources = [
        data::rows(&m, &varchar, &varchar.db, &varchar.name, &[]).await,
        data::rows(&m, &auto, &auto.db, &auto.name, &[]).await,
    ];
    assert_eq!((sources[0].len(), sources[1].len()), (598, 600));

    let name = common::unique("keys");
    flows::backup_collections(&mut client, &name, &[&varchar.name, &auto.name]).await;
    flows::restore(&mut client, restore_req(&name, "_r")).await;
    for (spec, source) in [&varchar, &auto].into_iter().zip(&sources) {
        let target = format!("{}_r", spec.name);
        data::load(&m, &spec.db, &target).await;
        let restored = data::rows(&m, spec, &spec.db, &target, &[]).await;
        data::assert_rows_equal(&spec.name, source, &restored);
        assert_same_definition(&m, (&spec.db, &spec.name), (&spec.db, &target)).await;
        data::drop_if_exists(&m, &spec.db, &spec.name).await;
        data::drop_if_exists(&m, &spec.db, &target).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partition_keys_keep_their_partitions_and_routing() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client().await;
    let mut spec = Spec::new(&common::unique("part_key"));
    spec.partition_key = Some(4);
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..700, 3).await;
    data::flush(&m, &spec.db, &spec.name).await;
    data::delete(&m, &spec, "pk in [1, 2, 3]").await;
    data::index(&m, &spec.db, &spec.name).await;
    data::load(&m, &spec.db, &spec.name).await;

    let name = common::unique("part_key");
    flows::backup_collections(&mut client, &name, &[&spec.name]).await;
    flows::restore(&mut client, restore_req(&name, "_r")).await;
    let target = format!("{}_r", spec.name);
    data::load(&m, &spec.db, &target).await;
    assert_same_definition(&m, (&spec.db, &spec.name), (&spec.db, &target)).await;
    let partitions = m.list_partitions(&spec.db, &spec.name).await.unwrap();
    assert_eq!(partitions.len(), 4);
    // Queries on the key prune to the key's partition: rows imported into the
    // wrong partition would be missed here.
    let mut total = 0;
    for tenant in 0..7 {
        let expr = format!(r#"tenant == "tenant{tenant}""#);
        let a = data::rows_where(&m, &spec, &spec.db, &spec.name, &[], &expr).await;
        let b = data::rows_where(&m, &spec, &spec.db, &target, &[], &expr).await;
        assert!(!a.is_empty());
        data::assert_rows_equal(&expr, &a, &b);
        total += a.len();
    }
    assert_eq!(total, 697);
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    data::drop_if_exists(&m, &spec.db, &target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn user_partitions_empty_partitions_and_empty_collections() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client().await;
    let spec = Spec::new(&common::unique("user_parts"));
    let empty = Spec::new(&common::unique("empty_coll"));
    data::create(&m, &spec).await;
    data::create(&m, &empty).await;
    for p in ["p1", "p2", "p_empty"] {
        data::create_partition(&m, &spec, p).await;
    }
    data::insert(&m, &spec, "_default", 0..100, 4).await;
    data::insert(&m, &spec, "p1", 100..300, 4).await;
    data::flush(&m, &spec.db, &spec.name).await;
    data::insert(&m, &spec, "p2", 300..350, 4).await;
    data::insert(&m, &spec, "p1", 350..400, 4).await;
    for s in [&spec, &empty] {
        data::index(&m, &s.db, &s.name).await;
        data::load(&m, &s.db, &s.name).await;
    }

    let name = common::unique("parts");
    let backup = flows::backup_collections(&mut client, &name, &[&spec.name, &empty.name]).await;
    assert_eq!(backup.collections.len(), 2);
    flows::restore(&mut client, restore_req(&name, "_r")).await;
    for s in [&spec, &empty] {
        let target = format!("{}_r", s.name);
        data::load(&m, &s.db, &target).await;
        assert_same_definition(&m, (&s.db, &s.name), (&s.db, &target)).await;
    }
    let target = format!("{}_r", spec.name);
    for (p, n) in [("_default", 100), ("p1", 250), ("p2", 50), ("p_empty", 0)] {
        let a = data::rows(&m, &spec, &spec.db, &spec.name, &[p]).await;
        let b = data::rows(&m, &spec, &spec.db, &target, &[p]).await;
        assert_eq!(a.len(), n, "partition {p}");
        data::assert_rows_equal(p, &a, &b);
    }
    let empty_target = format!("{}_r", empty.name);
    assert!(
        data::rows(&m, &empty, &empty.db, &empty_target, &[])
            .await
            .is_empty()
    );
    for s in [&spec, &empty] {
        data::drop_if_exists(&m, &s.db, &s.name).await;
        data::drop_if_exists(&m, &s.db, &format!("{}_r", s.name)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn databases_selection_and_renames_into_another_database() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client().await;
    let db1 = common::unique("db_src");
    let db2 = common::unique("db_dst");
    data::ensure_db(&m, &db1).await;
    let mut c1 = Spec::new("c1");
    c1.db = db1.clone();
    let mut c2 = Spec::new("c2");
    c2.db = db1.clone();
    for (i, s) in [&c1, &c2].into_iter().enumerate() {
        data::create(&m, s).await;
        data::insert(&m, s, "", 0..(100 + i as i64 * 50), 5).await;
        data::index(&m, &s.db, &s.name).await;
        data::load(&m, &s.db, &s.name).await;
    }

    // A whole database.
    let whole = common::unique("whole_db");
    let b = flows::backup(
        &mut client,
        pb::CreateBackupRequest {
            backup_name: whole.clone(),
            database_names: vec![db1.clone()],
            ..Default::default()
        },
    )
    .await;
    let mut names: Vec<_> = b
        .collections
        .iter()
        .map(|c| format!("{}.{}", c.db_name, c.collection_name))
        .collect();
    names.sort();
    assert_eq!(names, [format!("{db1}.c1"), format!("{db1}.c2")]);

    // `db.coll` names one collection of a database.
    let one = common::unique("one_coll");
    let b = flows::backup_collections(&mut client, &one, &[&format!("{db1}.c2")]).await;
    assert_eq!(b.collections.len(), 1);
    assert_eq!(
        (
            b.collections[0].db_name.as_str(),
            b.collections[0].collection_name.as_str()
        ),
        (db1.as_str(), "c2")
    );

    // Restore a subset, renamed into a database that does not exist yet.
    let job = flows::restore(
        &mut client,
        pb::RestoreRequest {
            backup_name: whole.clone(),
            collection_names: vec![format!("{db1}.c1")],
            collection_renames: [(format!("{db1}.c1"), format!("{db2}.c1_copy"))].into(),
            restore_index: true,
            load: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(job.collections.len(), 1);
    assert_eq!(job.collections[0].target_db_name, db2);
    data::load(&m, &db2, "c1_copy").await;
    let a = data::rows(&m, &c1, &db1, "c1", &[]).await;
    let b = data::rows(&m, &c1, &db2, "c1_copy", &[]).await;
    assert_eq!(a.len(), 100);
    data::assert_rows_equal("db1.c1 -> db2.c1_copy", &a, &b);
    assert_eq!(
        m.list_collections(&db2).await.unwrap(),
        ["c1_copy"],
        "only the selected collection"
    );

    for (db, c) in [(&db1, "c1"), (&db1, "c2"), (&db2, "c1_copy")] {
        data::drop_if_exists(&m, db, c).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restore_options_drop_skip_create_index_load_and_meta_only() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client().await;
    let spec = Spec::new(&common::unique("options"));
    data::create(&m, &spec).await;
    data::create_partition(&m, &spec, "p1").await;
    data::insert(&m, &spec, "", 0..200, 6).await;
    data::insert(&m, &spec, "p1", 200..260, 6).await;
    data::index(&m, &spec.db, &spec.name).await;
    data::load(&m, &spec.db, &spec.name).await;
    let source = data::rows(&m, &spec, &spec.db, &spec.name, &[]).await;
    let name = common::unique("options");
    flows::backup_collections(&mut client, &name, &[&spec.name]).await;
    let renamed = |to: &str| [(spec.name.clone(), to.to_string())].into();
    let check = |target: String| {
        let (m, spec, source) = (m.clone(), spec.clone(), source.clone());
        async move {
            data::load(&m, &spec.db, &target).await;
            let rows = data::rows(&m, &spec, &spec.db, &target, &[]).await;
            data::assert_rows_equal(&target, &source, &rows);
        }
    };

    // restore_index + load.
    let t1 = format!("{}_t1", spec.name);
    flows::restore(
        &mut client,
        pb::RestoreRequest {
            collection_renames: renamed(&t1),
            ..restore_req(&name, "")
        },
    )
    .await;
    assert_eq!(
        m.loading_progress(&spec.db, &t1).await.unwrap(),
        100,
        "load was asked"
    );
    assert_same_indexes(&m, (&spec.db, &spec.name), (&spec.db, &t1)).await;
    check(t1.clone()).await;

    // drop_existing_collections over a changed target. Its copy is loaded as
    // the target was: the replicas and resource groups GetReplicas shows
    // (one standalone node: one replica in the default group).
    let shape = m.load_shape(&spec.db, &t1).await.unwrap();
    assert_eq!(
        shape,
        LoadShape {
            replicas: 1,
            resource_groups: vec!["__default_resource_group".into()],
        }
    );
    data::delete(&m, &Spec::new(&t1), "pk in [1, 2]").await;
    let replace_t1 = pb::RestoreRequest {
        collection_renames: renamed(&t1),
        drop_existing_collections: true,
        ..restore_req(&name, "")
    };
    flows::restore(&mut client, replace_t1.clone()).await;
    assert_eq!(m.load_shape(&spec.db, &t1).await.unwrap(), shape);
    check(t1.clone()).await;
    // Over a released target (GetReplicas answers "replica not found"):
    // loaded with Milvus's default.
    m.release_collection(&spec.db, &t1).await.unwrap();
    flows::restore(&mut client, replace_t1).await;
    assert_eq!(m.load_shape(&spec.db, &t1).await.unwrap(), shape);
    check(t1.clone()).await;

    // skip_create_collection into a compatible, existing collection.
    let t2 = format!("{}_t2", spec.name);
    data::create(&m, &Spec::new(&t2)).await;
    data::create_partition(&m, &Spec::new(&t2), "p1").await;
    data::index(&m, &spec.db, &t2).await;
    flows::restore(
        &mut client,
        pb::RestoreRequest {
            collection_renames: renamed(&t2),
            skip_create_collection: true,
            restore_index: false,
            ..restore_req(&name, "")
        },
    )
    .await;
    check(t2.clone()).await;

    // skip_create_collection into an incompatible one: refused, untouched.
    let t3 = format!("{}_t3", spec.name);
    let mut other = Spec::new(&t3);
    other.varchar_pk = true;
    data::create(&m, &other).await;
    let err = client
        .restore(pb::RestoreRequest {
            collection_renames: renamed(&t3),
            skip_create_collection: true,
            ..restore_req(&name, "")
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains(&t3) && err.message().contains("pk"),
        "{}",
        err.message()
    );

    // meta_only restore: the collection and its partitions, no rows.
    let t4 = format!("{}_t4", spec.name);
    flows::restore(
        &mut client,
        pb::RestoreRequest {
            collection_renames: renamed(&t4),
            meta_only: true,
            ..restore_req(&name, "")
        },
    )
    .await;
    assert_same_definition(&m, (&spec.db, &spec.name), (&spec.db, &t4)).await;
    data::load(&m, &spec.db, &t4).await;
    assert!(data::rows(&m, &spec, &spec.db, &t4, &[]).await.is_empty());

    // meta_only backup: no data copied; restores to an empty twin.
    let meta_name = common::unique("meta_only");
    let b = flows::backup(
        &mut client,
        pb::CreateBackupRequest {
            backup_name: meta_name.clone(),
            collection_names: vec![spec.name.clone()],
            meta_only: true,
            ..Default::default()
        },
    )
    .await;
    assert!(b.meta_only);
    assert_eq!(b.progress.unwrap().files_total, 0);
    let t5 = format!("{}_t5", spec.name);
    flows::restore(
        &mut client,
        pb::RestoreRequest {
            collection_renames: renamed(&t5),
            ..restore_req(&meta_name, "")
        },
    )
    .await;
    assert_same_definition(&m, (&spec.db, &spec.name), (&spec.db, &t5)).await;
    assert!(data::rows(&m, &spec, &spec.db, &t5, &[]).await.is_empty());

    for t in [spec.name.clone(), t1, t2, t3, t4, t5] {
        data::drop_if_exists(&m, &spec.db, &t).await;
    }
}
