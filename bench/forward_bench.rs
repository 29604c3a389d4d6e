//! Benchmark driver for `bench/forward.sh`: the Forwarder alone (no database), fed N
//! Kasm-like records from memory in 5000-record submits, to the SIEM of a config file, through
//! the durable spool. Prints one JSON line: events, seconds, events/s and the finish report.
//!
//!   cargo run --release --example forward_bench -- CONFIG.toml N

use kasm_db::config::Config;
use kasm_db::forward::{ForwardMetrics, Forwarder};
use kasm_db::logs::record::parse_str;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(conf), Some(n)) = (args.get(1), args.get(2).and_then(|n| n.parse::<u64>().ok()))
    else {
        eprintln!("usage: forward_bench CONFIG.toml N");
        std::process::exit(2);
    };
    let config = Config::load(Some(conf.as_ref()), &BTreeMap::new()).expect("config");
    let siem = config.siem.expect("the config has no [siem] section");
    let records: Vec<_> = (0..n)
        .map(|g| {
            parse_str(&format!(
                r#"{{"asctime":"2026-11-24 10:00:00,123","levelname":"INFO","name":"kasm_api.web","application":"kasm_api","host":"kasm-web-1","process":{},"funcName":"get_user_images","lineno":512,"kasm_user_name":"user{}@example.com","kasm_id":"{:032x}","message":"GET /api/public/get_user_images 200 session {g}"}}"#,
                1234 + g % 7,
                g % 200,
                g * 7919
            ))
            .expect("valid record")
        })
        .collect();
    let start = Instant::now();
    let fw = Forwarder::start(&siem, Arc::new(ForwardMetrics::default()))
        .await
        .expect("start");
    for chunk in records.chunks(5000) {
        fw.submit(chunk).await.expect("submit");
    }
    let report = fw.finish(Duration::from_secs(600)).await.expect("finish");
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "events": n,
            "seconds": secs,
            "events_per_s": (n as f64 / secs).round(),
            "report": report,
        })
    );
}
