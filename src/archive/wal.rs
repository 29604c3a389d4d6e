//! The stored form of archived WAL (point-in-time recovery, issue 25): where each segment lives
//! under a target, the record that makes a stored segment exist, LSN and segment-name
//! arithmetic, and the one judgement restore relies on — whether a segment recovery asks for
//! and the archive lacks is the normal end of the archive or a gap.
//!
//! Layout, beside the backups (`<id>/...`) under the same target:
//!
//! ```text
//! wal/<timeline>/<segment>.zst             a completed segment (zstd; .gz, gzip members, before)
//! wal/<timeline>/<segment>.json            its record, written after it: object, size, SHA-256
//! wal/<timeline>/<segment>.partial-<n>.zst the segment still being written, stored every
//! wal/<timeline>/<segment>.partial.json      backup.wal_flush; the record names the newest copy
//! wal/<timeline>/<tli>.history.zst|.json   a timeline history file
//! ```
//!
//! With `backup.encryption_key_file` each object is also sealed as a dump is (`.gz.aes`,
//! `.zst.aes`; the record names the key id); the record's size and SHA-256 are of the stored
//! bytes either way.
//!
//! A segment's trailing zeros (pg_receivewal pads the segment being written, and one switched
//! early, to its full size) are not stored: the record says the size to pad back to
//! (`pad_to`), so a flush costs the WAL written, not a whole segment.
//!
//! A segment is stored once its record is: the record is written last, exactly as a backup's
//! manifest is. A partial copy gets a new object name each time and its record is replaced
//! after the copy is whole, so a reader never pairs a record with a half-written object.
//!
//! Pure: no I/O, no clock.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The folder under a target that holds archived WAL (never a backup id: ids start with a
/// date).
pub const WAL_DIR: &str = "wal";

/// A position in the WAL (`pg_lsn`), as PostgreSQL prints it: `16/B374D848`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    pub fn parse(text: &str) -> Option<Lsn> {
        let (hi, lo) = text.trim().split_once('/')?;
        let hi = u32::from_str_radix(hi, 16).ok()?;
        let lo = u32::from_str_radix(lo, 16).ok()?;
        Some(Lsn(((hi as u64) << 32) | lo as u64))
    }

    /// The name of the segment holding this position on `timeline`, for segments of
    /// `segment_bytes`.
    pub fn segment(self, timeline: u32, segment_bytes: u64) -> String {
        let segno = self.0 / segment_bytes;
        let per_id = 0x1_0000_0000u64 / segment_bytes;
        format!("{timeline:08X}{:08X}{:08X}", segno / per_id, segno % per_id)
    }
}

/// The segment a stream resuming at `resume` (its slot's `restart_lsn`) must already have
/// archived or staged: the one before the segment it resumes in (pg_receivewal starts at that
/// segment's beginning). `None` when it resumes in the very first segment.
pub fn segment_before(resume: Lsn, timeline: u32, segment_bytes: u64) -> Option<String> {
    let start = resume.0 - resume.0 % segment_bytes;
    start
        .checked_sub(1)
        .map(|last| Lsn(last).segment(timeline, segment_bytes))
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

/// When the newest WAL record of each timeline was stored, from a listing's names and
/// modification times: how far the archive reaches (`backups list`'s `recoverable_until`, and
/// the bound `restore --physical --to-time` is checked against).
pub fn stored_until<'a>(
    objects: impl IntoIterator<Item = (&'a str, chrono::DateTime<chrono::Utc>)>,
) -> std::collections::BTreeMap<u32, chrono::DateTime<chrono::Utc>> {
    let mut out = std::collections::BTreeMap::new();
    for (name, modified) in objects {
        let Some((tli, file)) = name.strip_prefix("wal/").and_then(|r| r.split_once('/')) else {
            continue;
        };
        if !file.ends_with(".json") {
            continue;
        }
        let Ok(tli) = u32::from_str_radix(tli, 16) else {
            continue;
        };
        let e = out.entry(tli).or_insert(modified);
        if modified > *e {
            *e = modified;
        }
    }
    out
}

/// How far the archive lets a physical backup of `timeline`, completed at `completed`, be
/// recovered: when the newest WAL of that timeline or a later one was stored ([`stored_until`]),
/// or the backup's own completion when nothing later is there.
pub fn reaches(
    stored: &std::collections::BTreeMap<u32, chrono::DateTime<chrono::Utc>>,
    timeline: u32,
    completed: chrono::DateTime<chrono::Utc>,
) -> chrono::DateTime<chrono::Utc> {
    stored
        .range(timeline..)
        .map(|(_, t)| *t)
        .max()
        .filter(|t| *t > completed)
        .unwrap_or(completed)
}

/// What a target's listing says of its WAL archive, read from it once: when each timeline's
/// newest record was stored ([`stored_until`]), each timeline's chain ([`Stored`]) and when
/// each record was stored. `backups list` asks it of every physical backup, `restore` of one.
pub struct Archived<'a> {
    until: std::collections::BTreeMap<u32, chrono::DateTime<chrono::Utc>>,
    chains: std::collections::BTreeMap<u32, Stored>,
    records: std::collections::HashMap<&'a str, chrono::DateTime<chrono::Utc>>,
}

