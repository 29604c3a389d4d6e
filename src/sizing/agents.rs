//! The agent role: sessions per agent from the workspace and agent specifications (with the
//! Agent Settings overrides and +1 CPU for session recording), N+2 agents for static
//! deployments, the /var/lib/docker volume, and the CPU allocation method. Pure arithmetic;
//! never does I/O.

use super::num;
use serde::Serialize;

/// What the agent arithmetic needs. Validated by `plan::PlanInput::validate`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AgentSpec {
    pub workspace_cpus: f64,
    pub workspace_ram_gb: f64,
    pub agent_cpus: f64,
    pub agent_ram_gb: f64,
    /// Agent Settings override of the CPUs Kasm places sessions against (oversubscription).
    pub override_cpus: Option<f64>,
    /// Agent Settings override of the RAM Kasm places sessions against.
    pub override_ram_gb: Option<f64>,
    /// Session recording: one more CPU per workspace for the encoding.
    pub recording: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Agents {
    pub sessions_per_agent: u32,
    /// Agents for a static deployment: enough for the sessions, plus 2 (N+2).
    pub agents: u32,
    /// Sessions carried with two agents out (one in patching rotation, one lost).
    pub capacity_two_down: u32,
    /// CPUs each workspace is counted with (its own, +1 with recording).
    pub workspace_cpus: f64,
    /// CPUs and RAM Kasm places sessions against (the override, else the physical size).
    pub placement_cpus: f64,
    pub placement_ram_gb: f64,
    pub cpu_allocation: CpuAllocation,
    pub arithmetic: String,
}

/// Sessions one agent takes: min(CPUs / workspace CPUs, RAM / workspace RAM), whole sessions.
pub fn sessions_per_agent(spec: &AgentSpec) -> (u32, f64, f64, f64) {
    let ws_cpus = spec.workspace_cpus + if spec.recording { 1.0 } else { 0.0 };
    let cpus = spec.override_cpus.unwrap_or(spec.agent_cpus);
    let ram = spec.override_ram_gb.unwrap_or(spec.agent_ram_gb);
    // A tiny epsilon so that 96 / 4 is 24, not 23.999...
    let by_cpu = (cpus / ws_cpus + 1e-9).floor();
    let by_ram = (ram / spec.workspace_ram_gb + 1e-9).floor();
    (by_cpu.min(by_ram) as u32, ws_cpus, cpus, ram)
}

/// Size the agents for `sessions` (static deployment, N+2). `None` when a workspace does not
/// fit on the agent at all.
pub fn agents(sessions: u32, spec: &AgentSpec) -> Option<Agents> {
    let (per, ws_cpus, cpus, ram) = sessions_per_agent(spec);
    if per == 0 {
        return None;
    }
    let needed = sessions.div_ceil(per);
    let agents = needed + 2;
    let by_cpu = (cpus / ws_cpus + 1e-9).floor();
    let by_ram = (ram / spec.workspace_ram_gb + 1e-9).floor();
    let placed = match (spec.override_cpus, spec.override_ram_gb) {
        (None, None) => format!(
            "the agent's physical {} CPUs and {} GB RAM (no override)",
            num(cpus),
            num(ram)
        ),
        _ => format!(
            "the Agent Settings override: {} CPUs and {} GB RAM (physical {} CPUs, {} GB; oversubscribed, \
             so watch actual RAM use on the Admin dashboard and never let it near full)",
            num(cpus),
            num(ram),
            num(spec.agent_cpus),
            num(spec.agent_ram_gb)
        ),
    };
    let rec = if spec.recording {
        format!(
            " Session recording adds 1 CPU per workspace: {} + 1 = {} CPUs.",
            num(spec.workspace_cpus),
            num(ws_cpus)
        )
    } else {
        String::new()
    };
    let arithmetic = format!(
        "Sessions are placed against {placed}.{rec} By CPU {} / {} = {}, by RAM {} / {} = {}; the smaller, \
         {per}, is the sessions per agent. {sessions} sessions / {per} = {needed} agent(s), plus 2 for N+2 \
         (one disabled in patching rotation, one lost) = {agents} static agents; with two out they still carry \
         {}. Cloud auto-scaling manages agent capacity itself.",
        num(cpus),
        num(ws_cpus),
        num(by_cpu),
        num(ram),
        num(spec.workspace_ram_gb),
        num(by_ram),
        needed * per
    );
    Some(Agents {
        sessions_per_agent: per,
        agents,
        capacity_two_down: needed * per,
        workspace_cpus: ws_cpus,
        placement_cpus: cpus,
        placement_ram_gb: ram,
        cpu_allocation: cpu_allocation(ws_cpus, spec.agent_cpus),
        arithmetic,
    })
}

