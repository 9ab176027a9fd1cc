//! Unit tests: inline policy text in, exact messages and values out.

mod layers;
mod load;
mod matching;
mod monitor;
mod plan;
mod validation;

use crate::{Policy, PolicyError, PolicySet};
use std::path::Path;

/// Parses `text` as `policies/strict.toml`.
pub(super) fn one(text: &str) -> Result<Policy, PolicyError> {
    PolicySet::from_texts(Path::new("policies"), &[("strict.toml", text)])
        .map(|s| s.policies()[0].clone())
}

/// The error message of parsing `text` as `policies/strict.toml`.
pub(super) fn err(text: &str) -> String {
    match one(text) {
        Ok(p) => panic!("expected an error, got {p:?}"),
        Err(e) => e.to_string(),
    }
}
