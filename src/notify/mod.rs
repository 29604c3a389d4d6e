//! Job notifications (`[notify]`): a POST with a JSON body to each configured URL when a
//! backup, verify, purge, vacuum or restore starts, succeeds or fails, as `notify.on` asks, and
//! (job `wal`) when serve's slot guard finds the replication slot in trouble and when it is well again.
//! The command line and `serve`'s schedule wrap the same operations in the same
//! [`Notifier::around`]; the `demo` uses it too.
//!
//! Split like the SIEM sinks: [`body`] (pure: the JSON), [`service`] (the only I/O: the POST,
//! bounded and briefly retried), and here the [`Notifier`] that ties a job's run to them.
//!
//! What it must never do: change a job's result (a failed delivery is a `WARN` line, and a
//! count through the observer `serve` installs for `/metrics`, nothing more), hold a job up
//! for longer than [`service::Policy::bound`] per event, or show the token or a URL's path or
//! query anywhere (URLs are named by their origin only).

pub mod body;
pub mod service;

pub use body::{Job, Notice};

use crate::config::notify::{Event, NotifyConfig};
use crate::error::Result;
use chrono::Utc;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

/// Told of each delivery: the job, and whether the receiver took it.
pub type Observer = Arc<dyn Fn(Job, bool) + Send + Sync>;

/// How a job ended, as its notification tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    Success {
        backup: Option<String>,
    },
    Failure {
        backup: Option<String>,
        error: String,
    },
    /// Not a run of the job (another run holds its lock, a dry run): no end notification.
    Silent,
}

impl Finish {
    /// The plain reading of an operation's result: `Ok` succeeded, `Err` failed with its message.
    pub fn of<T>(r: &Result<T>) -> Finish {
        match r {
            Ok(_) => Finish::Success { backup: None },
            Err(e) => Finish::Failure {
                backup: None,
                error: e.to_string(),
            },
        }
    }
}

/// Sends a job's notifications; cheap to share (`Arc`) between scheduled jobs.
pub struct Notifier {
    config: NotifyConfig,
    host: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    policy: service::Policy,
    observer: Option<Observer>,
}

impl Notifier {
    /// A notifier for `config`, naming this machine `host` in its bodies.
    pub fn new(config: &NotifyConfig, host: impl Into<String>) -> Result<Notifier> {
        let tls = if config.urls.iter().any(|u| u.https) {
            Some(crate::net::client::public_tls()?)
        } else {
            None
        };
        Ok(Notifier {
            config: config.clone(),
            host: host.into(),
            tls,
            policy: service::Policy::DEFAULT,
            observer: None,
        })
    }

    /// Count each delivery (`serve`: `kasm_db_notify_deliveries_total`, `..._failures_total`).
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Whether any notification at all is configured.
    pub fn active(&self) -> bool {
        !self.config.urls.is_empty() && !self.config.on.is_empty()
    }

    /// Run `op` as `job` on `target`: send `start` (while `op` already runs), then `success` or
    /// `failure` as `judge` reads `op`'s result, and hand that result back unchanged.
    pub async fn around<T>(
        &self,
        job: Job,
        target: Option<String>,
        op: impl Future<Output = Result<T>>,
        judge: impl FnOnce(&Result<T>) -> Finish,
    ) -> Result<T> {
        if !self.active() {
            return op.await;
        }
        let started = Utc::now();
        let clock = Instant::now();
        let notice = |status, duration_s, backup, error| Notice {
            job,
            status,
            host: self.host.clone(),
            started,
            duration_s,
            target: target.clone(),
            backup,
            error,
        };
        let start = notice(Event::Start, None, None, None);
        let ((), result) = tokio::join!(self.send(&start), op);
        let duration = Some(clock.elapsed().as_secs_f64());
        let end = match judge(&result) {
            Finish::Success { backup } => notice(Event::Success, duration, backup, None),
            Finish::Failure { backup, error } => {
                notice(Event::Failure, duration, backup, Some(error))
            }
            Finish::Silent => return result,
        };
        self.send(&end).await;
        result
    }

    /// Send `notice` to every URL (at once) when `notify.on` names its status. Never fails:
    /// an undelivered notification is a warning.
    pub async fn send(&self, notice: &Notice) {
        if !self.config.sends(notice.status) {
            return;
        }
        let body = bytes::Bytes::from(body::encode(notice));
        let sends = self.config.urls.iter().enumerate().map(|(i, url)| {
            let body = body.clone();
            async move {
                let r = service::deliver(
                    url,
                    self.tls.as_ref(),
                    self.config.token.as_ref(),
                    &self.config.proxy,
                    body,
                    self.policy,
                )
                .await;
                if let Err(f) = &r {
                    tracing::warn!(
                        job = notice.job.as_str(),
                        status = notice.status.as_str(),
                        url = %format!("notify.urls[{i}] {}", url.origin()),
                        attempts = f.attempts,
                        "notification not delivered ({}); the job's own result stands",
                        f.reason
                    );
                } else {
                    tracing::debug!(job = notice.job.as_str(), status = notice.status.as_str(), url = %url.origin(), "notification delivered");
                }
                if let Some(o) = &self.observer {
                    o(notice.job, r.is_ok());
                }
            }
        });
        futures::future::join_all(sends).await;
    }
}

/// This machine's name for the bodies' `host` (`unknown` if it has none).
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    match String::from_utf8_lossy(&buf[..end]).trim() {
        "" => "unknown".into(),
        h => h.to_string(),
    }
}
