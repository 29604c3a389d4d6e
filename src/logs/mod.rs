//! Log ingestion and retention (issue 3): parsing records, routing by retention class,
//! storing by binary COPY into the partitioned `logs` relation, and purging exactly.

pub mod record;
