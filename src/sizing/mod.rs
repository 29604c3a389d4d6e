//! The Kasm sizing and deployment guide's rules as pure arithmetic (issue 8): web app servers,
//! the database tiers and log-retention advice, Redis, agents and their disk, the CPU allocation
//! method, and the connection proxy. Every result carries the arithmetic behind it in words, so
//! an operator can defend the numbers.
//!
//! Nothing under `sizing/` does I/O (no database, no files, no environment, no clock): the
//! commands that need the database (`size`, `vacuum`) live in `maintenance/` and call in here.

pub mod agents;
pub mod database;
pub mod plan;
pub mod proxy;
pub mod webapp;

pub use webapp::{Architecture, UseCase};

/// A number as people write it: `4`, `1.25`, `12.5` (no trailing `.0`, at most two decimals).
pub fn num(x: f64) -> String {
    let r = (x * 100.0).round() / 100.0;
    if r.fract() == 0.0 {
        format!("{}", r as i64)
    } else {
        let s = format!("{r:.2}");
        s.trim_end_matches('0').to_string()
    }
}

/// Bytes as people read them (binary units): `512 B`, `3.4 MiB`, `12.1 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_like_the_guide() {
        for (x, want) in [
            (4.0, "4"),
            (1.25, "1.25"),
            (12.5, "12.5"),
            (1.37, "1.37"),
            (0.0, "0"),
        ] {
            assert_eq!(num(x), want);
        }
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024 + 400 * 1024), "3.4 MiB");
    }
}
