//! Rows for the test collections: deterministic values of every field of a
//! `Spec` from a seed, inserted through the raw Milvus API.

use milvus_backup::milvus::proto::milvus as pb;
use milvus_backup::milvus::proto::schema::{
    self, DataType, FieldData, ScalarField, VectorField, field_data::Field, scalar_field::Data,
};
use milvus_backup::milvus::{MilvusClient, check_status};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{BIN_DIM, FLOAT_DIM, Spec};

fn scalar(name: &str, t: DataType, data: Data) -> FieldData {
    FieldData {
        r#type: t as i32,
        field_name: name.into(),
        field: Some(Field::Scalars(ScalarField { data: Some(data) })),
        ..Default::default()
    }
}

/// The primary key of row number `i` (for deletes and expectations).
pub fn pk_value(spec: &Spec, i: i64) -> String {
    if spec.varchar_pk {
        format!("\"k{i:06}\"")
    } else {
        i.to_string()
    }
}

/// Inserts rows number `rows` (primary keys derived from them unless auto_id)
/// into `partition` ("" for the default one or the partition key's routing).
pub async fn insert(
    m: &MilvusClient,
    spec: &Spec,
    partition: &str,
    rows: std::ops::Range<i64>,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ rows.start as u64);
    let n = (rows.end - rows.start) as usize;
    let ids: Vec<i64> = rows.clone().collect();
    let mut fields = Vec::new();
    if !spec.auto_id {
        fields.push(if spec.varchar_pk {
            scalar(
                "pk",
                DataType::VarChar,
                Data::StringData(schema::StringArray {
                    data: ids.iter().map(|i| format!("k{i:06}")).collect(),
                }),
            )
        } else {
            scalar(
                "pk",
                DataType::Int64,
                Data::LongData(schema::LongArray { data: ids.clone() }),
            )
        });
    }
    fields.push(scalar(
        "f_bool",
        DataType::Bool,
        Data::BoolData(schema::BoolArray {
            data: ids.iter().map(|i| i % 3 == 0).collect(),
        }),
    ));
    fields.push(scalar(
        "f_i8",
        DataType::Int8,
        Data::IntData(schema::IntArray {
            data: (0..n).map(|_| rng.random_range(-128..128)).collect(),
        }),
    ));
    fields.push(scalar(
        "f_i16",
        DataType::Int16,
        Data::IntData(schema::IntArray {
            data: (0..n).map(|_| rng.random_range(-32768..32768)).collect(),
        }),
    ));
    fields.push(scalar(
        "f_i32",
        DataType::Int32,
        Data::IntData(schema::IntArray {
            data: (0..n).map(|_| rng.random()).collect(),
        }),
    ));
    fields.push(scalar(
        "f_i64",
        DataType::Int64,
        Data::LongData(schema::LongArray {
            data: (0..n).map(|_| rng.random()).collect(),
        }),
    ));
    fields.push(scalar(
        "f_float",
        DataType::Float,
        Data::FloatData(schema::FloatArray {
            data: (0..n).map(|_| rng.random::<f32>() * 1000.0).collect(),
        }),
    ));
    fields.push(scalar(
        "f_double",
        DataType::Double,
        Data::DoubleData(schema::DoubleArray {
            data: (0..n).map(|_| rng.random::<f64>() * 1e9).collect(),
        }),
    ));
    fields.push(scalar(
        "f_varchar",
        DataType::VarChar,
        Data::StringData(schema::StringArray {
            data: ids
                .iter()
                .map(|i| format!("row {i} ünïcode ✓ {}", rng.random::<u32>()))
                .collect(),
        }),
    ));
    fields.push(scalar(
        "f_json",
        DataType::Json,
        Data::JsonData(schema::JsonArray {
            data: ids
                .iter()
                .map(|i| {
                    format!(
                        r#"{{"i":{i},"tag":"t{}","nested":{{"x":[1,2,{}]}}}}"#,
                        i % 5,
                        rng.random::<u16>()
                    )
                    .into_bytes()
                })
                .collect(),
        }),
    ));
    fields.push(FieldData {
        r#type: DataType::Array as i32,
        field_name: "f_arr_int".into(),
        field: Some(Field::Scalars(ScalarField {
            data: Some(Data::ArrayData(schema::ArrayArray {
                element_type: DataType::Int64 as i32,
                data: (0..n)
                    .map(|k| ScalarField {
                        data: Some(Data::LongData(schema::LongArray {
                            data: (0..(k % 5) as i64).map(|_| rng.random()).collect(),
                        })),
                    })
                    .collect(),
            })),
        })),
        ..Default::default()
    });
    fields.push(FieldData {
        r#type: DataType::Array as i32,
        field_name: "f_arr_str".into(),
        field: Some(Field::Scalars(ScalarField {
            data: Some(Data::ArrayData(schema::ArrayArray {
                element_type: DataType::VarChar as i32,
                data: (0..n)
                    .map(|k| ScalarField {
                        data: Some(Data::StringData(schema::StringArray {
                            data: (0..(k % 4))
                                .map(|j| format!("s{j}-{}", rng.random::<u8>()))
                                .collect(),
                        })),
                    })
                    .collect(),
            })),
        })),
        ..Default::default()
    });
    fields.push(if spec.binary_vector {
        FieldData {
            r#type: DataType::BinaryVector as i32,
            field_name: "v_bin".into(),
            field: Some(Field::Vectors(VectorField {
                dim: BIN_DIM as i64,
                data: Some(schema::vector_field::Data::BinaryVector(
                    (0..n * BIN_DIM / 8).map(|_| rng.random()).collect(),
                )),
            })),
            ..Default::default()
        }
    } else {
        FieldData {
            r#type: DataType::FloatVector as i32,
            field_name: "v_float".into(),
            field: Some(Field::Vectors(VectorField {
                dim: FLOAT_DIM as i64,
                data: Some(schema::vector_field::Data::FloatVector(
                    schema::FloatArray {
                        data: (0..n * FLOAT_DIM).map(|_| rng.random()).collect(),
                    },
                )),
            })),
            ..Default::default()
        }
    });
    if spec.partition_key.is_some() {
        fields.push(scalar(
            "tenant",
            DataType::VarChar,
            Data::StringData(schema::StringArray {
                data: ids.iter().map(|i| format!("tenant{}", i % 7)).collect(),
            }),
        ));
    }
    if spec.dynamic {
        fields.push(FieldData {
            is_dynamic: true,
            ..scalar(
                "$meta",
                DataType::Json,
                Data::JsonData(schema::JsonArray {
                    data: ids
                        .iter()
                        .map(|i| {
                            format!(r#"{{"extra_{}":{i},"color":"c{}"}}"#, i % 3, i % 4)
                                .into_bytes()
                        })
                        .collect(),
                }),
            )
        });
    }
    let req = pb::InsertRequest {
        db_name: spec.db.clone(),
        collection_name: spec.name.clone(),
        partition_name: partition.into(),
        fields_data: fields,
        num_rows: n as u32,
        ..Default::default()
    };
    let resp = m
        .raw()
        .insert(m.request(&spec.db, req))
        .await
        .unwrap()
        .into_inner();
    check_status("Insert", resp.status.as_ref()).unwrap();
    assert_eq!(resp.insert_cnt as usize, n);
}
