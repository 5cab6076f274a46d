//! Reading many backups at once: the summaries of the catalog index (kept once
//! read: an entry names one backup's id, and a complete backup never changes)
//! and the manifests of the other complete backups, which incremental backups,
//! deletes and verifies need.

use std::collections::{HashMap, HashSet};

use futures::StreamExt;
use tracing::{debug, warn};

use super::Catalog;
use super::index::IndexEntry;
use super::manifest::{MANIFEST_FILE, Manifest};
use crate::error::{Error, Result};
use crate::jobs::BackupSnapshot;

mod budget;
pub use budget::MANIFEST_BYTES_AT_ONCE;
use budget::{Held, ManifestBudget};

/// Summaries or manifests read at once.
pub const READ_PARALLELISM: usize = 32;

/// The backups under the root at one moment: the root's folders and the
/// catalog index. Taken early, while other work waits, it only leaves out
/// backups completed since: for an incremental backup, more to copy.
#[derive(Debug, Clone)]
pub struct Listed {
    names: Vec<String>,
    index: HashMap<String, IndexEntry>,
}

/// Which other backups' manifests a caller needs.
#[derive(Debug, Clone, Copy)]
pub enum Among<'a> {
    /// Every complete backup: what a delete or a verify must see, whatever
    /// the index says.
    Every,
    /// Those that may hold objects of these collections (by id): a backup
    /// whose index summary names none of them is not read. Only for callers
    /// to whom a backup left out costs work, never data (an incremental
    /// backup copies what it does not find).
    Holding(&'a HashSet<i64>),
}

impl Catalog {
    /// The summary index entry `entry` holds, read once and then kept.
    pub async fn summary(&self, entry: &IndexEntry) -> Result<BackupSnapshot> {
        if let Some(s) = self.summaries.lock().expect("summaries").get(&entry.key) {
            return Ok(s.clone());
        }
        let s = self.read_entry(entry).await?;
        self.read_singly();
        self.summaries
            .lock()
            .expect("summaries")
            .insert(entry.key.clone(), s.clone());
        Ok(s)
    }

    /// The summary of `entry` if it was read already.
    pub fn kept_summary(&self, entry: &IndexEntry) -> Option<BackupSnapshot> {
        self.summaries
            .lock()
            .expect("summaries")
            .get(&entry.key)
            .cloned()
    }

    /// Forgets the summaries of entries that are no longer in `index`.
    pub fn keep_summaries_of(&self, index: &HashMap<String, IndexEntry>) {
        let listed: HashSet<&str> = index.values().map(|e| e.key.as_str()).collect();
        self.summaries
            .lock()
            .expect("summaries")
            .retain(|key, _| listed.contains(key.as_str()));
    }

    /// Lists the root's folders and the catalog index, at once.
    pub async fn listed(&self) -> Result<Listed> {
        let (names, index) = tokio::try_join!(self.names(), self.index())?;
        Ok(Listed { names, index })
    }

