//! The whole deployment plan: validated inputs in, one section per role out (web app, database,
//! Redis, agents, agent disk, connection proxy), each with its arithmetic in words. The JSON
//! shape is the contract's `plan --json`. Pure; never does I/O.

use super::agents::{self, AgentDisk, AgentSpec, Agents};
use super::database::{self, LogAdvice, Redis, Tier};
use super::proxy::{self, ConnectionProxy};
use super::webapp::{self, Architecture, DnsFailover, UseCase, WebApp};
use serde::Serialize;

/// Everything `plan` needs, already parsed (see `cli::PlanArgs` for each field's meaning).
#[derive(Debug, Clone, PartialEq)]
pub struct PlanInput {
    pub sessions: u32,
    pub use_case: UseCase,
    pub architecture: Architecture,
    pub agent: AgentSpec,
    pub space_per_user_gb: Option<f64>,
    pub proxy_cpus: Option<f64>,
    pub dns_check_interval_s: Option<f64>,
    pub dns_failures: Option<u32>,
    pub dns_ttl_s: Option<f64>,
}

/// The database section: the tier plus what the guide says about logs at this size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatabaseSection {
    pub cpus: u32,
    pub ram_gb: u32,
    pub disk_gb: u32,
    pub sessions_min: u32,
    pub sessions_max: u32,
    pub beyond_guide: bool,
    pub log_retention: LogAdvice,
    pub arithmetic: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub sessions: u32,
    pub use_case: UseCase,
    pub architecture: Architecture,
    pub web_app: WebApp,
    pub database: DatabaseSection,
    pub redis: Redis,
    pub agents: Agents,
    pub agent_disk: AgentDisk,
    pub connection_proxy: ConnectionProxy,
}

impl PlanInput {
    /// Reject values the arithmetic cannot use, naming the flag.
    pub fn validate(&self) -> Result<(), String> {
        if self.sessions == 0 {
            return Err(
                "--sessions must be at least 1 (the expected maximum concurrent sessions)".into(),
            );
        }
        let positive = [
            ("--workspace-cpus", Some(self.agent.workspace_cpus)),
            ("--workspace-ram-gb", Some(self.agent.workspace_ram_gb)),
            ("--agent-cpus", Some(self.agent.agent_cpus)),
            ("--agent-ram-gb", Some(self.agent.agent_ram_gb)),
            ("--override-cpus", self.agent.override_cpus),
            ("--override-ram-gb", self.agent.override_ram_gb),
            ("--proxy-cpus", self.proxy_cpus),
            ("--dns-check-interval-s", self.dns_check_interval_s),
        ];
        for (flag, v) in positive {
            if let Some(v) = v {
                if !(v.is_finite() && v > 0.0) {
                    return Err(format!("{flag} must be a number greater than 0, not {v}"));
                }
            }
        }
        for (flag, v) in [
            ("--space-per-user-gb", self.space_per_user_gb),
            ("--dns-ttl-s", self.dns_ttl_s),
        ] {
            if let Some(v) = v {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(format!("{flag} must be a number of at least 0, not {v}"));
                }
            }
        }
        if self.dns_failures == Some(0) {
            return Err("--dns-failures must be at least 1".into());
        }
        if agents::sessions_per_agent(&self.agent).0 == 0 {
            let (_, ws, cpus, ram) = agents::sessions_per_agent(&self.agent);
            return Err(format!(
                "a workspace of {} CPUs and {} GB RAM does not fit on an agent placing against {} CPUs and {} GB RAM; \
                 raise --agent-cpus/--agent-ram-gb or the overrides",
                super::num(ws),
                super::num(self.agent.workspace_ram_gb),
                super::num(cpus),
                super::num(ram)
            ));
        }
        Ok(())
    }

    fn dns(&self) -> Option<DnsFailover> {
        if self.dns_check_interval_s.is_none()
            && self.dns_failures.is_none()
            && self.dns_ttl_s.is_none()
        {
            return None;
        }
        let (i, f, t) = webapp::DNS_BEST_CASE;
        Some(webapp::dns_failover(
            self.dns_check_interval_s.unwrap_or(i),
            self.dns_failures.unwrap_or(f),
            self.dns_ttl_s.unwrap_or(t),
        ))
    }
}

