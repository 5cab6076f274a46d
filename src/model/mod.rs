//! The request model: every value a caller hands the core, validated once,
//! by parsing. The adapters (gRPC, REST, the CLI) build these types from their
//! wire forms; their fields are private, so nothing downstream can hold an
//! unchecked one, and nothing downstream checks them again.

mod names;
mod requests;

pub use names::{BackupName, CollectionRef, DEFAULT_DB, MAX_NAME_LEN, RESERVED_BACKUP_NAMES};
pub use requests::{
    BackupInput, BackupLookup, BackupRequest, Caller, MAX_NAMES_PER_REQUEST, RestoreInput,
    RestoreRequest, TraceId,
};
