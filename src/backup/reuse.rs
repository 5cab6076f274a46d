//! Incremental backups: which objects earlier complete backups already hold,
//! and the reader's holds that keep those backups from being deleted until
//! this one is complete (after that, its meta names what it references, and a
//! delete keeps it).
//!
//! The order makes it safe against a concurrent delete: the reader's hold is
//! taken first, then the backup is checked to be free of writers and still
//! complete. A delete takes its writer's hold first, then checks for readers.
//! Whichever comes second sees the other: the delete is refused, or this
//! backup copies those objects instead of reusing them.

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
    // dropped once read (they come in name order): memory follows what is
    // reusable, not the number of backups.
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
                            out.entry(e.key.clone()).or_insert(ManifestEntry {
                                home: name.clone(),
                                ..e
                            });
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

/// Holds each backup in `homes` as a reader for job `job`. A backup that is
/// being written or deleted, or is no longer complete, is left out: the
/// caller copies its objects instead. Returns the holds by backup name.
pub async fn hold_bases(
    ctx: &Context,
    job: &str,
    backup: &str,
    homes: impl IntoIterator<Item = String>,
) -> BTreeMap<String, Lease> {
    let leases = ctx.leases();
    let purpose = format!("reuse by incremental backup {backup}");
    let mut held = BTreeMap::new();
    for home in homes {
        match leases.hold_for_reading(&home, job, &purpose).await {
            Ok(lease) => match ctx.catalog.is_complete(&home).await {
                Ok(true) => {
                    held.insert(home, lease);
                }
                other => {
                    info!(backup, base = %home, ?other, "base is no longer complete; its objects are copied");
                    lease.release().await;
                }
            },
            Err(e) => {
                info!(backup, base = %home, error = %e, "base not reused; its objects are copied");
            }
        }
    }
    held
}
