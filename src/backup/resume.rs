//! Resuming a backup whose server died: it follows the plan the dead server
//! wrote after its flush (the same objects, not a later state of Milvus);
//! the objects copied already are kept when their size and MD5 ETag equal
//! the source's, every other one is copied, and objects of the folder the
//! plan does not name are removed before the meta is written. A source
//! object Milvus removed since (compaction and garbage collection) makes the
//! backup impossible to resume: it fails, saying so.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::collect::CollectedCollection;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::meta::manifest::ManifestEntry;
use crate::meta::model::CollectionBackupInfo;
use crate::storage::ObjectInfo;

/// The binlogs in backup `name`'s folder, by full key.
pub async fn present(ctx: &Context, name: &str) -> Result<HashMap<String, ObjectInfo>> {
    let prefix = format!("{}binlogs/", ctx.catalog.layout().backup_prefix(name));
    let found = ctx.catalog.store().list(&prefix).await?;
    Ok(found.into_iter().map(|o| (o.key.clone(), o)).collect())
}

/// The manifest entry of `have`, copied by the dead server, when it is the
/// same object as the source (`size`, `src_etag`): both MD5 ETags known and
/// equal. `key` is relative to the backup's folder.
pub fn kept(
    have: &ObjectInfo,
    key: &str,
    size: u64,
    src_etag: Option<&str>,
) -> Option<ManifestEntry> {
    let entry = ManifestEntry {
        key: key.to_string(),
        size: have.size,
        etag: have.etag.clone().unwrap_or_default(),
        ..Default::default()
    };
    let source = ManifestEntry {
        etag: src_etag?.to_string(),
        ..Default::default()
    };
    let same = have.size == size && entry.md5().is_some() && entry.md5() == source.md5();
    same.then_some(entry)
}

/// Removes the objects of the folder that the plan does not name; returns
/// how many went.
pub async fn remove_extras(
    ctx: &Context,
    present: &HashMap<String, ObjectInfo>,
    planned: &HashSet<String>,
) -> Result<usize> {
    let extra: Vec<String> = present
        .keys()
        .filter(|k| !planned.contains(*k))
        .cloned()
        .collect();
    if !extra.is_empty() {
        ctx.catalog.store().delete(&extra).await?;
    }
    Ok(extra.len())
}

// The plan a backup writes before it copies (`{name}/resume-plan.json`, beside
// `meta/` so that a folder without meta stays one; removed once the meta is
// written): what it described at its flush, so that a resumed
// job copies the same objects rather than a later state of Milvus. It also
// marks a folder cut short as ours to delete (`meta/leftover.rs`).
use crate::meta::leftover::PLAN_FILE;

#[derive(Serialize, Deserialize)]
struct PlannedObject {
    key: String,
    size: u64,
    etag: Option<String>,
    group: Option<i64>,
}

#[derive(Serialize, Deserialize)]
struct PlannedCollection {
    info: CollectionBackupInfo,
    objects: Vec<PlannedObject>,
}

#[derive(Serialize, Deserialize)]
struct Plan {
    /// The job that wrote it: only that job (resumed) continues the folder.
    job: String,
    started_ms: i64,
    collections: Vec<PlannedCollection>,
    /// Written before the early copy, when the collections are not described
    /// yet: the folder is the job's, but what it copies is still to be found.
    #[serde(default)]
    partial: bool,
}

/// A plan read back: whose it is, when the backup began, what it copies
/// (`None` for a partial plan).
pub struct LoadedPlan {
    pub job: String,
    pub started_ms: i64,
    pub collected: Option<Vec<CollectedCollection>>,
}

fn plan_key(ctx: &Context, name: &str) -> String {
    format!("{}{PLAN_FILE}", ctx.catalog.layout().backup_prefix(name))
}

/// Writes a partial plan of job `job`'s backup `name`, before anything is
/// copied into its folder: the folder is the job's to resume.
pub async fn claim(ctx: &Context, name: &str, job: &str, started_ms: i64) -> Result<()> {
    let plan = Plan {
        job: job.to_string(),
        started_ms,
        collections: Vec::new(),
        partial: true,
    };
    let key = plan_key(ctx, name);
    ctx.catalog
        .store()
        .write(&key, Bytes::from(serde_json::to_vec(&plan)?))
        .await
}

/// Writes the plan of job `job`'s backup `name` (started at `started_ms`).
pub async fn save_plan(
    ctx: &Context,
    name: &str,
    job: &str,
    started_ms: i64,
    collected: &[CollectedCollection],
) -> Result<()> {
    let plan = Plan {
        partial: false,
        job: job.to_string(),
        started_ms,
        collections: collected
            .iter()
            .map(|c| PlannedCollection {
                info: c.info.clone(),
                objects: c
                    .objects
                    .iter()
                    .map(|(o, group)| PlannedObject {
                        key: o.key.clone(),
                        size: o.size,
                        etag: o.etag.clone(),
                        group: *group,
                    })
                    .collect(),
            })
            .collect(),
    };
    let key = plan_key(ctx, name);
    ctx.catalog
        .store()
        .write(&key, Bytes::from(serde_json::to_vec(&plan)?))
        .await
}

/// The plan a dead server wrote for backup `name`: its start and collections.
pub async fn load_plan(ctx: &Context, name: &str) -> Result<Option<LoadedPlan>> {
    let key = plan_key(ctx, name);
    let body = match ctx.catalog.store().read(&key).await {
        Ok(body) => body,
        Err(Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let plan: Plan = serde_json::from_slice(&body)?;
    let collected = plan
        .collections
        .into_iter()
        .map(|c| CollectedCollection {
            info: c.info,
            objects: c
                .objects
                .into_iter()
                .map(|o| {
                    let info = ObjectInfo {
                        key: o.key,
                        size: o.size,
                        etag: o.etag,
                    };
                    (info, o.group)
                })
                .collect(),
        })
        .collect();
    Ok(Some(LoadedPlan {
        job: plan.job,
        started_ms: plan.started_ms,
        collected: (!plan.partial).then_some(collected),
    }))
}

/// Removes the plan of a completed backup.
pub async fn drop_plan(ctx: &Context, name: &str) {
    let key = plan_key(ctx, name);
    if let Err(e) = ctx.catalog.store().delete(&[key]).await {
        tracing::warn!(backup = %name, error = %e, "cannot remove the backup's plan");
    }
}
