//! Query results (column-wise `FieldData`) read as rows, to compare collections.

use std::collections::BTreeMap;

use super::proto::schema::{FieldData, ScalarField, field_data, scalar_field, vector_field};
use crate::error::{Error, Result};

/// One value of one row.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f32),
    Double(f64),
    Str(String),
    /// JSON as Milvus returns it (the dynamic `$meta` field too).
    Json(String),
    Bytes(Vec<u8>),
    FloatVector(Vec<f32>),
    BinaryVector(Vec<u8>),
    Array(Vec<Value>),
}

/// A row: field name → value.
pub type Row = BTreeMap<String, Value>;

fn scalar_values(s: &ScalarField) -> Vec<Value> {
    use scalar_field::Data;
    match &s.data {
        Some(Data::BoolData(a)) => a.data.iter().map(|v| Value::Bool(*v)).collect(),
        Some(Data::IntData(a)) => a.data.iter().map(|v| Value::Int(*v as i64)).collect(),
        Some(Data::LongData(a)) => a.data.iter().map(|v| Value::Int(*v)).collect(),
        Some(Data::FloatData(a)) => a.data.iter().map(|v| Value::Float(*v)).collect(),
        Some(Data::DoubleData(a)) => a.data.iter().map(|v| Value::Double(*v)).collect(),
        Some(Data::StringData(a)) => a.data.iter().map(|v| Value::Str(v.clone())).collect(),
        Some(Data::BytesData(a)) => a.data.iter().map(|v| Value::Bytes(v.clone())).collect(),
        Some(Data::JsonData(a)) => a
            .data
            .iter()
            .map(|v| Value::Json(String::from_utf8_lossy(v).into_owned()))
            .collect(),
        Some(Data::ArrayData(a)) => a
            .data
            .iter()
            .map(|e| Value::Array(scalar_values(e)))
            .collect(),
        None => Vec::new(),
    }
}

fn column(f: &FieldData) -> Result<Vec<Value>> {
    match &f.field {
        Some(field_data::Field::Scalars(s)) => Ok(scalar_values(s)),
        Some(field_data::Field::Vectors(v)) => {
            let dim = v.dim.max(1) as usize;
            match &v.data {
                Some(vector_field::Data::FloatVector(a)) => Ok(a
                    .data
                    .chunks(dim)
                    .map(|c| Value::FloatVector(c.to_vec()))
                    .collect()),
                Some(vector_field::Data::BinaryVector(b)) => Ok(b
                    .chunks(dim.div_ceil(8))
                    .map(|c| Value::BinaryVector(c.to_vec()))
                    .collect()),
                Some(
                    vector_field::Data::Float16Vector(b) | vector_field::Data::Bfloat16Vector(b),
                ) => Ok(b
                    .chunks(dim * 2)
                    .map(|c| Value::Bytes(c.to_vec()))
                    .collect()),
                other => Err(Error::Internal(format!(
                    "field {:?}: vector kind {other:?} not supported",
                    f.field_name
                ))),
            }
        }
        None => Ok(Vec::new()),
    }
}

/// Turns columns into rows. Every column must have the same length.
pub fn rows_of(fields: &[FieldData]) -> Result<Vec<Row>> {
    let mut columns = Vec::with_capacity(fields.len());
    for f in fields {
        columns.push((f.field_name.clone(), column(f)?));
    }
    let n = columns.first().map(|c| c.1.len()).unwrap_or(0);
    if let Some((name, c)) = columns.iter().find(|c| c.1.len() != n) {
        return Err(Error::Internal(format!(
            "column {name:?} has {} values, expected {n}",
            c.len()
        )));
    }
    let mut rows = vec![Row::new(); n];
    for (name, values) in columns {
        for (row, v) in rows.iter_mut().zip(values) {
            row.insert(name.clone(), v);
        }
    }
    Ok(rows)
}
