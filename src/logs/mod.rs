//! Log ingestion and retention (issue 3): parsing records, routing by retention class,
//! storing by binary COPY into the partitioned `logs` relation, and purging exactly.

pub mod cap_plan;
pub mod copy;
pub mod generate;
pub mod ingest;
pub mod partition_ddl;
pub mod partition_plan;
pub mod purge;
pub mod purge_cap;
pub mod purge_drop;
pub mod reader;
pub mod record;
pub mod store;
