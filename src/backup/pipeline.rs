//! A full backup copies while it describes. While Milvus passes the flush
//! point, it copies the binlogs of the segments flushed already when it began
//! (they never change: Milvus never rewrites a binlog nor reuses its key);
//! then each collection's objects as soon as that collection is described, so
//! describing the next collections and copying overlap. The progress totals
//! grow meanwhile, while the job is in its first phase. An object copied early
//! that no description names (a segment compacted away in between) is
//! removed before the meta is written. Any failed copy fails the job, whose
//! cleanup removes the folder.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use futures::StreamExt;
use futures::channel::mpsc;
use tokio_util::sync::CancellationToken;

use super::collect::{CollectedCollection, collect, flush_all};
use super::early::flushed_binlogs;
use super::phases::Phases;
use super::resume;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::jobs::{BackupSnapshot, CollectionSummary, JobHandle};
use crate::meta::manifest::ManifestEntry;
use crate::meta::summary::summary_of;
use crate::milvus::MilvusVersion;
use crate::model::{BackupRequest, CollectionRef};
use crate::storage::{Copied, CopyTask, ObjectInfo};

/// The collections described, and every object the backup holds.
pub struct Streamed {
    pub collected: Vec<CollectedCollection>,
    pub objects: Vec<ManifestEntry>,
}

/// Flushes, describes and copies `collections` into backup `req.name()`.
/// A resumed job (`present`: what its dead server copied) keeps the objects
/// equal to their source and copies no early ones.
#[allow(clippy::too_many_arguments)]
pub async fn describe_and_copy(
    ctx: &Context,
    req: &BackupRequest,
    collections: &[CollectionRef],
    version: MilvusVersion,
    job: &JobHandle<BackupSnapshot>,
    present: Option<&HashMap<String, ObjectInfo>>,
    started_ms: i64,
    phase: &mut Phases<'_>,
) -> Result<Streamed> {
    let name = req.name().as_str();
    let job_id = job.snapshot().id;
    // The folder is claimed before anything is copied into it, so that a
    // server taking the job over resumes it.
    let claim = async {
        match present {
            Some(_) => Ok(()),
            None => resume::claim(ctx, name, &job_id, started_ms).await,
        }
    };
    let (flushes, ()) = tokio::try_join!(flush_all(ctx, collections), claim)?;

    let layout = ctx.catalog.layout();
    let prefix = layout.backup_prefix(name);
    let tracker = Mutex::new(Tracker::new(prefix.clone()));
    let track = || tracker.lock().expect("backup tracker");
    let (tx, rx) = mpsc::unbounded::<CopyTask>();
    job.update(|s| s.progress.totals_growing = true);
    let described = CancellationToken::new();

    // Only the first few collections: the flush points of all pass on the same
    // tick, so later collections have no wait to hide.
    let first = &collections[..collections.len().min(ctx.collections_at_once)];
    let early_tx = tx.clone();
    let early = async {
        if present.is_some() {
            return Ok(());
        }
        let listings: Vec<_> = first
            .iter()
            .map(|c| flushed_binlogs(ctx, name, c, version))
            .collect();
        let listed = futures::stream::iter(listings)
            .buffer_unordered(ctx.collections_at_once)
            .take_until(described.cancelled());
        let mut listed = std::pin::pin!(listed);
        while let Some(tasks) = listed.next().await {
            let tasks = tasks.unwrap_or_else(|e| {
                tracing::warn!(backup = %name, error = %e, "early copy: cannot list; left to the description");
                Vec::new()
            });
            let mut t = track();
            for task in tasks {
                if t.feed_early(&task, job) {
                    // Closed only when the copies failed: their error ends the job.
                    let _ = early_tx.unbounded_send(task);
                }
            }
        }
        drop(early_tx);
        Ok::<_, Error>(())
    };

    let resumed = present.is_some();
    let no_present = HashMap::new();
    let present = present.unwrap_or(&no_present);
    let describe: Vec<_> = collections
        .iter()
        .zip(flushes)
        .map(|(coll, flush)| collect(ctx, coll, Some(flush), version))
        .collect();
    let describing = async {
        crate::failpoint::pause_at("backup.describing").await;
        let mut describing = futures::stream::iter(describe).buffered(ctx.collections_at_once);
        let mut out = Vec::with_capacity(collections.len());
        while let Some(c) = describing.next().await {
            let c = c?;
            let objects = c.destinations(ctx, name)?;
            for task in track().describe(objects, summary_of(&c.info), present, job)? {
                tx.unbounded_send(task)
                    .map_err(|_| Error::Internal("the copies ended early".into()))?;
            }
            out.push(c);
        }
        let copies_left = {
            let mut t = track();
            t.closed = true;
            t.remaining.iter().sum::<usize>() > 0
        };
        job.update(|s| s.progress.totals_growing = false);
        described.cancel();
        drop(tx);
        // (The copies made meanwhile are in this phase.)
        phase.end("describe, flush and list");
        crate::failpoint::pause_at("backup.described").await;
        // From here a server taking the job over follows this description
        // (when nothing is left to copy, the meta comes next: a taker
        // describes anew and keeps every copy).
        if copies_left {
            resume::save_plan(ctx, name, &job_id, started_ms, &out).await?;
        }
        Ok::<_, Error>(out)
    };

    let copying = async {
        ctx.copier
            .copy_stream(
                &ctx.milvus_store,
                ctx.catalog.store(),
                rx,
                job.in_flight(),
                |t, copied| track().copied(t, copied, job),
            )
            .await
            .map_err(|e| super::run::removed_by_milvus(e, resumed))
    };
    let ((), collected, ()) = tokio::try_join!(early, describing, copying).inspect_err(|_| {
        // A failed job finds nothing more.
        job.update(|s| s.progress.totals_growing = false);
    })?;

    let (objects, mut extras) = tracker.into_inner().expect("backup tracker").finish(job)?;
    let named: HashSet<&str> = objects.iter().map(|e| e.key.as_str()).collect();
    extras.extend(
        present
            .keys()
            .filter(|k| !named.contains(&k[prefix.len()..]))
            .cloned(),
    );
    if !extras.is_empty() {
        ctx.catalog.store().delete(&extras).await?;
        tracing::info!(backup = %name, objects = extras.len(), "removed objects no description names");
    }
    Ok(Streamed { collected, objects })
}

