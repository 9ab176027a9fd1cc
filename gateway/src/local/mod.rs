//! Local execution of fine-tuning jobs. The runner's [`LocalExecutor`] marks a job local and
//! mirrors what its worker wrote; worker processes (`tuneguard worker`, supervised by `serve`)
//! lease jobs from the store and train them with the trainer library.
//!
//! The seam between the two is the job's directory (`data_dir/jobs/<id>/`): the trainer's
//! output (`run/`: metrics.jsonl, checkpoints/step-N/, the final adapter), `resolved.json`
//! (the hyperparameters the worker chose) and `outcome.json` (written last, atomically). The
//! runner mirrors them into OpenAI's events and checkpoints with a cursor stored in the job's
//! `exec_state`, in the same transaction as the observations, so each is mirrored once even
//! when a worker re-trains steps after a crash (it re-trains them bit-identically from the
//! last checkpoint). Each checkpoint's adapter, and the final one, is then stored as a blob
//! ([`artifact`]) that the checkpoint record (or the job's pipeline) names.

pub mod artifact;
pub mod executor;
pub mod hyper;
pub mod jobfiles;
pub mod layout;
pub mod lease_keeper;
pub mod progress;
pub mod retention;
pub mod routing;
pub mod supervise;
pub mod worker;

pub use executor::LocalExecutor;
pub use routing::RoutingExecutor;
