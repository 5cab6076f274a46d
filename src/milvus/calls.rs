//! The [`MilvusApi`] operations, each one call (or a few) of the proxy's gRPC API.

use async_trait::async_trait;

use super::client::{HasStatus, MilvusClient, check_status};
use super::proto::common;
use super::proto::milvus::{self as pb};
use super::{
    CollectionInfo, FlushResult, ImportPhase, ImportRequest, ImportStatus, IndexInfo, LoadShape,
    MilvusApi, MilvusVersion, NewCollection, PartitionInfo, SegmentInfo,
};
use crate::error::Result;
use tonic::Code;

/// Milvus's code for "collection not loaded" (`merr`, 2.3 and later).
const COLLECTION_NOT_LOADED: i32 = 101;

fn pairs(kv: &[common::KeyValuePair]) -> Vec<(String, String)> {
    kv.iter()
        .map(|p| (p.key.clone(), p.value.clone()))
        .collect()
}

fn kv_pairs(pairs: &[(String, String)]) -> Vec<common::KeyValuePair> {
    pairs
        .iter()
        .map(|(k, v)| common::KeyValuePair {
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}

/// The progress a GetLoadingProgress answered. A released collection
/// answers "collection not loaded" (code 101; before 2.3, only the reason
/// says it, "has not been loaded" in 2.2): 0. Any other error is one: taken for "released", a backup
/// would record a loaded collection as not loaded, and a restore would
/// release a load it did not ask.
fn loading_progress_of(op: &str, status: Option<&common::Status>, progress: i64) -> Result<i64> {
    match status {
        Some(s) if s.code == COLLECTION_NOT_LOADED => Ok(0),
        Some(s)
            if s.code == 0
                && s.error_code != 0
                && (s.reason.contains("not loaded") || s.reason.contains("not been loaded")) =>
        {
            Ok(0)
        }
        status => {
            check_status(op, status)?;
            Ok(progress)
        }
    }
}

/// Requests about one collection: `db_name` and `collection_name` set, the
/// rest default.
trait ForCollection {
    fn for_collection(db: &str, collection: &str) -> Self;
}

macro_rules! for_collection {
    ($($t:ty),* $(,)?) => {$(
        impl ForCollection for $t {
            fn for_collection(db: &str, collection: &str) -> Self {
                Self {
                    db_name: db.into(),
                    collection_name: collection.into(),
                    ..Default::default()
                }
            }
        }
    )*};
}

for_collection!(
    pb::HasCollectionRequest,
    pb::DescribeCollectionRequest,
    pb::DropCollectionRequest,
    pb::ShowPartitionsRequest,
    pb::CreatePartitionRequest,
    pb::DescribeIndexRequest,
    pb::GetLoadingProgressRequest,
    pb::GetPersistentSegmentInfoRequest,
    pb::CreateIndexRequest,
    pb::LoadCollectionRequest,
    pb::ReleaseCollectionRequest,
    pb::GetReplicasRequest,
    pb::ListImportTasksRequest,
);

/// The closure that sends a request through the generated client's `method`,
/// for [`MilvusClient::call`] and [`MilvusClient::send`].
macro_rules! via {
    ($method:ident) => {
        |mut c, r| async move { c.$method(r).await }
    };
}

#[async_trait]
impl MilvusApi for MilvusClient {
    fn address(&self) -> &str {
        &self.address
    }

    async fn version(&self) -> Result<MilvusVersion> {
        let msg = pb::GetVersionRequest {};
        let resp = self.call("GetVersion", "", msg, via!(get_version)).await?;
        Ok(MilvusVersion::parse(&resp.version))
    }

    async fn version_once(&self) -> Result<MilvusVersion> {
        let request = self.request("", pb::GetVersionRequest {});
        let resp = self.send("GetVersion", request, via!(get_version)).await?;
        check_status("GetVersion", resp.status())?;
        Ok(MilvusVersion::parse(&resp.version))
    }

    async fn list_databases(&self) -> Result<Vec<String>> {
        let req = self.request("", pb::ListDatabasesRequest::default());
        match self.inner.clone().list_databases(req).await {
            Ok(resp) => {
                let resp = resp.into_inner();
                check_status("ListDatabases", resp.status())?;
                Ok(resp.db_names)
            }
            // Servers before 2.2.9 have no databases.
            Err(s) if s.code() == Code::Unimplemented => Ok(vec![crate::model::DEFAULT_DB.into()]),
            Err(s) => Err(self.rpc_error("ListDatabases", s)),
        }
    }

    async fn create_database(&self, db: &str) -> Result<()> {
        let msg = pb::CreateDatabaseRequest {
            db_name: db.into(),
            ..Default::default()
        };
        self.command("CreateDatabase", "", msg, via!(create_database))
            .await
    }

    async fn drop_database(&self, db: &str) -> Result<()> {
        let msg = pb::DropDatabaseRequest {
            db_name: db.into(),
            ..Default::default()
        };
        self.command("DropDatabase", "", msg, via!(drop_database))
            .await
    }

    async fn list_collections(&self, db: &str) -> Result<Vec<String>> {
        let msg = pb::ShowCollectionsRequest {
            db_name: db.into(),
            ..Default::default()
        };
        let resp = self
            .call("ShowCollections", db, msg, via!(show_collections))
            .await?;
        Ok(resp.collection_names)
    }

    async fn has_collection(&self, db: &str, name: &str) -> Result<bool> {
        let msg = pb::HasCollectionRequest::for_collection(db, name);
        match self
            .call("HasCollection", db, msg, via!(has_collection))
            .await
        {
            Ok(r) => Ok(r.value),
            // A missing database answers with an error, not `false`.
            Err(e) if e.is_milvus_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn describe_collection(&self, db: &str, name: &str) -> Result<CollectionInfo> {
        let msg = pb::DescribeCollectionRequest::for_collection(db, name);
        let op = format!("DescribeCollection {db}.{name}");
        let r = self.call(&op, db, msg, via!(describe_collection)).await?;
        Ok(CollectionInfo {
            id: r.collection_id,
            db: db.into(),
            name: name.into(),
            schema: r.schema.into(),
            shards_num: r.shards_num,
            consistency_level: r.consistency_level,
            properties: pairs(&r.properties),
            num_partitions: r.num_partitions,
            created_timestamp: r.created_timestamp,
            aliases: r.aliases,
        })
    }

    async fn create_collection(&self, new: &NewCollection) -> Result<()> {
        let msg = pb::CreateCollectionRequest {
            db_name: new.db.clone(),
            collection_name: new.name.clone(),
            schema: new.schema.to_vec(),
            shards_num: new.shards_num,
            consistency_level: new.consistency_level,
            properties: kv_pairs(&new.properties),
            num_partitions: new.num_partitions.unwrap_or(0),
            ..Default::default()
        };
        let op = format!("CreateCollection {}.{}", new.db, new.name);
        self.command(&op, &new.db, msg, via!(create_collection))
            .await
    }

    async fn drop_collection(&self, db: &str, name: &str) -> Result<()> {
        let msg = pb::DropCollectionRequest::for_collection(db, name);
        let op = format!("DropCollection {db}.{name}");
        self.command(&op, db, msg, via!(drop_collection)).await
    }

    async fn rename_collection(&self, db: &str, from: &str, to: &str) -> Result<()> {
        let msg = pb::RenameCollectionRequest {
            db_name: db.into(),
            old_name: from.into(),
            new_name: to.into(),
            new_db_name: db.into(),
            ..Default::default()
        };
        let op = format!("RenameCollection {db}.{from} to {db}.{to}");
        self.command(&op, db, msg, via!(rename_collection)).await
    }

    async fn list_partitions(&self, db: &str, collection: &str) -> Result<Vec<PartitionInfo>> {
        let msg = pb::ShowPartitionsRequest::for_collection(db, collection);
        let op = format!("ShowPartitions {db}.{collection}");
        let r = self.call(&op, db, msg, via!(show_partitions)).await?;
        Ok(r.partition_i_ds
            .into_iter()
            .zip(r.partition_names)
            .map(|(id, name)| PartitionInfo { id, name })
            .collect())
    }

    async fn create_partition(&self, db: &str, collection: &str, partition: &str) -> Result<()> {
        let msg = pb::CreatePartitionRequest {
            partition_name: partition.into(),
            ..ForCollection::for_collection(db, collection)
        };
        let op = format!("CreatePartition {db}.{collection}/{partition}");
        self.command(&op, db, msg, via!(create_partition)).await
    }

    async fn describe_indexes(&self, db: &str, collection: &str) -> Result<Vec<IndexInfo>> {
        let msg = pb::DescribeIndexRequest::for_collection(db, collection);
        let req = self.request(db, msg);
        let resp = self
            .send("DescribeIndex", req, via!(describe_index))
            .await?;
        // A collection without an index answers with an "index not found" status.
        if let Some(s) = &resp.status
            && (s.error_code == common::ErrorCode::IndexNotExist as i32
                || s.code == 700
                || s.reason.contains("index not found"))
        {
            return Ok(Vec::new());
        }
        check_status(&format!("DescribeIndex {db}.{collection}"), resp.status())?;
        Ok(resp
            .index_descriptions
            .into_iter()
            .map(|d| IndexInfo {
                name: d.index_name,
                id: d.index_id,
                field_name: d.field_name,
                params: pairs(&d.params),
            })
            .collect())
    }

    async fn loading_progress(&self, db: &str, collection: &str) -> Result<i64> {
        let op = format!("GetLoadingProgress {db}.{collection}");
        // Asked again when Milvus is briefly away, as every read is: a
        // restore waiting for a load after its swap must not fail on one
        // lost answer.
        let once = || async {
            let msg = pb::GetLoadingProgressRequest::for_collection(db, collection);
            let req = self.request(db, msg);
            let resp = self
                .send("GetLoadingProgress", req, via!(get_loading_progress))
                .await?;
            loading_progress_of(&op, resp.status(), resp.progress)
        };
        crate::retry::retry(
            crate::retry::Backoff::MILVUS,
            crate::retry::milvus_transient,
            once,
        )
        .await
    }

    async fn flush(&self, db: &str, collection: &str) -> Result<FlushResult> {
        let mut one = self.flush_many(db, &[collection.to_string()]).await?;
        Ok(one.pop().unwrap_or_default())
    }

    async fn flush_many(&self, db: &str, collections: &[String]) -> Result<Vec<FlushResult>> {
        let msg = pb::FlushRequest {
            db_name: db.into(),
            collection_names: collections.to_vec(),
            ..Default::default()
        };
        let op = match collections {
            [one] => format!("Flush {db}.{one}"),
            _ => format!("Flush of {} collections of {db}", collections.len()),
        };
        let r = self.call(&op, db, msg, via!(flush)).await?;
        Ok(collections
            .iter()
            .map(|c| FlushResult {
                segment_ids: r
                    .coll_seg_i_ds
                    .get(c)
                    .map(|a| a.data.clone())
                    .unwrap_or_default(),
                flush_ts: r.coll_flush_ts.get(c).copied().unwrap_or(0),
            })
            .collect())
    }

    async fn is_flushed(&self, db: &str, collection: &str, flush: &FlushResult) -> Result<bool> {
        let msg = pb::GetFlushStateRequest {
            segment_i_ds: flush.segment_ids.clone(),
            flush_ts: flush.flush_ts,
            db_name: db.into(),
            collection_name: collection.into(),
        };
        let op = format!("GetFlushState {db}.{collection}");
        let r = self.call(&op, db, msg, via!(get_flush_state)).await?;
        Ok(r.flushed)
    }

    async fn persistent_segments(&self, db: &str, collection: &str) -> Result<Vec<SegmentInfo>> {
        let msg = pb::GetPersistentSegmentInfoRequest::for_collection(db, collection);
        let op = format!("GetPersistentSegmentInfo {db}.{collection}");
        let r = self
            .call(&op, db, msg, via!(get_persistent_segment_info))
            .await?;
        Ok(r.infos
            .into_iter()
            .map(|s| SegmentInfo {
                id: s.segment_id,
                collection_id: s.collection_id,
                partition_id: s.partition_id,
                num_rows: s.num_rows,
                state: s.state,
                level: s.level,
            })
            .collect())
    }

    async fn create_index(&self, db: &str, collection: &str, index: &IndexInfo) -> Result<()> {
        let msg = pb::CreateIndexRequest {
            field_name: index.field_name.clone(),
            index_name: index.name.clone(),
            extra_params: kv_pairs(&index.params),
            ..ForCollection::for_collection(db, collection)
        };
        let op = format!("CreateIndex {db}.{collection}/{}", index.name);
        self.command(&op, db, msg, via!(create_index)).await
    }

    async fn load_shape(&self, db: &str, collection: &str) -> Result<LoadShape> {
        let msg = pb::GetReplicasRequest::for_collection(db, collection);
        let req = self.request(db, msg);
        let resp = self.send("GetReplicas", req, via!(get_replicas)).await?;
        let op = format!("GetReplicas {db}.{collection}");
        // A released collection answers "not loaded", as GetLoadingProgress.
        if loading_progress_of(&op, resp.status.as_ref(), 1)? == 0 {
            return Ok(LoadShape::default());
        }
        Ok(LoadShape::of_replicas(
            resp.replicas
                .into_iter()
                .map(|r| r.resource_group_name)
                .collect(),
        ))
    }

    async fn load_collection(&self, db: &str, collection: &str, shape: &LoadShape) -> Result<()> {
        let msg = pb::LoadCollectionRequest {
            replica_number: shape.replicas,
            resource_groups: shape.resource_groups.clone(),
            ..pb::LoadCollectionRequest::for_collection(db, collection)
        };
        let op = format!("LoadCollection {db}.{collection}");
        self.command(&op, db, msg, via!(load_collection)).await
    }

    async fn release_collection(&self, db: &str, collection: &str) -> Result<()> {
        let msg = pb::ReleaseCollectionRequest::for_collection(db, collection);
        let op = format!("ReleaseCollection {db}.{collection}");
        self.command(&op, db, msg, via!(release_collection)).await
    }

    async fn import(&self, req: &ImportRequest) -> Result<Vec<i64>> {
        let msg = pb::ImportRequest {
            db_name: req.db.clone(),
            collection_name: req.collection.clone(),
            partition_name: req.partition.clone(),
            files: req.files.clone(),
            options: kv_pairs(&req.options),
            ..Default::default()
        };
        let op = format!("Import {}.{}/{}", req.db, req.collection, req.partition);
        let r = self.call(&op, &req.db, msg, via!(import)).await?;
        Ok(r.tasks)
    }

    async fn import_state(&self, task: i64) -> Result<ImportStatus> {
        let msg = pb::GetImportStateRequest { task };
        let op = format!("GetImportState {task}");
        let r = self.call(&op, "", msg, via!(get_import_state)).await?;
        Ok(import_status(&r))
    }

    async fn collection_imports(&self, db: &str, collection: &str) -> Result<Vec<ImportStatus>> {
        let msg = pb::ListImportTasksRequest::for_collection(db, collection);
        let op = format!("ListImportTasks {db}.{collection}");
        let r = self.call(&op, db, msg, via!(list_import_tasks)).await?;
        Ok(r.tasks.iter().map(import_status).collect())
    }

    async fn all_imports(&self) -> Result<Vec<ImportStatus>> {
        let msg = pb::ListImportTasksRequest::default();
        let r = self
            .call("ListImportTasks", "", msg, via!(list_import_tasks))
            .await?;
        Ok(r.tasks.iter().map(import_status).collect())
    }
}

/// One import task as Milvus reports it. Milvus 2.3 names the task's
/// partition and paths in `infos` (`partition`, `files` joined by commas).
fn import_status(r: &pb::GetImportStateResponse) -> ImportStatus {
    let info = |key: &str| {
        r.infos
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| kv.value.clone())
    };
    let phase = match common::ImportState::try_from(r.state) {
        Ok(common::ImportState::ImportCompleted) => ImportPhase::Completed,
        Ok(common::ImportState::ImportFailed | common::ImportState::ImportFailedAndCleaned) => {
            ImportPhase::Failed(info("failed_reason").unwrap_or_else(|| "no reason given".into()))
        }
        _ => ImportPhase::Running,
    };
    ImportStatus {
        phase,
        row_count: r.row_count,
        task: r.id,
        collection_id: r.collection_id,
        partition: info("partition").unwrap_or_default(),
        files: info("files")
            .map(|f| f.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
        created_at_s: r.create_ts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(error_code: i32, code: i32, reason: &str) -> common::Status {
        common::Status {
            error_code,
            code,
            reason: reason.into(),
            ..Default::default()
        }
    }

    /// Only "collection not loaded" (as Milvus 2.3.5 answers it for a
    /// released collection: error_code 1, code 101) is progress 0; another
    /// error, such as "collection not found" (4, 100), is an error.
    #[test]
    fn only_not_loaded_is_no_progress() {
        let released = status(1, 101, "collection not loaded[collection=1]");
        assert_eq!(loading_progress_of("op", Some(&released), 0).unwrap(), 0);
        let legacy = status(
            1,
            0,
            "collection 1 has not been loaded to memory or load failed",
        );
        assert_eq!(loading_progress_of("op", Some(&legacy), 0).unwrap(), 0);
        assert_eq!(
            loading_progress_of("op", Some(&status(0, 0, "")), 100).unwrap(),
            100
        );
        assert_eq!(loading_progress_of("op", None, 40).unwrap(), 40);
        let missing = status(4, 100, "collection not found[collection=x]");
        let err = loading_progress_of("op", Some(&missing), 0).unwrap_err();
        assert!(err.to_string().contains("collection not found"), "{err}");
        let limited = status(1, 8, "rate limit exceeded");
        assert!(loading_progress_of("op", Some(&limited), 0).is_err());
    }
}
