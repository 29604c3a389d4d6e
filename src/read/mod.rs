//! The read side (issue 24): what `kasm-db logs`, the read API and the panel of `serve` ask of
//! the `logs` relation. One set of filters ([`filter`]), one opaque cursor ([`cursor`]), one
//! place that turns them into SQL ([`sql`], pure) and runs it ([`query`], the only I/O), one
//! rendering of a record for people, NDJSON and CSV ([`render`], pure).
//!
//! Two orders, both total:
//! - **Pages** (`-n`, `--before`, `--after`, the API's `next`) are ordered by
//!   `(ingest_date, log_id)`, as the contract says. The newest N are found through widening
//!   time windows (the BRIN index on `ingest_date` and the partition bounds narrow each one), so
//!   the newest records of a 10M-row store are read without sorting the store.
//! - **The tail** (`--follow`, the SSE stream) is ordered by `(txid, ingest_date, log_id)`,
//!   where `txid` is
//!   the writing transaction's id (a column defaulting to `txid_current()`, migration 6). A
//!   record is emitted only once every transaction that could precede it has ended (its
//!   `txid` is below the oldest still-running transaction id), so a record committed late with an
//!   earlier `ingest_date` is still emitted, exactly once, and a reconnect resumes after the
//!   last cursor without a gap or a repeat.
//!
//! Never writes to the database, never builds SQL by pasting a user's value into it (every
//! value is a bound parameter: a quote in `--grep` is text), never reads the environment.

pub mod cursor;
pub mod filter;
pub mod query;
pub mod render;
pub mod sql;

pub use cursor::Cursor;
pub use filter::Filter;
pub use query::LogRecord;
