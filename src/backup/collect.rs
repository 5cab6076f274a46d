//! Reads one collection from Milvus: its description, partitions and indexes,
//! and, after a flush, its segments and their binlogs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::meta::model::{
    Binlog, CollectionBackupInfo, FieldBinlog, IndexInfo, KeyValuePair, PartitionBackupInfo,
    SegmentBackupInfo,
};
use crate::meta::{LogKind, schema};
use crate::milvus::{
    FlushResult, MilvusVersion, SEGMENT_STATE_FLUSHED, SEGMENT_STATE_FLUSHING, SegmentInfo,
};

/// The partition id of L0 segments that apply to every partition (2.4+).
pub const L0_ALL_PARTITIONS: i64 = -1;
use crate::model::CollectionRef;
use crate::storage::ObjectInfo;

/// One collection, read and ready to copy.
#[derive(Debug)]
pub struct CollectedCollection {
    pub info: CollectionBackupInfo,
    /// Every binlog to copy, with the group folder it goes to (none for
    /// collection-level L0 segments, as the Go tool does).
    pub objects: Vec<(ObjectInfo, Option<i64>)>,
}

impl CollectedCollection {
    /// Each object with the key it has in backup `name`'s folder.
    pub fn destinations(&self, ctx: &Context, name: &str) -> Result<Vec<(String, &ObjectInfo)>> {
        let layout = ctx.catalog.layout();
        self.objects
            .iter()
            .map(|(o, group)| {
                layout
                    .backup_key(name, &ctx.milvus_layout, &o.key, *group)
                    .map(|k| (k, o))
                    .ok_or_else(|| Error::Internal(format!("unexpected binlog key {}", o.key)))
            })
            .collect()
    }
}

