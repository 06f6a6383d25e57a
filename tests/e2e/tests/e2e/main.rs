//! The end-to-end tests against LocalStack (`cargo test --workspace --features sluice-e2e/localstack --test e2e`, from `make e2e`; built only with the feature `localstack`).
//!
//! One test binary per crate: each integration test binary links the whole
//! dependency tree (the AWS SDK, Arrow, Parquet), so separate files cost a
//! link and a few hundred MB of disk each.

mod faults;
mod localstack;
mod ops;
