//! The SIEM pipeline's wait between delivery attempts: the one retry policy
//! ([`crate::retry::Policy`]) with equal jitter, 100 ms doubling up to 30 s, for as long as
//! the forwarder runs (records wait durably in the spool meanwhile). Pure: never sleeps or
//! reads a clock.

use crate::retry::{Jitter, Policy};
use std::time::Duration;

pub type Backoff = Policy;

/// Deliveries: retried until they succeed or are refused for good.
pub const DELIVERY: Backoff = Policy::new(
    u32::MAX,
    Duration::from_millis(100),
    Duration::from_secs(30),
)
.with_jitter(Jitter::Half);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_with_jitter_in_range() {
        let b = Policy::new(u32::MAX, Duration::from_millis(100), Duration::from_secs(2))
            .with_jitter(Jitter::Half);
        assert_eq!(b.delay(1, 0.0), Duration::from_millis(50));
        assert_eq!(b.delay(1, 1.0), Duration::from_millis(100));
        assert_eq!(b.delay(3, 1.0), Duration::from_millis(400));
        assert_eq!(b.delay(30, 1.0), Duration::from_secs(2));
        assert_eq!(b.delay(30, 0.0), Duration::from_secs(1));
        assert!(b.delay(4, 0.3) < b.delay(4, 0.6));
        assert_eq!(DELIVERY.delay(1, 1.0), Duration::from_millis(100));
    }
}
