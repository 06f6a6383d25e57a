//! The curate stage (being written).
