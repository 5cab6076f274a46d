//! Conversions between Milvus's encoded schema and the Go tool's JSON schema.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use prost::Message;

use crate::error::{Error, Result};
use crate::meta::model::{CollectionSchema, FieldSchema, KeyValuePair};
use crate::milvus::proto::{common, schema as pb};

/// The Go tool's JSON schema from the encoded `schema.CollectionSchema`.
pub fn to_meta(encoded: &[u8]) -> Result<CollectionSchema> {
    let s = pb::CollectionSchema::decode(encoded)
        .map_err(|e| Error::Internal(format!("cannot decode collection schema: {e}")))?;
    Ok(CollectionSchema {
        name: s.name,
        description: s.description,
        #[allow(deprecated)]
        auto_id: s.auto_id,
        fields: s.fields.into_iter().map(field_to_meta).collect(),
        enable_dynamic_field: s.enable_dynamic_field,
        properties: kvs_to_meta(&s.properties),
    })
}

fn field_to_meta(f: pb::FieldSchema) -> FieldSchema {
    FieldSchema {
        field_id: f.field_id,
        name: f.name,
        is_primary_key: f.is_primary_key,
        description: f.description,
        data_type: f.data_type,
        type_params: kvs_to_meta(&f.type_params),
        index_params: kvs_to_meta(&f.index_params),
        auto_id: f.auto_id,
        state: f.state,
        element_type: f.element_type,
        is_dynamic: f.is_dynamic,
        is_partition_key: f.is_partition_key,
        nullable: f.nullable,
        default_value_base64: f
            .default_value
            .map(|v| BASE64.encode(v.encode_to_vec()))
            .unwrap_or_default(),
        is_function_output: f.is_function_output,
    }
}

fn kvs_to_meta(kvs: &[common::KeyValuePair]) -> Vec<KeyValuePair> {
    kvs.iter()
        .map(|p| KeyValuePair {
            key: p.key.clone(),
            value: p.value.clone(),
        })
        .collect()
}

fn kvs_from_meta(kvs: &[KeyValuePair]) -> Vec<common::KeyValuePair> {
    kvs.iter()
        .map(|p| common::KeyValuePair {
            key: p.key.clone(),
            value: p.value.clone(),
        })
        .collect()
}

/// An encoded `schema.CollectionSchema` from the Go tool's JSON schema, for
/// backups that do not carry the original bytes.
pub fn from_meta(s: &CollectionSchema) -> Result<Bytes> {
    let fields = s
        .fields
        .iter()
        .map(|f| {
            let default_value = if f.default_value_base64.is_empty() {
                None
            } else {
                let raw = BASE64.decode(&f.default_value_base64).map_err(|e| {
                    Error::DataLoss(format!("field {:?}: bad default_value_base64: {e}", f.name))
                })?;
                Some(pb::ValueField::decode(raw.as_slice()).map_err(|e| {
                    Error::DataLoss(format!("field {:?}: bad default value: {e}", f.name))
                })?)
            };
            Ok(pb::FieldSchema {
                field_id: f.field_id,
                name: f.name.clone(),
                is_primary_key: f.is_primary_key,
                description: f.description.clone(),
                data_type: f.data_type,
                type_params: kvs_from_meta(&f.type_params),
                index_params: kvs_from_meta(&f.index_params),
                auto_id: f.auto_id,
                element_type: f.element_type,
                default_value,
                is_dynamic: f.is_dynamic,
                is_partition_key: f.is_partition_key,
                nullable: f.nullable,
                is_function_output: f.is_function_output,
                ..Default::default()
            })
        })
        .collect::<Result<Vec<_>>>()?;
    #[allow(deprecated)]
    let schema = pb::CollectionSchema {
        name: s.name.clone(),
        description: s.description.clone(),
        auto_id: s.auto_id,
        // The dynamic `$meta` field comes back from `enable_dynamic_field`.
        fields: fields.into_iter().filter(|f| !f.is_dynamic).collect(),
        enable_dynamic_field: s.enable_dynamic_field,
        properties: kvs_from_meta(&s.properties),
        ..Default::default()
    };
    Ok(schema.encode_to_vec().into())
}

/// `encoded` with its collection name replaced, every other byte kept: a
/// protobuf reader takes the last value of a repeated scalar field.
pub fn rename(encoded: &[u8], name: &str) -> Bytes {
    let mut out = encoded.to_vec();
    // Field 1 (`name`), wire type 2 (length-delimited).
    out.push(0x0a);
    prost::encoding::encode_varint(name.len() as u64, &mut out);
    out.extend_from_slice(name.as_bytes());
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> pb::CollectionSchema {
        pb::CollectionSchema {
            name: "hello".into(),
            description: "d".into(),
            fields: vec![pb::FieldSchema {
                field_id: 100,
                name: "pk".into(),
                is_primary_key: true,
                data_type: pb::DataType::Int64 as i32,
                ..Default::default()
            }],
            enable_dynamic_field: true,
            ..Default::default()
        }
    }

    #[test]
    fn rename_keeps_everything_else() {
        let encoded = sample().encode_to_vec();
        let renamed = pb::CollectionSchema::decode(rename(&encoded, "hello_recover")).unwrap();
        assert_eq!(renamed.name, "hello_recover");
        assert_eq!(renamed.fields, sample().fields);
        assert!(renamed.enable_dynamic_field);
    }

    #[test]
    fn meta_round_trip() {
        let meta = to_meta(&sample().encode_to_vec()).unwrap();
        assert_eq!(meta.fields[0].name, "pk");
        let back = pb::CollectionSchema::decode(from_meta(&meta).unwrap()).unwrap();
        assert_eq!(back, sample());
    }
}