impl<'a> Archived<'a> {
    pub fn new(
        objects: impl IntoIterator<Item = (&'a str, chrono::DateTime<chrono::Utc>)>,
    ) -> Self {
        let records: std::collections::HashMap<&str, chrono::DateTime<chrono::Utc>> = objects
            .into_iter()
            .filter(|(n, _)| {
                n.strip_prefix(WAL_DIR)
                    .is_some_and(|r| r.starts_with('/') && r.ends_with(".json"))
            })
            .collect();
        let until = stored_until(records.iter().map(|(n, t)| (*n, *t)));
        let chains = until
            .keys()
            .map(|&tli| {
                let name = format!("{tli:08X}");
                (tli, Stored::from_listing(&name, records.keys().copied()))
            })
            .collect();
        Archived {
            until,
            chains,
            records,
        }
    }

    /// The chain of `timeline` (empty when nothing of it is archived).
    pub fn chain(&self, timeline: u32) -> Stored {
        self.chains.get(&timeline).cloned().unwrap_or_default()
    }

    /// How far the archive lets a physical backup be recovered, holes counted: [`reaches`],
    /// unless the backup's own timeline has a hole after `stop_segment` (a segment that is not
    /// stored whole before the newest one stored): recovery cannot pass it, so the archive
    /// reaches only as far as the segment before the hole was stored (the backup's completion
    /// when the hole follows it at once). Returns that time and the first missing segment.
    /// With a later timeline archived, recovery follows that one, which may branch off before
    /// the hole: then it is [`reaches`] as before (the server's own fetch still stops at a hole
    /// it needs).
    pub fn reaches(
        &self,
        timeline: u32,
        stop_segment: &str,
        segment_bytes: u64,
        completed: chrono::DateTime<chrono::Utc>,
    ) -> (chrono::DateTime<chrono::Utc>, Option<String>) {
        let reach = reaches(&self.until, timeline, completed);
        if self.until.range(timeline + 1..).next().is_some() {
            return (reach, None);
        }
        let Some(chain) = self.chains.get(&timeline) else {
            return (reach, None);
        };
        let Some(first) = chain
            .holes_after(stop_segment, segment_bytes)
            .into_iter()
            .next()
        else {
            return (reach, None);
        };
        let before = chain
            .full
            .iter()
            .rfind(|s| s.as_str() > stop_segment && s.as_str() < first.as_str());
        let until = before
            .and_then(|seg| self.records.get(record_name(seg, false)?.as_str()).copied())
            .filter(|t| *t > completed)
            .unwrap_or(completed);
        (until, Some(first))
    }
}

/// Whether `name` is a WAL segment file name (24 hex digits).
pub fn is_segment(name: &str) -> bool {
    name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `name` is a timeline history file name (`00000002.history`).
pub fn is_history(name: &str) -> bool {
    name.strip_suffix(".history")
        .is_some_and(|t| t.len() == 8 && t.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The timeline of a segment or history file name, as its 8 hex digits.
pub fn timeline_of(name: &str) -> Option<&str> {
    (is_segment(name) || is_history(name)).then(|| &name[..8])
}

/// The folder of a timeline's files under the target: `wal/<timeline>`.
pub fn timeline_dir(timeline: &str) -> String {
    format!("{WAL_DIR}/{timeline}")
}

/// The record of a stored completed segment or history file (`partial` = false) or of the
/// partial copy of the segment being written.
pub fn record_name(file: &str, partial: bool) -> Option<String> {
    let tli = timeline_of(file)?;
    Some(if partial {
        format!("{}/{file}.partial.json", timeline_dir(tli))
    } else {
        format!("{}/{file}.json", timeline_dir(tli))
    })
}

/// The object of a completed segment or history file, compressed with the codec whose file
/// extension is `ext` (`gz`, `zst`).
pub fn object_name(file: &str, ext: &str) -> Option<String> {
    Some(format!("{}/{file}.{ext}", timeline_dir(timeline_of(file)?)))
}

/// The object of the `n`th partial copy of a segment.
pub fn partial_object_name(file: &str, n: u64, ext: &str) -> Option<String> {
    Some(format!(
        "{}/{file}.partial-{n}.{ext}",
        timeline_dir(timeline_of(file)?)
    ))
}

/// What makes a stored WAL file exist, written after its object (`<file>.json`,
/// `<file>.partial.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    /// The file as PostgreSQL names it (`000000010000000000000003`, `00000002.history`).
    pub file: String,
    /// The object holding it, relative to the target.
    pub object: String,
    /// The object's size and SHA-256 (after compression).
    pub size_bytes: u64,
    pub sha256: String,
    /// The bytes stored (unpacked): the file without its trailing zeros (pg_receivewal pads a
    /// segment still being written, and one switched early, with zeros to its full size).
    pub wal_bytes: u64,
    /// The file's own size: zeros are appended up to it when it is fetched. `None` in records
    /// whose object holds the whole file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_to: Option<u64>,
    /// `gzip` or `zstd`.
    pub compression: String,
    /// True for the copy of a segment still being written.
    pub partial: bool,
    /// Client-side encryption (`backup.encryption_key_file`), as a dump's: the object is the
    /// compressed file sealed with [`crate::archive::crypt`]; `size_bytes` and `sha256` are of
    /// the stored, encrypted bytes (checkable without the key). `None`: stored in the clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Sealed>,
}

/// How a stored WAL file is encrypted: the scheme and the public id of its key (never the key).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Sealed {
    /// `aes-256-gcm-hkdf-stream` (`aes-256-gcm-stream` before; see `archive::crypt`).
    pub kind: String,
    pub key_id: String,
}

impl Record {
    /// How this file is named in messages: "WAL segment X" or "WAL file X" (a history file).
    pub fn what(&self) -> String {
        if is_segment(&self.file) {
            format!("WAL segment {}", self.file)
        } else {
            format!("WAL file {}", self.file)
        }
    }
}

/// What the archive holds of one timeline: from the listing's record names.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Completed segments, sorted.
    pub full: Vec<String>,
    /// Segments stored only as partial copies, sorted.
    pub partial: Vec<String>,
}

impl Stored {
    /// From the names of a listing (any names; only `wal/<timeline>/*.json` records count).
    pub fn from_listing<'a>(timeline: &str, names: impl IntoIterator<Item = &'a str>) -> Stored {
        let prefix = format!("{}/", timeline_dir(timeline));
        let mut s = Stored::default();
        for name in names {
            let Some(rest) = name.strip_prefix(&prefix) else {
                continue;
            };
            if let Some(seg) = rest.strip_suffix(".partial.json") {
                if is_segment(seg) {
                    s.partial.push(seg.to_string());
                }
            } else if let Some(seg) = rest.strip_suffix(".json") {
                if is_segment(seg) {
                    s.full.push(seg.to_string());
                }
            }
        }
        s.full.sort();
        s.full.dedup();
        s.partial.sort();
        s.partial.dedup();
        s
    }

