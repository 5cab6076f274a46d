//! The one place where core errors become answers: gRPC statuses, and the
//! REST envelope with its HTTP status and the Go tool's `code`. An error is
//! counted in the metrics here, as it is answered (a job's failure is
//! counted by the job runner instead, and answered uncounted: [`job_failed`]).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
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
        // Milvus's "no such collection" is the caller's NOT_FOUND, not our fault.
        e @ Error::Milvus { .. } if e.is_milvus_not_found() => Code::NotFound,
        Error::Milvus { .. } => Code::Internal,
        Error::Storage { .. } => Code::Internal,
        Error::Unauthenticated(_) => Code::Unauthenticated,
        Error::PermissionDenied(_) => Code::PermissionDenied,
        Error::Aborted(_) => Code::Aborted,
        Error::ResourceExhausted(_) => Code::ResourceExhausted,
        Error::Cancelled(_) => Code::Cancelled,
        Error::ShuttingDown => Code::Unavailable,
        Error::Internal(_) => Code::Internal,
    }
}

/// The HTTP status and the Go tool's `ResponseCode` for each kind of core error.
pub fn rest_codes(err: &Error) -> (u16, i32) {
    // Go tool codes: 400 Parameter_Error, 404 Request_Object_Not_Found, 3 Fail.
    match err {
        Error::InvalidArgument(_) => (400, 400),
        Error::NotFound { .. } => (404, 404),
        e @ Error::Milvus { .. } if e.is_milvus_not_found() => (404, 404),
        Error::AlreadyExists { .. } => (409, 400),
        Error::FailedPrecondition(_) => (412, 3),
        Error::Unavailable { .. } => (503, 3),
        Error::DataLoss(_) => (500, 3),
        Error::Unauthenticated(_) => (401, 2),
        Error::PermissionDenied(_) => (403, 3),
        Error::Aborted(_) => (409, 3),
        Error::ResourceExhausted(_) => (429, 3),
        Error::Cancelled(_) => (409, 3),
        Error::ShuttingDown => (503, 3),
        Error::Milvus { .. } | Error::Storage { .. } | Error::Internal(_) => (500, 3),
    }
}

/// Every error answered passes here once.
fn answered(err: &Error) -> String {
    crate::metrics::global().error(err);
    err.to_string()
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        Status::new(code_of(&err), answered(&err))
    }
}

/// Whether a request speaks gRPC (rather than REST).
pub fn is_grpc(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// A trailers-only gRPC answer carrying `status`, from an HTTP layer.
pub fn grpc_answer(status: Status) -> Response {
    let (parts, ()) = status.into_http::<()>().into_parts();
    Response::from_parts(parts, axum::body::Body::empty())
}

/// The envelope of every REST answer: `{requestId, code, msg, data}`.
#[derive(Debug, Serialize)]
pub struct Envelope<T: Serialize> {
    #[serde(rename = "requestId")]
    pub request_id: String,
    pub code: i32,
    pub msg: String,
    pub data: Option<T>,
}

/// An error envelope with `http` status and the Go tool's `code`, for the
/// answers of the REST edges that are not core errors (413, 404, 405).
pub fn refuse(http: StatusCode, code: i32, request_id: String, msg: String) -> Response {
    let body = Envelope::<()> {
        request_id,
        code,
        msg,
        data: None,
    };
    (http, Json(body)).into_response()
}

/// The REST answer of a job that failed with `err`: its HTTP status and
/// `code`, the job's message `msg`, and the job as `data`. Not counted here:
/// the job runner counted the failure.
pub fn job_failed<T: Serialize>(request_id: String, err: &Error, msg: String, data: T) -> Response {
    let (http, code) = http_and_code(err);
    let body = Envelope {
        request_id,
        code,
        msg,
        data: Some(data),
    };
    (http, Json(body)).into_response()
}

/// The REST answer of a core error.
pub fn rest_error(request_id: String, err: &Error) -> Response {
    let (http, code) = http_and_code(err);
    refuse(http, code, request_id, answered(err))
}

/// [`rest_codes`] with the HTTP status as a [`StatusCode`].
fn http_and_code(err: &Error) -> (StatusCode, i32) {
    let (http, code) = rest_codes(err);
    let http = StatusCode::from_u16(http).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (http, code)
}
