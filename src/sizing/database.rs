//! The database role: the guide's PostgreSQL server tiers by concurrent sessions, the
//! log-retention advice, and Redis. Pure arithmetic; never does I/O.

use serde::Serialize;

/// One PostgreSQL server tier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tier {
    pub sessions_min: u32,
    pub sessions_max: u32,
    pub cpus: u32,
    pub ram_gb: u32,
    pub disk_gb: u32,
    /// True above 1000 sessions: the guide has no tier there and these numbers are extrapolated.
    pub beyond_guide: bool,
    /// Where the numbers come from, in words.
    pub source: String,
}

/// Sessions above which the guide says: forward logs to a SIEM and set retention to 0.
pub const SIEM_THRESHOLD_SESSIONS: u32 = 50;

/// The guide's database tiers (sessions_min, sessions_max, cpus, ram_gb, disk_gb). A session
/// count on a boundary (200, 500) belongs to the smaller tier, as in the guide's "up to 200".
pub const TIERS: [(u32, u32, u32, u32, u32); 3] = [
    (50, 200, 4, 4, 80),
    (200, 500, 4, 8, 100),
    (500, 1000, 8, 8, 150),
];

/// The tier for `sessions` concurrent sessions.
pub fn tier(sessions: u32) -> Tier {
    if sessions < SIEM_THRESHOLD_SESSIONS {
        // The guide's minimum: 2 CPUs, 4 GB. It gives no disk for it; the smallest tier's 80 GB
        // is used (a single server with default retention needs only 250-550 MB of it).
        return Tier {
            sessions_min: 0,
            sessions_max: SIEM_THRESHOLD_SESSIONS - 1,
            cpus: 2,
            ram_gb: 4,
            disk_gb: 80,
            beyond_guide: false,
            source: format!(
                "below {SIEM_THRESHOLD_SESSIONS} sessions: the guide's PostgreSQL minimum of 2 CPUs and 4 GB RAM; \
                 the guide gives no disk for it, so the smallest tier's 80 GB is used"
            ),
        };
    }
    for (min, max, cpus, ram_gb, disk_gb) in TIERS {
        if sessions <= max {
            return Tier {
                sessions_min: min,
                sessions_max: max,
                cpus,
                ram_gb,
                disk_gb,
                beyond_guide: false,
                source: format!(
                    "{sessions} sessions is in the guide's {min}-{max} tier: {cpus} CPUs, {ram_gb} GB RAM, {disk_gb} GB disk"
                ),
            };
        }
    }
    // Beyond the guide: scale the 500-1000 tier by whole thousands of sessions.
    let factor = sessions.div_ceil(1000);
    let (_, _, cpus, ram_gb, disk_gb) = TIERS[2];
    Tier {
        sessions_min: (factor - 1) * 1000,
        sessions_max: factor * 1000,
        cpus: cpus * factor,
        ram_gb: ram_gb * factor,
        disk_gb: disk_gb * factor,
        beyond_guide: true,
        source: format!(
            "BEYOND THE GUIDE: its largest tier is 500-1000 sessions (8 CPUs, 8 GB, 150 GB). \
             EXTRAPOLATED, not from the guide: {sessions} sessions rounds up to {factor} x 1000, \
             so {factor} x that tier = {} CPUs, {} GB RAM, {} GB disk; validate by monitoring",
            cpus * factor,
            ram_gb * factor,
            disk_gb * factor
        ),
    }
}

/// What the guide says about keeping logs in the database at this size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogAdvice {
    /// True when logs should go to a SIEM with retention 0.
    pub forward_to_siem: bool,
    pub advice: String,
}

pub fn log_advice(sessions: u32) -> LogAdvice {
    if sessions >= SIEM_THRESHOLD_SESSIONS {
        LogAdvice {
            forward_to_siem: true,
            advice: format!(
                "with {sessions} concurrent sessions (at least {SIEM_THRESHOLD_SESSIONS}) forward the logs to a SIEM \
                 (e.g. Splunk) and set the log retention to 0: deployments with hundreds of sessions easily use \
                 several tens of GB with the default retention (debug 4 h, other logs 7 days). If that is not an \
                 option, run monthly maintenance (kasm-db vacuum) so that space is released to the operating system"
            ),
        }
    } else {
        LogAdvice {
            forward_to_siem: false,
            advice: format!(
                "with {sessions} concurrent sessions (fewer than {SIEM_THRESHOLD_SESSIONS}) Kasm's built-in logging is \
                 fine: a single server with default retention uses 250-550 MB, and a database volume of around \
                 150 GB is healthy at the high end; run monthly maintenance (kasm-db vacuum) so that autovacuum keeps up \
                 and space goes back to the operating system"
            ),
        }
    }
}

/// Redis: chat in shared sessions only, so minimal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Redis {
    pub instance_type: &'static str,
    pub vcpus: u32,
    pub ram_gb: f64,
    pub arithmetic: &'static str,
}

pub fn redis() -> Redis {
    Redis {
        instance_type: "cache.t4g.small",
        vcpus: 2,
        ram_gb: 1.37,
        arithmetic: "Redis only carries chat in shared sessions and stores nothing, so its needs are minimal \
                     whatever the session count: the default single-node container on the database server, or \
                     a small managed instance such as cache.t4g.small (2 vCPUs, 1.37 GB RAM)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guides_tiers() {
        // sessions -> (min, max, cpus, ram, disk, beyond)
        let cases = [
            (1, (0, 49, 2, 4, 80, false)),
            (49, (0, 49, 2, 4, 80, false)),
            (50, (50, 200, 4, 4, 80, false)),
            (200, (50, 200, 4, 4, 80, false)),
            (201, (200, 500, 4, 8, 100, false)),
            (500, (200, 500, 4, 8, 100, false)),
            (501, (500, 1000, 8, 8, 150, false)),
            (1000, (500, 1000, 8, 8, 150, false)),
            (1001, (1000, 2000, 16, 16, 300, true)),
            (2500, (2000, 3000, 24, 24, 450, true)),
        ];
        for (s, want) in cases {
            let t = tier(s);
            assert_eq!(
                (
                    t.sessions_min,
                    t.sessions_max,
                    t.cpus,
                    t.ram_gb,
                    t.disk_gb,
                    t.beyond_guide
                ),
                want,
                "{s} sessions"
            );
        }
        assert!(tier(1001).source.starts_with("BEYOND THE GUIDE"));
        assert!(tier(1001).source.contains("EXTRAPOLATED"));
    }

    #[test]
    fn siem_advice_from_50_sessions() {
        assert!(!log_advice(49).forward_to_siem);
        assert!(log_advice(49).advice.contains("monthly maintenance"));
        assert!(log_advice(50).forward_to_siem);
        assert!(log_advice(50).advice.contains("retention to 0"));
    }

    #[test]
    fn redis_is_minimal() {
        let r = redis();
        assert_eq!(
            (r.instance_type, r.vcpus, r.ram_gb),
            ("cache.t4g.small", 2, 1.37)
        );
    }
}
