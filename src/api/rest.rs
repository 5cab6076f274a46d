//! The Go tool's REST API under `/api/v1`, on the gRPC port: same routes, same
//! `{requestId, code, msg, data}` envelope, same field names and state codes.
//! Requests go through the same validation as gRPC (`convert`).
//!
//! The edges answer with the envelope too: a body over `http.maxRestBodyBytes`
//! is HTTP 413 (code 400, Parameter_Error), an unknown path HTTP 404 (code
//! 404, Request_Object_Not_Found), a known path with the wrong method HTTP 405
//! (code 1, Not_Support, with an `Allow` header).

mod answer;
mod docs;
mod input;
mod policies;
mod unsupported;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::{delete, get, post};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::go_model::{go_backup_of_job, go_restore, go_state};
use answer::{answer, answer_job, ended, follow, ok};
use input::{Body, DbCollections, KnownFields, NoBody, NoQuery, Params, limit_body, unique_keys};

use super::status::{grpc_answer, is_grpc, refuse, rest_error};
use crate::engine::{BackupInfo, Engine};
use crate::error::{Error, ErrorKind, Result};
use crate::jobs::{BackupSnapshot, JobState};
use crate::model::{
    BackupInput, BackupLookup, BackupName, BackupRequest, Caller, CollectionFilter, JobId,
    RestoreInput, RestoreRequest, in_words,
};

/// The Go tool's `ResponseCode`s used at the edges.
const CODE_NOT_SUPPORT: i32 = 1;
const CODE_PARAMETER_ERROR: i32 = 400;
const CODE_NOT_FOUND: i32 = 404;

/// HTTP 413 for a body over `max` bytes.
fn too_large(request_id: String, max: usize) -> Response {
    refuse(
        StatusCode::PAYLOAD_TOO_LARGE,
        CODE_PARAMETER_ERROR,
        request_id,
        format!("request body is larger than {max} bytes (http.maxRestBodyBytes)"),
    )
}

/// The request id: the `request_id` header, the body's `requestId`, or a new one.
fn request_id(headers: &HeaderMap, body: Option<&str>) -> String {
    headers
        .get("request_id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .or_else(|| body.filter(|b| !b.is_empty()).map(str::to_string))
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The caller's W3C `traceparent` header (empty when none).
fn traceparent(headers: &HeaderMap) -> String {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[derive(Clone)]
struct Rest {
    engine: Arc<Engine>,
    simple: bool,
    max_body: usize,
}

/// What every handler starts from: the server's state and the caller's headers.
struct Call {
    rest: Rest,
    headers: HeaderMap,
}

impl FromRequestParts<Rest> for Call {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        rest: &Rest,
    ) -> std::result::Result<Self, Infallible> {
        Ok(Self {
            rest: rest.clone(),
            headers: parts.headers.clone(),
        })
    }
}

impl Call {
    /// The request id: the `request_id` header, the body's `requestId`, or a new one.
    fn request_id(&self, body: Option<&str>) -> String {
        request_id(&self.headers, body)
    }

    /// The caller of a job this request starts, as `id` names it.
    fn caller(&self, id: &str) -> Result<Caller> {
        Caller::parse(id, &traceparent(&self.headers))
    }

    /// Answers with `work`'s data and message, or with its error's envelope,
    /// under the request id of the headers.
    async fn answer<T: Serialize>(
        &self,
        work: impl Future<Output = Result<(T, &'static str)>>,
    ) -> Response {
        answer(self.request_id(None), work.await)
    }
}

/// A known path with a method it does not serve: HTTP 405 with the envelope
/// (axum adds the `Allow` header).
async fn method_not_allowed(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    refuse(
        StatusCode::METHOD_NOT_ALLOWED,
        CODE_NOT_SUPPORT,
        request_id(&headers, None),
        format!(
            "method {method} is not allowed on {}; the Allow header lists the methods it takes",
            uri.path()
        ),
    )
}

/// The server's fallback: an unknown path is HTTP 404 with the envelope, but
/// a gRPC call of an unknown method stays a gRPC UNIMPLEMENTED.
pub async fn not_found(req: Request) -> Response {
    if is_grpc(req.headers()) {
        return grpc_answer(tonic::Status::unimplemented(format!(
            "unknown gRPC method {}",
            req.uri().path()
        )));
    }
    refuse(
        StatusCode::NOT_FOUND,
        CODE_NOT_FOUND,
        request_id(req.headers(), None),
        format!(
            "no such endpoint: {} {}; the REST API is under /api/v1 (see /api/v1/docs/index.html)",
            req.method(),
            req.uri().path()
        ),
    )
}

/// The REST routes. `simple_response` (`http.simpleResponse`) leaves the
/// partitions and segments out of backups, as the Go tool does; bodies over
/// `max_body` bytes answer 413.
pub fn router(engine: Arc<Engine>, simple_response: bool, max_body: usize) -> Router {
    Router::new()
        .route("/api/v1/create", post(create))
        .route("/api/v1/list", get(list))
        .route("/api/v1/get_backup", get(get_backup))
        .route("/api/v1/delete", delete(delete_backup))
        .route("/api/v1/get_delete", get(get_delete))
        .route("/api/v1/restore", post(restore))
        .route("/api/v1/get_restore", get(get_restore))
        .route("/api/v1/check", get(check))
        .route("/api/v1/verify", get(verify))
        // The Go tool's liveness answer, plain text.
        .route(
            "/api/v1/hello",
            get(|| async { "Hello, This is backup service" }),
        )
        .merge(policies::routes())
        .route(
            "/metrics",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    crate::metrics::global().render(),
                )
            }),
        )
        .route(
            "/api/v1/docs",
            get(|| async { axum::response::Redirect::permanent("/api/v1/docs/index.html") }),
        )
        .route("/api/v1/docs/{file}", get(docs::file))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(max_body, limit_body))
        .with_state(Rest {
            engine,
            simple: simple_response,
            max_body,
        })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CreateBody {
    #[serde(rename = "requestId")]
    request_id: String,
    backup_name: String,
    collection_names: Vec<String>,
    db_collections: DbCollections,
    #[serde(rename = "async")]
    is_async: bool,
    meta_only: bool,
    /// Ours: copy only what earlier backups do not hold (unset: `backup.incremental`).
    incremental: Option<bool>,
    /// Anything else: refused (`unsupported`).
    #[serde(flatten)]
    extra: HashMap<String, serde_json::Value>,
}