/// The /var/lib/docker volume of an agent (XFS, separate volume).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentDisk {
    pub volume_gb: f64,
    pub base_gb: f64,
    pub sessions_per_agent: u32,
    pub space_per_user_gb: f64,
    /// True when --space-per-user-gb was not given and the default was used.
    pub space_per_user_assumed: bool,
    pub arithmetic: String,
}

/// The guide's baseline for /var/lib/docker.
pub const DOCKER_BASE_GB: f64 = 80.0;
/// Space per user when none is given: the guide's Docker Run Override example caps a session's
/// changes at 10 GB.
pub const DEFAULT_SPACE_PER_USER_GB: f64 = 10.0;

/// 80 GB + sessions per agent x space per user.
pub fn agent_disk(
    sessions_per_agent: u32,
    space_per_user_gb: Option<f64>,
    recording: bool,
) -> AgentDisk {
    let assumed = space_per_user_gb.is_none();
    let space = space_per_user_gb.unwrap_or(DEFAULT_SPACE_PER_USER_GB);
    let volume = DOCKER_BASE_GB + sessions_per_agent as f64 * space;
    let mut arithmetic = format!(
        "/var/lib/docker on its own XFS volume: {} GB base + {sessions_per_agent} sessions x {} GB per user = {} GB",
        num(DOCKER_BASE_GB),
        num(space),
        num(volume)
    );
    if assumed {
        arithmetic.push_str(&format!(
            " ({} GB per user assumed, the guide's example per-session disk cap; pass --space-per-user-gb; \
             persistent profiles on NFS do not count)",
            num(DEFAULT_SPACE_PER_USER_GB)
        ));
    }
    if recording {
        arithmetic.push_str(
            "; with session recording, add room for the raw recordings while they are encoded and uploaded",
        );
    }
    AgentDisk {
        volume_gb: volume,
        base_gb: DOCKER_BASE_GB,
        sessions_per_agent,
        space_per_user_gb: space,
        space_per_user_assumed: assumed,
        arithmetic,
    }
}

/// How a workspace's cores become Docker CPU limits, under either allocation method.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpuAllocation {
    /// Shares (the default): `--cpu-shares = cores x 1024`, throttled only under contention.
    pub cpu_shares: u64,
    /// Quotas: `--cpus = cores`, a hard ceiling.
    pub cpus_quota: f64,
    /// The quota's ceiling as a share of the agent's CPUs, in percent.
    pub quota_percent_of_agent: f64,
    pub explanation: String,
}

