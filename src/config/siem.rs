//! The `[siem]` section: one section per kind. `kind` picks the sink (`splunk-hec`, `syslog`,
//! `http`); the section holds the keys every kind takes ([`SiemCommon`]) plus that kind's own
//! ([`SiemSink`]). A key the kind does not take is an error that names the key, and the kind
//! it belongs to when it is another kind's (`index` under `kind = "syslog"`).
//!
//! Pure: parsing only, no I/O; tokens are [`Secret`]s and are never printed.

use super::{Secret, lenient};
use serde::{Deserialize, Deserializer, Serialize};
use std::path::PathBuf;

/// `[siem]`: the sink of its kind, and the keys every kind takes.
#[derive(Debug, Clone, Serialize)]
pub struct SiemConfig {
    #[serde(flatten)]
    pub sink: SiemSink,
    #[serde(flatten)]
    pub common: SiemCommon,
    /// Not a key: the environment's proxy variables (set with the configuration's).
    #[serde(skip)]
    pub proxy: super::proxy::ProxyEnv,
}

/// The kind's own keys, tagged by `kind` (each kind's struct denies keys it does not take).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SiemSink {
    SplunkHec(HecConfig),
    Syslog(SyslogConfig),
    Http(HttpConfig),
}

/// `kind = "splunk-hec"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HecConfig {
    /// Sent as `Authorization: Splunk <token>` (required).
    #[serde(default)]
    pub token: Option<Secret>,
    /// Envelope fields.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub index: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub sourcetype: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub source: Option<String>,
    /// Wait for indexer acknowledgement (falls back when the token has acks off).
    #[serde(default)]
    pub ack: bool,
}

/// `kind = "syslog"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    #[serde(default)]
    pub format: SyslogFormat,
    /// The facility name (`local0`..`local7`, `user`, `daemon`, ...).
    #[serde(default = "default_facility", deserialize_with = "lenient::string")]
    pub facility: String,
    /// Over UDP: most datagrams per second (0 = unlimited), so a burst does not overrun the
    /// receiver (UDP loses what it cannot take, silently).
    #[serde(default = "default_udp_max_per_sec")]
    pub udp_max_per_sec: u64,
}

/// `kind = "http"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Sent as `Authorization: Bearer <token>` (required).
    #[serde(default)]
    pub token: Option<Secret>,
}

/// The keys every kind takes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SiemCommon {
    #[serde(deserialize_with = "lenient::string")]
    pub url: String,
    #[serde(default)]
    pub forward_all: bool,
    #[serde(default = "default_spool_dir")]
    pub spool_dir: PathBuf,
    #[serde(default = "default_spool_max_bytes")]
    pub spool_max_bytes: u64,
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Most events per SIEM request.
    #[serde(default = "default_batch_events")]
    pub batch_events: usize,
    /// Most bytes per SIEM request before compression (Splunk Cloud refuses 1 MB and more).
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
    /// How long a part-filled batch waits for more events, in milliseconds.
    #[serde(default = "default_batch_wait_ms")]
    pub batch_wait_ms: u64,
    /// Seconds before a SIEM connection or request is given up (and retried).
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
}

/// The keys of [`SiemCommon`] (a test holds this list to the struct).
pub const COMMON_KEYS: &[&str] = &[
    "url",
    "forward_all",
    "spool_dir",
    "spool_max_bytes",
    "tls_ca",
    "insecure_skip_verify",
    "batch_events",
    "batch_bytes",
    "batch_wait_ms",
    "request_timeout_secs",
];

/// Each kind's own keys (a test holds these lists to the structs).
pub const KIND_KEYS: &[(&str, &[&str])] = &[
    (
        "splunk-hec",
        &["token", "index", "sourcetype", "source", "ack"],
    ),
    ("syslog", &["format", "facility", "udp_max_per_sec"]),
    ("http", &["token"]),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SyslogFormat {
    #[default]
    Rfc5424,
    Rfc3164,
    Cef,
}

impl SiemSink {
    /// The `kind` value.
    pub fn kind(&self) -> &'static str {
        match self {
            SiemSink::SplunkHec(_) => "splunk-hec",
            SiemSink::Syslog(_) => "syslog",
            SiemSink::Http(_) => "http",
        }
    }

    /// The token, for the kinds that send one.
    pub fn token(&self) -> Option<&Secret> {
        match self {
            SiemSink::SplunkHec(c) => c.token.as_ref(),
            SiemSink::Http(c) => c.token.as_ref(),
            SiemSink::Syslog(_) => None,
        }
    }
}

