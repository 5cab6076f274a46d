//! The restore flow: check the request against the backup and Milvus, then
//! recreate each collection and import its binlogs.

pub mod cleanup;
mod ended;
mod imports;
mod job;
pub mod prove;
mod run;
mod staging;
mod swap;

use std::collections::HashSet;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::jobs::{RestoreCollectionStatus, RestoreSnapshot};
use crate::meta::manifest::Manifest;
use crate::meta::model::{BackupInfo, CollectionBackupInfo, CollectionSchema};
use crate::milvus::MilvusVersion;
use crate::model::{CollectionRef, RestoreRequest};

pub use cleanup::{Cleaned, Outcome, clean_up};
pub use ended::{abandon, clean_up_again, cleanup_unfinished};
pub use job::RestoreJob;
use run::run;
use run::staging_prefix;

/// One collection to restore.
#[derive(Debug, Clone)]
pub struct RestoreTarget {
    pub source: CollectionBackupInfo,
    pub target: CollectionRef,
    /// The target exists now (and will be replaced, or imported into).
    pub exists: bool,
    /// The id of the existing target: a replace drops it only while it still has this id.
    pub original_id: Option<i64>,
}

/// Resolves the request against the backup before any job starts: which
/// collections, restored to which targets (see [`check_targets`] for Milvus).
pub async fn plan(ctx: &Context, req: &RestoreRequest) -> Result<(BackupInfo, Vec<RestoreTarget>)> {
    let name = req.backup_name();
    let backup = ctx
        .catalog
        .read(name)
        .await?
        .ok_or_else(|| Error::not_found("backup", name.as_str()))?;
    // A folder copied by hand keeps the name of the backup it came from in its
    // meta, and names inside the meta would lead to that backup's objects.
    if backup.name != name.as_str() {
        return Err(Error::FailedPrecondition(format!(
            "backup folder {:?} holds the meta of backup {:?}; restore {:?} itself, \
             or copy the folder with its meta renamed",
            name.as_str(),
            backup.name,
            backup.name
        )));
    }
    if !req.meta_only() {
        crate::meta::verify::check_present(&ctx.catalog, name, &backup).await?;
    }

    let in_backup = |c: &CollectionRef| {
        backup
            .collection_backups
            .iter()
            .find(|b| CollectionRef::normalized(&b.db_name, &b.collection_name) == *c)
    };
    for c in req.collections().iter().chain(req.renames().keys()) {
        if in_backup(c).is_none() {
            return Err(Error::not_found(
                "collection in backup",
                format!("{c} (backup {:?})", name.as_str()),
            ));
        }
    }
    let db_of = |b: &CollectionBackupInfo| {
        CollectionRef::normalized(&b.db_name, &b.collection_name)
            .db()
            .to_string()
    };
    for db in req.databases() {
        if !backup.collection_backups.iter().any(|b| &db_of(b) == db) {
            return Err(Error::not_found(
                "database in backup",
                format!("{db} (backup {:?})", name.as_str()),
            ));
        }
    }
    // Named collections and whole databases, in the backup's order, once.
    let selected: Vec<&CollectionBackupInfo> =
        if req.collections().is_empty() && req.databases().is_empty() {
            backup.collection_backups.iter().collect()
        } else {
            backup
                .collection_backups
                .iter()
                .filter(|b| {
                    req.databases().contains(&db_of(b))
                        || req
                            .collections()
                            .contains(&CollectionRef::normalized(&b.db_name, &b.collection_name))
                })
                .collect()
        };
    // A rename must name a restored collection: one left out would be ignored.
    for source in req.renames().keys() {
        let restored = selected
            .iter()
            .any(|b| CollectionRef::normalized(&b.db_name, &b.collection_name) == *source);
        if !restored {
            return Err(Error::invalid(format!(
                "collection_renames names {source}, which this restore does not restore \
                 (not in collection_names or database_names)"
            )));
        }
    }

    let mut targets = Vec::with_capacity(selected.len());
    let mut seen = HashSet::new();
    for src in &selected {
        partitions_once(name.as_str(), src)?;
    }
    for src in selected {
        let source = CollectionRef::normalized(&src.db_name, &src.collection_name);
        let target = req.target_of(&source)?;
        if !seen.insert(target.clone()) {
            return Err(Error::invalid(format!(
                "two collections would be restored to {target}"
            )));
        }
        targets.push(RestoreTarget {
            source: src.clone(),
            target,
            exists: false,
            original_id: None,
        });
    }
    Ok((backup, targets))
}

