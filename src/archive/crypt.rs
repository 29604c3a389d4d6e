//! Optional client-side encryption of backup objects: streaming AES-256-GCM in chunks (the
//! STREAM construction: a chunk counter and a "last chunk" flag in every nonce, the header as
//! associated data), so that chunks cannot be reordered, dropped, truncated or moved between
//! objects without decryption failing.
//!
//! Object format (`aes-256-gcm-hkdf-stream`): `KASMDBE2` + a 16-byte random salt + a 7-byte
//! random nonce prefix, then chunks `[u32 BE length][ciphertext + 16-byte tag]`, ending with an
//! empty chunk flagged last. Each object is sealed with its own key, HKDF-SHA256 of the
//! configured key and the object's salt: a nonce is then only ever used once per key, however
//! many objects are stored. (The first format, `KASMDBE1` = `aes-256-gcm-stream`, sealed every
//! object with the configured key itself and told objects apart by the 7-byte prefix alone: two
//! objects among the millions a WAL archive writes over the years could share one, and GCM
//! under a repeated nonce leaks the XOR of the two plaintexts. It is still opened, never
//! written.) The key (32 bytes, from `backup.encryption_key_file`, raw or hex) never appears in
//! messages, manifests or logs; only a key id (a hash prefix) is recorded, so that a wrong key
//! is reported as such.
//!
//! One scheme for everything kasm-db stores encrypted: logical dumps, physical base backups and
//! archived WAL segments (each object its own random nonce prefix). [`key_for`] checks the key
//! against an object's recorded key id first (a missing or wrong key is a typed
//! [`KeyProblem`]); the opening side is [`Unsealer`] (pushed pieces) and [`decrypt`] (reader
//! to writer, built on it), one implementation.

use crate::error::{Error, Result};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::Path;

pub const MAGIC: &[u8; 8] = b"KASMDBE2";
/// Random bytes HKDF derives each object's key from.
const SALT_BYTES: usize = 16;
const PREFIX_BYTES: usize = 7;
pub const HEADER_BYTES: usize = 8 + SALT_BYTES + PREFIX_BYTES;
/// The scheme as manifests and WAL records name it.
pub const KIND: &str = "aes-256-gcm-hkdf-stream";
/// The first format: opened, never written (see the module doc).
const MAGIC_V1: &[u8; 8] = b"KASMDBE1";
const HEADER_BYTES_V1: usize = 8 + PREFIX_BYTES;
const KIND_V1: &str = "aes-256-gcm-stream";
/// What HKDF's `info` says: the purpose the derived key is for.
const OBJECT_KEY_INFO: &[u8] = b"kasm-db object key v2";

/// The header's size in an object sealed by the scheme `kind` (a manifest's or record's
/// `encryption.kind`), when it is one this build knows.
pub fn header_bytes(kind: &str) -> Option<usize> {
    match kind {
        KIND => Some(HEADER_BYTES),
        KIND_V1 => Some(HEADER_BYTES_V1),
        _ => None,
    }
}
const TAG_BYTES: usize = 16;
/// What sealing adds to each chunk: its length and its tag.
pub const CHUNK_OVERHEAD: usize = 4 + TAG_BYTES;

/// A 32-byte key. Debug prints only its id.
#[derive(Clone)]
pub struct Key {
    bytes: [u8; 32],
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key(id {})", self.id())
    }
}

