use super::*;
use crate::logs::record::parse_str;

fn rec(i: usize) -> Record {
    parse_str(&format!(
        r#"{{"levelname":"INFO","seq":{i},"message":"m{i}"}}"#
    ))
    .unwrap()
}
fn recs(range: std::ops::Range<usize>) -> Vec<Record> {
    range.map(rec).collect()
}
fn seqs(b: &Batch) -> Vec<usize> {
    b.records
        .iter()
        .map(|r| r.message.as_deref().unwrap()[1..].parse().unwrap())
        .collect()
}

#[test]
fn append_read_commit_and_reopen_replays_uncommitted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (s, rep) = Spool::open(dir.path(), 1 << 20, 1024).unwrap();
        assert_eq!(rep.replay, 0);
        s.append(&recs(0..10)).unwrap();
        s.append(&recs(10..30)).unwrap();
        assert_eq!(s.pending(), 30);
        let b = s.read_batch(12, 1 << 20).unwrap();
        assert_eq!(seqs(&b), (0..12).collect::<Vec<_>>());
        s.commit(*b.ends.last().unwrap(), 12).unwrap();
        // Read but never committed: must come back after a crash.
        let b = s.read_batch(5, 1 << 20).unwrap();
        assert_eq!(seqs(&b), (12..17).collect::<Vec<_>>());
        assert_eq!(s.pending(), 18);
        // Dropped without any shutdown: a crash.
    }
    let (s, rep) = Spool::open(dir.path(), 1 << 20, 1024).unwrap();
    assert_eq!(rep.replay, 18);
    assert_eq!(rep.corrupt_regions, 0);
    let mut got = Vec::new();
    loop {
        let b = s.read_batch(7, 1 << 20).unwrap();
        if b.records.is_empty() {
            break;
        }
        got.extend(seqs(&b));
        s.commit(*b.ends.last().unwrap(), b.records.len() as u64)
            .unwrap();
    }
    assert_eq!(got, (12..30).collect::<Vec<_>>());
    assert_eq!((s.pending(), s.bytes()), (0, 0));
    // Fully committed segments are gone; only the active one remains.
    let segs = fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("seg-")
        })
        .count();
    assert_eq!(segs, 1);
}

#[test]
fn corrupt_tail_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (s, _) = Spool::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        s.append(&recs(0..5)).unwrap();
    }
    // A torn write: half a frame at the end of the segment, and a flipped byte in frame 3.
    let seg = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".spool"))
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    let one = bytes.len() / 5;
    bytes[2 * one + 15] ^= 0x55;
    let mut torn = Vec::new();
    frame::encode(&rec(99), &mut torn);
    bytes.extend_from_slice(&torn[..torn.len() / 2]);
    fs::write(&seg, &bytes).unwrap();

    let (s, rep) = Spool::open(dir.path(), 1 << 20, 1 << 20).unwrap();
    assert_eq!(rep.replay, 4);
    assert_eq!(rep.corrupt_regions, 2);
    let b = s.read_batch(100, 1 << 20).unwrap();
    assert_eq!(seqs(&b), [0, 1, 3, 4]);
    // Appends after the damage still work and are read after it.
    s.append(&recs(5..7)).unwrap();
    s.commit(*b.ends.last().unwrap(), 4).unwrap();
    let b = s.read_batch(100, 1 << 20).unwrap();
    assert_eq!(seqs(&b), [5, 6]);
}

#[test]
fn full_spool_refuses_with_a_temporary_error_then_drains() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = Spool::open(dir.path(), 2000, 1 << 20).unwrap();
    let mut accepted = 0;
    let err = loop {
        match s.append(&recs(accepted..accepted + 1)) {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 1000, "never refused");
    };
    assert_eq!(err.kind(), crate::error::Kind::Temporary);
    assert!(err.to_string().contains("full"), "{err}");
    assert!(s.bytes() <= 2000);
    assert_eq!(s.pending(), accepted as u64);
    let b = s.read_batch(usize::MAX, 1 << 20).unwrap();
    assert_eq!(b.records.len(), accepted);
    s.commit(*b.ends.last().unwrap(), accepted as u64).unwrap();
    s.append(&recs(0..1)).unwrap();
}

#[test]
fn a_second_open_of_the_same_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_s, _) = Spool::open(dir.path(), 1 << 20, 1 << 20).unwrap();
    let e = Spool::open(dir.path(), 1 << 20, 1 << 20).err().unwrap();
    assert_eq!(e.kind(), crate::error::Kind::Temporary);
    assert!(e.to_string().contains("in use"), "{e}");
}