/// Each partition of `src` once, by name and by id: imports are followed by
/// partition name, so a meta naming one twice (edited by hand, or damaged)
/// would import one and count it twice.
fn partitions_once(backup: &str, src: &CollectionBackupInfo) -> Result<()> {
    let (mut names, mut ids) = (HashSet::new(), HashSet::new());
    for p in &src.partition_backups {
        let again = match (names.insert(&p.partition_name), ids.insert(p.partition_id)) {
            (false, _) => format!("partition {:?}", p.partition_name),
            (_, false) => format!("partition id {}", p.partition_id),
            _ => continue,
        };
        return Err(Error::DataLoss(format!(
            "backup {backup:?} is damaged: its meta names {again} of collection {}.{} twice",
            src.db_name, src.collection_name
        )));
    }
    Ok(())
}

/// The encoded schema a restore of `src` sends Milvus (under another name).
pub(super) fn schema_sent(src: &CollectionBackupInfo) -> Result<bytes::Bytes> {
    use base64::Engine as _;
    if src.schema_proto_base64.is_empty() {
        return crate::meta::schema::from_meta(&src.schema);
    }
    base64::engine::general_purpose::STANDARD
        .decode(&src.schema_proto_base64)
        .map(Into::into)
        .map_err(|e| {
            Error::DataLoss(format!(
                "collection {}: bad schema bytes: {e}",
                src.collection_name
            ))
        })
}

/// A collection whose schema has a type or a flag the target Milvus does not
/// have: Milvus 2.3 makes it all the same (ignoring the flag, keeping a type
/// it cannot read), and its import could then misread or fail on the data.
fn check_schema_fits(src: &CollectionBackupInfo, version: &MilvusVersion) -> Result<()> {
    use prost::Message as _;
    let sent = schema_sent(src)?;
    let schema =
        crate::milvus::proto::schema::CollectionSchema::decode(sent.as_ref()).map_err(|e| {
            Error::DataLoss(format!(
                "collection {}: bad schema bytes: {e}",
                src.collection_name
            ))
        })?;
    match version.lacks(&schema) {
        None => Ok(()),
        Some(what) => Err(Error::FailedPrecondition(format!(
            "collection {}.{} of the backup has {what}, which Milvus {version} does not \
             have; restore it into a Milvus that does",
            src.db_name, src.collection_name
        ))),
    }
}

/// Checks each target against Milvus: it must not exist unless it is to be
/// replaced or imported into (then with a compatible schema); records the id
/// of an existing one. Run while the job holds the targets' leases, so that
/// a concurrent restore into the same target is named, not mistaken for a
/// collection that was there before.
pub async fn check_targets(
    ctx: &Context,
    req: &RestoreRequest,
    targets: &mut [RestoreTarget],
) -> Result<()> {
    let version = ctx.milvus.version().await?;
    for t in targets {
        let target = &t.target;
        // Also into an existing collection: one 2.3 made with such a schema
        // (it accepts one) would take the data all the same.
        check_schema_fits(&t.source, &version)?;
        let has_l0 = !t.source.l0_segments.is_empty()
            || t.source
                .partition_backups
                .iter()
                .any(|p| p.segment_backups.iter().any(|s| s.is_l0));
        if has_l0 && !version.has_l0_segments() && !req.meta_only() {
            return Err(Error::FailedPrecondition(format!(
                "collection {} of the backup has L0 delete segments; Milvus {version} cannot import them",
                t.source.collection_name
            )));
        }
        let original_id = ctx.milvus.collection_id(target.db(), target.name()).await?;
        let exists = original_id.is_some();
        if exists && !req.drop_existing() && !req.skip_create() {
            return Err(Error::FailedPrecondition(format!(
                "target collection {target} already exists; drop it, rename the target, \
                 or ask for drop_existing_collections"
            )));
        }
        if !exists && req.skip_create() {
            return Err(Error::FailedPrecondition(format!(
                "skip_create_collection was asked but target collection {target} does not exist"
            )));
        }
        if exists {
            let current = ctx
                .milvus
                .describe_collection(target.db(), target.name())
                .await?;
            let schema = crate::meta::schema::to_meta(&current.schema)?;
            // Milvus resolves an alias to its collection: replacing or
            // importing "into an alias" would act on another name.
            if schema.name != target.name() {
                return Err(Error::FailedPrecondition(format!(
                    "target {target} is an alias of collection {}; restore into the \
                     collection's own name",
                    schema.name
                )));
            }
            // Milvus drops a collection's aliases with it.
            if req.drop_existing() && !current.aliases.is_empty() {
                return Err(Error::FailedPrecondition(format!(
                    "target {target} has aliases {:?}, which Milvus would drop with it in a \
                     replace; move them elsewhere (AlterAlias) or drop them first",
                    current.aliases
                )));
            }
            if req.skip_create() {
                check_compatible(&t.source.schema, &schema, target)?;
                if req.restore_index() {
                    check_indexes(ctx, t).await?;
                }
                let has_key = t.source.schema.fields.iter().any(|f| f.is_partition_key);
                let backed_up = t.source.partition_backups.len() as i64;
                if has_key && current.num_partitions != backed_up {
                    return Err(Error::FailedPrecondition(format!(
                        "skip_create_collection: {target} routes its partition key over {} \
                         partitions, the backup over {backed_up}; rows would land where \
                         queries do not look",
                        current.num_partitions
                    )));
                }
            }
        }
        if req.load() {
            check_loadable(ctx, req, t, exists).await?;
        }
        t.exists = exists;
        t.original_id = original_id;
    }
    Ok(())
}

