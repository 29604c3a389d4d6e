//! The Blob service's REST calls that a backup target needs, as requests: Put Block, Put Block
//! List, Put Blob, Get Blob, Delete Blob, List Blobs (and Create Container, for tests and
//! setup), signed with the account's shared key (HMAC-SHA256 by `ring`, the "SharedKey" scheme
//! of Azure Storage) or carrying a SAS in the query; plus the block arithmetic and the block
//! list body (the answers' XML is [`super::xml`]).
//!
//! Pure: builds values, sends nothing and reads no clock (`now` is given). The SAS and the key
//! go only into the request itself: never into a message, and the request URI is never logged
//! or put into an error (with a SAS it holds the signature).

use super::account::{Account, Auth};
use crate::error::{Error, Result};
use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{Method, Request};

/// The REST API version requested (block sizes up to 4000 MiB, Azurite 3.x understands it).
pub const API_VERSION: &str = "2021-12-02";

/// Smallest block: 8 MiB (Azure takes any size up to 4000 MiB).
pub const MIN_BLOCK_BYTES: usize = 8 << 20;
/// Azure's limit on committed blocks per blob.
pub const MAX_BLOCKS: u32 = 50_000;
/// Memory budget for blocks in flight.
const IN_FLIGHT_BYTES: usize = 32 << 20;

/// Size of block `n` (1-based): 8 MiB, doubling every 10,000 blocks up to 128 MiB, so 50,000
/// blocks hold about 2.6 TB of compressed dump.
pub fn block_size(n: u32) -> usize {
    let doublings = (n.max(1) - 1) / 10_000;
    MIN_BLOCK_BYTES << doublings.min(4)
}

/// How many blocks of `size` may be in flight at once (1 to 4).
pub fn blocks_in_flight(size: usize) -> usize {
    (IN_FLIGHT_BYTES / size).clamp(1, 4)
}

/// The id of block `n`: base64 of a fixed-length text, since every block id of a blob must
/// have the same length.
pub fn block_id(n: u32) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("kasm-db-block-{n:010}"))
}

/// The Put Block List body committing `ids` in order.
pub fn block_list_xml(ids: &[String]) -> Vec<u8> {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
    for id in ids {
        // Base64 has no XML metacharacters.
        s.push_str("<Latest>");
        s.push_str(id);
        s.push_str("</Latest>");
    }
    s.push_str("</BlockList>");
    s.into_bytes()
}

/// One call on a container's blobs; blob names are full names (prefix included).
#[derive(Debug, Clone)]
pub enum Op<'a> {
    PutBlock {
        blob: &'a str,
        id: &'a str,
        body: Bytes,
    },
    PutBlockList {
        blob: &'a str,
        ids: &'a [String],
        content_type: &'a str,
    },
    PutBlob {
        blob: &'a str,
        body: Bytes,
        content_type: &'a str,
    },
    GetBlob {
        blob: &'a str,
    },
    DeleteBlob {
        blob: &'a str,
    },
    ListBlobs {
        prefix: &'a str,
        marker: Option<&'a str>,
        /// Also list blobs that have only uncommitted blocks (what a dead upload leaves).
        uncommitted: bool,
    },
    CreateContainer,
}

