//! The chat-completions client: a pool of endpoints with a concurrency limit each, optional
//! request and token rate limits, retries with exponential backoff and jitter (honouring
//! `Retry-After`), the call cache, and the run's ledger.
//!
//! Retried: 408, 429 (unless the quota is exhausted), 5xx, timeouts, connection errors and
//! bodies that are not a chat completion. Not retried: every other 4xx and an exhausted
//! quota — the call fails at once with the endpoint and the status, and the run stops.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rand::Rng;
use rco_core::usage::{Usage, UsageLedger};
use rco_core::{Error, Result};
use serde_json::{json, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::cache::{self, Answer, CallCache};
use crate::config::{parse_retry_after, OpenAiConfig};

/// Alternatives asked for at each position by a judge with `verdict_probabilities` (the
/// most OpenAI's API gives).
pub const TOP_LOGPROBS: u32 = 20;

/// One chat message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// One call: the messages, which sample of them this is, and its seed.
#[derive(Debug, Clone)]
pub struct Call {
    pub messages: Vec<Message>,
    pub sample: usize,
    pub seed: u64,
}

struct Endpoint {
    url: String,
    slots: Arc<Semaphore>,
}

/// Servers that share limits: every section naming the same URLs and limits shares a pool.
pub struct Pool {
    endpoints: Vec<Endpoint>,
    any: Arc<Semaphore>,
    next: AtomicUsize,
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
}

struct Lease {
    index: usize,
    _slot: OwnedSemaphorePermit,
    _any: OwnedSemaphorePermit,
}

impl Pool {
    fn shared(config: &OpenAiConfig) -> Arc<Pool> {
        static POOLS: OnceLock<Mutex<HashMap<String, Arc<Pool>>>> = OnceLock::new();
        let key = format!(
            "{}|{}|{:?}|{:?}",
            config.base_urls.join(","),
            config.concurrency,
            config.requests_per_second,
            config.tokens_per_minute
        );
        let mut pools = POOLS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        pools
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Pool {
                    endpoints: config
                        .base_urls
                        .iter()
                        .map(|url| Endpoint {
                            url: url.trim_end_matches('/').to_string(),
                            slots: Arc::new(Semaphore::new(config.concurrency)),
                        })
                        .collect(),
                    any: Arc::new(Semaphore::new(config.concurrency * config.base_urls.len())),
                    next: AtomicUsize::new(0),
                    requests: config
                        .requests_per_second
                        .map(|r| Bucket::new(r, r.max(1.0))),
                    tokens: config
                        .tokens_per_minute
                        .map(|t| Bucket::new(t / 60.0, t.max(1.0))),
                })
            })
            .clone()
    }

    /// A free slot on some endpoint, trying the least recently picked first and `avoid`
    /// (the endpoint that just failed this call) last.
    async fn lease(&self, avoid: Option<usize>) -> Result<Lease> {
        let any = self
            .any
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::Other(e.to_string()))?;
        let n = self.endpoints.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let order = (0..n)
            .map(|k| (start + k) % n)
            .filter(|&i| Some(i) != avoid)
            .chain(avoid);
        for index in order {
            if let Ok(slot) = self.endpoints[index].slots.clone().try_acquire_owned() {
                return Ok(Lease {
                    index,
                    _slot: slot,
                    _any: any,
                });
            }
        }
        // Unreachable while every holder of `any` holds one endpoint slot; wait on the
        // first endpoint rather than fail.
        let slot = self.endpoints[start % n]
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::Other(e.to_string()))?;
        Ok(Lease {
            index: start % n,
            _slot: slot,
            _any: any,
        })
    }
}

/// A token bucket: `rate` units a second, at most `capacity` saved up.
struct Bucket {
    rate: f64,
    capacity: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    fn new(rate: f64, capacity: f64) -> Self {
        Self {
            rate,
            capacity,
            state: Mutex::new((capacity, Instant::now())),
        }
    }

