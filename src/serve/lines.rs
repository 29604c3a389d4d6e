//! Cutting what was read from a followed file into complete lines (pure).
//!
//! A line counts only once its newline has been written, except the last bytes of a file that
//! was rotated away (its writer is done). A line longer than the limit is reported once and
//! skipped up to its newline, however many reads that takes. Never allocates a copy of a line
//! and never decides anything about its content.

use memchr::memchr;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cut<'a> {
    /// Complete lines, without their newline (blank lines included; the parser skips them).
    pub lines: Vec<&'a [u8]>,
    /// Lengths (so far) of lines over the limit, skipped.
    pub too_long: Vec<usize>,
    /// Bytes of the buffer used up (the offset advances by this much).
    pub consumed: usize,
    /// Still inside an over-long line at the end of the buffer.
    pub skipping: bool,
}

/// Cut `buf` (read at the current offset) into at most `max_lines` lines.
/// `skipping`: the previous cut ended inside an over-long line. `last`: `buf` runs to the end of
/// a file that will not grow (rotated), so trailing bytes without a newline are a line.
pub fn cut(buf: &[u8], skipping: bool, max_line: usize, max_lines: usize, last: bool) -> Cut<'_> {
    let mut out = Cut {
        skipping,
        ..Cut::default()
    };
    let mut pos = 0;
    while out.lines.len() < max_lines && pos < buf.len() {
        let rest = &buf[pos..];
        let (line, next) = match memchr(b'\n', rest) {
            Some(i) => (&rest[..i], pos + i + 1),
            None if last => (rest, buf.len()),
            None => {
                if out.skipping {
                    pos = buf.len();
                } else if rest.len() > max_line {
                    out.too_long.push(rest.len());
                    out.skipping = true;
                    pos = buf.len();
                }
                break;
            }
        };
        if out.skipping {
            out.skipping = false;
        } else if line.len() > max_line {
            out.too_long.push(line.len());
        } else {
            out.lines.push(line);
        }
        pos = next;
    }
    out.consumed = pos;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_lines_only() {
        let c = cut(b"a\nbb\n\nccc", false, 100, 100, false);
        assert_eq!(c.lines, vec![&b"a"[..], b"bb", b""]);
        assert_eq!(c.consumed, 6);
        assert!(!c.skipping);
        let c = cut(b"a\nbb\n\nccc", false, 100, 100, true);
        assert_eq!(c.lines.last().unwrap(), &b"ccc");
        assert_eq!(c.consumed, 9);
    }

    #[test]
    fn stops_at_max_lines() {
        let c = cut(b"1\n2\n3\n", false, 100, 2, false);
        assert_eq!(c.lines.len(), 2);
        assert_eq!(c.consumed, 4);
    }

    #[test]
    fn long_lines_are_skipped_across_reads() {
        let c = cut(b"ok\ntoo long line\nfine\n", false, 5, 100, false);
        assert_eq!(c.lines, vec![&b"ok"[..], b"fine"]);
        assert_eq!(c.too_long, vec![13]);
        // An over-long line without its newline yet: reported, then skipped in the next read.
        let c = cut(b"ok\nxxxxxxxx", false, 5, 100, false);
        assert_eq!(
            (c.lines.len(), c.too_long.clone(), c.consumed, c.skipping),
            (1, vec![8], 11, true)
        );
        let c = cut(b"xxxx", true, 5, 100, false);
        assert_eq!((c.consumed, c.skipping), (4, true));
        let c = cut(b"xx\nnext\n", true, 5, 100, false);
        assert_eq!(
            (c.lines, c.too_long.len(), c.skipping),
            (vec![&b"next"[..]], 0, false)
        );
        // A short partial line waits for its newline.
        let c = cut(b"abc", false, 5, 100, false);
        assert_eq!(c.consumed, 0);
    }
}
