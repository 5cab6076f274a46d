//! The verify phase: before a restore changes anything in Milvus, every object
//! that Milvus's import will read is proven intact. Milvus 2.3.5's import
//! panics the whole server on a damaged binlog, so nothing unproven reaches it.
//!
//! Import reads whole folders (a partition's insert and delta logs), so the
//! proof covers every object stored under those folders, not only the ones the
//! meta lists:
//! - with `meta/checksums.json` (our backups), each object must be in it, with
//!   its size, and its content must match its CRC32C (or MD5 ETag);
//! - without it (the Go tool's backups), each binlog is decoded as Milvus's
//!   reader would decode it ([`crate::milvus::binlog::check_binlog`]).

use std::collections::{BTreeMap, HashMap};

use futures::{StreamExt, TryStreamExt};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::jobs::{JobHandle, RestoreSnapshot};
use crate::meta::LogKind;
use crate::meta::manifest::ManifestEntry;
use crate::meta::manifest::md5_of_etag;
use crate::meta::verify::{
    NOT_IN_CHECKSUMS, content_check, segments_without_inserts, size_problem, unlisted_delete_logs,
};
use crate::restore::RestoreTarget;
use crate::storage::{Copied, ObjectInfo};

/// Objects proven at once.
const PROVE_PARALLELISM: usize = 8;

/// The folders, in the backup store, that Milvus's imports of `targets` read.
pub fn import_dirs(ctx: &Context, backup_name: &str, targets: &[RestoreTarget]) -> Vec<String> {
    let layout = ctx.catalog.layout();
    let mut dirs = Vec::new();
    for t in targets {
        let src = &t.source;
        for part in &src.partition_backups {
            let data = part.segment_backups.iter().any(|s| !s.is_l0);
            if data {
                for kind in [LogKind::Insert, LogKind::Delta] {
                    dirs.push(layout.partition_dir(
                        backup_name,
                        kind,
                        src.collection_id,
                        part.partition_id,
                    ));
                }
            }
        }
        // L0 segments' deletes, partition-level and collection-level alike.
        let l0 = src
            .partition_backups
            .iter()
            .flat_map(|p| p.segment_backups.iter().filter(|s| s.is_l0))
            .chain(&src.l0_segments);
        for seg in l0 {
            dirs.push(l0_dir(
                ctx,
                backup_name,
                src.collection_id,
                seg.partition_id,
                seg.segment_id,
            ));
        }
    }
    dirs.sort();
    dirs.dedup();
    // A folder inside another one (an L0 segment's, inside its partition's) is listed with it.
    let all = dirs.clone();
    dirs.retain(|d| !all.iter().any(|o| o != d && d.starts_with(o.as_str())));
    dirs
}

/// The folder of one L0 segment's deletes.
pub fn l0_dir(ctx: &Context, backup_name: &str, coll: i64, part: i64, seg: i64) -> String {
    format!(
        "{}{seg}/",
        ctx.catalog
            .layout()
            .partition_dir(backup_name, LogKind::Delta, coll, part)
    )
}

/// What the proof read of one object: its size and the digests it was
/// proven with (the checksums recorded, or those of the bytes decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    size: u64,
    crc32c: Option<u32>,
    md5: Option<[u8; 16]>,
}

impl Proof {
    /// Whether a copy of `size` bytes, with `copied`'s digests, is what was
    /// proven: the sizes agree, and the CRC32Cs, else the MD5s, where both
    /// sides have one (a server-side copy of an object proven only by CRC32C
    /// cannot be compared further).
    pub fn matches(&self, size: u64, copied: &Copied) -> bool {
        if size != self.size {
            return false;
        }
        match (self.crc32c, copied.crc32c) {
            (Some(proven), Some(got)) => proven == got,
            _ => match (self.md5, copied.etag.as_deref().and_then(md5_of_etag)) {
                (Some(proven), Some(got)) => proven == got,
                _ => true,
            },
        }
    }
}

