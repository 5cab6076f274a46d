//! The backup flow: resolve what to back up, flush, copy the binlogs, write the meta last.

mod collect;
mod early;
mod job;
mod phases;
mod pipeline;
mod resume;
mod reuse;
mod run;

use futures::{StreamExt, TryStreamExt};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::milvus::MilvusApi;
use crate::model::{BackupRequest, CollectionRef};

pub use job::BackupJob;

/// The job whose plan backup `name`'s folder holds (a job that has copied
/// anything has written one).
pub async fn plan_owner(ctx: &Context, name: &str) -> Result<Option<String>> {
    Ok(resume::load_plan(ctx, name).await?.map(|p| p.job))
}

/// Whether backup `name`'s folder is job `job`'s to remove: its plan names
/// the job, or, for a new job (`new_job`: the name was free under its
/// lease), it holds no plan yet.
pub async fn folder_is_jobs(ctx: &Context, name: &str, job: &str, new_job: bool) -> Result<bool> {
    Ok(match plan_owner(ctx, name).await? {
        Some(owner) => owner == job,
        None => new_job,
    })
}

/// What a backup completed by a server that died before its last steps
/// still needs: its plan removed and its catalog entry published.
pub async fn completed_elsewhere(ctx: &Context, info: &crate::meta::model::BackupInfo) {
    resume::drop_plan(ctx, &info.name).await;
    if let Err(e) = ctx
        .catalog
        .publish(&crate::meta::summary::snapshot_of(info))
        .await
    {
        tracing::warn!(backup = %info.name, error = %e, "cannot add the backup to the catalog index");
    }
}
use run::run;

/// Checks the request against Milvus and the catalog before any job starts:
/// the name is free and every named collection and database exists.
/// Returns the collections to back up.
pub async fn plan(ctx: &Context, req: &BackupRequest) -> Result<Vec<CollectionRef>> {
    let taken = async {
        match req.resumes() {
            true => Ok(false),
            false => ctx.catalog.is_taken(req.name()).await,
        }
    };
    let resolved = resolve_collections(ctx.milvus.as_ref(), req.collections(), req.databases());
    let (taken, resolved) = tokio::join!(taken, resolved);
    if taken? {
        let name = req.name().as_str();
        return Err(match ctx.catalog.is_complete(name).await {
            Ok(false) => Error::already_exists(
                "backup",
                format!(
                    "{name} (incomplete: a backup that failed or was interrupted; a server on \
                     this backup root resumes an interrupted one, and DeleteBackup removes it)"
                ),
            ),
            _ => Error::already_exists("backup", name),
        });
    }
    resolved
}

/// Turns named collections and databases into a sorted list of collections.
/// Nothing named means every collection of every database.
pub async fn resolve_collections(
    milvus: &dyn MilvusApi,
    collections: &[CollectionRef],
    databases: &[String],
) -> Result<Vec<CollectionRef>> {
    let mut out = Vec::new();
    let known_dbs = if databases.is_empty() && !collections.is_empty() {
        Vec::new()
    } else {
        milvus.list_databases().await?
    };
    let whole_dbs: Vec<String> = if collections.is_empty() && databases.is_empty() {
        known_dbs.clone()
    } else {
        databases.to_vec()
    };
    for db in &whole_dbs {
        if !known_dbs.contains(db) {
            return Err(Error::not_found("database", db));
        }
        for name in milvus.list_collections(db).await? {
            out.push(CollectionRef::normalized(db, &name));
        }
    }
    // A few at once: a request may name hundreds. (A Vec of futures, not a
    // closure in the stream: keeps the job's future `Send`.)
    let checks: Vec<_> = collections
        .iter()
        .map(|c| milvus.has_collection(c.db(), c.name()))
        .collect();
    let found: Vec<bool> = futures::stream::iter(checks)
        .buffered(16)
        .try_collect()
        .await?;
    if let Some((c, _)) = collections.iter().zip(&found).find(|(_, found)| !**found) {
        return Err(Error::not_found("collection", c.to_string()));
    }
    out.extend(collections.iter().cloned());
    out.sort();
    out.dedup();
    Ok(out)
}
