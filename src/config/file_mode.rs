//! The mode of the files that hold data (`backup.file_mode`; 0600 for everything else) as a
//! configuration value: parsing, display, and the folder bits that go with it. Pure; creating
//! files with it is [`crate::private`]'s.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The permission bits of a data file (e.g. 0o600); folders get the matching x bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMode(u32);

impl FileMode {
    /// Owner read and write only: the default for everything that holds data.
    pub const PRIVATE: FileMode = FileMode(0o600);

    /// Parse an octal mode such as `"0640"`, `"640"` or `"0o640"`. The owner must be able to
    /// read and write (kasm-db rewrites and deletes its files); execute, setuid, setgid and
    /// sticky bits are refused (data files are not programs; folders get x from r).
    pub fn parse(text: &str) -> Result<FileMode, String> {
        let t = text.trim();
        let digits = t.strip_prefix("0o").unwrap_or(t);
        let bad = || format!("{text:?} is not an octal file mode like \"0600\" or \"0640\"");
        if digits.is_empty()
            || digits.len() > 4
            || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
        {
            return Err(bad());
        }
        let bits = u32::from_str_radix(digits, 8).map_err(|_| bad())?;
        if bits & !0o666 != 0 {
            return Err(format!(
                "{text:?} has execute or special bits; use read/write bits only (e.g. \"0640\"): \
                 folders get x where the file mode has r"
            ));
        }
        if bits & 0o600 != 0o600 {
            return Err(format!(
                "{text:?} does not let the owner read and write; it must include 0600"
            ));
        }
        Ok(FileMode(bits))
    }

    /// The bits for a file.
    pub fn file(self) -> u32 {
        self.0
    }

    /// The bits for a folder: the file's, plus x wherever the file has r (0640 -> 0750).
    pub fn dir(self) -> u32 {
        self.0 | ((self.0 & 0o444) >> 2)
    }
}

impl Default for FileMode {
    fn default() -> Self {
        FileMode::PRIVATE
    }
}

impl std::fmt::Display for FileMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl Serialize for FileMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for FileMode {
    /// A string (`"0640"`) or, as an environment variable arrives, a number read as octal
    /// (`KASM_DB_BACKUP_FILE_MODE=0640` is coerced to the integer 640).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = super::lenient::string(d)?;
        FileMode::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_as_octal_and_folders_get_x_where_files_have_r() {
        for (text, file, dir) in [
            ("0600", 0o600, 0o700),
            ("600", 0o600, 0o700),
            ("0o640", 0o640, 0o750),
            ("0660", 0o660, 0o770),
            ("0644", 0o644, 0o755),
        ] {
            let m = FileMode::parse(text).unwrap();
            assert_eq!((m.file(), m.dir()), (file, dir), "{text}");
        }
        assert_eq!(FileMode::parse("640").unwrap().to_string(), "0640");
        for bad in [
            "",
            "0x1a4",
            "0800",
            "rw-r-----",
            "0755",
            "4600",
            "0400",
            "0060",
            "07777",
        ] {
            assert!(FileMode::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