/// What the proof read, by key relative to the backup's folder (ordered, so
/// that the objects under one folder are found without a scan).
pub type Proven = BTreeMap<String, Proof>;

/// Proves every object under the import folders of `targets`; fails with
/// [`Error::DataLoss`] naming each damaged object. Publishes its progress.
/// Returns what it proved when `keep` (the objects are staged next), else
/// nothing.
pub async fn prove(
    ctx: &Context,
    backup_name: &str,
    targets: &[RestoreTarget],
    keep: bool,
    job: &JobHandle<RestoreSnapshot>,
) -> Result<Proven> {
    let dirs = import_dirs(ctx, backup_name, targets);
    let prefix = ctx.catalog.layout().backup_prefix(backup_name);
    let rel_dirs: Vec<String> = dirs.iter().map(|d| d[prefix.len()..].to_string()).collect();
    // Each object by its key relative to a backup folder, and where it is stored.
    let mut objects: Vec<(String, ObjectInfo)> = Vec::new();
    for dir in &dirs {
        for o in ctx.catalog.store().list(dir).await? {
            objects.push((o.key[prefix.len()..].to_string(), o));
        }
    }
    let manifest = ctx.catalog.read_manifest(backup_name).await?;
    if let Some(m) = &manifest {
        // An incremental backup's objects reused from earlier backups' folders.
        let under = |e: &ManifestEntry| rel_dirs.iter().any(|d| e.key.starts_with(d.as_str()));
        if m.objects.iter().any(|e| !e.home.is_empty() && under(e)) {
            let stored = ctx.catalog.stored_sizes(backup_name, m, &rel_dirs).await?;
            for e in m.objects.iter().filter(|e| !e.home.is_empty() && under(e)) {
                let key = ctx.catalog.object_key(backup_name, e);
                if let Some(&size) = stored.get(&key) {
                    let etag = None;
                    objects.push((e.key.clone(), ObjectInfo { key, size, etag }));
                }
            }
        }
    }
    let manifest: Option<HashMap<String, ManifestEntry>> =
        manifest.map(|m| m.objects.into_iter().map(|e| (e.key.clone(), e)).collect());
    // Every object the backup holds under those folders must be there: a
    // missing one would make the import quietly restore fewer rows.
    let mut problems = Vec::new();
    let listed: std::collections::HashSet<&str> =
        objects.iter().map(|(rel, _)| rel.as_str()).collect();
    match &manifest {
        Some(m) => {
            for (key, e) in m {
                if rel_dirs.iter().any(|d| key.starts_with(d.as_str()))
                    && !listed.contains(key.as_str())
                {
                    let held = match e.home.as_str() {
                        "" => String::new(),
                        home => format!(", held by backup {home:?}"),
                    };
                    problems.push(format!("{key} (missing{held})"));
                }
            }
        }
        None => {
            let expected: usize = targets.iter().map(|t| t.source.binlog_count()).sum();
            if objects.len() < expected {
                problems.push(format!(
                    "{} of the {expected} binlogs the meta lists are missing",
                    expected - objects.len()
                ));
            }
        }
    }
    let sources = || targets.iter().map(|t| &t.source);
    let layout = ctx.catalog.layout();
    let disagreeing = unlisted_delete_logs(layout, backup_name, sources(), &listed)
        .into_iter()
        .chain(segments_without_inserts(
            layout,
            backup_name,
            sources(),
            &listed,
        ));
    for (key, problem) in disagreeing {
        problems.push(format!("{key} ({problem})"));
    }
    let listed_count = objects.len();
    drop(listed);
    let manifest = &manifest;
    let mut checks = futures::stream::iter(objects)
        .map(|(rel, o)| async move {
            let (problem, proven) = match manifest {
                Some(m) => prove_by_checksum(ctx, m, &rel, &o).await?,
                None => decoded(ctx, &o).await?,
            };
            Ok::<_, Error>((rel, o, problem, proven))
        })
        .buffer_unordered(PROVE_PARALLELISM);
    let mut proven = Proven::new();
    while let Some((rel, o, problem, entry)) = checks.try_next().await? {
        job.update(|s| {
            s.verified_files += 1;
            s.verified_bytes += o.size;
        });
        match problem {
            Some(p) => problems.push(format!("{rel} ({p})")),
            // Keyed as the staged copies are named (`join_key` form).
            None if keep => {
                proven.insert(crate::storage::join_key([rel.as_str()]), entry);
            }
            None => {}
        }
    }
    if problems.is_empty() {
        tracing::info!(
            backup = backup_name,
            objects = listed_count,
            "every object proven before import"
        );
        return Ok(proven);
    }
    problems.sort();
    Err(Error::DataLoss(format!(
        "backup {backup_name:?} is damaged; Milvus was not touched: {} object(s) failed the check \
         before import: {}",
        problems.len(),
        problems.join("; ")
    )))
}

