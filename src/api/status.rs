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
        Error::Internal(_) => Code::Internal,
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        Status::new(code_of(&err), err.to_string())
    }
}
