//! How a REST handler answers: its data in the envelope, a core error's
//! envelope, or a job's end (the Go tool's messages; a failed job as its
//! error, with the job as `data`).

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::api::status::{Envelope, job_failed, rest_error};
use crate::error::{Error, Result};
use crate::jobs::{JobSnapshot, JobState, until_terminal};

/// A success envelope (`code` 0) with `msg` and `data`.
pub(super) fn ok<T: Serialize>(request_id: String, msg: &str, data: Option<T>) -> Response {
    Json(Envelope {
        request_id,
        code: 0,
        msg: msg.into(),
        data,
    })
    .into_response()
}

/// A job's snapshot and message, as the Go tool answers: at once with
/// `started` when `is_async`, else at its end with "success" or `failed`.
pub(super) async fn follow<S: JobSnapshot>(
    rx: tokio::sync::watch::Receiver<S>,
    is_async: bool,
    started: &'static str,
) -> (S, Ended) {
    if is_async {
        return (rx.borrow().clone(), Ok(started));
    }
    let last = until_terminal(rx).await;
    let ended = ended(&last);
    (last, ended)
}

/// How job `last`, which has ended, ended for the caller.
pub(super) fn ended<S: JobSnapshot>(last: &S) -> Ended {
    match last.state() {
        JobState::Succeeded => Ok("success"),
        _ => Err(Failed {
            error: last.failure(),
            message: last.failure_message(),
        }),
    }
}

/// How a job that a call started, or waited for, ended for the caller: its
/// message, or how it failed.
pub(super) type Ended = std::result::Result<&'static str, Failed>;

/// A job that failed: the error of its kind (the HTTP status and `code`),
/// and its message as the job recorded it (`msg`).
pub(super) struct Failed {
    error: Error,
    message: String,
}

/// The answer of a handler: its data, or the error's envelope.
pub(super) fn answer<T: Serialize>(request_id: String, result: Result<(T, &str)>) -> Response {
    match result {
        Ok((data, msg)) => ok(request_id, msg, Some(data)),
        Err(e) => rest_error(request_id, &e),
    }
}

/// The answer of a handler that started a job: as [`answer`], but a job
/// that failed is answered as its error, with the job as `data` (the Go
/// tool answers a failed synchronous create or restore with `code` 3 and
/// the error as `msg`).
pub(super) fn answer_job<T: Serialize>(request_id: String, result: Result<(T, Ended)>) -> Response {
    match result {
        Ok((data, Ok(msg))) => ok(request_id, msg, Some(data)),
        Ok((data, Err(f))) => job_failed(request_id, &f.error, f.message, data),
        Err(e) => rest_error(request_id, &e),
    }
}
