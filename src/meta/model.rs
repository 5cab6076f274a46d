//! The backup meta as JSON, with the Go tool's keys (the proto field names of its
//! `backup.proto`): enums as integers, 64-bit numbers as numbers, bytes as base64.
//! Unknown keys are ignored on read, so newer Go-tool backups still load.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `BackupTaskStateCode::BACKUP_SUCCESS`.
pub const BACKUP_SUCCESS: i32 = 2;

/// The root of a backup (`full_meta.json`; `backup_meta.json` without collections).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BackupInfo {
    pub id: String,
    pub state_code: i32,
    #[serde(rename = "errorMessage", skip_serializing_if = "String::is_empty")]
    pub error_message: String,
    /// Unix milliseconds.
    pub start_time: i64,
    /// Unix milliseconds.
    pub end_time: i64,
    pub progress: i32,
    pub name: String,
    /// Physical time of the backup, unix milliseconds.
    pub backup_timestamp: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub collection_backups: Vec<CollectionBackupInfo>,
    pub size: i64,
    pub milvus_version: String,
    /// Ours (the Go tool ignores it): set on an incremental backup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incremental: Option<IncrementalInfo>,
}

/// What an incremental backup reused of earlier ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IncrementalInfo {
    /// The backups whose folders hold objects this one references.
    pub based_on: Vec<String>,
    pub reused_files: u64,
    pub reused_bytes: u64,
}

/// One collection of a backup.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CollectionBackupInfo {
    pub id: String,
    pub state_code: i32,
    #[serde(rename = "errorMessage", skip_serializing_if = "String::is_empty")]
    pub error_message: String,
    /// Unix seconds.
    pub start_time: i64,
    /// Unix seconds.
    pub end_time: i64,
    pub progress: i32,
    pub collection_id: i64,
    pub db_name: String,
    pub collection_name: String,
    pub schema: CollectionSchema,
    pub shards_num: i32,
    pub consistency_level: i32,
    pub partition_backups: Vec<PartitionBackupInfo>,
    /// Hybrid timestamp of the flush: the data in the backup is the data before it.
    pub backup_timestamp: u64,
    pub size: i64,
    pub has_index: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub index_infos: Vec<IndexInfo>,
    /// `NotExist`, `NotLoad`, `Loading` or `Loaded`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub load_state: String,
    pub backup_physical_timestamp: u64,
    /// Collection-level L0 delete segments (Milvus 2.4+).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub l0_segments: Vec<SegmentBackupInfo>,
    /// Collection properties (the Go tool added this key later).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<KeyValuePair>,
    /// Ours: the encoded `schema.CollectionSchema` exactly as DescribeCollection
    /// returned it, base64. Restores prefer it, so fields we do not model survive.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub schema_proto_base64: String,
}

impl CollectionBackupInfo {
    /// The binlog files (insert and delta) the meta lists, L0 segments included.
    pub fn binlog_count(&self) -> usize {
        self.partition_backups
            .iter()
            .flat_map(|p| &p.segment_backups)
            .chain(&self.l0_segments)
            .flat_map(|s| s.binlogs.iter().chain(&s.deltalogs))
            .map(|f| f.binlogs.len())
            .sum()
    }
}

/// One partition of a collection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PartitionBackupInfo {
    pub partition_id: i64,
    pub partition_name: String,
    pub collection_id: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub segment_backups: Vec<SegmentBackupInfo>,
    pub size: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub load_state: String,
}

/// One segment and its binlogs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SegmentBackupInfo {
    pub segment_id: i64,
    pub collection_id: i64,
    pub partition_id: i64,
    pub num_of_rows: i64,
    pub binlogs: Vec<FieldBinlog>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub statslogs: Vec<FieldBinlog>,
    pub deltalogs: Vec<FieldBinlog>,
    pub size: i64,
    pub group_id: i64,
    pub backuped: bool,
    pub is_l0: bool,
    /// Milvus 2.6+ segment storage format; 0 before.
    #[serde(skip_serializing_if = "is_zero")]
    pub storage_version: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// The binlogs of one field of a segment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FieldBinlog {
    #[serde(rename = "fieldID")]
    pub field_id: i64,
    pub binlogs: Vec<Binlog>,
}

/// One binlog object. `log_path` is the key in Milvus's bucket at backup time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Binlog {
    pub entries_num: i64,
    pub timestamp_from: u64,
    pub timestamp_to: u64,
    pub log_path: String,
    pub log_size: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub log_id: i64,
}

/// One index of a collection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IndexInfo {
    pub field_name: String,
    pub index_name: String,
    pub index_type: String,
    pub params: BTreeMap<String, String>,
}

/// A key and a value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyValuePair {
    pub key: String,
    pub value: String,
}

/// A collection schema in the Go tool's shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CollectionSchema {
    pub name: String,
    pub description: String,
    #[serde(rename = "autoID")]
    pub auto_id: bool,
    pub fields: Vec<FieldSchema>,
    pub enable_dynamic_field: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<KeyValuePair>,
}

/// A field schema in the Go tool's shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FieldSchema {
    #[serde(rename = "fieldID")]
    pub field_id: i64,
    pub name: String,
    pub is_primary_key: bool,
    pub description: String,
    pub data_type: i32,
    pub type_params: Vec<KeyValuePair>,
    pub index_params: Vec<KeyValuePair>,
    #[serde(rename = "autoID")]
    pub auto_id: bool,
    pub state: i32,
    pub element_type: i32,
    pub is_dynamic: bool,
    pub is_partition_key: bool,
    pub nullable: bool,
    /// The encoded `schema.ValueField` default, base64 (the Go tool's later key).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub default_value_base64: String,
    pub is_function_output: bool,
}

/// `{"infos": [...]}`, the shape of the per-level meta files.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LevelInfos<T> {
    pub infos: Vec<T>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uses_go_tool_keys() {
        let seg = SegmentBackupInfo {
            segment_id: 7,
            binlogs: vec![FieldBinlog {
                field_id: 100,
                binlogs: vec![Binlog {
                    log_path: "files/insert_log/1/2/7/100/9".into(),
                    log_size: 42,
                    ..Default::default()
                }],
            }],
            ..Default::default()
        };
        let json = serde_json::to_value(&seg).unwrap();
        assert_eq!(json["binlogs"][0]["fieldID"], 100);
        assert_eq!(json["binlogs"][0]["binlogs"][0]["log_size"], 42);
        assert!(json.get("num_of_rows").is_some());
        let back: SegmentBackupInfo = serde_json::from_value(json).unwrap();
        assert_eq!(back, seg);
    }

    #[test]
    fn ignores_unknown_keys() {
        let info: BackupInfo =
            serde_json::from_str(r#"{"name":"b","rbac_meta":{"users":[]},"state_code":2}"#)
                .unwrap();
        assert_eq!((info.name.as_str(), info.state_code), ("b", 2));
    }
}
