//! A TLS listener: TCP connections are accepted in the background and their
//! handshakes run concurrently, so one slow or broken client never holds up
//! the others. Each connection takes a slot before it is accepted (the
//! connection cap counts handshakes too) and keeps it while it is served.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::debug;

use super::serve::{Accept, Slots, accept_tcp};

/// Connections whose handshake is done but that the server has not taken yet.
const READY_BACKLOG: usize = 64;

type Ready = (TlsStream<TcpStream>, SocketAddr, OwnedSemaphorePermit);

/// Accepts TCP connections on a listener and yields them once TLS is up.
#[derive(Debug)]
pub struct TlsListener {
    ready: mpsc::Receiver<Ready>,
}

impl TlsListener {
    /// Starts accepting on `tcp` with `config`, a connection at a time per
    /// free slot; a handshake may take `handshake_timeout`.
    pub fn new(
        tcp: TcpListener,
        config: Arc<ServerConfig>,
        slots: Slots,
        handshake_timeout: Duration,
    ) -> Self {
        let (tx, ready) = mpsc::channel(READY_BACKLOG);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (stream, peer, slot) = tokio::select! {
                    // The server is gone: stop accepting.
                    _ = tx.closed() => return,
                    accepted = async {
                        let slot = slots.take().await;
                        let (stream, peer) = accept_tcp(&tcp).await;
                        (stream, peer, slot)
                    } => accepted,
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer, slot)).await;
                        }
                        Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Self { ready }
    }
}

impl Accept for TlsListener {
    type Io = TlsStream<TcpStream>;

    async fn accept(&mut self) -> Ready {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The accept task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }
}
