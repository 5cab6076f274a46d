//! Checks a backup against its manifest: `verify` re-reads every object and
//! compares sizes and checksums; `check_present` (before a restore) compares
//! presence and sizes only.

use std::collections::{BTreeSet, HashSet};

use futures::{StreamExt, TryStreamExt};
use md5::Digest;

use super::Catalog;
use super::manifest::{Manifest, ManifestEntry};
use super::model::{BackupInfo, CollectionBackupInfo, PartitionBackupInfo, SegmentBackupInfo};
use super::{BackupLayout, LogKind};
use crate::error::{Error, Result};
use crate::jobs::{ObjectProblem, VerifyProgress};

/// Objects read at once while verifying.
const VERIFY_PARALLELISM: usize = 8;

/// The problem of an object in a backup's folders that its checksums do not name.
pub const NOT_IN_CHECKSUMS: &str =
    "not in the backup's checksums: an object added after the backup";

/// The meta and manifest of backup `name`; `FailedPrecondition` for
/// backups without a manifest.
async fn manifest(catalog: &Catalog, name: &str) -> Result<(BackupInfo, Manifest)> {
    let Some(info) = catalog.read(name).await? else {
        return Err(Error::not_found("backup", name));
    };
    let manifest = catalog.read_manifest(name).await?.ok_or_else(|| {
        Error::FailedPrecondition(format!(
            "backup {name:?} has no checksums (written by the Go tool or before checksums existed); \
             only a restore's presence and size check applies to it"
        ))
    })?;
    Ok((info, manifest))
}

pub fn size_problem(entry: &ManifestEntry, stored: Option<u64>) -> Option<String> {
    match stored {
        None => Some("missing".into()),
        Some(s) if s < entry.size => Some(format!("truncated: {s} of {} bytes", entry.size)),
        Some(s) if s != entry.size => {
            Some(format!("size changed: {s} bytes, expected {}", entry.size))
        }
        Some(_) => None,
    }
}

/// Re-reads every object of backup `name` and compares it with the manifest.
/// `on_progress` sees each step; the result lists every damaged object.
pub async fn verify(
    catalog: &Catalog,
    name: &str,
    on_progress: impl Fn(&VerifyProgress),
) -> Result<VerifyProgress> {
    let (info, manifest) = manifest(catalog, name).await?;
    let stored = catalog
        .stored_sizes(name, &manifest, &[String::new()])
        .await?;
    // What a restore's proof would refuse besides damage: an object in this
    // backup's binlog folders that its checksums do not name, and delete
    // logs its meta does not list (stored or named).
    let own = catalog.layout().backup_prefix(name);
    let in_manifest: HashSet<&str> = manifest.objects.iter().map(|e| e.key.as_str()).collect();
    let in_folder: Vec<&str> = stored
        .keys()
        .filter_map(|k| k.strip_prefix(own.as_str()))
        .filter(|rel| rel.starts_with("binlogs/"))
        .collect();
    let keys: HashSet<&str> = in_manifest.iter().chain(&in_folder).copied().collect();
    let mut found = unlisted_delete_logs(
        catalog.layout(),
        name,
        info.collection_backups.iter(),
        &keys,
    );
    found.extend(segments_without_inserts(
        catalog.layout(),
        name,
        info.collection_backups.iter(),
        &keys,
    ));
    for rel in in_folder.iter().filter(|rel| !in_manifest.contains(*rel)) {
        if !found.iter().any(|(key, _)| key == rel) {
            found.push((rel.to_string(), NOT_IN_CHECKSUMS.to_string()));
        }
    }
    let mut progress = VerifyProgress {
        objects_total: manifest.objects.len() as u64,
        bytes_total: manifest.objects.iter().map(|o| o.size).sum(),
        ..Default::default()
    };
    on_progress(&progress);
    let mut checks = futures::stream::iter(manifest.objects)
        .map(|entry| {
            let key = catalog.object_key(name, &entry);
            let stored = stored.get(&key).copied();
            async move {
                let problem = match size_problem(&entry, stored) {
                    Some(p) => Some(p),
                    None => content_problem(catalog, &key, &entry).await?,
                };
                Ok::<_, Error>((entry, problem))
            }
        })
        .buffer_unordered(VERIFY_PARALLELISM);
    while let Some((entry, problem)) = checks.try_next().await? {
        progress.objects_done += 1;
        progress.bytes_done += entry.size;
        if let Some(problem) = problem {
            let problem = match entry.home.as_str() {
                "" => problem,
                home => format!("{problem}; the object is held by backup {home:?}"),
            };
            progress.problems.push(ObjectProblem {
                key: entry.key,
                problem,
            });
        }
        on_progress(&progress);
    }
    // Damage to an object is damage for every backup that reuses it; what
    // `found` names is this backup's meta disagreeing with its folder.
    if !progress.problems.is_empty() {
        name_referencing_backups(catalog, name, &mut progress).await;
    }
    for (key, problem) in found {
        progress.problems.push(ObjectProblem { key, problem });
    }
    progress.problems.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(progress)
}

