//! Sizes in bytes as operators write them in the configuration (`retention.max_bytes`):
//! `"40GB"`, `"500MB"`, `"1.5TB"`, `"40GiB"`, or a plain number of bytes. Pure parsing, no I/O.
//!
//! Units follow the SI and IEC standards, as disks are sold and as the Kasm sizing guide's
//! "80-150 GB" of disk are counted: `kB`/`KB`, `MB`, `GB`, `TB` are powers of 1000 (1 GB =
//! 10^9 bytes), `KiB`, `MiB`, `GiB`, `TiB` powers of 1024 (1 GiB = 2^30 bytes). Units are
//! case-insensitive and the `B` is optional. A size never silently means something else: text
//! that is not a size, zero, and a negative number are refused with the accepted forms.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A positive number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(u64);

const FORMS: &str = "write e.g. \"40GB\" (GB = 10^9 bytes), \"40GiB\" (GiB = 2^30 bytes), \
                     \"500MB\", \"1.5TB\" or a number of bytes";

impl ByteSize {
    pub const fn from_bytes(n: u64) -> ByteSize {
        ByteSize(n)
    }

    pub fn bytes(self) -> u64 {
        self.0
    }

    /// Parse `"40GB"`, `"40 GiB"`, `"1.5TB"`, `"500mb"`, `"1048576"`.
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err(format!("an empty size; {FORMS}"));
        }
        if t.starts_with('-') {
            return Err(format!("{text:?} is negative; {FORMS}"));
        }
        match parse_size::Config::new().with_decimal().parse_size(t) {
            Ok(0) => Err(format!(
                "{text:?} is zero; a size cap must be positive (leave the key out for no cap)"
            )),
            Ok(n) => Ok(ByteSize(n)),
            Err(parse_size::Error::PosOverflow) => Err(format!("{text:?} is too large")),
            Err(_) => Err(format!("{text:?} is not a size; {FORMS}")),
        }
    }
}

impl fmt::Display for ByteSize {
    /// The shortest exact form: `40GB`, `40GiB`, `1500MB`, or plain bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 8] = [
            (1 << 40, "TiB"),
            (1_000_000_000_000, "TB"),
            (1 << 30, "GiB"),
            (1_000_000_000, "GB"),
            (1 << 20, "MiB"),
            (1_000_000, "MB"),
            (1 << 10, "KiB"),
            (1_000, "kB"),
        ];
        for (unit, name) in UNITS {
            if self.0 >= unit && self.0 % unit == 0 {
                return write!(f, "{}{name}", self.0 / unit);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    /// A string (`"40GB"`) or an integer number of bytes (as TOML or an environment variable
    /// gives `40000000000`).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = super::lenient::string(d)?;
        ByteSize::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_and_binary_units_and_plain_bytes() {
        for (text, bytes) in [
            ("40GB", 40_000_000_000),
            ("40 GB", 40_000_000_000),
            ("40gb", 40_000_000_000),
            ("40G", 40_000_000_000),
            ("40GiB", 40 << 30),
            ("40 gib", 40 << 30),
            ("500MB", 500_000_000),
            ("500MiB", 500 << 20),
            ("1.5TB", 1_500_000_000_000),
            ("1.5TiB", 3 << 39),
            ("300kB", 300_000),
            ("300KB", 300_000),
            ("300KiB", 300 << 10),
            ("1048576", 1_048_576),
            (" 7 ", 7),
            ("1_000_000", 1_000_000),
        ] {
            assert_eq!(ByteSize::parse(text), Ok(ByteSize(bytes)), "{text}");
        }
    }

    #[test]
    fn garbage_zero_and_negative_are_refused_with_the_forms() {
        for bad in [
            "",
            "forty gigs",
            "40 GX",
            "40GBB",
            "GB",
            "-5GB",
            "0",
            "0GB",
            "99999999999EB",
        ] {
            let e = ByteSize::parse(bad).unwrap_err();
            assert!(
                e.contains(&format!("{:?}", bad.trim())) || bad.is_empty(),
                "{bad}: {e}"
            );
        }
        assert!(ByteSize::parse("forty gigs").unwrap_err().contains("10^9"));
        assert!(ByteSize::parse("0").unwrap_err().contains("positive"));
    }

    #[test]
    fn display_is_exact_and_parses_back() {
        for (bytes, text) in [
            (40_000_000_000, "40GB"),
            (40 << 30, "40GiB"),
            (1_500_000_000_000, "1500GB"),
            (300_000, "300kB"),
            (1_234_567, "1234567B"),
        ] {
            let s = ByteSize(bytes);
            assert_eq!(s.to_string(), text);
            assert_eq!(ByteSize::parse(text), Ok(s));
        }
    }
}
