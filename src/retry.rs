//! The one retry policy of kasm-db: how many attempts, and how long to wait after each failed
//! one (exponential from `first_delay`, capped at `max_delay`, with jitter). Every retry loop
//! takes a [`Policy`] — connecting to PostgreSQL, storing rows, creating partitions, the
//! restore's swap, SIEM deliveries, notifications, Azure requests — so how kasm-db retries is
//! stated once, and each caller only says which failures are worth another attempt.
//!
//! Pure: the random draw for the jitter is an input; nothing here sleeps or reads a clock.
//! Depends on no other module.

use std::time::Duration;

/// How the wait after a failure is spread, so that many clients do not retry in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Exactly the exponential delay.
    None,
    /// The delay plus up to a quarter of it.
    UpToQuarter,
    /// Uniformly between half the delay and the delay ("equal jitter").
    Half,
}

/// How hard to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Attempts in all (1: no retry; `u32::MAX`: as long as the caller runs).
    pub attempts: u32,
    /// The wait after the first failed attempt.
    pub first_delay: Duration,
    /// No wait is longer than this (before jitter).
    pub max_delay: Duration,
    pub jitter: Jitter,
}

impl Default for Policy {
    /// Five attempts, 250 ms doubling up to 10 s, plus up to a quarter: the database's policy.
    fn default() -> Self {
        Policy {
            attempts: 5,
            first_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
            jitter: Jitter::UpToQuarter,
        }
    }
}

impl Policy {
    /// `attempts` tries, waiting `first_delay` doubling up to `max_delay`, no jitter.
    pub const fn new(attempts: u32, first_delay: Duration, max_delay: Duration) -> Policy {
        Policy {
            attempts,
            first_delay,
            max_delay,
            jitter: Jitter::None,
        }
    }

    /// The same policy with `jitter`.
    pub const fn with_jitter(self, jitter: Jitter) -> Policy {
        Policy { jitter, ..self }
    }

    /// A single try, for a caller that retries at its own pace.
    pub const fn once() -> Policy {
        Policy::new(1, Duration::ZERO, Duration::ZERO)
    }

    /// Whether another attempt follows attempt number `failed` (1-based) when it failed.
    pub fn again_after(&self, failed: u32) -> bool {
        failed < self.attempts.max(1)
    }

    /// The wait after failed attempt number `failed` (1-based); `unit` is a random draw in
    /// [0, 1) for the jitter.
    pub fn delay(&self, failed: u32, unit: f64) -> Duration {
        let exp = self
            .first_delay
            .saturating_mul(1u32 << failed.saturating_sub(1).min(20));
        let cap = exp.min(self.max_delay);
        let unit = unit.clamp(0.0, 1.0);
        match self.jitter {
            Jitter::None => cap,
            Jitter::UpToQuarter => cap + cap.mul_f64(0.25 * unit),
            Jitter::Half => cap.mul_f64(0.5 + 0.5 * unit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_cap_and_jitter_within_bounds() {
        let p = Policy::new(4, Duration::from_millis(100), Duration::from_millis(350));
        assert_eq!(p.delay(1, 0.9), Duration::from_millis(100));
        assert_eq!(p.delay(2, 0.0), Duration::from_millis(200));
        assert_eq!(p.delay(3, 0.0), Duration::from_millis(350));
        assert_eq!(p.delay(40, 0.0), Duration::from_millis(350));
        assert!(p.again_after(3) && !p.again_after(4));
        let q = p.with_jitter(Jitter::UpToQuarter);
        assert_eq!(q.delay(1, 1.0), Duration::from_millis(125));
        let h = p.with_jitter(Jitter::Half);
        assert_eq!(h.delay(1, 0.0), Duration::from_millis(50));
        assert_eq!(h.delay(2, 1.0), Duration::from_millis(200));
        assert!(!Policy::once().again_after(1));
        assert!(Policy::default().again_after(4) && !Policy::default().again_after(5));
    }
}
