//! The one place where core errors become gRPC statuses.

use tonic::{Code, Status};

use crate::error::Error;

/// The gRPC code for each kind of core error.
pub fn code_of(err: &Error) -> Code {
    match err {
        Error::InvalidArgument(_) => Code::InvalidArgument,
        Error::NotFound { .. } => Code::NotFound,
        Error::AlreadyExists { .. } => Code::AlreadyExists,
        Error::FailedPrecondition(_) => Code::FailedPrecondition,
        Error::Unavailable { .. } => Code::Unavailable,
        Error::DataLoss(_) => Code::DataLoss,
        Error::Milvus { .. } => Code::Internal,
        Error::Storage { .. } => Code::Internal,
        Error::Unauthenticated(_) => Code::Unauthenticated,
        Error::Aborted(_) => Code::Aborted,
        Error::ResourceExhausted(_) => Code::ResourceExhausted,
        Error::Cancelled(_) => Code::Cancelled,
        Error::ShuttingDown => Code::Unavailable,
        Error::Internal(_) => Code::Internal,
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        crate::metrics::global().error(&err);
        Status::new(code_of(&err), err.to_string())
    }
}

/// The HTTP status and the Go tool's `ResponseCode` for each kind of core error.
pub fn rest_codes(err: &Error) -> (u16, i32) {
    // Go tool codes: 400 Parameter_Error, 404 Request_Object_Not_Found, 3 Fail.
    match err {
        Error::InvalidArgument(_) => (400, 400),
        Error::NotFound { .. } => (404, 404),
        Error::AlreadyExists { .. } => (409, 400),
        Error::FailedPrecondition(_) => (412, 3),
        Error::Unavailable { .. } => (503, 3),
        Error::DataLoss(_) => (500, 3),
        Error::Unauthenticated(_) => (401, 2),
        Error::Aborted(_) => (409, 3),
        Error::ResourceExhausted(_) => (429, 3),
        Error::Cancelled(_) => (409, 3),
        Error::ShuttingDown => (503, 3),
        Error::Milvus { .. } | Error::Storage { .. } | Error::Internal(_) => (500, 3),
    }
}