/// The delete logs among `keys` (relative to backup `name`'s folder) stored
/// in the folder of a data segment of `collections` whose meta lists none,
/// each with its problem. A partition's delete-log folder is imported only
/// when its meta lists delete logs, so restored without them, rows deleted
/// before the backup would come back: the meta and the objects disagree.
pub fn unlisted_delete_logs<'a>(
    layout: &BackupLayout,
    name: &str,
    collections: impl Iterator<Item = &'a CollectionBackupInfo>,
    keys: &HashSet<&str>,
) -> Vec<(String, String)> {
    let keys: BTreeSet<&str> = keys.iter().copied().collect();
    let mut found = Vec::new();
    for (c, part, s) in data_segments(collections) {
        if s.deltalogs.iter().any(|f| !f.binlogs.is_empty()) {
            continue;
        }
        let seg_dir = segment_dir(layout, name, LogKind::Delta, c, part, s);
        if let Some(key) = first_under(&keys, &seg_dir) {
            let problem = format!(
                "a delete log of segment {} that the meta does not list: restored \
                 without it, rows deleted before the backup would come back",
                s.segment_id
            );
            found.push((key.to_string(), problem));
        }
    }
    found
}

/// The insert-log folders (relative to backup `name`'s folder) of the data
/// segments of `collections` whose meta counts rows but under which `keys`
/// hold nothing, each with its problem. Restored, those rows would be
/// missing without a word: a meta naming another collection or partition
/// than its objects (edited by hand, damaged) reads so.
pub fn segments_without_inserts<'a>(
    layout: &BackupLayout,
    name: &str,
    collections: impl Iterator<Item = &'a CollectionBackupInfo>,
    keys: &HashSet<&str>,
) -> Vec<(String, String)> {
    let keys: BTreeSet<&str> = keys.iter().copied().collect();
    data_segments(collections)
        .filter(|(_, _, s)| s.num_of_rows > 0)
        .filter_map(|(c, part, s)| {
            let seg_dir = segment_dir(layout, name, LogKind::Insert, c, part, s);
            first_under(&keys, &seg_dir).is_none().then(|| {
                let problem = format!(
                    "no insert log of segment {}, which has {} rows in the meta: restored, \
                     they would be missing",
                    s.segment_id, s.num_of_rows
                );
                (seg_dir, problem)
            })
        })
        .collect()
}

/// The data (not L0) segments of `collections`, with their collection and
/// partition.
fn data_segments<'a>(
    collections: impl Iterator<Item = &'a CollectionBackupInfo>,
) -> impl Iterator<
    Item = (
        &'a CollectionBackupInfo,
        &'a PartitionBackupInfo,
        &'a SegmentBackupInfo,
    ),
> {
    collections.flat_map(|c| {
        c.partition_backups.iter().flat_map(move |part| {
            part.segment_backups
                .iter()
                .filter(|s| !s.is_l0)
                .map(move |s| (c, part, s))
        })
    })
}

/// The folder of segment `s`'s logs of `kind`, relative to backup `name`'s
/// folder, ending with `/`.
fn segment_dir(
    layout: &BackupLayout,
    name: &str,
    kind: LogKind,
    c: &CollectionBackupInfo,
    part: &PartitionBackupInfo,
    s: &SegmentBackupInfo,
) -> String {
    let dir = layout.partition_dir(name, kind, c.collection_id, part.partition_id);
    let rel = &dir[layout.backup_prefix(name).len()..];
    match s.group_id {
        0 => format!("{rel}{}/", s.segment_id),
        g => format!("{rel}{g}/{}/", s.segment_id),
    }
}

/// The first of `keys` under folder `dir`.
fn first_under<'k>(keys: &BTreeSet<&'k str>, dir: &'k str) -> Option<&'k str> {
    keys.range(dir..)
        .next()
        .copied()
        .filter(|k| k.starts_with(dir))
}

