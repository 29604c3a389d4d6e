//! Optional client-side encryption of backup objects: streaming AES-256-GCM in chunks (the
//! STREAM construction: a random per-object nonce prefix, a chunk counter and a "last chunk"
//! flag in every nonce, the header as associated data), so that chunks cannot be reordered,
//! dropped, truncated or moved between objects without decryption failing.
//!
//! Object format: `KASMDBE1` + 7-byte nonce prefix, then chunks `[u32 BE length][ciphertext +
//! 16-byte tag]`, ending with an empty chunk flagged last. The key (32 bytes, from
//! `backup.encryption_key_file`, raw or hex) never appears in messages, manifests or logs; only
//! a key id (a hash prefix) is recorded, so that a wrong key is reported as such.

use crate::error::{Error, Result};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::Path;

pub const MAGIC: &[u8; 8] = b"KASMDBE1";
pub const HEADER_BYTES: usize = 15;
pub const KIND: &str = "aes-256-gcm-stream";
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

    fn aead(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.bytes).expect("32-byte key"))
    }
}

fn nonce(prefix: &[u8; 7], counter: u32, last: bool) -> Nonce {
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
    prefix: [u8; 7],
}

impl Sealer {
    pub fn new(key: &Key) -> Result<Sealer> {
        let mut prefix = [0u8; 7];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut prefix)
            .map_err(|_| Error::failed("no randomness for the encryption nonce"))?;
        let mut header = [0u8; HEADER_BYTES];
        header[..8].copy_from_slice(MAGIC);
        header[8..].copy_from_slice(&prefix);
        Ok(Sealer {
            key: key.aead(),
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

/// Decrypt a whole encrypted object from `input` to `output`, streaming. Fails clearly on a
/// wrong key, a foreign or damaged object, or a truncated one.
pub fn decrypt(key: &Key, mut input: impl Read, mut output: impl Write) -> Result<u64> {
    let mut header = [0u8; HEADER_BYTES];
    input
        .read_exact(&mut header)
        .map_err(|_| Error::failed("not a kasm-db encrypted backup (too short)"))?;
    if &header[..8] != MAGIC {
        return Err(Error::failed("not a kasm-db encrypted backup (bad magic)"));
    }
    let mut prefix = [0u8; 7];
    prefix.copy_from_slice(&header[8..]);
    let aead = key.aead();
    let mut written = 0u64;
    for counter in 0u32.. {
        let mut len = [0u8; 4];
        input.read_exact(&mut len).map_err(|_| {
            Error::failed("the encrypted backup is truncated (its final chunk is missing)")
        })?;
        let len = u32::from_be_bytes(len) as usize;
        if !(TAG_BYTES..=(64 << 20)).contains(&len) {
            return Err(Error::failed(
                "the encrypted backup is damaged (bad chunk length)",
            ));
        }
        let mut chunk = vec![0u8; len];
        input
            .read_exact(&mut chunk)
            .map_err(|_| Error::failed("the encrypted backup is truncated"))?;
        // A chunk opens under exactly one of the two flags.
        let (plain, last) = {
            let try_open = |last: bool| -> Option<Vec<u8>> {
                let mut c = chunk.clone();
                aead.open_in_place(nonce(&prefix, counter, last), Aad::from(&header), &mut c)
                    .ok()
                    .map(|p| p.to_vec())
            };
            match try_open(false) {
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
            }
        };
        output.write_all(&plain)?;
        written += plain.len() as u64;
        if last {
            let mut extra = [0u8; 1];
            if input.read(&mut extra)? != 0 {
                return Err(Error::failed(
                    "the encrypted backup has data after its final chunk",
                ));
            }
            return Ok(written);
        }
    }
    Err(Error::failed("the encrypted backup has too many chunks"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // Two objects never share a nonce prefix.
        assert_ne!(encrypt(&k, &[b"x"])[8..15], encrypt(&k, &[b"x"])[8..15]);
    }
}
