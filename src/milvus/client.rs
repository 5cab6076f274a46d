//! The connection to the Milvus proxy (plain or TLS), with `authorization`
//! and `dbname` metadata, deadlines, retries and error mapping; the
//! [`super::MilvusApi`] operations over it are in `calls.rs`.

use std::future::Future;
use std::time::Duration;

use base64::Engine as _;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Response, Status};

use super::proto::common;
use super::proto::milvus::milvus_service_client::MilvusServiceClient;
use super::proto::milvus::{self as pb};
use crate::config::MilvusConfig;
use crate::error::{Error, Result};
use crate::retry::{Backoff, milvus_transient, retry};

/// Largest message we accept from Milvus (query results can be big).
const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;
/// Deadline of one call.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

tokio::task_local! {
    /// The instant by which the calls of a step must have ended ([`ended_by`]).
    static STEP_DEADLINE: tokio::time::Instant;
}

/// Runs `step` with each call to Milvus in it bounded to end by `deadline`
/// (when given): a call not sent by then is not sent ([`Error::Aborted`]),
/// and one sent carries the time left as its gRPC deadline, which Milvus
/// keeps too. For the calls by name of a job under leases: a process
/// paused past its leases must not drop, rename or import after a takeover
/// did (see [`crate::jobs::Fence::calls_end_by`]).
pub async fn ended_by<F: Future>(deadline: Option<tokio::time::Instant>, step: F) -> F::Output {
    match deadline {
        Some(deadline) => STEP_DEADLINE.scope(deadline, step).await,
        None => step.await,
    }
}

/// The time left to the step's deadline, if it has one.
fn time_left() -> Option<Duration> {
    STEP_DEADLINE
        .try_with(|d| d.saturating_duration_since(tokio::time::Instant::now()))
        .ok()
}

/// A connection to the Milvus proxy. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MilvusClient {
    pub(super) inner: MilvusServiceClient<Channel>,
    pub(super) address: String,
    authorization: Option<MetadataValue<tonic::metadata::Ascii>>,
}

/// Responses that carry a `common.Status`.
pub trait HasStatus {
    fn status(&self) -> Option<&common::Status>;
}

macro_rules! has_status {
    ($($t:ty),* $(,)?) => {$(
        impl HasStatus for $t {
            fn status(&self) -> Option<&common::Status> { self.status.as_ref() }
        }
    )*};
}

has_status!(
    pb::BoolResponse,
    pb::DescribeCollectionResponse,
    pb::ShowCollectionsResponse,
    pb::ShowPartitionsResponse,
    pb::GetLoadingProgressResponse,
    pb::DescribeIndexResponse,
    pb::MutationResult,
    pb::QueryResults,
    pb::SearchResults,
    pb::FlushResponse,
    pb::GetFlushStateResponse,
    pb::GetPersistentSegmentInfoResponse,
    pb::ImportResponse,
    pb::GetImportStateResponse,
    pb::ListImportTasksResponse,
    pb::GetVersionResponse,
    pb::ListDatabasesResponse,
);

impl HasStatus for common::Status {
    fn status(&self) -> Option<&common::Status> {
        Some(self)
    }
}

/// Turns a non-success `common.Status` into an error naming the operation.
pub fn check_status(operation: &str, status: Option<&common::Status>) -> Result<()> {
    match status {
        Some(s) if s.error_code != 0 || s.code != 0 => {
            let reason = if s.reason.is_empty() {
                format!("error code {} / {}", s.error_code, s.code)
            } else {
                s.reason.clone()
            };
            Err(Error::milvus_codes(operation, reason, s.code, s.error_code))
        }
        _ => Ok(()),
    }
}

/// The client TLS of `milvus.tlsMode` 1 (verify the server with
/// `caCertPath`, or the system's roots) and 2 (also present `mtlsCertPath`).
fn client_tls(cfg: &MilvusConfig) -> Result<Option<ClientTlsConfig>> {
    if cfg.tls_mode == 0 {
        return Ok(None);
    }
    let mut tls = ClientTlsConfig::new().domain_name(if cfg.server_name.is_empty() {
        cfg.address.clone()
    } else {
        cfg.server_name.clone()
    });
    tls = if cfg.ca_cert_path.is_empty() {
        tls.with_native_roots()
    } else {
        tls.ca_certificate(Certificate::from_pem(crate::tls::read_pem(
            "milvus.caCertPath",
            &cfg.ca_cert_path,
        )?))
    };
    if cfg.tls_mode == 2 {
        tls = tls.identity(Identity::from_pem(
            crate::tls::read_pem("milvus.mtlsCertPath", &cfg.mtls_cert_path)?,
            crate::tls::read_pem("milvus.mtlsKeyPath", &cfg.mtls_key_path)?,
        ));
    }
    Ok(Some(tls))
}

