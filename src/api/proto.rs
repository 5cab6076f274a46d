//! Generated code for our API, `milvus.backup.v1`.
#![allow(clippy::all, missing_docs)]

tonic::include_proto!("milvus.backup.v1");

/// The encoded file descriptor set, served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("backup_v1_descriptor");
