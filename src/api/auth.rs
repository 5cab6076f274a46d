//! Optional bearer-token authentication for gRPC and REST on the shared port.
//! Health checking, reflection, the Swagger UI and `/metrics` stay open, so
//! that probes, grpcurl's discovery and scrapers work without the secret.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use tonic::Status;

use super::status::{grpc_answer, is_grpc, rest_error};
use crate::config::Secret;
use crate::error::Error;

/// Paths open without a token.
const OPEN_PREFIXES: [&str; 6] = [
    "/grpc.health.v1.Health/",
    "/api/v1/hello",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/api/v1/docs",
    "/metrics",
];

/// Compares in time independent of where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token of an `authorization` value `Bearer <token>`; the scheme's
/// name is matched whatever its case (RFC 7235).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The middleware: lets a request through when its token matches.
pub async fn require_token(State(token): State<Secret>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if OPEN_PREFIXES.iter().any(|p| path.starts_with(p)) {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .unwrap_or("");
    if constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
        return next.run(req).await;
    }
    let err = Error::Unauthenticated(if given.is_empty() {
        "missing bearer token: send `authorization: Bearer <token>`".into()
    } else {
        "wrong bearer token".into()
    });
    if is_grpc(req.headers()) {
        return grpc_answer(Status::from(err));
    }
    rest_error(String::new(), &err)
}

#[cfg(test)]
mod tests {
    use super::{bearer_token, constant_time_eq};

    #[test]
    fn the_scheme_is_matched_whatever_its_case() {
        for value in ["Bearer t0k", "bearer t0k", "BEARER t0k", "Bearer  t0k"] {
            assert_eq!(bearer_token(value), Some("t0k"), "{value}");
        }
        assert_eq!(bearer_token("Basic t0k"), None);
        assert_eq!(bearer_token("Bearert0k"), None);
    }

    #[test]
    fn compares_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