    async fn take(&self, amount: f64) {
        let amount = amount.min(self.capacity);
        loop {
            let wait = {
                let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let (level, last) = *state;
                let level =
                    (level + now.duration_since(last).as_secs_f64() * self.rate).min(self.capacity);
                if level >= amount {
                    *state = (level - amount, now);
                    return;
                }
                *state = (level, now);
                (amount - level) / self.rate
            };
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
    }
}

/// A client for one plugin section.
pub struct Client {
    /// The section name, for messages and the ledger (`actors.weak`, `judge`, ...).
    name: String,
    config: OpenAiConfig,
    pool: Arc<Pool>,
    http: reqwest::Client,
    api_key: Option<String>,
    cache: Option<Arc<CallCache>>,
    ledger: Arc<UsageLedger>,
}

enum Failure {
    /// Worth another try; the reason is counted in the ledger.
    Retry {
        reason: String,
        message: String,
        after: Option<f64>,
    },
    /// Retrying cannot help.
    Fatal(String),
}

impl Client {
    pub fn new(name: &str, config: OpenAiConfig, ctx: &rco_core::BuildContext) -> Result<Client> {
        let api_key = match &config.api_key_env {
            Some(var) => Some(std::env::var(var).map_err(|_| {
                Error::Config(vec![rco_core::ConfigProblem::new(
                    format!("{name}.api_key_env"),
                    format!("the environment variable `{var}` is not set"),
                )])
            })?),
            None => None,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(config.timeout_s))
            .pool_max_idle_per_host(config.concurrency)
            .build()
            .map_err(|e| Error::plugin(name, e))?;
        let cache = if config.cache {
            let path = match (&config.cache_path, &ctx.run_dir) {
                (Some(path), _) => Some(ctx.resolve(path)),
                (None, Some(run)) => Some(run.join("cache").join("calls.jsonl")),
                (None, None) => None,
            };
            path.map(|p| CallCache::shared(&p)).transpose()?
        } else {
            None
        };
        Ok(Client {
            name: name.to_string(),
            pool: Pool::shared(&config),
            config,
            http,
            api_key,
            cache,
            ledger: ctx.usage.clone(),
        })
    }

    pub fn config(&self) -> &OpenAiConfig {
        &self.config
    }

    /// The request body of a call (without the API key, which travels in a header).
    pub fn body(&self, call: &Call) -> Value {
        let s = &self.config.sampling;
        let mut body = serde_json::Map::new();
        for (k, v) in &self.config.extra {
            body.insert(k.clone(), v.clone());
        }
        let mut messages: Vec<Value> = Vec::new();
        if let Some(system) = &self.config.system {
            messages.push(json!({"role": "system", "content": system}));
        }
        messages.extend(
            call.messages
                .iter()
                .map(|m| json!({"role": m.role, "content": m.content})),
        );
        body.insert("model".into(), json!(self.config.model));
        body.insert("messages".into(), Value::Array(messages));
        body.insert("temperature".into(), json!(s.temperature));
        body.insert("top_p".into(), json!(s.top_p));
        body.insert("max_tokens".into(), json!(s.max_tokens));
        if !s.stop.is_empty() {
            body.insert("stop".into(), json!(s.stop));
        }
        if s.seed {
            // Seeds fit JSON's exact integer range.
            body.insert("seed".into(), json!(call.seed >> 11));
        }
        if self.config.logprobs || self.config.verdict_probabilities {
            body.insert("logprobs".into(), json!(true));
        }
        if self.config.verdict_probabilities {
            body.insert("top_logprobs".into(), json!(TOP_LOGPROBS));
        }
        // An answer prefix: the server continues it rather than answering after it.
        let prefilled = call.messages.last().is_some_and(|m| m.role == "assistant");
        if self.config.continue_final_message && prefilled {
            for (key, value) in [
                ("continue_final_message", true),
                ("add_generation_prompt", false),
            ] {
                if !self.config.extra.contains_key(key) {
                    body.insert(key.into(), json!(value));
                }
            }
        }
        Value::Object(body)
    }

    /// Every call, concurrently within the pool's limits; answers in call order.
    ///
    /// When one call fails for good, the run halts: calls not yet sent fail at once, calls in
    /// flight finish and are cached, and the first real failure is returned.
    pub async fn chat_all(&self, calls: Vec<Call>) -> Result<Vec<Answer>> {
        rco_core::error::first_cause(
            futures::future::join_all(calls.into_iter().map(|c| self.chat(c))).await,
        )
    }

