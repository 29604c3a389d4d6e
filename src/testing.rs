//! Test support for the integration tests under `tests/`: states they cannot reach from the
//! outside (a lost connection at an exact moment). Not part of kasm-db's API: nothing under
//! `src/` calls it, and it must never hold anything a command needs. Unit tests use
//! `#[cfg(test)]` items instead; the throwaway clusters of tests and `demo` are `pgtemp`.

use crate::logs::copy::StoreJob;

/// A [`StoreJob`] of `rows` rows as a COPY cut off by a lost connection leaves it: the whole
/// batch in doubt (it may have committed before the reply was lost).
pub fn store_job_after_lost_connection(rows: usize) -> StoreJob {
    StoreJob::after_lost_connection(rows)
}
