//! rco-plugin-process: a judge written in any language (`kind = "command"`).
//!
//! # Design
//! - [`protocol`]: the JSON lines a judge process reads and writes.
//! - [`worker`]: one child process: started, fed a batch of requests, its answers matched by
//!   `id`, killed and started again when it dies or stops answering, its stderr logged.
//! - [`judge`]: the plugin: a pool of workers, batches split between them, answers turned
//!   into verdicts and scores.

pub mod judge;
pub mod protocol;
pub mod worker;
