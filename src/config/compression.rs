//! How backup objects are compressed, as a configuration value (`backup.compression`,
//! `backup.compression_level`, and the manifest's `compression.kind`): the codecs, their
//! levels and names. Pure; the compressing itself is [`crate::archive::compress`]'s.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The default gzip level (libdeflate's scale), chosen from bench/backup.sh (BENCHMARKS.md).
pub const GZIP_DEFAULT_LEVEL: u32 = 5;
/// The default zstd level (zstd's own default).
pub const ZSTD_DEFAULT_LEVEL: u32 = 3;

/// How a backup object is compressed: `backup.compression`, and the manifest's
/// `compression.kind` (manifests from before zstd say `gzip`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    #[default]
    Gzip,
    Zstd,
}

impl Codec {
    /// The name in the config and the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
        }
    }

    /// The codec a manifest's `compression.kind` names.
    pub fn from_kind(kind: &str) -> Result<Codec> {
        match kind {
            "gzip" => Ok(Codec::Gzip),
            "zstd" => Ok(Codec::Zstd),
            other => Err(Error::failed(format!(
                "the backup is compressed with {other:?}, which this kasm-db cannot read \
                 (it reads gzip and zstd)"
            ))),
        }
    }

    pub fn default_level(self) -> u32 {
        match self {
            Codec::Gzip => GZIP_DEFAULT_LEVEL,
            Codec::Zstd => ZSTD_DEFAULT_LEVEL,
        }
    }

    /// The levels `backup.compression_level` may take: libdeflate's 0–12 (0 stores), zstd's
    /// 1–19 (20–22 need far more memory to read back).
    pub fn levels(self) -> std::ops::RangeInclusive<u32> {
        match self {
            Codec::Gzip => 0..=12,
            Codec::Zstd => 1..=19,
        }
    }

    /// The object name's extension (`dump.gz`, `dump.zst`).
    pub fn extension(self) -> &'static str {
        match self {
            Codec::Gzip => "gz",
            Codec::Zstd => "zst",
        }
    }

    /// The shell command that decompresses the object to stdout (file name or stdin after it).
    pub fn unpack_command(self) -> &'static str {
        match self {
            Codec::Gzip => "gunzip -c",
            Codec::Zstd => "zstd -dc",
        }
    }
}

/// A codec and its level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Method {
    pub codec: Codec,
    pub level: u32,
}
