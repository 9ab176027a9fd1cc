//! selector crate.
