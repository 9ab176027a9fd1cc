//! Local training: a policy's `[training]`, `[regularizer]`, `[inoculation]` and monitor
//! cadence turned into the trainer's typed run config (`plan`), and `tuneguard train`
//! (`command`).

pub mod command;
pub mod plan;
