//! HEC data channels and indexer acknowledgement for the `serve` HEC receiver.
//!
//! A client names its channel (a GUID) with `X-Splunk-Request-Channel` or `?channel=`, as
//! Splunk accepts it. Every 200 of `serve` is sent only once the records are durable, so an
//! event POST on a channel gets an `ackId` that is already acknowledged: `/services/collector/ack`
//! answers `true` for every id handed out on that channel. Clients that require indexer
//! acknowledgement therefore work unchanged. Bounded: the least recently used channel is
//! forgotten beyond [`MAX_CHANNELS`]. Never holds record content or tokens.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;
use uuid::Uuid;

/// Channels remembered at once (Splunk's default limit is far larger; clients use a few).
pub const MAX_CHANNELS: usize = 10_000;

pub const HEADER: &str = "x-splunk-request-channel";

/// Why a request's channel cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelError {
    /// Named but not a GUID (Splunk: 400, code 11 "Invalid data channel").
    Invalid,
}

/// The channel a request names: the header first, else the `channel` query parameter.
pub fn of_request(
    header: Option<&[u8]>,
    query: Option<&str>,
) -> Result<Option<Uuid>, ChannelError> {
    let from_query = query.and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
            .find(|(k, _)| *k == "channel")
            .map(|(_, v)| v.to_string())
    });
    let text = match header {
        Some(h) => Some(
            std::str::from_utf8(h)
                .map_err(|_| ChannelError::Invalid)?
                .to_string(),
        ),
        None => from_query,
    };
    match text {
        None => Ok(None),
        Some(t) => Uuid::parse_str(t.trim())
            .map(Some)
            .map_err(|_| ChannelError::Invalid),
    }
}

#[derive(Default)]
pub struct Channels {
    /// channel → (next ack id, last use).
    inner: Mutex<HashMap<Uuid, (u64, Instant)>>,
}

impl Channels {
    /// Hand out the next ack id on `channel` (for a request whose records are durable).
    pub fn next_ack(&self, channel: Uuid) -> u64 {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if !m.contains_key(&channel) && m.len() >= MAX_CHANNELS {
            if let Some(oldest) = m.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| *k) {
                m.remove(&oldest);
            }
        }
        let e = m.entry(channel).or_insert((0, Instant::now()));
        let id = e.0;
        *e = (id + 1, Instant::now());
        id
    }

    /// Whether each id was handed out on `channel` (all of those are durable).
    pub fn acked(&self, channel: Uuid, ids: &[u64]) -> Vec<(u64, bool)> {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let next = m.get_mut(&channel).map_or(0, |e| {
            e.1 = Instant::now();
            e.0
        });
        ids.iter().map(|id| (*id, *id < next)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: &str = "0E3F4D2A-1B2C-4D5E-8F90-A1B2C3D4E5F6";

    #[test]
    fn channel_from_header_or_query() {
        let g = Uuid::parse_str(G).unwrap();
        assert_eq!(of_request(Some(G.as_bytes()), None), Ok(Some(g)));
        assert_eq!(
            of_request(None, Some(&format!("a=1&channel={G}"))),
            Ok(Some(g))
        );
        assert_eq!(of_request(None, Some("a=1")), Ok(None));
        assert_eq!(of_request(None, None), Ok(None));
        assert_eq!(
            of_request(Some(b"not-a-guid"), Some(&format!("channel={G}"))),
            Err(ChannelError::Invalid)
        );
        assert_eq!(
            of_request(None, Some("channel=")),
            Err(ChannelError::Invalid)
        );
    }

    #[test]
    fn acks_are_per_channel_and_bounded() {
        let c = Channels::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!((c.next_ack(a), c.next_ack(a), c.next_ack(b)), (0, 1, 0));
        assert_eq!(
            c.acked(a, &[0, 1, 2]),
            vec![(0, true), (1, true), (2, false)]
        );
        assert_eq!(c.acked(Uuid::new_v4(), &[0]), vec![(0, false)]);
        for _ in 0..MAX_CHANNELS + 5 {
            c.next_ack(Uuid::new_v4());
        }
        assert!(c.inner.lock().unwrap().len() <= MAX_CHANNELS);
    }
}