impl MilvusClient {
    /// A client for the configured proxy. Connects lazily: a Milvus that is down
    /// shows up as `Unavailable` on the first call, not here.
    pub fn new(cfg: &MilvusConfig) -> Result<Self> {
        let address = cfg.url();
        let endpoint = Endpoint::from_shared(address.clone())
            .map_err(|e| Error::invalid(format!("bad milvus address {address:?}: {e}")))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        let endpoint = match client_tls(cfg)? {
            Some(tls) => endpoint
                .tls_config(tls)
                .map_err(|e| Error::invalid(format!("milvus TLS: {e}")))?,
            None => endpoint,
        };
        let inner = MilvusServiceClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        // `milvus.authorizationEnabled` decides, as in the Go tool, whether
        // the user and password are sent at all.
        let authorization = if !cfg.authorization_enabled || cfg.user.is_empty() {
            None
        } else {
            let token = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                cfg.user,
                cfg.password.expose()
            ));
            Some(
                token
                    .parse()
                    .map_err(|_| Error::invalid("milvus user or password is not ASCII"))?,
            )
        };
        Ok(Self {
            inner,
            address,
            authorization,
        })
    }

    /// The generated client, for calls the trait does not cover (tests, examples).
    pub fn raw(&self) -> MilvusServiceClient<Channel> {
        self.inner.clone()
    }

    /// Wraps a message with the `authorization` and `dbname` metadata and a deadline.
    pub fn request<T>(&self, db: &str, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        req.set_timeout(time_left().map_or(CALL_TIMEOUT, |left| left.min(CALL_TIMEOUT)));
        if let Some(auth) = &self.authorization {
            req.metadata_mut().insert("authorization", auth.clone());
        }
        if !db.is_empty()
            && let Ok(v) = db.parse()
        {
            req.metadata_mut().insert("dbname", v);
        }
        req
    }

    /// Maps a gRPC failure of `operation` to our error.
    pub fn rpc_error(&self, operation: &str, status: Status) -> Error {
        match status.code() {
            // A connection cut mid-call surfaces as Unknown "transport error".
            Code::Unknown if status.message().contains("transport error") => Error::Unavailable {
                service: "milvus",
                address: self.address.clone(),
                detail: format!("{operation}: {}", status.message()),
            },
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => Error::Unavailable {
                service: "milvus",
                address: self.address.clone(),
                detail: format!("{operation}: {}", status.message()),
            },
            Code::Unauthenticated | Code::PermissionDenied => Error::FailedPrecondition(format!(
                "milvus at {} refused {operation}: {}",
                self.address,
                status.message()
            )),
            _ => Error::milvus(
                operation,
                format!("{:?}: {}", status.code(), status.message()),
            ),
        }
    }

    /// Sends `request` once and checks only the transport: the caller reads
    /// the response's status.
    pub(super) async fn send<Req, Resp, F, Fut>(
        &self,
        operation: &str,
        request: Request<Req>,
        send: F,
    ) -> Result<Resp>
    where
        F: FnOnce(MilvusServiceClient<Channel>, Request<Req>) -> Fut,
        Fut: Future<Output = std::result::Result<Response<Resp>, Status>>,
    {
        Ok(send(self.inner.clone(), request)
            .await
            .map_err(|s| self.rpc_error(operation, s))?
            .into_inner())
    }

    /// Sends one call and checks both the transport and the response's status.
    pub(super) async fn call<Req, Resp, F, Fut>(
        &self,
        operation: &str,
        db: &str,
        msg: Req,
        send: F,
    ) -> Result<Resp>
    where
        F: Fn(MilvusServiceClient<Channel>, Request<Req>) -> Fut,
        Fut: Future<Output = std::result::Result<Response<Resp>, Status>>,
        Req: Clone,
        Resp: HasStatus,
    {
        let once = || async {
            if time_left() == Some(Duration::ZERO) {
                tracing::warn!(
                    operation,
                    "a call to Milvus was not sent: its step's deadline (the job's leases) passed"
                );
                return Err(Error::Aborted(format!(
                    "{operation} was not sent: the job's leases may have expired by now, and \
                     another process may have taken the job over"
                )));
            }
            let request = self.request(db, msg.clone());
            let resp = self.send(operation, request, &send).await?;
            check_status(operation, resp.status())?;
            Ok(resp)
        };
        // Creating things and importing are not repeated blindly: a lost answer
        // may hide a success. Nor is GetImportState: asked about an import
        // whose collection was dropped meanwhile, it crashes 2.3.5's proxy,
        // so its caller checks the collection before each ask.
        let repeatable = !["Create", "Import ", "Drop", "Rename", "GetImportState"]
            .iter()
            .any(|p| operation.starts_with(p));
        if repeatable {
            retry(Backoff::MILVUS, milvus_transient, once).await
        } else {
            once().await
        }
    }

    /// [`Self::call`] for a command, whose answer is only its status.
    pub(super) async fn command<Req: Clone, Fut>(
        &self,
        operation: &str,
        db: &str,
        msg: Req,
        send: impl Fn(MilvusServiceClient<Channel>, Request<Req>) -> Fut,
    ) -> Result<()>
    where
        Fut: Future<Output = std::result::Result<Response<common::Status>, Status>>,
    {
        self.call(operation, db, msg, send).await.map(|_| ())
    }
}
