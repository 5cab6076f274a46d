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
    /// Milvus answered, but with an error. `code` is the status's `code`
    /// (2.3's numbering), `legacy_code` its `error_code` (the older one,
    /// which numbers other things alike: 4 is a missing collection there,
    /// a request limit in 2.3's); 0 when not given.
    #[error("milvus {operation} failed: {reason}")]
    Milvus {
        operation: String,
        reason: String,
        code: i32,
        #[doc(hidden)]
        legacy_code: i32,
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
    /// The error a job ended with, as its record keeps it: its kind and its
    /// message as they were. What a failed job is answered with; the job's
    /// runner counted it already, so it is never counted again.
    #[error("{message}")]
    Recorded { kind: ErrorKind, message: String },
}

/// What kind of error it is: what the caller can do about it. The gRPC and
/// HTTP codes and the CLI's exit codes follow from it alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    Unavailable,
    DataLoss,
    Milvus,
    Storage,
    Unauthenticated,
    PermissionDenied,
    Aborted,
    ResourceExhausted,
    Cancelled,
    ShuttingDown,
    Internal,
}

impl ErrorKind {
    const ALL: [ErrorKind; 15] = [
        ErrorKind::InvalidArgument,
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::FailedPrecondition,
        ErrorKind::Unavailable,
        ErrorKind::DataLoss,
        ErrorKind::Milvus,
        ErrorKind::Storage,
        ErrorKind::Unauthenticated,
        ErrorKind::PermissionDenied,
        ErrorKind::Aborted,
        ErrorKind::ResourceExhausted,
        ErrorKind::Cancelled,
        ErrorKind::ShuttingDown,
        ErrorKind::Internal,
    ];

