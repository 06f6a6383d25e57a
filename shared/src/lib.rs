//! `sluice`: everything the pipeline stages have in common.
//!
//! - [`trigger`]: decode every event shape into object references;
//! - [`store`]: the object-store trait and its S3, local and memory backends;
//! - [`idempotent`] and [`lineage`]: deterministic, conditional, replay-safe writes;
//! - [`error`], [`retry`] and [`dlq`]: classified failures, backoff, dead letters;
//! - [`runner`]: the glue between Lambda (or the CLI) and a [`runner::Stage`];
//! - [`telemetry`] and [`config`]: JSON logs, EMF metrics, validated configuration.
#![warn(missing_docs)]

pub mod aws;
pub mod columns;
pub mod commit;
pub mod config;
pub mod contract;
pub mod deployment;
pub mod dlq;
pub mod error;
pub mod idempotent;
pub mod jsonl;
pub mod lineage;
pub mod retry;
pub mod runner;
pub mod sample;
pub mod spool;
pub mod store;
pub mod telemetry;
pub mod trigger;

pub use error::{Error, ErrorKind, Result};
pub use runner::{ObjectContext, Runner, Runtime, Stage};
pub use store::{ObjectStore, ObjectStoreExt};
pub use telemetry::Counts;
pub use trigger::ObjectRef;
