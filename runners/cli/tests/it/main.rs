//! The integration tests of the `rco` binary, in one test binary: the helpers every area
//! shares in `util`, then one module per area.
//!
//! - `cli`: the quickstart end to end, resume after `kill -9`, bad input, the config schema
//!   and the example configs.
//! - `remote`: runs against OpenAI-compatible test servers that inject faults.
//! - `serve`: `rco serve` over SmolLM2-135M-Instruct and over the quickstart critic.
//! - `scheduling`: `rco serve`'s continuous batching, prompt limits and cancellation.
//! - `soak`: 32 clients on `rco serve` for a minute (ignored; `scripts/test.sh` runs it alone).
//! - `real_servers`: collections against llama.cpp and `rco serve` serving SmolLM2.
//! - `judges`: a judge written in Python (`kind = "command"`) through a whole run;
//!   `rco judge-eval` on the built-in preference pairs; `rco rejudge`, the judge ablation.
//! - `report_page`: `report.html` rendered by headless Chromium.
//! - `tasks`: the math and code suites with the verifier judges and actors that write
//!   their own first answers.
//!
//! Run one area with `cargo test -p rco-cli --test it AREA::`.

mod util;

mod cli;
mod judges;
mod real_servers;
mod remote;
mod report_page;
mod scheduling;
mod serve;
mod soak;
mod tasks;
