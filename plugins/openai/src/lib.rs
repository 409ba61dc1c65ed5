//! rco-plugin-openai: critic, actor and judge (`kind = "openai"`) behind any
//! OpenAI-compatible chat-completions server — vLLM, SGLang, llama.cpp, `rco serve` or a
//! hosted API.
//!
//! # Design
//! [`client::Client`] owns everything about the wire: a pool of endpoints per distinct set of
//! URLs and limits (shared by every section that names them), retries, rate limits, the
//! persistent [`cache::CallCache`] and the run's ledger. The three plugins only turn the
//! framework's requests into calls — one call per sample, each with its own derived seed
//! and sample index, so that the cache key of every sample is stable — and answers back
//! into critiques, refinements and verdicts. [`testing`] has the servers the tests and
//! benchmarks drive it against.

pub mod cache;
pub mod client;
pub mod config;
pub mod plugins;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;

pub use client::{Call, Client, Message};
pub use config::OpenAiConfig;
