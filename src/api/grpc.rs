//! The tonic service: thin handlers over the engine, streaming job snapshots.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::proto as pb;
use super::proto::backup_service_server::BackupService;
use crate::engine::Engine;
use crate::engine::VerifySnapshot;
use crate::jobs::{BackupSnapshot, JobSnapshot, JobState, RestoreSnapshot};
use crate::model::{
    BackupLookup, BackupName, BackupRequest, CollectionFilter, JobId, RestoreRequest,
};

/// Smallest gap between two snapshots of one stream: a few per second at most.
const MIN_SNAPSHOT_GAP: Duration = Duration::from_millis(250);

type SnapshotStream<T> = ReceiverStream<Result<T, Status>>;

/// `milvus.backup.v1.BackupService` over an [`Engine`].
#[derive(Debug, Clone)]
pub struct GrpcService {
    engine: Arc<Engine>,
}

impl GrpcService {
    /// A service over `engine`.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

/// Streams the current snapshot, then each change (coalesced to a few per
/// second), ending after a terminal one. A caller that goes away only ends
/// this forwarding task, never the job.
fn snapshot_stream<S, M>(mut rx: watch::Receiver<S>, to_msg: fn(&S) -> M) -> SnapshotStream<M>
where
    S: JobSnapshot + Clone + Send + Sync + 'static,
    M: Send + 'static,
{
    let (tx, out) = mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            let snap = rx.borrow_and_update().clone();
            if tx.send(Ok(to_msg(&snap))).await.is_err() || snap.state().is_terminal() {
                return;
            }
            tokio::time::sleep(MIN_SNAPSHOT_GAP).await;
            if rx.changed().await.is_err() {
                // The job is gone without a terminal state: say so.
                let last = rx.borrow().clone();
                let _ = tx.send(Ok(to_msg(&last))).await;
                return;
            }
        }
    });
    ReceiverStream::new(out)
}

fn backup_msg<M: From<pb::Backup>>(s: &BackupSnapshot) -> M {
    M::from(pb::Backup::from(s))
}

fn restore_msg<M: From<pb::RestoreJob>>(s: &RestoreSnapshot) -> M {
    M::from(pb::RestoreJob::from(s))
}

macro_rules! wraps {
    ($inner:ty => $($outer:ident . $field:ident),*) => {$(
        impl From<$inner> for pb::$outer {
            fn from(v: $inner) -> Self { pb::$outer { $field: Some(v) } }
        }
    )*};
}

wraps!(pb::Backup => CreateBackupResponse.backup, WatchBackupResponse.backup,
       ListBackupsResponse.backup, GetBackupResponse.backup);
wraps!(pb::RestoreJob => RestoreResponse.restore, WatchRestoreResponse.restore,
       GetRestoreResponse.restore);

#[tonic::async_trait]
impl BackupService for GrpcService {
    type CreateBackupStream = SnapshotStream<pb::CreateBackupResponse>;
    type WatchBackupStream = SnapshotStream<pb::WatchBackupResponse>;
    type ListBackupsStream = SnapshotStream<pb::ListBackupsResponse>;
    type RestoreStream = SnapshotStream<pb::RestoreResponse>;
    type WatchRestoreStream = SnapshotStream<pb::WatchRestoreResponse>;

    async fn create_backup(
        &self,
        request: Request<pb::CreateBackupRequest>,
    ) -> Result<Response<Self::CreateBackupStream>, Status> {
        let req = BackupRequest::try_from(request)?;
        let rx = self.engine.create_backup(req).await?;
        Ok(Response::new(snapshot_stream(rx, backup_msg)))
    }

    async fn watch_backup(
        &self,
        request: Request<pb::WatchBackupRequest>,
    ) -> Result<Response<Self::WatchBackupStream>, Status> {
        let name = BackupName::parse(&request.into_inner().name)?;
        let rx = self.engine.watch_backup(&name).await?;
        Ok(Response::new(snapshot_stream(rx, backup_msg)))
    }

