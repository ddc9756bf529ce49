//! Per-peer token buckets: a flooding peer's messages are dropped before they cost a decode or a
//! signature check. Pure and clock-driven (the caller passes `now`), so it tests without time.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// One token bucket: `burst` tokens, refilled at `per_sec` tokens per second.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

/// Buckets for many keys (peers), each with the same rate and burst. Idle buckets are dropped
/// by [`RateLimiter::prune`] so the map stays bounded by the active peers.
#[derive(Debug)]
pub struct RateLimiter<K> {
    per_sec: f64,
    burst: f64,
    buckets: HashMap<K, TokenBucket>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    pub fn new(per_sec: u32, burst: u32) -> RateLimiter<K> {
        RateLimiter {
            per_sec: f64::from(per_sec),
            burst: f64::from(burst),
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `key`; false if its bucket is empty.
    pub fn allow(&mut self, key: &K, now: Instant) -> bool {
        let burst = self.burst;
        let per_sec = self.per_sec;
        let bucket =
            self.buckets.entry(key.clone()).or_insert(TokenBucket { tokens: burst, last: now });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_sec).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets buckets that have been full for longer than `idle`.
    pub fn prune(&mut self, now: Instant, idle: Duration) {
        self.buckets.retain(|_, b| now.saturating_duration_since(b.last) < idle);
    }

    pub fn forget(&mut self, key: &K) {
        self.buckets.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let mut rl = RateLimiter::new(10, 5);
        let t0 = Instant::now();
        let allowed = (0..20).filter(|_| rl.allow(&"peer", t0)).count();
        assert_eq!(allowed, 5);
        // 0.5 s later, 5 more tokens.
        let t1 = t0 + Duration::from_millis(500);
        let allowed = (0..20).filter(|_| rl.allow(&"peer", t1)).count();
        assert_eq!(allowed, 5);
        // Another peer has its own bucket.
        assert!(rl.allow(&"other", t1));
        rl.prune(t1 + Duration::from_secs(100), Duration::from_secs(10));
        assert!(rl.buckets.is_empty());
    }
}