impl Key {
    /// Parse key material: 32 raw bytes, or 64 hex digits (surrounding whitespace ignored).
    pub fn from_material(data: &[u8]) -> Result<Key> {
        let text = std::str::from_utf8(data).map(str::trim).unwrap_or("");
        let bytes: Vec<u8> = if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|_| Error::usage("invalid hex key"))?
        } else if data.len() == 32 {
            data.to_vec()
        } else {
            return Err(Error::usage(
                "the encryption key must be 32 raw bytes or 64 hex digits (e.g. `openssl rand -hex 32`)",
            ));
        };
        let mut k = [0u8; 32];
        k.copy_from_slice(&bytes);
        Ok(Key { bytes: k })
    }

    /// Read the key file named by `backup.encryption_key_file`.
    pub fn from_file(path: &Path) -> Result<Key> {
        let data = std::fs::read(path).map_err(|e| {
            Error::usage(format!(
                "cannot read encryption key file {}: {e}",
                path.display()
            ))
        })?;
        Key::from_material(&data)
            .map_err(|e| e.context(format!("encryption key file {}", path.display())))
    }

    /// A public identifier of the key (not a secret): 16 hex digits of a domain-separated hash.
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"kasm-db backup key id\0");
        h.update(self.bytes);
        hex::encode(&h.finalize()[..8])
    }

    /// The first format's key: the configured key itself.
    fn aead_v1(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.bytes).expect("32-byte key"))
    }

    /// One object's key: HKDF-SHA256 of this key with the object's salt.
    fn object_aead(&self, salt: &[u8]) -> LessSafeKey {
        let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, salt).extract(&self.bytes);
        let okm = prk
            .expand(&[OBJECT_KEY_INFO], &AES_256_GCM)
            .expect("32 bytes is within HKDF-SHA256's output");
        LessSafeKey::new(UnboundKey::from(okm))
    }
}

fn nonce(prefix: &[u8; PREFIX_BYTES], counter: u32, last: bool) -> Nonce {
    let mut n = [0u8; 12];
    n[..7].copy_from_slice(prefix);
    n[7..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    Nonce::assume_unique_for_key(n)
}

/// Encrypts one object's chunks. Chunks may be sealed on any thread in any order (each knows
/// its counter); the caller emits them in counter order.
pub struct Sealer {
    key: LessSafeKey,
    header: [u8; HEADER_BYTES],
    prefix: [u8; PREFIX_BYTES],
}

impl Sealer {
    pub fn new(key: &Key) -> Result<Sealer> {
        let mut header = [0u8; HEADER_BYTES];
        header[..8].copy_from_slice(MAGIC);
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut header[8..])
            .map_err(|_| Error::failed("no randomness for the encryption salt and nonce"))?;
        let salt = &header[8..8 + SALT_BYTES];
        let mut prefix = [0u8; PREFIX_BYTES];
        prefix.copy_from_slice(&header[8 + SALT_BYTES..]);
        Ok(Sealer {
            key: key.object_aead(salt),
            header,
            prefix,
        })
    }

    /// The object's first bytes.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// Seal chunk `counter` (framed: length, ciphertext, tag).
    pub fn seal(&self, counter: u32, last: bool, plaintext: &[u8]) -> Vec<u8> {
        let mut buf = Vec::with_capacity(4 + plaintext.len() + TAG_BYTES);
        buf.extend_from_slice(&((plaintext.len() + TAG_BYTES) as u32).to_be_bytes());
        buf.extend_from_slice(plaintext);
        let mut body = buf.split_off(4);
        self.key
            .seal_in_place_append_tag(
                nonce(&self.prefix, counter, last),
                Aad::from(&self.header),
                &mut body,
            )
            .expect("sealing cannot fail for chunks under 4 GiB");
        buf.extend_from_slice(&body);
        buf
    }
}

/// The cause of an error about the key itself (none set for an encrypted object, or a key
/// other than the one it was sealed with), recognised with [`is_key_problem`]. Kind `Failed`
/// (exit 1), for logical and physical backups and WAL alike; a key file that cannot be read or
/// parsed stays a usage error (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyProblem(pub String);

/// Whether `e` is about the key ([`KeyProblem`]): missing or wrong.
pub fn is_key_problem(e: &Error) -> bool {
    e.caused_by::<KeyProblem>()
}