/// Percent-encode `s`, leaving RFC 3986's unreserved characters (and `/` when `keep_slash`).
pub fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The request for `op` on `container`, dated `now`, authorised as the account says.
pub fn build(
    account: &Account,
    container: &str,
    op: &Op<'_>,
    now: DateTime<Utc>,
) -> Result<Request<Bytes>> {
    let blob_path = |blob: &str| {
        format!(
            "{}/{}/{}",
            account.endpoint.base_path,
            container,
            encode(blob, true)
        )
    };
    let container_path = format!("{}/{}", account.endpoint.base_path, container);
    let mut headers: Vec<(&str, String)> = Vec::new();
    let mut query: Vec<(&str, String)> = Vec::new();
    let (method, path, body) = match op {
        Op::PutBlock { blob, id, body } => {
            query.push(("comp", "block".into()));
            query.push(("blockid", id.to_string()));
            (Method::PUT, blob_path(blob), body.clone())
        }
        Op::PutBlockList {
            blob,
            ids,
            content_type,
        } => {
            query.push(("comp", "blocklist".into()));
            headers.push(("x-ms-blob-content-type", content_type.to_string()));
            (
                Method::PUT,
                blob_path(blob),
                Bytes::from(block_list_xml(ids)),
            )
        }
        Op::PutBlob {
            blob,
            body,
            content_type,
        } => {
            headers.push(("x-ms-blob-type", "BlockBlob".into()));
            headers.push(("x-ms-blob-content-type", content_type.to_string()));
            (Method::PUT, blob_path(blob), body.clone())
        }
        Op::GetBlob { blob } => (Method::GET, blob_path(blob), Bytes::new()),
        Op::DeleteBlob { blob } => {
            headers.push(("x-ms-delete-snapshots", "include".into()));
            (Method::DELETE, blob_path(blob), Bytes::new())
        }
        Op::ListBlobs {
            prefix,
            marker,
            uncommitted,
        } => {
            query.push(("restype", "container".into()));
            query.push(("comp", "list".into()));
            if !prefix.is_empty() {
                query.push(("prefix", prefix.to_string()));
            }
            if let Some(m) = marker.filter(|m| !m.is_empty()) {
                query.push(("marker", m.to_string()));
            }
            if *uncommitted {
                query.push(("include", "uncommittedblobs".into()));
            }
            (Method::GET, container_path, Bytes::new())
        }
        Op::CreateContainer => {
            query.push(("restype", "container".into()));
            (Method::PUT, container_path, Bytes::new())
        }
    };
    headers.push((
        "x-ms-date",
        now.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
    ));
    headers.push(("x-ms-version", API_VERSION.into()));

    let mut qs: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v, false)))
        .collect();
    let mut auth_header = None;
    match &account.auth {
        Auth::Sas(sas) => qs.push(sas.expose().to_string()),
        Auth::SharedKey(key) => {
            let sts = string_to_sign(
                &method,
                body.len(),
                &headers,
                &format!("/{}{}", account.name, path),
                &query,
            );
            auth_header = Some(format!(
                "SharedKey {}:{}",
                account.name,
                sign(key.bytes(), &sts)
            ));
        }
    }
    let uri = if qs.is_empty() {
        path
    } else {
        format!("{path}?{}", qs.join("&"))
    };
    let mut b = Request::builder()
        .method(method.clone())
        .uri(uri)
        .header(http::header::HOST, account.endpoint.host_header());
    for (k, v) in &headers {
        b = b.header(*k, v);
    }
    if method == Method::PUT || !body.is_empty() {
        b = b.header(http::header::CONTENT_LENGTH, body.len());
    }
    if let Some(a) = auth_header {
        b = b.header(http::header::AUTHORIZATION, a);
    }
    // Never show the URI: with a SAS it holds the signature.
    b.body(body)
        .map_err(|_| Error::usage("an Azure request could not be formed (invalid blob name?)"))
}

/// The SharedKey string-to-sign of a Blob service request (API versions 2015-02-21 and later):
/// the verb, the standard headers we send (only Content-Length), the `x-ms-*` headers sorted,
/// the canonicalized resource `/<account><path>` and the query parameters sorted by name.
pub fn string_to_sign(
    method: &Method,
    content_length: usize,
    headers: &[(&str, String)],
    resource: &str,
    query: &[(&str, String)],
) -> String {
    let len = if content_length == 0 {
        String::new()
    } else {
        content_length.to_string()
    };
    // VERB, Content-Encoding, Content-Language, Content-Length, Content-MD5, Content-Type,
    // Date, If-Modified-Since, If-Match, If-None-Match, If-Unmodified-Since, Range.
    let mut s = format!("{method}\n\n\n{len}\n\n\n\n\n\n\n\n\n");
    let mut ms: Vec<(String, &str)> = headers
        .iter()
        .filter(|(k, _)| k.starts_with("x-ms-"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim()))
        .collect();
    ms.sort();
    for (k, v) in ms {
        s.push_str(&format!("{k}:{v}\n"));
    }
    s.push_str(resource);
    let mut q: Vec<(String, &str)> = query
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect();
    q.sort();
    for (k, v) in q {
        s.push_str(&format!("\n{k}:{v}"));
    }
    s
}