/// With `load`: Milvus 2.3 refuses to load a collection with a vector field
/// that has no index, so a restore asked to load one would fail after all
/// its imports (and its cleanup drop what it imported). Refused before
/// anything changes. The indexes counted are the backup's, with
/// `restore_index`, and those a `skip_create_collection` target has.
async fn check_loadable(
    ctx: &Context,
    req: &RestoreRequest,
    t: &RestoreTarget,
    exists: bool,
) -> Result<()> {
    use crate::milvus::proto::schema::DataType;
    let mut indexed: Vec<String> = Vec::new();
    if req.restore_index() {
        indexed.extend(t.source.index_infos.iter().map(|i| i.field_name.clone()));
    }
    if exists && req.skip_create() {
        let target = &t.target;
        let have = ctx
            .milvus
            .describe_indexes(target.db(), target.name())
            .await?;
        indexed.extend(have.into_iter().map(|i| i.field_name));
    }
    let unindexed: Vec<&str> = t
        .source
        .schema
        .fields
        .iter()
        .filter(|f| {
            matches!(
                DataType::try_from(f.data_type),
                Ok(DataType::BinaryVector
                    | DataType::FloatVector
                    | DataType::Float16Vector
                    | DataType::BFloat16Vector
                    | DataType::SparseFloatVector)
            )
        })
        .map(|f| f.name.as_str())
        .filter(|name| !indexed.iter().any(|i| i == name))
        .collect();
    if unindexed.is_empty() {
        return Ok(());
    }
    let backed_up = t
        .source
        .index_infos
        .iter()
        .any(|i| unindexed.contains(&i.field_name.as_str()));
    let advice = if !req.restore_index() && backed_up {
        "ask for restore_index as well, or restore without load"
    } else {
        "the backup has no index on it: restore without load, then create the index and load"
    };
    Err(Error::FailedPrecondition(format!(
        "load was asked for {}, but its vector field(s) {unindexed:?} would have no index, \
         and Milvus loads no collection without one; {advice}",
        t.target
    )))
}

/// With `skip_create_collection` and `restore_index`: Milvus keeps one index
/// per field, so an existing index that is not the backup's (by name, type
/// and metric) would fail the job after its rows were imported, and one
/// with the backup's index name on another field would leave the backup's
/// field unindexed (a load then fails). Refused before anything changes.
async fn check_indexes(ctx: &Context, t: &RestoreTarget) -> Result<()> {
    let target = &t.target;
    let existing = ctx
        .milvus
        .describe_indexes(target.db(), target.name())
        .await?;
    indexes_fit(target, &existing, &t.source.index_infos)
}

