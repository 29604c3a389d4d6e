//! One log line per interval for a condition that repeats on every request (the database is
//! down, rows are being spooled): the first occurrence is logged at once, the rest are counted
//! and the count rides on the next line allowed. The metrics count every occurrence; this only
//! keeps the log readable. Pure bookkeeping: it never logs by itself.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a repeating condition may write a line.
pub const EVERY: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    /// When the last line was allowed, and occurrences suppressed since.
    state: Mutex<Option<(Instant, u64)>>,
}

impl Throttle {
    pub fn new(every: Duration) -> Self {
        Throttle {
            every,
            state: Mutex::new(None),
        }
    }

    /// `Some(suppressed since the last line)` when a line may be written now, else `None`.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *s {
            Some((last, suppressed)) if now.duration_since(*last) < self.every => {
                *suppressed += 1;
                None
            }
            _ => {
                let suppressed = s.map_or(0, |(_, n)| n);
                *s = Some((now, 0));
                Some(suppressed)
            }
        }
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(EVERY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_at_once_then_one_per_interval_with_the_count_of_the_rest() {
        let t = Throttle::new(Duration::from_secs(30));
        let t0 = Instant::now();
        assert_eq!(t.allow_at(t0), Some(0));
        for i in 1..=5 {
            assert_eq!(t.allow_at(t0 + Duration::from_secs(i)), None);
        }
        assert_eq!(t.allow_at(t0 + Duration::from_secs(30)), Some(5));
        assert_eq!(t.allow_at(t0 + Duration::from_secs(31)), None);
        assert_eq!(t.allow_at(t0 + Duration::from_secs(90)), Some(1));
    }
}
