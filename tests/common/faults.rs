//! A fault-injecting HTTP proxy for S3 on 127.0.0.1: it forwards each request
//! to the real S3 server, except that a share of them gets a 503 SlowDown and
//! another share has its connection dropped without an answer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;

/// What the proxy did.
#[derive(Debug, Default)]
pub struct FaultCounts {
    pub forwarded: AtomicU64,
    pub errors_503: AtomicU64,
    pub resets: AtomicU64,
}

/// A running proxy.
pub struct FaultProxy {
    pub addr: SocketAddr,
    pub counts: Arc<FaultCounts>,
}

type Body = BoxBody<Bytes, hyper::Error>;

/// Starts a proxy to `upstream` (`127.0.0.1:9000`) that fails `error_rate` of
/// requests with 503 and drops `reset_rate` of connections, from `seed`.
pub async fn start(
    upstream: SocketAddr,
    error_rate: f64,
    reset_rate: f64,
    seed: u64,
) -> FaultProxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counts = Arc::new(FaultCounts::default());
    let rng = Arc::new(std::sync::Mutex::new(StdRng::seed_from_u64(seed)));
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build_http();
    let c = counts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (client, counts, rng) = (client.clone(), c.clone(), rng.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                    let (client, counts, rng) = (client.clone(), counts.clone(), rng.clone());
                    async move {
                        let roll: f64 = rng.lock().unwrap().random();
                        if roll < reset_rate {
                            counts.resets.fetch_add(1, Ordering::Relaxed);
                            // An error from the service makes hyper drop the connection unanswered.
                            return Err::<Response<Body>, _>(std::io::Error::other(
                                "injected connection reset",
                            ));
                        }
                        if roll < reset_rate + error_rate {
                            counts.errors_503.fetch_add(1, Ordering::Relaxed);
                            let body = "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>injected</Message></Error>";
                            let resp = Response::builder()
                                .status(503)
                                .header("content-type", "application/xml")
                                .body(
                                    Full::new(Bytes::from(body))
                                        .map_err(|never: Infallible| match never {})
                                        .boxed(),
                                )
                                .unwrap();
                            return Ok(resp);
                        }
                        let uri = format!(
                            "http://{upstream}{}",
                            req.uri()
                                .path_and_query()
                                .map(|p| p.as_str())
                                .unwrap_or("/")
                        );
                        *req.uri_mut() = uri.parse().unwrap();
                        let resp = client.request(req).await.map_err(std::io::Error::other)?;
                        counts.forwarded.fetch_add(1, Ordering::Relaxed);
                        Ok(resp.map(|b| b.boxed()))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    FaultProxy { addr, counts }
}
