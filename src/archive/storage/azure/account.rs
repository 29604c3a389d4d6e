//! Which Azure Storage account an `az://` target is in, where its blob service answers and how
//! requests are authorised, from the standard variables ([`AzureEnv`]):
//! `AZURE_STORAGE_CONNECTION_STRING` (`AccountName`/`AccountKey`, `SharedAccessSignature`,
//! `BlobEndpoint` for Azurite and sovereign clouds, `DefaultEndpointsProtocol`,
//! `EndpointSuffix`, `UseDevelopmentStorage=true`), else `AZURE_STORAGE_ACCOUNT` with
//! `AZURE_STORAGE_KEY` (shared key) or `AZURE_STORAGE_SAS_TOKEN`.
//!
//! Pure: parses strings, connects nowhere. Its errors name the variable or the connection
//! string's key at fault, never a value: keys, SAS tokens and connection strings must never
//! appear in an error, a log or `Debug` output.

use crate::config::Secret;
use crate::config::azure::AzureEnv;
use crate::error::{Error, Result};
use base64::Engine;
use std::fmt;

/// Azurite's (and the old storage emulator's) well-known development account.
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
/// Its published key (not a secret: it is in Microsoft's documentation).
pub const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The account's decoded shared key; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(Vec<u8>);

impl Key {
    /// Decode a base64 account key; `what` names where it came from for the error.
    pub fn decode(text: &str, what: &str) -> Result<Key> {
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map(Key)
            .map_err(|_| Error::usage(format!("{what} is not a base64 account key")))
    }
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How requests are authorised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// The `Authorization: SharedKey account:signature` header, signed with the account key.
    SharedKey(Key),
    /// A shared access signature appended to every request's query (without a leading `?`).
    Sas(Secret),
}

/// Where the blob service answers: `scheme://authority` and the path its containers are under
/// (empty for Azure itself, `/devstoreaccount1` for Azurite's path-style URLs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobEndpoint {
    pub https: bool,
    pub host: String,
    pub port: u16,
    pub base_path: String,
}

impl BlobEndpoint {
    /// Parse `http(s)://host[:port][/path]`; `what` names the source for the error.
    pub fn parse(url: &str, what: &str) -> Result<BlobEndpoint> {
        let bad = |why: &str| Error::usage(format!("{what} {why}"));
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad("is not an http:// or https:// URL"));
        };
        if rest.contains(['?', '#', '@']) {
            return Err(bad("must be a plain URL (no query, fragment or user)"));
        }
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let default_port = if https { 443 } else { 80 };
        let port_of = |p: &str| p.parse::<u16>().map_err(|_| bad("has an invalid port"));
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("has an invalid IPv6 host"))?;
            match after.strip_prefix(':') {
                Some(p) => (h, port_of(p)?),
                None if after.is_empty() => (h, default_port),
                None => return Err(bad("has an invalid IPv6 host")),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, port_of(p)?),
                None => (authority, default_port),
            }
        };
        if host.is_empty() {
            return Err(bad("names no host"));
        }
        Ok(BlobEndpoint {
            https,
            host: host.to_string(),
            port,
            base_path: path.trim_end_matches('/').to_string(),
        })
    }

    /// `host:port` (IPv6 in brackets), for messages.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The `Host` header: the authority without the scheme's default port.
    pub fn host_header(&self) -> String {
        if self.port == if self.https { 443 } else { 80 } {
            let a = self.authority();
            a[..a.rfind(':').unwrap_or(a.len())].to_string()
        } else {
            self.authority()
        }
    }
}

/// A resolved account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub endpoint: BlobEndpoint,
    pub auth: Auth,
}

const HOW: &str = "set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT with \
                   AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN";

impl Account {
    /// The account the variables name. A missing or malformed one is a usage error (exit 2).
    pub fn from_env(env: &AzureEnv) -> Result<Account> {
        if let Some(cs) = &env.connection_string {
            return Self::from_connection_string(cs.expose());
        }
        let Some(name) = env.account.clone() else {
            return Err(Error::usage(format!(
                "an az:// target needs Azure Storage credentials: {HOW}"
            )));
        };
        let endpoint = BlobEndpoint::parse(
            &format!("https://{name}.blob.core.windows.net"),
            "AZURE_STORAGE_ACCOUNT",
        )?;
        let auth = if let Some(key) = &env.key {
            Auth::SharedKey(Key::decode(key.expose(), "AZURE_STORAGE_KEY")?)
        } else if let Some(sas) = &env.sas_token {
            Auth::Sas(Secret::new(sas.expose().trim_start_matches('?')))
        } else {
            return Err(Error::usage(format!(
                "AZURE_STORAGE_ACCOUNT is set but neither AZURE_STORAGE_KEY nor \
                 AZURE_STORAGE_SAS_TOKEN is: {HOW}"
            )));
        };
        Ok(Account {
            name,
            endpoint,
            auth,
        })
    }

