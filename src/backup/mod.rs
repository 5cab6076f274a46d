//! The backup flow: resolve what to back up, flush, copy the binlogs, write the meta last.

mod collect;
mod job;
mod resume;
mod reuse;
mod run;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::milvus::MilvusApi;
use crate::model::{BackupRequest, CollectionRef};

pub use job::BackupJob;
use run::run;

/// Checks the request against Milvus and the catalog before any job starts:
/// the name is free and every named collection and database exists.
/// Returns the collections to back up.
pub async fn plan(ctx: &Context, req: &BackupRequest) -> Result<Vec<CollectionRef>> {
    if !req.resumes() && ctx.catalog.is_taken(req.name()).await? {
        return Err(Error::already_exists("backup", req.name().as_str()));
    }
    resolve_collections(ctx.milvus.as_ref(), req.collections(), req.databases()).await
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
    for c in collections {
        if !milvus.has_collection(c.db(), c.name()).await? {
            return Err(Error::not_found("collection", c.to_string()));
        }
        out.push(c.clone());
    }
    out.sort();
    out.dedup();
    Ok(out)
}
