//! Parallel-block compression with a running SHA-256: the input stream is cut into fixed-size
//! blocks, each block is compressed in one call into one self-contained unit (compressed on
//! the blocking pool, a few at a time so both cores work), and the units are emitted in order.
//!
//! Two codecs ([`Codec`], `backup.compression`): gzip (the default; libdeflate, whose model is
//! exactly "one whole buffer in one call", each block one gzip member) and zstd (each block one
//! zstd frame, with its content checksum). Both concatenations are standard: a multi-member
//! gzip stream is one file to plain `gunzip` (RFC 1952), concatenated zstd frames are one file
//! to `zstd -dc`. [`Unpacker`] is the reading side, for restore.
//!
//! With a [`Sealer`], each unit is also encrypted as one chunk (on the same blocking task),
//! after the object header, and a final empty chunk marks the end.
//!
//! Memory is bounded: at most [`IN_FLIGHT`] blocks are held. Never buffers the whole stream,
//! never writes anywhere but the channel it is given, and never reorders output.

use super::crypt::Sealer;
use super::storage::Piece;
pub use crate::config::compression::{Codec, GZIP_DEFAULT_LEVEL, Method, ZSTD_DEFAULT_LEVEL};
use crate::error::{Error, Result};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use sha2::{Digest as _, Sha256};
use std::cell::RefCell;
use std::io::Write;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

/// The error when the receiving side (storage) has gone; the storage's own error says why.
pub const STORAGE_STOPPED: &str = "the storage upload stopped early";

/// Input bytes per gzip member / zstd frame.
pub const BLOCK_BYTES: usize = 1 << 20;
/// Blocks compressed concurrently (2 cores plus one being read).
pub const IN_FLIGHT: usize = 3;
thread_local! {
    /// One compressor per blocking-pool thread, kept for the next block at the same level.
    static DEFLATE: RefCell<Option<(u32, libdeflater::Compressor)>> = const { RefCell::new(None) };
    static ZSTD: RefCell<Option<(u32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
}

/// Compress one block into one self-contained unit: a gzip member or a zstd frame.
pub fn compress_block(data: &[u8], method: Method) -> Result<Vec<u8>> {
    match method.codec {
        Codec::Gzip => DEFLATE.with_borrow_mut(|slot| {
            let level = method.level.min(12);
            if slot.as_ref().is_none_or(|(l, _)| *l != level) {
                let lvl = libdeflater::CompressionLvl::new(level as i32)
                    .map_err(|_| Error::usage(format!("gzip level {level} is not 0-12")))?;
                *slot = Some((level, libdeflater::Compressor::new(lvl)));
            }
            let (_, c) = slot.as_mut().expect("set above");
            let mut out = vec![0u8; c.gzip_compress_bound(data.len())];
            let n = c
                .gzip_compress(data, &mut out)
                .map_err(|e| Error::failed(format!("gzip compression: {e:?}")))?;
            out.truncate(n);
            Ok(out)
        }),
        Codec::Zstd => ZSTD.with_borrow_mut(|slot| {
            let level = method.level;
            if slot.as_ref().is_none_or(|(l, _)| *l != level) {
                let mut c = zstd::bulk::Compressor::new(level as i32)
                    .map_err(|e| Error::failed(format!("zstd level {level}: {e}")))?;
                c.include_checksum(true)
                    .map_err(|e| Error::failed(format!("zstd checksum flag: {e}")))?;
                *slot = Some((level, c));
            }
            let (_, c) = slot.as_mut().expect("set above");
            c.compress(data)
                .map_err(|e| Error::failed(format!("zstd compression: {e}")))
        }),
    }
}

/// The reading side: a writer that takes the compressed stream (all members or frames) and
/// writes the decompressed bytes to `W`.
pub enum Unpacker<W: Write> {
    Gzip(Box<flate2::write::MultiGzDecoder<W>>),
    Zstd(zstd::stream::write::Decoder<'static, W>),
}

impl<W: Write> Unpacker<W> {
    pub fn new(codec: Codec, out: W) -> Result<Unpacker<W>> {
        Ok(match codec {
            Codec::Gzip => Unpacker::Gzip(Box::new(flate2::write::MultiGzDecoder::new(out))),
            Codec::Zstd => Unpacker::Zstd(
                zstd::stream::write::Decoder::new(out)
                    .map_err(|e| Error::failed(format!("zstd decoder: {e}")))?,
            ),
        })
    }

    /// Flush what is decoded and give the writer back; fails on a stream cut off mid-unit.
    pub fn finish(self) -> std::io::Result<W> {
        match self {
            Unpacker::Gzip(d) => d.finish(),
            Unpacker::Zstd(mut d) => {
                d.flush()?;
                Ok(d.into_inner())
            }
        }
    }
}

impl<W: Write> Write for Unpacker<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Unpacker::Gzip(d) => d.write(buf),
            Unpacker::Zstd(d) => d.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Unpacker::Gzip(d) => d.flush(),
            Unpacker::Zstd(d) => d.flush(),
        }
    }
}

