//! `kasm-db plan` through the real binary: the contract's JSON sections and fields, the guide's
//! worked examples end to end, the human tables, and bad values as usage errors (exit 2). No
//! database is needed: `plan` reads no config and connects nowhere.

use crate::common::*;
use serde_json::Value;

fn plan_json(args: &[&str]) -> Value {
    let mut all = vec!["plan", "--json"];
    all.extend_from_slice(args);
    let r = run(kasm_db(&all));
    assert_eq!(r.code, 0, "{}", r.stderr);
    serde_json::from_str(&r.stdout).expect("plan --json is one JSON document")
}

#[test]
fn plan_json_has_the_contract_sections_with_arithmetic() {
    let v = plan_json(&["--sessions", "200"]);
    for (section, fields) in [
        (
            "web_app",
            &[
                "sessions_per_server",
                "servers",
                "capacity",
                "capacity_one_down",
            ][..],
        ),
        ("database", &["cpus", "ram_gb", "disk_gb"][..]),
        ("redis", &[][..]),
        ("agents", &["sessions_per_agent", "agents"][..]),
        ("agent_disk", &["volume_gb"][..]),
        ("connection_proxy", &["recording_queue_length"][..]),
    ] {
        let s = &v[section];
        assert!(s.is_object(), "section {section} missing: {v}");
        for f in fields {
            assert!(s[f].is_number(), "{section}.{f} missing: {s}");
        }
        let a = s["arithmetic"].as_str().unwrap_or_default();
        assert!(a.len() > 40, "{section} has no arithmetic in words: {s}");
    }
    // The guide's worked example: 200 remote-work sessions, standard architecture.
    assert_eq!(v["web_app"]["servers"], 3);
    assert_eq!(v["web_app"]["capacity"], 450);
    assert_eq!(v["web_app"]["capacity_one_down"], 300);
    assert_eq!(v["database"]["cpus"], 4);
    assert_eq!(v["database"]["ram_gb"], 4);
    assert_eq!(v["database"]["disk_gb"], 80);
    assert_eq!(v["agents"]["sessions_per_agent"], 8);
    assert_eq!(v["agents"]["agents"], 27);
}

#[test]
fn plan_reproduces_the_agent_and_disk_examples() {
    // (flags, sessions per agent, volume GB)
    let cases: [(&[&str], u64, f64); 3] = [
        (&["--space-per-user-gb", "5"], 8, 120.0),
        (
            &[
                "--workspace-cpus",
                "4",
                "--override-cpus",
                "96",
                "--override-ram-gb",
                "80",
                "--space-per-user-gb",
                "10",
            ],
            20,
            280.0,
        ),
        (
            &[
                "--workspace-cpus",
                "4",
                "--agent-cpus",
                "32",
                "--agent-ram-gb",
                "128",
                "--override-cpus",
                "192",
                "--override-ram-gb",
                "192",
                "--space-per-user-gb",
                "12",
            ],
            48,
            656.0,
        ),
    ];
    for (flags, per, volume) in cases {
        let mut args = vec!["--sessions", "500", "--workspace-ram-gb", "4"];
        args.extend_from_slice(flags);
        let v = plan_json(&args);
        assert_eq!(v["agents"]["sessions_per_agent"], per, "{flags:?}");
        assert_eq!(
            v["agent_disk"]["volume_gb"].as_f64(),
            Some(volume),
            "{flags:?}"
        );
    }
}

#[test]
fn plan_with_recording_and_a_16_core_proxy_queues_8() {
    let v = plan_json(&["--sessions", "100", "--recording", "--proxy-cpus", "16"]);
    assert_eq!(v["connection_proxy"]["recording_queue_length"], 8);
    // 2 CPUs + 1 for recording: min(16 / 3, 64 / 4) = 5.
    assert_eq!(v["agents"]["sessions_per_agent"], 5);
}

#[test]
fn plan_beyond_the_guide_says_so() {
    let v = plan_json(&["--sessions", "1500", "--architecture", "direct-to-agent"]);
    assert_eq!(v["database"]["beyond_guide"], true);
    assert!(
        v["database"]["arithmetic"]
            .as_str()
            .unwrap()
            .contains("BEYOND THE GUIDE")
    );
    assert_eq!(v["web_app"]["sessions_per_server"], 500);
}

#[test]
fn plan_human_output_is_a_table_per_role() {
    let r = run(kasm_db(&[
        "plan",
        "--sessions",
        "200",
        "--use-case",
        "gaming",
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    for heading in [
        "Web app servers",
        "Database server",
        "Redis",
        "Agents",
        "Agent disk",
        "Connection proxy",
    ] {
        assert!(r.stdout.contains(heading), "no {heading} in:\n{}", r.stdout);
    }
    // Gaming is the low end: 70 per server, 200 / 70 -> 3, + 1.
    assert!(
        r.stdout.contains("200 sessions / 70 = 3 server(s)"),
        "{}",
        r.stdout
    );
}

#[test]
fn plan_bad_values_are_usage_errors() {
    for (args, flag) in [
        (&["plan", "--sessions", "0"][..], "--sessions"),
        (
            &["plan", "--sessions", "10", "--workspace-cpus=-1"][..],
            "--workspace-cpus",
        ),
        (
            &["plan", "--sessions", "10", "--agent-ram-gb", "0"][..],
            "--agent-ram-gb",
        ),
        (&["plan"][..], "--sessions"),
    ] {
        let r = run(kasm_db(args));
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(flag), "{args:?}: {}", r.stderr);
        assert!(r.stdout.is_empty());
    }
}
