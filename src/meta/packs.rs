//! Packs of catalog summaries: a few objects under `_catalog/.packs/` that
//! hold many index entries' summaries, so a process that has none kept (a
//! CLI run, a server just started) reads a few objects instead of one per
//! backup.
//!
//! Why a pack is never wrong: it maps index entry keys to the summaries those
//! entries hold, and an entry's summary never changes (see `index`). A pack
//! is only consulted for the entries the index lists now, and only a summary
//! whose name and id are the entry's is taken. An entry no pack names, or a
//! pack that is gone or unreadable, means reading entries one by one, as
//! without packs.
//!
//! Who writes them: a process that read [`PACK_AFTER`] or more entries one
//! by one since its last pack writes every summary of the index as it listed
//! it, then removes the packs that listing showed. A pack written meanwhile
//! by another process is not removed; one removed under a reader is read one
//! by one instead. A store that refuses the writes only costs the reads.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use super::Catalog;
use super::index::IndexEntry;
use crate::error::Result;
use crate::jobs::BackupSnapshot;

/// The packs' folder inside the index's: never a backup name (a `.`).
pub const PACKS_DIR: &str = ".packs";
/// Entries read one by one before a pack is worth writing, or packs worth loading.
pub const PACK_AFTER: usize = 64;
/// Summaries in one pack object (a few MB at most).
const PACK_SIZE: usize = 4096;
/// Packs read or written at once.
const PACK_PARALLELISM: usize = 8;

/// The packs this process knows of.
#[derive(Debug, Default)]
pub struct PackState {
    /// The pack keys the last listing of the index showed.
    listed: Vec<String>,
    /// The pack keys read already (their summaries are kept).
    loaded: HashSet<String>,
    /// Entries read one by one since this process last wrote packs.
    read_singly: usize,
}

/// One pack object: summaries by the entry's key relative to the index folder.
#[derive(Serialize, Deserialize)]
struct Pack {
    summaries: HashMap<String, BackupSnapshot>,
}

impl Catalog {
    fn packs_prefix(&self) -> String {
        format!("{}{PACKS_DIR}/", self.index_prefix())
    }

    /// Whether `key` (under the index folder) is a pack; notes it if so.
    pub(super) fn note_if_pack(&self, key: &str, packs: &mut Vec<String>) -> bool {
        let is_pack = key.starts_with(&self.packs_prefix());
        if is_pack {
            packs.push(key.to_string());
        }
        is_pack
    }

    /// Remembers the packs a listing of the index showed.
    pub(super) fn packs_listed(&self, listed: Vec<String>) {
        self.packs.lock().expect("packs").listed = listed;
    }

    /// Counts an entry read one by one.
    pub(super) fn read_singly(&self) {
        self.packs.lock().expect("packs").read_singly += 1;
    }

    /// Before reading summaries: when [`PACK_AFTER`] or more of `index`'s
    /// entries are not kept, reads the listed packs not read yet and keeps
    /// the summaries they hold for those entries.
    pub async fn load_packs_for(&self, index: &HashMap<String, IndexEntry>) {
        let unkept: HashMap<&str, &IndexEntry> = index
            .values()
            .filter(|e| self.kept_summary(e).is_none())
            .map(|e| (&e.key[self.index_prefix().len()..], e))
            .collect();
        let to_load: Vec<String> = {
            let state = self.packs.lock().expect("packs");
            if unkept.len() < PACK_AFTER {
                return;
            }
            state
                .listed
                .iter()
                .filter(|k| !state.loaded.contains(*k))
                .cloned()
                .collect()
        };
        let reads = futures::stream::iter(to_load)
            .map(|key| async move { (self.read_pack(&key).await, key) })
            .buffer_unordered(PACK_PARALLELISM);
        let mut reads = std::pin::pin!(reads);
        let mut taken = 0usize;
        while let Some((read, key)) = reads.next().await {
            let pack = match read {
                Ok(pack) => pack,
                Err(e) => {
                    debug!(pack = %key, error = %e, "pack not read; its entries are read one by one");
                    continue;
                }
            };
            {
                let mut kept = self.summaries.lock().expect("summaries");
                for (rel, summary) in pack.summaries {
                    if let Some(entry) = unkept.get(rel.as_str())
                        && summary.name == entry.name
                        && summary.id == entry.id
                    {
                        kept.insert(entry.key.clone(), summary);
                        taken += 1;
                    }
                }
            }
            self.packs.lock().expect("packs").loaded.insert(key);
        }
        debug!(unkept = unkept.len(), taken, "summaries taken from packs");
    }

    async fn read_pack(&self, key: &str) -> Result<Pack> {
        let body = self.store.read(key).await?;
        Ok(serde_json::from_slice(&body)?)
    }

    /// After reading summaries: when [`PACK_AFTER`] or more entries were read
    /// one by one since the last packs, packs every kept summary of `index`
    /// and removes the packs the index's listing showed. Never fails the
    /// caller: a pack not written only costs reads later.
    pub async fn pack_if_worth(&self, index: &HashMap<String, IndexEntry>) {
        let superseded = {
            let mut state = self.packs.lock().expect("packs");
            if state.read_singly < PACK_AFTER {
                return;
            }
            state.read_singly = 0;
            std::mem::take(&mut state.listed)
        };
        let prefix = self.index_prefix();
        let mut summaries: Vec<(String, BackupSnapshot)> = index
            .values()
            .filter_map(|e| Some((e.key[prefix.len()..].to_string(), self.kept_summary(e)?)))
            .collect();
        summaries.sort_by(|a, b| a.0.cmp(&b.0));
        let packs: Vec<Pack> = summaries
            .chunks(PACK_SIZE)
            .map(|chunk| Pack {
                summaries: chunk.iter().cloned().collect(),
            })
            .collect();
        let count = packs.len();
        let writes = futures::stream::iter(packs)
            .map(|pack| async move {
                let key = format!(
                    "{}{}.json",
                    self.packs_prefix(),
                    uuid::Uuid::new_v4().simple()
                );
                let body = Bytes::from(serde_json::to_vec(&pack)?);
                self.store.write(&key, body).await.map(|()| key)
            })
            .buffer_unordered(PACK_PARALLELISM);
        let written: Vec<Result<String>> = writes.collect().await;
        if let Some(Err(e)) = written.iter().find(|w| w.is_err()) {
            warn!(error = %e, "catalog summaries not packed; later listings read them one by one");
            // The packs written are complete on their own; the old ones stay.
            return;
        }
        self.packs
            .lock()
            .expect("packs")
            .loaded
            .extend(written.into_iter().flatten());
        if let Err(e) = self.store.delete(&superseded).await {
            debug!(error = %e, "superseded packs not removed");
        }
        self.packs
            .lock()
            .expect("packs")
            .loaded
            .retain(|k| !superseded.contains(k));
        debug!(
            summaries = summaries.len(),
            packs = count,
            removed = superseded.len(),
            "catalog summaries packed"
        );
    }
}