impl<'de> Deserialize<'de> for SiemConfig {
    /// Split the section into the common keys and the rest, which the struct of `kind` must
    /// take whole (`deny_unknown_fields`). The kind is read first (a missing `kind` is the
    /// error), and its struct is deserialized straight from the table rather than through
    /// serde's buffered tagged-enum path, so an error inside it still names its key.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut own = toml::Table::deserialize(d)?;
        let mut common = toml::Table::new();
        for key in COMMON_KEYS {
            if let Some(v) = own.remove(*key) {
                common.insert(key.to_string(), v);
            }
        }
        let kind = match own.remove("kind") {
            Some(toml::Value::String(k)) => k,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "invalid type: {}, expected a string (key `kind`)",
                    other.type_str()
                )));
            }
            None => return Err(D::Error::missing_field("kind")),
        };
        let own = toml::Value::Table(own);
        let kind_error =
            |e: toml::de::Error| D::Error::custom(keyed(&explain(e.message(), &kind), &e));
        let sink = match kind.as_str() {
            "splunk-hec" => SiemSink::SplunkHec(HecConfig::deserialize(own).map_err(kind_error)?),
            "syslog" => SiemSink::Syslog(SyslogConfig::deserialize(own).map_err(kind_error)?),
            "http" => SiemSink::Http(HttpConfig::deserialize(own).map_err(kind_error)?),
            other => {
                return Err(D::Error::custom(format!(
                    "unknown variant `{other}`, expected one of `splunk-hec`, `syslog`, `http` \
                     (key `kind`)"
                )));
            }
        };
        let common = SiemCommon::deserialize(toml::Value::Table(common))
            .map_err(|e| D::Error::custom(keyed(e.message(), &e)))?;
        Ok(SiemConfig {
            sink,
            common,
            proxy: Default::default(),
        })
    }
}

/// `msg`, naming the key `e` was about when it knows one (the key path of an error inside the
/// section is lost on the way out of this deserializer).
fn keyed(msg: &str, e: &toml::de::Error) -> String {
    let shown = e.to_string();
    let key = shown
        .lines()
        .filter_map(|l| l.strip_prefix("in `")?.strip_suffix('`'))
        .next();
    match key {
        Some(key) => format!("{msg} (key `{key}`)"),
        None => msg.to_string(),
    }
}

/// Serde says "unknown field `index`, expected one of `format`, ..." and lists only the kind's
/// own keys: say which kind the key belongs to, or every key the kind takes.
fn explain(msg: &str, kind: &str) -> String {
    let Some(rest) = msg.strip_prefix("unknown field `") else {
        return msg.to_string();
    };
    let Some(key) = rest.split('`').next() else {
        return msg.to_string();
    };
    let owners: Vec<&str> = KIND_KEYS
        .iter()
        .filter(|(k, keys)| *k != kind && keys.contains(&key))
        .map(|(k, _)| *k)
        .collect();
    if !owners.is_empty() {
        return format!(
            "unknown field `{key}` for kind \"{kind}\" (`{key}` is a key of kind \"{}\")",
            owners.join("\" and \"")
        );
    }
    let own = KIND_KEYS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, keys)| *keys)
        .unwrap_or_default();
    let all: Vec<String> = ["kind"]
        .iter()
        .chain(COMMON_KEYS)
        .chain(own)
        .map(|k| format!("`{k}`"))
        .collect();
    format!(
        "unknown field `{key}` for kind \"{kind}\", expected one of {}",
        all.join(", ")
    )
}