    async fn list_backups(
        &self,
        request: Request<pb::ListBackupsRequest>,
    ) -> Result<Response<Self::ListBackupsStream>, Status> {
        let filter = CollectionFilter::parse(&request.into_inner().collection_name)?;
        let backups = self.engine.list_backups(filter.as_ref()).await?;
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            for b in &backups {
                if tx.send(Ok(backup_msg(b))).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_backup(
        &self,
        request: Request<pb::GetBackupRequest>,
    ) -> Result<Response<pb::GetBackupResponse>, Status> {
        let r = request.into_inner();
        let snap = self
            .engine
            .get_backup(&BackupLookup::parse(&r.name, &r.id)?)
            .await?;
        Ok(Response::new(backup_msg(&snap)))
    }

    async fn delete_backup(
        &self,
        request: Request<pb::DeleteBackupRequest>,
    ) -> Result<Response<pb::DeleteBackupResponse>, Status> {
        let caller = super::convert::caller_of(&request)?;
        let r = request.into_inner();
        let name = BackupName::parse(&r.name)?;
        let job = if r.detached {
            self.engine
                .delete_backup(&name, &caller)
                .await?
                .borrow()
                .clone()
        } else {
            self.engine
                .delete_backup_until_ended(&name, &caller)
                .await?
                .succeeded()?
        };
        Ok(Response::new(pb::DeleteBackupResponse {
            name: name.to_string(),
            objects_deleted: job.objects_deleted,
            objects_kept: job.objects_kept,
            job: Some(pb::DeleteJob::from(&job)),
        }))
    }

    type WatchDeleteStream = SnapshotStream<pb::WatchDeleteResponse>;

    async fn watch_delete(
        &self,
        request: Request<pb::WatchDeleteRequest>,
    ) -> Result<Response<Self::WatchDeleteStream>, Status> {
        let rx = self
            .engine
            .watch_delete(&JobId::parse("delete", &request.into_inner().id)?)
            .await?;
        Ok(Response::new(snapshot_stream(rx, |s| {
            pb::WatchDeleteResponse {
                delete: Some(pb::DeleteJob::from(s)),
            }
        })))
    }

    async fn restore(
        &self,
        request: Request<pb::RestoreRequest>,
    ) -> Result<Response<Self::RestoreStream>, Status> {
        let req = RestoreRequest::try_from(request)?;
        let rx = self.engine.restore(req).await?;
        Ok(Response::new(snapshot_stream(rx, restore_msg)))
    }

    async fn watch_restore(
        &self,
        request: Request<pb::WatchRestoreRequest>,
    ) -> Result<Response<Self::WatchRestoreStream>, Status> {
        let rx = self
            .engine
            .watch_restore(&JobId::parse("restore", &request.into_inner().id)?)
            .await?;
        Ok(Response::new(snapshot_stream(rx, restore_msg)))
    }

    async fn get_restore(
        &self,
        request: Request<pb::GetRestoreRequest>,
    ) -> Result<Response<pb::GetRestoreResponse>, Status> {
        let rx = self
            .engine
            .watch_restore(&JobId::parse("restore", &request.into_inner().id)?)
            .await?;
        let snap = rx.borrow().clone();
        Ok(Response::new(restore_msg(&snap)))
    }

    type VerifyBackupStream = SnapshotStream<pb::VerifyBackupResponse>;

    async fn verify_backup(
        &self,
        request: Request<pb::VerifyBackupRequest>,
    ) -> Result<Response<Self::VerifyBackupStream>, Status> {
        let caller = super::convert::caller_of(&request)?;
        let pb::VerifyBackupRequest { name, detached } = request.into_inner();
        let name = BackupName::parse(&name)?;
        let (tx, rx) = mpsc::channel(8);
        let engine = self.engine.clone();
        tokio::spawn(async move {
            let msg = |s: &VerifySnapshot| pb::VerifyBackupResponse::from(&s.progress);
            let mut verification = match engine.verify_backup(&name, caller).await {
                Ok(v) => v,
                Err(e) => {
                    let _ = tx.send(Err(Status::from(e))).await;
                    return;
                }
            };
            if detached {
                verification.detach();
            }
            let mut snapshots = verification.snapshots();
            loop {
                let now = snapshots.borrow_and_update().clone();
                if now.state.is_terminal() {
                    break;
                }
                // Progress is best effort; the final answer below is not.
                if now.state != JobState::Pending {
                    let _ = tx.try_send(Ok(msg(&now)));
                }
                tokio::select! {
                    changed = snapshots.changed() => if changed.is_err() { break },
                    // Dropped, a verification nobody reads stops (it frees its
                    // job slot and its hold), unless it was asked to go on.
                    () = tx.closed(), if !detached => return,
                }
            }
            let last = match verification.ended().await {
                Ok(s) => Ok(msg(&s)),
                Err(e) => {
                    if detached && tx.is_closed() {
                        tracing::warn!(backup = %name, error = %e, "detached verification did not succeed");
                    }
                    let damaged = snapshots.borrow().clone();
                    if !damaged.progress.problems.is_empty() {
                        let _ = tx.send(Ok(msg(&damaged))).await;
                    }
                    Err(Status::from(e))
                }
            };
            let _ = tx.send(last).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn cancel_backup(
        &self,
        request: Request<pb::CancelBackupRequest>,
    ) -> Result<Response<pb::CancelBackupResponse>, Status> {
        let name = BackupName::parse(&request.into_inner().name)?;
        self.engine.cancel_backup(&name).await?;
        Ok(Response::new(pb::CancelBackupResponse {}))
    }

    async fn cancel_restore(
        &self,
        request: Request<pb::CancelRestoreRequest>,
    ) -> Result<Response<pb::CancelRestoreResponse>, Status> {
        self.engine
            .cancel_restore(&JobId::parse("restore", &request.into_inner().id)?)
            .await?;
        Ok(Response::new(pb::CancelRestoreResponse {}))
    }

    async fn check(
        &self,
        _request: Request<pb::CheckRequest>,
    ) -> Result<Response<pb::CheckResponse>, Status> {
        let report = self.engine.check().await?;
        Ok(Response::new(report.into()))
    }
}
