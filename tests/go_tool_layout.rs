//! Backups written by the Go tool restore here. The fixture is built by this
//! test from the Go tool's documented shape (`backup.proto` field names as JSON
//! keys, enums as integers, zero values omitted; `backup_meta.json` plus the
//! level files and no `full_meta.json`, as older Go-tool versions wrote), not
//! from our own serializer. Its binlogs are those of a real backup, re-laid out
//! under the fixture's name. Against the real Milvus 2.3.5 and S3.

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::data::{self, Spec};
use common::flows;
use milvus_backup::api::proto as pb;
use milvus_backup::milvus::MilvusApi;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restores_a_backup_in_the_go_tool_shape() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let server = common::TestServer::start(&cfg).await;
    let mut client = server.client().await;
    let mut spec = Spec::new(&common::unique("go_shape"));
    spec.dynamic = true;
    data::create(&m, &spec).await;
    data::create_partition(&m, &spec, "p1").await;
    data::insert(&m, &spec, "", 0..120, 31).await;
    data::insert(&m, &spec, "p1", 120..200, 31).await;
    data::delete(&m, &spec, "pk in [7, 150]").await;
    data::index(&m, &spec.db, &spec.name).await;
    data::load(&m, &spec.db, &spec.name).await;
    let source = data::rows(&m, &spec, &spec.db, &spec.name, &[]).await;

    let real = common::unique("go_src");
    let taken = flows::backup_collections(&mut client, &real, &[&spec.name]).await;
    let coll = &taken.collections[0];

    // Lay the real binlogs out under the fixture's name and read the tree from the keys.
    let store = server.ctx.catalog.store().clone();
    let fixture = common::unique("go_fixture");
    let src_prefix = format!("backup/{real}/");
    // partition id -> segment id -> (insert field id -> [(path, size)], deltas)
    type Logs = Vec<(String, u64)>;
    type Segments = BTreeMap<i64, (BTreeMap<i64, Logs>, Logs)>;
    let mut tree: BTreeMap<i64, Segments> = BTreeMap::new();
    for o in store.list(&format!("{src_prefix}binlogs/")).await.unwrap() {
        let rel = &o.key[src_prefix.len()..];
        let dst = format!("backup/{fixture}/{rel}");
        let (_, body) = store.get_stream(&o.key).await.unwrap();
        store.put_stream(&dst, o.size, body).await.unwrap();
        let parts: Vec<&str> = rel.split('/').collect();
        // binlogs/{insert_log|delta_log}/{coll}/{part}/{group}/{seg}/...
        let (part, seg): (i64, i64) = (parts[3].parse().unwrap(), parts[5].parse().unwrap());
        let entry = tree.entry(part).or_default().entry(seg).or_default();
        let milvus_path = format!(
            "files/{}/{}/{}/{}/{}",
            parts[1],
            parts[2],
            parts[3],
            parts[5],
            parts[6..].join("/")
        );
        if parts[1] == "insert_log" {
            entry
                .0
                .entry(parts[6].parse().unwrap())
                .or_default()
                .push((milvus_path, o.size));
        } else {
            entry.1.push((milvus_path, o.size));
        }
    }

    let partitions = m.list_partitions(&spec.db, &spec.name).await.unwrap();
    let schema = spec.schema();
    let kvs = |v: &[milvus_backup::milvus::proto::common::KeyValuePair]| -> Vec<Value> {
        v.iter()
            .map(|p| json!({"key": p.key, "value": p.value}))
            .collect()
    };
    let fields: Vec<Value> = schema
        .fields
        .iter()
        .map(|f| {
            let mut o = json!({"fieldID": f.field_id, "name": f.name, "description": f.description, "data_type": f.data_type});
            if f.is_primary_key {
                o["is_primary_key"] = json!(true);
            }
            if !f.type_params.is_empty() {
                o["type_params"] = json!(kvs(&f.type_params));
            }
            if f.element_type != 0 {
                o["element_type"] = json!(f.element_type);
            }
            o
        })
        .collect();
    let binlog = |(path, size): &(String, u64)| json!({"log_path": path, "log_size": size});
    let mut segment_infos = Vec::new();
    let mut partition_infos = Vec::new();
    let mut total = 0u64;
    for p in &partitions {
        let mut part_size = 0;
        for (seg, (inserts, deltas)) in tree.get(&p.id).cloned().unwrap_or_default() {
            let size: u64 = inserts.values().flatten().chain(&deltas).map(|l| l.1).sum();
            part_size += size;
            let mut s = json!({
                "segment_id": seg, "collection_id": coll.collection_id, "partition_id": p.id,
                "num_of_rows": 1, "size": size, "group_id": seg,
                "binlogs": inserts.iter().map(|(f, logs)| json!({"fieldID": f, "binlogs": logs.iter().map(binlog).collect::<Vec<_>>()})).collect::<Vec<_>>(),
            });
            s["deltalogs"] = if deltas.is_empty() {
                json!([{}])
            } else {
                json!([{"binlogs": deltas.iter().map(binlog).collect::<Vec<_>>()}])
            };
            segment_infos.push(s);
        }
        total += part_size;
        partition_infos.push(json!({"partition_id": p.id, "partition_name": p.name, "collection_id": coll.collection_id, "size": part_size, "load_state": "Loaded"}));
    }
    let collection = json!({
        "id": "go-coll-1", "state_code": 2, "start_time": 1, "end_time": 2, "progress": 100,
        "collection_id": coll.collection_id, "db_name": "default", "collection_name": spec.name,
        "schema": {"name": spec.name, "description": schema.description, "fields": fields, "enable_dynamic_field": true},
        "shards_num": 1, "consistency_level": 0, "backup_timestamp": coll.backup_timestamp, "size": total,
        "has_index": true, "load_state": "Loaded",
    });
    let backup = json!({
        "id": "go-backup-1", "state_code": 2, "start_time": 1700000000000u64, "end_time": 1700000001000u64,
        "progress": 100, "name": fixture, "backup_timestamp": 1700000000000u64, "size": total, "milvus_version": "v2.3.5",
    });
    let write_meta = |name: String, partitions: &[Value]| {
        let mut backup = backup.clone();
        backup["name"] = json!(name);
        let files = [
            ("backup_meta.json", backup),
            (
                "collection_meta.json",
                json!({"infos": [collection.clone()]}),
            ),
            ("partition_meta.json", json!({"infos": partitions})),
            ("segment_meta.json", json!({"infos": segment_infos.clone()})),
        ];
        let store = store.clone();
        async move {
            for (file, body) in files {
                let key = format!("backup/{name}/meta/{file}");
                let body = Bytes::from(serde_json::to_vec(&body).unwrap());
                store.write(&key, body).await.unwrap();
            }
        }
    };
    write_meta(fixture.clone(), &partition_infos).await;

    // It is listed, described, and restores row for row.
    let got = flows::get_backup(&mut client, &fixture).await;
    assert_eq!(got.collections[0].collection_name, spec.name);
    assert_eq!(got.collections[0].partition_count, 2);
    let target = format!("{}_from_go", spec.name);
    flows::restore(
        &mut client,
        pb::RestoreRequest {
            backup_name: fixture.clone(),
            collection_renames: [(spec.name.clone(), target.clone())].into(),
            ..Default::default()
        },
    )
    .await;
    data::index(&m, &spec.db, &target).await;
    data::load(&m, &spec.db, &target).await;
    let restored = data::rows(&m, &spec, &spec.db, &target, &[]).await;
    data::assert_rows_equal("go-shaped backup", &source, &restored);

    // The same meta without the partition `p1` in partition_meta.json: its
    // segments have no partition. The backup is DATA_LOSS naming one of
    // them, not a backup of one partition (as on the code before).
    let orphaned = common::unique("go_orphans");
    let p1 = partitions.iter().find(|p| p.name == "p1").unwrap().id;
    let kept: Vec<Value> = partition_infos
        .iter()
        .filter(|p| p["partition_id"] != json!(p1))
        .cloned()
        .collect();
    write_meta(orphaned.clone(), &kept).await;
    let get = pb::GetBackupRequest {
        name: orphaned.clone(),
        ..Default::default()
    };
    let err = client.get_backup(get).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::DataLoss, "{err:?}");
    let named = format!("of partition {p1} of collection {}", coll.collection_id);
    assert!(
        err.message().contains("segment_meta.json has segment") && err.message().contains(&named),
        "{err:?}"
    );
    // Damaged, not someone else's: DeleteBackup removes it (refused
    // DATA_LOSS on the code before, the folder left).
    let delete = pb::DeleteBackupRequest {
        name: orphaned.clone(),
        ..Default::default()
    };
    client.delete_backup(delete).await.expect("deleted");
    let left = store.list(&format!("backup/{orphaned}/")).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    data::drop_if_exists(&m, &spec.db, &spec.name).await;
    data::drop_if_exists(&m, &spec.db, &target).await;
}
