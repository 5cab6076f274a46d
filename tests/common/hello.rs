//! `hello_milvus` as the Go tool's example makes it: pk INT64 (auto_id off),
//! `random` DOUBLE, `var` VARCHAR, `embeddings` FLOAT_VECTOR dim 8, inserted in
//! several batches and flushed; plus helpers to read a collection back as rows.

use std::time::{Duration, Instant};

use milvus_backup::milvus::proto::common::{ConsistencyLevel, KeyValuePair};
use milvus_backup::milvus::proto::milvus as pb;
use milvus_backup::milvus::proto::schema::{
    self, CollectionSchema, DataType, FieldData, FieldSchema, ScalarField, VectorField,
};
use milvus_backup::milvus::rows::{Row, Value, rows_of};
use milvus_backup::milvus::{MilvusApi, MilvusClient, check_status};
use prost::Message;
use rand::{Rng, SeedableRng};

/// Vector dimension of `embeddings`.
pub const DIM: usize = 8;

fn kv(key: &str, value: &str) -> KeyValuePair {
    KeyValuePair {
        key: key.into(),
        value: value.into(),
    }
}

/// The schema of the Go tool's `hello_milvus`.
pub fn schema(name: &str) -> CollectionSchema {
    let field = |id: i64, name: &str, t: DataType| FieldSchema {
        field_id: id,
        name: name.into(),
        data_type: t as i32,
        ..Default::default()
    };
    CollectionSchema {
        name: name.into(),
        description: "hello_milvus is the simplest demo to introduce the APIs".into(),
        fields: vec![
            FieldSchema {
                is_primary_key: true,
                ..field(100, "pk", DataType::Int64)
            },
            field(101, "random", DataType::Double),
            FieldSchema {
                type_params: vec![kv("max_length", "65535")],
                ..field(102, "var", DataType::VarChar)
            },
            FieldSchema {
                type_params: vec![kv("dim", &DIM.to_string())],
                ..field(103, "embeddings", DataType::FloatVector)
            },
        ],
        ..Default::default()
    }
}

/// Drops the collection if it exists.
pub async fn drop_if_exists(m: &MilvusClient, db: &str, name: &str) {
    if m.has_collection(db, name).await.expect("HasCollection") {
        m.drop_collection(db, name).await.expect("DropCollection");
    }
}

