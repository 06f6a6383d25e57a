//! Lambda entry point of the profile stage.
fn main() {}
