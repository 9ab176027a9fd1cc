//! trainer crate.
