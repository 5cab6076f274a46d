//! The server: our gRPC service, health checking, reflection and the Go
//! tool's REST API, all on one port (HTTP/2 for gRPC, HTTP/1.1 or 2 for REST),
//! plain or TLS (optionally mutual), within [`ServerLimits`], with a graceful
//! stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::info;

use super::GrpcService;
use super::limits::ServerLimits;
use super::policy::GrpcPolicies;
use super::proto::FILE_DESCRIPTOR_SET;
use super::proto::backup_service_server::BackupServiceServer;
use super::proto::policy_service_server::PolicyServiceServer;
use super::serve::{PlainListener, Slots, serve};
use super::tls_listener::TlsListener;
use crate::config::Secret;
use crate::engine::Engine;

/// Serves an [`Engine`] over gRPC.
#[derive(Debug, Clone)]
pub struct Server {
    engine: Arc<Engine>,
    simple_response: bool,
    token: Option<Secret>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown_grace: Duration,
    limits: ServerLimits,
}

/// A server running in the background (used by tests and the demo).
#[derive(Debug)]
pub struct ServerHandle {
    /// The address it listens on.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl ServerHandle {
    /// Stops gracefully and waits until the server has stopped.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await?
    }
}

impl Server {
    /// A server for `engine`.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self {
            engine,
            simple_response: true,
            token: None,
            tls: None,
            shutdown_grace: Duration::from_secs(30),
            limits: ServerLimits::default(),
        }
    }

    /// Timeouts, the connection cap and the message size limits (`http.*`;
    /// [`ServerLimits::default`] unless set).
    pub fn limits(mut self, limits: ServerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Speaks TLS only, with this configuration (see [`crate::tls::server_config`]).
    pub fn tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// How long running jobs may take to finish once a stop is asked for.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Requires `authorization: Bearer <token>` on every call but health,
    /// reflection, the Swagger UI and `/metrics` (an empty token requires nothing).
    pub fn token(mut self, token: Secret) -> Self {
        self.token = (!token.expose().is_empty()).then_some(token);
        self
    }

    /// REST answers leave out partitions and segments (`http.simpleResponse`).
    pub fn simple_response(mut self, simple: bool) -> Self {
        self.simple_response = simple;
        self
    }

    /// Serves on `listener` until `shutdown` completes. Then health turns
    /// NOT_SERVING and new jobs are refused (UNAVAILABLE), running jobs get
    /// the grace period to finish (watchers still see them), in-flight calls
    /// end, and the server returns.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        // Start watching for the stop at once (a signal handler is installed
        // when `shutdown` is first polled), not only once the port is served.
        let (stop_asked, stop_seen) = oneshot::channel::<()>();
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_asked.send(());
        });
        let limits = self.limits;
        let max_message = limits.max_grpc_message_bytes;
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<BackupServiceServer<GrpcService>>()
            .await;
        health
            .set_serving::<PolicyServiceServer<GrpcPolicies>>()
            .await;
        let reflection_v1 = reflection()
            .build_v1()?
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(max_message);
        let reflection_v1alpha = reflection()
            .build_v1alpha()?
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(max_message);
        let service = BackupServiceServer::new(GrpcService::new(self.engine.clone()))
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(max_message);
        let policies = PolicyServiceServer::new(GrpcPolicies::new(self.engine.clone()))
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(max_message);
        let app = tonic::service::Routes::new(
            health_service
                .max_decoding_message_size(max_message)
                .max_encoding_message_size(max_message),
        )
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(service)
        .add_service(policies)
        .into_axum_router()
        .merge(super::rest::router(
            self.engine.clone(),
            self.simple_response,
            limits.max_rest_body_bytes,
        ))
        // Unknown paths: the envelope with 404 for REST, UNIMPLEMENTED for gRPC.
        .fallback(super::rest::not_found);
        let app = match self.token {
            Some(token) => app.layer(axum::middleware::from_fn_with_state(
                token,
                super::auth::require_token,
            )),
            None => app,
        };

        let addr = listener.local_addr()?;
        let (engine, grace) = (self.engine, self.shutdown_grace);
        let stop = async move {
            let _ = stop_seen.await;
            info!("shutting down: health is NOT_SERVING, no new jobs");
            health
                .set_not_serving::<BackupServiceServer<GrpcService>>()
                .await;
            health
                .set_not_serving::<PolicyServiceServer<GrpcPolicies>>()
                .await;
            health
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
            engine.shut_down(grace).await;
        };
        let slots = Slots::new(limits.max_connections);
        warn_if_few_file_descriptors(limits.max_connections);
        match self.tls {
            Some(config) => {
                info!(%addr, ?limits, "serving gRPC and REST over TLS");
                let tls = TlsListener::new(listener, config, slots, limits.header_read_timeout);
                serve(tls, app, limits, stop).await
            }
            None => {
                info!(%addr, ?limits, "serving gRPC and REST");
                serve(PlainListener::new(listener, slots), app, limits, stop).await
            }
        }
        info!("server stopped");
        Ok(())
    }

    /// Binds `addr` (port 0 picks a free one) and serves in the background.
    pub async fn spawn(self, addr: SocketAddr) -> anyhow::Result<ServerHandle> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(self.serve(listener, async {
            let _ = stopped.await;
        }));
        Ok(ServerHandle {
            addr,
            stop: Some(stop),
            task,
        })
    }
}

/// The reflection service's builder, describing our service and health.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// Warns when the process may open fewer files than `max_connections`
/// connections need (Linux; the soft `RLIMIT_NOFILE` from /proc).
fn warn_if_few_file_descriptors(max_connections: usize) {
    // Milvus, S3, job records and the listener need some besides the connections.
    const OTHERS: u64 = 128;
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else {
        return;
    };
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(soft) = soft
        && soft < max_connections as u64 + OTHERS
    {
        tracing::warn!(
            open_files_limit = soft,
            max_connections,
            "the open files limit (ulimit -n) is below http.maxConnections + {OTHERS}: \
             raise it, or lower http.maxConnections"
        );
    }
}