pub fn cpu_allocation(workspace_cpus: f64, agent_cpus: f64) -> CpuAllocation {
    let shares = (workspace_cpus * 1024.0).round() as u64;
    let pct = (workspace_cpus / agent_cpus * 1000.0).round() / 10.0;
    CpuAllocation {
        cpu_shares: shares,
        cpus_quota: workspace_cpus,
        quota_percent_of_agent: pct,
        explanation: format!(
            "Shares (the default Global Setting): --cpu-shares={} ({} cores x 1024); a container may use every \
             CPU while there is no contention and gets a weighted part under contention: best for bursty work, \
             less consistent. Quotas: --cpus={}, a hard ceiling of {}% of the agent's {} CPUs: consistent \
             performance, and CPU left for other applications on the host.",
            shares,
            num(workspace_cpus),
            num(workspace_cpus),
            num(pct),
            num(agent_cpus)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ws: (f64, f64), agent: (f64, f64), ov: (Option<f64>, Option<f64>)) -> AgentSpec {
        AgentSpec {
            workspace_cpus: ws.0,
            workspace_ram_gb: ws.1,
            agent_cpus: agent.0,
            agent_ram_gb: agent.1,
            override_cpus: ov.0,
            override_ram_gb: ov.1,
            recording: false,
        }
    }

    /// The guide's agent table lost its "Concurrent Sessions" cells; its text gives them:
    /// row 1 has no override and "only 8 sessions"; "twice as many sessions if the CPUs were
    /// overridden to 32" gives 16; rows 2 and 3 are min(96/4, 80/4) = 20 and
    /// min(192/4, 192/4) = 48.
    #[test]
    fn the_guides_agent_examples_8_16_20_48() {
        let cases = [
            (spec((2.0, 4.0), (16.0, 64.0), (None, None)), 8),
            (spec((2.0, 4.0), (16.0, 64.0), (Some(32.0), None)), 16),
            (spec((4.0, 4.0), (16.0, 64.0), (Some(96.0), Some(80.0))), 20),
            (
                spec((4.0, 4.0), (32.0, 128.0), (Some(192.0), Some(192.0))),
                48,
            ),
        ];
        for (s, want) in cases {
            assert_eq!(sessions_per_agent(&s).0, want, "{s:?}");
        }
    }

    #[test]
    fn recording_adds_a_cpu_per_workspace() {
        let mut s = spec((2.0, 4.0), (16.0, 64.0), (None, None));
        s.recording = true;
        // 16 / 3 = 5.33 -> 5; RAM 64 / 4 = 16.
        assert_eq!(sessions_per_agent(&s).0, 5);
    }

    #[test]
    fn n_plus_2_agents() {
        let s = spec((2.0, 4.0), (16.0, 64.0), (None, None));
        let a = agents(200, &s).unwrap();
        // 200 / 8 = 25, + 2.
        assert_eq!(
            (a.sessions_per_agent, a.agents, a.capacity_two_down),
            (8, 27, 200)
        );
        let a = agents(201, &s).unwrap();
        assert_eq!(a.agents, 28);
        assert!(
            a.arithmetic.contains("by RAM 64 / 4 = 16"),
            "{}",
            a.arithmetic
        );
        // A workspace bigger than the agent does not fit.
        assert!(agents(10, &spec((32.0, 4.0), (16.0, 64.0), (None, None))).is_none());
    }

    /// The guide's disk table lost its inputs; 80 GB + sessions x space per user with the
    /// agent examples' 8, 20 and 48 sessions gives its totals with 5, 10 and 12 GB per user.
    #[test]
    fn the_guides_disk_examples_120_280_656() {
        for (per, space, want) in [(8, 5.0, 120.0), (20, 10.0, 280.0), (48, 12.0, 656.0)] {
            let d = agent_disk(per, Some(space), false);
            assert_eq!(d.volume_gb, want);
            assert!(!d.space_per_user_assumed);
        }
        let d = agent_disk(8, None, false);
        assert_eq!(d.volume_gb, 160.0);
        assert!(d.space_per_user_assumed && d.arithmetic.contains("assumed"));
    }

    #[test]
    fn cpu_allocation_shares_and_quotas() {
        let c = cpu_allocation(2.0, 16.0);
        assert_eq!(
            (c.cpu_shares, c.cpus_quota, c.quota_percent_of_agent),
            (2048, 2.0, 12.5)
        );
        // The guide's examples: 4 cores -> 4096 shares; 2 cores on 8 CPUs -> 25%.
        assert_eq!(cpu_allocation(4.0, 8.0).cpu_shares, 4096);
        assert_eq!(cpu_allocation(2.0, 8.0).quota_percent_of_agent, 25.0);
        assert!(c.explanation.contains("--cpu-shares=2048") && c.explanation.contains("--cpus=2"));
    }
}
