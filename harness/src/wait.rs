//! Bounded polling: wait until a condition holds, at most a given time and number of polls,
//! and say what was being waited for when it never does.
//!
//! A probe answers `bool` (true = done), `Option<T>` (Some = done) or `Result<T, E>`
//! (Ok = done; the last error is kept for the timeout message).

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

/// The condition did not hold in time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("timed out after {elapsed:?} ({polls} polls) waiting for {what}{}",
    last.as_ref().map(|l| format!("; last: {l}")).unwrap_or_default())]
pub struct WaitError {
    /// What was being waited for.
    pub what: String,
    /// How long it waited.
    pub elapsed: Duration,
    /// How many times it polled.
    pub polls: u32,
    /// The last error a `Result` probe returned.
    pub last: Option<String>,
}

/// What a probe returns: done with a value, or not yet (with an optional reason).
pub trait Probe {
    type Output;
    fn check(self) -> Result<Self::Output, Option<String>>;
}

impl Probe for bool {
    type Output = ();
    fn check(self) -> Result<(), Option<String>> {
        if self { Ok(()) } else { Err(None) }
    }
}

impl<T> Probe for Option<T> {
    type Output = T;
    fn check(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: Display> Probe for Result<T, E> {
    type Output = T;
    fn check(self) -> Result<T, Option<String>> {
        self.map_err(|e| Some(e.to_string()))
    }
}

/// The most polls any wait makes, however small the interval: a bound on count, not only time.
fn max_polls(timeout: Duration, interval: Duration) -> u32 {
    let by_time = timeout.as_nanos() / interval.as_nanos().max(1);
    u32::try_from(by_time).unwrap_or(u32::MAX).saturating_add(2)
}

/// Polls `probe` every `interval` until it is done or `timeout` passed; blocks the thread.
pub fn wait_until<P: Probe>(
    what: impl Into<String>,
    timeout: Duration,
    interval: Duration,
    mut probe: impl FnMut() -> P,
) -> Result<P::Output, WaitError> {
    let start = std::time::Instant::now();
    let mut last = None;
    let limit = max_polls(timeout, interval);
    let mut polls = 0;
    while polls < limit {
        polls += 1;
        match probe().check() {
            Ok(v) => return Ok(v),
            Err(reason) => last = reason.or(last),
        }
        if start.elapsed() >= timeout {
            break;
        }
        std::thread::sleep(interval.min(timeout.saturating_sub(start.elapsed())));
    }
    Err(WaitError {
        what: what.into(),
        elapsed: start.elapsed(),
        polls,
        last,
    })
}

/// Async [`wait_until`]: `probe` returns a future; sleeps with tokio between polls.
pub async fn wait_until_async<P, F, Fut>(
    what: impl Into<String>,
    timeout: Duration,
    interval: Duration,
    mut probe: F,
) -> Result<P::Output, WaitError>
where
    P: Probe,
    F: FnMut() -> Fut,
    Fut: Future<Output = P>,
{
    let start = tokio::time::Instant::now();
    let mut last = None;
    let limit = max_polls(timeout, interval);
    let mut polls = 0;
    while polls < limit {
        polls += 1;
        match probe().await.check() {
            Ok(v) => return Ok(v),
            Err(reason) => last = reason.or(last),
        }
        if start.elapsed() >= timeout {
            break;
        }
        tokio::time::sleep(interval.min(timeout.saturating_sub(start.elapsed()))).await;
    }
    Err(WaitError {
        what: what.into(),
        elapsed: start.elapsed(),
        polls,
        last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn returns_as_soon_as_the_condition_holds() {
        let mut n = 0;
        let v = wait_until("n to reach 3", 1000 * MS, MS, || {
            n += 1;
            (n >= 3).then_some(n)
        });
        assert_eq!(v, Ok(3));
    }

    #[test]
    fn times_out_with_what_and_the_last_error() {
        let err =
            wait_until("the moon", 30 * MS, 5 * MS, || Err::<(), _>("still cheese")).unwrap_err();
        assert_eq!(err.what, "the moon");
        assert!(err.elapsed >= 30 * MS);
        assert!(err.polls >= 2 && err.polls <= 8, "{}", err.polls);
        let msg = err.to_string();
        assert!(
            msg.contains("the moon") && msg.contains("still cheese"),
            "{msg}"
        );
    }

    #[test]
    fn poll_count_is_bounded_even_with_a_zero_interval() {
        let mut n = 0u32;
        let err = wait_until("never", 20 * MS, Duration::ZERO, || {
            n += 1;
            false
        })
        .unwrap_err();
        assert_eq!(err.polls, n);
        assert!(err.elapsed >= 20 * MS);
    }

    #[tokio::test]
    async fn async_version_waits_for_a_future_probe() {
        let start = tokio::time::Instant::now();
        let v = wait_until_async("30ms to pass", Duration::from_secs(5), MS, || async move {
            (start.elapsed() >= 30 * MS).then_some("done")
        })
        .await;
        assert_eq!(v, Ok("done"));
        let err = wait_until_async("nothing", 20 * MS, 5 * MS, || async { false })
            .await
            .unwrap_err();
        assert_eq!(err.what, "nothing");
        assert!(err.last.is_none());
    }
}