fn default_batch_events() -> usize {
    5000
}
fn default_batch_bytes() -> usize {
    900_000
}
fn default_batch_wait_ms() -> u64 {
    200
}
fn default_facility() -> String {
    "local0".into()
}
fn default_request_timeout_secs() -> u64 {
    30
}
/// Measured against rsyslogd on loopback (docs/operations.md, "Syslog over UDP").
pub const DEFAULT_UDP_MAX_PER_SEC: u64 = 2000;
fn default_udp_max_per_sec() -> u64 {
    DEFAULT_UDP_MAX_PER_SEC
}
fn default_spool_dir() -> PathBuf {
    PathBuf::from("/var/lib/kasm-db/spool")
}
fn default_spool_max_bytes() -> u64 {
    1 << 30
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn parse(text: &str) -> Result<SiemConfig, String> {
        toml::from_str::<SiemConfig>(text).map_err(|e| e.message().to_string())
    }

    #[test]
    fn each_kind_takes_its_own_keys_and_the_common_ones() {
        let hec = parse(
            "kind = \"splunk-hec\"\nurl = \"https://h:8088\"\ntoken = \"t\"\nindex = \"kasm\"\n\
             ack = true\nbatch_events = 7\n",
        )
        .unwrap();
        let SiemSink::SplunkHec(h) = &hec.sink else {
            panic!("{hec:?}")
        };
        assert_eq!((h.index.as_deref(), h.ack), (Some("kasm"), true));
        assert_eq!(hec.common.batch_events, 7);
        assert_eq!(hec.sink.token().unwrap().expose(), "t");
        let sys = parse("kind = \"syslog\"\nurl = \"udp://h:514\"\nformat = \"cef\"\n").unwrap();
        let SiemSink::Syslog(s) = &sys.sink else {
            panic!("{sys:?}")
        };
        assert_eq!(s.format, SyslogFormat::Cef);
        assert_eq!(s.udp_max_per_sec, DEFAULT_UDP_MAX_PER_SEC);
        assert_eq!(sys.common.spool_dir, default_spool_dir());
        assert!(sys.sink.token().is_none());
    }

    #[test]
    fn another_kinds_key_is_an_error_naming_the_key_and_its_kind() {
        let e = parse("kind = \"syslog\"\nurl = \"udp://h:514\"\nindex = \"kasm\"\n").unwrap_err();
        assert!(e.contains("`index`") && e.contains("splunk-hec"), "{e}");
        let e = parse("kind = \"http\"\nurl = \"http://h\"\nformat = \"cef\"\n").unwrap_err();
        assert!(e.contains("`format`") && e.contains("syslog"), "{e}");
        let e = parse("kind = \"splunk-hec\"\nurl = \"http://h\"\nfomat = \"x\"\n").unwrap_err();
        assert!(e.contains("`fomat`") && e.contains("`batch_events`"), "{e}");
        let e = parse("url = \"http://h\"\n").unwrap_err();
        assert!(e.contains("kind"), "{e}");
        let e = parse("kind = \"splunk\"\nurl = \"http://h\"\n").unwrap_err();
        assert!(e.contains("splunk-hec"), "{e}");
        // A bad value names its key, in the common part and in the kind's.
        let e = parse("kind = \"http\"\nurl = \"http://h\"\nbatch_events = \"x\"\n").unwrap_err();
        assert!(e.contains("`batch_events`"), "{e}");
        let e = parse("kind = \"syslog\"\nurl = \"udp://h:1\"\nformat = \"xml\"\n").unwrap_err();
        assert!(e.contains("`format`") && e.contains("rfc5424"), "{e}");
    }

    #[test]
    fn the_key_lists_are_the_structs_keys() {
        // Every field serializes (None as null), so the JSON keys are the struct's keys.
        for (kind, own) in KIND_KEYS {
            let c = parse(&format!("kind = \"{kind}\"\nurl = \"x\"\n")).unwrap();
            let v = serde_json::to_value(&c).unwrap();
            let got: BTreeSet<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
            let want: BTreeSet<&str> = ["kind"]
                .iter()
                .chain(COMMON_KEYS)
                .chain(own.iter())
                .copied()
                .collect();
            assert_eq!(got, want, "{kind}");
        }
    }

    #[test]
    fn tokens_are_never_printed() {
        let c = parse("kind = \"http\"\nurl = \"http://h\"\ntoken = \"s3cr3t\"\n").unwrap();
        assert!(!format!("{c:?}").contains("s3cr3t"));
        assert!(!serde_json::to_string(&c).unwrap().contains("s3cr3t"));
    }
}
