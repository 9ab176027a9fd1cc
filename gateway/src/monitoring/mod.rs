//! Checkpoint monitoring of local jobs: the I/O around the `monitor` crate's pure core.
//!
//! The worker ([`worker`]) evaluates step 0 (the base model, before training) and every
//! checkpoint the trainer writes: judge-free probe gaps and in-domain loss through the engine
//! ([`engine_eval`]), the refusal rate on harmful requests by generation and the refusal-keyword
//! filter, and — with a judge configured — sampled answers judged over HTTP ([`judge_http`],
//! cached in SQLite by [`judge_cache`]). Each checkpoint's measurement is written once,
//! atomically, to `monitor/step-N.json` in the job directory ([`record`]).
//!
//! The runner ([`mirror`], called from `LocalExecutor::poll`) mirrors each record exactly once
//! (a cursor in the job's `exec_state`) as an event with the signals, updates the Prometheus
//! gauges ([`prom`]), evaluates the policy's `[[monitor.rules]]` (onsets included) and takes the
//! strongest new action ([`actions`]): warn, pause, cancel, or rollback to the last checkpoint
//! under every threshold. [`report`] serves the per-job report from the mirrored events.

pub mod actions;
pub mod baseline;
pub mod chat_answers;
pub mod engine_eval;
pub mod holdout;
pub mod http_post;
pub mod judge_cache;
pub mod judge_engine;
pub mod judge_http;
pub mod mirror;
pub mod prom;
pub mod record;
pub mod report;
pub mod sets;
pub mod upstream;
pub mod worker;
