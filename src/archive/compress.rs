//! Parallel-block gzip with a running SHA-256: the input stream is cut into fixed-size blocks,
//! each block becomes one complete gzip member (compressed on the blocking pool, a few at a
//! time so both cores work), and the members are emitted in order. A multi-member gzip stream is
//! standard (RFC 1952): plain `gunzip` reads it as one file.
//!
//! With a [`Sealer`], each member is also encrypted as one chunk (on the same blocking task),
//! after the object header, and a final empty chunk marks the end.
//!
//! Memory is bounded: at most [`IN_FLIGHT`] blocks are held. Never buffers the whole stream,
//! never writes anywhere but the channel it is given, and never reorders output.

use super::crypt::Sealer;
use super::storage::Piece;
use crate::error::{Error, Result};
use flate2::Compression;
use flate2::write::GzEncoder;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use sha2::{Digest as _, Sha256};
use std::io::Write;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

/// The error when the receiving side (storage) has gone; the storage's own error says why.
pub const STORAGE_STOPPED: &str = "the storage upload stopped early";

/// Input bytes per gzip member.
pub const BLOCK_BYTES: usize = 1 << 20;
/// Blocks compressed concurrently (2 cores plus one being read).
pub const IN_FLIGHT: usize = 3;

/// Compress one block as a complete gzip member.
pub fn gzip_block(data: &[u8], level: u32) -> Vec<u8> {
    let mut enc = GzEncoder::new(
        Vec::with_capacity(data.len() / 3 + 64),
        Compression::new(level.min(9)),
    );
    // Writing to a Vec cannot fail.
    enc.write_all(data).expect("write to Vec");
    enc.finish().expect("finish to Vec")
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

/// What went through [`compress_stream`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Uncompressed bytes read.
    pub input_bytes: u64,
    /// Bytes sent on (the object's size).
    pub output_bytes: u64,
    /// SHA-256 of the bytes sent on.
    pub sha256: String,
}

/// Read `input` to its end, compress it in parallel blocks, send the gzip members to `tx` in
/// order (encrypted with `sealer` if given), and call `progress` with the uncompressed byte
/// count after each block. Does not send [`Piece::End`]: the caller decides whether the stream
/// is complete.
pub async fn compress_stream<R: AsyncRead + Unpin>(
    mut input: R,
    level: u32,
    sealer: Option<Arc<Sealer>>,
    tx: &mpsc::Sender<Piece>,
    mut progress: impl FnMut(u64),
) -> Result<Summary> {
    let mut inflight = FuturesOrdered::new();
    let mut digest = Digest::default();
    let mut input_bytes = 0u64;
    let mut eof = false;
    let mut chunks: u32 = 0;
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
            let mut block = Vec::with_capacity(BLOCK_BYTES);
            (&mut input)
                .take(BLOCK_BYTES as u64)
                .read_to_end(&mut block)
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
                let member = gzip_block(&block, level);
                match sealer {
                    Some(s) => s.seal(counter, false, &member),
                    None => member,
                }
            }));
        }
        let Some(done) = inflight.next().await else {
            break;
        };
        let member = done.map_err(|e| Error::failed(format!("compression task: {e}")))?;
        send(member, &mut digest)
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[tokio::test]
    async fn multi_member_output_decompresses_to_the_input() {
        // Three and a half blocks of semi-compressible data.
        let input: Vec<u8> = (0..(BLOCK_BYTES * 7 / 2))
            .map(|i| (i % 251) as u8 ^ (i / 4096) as u8)
            .collect();
        let (tx, mut rx) = mpsc::channel(64);
        let mut seen = Vec::new();
        let s = compress_stream(&input[..], 6, None, &tx, |n| seen.push(n))
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
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == input, "round trip differs");
        assert!(out.len() < input.len(), "not compressed");
    }

    #[tokio::test]
    async fn encrypted_output_decrypts_to_a_gzip_stream_of_the_input() {
        let key = crate::archive::crypt::Key::from_material(&[9u8; 32]).unwrap();
        let sealer = Arc::new(Sealer::new(&key).unwrap());
        let input: Vec<u8> = (0..(BLOCK_BYTES * 5 / 2)).map(|i| (i % 97) as u8).collect();
        let (tx, mut rx) = mpsc::channel(64);
        let s = compress_stream(&input[..], 6, Some(sealer), &tx, |_| {})
            .await
            .unwrap();
        drop(tx);
        let mut out = Vec::new();
        while let Some(Piece::Data(b)) = rx.recv().await {
            out.extend_from_slice(&b);
        }
        assert_eq!(s.output_bytes, out.len() as u64);
        assert_eq!(s.sha256, hex::encode(Sha256::digest(&out)));
        let mut gz = Vec::new();
        crate::archive::crypt::decrypt(&key, &out[..], &mut gz).unwrap();
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == input, "round trip differs");
    }

    #[tokio::test]
    async fn empty_input_sends_nothing() {
        let (tx, mut rx) = mpsc::channel(4);
        let s = compress_stream(&[][..], 6, None, &tx, |_| {})
            .await
            .unwrap();
        drop(tx);
        assert!(rx.recv().await.is_none());
        assert_eq!(s.output_bytes, 0);
        assert_eq!(
            s.sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
