//! Web app servers (API, manager, share, proxy): sessions per server by architecture and use
//! case, N+1 redundancy, capacity with one server down, and the DNS load-balancing failover
//! estimate. Pure arithmetic; never does I/O.

use super::num;
use serde::Serialize;

/// The use case, which decides where in the guide's ranges a web app server lands (also the
/// `plan --use-case` values: clap's derive only names them, it does no I/O).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UseCase {
    /// Online gaming: the low end of the web app server range.
    Gaming,
    /// Remote work: the high end.
    #[default]
    RemoteWork,
    /// Browser isolation: the high end.
    BrowserIsolation,
}

/// The deployment architecture (`plan --architecture`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Architecture {
    /// All traffic through the web app servers (70-150 sessions each).
    #[default]
    Standard,
    /// Desktop rendering straight to the agents (300-500 sessions per web app server).
    DirectToAgent,
}

/// Each web app server of the guide: 4 CPUs, 4 GB RAM, 80 GB disk.
pub const SERVER_CPUS: u32 = 4;
pub const SERVER_RAM_GB: u32 = 4;
pub const SERVER_DISK_GB: u32 = 80;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebApp {
    pub sessions_per_server: u32,
    /// Servers including the N+1 spare.
    pub servers: u32,
    /// Sessions all servers carry together.
    pub capacity: u32,
    /// Sessions carried with one server down for maintenance.
    pub capacity_one_down: u32,
    pub cpus: u32,
    pub ram_gb: u32,
    pub disk_gb: u32,
    /// The guide's range of sessions per server for this architecture.
    pub range: [u32; 2],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_failover: Option<DnsFailover>,
    pub arithmetic: String,
}

/// The guide's range of concurrent sessions one web app server supports.
pub fn range(arch: Architecture) -> (u32, u32) {
    match arch {
        Architecture::Standard => (70, 150),
        Architecture::DirectToAgent => (300, 500),
    }
}

/// Where in the range a use case lands: gaming at the low end, remote work and browser
/// isolation at the high end.
pub fn sessions_per_server(arch: Architecture, use_case: UseCase) -> u32 {
    let (low, high) = range(arch);
    match use_case {
        UseCase::Gaming => low,
        UseCase::RemoteWork | UseCase::BrowserIsolation => high,
    }
}

/// Size the web app role for `sessions` concurrent sessions (N+1).
pub fn web_app(sessions: u32, arch: Architecture, use_case: UseCase) -> WebApp {
    let per = sessions_per_server(arch, use_case);
    let needed = sessions.div_ceil(per);
    let servers = needed + 1;
    let (low, high) = range(arch);
    let end = if per == low { "low" } else { "high" };
    let arch_word = match arch {
        Architecture::Standard => "standard architecture",
        Architecture::DirectToAgent => "direct-to-agent architecture",
    };
    let arithmetic = format!(
        "{arch_word}: {low} to {high} sessions per server; {} is at the {end} end, so {per} per server. \
         {sessions} sessions / {per} = {needed} server(s), plus 1 for N+1 redundancy = {servers}. \
         Capacity {servers} x {per} = {}; with one server down {} x {per} = {}. \
         Each server: {SERVER_CPUS} CPUs, {SERVER_RAM_GB} GB RAM, {SERVER_DISK_GB} GB disk.",
        use_case_word(use_case),
        servers * per,
        servers - 1,
        (servers - 1) * per
    );
    WebApp {
        sessions_per_server: per,
        servers,
        capacity: servers * per,
        capacity_one_down: (servers - 1) * per,
        cpus: SERVER_CPUS,
        ram_gb: SERVER_RAM_GB,
        disk_gb: SERVER_DISK_GB,
        range: [low, high],
        dns_failover: None,
        arithmetic,
    }
}

pub fn use_case_word(u: UseCase) -> &'static str {
    match u {
        UseCase::Gaming => "online gaming",
        UseCase::RemoteWork => "remote work",
        UseCase::BrowserIsolation => "browser isolation",
    }
}

/// How long clients may be sent to a dead web app server with DNS load balancing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DnsFailover {
    pub check_interval_s: f64,
    pub failures: u32,
    pub ttl_s: f64,
    /// Time until the health check removes the record.
    pub detection_s: f64,
    /// Detection plus the TTL: the best case for the slowest client.
    pub outage_s: f64,
    pub arithmetic: String,
}

/// The guide's most aggressive health check (10 s, 3 failures) and lowest TTL (60 s); used for
/// whichever of the three values is not given.
pub const DNS_BEST_CASE: (f64, u32, f64) = (10.0, 3, 60.0);

/// interval x failures + TTL.
pub fn dns_failover(check_interval_s: f64, failures: u32, ttl_s: f64) -> DnsFailover {
    let detection_s = check_interval_s * failures as f64;
    let outage_s = detection_s + ttl_s;
    DnsFailover {
        check_interval_s,
        failures,
        ttl_s,
        detection_s,
        outage_s,
        arithmetic: format!(
            "health checks every {} s x {failures} consecutive failures = {} s to remove the record, \
             plus the {} s TTL before clients see it = at least {} s of failed requests for some clients \
             (a network load balancer converges within seconds)",
            num(check_interval_s),
            num(detection_s),
            num(ttl_s),
            num(outage_s)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Architecture::*;
    use UseCase::*;

    #[test]
    fn the_guides_worked_example_200_remote_work_sessions() {
        let w = web_app(200, Standard, RemoteWork);
        assert_eq!(
            (
                w.sessions_per_server,
                w.servers,
                w.capacity,
                w.capacity_one_down
            ),
            (150, 3, 450, 300)
        );
        assert!(
            w.arithmetic.contains("200 sessions / 150 = 2 server(s)"),
            "{}",
            w.arithmetic
        );
    }

    #[test]
    fn table_of_architectures_and_use_cases() {
        // (sessions, arch, use case) -> (per server, servers, capacity, one down)
        let cases = [
            (200, Standard, Gaming, (70, 4, 280, 210)),
            (200, Standard, BrowserIsolation, (150, 3, 450, 300)),
            (150, Standard, RemoteWork, (150, 2, 300, 150)),
            (151, Standard, RemoteWork, (150, 3, 450, 300)),
            (1, Standard, RemoteWork, (150, 2, 300, 150)),
            (1000, DirectToAgent, RemoteWork, (500, 3, 1500, 1000)),
            (1000, DirectToAgent, Gaming, (300, 5, 1500, 1200)),
        ];
        for (s, a, u, want) in cases {
            let w = web_app(s, a, u);
            assert_eq!(
                (
                    w.sessions_per_server,
                    w.servers,
                    w.capacity,
                    w.capacity_one_down
                ),
                want,
                "{s} {a:?} {u:?}"
            );
            // N+1: capacity with one down always covers the sessions.
            assert!(w.capacity_one_down >= s);
            assert_eq!((w.cpus, w.ram_gb, w.disk_gb), (4, 4, 80));
        }
    }

    #[test]
    fn dns_failover_is_interval_times_failures_plus_ttl() {
        let (i, f, t) = DNS_BEST_CASE;
        let d = dns_failover(i, f, t);
        assert_eq!((d.detection_s, d.outage_s), (30.0, 90.0));
        assert_eq!(dns_failover(10.0, 3, 300.0).outage_s, 330.0);
        assert!(d.arithmetic.contains("at least 90 s"));
    }
}
