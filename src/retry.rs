//! Retries with exponential backoff and jitter, for calls that are safe to repeat.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use crate::error::{Error, Result};

/// How many times and how fast to retry.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Attempts in all, the first included.
    pub attempts: u32,
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// Milvus calls: about 6 s of retrying before giving up.
    pub const MILVUS: Backoff = Backoff {
        attempts: 6,
        initial: Duration::from_millis(200),
        max: Duration::from_secs(3),
    };

    /// Object copies (on top of the S3 client's own retries).
    pub const COPY: Backoff = Backoff {
        attempts: 5,
        initial: Duration::from_millis(100),
        max: Duration::from_secs(2),
    };

    /// The pause before attempt `n` (1-based, n ≥ 2): exponential, capped, with
    /// ±50% jitter so that many clients do not retry in step.
    pub fn delay(&self, n: u32) -> Duration {
        let exp = self.initial.saturating_mul(1u32 << (n - 2).min(16));
        let base = exp.min(self.max).as_secs_f64();
        Duration::from_secs_f64(base * rand::rng().random_range(0.5..1.5))
    }
}

/// Runs `attempt` until it succeeds, fails with an error `retryable` refuses,
/// or the attempts run out (the last error is returned).
pub async fn retry<T, F, Fut>(
    policy: Backoff,
    retryable: impl Fn(&Error) -> bool,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut n = 1;
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) if n < policy.attempts && retryable(&e) => {
                n += 1;
                let pause = policy.delay(n);
                tracing::debug!(error = %e, attempt = n, pause_ms = pause.as_millis() as u64, "retrying");
                tokio::time::sleep(pause).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Transient failures of Milvus: unreachable, or rate limited.
pub fn milvus_transient(e: &Error) -> bool {
    match e {
        Error::Unavailable { .. } => true,
        // 2.3's ServiceNotReady, ServiceUnavailable, ServiceRequestLimitExceeded
        // and ServiceRateLimit, or the legacy RateLimit from a Milvus
        // without 2.3's codes (the two number other things alike).
        Error::Milvus {
            code: 1 | 2 | 4 | 8,
            ..
        } => true,
        Error::Milvus {
            code: 0,
            legacy_code: 49,
            ..
        } => true,
        Error::Milvus { reason, .. } => {
            let r = reason.to_ascii_lowercase();
            r.contains("rate limit") || r.contains("ratelimit") || r.contains("resourceexhausted")
        }
        _ => false,
    }
}

/// Failures of an object store worth another try (everything but "not there").
pub fn storage_transient(e: &Error) -> bool {
    matches!(e, Error::Unavailable { .. } | Error::Storage { .. })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn retries_transient_errors_only() {
        let fast = Backoff {
            attempts: 4,
            initial: Duration::from_millis(1),
            max: Duration::from_millis(2),
        };
        let calls = AtomicU32::new(0);
        let v = retry(fast, storage_transient, || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(Error::Storage {
                    operation: "GetObject",
                    key: "k".into(),
                    reason: "503".into(),
                })
            } else {
                Ok(7)
            }
        })
        .await
        .unwrap();
        assert_eq!((v, calls.load(Ordering::SeqCst)), (7, 3));
        let calls = AtomicU32::new(0);
        let e = retry(fast, storage_transient, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(Error::not_found("object", "k"))
        })
        .await
        .unwrap_err();
        assert!(matches!(e, Error::NotFound { .. }));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn delays_grow_and_stay_capped() {
        let b = Backoff::MILVUS;
        assert!(b.delay(2) <= Duration::from_millis(300));
        assert!(b.delay(12) <= Duration::from_millis(4500));
    }

    /// 2.3's codes and the legacy ones number different things: 2.3's 4 is
    /// a request limit (retried), the legacy 4 a missing collection, the
    /// legacy 8 an illegal collection name (not retried).
    #[test]
    fn milvus_codes_are_read_in_their_own_numbering() {
        let transient =
            |code, legacy| milvus_transient(&Error::milvus_codes("Op", "x", code, legacy));
        assert!(transient(1, 1), "service not ready");
        assert!(transient(2, 1), "service unavailable");
        assert!(transient(4, 1), "request limit exceeded");
        assert!(transient(8, 0), "rate limit");
        assert!(transient(0, 49), "the legacy RateLimit");
        assert!(!transient(0, 8), "the legacy IllegalCollectionName");
        assert!(!transient(0, 4), "the legacy CollectionNotExists");
        assert!(!transient(100, 4), "collection not found");
    }
}
