//! tuneguard operator policies: the policy file schema, validation, matching and the
//! resolved per-job [`Plan`]. Pure: no async runtime, no network; the only I/O is reading
//! a policy directory ([`PolicySet::load_dir`], [`check_dir`]).
//!
//! # Layout
//! A policy set is a directory of `<name>.toml` files, one policy per file; the file stem is
//! the policy's name (`a-z`, `0-9`, `-`, `_`). Other files are ignored. The file format is
//! documented in `policies/README.md`. Keys left out take documented defaults; unknown keys
//! and out-of-range values are errors naming the file and key, e.g.
//! `policies/strict.toml: key "interleave.fraction": must be in (0, 1], got 1.5`.
//!
//! # Precedence
//! Among the policies whose `[match]` rule holds for a job (every given condition: tenant in
//! `tenants`, model matches one of the `models` globs, every `metadata` pair equal):
//! 1. the highest `priority` wins (default 0);
//! 2. then the most specific rule: one point for a `tenants` list, one for a `models` list,
//!    one per `metadata` pair;
//! 3. then the name, alphabetically first.
//!
//! The policy named `default` takes no `[match]` or `priority`; it is used only when no other
//! policy matches. Without it, a job that matches nothing is refused
//! ([`PolicyError::NoMatch`]).
//!
//! # Version
//! [`PolicySet::version`] is the sha256 of the set's canonical JSON (validated policies sorted
//! by name), so jobs can record exactly which settings they ran with.
#![forbid(unsafe_code)]

mod check;
mod defaults;
mod error;
mod matching;
mod parse;
mod parse_interleave;
mod parse_monitor;
mod parse_training;
mod plan;
mod reader;
mod refusal_tokens;
mod schema;
mod schema_monitor;
mod set;

pub use check::{check_dir, warnings, CheckReport};
pub use defaults::*;
pub use error::PolicyError;
pub use matching::{specificity, Candidate, JobContext};
pub use parse::DEFAULT_POLICY;
pub use plan::Plan;
pub use refusal_tokens::refusal_tokens;
pub use schema::*;
pub use set::{load_file, read_dir_files, PolicySet, EMBEDDED_DEFAULT};

#[cfg(test)]
mod tests;
