//! The config of an `openai` section: where the servers are, how hard to drive them, how to
//! sample, and where calls are cached. The API key is never in the config: `api_key_env`
//! names the environment variable that holds it.

use std::path::PathBuf;

use rco_core::registry::Validate;
use rco_core::ConfigProblem;
use schemars::JsonSchema;
use serde::Deserialize;

/// One `openai` critic, actor or judge section.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenAiConfig {
    /// Base URLs of the servers, up to the `/chat/completions` path, for example
    /// `http://127.0.0.1:8080/v1`. Requests are spread across them.
    pub base_urls: Vec<String>,
    /// The model name the servers expect in requests.
    pub model: String,
    /// Name of the environment variable holding the API key (sent as a bearer token).
    /// Unset: no key is sent.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Most requests in flight per server.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Seconds before a request is abandoned (and retried).
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
    /// Retries of one call on 429, 5xx, timeouts, connection errors and unreadable bodies.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// First backoff in seconds; doubles with each retry, with jitter, up to `max_backoff_s`.
    #[serde(default = "default_backoff")]
    pub backoff_s: f64,
    #[serde(default = "default_max_backoff")]
    pub max_backoff_s: f64,
    /// Most requests per second over all servers of this section.
    #[serde(default)]
    pub requests_per_second: Option<f64>,
    /// Most tokens (prompt, estimated at 4 characters a token, plus `max_tokens`) per minute.
    #[serde(default)]
    pub tokens_per_minute: Option<f64>,
    #[serde(default)]
    pub sampling: RemoteSampling,
    /// A system message sent before every prompt.
    #[serde(default)]
    pub system: Option<String>,
    /// Ask the server for the log-probabilities of sampled tokens (critic: their sum is the
    /// reference log-prob the RCO loss needs).
    #[serde(default)]
    pub logprobs: bool,
    /// Keep every answer in the call cache, so that a rerun repeats no finished call.
    #[serde(default = "yes")]
    pub cache: bool,
    /// The cache file; default `cache/calls.jsonl` in the run directory. Point several runs
    /// at one file to share answers between them.
    #[serde(default)]
    pub cache_path: Option<PathBuf>,
    /// When a request ends with an assistant message (an answer prefix such as the judge's
    /// `Verdict: [[`), also send `continue_final_message = true` and
    /// `add_generation_prompt = false`, which vLLM and SGLang need to continue that message
    /// instead of starting a new assistant turn after it. Turn it off for a server that
    /// rejects unknown fields; `extra` overrides either field.
    #[serde(default = "yes")]
    pub continue_final_message: bool,
    /// Extra fields merged into every request body (server-specific options).
    #[serde(default)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Sampling parameters sent with every request.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteSampling {
    pub temperature: f64,
    pub top_p: f64,
    pub max_tokens: u32,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Send each call's derived seed (servers that honour it then sample reproducibly).
    pub seed: bool,
}

impl Default for RemoteSampling {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            max_tokens: 512,
            stop: Vec::new(),
            seed: true,
        }
    }
}

fn default_concurrency() -> usize {
    16
}
fn default_timeout() -> f64 {
    120.0
}
fn default_retries() -> u32 {
    8
}
fn default_backoff() -> f64 {
    0.5
}
fn default_max_backoff() -> f64 {
    60.0
}
fn yes() -> bool {
    true
}

impl Validate for OpenAiConfig {
    fn problems(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        if self.base_urls.is_empty() {
            p.push(ConfigProblem::new("base_urls", "needs at least one URL"));
        }
        for (i, url) in self.base_urls.iter().enumerate() {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                p.push(ConfigProblem::new(
                    format!("base_urls[{i}]"),
                    format!("`{url}` is not an http:// or https:// URL"),
                ));
            }
        }
        if self.model.is_empty() {
            p.push(ConfigProblem::new("model", "must not be empty"));
        }
        if self.concurrency == 0 {
            p.push(ConfigProblem::new("concurrency", "must be at least 1"));
        }
        for (key, value) in [
            ("timeout_s", self.timeout_s),
            ("max_backoff_s", self.max_backoff_s),
        ] {
            if !(value > 0.0 && value.is_finite()) {
                p.push(ConfigProblem::new(key, format!("must be > 0, got {value}")));
            }
        }
        if !(self.backoff_s >= 0.0 && self.backoff_s.is_finite()) {
            p.push(ConfigProblem::new(
                "backoff_s",
                format!("must be >= 0, got {}", self.backoff_s),
            ));
        }
        for (key, value) in [
            ("requests_per_second", self.requests_per_second),
            ("tokens_per_minute", self.tokens_per_minute),
        ] {
            if let Some(v) = value {
                if !(v > 0.0 && v.is_finite()) {
                    p.push(ConfigProblem::new(key, format!("must be > 0, got {v}")));
                }
            }
        }
        if let Some(var) = &self.api_key_env {
            if var.is_empty() || var.contains('=') {
                p.push(ConfigProblem::new(
                    "api_key_env",
                    "must name an environment variable (the key itself never goes in the config)",
                ));
            }
        }
        let s = &self.sampling;
        if !(s.temperature >= 0.0 && s.temperature.is_finite()) {
            p.push(ConfigProblem::new(
                "sampling.temperature",
                format!("must be >= 0, got {}", s.temperature),
            ));
        }
        if !(s.top_p > 0.0 && s.top_p <= 1.0) {
            p.push(ConfigProblem::new(
                "sampling.top_p",
                format!("must be in (0, 1], got {}", s.top_p),
            ));
        }
        if s.max_tokens == 0 {
            p.push(ConfigProblem::new(
                "sampling.max_tokens",
                "must be at least 1",
            ));
        }
        for key in ["model", "messages", "stream", "n"] {
            if self.extra.contains_key(key) {
                p.push(ConfigProblem::new(
                    format!("extra.{key}"),
                    "is set by rco itself and cannot be overridden",
                ));
            }
        }
        p
    }
}

/// Seconds to wait from a `Retry-After` header: delay-seconds (fractions accepted) only;
/// an HTTP date gives `None` and the backoff applies.
pub fn parse_retry_after(value: &str) -> Option<f64> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
}