    /// The newest segment stored at all (completed or partial).
    pub fn newest(&self) -> Option<&str> {
        self.full
            .last()
            .into_iter()
            .chain(self.partial.last())
            .max()
            .map(String::as_str)
    }

    /// Segments after `from` up to the newest stored that are not stored whole: the holes of
    /// the chain (a partial copy followed by newer segments is a hole too). `from` itself is
    /// not checked. `segment_bytes` is the cluster's `wal_segment_size`.
    pub fn holes_after(&self, from: &str, segment_bytes: u64) -> Vec<String> {
        let Some(newest) = self.newest() else {
            return Vec::new();
        };
        let mut holes = Vec::new();
        let mut seg = next_segment(from, segment_bytes);
        while let Some(s) = seg {
            if s.as_str() > newest {
                break;
            }
            let whole = self.full.binary_search(&s).is_ok();
            let tail_partial = s.as_str() == newest && self.partial.binary_search(&s).is_ok();
            if !whole && !tail_partial {
                holes.push(s.clone());
                if holes.len() > 100 {
                    break;
                }
            }
            seg = next_segment(&s, segment_bytes);
        }
        holes
    }
}

/// The segment after `name` on the same timeline, for segments of `segment_bytes` (the low
/// part counts up to `0x1_0000_0000 / segment_bytes - 1`, `FF` for 16 MiB, before the high
/// part moves on).
pub fn next_segment(name: &str, segment_bytes: u64) -> Option<String> {
    if !is_segment(name) || segment_bytes == 0 {
        return None;
    }
    let per_id = 0x1_0000_0000u64 / segment_bytes;
    let tli = &name[..8];
    let hi = u64::from_str_radix(&name[8..16], 16).ok()?;
    let lo = u64::from_str_radix(&name[16..24], 16).ok()?;
    let (hi, lo) = if lo + 1 >= per_id {
        (hi + 1, 0)
    } else {
        (hi, lo + 1)
    };
    Some(format!("{tli}{hi:08X}{lo:08X}"))
}

