//! Incremental backups: which objects earlier complete backups already hold,
//! and the reader's holds that keep those backups from being deleted until
//! this one is complete (after that, its meta names what it references, and a
//! delete keeps it).
//!
//! The order makes it safe against a concurrent delete: the reader's hold is
//! taken first, then the backup is checked to be free of writers and still
//! complete, and its manifest is read again under the hold (it may have been
//! deleted and made again since it was first read). A delete takes its
//! writer's hold first, then checks for readers. Whichever comes second sees
//! the other: the delete is refused, or this backup copies those objects
//! instead of reusing them.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};

use tracing::{info, warn};

use crate::context::Context;
use crate::error::Result;
use crate::jobs::Lease;
use crate::meta::Catalog;
use crate::meta::manifest::ManifestEntry;
use crate::meta::scan::{Among, Listed};

/// Every object the complete backups under the root hold (other than
/// `except`) of the collections `collections` (by id), by its key relative to
/// a backup folder, with `home` naming the folder that holds it. Backups
/// without checksums (the Go tool's) are not reused: their objects cannot be
/// proven the same. A backup the index shows to hold none of the collections
/// is not read; one that cannot be read is left out (its objects are copied).
/// `listed`: the catalog as listed earlier (`None`: listed now).
pub async fn reusable(
    catalog: &Catalog,
    listed: Option<Listed>,
    except: &str,
    collections: &HashSet<i64>,
) -> Result<HashMap<String, ManifestEntry>> {
    // Only what a complete backup's own manifest says its own folder holds:
    // another backup's word for a home (a folder copied in by hand may name
    // objects its home never had) is not taken, and a home deleted since is
    // never reused from (a delete of it may be under way). Each manifest is
    // dropped once read: memory follows what is reusable, not the number of
    // backups. An object several backups hold is reused from the first by
    // name, whatever order they are read in.
    let mut out = HashMap::new();
    catalog
        .for_other_manifests(
            listed,
            except,
            Among::Holding(collections),
            |name, manifest| {
                match manifest {
                    Ok(Some(m)) => {
                        for e in m.objects.into_iter().filter(|e| e.home.is_empty()) {
                            let held = ManifestEntry {
                                home: name.clone(),
                                ..e
                            };
                            match out.entry(held.key.clone()) {
                                Entry::Vacant(v) => {
                                    v.insert(held);
                                }
                                Entry::Occupied(mut o) if o.get().home > name => {
                                    o.insert(held);
                                }
                                Entry::Occupied(_) => {}
                            }
                        }
                    }
                    Ok(None) => {}
                    Err(e) => warn!(backup = %name, error = %e, "backup not considered for reuse"),
                }
                Ok(())
            },
        )
        .await?;
    Ok(out)
}

/// Holds each backup in `picked` (the keys of the objects chosen from it,
/// by backup name) as a reader for job `job`, then reads its manifest again
/// under the hold: a base deleted and made again under its name after
/// `reusable` read it may hold other objects. The chosen objects that
/// manifest no longer names in its own folder (with the same size and
/// checksums) are dropped from `reusable`. A backup that is being deleted
/// or written (a writer letting go is waited for, see
/// [`Context::hold_backup_for_reading`]), is no longer complete, or holds none of the objects chosen
/// from it any more, is left out and let go: the caller copies its objects
/// instead. Returns the holds by backup name.
pub async fn hold_bases(
    ctx: &Context,
    job: &str,
    backup: &str,
    picked: BTreeMap<String, Vec<String>>,
    reusable: &mut HashMap<String, ManifestEntry>,
) -> BTreeMap<String, Lease> {
    let purpose = format!("reuse by incremental backup {backup}");
    let mut held = BTreeMap::new();
    for (home, keys) in picked {
        let lease = match ctx.hold_backup_for_reading(&home, job, &purpose).await {
            Ok(lease) => lease,
            Err(e) => {
                info!(backup, base = %home, error = %e, "base not reused; its objects are copied");
                continue;
            }
        };
        match still_holds(ctx, &home, &keys, reusable).await {
            Ok(true) => {
                held.insert(home, lease);
            }
            other => {
                info!(backup, base = %home, ?other, "base no longer complete or no longer holds the objects chosen; they are copied");
                lease.release().await;
            }
        }
    }
    held
}

/// Whether `home` is complete and its manifest, read now, still names in its
/// own folder at least one of the objects `keys` chosen from it; those it no
/// longer names as `reusable` has them are dropped from `reusable`.
async fn still_holds(
    ctx: &Context,
    home: &str,
    keys: &[String],
    reusable: &mut HashMap<String, ManifestEntry>,
) -> Result<bool> {
    if !ctx.catalog.is_complete(home).await? {
        return Ok(false);
    }
    let Some(manifest) = ctx.catalog.read_manifest(home).await? else {
        return Ok(false);
    };
    let chosen: HashSet<&str> = keys.iter().map(String::as_str).collect();
    let still: HashSet<String> = manifest
        .objects
        .into_iter()
        .filter(|o| o.home.is_empty() && chosen.contains(o.key.as_str()))
        .filter(|o| {
            reusable.get(&o.key).is_some_and(|e| {
                e.home == home && e.size == o.size && e.crc32c == o.crc32c && e.etag == o.etag
            })
        })
        .map(|o| o.key)
        .collect();
    for key in keys.iter().filter(|k| !still.contains(*k)) {
        reusable.remove(key);
    }
    Ok(!still.is_empty())
}
