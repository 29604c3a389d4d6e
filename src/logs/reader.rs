//! Reading NDJSON input as lines with a length limit, from files (gzip when named `.gz`) or
//! stdin, streaming: memory stays bounded by the limit whatever the input size, and a line
//! over the limit is reported with its length without ever being held whole.
//!
//! Synchronous (runs on the parser thread). Blank lines are skipped and not counted.

use flate2::read::MultiGzDecoder;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where lines come from, for reports ("stdin" or the path).
#[derive(Debug, Clone)]
pub enum Source {
    Stdin,
    File(PathBuf),
}

impl Source {
    pub fn name(&self) -> String {
        match self {
            Source::Stdin => "stdin".into(),
            Source::File(p) => p.display().to_string(),
        }
    }

    /// Open for reading; `.gz` files are decompressed (multi-member gzip included).
    pub fn open(&self) -> std::io::Result<Box<dyn BufRead + Send>> {
        self.open_counted(Arc::new(AtomicU64::new(0)))
    }

    /// Like [`Source::open`], adding the bytes read from the source (compressed bytes for
    /// `.gz`) to `read`, for a progress bar.
    pub fn open_counted(&self, read: Arc<AtomicU64>) -> std::io::Result<Box<dyn BufRead + Send>> {
        const BUF: usize = 1 << 20;
        Ok(match self {
            Source::Stdin => Box::new(BufReader::with_capacity(
                BUF,
                Counting {
                    inner: std::io::stdin(),
                    read,
                },
            )),
            Source::File(p) => {
                let f = Counting {
                    inner: std::fs::File::open(p)?,
                    read,
                };
                if is_gzip(p) {
                    Box::new(BufReader::with_capacity(
                        BUF,
                        MultiGzDecoder::new(BufReader::with_capacity(BUF, f)),
                    ))
                } else {
                    Box::new(BufReader::with_capacity(BUF, f))
                }
            }
        })
    }
}

/// A reader that adds what it reads to a shared counter.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn is_gzip(p: &Path) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

/// One line of input.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// A line within the limit (without its `\n`).
    Text(&'a [u8]),
    /// A line over the limit: only its length and its first bytes are kept.
    TooLong { len: usize, head: &'a [u8] },
}

/// Splits a reader into lines of at most `limit` bytes.
pub struct LineReader<R> {
    inner: R,
    limit: usize,
    buf: Vec<u8>,
    /// 1-based number of the last line returned (blank lines included, as editors count).
    pub line_no: u64,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(inner: R, limit: usize) -> Self {
        LineReader {
            inner,
            limit,
            buf: Vec::new(),
            line_no: 0,
        }
    }

    /// The next non-blank line with its 1-based number, or None at the end of input.
    pub fn next_line(&mut self) -> std::io::Result<Option<(u64, Line<'_>)>> {
        loop {
            self.buf.clear();
            let mut len = 0usize;
            let mut eof = true;
            loop {
                let chunk = self.inner.fill_buf()?;
                if chunk.is_empty() {
                    break;
                }
                eof = false;
                let (take, done) = match memchr::memchr(b'\n', chunk) {
                    Some(i) => (i, true),
                    None => (chunk.len(), false),
                };
                // Keep bytes only up to the limit (+1 to know it was exceeded); count the rest.
                let room = (self.limit + 1).saturating_sub(self.buf.len());
                self.buf.extend_from_slice(&chunk[..take.min(room)]);
                len += take;
                self.inner.consume(if done { take + 1 } else { take });
                if done {
                    break;
                }
            }
            if eof && len == 0 {
                return Ok(None);
            }
            self.line_no += 1;
            if len > self.limit {
                self.buf.truncate(1024);
                return Ok(Some((
                    self.line_no,
                    Line::TooLong {
                        len,
                        head: &self.buf,
                    },
                )));
            }
            let line = trim_cr(&self.buf);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            // Re-borrow after the emptiness check.
            let end = line.len();
            return Ok(Some((self.line_no, Line::Text(&self.buf[..end]))));
        }
    }
}

fn trim_cr(b: &[u8]) -> &[u8] {
    b.strip_suffix(b"\r").unwrap_or(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Read everything from `r` into lines.
    fn lines_of(r: impl Read, limit: usize) -> std::io::Result<Vec<Result<Vec<u8>, usize>>> {
        let mut lr = LineReader::new(BufReader::new(r), limit);
        let mut out = Vec::new();
        while let Some((_, l)) = lr.next_line()? {
            out.push(match l {
                Line::Text(t) => Ok(t.to_vec()),
                Line::TooLong { len, .. } => Err(len),
            });
        }
        Ok(out)
    }

    #[test]
    fn splits_skips_blanks_and_limits() {
        let input = b"{\"a\":1}\n\n   \r\n{\"b\":2}\r\n0123456789ABC\n{\"c\":3}";
        let got = lines_of(&input[..], 10).unwrap();
        assert_eq!(
            got,
            vec![
                Ok(b"{\"a\":1}".to_vec()),
                Ok(b"{\"b\":2}".to_vec()),
                Err(13),
                Ok(b"{\"c\":3}".to_vec())
            ]
        );
    }

    #[test]
    fn counts_line_numbers_including_blanks() {
        let mut r = LineReader::new(BufReader::new(&b"a\n\nb\n"[..]), 100);
        assert_eq!(r.next_line().unwrap(), Some((1, Line::Text(b"a"))));
        assert_eq!(r.next_line().unwrap(), Some((3, Line::Text(b"b"))));
        assert_eq!(r.next_line().unwrap(), None);
    }

    #[test]
    fn a_huge_line_is_not_held_whole() {
        let mut big = vec![b'x'; 5 << 20];
        big.push(b'\n');
        big.extend_from_slice(b"ok\n");
        // Tiny BufReader capacity to exercise chunk boundaries.
        let mut r = LineReader::new(BufReader::with_capacity(4096, &big[..]), 1000);
        match r.next_line().unwrap() {
            Some((1, Line::TooLong { len, head })) => {
                assert_eq!(len, 5 << 20);
                assert!(head.len() <= 1024);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            r.buf.capacity() < 64 * 1024,
            "buffer grew to {}",
            r.buf.capacity()
        );
        assert_eq!(r.next_line().unwrap(), Some((2, Line::Text(b"ok"))));
    }

    #[test]
    fn reads_gzip_files() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.ndjson.gz");
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&p).unwrap(),
            flate2::Compression::fast(),
        );
        gz.write_all(b"{\"a\":1}\n{\"b\":2}\n").unwrap();
        gz.finish().unwrap();
        let got = lines_of(Source::File(p).open().unwrap(), 100).unwrap();
        assert_eq!(got.len(), 2);
    }
}
