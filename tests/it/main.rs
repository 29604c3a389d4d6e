//! The one integration test binary: every test of the built `kasm-db` against real PostgreSQL
//! clusters, real pg_* tools and real emulators (moto, Azurite, s3rver, rsyslog), one module per
//! area, sharing the harness in `common` (one primary and one standby cluster for the whole
//! process, one port allocator, `wait_until`). One binary links the crate once; run one area
//! with `cargo test --test it pitr::`.
//!
//! Every test shares this process with all the others: none may change the process
//! environment, the current directory or a global tracing subscriber, or hand out a port,
//! bucket, container or database another test could also be given.

mod common;

mod azure;
mod backup;
mod backups_check;
mod compression;
mod copies;
mod deploy;
mod follow;
mod forward;
mod foundation;
mod hec_clients;
mod kasm_shaped;
mod libpq_env;
mod locks;
mod logs;
mod logs_later;
mod maintenance;
mod majors;
mod managed_role;
mod notify;
mod panel;
mod pitr;
mod private_files;
mod proxy;
mod purge;
mod purge_cap;
mod read;
mod report;
mod restore;
mod restore_members;
mod roles;
mod s3_compat;
mod serve;
mod sizing;
mod syslog_udp;
mod tidy;
mod tls;
