//! Copying while the flush passes. The binlogs of segments that are already
//! flushed when a backup begins never change (Milvus never rewrites a binlog
//! nor reuses its key), so they are copied while Milvus persists the rest and
//! the collections are described. The early copy stops as soon as every
//! collection is described, dropping the copies in flight (at most a flush
//! wait's worth of work): the plan counts what it made and copies the rest,
//! with progress. What it started and the plan does not name (a segment
//! compacted away meanwhile, or a copy dropped) is removed before the meta is
//! written. Not under a bandwidth cap, where dropped copies would waste the
//! budget they reserved.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::collect::binlogs_by_segment;
use crate::context::Context;
use crate::error::Result;
use crate::meta::LogKind;
use crate::milvus::{MilvusVersion, SEGMENT_STATE_FLUSHED};
use crate::model::CollectionRef;
use crate::storage::{Copied, CopyTask, ObjectInfo};

/// What the early copy did.
#[derive(Debug, Default)]
pub struct EarlyCopies {
    /// The copies made, by destination key: the source's key and size, and
    /// what the copy learned of the content.
    done: HashMap<String, (String, u64, Copied)>,
    /// Every destination key a copy was started for, made or not.
    started: HashSet<String>,
}

impl EarlyCopies {
    /// What the early copy learned copying `src` to `dst_key`, if it did.
    pub fn made(&self, dst_key: &str, src: &ObjectInfo) -> Option<&Copied> {
        match self.done.get(dst_key) {
            Some((key, size, copied)) if *key == src.key && *size == src.size => Some(copied),
            _ => None,
        }
    }

    /// The keys a copy was started for that `named` (every key the plan
    /// names) lacks: to be removed.
    pub fn extras(&self, named: &HashSet<String>) -> Vec<String> {
        self.started
            .iter()
            .filter(|k| !named.contains(*k))
            .cloned()
            .collect()
    }

    pub fn count(&self) -> usize {
        self.done.len()
    }
}

/// Copies the binlogs of the segments of `collections` flushed already into
/// backup `name`'s folder, until `stop` is cancelled. Never fails: what it
/// could not copy is left to the plan (and the error is logged).
pub async fn copy_flushed(
    ctx: &Context,
    name: &str,
    collections: &[CollectionRef],
    version: MilvusVersion,
    stop: CancellationToken,
) -> EarlyCopies {
    let started = Mutex::new(HashSet::new());
    let done = Mutex::new(HashMap::new());
    let listings: Vec<_> = collections
        .iter()
        .map(|c| flushed_objects(ctx, name, c, version))
        .collect();
    let tasks = futures::stream::iter(listings)
        .buffer_unordered(ctx.collections_at_once)
        .flat_map(|listed| {
            futures::stream::iter(listed.unwrap_or_else(|e| {
                tracing::warn!(backup = %name, error = %e, "early copy: cannot list; left to the plan");
                Vec::new()
            }))
        })
        .inspect(|t: &CopyTask| {
            started
                .lock()
                .expect("early copies")
                .insert(t.dst_key.clone());
        });
    let copying = ctx.copier.copy_stream(
        ctx.milvus_store.as_ref(),
        ctx.catalog.store().as_ref(),
        tasks,
        |t, copied| {
            done.lock().expect("early copies").insert(
                t.dst_key.clone(),
                (t.src_key.clone(), t.size, copied.clone()),
            );
        },
    );
    tokio::select! {
        copied = copying => if let Err(e) = copied {
            tracing::warn!(backup = %name, error = %e, "early copy stopped; the rest is left to the plan");
        },
        _ = stop.cancelled() => {}
    }
    EarlyCopies {
        done: done.into_inner().expect("early copies"),
        started: started.into_inner().expect("early copies"),
    }
}

/// The copies of the binlogs of `coll`'s segments flushed now (not L0
/// segments, which the plan places itself).
async fn flushed_objects(
    ctx: &Context,
    name: &str,
    coll: &CollectionRef,
    version: MilvusVersion,
) -> Result<Vec<CopyTask>> {
    let segments = ctx
        .milvus
        .persistent_segments(coll.db(), coll.name())
        .await?;
    let flushed: Vec<_> = segments
        .iter()
        .filter(|s| s.state == SEGMENT_STATE_FLUSHED && !version.is_l0_segment(s.level))
        .collect();
    let Some(first) = flushed.first() else {
        return Ok(Vec::new());
    };
    let mut by_dir = binlogs_by_segment(ctx, first.collection_id).await?;
    let layout = ctx.catalog.layout();
    let mut tasks = Vec::new();
    for seg in flushed {
        for kind in [LogKind::Insert, LogKind::Delta] {
            let dir =
                ctx.milvus_layout
                    .segment_dir(kind, seg.collection_id, seg.partition_id, seg.id);
            for o in by_dir.remove(&dir).unwrap_or_default() {
                if let Some(dst_key) =
                    layout.backup_key(name, &ctx.milvus_layout, &o.key, Some(seg.id))
                {
                    tasks.push(CopyTask {
                        src_key: o.key,
                        dst_key,
                        size: o.size,
                        owner: 0,
                    });
                }
            }
        }
    }
    Ok(tasks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(key: &str, size: u64) -> ObjectInfo {
        ObjectInfo {
            key: key.into(),
            size,
            etag: None,
        }
    }

    #[test]
    fn a_copy_counts_only_for_the_same_source_and_size_and_the_unnamed_are_extras() {
        let mut early = EarlyCopies::default();
        let copied = Copied {
            etag: Some("e".into()),
            crc32c: Some(7),
        };
        early
            .done
            .insert("b/1".into(), ("src/1".into(), 10, copied.clone()));
        early.started.extend(["b/1".to_string(), "b/2".to_string()]);
        assert_eq!(early.made("b/1", &object("src/1", 10)), Some(&copied));
        assert_eq!(
            early.made("b/1", &object("src/1", 11)),
            None,
            "size differs"
        );
        assert_eq!(
            early.made("b/1", &object("src/9", 10)),
            None,
            "source differs"
        );
        assert_eq!(
            early.made("b/2", &object("src/2", 5)),
            None,
            "started, not made"
        );
        let named: HashSet<String> = ["b/1".to_string()].into();
        assert_eq!(early.extras(&named), vec!["b/2".to_string()]);
        assert_eq!(early.count(), 1);
    }
}
