//! The backup flow: resolve what to back up, flush, copy the binlogs, write the meta last.

mod collect;
mod early;
mod job;
mod phases;
mod pipeline;
#[cfg(test)]
mod recover_tests;
mod resume;
mod reuse;
mod run;

use futures::{StreamExt, TryStreamExt};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::jobs::{BackupSnapshot, JobSnapshot as _};
use crate::meta::leftover::Planless;
use crate::milvus::MilvusApi;
use crate::model::{BackupRequest, CollectionRef};

pub use job::BackupJob;

/// Ends backup `record`, whose server died and which cannot be resumed (its
/// collection was dropped, it was cancelled, its folder is not its own),
/// with `reason`: what it copied is removed under the name's hold, only when
/// the folder's plan is the job's own and it is not complete, and its end
/// is recorded before the hold is let go (no other server resumes or ends
/// it meanwhile). Left while another job holds the name (tried again), and
/// when the record, read again under the hold, was ended by another server
/// or is another job's.
pub async fn abandon(ctx: &Context, mut record: BackupSnapshot, reason: Error) {
    let name = record.name.clone();
    let job = uuid::Uuid::new_v4().to_string();
    let hold = match ctx.leases().hold_for_writing(&name, &job, "clean up").await {
        Ok(hold) => hold,
        Err(e) => {
            tracing::warn!(backup = %name, error = %e, "the name is held; tried again later");
            return;
        }
    };
    match ctx.shared_records().unended(&record).await {
        Ok(Some(_)) => {}
        Ok(None) => return hold.release().await,
        Err(e) => {
            tracing::warn!(backup = %name, error = %e, "cannot read the backup's record; tried again later");
            return hold.release().await;
        }
    }
    tracing::warn!(backup = %name, error = %reason, "a backup whose server died is not resumed");
    let catalog = &ctx.catalog;
    let ours = matches!(
        catalog
            .folder_is_jobs(&name, &record.id, Planless::NotJobs)
            .await,
        Ok(true)
    );
    if ours
        && matches!(catalog.is_complete(&name).await, Ok(false))
        && let Err(e) = catalog.delete(&name, &[hold.fence()]).await
    {
        tracing::warn!(backup = %name, error = %e, "cannot remove the backup's objects");
    }
    record.finish(&Err(reason));
    ctx.shared_records()
        .finish_held(&record, &[hold.fence()])
        .await;
    hold.release().await;
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
