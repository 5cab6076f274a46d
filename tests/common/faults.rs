//! A fault-injecting HTTP proxy for S3 on 127.0.0.1: it forwards each request
//! to the real S3 server, except that every n-th request gets a 503
//! SlowDown, every m-th has its connection dropped without an answer, and
//! every k-th object transfer is cut partway through its body: a GetObject's
//! response body after half its bytes, a PutObject's or UploadPart's request
//! body after about half its bytes were received (nothing of it is
//! forwarded, so the store never sees a partial object). The faults are
//! counted out rather than drawn at random, so that a run surely gets each
//! kind (which requests get them still depends on the order they arrive
//! in); the body cuts can be switched on and off while the proxy runs.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

/// Which requests get each fault: every n-th (0: none).
#[derive(Debug, Clone, Copy, Default)]
pub struct Rates {
    /// Every n-th request is answered 503 SlowDown instead of being forwarded.
    pub error_503_every: u64,
    /// Every n-th request has its connection dropped before forwarding, without an answer.
    pub reset_every: u64,
    /// Every n-th GetObject (that got no other fault) has its response body
    /// cut after half its bytes; 0: none.
    pub cut_get_every: u64,
    /// Every n-th PutObject or UploadPart (that got no other fault) has its
    /// request body cut partway; 0: none.
    pub cut_put_every: u64,
}

/// What the proxy did.
#[derive(Debug, Default)]
pub struct FaultCounts {
    pub forwarded: AtomicU64,
    pub errors_503: AtomicU64,
    pub resets: AtomicU64,
    /// GetObject response bodies cut partway.
    pub cut_responses: AtomicU64,
    /// PutObject and UploadPart request bodies cut partway.
    pub cut_requests: AtomicU64,
    /// Bytes of the cut response bodies sent, and their full sizes.
    pub cut_response_bytes: AtomicU64,
    pub cut_response_full_bytes: AtomicU64,
    /// Bytes of the cut request bodies received, and their full sizes.
    pub cut_request_bytes: AtomicU64,
    pub cut_request_full_bytes: AtomicU64,
    /// Requests seen, and GetObjects and PutObjects/UploadParts seen past the other faults.
    requests: AtomicU64,
    gets: AtomicU64,
    puts: AtomicU64,
    /// The cut periods in force (see [`Rates`]).
    cut_get_every: AtomicU64,
    cut_put_every: AtomicU64,
    /// Deletes (DeleteObject, DeleteObjects) answered 403 AccessDenied while set.
    refuse_deletes: AtomicBool,
    /// Deletes refused.
    pub refused_deletes: AtomicU64,
    /// GetObjects of keys ending so are answered 403 AccessDenied.
    refuse_gets_for: std::sync::Mutex<Option<String>>,
    /// GetObjects refused.
    pub refused_gets: AtomicU64,
    /// PutObjects to keys ending so are answered 403 AccessDenied.
    refuse_puts_for: std::sync::Mutex<Option<String>>,
    /// PutObjects refused.
    pub refused_puts: AtomicU64,
    /// PutObjects to keys ending so (only those with an `If-Match` when
    /// set) are forwarded, then left unanswered, while any of the count is
    /// left.
    lose_put_answers_for: std::sync::Mutex<Option<(String, u64, bool)>>,
    /// Answers so lost.
    pub lost_answers: AtomicU64,
    /// Conditional PutObjects (`If-None-Match`, `If-Match`) to keys ending
    /// so are answered 409 ConditionalRequestConflict, while any are left.
    conflict_puts_for: std::sync::Mutex<Option<(String, u64)>>,
    /// Conditional PutObjects so answered.
    pub conflicts_409: AtomicU64,
    /// Every request seen, as `METHOD /path?query`.
    pub seen: std::sync::Mutex<Vec<String>>,
    /// Server-side copies are held, unanswered, while set.
    hold_copies: AtomicBool,
    /// Wakes the held copies when they are let go.
    copies_let_go: tokio::sync::Notify,
    /// Copies held, copies forwarded once let go (whether or not their
    /// caller still waited for the answer), and those S3 answered 2xx.
    pub held_copies: AtomicU64,
    pub late_copies: AtomicU64,
    pub late_copies_made: AtomicU64,
}

