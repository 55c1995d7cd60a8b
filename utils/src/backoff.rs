//! Exponential back-off with a ceiling, for loops that retry something that failed
//! (accepting a connection, reaching the datastore): the first retry is quick, a lasting
//! failure costs at most one attempt per `max`, and a success starts over.

use std::time::Duration;

/// The delays of a retry loop: `initial`, doubled after every failure up to `max`.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.min(max);
        Self {
            initial,
            max,
            next: initial,
        }
    }

    /// The delay to wait after one more failure (and doubles the one after it).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// A success: the next failure waits `initial` again.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }

    /// Waits the next delay (tokio's clock, so paused-clock tests do not wait).
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_ceiling_and_starts_over_after_a_success() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(50));
        let got: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, vec![10, 20, 40, 50, 50]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(10));
    }

    #[test]
    fn an_initial_above_the_ceiling_is_capped() {
        let mut b = Backoff::new(Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }
}
