//! The toolkit's integration tests (`cargo test -p sluice --test it`).
//!
//! One test binary per crate: each integration test binary links the whole
//! dependency tree (the AWS SDK, Arrow, Parquet), so separate files cost a
//! link and a few hundred MB of disk each.

mod events;
mod fuzz;
mod fuzz_contract;
mod fuzz_trigger;
mod runner;
mod sample;
mod spool;