/// Whether the `seen`-th (from 1) eligible request gets the fault that every
/// `every`-th gets, starting with the `first`-th.
fn nth(seen: u64, every: u64, first: u64) -> bool {
    every > 0 && seen % every == first % every
}

/// The counts at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub forwarded: u64,
    pub errors_503: u64,
    pub resets: u64,
    pub cut_responses: u64,
    pub cut_requests: u64,
}

impl FaultCounts {
    pub fn now(&self) -> Counts {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counts {
            forwarded: get(&self.forwarded),
            errors_503: get(&self.errors_503),
            resets: get(&self.resets),
            cut_responses: get(&self.cut_responses),
            cut_requests: get(&self.cut_requests),
        }
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} x 503, {} resets, {} GetObject bodies cut, {} PutObject bodies cut, over {} forwarded requests",
            self.errors_503, self.resets, self.cut_responses, self.cut_requests, self.forwarded
        )
    }
}

/// A running proxy.
pub struct FaultProxy {
    pub addr: SocketAddr,
    pub counts: Arc<FaultCounts>,
}

impl FaultProxy {
    /// Cuts every `n`-th GetObject response body from now on (0: none).
    pub fn cut_get_every(&self, n: u64) {
        self.counts.cut_get_every.store(n, Ordering::Relaxed);
    }

    /// Cuts every `n`-th PutObject or UploadPart request body from now on (0: none).
    pub fn cut_put_every(&self, n: u64) {
        self.counts.cut_put_every.store(n, Ordering::Relaxed);
    }

    /// Forwards every PutObject (or GCS upload) to a key ending in `suffix`,
    /// then hangs up without its answer, as when the answer of a write that
    /// landed is lost.
    #[allow(dead_code)]
    pub fn lose_put_answers_for(&self, suffix: &str) {
        *self.counts.lose_put_answers_for.lock().unwrap() =
            Some((suffix.to_string(), u64::MAX, false));
    }

    /// [`Self::lose_put_answers_for`], for the next `n` writes with an
    /// `If-Match` only (a lease's takeover): the client's retry of the
    /// write then gets its answer.
    #[allow(dead_code)]
    pub fn lose_next_if_match_answers_for(&self, suffix: &str, n: u64) {
        *self.counts.lose_put_answers_for.lock().unwrap() = Some((suffix.to_string(), n, true));
    }

    /// Answers the next `n` conditional PutObjects to a key ending in
    /// `suffix` 409 ConditionalRequestConflict without forwarding them, as
    /// AWS S3 answers a conditional write that raced another one to the key.
    #[allow(dead_code)]
    pub fn conflict_conditional_puts_for(&self, suffix: &str, n: u64) {
        *self.counts.conflict_puts_for.lock().unwrap() = Some((suffix.to_string(), n));
    }

    /// Holds every server-side copy (CopyObject, UploadPartCopy) from now on
    /// until called with `false`; then forwards each held one to S3 even if
    /// its caller has hung up meanwhile, as a store finishes a request it
    /// received.
    #[allow(dead_code)]
    pub fn hold_copies(&self, hold: bool) {
        self.counts.hold_copies.store(hold, Ordering::SeqCst);
        if !hold {
            self.counts.copies_let_go.notify_waiters();
        }
    }

    /// Answers every GetObject of a key ending in `suffix` 403 AccessDenied
    /// from now on (`None`: forwards them again).
    #[allow(dead_code)]
    pub fn refuse_gets_for(&self, suffix: Option<&str>) {
        *self.counts.refuse_gets_for.lock().unwrap() = suffix.map(str::to_string);
    }

    /// Answers every delete 403 AccessDenied from now on, as a store whose
    /// credentials may not delete does (or forwards them again).
    #[allow(dead_code)]
    pub fn refuse_deletes(&self, refuse: bool) {
        self.counts.refuse_deletes.store(refuse, Ordering::SeqCst);
    }

