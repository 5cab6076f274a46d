//! Serves connections on the shared port: HTTP/1.1 and HTTP/2 (gRPC) on each,
//! with the [`ServerLimits`]: a connection cap, a header read timeout, an
//! idle timeout, and a graceful stop.
//!
//! Lifetime of a connection:
//! - It is accepted only when a slot is free (`max_connections`); until then
//!   it waits in the kernel's listen backlog.
//! - Its first request must arrive (headers complete) within
//!   `header_read_timeout` of the accept (after the TLS handshake), or the
//!   connection is shut down: at once while the protocol is not even known,
//!   with GOAWAY on HTTP/2. HTTP/1.1 also gives every later request's headers
//!   that long, which closes idle keep-alive connections (hyper's timer).
//! - With no request in flight for `idle_timeout`, it is shut down gracefully
//!   (HTTP/2 GOAWAY).
//! - A connection told to go away that is still open `header_read_timeout`
//!   later (while nothing is in flight) is dropped.
//! - On stop, no new connection is accepted, each one is shut down gracefully
//!   (in-flight calls finish), and serving ends when the last one closes.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response};
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::{Service, ServiceExt};
use tracing::{debug, warn};

use super::limits::ServerLimits;

/// HTTP/2 pings on a connection quiet for this long, to find dead peers of
/// long streams (watchers).
const H2_PING_INTERVAL: Duration = Duration::from_secs(60);
/// A ping not answered within this closes the connection.
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// How often "connection limit reached" may be logged.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(60);

/// The connection slots: one per connection served (or in its TLS handshake).
#[derive(Debug, Clone)]
pub(super) struct Slots {
    slots: Arc<Semaphore>,
    max: usize,
    warned: Arc<std::sync::Mutex<Option<Instant>>>,
}

impl Slots {
    /// `max` slots (at least one).
    pub(super) fn new(max: usize) -> Self {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
            warned: Arc::default(),
        }
    }

    /// A free slot; waits (and says so in the log) while all are taken.
    pub(super) async fn take(&self) -> OwnedSemaphorePermit {
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            return slot;
        }
        {
            let mut warned = self.warned.lock().expect("slots");
            if warned.is_none_or(|at| at.elapsed() >= FULL_WARNING_EVERY) {
                warn!(
                    max_connections = self.max,
                    "connection limit reached: new connections wait in the listen backlog \
                     (http.maxConnections)"
                );
                *warned = Some(Instant::now());
            }
        }
        self.slots
            .clone()
            .acquire_owned()
            .await
            .expect("the slots are never closed")
    }
}

/// A source of connections, each holding a slot.
pub(super) trait Accept: Send + 'static {
    /// The connection's stream.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// The next connection; cancel-safe.
    fn accept(
        &mut self,
    ) -> impl Future<Output = (Self::Io, SocketAddr, OwnedSemaphorePermit)> + Send;
}

/// Whether an accept error concerns only that one connection.
pub(super) fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Accepts one TCP connection; on errors such as too many open files, waits a
/// second and tries again.
pub(super) async fn accept_tcp(tcp: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match tcp.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                return (stream, peer);
            }
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Plain TCP connections.
#[derive(Debug)]
pub(super) struct PlainListener {
    tcp: TcpListener,
    slots: Slots,
}

impl PlainListener {
    pub(super) fn new(tcp: TcpListener, slots: Slots) -> Self {
        Self { tcp, slots }
    }
}

impl Accept for PlainListener {
    type Io = TcpStream;

    async fn accept(&mut self) -> (TcpStream, SocketAddr, OwnedSemaphorePermit) {
        // The slot first: while none is free, connections stay in the backlog.
        let slot = self.slots.take().await;
        let (stream, peer) = accept_tcp(&self.tcp).await;
        (stream, peer, slot)
    }
}