/// One destination object of the backup.
struct Fed {
    src_key: String,
    size: u64,
    /// The described collection that names it (none yet: copied early).
    owner: Option<usize>,
    /// Set once it is in the folder.
    copied: Option<Copied>,
}

/// What is copied, by whom it is named, and the job's progress with it.
struct Tracker {
    /// The backup's folder: manifest keys are relative to it.
    prefix: String,
    fed: HashMap<String, Fed>,
    /// Per described collection, its objects not copied yet.
    remaining: Vec<usize>,
    /// Every collection is described: early copies start no more.
    closed: bool,
}

impl Tracker {
    fn new(prefix: String) -> Self {
        Self {
            prefix,
            fed: HashMap::new(),
            remaining: Vec::new(),
            closed: false,
        }
    }

    /// Takes an early copy, unless its object is taken already; its size
    /// joins the totals.
    fn feed_early(&mut self, t: &CopyTask, job: &JobHandle<BackupSnapshot>) -> bool {
        if self.closed || self.fed.contains_key(&t.dst_key) {
            return false;
        }
        self.fed.insert(
            t.dst_key.clone(),
            Fed {
                src_key: t.src_key.clone(),
                size: t.size,
                owner: None,
                copied: None,
            },
        );
        job.update(|s| {
            s.progress.bytes_total += t.size;
            s.progress.files_total += 1;
        });
        true
    }