/// Proves object `o` against its entry in the backup's checksums; its
/// problem, or what it was proven to be.
async fn prove_by_checksum(
    ctx: &Context,
    manifest: &HashMap<String, ManifestEntry>,
    rel: &str,
    o: &ObjectInfo,
) -> Result<(Option<String>, Proof)> {
    let unproven = Proof {
        size: o.size,
        crc32c: None,
        md5: None,
    };
    let Some(entry) = manifest.get(rel) else {
        return Ok((Some(NOT_IN_CHECKSUMS.into()), unproven));
    };
    if let Some(p) = size_problem(entry, Some(o.size)) {
        return Ok((Some(p), unproven));
    }
    if entry.crc32c.is_none() && entry.md5().is_none() {
        // No digest to compare with (a multipart copy's ETag): decode it instead.
        return decoded(ctx, o).await;
    }
    let (problem, read_crc32c) = content_check(&ctx.catalog, &o.key, entry).await?;
    let proof = Proof {
        size: entry.size,
        // Also for an object the manifest knows by its MD5 only: a staged
        // copy streamed into a store whose ETag is no MD5 (parts,
        // encryption, Azure, GCS) is compared by it.
        crc32c: entry.crc32c.or(read_crc32c),
        md5: entry.md5(),
    };
    Ok((problem, proof))
}

/// Proves object `o` by decoding it as Milvus would; its problem, or what
/// it was proven to be (the digests of the bytes decoded).
async fn decoded(ctx: &Context, o: &ObjectInfo) -> Result<(Option<String>, Proof)> {
    let d = crate::meta::verify::decode_with_digest(&ctx.catalog, &o.key).await?;
    // The size of the bytes the digests are of (the object may have
    // changed since it was listed).
    let proof = Proof {
        size: d.size.unwrap_or(o.size),
        crc32c: d.crc32c,
        md5: d.md5,
    };
    Ok((d.problem, proof))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_matches_its_proof_by_size_and_each_digest_both_sides_have() {
        let md5 = [7u8; 16];
        let hex: String = md5.iter().map(|b| format!("{b:02x}")).collect();
        let proof = Proof {
            size: 10,
            crc32c: Some(42),
            md5: Some(md5),
        };
        let copied = |crc32c, etag: Option<&str>| Copied {
            crc32c,
            etag: etag.map(str::to_string),
        };
        assert!(proof.matches(10, &copied(Some(42), None)));
        assert!(
            !proof.matches(10, &copied(Some(41), None)),
            "another CRC32C"
        );
        assert!(!proof.matches(11, &copied(Some(42), None)), "another size");
        assert!(proof.matches(10, &copied(None, Some(&format!("\"{hex}\"")))));
        assert!(
            !proof.matches(10, &copied(None, Some(&"0".repeat(32)))),
            "another MD5"
        );
        assert!(
            proof.matches(10, &copied(None, Some("abc-2"))),
            "a multipart ETag"
        );
        let crc_only = Proof { md5: None, ..proof };
        assert!(crc_only.matches(10, &copied(None, Some(&"0".repeat(32)))));
    }
}
