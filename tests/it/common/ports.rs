//! Loopback ports for the servers the tests start (emulators, receivers, `serve` under a fixed
//! address): one allocator for the whole test process. Ports come from a counter that starts at
//! a random offset inside a range below the kernel's ephemeral range (so no port-0 bind of any
//! process is given one of them), each handed out once; a port that cannot be bound right now
//! (TCP and UDP) is skipped. Binding and releasing port 0 is never used: two tests, or another
//! process, could be given the same port.
//!
//! Prefer a server that binds port 0 itself and says which port it got (`serve`'s "serving"
//! line, a listener the test holds); use [`free_port`] only for programs that must be told.

use std::net::{TcpListener, UdpSocket};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The range ports are handed out from, and the process's next offset into it.
struct Allocator {
    low: u32,
    len: u32,
    start: u32,
    next: AtomicU32,
}

fn allocator() -> &'static Allocator {
    static ALLOCATOR: OnceLock<Allocator> = OnceLock::new();
    ALLOCATOR.get_or_init(|| {
        let (low, high) = range();
        let len = high - low;
        // Per process: two test processes at once are unlikely to walk the same ports.
        let start = (uuid::Uuid::new_v4().as_u128() % u128::from(len)) as u32;
        Allocator {
            low,
            len,
            start,
            next: AtomicU32::new(0),
        }
    })
}

/// `[low, high)`: below the ephemeral range (`ip_local_port_range`), or above it when the
/// space below is too small.
fn range() -> (u32, u32) {
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|n| n.parse::<u32>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999));
    const FLOOR: u32 = 10_000;
    if ephemeral.0 >= FLOOR + 2_000 {
        (FLOOR, ephemeral.0)
    } else {
        assert!(
            ephemeral.1 + 2_000 < 65_536,
            "no room for test ports outside the ephemeral range {ephemeral:?}"
        );
        (ephemeral.1 + 1, 65_536)
    }
}

/// A loopback port nobody in this process was given before and that is free (TCP and UDP)
/// right now.
pub fn free_port() -> u16 {
    let a = allocator();
    loop {
        let n = a.next.fetch_add(1, Ordering::Relaxed);
        assert!(n < a.len, "all {} test ports handed out", a.len);
        let port = (a.low + (a.start + n) % a.len) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
}

#[test]
fn ports_are_handed_out_once_and_outside_the_ephemeral_range() {
    let (low, high) = range();
    let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
    let unique: std::collections::BTreeSet<_> = ports.iter().collect();
    assert_eq!(unique.len(), ports.len());
    assert!(
        ports.iter().all(|&p| (low..high).contains(&u32::from(p))),
        "{ports:?} outside [{low}, {high})"
    );
}
