//! The Azure Storage credentials of the environment snapshot, carried with the configuration so
//! that every place that opens a storage (`backup`, `backups`, `restore`, `serve`'s jobs, the
//! report) has them for an `az://` target without reading the environment itself.
//!
//! Not a config section: no file key or `KASM_DB_*` variable sets them, only the standard Azure
//! variables `AZURE_STORAGE_CONNECTION_STRING`, `AZURE_STORAGE_ACCOUNT`, `AZURE_STORAGE_KEY`
//! and `AZURE_STORAGE_SAS_TOKEN`. Pure: it copies strings out of the map it is given. Keys,
//! SAS tokens and connection strings are [`Secret`]s and must never be printed.

use super::Secret;
use std::collections::BTreeMap;

/// The standard Azure Storage variables, as they were in the environment (empty ones absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AzureEnv {
    /// `AZURE_STORAGE_CONNECTION_STRING` (may hold `AccountKey=` or `SharedAccessSignature=`).
    pub connection_string: Option<Secret>,
    /// `AZURE_STORAGE_ACCOUNT`: the storage account's name (not a secret).
    pub account: Option<String>,
    /// `AZURE_STORAGE_KEY`: the account's shared key (base64).
    pub key: Option<Secret>,
    /// `AZURE_STORAGE_SAS_TOKEN`: a shared access signature (`sv=...&sig=...`).
    pub sas_token: Option<Secret>,
}

impl AzureEnv {
    /// The variables' values in `env`; blank values count as unset.
    pub fn from_env(env: &BTreeMap<String, String>) -> AzureEnv {
        let get = |name: &str| {
            env.get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        AzureEnv {
            connection_string: get("AZURE_STORAGE_CONNECTION_STRING").map(Secret::new),
            account: get("AZURE_STORAGE_ACCOUNT"),
            key: get("AZURE_STORAGE_KEY").map(Secret::new),
            sas_token: get("AZURE_STORAGE_SAS_TOKEN").map(Secret::new),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_standard_variables_and_hides_the_secrets() {
        let env: BTreeMap<String, String> = [
            ("AZURE_STORAGE_ACCOUNT", "acct"),
            ("AZURE_STORAGE_KEY", "c2VjcmV0LWtleQ=="),
            ("AZURE_STORAGE_SAS_TOKEN", " "),
            ("OTHER", "x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let a = AzureEnv::from_env(&env);
        assert_eq!(a.account.as_deref(), Some("acct"));
        assert_eq!(a.key.as_ref().map(Secret::expose), Some("c2VjcmV0LWtleQ=="));
        assert!(a.sas_token.is_none(), "blank is unset");
        assert!(a.connection_string.is_none());
        let shown = format!("{a:?}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
    }
}
