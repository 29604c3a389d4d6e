//! Give a pg_dump custom-format archive the data offsets pg_dump could not write.
//!
//! pg_dump writes its table of contents (TOC) first and the table data after it. When its
//! output is a file it goes back at the end and fills in, for every TOC entry, where that
//! entry's data block starts; when its output is a pipe (as in `kasm-db backup`, which streams
//! the dump through gzip and SHA-256 with no temp file) it cannot, and every entry says "offset
//! not set". `pg_restore -j` then makes each worker read forward through the archive to find
//! its table, and cannot start the largest tables first (it sorts by the gaps between
//! offsets). bench/restore.sh measured that at about a third of the restore's time.
//!
//! [`index`] reads the archive once (header, TOC, then block headers, skipping the data), and
//! writes each found block's offset into the TOC in place — the fields have a fixed width, so
//! the file is byte-for-byte what pg_dump would have written to a seekable file.
//!
//! It must never make an archive worse: nothing is written unless the whole file parsed and
//! every block found belongs to an entry that expects data; each entry's offset is written
//! before its flag, so a write cut short leaves entries that are either complete or still
//! "not set" (which pg_restore handles as before). Archive versions it does not know are left
//! alone. It never touches a database.

use std::io::{BufRead, BufReader, ErrorKind, Seek, SeekFrom, Write};
use std::path::Path;

/// TOC flag values of `WriteOffset` (pg_backup_archiver.h).
const POS_NOT_SET: u8 = 1;
const POS_SET: u8 = 2;
const NO_DATA: u8 = 3;
/// Block types of the custom format (pg_backup_custom.c).
const BLK_DATA: u8 = 1;
const BLK_BLOBS: u8 = 3;
/// The custom format's id in the header.
const FORMAT_CUSTOM: u8 = 1;
/// Archive versions whose layout this module knows: 1.14 (PostgreSQL 12–15, table access
/// methods), 1.15 (16, compression algorithm byte), 1.16 (17, relkind in the TOC).
const VERSIONS: std::ops::RangeInclusive<(u8, u8)> = (1, 14)..=(1, 16);

/// What [`index`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Indexed {
    /// Offsets written for this many data blocks.
    Written { blocks: usize },
    /// The archive already had every offset it can have (pg_dump wrote it to a file).
    AlreadyIndexed,
    /// Left alone, with the reason (an unknown version, not a custom archive...).
    Skipped(String),
}

/// One TOC entry's offset field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    dump_id: i64,
    /// File position of the flag byte (the offset's bytes follow it).
    at: u64,
    flag: u8,
}

/// The parsed front of an archive.
#[derive(Debug)]
struct Toc {
    int_size: usize,
    off_size: usize,
    slots: Vec<Slot>,
}

/// A reader that knows its position and turns a short read into a clear error.
struct Cursor<R> {
    inner: R,
    pos: u64,
}

impl<R: BufRead + Seek> Cursor<R> {
    fn byte(&mut self) -> std::io::Result<u8> {
        let mut b = [0u8; 1];
        self.inner.read_exact(&mut b)?;
        self.pos += 1;
        Ok(b[0])
    }

    /// One byte, or `None` at a clean end of file.
    fn byte_or_eof(&mut self) -> std::io::Result<Option<u8>> {
        if self.inner.fill_buf()?.is_empty() {
            return Ok(None);
        }
        self.byte().map(Some)
    }

    /// `ReadInt`: a sign byte, then `int_size` bytes, least significant first.
    fn int(&mut self, int_size: usize) -> std::io::Result<i64> {
        let negative = self.byte()? != 0;
        let mut v: u64 = 0;
        for i in 0..int_size {
            let b = self.byte()? as u64;
            if i < 8 {
                v |= b << (8 * i);
            } else if b != 0 {
                return Err(bad("an integer wider than 64 bits"));
            }
        }
        let v = i64::try_from(v).map_err(|_| bad("an integer out of range"))?;
        Ok(if negative { -v } else { v })
    }

    /// `ReadStr`: a length (negative for NULL), then the bytes, which are skipped.
    fn skip_str(&mut self, int_size: usize) -> std::io::Result<bool> {
        let len = self.int(int_size)?;
        if len < 0 {
            return Ok(false);
        }
        self.skip(len as u64)?;
        Ok(true)
    }

