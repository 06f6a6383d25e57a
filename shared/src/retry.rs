//! Retries with exponential backoff and full jitter, for retryable errors
//! only, never sleeping past the invocation's deadline.
//!
//! Deadlines are [`tokio::time::Instant`]s: the clock the sleeps run on, so
//! the deadline check and the sleeps agree, also under tokio's paused time
//! in tests (`std::time::Instant` does not move there).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{Error, Result};

/// How to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, including the first.
    pub max_attempts: u32,
    /// The backoff ceiling before the first retry; it doubles each retry.
    pub base_delay: Duration,
    /// The largest backoff ceiling.
    pub max_delay: Duration,
    /// Time kept in reserve before the deadline for reporting the failure.
    pub deadline_margin: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            deadline_margin: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// The backoff ceiling before retry number `retry` (1-based):
    /// `min(max_delay, base_delay * 2^(retry-1))`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// The delay before retry number `retry`: uniform in `[0, ceiling]`
    /// ("full jitter"), so that many failing workers spread out.
    pub fn delay(&self, retry: u32) -> Duration {
        let ceiling = self.ceiling(retry).as_millis() as u64;
        Duration::from_millis(rand::random_range(0..=ceiling))
    }

    /// Whether sleeping `delay` would leave too little time before `deadline`.
    pub fn would_pass_deadline(
        &self,
        now: Instant,
        delay: Duration,
        deadline: Option<Instant>,
    ) -> bool {
        deadline.is_some_and(|d| now + delay + self.deadline_margin >= d)
    }
}

/// What happened across the attempts of one operation.
#[derive(Debug)]
pub struct Retried<T> {
    /// The final result.
    pub result: Result<T>,
    /// Attempts made.
    pub attempts: u32,
}

/// Run `op` until it succeeds, fails permanently, runs out of attempts, or the
/// next sleep would pass `deadline`. `on_retry(attempt, delay, &err)` is called
/// before each sleep, for logging and metrics.
pub async fn retry<T, F, Fut>(
    policy: &RetryPolicy,
    deadline: Option<Instant>,
    mut on_retry: impl FnMut(u32, Duration, &Error),
    mut op: F,
) -> Retried<T>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut attempt = 1;
    loop {
        let result = op(attempt).await;
        let err = match result {
            Ok(v) => {
                return Retried {
                    result: Ok(v),
                    attempts: attempt,
                }
            }
            Err(e) => e,
        };
        let delay = policy.delay(attempt);
        if !err.is_retryable()
            || attempt >= policy.max_attempts
            || policy.would_pass_deadline(Instant::now(), delay, deadline)
        {
            return Retried {
                result: Err(err),
                attempts: attempt,
            };
        }
        on_retry(attempt, delay, &err);
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
            deadline_margin: Duration::ZERO,
        }
    }

    #[test]
    fn ceiling_doubles_and_caps() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
            ..RetryPolicy::default()
        };
        let got: Vec<u128> = (1..=5).map(|r| p.ceiling(r).as_millis()).collect();
        assert_eq!(got, vec![100, 200, 400, 500, 500]);
        assert_eq!(p.ceiling(40), Duration::from_millis(500), "no overflow");
        for r in 1..=5 {
            assert!(p.delay(r) <= p.ceiling(r));
        }
    }

    #[test]
    fn deadline_check() {
        let p = RetryPolicy {
            deadline_margin: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        let now = Instant::now();
        assert!(p.would_pass_deadline(
            now,
            Duration::from_millis(500),
            Some(now + Duration::from_millis(1400))
        ));
        assert!(!p.would_pass_deadline(
            now,
            Duration::from_millis(500),
            Some(now + Duration::from_secs(3))
        ));
        assert!(!p.would_pass_deadline(now, Duration::from_secs(60), None));
    }

    #[tokio::test]
    async fn retries_transient_until_success() {
        let calls = AtomicU32::new(0);
        let mut retries = Vec::new();
        let r = retry(
            &fast(),
            None,
            |a, _, _| retries.push(a),
            |_| async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(Error::other(ErrorKind::Transient, "503", None))
                } else {
                    Ok(42)
                }
            },
        )
        .await;
        assert_eq!(r.result.unwrap(), 42);
        assert_eq!(r.attempts, 3);
        assert_eq!(retries, vec![1, 2]);
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let r: Retried<()> = retry(
            &fast(),
            None,
            |_, _, _| {},
            |_| async { Err(Error::invalid_input("s3://b/k", "not gzip")) },
        )
        .await;
        assert_eq!(r.attempts, 1);
        assert!(r.result.is_err());
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts() {
        let r: Retried<()> = retry(
            &fast(),
            None,
            |_, _, _| {},
            |_| async { Err(Error::other(ErrorKind::Transient, "503", None)) },
        )
        .await;
        assert_eq!(r.attempts, 5);
    }

    #[tokio::test]
    async fn stops_at_the_deadline() {
        let p = RetryPolicy {
            max_attempts: 100,
            deadline_margin: Duration::from_secs(10),
            ..fast()
        };
        // The deadline leaves less than the margin: no retry at all.
        let r: Retried<()> = retry(
            &p,
            Some(Instant::now() + Duration::from_secs(1)),
            |_, _, _| {},
            |_| async { Err(Error::other(ErrorKind::Transient, "503", None)) },
        )
        .await;
        assert_eq!(r.attempts, 1);
    }
}
