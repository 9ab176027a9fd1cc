//! gateway crate.
