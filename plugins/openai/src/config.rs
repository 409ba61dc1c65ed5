//! The config of an `openai` section: where the servers are, how hard to drive them, how to
//! sample, and where calls are cached. The API key is never in the config: `api_key_env`
//! names the environment variable that holds it.

use std::path::PathBuf;

use rco_core::registry::{Validate, ValidateContext};
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
    /// Judges only: read the verdict from the server's probabilities of `A`, `B` and `C` as
    /// the first token after the pairwise answer prefix (which must then be set), asked as
    /// `logprobs` with `top_logprobs = 20`, instead of from the sampled text. Each judgement
    /// then carries `prob_a` = P(A) + P(C) / 2, which `reward.mode = "soft"` averages over
    /// both orders: a judge that prefers one slot still tells the answers apart by how
    /// much. A letter outside the top 20 counts as probability 0.
    #[serde(default)]
    pub verdict_probabilities: bool,
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

/// API hosts that always want a key: a section naming one without `api_key_env` would fail
/// on its first call with a 401.
const HOSTS_NEEDING_A_KEY: [&str; 9] = [
    "api.openai.com",
    "api.anthropic.com",
    "api.together.xyz",
    "openrouter.ai",
    "api.groq.com",
    "api.deepseek.com",
    "api.mistral.ai",
    "api.fireworks.ai",
    "generativelanguage.googleapis.com",
];

fn host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority
        .rsplit('@')
        .next()
        .unwrap_or(authority)
        .split(':')
        .next()
        .unwrap_or(authority)
}

impl Validate for OpenAiConfig {
    /// The section's own checks, and what a run would hit on its first call: a key variable
    /// that is not set, or a hosted API named without a key.
    fn problems(&self, _ctx: &ValidateContext) -> Vec<ConfigProblem> {
        let mut p = self.check();
        match &self.api_key_env {
            Some(var) if !var.is_empty() && !var.contains('=') => {
                if std::env::var(var).map_or(true, |v| v.trim().is_empty()) {
                    p.push(ConfigProblem::new(
                        "api_key_env",
                        format!("the environment variable `{var}` is not set (or empty)"),
                    ));
                }
            }
            Some(_) => {}
            None => {
                for (i, url) in self.base_urls.iter().enumerate() {
                    let host = host(url);
                    if HOSTS_NEEDING_A_KEY
                        .iter()
                        .any(|h| host == *h || host.ends_with(&format!(".{h}")))
                    {
                        p.push(ConfigProblem::new(
                            format!("base_urls[{i}]"),
                            format!("{host} needs an API key: set `api_key_env` to the name of the variable that holds it"),
                        ));
                    }
                }
            }
        }
        p
    }
}

impl OpenAiConfig {
    /// Every problem of the section on its own, keys relative to it.
    pub fn check(&self) -> Vec<ConfigProblem> {
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

/// An `openai` judge section: an [`OpenAiConfig`] whose answer prefixes the templates may ask
/// the server to continue.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct OpenAiJudgeConfig(pub OpenAiConfig);

impl Validate for OpenAiJudgeConfig {
    /// As [`OpenAiConfig`], and an answer prefix in the templates needs the server to
    /// continue the final assistant message.
    fn problems(&self, ctx: &ValidateContext) -> Vec<ConfigProblem> {
        let mut p = self.0.problems(ctx);
        p.extend(rco_core::judge::verdict_prefix_problems(
            self.0.verdict_probabilities,
            &ctx.templates,
        ));
        if !self.0.continue_final_message {
            for (name, t) in ctx.templates.named() {
                for (key, prefix) in [
                    ("pairwise_answer_prefix", &t.pairwise_answer_prefix),
                    ("pointwise_answer_prefix", &t.pointwise_answer_prefix),
                ] {
                    if !prefix.is_empty() {
                        p.push(ConfigProblem::new(
                            "continue_final_message",
                            format!("is false, so the server starts a new turn after `templates.{name}.{key}` ({prefix:?}) instead of continuing it: the verdict would be read from an answer the prefix is not part of; set it to true or drop the prefix"),
                        ));
                    }
                }
            }
        }
        p
    }
}

#[cfg(test)]
mod validate_tests {
    use super::*;

    fn config(extra: serde_json::Value) -> OpenAiConfig {
        let mut section = serde_json::json!({"base_urls": ["http://127.0.0.1:9/v1"], "model": "m"});
        if let (Some(map), serde_json::Value::Object(extra)) = (section.as_object_mut(), extra) {
            map.extend(extra);
        }
        rco_core::registry::parse_config(&section).unwrap()
    }

    #[test]
    fn a_check_names_what_the_first_call_would_hit() {
        let ctx = ValidateContext::new("judge");
        let unset = config(serde_json::json!({"api_key_env": "RCO_TEST_KEY_THAT_IS_NOT_SET"}));
        let p = unset.problems(&ctx);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].key, "api_key_env");
        let hosted = config(serde_json::json!({"base_urls": ["https://api.openai.com/v1"]}));
        let p = hosted.problems(&ctx);
        assert_eq!(p[0].key, "base_urls[0]");
        assert!(p[0].message.contains("api_key_env"), "{p:?}");
        assert!(config(serde_json::json!({})).problems(&ctx).is_empty());
    }

    #[test]
    fn a_judge_that_cannot_continue_a_prefix_is_refused() {
        let mut ctx = ValidateContext::new("judge");
        ctx.templates.default.pairwise_answer_prefix = "Verdict: [[".into();
        let judge = OpenAiJudgeConfig(config(serde_json::json!({"continue_final_message": false})));
        let p = judge.problems(&ctx);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].key, "continue_final_message");
        assert!(p[0]
            .message
            .contains("templates.default.pairwise_answer_prefix"));
        let judge = OpenAiJudgeConfig(config(serde_json::json!({})));
        assert!(judge.problems(&ctx).is_empty());
    }
}