/// SHA-256 and length of a byte stream, fed piece by piece.
#[derive(Default)]
pub struct Digest {
    hasher: Sha256,
    bytes: u64,
}

impl Digest {
    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.bytes += data.len() as u64;
    }
    /// (lowercase hex sha256, byte count).
    pub fn finish(self) -> (String, u64) {
        (hex::encode(self.hasher.finalize()), self.bytes)
    }
}

/// Read up to [`BLOCK_BYTES`] from `input` into a block allocated once at its full size (fewer
/// only at the end). `read_to_end` would grow a full block to twice its size, copying it, when it
/// looks for more: at WAL's rate that was a fresh megabyte, faulted in, per block.
async fn fill_block<R: AsyncRead + Unpin>(input: &mut R) -> std::io::Result<Vec<u8>> {
    let mut block = Vec::with_capacity(BLOCK_BYTES);
    while block.len() < BLOCK_BYTES {
        let room = (BLOCK_BYTES - block.len()) as u64;
        if (&mut *input).take(room).read_buf(&mut block).await? == 0 {
            break;
        }
    }
    Ok(block)
}

/// What went through [`compress_stream`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Uncompressed bytes read.
    pub input_bytes: u64,
    /// Bytes sent on (the object's size).
    pub output_bytes: u64,
    /// SHA-256 of the bytes sent on.
    pub sha256: String,
    /// The compressed size of each gzip member / zstd frame, in order (before any encryption):
    /// member `i` holds the input bytes from `i * BLOCK_BYTES`, so these sizes are the members'
    /// offsets in both streams (the manifest's `compression.members`).
    pub member_bytes: Vec<u32>,
}

