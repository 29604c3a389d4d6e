//! What one delivery attempt of a batch came to, as every sink reports it to the pipeline.
//! Pure data; the pipeline decides retries, dead letters and commits from it. A reason must
//! never carry a secret (sinks build them from status codes and the SIEM's own answer).

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Every event of the batch is acknowledged.
    Delivered,
    /// Events `[..accepted]` are acknowledged, event `accepted` is refused for good (`reason`),
    /// the rest were not taken and must be sent again.
    Partial { accepted: usize, reason: String },
    /// Nothing was taken; try again later. `ambiguous`: the SIEM may have taken some or all.
    Retry { reason: String, ambiguous: bool },
    /// The SIEM refuses the batch. `permanent`: dead-letter now (the data is bad); otherwise
    /// (auth, unknown endpoint) retry a bounded number of times, then dead-letter.
    Refused { reason: String, permanent: bool },
    /// The request was too large (HTTP 413): send fewer events; a single event is dead-lettered.
    TooLarge { reason: String },
}