/// Creates `name` like the example (dropping an old one), inserts `rows` rows
/// in `batches` inserts, builds an IVF_FLAT index, loads it and flushes.
pub async fn create(m: &MilvusClient, name: &str, rows: usize, batches: usize, seed: u64) {
    drop_if_exists(m, "default", name).await;
    let req = pb::CreateCollectionRequest {
        collection_name: name.into(),
        schema: schema(name).encode_to_vec(),
        shards_num: 2,
        consistency_level: ConsistencyLevel::Strong as i32,
        ..Default::default()
    };
    let status = m
        .raw()
        .create_collection(m.request("", req))
        .await
        .expect("CreateCollection")
        .into_inner();
    check_status("CreateCollection", Some(&status)).expect("CreateCollection");

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let per_batch = rows.div_ceil(batches);
    let mut start = 0;
    while start < rows {
        let end = (start + per_batch).min(rows);
        insert(m, name, start as i64..end as i64, &mut rng).await;
        start = end;
    }

    index_and_load(m, name).await;
    let flush = m.flush("default", name).await.expect("Flush");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !m
        .is_flushed("default", name, &flush)
        .await
        .expect("GetFlushState")
    {
        assert!(Instant::now() < deadline, "flush of {name} did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Builds the example's IVF_FLAT index on `embeddings` and loads the collection.
pub async fn index_and_load(m: &MilvusClient, name: &str) {
    let index = pb::CreateIndexRequest {
        collection_name: name.into(),
        field_name: "embeddings".into(),
        index_name: "embeddings_idx".into(),
        extra_params: vec![
            kv("index_type", "IVF_FLAT"),
            kv("metric_type", "L2"),
            kv("params", r#"{"nlist": 128}"#),
        ],
        ..Default::default()
    };
    let status = m
        .raw()
        .create_index(m.request("", index))
        .await
        .expect("CreateIndex")
        .into_inner();
    check_status("CreateIndex", Some(&status)).expect("CreateIndex");
    m.load_collection("default", name, &Default::default())
        .await
        .expect("LoadCollection");
    wait_loaded(m, "default", name).await;
}

/// Inserts rows with primary keys `pks`, values from `rng`.
pub async fn insert(m: &MilvusClient, name: &str, pks: std::ops::Range<i64>, rng: &mut impl Rng) {
    let n = (pks.end - pks.start) as usize;
    let scalar = |name: &str, t: DataType, data: schema::scalar_field::Data| FieldData {
        r#type: t as i32,
        field_name: name.into(),
        field: Some(schema::field_data::Field::Scalars(ScalarField {
            data: Some(data),
        })),
        ..Default::default()
    };
    let fields = vec![
        scalar(
            "pk",
            DataType::Int64,
            schema::scalar_field::Data::LongData(schema::LongArray {
                data: pks.clone().collect(),
            }),
        ),
        scalar(
            "random",
            DataType::Double,
            schema::scalar_field::Data::DoubleData(schema::DoubleArray {
                data: (0..n).map(|_| rng.random_range(-20..-10) as f64).collect(),
            }),
        ),
        scalar(
            "var",
            DataType::VarChar,
            schema::scalar_field::Data::StringData(schema::StringArray {
                data: (0..n)
                    .map(|_| rng.random_range(0..1_000_000_000u64).to_string())
                    .collect(),
            }),
        ),
        FieldData {
            r#type: DataType::FloatVector as i32,
            field_name: "embeddings".into(),
            field: Some(schema::field_data::Field::Vectors(VectorField {
                dim: DIM as i64,
                data: Some(schema::vector_field::Data::FloatVector(
                    schema::FloatArray {
                        data: (0..n * DIM).map(|_| rng.random::<f32>()).collect(),
                    },
                )),
            })),
            ..Default::default()
        },
    ];
    let req = pb::InsertRequest {
        collection_name: name.into(),
        partition_name: "_default".into(),
        fields_data: fields,
        num_rows: n as u32,
        ..Default::default()
    };
    let resp = m
        .raw()
        .insert(m.request("", req))
        .await
        .expect("Insert")
        .into_inner();
    check_status("Insert", resp.status.as_ref()).expect("Insert");
    assert_eq!(resp.insert_cnt as usize, n, "rows inserted into {name}");
}

/// Waits until the collection is fully loaded.
pub async fn wait_loaded(m: &MilvusClient, db: &str, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while m
        .loading_progress(db, name)
        .await
        .expect("GetLoadingProgress")
        < 100
    {
        assert!(Instant::now() < deadline, "{db}.{name} did not load");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Every row of a loaded collection (`expr` selects them all), sorted by `pk`.
pub async fn rows(m: &MilvusClient, db: &str, name: &str, expr: &str, fields: &[&str]) -> Vec<Row> {
    let req = pb::QueryRequest {
        db_name: db.into(),
        collection_name: name.into(),
        expr: expr.into(),
        output_fields: fields.iter().map(|f| f.to_string()).collect(),
        consistency_level: ConsistencyLevel::Strong as i32,
        ..Default::default()
    };
    let resp = m
        .raw()
        .query(m.request(db, req))
        .await
        .expect("Query")
        .into_inner();
    check_status("Query", resp.status.as_ref()).expect("Query");
    let mut rows = rows_of(&resp.fields_data).expect("rows");
    rows.sort_by(|a, b| pk(a).partial_cmp(&pk(b)).expect("comparable pks"));
    rows
}

fn pk(row: &Row) -> Option<Value> {
    row.get("pk").cloned()
}

/// Asserts two row sets are equal, naming the first differing row.
pub fn assert_rows_equal(source: &[Row], restored: &[Row]) {
    assert_eq!(source.len(), restored.len(), "row counts differ");
    for (i, (a, b)) in source.iter().zip(restored).enumerate() {
        assert_eq!(a, b, "row {i} differs");
    }
}