impl KnownFields for CreateBody {
    const NAMES: &'static [&'static str] = &[
        "requestId",
        "backup_name",
        "collection_names",
        "db_collections",
        "async",
        "meta_only",
        "incremental",
    ];
}

/// The Go tool's answers to a job started with `async`.
/// The request model's field names in the words of the REST bodies.
const CREATE_WORDS: &[(&str, &str)] = &[("database_names", "db_collections")];
const RESTORE_WORDS: &[(&str, &str)] = &[
    ("drop_existing_collections", "dropExistCollection"),
    ("skip_create_collection", "skipCreateCollection"),
    ("restore_index", "restoreIndex"),
    ("meta_only", "metaOnly"),
    ("database_names", "db_collections"),
];

const BACKUP_STARTED: &str = "create backup is executing asynchronously";
const RESTORE_STARTED: &str = "restore backup is executing asynchronously";

async fn create(call: Call, _: Params<NoQuery>, Body(b): Body<CreateBody>) -> Response {
    let id = call.request_id(Some(&b.request_id));
    let result = async {
        unsupported::refuse_unknown(&b.extra, CreateBody::NAMES)?;
        let (colls, dbs) = b.db_collections.split()?;
        // The Go tool names a backup whose request names none.
        let generated_name = b.backup_name.is_empty();
        let req = BackupRequest::parse(BackupInput {
            name: match generated_name {
                true => BackupName::generated(chrono::Utc::now()),
                false => b.backup_name.clone(),
            },
            generated_name,
            collections: b.collection_names.iter().cloned().chain(colls).collect(),
            databases: dbs,
            meta_only: b.meta_only,
            incremental: b.incremental,
            caller: call.caller(&id)?,
        })?;
        let rx = call.rest.engine.create_backup(req).await?;
        let (last, ended) = follow(rx, b.is_async, BACKUP_STARTED).await;
        Ok((call.rest.backup_data(&last).await?, ended))
    }
    .await
    .map_err(|e: Error| e.reworded(|m| in_words(m, CREATE_WORDS)));
    answer_job(id, result)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ListQuery {
    collection_name: String,
}

impl KnownFields for ListQuery {
    const NAMES: &'static [&'static str] = &["collection_name"];
}