    /// Names a described collection's `objects` (destination key and
    /// source); returns the copies still to start: neither copied early nor
    /// kept from `present` (a dead server's copies equal to their source).
    fn describe(
        &mut self,
        objects: Vec<(String, &ObjectInfo)>,
        summary: CollectionSummary,
        present: &HashMap<String, ObjectInfo>,
        job: &JobHandle<BackupSnapshot>,
    ) -> Result<Vec<CopyTask>> {
        let owner = self.remaining.len();
        let (mut pending, mut new_bytes, mut new_files, mut kept_bytes, mut kept_files) =
            (0, 0, 0, 0, 0);
        let mut tasks = Vec::new();
        for (dst_key, o) in objects {
            if let Some(f) = self.fed.get_mut(&dst_key) {
                if f.src_key != o.key || f.size != o.size {
                    return Err(Error::Internal(format!(
                        "{} was {} bytes when copied early and is {} now",
                        o.key, f.size, o.size
                    )));
                }
                f.owner = Some(owner);
                pending += usize::from(f.copied.is_none());
                continue;
            }
            new_bytes += o.size;
            new_files += 1;
            let have = present.get(&dst_key).and_then(|h| {
                resume::kept(h, &dst_key[self.prefix.len()..], o.size, o.etag.as_deref())
            });
            let copied = have.map(|e| {
                kept_bytes += o.size;
                kept_files += 1;
                Copied {
                    etag: Some(e.etag),
                    crc32c: None,
                }
            });
            if copied.is_none() {
                pending += 1;
                tasks.push(CopyTask {
                    src_key: o.key.clone(),
                    dst_key: dst_key.clone(),
                    size: o.size,
                    owner,
                });
            }
            self.fed.insert(
                dst_key,
                Fed {
                    src_key: o.key.clone(),
                    size: o.size,
                    owner: Some(owner),
                    copied,
                },
            );
        }
        self.remaining.push(pending);
        job.update(|s| {
            s.progress.bytes_total += new_bytes;
            s.progress.files_total += new_files;
            s.progress.bytes_done += kept_bytes;
            s.progress.files_done += kept_files;
            s.progress.collections_done += u32::from(pending == 0);
            s.collections.push(summary);
        });
        Ok(tasks)
    }

    /// Records a copy made.
    fn copied(&mut self, t: &CopyTask, copied: &Copied, job: &JobHandle<BackupSnapshot>) {
        let Some(f) = self.fed.get_mut(&t.dst_key) else {
            return;
        };
        f.copied = Some(copied.clone());
        let finished = f.owner.is_some_and(|i| {
            self.remaining[i] -= 1;
            self.remaining[i] == 0
        });
        job.update(|s| {
            s.progress.bytes_done += t.size;
            s.progress.files_done += 1;
            s.progress.collections_done += u32::from(finished);
        });
    }

