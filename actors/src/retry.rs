//! The retry delay shared by the HTTP clients (the LLM endpoint and the Ray head): exponential
//! backoff with "equal jitter" - a random 0.5-1x of the delay (never near zero, unlike full
//! jitter), so clients that failed together do not retry together. The loops around it stay
//! each client's own: the LLM client also downgrades its response format, Ray's stops at a
//! reconnection deadline.

use rand::Rng;
use std::time::Duration;

/// Delay before retry `n` (0-based): `base * 2^n` capped at `max`, jittered, never below
/// `after` (a server's `Retry-After`).
pub fn backoff(base: Duration, max: Duration, n: usize, after: Option<Duration>) -> Duration {
    let exp = (base.as_secs_f64() * 2f64.powi(n.min(30) as i32)).min(max.as_secs_f64());
    let jittered = exp * rand::thread_rng().gen_range(0.5..=1.0);
    let d = Duration::from_secs_f64(jittered.max(0.0));
    after.map_or(d, |a| a.max(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_caps_and_honours_retry_after() {
        let (base, max) = (Duration::from_secs(1), Duration::from_secs(5));
        for _ in 0..50 {
            let d0 = backoff(base, max, 0, None).as_secs_f64();
            assert!((0.5..=1.0).contains(&d0), "{d0}");
            let d2 = backoff(base, max, 2, None).as_secs_f64();
            assert!((2.0..=4.0).contains(&d2), "{d2}");
            let d9 = backoff(base, max, 9, None).as_secs_f64();
            assert!((2.5..=5.0).contains(&d9), "{d9}");
            let ra = backoff(base, max, 0, Some(Duration::from_secs(3)));
            assert_eq!(ra, Duration::from_secs(3));
        }
    }
}