/// Serves `app` on the connections of `listener` until `stop` completes, then
/// stops gracefully (see the module documentation).
pub(super) async fn serve<A: Accept>(
    mut listener: A,
    app: Router,
    limits: ServerLimits,
    stop: impl Future<Output = ()> + Send,
) {
    let stopping = CancellationToken::new();
    let connections = TaskTracker::new();
    tokio::pin!(stop);
    loop {
        let (io, peer, slot) = tokio::select! {
            conn = listener.accept() => conn,
            () = &mut stop => break,
        };
        debug!(%peer, "connection accepted");
        connections.spawn(serve_connection(
            io,
            peer,
            app.clone(),
            limits,
            stopping.clone(),
            slot,
        ));
    }
    drop(listener);
    stopping.cancel();
    connections.close();
    debug!(
        connections = connections.len(),
        "waiting for connections to close"
    );
    connections.wait().await;
}

/// What is going on on one connection.
#[derive(Debug, Clone, Copy, Default)]
struct Activity {
    /// Requests whose response has not been fully sent.
    in_flight: usize,
    /// Requests received so far.
    received: u64,
}

/// Counts a request in flight until dropped (with the response body).
struct InFlight(Arc<watch::Sender<Activity>>);

impl InFlight {
    fn enter(activity: Arc<watch::Sender<Activity>>) -> Self {
        activity.send_modify(|a| {
            a.in_flight += 1;
            a.received += 1;
        });
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|a| a.in_flight -= 1);
    }
}

/// A response body that keeps its request counted until it is done.
struct TrackedBody {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The app, counting the requests of one connection.
#[derive(Clone)]
struct Tracked {
    app: Router,
    activity: Arc<watch::Sender<Activity>>,
}

impl Service<Request<Incoming>> for Tracked {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let in_flight = InFlight::enter(self.activity.clone());
        let app = self.app.clone();
        Box::pin(async move {
            let resp = app.oneshot(req).await?;
            Ok(resp.map(|body| {
                Body::new(TrackedBody {
                    body,
                    _in_flight: in_flight,
                })
            }))
        })
    }
}

/// Serves one connection; the slot is given back when it ends.
async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    app: Router,
    limits: ServerLimits,
    stopping: CancellationToken,
    _slot: OwnedSemaphorePermit,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (activity, mut changes) = watch::channel(Activity::default());
    let activity = Arc::new(activity);
    let service = TowerToHyperService::new(Tracked {
        app,
        activity: activity.clone(),
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);

    // The first request's deadline; then the idle deadline whenever nothing
    // is in flight; none while a request is being served.
    let deadline = tokio::time::sleep(limits.header_read_timeout);
    tokio::pin!(deadline);
    let mut armed = true;
    let mut draining = false;
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = stopping.cancelled(), if !draining => {
                conn.as_mut().graceful_shutdown();
                draining = true;
                if changes.borrow().in_flight == 0 {
                    deadline.as_mut().reset(Instant::now() + limits.header_read_timeout);
                    armed = true;
                }
            }
            Ok(()) = changes.changed() => {
                let now = *changes.borrow_and_update();
                armed = now.in_flight == 0;
                if armed {
                    let wait = if draining { limits.header_read_timeout } else { limits.idle_timeout };
                    deadline.as_mut().reset(Instant::now() + wait);
                }
            }
            () = deadline.as_mut(), if armed => {
                if draining {
                    debug!(%peer, "connection did not close after going away: closing");
                    return;
                }
                if changes.borrow().received == 0 {
                    debug!(%peer, "no request within the header read timeout: going away");
                } else {
                    debug!(%peer, "idle connection: going away");
                }
                // Before its first request, a connection still sending its
                // first bytes ends at once; an HTTP/2 one gets GOAWAY (a
                // real client reconnects when it needs to).
                conn.as_mut().graceful_shutdown();
                draining = true;
                deadline.as_mut().reset(Instant::now() + limits.header_read_timeout);
            }
        }
    }
}