    /// A string that is kept (only short ones: versions, flags).
    fn str(&mut self, int_size: usize) -> std::io::Result<Option<String>> {
        let len = self.int(int_size)?;
        if len < 0 {
            return Ok(None);
        }
        if len > 1 << 20 {
            return Err(bad("a header string over 1 MiB"));
        }
        let mut buf = vec![0u8; len as usize];
        self.inner.read_exact(&mut buf)?;
        self.pos += len as u64;
        Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
    }

    fn skip(&mut self, n: u64) -> std::io::Result<()> {
        let n = i64::try_from(n).map_err(|_| bad("a length out of range"))?;
        self.inner.seek_relative(n)?;
        self.pos += n as u64;
        Ok(())
    }
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(ErrorKind::InvalidData, what.to_string())
}

/// Read the header and TOC. `Ok(Err(reason))` when the archive is one this module leaves alone.
fn read_toc<R: BufRead + Seek>(c: &mut Cursor<R>) -> std::io::Result<Result<Toc, String>> {
    let mut magic = [0u8; 5];
    c.inner.read_exact(&mut magic)?;
    c.pos += 5;
    if &magic != b"PGDMP" {
        return Ok(Err("not a pg_dump custom-format archive".into()));
    }
    let (major, minor, _rev) = (c.byte()?, c.byte()?, c.byte()?);
    if !VERSIONS.contains(&(major, minor)) {
        return Ok(Err(format!(
            "archive version {major}.{minor} is not one kasm-db indexes"
        )));
    }
    let int_size = c.byte()? as usize;
    let off_size = c.byte()? as usize;
    if !(1..=8).contains(&int_size) || !(4..=16).contains(&off_size) {
        return Ok(Err(format!("unusual integer sizes {int_size}/{off_size}")));
    }
    if c.byte()? != FORMAT_CUSTOM {
        return Ok(Err("not the custom format".into()));
    }
    if (major, minor) >= (1, 15) {
        c.byte()?; // compression algorithm
    } else {
        c.int(int_size)?; // compression level
    }
    for _ in 0..7 {
        c.int(int_size)?; // creation time: sec, min, hour, mday, mon, year, isdst
    }
    for _ in 0..3 {
        c.str(int_size)?; // database name, server version, pg_dump version
    }
    let count = c.int(int_size)?;
    if !(0..=10_000_000).contains(&count) {
        return Err(bad("a TOC entry count out of range"));
    }
    let mut slots = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let dump_id = c.int(int_size)?;
        c.int(int_size)?; // had a data dumper
        for _ in 0..2 {
            c.skip_str(int_size)?; // tableoid, oid
        }
        c.skip_str(int_size)?; // tag
        c.skip_str(int_size)?; // desc
        c.int(int_size)?; // section
        for _ in 0..6 {
            c.skip_str(int_size)?; // defn, drop, copy, namespace, tablespace, table am
        }
        if (major, minor) >= (1, 16) {
            c.int(int_size)?; // relkind
        }
        c.skip_str(int_size)?; // owner
        c.skip_str(int_size)?; // "false" (was WITH OIDS)
        while c.skip_str(int_size)? {} // dependencies, NULL-terminated
        let at = c.pos;
        let flag = c.byte()?;
        if !matches!(flag, POS_NOT_SET | POS_SET | NO_DATA) {
            return Err(bad("an offset flag that is not 1, 2 or 3"));
        }
        c.skip(off_size as u64)?;
        slots.push(Slot { dump_id, at, flag });
    }
    Ok(Ok(Toc {
        int_size,
        off_size,
        slots,
    }))
}

/// Walk the data blocks after the TOC: (dump id, offset of the block) in file order.
fn read_blocks<R: BufRead + Seek>(
    c: &mut Cursor<R>,
    int_size: usize,
) -> std::io::Result<Vec<(i64, u64)>> {
    let mut found = Vec::new();
    loop {
        let at = c.pos;
        let Some(kind) = c.byte_or_eof()? else {
            return Ok(found);
        };
        let dump_id = c.int(int_size)?;
        match kind {
            BLK_DATA => skip_chunks(c, int_size)?,
            BLK_BLOBS => {
                // Large objects: (oid, chunks...) until an oid of 0.
                while c.int(int_size)? != 0 {
                    skip_chunks(c, int_size)?;
                }
            }
            _ => return Err(bad("a data block of an unknown type")),
        }
        found.push((dump_id, at));
    }
}

/// Chunks of a block: (length, bytes) until a length of 0.
fn skip_chunks<R: BufRead + Seek>(c: &mut Cursor<R>, int_size: usize) -> std::io::Result<()> {
    loop {
        let len = c.int(int_size)?;
        if len == 0 {
            return Ok(());
        }
        if len < 0 {
            return Err(bad("a negative chunk length"));
        }
        c.skip(len as u64)?;
    }
}

