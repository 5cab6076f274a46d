//! milvus-backup: back up Milvus collections to object storage and restore them,
//! as a streaming gRPC service and a CLI.
//!
//! The flows ([`backup`], [`restore`]) are plain async Rust over two small
//! traits ([`milvus::MilvusApi`], [`storage::ObjectStore`]); [`engine::Engine`]
//! runs them as jobs; only [`api`] knows gRPC.

pub mod api;
pub mod backup;
pub mod cli;
pub mod config;
pub mod context;
pub mod delete;
pub mod engine;
pub mod error;
pub mod failpoint;
pub mod jobs;
pub mod meta;
pub mod metrics;
pub mod milvus;
pub mod model;
pub mod policy;
pub mod restore;
pub mod retry;
pub mod storage;
pub mod tls;
pub mod verify;

pub use error::{Error, Result};
