//! The Splunk HEC service: the only I/O of the HEC sink. Posts a gzipped batch, polls indexer
//! acknowledgements, checks health. Must never include the token in what it returns or logs.

use super::request::{self, Paths};
use super::response::{self, Posted};
use crate::config::Secret;
use crate::forward::delivery::Delivery;
use crate::forward::http_client::{HttpConn, HttpError};
use std::time::Duration;

pub struct HecService {
    pub conn: HttpConn,
    pub paths: Paths,
    pub token: Secret,
    /// With indexer acknowledgement: the channel id sent with every request.
    pub channel: Option<String>,
    pub ack_timeout: Duration,
}

fn transport(e: HttpError) -> Delivery {
    match e {
        HttpError::Connect(reason) => Delivery::Retry {
            reason,
            ambiguous: false,
        },
        HttpError::Unknown(reason) => Delivery::Retry {
            reason,
            ambiguous: true,
        },
    }
}

impl HecService {
    /// GET the health endpoint: `Ok(())` when HEC says it is healthy.
    pub async fn health(&mut self) -> Result<(), String> {
        match self.conn.send(request::health(&self.paths)).await {
            Ok((s, _)) if s.is_success() => Ok(()),
            Ok((s, body)) => Err(format!(
                "HEC health check answered {s}: {}",
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            )),
            Err(HttpError::Connect(e) | HttpError::Unknown(e)) => Err(e),
        }
    }

    /// Post one gzipped batch of `events` envelopes and, with acks on, wait for the indexer.
    pub async fn post(&mut self, gz: Vec<u8>, events: usize) -> Delivery {
        let req = request::events(&self.paths, &self.token, self.channel.as_deref(), gz);
        let (status, body) = match self.conn.send(req).await {
            Ok(r) => r,
            Err(e) => return transport(e),
        };
        match response::classify(status.as_u16(), &body, events) {
            Posted::Failed(o) => o,
            Posted::Accepted(None) => Delivery::Delivered,
            Posted::Accepted(Some(id)) => self.wait_ack(id).await,
        }
    }

    async fn wait_ack(&mut self, id: u64) -> Delivery {
        let Some(channel) = self.channel.clone() else {
            return Delivery::Delivered;
        };
        let deadline = tokio::time::Instant::now() + self.ack_timeout;
        let mut pause = Duration::from_millis(20);
        loop {
            let req = request::ack_poll(&self.paths, &self.token, &channel, &[id]);
            match self.conn.send(req).await {
                Ok((s, body)) => match response::ack_state(s.as_u16(), &body, id) {
                    Ok(Some(true)) | Ok(None) => return Delivery::Delivered,
                    Ok(Some(false)) => {}
                    Err(reason) => {
                        return Delivery::Retry {
                            reason,
                            ambiguous: true,
                        };
                    }
                },
                Err(e) => {
                    let (HttpError::Connect(reason) | HttpError::Unknown(reason)) = e;
                    return Delivery::Retry {
                        reason: format!("waiting for HEC ack {id}: {reason}"),
                        ambiguous: true,
                    };
                }
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Delivery::Retry {
                    reason: format!(
                        "HEC did not acknowledge ack id {id} in {:?}",
                        self.ack_timeout
                    ),
                    ambiguous: true,
                };
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }
}
