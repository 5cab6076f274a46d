//! Collections of every shape the fidelity tests need, built over the raw
//! Milvus API: every 2.3 data type, VARCHAR or auto_id primary keys, dynamic
//! fields, partition keys, user partitions; deterministic rows from a seed.

use std::time::{Duration, Instant};

use milvus_backup::milvus::proto::common::{ConsistencyLevel, KeyValuePair};
use milvus_backup::milvus::proto::milvus as pb;
use milvus_backup::milvus::proto::schema::{self, CollectionSchema, DataType, FieldSchema};
use milvus_backup::milvus::rows::{Row, rows_of};
use milvus_backup::milvus::{MilvusApi, MilvusClient, check_status};
use prost::Message;

mod insert;
// Each test binary uses its own part of the helpers.
#[allow(unused_imports)]
pub use insert::{insert, pk_value};

/// Dimension of `v_float`.
pub const FLOAT_DIM: usize = 8;
/// Dimension (bits) of `v_bin`.
pub const BIN_DIM: usize = 16;

/// The shape of a test collection.
#[derive(Debug, Clone)]
pub struct Spec {
    pub db: String,
    pub name: String,
    pub varchar_pk: bool,
    pub auto_id: bool,
    /// The one vector field (Milvus 2.3 allows one): `v_bin` instead of `v_float`.
    pub binary_vector: bool,
    pub dynamic: bool,
    /// `num_partitions` of a partition key on `tenant`.
    pub partition_key: Option<i64>,
    pub shards: i32,
    pub consistency: ConsistencyLevel,
    pub properties: Vec<(String, String)>,
}

impl Spec {
    /// An INT64-keyed collection of every type in the default database.
    pub fn new(name: &str) -> Self {
        Self {
            db: "default".into(),
            name: name.into(),
            varchar_pk: false,
            auto_id: false,
            binary_vector: false,
            dynamic: false,
            partition_key: None,
            shards: 1,
            consistency: ConsistencyLevel::Strong,
            properties: Vec::new(),
        }
    }

    /// The names of every field, vectors included (for queries).
    pub fn fields(&self) -> Vec<String> {
        self.schema().fields.into_iter().map(|f| f.name).collect()
    }

    /// Output fields of a query that returns every value: every field, and
    /// `$meta` for the dynamic keys.
    pub fn output_fields(&self) -> Vec<String> {
        let mut f = self.fields();
        if self.dynamic {
            f.push("$meta".into());
        }
        f
    }

    /// The schema.
    pub fn schema(&self) -> CollectionSchema {
        let kv = |k: &str, v: &str| KeyValuePair {
            key: k.into(),
            value: v.into(),
        };
        let field = |id: i64, name: &str, t: DataType, desc: &str| FieldSchema {
            field_id: id,
            name: name.into(),
            data_type: t as i32,
            description: desc.into(),
            ..Default::default()
        };
        let pk = if self.varchar_pk {
            FieldSchema {
                is_primary_key: true,
                auto_id: self.auto_id,
                type_params: vec![kv("max_length", "64")],
                ..field(100, "pk", DataType::VarChar, "the primary key")
            }
        } else {
            FieldSchema {
                is_primary_key: true,
                auto_id: self.auto_id,
                ..field(100, "pk", DataType::Int64, "the primary key")
            }
        };
        let mut fields = vec![
            pk,
            field(101, "f_bool", DataType::Bool, "a bool"),
            field(102, "f_i8", DataType::Int8, "an int8"),
            field(103, "f_i16", DataType::Int16, "an int16"),
            field(104, "f_i32", DataType::Int32, "an int32"),
            field(105, "f_i64", DataType::Int64, "an int64"),
            field(106, "f_float", DataType::Float, "a float"),
            field(107, "f_double", DataType::Double, "a double"),
            FieldSchema {
                type_params: vec![kv("max_length", "256")],
                ..field(108, "f_varchar", DataType::VarChar, "a varchar")
            },
            field(109, "f_json", DataType::Json, "a json"),
            FieldSchema {
                element_type: DataType::Int64 as i32,
                type_params: vec![kv("max_capacity", "8")],
                ..field(110, "f_arr_int", DataType::Array, "an array of int64")
            },
            FieldSchema {
                element_type: DataType::VarChar as i32,
                type_params: vec![kv("max_capacity", "8"), kv("max_length", "32")],
                ..field(111, "f_arr_str", DataType::Array, "an array of varchar")
            },
        ];
        fields.push(if self.binary_vector {
            FieldSchema {
                type_params: vec![kv("dim", &BIN_DIM.to_string())],
                ..field(112, "v_bin", DataType::BinaryVector, "a binary vector")
            }
        } else {
            FieldSchema {
                type_params: vec![kv("dim", &FLOAT_DIM.to_string())],
                ..field(112, "v_float", DataType::FloatVector, "a float vector")
            }
        });
        if self.partition_key.is_some() {
            fields.push(FieldSchema {
                is_partition_key: true,
                type_params: vec![kv("max_length", "32")],
                ..field(114, "tenant", DataType::VarChar, "the partition key")
            });
        }
        CollectionSchema {
            name: self.name.clone(),
            description: format!("fidelity test collection {}", self.name),
            fields,
            enable_dynamic_field: self.dynamic,
            ..Default::default()
        }
    }
}

