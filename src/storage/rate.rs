//! A bandwidth cap shared by every copy of every job (`backup.rateLimitMiBps`).
//!
//! Pacing, not a bucket of tokens: each copy reserves the next free stretch of
//! the byte budget and waits for its turn, so the bytes copied never run ahead
//! of `rate × elapsed` by more than the pieces in flight.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::TryStreamExt;
use tokio::time::Instant;

use super::ByteStream;

/// Bytes per second over all copies.
#[derive(Debug)]
pub struct RateLimit {
    bytes_per_second: f64,
    /// When the budget reserved so far is used up.
    next_free: Mutex<Instant>,
}

impl RateLimit {
    /// A cap of `mib_per_second` MiB/s; `None` for 0 (no cap).
    pub fn new(mib_per_second: f64) -> Option<Self> {
        (mib_per_second > 0.0).then(|| Self {
            bytes_per_second: mib_per_second * 1024.0 * 1024.0,
            next_free: Mutex::new(Instant::now()),
        })
    }

    /// Waits until `bytes` more may be copied.
    pub async fn take(&self, bytes: u64) {
        let start = {
            let mut next_free = self.next_free.lock().expect("rate limit");
            let start = (*next_free).max(Instant::now());
            *next_free = start + Duration::from_secs_f64(bytes as f64 / self.bytes_per_second);
            start
        };
        tokio::time::sleep_until(start).await;
    }
}

/// `body`, each chunk waiting for its share of `limit` (none: as it comes).
pub fn paced(body: ByteStream, limit: Option<Arc<RateLimit>>) -> ByteStream {
    let Some(limit) = limit else {
        return body;
    };
    Box::pin(body.and_then(move |chunk| {
        let limit = limit.clone();
        async move {
            limit.take(chunk.len() as u64).await;
            Ok(chunk)
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read paced at 1 MiB/s: its fourth half-MiB chunk comes after 1.5 s.
    #[tokio::test(start_paused = true)]
    async fn a_paced_stream_gives_its_chunks_at_the_rate() {
        let chunks = (0..4).map(|_| Ok(bytes::Bytes::from(vec![0u8; 512 * 1024])));
        let body: ByteStream = Box::pin(futures::stream::iter(chunks));
        let t0 = Instant::now();
        let mut paced = paced(body, RateLimit::new(1.0).map(Arc::new));
        while paced.try_next().await.unwrap().is_some() {}
        assert_eq!(Instant::now() - t0, Duration::from_millis(1500));
    }

    #[tokio::test(start_paused = true)]
    async fn paces_reservations_at_the_rate() {
        let limit = RateLimit::new(1.0).unwrap();
        let t0 = Instant::now();
        for _ in 0..4 {
            limit.take(512 * 1024).await;
        }
        // Four half-MiB pieces at 1 MiB/s: the fourth starts after 1.5 s.
        assert_eq!(Instant::now() - t0, Duration::from_millis(1500));
        assert!(RateLimit::new(0.0).is_none());
    }
}