    /// Its stable snake_case name, as failed jobs show it (`error_kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::FailedPrecondition => "failed_precondition",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::DataLoss => "data_loss",
            ErrorKind::Milvus => "milvus",
            ErrorKind::Storage => "storage",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::Aborted => "aborted",
            ErrorKind::ResourceExhausted => "resource_exhausted",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::ShuttingDown => "shutting_down",
            ErrorKind::Internal => "internal",
        }
    }

    /// The kind named `name` ([`ErrorKind::as_str`]); an unknown or empty
    /// name (a record of an older version) is `Internal`.
    pub fn named(name: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == name)
            .unwrap_or(ErrorKind::Internal)
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The same error, its message passed through `f` where it names the
    /// request's fields (invalid argument, failed precondition): an adapter
    /// says them in its callers' words.
    pub fn reworded(self, f: impl Fn(&str) -> String) -> Self {
        match self {
            Error::InvalidArgument(m) => Error::InvalidArgument(f(&m)),
            Error::FailedPrecondition(m) => Error::FailedPrecondition(f(&m)),
            other => other,
        }
    }

    /// Its kind. Milvus's "no such collection" is the caller's `NotFound`.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::FailedPrecondition(_) => ErrorKind::FailedPrecondition,
            Error::Unavailable { .. } => ErrorKind::Unavailable,
            Error::DataLoss(_) => ErrorKind::DataLoss,
            e @ Error::Milvus { .. } if e.is_milvus_not_found() => ErrorKind::NotFound,
            Error::Milvus { .. } => ErrorKind::Milvus,
            Error::Storage { .. } => ErrorKind::Storage,
            Error::Unauthenticated(_) => ErrorKind::Unauthenticated,
            Error::PermissionDenied(_) => ErrorKind::PermissionDenied,
            Error::Aborted(_) => ErrorKind::Aborted,
            Error::ResourceExhausted(_) => ErrorKind::ResourceExhausted,
            Error::Cancelled(_) => ErrorKind::Cancelled,
            Error::ShuttingDown => ErrorKind::ShuttingDown,
            Error::Internal(_) => ErrorKind::Internal,
            Error::Recorded { kind, .. } => *kind,
        }
    }

    /// The error a failed job recorded: its kind (by name, see
    /// [`ErrorKind::as_str`]) and its message.
    pub fn recorded(kind: &str, message: String) -> Self {
        Error::Recorded {
            kind: ErrorKind::named(kind),
            message,
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

    /// The same error, its message led by `what` (the step it stopped):
    /// its kind, and so its code and how it is counted, stay.
    pub fn context(self, what: &str) -> Self {
        let led = |m: String| format!("{what}: {m}");
        match self {
            Error::InvalidArgument(m) => Error::InvalidArgument(led(m)),
            Error::FailedPrecondition(m) => Error::FailedPrecondition(led(m)),
            Error::DataLoss(m) => Error::DataLoss(led(m)),
            Error::PermissionDenied(m) => Error::PermissionDenied(led(m)),
            Error::Unauthenticated(m) => Error::Unauthenticated(led(m)),
            Error::Aborted(m) => Error::Aborted(led(m)),
            Error::ResourceExhausted(m) => Error::ResourceExhausted(led(m)),
            Error::Cancelled(m) => Error::Cancelled(led(m)),
            Error::Internal(m) => Error::Internal(led(m)),
            Error::Unavailable {
                service,
                address,
                detail,
            } => Error::Unavailable {
                service,
                address,
                detail: led(detail),
            },
            Error::Milvus {
                operation,
                reason,
                code,
                legacy_code,
            } => Error::Milvus {
                operation,
                reason: led(reason),
                code,
                legacy_code,
            },
            Error::Storage {
                operation,
                key,
                reason,
            } => Error::Storage {
                operation,
                key,
                reason: led(reason),
            },
            e @ (Error::NotFound { .. }
            | Error::AlreadyExists { .. }
            | Error::ShuttingDown
            | Error::Recorded { .. }) => Error::Recorded {
                kind: e.kind(),
                message: led(e.to_string()),
            },
        }
    }

    /// Shorthand for [`Error::Milvus`] without a code of Milvus's.
    pub fn milvus(operation: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::milvus_codes(operation, reason, 0, 0)
    }

    /// Shorthand for [`Error::Milvus`] with a status's `code` and its
    /// legacy `error_code`.
    pub fn milvus_codes(
        operation: impl Into<String>,
        reason: impl Into<String>,
        code: i32,
        legacy_code: i32,
    ) -> Self {
        Error::Milvus {
            operation: operation.into(),
            reason: reason.into(),
            code,
            legacy_code,
        }
    }

    /// Milvus said that what was named does not exist: its codes for a
    /// missing collection, partition, index or database (2.3's 100, 200,
    /// 202, 700, 800, or, from a Milvus that gives no such code, the legacy
    /// `CollectionNotExists`, `IndexNotExist`, `CollectionNameNotFound`), or
    /// a reason saying that one of those was not found (or does not exist).
    /// Another thing not found ("node not found" while a node restarts) is
    /// not the named thing missing.
    pub fn is_milvus_not_found(&self) -> bool {
        const NOT_FOUND: [i32; 5] = [100, 200, 202, 700, 800];
        const LEGACY_NOT_FOUND: [i32; 3] = [4, 25, 28];
        const NAMED: [&str; 4] = ["collection", "partition", "index", "database"];
        match self {
            Error::Milvus {
                code,
                legacy_code,
                reason,
                ..
            } => {
                let reason = reason.to_ascii_lowercase();
                let missing = ["not found", "not exist", "can't find", "cannot find"]
                    .iter()
                    .any(|m| reason.contains(m));
                let coded = match *code {
                    0 => LEGACY_NOT_FOUND.contains(legacy_code),
                    code => NOT_FOUND.contains(&code),
                };
                coded || (missing && NAMED.iter().any(|n| reason.contains(n)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_missing_collection_partition_index_or_database_is_not_found() {
        let said =
            |reason: &str, code| Error::milvus_codes("Op", reason, code, 0).is_milvus_not_found();
        assert!(said("anything", 100));
        // The legacy CollectionNotExists, from a Milvus without 2.3's codes.
        assert!(Error::milvus_codes("Op", "anything", 0, 4).is_milvus_not_found());
        // 2.3's 4 is a request limit, whatever the legacy code says.
        assert!(!Error::milvus_codes("Op", "limit", 4, 1).is_milvus_not_found());
        assert!(!Error::milvus_codes("Op", "limit", 4, 0).is_milvus_not_found());
        assert!(said("collection not found[collection=c]", 65535));
        assert!(said("can't find collection: c", 1));
        assert!(said("database not exist: d", 0));
        assert!(!said("node not found", 65535));
        assert!(!said("channel not found: by-dev-rootcoord-dml_0", 1));
        assert!(!Error::Internal("collection not found".into()).is_milvus_not_found());
    }

    /// An error led by the step it stopped keeps its kind (and so its
    /// code and its count); before, a checkpoint's storage error became
    /// INTERNAL, uncounted.
    #[test]
    fn an_error_in_context_keeps_its_kind() {
        let storage = Error::Storage {
            operation: "PutObject",
            key: "k".into(),
            reason: "503".into(),
        }
        .context("cannot record restore job r");
        assert_eq!(storage.kind(), ErrorKind::Storage);
        assert_eq!(
            storage.to_string(),
            "storage PutObject failed on k: cannot record restore job r: 503"
        );
        let missing = Error::not_found("backup", "b").context("step");
        assert_eq!(missing.kind(), ErrorKind::NotFound);
        assert_eq!(missing.to_string(), "step: backup not found: b");
        let late = Error::Aborted("leases expired".into()).context("step");
        assert_eq!(late.kind(), ErrorKind::Aborted);
    }

    #[test]
    fn a_recorded_error_keeps_its_kind_and_message() {
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::named(kind.as_str()), kind);
        }
        assert_eq!(ErrorKind::named(""), ErrorKind::Internal);
        let cases = [
            Error::not_found("backup", "b1"),
            Error::Unavailable {
                service: "object store",
                address: "http://127.0.0.1:9000".into(),
                detail: "reset".into(),
            },
            Error::Milvus {
                operation: "DescribeCollection".into(),
                reason: "collection not found".into(),
                code: 100,
                legacy_code: 1,
            },
            Error::Milvus {
                operation: "Flush".into(),
                reason: "boom".into(),
                code: 1,
                legacy_code: 1,
            },
            Error::ShuttingDown,
            Error::DataLoss("binlog x is damaged".into()),
        ];
        for err in cases {
            let again = Error::recorded(err.kind().as_str(), err.to_string());
            assert_eq!(again.kind(), err.kind(), "{err}");
            assert_eq!(again.to_string(), err.to_string());
        }
    }
}
