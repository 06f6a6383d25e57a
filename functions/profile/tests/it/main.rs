//! Profile's integration tests (`cargo test -p sluice-profile --test it`).
//!
//! One test binary per crate: each integration test binary links the whole
//! dependency tree (the AWS SDK, Arrow, Parquet), so separate files cost a
//! link and a few hundred MB of disk each.

mod pipeline;
mod profile;
