//! Azurite's blob service (Microsoft's Azure Storage emulator, Node.js, installed by
//! `scripts/setup` from npm) for the Azure tests: one per test binary on a free loopback port,
//! its data in a temporary folder, telemetry off (started on first use, killed and its folder removed at
//! process exit). Azurite checks SharedKey signatures and SAS tokens of its well-known
//! development account `devstoreaccount1`. Containers are made, and what the binary left behind
//! is looked at, through kasm-db's own Azure storage.
#![allow(dead_code)]

use crate::common::s3::{Server, block_on};
use kasm_db::archive::storage::Storage;
use kasm_db::archive::storage::azure::AzureStorage;
use kasm_db::archive::storage::azure::account::{DEV_ACCOUNT, DEV_KEY};
use kasm_db::config::Secret;
use kasm_db::config::azure::AzureEnv;
use std::sync::OnceLock;

static SERVER: OnceLock<Server> = OnceLock::new();

fn server() -> &'static Server {
    SERVER.get_or_init(|| {
        let data = tempfile::tempdir().expect("azurite data dir");
        let dir = data.path().to_string_lossy().into_owned();
        Server::start(
            "azurite-blob",
            |port| {
                [
                    "--blobHost",
                    "127.0.0.1",
                    "--blobPort",
                    &port.to_string(),
                    "--location",
                    &dir,
                    "--skipApiVersionCheck",
                    "--disableTelemetry",
                    "--silent",
                ]
                .map(String::from)
                .to_vec()
            },
            Some(data),
        )
    })
}

/// The blob endpoint (`http://127.0.0.1:PORT/devstoreaccount1`).
pub fn blob_endpoint() -> String {
    format!("http://127.0.0.1:{}/{DEV_ACCOUNT}", server().port)
}

/// The connection string an operator writes for Azurite, with `key` as the account key.
pub fn connection_string_with_key(key: &str) -> String {
    format!(
        "DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={key};BlobEndpoint={};",
        blob_endpoint()
    )
}

pub fn connection_string() -> String {
    connection_string_with_key(DEV_KEY)
}

/// Environment for the `kasm-db` binary: the standard variable only.
pub fn env() -> Vec<(&'static str, String)> {
    vec![("AZURE_STORAGE_CONNECTION_STRING", connection_string())]
}

/// kasm-db's storage of `container`/`prefix` with the development account.
pub fn storage(container: &str, prefix: &str) -> AzureStorage {
    let env = AzureEnv {
        connection_string: Some(Secret::new(connection_string())),
        ..AzureEnv::default()
    };
    AzureStorage::open(container.into(), prefix.into(), &env, &Default::default())
        .expect("azure storage")
}

/// A new, empty container with a unique name.
pub fn container() -> String {
    let name = format!("kasm-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    block_on(storage(&name, "").create_container()).expect("create container");
    name
}

/// Every committed blob in the container, sorted.
pub fn blobs(container: &str) -> Vec<String> {
    block_on(storage(container, "").list())
        .expect("list")
        .into_iter()
        .map(|o| o.name)
        .collect()
}

/// Blobs with staged blocks that were never committed.
pub fn uncommitted(container: &str) -> Vec<String> {
    block_on(storage(container, "").uncommitted()).expect("list uncommitted")
}

/// A blob's bytes.
pub fn get(container: &str, name: &str) -> Vec<u8> {
    block_on(kasm_db::archive::storage::get_small(
        &storage(container, ""),
        name,
    ))
    .expect("get")
    .expect("blob exists")
}
