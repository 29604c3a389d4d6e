//! Pacing UDP syslog (`siem.udp_max_per_sec`): a token bucket holding at most 20 ms worth of
//! datagrams, so a burst leaves at an even rate a receiver's socket buffer can absorb instead
//! of all at once. UDP has no acknowledgement: what overruns the receiver is lost silently.
//! Only waits; never drops or reorders a datagram.

use std::time::Duration;
use tokio::time::Instant;

/// Up to this much of the rate may leave back to back.
const BURST: Duration = Duration::from_millis(20);

#[derive(Debug)]
pub struct Pacer {
    /// Datagrams per second; 0 = unlimited.
    rate: u64,
    tokens: f64,
    capacity: f64,
    last: Instant,
}

impl Pacer {
    pub fn new(rate: u64) -> Pacer {
        let capacity = (rate as f64 * BURST.as_secs_f64()).max(1.0);
        Pacer {
            rate,
            tokens: capacity,
            capacity,
            last: Instant::now(),
        }
    }

    /// How long to wait before the next datagram may go at `now` (zero when it may go now);
    /// takes its token.
    pub fn delay(&mut self, now: Instant) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        let rate = self.rate as f64;
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate).min(self.capacity) - 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / rate)
        }
    }

    /// Wait until the next datagram may go.
    pub async fn wait(&mut self) {
        let d = self.delay(Instant::now());
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulated sends at the earliest allowed moments: how long `n` datagrams take.
    fn span(rate: u64, n: usize) -> Duration {
        let start = Instant::now();
        let mut p = Pacer::new(rate);
        p.last = start;
        let mut now = start;
        for _ in 0..n {
            now += p.delay(now);
        }
        now - start
    }

    #[test]
    fn a_burst_leaves_at_the_rate_after_a_small_head_start() {
        // 1000/s: the first 20 go at once, the other 980 take 0.98 s.
        let d = span(1000, 1000);
        assert!((975..=985).contains(&d.as_millis()), "{d:?}");
        // 5000/s: 10_000 datagrams take ~1.98 s.
        let d = span(5000, 10_000);
        assert!((1975..=1985).contains(&d.as_millis()), "{d:?}");
        // Unlimited never waits.
        assert_eq!(span(0, 100_000), Duration::ZERO);
        // A tiny rate still lets one go at once, then one per period.
        assert_eq!(span(2, 3).as_millis(), 1000);
    }

    #[test]
    fn idle_time_refills_only_up_to_the_burst() {
        let start = Instant::now();
        let mut p = Pacer::new(1000);
        p.last = start;
        let later = start + Duration::from_secs(10);
        let mut now = later;
        for _ in 0..20 {
            assert_eq!(p.delay(now), Duration::ZERO);
        }
        now += p.delay(now);
        assert_eq!(now - later, Duration::from_millis(1));
    }
}
