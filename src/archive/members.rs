//! The members of a compressed backup object, and unpacking them in parallel.
//!
//! `kasm-db backup` compresses the archive in blocks of `compression.block_bytes`, each one
//! gzip member or zstd frame, and records each member's compressed size in the manifest
//! (`compression.members`, [`Members`]): member `i` unpacks to the archive's bytes from
//! `i * block_bytes` (every member but the last is a full block) and starts in the compressed
//! stream where the sizes before it add up to. With that, [`ParallelUnpacker`] cuts the
//! compressed stream at the recorded boundaries and decompresses several members at once on
//! its own threads, writing them in order — the sequential [`super::compress::Unpacker`]
//! remains for manifests written before the sizes were recorded.
//!
//! It must never write a byte that did not come out of a complete, checked member: each member
//! is decompressed whole (gzip's CRC-32 and length, zstd's frame checksum) and must unpack to
//! exactly its block's size; a stream that does not end at the last recorded boundary is an
//! error. It checks no object checksum itself (the caller hashes the stored bytes), does no
//! I/O but the writer it is given, and holds at most [`IN_FLIGHT_PER_WORKER`] members per
//! worker in memory.

use super::compress::Codec;
use crate::error::{Error, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Members held per worker (being compressed-collected, decompressed or waiting to be written).
pub const IN_FLIGHT_PER_WORKER: usize = 3;

/// The compressed size of each member, in order. Written in the manifest as one string of
/// decimal sizes separated by commas (`"83345,84012,..."`): one short line per backup instead
/// of one line per MiB of dump.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Members(pub Vec<u32>);

impl Serialize for Members {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let text: Vec<String> = self.0.iter().map(u32::to_string).collect();
        s.serialize_str(&text.join(","))
    }
}

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Members, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(Members(Vec::new()));
        }
        text.split(',')
            .map(|n| n.parse::<u32>())
            .collect::<std::result::Result<Vec<u32>, _>>()
            .map(Members)
            .map_err(|e| serde::de::Error::custom(format!("compression.members: {e}")))
    }
}

/// Where each member is, checked against the object it describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub block_bytes: usize,
    /// The unpacked archive's size.
    pub dump_bytes: u64,
    pub sizes: Vec<u32>,
}

impl Layout {
    /// The layout when `members` agrees with the object (the number of blocks the dump makes,
    /// and sizes that add up to the compressed stream: the object itself, or with
    /// `sealed_overhead` per member plus `sealed_fixed` when it is encrypted); else why not.
    pub fn check(
        members: &Members,
        block_bytes: usize,
        dump_bytes: u64,
        stream_bytes: u64,
        sealed: Option<(u64, u64)>,
    ) -> std::result::Result<Layout, String> {
        if block_bytes == 0 {
            return Err("a block size of 0".into());
        }
        let blocks = dump_bytes.div_ceil(block_bytes as u64);
        if members.0.len() as u64 != blocks {
            return Err(format!(
                "{} members recorded for {blocks} blocks",
                members.0.len()
            ));
        }
        let compressed: u64 = members.0.iter().map(|&n| u64::from(n)).sum();
        let expected = match sealed {
            None => compressed,
            Some((per_member, fixed)) => compressed + per_member * blocks + fixed,
        };
        if expected != stream_bytes {
            return Err(format!(
                "the recorded members add up to {expected} bytes, the object has {stream_bytes}"
            ));
        }
        if members.0.contains(&0) {
            return Err("a member of 0 bytes".into());
        }
        Ok(Layout {
            block_bytes,
            dump_bytes,
            sizes: members.0.clone(),
        })
    }

    /// Unpacked bytes of member `i`.
    fn unpacked(&self, i: usize) -> usize {
        let start = i as u64 * self.block_bytes as u64;
        (self.dump_bytes - start).min(self.block_bytes as u64) as usize
    }
}

/// Decompress one whole member into exactly `expect` bytes.
fn unpack_member(
    codec: Codec,
    gz: &mut libdeflater::Decompressor,
    zs: &mut zstd::bulk::Decompressor<'static>,
    data: &[u8],
    expect: usize,
) -> std::result::Result<Vec<u8>, String> {
    let mut out = vec![0u8; expect];
    let n = match codec {
        Codec::Gzip => gz
            .gzip_decompress(data, &mut out)
            .map_err(|e| format!("{e:?}"))?,
        Codec::Zstd => zs
            .decompress_to_buffer(data, &mut out)
            .map_err(|e| e.to_string())?,
    };
    if n != expect {
        return Err(format!("it unpacks to {n} bytes, not {expect}"));
    }
    Ok(out)
}

type Unpacked = (usize, std::result::Result<Vec<u8>, String>);