/// The plan for validated input.
pub fn plan(input: &PlanInput) -> Result<Plan, String> {
    input.validate()?;
    let mut web_app = webapp::web_app(input.sessions, input.architecture, input.use_case);
    web_app.dns_failover = input.dns();
    let tier: Tier = database::tier(input.sessions);
    let database = DatabaseSection {
        cpus: tier.cpus,
        ram_gb: tier.ram_gb,
        disk_gb: tier.disk_gb,
        sessions_min: tier.sessions_min,
        sessions_max: tier.sessions_max,
        beyond_guide: tier.beyond_guide,
        log_retention: database::log_advice(input.sessions),
        arithmetic: format!(
            "{}. PostgreSQL and Redis share the database server by default; RDS/Aurora are supported.",
            tier.source
        ),
    };
    let agents = agents::agents(input.sessions, &input.agent)
        .ok_or_else(|| "the workspace does not fit on the agent".to_string())?;
    let agent_disk = agents::agent_disk(
        agents.sessions_per_agent,
        input.space_per_user_gb,
        input.agent.recording,
    );
    Ok(Plan {
        sessions: input.sessions,
        use_case: input.use_case,
        architecture: input.architecture,
        web_app,
        database,
        redis: database::redis(),
        agents,
        agent_disk,
        connection_proxy: proxy::connection_proxy(
            input.sessions,
            input.proxy_cpus,
            input.agent.recording,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(sessions: u32) -> PlanInput {
        PlanInput {
            sessions,
            use_case: UseCase::RemoteWork,
            architecture: Architecture::Standard,
            agent: AgentSpec {
                workspace_cpus: 2.0,
                workspace_ram_gb: 4.0,
                agent_cpus: 16.0,
                agent_ram_gb: 64.0,
                override_cpus: None,
                override_ram_gb: None,
                recording: false,
            },
            space_per_user_gb: None,
            proxy_cpus: None,
            dns_check_interval_s: None,
            dns_failures: None,
            dns_ttl_s: None,
        }
    }

    #[test]
    fn the_default_plan_for_200_sessions() {
        let p = plan(&input(200)).unwrap();
        assert_eq!(
            (
                p.web_app.servers,
                p.web_app.capacity,
                p.web_app.capacity_one_down
            ),
            (3, 450, 300)
        );
        assert_eq!(
            (p.database.cpus, p.database.ram_gb, p.database.disk_gb),
            (4, 4, 80)
        );
        assert!(p.database.log_retention.forward_to_siem);
        assert_eq!((p.agents.sessions_per_agent, p.agents.agents), (8, 27));
        assert_eq!(p.agent_disk.volume_gb, 160.0);
        assert_eq!(p.connection_proxy.recording_queue_length, 4);
        assert!(p.web_app.dns_failover.is_none());
    }

    #[test]
    fn bad_values_are_rejected_naming_the_flag() {
        let mut cases: Vec<(PlanInput, &str)> = Vec::new();
        cases.push((input(0), "--sessions"));
        let mut i = input(10);
        i.agent.workspace_cpus = -1.0;
        cases.push((i, "--workspace-cpus"));
        let mut i = input(10);
        i.agent.override_ram_gb = Some(0.0);
        cases.push((i, "--override-ram-gb"));
        let mut i = input(10);
        i.space_per_user_gb = Some(f64::NAN);
        cases.push((i, "--space-per-user-gb"));
        let mut i = input(10);
        i.dns_failures = Some(0);
        cases.push((i, "--dns-failures"));
        let mut i = input(10);
        i.agent.workspace_ram_gb = 128.0;
        cases.push((i, "does not fit"));
        for (i, want) in cases {
            let e = plan(&i).unwrap_err();
            assert!(e.contains(want), "{e} should mention {want}");
        }
    }

    #[test]
    fn dns_estimate_only_when_asked_missing_values_best_case() {
        let mut i = input(200);
        i.dns_ttl_s = Some(300.0);
        let d = plan(&i).unwrap().web_app.dns_failover.unwrap();
        assert_eq!(
            (d.check_interval_s, d.failures, d.outage_s),
            (10.0, 3, 330.0)
        );
    }
}