/// base64(HMAC-SHA256(key, text)).
pub fn sign(key: &[u8], text: &str) -> String {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&k, text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::super::account::{BlobEndpoint, DEV_ACCOUNT, DEV_KEY, Key};
    use super::*;
    use crate::config::Secret;

    fn dev() -> Account {
        Account {
            name: DEV_ACCOUNT.into(),
            endpoint: BlobEndpoint::parse("http://127.0.0.1:10000/devstoreaccount1", "t").unwrap(),
            auth: Auth::SharedKey(Key::decode(DEV_KEY, "t").unwrap()),
        }
    }

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn blocks_grow_to_hold_a_large_dump_under_the_limit() {
        let total: u64 = (1..=MAX_BLOCKS).map(|n| block_size(n) as u64).sum();
        assert!(total > 2_000_000_000_000, "{total}");
        assert_eq!(block_size(1), 8 << 20);
        assert_eq!(block_size(MAX_BLOCKS), 128 << 20);
        for n in [1, 10_001, 20_001, 40_001, MAX_BLOCKS] {
            let s = block_size(n);
            assert!((blocks_in_flight(s) + 1) * s <= 256 << 20, "block {n}");
        }
        let ids: Vec<String> = [1, 9, 50_000].map(block_id).to_vec();
        assert!(ids.iter().all(|i| i.len() == ids[0].len()), "{ids:?}");
        assert_ne!(ids[0], ids[1]);
    }

    #[test]
    fn the_string_to_sign_follows_the_shared_key_scheme() {
        let headers = vec![
            ("x-ms-version", API_VERSION.to_string()),
            ("x-ms-date", "Fri, 02 Jan 2026 03:04:05 GMT".to_string()),
        ];
        let s = string_to_sign(
            &Method::PUT,
            5,
            &headers,
            "/devstoreaccount1/devstoreaccount1/c/p/x",
            &[("comp", "block".into()), ("blockid", "QQ==".into())],
        );
        assert_eq!(
            s,
            "PUT\n\n\n5\n\n\n\n\n\n\n\n\n\
             x-ms-date:Fri, 02 Jan 2026 03:04:05 GMT\nx-ms-version:2021-12-02\n\
             /devstoreaccount1/devstoreaccount1/c/p/x\nblockid:QQ==\ncomp:block"
        );
        // A zero length is an empty line, not "0".
        let s = string_to_sign(&Method::GET, 0, &[], "/a/c", &[]);
        assert!(s.starts_with("GET\n\n\n\n"), "{s:?}");
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", "what do ya want for nothing?"),
            base64::engine::general_purpose::STANDARD.encode(
                hex::decode("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
                    .unwrap()
            )
        );
    }

    #[test]
    fn requests_are_signed_or_carry_the_sas() {
        let a = dev();
        let r = build(
            &a,
            "kasm",
            &Op::PutBlock {
                blob: "p/a b/dump.gz",
                id: &block_id(1),
                body: Bytes::from_static(b"hello"),
            },
            at(),
        )
        .unwrap();
        assert_eq!(r.method(), Method::PUT);
        let uri = r.uri().to_string();
        assert!(
            uri.starts_with("/devstoreaccount1/kasm/p/a%20b/dump.gz?comp=block&blockid="),
            "{uri}"
        );
        assert!(uri.ends_with(&encode(&block_id(1), false)), "{uri}");
        assert_eq!(r.headers()["content-length"], "5");
        assert_eq!(r.headers()["x-ms-date"], "Fri, 02 Jan 2026 03:04:05 GMT");
        assert_eq!(r.headers()["host"], "127.0.0.1:10000");
        let auth = r.headers()["authorization"].to_str().unwrap();
        assert!(auth.starts_with("SharedKey devstoreaccount1:"), "{auth}");

        let sas = Account {
            auth: Auth::Sas(Secret::new("sv=2022-11-02&sig=abc%3D")),
            ..dev()
        };
        let r = build(
            &sas,
            "kasm",
            &Op::ListBlobs {
                prefix: "p/",
                marker: Some("m"),
                uncommitted: false,
            },
            at(),
        )
        .unwrap();
        assert_eq!(
            r.uri().to_string(),
            "/devstoreaccount1/kasm?restype=container&comp=list&prefix=p%2F&marker=m&sv=2022-11-02&sig=abc%3D"
        );
        assert!(r.headers().get("authorization").is_none());
        assert!(r.headers().get("content-length").is_none());
    }

    #[test]
    fn block_lists_commit_in_order() {
        let ids = vec![block_id(1), block_id(2)];
        let xml = String::from_utf8(block_list_xml(&ids)).unwrap();
        assert_eq!(
            xml,
            format!(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList><Latest>{}</Latest><Latest>{}</Latest></BlockList>",
                ids[0], ids[1]
            )
        );
    }
}