    /// Answers every PutObject to a key ending in `suffix` 403 AccessDenied
    /// from now on, without forwarding it (`None`: forwards them again).
    #[allow(dead_code)]
    pub fn refuse_puts_for(&self, suffix: Option<&str>) {
        *self.counts.refuse_puts_for.lock().unwrap() = suffix.map(str::to_string);
    }
}

type Body = BoxBody<Bytes, std::io::Error>;

/// A GetObject: a GET of a key (not a bucket listing or a multipart query).
fn is_get_object<B>(req: &Request<B>) -> bool {
    let key = req
        .uri()
        .path()
        .trim_start_matches('/')
        .split_once('/')
        .is_some_and(|(_, k)| !k.is_empty());
    let query = req.uri().query().unwrap_or("");
    req.method() == Method::GET
        && key
        && !query.contains("uploadId")
        && !query.contains("list-type")
}

/// A PutObject or UploadPart with a body (not a server-side copy).
fn is_put_body<B>(req: &Request<B>) -> bool {
    req.method() == Method::PUT
        && !req.headers().contains_key("x-amz-copy-source")
        && content_length(req) > 1
}

/// Whether `req`'s key ends in the suffix set in `suffix`, if one is.
fn ends_in<B>(req: &Request<B>, suffix: &std::sync::Mutex<Option<String>>) -> bool {
    let suffix = suffix.lock().unwrap();
    suffix
        .as_deref()
        .is_some_and(|s| req.uri().path().ends_with(s))
}