/// Whether the indexes `existing` on collection `target` are the backup's
/// `wanted` or leave room for them (see [`check_indexes`]); also checked
/// again before the restore makes them, for one made meanwhile.
pub(crate) fn indexes_fit(
    target: &CollectionRef,
    existing: &[crate::milvus::IndexInfo],
    wanted: &[crate::meta::model::IndexInfo],
) -> Result<()> {
    for want in wanted {
        // The restore makes an index by name, and one of that name is taken
        // as made: on another field it would leave this field unindexed.
        if let Some(clash) = existing
            .iter()
            .find(|e| e.name == want.index_name && e.field_name != want.field_name)
        {
            return Err(Error::FailedPrecondition(format!(
                "restore_index: {target} has an index named {:?} on field {}, the backup's of \
                 that name is on field {}; drop or rename that index, or restore without \
                 restore_index",
                clash.name, clash.field_name, want.field_name
            )));
        }
        let Some(have) = existing.iter().find(|e| e.field_name == want.field_name) else {
            continue;
        };
        let param = |k: &str| {
            have.params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let same = have.name == want.index_name
            && ["index_type", "metric_type"]
                .iter()
                .all(|k| param(k) == want.params.get(*k).map(String::as_str));
        if !same {
            return Err(Error::FailedPrecondition(format!(
                "restore_index: field {} of {target} has index {:?} ({:?}), the backup's is \
                 {:?} ({:?}); Milvus keeps one index per field: drop that index, or restore \
                 without restore_index",
                want.field_name,
                have.name,
                param("index_type").unwrap_or_default(),
                want.index_name,
                want.index_type
            )));
        }
    }
    Ok(())
}

/// What must match of a field: name, type, primary key, partition key,
/// element type, type params.
type FieldShape = (String, i32, bool, bool, i32, Vec<(String, String)>);

/// An existing collection can take the backup's data only with the same fields:
/// same names, types, primary key and type parameters (such as `dim`).
pub(crate) fn check_compatible(
    backup: &CollectionSchema,
    existing: &CollectionSchema,
    target: &CollectionRef,
) -> Result<()> {
    let shape = |s: &CollectionSchema| -> Vec<FieldShape> {
        s.fields
            .iter()
            .filter(|f| !f.is_dynamic)
            .map(|f| {
                let mut params: Vec<(String, String)> = f
                    .type_params
                    .iter()
                    .map(|p| (p.key.clone(), p.value.clone()))
                    .collect();
                params.sort();
                (
                    f.name.clone(),
                    f.data_type,
                    f.is_primary_key,
                    f.is_partition_key,
                    f.element_type,
                    params,
                )
            })
            .collect()
    };
    let (want, have) = (shape(backup), shape(existing));
    if want == have && backup.enable_dynamic_field == existing.enable_dynamic_field {
        return Ok(());
    }
    let diff = want
        .iter()
        .zip(&have)
        .find(|(a, b)| a != b)
        .map(|(a, b)| format!("field {:?} in the backup vs {:?} in {target}", a, b))
        .unwrap_or_else(|| {
            format!(
                "{} fields (dynamic {}) in the backup vs {} fields (dynamic {}) in {target}",
                want.len(),
                backup.enable_dynamic_field,
                have.len(),
                existing.enable_dynamic_field
            )
        });
    Err(Error::FailedPrecondition(format!(
        "skip_create_collection: existing collection {target} does not match the backup's schema: {diff}"
    )))
}

/// Where the binlogs come from and what the target Milvus is.
struct Place<'a> {
    pub backup_name: &'a str,
    /// The staging prefix in Milvus's bucket, when the backup lives elsewhere
    /// or is incremental.
    pub staging: Option<&'a str>,
    /// An incremental backup's manifest: where each of its objects is stored.
    pub reused: Option<&'a Manifest>,
    /// What the verify phase proved: each staged copy is checked against it
    /// before Milvus is asked to import it.
    pub proven: &'a prove::Proven,
    pub version: MilvusVersion,
    /// Where the staging copies run: the job's cleanup waits for them.
    pub in_flight: &'a tokio_util::task::TaskTracker,
}

/// This target's entry in the job's snapshot.
fn status<'a>(s: &'a mut RestoreSnapshot, t: &RestoreTarget) -> &'a mut RestoreCollectionStatus {
    s.collections
        .iter_mut()
        .find(|c| c.target == t.target)
        .expect("every target has a status")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::model::PartitionBackupInfo;

    #[test]
    fn a_partition_named_twice_by_name_or_by_id_is_refused() {
        let part = |id, name: &str| PartitionBackupInfo {
            partition_id: id,
            partition_name: name.into(),
            ..Default::default()
        };
        let coll = |partition_backups| CollectionBackupInfo {
            db_name: "default".into(),
            collection_name: "c".into(),
            partition_backups,
            ..Default::default()
        };
        assert!(partitions_once("b", &coll(vec![part(1, "p0"), part(2, "p1")])).is_ok());
        let err = partitions_once("b", &coll(vec![part(1, "p0"), part(1, "p1")])).unwrap_err();
        assert!(
            matches!(&err, Error::DataLoss(m) if m.contains("partition id 1")),
            "{err}"
        );
        let err = partitions_once("b", &coll(vec![part(1, "p0"), part(2, "p0")])).unwrap_err();
        assert!(
            matches!(&err, Error::DataLoss(m) if m.contains("partition \"p0\"")),
            "{err}"
        );
    }
}
