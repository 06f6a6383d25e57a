//! Lambda entry point of the ingest stage.
fn main() {}
