//! Waiting for something observable (a server ready, a file appearing, a row count, a process
//! exiting, a port listening) by polling it, instead of sleeping a fixed time and hoping. A
//! wait that runs out panics naming what it waited for. Never used to let time pass on
//! purpose: a test that needs a time window to go by sleeps, saying why.

use std::time::{Duration, Instant};

/// Poll `cond` (from every 10 ms up to every 100 ms) until it holds; after `timeout`, panic
/// saying it timed out waiting for `what`.
pub fn wait_until(timeout: Duration, what: impl std::fmt::Display, cond: impl FnMut() -> bool) {
    wait_until_with(timeout, what, cond, String::new)
}

/// [`wait_until`], adding `detail()` (a server's log, the last value seen) to the panic.
pub fn wait_until_with(
    timeout: Duration,
    what: impl std::fmt::Display,
    mut cond: impl FnMut() -> bool,
    detail: impl FnOnce() -> String,
) {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    while !cond() {
        if Instant::now() >= deadline {
            let detail = detail();
            panic!("timed out after {timeout:?} waiting for {what}\n{detail}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Poll `f` until it gives `Some`, and return that; after `timeout`, panic as [`wait_until`].
pub fn wait_for_some<T>(
    timeout: Duration,
    what: impl std::fmt::Display,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let mut got = None;
    wait_until(timeout, what, || {
        got = f();
        got.is_some()
    });
    got.expect("the condition held")
}
