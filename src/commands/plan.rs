//! `kasm-db plan`: turns the command-line flags into a [`PlanInput`], runs the pure plan, and
//! renders it: the contract's JSON, and for people one small table per role followed by the
//! arithmetic in words. Reads no config and touches no database; bad values are usage errors.

use crate::cli::PlanArgs;
use crate::error::{Error, Result};
use crate::output::Outcome;
use crate::sizing::agents::AgentSpec;
use crate::sizing::num;
use crate::sizing::plan::{self, Plan, PlanInput};

/// The flags as plan input (no validation yet; see [`PlanInput::validate`]).
pub fn input(args: &PlanArgs) -> PlanInput {
    PlanInput {
        sessions: args.sessions,
        use_case: args.use_case,
        architecture: args.architecture,
        agent: AgentSpec {
            workspace_cpus: args.workspace_cpus,
            workspace_ram_gb: args.workspace_ram_gb,
            agent_cpus: args.agent_cpus,
            agent_ram_gb: args.agent_ram_gb,
            override_cpus: args.override_cpus,
            override_ram_gb: args.override_ram_gb,
            recording: args.recording,
        },
        space_per_user_gb: args.space_per_user_gb,
        proxy_cpus: args.proxy_cpus,
        dns_check_interval_s: args.dns_check_interval_s,
        dns_failures: args.dns_failures,
        dns_ttl_s: args.dns_ttl_s,
    }
}

pub fn plan(args: &PlanArgs) -> Result<Outcome> {
    let p = plan::plan(&input(args)).map_err(Error::usage)?;
    let text = render(&p);
    Ok(Outcome::new(&p, text))
}

/// One role as a table: a heading, `label  value` rows, then the arithmetic wrapped.
fn section(out: &mut String, title: &str, rows: &[(&str, String)], arithmetic: &str) {
    out.push_str(&format!("\n{title}\n{}\n", "-".repeat(title.len())));
    for (k, v) in rows {
        out.push_str(&format!("  {k:<26} {v}\n"));
    }
    out.push_str(&wrap(arithmetic, 96, "  > "));
}

/// Wrap `text` at `width` columns, each line starting with `prefix`.
fn wrap(text: &str, width: usize, prefix: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && prefix.len() + line.len() + 1 + word.len() > width {
            out.push_str(&format!("{prefix}{line}\n"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(&format!("{prefix}{line}\n"));
    }
    out
}

pub fn render(p: &Plan) -> String {
    let mut out = format!(
        "Kasm deployment plan for {} concurrent sessions ({}, {} architecture), per the Kasm sizing guide\n",
        p.sessions,
        crate::sizing::webapp::use_case_word(p.use_case),
        match p.architecture {
            crate::sizing::Architecture::Standard => "standard",
            crate::sizing::Architecture::DirectToAgent => "direct-to-agent",
        }
    );
    let w = &p.web_app;
    section(
        &mut out,
        "Web app servers",
        &[
            ("servers (N+1)", w.servers.to_string()),
            (
                "each",
                format!(
                    "{} CPUs, {} GB RAM, {} GB disk",
                    w.cpus, w.ram_gb, w.disk_gb
                ),
            ),
            ("sessions per server", w.sessions_per_server.to_string()),
            ("capacity", w.capacity.to_string()),
            ("capacity with one down", w.capacity_one_down.to_string()),
        ],
        &w.arithmetic,
    );
    if let Some(d) = &w.dns_failover {
        out.push_str(&wrap(
            &format!("DNS failover: {}", d.arithmetic),
            96,
            "  > ",
        ));
    }
    let d = &p.database;
    section(
        &mut out,
        "Database server (PostgreSQL)",
        &[
            (
                "tier (sessions)",
                format!("{}-{}", d.sessions_min, d.sessions_max),
            ),
            (
                "size",
                format!(
                    "{} CPUs, {} GB RAM, {} GB disk",
                    d.cpus, d.ram_gb, d.disk_gb
                ),
            ),
            (
                "logs",
                if d.log_retention.forward_to_siem {
                    "forward to a SIEM, retention 0".into()
                } else {
                    "built-in logging, monthly maintenance".into()
                },
            ),
        ],
        &format!("{} Logs: {}.", d.arithmetic, d.log_retention.advice),
    );
    let r = &p.redis;
    section(
        &mut out,
        "Redis",
        &[(
            "size",
            format!(
                "{} vCPUs, {} GB RAM (e.g. {})",
                r.vcpus,
                num(r.ram_gb),
                r.instance_type
            ),
        )],
        r.arithmetic,
    );
    let a = &p.agents;
    section(
        &mut out,
        "Agents (static)",
        &[
            ("agents (N+2)", a.agents.to_string()),
            ("sessions per agent", a.sessions_per_agent.to_string()),
            ("capacity with two down", a.capacity_two_down.to_string()),
            (
                "placement against",
                format!(
                    "{} CPUs, {} GB RAM",
                    num(a.placement_cpus),
                    num(a.placement_ram_gb)
                ),
            ),
            (
                "CPU shares / quota",
                format!(
                    "--cpu-shares={} / --cpus={}",
                    a.cpu_allocation.cpu_shares,
                    num(a.cpu_allocation.cpus_quota)
                ),
            ),
        ],
        &format!(
            "{} CPU allocation: {}",
            a.arithmetic, a.cpu_allocation.explanation
        ),
    );
    let k = &p.agent_disk;
    section(
        &mut out,
        "Agent disk (/var/lib/docker)",
        &[
            ("volume", format!("{} GB", num(k.volume_gb))),
            (
                "space per user",
                format!(
                    "{} GB{}",
                    num(k.space_per_user_gb),
                    if k.space_per_user_assumed {
                        " (assumed)"
                    } else {
                        ""
                    }
                ),
            ),
        ],
        &k.arithmetic,
    );
    let c = &p.connection_proxy;
    section(
        &mut out,
        "Connection proxy (per zone with RDP/VNC/SSH)",
        &[
            ("proxies", c.proxies.to_string()),
            (
                "each",
                format!(
                    "{} CPUs, {} GB RAM, {} GB disk",
                    num(c.cpus),
                    c.ram_gb,
                    num(c.disk_gb)
                ),
            ),
            (
                "recording queue length",
                c.recording_queue_length.to_string(),
            ),
            (
                "full-video users per proxy",
                c.full_video_users_per_proxy.to_string(),
            ),
        ],
        &c.arithmetic,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_keeps_words_and_width() {
        let w = wrap("aaa bbb ccc ddd", 11, "> ");
        assert_eq!(w, "> aaa bbb\n> ccc ddd\n");
    }
}
