//! Folders under the root that hold no complete backup, and what says one is
//! ours to remove: a delete removes only folders that are complete backups or
//! marked as ours, never a folder someone else put under the root.

use bytes::Bytes;

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

/// Whose a backup folder that holds no plan yet is, for
/// [`Catalog::folder_is_jobs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Planless {
    /// The job's: a new job that found the name free under its lease.
    NewJobs,
    /// Not the job's (a resumed or dead job's plan would be there).
    NotJobs,
}

/// What a delete or a cleanup needs of a backup's plan: whose it is.
#[derive(serde::Deserialize)]
struct PlanOwner {
    job: String,
}

impl Catalog {
    /// The job whose plan backup `name`'s folder holds (a backup job that
    /// has copied anything has written one).
    pub async fn plan_owner(&self, name: &str) -> Result<Option<String>> {
        match self.store.read(&self.folder_key(name, PLAN_FILE)).await {
            Ok(body) => Ok(Some(serde_json::from_slice::<PlanOwner>(&body)?.job)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether backup `name`'s folder is job `job`'s to remove: its plan
    /// names the job, or it holds no plan and `planless` says whose it is.
    pub async fn folder_is_jobs(&self, name: &str, job: &str, planless: Planless) -> Result<bool> {
        Ok(match self.plan_owner(name).await? {
            Some(owner) => owner == job,
            None => planless == Planless::NewJobs,
        })
    }

    /// The keys of what marks backup `name`'s folder as ours when it holds no
    /// complete backup: our checksums (a backup cut short while its meta was
    /// written), a backup's plan (one cut short while it copied), a delete's
    /// marker (a delete cut short).
    pub fn mark_keys(&self, name: &str) -> [String; 3] {
        [
            self.layout.meta_key(name, MANIFEST_FILE),
            self.folder_key(name, PLAN_FILE),
            self.folder_key(name, DELETE_MARKER),
        ]
    }

    /// Whether backup `name`'s folder is marked as ours (see [`Self::mark_keys`]).
    pub async fn is_marked_ours(&self, name: &str) -> Result<bool> {
        let [checksums, plan, marker] = self.mark_keys(name);
        let found = tokio::try_join!(
            self.store.head(&checksums),
            self.store.head(&plan),
            self.store.head(&marker),
        )?;
        Ok(found.0.is_some() || found.1.is_some() || found.2.is_some())
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