/// The key that opens `what` (e.g. "backup 2026...", "WAL segment 0000..."), sealed with the
/// key whose id is `key_id`, read from `key_file` (`backup.encryption_key_file`) and checked
/// against that id before any byte is decrypted. No key file, or one holding another key, is a
/// [`KeyProblem`] naming both ids (never the key).
pub fn key_for(what: &str, key_id: &str, key_file: Option<&Path>) -> Result<Key> {
    let Some(path) = key_file else {
        return Err(key_problem(format!(
            "{what} is encrypted (key id {key_id}): set backup.encryption_key_file (or \
             KASM_DB_BACKUP_ENCRYPTION_KEY_FILE) to the file holding that key"
        )));
    };
    let key = Key::from_file(path)?;
    if key.id() != key_id {
        return Err(key_problem(format!(
            "{what} was encrypted with key id {key_id}, but {} holds key id {}: wrong key",
            path.display(),
            key.id()
        )));
    }
    Ok(key)
}

fn key_problem(msg: String) -> Error {
    Error::with_cause(crate::error::Kind::Failed, KeyProblem(msg))
}

/// The opening side, pushed: takes an encrypted object's bytes in pieces of any size (as they
/// arrive from storage, an async read or a channel) and writes the plaintext of each chunk
/// once it is whole and authenticated. [`Unsealer::finish`] says whether the object ended
/// where it should (its final chunk seen, nothing after it). Holds at most one chunk.
pub struct Unsealer {
    key: Key,
    /// The object's header and its key, once the header is read.
    opened: Option<(Vec<u8>, LessSafeKey)>,
    prefix: [u8; PREFIX_BYTES],
    counter: u32,
    pending: Vec<u8>,
    /// Where the unread part of `pending` starts.
    at: usize,
    done: bool,
    written: u64,
}

impl Unsealer {
    pub fn new(key: &Key) -> Unsealer {
        Unsealer {
            key: key.clone(),
            opened: None,
            prefix: [0u8; PREFIX_BYTES],
            counter: 0,
            pending: Vec::new(),
            at: 0,
            done: false,
            written: 0,
        }
    }

    /// Take the next `data`; write every chunk it completes to `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut impl Write) -> Result<()> {
        if self.at > 0 && self.at * 2 >= self.pending.len() {
            self.pending.drain(..self.at);
            self.at = 0;
        }
        self.pending.extend_from_slice(data);
        loop {
            let avail = &self.pending[self.at..];
            if self.done {
                if !avail.is_empty() {
                    return Err(Error::failed(
                        "the encrypted backup has data after its final chunk",
                    ));
                }
                return Ok(());
            }
            let Some((header, aead)) = &self.opened else {
                if avail.len() < 8 {
                    return Ok(());
                }
                let len = match &avail[..8] {
                    m if m == MAGIC => HEADER_BYTES,
                    m if m == MAGIC_V1 => HEADER_BYTES_V1,
                    _ => {
                        return Err(Error::failed("not a kasm-db encrypted backup (bad magic)"));
                    }
                };
                if avail.len() < len {
                    return Ok(());
                }
                let h = avail[..len].to_vec();
                self.prefix.copy_from_slice(&h[len - PREFIX_BYTES..]);
                let aead = if len == HEADER_BYTES {
                    self.key.object_aead(&h[8..8 + SALT_BYTES])
                } else {
                    self.key.aead_v1()
                };
                self.opened = Some((h, aead));
                self.at += len;
                continue;
            };
            if avail.len() < 4 {
                return Ok(());
            }
            let len = u32::from_be_bytes(avail[..4].try_into().expect("4 bytes")) as usize;
            if !(TAG_BYTES..=(64 << 20)).contains(&len) {
                return Err(Error::failed(
                    "the encrypted backup is damaged (bad chunk length)",
                ));
            }
            if avail.len() < 4 + len {
                return Ok(());
            }
            let chunk = &avail[4..4 + len];
            let counter = self.counter;
            // A chunk opens under exactly one of the two flags.
            let try_open = |last: bool| -> Option<Vec<u8>> {
                let mut c = chunk.to_vec();
                aead.open_in_place(
                    nonce(&self.prefix, counter, last),
                    Aad::from(header.as_slice()),
                    &mut c,
                )
                .ok()
                .map(|p| p.to_vec())
            };
            let (plain, last) = match try_open(false) {
                Some(p) => (p, false),
                None => match try_open(true) {
                    Some(p) => (p, true),
                    None => {
                        return Err(Error::failed(if counter == 0 {
                            "cannot decrypt the backup: wrong key (or a damaged object)"
                        } else {
                            "the encrypted backup is damaged (a chunk fails authentication)"
                        }));
                    }
                },
            };
            out.write_all(&plain)?;
            self.written += plain.len() as u64;
            self.at += 4 + len;
            self.done = last;
            if !last {
                self.counter = self
                    .counter
                    .checked_add(1)
                    .ok_or_else(|| Error::failed("the encrypted backup has too many chunks"))?;
            }
        }
    }

    /// The object has ended: fails unless its final chunk was seen. Returns the plaintext
    /// bytes written.
    pub fn finish(self) -> Result<u64> {
        if self.opened.is_none() {
            return Err(Error::failed("not a kasm-db encrypted backup (too short)"));
        }
        if !self.done {
            return Err(Error::failed(
                "the encrypted backup is truncated (its final chunk is missing)",
            ));
        }
        Ok(self.written)
    }
}

