//! Classifying a Splunk HEC answer (HTTP status + `{"text","code",...}` body) into a delivery
//! [`Delivery`]. Pure. HEC codes: 0 success, 2 token required, 3 invalid authorization,
//! 4 invalid token, 5 no data, 6 invalid data format (with `invalid-event-number`), 7 incorrect
//! index, 9 server busy, 14 ACK disabled.

use crate::forward::delivery::Delivery;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub struct Reply {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub code: Option<i64>,
    #[serde(default, rename = "invalid-event-number")]
    pub invalid_event_number: Option<usize>,
    #[serde(default, rename = "ackId")]
    pub ack_id: Option<u64>,
}

/// What a POST of events came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Posted {
    /// Accepted; with indexer acknowledgement on, the id to poll.
    Accepted(Option<u64>),
    Failed(Delivery),
}

fn describe(status: u16, reply: &Reply) -> String {
    match (&reply.text, reply.code) {
        (Some(t), Some(c)) => format!("HEC answered {status}: {t} (code {c})"),
        (Some(t), None) => format!("HEC answered {status}: {t}"),
        _ => format!("HEC answered {status}"),
    }
}

/// Classify the answer to a POST of `events` events.
pub fn classify(status: u16, body: &[u8], events: usize) -> Posted {
    let reply: Reply = serde_json::from_slice(body).unwrap_or_default();
    let reason = describe(status, &reply);
    match status {
        200..=299 if reply.code.unwrap_or(0) == 0 => Posted::Accepted(reply.ack_id),
        400 => match reply.invalid_event_number {
            // Splunk indexed the events before the bad one and none after it.
            Some(n) if n < events => Posted::Failed(Delivery::Partial {
                accepted: n,
                reason,
            }),
            _ => Posted::Failed(Delivery::Refused {
                reason,
                permanent: true,
            }),
        },
        413 => Posted::Failed(Delivery::TooLarge { reason }),
        408 | 429 | 500..=599 => Posted::Failed(Delivery::Retry {
            reason,
            ambiguous: false,
        }),
        // Success status with a non-zero code, auth failures, unknown paths: bounded retries.
        _ => Posted::Failed(Delivery::Refused {
            reason,
            permanent: false,
        }),
    }
}

/// Parse an ack poll answer `{"acks":{"12":true}}`: whether `id` is acknowledged.
/// `None` when the endpoint has acknowledgement off (code 14) and acceptance must do.
pub fn ack_state(status: u16, body: &[u8], id: u64) -> Result<Option<bool>, String> {
    #[derive(Deserialize)]
    struct Acks {
        acks: std::collections::HashMap<String, bool>,
    }
    if status == 200 {
        let a: Acks = serde_json::from_slice(body)
            .map_err(|e| format!("HEC ack answer not understood: {e}"))?;
        return Ok(Some(a.acks.get(&id.to_string()).copied().unwrap_or(false)));
    }
    let reply: Reply = serde_json::from_slice(body).unwrap_or_default();
    if reply.code == Some(14) {
        return Ok(None);
    }
    Err(describe(status, &reply))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(
            classify(200, br#"{"text":"Success","code":0}"#, 3),
            Posted::Accepted(None)
        );
        assert_eq!(
            classify(200, br#"{"text":"Success","code":0,"ackId":7}"#, 3),
            Posted::Accepted(Some(7))
        );
        let p = classify(
            400,
            br#"{"text":"Invalid data format","code":6,"invalid-event-number":2}"#,
            5,
        );
        assert!(
            matches!(p, Posted::Failed(Delivery::Partial { accepted: 2, .. })),
            "{p:?}"
        );
        let p = classify(400, br#"{"text":"No data","code":5}"#, 5);
        assert!(matches!(
            p,
            Posted::Failed(Delivery::Refused {
                permanent: true,
                ..
            })
        ));
        for (s, b) in [
            (401, r#"{"text":"Token is required","code":2}"#),
            (401, r#"{"text":"Invalid authorization","code":3}"#),
            (403, r#"{"text":"Invalid token","code":4}"#),
        ] {
            let p = classify(s, b.as_bytes(), 1);
            match p {
                Posted::Failed(Delivery::Refused {
                    permanent: false,
                    reason,
                }) => {
                    assert!(reason.contains(&s.to_string()), "{reason}")
                }
                other => panic!("{s}: {other:?}"),
            }
        }
        for s in [408, 429, 500, 503] {
            let p = classify(s, br#"{"text":"Server is busy","code":9}"#, 1);
            assert!(matches!(p, Posted::Failed(Delivery::Retry { .. })), "{s}");
        }
        assert!(matches!(
            classify(
                413,
                b"Content-Length of 2000000 too large (maximum is 1000000)",
                9
            ),
            Posted::Failed(Delivery::TooLarge { .. })
        ));
        // Garbage bodies do not panic.
        assert!(matches!(
            classify(502, b"<html>", 1),
            Posted::Failed(Delivery::Retry { .. })
        ));
    }

    #[test]
    fn acks() {
        assert_eq!(ack_state(200, br#"{"acks":{"3":true}}"#, 3), Ok(Some(true)));
        assert_eq!(
            ack_state(200, br#"{"acks":{"3":false}}"#, 3),
            Ok(Some(false))
        );
        assert_eq!(
            ack_state(400, br#"{"text":"ACK is disabled","code":14}"#, 3),
            Ok(None)
        );
        assert!(ack_state(500, b"", 3).is_err());
    }
}
