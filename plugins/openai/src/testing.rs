//! Servers to drive the client against: an OpenAI-compatible endpoint with a fixed latency
//! and injectable faults (429 with and without `Retry-After`, 500, a hang past the client's
//! timeout, a dropped connection, a truncated body, 401 without the right key). The tests and
//! the throughput benchmark use it; it is not a model.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The faults a server injects: each share is the chance that an attempt gets that fault.
/// A call (a distinct request body) is faulted at most `max_faults_per_call` times, so every
/// call completes within the client's retries.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    pub rate_limited: f64,
    pub rate_limited_no_header: f64,
    pub server_error: f64,
    pub hang: f64,
    pub drop_connection: f64,
    pub truncated: f64,
    pub max_faults_per_call: usize,
    /// How long a hang lasts.
    pub hang_for: Duration,
    /// `Retry-After` value sent with 429s that carry one, in seconds.
    pub retry_after_s: f64,
}

/// How a server answers.
#[derive(Clone)]
pub struct ServerOptions {
    pub latency: Duration,
    pub faults: Faults,
    /// A bearer token every request must carry (401 otherwise).
    pub api_key: Option<String>,
    /// The answer text for a request body.
    pub answer: Arc<dyn Fn(&Value) -> String + Send + Sync>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            faults: Faults::default(),
            api_key: None,
            answer: Arc::new(default_answer),
        }
    }
}

/// What a server saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerStats {
    pub requests: u64,
    pub answered: u64,
    /// Faults injected, by kind.
    pub faults: HashMap<&'static str, u64>,
    pub unauthorized: u64,
    /// Successful answers per distinct call (a value above 1 is a call made twice).
    pub answers_per_call: HashMap<String, u64>,
}

struct Shared {
    options: ServerOptions,
    stats: Mutex<ServerStats>,
    attempts: Mutex<HashMap<String, usize>>,
}

/// A running server; it stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    /// Starts on 127.0.0.1 on a free port, on the current tokio runtime.
    pub async fn start(options: ServerOptions) -> std::io::Result<TestServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Shared::new(options);
        let app = router(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(TestServer { addr, shared, task })
    }

    /// The base URL clients are pointed at.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn stats(&self) -> ServerStats {
        self.shared
            .stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves until the process ends (the benchmark runs it in a child process).
pub async fn serve_forever(listener: tokio::net::TcpListener, options: ServerOptions) {
    let _ = axum::serve(listener, router(Shared::new(options))).await;
}

impl Shared {
    fn new(options: ServerOptions) -> Arc<Shared> {
        Arc::new(Shared {
            options,
            stats: Mutex::default(),
            attempts: Mutex::default(),
        })
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(shared)
}

fn digest(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A number in [0, 1) from a string.
fn unit(text: &str) -> f64 {
    let bytes = Sha256::digest(text.as_bytes());
    let mut n = 0u64;
    for b in bytes.iter().take(8) {
        n = (n << 8) | *b as u64;
    }
    (n >> 11) as f64 / (1u64 << 53) as f64
}

/// Judge prompts get a verdict or a rating; other prompts get a line that depends on them.
pub fn default_answer(body: &Value) -> String {
    let last = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default();
    let h = digest(&body.to_string());
    if last.contains("[[A]]") {
        let pick = ["[[A]]", "[[B]]", "[[C]]"][(unit(&h) * 3.0) as usize % 3];
        format!("Both are close. Verdict: {pick}")
    } else if last.contains("Rating") {
        format!("Rating: [[{}]]", 1 + (unit(&h) * 10.0) as u32 % 10)
    } else {
        format!("answer {h}")
    }
}

async fn chat(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: String) -> Response {
    let options = &shared.options;
    {
        let mut stats = shared.stats.lock().unwrap_or_else(|p| p.into_inner());
        stats.requests += 1;
    }
    if let Some(key) = &options.api_key {
        let given = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(key.as_str()) {
            shared
                .stats
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .unauthorized += 1;
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": {"message": "invalid API key", "type": "invalid_request_error"}})),
            )
                .into_response();
        }
    }
    let Ok(request) = serde_json::from_str::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"message": "the body is not JSON"}})),
        )
            .into_response();
    };
    let call = digest(&body);
    let attempt = {
        let mut attempts = shared.attempts.lock().unwrap_or_else(|p| p.into_inner());
        let n = attempts.entry(call.clone()).or_default();
        *n += 1;
        *n
    };
    if !options.latency.is_zero() {
        tokio::time::sleep(options.latency).await;
    }
    let f = &options.faults;
    if attempt <= f.max_faults_per_call {
        let mut u = unit(&format!("{call}/{attempt}"));
        let kinds: [(&'static str, f64); 6] = [
            ("429_retry_after", f.rate_limited),
            ("429", f.rate_limited_no_header),
            ("500", f.server_error),
            ("hang", f.hang),
            ("drop", f.drop_connection),
            ("truncated", f.truncated),
        ];
        for (kind, share) in kinds {
            if u < share {
                *shared
                    .stats
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .faults
                    .entry(kind)
                    .or_default() += 1;
                return fault(kind, f, &request).await;
            }
            u -= share;
        }
    }
    let text = (options.answer)(&request);
    {
        let mut stats = shared.stats.lock().unwrap_or_else(|p| p.into_inner());
        stats.answered += 1;
        *stats.answers_per_call.entry(call).or_default() += 1;
    }
    Json(completion(&request, &text)).into_response()
}

fn completion(request: &Value, text: &str) -> Value {
    let prompt_chars: usize = request["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|m| m["content"].as_str().map_or(0, str::len))
                .sum()
        })
        .unwrap_or(0);
    let completion_tokens = text.split_whitespace().count().max(1);
    json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": request["model"],
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": {"content": text.split_whitespace().map(|t| json!({"token": t, "logprob": -0.5})).collect::<Vec<_>>()},
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": prompt_chars / 4 + 1,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_chars / 4 + 1 + completion_tokens
        }
    })
}

async fn fault(kind: &str, f: &Faults, request: &Value) -> Response {
    match kind {
        "429_retry_after" => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", format!("{}", f.retry_after_s))],
            Json(json!({"error": {"message": "rate limited", "type": "rate_limit"}})),
        )
            .into_response(),
        "429" => (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({"error": {"message": "rate limited", "type": "rate_limit"}})),
        )
            .into_response(),
        "500" => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": {"message": "internal error"}})),
        )
            .into_response(),
        "hang" => {
            tokio::time::sleep(f.hang_for).await;
            (StatusCode::GATEWAY_TIMEOUT, "too late").into_response()
        }
        "drop" => {
            // Headers go out, then the body fails: the connection is cut mid-response.
            let stream = futures::stream::once(async {
                Err::<Vec<u8>, _>(std::io::Error::other(
                    "connection dropped by the test server",
                ))
            });
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .body(Body::from_stream(stream))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
        _ => {
            let full = completion(request, "truncated").to_string();
            let half = full[..full.len() / 2].to_string();
            (StatusCode::OK, [("content-type", "application/json")], half).into_response()
        }
    }
}
