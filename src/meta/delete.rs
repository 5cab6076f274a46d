//! Deleting a backup: what it may remove (its plan) and the removal, in
//! the order that keeps every moment safe (see `docs/incremental.md`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::Catalog;
use super::scan;
use crate::error::{Error, Result};
use crate::jobs::Fence;

/// Objects a delete removes per request (and per progress step).
const DELETE_BATCH: usize = 1000;

/// What a delete of one backup removes beside its folder, and keeps in it.
#[derive(Debug, Clone, Default)]
pub struct DeletePlan {
    /// Objects of its folder that other complete backups reference, by key
    /// relative to the folder.
    pub keep: HashSet<String>,
    /// The backups that reference what `keep` holds.
    pub kept_for: BTreeSet<String>,
    /// Objects it reused from backups deleted since, that nothing else
    /// references any more (store keys), by the name of the backup they were
    /// copied into (their home). The deleter removes them only while it
    /// holds that name as its writer (see `docs/incremental.md`).
    pub orphans: BTreeMap<String, Vec<String>>,
}

/// What a delete did: the objects it removed, and those of its folder it
/// kept because other backups still reference them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    pub removed: u64,
    pub kept: u64,
}

impl Catalog {
    /// The objects among `wanted` (by store key) that the complete backups
    /// other than `except` reference, with the backups that reference each.
    /// Every other backup is read, whatever the index says: a delete relies
    /// on it. Only what `wanted` keeps is held, so memory follows the
    /// caller's own backup, not all of them.
    pub async fn references(
        &self,
        except: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<HashMap<String, Vec<String>>> {
        self.references_reading(except, wanted, |_, e| Err(e)).await
    }

    /// [`Catalog::references`], each backup whose checksums cannot be read
    /// given to `unreadable` with why (its error stops the reading).
    pub async fn references_reading(
        &self,
        except: &str,
        wanted: impl Fn(&str) -> bool,
        mut unreadable: impl FnMut(String, Error) -> Result<()>,
    ) -> Result<HashMap<String, Vec<String>>> {
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        self.for_other_manifests(None, except, scan::Among::Every, |other, manifest| {
            match manifest {
                // A Go-tool backup (no checksums) references only its own folder.
                Ok(None) => {}
                Ok(Some(m)) => {
                    for e in &m.objects {
                        let key = self.object_key(&other, e);
                        if wanted(&key) {
                            out.entry(key).or_default().push(other.clone());
                        }
                    }
                }
                Err(e) => unreadable(other, e)?,
            }
            Ok(())
        })
        .await?;
        // Read in no particular order: each object's backups by name.
        out.values_mut().for_each(|by| by.sort());
        Ok(out)
    }

    /// What deleting backup `name` may remove: the objects of its folder that
    /// no other complete backup references (`keep` holds the others, relative
    /// to its folder), and the objects it reused from backups deleted since
    /// that no other complete backup references any more.
    pub async fn delete_plan(&self, name: &str) -> Result<DeletePlan> {
        let prefix = self.layout.backup_prefix(name);
        let own = self.read_manifest(name).await?;
        let reused: HashSet<String> = own
            .iter()
            .flat_map(|m| &m.objects)
            .filter(|e| !e.home.is_empty())
            .map(|e| self.object_key(name, e))
            .collect();
        let referenced = self
            .references(name, |k| k.starts_with(&prefix) || reused.contains(k))
            .await?;
        let mut kept_for = BTreeSet::new();
        let keep: HashSet<String> = referenced
            .iter()
            .filter_map(|(k, by)| {
                let own = k.strip_prefix(prefix.as_str())?;
                kept_for.extend(by.iter().cloned());
                Some(own.to_string())
            })
            .collect();
        let mut orphans: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if let Some(m) = own {
            let mut dead_homes: HashMap<String, bool> = HashMap::new();
            for e in m.objects.iter().filter(|e| !e.home.is_empty()) {
                let dead = match dead_homes.get(&e.home) {
                    Some(d) => *d,
                    None => {
                        let d = !self.is_complete(&e.home).await?;
                        dead_homes.insert(e.home.clone(), d);
                        d
                    }
                };
                let key = self.object_key(name, e);
                if dead && !referenced.contains_key(&key) {
                    orphans.entry(e.home.clone()).or_default().push(key);
                }
            }
        }
        Ok(DeletePlan {
            keep,
            kept_for,
            orphans,
        })
    }

    /// Deletes the objects of the folder of an incomplete backup `name` (a
    /// job's partial backup) that no other complete backup references;
    /// returns how many went. A folder that was once complete may hold
    /// objects that backups made since reuse: those stay. Stops with
    /// [`Error::Aborted`] once one of `fences` has expired.
    pub async fn delete(&self, name: &str, fences: &[Fence]) -> Result<u64> {
        let mut plan = self.delete_plan(name).await?;
        // A backup never completed protected nothing it reused: what it
        // reused from a backup deleted since was that delete's to remove or
        // keep, and that name may hold a new backup by now.
        plan.orphans.clear();
        let deleted = self
            .delete_as_planned(name, &plan, fences, |_, _| {})
            .await?;
        Ok(deleted.removed)
    }

    /// Deletes the objects of backup `name` as `plan` says (see
    /// [`Catalog::delete_plan`]); returns how many went and how many of its
    /// folder stay for other backups (fewer than planned when the backups
    /// they were kept for were deleted meanwhile). `progress` sees
    /// how many are gone of how many will go. For a backup of ours that was
    /// complete, after [`Catalog::retire`]: its index entry and commit point
    /// are gone already.
    pub async fn delete_as_planned(
        &self,
        name: &str,
        plan: &DeletePlan,
        fences: &[Fence],
        progress: impl Fn(u64, u64),
    ) -> Result<Deleted> {
        // Checked before every request that removes: a process paused past
        // its lease stops before it removes what the next holder relies on.
        let held = || Fence::check_all(fences, std::time::Duration::ZERO);
        let keep = &plan.keep;
        let prefix = self.layout.backup_prefix(name);
        let keys: Vec<String> = self
            .store
            .list(&prefix)
            .await?
            .into_iter()
            .map(|o| o.key)
            .filter(|k| !keep.contains(&k[prefix.len()..]))
            .collect();
        // The meta first (a Go-tool backup's commit point is its
        // `backup_meta.json`) and what marks the folder as ours last (the
        // checksums, the plan of a backup cut short, the delete's own marker):
        // at every moment in between, `read` takes what is left for an
        // incomplete backup of ours, never for a complete one (of ours, or of
        // the Go tool's shape), and a delete cut short can be run again.
        let meta_key = |f: &str| self.layout.meta_key(name, f);
        let (full, backup_meta) = (meta_key("full_meta.json"), meta_key("backup_meta.json"));
        let mut marks: Vec<String> = self
            .mark_keys(name)
            .into_iter()
            .filter(|k| keys.contains(k))
            .collect();
        let first: Vec<String> = [&full, &backup_meta]
            .into_iter()
            .filter(|k| keys.contains(k))
            .cloned()
            .collect();
        let rest: Vec<String> = keys
            .iter()
            .filter(|k| !first.contains(k) && !marks.contains(k))
            .cloned()
            .collect();
        let orphans: Vec<String> = plan.orphans.values().flatten().cloned().collect();
        let total = (keys.len() + orphans.len()) as u64;
        progress(0, total);
        if marks.is_empty() && !(first.is_empty() && rest.is_empty() && orphans.is_empty()) {
            // A Go-tool backup: nothing of ours marks it once its meta goes.
            held()?;
            marks.push(self.mark_deleting(name).await?);
        }
        held()?;
        self.store.delete(&first).await?;
        crate::failpoint::pause_at("delete.meta_removed").await;
        let mut done = first.len() as u64;
        for batch in rest
            .chunks(DELETE_BATCH)
            .chain(orphans.chunks(DELETE_BATCH))
        {
            held()?;
            self.store.delete(batch).await?;
            done += batch.len() as u64;
            progress(done, total);
        }
        let freed = self.delete_freed_since_planned(name, plan, &held).await?;
        crate::failpoint::pause_at("delete.freed_checked").await;
        held()?;
        self.store.delete(&marks).await?;
        // What a writer that died left beside its objects (a local
        // directory's temporary files) would keep the folder, and the name,
        // taken for good. Nothing of the backup's is left to it.
        if let Err(e) = self.store.remove_leftovers(&prefix).await {
            tracing::warn!(backup = %name, error = %e, "cannot remove what dead writers left in the backup's folder");
        }
        // An entry a writer published late (paused past its lease) goes too.
        self.withdraw(name).await?;
        let removed = total + freed;
        progress(removed, removed);
        Ok(Deleted {
            removed,
            kept: plan.keep.len() as u64 - freed,
        })
    }

    /// Removes what `plan` kept in the folder of backup `name` for backups
    /// deleted since it was made. Once the commit point is gone and no job
    /// holds the backup for reading (rule 3 of `docs/incremental.md`), no
    /// backup can come to reference its objects: references only shrink. So
    /// of a base and a backup reusing it deleted at once, whichever delete
    /// ends last removes what the other kept.
    async fn delete_freed_since_planned(
        &self,
        name: &str,
        plan: &DeletePlan,
        held: &impl Fn() -> Result<()>,
    ) -> Result<u64> {
        let mut gone = false;
        for other in &plan.kept_for {
            gone |= !self.is_complete(other).await?;
        }
        if !gone {
            return Ok(0);
        }
        let prefix = self.layout.backup_prefix(name);
        let kept: HashSet<String> = plan.keep.iter().map(|k| format!("{prefix}{k}")).collect();
        let still = self.references(name, |k| kept.contains(k)).await?;
        let freed: Vec<String> = kept
            .into_iter()
            .filter(|k| !still.contains_key(k))
            .collect();
        for batch in freed.chunks(DELETE_BATCH) {
            held()?;
            self.store.delete(batch).await?;
        }
        Ok(freed.len() as u64)
    }
}
