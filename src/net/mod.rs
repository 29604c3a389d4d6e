//! Outbound HTTP, a foundation below every capability that talks HTTP to someone else (the
//! SIEM sinks, notifications, the Azure blob storage): the one client and connection pool
//! ([`client`]) and the proxy the standard variables name for a target ([`proxy`], pure).
//! Imports only `config` (the carried [`crate::config::proxy::ProxyEnv`], `Secret`), `tls` and
//! `error`; never a capability. Must never print a proxy's credentials or a request's headers.

pub mod client;
pub mod proxy;

pub use client::{Answer, BodyReader, Failure, Origin};
pub use proxy::{Proxy, ProxyError, Target};
