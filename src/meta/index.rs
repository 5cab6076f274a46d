//! The catalog index: one small object per complete backup under
//! `{root}/_catalog/{name}/{id}`, holding its summary. The backup's writer
//! publishes it after the commit point; a delete withdraws it before removing
//! the commit point (and again at its end). One LIST of `_catalog/` then names
//! every complete backup with its id, and a summary, once read, never changes
//! (a backup made again under the same name has another id).
//!
//! The index only speeds things up. A backup without an entry (copied in by
//! hand, or written by the Go tool, or whose writer died between its commit
//! point and its entry) is found by the listing of the root and read from its
//! meta; an entry whose folder is gone is ignored.

use std::collections::HashMap;

use bytes::Bytes;

use super::Catalog;
use crate::error::{Error, Result};
use crate::jobs::BackupSnapshot;
use crate::storage::join_key;

/// The index's folder under the backup root (a reserved backup name).
pub const INDEX_DIR: &str = "_catalog";

/// Ids as they appear in a key: letters, digits, `-` and `_` as they are,
/// every other byte as `%XX`.
fn encode_id(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode_id(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(s.get(i + 1..i + 3)?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// One entry of the index, as a LIST shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub name: String,
    pub id: String,
    /// The entry object's key.
    pub key: String,
}

impl Catalog {
    pub(super) fn index_prefix(&self) -> String {
        format!("{}/", join_key([&self.layout.root_prefix(), INDEX_DIR]))
    }

    fn index_key(&self, name: &str, id: &str) -> String {
        format!("{}{name}/{}", self.index_prefix(), encode_id(id))
    }

    /// Publishes the summary of complete backup `s` (after its commit point).
    /// A delete that ran while the write was on its way (its writer paused
    /// past its lease) withdrew before the entry landed: the commit point is
    /// read again after, and an entry whose backup is gone, or is another
    /// one now, is taken back. Entries of the name with another id (an
    /// earlier backup's folder removed by hand) are withdrawn.
    pub async fn publish(&self, s: &BackupSnapshot) -> Result<()> {
        let body = serde_json::to_vec(s)?;
        let key = self.index_key(&s.name, &s.id);
        self.store.write(&key, Bytes::from(body)).await?;
        let still = self.read(&s.name).await?.is_some_and(|b| b.id == s.id);
        if !still {
            self.store.delete(std::slice::from_ref(&key)).await?;
            return Ok(());
        }
        let stale: Vec<String> = self
            .store
            .list(&format!("{}{}/", self.index_prefix(), s.name))
            .await?
            .into_iter()
            .map(|o| o.key)
            .filter(|k| *k != key)
            .collect();
        if !stale.is_empty() {
            self.store.delete(&stale).await?;
        }
        Ok(())
    }

    /// Withdraws every entry of backup `name` (before its commit point goes).
    pub async fn withdraw(&self, name: &str) -> Result<()> {
        let prefix = format!("{}{name}/", self.index_prefix());
        self.store.delete_under(&prefix).await.map(drop)
    }

    /// Every entry of the index, by backup name (the packs it shows are
    /// noted, see `packs`).
    pub async fn index(&self) -> Result<HashMap<String, IndexEntry>> {
        let prefix = self.index_prefix();
        let mut out = HashMap::new();
        let mut packs = Vec::new();
        // A name with two entries (one stale, until its backup is published
        // again) has none: its meta says which backup it is.
        let mut twice = Vec::new();
        for o in self.store.list(&prefix).await? {
            if self.note_if_pack(&o.key, &mut packs) {
                continue;
            }
            let Some((name, id)) = o.key[prefix.len()..].split_once('/') else {
                continue;
            };
            let Some(id) = decode_id(id) else {
                continue;
            };
            let name = name.to_string();
            let entry = IndexEntry {
                name: name.clone(),
                id,
                key: o.key,
            };
            if out.insert(name.clone(), entry).is_some() {
                twice.push(name);
            }
        }
        for name in twice {
            out.remove(&name);
        }
        self.packs_listed(packs);
        Ok(out)
    }

    /// The summary an index entry holds.
    pub async fn read_entry(&self, entry: &IndexEntry) -> Result<BackupSnapshot> {
        let body = self.store.read(&entry.key).await?;
        serde_json::from_slice(&body).map_err(|e| {
            Error::DataLoss(format!(
                "catalog index entry {} is not a backup summary: {e}",
                entry.key
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_survive_the_key() {
        for id in ["4f1c-9a", "req/1 2%", "é"] {
            assert_eq!(decode_id(&encode_id(id)).as_deref(), Some(id));
            assert!(!encode_id(id).contains('/'));
        }
    }
}