/// Drops the collection if it exists.
pub async fn drop_if_exists(m: &MilvusClient, db: &str, name: &str) {
    if m.has_collection(db, name).await.expect("HasCollection") {
        m.drop_collection(db, name).await.expect("DropCollection");
    }
}

/// Drops the collection once no import into it runs: on Milvus 2.3 an import
/// whose collection is dropped under it blocks the import queue until it expires.
pub async fn drop_after_imports(m: &MilvusClient, db: &str, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while m.has_collection(db, name).await.unwrap()
        && m.collection_imports(db, name)
            .await
            .unwrap()
            .iter()
            .any(|t| t.phase == milvus_backup::milvus::ImportPhase::Running)
    {
        assert!(
            Instant::now() < deadline,
            "imports into {db}.{name} did not end"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop_if_exists(m, db, name).await;
}

/// Creates the database if it is missing.
pub async fn ensure_db(m: &MilvusClient, db: &str) {
    if !m.list_databases().await.unwrap().iter().any(|d| d == db) {
        m.create_database(db).await.expect("CreateDatabase");
    }
}

/// Creates the collection (dropping an old one).
pub async fn create(m: &MilvusClient, spec: &Spec) {
    drop_if_exists(m, &spec.db, &spec.name).await;
    let req = pb::CreateCollectionRequest {
        db_name: spec.db.clone(),
        collection_name: spec.name.clone(),
        schema: spec.schema().encode_to_vec(),
        shards_num: spec.shards,
        consistency_level: spec.consistency as i32,
        properties: spec
            .properties
            .iter()
            .map(|(k, v)| KeyValuePair {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        num_partitions: spec.partition_key.unwrap_or(0),
        ..Default::default()
    };
    let status = m
        .raw()
        .create_collection(m.request(&spec.db, req))
        .await
        .unwrap()
        .into_inner();
    check_status("CreateCollection", Some(&status)).unwrap();
}

/// Creates a partition.
pub async fn create_partition(m: &MilvusClient, spec: &Spec, partition: &str) {
    m.create_partition(&spec.db, &spec.name, partition)
        .await
        .unwrap();
}

/// Deletes the rows matching `expr`.
pub async fn delete(m: &MilvusClient, spec: &Spec, expr: &str) {
    let req = pb::DeleteRequest {
        db_name: spec.db.clone(),
        collection_name: spec.name.clone(),
        expr: expr.into(),
        ..Default::default()
    };
    let resp = m
        .raw()
        .delete(m.request(&spec.db, req))
        .await
        .unwrap()
        .into_inner();
    check_status("Delete", resp.status.as_ref()).unwrap();
}

/// Flushes and waits for it: everything so far is in sealed segments.
pub async fn flush(m: &MilvusClient, db: &str, name: &str) {
    let flush = m.flush(db, name).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !m.is_flushed(db, name, &flush).await.unwrap() {
        assert!(
            Instant::now() < deadline,
            "flush of {db}.{name} did not finish"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Indexes the vector field (as Milvus 2.3 needs before a load).
pub async fn index(m: &MilvusClient, db: &str, name: &str) {
    let kv = |k: &str, v: &str| KeyValuePair {
        key: k.into(),
        value: v.into(),
    };
    let fields =
        schema::CollectionSchema::decode(m.describe_collection(db, name).await.unwrap().schema)
            .unwrap()
            .fields;
    for (field, params) in [
        (
            "v_float",
            vec![
                kv("index_type", "IVF_FLAT"),
                kv("metric_type", "L2"),
                kv("params", r#"{"nlist":16}"#),
            ],
        ),
        (
            "v_bin",
            vec![
                kv("index_type", "BIN_IVF_FLAT"),
                kv("metric_type", "HAMMING"),
                kv("params", r#"{"nlist":16}"#),
            ],
        ),
    ] {
        if !fields.iter().any(|f| f.name == field) {
            continue;
        }
        let req = pb::CreateIndexRequest {
            db_name: db.into(),
            collection_name: name.into(),
            field_name: field.into(),
            index_name: format!("{field}_idx"),
            extra_params: params,
            ..Default::default()
        };
        let status = m
            .raw()
            .create_index(m.request(db, req))
            .await
            .unwrap()
            .into_inner();
        check_status("CreateIndex", Some(&status)).unwrap();
    }
}

/// Loads and waits until loaded.
pub async fn load(m: &MilvusClient, db: &str, name: &str) {
    m.load_collection(db, name, &Default::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    while m.loading_progress(db, name).await.unwrap() < 100 {
        assert!(Instant::now() < deadline, "{db}.{name} did not load");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Every live row (of `partitions`, or all), every field, sorted by primary key.
pub async fn rows(
    m: &MilvusClient,
    spec: &Spec,
    db: &str,
    name: &str,
    partitions: &[&str],
) -> Vec<Row> {
    let expr = if spec.varchar_pk {
        r#"pk >= """#
    } else {
        "pk >= -9223372036854775807"
    };
    rows_where(m, spec, db, name, partitions, expr).await
}

/// The live rows matching `expr`, every field, sorted by primary key.
pub async fn rows_where(
    m: &MilvusClient,
    spec: &Spec,
    db: &str,
    name: &str,
    partitions: &[&str],
    expr: &str,
) -> Vec<Row> {
    let req = pb::QueryRequest {
        db_name: db.into(),
        collection_name: name.into(),
        expr: expr.into(),
        output_fields: spec.output_fields(),
        partition_names: partitions.iter().map(|p| p.to_string()).collect(),
        consistency_level: ConsistencyLevel::Strong as i32,
        query_params: vec![KeyValuePair {
            key: "limit".into(),
            value: "16384".into(),
        }],
        ..Default::default()
    };
    let resp = m
        .raw()
        .query(m.request(db, req))
        .await
        .unwrap()
        .into_inner();
    check_status("Query", resp.status.as_ref()).unwrap();
    let mut rows = rows_of(&resp.fields_data).unwrap();
    rows.sort_by(|a, b| a.get("pk").partial_cmp(&b.get("pk")).unwrap());
    rows
}

/// Asserts two row sets are equal, naming the first differing row.
pub fn assert_rows_equal(what: &str, source: &[Row], restored: &[Row]) {
    assert_eq!(source.len(), restored.len(), "{what}: row counts differ");
    for (i, (a, b)) in source.iter().zip(restored).enumerate() {
        assert_eq!(a, b, "{what}: row {i} differs");
    }
}

/// A new collection named from `prefix` with 300 rows in three flushed
/// segments of the default partition.
#[allow(dead_code)]
pub async fn three_segments(m: &MilvusClient, prefix: &str) -> Spec {
    let spec = Spec::new(&super::unique(prefix));
    create(m, &spec).await;
    for i in 0..3 {
        insert(m, &spec, "", i * 100..(i + 1) * 100, 91).await;
        flush(m, &spec.db, &spec.name).await;
    }
    spec
}

/// Creates `spec` with a partition `p1`: rows `0..main` in the default
/// partition and `main..main + in_p1` in `p1`, one row of each deleted,
/// indexed and loaded. Its rows.
pub async fn populated(
    m: &MilvusClient,
    spec: &Spec,
    main: i64,
    in_p1: i64,
    seed: u64,
) -> Vec<Row> {
    create(m, spec).await;
    create_partition(m, spec, "p1").await;
    insert(m, spec, "", 0..main, seed).await;
    insert(m, spec, "p1", main..main + in_p1, seed).await;
    delete(
        m,
        spec,
        &format!("pk in [{}, {}]", main / 2, main + in_p1 / 2),
    )
    .await;
    index(m, &spec.db, &spec.name).await;
    load(m, &spec.db, &spec.name).await;
    let rows = rows(m, spec, &spec.db, &spec.name, &[]).await;
    assert_eq!(
        rows.len() as i64,
        main + in_p1 - 2,
        "{}: rows after the deletes",
        spec.name
    );
    rows
}

/// Flips one byte in the middle of the largest object under `folder` (its
/// size kept); returns its key relative to `folder`.
pub async fn flip_largest_object(
    store: &dyn milvus_backup::storage::ObjectStore,
    folder: &str,
    under: &str,
) -> String {
    let largest = store
        .list(&format!("{folder}{under}"))
        .await
        .unwrap()
        .into_iter()
        .max_by_key(|o| o.size)
        .expect("objects to damage");
    let mut bytes = store.read(&largest.key).await.unwrap().to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    store
        .write(&largest.key, bytes::Bytes::from(bytes))
        .await
        .unwrap();
    assert_eq!(store.head(&largest.key).await.unwrap(), Some(largest.size));
    largest.key[folder.len()..].to_string()
}