    /// The manifest entries of the objects named, and the keys of those
    /// copied early that no description names (taken out of the totals).
    fn finish(self, job: &JobHandle<BackupSnapshot>) -> Result<(Vec<ManifestEntry>, Vec<String>)> {
        let (mut entries, mut extras) = (Vec::new(), Vec::new());
        let (mut extra_bytes, mut extra_files) = (0, 0);
        for (dst_key, f) in self.fed {
            let Some(copied) = f.copied else {
                return Err(Error::Internal(format!("{dst_key} was never copied")));
            };
            match f.owner {
                Some(_) => entries.push(ManifestEntry {
                    key: dst_key[self.prefix.len()..].to_string(),
                    size: f.size,
                    crc32c: copied.crc32c,
                    etag: copied.etag.unwrap_or_default(),
                    home: String::new(),
                }),
                None => {
                    extra_bytes += f.size;
                    extra_files += 1;
                    extras.push(dst_key);
                }
            }
        }
        if extra_files > 0 {
            job.update(|s| {
                s.progress.bytes_total -= extra_bytes;
                s.progress.bytes_done -= extra_bytes;
                s.progress.files_total -= extra_files;
                s.progress.files_done -= extra_files;
            });
        }
        Ok((entries, extras))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(n: u32, size: u64) -> CopyTask {
        CopyTask {
            src_key: format!("src/{n}"),
            dst_key: format!("b/x/{n}"),
            size,
            owner: 0,
        }
    }

    fn object(n: u32, size: u64, etag: &str) -> ObjectInfo {
        ObjectInfo {
            key: format!("src/{n}"),
            size,
            etag: Some(etag.into()),
        }
    }

    fn copied(etag: &str) -> Copied {
        Copied {
            etag: Some(etag.into()),
            crc32c: None,
        }
    }

    fn job() -> (
        JobHandle<BackupSnapshot>,
        tokio::sync::watch::Receiver<BackupSnapshot>,
    ) {
        let (tx, rx) =
            tokio::sync::watch::channel(BackupSnapshot::pending("id".into(), "x".into(), false));
        (JobHandle::new(tx), rx)
    }

    #[test]
    fn early_copies_count_once_and_the_unnamed_are_extras_out_of_the_totals() {
        let (job, rx) = job();
        let mut t = Tracker::new("b/x/".into());
        // Two early copies: one made before its collection is described.
        assert!(t.feed_early(&task(1, 10), &job));
        assert!(t.feed_early(&task(2, 20), &job));
        assert!(!t.feed_early(&task(1, 10), &job), "taken once");
        t.copied(&task(1, 10), &copied("e1"), &job);
        let p = rx.borrow().progress.clone();
        assert_eq!((p.bytes_done, p.bytes_total, p.files_total), (10, 30, 2));

        // The description names 1 (copied) and 3 (new), not 2.
        let (o1, o3) = (object(1, 10, "e1"), object(3, 5, "e3"));
        let objects = vec![("b/x/1".to_string(), &o1), ("b/x/3".to_string(), &o3)];
        let tasks = t
            .describe(objects, Default::default(), &HashMap::new(), &job)
            .unwrap();
        assert_eq!(tasks.len(), 1, "only the new object is still to copy");
        assert_eq!(tasks[0].dst_key, "b/x/3");
        assert_eq!(
            rx.borrow().progress.bytes_total,
            35,
            "the totals grew by 3's size"
        );
        assert_eq!(rx.borrow().progress.collections_done, 0);
        t.copied(&task(2, 20), &copied("e2"), &job);
        t.copied(&tasks[0], &copied("e3"), &job);
        assert_eq!(rx.borrow().progress.collections_done, 1);

        t.closed = true;
        assert!(!t.feed_early(&task(4, 1), &job), "closed");
        let (mut entries, extras) = t.finish(&job).unwrap();
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        let keys: Vec<_> = entries
            .iter()
            .map(|e| (e.key.as_str(), e.etag.as_str()))
            .collect();
        assert_eq!(keys, vec![("1", "e1"), ("3", "e3")]);
        assert_eq!(extras, vec!["b/x/2".to_string()]);
        let p = rx.borrow().progress.clone();
        assert_eq!(
            (p.bytes_done, p.bytes_total, p.files_done, p.files_total),
            (15, 15, 2, 2),
            "the extra is out of the totals"
        );
    }

    #[test]
    fn a_dead_servers_equal_copy_is_kept_and_a_changed_object_is_refused() {
        let (job, rx) = job();
        let mut t = Tracker::new("b/x/".into());
        let md5 = "\"0123456789abcdef0123456789abcdef\"";
        let present: HashMap<String, ObjectInfo> =
            [("b/x/1".to_string(), object(1, 10, md5))].into();
        let o1 = object(1, 10, md5);
        let tasks = t
            .describe(
                vec![("b/x/1".into(), &o1)],
                Default::default(),
                &present,
                &job,
            )
            .unwrap();
        assert!(tasks.is_empty(), "kept, not copied again");
        let p = rx.borrow().progress.clone();
        assert_eq!(
            (p.bytes_done, p.bytes_total, p.collections_done),
            (10, 10, 1)
        );

        assert!(t.feed_early(&task(2, 20), &job));
        let changed = object(2, 21, "e");
        let err = t
            .describe(
                vec![("b/x/2".into(), &changed)],
                Default::default(),
                &HashMap::new(),
                &job,
            )
            .unwrap_err();
        assert!(err.to_string().contains("src/2 was 20 bytes"), "{err}");
    }

    #[test]
    fn an_object_not_copied_is_an_error_at_the_end() {
        let (job, _rx) = job();
        let mut t = Tracker::new("b/x/".into());
        assert!(t.feed_early(&task(1, 10), &job));
        assert!(t.finish(&job).is_err());
    }
}