/// Adds to each damaged object the other backups that reference it: an
/// object of this backup's folder that later incremental backups reuse is
/// damaged for them too. A backup whose checksums cannot be read (or a
/// listing that fails) is named as unknown, never in the way of the report.
async fn name_referencing_backups(catalog: &Catalog, name: &str, progress: &mut VerifyProgress) {
    let manifest = match catalog.read_manifest(name).await {
        Ok(m) => m.unwrap_or_default(),
        Err(e) => return note_unknown(progress, &e.to_string()),
    };
    let key_of = |damaged: &str| {
        manifest
            .objects
            .iter()
            .find(|e| e.key == damaged)
            .map(|e| catalog.object_key(name, e))
    };
    let damaged: HashSet<String> = progress
        .problems
        .iter()
        .filter_map(|p| key_of(&p.key))
        .collect();
    let mut unreadable = Vec::new();
    let read = catalog
        .references_reading(name, |k| damaged.contains(k), |other, e| {
            tracing::warn!(backup = %other, error = %e, "verify: cannot read a backup that may reference damaged objects");
            unreadable.push(other);
            Ok(())
        })
        .await;
    let refs = match read {
        Ok(refs) => refs,
        Err(e) => return note_unknown(progress, &e.to_string()),
    };
    unreadable.sort();
    for p in &mut progress.problems {
        let key = key_of(&p.key);
        if let Some(others) = key.as_ref().and_then(|k| refs.get(k)) {
            p.problem = format!("{}; also referenced by backups {others:?}", p.problem);
        }
        if key.is_some() && !unreadable.is_empty() {
            p.problem = format!(
                "{}; backups {unreadable:?} could not be read and may reference it too",
                p.problem
            );
        }
    }
}

/// Says on each damaged object that the backups referencing it are unknown.
fn note_unknown(progress: &mut VerifyProgress, why: &str) {
    tracing::warn!(error = %why, "verify: cannot tell which other backups reference damaged objects");
    for p in &mut progress.problems {
        p.problem = format!(
            "{}; which other backups reference it is unknown: {why}",
            p.problem
        );
    }
}

/// Reads one object (`key` in the backup store) and compares its CRC32C (or
/// MD5 with the ETag) with the manifest's; streams, with flat memory.
pub async fn content_problem(
    catalog: &Catalog,
    key: &str,
    entry: &ManifestEntry,
) -> Result<Option<String>> {
    Ok(content_check(catalog, key, entry).await?.0)
}

/// [`content_problem`], with the CRC32C of the bytes read (`None` for an
/// object decoded instead, or missing): what a copy of them is compared with
/// where the manifest has only an MD5 ETag.
pub async fn content_check(
    catalog: &Catalog,
    key: &str,
    entry: &ManifestEntry,
) -> Result<(Option<String>, Option<u32>)> {
    // A read cut off mid-body is read again from the start.
    let read = crate::retry::retry(
        crate::retry::Backoff::COPY,
        crate::retry::storage_transient,
        || read_and_compare(catalog, key, entry),
    )
    .await;
    gone_is_missing(read)
}

/// An object listed but gone by the time it is read is missing: damage to
/// name, not a failure of the check.
fn gone_is_missing<T: Default>(read: Result<(Option<String>, T)>) -> Result<(Option<String>, T)> {
    match read {
        Err(Error::NotFound { kind: "object", .. }) => Ok((Some("missing".into()), T::default())),
        read => read,
    }
}

async fn read_and_compare(
    catalog: &Catalog,
    key: &str,
    entry: &ManifestEntry,
) -> Result<(Option<String>, Option<u32>)> {
    // The CRC32C always (cheap, and what a streamed copy computes); the MD5
    // only to compare with an ETag the manifest holds instead.
    let want_md5 = entry.crc32c.is_none().then(|| entry.md5()).flatten();
    if entry.crc32c.is_none() && want_md5.is_none() {
        // No digest (a server-side copy in parts): decoded as Milvus would.
        return Ok((decode_problem(catalog, key).await?, None));
    }
    let (_, mut body) = catalog.read_stream(key).await?;
    let mut crc = 0u32;
    let mut md5 = md5::Md5::new();
    while let Some(chunk) = body.try_next().await? {
        crc = crc32c::crc32c_append(crc, &chunk);
        if want_md5.is_some() {
            md5.update(&chunk);
        }
    }
    if let Some(want) = entry.crc32c {
        let problem =
            (crc != want).then(|| format!("altered: crc32c {crc:08x}, expected {want:08x}"));
        return Ok((problem, Some(crc)));
    }
    if let Some(want) = want_md5 {
        let got: [u8; 16] = md5.finalize().into();
        let problem =
            (got != want).then(|| "altered: MD5 differs from the recorded ETag".to_string());
        return Ok((problem, Some(crc)));
    }
    Ok((None, Some(crc)))
}

