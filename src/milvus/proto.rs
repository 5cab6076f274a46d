//! Generated code for our client-side subset of the Milvus proxy API.
#![allow(clippy::all, missing_docs, rustdoc::all)]

/// `milvus.proto.common`.
pub mod common {
    tonic::include_proto!("milvus.proto.common");
}
/// `milvus.proto.schema`.
pub mod schema {
    tonic::include_proto!("milvus.proto.schema");
}
/// `milvus.proto.milvus`.
pub mod milvus {
    tonic::include_proto!("milvus.proto.milvus");
}
