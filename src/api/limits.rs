//! Limits of the shared port: how long a client may take, how many may be
//! served at once, and how large requests may be.

use std::time::Duration;

use crate::config::HttpConfig;

/// The limits a [`Server`](super::Server) enforces (`http.*` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// A new connection must deliver its first request's headers within this
    /// (HTTP/1.1 and HTTP/2 alike, after the TLS handshake, which gets as
    /// long); every later HTTP/1.1 request too, so an idle HTTP/1.1
    /// keep-alive connection is closed after it. Slow-header clients
    /// (slowloris) are disconnected.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight (an idle HTTP/2 or gRPC
    /// channel) is asked to go away (GOAWAY) after this.
    pub idle_timeout: Duration,
    /// Connections served at once, TLS handshakes included. Further ones are
    /// not accepted: they wait in the kernel's listen backlog until a
    /// connection closes.
    pub max_connections: usize,
    /// Largest REST request body; larger ones answer HTTP 413 with the envelope.
    pub max_rest_body_bytes: usize,
    /// Largest gRPC message received or sent (tonic's
    /// `max_decoding_message_size` and `max_encoding_message_size`); larger
    /// ones fail with OUT_OF_RANGE.
    pub max_grpc_message_bytes: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self::from_config(&HttpConfig::default())
    }
}

impl ServerLimits {
    /// The limits `http.*` configures.
    pub fn from_config(http: &HttpConfig) -> Self {
        let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        Self {
            header_read_timeout: Duration::from_secs(http.header_read_timeout_seconds),
            idle_timeout: Duration::from_secs(http.idle_timeout_seconds),
            max_connections: size(http.max_connections),
            max_rest_body_bytes: size(http.max_rest_body_bytes),
            max_grpc_message_bytes: size(http.max_grpc_message_bytes),
        }
    }
}

impl From<&HttpConfig> for ServerLimits {
    fn from(http: &HttpConfig) -> Self {
        Self::from_config(http)
    }
}