/// Decrypt a whole encrypted object from `input` to `output`, streaming. Fails clearly on a
/// wrong key, a foreign or damaged object, or a truncated one.
pub fn decrypt(key: &Key, mut input: impl Read, mut output: impl Write) -> Result<u64> {
    let mut u = Unsealer::new(key);
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            return u.finish();
        }
        u.feed(&buf[..n], &mut output)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_wrong_key_is_a_typed_refusal_naming_the_ids() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("k");
        std::fs::write(&file, hex::encode([7u8; 32])).unwrap();
        let id = key(7).id();
        assert_eq!(key_for("backup b", &id, Some(&file)).unwrap().id(), id);
        let e = key_for("WAL segment s", &id, None).unwrap_err();
        assert!(is_key_problem(&e), "{e}");
        assert_eq!(e.kind(), crate::error::Kind::Failed);
        assert!(e.to_string().contains("encryption_key_file"), "{e}");
        let e = key_for("backup b", &key(8).id(), Some(&file)).unwrap_err();
        assert!(
            is_key_problem(&e) && e.to_string().contains("wrong key"),
            "{e}"
        );
        assert!(!e.to_string().contains(&hex::encode([7u8; 32])), "{e}");
    }

    fn key(b: u8) -> Key {
        Key::from_material(&[b; 32]).unwrap()
    }

    fn encrypt(k: &Key, chunks: &[&[u8]]) -> Vec<u8> {
        let s = Sealer::new(k).unwrap();
        let mut out = s.header().to_vec();
        for (i, c) in chunks.iter().enumerate() {
            out.extend(s.seal(i as u32, false, c));
        }
        out.extend(s.seal(chunks.len() as u32, true, b""));
        out
    }

    #[test]
    fn round_trip_and_key_parsing() {
        let k = key(7);
        let obj = encrypt(&k, &[b"hello ", b"world"]);
        let mut out = Vec::new();
        assert_eq!(decrypt(&k, &obj[..], &mut out).unwrap(), 11);
        assert_eq!(out, b"hello world");
        let hexkey = format!("{}\n", hex::encode([7u8; 32]));
        assert_eq!(Key::from_material(hexkey.as_bytes()).unwrap().id(), k.id());
        assert!(Key::from_material(b"short").is_err());
        assert!(!format!("{k:?}").contains("0707"));
    }

    #[test]
    fn wrong_key_truncation_and_tampering_fail() {
        let k = key(1);
        let obj = encrypt(&k, &[b"aaaa", b"bbbb"]);
        let e = decrypt(&key(2), &obj[..], std::io::sink()).unwrap_err();
        assert!(e.to_string().contains("wrong key"), "{e}");
        // Drop the final chunk (4 + 16 bytes).
        let e = decrypt(&k, &obj[..obj.len() - 20], std::io::sink()).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        let mut bad = obj.clone();
        bad[HEADER_BYTES + 6] ^= 1;
        assert!(decrypt(&k, &bad[..], std::io::sink()).is_err());
        let mut extra = obj.clone();
        extra.push(0);
        assert!(decrypt(&k, &extra[..], std::io::sink()).is_err());
        // Fed one byte at a time, the pushed side opens it whole.
        let mut u = Unsealer::new(&k);
        let mut out = Vec::new();
        for b in &obj {
            u.feed(std::slice::from_ref(b), &mut out).unwrap();
        }
        assert_eq!((u.finish().unwrap(), out.as_slice()), (8, &b"aaaabbbb"[..]));
        // Two objects never share a salt and nonce prefix.
        assert_ne!(
            encrypt(&k, &[b"x"])[8..HEADER_BYTES],
            encrypt(&k, &[b"x"])[8..HEADER_BYTES]
        );
    }

    /// An object in the first format (`KASMDBE1`: the configured key itself, a 7-byte prefix).
    fn encrypt_v1(k: &Key, prefix: [u8; PREFIX_BYTES], chunks: &[&[u8]]) -> Vec<u8> {
        let aead = k.aead_v1();
        let mut header = MAGIC_V1.to_vec();
        header.extend_from_slice(&prefix);
        let mut out = header.clone();
        let n = chunks.len();
        for (i, c) in chunks.iter().copied().chain([&b""[..]]).enumerate() {
            let mut body = c.to_vec();
            aead.seal_in_place_append_tag(
                nonce(&prefix, i as u32, i == n),
                Aad::from(header.as_slice()),
                &mut body,
            )
            .unwrap();
            out.extend_from_slice(&(body.len() as u32).to_be_bytes());
            out.extend(body);
        }
        out
    }

    #[test]
    fn objects_of_the_first_format_still_open() {
        let k = key(3);
        let old = encrypt_v1(&k, [9; 7], &[b"written ", b"before"]);
        let mut out = Vec::new();
        assert_eq!(decrypt(&k, &old[..], &mut out).unwrap(), 14);
        assert_eq!(out, b"written before");
        let e = decrypt(&key(4), &old[..], std::io::sink()).unwrap_err();
        assert!(e.to_string().contains("wrong key"), "{e}");
        let mut bad = old.clone();
        bad[HEADER_BYTES_V1 + 5] ^= 1;
        assert!(decrypt(&k, &bad[..], std::io::sink()).is_err());
        assert_eq!(header_bytes("aes-256-gcm-stream"), Some(15));
        assert_eq!(header_bytes(KIND), Some(31));
        assert_eq!(header_bytes("rot13"), None);
    }

    #[test]
    fn objects_that_share_a_nonce_prefix_never_share_a_key() {
        let k = key(5);
        let chunk = [0x42u8; 64];
        // The first format: one key for every object, so the same prefix is the same
        // keystream (what the per-object key removes).
        let (a, b) = (
            encrypt_v1(&k, [1; 7], &[&chunk]),
            encrypt_v1(&k, [1; 7], &[&chunk]),
        );
        assert_eq!(a, b, "the first format repeats its keystream");
        // Now: the same prefix forced on two objects still seals under two keys.
        let s1 = Sealer::new(&k).unwrap();
        let mut s2 = Sealer::new(&k).unwrap();
        s2.prefix = s1.prefix;
        s2.header[8 + SALT_BYTES..].copy_from_slice(&s1.prefix);
        assert_ne!(s1.header[8..8 + SALT_BYTES], s2.header[8..8 + SALT_BYTES]);
        let (c1, c2) = (s1.seal(0, false, &chunk), s2.seal(0, false, &chunk));
        let differing = c1.iter().zip(&c2).filter(|(x, y)| x != y).count();
        assert!(differing > 60, "{differing} of {} bytes differ", c1.len());
        // And each opens only under its own header (the salt picks the key).
        let mut obj = s2.header().to_vec();
        obj.extend(c2);
        obj.extend(s2.seal(1, true, b""));
        let mut out = Vec::new();
        decrypt(&k, &obj[..], &mut out).unwrap();
        assert_eq!(out, chunk);
        obj[8] ^= 1;
        let e = decrypt(&k, &obj[..], std::io::sink()).unwrap_err();
        assert!(e.to_string().contains("cannot decrypt"), "{e}");
    }
}