/// The (flag position, offset) writes that index the archive, or why none are needed (pure).
fn plan(toc: &Toc, blocks: &[(i64, u64)]) -> Result<Vec<(u64, u64)>, Indexed> {
    let by_id: std::collections::HashMap<i64, &Slot> =
        toc.slots.iter().map(|s| (s.dump_id, s)).collect();
    let mut writes = Vec::new();
    for &(id, at) in blocks {
        let Some(slot) = by_id.get(&id) else {
            return Err(Indexed::Skipped(format!(
                "a data block for entry {id}, which the TOC does not have"
            )));
        };
        match slot.flag {
            POS_NOT_SET => writes.push((slot.at, at)),
            POS_SET => {}
            _ => {
                return Err(Indexed::Skipped(format!(
                    "a data block for entry {id}, which the TOC says has no data"
                )));
            }
        }
    }
    if toc.off_size < 8 && writes.iter().any(|&(_, o)| o >> (8 * toc.off_size) != 0) {
        return Err(Indexed::Skipped(
            "offsets wider than the archive's offset size".into(),
        ));
    }
    if writes.is_empty() {
        return Err(Indexed::AlreadyIndexed);
    }
    Ok(writes)
}

/// Index the archive read through `r`, writing through `w` (the same file).
fn index_with<R: BufRead + Seek, W: Write + Seek>(r: R, mut w: W) -> std::io::Result<Indexed> {
    let mut c = Cursor { inner: r, pos: 0 };
    let toc = match read_toc(&mut c)? {
        Ok(toc) => toc,
        Err(reason) => return Ok(Indexed::Skipped(reason)),
    };
    let blocks = read_blocks(&mut c, toc.int_size)?;
    let writes = match plan(&toc, &blocks) {
        Ok(w) => w,
        Err(outcome) => return Ok(outcome),
    };
    for &(flag_at, offset) in &writes {
        let bytes = offset.to_le_bytes();
        let mut field = vec![0u8; toc.off_size];
        let n = toc.off_size.min(8);
        field[..n].copy_from_slice(&bytes[..n]);
        w.seek(SeekFrom::Start(flag_at + 1))?;
        w.write_all(&field)?;
        w.seek(SeekFrom::Start(flag_at))?;
        w.write_all(&[POS_SET])?;
    }
    w.flush()?;
    Ok(Indexed::Written {
        blocks: writes.len(),
    })
}

