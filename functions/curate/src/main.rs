//! Lambda entry point of the curate stage.
fn main() {}
