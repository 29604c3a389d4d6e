//! The XML documents the Blob service answers with: a List Blobs page (names, sizes, times and
//! the next marker) and the error document (code and the first line of the message).
//!
//! Pure: parses bytes. Never keeps the parts of an error that quote a signature
//! (`AuthenticationErrorDetail`).

use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use serde::Deserialize;

/// A blob as List Blobs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub size: u64,
    pub modified: DateTime<Utc>,
}

/// One page of List Blobs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    pub blobs: Vec<Listed>,
    /// Where the next page starts; `None` on the last page.
    pub next_marker: Option<String>,
}

#[derive(Deserialize)]
struct EnumerationResults {
    #[serde(rename = "Blobs", default)]
    blobs: BlobsXml,
    #[serde(rename = "NextMarker", default)]
    next_marker: Option<String>,
}

#[derive(Deserialize, Default)]
struct BlobsXml {
    #[serde(rename = "Blob", default)]
    blob: Vec<BlobXml>,
}

#[derive(Deserialize)]
struct BlobXml {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Properties")]
    properties: PropertiesXml,
}

#[derive(Deserialize)]
struct PropertiesXml {
    #[serde(rename = "Last-Modified", default)]
    last_modified: Option<String>,
    #[serde(rename = "Content-Length", default)]
    content_length: Option<u64>,
}

/// Parse a List Blobs answer.
pub fn parse_list(xml: &[u8]) -> Result<ListPage> {
    let text =
        std::str::from_utf8(xml).map_err(|_| Error::failed("the blob listing is not UTF-8"))?;
    let r: EnumerationResults = quick_xml::de::from_str(text)
        .map_err(|e| Error::failed(format!("the blob listing is not understood: {e}")))?;
    Ok(ListPage {
        blobs: r
            .blobs
            .blob
            .into_iter()
            .map(|b| Listed {
                name: b.name,
                size: b.properties.content_length.unwrap_or(0),
                modified: b
                    .properties
                    .last_modified
                    .and_then(|t| DateTime::parse_from_rfc2822(&t).ok())
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or_default(),
            })
            .collect(),
        next_marker: r.next_marker.filter(|m| !m.is_empty()),
    })
}

#[derive(Deserialize)]
struct ErrorXml {
    #[serde(rename = "Code", default)]
    code: Option<String>,
    #[serde(rename = "Message", default)]
    message: Option<String>,
}

/// The error code (`x-ms-error-code`, else the body's `<Code>`) and the first line of the
/// body's `<Message>` (Azure adds RequestId and Time lines; the details of an authentication
/// failure, which quote a signature, are left out).
pub fn error_of(header_code: Option<&str>, body: &[u8]) -> (Option<String>, Option<String>) {
    let parsed = std::str::from_utf8(body)
        .ok()
        .and_then(|t| quick_xml::de::from_str::<ErrorXml>(t.trim_start_matches('\u{feff}')).ok());
    let (code, message) = match parsed {
        Some(e) => (e.code, e.message),
        None => (None, None),
    };
    let code = header_code.map(String::from).or(code);
    let message = message
        .and_then(|m| m.lines().next().map(|l| l.trim().to_string()))
        .filter(|m| !m.is_empty());
    (code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_and_errors_parse() {
        let xml = br#"<?xml version="1.0" encoding="utf-8"?>
<EnumerationResults ServiceEndpoint="http://127.0.0.1:10000/devstoreaccount1" ContainerName="kasm">
  <Prefix>p/</Prefix><MaxResults>5000</MaxResults>
  <Blobs>
    <Blob><Name>p/20260101T000000Z-abcdef/dump.gz</Name><Properties>
      <Creation-Time>Thu, 01 Jan 2026 00:00:00 GMT</Creation-Time>
      <Last-Modified>Thu, 01 Jan 2026 00:00:05 GMT</Last-Modified><Etag>0x1</Etag>
      <Content-Length>1234</Content-Length><BlobType>BlockBlob</BlobType></Properties></Blob>
    <Blob><Name>p/a&amp;b.json</Name><Properties><Last-Modified>Thu, 01 Jan 2026 00:00:06 GMT</Last-Modified><Content-Length>0</Content-Length></Properties></Blob>
  </Blobs>
  <NextMarker>next-1</NextMarker>
</EnumerationResults>"#;
        let page = parse_list(xml).unwrap();
        assert_eq!(page.blobs.len(), 2);
        assert_eq!(page.blobs[0].name, "p/20260101T000000Z-abcdef/dump.gz");
        assert_eq!(page.blobs[0].size, 1234);
        assert_eq!(
            page.blobs[0].modified.to_rfc3339(),
            "2026-01-01T00:00:05+00:00"
        );
        assert_eq!(page.blobs[1].name, "p/a&b.json");
        assert_eq!(page.next_marker.as_deref(), Some("next-1"));
        let empty = parse_list(
            br#"<?xml version="1.0"?><EnumerationResults><Blobs /><NextMarker /></EnumerationResults>"#,
        )
        .unwrap();
        assert_eq!(empty, ListPage::default());

        let (code, msg) = error_of(
            None,
            "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthenticationFailed</Code><Message>Server failed to authenticate the request.\nRequestId:1\nTime:x</Message><AuthenticationErrorDetail>The MAC signature found in the HTTP request 'c2ln' is not the same</AuthenticationErrorDetail></Error>".as_bytes(),
        );
        assert_eq!(code.as_deref(), Some("AuthenticationFailed"));
        assert_eq!(
            msg.as_deref(),
            Some("Server failed to authenticate the request.")
        );
        let (code, msg) = error_of(Some("BlobNotFound"), b"");
        assert_eq!((code.as_deref(), msg), (Some("BlobNotFound"), None));
    }
}