async fn list(call: Call, Params(q): Params<ListQuery>, _: NoBody) -> Response {
    call.answer(async {
        let filter = CollectionFilter::parse(&q.collection_name)?;
        let snaps = call.rest.engine.list_backups(filter.as_ref()).await?;
        // The Go tool's answer carries each backup's meta: read 32 at once, in order.
        let reads: Vec<_> = snaps.iter().map(|s| call.rest.listed_data(s)).collect();
        let out: Vec<_> = futures::stream::iter(reads)
            .buffered(32)
            .try_collect()
            .await?;
        Ok((out, "success"))
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct GetQuery {
    backup_name: String,
    backup_id: String,
}

impl KnownFields for GetQuery {
    const NAMES: &'static [&'static str] = &["backup_name", "backup_id"];
}

async fn get_backup(call: Call, Params(q): Params<GetQuery>, _: NoBody) -> Response {
    call.answer(async {
        let lookup = BackupLookup::parse(&q.backup_name, &q.backup_id)?;
        let snap = call.rest.engine.get_backup(&lookup).await?;
        Ok((call.rest.backup_data(&snap).await?, "success"))
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct BackupNameQuery {
    backup_name: String,
}

impl KnownFields for BackupNameQuery {
    const NAMES: &'static [&'static str] = &["backup_name"];
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DeleteQuery {
    backup_name: String,
    /// Ours: return at once with the delete job's id (see `get_delete`).
    #[serde(rename = "async")]
    is_async: bool,
}

impl KnownFields for DeleteQuery {
    const NAMES: &'static [&'static str] = &["backup_name", "async"];
}

async fn delete_backup(call: Call, Params(q): Params<DeleteQuery>, _: NoBody) -> Response {
    let result = async {
        let name = BackupName::parse(&q.backup_name)?;
        let caller = call.caller("")?;
        let engine = &call.rest.engine;
        if q.is_async {
            let job = engine.delete_backup(&name, &caller).await?.borrow().clone();
            return Ok((
                Some(delete_data(&job)),
                Ok("delete backup is executing asynchronously"),
            ));
        }
        let last = engine.delete_backup_until_ended(&name, &caller).await?;
        // The Go tool answers a deleted backup with no data.
        Ok(match ended(&last) {
            Ok(msg) => (None, Ok(msg)),
            Err(f) => (Some(delete_data(&last)), Err(f)),
        })
    }
    .await;
    answer_job(call.request_id(None), result)
}

/// A delete job as REST shows it.
fn delete_data(d: &crate::jobs::DeleteSnapshot) -> serde_json::Value {
    serde_json::json!({
        "id": d.id,
        "backup_name": d.backup_name,
        "state": format!("{:?}", d.state),
        "error_message": d.error.clone().unwrap_or_default(),
        "objects_deleted": d.objects_deleted,
        "objects_total": d.objects_total,
        "objects_kept": d.objects_kept,
    })
}

/// Ours: a delete job, by the id `delete?async=true` answered with.
async fn get_delete(call: Call, Params(q): Params<RestoreQuery>, _: NoBody) -> Response {
    call.answer(async {
        let rx = call
            .rest
            .engine
            .watch_delete(&job_id(&q, "delete")?)
            .await?;
        Ok((delete_data(&rx.borrow()), "success"))
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RestoreBody {
    #[serde(rename = "requestId")]
    request_id: String,
    backup_name: String,
    collection_names: Vec<String>,
    collection_suffix: String,
    #[serde(deserialize_with = "unique_keys")]
    collection_renames: HashMap<String, String>,
    db_collections: DbCollections,
    #[serde(rename = "async")]
    is_async: bool,
    #[serde(rename = "metaOnly")]
    meta_only: bool,
    #[serde(rename = "restoreIndex")]
    restore_index: bool,
    #[serde(rename = "useAutoIndex")]
    use_auto_index: bool,
    #[serde(rename = "dropExistCollection")]
    drop_exist_collection: bool,
    #[serde(rename = "dropExistIndex")]
    drop_exist_index: bool,
    #[serde(rename = "skipCreateCollection")]
    skip_create_collection: bool,
    /// Ours: load the restored collections.
    load: bool,
    /// Anything else: refused (`unsupported`).
    #[serde(flatten)]
    extra: HashMap<String, serde_json::Value>,
}

impl KnownFields for RestoreBody {
    const NAMES: &'static [&'static str] = &[
        "requestId",
        "backup_name",
        "collection_names",
        "collection_suffix",
        "collection_renames",
        "db_collections",
        "async",
        "metaOnly",
        "restoreIndex",
        "useAutoIndex",
        "dropExistCollection",
        "dropExistIndex",
        "skipCreateCollection",
        "load",
    ];
}

async fn restore(call: Call, _: Params<NoQuery>, Body(b): Body<RestoreBody>) -> Response {
    let id = call.request_id(Some(&b.request_id));
    let result = async {
        unsupported::refuse_unknown(&b.extra, RestoreBody::NAMES)?;
        if b.use_auto_index {
            return Err(Error::invalid(
                "useAutoIndex is not supported; restore the backed-up indexes with restoreIndex",
            ));
        }
        if b.drop_exist_index {
            return Err(Error::invalid(
                "dropExistIndex is not supported; use dropExistCollection",
            ));
        }
        let (colls, databases) = b.db_collections.split()?;
        let req = RestoreRequest::parse(RestoreInput {
            backup_name: b.backup_name.clone(),
            collections: b.collection_names.iter().cloned().chain(colls).collect(),
            databases,
            suffix: b.collection_suffix.clone(),
            renames: b.collection_renames.clone().into_iter().collect(),
            drop_existing: b.drop_exist_collection,
            skip_create: b.skip_create_collection,
            restore_index: b.restore_index,
            load: b.load,
            meta_only: b.meta_only,
            caller: call.caller(&id)?,
        })?;
        let rx = call.rest.engine.restore(req).await?;
        let (last, ended) = follow(rx, b.is_async, RESTORE_STARTED).await;
        Ok((go_restore(&last), ended))
    }
    .await
    .map_err(|e: Error| e.reworded(|m| in_words(m, RESTORE_WORDS)));
    answer_job(id, result)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RestoreQuery {
    id: String,
}

impl KnownFields for RestoreQuery {
    const NAMES: &'static [&'static str] = &["id"];
}

/// The job id a `get_{kind}?id=` names; an empty one is refused.
fn job_id(q: &RestoreQuery, kind: &str) -> Result<JobId> {
    JobId::parse(kind, &q.id)
}

async fn get_restore(call: Call, Params(q): Params<RestoreQuery>, _: NoBody) -> Response {
    call.answer(async {
        let rx = call
            .rest
            .engine
            .watch_restore(&job_id(&q, "restore")?)
            .await?;
        Ok((go_restore(&rx.borrow()), "success"))
    })
    .await
}

/// Ours: re-reads a backup and checks every object; damage is code 3 naming the objects.
async fn verify(call: Call, Params(q): Params<BackupNameQuery>, _: NoBody) -> Response {
    call.answer(async {
        let name = BackupName::parse(&q.backup_name)?;
        // Dropped with the request, it stops.
        let caller = call.caller("")?;
        let verification = call.rest.engine.verify_backup(&name, caller).await?;
        let p = verification.ended().await?.progress;
        Ok((
            serde_json::json!({"objects": p.objects_total, "bytes": p.bytes_total}),
            "success",
        ))
    })
    .await
}

async fn check(call: Call, _: Params<NoQuery>, _: NoBody) -> Response {
    let id = call.request_id(None);
    match call.rest.engine.check().await {
        Ok(r) => {
            let msg = format!(
                "Succeed to connect to milvus and storage. Milvus {} at {}; Milvus storage {}; backup storage {} ({} backups)",
                r.milvus_version,
                r.milvus_address,
                r.milvus_storage,
                r.backup_storage,
                r.backup_count
            );
            let data = serde_json::json!({
                "milvus_address": r.milvus_address,
                "milvus_version": r.milvus_version.to_string(),
                "milvus_storage": r.milvus_storage,
                "backup_storage": r.backup_storage,
                "backup_count": r.backup_count,
                "conditional_writes": r.conditional_writes,
            });
            ok(id, &msg, Some(data))
        }
        Err(e) => rest_error(id, &e),
    }
}

impl Rest {
    /// A backup as the Go tool shows it: its stored meta when complete.
    async fn backup_data(&self, s: &BackupSnapshot) -> Result<BackupInfo> {
        if s.state != JobState::Succeeded {
            return Ok(go_backup_of_job(s));
        }
        Ok(self
            .engine
            .listed_backup_meta(&s.name, &s.id, !self.simple)
            .await?
            .unwrap_or_else(|| go_backup_of_job(s)))
    }

    /// [`Self::backup_data`] for a list: a backup whose meta cannot be read
    /// (damaged, edited by hand) is listed as failed, saying why, never in
    /// the way of the others (GetBackup answers it DATA_LOSS).
    async fn listed_data(&self, s: &BackupSnapshot) -> Result<BackupInfo> {
        match self.backup_data(s).await {
            Err(e) if e.kind() == ErrorKind::DataLoss => {
                tracing::warn!(backup = %s.name, error = %e, "list: the backup's meta cannot be read");
                let mut listed = go_backup_of_job(s);
                listed.state_code = go_state(JobState::Failed);
                listed.error_message = format!("its meta cannot be read: {e}");
                Ok(listed)
            }
            read => read,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each name a body says it knows is one of its fields, not an extra.
    fn modelled<T: serde::de::DeserializeOwned + KnownFields>(extra: fn(&T) -> bool) {
        for name in T::NAMES {
            // A field of another type refuses null; an extra takes it.
            let parsed = serde_json::from_str::<T>(&format!(r#"{{"{name}": null}}"#));
            assert!(parsed.is_err() || !extra(&parsed.unwrap()), "{name}");
        }
    }

    #[test]
    fn the_known_names_of_a_body_are_its_fields() {
        modelled::<CreateBody>(|b| !b.extra.is_empty());
        modelled::<RestoreBody>(|b| !b.extra.is_empty());
        let b: CreateBody = serde_json::from_str(r#"{"incremantal": null}"#).unwrap();
        assert!(b.extra.contains_key("incremantal"));
    }
}