/// Read `input` to its end, compress it in parallel blocks, send the members (frames) to `tx` in
/// order (encrypted with `sealer` if given), and call `progress` with the uncompressed byte
/// count after each block. Does not send [`Piece::End`]: the caller decides whether the stream
/// is complete.
pub async fn compress_stream<R: AsyncRead + Unpin>(
    mut input: R,
    method: Method,
    sealer: Option<Arc<Sealer>>,
    tx: &mpsc::Sender<Piece>,
    mut progress: impl FnMut(u64),
) -> Result<Summary> {
    let mut inflight = FuturesOrdered::new();
    let mut digest = Digest::default();
    let mut input_bytes = 0u64;
    let mut eof = false;
    let mut chunks: u32 = 0;
    let mut member_bytes = Vec::new();
    let send = |bytes: Vec<u8>, digest: &mut Digest| {
        digest.update(&bytes);
        tx.send(Piece::Data(bytes.into()))
    };
    if let Some(s) = &sealer {
        send(s.header().to_vec(), &mut digest)
            .await
            .map_err(|_| Error::failed(STORAGE_STOPPED))?;
    }
    loop {
        while !eof && inflight.len() < IN_FLIGHT {
            let block = fill_block(&mut input)
                .await
                .map_err(|e| Error::failed(format!("reading the dump: {e}")))?;
            if block.is_empty() {
                eof = true;
                break;
            }
            input_bytes += block.len() as u64;
            let sealer = sealer.clone();
            let counter = chunks;
            chunks = chunks
                .checked_add(1)
                .ok_or_else(|| Error::failed("too many chunks to encrypt"))?;
            inflight.push_back(tokio::task::spawn_blocking(move || {
                let unit = compress_block(&block, method)?;
                let len = u32::try_from(unit.len())
                    .map_err(|_| Error::failed("a compressed block over 4 GiB"))?;
                Ok::<_, Error>((
                    len,
                    match sealer {
                        Some(s) => s.seal(counter, false, &unit),
                        None => unit,
                    },
                ))
            }));
        }
        let Some(done) = inflight.next().await else {
            break;
        };
        let (len, unit) = done.map_err(|e| Error::failed(format!("compression task: {e}")))??;
        member_bytes.push(len);
        send(unit, &mut digest)
            .await
            .map_err(|_| Error::failed(STORAGE_STOPPED))?;
        progress(input_bytes);
    }
    if let Some(s) = &sealer {
        send(s.seal(chunks, true, b""), &mut digest)
            .await
            .map_err(|_| Error::failed(STORAGE_STOPPED))?;
    }
    let (sha256, output_bytes) = digest.finish();
    Ok(Summary {
        input_bytes,
        output_bytes,
        sha256,
        member_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GZIP: Method = Method {
        codec: Codec::Gzip,
        level: 6,
    };
    const ZSTD: Method = Method {
        codec: Codec::Zstd,
        level: 3,
    };

    async fn run(input: &[u8], method: Method, sealer: Option<Arc<Sealer>>) -> (Summary, Vec<u8>) {
        let (tx, mut rx) = mpsc::channel(64);
        let s = compress_stream(input, method, sealer, &tx, |_| {})
            .await
            .unwrap();
        drop(tx);
        let mut out = Vec::new();
        while let Some(Piece::Data(b)) = rx.recv().await {
            out.extend_from_slice(&b);
        }
        (s, out)
    }

    fn unpack(codec: Codec, data: &[u8]) -> Vec<u8> {
        let mut u = Unpacker::new(codec, Vec::new()).unwrap();
        u.write_all(data).unwrap();
        u.finish().unwrap()
    }

    /// Three and a half blocks of semi-compressible data.
    fn sample() -> Vec<u8> {
        (0..(BLOCK_BYTES * 7 / 2))
            .map(|i| (i % 251) as u8 ^ (i / 4096) as u8)
            .collect()
    }

    #[tokio::test]
    async fn multi_member_gzip_reads_back_with_an_independent_decoder() {
        let input = sample();
        let (tx, mut rx) = mpsc::channel(64);
        let mut seen = Vec::new();
        let s = compress_stream(&input[..], GZIP, None, &tx, |n| seen.push(n))
            .await
            .unwrap();
        drop(tx);
        let mut out = Vec::new();
        while let Some(Piece::Data(b)) = rx.recv().await {
            out.extend_from_slice(&b);
        }
        assert_eq!(seen.len(), 4);
        assert_eq!(s.input_bytes, input.len() as u64);
        assert_eq!(s.output_bytes, out.len() as u64);
        assert_eq!(s.sha256, hex::encode(Sha256::digest(&out)));
        // Four members, each a complete gzip stream (magic 1f 8b at the start).
        assert_eq!(&out[..2], &[0x1f, 0x8b]);
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&out[..]), &mut back)
            .unwrap();
        assert!(back == input, "round trip differs");
        assert!(out.len() < input.len() / 2, "not compressed");
        assert!(unpack(Codec::Gzip, &out) == input, "unpacker differs");
    }

    #[tokio::test]
    async fn zstd_frames_read_back_as_one_stream() {
        let input = sample();
        let (s, out) = run(&input, ZSTD, None).await;
        assert_eq!(s.output_bytes, out.len() as u64);
        // A zstd frame's magic number, little-endian.
        assert_eq!(&out[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
        let back = zstd::stream::decode_all(&out[..]).unwrap();
        assert!(back == input, "round trip differs");
        assert!(out.len() < input.len() / 2, "not compressed");
        assert!(unpack(Codec::Zstd, &out) == input, "unpacker differs");
    }

    #[tokio::test]
    async fn a_damaged_zstd_frame_is_an_error_not_silent_garbage() {
        let input = sample();
        let (_, mut out) = run(&input, ZSTD, None).await;
        let mid = out.len() / 2;
        out[mid] ^= 0x55;
        let mut u = Unpacker::new(Codec::Zstd, Vec::new()).unwrap();
        let r = u.write_all(&out).and_then(|_| u.finish().map(|_| ()));
        assert!(r.is_err(), "a flipped byte went unnoticed");
    }

    #[tokio::test]
    async fn encrypted_output_decrypts_to_the_compressed_stream() {
        let key = crate::archive::crypt::Key::from_material(&[9u8; 32]).unwrap();
        let input: Vec<u8> = (0..(BLOCK_BYTES * 5 / 2)).map(|i| (i % 97) as u8).collect();
        for method in [GZIP, ZSTD] {
            let sealer = Arc::new(Sealer::new(&key).unwrap());
            let (s, out) = run(&input, method, Some(sealer)).await;
            assert_eq!(s.output_bytes, out.len() as u64);
            assert_eq!(s.sha256, hex::encode(Sha256::digest(&out)));
            let mut plain = Unpacker::new(method.codec, Vec::new()).unwrap();
            crate::archive::crypt::decrypt(&key, &out[..], &mut plain).unwrap();
            assert!(
                plain.finish().unwrap() == input,
                "{method:?}: round trip differs"
            );
        }
    }

    #[tokio::test]
    async fn empty_input_sends_nothing() {
        for method in [GZIP, ZSTD] {
            let (s, out) = run(&[], method, None).await;
            assert!(out.is_empty());
            assert_eq!(s.output_bytes, 0);
            assert_eq!(
                s.sha256,
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            );
        }
    }

    #[test]
    fn every_allowed_level_compresses_and_names_round_trip() {
        let data = sample();
        for codec in [Codec::Gzip, Codec::Zstd] {
            assert_eq!(Codec::from_kind(codec.name()).unwrap(), codec);
            assert!(codec.levels().contains(&codec.default_level()));
            for level in [*codec.levels().start(), codec.default_level()] {
                let unit = compress_block(&data[..BLOCK_BYTES], Method { codec, level }).unwrap();
                assert!(
                    unpack(codec, &unit) == data[..BLOCK_BYTES],
                    "{codec:?} {level}"
                );
            }
        }
        let e = Codec::from_kind("lz4").unwrap_err().to_string();
        assert!(e.contains("lz4"), "{e}");
    }
}