/// The objects under `wal/` that no kept physical backup needs (pure): `kept` holds each kept
/// physical backup's timeline and the segment its WAL starts in. A segment is needed when some
/// kept backup is on its timeline or an earlier one (recovery moves to later timelines, never
/// back) and starts at or before it; everything of a segment no backup needs goes, its record
/// first (so it is never listed without its object). History files stay (they are tiny and
/// tell recovery which timelines exist). With no kept physical backup nothing goes.
pub fn prune_plan<'a>(
    names: impl IntoIterator<Item = &'a str>,
    kept: &[(u32, String)],
) -> Vec<String> {
    if kept.is_empty() {
        return Vec::new();
    }
    let mut records = Vec::new();
    let mut objects = Vec::new();
    for name in names {
        let Some(rest) = name.strip_prefix(&format!("{WAL_DIR}/")) else {
            continue;
        };
        let Some((_, file)) = rest.split_once('/') else {
            continue;
        };
        if file.len() < 24 || !is_segment(&file[..24]) {
            continue; // a history file, or not ours
        }
        let seg = &file[..24];
        let Ok(tli) = u32::from_str_radix(&seg[..8], 16) else {
            continue;
        };
        let needed = kept
            .iter()
            .any(|(kt, start)| *kt <= tli && start.len() == 24 && seg[8..] >= start[8..]);
        if !needed {
            if file.ends_with(".json") {
                records.push(name.to_string());
            } else {
                objects.push(name.to_string());
            }
        }
    }
    records.sort();
    objects.sort();
    records.extend(objects);
    records
}