/// Describes `coll` and, when it was flushed (`flush`, none for a backup of
/// the meta only), waits for the flush and lists its binlogs.
pub async fn collect(
    ctx: &Context,
    coll: &CollectionRef,
    flush: Option<FlushResult>,
    version: MilvusVersion,
) -> Result<CollectedCollection> {
    let milvus = ctx.milvus.as_ref();
    // The description and the flush wait at once: each is a round trip or
    // more to Milvus, and none depends on another.
    let (desc, partitions, indexes, loading, flush) = tokio::try_join!(
        milvus.describe_collection(coll.db(), coll.name()),
        milvus.list_partitions(coll.db(), coll.name()),
        milvus.describe_indexes(coll.db(), coll.name()),
        milvus.loading_progress(coll.db(), coll.name()),
        async {
            match flush {
                None => Ok(None),
                Some(f) => wait_flushed(ctx, coll, f).await.map(Some),
            }
        },
    )?;
    let load_state = match loading {
        0 => "NotLoad",
        100 => "Loaded",
        _ => "Loading",
    };

    let mut info = CollectionBackupInfo {
        id: uuid::Uuid::new_v4().to_string(),
        start_time: unix_seconds(),
        collection_id: desc.id,
        db_name: coll.db().to_string(),
        collection_name: coll.name().to_string(),
        schema: schema::to_meta(&desc.schema)?,
        schema_proto_base64: base64::engine::general_purpose::STANDARD.encode(&desc.schema),
        shards_num: desc.shards_num,
        consistency_level: desc.consistency_level,
        has_index: !indexes.is_empty(),
        index_infos: indexes
            .iter()
            .map(|i| {
                let params: BTreeMap<String, String> = i.params.iter().cloned().collect();
                IndexInfo {
                    field_name: i.field_name.clone(),
                    index_name: i.name.clone(),
                    index_type: params.get("index_type").cloned().unwrap_or_default(),
                    params,
                }
            })
            .collect(),
        load_state: load_state.into(),
        properties: desc
            .properties
            .iter()
            .map(|(k, v)| KeyValuePair {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        partition_backups: partitions
            .iter()
            .map(|p| PartitionBackupInfo {
                partition_id: p.id,
                partition_name: p.name.clone(),
                collection_id: desc.id,
                load_state: load_state.into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let Some(flush) = flush else {
        return Ok(CollectedCollection {
            info,
            objects: Vec::new(),
        });
    };
    info.backup_timestamp = flush.flush_ts;
    info.backup_physical_timestamp = flush.flush_ts >> 18;

    // (Tests pause here to change the partitions after they were read.)
    crate::failpoint::pause_at("backup.segments").await;
    // Segments first, then their binlogs: Milvus marks a segment flushed
    // only once all its binlogs are written, so a listing made after finds
    // them whole. Listed at the same time, a segment that compaction
    // finished in between could be listed half-written.
    let segments = settled_segments(ctx, coll).await?;
    let mut by_dir = binlogs_by_segment(ctx, desc.id).await?;
    let flushed: Vec<_> = segments
        .iter()
        .filter(|s| s.state == SEGMENT_STATE_FLUSHED)
        .collect();
    let dropped = partitions_changed(ctx, coll, &mut info, &flushed, version).await?;
    let flushed: Vec<_> = flushed
        .into_iter()
        .filter(|s| !dropped.contains(&s.partition_id))
        .collect();
    let listed: Vec<_> = flushed
        .iter()
        .map(|seg| segment_backup(ctx, seg, version.is_l0_segment(seg.level), &mut by_dir))
        .collect::<Result<_>>()?;
    let mut objects = Vec::new();
    for (seg, (backup, files)) in flushed.into_iter().zip(listed) {
        let is_l0 = version.is_l0_segment(seg.level);
        if is_l0 && seg.partition_id == L0_ALL_PARTITIONS {
            info.size += backup.size;
            info.l0_segments.push(backup);
            objects.extend(files.into_iter().map(|o| (o, None)));
            continue;
        }
        let Some(part) = info
            .partition_backups
            .iter_mut()
            .find(|p| p.partition_id == seg.partition_id)
        else {
            return Err(Error::Internal(format!(
                "segment {} of {coll} is in unknown partition {}",
                seg.id, seg.partition_id
            )));
        };
        part.size += backup.size;
        part.segment_backups.push(backup);
        objects.extend(files.into_iter().map(|o| (o, Some(seg.id))));
    }
    for part in &mut info.partition_backups {
        part.segment_backups.sort_by_key(|s| s.segment_id);
    }
    info.l0_segments.sort_by_key(|s| s.segment_id);
    info.size += info.partition_backups.iter().map(|p| p.size).sum::<i64>();
    Ok(CollectedCollection { info, objects })
}

/// Segments in partitions the description does not name: a partition
/// created since it was read is added to `info`; one dropped since (Milvus
/// still reports its segments until it collects them) is left out of the
/// backup, and the log says so. Returns the dropped partitions' ids.
async fn partitions_changed(
    ctx: &Context,
    coll: &CollectionRef,
    info: &mut CollectionBackupInfo,
    flushed: &[&SegmentInfo],
    version: MilvusVersion,
) -> Result<BTreeSet<i64>> {
    let unknown: BTreeSet<i64> = flushed
        .iter()
        .filter(|s| !(version.is_l0_segment(s.level) && s.partition_id == L0_ALL_PARTITIONS))
        .map(|s| s.partition_id)
        .filter(|id| !info.partition_backups.iter().any(|p| p.partition_id == *id))
        .collect();
    if unknown.is_empty() {
        return Ok(unknown);
    }
    let now = ctx.milvus.list_partitions(coll.db(), coll.name()).await?;
    let mut dropped = BTreeSet::new();
    for id in unknown {
        match now.iter().find(|p| p.id == id) {
            Some(p) => info.partition_backups.push(PartitionBackupInfo {
                partition_id: p.id,
                partition_name: p.name.clone(),
                collection_id: info.collection_id,
                load_state: info.load_state.clone(),
                ..Default::default()
            }),
            None => {
                dropped.insert(id);
            }
        }
    }
    if !dropped.is_empty() {
        let segments = flushed
            .iter()
            .filter(|s| dropped.contains(&s.partition_id))
            .count();
        tracing::warn!(collection = %coll, partitions = ?dropped, segments,
            "partitions dropped during the backup: their segments are not backed up");
    }
    Ok(dropped)
}

/// The insert and delta binlogs of collection `id`, by segment folder
/// (`{kind}/{collection}/{partition}/{segment}/`): one paginated LIST per
/// kind for the whole collection (not two per segment), both at once.
pub async fn binlogs_by_segment(
    ctx: &Context,
    id: i64,
) -> Result<BTreeMap<String, Vec<ObjectInfo>>> {
    let insert_dir = ctx.milvus_layout.collection_dir(LogKind::Insert, id);
    let delta_dir = ctx.milvus_layout.collection_dir(LogKind::Delta, id);
    let (inserts, deltas) = tokio::try_join!(
        ctx.milvus_store.list(&insert_dir),
        ctx.milvus_store.list(&delta_dir),
    )?;
    let mut by_dir = BTreeMap::<String, Vec<ObjectInfo>>::new();
    for (dir, listed) in [(insert_dir, inserts), (delta_dir, deltas)] {
        for o in listed {
            // `{dir}{partition}/{segment}/...`: grouped by the segment's folder.
            let mut parts = o.key[dir.len()..].splitn(3, '/');
            let (Some(part), Some(seg), Some(_)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            by_dir
                .entry(format!("{dir}{part}/{seg}/"))
                .or_default()
                .push(o);
        }
    }
    Ok(by_dir)
}

/// Collections flushed by one request.
const FLUSH_BATCH: usize = 64;

/// Flushes `collections` (a request per database and per [`FLUSH_BATCH`]);
/// their flush points, in order.
pub async fn flush_all(ctx: &Context, collections: &[CollectionRef]) -> Result<Vec<FlushResult>> {
    let mut by_db = BTreeMap::<&str, Vec<usize>>::new();
    for (i, c) in collections.iter().enumerate() {
        by_db.entry(c.db()).or_default().push(i);
    }
    let mut out = vec![FlushResult::default(); collections.len()];
    for (db, indexes) in by_db {
        for batch in indexes.chunks(FLUSH_BATCH) {
            let names: Vec<String> = batch
                .iter()
                .map(|&i| collections[i].name().to_string())
                .collect();
            let flushed = ctx.milvus.flush_many(db, &names).await?;
            tracing::debug!(db, collections = names.len(), "flushed");
            for (&i, f) in batch.iter().zip(flushed) {
                out[i] = f;
            }
        }
    }
    Ok(out)
}

/// Waits until every row of `coll` before its flush point is persisted.
async fn wait_flushed(
    ctx: &Context,
    coll: &CollectionRef,
    flush: FlushResult,
) -> Result<FlushResult> {
    let milvus = ctx.milvus.as_ref();
    let deadline = Instant::now() + ctx.timing.flush_timeout;
    // A flush point passes on one of Milvus's time ticks (a few hundred ms
    // apart): poll every 25 ms for the first second (GetFlushState is a cheap
    // read), then back off.
    let started = Instant::now();
    let mut pause = Duration::from_millis(25);
    let mut polls = 0u32;
    while !milvus.is_flushed(coll.db(), coll.name(), &flush).await? {
        if Instant::now() > deadline {
            return Err(Error::milvus(
                format!("Flush {coll}"),
                format!(
                    "segments {:?} not flushed after {}s",
                    flush.segment_ids,
                    ctx.timing.flush_timeout.as_secs()
                ),
            ));
        }
        tokio::time::sleep(pause).await;
        polls += 1;
        if started.elapsed() > Duration::from_secs(1) {
            pause = (pause * 3 / 2).min(ctx.timing.poll_interval.min(Duration::from_secs(2)));
        }
    }
    tracing::debug!(collection = %coll, polls, waited_ms = started.elapsed().as_millis() as u64, "flush point passed");
    Ok(flush)
}

/// `coll`'s persistent segments once none is still Flushing. GetFlushState
/// counts a Flushing segment as flushed, and a compaction's result is
/// Flushing, its inputs already dropped, until its data node has synced:
/// a listing taken in between, which keeps Flushed segments only, would
/// leave their rows out of the backup, unsaid. Listed again until each is
/// Flushed or gone; past the flush timeout, an error naming them.
async fn settled_segments(ctx: &Context, coll: &CollectionRef) -> Result<Vec<SegmentInfo>> {
    let milvus = ctx.milvus.as_ref();
    let deadline = Instant::now() + ctx.timing.flush_timeout;
    let mut pause = Duration::from_millis(25);
    loop {
        let segments = milvus.persistent_segments(coll.db(), coll.name()).await?;
        let flushing: Vec<i64> = segments
            .iter()
            .filter(|s| s.state == SEGMENT_STATE_FLUSHING)
            .map(|s| s.id)
            .collect();
        if flushing.is_empty() {
            return Ok(segments);
        }
        if Instant::now() > deadline {
            return Err(Error::milvus(
                format!("GetPersistentSegmentInfo {coll}"),
                format!(
                    "segments {flushing:?} still flushing after {}s",
                    ctx.timing.flush_timeout.as_secs()
                ),
            ));
        }
        tracing::debug!(collection = %coll, ?flushing, "waiting for segments still flushing");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(ctx.timing.poll_interval.max(Duration::from_millis(25)));
    }
}

/// A segment's insert and delta binlogs, taken from the collection's listing.
fn segment_backup(
    ctx: &Context,
    seg: &SegmentInfo,
    is_l0: bool,
    listed: &mut BTreeMap<String, Vec<ObjectInfo>>,
) -> Result<(SegmentBackupInfo, Vec<ObjectInfo>)> {
    let store = ctx.milvus_store.as_ref();
    let insert_dir =
        ctx.milvus_layout
            .segment_dir(LogKind::Insert, seg.collection_id, seg.partition_id, seg.id);
    let delta_dir =
        ctx.milvus_layout
            .segment_dir(LogKind::Delta, seg.collection_id, seg.partition_id, seg.id);
    // L0 segments (2.4+) hold deletes only.
    let inserts = if is_l0 {
        Vec::new()
    } else {
        listed.remove(&insert_dir).unwrap_or_default()
    };
    let deltas = listed.remove(&delta_dir).unwrap_or_default();
    if !is_l0 && inserts.is_empty() && seg.num_rows > 0 {
        return Err(Error::DataLoss(format!(
            "segment {} has {} rows but no binlogs under {}/{insert_dir}",
            seg.id,
            seg.num_rows,
            store.bucket()
        )));
    }

    let mut by_field: BTreeMap<i64, Vec<Binlog>> = BTreeMap::new();
    for o in &inserts {
        let rel = &o.key[insert_dir.len()..];
        let (field, log) = rel
            .split_once('/')
            .ok_or_else(|| Error::Internal(format!("unexpected insert binlog key {}", o.key)))?;
        let field_id: i64 = field
            .parse()
            .map_err(|_| Error::Internal(format!("unexpected insert binlog key {}", o.key)))?;
        by_field.entry(field_id).or_default().push(binlog(o, log));
    }
    let delta_binlogs: Vec<Binlog> = deltas
        .iter()
        .map(|o| binlog(o, &o.key[delta_dir.len()..]))
        .collect();

    let size: u64 = inserts.iter().chain(&deltas).map(|o| o.size).sum();
    let backup = SegmentBackupInfo {
        segment_id: seg.id,
        collection_id: seg.collection_id,
        partition_id: seg.partition_id,
        num_of_rows: seg.num_rows,
        binlogs: by_field
            .into_iter()
            .map(|(field_id, binlogs)| FieldBinlog { field_id, binlogs })
            .collect(),
        deltalogs: if delta_binlogs.is_empty() {
            Vec::new()
        } else {
            vec![FieldBinlog {
                field_id: 0,
                binlogs: delta_binlogs,
            }]
        },
        size: size as i64,
        group_id: if seg.partition_id == L0_ALL_PARTITIONS {
            0
        } else {
            seg.id
        },
        backuped: true,
        is_l0,
        ..Default::default()
    };
    let files = inserts.into_iter().chain(deltas).collect();
    Ok((backup, files))
}

fn binlog(o: &ObjectInfo, log: &str) -> Binlog {
    Binlog {
        log_path: o.key.clone(),
        log_size: o.size as i64,
        log_id: log.parse().unwrap_or(0),
        ..Default::default()
    }
}

/// Seconds since the Unix epoch.
pub fn unix_seconds() -> i64 {
    unix_millis() / 1000
}

/// Milliseconds since the Unix epoch.
pub fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