    /// Parse a connection string (`Key=Value;...`, keys case-insensitive, values may hold `=`).
    pub fn from_connection_string(text: &str) -> Result<Account> {
        const WHAT: &str = "AZURE_STORAGE_CONNECTION_STRING";
        let mut get = std::collections::BTreeMap::new();
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((k, v)) = part.split_once('=') else {
                return Err(Error::usage(format!(
                    "{WHAT} has a part that is not Key=Value"
                )));
            };
            get.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        let dev = get
            .get("usedevelopmentstorage")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if dev {
            let base = get
                .get("developmentstorageproxyuri")
                .map(|u| u.trim_end_matches('/').to_string())
                .unwrap_or_else(|| "http://127.0.0.1".into());
            return Ok(Account {
                name: DEV_ACCOUNT.into(),
                endpoint: BlobEndpoint::parse(
                    &format!("{base}:10000/{DEV_ACCOUNT}"),
                    &format!("{WHAT}'s DevelopmentStorageProxyUri"),
                )?,
                auth: Auth::SharedKey(Key::decode(DEV_KEY, "the development key")?),
            });
        }
        let name = get.get("accountname").cloned();
        let endpoint = match (get.get("blobendpoint"), &name) {
            (Some(url), _) => BlobEndpoint::parse(url, &format!("{WHAT}'s BlobEndpoint"))?,
            (None, Some(name)) => {
                let proto = get
                    .get("defaultendpointsprotocol")
                    .map(|p| p.to_ascii_lowercase())
                    .unwrap_or_else(|| "https".into());
                if proto != "https" && proto != "http" {
                    return Err(Error::usage(format!(
                        "{WHAT}'s DefaultEndpointsProtocol is not http or https"
                    )));
                }
                let suffix = get
                    .get("endpointsuffix")
                    .map(String::as_str)
                    .unwrap_or("core.windows.net");
                BlobEndpoint::parse(
                    &format!("{proto}://{name}.blob.{suffix}"),
                    &format!("{WHAT}'s AccountName/EndpointSuffix"),
                )?
            }
            (None, None) => {
                return Err(Error::usage(format!(
                    "{WHAT} names neither AccountName nor BlobEndpoint"
                )));
            }
        };
        let auth = match (get.get("accountkey"), get.get("sharedaccesssignature")) {
            (Some(key), _) => {
                if name.is_none() {
                    return Err(Error::usage(format!(
                        "{WHAT} has an AccountKey but no AccountName"
                    )));
                }
                Auth::SharedKey(Key::decode(key, &format!("{WHAT}'s AccountKey"))?)
            }
            (None, Some(sas)) => Auth::Sas(Secret::new(sas.trim_start_matches('?'))),
            (None, None) => {
                return Err(Error::usage(format!(
                    "{WHAT} has neither AccountKey nor SharedAccessSignature (kasm-db does not \
                     write anonymously)"
                )));
            }
        };
        // With a SAS and a BlobEndpoint only, the account is the endpoint path's first segment
        // (Azurite's path-style URLs) or the host's first label (SAS requests are not signed
        // with it).
        let name = name.unwrap_or_else(|| {
            let first_segment = endpoint.base_path.trim_start_matches('/').split('/').next();
            match first_segment.filter(|s| !s.is_empty()) {
                Some(seg) => seg.to_string(),
                None => endpoint
                    .host
                    .split('.')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            }
        });
        Ok(Account {
            name,
            endpoint,
            auth,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(
        cs: Option<&str>,
        account: Option<&str>,
        key: Option<&str>,
        sas: Option<&str>,
    ) -> AzureEnv {
        AzureEnv {
            connection_string: cs.map(Secret::new),
            account: account.map(String::from),
            key: key.map(Secret::new),
            sas_token: sas.map(Secret::new),
        }
    }

    #[test]
    fn development_storage_is_azurite_on_loopback() {
        let a = Account::from_connection_string("UseDevelopmentStorage=true").unwrap();
        assert_eq!(a.name, DEV_ACCOUNT);
        assert_eq!(
            a.endpoint,
            BlobEndpoint {
                https: false,
                host: "127.0.0.1".into(),
                port: 10000,
                base_path: "/devstoreaccount1".into()
            }
        );
        assert!(matches!(a.auth, Auth::SharedKey(_)));
    }

    #[test]
    fn connection_strings_of_azure_and_of_azurite() {
        let a = Account::from_connection_string(
            "DefaultEndpointsProtocol=https;AccountName=kasmprod;AccountKey=a2V5a2V5;EndpointSuffix=core.usgovcloudapi.net",
        )
        .unwrap();
        assert_eq!(a.name, "kasmprod");
        assert_eq!(a.endpoint.host, "kasmprod.blob.core.usgovcloudapi.net");
        assert_eq!((a.endpoint.https, a.endpoint.port), (true, 443));
        assert_eq!(a.auth, Auth::SharedKey(Key(b"keykey".to_vec())));

        let a = Account::from_connection_string(&format!(
            "DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};\
             BlobEndpoint=http://127.0.0.1:41234/{DEV_ACCOUNT};"
        ))
        .unwrap();
        assert_eq!(a.endpoint.authority(), "127.0.0.1:41234");
        assert_eq!(a.endpoint.base_path, "/devstoreaccount1");

        let a = Account::from_connection_string(
            "BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=?sv=2022&sig=abc%3D",
        )
        .unwrap();
        assert_eq!(a.name, "acct");
        assert_eq!(a.endpoint.base_path, "");
        assert_eq!(a.auth, Auth::Sas(Secret::new("sv=2022&sig=abc%3D")));
        let a = Account::from_connection_string(
            "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;SharedAccessSignature=sv=1&sig=x",
        )
        .unwrap();
        assert_eq!(a.name, DEV_ACCOUNT);
    }

    #[test]
    fn account_and_key_or_sas_from_the_variables() {
        let a = Account::from_env(&env(None, Some("acct"), Some("a2V5"), None)).unwrap();
        assert_eq!(a.endpoint.host, "acct.blob.core.windows.net");
        assert_eq!(a.auth, Auth::SharedKey(Key(b"key".to_vec())));
        let a = Account::from_env(&env(None, Some("acct"), None, Some("?sv=1&sig=x"))).unwrap();
        assert_eq!(a.auth, Auth::Sas(Secret::new("sv=1&sig=x")));
        // The connection string wins.
        let a = Account::from_env(&env(
            Some("UseDevelopmentStorage=true"),
            Some("acct"),
            Some("a2V5"),
            None,
        ))
        .unwrap();
        assert_eq!(a.name, DEV_ACCOUNT);
    }

    #[test]
    fn errors_say_what_to_set_and_never_the_secret() {
        let e = Account::from_env(&AzureEnv::default()).unwrap_err();
        assert_eq!(e.kind(), crate::error::Kind::Usage);
        assert!(
            e.to_string().contains("AZURE_STORAGE_CONNECTION_STRING"),
            "{e}"
        );
        let e = Account::from_env(&env(None, Some("acct"), None, None)).unwrap_err();
        assert!(e.to_string().contains("AZURE_STORAGE_KEY"), "{e}");
        let e = Account::from_env(&env(None, Some("acct"), Some("not base64 !!secret"), None))
            .unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        for cs in [
            "AccountName=a;AccountKey=%%secret%%",
            "AccountKey=c2VjcmV0",
            "AccountName=a",
            "secretvalue",
            "AccountName=a;AccountKey=c2VjcmV0;BlobEndpoint=ftp://secret",
        ] {
            let e = Account::from_connection_string(cs).unwrap_err();
            assert_eq!(e.kind(), crate::error::Kind::Usage, "{cs}");
            assert!(!e.to_string().contains("secret"), "{e}");
            assert!(!e.to_string().contains("c2VjcmV0"), "{e}");
        }
        let a = Account::from_env(&env(None, Some("acct"), Some("c2VjcmV0"), None)).unwrap();
        assert!(!format!("{a:?}").contains("secret"));
        let a = Account::from_env(&env(None, Some("acct"), None, Some("sig=hidden"))).unwrap();
        assert!(!format!("{a:?}").contains("hidden"));
    }

    #[test]
    fn endpoints_parse_hosts_ports_and_paths() {
        let e = BlobEndpoint::parse("http://[::1]:10000/devstoreaccount1/", "x").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 10000));
        assert_eq!(e.authority(), "[::1]:10000");
        assert_eq!(e.base_path, "/devstoreaccount1");
        assert_eq!(e.host_header(), "[::1]:10000");
        let e = BlobEndpoint::parse("https://[::1]/", "x").unwrap();
        assert_eq!(
            (e.authority().as_str(), e.host_header().as_str()),
            ("[::1]:443", "[::1]")
        );
        let e = BlobEndpoint::parse("https://a.blob.core.windows.net", "x").unwrap();
        assert_eq!((e.port, e.base_path.as_str()), (443, ""));
        assert_eq!(e.host_header(), "a.blob.core.windows.net");
        for bad in ["ftp://x", "http://", "http://h:port", "https://h/?sig=x"] {
            assert!(BlobEndpoint::parse(bad, "x").is_err(), "{bad}");
        }
    }
}