/// What `wal fetch` does with a file recovery asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// Serve the completed segment (or history file).
    Full,
    /// Serve the partial copy: it is the newest segment stored, the end of the archive.
    Partial,
    /// Not in the archive, and that is normal: the end of the archive, a history file of a
    /// timeline that never existed, or a segment the base backup itself carries.
    NotFound(String),
    /// A segment that must be in the archive is not (or only partly): recovery must stop here.
    Gap(String),
}

/// Judge the file `file` recovery asks for, given what the archive holds of its timeline (at
/// least everything that sorts after `file`: what comes before it does not matter) and
/// `through`: the last segment the base backup carries itself (`-X fetch`; a segment up to it
/// missing from the archive is found in the restored `pg_wal`).
pub fn judge(file: &str, stored: &Stored, through: Option<&str>) -> Judgement {
    if !is_segment(file) {
        return Judgement::NotFound(format!("{file} is not in the archive"));
    }
    if stored.full.binary_search(&file.to_string()).is_ok() {
        return Judgement::Full;
    }
    let newest = stored.newest();
    if stored.partial.binary_search(&file.to_string()).is_ok() && newest == Some(file) {
        return Judgement::Partial;
    }
    if through.is_some_and(|t| file <= t) {
        return Judgement::NotFound(format!(
            "{file} is not in the archive; the base backup carries it"
        ));
    }
    match newest {
        Some(n) if file < n => {
            let how = if stored.partial.binary_search(&file.to_string()).is_ok() {
                "is stored only in part"
            } else {
                "is missing"
            };
            Judgement::Gap(format!(
                "WAL segment {file} {how} in the archive, but newer segments (up to {n}) are \
                 stored: the chain has a gap there, and recovery cannot go past it"
            ))
        }
        Some(n) => Judgement::NotFound(format!(
            "{file} is past the end of the archive (newest stored: {n})"
        )),
        None => Judgement::NotFound(format!(
            "{file}: the archive holds no WAL of timeline {}",
            &file[..8]
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hole_after_the_backup_ends_what_it_can_be_recovered_to() {
        const SEG: u64 = 16 << 20;
        let at = |s: i64| chrono::DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap();
        let done = at(5);
        let rec = |seg: &str| format!("wal/00000001/{seg}.json");
        let (r3, r4, r6, r7) = (
            rec("000000010000000000000003"),
            rec("000000010000000000000004"),
            rec("000000010000000000000006"),
            rec("000000010000000000000007"),
        );
        let base = "000000010000000000000002";
        // No hole: as far as the newest record.
        let whole = [(r3.as_str(), at(10)), (r4.as_str(), at(20))];
        assert_eq!(
            Archived::new(whole).reaches(1, base, SEG, done),
            (at(20), None)
        );
        // 5 missing: only as far as 4 was stored, and 5 named.
        let holed = [
            (r3.as_str(), at(10)),
            (r4.as_str(), at(20)),
            (r6.as_str(), at(40)),
            (r7.as_str(), at(50)),
        ];
        assert_eq!(
            Archived::new(holed).reaches(1, base, SEG, done),
            (at(20), Some("000000010000000000000005".to_string()))
        );
        // The hole right after the backup: only to the backup's own end.
        let at_once = [(r4.as_str(), at(20))];
        assert_eq!(
            Archived::new(at_once).reaches(1, base, SEG, done),
            (done, Some("000000010000000000000003".to_string()))
        );
        // A later timeline archived: it may branch off before the hole.
        let later = "wal/00000002/000000020000000000000006.json";
        let branched = [
            (r3.as_str(), at(10)),
            (r6.as_str(), at(40)),
            (later, at(60)),
        ];
        assert_eq!(
            Archived::new(branched).reaches(1, base, SEG, done),
            (at(60), None)
        );
    }

    #[test]
    fn the_segment_before_a_resume_point() {
        const SEG: u64 = 16 << 20;
        let at = |t: &str| Lsn::parse(t).unwrap();
        // On a boundary (pg_receivewal reports a segment's end): the last one completed.
        assert_eq!(
            segment_before(at("0/3000000"), 1, SEG).as_deref(),
            Some("000000010000000000000002")
        );
        // Inside a segment: the one before it.
        assert_eq!(
            segment_before(at("0/3000028"), 2, SEG).as_deref(),
            Some("000000020000000000000002")
        );
        // Across a log id (256 segments of 16 MiB to one).
        assert_eq!(
            segment_before(at("1/0"), 1, SEG).as_deref(),
            Some("0000000100000000000000FF")
        );
        assert_eq!(segment_before(at("0/28"), 1, SEG), None);
    }

    #[test]
    fn the_archive_reaches_as_far_as_its_newest_record_per_timeline() {
        let at = |s: u32| chrono::DateTime::from_timestamp(1_800_000_000 + s as i64, 0).unwrap();
        let listing = [
            ("wal/00000001/000000010000000000000002.json", at(10)),
            ("wal/00000001/000000010000000000000003.zst", at(99)), // an object, not a record
            ("wal/00000001/000000010000000000000003.partial.json", at(30)),
            ("wal/00000002/00000002.history.json", at(40)),
            ("wal/00000002/000000020000000000000004.json", at(20)),
            ("20261207T120000Z-abcdef/manifest.json", at(500)), // a backup's, not WAL
            ("wal/notatimeline/x.json", at(600)),
        ];
        let got = stored_until(listing.iter().map(|(n, t)| (*n, *t)));
        assert_eq!(
            got.into_iter().collect::<Vec<_>>(),
            vec![(1, at(30)), (2, at(40))]
        );
    }

    #[test]
    fn prune_keeps_what_a_kept_backup_needs_records_first() {
        let names = [
            "wal/00000001/000000010000000000000002.gz",
            "wal/00000001/000000010000000000000002.json",
            "wal/00000001/000000010000000000000005.gz",
            "wal/00000001/000000010000000000000005.json",
            "wal/00000001/000000010000000000000006.partial-17.gz",
            "wal/00000001/000000010000000000000006.partial.json",
            "wal/00000002/00000002.history.gz",
            "wal/00000002/00000002.history.json",
            "wal/00000002/000000020000000000000004.gz",
            "wal/00000002/000000020000000000000004.json",
            "20261124T031500Z-3fa9c1/manifest.json",
        ];
        let kept = [(1, "000000010000000000000005".to_string())];
        assert_eq!(
            prune_plan(names, &kept),
            [
                "wal/00000001/000000010000000000000002.json",
                "wal/00000002/000000020000000000000004.json",
                "wal/00000001/000000010000000000000002.gz",
                "wal/00000002/000000020000000000000004.gz",
            ]
        );
        // A backup on timeline 2 needs nothing of timeline 1 (recovery never goes back).
        let kept = [(2, "000000020000000000000004".to_string())];
        assert_eq!(prune_plan(names, &kept).len(), 6);
        assert!(
            prune_plan(names, &[]).is_empty(),
            "no physical backup: nothing goes"
        );
    }

    #[test]
    fn lsns_parse_print_and_name_their_segment() {
        let l = Lsn::parse("16/B374D848").unwrap();
        assert_eq!(l.0, 0x16_B374_D848);
        assert_eq!(l.to_string(), "16/B374D848");
        assert_eq!(Lsn::parse("0/2000028").unwrap().to_string(), "0/2000028");
        assert_eq!(Lsn::parse("nope"), None);
        assert_eq!(
            Lsn::parse("0/2000028").unwrap().segment(1, 16 << 20),
            "000000010000000000000002"
        );
        assert_eq!(
            l.segment(3, 16 << 20),
            "0000000300000016000000B3",
            "high part, then the 16 MiB segment within it"
        );
        assert_eq!(
            Lsn::parse("1/0").unwrap().segment(1, 64 << 20),
            "000000010000000100000000"
        );
    }

    #[test]
    fn names_and_layout() {
        assert!(is_segment("000000010000000000000003"));
        assert!(!is_segment("000000010000000000000003.partial"));
        assert!(is_history("00000002.history"));
        assert_eq!(timeline_of("00000002.history"), Some("00000002"));
        assert_eq!(
            record_name("000000010000000000000003", true).unwrap(),
            "wal/00000001/000000010000000000000003.partial.json"
        );
        assert_eq!(
            object_name("00000002.history", "gz").unwrap(),
            "wal/00000002/00000002.history.gz"
        );
        assert_eq!(
            partial_object_name("000000010000000000000003", 7, "zst").unwrap(),
            "wal/00000001/000000010000000000000003.partial-7.zst"
        );
        assert_eq!(record_name("../etc/passwd", false), None);
        const MB16: u64 = 16 << 20;
        assert_eq!(
            next_segment("0000000100000000000000FE", MB16).unwrap(),
            "0000000100000000000000FF"
        );
        assert_eq!(
            next_segment("0000000100000000000000FF", MB16).unwrap(),
            "000000010000000100000000"
        );
        assert_eq!(
            next_segment("00000001000000000000003F", 64 << 20).unwrap(),
            "000000010000000100000000"
        );
    }

    fn stored(full: &[u32], partial: &[u32]) -> Stored {
        let name = |n: &u32| format!("00000001{:08X}{:08X}", n >> 8, n & 0xff);
        let mut names: Vec<String> = full
            .iter()
            .map(|n| format!("wal/00000001/{}.json", name(n)))
            .collect();
        names.extend(
            partial
                .iter()
                .map(|n| format!("wal/00000001/{}.partial.json", name(n))),
        );
        names.push("wal/00000001/000000010000000000000009.gz".into());
        names.push("20261124T031500Z-3fa9c1/manifest.json".into());
        Stored::from_listing("00000001", names.iter().map(String::as_str))
    }

    #[test]
    fn the_end_of_the_archive_is_not_a_gap_but_a_hole_is() {
        let s = stored(&[3, 4, 6], &[7]);
        assert_eq!(s.newest(), Some("000000010000000000000007"));
        assert_eq!(judge("000000010000000000000004", &s, None), Judgement::Full);
        assert_eq!(
            judge("000000010000000000000007", &s, None),
            Judgement::Partial
        );
        assert!(matches!(
            judge("000000010000000000000008", &s, None),
            Judgement::NotFound(_)
        ));
        let Judgement::Gap(why) = judge("000000010000000000000005", &s, None) else {
            panic!("a hole before the newest segment is a gap");
        };
        assert!(why.contains("000000010000000000000005 is missing"), "{why}");
        // The base backup carries the segments up to its stop position itself.
        assert!(matches!(
            judge(
                "000000010000000000000002",
                &s,
                Some("000000010000000000000002")
            ),
            Judgement::NotFound(_)
        ));
        assert!(matches!(
            judge("000000010000000000000002", &s, None),
            Judgement::Gap(_)
        ));
        // A partial copy followed by newer segments is a gap, never a shorter recovery.
        let s = stored(&[3, 5], &[4]);
        let Judgement::Gap(why) = judge("000000010000000000000004", &s, None) else {
            panic!("an old partial copy is a gap");
        };
        assert!(why.contains("only in part"), "{why}");
        assert_eq!(
            s.holes_after("000000010000000000000003", 16 << 20),
            ["000000010000000000000004"]
        );
        assert!(
            stored(&[3, 4, 5], &[6])
                .holes_after("000000010000000000000003", 16 << 20)
                .is_empty()
        );
        assert!(matches!(
            judge("00000002.history", &s, None),
            Judgement::NotFound(_)
        ));
        assert!(matches!(
            judge("000000010000000000000001", &Stored::default(), None),
            Judgement::NotFound(_)
        ));
    }
}
