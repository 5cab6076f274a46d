//! `milvus.backup.v1.PolicyService` over the engine, and the conversions
//! between its wire types and the policy model.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tonic::{Request, Response, Status};

use super::proto as pb;
use super::proto::policy_service_server::PolicyService;
use crate::engine::Engine;
use crate::error::Result;
use crate::model::retention::Decision;
use crate::model::{Policy, PolicyInput, PolicyName, PolicyUpdate, RetentionInput};
use crate::policy::{PolicyStatus, RunRecord, RunState};

/// The policy service over an [`Engine`].
#[derive(Debug, Clone)]
pub struct GrpcPolicies {
    engine: Arc<Engine>,
}

impl GrpcPolicies {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

fn ms(t: i64) -> Option<prost_types::Timestamp> {
    DateTime::from_timestamp_millis(t).map(timestamp)
}

/// A wire policy as the model's raw input (checked by `Policy::parse` or
/// `PolicyUpdate::parse`).
impl From<pb::Policy> for PolicyInput {
    fn from(p: pb::Policy) -> Self {
        let r = p.retention.unwrap_or_default();
        PolicyInput {
            name: p.name,
            schedule: p.schedule,
            time_zone: p.time_zone,
            collection_names: p.collection_names,
            database_names: p.database_names,
            all_collections: p.all_collections,
            incremental: p.incremental,
            name_template: p.name_template,
            retention: RetentionInput {
                keep_last: r.keep_last.into(),
                keep_hourly: r.keep_hourly.into(),
                keep_daily: r.keep_daily.into(),
                keep_weekly: r.keep_weekly.into(),
                keep_monthly: r.keep_monthly.into(),
                max_age: r.max_age,
            },
            enabled: p.enabled,
        }
    }
}

/// Counts that were checked to fit a `u32` when the policy was parsed.
fn int32(n: i64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl From<&PolicyInput> for pb::Policy {
    fn from(p: &PolicyInput) -> Self {
        let r = &p.retention;
        pb::Policy {
            name: p.name.clone(),
            schedule: p.schedule.clone(),
            time_zone: p.time_zone.clone(),
            collection_names: p.collection_names.clone(),
            database_names: p.database_names.clone(),
            all_collections: p.all_collections,
            incremental: p.incremental,
            name_template: p.name_template.clone(),
            retention: Some(pb::Retention {
                keep_last: int32(r.keep_last),
                keep_hourly: int32(r.keep_hourly),
                keep_daily: int32(r.keep_daily),
                keep_weekly: int32(r.keep_weekly),
                keep_monthly: int32(r.keep_monthly),
                max_age: r.max_age.clone(),
            }),
            enabled: Some(p.enabled.unwrap_or(true)),
        }
    }
}

impl From<&RunRecord> for pb::PolicyRun {
    fn from(r: &RunRecord) -> Self {
        let state = match r.state {
            RunState::Running => pb::JobState::Running,
            RunState::Succeeded => pb::JobState::Succeeded,
            RunState::Failed => pb::JobState::Failed,
        };
        pb::PolicyRun {
            slot: ms(r.slot_ms),
            backup_name: r.backup.clone(),
            state: state.into(),
            error_message: r.error.clone().unwrap_or_default(),
            attempts: r.attempts,
            start_time: ms(r.started_ms),
            end_time: r.ended_ms.and_then(ms),
            manual: r.manual,
            error_kind: r.error_kind.clone().unwrap_or_default(),
        }
    }
}

impl From<&PolicyStatus> for pb::PolicyStatus {
    fn from(s: &PolicyStatus) -> Self {
        pb::PolicyStatus {
            policy: Some((&s.policy).into()),
            last_run: s.last_run.as_ref().map(Into::into),
            last_success: s.last_success.as_ref().map(Into::into),
            last_failure: s.last_failure.as_ref().map(Into::into),
            next_run: s.next_run.map(timestamp),
            backups: s.backups.clone(),
        }
    }
}

impl From<&Decision> for pb::RetentionDecision {
    fn from(d: &Decision) -> Self {
        pb::RetentionDecision {
            backup_name: d.name.clone(),
            time: Some(timestamp(d.time)),
            keep: d.keep,
            reason: d.reason.clone(),
        }
    }
}

fn parse_policy(p: Option<pb::Policy>) -> Result<Policy> {
    Policy::parse(p.unwrap_or_default().into())
}

fn parse_update(p: Option<pb::Policy>) -> Result<PolicyUpdate> {
    PolicyUpdate::parse(p.unwrap_or_default().into())
}

/// A policy call's answer: its status, in the call's own response message.
fn status<M: From<pb::PolicyStatus>>(s: Result<PolicyStatus>) -> Result<Response<M>, Status> {
    Ok(Response::new(M::from((&s?).into())))
}

macro_rules! status_response {
    ($($msg:ident),*) => {$(
        impl From<pb::PolicyStatus> for pb::$msg {
            fn from(status: pb::PolicyStatus) -> Self {
                pb::$msg { status: Some(status) }
            }
        }
    )*};
}

status_response!(
    CreatePolicyResponse,
    UpdatePolicyResponse,
    GetPolicyResponse
);

#[tonic::async_trait]
impl PolicyService for GrpcPolicies {
    async fn create_policy(
        &self,
        request: Request<pb::CreatePolicyRequest>,
    ) -> Result<Response<pb::CreatePolicyResponse>, Status> {
        let policy = parse_policy(request.into_inner().policy)?;
        status(self.engine.create_policy(policy).await)
    }

    async fn update_policy(
        &self,
        request: Request<pb::UpdatePolicyRequest>,
    ) -> Result<Response<pb::UpdatePolicyResponse>, Status> {
        let update = parse_update(request.into_inner().policy)?;
        status(self.engine.update_policy(update).await)
    }

    async fn delete_policy(
        &self,
        request: Request<pb::DeletePolicyRequest>,
    ) -> Result<Response<pb::DeletePolicyResponse>, Status> {
        let name = PolicyName::parse(&request.into_inner().name)?;
        self.engine.delete_policy(&name).await?;
        Ok(Response::new(pb::DeletePolicyResponse {}))
    }

    async fn get_policy(
        &self,
        request: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::GetPolicyResponse>, Status> {
        let name = PolicyName::parse(&request.into_inner().name)?;
        status(self.engine.get_policy(&name).await)
    }

    async fn list_policies(
        &self,
        _: Request<pb::ListPoliciesRequest>,
    ) -> Result<Response<pb::ListPoliciesResponse>, Status> {
        let all = self.engine.list_policies().await?;
        Ok(Response::new(pb::ListPoliciesResponse {
            policies: all.iter().map(Into::into).collect(),
        }))
    }

    async fn run_policy_now(
        &self,
        request: Request<pb::RunPolicyNowRequest>,
    ) -> Result<Response<pb::RunPolicyNowResponse>, Status> {
        let name = PolicyName::parse(&request.into_inner().name)?;
        let run = self.engine.run_policy_now(&name).await?;
        Ok(Response::new(pb::RunPolicyNowResponse {
            run: Some((&run).into()),
        }))
    }

    async fn preview_retention(
        &self,
        request: Request<pb::PreviewRetentionRequest>,
    ) -> Result<Response<pb::PreviewRetentionResponse>, Status> {
        let name = PolicyName::parse(&request.into_inner().name)?;
        let decisions = self.engine.preview_retention(&name).await?;
        Ok(Response::new(pb::PreviewRetentionResponse {
            decisions: decisions.iter().map(Into::into).collect(),
        }))
    }
}