    /// Gives `each` the manifest of every complete backup other than
    /// `except` that `among` asks for (in the catalog as `listed`, or as
    /// listed now), in no particular order, read [`READ_PARALLELISM`] at
    /// once and never more than the catalog's manifest budget held at once
    /// ([`MANIFEST_BYTES_AT_ONCE`] by default): `Ok(None)` for a backup that
    /// is not complete or has no checksums (a Go-tool backup, which
    /// references only its own folder). Stops at the first error `each`
    /// returns. A backup without an index entry is checked complete first
    /// (its commit point), so one being written is left out; an entry is
    /// published only after the commit point and withdrawn before a delete
    /// removes it, so a backup with one is read at once (at worst, a folder
    /// whose commit point went by hand counts as referencing its objects,
    /// which keeps more). Returns the most manifest bytes held at once.
    pub async fn for_other_manifests(
        &self,
        listed: Option<Listed>,
        except: &str,
        among: Among<'_>,
        mut each: impl FnMut(String, Result<Option<Manifest>>) -> Result<()>,
    ) -> Result<u64> {
        let Listed { names, index } = match listed {
            Some(l) => l,
            None => self.listed().await?,
        };
        let names = match among {
            Among::Every => names,
            Among::Holding(ids) => self.possibly_holding(names, &index, ids).await,
        };
        let (index, budget) = (&index, &ManifestBudget::new(self.manifest_budget));
        // Unordered: a manifest read is given to `each`, and its part of the
        // budget back, as soon as it is in (in order, the first one could
        // wait for the budget that those after it hold).
        let reads = futures::stream::iter(names.into_iter().filter(|n| n != except))
            .map(|name| async move {
                let complete = match index.contains_key(&name) {
                    true => Ok(true),
                    false => self.is_complete(&name).await,
                };
                let manifest = match complete {
                    Ok(true) => self.read_manifest_within(&name, budget).await,
                    Ok(false) => Ok(None),
                    Err(e) => Err(e),
                };
                (name, manifest)
            })
            .buffer_unordered(READ_PARALLELISM);
        let mut reads = std::pin::pin!(reads);
        while let Some((name, read)) = reads.next().await {
            match read {
                Ok(Some((manifest, held))) => {
                    each(name, Ok(Some(manifest)))?;
                    drop(held);
                }
                Ok(None) => each(name, Ok(None))?,
                Err(e) => each(name, Err(e))?,
            }
        }
        debug!(peak_bytes = budget.peak(), "manifests read");
        Ok(budget.peak())
    }

    /// The manifest of backup `name`, read once its size fits in `budget`,
    /// with the part of the budget it holds. `None` when it has none.
    async fn read_manifest_within(
        &self,
        name: &str,
        budget: &ManifestBudget,
    ) -> Result<Option<(Manifest, Held)>> {
        let key = self.layout.meta_key(name, MANIFEST_FILE);
        // A read cut off mid-body is read again.
        let read = crate::retry::retry(
            crate::retry::Backoff::COPY,
            crate::retry::storage_transient,
            || async {
                let (mut size, mut body) = self.store.get_stream(&key).await?;
                // An answer left unread while others are read could be cut
                // off: it is dropped, and asked for again once it fits.
                let held = loop {
                    if let Some(held) = budget.try_hold(size) {
                        break held;
                    }
                    drop(body);
                    let held = budget.hold(size).await;
                    (size, body) = self.store.get_stream(&key).await?;
                    if size <= held.bytes {
                        break held;
                    }
                };
                let mut body = crate::storage::exactly(size, key.clone(), body);
                let mut bytes = Vec::with_capacity(size.min(self.manifest_budget) as usize);
                while let Some(chunk) = body.next().await {
                    bytes.extend_from_slice(&chunk?);
                }
                Ok((bytes, held))
            },
        );
        let (bytes, held) = match read.await {
            Ok(read) => read,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let manifest = serde_json::from_slice(&bytes).map_err(|e| {
            Error::DataLoss(format!("backup {name:?}: {key} is not valid meta: {e}"))
        })?;
        Ok(Some((manifest, held)))
    }

    /// `names` without the backups whose index summary names none of the
    /// collections `ids`. A backup without an entry, or whose summary cannot
    /// be read, stays.
    async fn possibly_holding(
        &self,
        names: Vec<String>,
        index: &HashMap<String, IndexEntry>,
        ids: &HashSet<i64>,
    ) -> Vec<String> {
        let listed = names.len();
        self.load_packs_for(index).await;
        let checks = futures::stream::iter(names)
            .map(|name| async move {
                let Some(entry) = index.get(&name) else {
                    return Some(name);
                };
                match self.summary(entry).await {
                    Ok(s) if !s.collections.iter().any(|c| ids.contains(&c.id)) => None,
                    Ok(_) => Some(name),
                    Err(e) => {
                        warn!(backup = %name, error = %e, "index summary unreadable; the backup's manifest is read");
                        Some(name)
                    }
                }
            })
            .buffered(READ_PARALLELISM);
        let kept: Vec<String> = checks.filter_map(std::future::ready).collect().await;
        self.pack_if_worth(index).await;
        debug!(
            listed,
            read = kept.len(),
            "backups whose manifests may hold the collections"
        );
        kept
    }
}

#[cfg(test)]
mod tests;