    /// One call: from the cache, or over the network with retries.
    pub async fn chat(&self, call: Call) -> Result<Answer> {
        // Serialized once: the cache key, the token estimate and the request all read it.
        let body = self.body(&call).to_string();
        let key = cache::key(&body, call.sample);
        if let Some(answer) = self.cache.as_ref().and_then(|c| c.get(&key)) {
            self.record(Usage {
                calls: 1,
                cache_hits: 1,
                ..Default::default()
            });
            return Ok(answer);
        }
        if self.ledger.is_halted() {
            return Err(Error::Halted);
        }
        if let Err(e) = self.ledger.check_budget() {
            self.ledger.halt();
            return Err(e);
        }
        let mut usage = Usage::default();
        let result = self.send_with_retries(&body, &mut usage).await;
        if let Err(e) = &result {
            if !matches!(e, Error::Halted) {
                self.ledger.halt();
            }
        }
        if let Ok(answer) = &result {
            usage.calls = 1;
            usage.prompt_tokens = answer.prompt_tokens;
            usage.completion_tokens = answer.completion_tokens;
            if let Some(cache) = &self.cache {
                cache.put(&key, answer)?;
            }
        }
        self.record(usage);
        result
    }

    fn record(&self, usage: Usage) {
        self.ledger
            .record(&self.name, Some(&self.config.model), usage);
    }

    async fn send_with_retries(&self, body: &str, usage: &mut Usage) -> Result<Answer> {
        let estimate = body.len() as f64 / 4.0 + self.config.sampling.max_tokens as f64;
        let mut avoid = None;
        let mut attempt = 0u32;
        loop {
            if self.ledger.is_halted() {
                return Err(Error::Halted);
            }
            if let Some(bucket) = &self.pool.requests {
                bucket.take(1.0).await;
            }
            if let Some(bucket) = &self.pool.tokens {
                bucket.take(estimate).await;
            }
            let lease = self.pool.lease(avoid).await?;
            // The run may have stopped while this call waited for a slot.
            if self.ledger.is_halted() {
                return Err(Error::Halted);
            }
            let index = lease.index;
            let url = &self.pool.endpoints[index].url;
            usage.requests += 1;
            let outcome = self.send_once(url, body).await;
            drop(lease);
            match outcome {
                Ok(answer) => return Ok(answer),
                Err(Failure::Fatal(message)) => {
                    return Err(Error::Remote {
                        endpoint: format!("{url} ({})", self.name),
                        message,
                    })
                }
                Err(Failure::Retry {
                    reason,
                    message,
                    after,
                }) => {
                    if attempt >= self.config.max_retries {
                        return Err(Error::Remote {
                            endpoint: format!("{url} ({})", self.name),
                            message: format!(
                                "gave up after {} attempts; last: {message}",
                                attempt + 1
                            ),
                        });
                    }
                    *usage.retries.entry(reason.clone()).or_default() += 1;
                    let backoff = (self.config.backoff_s * 2f64.powi(attempt as i32))
                        .min(self.config.max_backoff_s);
                    let jittered = backoff * rand::rng().random_range(0.5..1.5);
                    let wait = after
                        .map(|a| a.min(self.config.max_backoff_s).max(jittered * 0.1))
                        .unwrap_or(jittered);
                    tracing::info!(
                        "{} ({url}): retry {} of {} in {wait:.2}s after {reason}: {message}",
                        self.name,
                        attempt + 1,
                        self.config.max_retries
                    );
                    tokio::time::sleep(Duration::from_secs_f64(wait)).await;
                    avoid = (self.pool.endpoints.len() > 1).then_some(index);
                    attempt += 1;
                }
            }
        }
    }

