//! The job pipeline: durable steps (plan → screen → transform → queue → run → done), the
//! runner task that drives them, and the seams other modules plug into.

pub mod builtin;
pub mod metered;
mod owed_cancel;
mod pause_checks;
pub mod route;
mod run_step;
mod runner;
pub mod screening;
pub mod seams;
mod steps;

pub use route::{route, Route};
pub use runner::{Runner, RunnerHandle};
pub use seams::*;
