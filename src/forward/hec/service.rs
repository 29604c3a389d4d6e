//! The Splunk HEC service: the only I/O of the HEC sink. Posts a gzipped batch, polls indexer
//! acknowledgements, checks health. Must never include the token in what it returns or logs.

use super::request::{self, Paths};
use super::response::{self, Posted};
use crate::config::Secret;
use crate::forward::delivery::Delivery;
use crate::net::{Failure, Origin};
use std::time::Duration;

pub struct HecService {
    pub origin: Origin,
    /// The longest one request (send and whole answer) may take.
    pub timeout: Duration,
    pub paths: Paths,
    pub token: Secret,
    /// With indexer acknowledgement: the channel id sent with every request.
    pub channel: Option<String>,
    pub ack_timeout: Duration,
}

fn transport(e: Failure) -> Delivery {
    match e {
        Failure::Connect(reason) => Delivery::Retry {
            reason,
            ambiguous: false,
        },
        Failure::Lost(reason) => Delivery::Retry {
            reason,
            ambiguous: true,
        },
    }
}

impl HecService {
    /// GET the health endpoint: `Ok(())` when HEC says it is healthy.
    pub async fn health(&mut self) -> Result<(), String> {
        match self
            .origin
            .call(request::health(&self.paths), self.timeout)
            .await
        {
            Ok(a) if a.status.is_success() => Ok(()),
            Ok(a) => Err(format!(
                "HEC health check answered {}: {}",
                a.status,
                String::from_utf8_lossy(&a.body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            )),
            Err(Failure::Connect(e) | Failure::Lost(e)) => Err(e),
        }
    }

    /// Post one gzipped batch of `events` envelopes and, with acks on, wait for the indexer.
    pub async fn post(&mut self, gz: Vec<u8>, events: usize) -> Delivery {
        let req = request::events(&self.paths, &self.token, self.channel.as_deref(), gz);
        let (status, body) = match self.origin.call(req, self.timeout).await {
            Ok(a) => (a.status, a.body),
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
            match self.origin.call(req, self.timeout).await {
                Ok(a) => match response::ack_state(a.status.as_u16(), &a.body, id) {
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
                    let (Failure::Connect(reason) | Failure::Lost(reason)) = e;
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
