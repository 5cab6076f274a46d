//! The request model: every value a caller hands the core, validated once,
//! by parsing. The adapters (gRPC, REST, the CLI) build these types from their
//! wire forms; their fields are private, so nothing downstream can hold an
//! unchecked one, and nothing downstream checks them again.

mod names;
mod policy;
mod repeats;
mod requests;
pub mod retention;
pub mod schedule;
mod words;

pub use names::{
    BackupName, CollectionFilter, CollectionRef, DEFAULT_DB, MAX_MILVUS_NAME_LEN, MAX_NAME_LEN,
    RESERVED_BACKUP_NAMES,
};
pub use policy::{
    DEFAULT_NAME_TEMPLATE, Policy, PolicyInput, PolicyName, PolicyUpdate, RetentionInput, Selection,
};
pub use requests::{
    BackupInput, BackupLookup, BackupRequest, Caller, JobId, MAX_NAMES_PER_REQUEST,
    MAX_REQUEST_ID_LEN, RestoreInput, RestoreRequest, TraceId,
};
pub use words::in_words;
