//! Resuming a backup whose server died: the objects it copied already are
//! kept when their size and MD5 ETag equal the source's, every other one is
//! copied again, and objects of the folder the new plan does not name (a
//! segment compacted away since) are removed before the meta is written.

use std::collections::{HashMap, HashSet};

use crate::context::Context;
use crate::error::Result;
use crate::meta::manifest::ManifestEntry;
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
