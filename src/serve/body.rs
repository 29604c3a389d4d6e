//! Reading a request body under the size limit, and gunzipping it under the same limit.
//!
//! The limit applies to what is read off the wire and again to the decompressed bytes, so a
//! small gzip bomb is refused like a large body. This never buffers more than `limit` bytes
//! (plus one chunk) and never parses anything.

use axum::body::Body;
use futures::StreamExt;
use std::io::Read;

#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    /// The client broke off or sent something unreadable.
    Read(String),
    BadGzip(String),
}

/// The whole body, or `TooLarge` as soon as more than `limit` bytes arrived.
pub async fn read_limited(body: Body, limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BodyError::Read(e.to_string()))?;
        if buf.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// Decompress gzip (one or more members) into at most `limit` bytes.
pub fn gunzip_limited(data: &[u8], limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| BodyError::BadGzip(e.to_string()))?;
    if out.len() > limit {
        return Err(BodyError::TooLarge);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gunzip_respects_the_limit() {
        let data = vec![b'a'; 10_000];
        let z = gz(&data);
        assert!(z.len() < 1000);
        assert_eq!(gunzip_limited(&z, 10_000).unwrap(), data);
        assert_eq!(gunzip_limited(&z, 9_999), Err(BodyError::TooLarge));
        assert!(matches!(
            gunzip_limited(b"not gzip", 100),
            Err(BodyError::BadGzip(_))
        ));
    }

    #[tokio::test]
    async fn read_stops_over_the_limit() {
        assert_eq!(
            read_limited(Body::from(vec![1u8; 100]), 100)
                .await
                .unwrap()
                .len(),
            100
        );
        assert_eq!(
            read_limited(Body::from(vec![1u8; 101]), 100).await,
            Err(BodyError::TooLarge)
        );
    }
}
