//! rco-cli: the `rco` command as a library, so that a crate outside this repository can
//! build the whole CLI with its own plugins linked in (`fn main() -> ExitCode {
//! rco_cli::main() }`).
//!
//! # Design
//! [`config`] loads and validates the run config (figment layering, every problem with its
//! key); [`run`] is the experiment, one module per stage over a crash-safe run directory;
//! [`report`] builds the tables and [`report_html`] the page; [`export_groups`] writes collected groups for other
//! trainers; [`compare`] puts finished runs side by side; [`serve`] is the OpenAI-compatible model server; [`cli`]
//! parses arguments and calls them. No code here names a plugin kind: plugins come from
//! the registry, and what differs between them travels in their build context.

pub mod cli;
pub mod compare;
pub mod config;
pub mod export_groups;
pub mod judge_eval;
pub mod logging;
pub mod progress;
pub mod report;
pub mod report_html;
pub mod run;
pub mod serve;

pub use cli::main;