    async fn send_once(&self, base: &str, body: &str) -> std::result::Result<Answer, Failure> {
        let mut request = self
            .http
            .post(format!("{base}/chat/completions"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|e| transport(&e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let text = response.text().await.map_err(|e| transport(&e))?;
        if !status.is_success() {
            let excerpt: String = redact(&text, self.api_key.as_deref())
                .chars()
                .take(300)
                .collect();
            let message = format!("HTTP {status}: {excerpt}");
            let quota = text.contains("insufficient_quota");
            return Err(match status.as_u16() {
                429 if quota => Failure::Fatal(format!("quota exhausted ({message})")),
                408 | 429 | 500..=599 => Failure::Retry {
                    reason: status.as_u16().to_string(),
                    message,
                    after: retry_after,
                },
                _ => Failure::Fatal(message),
            });
        }
        parse_completion(
            &text,
            self.config.logprobs || self.config.verdict_probabilities,
        )
        .map_err(|message| Failure::Retry {
            reason: "bad_body".into(),
            message,
            after: None,
        })
    }
}

/// A server's error body as it may be shown: the key this client sent, and anything shaped
/// like a key (`sk-...`, long runs of letters and digits), replaced by `[redacted]`, since
/// some servers echo the `Authorization` header they rejected.
pub fn redact(text: &str, key: Option<&str>) -> String {
    let mut text = text.to_string();
    if let Some(key) = key.filter(|k| !k.is_empty()) {
        text = text.replace(key, "[redacted]");
    }
    let keyish = |word: &str| {
        let chars = |f: fn(char) -> bool| word.chars().filter(|c| f(*c)).count();
        word.starts_with("sk-") && word.len() > 8
            || word.len() >= 24
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                && chars(|c| c.is_ascii_digit()) >= 4
                && chars(|c| c.is_ascii_alphabetic()) >= 4
    };
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || "-_.".contains(c) {
            word.push(c);
            continue;
        }
        out.push_str(if keyish(&word) { "[redacted]" } else { &word });
        word.clear();
        out.push(c);
    }
    out.pop();
    out
}

fn transport(e: &reqwest::Error) -> Failure {
    let reason = if e.is_timeout() {
        "timeout"
    } else {
        "connection"
    };
    // The source chain says what broke (refused, reset, closed before the body ended).
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    Failure::Retry {
        reason: reason.into(),
        message,
        after: None,
    }
}

/// The answer in a chat-completion body.
pub fn parse_completion(text: &str, logprobs: bool) -> std::result::Result<Answer, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        let excerpt: String = text.chars().take(120).collect();
        format!("the body is not JSON ({e}): {excerpt}")
    })?;
    let choice = value
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or("the body has no `choices[0]`")?;
    let content = choice
        .get("message")
        .and_then(|m| m.get("content"))
        .ok_or("`choices[0].message.content` is missing")?;
    let text = content.as_str().unwrap_or_default().to_string();
    let logprob = if logprobs {
        choice
            .get("logprobs")
            .and_then(|l| l.get("content"))
            .and_then(Value::as_array)
            .map(|tokens| {
                tokens
                    .iter()
                    .filter_map(|t| t.get("logprob").and_then(Value::as_f64))
                    .sum::<f64>()
            })
    } else {
        None
    };
    // The first position's alternatives (`verdict_probabilities`).
    let first_top_logprobs = if logprobs {
        choice
            .get("logprobs")
            .and_then(|l| l.get("content"))
            .and_then(|c| c.get(0))
            .and_then(|t| t.get("top_logprobs"))
            .and_then(Value::as_array)
            .map(|top| {
                top.iter()
                    .filter_map(|t| {
                        Some((
                            t.get("token")?.as_str()?.to_string(),
                            t.get("logprob")?.as_f64()?,
                        ))
                    })
                    .collect()
            })
    } else {
        None
    };
    let usage = value.get("usage");
    let count = |key: &str| {
        usage
            .and_then(|u| u.get(key))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Ok(Answer {
        text,
        logprob,
        prompt_tokens: count("prompt_tokens"),
        completion_tokens: count("completion_tokens"),
        finish_reason: choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(str::to_string),
        first_top_logprobs,
    })
}

#[cfg(test)]
mod redact_tests {
    use super::redact;

    #[test]
    fn error_bodies_lose_anything_shaped_like_a_key() {
        let body = r#"{"error": {"message": "Incorrect API key provided: sk-proj-abc123def456. Bearer my-own-secret-key rejected; request id req_8f3a9c2e7b1d4f6a9e0c"}}"#;
        let shown = redact(body, Some("my-own-secret-key"));
        assert!(!shown.contains("sk-proj-abc123def456"), "{shown}");
        assert!(!shown.contains("my-own-secret-key"), "{shown}");
        assert!(!shown.contains("8f3a9c2e7b1d4f6a9e0c"), "{shown}");
        assert!(
            shown.contains("Incorrect API key provided: [redacted] Bearer [redacted]"),
            "{shown}"
        );
        assert_eq!(
            redact("model not found: llama-3", None),
            "model not found: llama-3"
        );
    }
}