/// A writer that takes the compressed stream and writes the unpacked archive to `W`,
/// decompressing members on `workers` threads. Call [`ParallelUnpacker::finish`] at the end:
/// only it says whether everything was unpacked.
pub struct ParallelUnpacker<W: Write + Send + 'static> {
    layout: Layout,
    /// The member being collected and its bytes so far.
    next: usize,
    cur: Vec<u8>,
    jobs: Option<SyncSender<(usize, Vec<u8>)>>,
    tokens: Receiver<()>,
    workers: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<io::Result<(W, usize)>>>,
}

impl<W: Write + Send + 'static> ParallelUnpacker<W> {
    pub fn new(codec: Codec, layout: Layout, out: W, workers: usize) -> Result<Self> {
        let workers = workers.max(1);
        let in_flight = workers * IN_FLIGHT_PER_WORKER;
        let (jobs_tx, jobs_rx) = sync_channel::<(usize, Vec<u8>)>(workers);
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let (done_tx, done_rx) = sync_channel::<Unpacked>(in_flight);
        let (tokens_tx, tokens) = sync_channel::<()>(in_flight);
        for _ in 0..in_flight {
            tokens_tx.send(()).expect("room for every token");
        }
        let spawn_err =
            |e: io::Error| Error::failed(format!("cannot start an unpacking thread: {e}"));
        let mut handles = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (jobs_rx, done_tx, layout) = (jobs_rx.clone(), done_tx.clone(), layout.clone());
            let h = std::thread::Builder::new()
                .name("kasm-db-unpack".into())
                .spawn(move || {
                    let mut gz = libdeflater::Decompressor::new();
                    let Ok(mut zs) = zstd::bulk::Decompressor::new() else {
                        let _ = done_tx.send((0, Err("no zstd decompressor".into())));
                        return;
                    };
                    loop {
                        let job = jobs_rx.lock().map(|rx| rx.recv());
                        let Ok(Ok((i, data))) = job else { return };
                        let out = unpack_member(codec, &mut gz, &mut zs, &data, layout.unpacked(i));
                        if done_tx.send((i, out)).is_err() {
                            return;
                        }
                    }
                })
                .map_err(spawn_err)?;
            handles.push(h);
        }
        drop(done_tx);
        let writer = std::thread::Builder::new()
            .name("kasm-db-unpack-write".into())
            .spawn(move || write_in_order(out, done_rx, tokens_tx))
            .map_err(spawn_err)?;
        Ok(ParallelUnpacker {
            layout,
            next: 0,
            cur: Vec::new(),
            jobs: Some(jobs_tx),
            tokens,
            workers: handles,
            writer: Some(writer),
        })
    }

    /// Hand the collected member to a worker; `false` when the pipeline has stopped.
    fn dispatch(&mut self) -> bool {
        let data = std::mem::take(&mut self.cur);
        let i = self.next;
        self.next += 1;
        if self.tokens.recv().is_err() {
            return false;
        }
        match &self.jobs {
            Some(jobs) => jobs.send((i, data)).is_ok(),
            None => false,
        }
    }

    /// Stop the threads and give back the writer, or the first error: a damaged member, a
    /// stream that ended inside a member or went past the last one, a failed write.
    pub fn finish(mut self) -> io::Result<W> {
        let complete = self.next == self.layout.sizes.len() && self.cur.is_empty();
        self.jobs = None;
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
        let written = match self.writer.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            _ => Err(io::Error::other("the unpacking writer stopped")),
        };
        let (out, unpacked) = written?;
        if !complete || unpacked != self.layout.sizes.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the compressed stream ended in member {} of {}",
                    self.next + 1,
                    self.layout.sizes.len()
                ),
            ));
        }
        Ok(out)
    }
}

/// The writer thread: members in index order, one token back per member written.
fn write_in_order<W: Write>(
    mut out: W,
    done: Receiver<Unpacked>,
    tokens: SyncSender<()>,
) -> io::Result<(W, usize)> {
    let mut waiting: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
    let mut next = 0usize;
    for (i, r) in done.iter() {
        let data = r.map_err(|why| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("member {} of the object is damaged: {why}", i + 1),
            )
        })?;
        waiting.insert(i, data);
        while let Some(data) = waiting.remove(&next) {
            out.write_all(&data)?;
            next += 1;
            let _ = tokens.send(());
        }
    }
    out.flush()?;
    Ok((out, next))
}