/// Index the archive at `path` in place (see the module's comment). An error means the file
/// could not be read as an archive; it is unchanged, or has some entries indexed.
pub fn index(path: &Path) -> std::io::Result<Indexed> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let reader = BufReader::with_capacity(1 << 20, file.try_clone()?);
    index_with(reader, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes archives the way pg_dump does (int size 4, offset size 8).
    struct Dump {
        out: Vec<u8>,
        minor: u8,
    }

    impl Dump {
        fn int(&mut self, v: i64) {
            self.out.push(u8::from(v < 0));
            self.out
                .extend_from_slice(&(v.unsigned_abs() as u32).to_le_bytes());
        }
        fn str(&mut self, s: Option<&str>) {
            match s {
                None => self.int(-1),
                Some(s) => {
                    self.int(s.len() as i64);
                    self.out.extend_from_slice(s.as_bytes());
                }
            }
        }
        /// Header and a TOC of (dump id, has data, offset flag, offset); returns nothing.
        fn front(&mut self, entries: &[(i64, bool, u8, u64)]) {
            self.out.extend_from_slice(b"PGDMP");
            self.out
                .extend_from_slice(&[1, self.minor, 0, 4, 8, FORMAT_CUSTOM]);
            if self.minor >= 15 {
                self.out.push(0);
            } else {
                self.int(0);
            }
            for v in [1, 2, 3, 24, 10, 126, 0] {
                self.int(v);
            }
            for s in ["kasm", "15.18", "15.18"] {
                self.str(Some(s));
            }
            self.int(entries.len() as i64);
            for &(id, data, flag, off) in entries {
                self.int(id);
                self.int(i64::from(data));
                self.str(Some("1259"));
                self.str(Some("16384"));
                self.str(Some("logs"));
                self.str(Some(if data { "TABLE DATA" } else { "TABLE" }));
                self.int(2);
                self.str(Some("CREATE TABLE logs (\n  message text\n);"));
                self.str(None);
                self.str(data.then_some("COPY public.logs (message) FROM stdin;\n"));
                self.str(Some("public"));
                self.str(Some(""));
                self.str(Some("heap"));
                if self.minor >= 16 {
                    self.int(i64::from(b'r'));
                }
                self.str(Some("postgres"));
                self.str(Some("false"));
                self.str(Some("3"));
                self.str(None);
                self.out.push(flag);
                self.out.extend_from_slice(&off.to_le_bytes());
            }
        }
        fn data(&mut self, id: i64, rows: &[&str]) -> u64 {
            let at = self.out.len() as u64;
            self.out.push(BLK_DATA);
            self.int(id);
            for r in rows {
                self.int(r.len() as i64);
                self.out.extend_from_slice(r.as_bytes());
            }
            self.int(0);
            at
        }
        fn blobs(&mut self, id: i64) -> u64 {
            let at = self.out.len() as u64;
            self.out.push(BLK_BLOBS);
            self.int(id);
            self.int(16500);
            self.int(3);
            self.out.extend_from_slice(b"abc");
            self.int(0);
            self.int(0);
            at
        }
    }

    /// The same archive twice: as written to a pipe, and as pg_dump writes it to a file.
    fn pair(minor: u8) -> (Vec<u8>, Vec<u8>) {
        let build = |offsets: Option<(u64, u64, u64)>| {
            let mut d = Dump { out: vec![], minor };
            let (f, o) = match offsets {
                Some(o) => (POS_SET, o),
                None => (POS_NOT_SET, (0, 0, 0)),
            };
            d.front(&[
                (1, false, NO_DATA, 0),
                (2, true, f, o.0),
                (3, true, f, o.1),
                (4, true, f, o.2),
            ]);
            let a = d.data(2, &["one\ttwo\n", "three, with \\N and ünïcode\n"]);
            let b = d.data(3, &[]);
            let c = d.blobs(4);
            (d.out, (a, b, c))
        };
        let (piped, offsets) = build(None);
        let (filed, _) = build(Some(offsets));
        (piped, filed)
    }

    fn run(bytes: &mut Vec<u8>) -> Indexed {
        let read = std::io::Cursor::new(bytes.clone());
        let mut write = std::io::Cursor::new(std::mem::take(bytes));
        let out = index_with(read, &mut write).unwrap();
        *bytes = write.into_inner();
        out
    }

    #[test]
    fn a_piped_archive_becomes_what_pg_dump_writes_to_a_file() {
        for minor in [14, 15, 16] {
            let (mut piped, filed) = pair(minor);
            assert_ne!(piped, filed);
            assert_eq!(run(&mut piped), Indexed::Written { blocks: 3 }, "1.{minor}");
            assert_eq!(piped, filed, "1.{minor}");
            // Indexing again changes nothing.
            assert_eq!(run(&mut piped), Indexed::AlreadyIndexed);
            assert_eq!(piped, filed);
        }
    }

    #[test]
    fn unknown_archives_are_left_alone() {
        let (piped, _) = pair(14);
        let mut newer = piped.clone();
        newer[6] = 17;
        let before = newer.clone();
        assert!(matches!(run(&mut newer), Indexed::Skipped(r) if r.contains("1.17")));
        assert_eq!(newer, before);
        let mut text = b"--\n-- PostgreSQL database dump\n--\n".to_vec();
        assert!(matches!(run(&mut text), Indexed::Skipped(_)));
    }

    #[test]
    fn a_damaged_archive_is_an_error_and_unchanged() {
        let (piped, _) = pair(15);
        // Cut in the middle of the data: the last block's chunks run past the end.
        let mut cut = piped[..piped.len() - 6].to_vec();
        let before = cut.clone();
        let read = std::io::Cursor::new(cut.clone());
        let mut write = std::io::Cursor::new(std::mem::take(&mut cut));
        assert!(index_with(read, &mut write).is_err());
        assert_eq!(write.into_inner(), before);
        // A block for an entry the TOC says has no data: skipped, unchanged.
        let mut d = Dump {
            out: vec![],
            minor: 15,
        };
        d.front(&[(1, false, NO_DATA, 0), (2, true, POS_NOT_SET, 0)]);
        d.data(1, &["x\n"]);
        let mut odd = d.out.clone();
        assert!(matches!(run(&mut odd), Indexed::Skipped(r) if r.contains("entry 1")));
        assert_eq!(odd, d.out);
    }
}