/// Reads object `key` and decodes it as Milvus's reader would (for objects
/// without a digest); streams through a temporary file. A read error of the
/// store is retried whole (a body cut off midway is not damage); what then
/// fails to decode is named.
pub async fn decode_problem(catalog: &Catalog, key: &str) -> Result<Option<String>> {
    Ok(decode_with_digest(catalog, key).await?.problem)
}

/// What decoding an object found, and the digests of the bytes decoded.
#[derive(Debug, Default)]
pub struct Decoded {
    pub problem: Option<String>,
    /// The bytes decoded; `None` when the object is missing.
    pub size: Option<u64>,
    pub crc32c: Option<u32>,
    pub md5: Option<[u8; 16]>,
}

/// [`decode_problem`], with the digests of the bytes decoded.
pub async fn decode_with_digest(catalog: &Catalog, key: &str) -> Result<Decoded> {
    let outcome = crate::retry::retry(
        crate::retry::Backoff::COPY,
        crate::retry::storage_transient,
        || async {
            let (_, body) = catalog.read_stream(key).await?;
            let seen =
                std::sync::Arc::new(std::sync::Mutex::new((None, 0u32, md5::Md5::new(), 0u64)));
            let watch = seen.clone();
            let body: crate::storage::ByteStream =
                Box::pin(futures::StreamExt::inspect(body, move |item| {
                    let mut seen = watch.lock().expect("read state");
                    match item {
                        Ok(chunk) => {
                            seen.1 = crc32c::crc32c_append(seen.1, chunk);
                            seen.2.update(chunk);
                            seen.3 += chunk.len() as u64;
                        }
                        Err(e) => seen.0 = Some(e.to_string()),
                    }
                }));
            let result =
                crate::milvus::binlog::check_binlog_in(&std::env::temp_dir(), body).await?;
            let (error, crc, md5, size) = std::mem::take(&mut *seen.lock().expect("read state"));
            if let Some(reason) = error {
                return Err(Error::Storage {
                    operation: "GetObject",
                    key: key.to_string(),
                    reason,
                });
            }
            Ok((result, crc, <[u8; 16]>::from(md5.finalize()), size))
        },
    )
    .await;
    match outcome {
        Ok((decoded, crc, md5, size)) => Ok(Decoded {
            problem: decoded
                .err()
                .map(|reason| format!("does not decode as a Milvus binlog: {reason}")),
            size: Some(size),
            crc32c: Some(crc),
            md5: Some(md5),
        }),
        Err(e) => Ok(Decoded {
            problem: gone_is_missing::<()>(Err(e))?.0,
            ..Decoded::default()
        }),
    }
}

/// Before a restore: every object the backup needs is there with its size.
/// With a manifest, object by object; without one (Go-tool backups), the
/// binlogs the meta lists are counted against those stored.
pub async fn check_present(catalog: &Catalog, name: &str, info: &BackupInfo) -> Result<()> {
    let manifest = catalog.read_manifest(name).await?;
    let stored = catalog
        .stored_sizes(
            name,
            manifest.as_ref().unwrap_or(&Manifest::default()),
            &[String::new()],
        )
        .await?;
    let problems: Vec<String> = match &manifest {
        Some(m) => m
            .objects
            .iter()
            .filter_map(|e| {
                let stored = stored.get(&catalog.object_key(name, e)).copied();
                size_problem(e, stored).map(|p| format!("{} ({p})", e.key))
            })
            .collect(),
        None => {
            let expected: usize = info
                .collection_backups
                .iter()
                .map(CollectionBackupInfo::binlog_count)
                .sum();
            let binlogs = format!("{}binlogs/", catalog.layout().backup_prefix(name));
            let found = stored.keys().filter(|k| k.starts_with(&binlogs)).count();
            if found < expected {
                vec![format!(
                    "{} of {expected} binlogs are missing",
                    expected - found
                )]
            } else {
                vec![]
            }
        }
    };
    if problems.is_empty() {
        return Ok(());
    }
    Err(Error::DataLoss(format!(
        "backup {name:?} is damaged, nothing was restored: {}",
        problems.join("; ")
    )))
}
