//! Folders under the root that hold no complete backup, and what says one is
//! ours to remove: a delete removes only folders that are complete backups or
//! one of these, never a folder someone else put under the root.

use bytes::Bytes;
use serde::Deserialize;

use super::Catalog;
use super::manifest::MANIFEST_FILE;
use crate::error::{Error, Result};

/// The plan a backup writes into its folder before it copies anything (see
/// `backup/resume.rs`), beside `meta/`.
pub const PLAN_FILE: &str = "resume-plan.json";

/// Written into a folder without checksums (a Go-tool backup, or a backup of
/// ours cut short before its checksums) before a delete removes anything from
/// it, and removed last: a delete cut short there can be run again.
pub const DELETE_MARKER: &str = "deleting.json";

/// Why an incomplete folder is ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leftover {
    /// Our checksums without the commit point: a backup cut short while its
    /// meta was written, or a delete cut short.
    Checksums,
    /// A delete was removing it.
    Deleting,
    /// A backup claimed it (job `job`) and never completed it.
    Plan { job: String },
}

/// The one field of a plan the catalog reads.
#[derive(Deserialize)]
struct PlanOwner {
    job: String,
}

impl Catalog {
    /// Why backup `name`'s folder is ours when it holds no complete backup;
    /// `None` when nothing says so.
    pub async fn leftover(&self, name: &str) -> Result<Option<Leftover>> {
        let (checksums, marker) = (
            self.layout.meta_key(name, MANIFEST_FILE),
            self.folder_key(name, DELETE_MARKER),
        );
        let (checksums, marker) =
            tokio::try_join!(self.store.head(&checksums), self.store.head(&marker))?;
        if checksums.is_some() {
            return Ok(Some(Leftover::Checksums));
        }
        if marker.is_some() {
            return Ok(Some(Leftover::Deleting));
        }
        match self.store.read(&self.folder_key(name, PLAN_FILE)).await {
            Ok(body) => {
                let plan: PlanOwner = serde_json::from_slice(&body)?;
                Ok(Some(Leftover::Plan { job: plan.job }))
            }
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Marks backup `name`'s folder as being deleted; returns the marker's key.
    pub(super) async fn mark_deleting(&self, name: &str) -> Result<String> {
        let key = self.folder_key(name, DELETE_MARKER);
        let body = Bytes::from_static(b"{\"deleting\":true}\n");
        self.store.write(&key, body).await?;
        Ok(key)
    }

    /// The key of `file` at the top of backup `name`'s folder.
    pub fn folder_key(&self, name: &str, file: &str) -> String {
        format!("{}{file}", self.layout.backup_prefix(name))
    }
}
