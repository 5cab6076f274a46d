//! The one place where core errors become answers: gRPC statuses, and the
//! REST envelope with its HTTP status and the Go tool's `code`. An error is
//! counted in the metrics here, as it is answered, except a job's failure
//! ([`Error::Recorded`]), which the job runner counted when the job ended.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tonic::{Code, Status};

use crate::error::{Error, ErrorKind};

/// The gRPC code for each kind of core error.
pub fn code_of(err: &Error) -> Code {
    match err.kind() {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::Unavailable | ErrorKind::ShuttingDown => Code::Unavailable,
        ErrorKind::DataLoss => Code::DataLoss,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::Aborted => Code::Aborted,
        ErrorKind::ResourceExhausted => Code::ResourceExhausted,
        ErrorKind::Cancelled => Code::Cancelled,
        ErrorKind::Milvus | ErrorKind::Storage | ErrorKind::Internal => Code::Internal,
    }
}

/// The HTTP status and the Go tool's `ResponseCode` for each kind of core error.
pub fn rest_codes(err: &Error) -> (u16, i32) {
    // Go tool codes: 400 Parameter_Error, 404 Request_Object_Not_Found, 3 Fail.
    match err.kind() {
        ErrorKind::InvalidArgument => (400, 400),
        ErrorKind::NotFound => (404, 404),
        ErrorKind::AlreadyExists => (409, 400),
        ErrorKind::FailedPrecondition => (412, 3),
        ErrorKind::Unavailable | ErrorKind::ShuttingDown => (503, 3),
        ErrorKind::DataLoss => (500, 3),
        ErrorKind::Unauthenticated => (401, 2),
        ErrorKind::PermissionDenied => (403, 3),
        ErrorKind::Aborted => (409, 3),
        ErrorKind::ResourceExhausted => (429, 3),
        ErrorKind::Cancelled => (409, 3),
        ErrorKind::Milvus | ErrorKind::Storage | ErrorKind::Internal => (500, 3),
    }
}

/// Every error answered passes here once.
fn answered(err: &Error) -> String {
    crate::metrics::global().error(err);
    err.to_string()
}

/// The longest gRPC status message sent, in bytes. It travels in a trailer
/// (percent-encoded), and clients refuse large ones: hyper's headers end at
/// 16 KiB, gRPC C-core's at 8 KiB. A longer message (a verification naming
/// hundreds of damaged objects) would reach the client as a protocol error
/// instead of its code.
const STATUS_MESSAGE_MAX: usize = 2048;

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        Status::new(code_of(&err), bounded(answered(&err)))
    }
}

/// `message`, cut to [`STATUS_MESSAGE_MAX`] bytes with a note saying where
/// the whole of it is.
fn bounded(message: String) -> String {
    if message.len() <= STATUS_MESSAGE_MAX {
        return message;
    }
    let mut end = STATUS_MESSAGE_MAX;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{} [cut at {end} of {} bytes: the job's record, its streamed progress and the \
         server's log hold the whole message]",
        &message[..end],
        message.len()
    )
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
/// `code`, the job's message `msg`, and the job as `data`.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_message_is_cut_on_a_character_and_says_so() {
        let short = "x".repeat(STATUS_MESSAGE_MAX);
        assert_eq!(bounded(short.clone()), short);
        // A two-byte character across the limit is left out whole.
        let long = format!(
            "{}é{}",
            "x".repeat(STATUS_MESSAGE_MAX - 1),
            "y".repeat(9000)
        );
        let cut = bounded(long.clone());
        assert!(
            cut.starts_with(&"x".repeat(STATUS_MESSAGE_MAX - 1)),
            "{cut}"
        );
        let kept = &cut[..cut.find(" [cut at").unwrap()];
        assert_eq!(kept.len(), STATUS_MESSAGE_MAX - 1, "{cut}");
        let note = format!("[cut at {} of {} bytes", STATUS_MESSAGE_MAX - 1, long.len());
        assert!(cut.contains(&note), "{cut}");
    }
}
