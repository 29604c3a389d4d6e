//! Maintenance of the PostgreSQL database behind Kasm (issue 8): `size` measures it against
//! the sizing guide's tiers, `vacuum` finds bloat and wraparound risk and repairs them, and
//! `samples` records sizes over time for `serve` and `report`.
//!
//! The judgements (`assess`, `policy`) are pure and unit-tested; `size`, `vacuum` and
//! `samples` do the I/O. Works on any database, Kasm's own included: nothing here requires or
//! creates kasm-db's schema, and nothing here ever drops or deletes rows (that is purge's job).

pub mod assess;
pub mod cap_check;
pub mod policy;
pub mod samples;
pub mod size;
pub mod vacuum;
pub mod vacuum_report;