#[test]
fn batches_span_segments_and_respect_limits() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = Spool::open(dir.path(), 1 << 20, 4096).unwrap();
    for i in 0..20 {
        s.append(&recs(i * 10..i * 10 + 10)).unwrap();
    }
    let mut got = Vec::new();
    loop {
        let b = s.read_batch(33, 1 << 20).unwrap();
        if b.records.is_empty() {
            break;
        }
        assert!(b.records.len() <= 33);
        got.extend(seqs(&b));
        s.commit(*b.ends.last().unwrap(), b.records.len() as u64)
            .unwrap();
    }
    assert_eq!(got, (0..200).collect::<Vec<_>>());
    // Small byte budget still yields progress, one record at a time at least.
    s.append(&recs(0..3)).unwrap();
    assert_eq!(s.read_batch(10, 1).unwrap().records.len(), 1);
}

#[test]
fn dead_letters_keep_reason_and_record() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = Spool::open(dir.path(), 1 << 20, 1 << 20).unwrap();
    s.dead_letter(&recs(0..2), "HEC 400 code 6").unwrap();
    let text = fs::read_to_string(dir.path().join("dead-letters.ndjson")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["reason"], "HEC 400 code 6");
    assert_eq!(lines[1]["record"]["seq"], 1);
}

#[test]
fn dead_letters_count_against_the_limit_until_moved_away() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = Spool::open(dir.path(), 4000, 1 << 20).unwrap();
    let mut n = 0;
    // A SIEM that refuses everything: each accepted record ends up dead-lettered.
    let err = loop {
        match s.append(&recs(n..n + 1)) {
            Ok(()) => {}
            Err(e) => break e,
        }
        let b = s.read_batch(10, 1 << 20).unwrap();
        s.dead_letter(&b.records, "HEC 403 code 4").unwrap();
        s.commit(*b.ends.last().unwrap(), 1).unwrap();
        n += 1;
        assert!(n < 1000, "never refused");
    };
    assert_eq!(s.bytes(), 0);
    assert!(s.dead_letter_bytes() > 3000);
    assert_eq!(err.kind(), crate::error::Kind::Temporary);
    assert!(err.to_string().contains("dead-letters.ndjson"), "{err}");
    // Every refused record is still in the file.
    let text = fs::read_to_string(s.dead_letter_path()).unwrap();
    assert_eq!(text.lines().count(), n);
    fs::rename(s.dead_letter_path(), dir.path().join("handled.ndjson")).unwrap();
    s.append(&recs(0..1)).unwrap();
}

#[test]
fn committing_exactly_to_a_segment_end_keeps_reading_and_accounting_right() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = Spool::open(dir.path(), 1 << 20, 4096).unwrap();
    let mut next = 0;
    let mut got = Vec::new();
    for _ in 0..30 {
        // Two appends (the second may start a new segment), read back in appends' sizes, so
        // batches often end exactly at a sealed segment's end.
        for _ in 0..2 {
            s.append(&recs(next..next + 7)).unwrap();
            next += 7;
        }
        for _ in 0..2 {
            let b = s.read_batch(7, 1 << 20).unwrap();
            assert_eq!(b.records.len(), 7);
            got.extend(seqs(&b));
            s.commit(*b.ends.last().unwrap(), 7).unwrap();
        }
        assert_eq!((s.pending(), s.bytes()), (0, 0));
    }
    assert_eq!(got, (0..next).collect::<Vec<_>>());
    drop(s);
    let (s, rep) = Spool::open(dir.path(), 1 << 20, 4096).unwrap();
    assert_eq!((rep.replay, s.pending(), s.bytes()), (0, 0, 0));
}

#[test]
fn a_torn_commit_slot_falls_back_to_the_older_commit() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (s, _) = Spool::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        s.append(&recs(0..10)).unwrap();
        let b = s.read_batch(4, 1 << 20).unwrap();
        s.commit(*b.ends.last().unwrap(), 4).unwrap(); // seq 1 → slot 1
        let b = s.read_batch(3, 1 << 20).unwrap();
        s.commit(*b.ends.last().unwrap(), 3).unwrap(); // seq 2 → slot 0
    }
    let (s, rep) = Spool::open(dir.path(), 1 << 20, 1 << 20).unwrap();
    assert_eq!(rep.replay, 3);
    drop(s);
    // Tear the newest slot: the older commit (after 4 records) wins; nothing is lost.
    let path = dir.path().join("commit");
    let mut b = fs::read(&path).unwrap();
    b[5] ^= 0xff;
    fs::write(&path, &b).unwrap();
    let (s, rep) = Spool::open(dir.path(), 1 << 20, 1 << 20).unwrap();
    assert_eq!(rep.replay, 6);
    assert_eq!(
        seqs(&s.read_batch(100, 1 << 20).unwrap()),
        (4..10).collect::<Vec<_>>()
    );
    drop(s);
    // Both slots torn: everything is replayed.
    fs::write(&path, [0u8; 64]).unwrap();
    let (_, rep) = Spool::open(dir.path(), 1 << 20, 1 << 20).unwrap();
    assert_eq!(rep.replay, 10);
}