impl<W: Write + Send + 'static> Write for ParallelUnpacker<W> {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let total = buf.len();
        while !buf.is_empty() {
            let Some(&size) = self.layout.sizes.get(self.next) else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the compressed stream goes on past its last recorded member",
                ));
            };
            let want = size as usize - self.cur.len();
            let take = want.min(buf.len());
            if self.cur.capacity() == 0 {
                self.cur.reserve_exact(size as usize);
            }
            self.cur.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if self.cur.len() == size as usize && !self.dispatch() {
                return Err(io::Error::other(
                    "unpacking stopped (a damaged member or a failed write)",
                ));
            }
        }
        Ok(total)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write + Send + 'static> Drop for ParallelUnpacker<W> {
    fn drop(&mut self) {
        self.jobs = None;
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::compress::{Method, compress_block};

    fn sample(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8 ^ (i / 3000) as u8).collect()
    }

    /// The input cut into `block` bytes, each compressed: (stream, member sizes).
    fn pack(input: &[u8], codec: Codec, block: usize) -> (Vec<u8>, Members) {
        let method = Method {
            codec,
            level: codec.default_level(),
        };
        let mut out = Vec::new();
        let mut sizes = Vec::new();
        for b in input.chunks(block) {
            let unit = compress_block(b, method).unwrap();
            sizes.push(unit.len() as u32);
            out.extend_from_slice(&unit);
        }
        (out, Members(sizes))
    }

    fn unpack(
        codec: Codec,
        stream: &[u8],
        members: &Members,
        block: usize,
        dump: u64,
        pieces: usize,
    ) -> io::Result<Vec<u8>> {
        let layout = Layout::check(members, block, dump, stream.len() as u64, None).unwrap();
        let mut u = ParallelUnpacker::new(codec, layout, Vec::new(), 3).unwrap();
        for p in stream.chunks(pieces) {
            u.write_all(p)?;
        }
        u.finish()
    }

    #[test]
    fn round_trips_in_order_whatever_the_write_sizes() {
        let block = 64 << 10;
        let input = sample(block * 9 + 1234);
        for codec in [Codec::Gzip, Codec::Zstd] {
            let (stream, members) = pack(&input, codec, block);
            assert_eq!(members.0.len(), 10);
            for pieces in [1 << 20, 7777, 100] {
                let back =
                    unpack(codec, &stream, &members, block, input.len() as u64, pieces).unwrap();
                assert!(back == input, "{codec:?} {pieces}: differs");
            }
        }
        // An empty dump has no members.
        let back = unpack(Codec::Gzip, &[], &Members::default(), block, 0, 10).unwrap();
        assert!(back.is_empty());
    }

    #[test]
    fn a_damaged_member_a_cut_stream_and_wrong_sizes_are_errors() {
        let block = 64 << 10;
        let input = sample(block * 6);
        for codec in [Codec::Gzip, Codec::Zstd] {
            let (stream, members) = pack(&input, codec, block);
            let n = input.len() as u64;
            // A flipped byte inside member 4: its checksum fails, nothing past member 3 is
            // written.
            let mut bad = stream.clone();
            let at: usize = members.0[..3].iter().map(|&s| s as usize).sum::<usize>() + 40;
            bad[at] ^= 0x5a;
            let e = unpack(codec, &bad, &members, block, n, 4096).unwrap_err();
            assert!(e.to_string().contains("damaged"), "{codec:?}: {e}");
            // Cut short inside the last member.
            let layout = Layout::check(&members, block, n, stream.len() as u64, None).unwrap();
            let mut u = ParallelUnpacker::new(codec, layout, Vec::new(), 2).unwrap();
            u.write_all(&stream[..stream.len() - 10]).unwrap();
            let e = u.finish().unwrap_err();
            assert!(e.to_string().contains("ended in member 6 of 6"), "{e}");
            // Boundaries moved by a byte: the members do not decode.
            let mut shifted = members.clone();
            shifted.0[1] += 1;
            shifted.0[2] -= 1;
            assert!(unpack(codec, &stream, &shifted, block, n, 4096).is_err());
        }
    }

    #[test]
    fn a_layout_that_does_not_fit_the_object_is_refused() {
        let m = Members(vec![10, 20, 5]);
        assert!(Layout::check(&m, 100, 250, 35, None).is_ok());
        assert!(Layout::check(&m, 100, 300, 35, None).is_ok());
        let e = Layout::check(&m, 100, 301, 35, None).unwrap_err();
        assert!(e.contains("3 members recorded for 4 blocks"), "{e}");
        let e = Layout::check(&m, 100, 250, 36, None).unwrap_err();
        assert!(e.contains("add up to 35"), "{e}");
        // Encrypted: 20 bytes of framing per member, 35 fixed (header and the final chunk).
        assert!(Layout::check(&m, 100, 250, 35 + 60 + 35, Some((20, 35))).is_ok());
        assert!(Layout::check(&Members(vec![0]), 100, 50, 0, None).is_err());
    }

    #[test]
    fn members_are_one_string_in_json() {
        let m = Members(vec![83345, 84012, 7]);
        let j = serde_json::to_string(&m).unwrap();
        assert_eq!(j, "\"83345,84012,7\"");
        assert_eq!(serde_json::from_str::<Members>(&j).unwrap(), m);
        assert_eq!(
            serde_json::from_str::<Members>("\"\"").unwrap(),
            Members::default()
        );
        assert!(serde_json::from_str::<Members>("\"1,x\"").is_err());
    }
}
