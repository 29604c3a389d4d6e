//! Batched purge on a real cluster through the real binary: many expired partitions are dropped
//! a batch per transaction (counted by an event trigger that records the transaction of every
//! drop), with exact deleted counts; a partition another session holds is left out of its batch
//! and emptied while the rest are dropped; a class whose parent is held is emptied instead of
//! dropped without holding up the other class; the next run drops what was left. The two
//! classes are dropped on two connections.

use crate::common::*;
use kasm_db::logs::purge::DROP_BATCH;
use serde_json::Value;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Retention is the default (debug 4 h, logs 7 days): as of T0 the debug cutoff is
/// 2026-11-24 08:30 and the logs cutoff 2026-11-17 12:30.
const T0: &str = "2026-11-24T12:30:00Z";
/// The first expired hourly debug partition; the expired daily logs partitions start 7 days earlier.
const DEBUG_START: &str = "2026-11-17 00:00+00";
const LOGS_START: &str = "2026-11-05 00:00+00";

/// The names and row counts a setup made.
struct Expired {
    debug: Vec<String>,
    logs: Vec<String>,
    debug_rows: u64,
    logs_rows: u64,
}

/// A migrated database with `n_debug` expired hourly debug partitions (partition k holds
/// k % 5 + 1 rows) and `n_logs` expired daily logs partitions (k % 3 + 1 rows), plus one fresh
/// row of each class at T0, and an event trigger that records the transaction of every drop.
fn setup(n_debug: u32, n_logs: u32) -> (String, Expired) {
    let url = fresh_db();
    let r = run(kasm_db(&["migrate", "--db", &url]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let sql = format!(
        r#"SET TIME ZONE 'UTC';
        DO $$
        DECLARE h timestamptz;
        BEGIN
          FOR h IN SELECT timestamptz '{DEBUG_START}' + k * interval '1 hour' FROM generate_series(0, {n_debug} - 1) k
                   UNION ALL SELECT timestamptz '2026-11-24 12:00+00' LOOP
            EXECUTE format('CREATE TABLE %I PARTITION OF logs_debug FOR VALUES FROM (%L) TO (%L)',
                           'logs_debug_p' || to_char(h, 'YYYYMMDDHH24'), h, h + interval '1 hour');
          END LOOP;
          FOR h IN SELECT timestamptz '{LOGS_START}' + k * interval '1 day' FROM generate_series(0, {n_logs} - 1) k
                   UNION ALL SELECT timestamptz '2026-11-24 00:00+00' LOOP
            EXECUTE format('CREATE TABLE %I PARTITION OF logs_logs FOR VALUES FROM (%L) TO (%L)',
                           'logs_logs_p' || to_char(h, 'YYYYMMDD'), h, h + interval '1 day');
          END LOOP;
        END $$;
        INSERT INTO logs (log_id, ingest_date, levelname, message, data)
          SELECT gen_random_uuid(), timestamptz '{DEBUG_START}' + k * interval '1 hour' + r * interval '1 minute',
                 'DEBUG', 'd' || k || '-' || r, '{{}}'
          FROM generate_series(0, {n_debug} - 1) k, generate_series(1, k % 5 + 1) r;
        INSERT INTO logs (log_id, ingest_date, levelname, message, data)
          SELECT gen_random_uuid(), timestamptz '{LOGS_START}' + k * interval '1 day' + r * interval '1 minute',
                 'INFO', 'l' || k || '-' || r, '{{}}'
          FROM generate_series(0, {n_logs} - 1) k, generate_series(1, k % 3 + 1) r;
        INSERT INTO logs (log_id, ingest_date, levelname, message, data) VALUES
          (gen_random_uuid(), '{T0}', 'DEBUG', 'd_fresh', '{{}}'),
          (gen_random_uuid(), '{T0}', 'INFO', 'l_fresh', '{{}}');
        CREATE TABLE drop_log (name text, xid xid8, pid int);
        CREATE FUNCTION log_drops() RETURNS event_trigger LANGUAGE plpgsql SECURITY DEFINER AS $f$
        BEGIN
          INSERT INTO public.drop_log SELECT object_name, pg_current_xact_id(), pg_backend_pid()
            FROM pg_event_trigger_dropped_objects() WHERE object_type = 'table';
        END $f$;
        CREATE EVENT TRIGGER log_drops ON sql_drop EXECUTE FUNCTION log_drops();"#
    );
    psql(&url, &sql);
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-17T00:00:00Z").unwrap();
    let debug = (0..n_debug)
        .map(|k| {
            let h = start + chrono::Duration::hours(k.into());
            format!("logs_debug_p{}", h.format("%Y%m%d%H"))
        })
        .collect();
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-05T00:00:00Z").unwrap();
    let logs = (0..n_logs)
        .map(|k| {
            let d = start + chrono::Duration::days(k.into());
            format!("logs_logs_p{}", d.format("%Y%m%d"))
        })
        .collect();
    let expired = Expired {
        debug,
        logs,
        debug_rows: (0..n_debug).map(|k| u64::from(k % 5 + 1)).sum(),
        logs_rows: (0..n_logs).map(|k| u64::from(k % 3 + 1)).sum(),
    };
    (url, expired)
}

fn purge(url: &str) -> Value {
    let r = run(kasm_db(&["purge", "--json", "--now", T0, "--db", url]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    serde_json::from_str(&r.stdout).unwrap()
}

/// Run `purge` while `reader` holds its locks; a hang detector, not a speed assertion.
fn purge_beside(url: &str, mut reader: Child) -> Value {
    let mut purge = kasm_db(&["purge", "--json", "--now", T0, "--db", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = purge.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = purge.kill();
            let _ = reader.kill();
            panic!("purge hung behind a reader");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = purge.wait_with_output().unwrap();
    end_reader(url, reader);
    assert!(status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap()
}

fn names(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} in {v}"))
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

/// How many transactions dropped partitions named like `pattern`.
fn drop_transactions(url: &str, pattern: &str) -> usize {
    psql(
        url,
        &format!("SELECT count(DISTINCT xid) FROM drop_log WHERE name LIKE '{pattern}'"),
    )
    .parse()
    .unwrap()
}

fn remaining_messages(url: &str) -> String {
    psql(
        url,
        "SELECT coalesce(string_agg(message, ',' ORDER BY message), '') FROM logs",
    )
}

fn is_partition(url: &str, name: &str) -> bool {
    psql(
        url,
        &format!(
            "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relname = '{name}'"
        ),
    ) == "1"
}

#[test]
fn many_partitions_are_dropped_a_batch_per_transaction_with_exact_counts() {
    let n_debug = 2 * DROP_BATCH as u32 + 22;
    let (url, expired) = setup(n_debug, 5);
    let v = purge(&url);
    assert_eq!(v["debug_deleted"].as_u64(), Some(expired.debug_rows), "{v}");
    assert_eq!(v["logs_deleted"].as_u64(), Some(expired.logs_rows), "{v}");
    assert_eq!(
        v["partitions_dropped"].as_u64(),
        Some(u64::from(n_debug) + 5),
        "{v}"
    );
    // Reported oldest first, as the plan lists them.
    let mut want: Vec<String> = expired.logs.clone();
    want.extend(expired.debug.iter().cloned());
    assert_eq!(names(&v, "dropped"), want);
    assert!(names(&v, "deferred").is_empty(), "{v}");
    assert_eq!(remaining_messages(&url), "d_fresh,l_fresh");
    // 150 debug partitions in 3 transactions (at most DROP_BATCH each), 5 logs partitions in 2
    // (a class is cut in two for the two connections): not one per partition.
    assert_eq!(drop_transactions(&url, "logs\\_debug\\_p%"), 3);
    assert_eq!(drop_transactions(&url, "logs\\_logs\\_p%"), 2);
    // On two connections, dropping at the same time.
    assert_eq!(psql(&url, "SELECT count(DISTINCT pid) FROM drop_log"), "2");
    assert!(!is_partition(&url, &expired.debug[0]));
    // Idempotent.
    let v = purge(&url);
    assert_eq!(
        (v["debug_deleted"].as_u64(), v["logs_deleted"].as_u64()),
        (Some(0), Some(0)),
        "{v}"
    );
}

#[test]
fn a_held_partition_is_left_out_of_its_batch_and_emptied_while_the_rest_are_dropped() {
    let (url, expired) = setup(DROP_BATCH as u32 + 10, 3);
    let held = expired.debug[7].clone();
    // A long reader of one partition (not of its parent): only that partition is blocked.
    let r = reader(&url, &format!("SELECT count(*) FROM {held}"));
    let v = purge_beside(&url, r);
    assert_eq!(v["debug_deleted"].as_u64(), Some(expired.debug_rows), "{v}");
    assert_eq!(v["logs_deleted"].as_u64(), Some(expired.logs_rows), "{v}");
    assert_eq!(names(&v, "deferred"), [held.as_str()]);
    let mut want: Vec<String> = expired.logs.clone();
    want.extend(expired.debug.iter().filter(|n| **n != held).cloned());
    assert_eq!(names(&v, "dropped"), want);
    // The windows hold exactly: the held partition was emptied, and it still exists.
    assert_eq!(remaining_messages(&url), "d_fresh,l_fresh");
    assert!(is_partition(&url, &held));
    // The other 73 debug partitions went in two batches (37 and 36, one per connection).
    assert_eq!(drop_transactions(&url, "logs\\_debug\\_p%"), 2);
    // With the reader gone, the next run drops it.
    let v = purge(&url);
    assert_eq!(names(&v, "dropped"), [held.as_str()]);
    assert_eq!(v["debug_deleted"].as_u64(), Some(0), "{v}");
    assert!(!is_partition(&url, &held));
}

#[test]
fn a_class_whose_parent_is_held_is_emptied_without_holding_up_the_other() {
    let (url, expired) = setup(6, 4);
    // A session holding the debug parent (a query of recent debug rows holds it the same way).
    let r = reader(&url, "LOCK TABLE ONLY logs_debug IN ACCESS SHARE MODE");
    let v = purge_beside(&url, r);
    assert_eq!(v["debug_deleted"].as_u64(), Some(expired.debug_rows), "{v}");
    assert_eq!(v["logs_deleted"].as_u64(), Some(expired.logs_rows), "{v}");
    assert_eq!(names(&v, "deferred"), expired.debug);
    assert_eq!(names(&v, "dropped"), expired.logs);
    assert_eq!(remaining_messages(&url), "d_fresh,l_fresh");
    assert_eq!(drop_transactions(&url, "logs\\_debug\\_p%"), 0);
    let v = purge(&url);
    assert_eq!(names(&v, "dropped"), expired.debug);
}