fn content_length<B>(req: &Request<B>) -> u64 {
    req.headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A DeleteObject, or a DeleteObjects (`POST ?delete`).
fn is_delete<B>(req: &Request<B>) -> bool {
    let query = req.uri().query().unwrap_or("");
    (req.method() == Method::DELETE && !query.contains("uploadId"))
        || (req.method() == Method::POST
            && query.split('&').any(|p| p == "delete" || p == "delete="))
}

fn s3_error(status: u16, code: &str) -> Response<Body> {
    let body = format!(
        "<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>injected</Message></Error>"
    );
    Response::builder()
        .status(status)
        .header("content-type", "application/xml")
        .body(
            Full::new(Bytes::from(body))
                .map_err(|never: Infallible| match never {})
                .boxed(),
        )
        .unwrap()
}

/// Starts a proxy to `upstream` (`127.0.0.1:9000`) with `rates`.
pub async fn start(upstream: SocketAddr, rates: Rates) -> FaultProxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counts = Arc::new(FaultCounts::default());
    counts
        .cut_get_every
        .store(rates.cut_get_every, Ordering::Relaxed);
    counts
        .cut_put_every
        .store(rates.cut_put_every, Ordering::Relaxed);
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build_http();
    let c = counts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (client, counts) = (client.clone(), c.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (client, counts) = (client.clone(), counts.clone());
                    async move { handle(req, upstream, rates, &client, &counts).await }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    FaultProxy { addr, counts }
}

async fn handle(
    mut req: Request<Incoming>,
    upstream: SocketAddr,
    rates: Rates,
    client: &Client<HttpConnector, Incoming>,
    counts: &Arc<FaultCounts>,
) -> Result<Response<Body>, std::io::Error> {
    let n = counts.requests.fetch_add(1, Ordering::Relaxed) + 1;
    counts
        .seen
        .lock()
        .unwrap()
        .push(format!("{} {}", req.method(), req.uri()));
    if nth(n, rates.reset_every, 3) {
        counts.resets.fetch_add(1, Ordering::Relaxed);
        // An error from the service makes hyper drop the connection unanswered.
        return Err(std::io::Error::other("injected connection reset"));
    }
    if nth(n, rates.error_503_every, 11) {
        counts.errors_503.fetch_add(1, Ordering::Relaxed);
        return Ok(s3_error(503, "SlowDown"));
    }
    if counts.refuse_deletes.load(Ordering::SeqCst) && is_delete(&req) {
        counts.refused_deletes.fetch_add(1, Ordering::Relaxed);
        return Ok(s3_error(403, "AccessDenied"));
    }
    let is_put_object =
        req.method() == Method::PUT && !req.headers().contains_key("x-amz-copy-source");
    let refusals = [
        (
            is_get_object(&req),
            &counts.refuse_gets_for,
            &counts.refused_gets,
        ),
        (is_put_object, &counts.refuse_puts_for, &counts.refused_puts),
    ];
    for (applies, suffix, refused) in refusals {
        if applies && ends_in(&req, suffix) {
            refused.fetch_add(1, Ordering::Relaxed);
            return Ok(s3_error(403, "AccessDenied"));
        }
    }
    let conditional = ["if-none-match", "if-match"]
        .iter()
        .any(|h| req.headers().contains_key(*h));
    if is_put_object && conditional {
        let mut left = counts.conflict_puts_for.lock().unwrap();
        if let Some((suffix, n)) = left.as_mut()
            && *n > 0
            && req.uri().path().ends_with(suffix.as_str())
        {
            *n -= 1;
            counts.conflicts_409.fetch_add(1, Ordering::Relaxed);
            return Ok(s3_error(409, "ConditionalRequestConflict"));
        }
    }
    if is_put_body(&req)
        && nth(
            counts.puts.fetch_add(1, Ordering::Relaxed) + 1,
            counts.cut_put_every.load(Ordering::Relaxed),
            5,
        )
    {
        // Take about half of the body, then hang up without an answer.
        let full = content_length(&req);
        let mut received = 0u64;
        let body = req.body_mut();
        while received < full / 2 {
            match body.frame().await {
                Some(Ok(frame)) => {
                    received += frame.data_ref().map_or(0, |d| d.len() as u64);
                }
                _ => break,
            }
        }
        counts.cut_requests.fetch_add(1, Ordering::Relaxed);
        counts
            .cut_request_bytes
            .fetch_add(received, Ordering::Relaxed);
        counts
            .cut_request_full_bytes
            .fetch_add(full, Ordering::Relaxed);
        return Err(std::io::Error::other("injected cut of the request body"));
    }
    let cut_response = is_get_object(&req)
        && nth(
            counts.gets.fetch_add(1, Ordering::Relaxed) + 1,
            counts.cut_get_every.load(Ordering::Relaxed),
            5,
        );
    let uri = format!(
        "http://{upstream}{}",
        req.uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    *req.uri_mut() = uri.parse().unwrap();
    // The key: the path's end (S3, Azure), or GCS's `name` in the query of
    // its uploads (POST).
    let named = |suffix: &str| {
        req.uri().path().ends_with(suffix)
            || req.uri().query().unwrap_or_default().split('&').any(|kv| {
                kv.strip_prefix("name=").is_some_and(|n| {
                    percent_encoding::percent_decode_str(n)
                        .decode_utf8_lossy()
                        .ends_with(suffix)
                })
            })
    };
    let lose_answer = matches!(*req.method(), Method::PUT | Method::POST)
        && match &mut *counts.lose_put_answers_for.lock().unwrap() {
            Some((suffix, left, if_match))
                if *left > 0
                    && named(suffix)
                    && (!*if_match || req.headers().contains_key("if-match")) =>
            {
                *left -= 1;
                true
            }
            _ => false,
        };
    if req.headers().contains_key("x-amz-copy-source") && counts.hold_copies.load(Ordering::SeqCst)
    {
        counts.held_copies.fetch_add(1, Ordering::SeqCst);
        let (client, counts) = (client.clone(), counts.clone());
        // A task of its own: forwarded even if this answer is no longer awaited.
        let late = tokio::spawn(async move {
            loop {
                let let_go = counts.copies_let_go.notified();
                if !counts.hold_copies.load(Ordering::SeqCst) {
                    break;
                }
                let_go.await;
            }
            let resp = client.request(req).await;
            if resp.as_ref().is_ok_and(|r| r.status().is_success()) {
                counts.late_copies_made.fetch_add(1, Ordering::SeqCst);
            }
            counts.late_copies.fetch_add(1, Ordering::SeqCst);
            resp
        });
        let resp = late
            .await
            .map_err(std::io::Error::other)?
            .map_err(std::io::Error::other)?;
        return Ok(resp.map(|b| b.map_err(std::io::Error::other).boxed()));
    }
    let resp = client.request(req).await.map_err(std::io::Error::other)?;
    counts.forwarded.fetch_add(1, Ordering::Relaxed);
    if lose_answer {
        counts.lost_answers.fetch_add(1, Ordering::Relaxed);
        return Err(std::io::Error::other("injected loss of the answer"));
    }
    if cut_response && resp.status().is_success() {
        let (parts, body) = resp.into_parts();
        let bytes = body
            .collect()
            .await
            .map_err(std::io::Error::other)?
            .to_bytes();
        if bytes.len() >= 2 {
            // The headers promise every byte; half of them come, then the connection ends.
            let half = bytes.slice(..bytes.len() / 2);
            counts.cut_responses.fetch_add(1, Ordering::Relaxed);
            counts
                .cut_response_bytes
                .fetch_add(half.len() as u64, Ordering::Relaxed);
            counts
                .cut_response_full_bytes
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            // The pause lets the headers and the first half go out before the cut.
            let frames = futures::stream::once(async move { Ok(Frame::data(half)) }).chain(
                futures::stream::once(async {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    Err(std::io::Error::other("injected cut of the response body"))
                }),
            );
            return Ok(Response::from_parts(
                parts,
                BodyExt::boxed(StreamBody::new(frames)),
            ));
        }
        return Ok(Response::from_parts(
            parts,
            Full::new(bytes)
                .map_err(|never: Infallible| match never {})
                .boxed(),
        ));
    }
    Ok(resp.map(|b| b.map_err(std::io::Error::other).boxed()))
}

/// Copies `from` to `to` while `up` holds: a connection of a proxy switched
/// off forwards no byte more, however late its watcher runs.
async fn forward_while_up(
    from: &mut (impl tokio::io::AsyncRead + Unpin),
    to: &mut (impl tokio::io::AsyncWrite + Unpin),
    up: &AtomicBool,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if !up.load(Ordering::SeqCst) || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Switches a [`switchable_proxy`] off, and waits until it has cut the
/// connections open through it (it looks every 50 ms; none forwards a byte
/// once off).
#[allow(dead_code)]
pub async fn switch_off(up: &AtomicBool) {
    up.store(false, Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
}

/// `cfg` with Milvus reached through a [`switchable_proxy`], and its switch.
#[allow(dead_code)]
pub async fn milvus_through_switch(
    cfg: &milvus_backup::config::Config,
) -> (milvus_backup::config::Config, Arc<AtomicBool>) {
    let milvus: SocketAddr = format!("{}:{}", cfg.milvus.address, cfg.milvus.port)
        .parse()
        .unwrap();
    let (proxy, up) = switchable_proxy(milvus).await;
    let mut via = cfg.clone();
    via.milvus.port = proxy.port();
    (via, up)
}

/// A TCP proxy to `upstream` (Milvus, or S3) that can be switched off (every
/// connection refused and cut) and on again: the server "going away" from
/// our server's view.
pub async fn switchable_proxy(upstream: SocketAddr) -> (SocketAddr, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let up = Arc::new(AtomicBool::new(true));
    let flag = up.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let flag = flag.clone();
            tokio::spawn(async move {
                if !flag.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut ri, mut wi) = inbound.split();
                let (mut ro, mut wo) = outbound.split();
                let watch = async {
                    while flag.load(Ordering::SeqCst) {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                };
                tokio::select! {
                    _ = forward_while_up(&mut ri, &mut wo, &flag) => {}
                    _ = forward_while_up(&mut ro, &mut wi, &flag) => {}
                    _ = watch => {}
                }
            });
        }
    });
    (addr, up)
}
