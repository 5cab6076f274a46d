//! Staging: a backup outside Milvus's bucket, or an incremental one, is
//! copied into Milvus's bucket before its import, each copy checked against
//! what the verify phase proved.

use std::collections::HashSet;

use super::Place;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::storage::{CopyTask, join_key};

/// Where Milvus reads backup folder `dir` from: the folder itself when the
/// backup is in Milvus's bucket, its staged copy otherwise.
pub(super) fn import_path(ctx: &Context, place: &Place<'_>, dir: &str) -> String {
    match place.staging {
        None => dir.to_string(),
        Some(staging) => {
            let backup_prefix = ctx.catalog.layout().backup_prefix(place.backup_name);
            format!("{}/", join_key([staging, &dir[backup_prefix.len()..]]))
        }
    }
}

/// The import paths of backup folders `dirs`, each staged first when the
/// backup is outside Milvus's bucket or incremental.
pub(super) async fn stage(
    ctx: &Context,
    place: &Place<'_>,
    dirs: &[String],
) -> Result<Vec<String>> {
    let Some(staging) = place.staging else {
        return Ok(dirs.to_vec());
    };
    let backup_prefix = ctx.catalog.layout().backup_prefix(place.backup_name);
    let staged = |key: &str| join_key([staging, &key[backup_prefix.len()..]]);
    let mut tasks = Vec::new();
    for dir in dirs {
        match place.reused {
            // Proven before import: the manifest names every object.
            Some(m) => {
                let rel = &dir[backup_prefix.len()..];
                for e in m.objects.iter().filter(|e| e.key.starts_with(rel)) {
                    tasks.push(CopyTask {
                        dst_key: join_key([staging, &e.key]),
                        src_key: ctx.catalog.object_key(place.backup_name, e),
                        size: e.size,
                        owner: 0,
                    });
                }
            }
            None => {
                for o in ctx.catalog.store().list(dir).await? {
                    tasks.push(CopyTask {
                        dst_key: staged(&o.key),
                        src_key: o.key,
                        size: o.size,
                        owner: 0,
                    });
                }
            }
        }
    }
    // Every object proven under these folders is staged: one gone since
    // would make the import quietly restore fewer rows.
    let staged_base = join_key([staging, ""]);
    let rel_of = |dst: &str| -> Option<String> {
        Some(
            dst.strip_prefix(&staged_base)?
                .trim_start_matches('/')
                .to_string(),
        )
    };
    let to_stage: HashSet<String> = tasks.iter().filter_map(|t| rel_of(&t.dst_key)).collect();
    let mut changed: Vec<String> = Vec::new();
    for dir in dirs {
        let rel_dir = &dir[backup_prefix.len()..];
        let gone = place
            .proven
            .range(rel_dir.to_string()..)
            .take_while(|(rel, _)| rel.starts_with(rel_dir))
            .filter(|(rel, _)| !to_stage.contains(*rel));
        changed.extend(gone.map(|(rel, _)| format!("{rel} (gone)")));
    }
    // The bytes are read again to be staged: a copy whose content differs
    // from what the proof read (a flaky disk or proxy, or an object changed
    // or added since) never reaches Milvus, whose import can crash on a
    // damaged binlog.
    let changed = std::sync::Mutex::new(changed);
    ctx.copier
        .copy_all(
            ctx.catalog.store(),
            &ctx.milvus_store,
            tasks,
            place.in_flight,
            |task, copied| {
                let intact = rel_of(&task.dst_key)
                    .and_then(|rel| place.proven.get(&rel))
                    .is_some_and(|proof| proof.matches(task.size, copied));
                if !intact {
                    changed
                        .lock()
                        .expect("staging checks")
                        .push(task.src_key.clone());
                }
            },
        )
        .await?;
    let changed = changed.into_inner().expect("staging checks");
    if let Some(first) = changed.first() {
        return Err(Error::DataLoss(format!(
            "{first} (and {} more) read for staging differs from what was proven before \
             import, or was not there then; nothing of it was imported",
            changed.len() - 1
        )));
    }
    Ok(dirs.iter().map(|d| import_path(ctx, place, d)).collect())
}
