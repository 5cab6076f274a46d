//! The early copy's listing: the binlogs of the segments that are flushed
//! when a backup begins. Those never change (Milvus never rewrites a binlog
//! nor reuses its key), so a full backup copies them while Milvus passes the
//! flush point (see `pipeline`).

use super::collect::binlogs_by_segment;
use crate::context::Context;
use crate::error::Result;
use crate::meta::LogKind;
use crate::milvus::{MilvusVersion, SEGMENT_STATE_FLUSHED};
use crate::model::CollectionRef;
use crate::storage::CopyTask;

/// The copies of the binlogs of `coll`'s segments flushed now (not L0
/// segments, which the plan places itself).
pub async fn flushed_binlogs(
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
