//! Backup policies over REST, under `/api/v1/policies`, in the same envelope
//! as the Go tool's routes.

use axum::Router;
use axum::extract::Path;
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Body, Call, NoBody, NoQuery, Params, Rest};
use crate::error::{Error, Result};
use crate::model::{Policy, PolicyInput, PolicyName, PolicyUpdate};

/// The policy routes.
pub(super) fn routes() -> Router<Rest> {
    Router::new()
        .route("/api/v1/policies", post(create).get(list))
        .route(
            "/api/v1/policies/{name}",
            get(get_one).put(update).delete(remove),
        )
        .route("/api/v1/policies/{name}/run", post(run_now))
        .route("/api/v1/policies/{name}/preview", get(preview))
}

/// One retention decision, as REST shows it.
#[derive(Serialize)]
struct DecisionView {
    backup_name: String,
    time: DateTime<Utc>,
    keep: bool,
    reason: String,
}

async fn create(call: Call, _: Params<NoQuery>, Body(input): Body<PolicyInput>) -> Response {
    call.answer(async {
        let status = call
            .rest
            .engine
            .create_policy(Policy::parse(input)?)
            .await?;
        Ok((status, "success"))
    })
    .await
}

async fn list(call: Call, _: Params<NoQuery>, _: NoBody) -> Response {
    call.answer(async { Ok((call.rest.engine.list_policies().await?, "success")) })
        .await
}

async fn get_one(call: Call, _: Params<NoQuery>, Path(name): Path<String>, _: NoBody) -> Response {
    call.answer(async {
        let name = PolicyName::parse(&name)?;
        Ok((call.rest.engine.get_policy(&name).await?, "success"))
    })
    .await
}

/// The path names the policy; a body naming another one is refused.
async fn update(
    call: Call,
    _: Params<NoQuery>,
    Path(name): Path<String>,
    Body(mut input): Body<PolicyInput>,
) -> Response {
    call.answer(async {
        if input.name.is_empty() {
            input.name = name.clone();
        } else if input.name != name {
            return Err(Error::invalid(format!(
                "the body names policy {:?} but the path names {name:?}",
                input.name
            )));
        }
        let status = call
            .rest
            .engine
            .update_policy(PolicyUpdate::parse(input)?)
            .await?;
        Ok((status, "success"))
    })
    .await
}

async fn remove(call: Call, _: Params<NoQuery>, Path(name): Path<String>, _: NoBody) -> Response {
    call.answer(async {
        call.rest
            .engine
            .delete_policy(&PolicyName::parse(&name)?)
            .await?;
        Ok(((), "success"))
    })
    .await
}

async fn run_now(call: Call, _: Params<NoQuery>, Path(name): Path<String>, _: NoBody) -> Response {
    call.answer(async {
        let run = call
            .rest
            .engine
            .run_policy_now(&PolicyName::parse(&name)?)
            .await?;
        Ok((run, "started"))
    })
    .await
}

async fn preview(call: Call, _: Params<NoQuery>, Path(name): Path<String>, _: NoBody) -> Response {
    call.answer(async {
        let name = PolicyName::parse(&name)?;
        let decisions: Vec<DecisionView> = call
            .rest
            .engine
            .preview_retention(&name)
            .await?
            .into_iter()
            .map(|d| DecisionView {
                backup_name: d.name,
                time: d.time,
                keep: d.keep,
                reason: d.reason,
            })
            .collect::<Vec<_>>();
        Result::Ok((decisions, "success"))
    })
    .await
}
