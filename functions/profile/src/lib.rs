//! The profile stage (being written).
