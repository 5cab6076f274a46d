//! The one error type of the core. Adapters map it to gRPC and HTTP codes in
//! `api::status`; nothing else in the crate knows those codes.

/// What went wrong, classified by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is wrong (a bad name, conflicting options).
    #[error("{0}")]
    InvalidArgument(String),
    /// A named thing does not exist.
    #[error("{kind} not found: {name}")]
    NotFound { kind: &'static str, name: String },
    /// A named thing exists and would be overwritten.
    #[error("{kind} already exists: {name}")]
    AlreadyExists { kind: &'static str, name: String },
    /// The system is not in a state that allows the request.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A dependency (Milvus, an object store) cannot be reached.
    #[error("{service} unavailable at {address}: {detail}")]
    Unavailable {
        service: &'static str,
        address: String,
        detail: String,
    },
    /// Stored data is missing or damaged.
    #[error("{0}")]
    DataLoss(String),
    /// Milvus answered, but with an error. `code` is Milvus's own (the
    /// status's `code`, else its legacy `error_code`; 0 when none was given).
    #[error("milvus {operation} failed: {reason}")]
    Milvus {
        operation: String,
        reason: String,
        code: i32,
    },
    /// An object store answered, but with an error.
    #[error("storage {operation} failed on {key}: {reason}")]
    Storage {
        operation: &'static str,
        key: String,
        reason: String,
    },
    /// A storage service refused our credentials (or they are not allowed
    /// to do what was asked). The message names the service and the account
    /// or bucket, never the secret.
    #[error("{0}")]
    PermissionDenied(String),
    /// The caller did not prove who it is.
    #[error("{0}")]
    Unauthenticated(String),
    /// Another job holds the name (a backup, or a restore target) this one needs.
    #[error("{0}")]
    Aborted(String),
    /// Too many jobs at once.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The job was cancelled on request, or interrupted.
    #[error("{0}")]
    Cancelled(String),
    /// The server is shutting down and takes no new jobs.
    #[error(
        "the server is shutting down and takes no new jobs; retry on another instance or after it restarts"
    )]
    ShuttingDown,
    /// A bug or an unexpected state of ours.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The kind of failure, as a stable snake_case name (shown with failed jobs).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidArgument(_) => "invalid_argument",
            Error::NotFound { .. } => "not_found",
            Error::AlreadyExists { .. } => "already_exists",
            Error::FailedPrecondition(_) => "failed_precondition",
            Error::Unavailable { .. } => "unavailable",
            Error::DataLoss(_) => "data_loss",
            Error::Milvus { .. } => "milvus",
            Error::Storage { .. } => "storage",
            Error::Unauthenticated(_) => "unauthenticated",
            Error::PermissionDenied(_) => "permission_denied",
            Error::Aborted(_) => "aborted",
            Error::ResourceExhausted(_) => "resource_exhausted",
            Error::Cancelled(_) => "cancelled",
            Error::ShuttingDown => "shutting_down",
            Error::Internal(_) => "internal",
        }
    }

    /// The error of a failed job from its recorded [`Error::kind`] and
    /// message (so that a CLI exit code tells the kind apart).
    pub fn of_kind(kind: &str, msg: String) -> Self {
        match kind {
            "invalid_argument" => Error::InvalidArgument(msg),
            "failed_precondition" => Error::FailedPrecondition(msg),
            "data_loss" => Error::DataLoss(msg),
            "aborted" => Error::Aborted(msg),
            "resource_exhausted" => Error::ResourceExhausted(msg),
            "cancelled" => Error::Cancelled(msg),
            "unauthenticated" => Error::Unauthenticated(msg),
            "permission_denied" => Error::PermissionDenied(msg),
            _ => Error::Internal(msg),
        }
    }

    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }

    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(kind: &'static str, name: impl Into<String>) -> Self {
        Error::NotFound {
            kind,
            name: name.into(),
        }
    }

    /// Shorthand for [`Error::AlreadyExists`].
    pub fn already_exists(kind: &'static str, name: impl Into<String>) -> Self {
        Error::AlreadyExists {
            kind,
            name: name.into(),
        }
    }

    /// Shorthand for [`Error::Milvus`] without a code of Milvus's.
    pub fn milvus(operation: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::milvus_code(operation, reason, 0)
    }

    /// Shorthand for [`Error::Milvus`] with Milvus's own code.
    pub fn milvus_code(operation: impl Into<String>, reason: impl Into<String>, code: i32) -> Self {
        Error::Milvus {
            operation: operation.into(),
            reason: reason.into(),
            code,
        }
    }

    /// Milvus said that what was named does not exist: its codes for a
    /// missing collection, partition, index or database (the legacy
    /// `CollectionNotExists`, `IndexNotExist`, `CollectionNameNotFound`, and
    /// 2.3's 100, 200, 700, 800), or a reason saying "not found".
    pub fn is_milvus_not_found(&self) -> bool {
        const NOT_FOUND: [i32; 7] = [4, 25, 28, 100, 200, 700, 800];
        match self {
            Error::Milvus { code, reason, .. } => {
                NOT_FOUND.contains(code) || reason.contains("not found")
            }
            _ => false,
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Internal(format!("json: {e}"))
    }
}
