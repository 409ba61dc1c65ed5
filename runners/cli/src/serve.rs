//! `rco serve`: an OpenAI-compatible HTTP server over a local model (a GGUF file, a Hugging
//! Face directory or a quickstart critic checkpoint). `/v1/chat/completions` and
//! `/v1/completions`, streaming (server-sent events) or not, and `/v1/models`. Concurrent
//! requests are batched into one forward pass per decoding step by the model's
//! [`Batcher`]. Errors are JSON in OpenAI's shape, and a bad request never takes the
//! server down.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rco_lm::batcher::{Batcher, Generated, Job, Prompt, TokenLogProb};
use rco_lm::engine::Quantize;
use rco_lm::sampling::SamplingConfig;
use rco_lm::scheduler::Limits;
use rco_lm::LmError;
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// The model: a .gguf file, a Hugging Face Llama directory, or a critic checkpoint
    /// directory (for example RUN/critic/base of the quickstart).
    #[arg(long)]
    pub model: PathBuf,
    /// Address to bind; 127.0.0.1 unless told otherwise.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// cpu | wgpu | cuda:N
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// How the CPU holds the weights: `q8_0` (Q8_0 blocks, the fast path) or `none` (f32,
    /// exactly as loaded). GPU devices run in f32.
    #[arg(long, default_value = "q8_0")]
    pub quantize: Quantize,
    /// The model name reported by /v1/models (default: the file or directory name).
    #[arg(long)]
    pub name: Option<String>,
    /// Most requests decoded together. Requests join the running batch between decoding
    /// steps and leave it when they finish (continuous batching).
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Longest prompt accepted, in tokens (also capped by the model's context); a longer
    /// one is answered 400 with the limit.
    #[arg(long)]
    pub max_prompt_tokens: Option<usize>,
    /// Most prompt tokens read in one forward pass: a longer prompt is read a chunk per
    /// decoding step, so it never stalls the requests already decoding.
    #[arg(long, default_value_t = 256)]
    pub prefill_chunk_tokens: usize,
    /// Key/value cache budget in tokens (rows × sequence length the running batch may
    /// reach); a request waits until it fits. Bounds memory; a request alone always runs.
    #[arg(long, default_value_t = 65_536)]
    pub kv_cache_tokens: usize,
    /// Environment variable holding a bearer token that every request must carry.
    #[arg(long)]
    pub api_key_env: Option<String>,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Largest `max_tokens` a request may ask for.
    #[arg(long, default_value_t = 1024)]
    pub max_tokens_limit: usize,
    /// Most client connections open at once; further ones wait to be accepted.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers (also the idle limit of a kept-alive
    /// connection between requests) before the connection is closed.
    #[arg(long, default_value_t = 30.0)]
    pub header_timeout_s: f64,
}

/// An `rco serve` process started by this one; stopped when dropped.
pub struct Child {
    pub url: String,
    process: std::process::Child,
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Starts `rco serve --model MODEL --port 0` (this same binary) and waits until it listens.
pub fn spawn_self(model: &std::path::Path, device: &str) -> anyhow::Result<Child> {
    use std::io::BufRead;
    let exe = std::env::current_exe().context("locating the rco binary")?;
    let mut process = std::process::Command::new(exe)
        .args(["serve", "--port", "0", "--device", device, "--model"])
        .arg(model)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting `rco serve` for {}", model.display()))?;
    let stdout = process.stdout.take().context("the server's output")?;
    let mut lines = std::io::BufReader::new(stdout).lines();
    let url = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(url) = line.strip_prefix("listening on ") {
                    break url.trim().to_string();
                }
            }
            _ => {
                let status = process.wait().ok();
                anyhow::bail!(
                    "`rco serve --model {}` stopped before it listened ({status:?})",
                    model.display()
                );
            }
        }
    };
    Ok(Child { url, process })
}

struct Server {
    batcher: Batcher,
    name: String,
    api_key: Option<String>,
    max_body_bytes: usize,
    max_tokens_limit: usize,
    requests: AtomicU64,
    /// Seeds of requests that name none.
    seeds: AtomicU64,
}

pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Everything the command line can get wrong is refused before the model loads.
    let api_key = match &args.api_key_env {
        Some(var) => {
            let key = std::env::var(var).with_context(|| {
                format!("--api-key-env: the environment variable `{var}` is not set")
            })?;
            if key.trim().is_empty() {
                anyhow::bail!("--api-key-env: the environment variable `{var}` is empty");
            }
            Some(key)
        }
        None => None,
    };
    let addr = listen_address(&args.host, args.port)?;
    if args.max_connections == 0 {
        anyhow::bail!("--max-connections must be at least 1");
    }
    if args.batch_size == 0 {
        anyhow::bail!("--batch-size must be at least 1");
    }
    if args.prefill_chunk_tokens == 0 {
        anyhow::bail!("--prefill-chunk-tokens must be at least 1");
    }
    if args.max_prompt_tokens == Some(0) {
        anyhow::bail!("--max-prompt-tokens must be at least 1");
    }
    if args.kv_cache_tokens == 0 {
        anyhow::bail!("--kv-cache-tokens must be at least 1");
    }
    let header_timeout = std::time::Duration::try_from_secs_f64(args.header_timeout_s)
        .ok()
        .filter(|d| !d.is_zero())
        .context("--header-timeout-s must be a positive number of seconds")?;
    let name = args.name.clone().unwrap_or_else(|| {
        args.model
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "model".into())
    });
    tracing::info!("loading {} on {}", args.model.display(), args.device);
    let limits = Limits {
        batch_size: args.batch_size,
        max_prompt_tokens: args.max_prompt_tokens.unwrap_or(usize::MAX),
        prefill_chunk: args.prefill_chunk_tokens,
        kv_tokens: args.kv_cache_tokens,
    };
    let batcher = Batcher::start(&args.model, &args.device, limits, args.quantize)?;
    let server = Arc::new(Server {
        batcher,
        name,
        api_key,
        max_body_bytes: args.max_body_bytes,
        max_tokens_limit: args.max_tokens_limit,
        requests: AtomicU64::new(0),
        seeds: AtomicU64::new(0),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let bound = listener.local_addr()?;
        tracing::info!(
            "serving `{}` ({}, context {} tokens) at http://{bound}/v1{}",
            server.name,
            server.batcher.info.architecture,
            server.batcher.info.context,
            if server.api_key.is_some() {
                " (bearer token required)"
            } else {
                ""
            }
        );
        // The line scripts wait for.
        println!("listening on http://{bound}/v1");
        let app = Router::new()
            .route("/v1/models", get(models))
            .route("/v1/chat/completions", post(chat))
            .route("/v1/completions", post(completions))
            .route("/stats", get(stats))
            .fallback(not_found)
            .with_state(server);
        serve_connections(listener, app, args.max_connections, header_timeout).await
    })
}

/// Accepts connections, at most `max_connections` open at once, each given
/// `header_timeout` to send its request headers, until Ctrl-C.
async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: Router,
    max_connections: usize,
    header_timeout: std::time::Duration,
) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let shutdown = tokio::signal::ctrl_c();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.context("the connection limit")?,
            _ = &mut shutdown => return Ok(()),
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, go on.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return Ok(()),
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                tracing::debug!("connection closed: {e}");
            }
            drop(permit);
        });
    }
}

fn error(status: StatusCode, message: impl Into<String>, kind: &str) -> Response {
    (
        status,
        Json(json!({"error": {"message": message.into(), "type": kind, "code": status.as_u16()}})),
    )
        .into_response()
}

/// The address `--host` and `--port` name: an IP address, or a name such as `localhost`
/// resolved to its first address.
fn listen_address(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .with_context(|| format!("--host {host} --port {port} is not an address"))
}

fn authorized(server: &Server, headers: &HeaderMap) -> Result<(), Response> {
    let Some(key) = &server.api_key else {
        return Ok(());
    };
    // The scheme is case-insensitive (RFC 9110); the token is not.
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    if given == Some(key.as_str()) {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
            "authentication_error",
        ))
    }
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such route; this server has /v1/models, /v1/chat/completions and /v1/completions",
        "invalid_request_error",
    )
}

async fn models(State(server): State<Arc<Server>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&server, &headers) {
        return r;
    }
    Json(json!({
        "object": "list",
        "data": [{"id": server.name, "object": "model", "created": 0, "owned_by": "rco",
                  "context_length": server.batcher.info.context}]
    }))
    .into_response()
}

/// How the server has batched: requests; decoding steps (`batches`), the rows they held and
/// the most in one; prompt tokens read; requests cancelled, refused, running and waiting.
async fn stats(State(server): State<Arc<Server>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&server, &headers) {
        return r;
    }
    let s = &server.batcher.stats;
    Json(json!({
        "requests": server.requests.load(Ordering::Relaxed),
        "batches": s.batches.load(Ordering::Relaxed),
        "rows": s.rows.load(Ordering::Relaxed),
        "max_rows": s.max_rows.load(Ordering::Relaxed),
        "prefill_tokens": s.prefill_tokens.load(Ordering::Relaxed),
        "cancelled": s.cancelled.load(Ordering::Relaxed),
        "rejected": s.rejected.load(Ordering::Relaxed),
        "running": s.running.load(Ordering::Relaxed),
        "waiting": s.waiting.load(Ordering::Relaxed),
    }))
    .into_response()
}

/// The body as JSON, within the size limit.
async fn read_json(server: &Server, request: Request) -> Result<Value, Response> {
    let bytes: Bytes = axum::body::to_bytes(request.into_body(), server.max_body_bytes)
        .await
        .map_err(|e| {
            // Only a body over the limit is a 413; one that could not be read is the
            // client's malformed request.
            let too_large =
                std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
                    .any(|e| e.to_string().contains("length limit"));
            if too_large {
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the request body is over {} bytes", server.max_body_bytes),
                    "invalid_request_error",
                )
            } else {
                bad(format!("the request body could not be read: {e}"))
            }
        })?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {e}"),
            "invalid_request_error",
        )
    })?;
    if !value.is_object() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object",
            "invalid_request_error",
        ));
    }
    Ok(value)
}

fn bad(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, message, "invalid_request_error")
}

/// What a request asks of the decoding: sampling settings, seed, stop strings, and how
/// the answer is sent.
struct Options {
    sampling: SamplingConfig,
    seed: u64,
    stop: Vec<String>,
    stream: bool,
    /// Streaming: end with a chunk carrying the token counts (`stream_options.include_usage`).
    include_usage: bool,
    /// Return each token's log-probability with this many alternatives.
    logprobs: Option<usize>,
}

/// Most alternatives per token a request may ask for (OpenAI's limit).
const MAX_TOP_LOGPROBS: u64 = 20;

/// The [`Options`] of a request; `chat` says which API's `logprobs` it uses (chat: a flag
/// with `top_logprobs`; completions: the number of alternatives).
fn options(server: &Server, body: &Value, chat: bool) -> Result<Options, Response> {
    let number = |key: &str| body.get(key).filter(|v| !v.is_null());
    let f = |key: &str, default: f64| -> Result<f64, Response> {
        match number(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| bad(format!("`{key}` must be a number"))),
        }
    };
    let temperature = f("temperature", 1.0)?;
    let top_p = f("top_p", 1.0)?;
    if !(0.0..=100.0).contains(&temperature) {
        return Err(bad("`temperature` must be between 0 and 100"));
    }
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(bad("`top_p` must be in (0, 1]"));
    }
    let top_k = match number("top_k") {
        None => 0,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| bad("`top_k` must be a whole number"))? as usize,
    };
    let max_tokens = match number("max_completion_tokens").or(number("max_tokens")) {
        None => 256,
        Some(v) => v
            .as_u64()
            .filter(|&n| n >= 1)
            .ok_or_else(|| bad("`max_tokens` must be a whole number >= 1"))?
            as usize,
    };
    if max_tokens > server.max_tokens_limit {
        return Err(bad(format!(
            "`max_tokens` {max_tokens} is over this server's limit of {}",
            server.max_tokens_limit
        )));
    }
    if let Some(n) = number("n") {
        if n.as_u64() != Some(1) {
            return Err(bad("only `n` = 1 is served; send one request per sample"));
        }
    }
    let seed = match number("seed") {
        None => server.seeds.fetch_add(1, Ordering::Relaxed) ^ 0x9e37_79b9_7f4a_7c15,
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_i64().map(|i| i as u64))
            .ok_or_else(|| bad("`seed` must be an integer"))?,
    };
    let stop = match body.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad("`stop` must be strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("`stop` must be a string or a list of strings")),
    };
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = match body.pointer("/stream_options/include_usage") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("`stream_options.include_usage` must be true or false")),
    };
    let count = |key: &str| match number(key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|&n| n <= MAX_TOP_LOGPROBS)
            .map(|n| Some(n as usize))
            .ok_or_else(|| {
                bad(format!(
                    "`{key}` must be a whole number from 0 to {MAX_TOP_LOGPROBS}"
                ))
            }),
    };
    let logprobs = if chat {
        match body.get("logprobs") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => None,
            Some(Value::Bool(true)) => Some(count("top_logprobs")?.unwrap_or(0)),
            Some(_) => return Err(bad("`logprobs` must be true or false")),
        }
    } else {
        count("logprobs")?
    };
    Ok(Options {
        sampling: SamplingConfig {
            temperature,
            top_k,
            top_p,
            max_tokens,
        },
        seed,
        stop,
        stream,
        include_usage,
        logprobs,
    })
}

fn messages(body: &Value) -> Result<Vec<(String, String)>, Response> {
    let list = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| bad("`messages` must be a non-empty list"))?;
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            // OpenAI's newer `developer` role is the system prompt under another name.
            let role = match m.get("role").and_then(Value::as_str) {
                Some("developer") => "system",
                Some(r) if ["system", "user", "assistant"].contains(&r) => r,
                _ => {
                    return Err(bad(format!(
                        "`messages[{i}].role` must be system, developer, user or assistant"
                    )))
                }
            };
            let content = match m.get("content") {
                Some(Value::String(s)) => s.clone(),
                // The list form: text parts joined.
                Some(Value::Array(parts)) => parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(""),
                _ => return Err(bad(format!("`messages[{i}].content` must be a string"))),
            };
            Ok((role.to_string(), content))
        })
        .collect()
}

async fn chat(State(server): State<Arc<Server>>, request: Request) -> Response {
    if let Err(r) = authorized(&server, request.headers()) {
        return r;
    }
    let body = match read_json(&server, request).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let (mut messages, opts) = match (messages(&body), options(&server, &body, true)) {
        (Ok(m), Ok(o)) => (m, o),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    if let Err(r) = final_turn(&body, &mut messages) {
        return r;
    }
    generate(server, Prompt::Chat(messages), opts, true).await
}

/// vLLM's and SGLang's `continue_final_message` and `add_generation_prompt`. A final
/// assistant message is continued unless `continue_final_message` is false (absent: it is
/// continued, as this server always did); then it is a closed turn and a new assistant turn
/// starts. A prompt without a new or continued assistant turn is not served.
fn final_turn(body: &Value, messages: &mut Vec<(String, String)>) -> Result<(), Response> {
    let flag = |key: &str| match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad(format!("`{key}` must be true or false"))),
    };
    let continue_final = flag("continue_final_message")?;
    let generation_prompt = flag("add_generation_prompt")?;
    let prefilled = messages.last().is_some_and(|(role, _)| role == "assistant");
    let continued = prefilled && continue_final != Some(false);
    if generation_prompt == Some(false) && !continued {
        return Err(bad(
            "`add_generation_prompt: false` is served only to continue a final assistant message (`continue_final_message: true`)",
        ));
    }
    if prefilled && !continued {
        // The chat template continues the last assistant message: an empty one after it
        // closes the turn before and starts a new one.
        messages.push(("assistant".into(), String::new()));
    }
    Ok(())
}

async fn completions(State(server): State<Arc<Server>>, request: Request) -> Response {
    if let Err(r) = authorized(&server, request.headers()) {
        return r;
    }
    let body = match read_json(&server, request).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let prompt = match body.get("prompt") {
        Some(Value::String(p)) => p.clone(),
        Some(Value::Array(p)) if p.len() == 1 && p[0].is_string() => {
            p[0].as_str().unwrap_or_default().to_string()
        }
        _ => return bad("`prompt` must be a string"),
    };
    let opts = match options(&server, &body, false) {
        Ok(o) => o,
        Err(r) => return r,
    };
    generate(server, Prompt::Raw(prompt), opts, false).await
}

static IDS: AtomicU64 = AtomicU64::new(0);

async fn generate(
    server: Arc<Server>,
    prompt: Prompt,
    Options {
        sampling,
        seed,
        stop,
        stream,
        include_usage,
        logprobs,
    }: Options,
    chat: bool,
) -> Response {
    let id = format!(
        "{}-{}",
        if chat { "chatcmpl" } else { "cmpl" },
        IDS.fetch_add(1, Ordering::Relaxed)
    );
    server.requests.fetch_add(1, Ordering::Relaxed);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let (text_tx, mut text_rx) = tokio::sync::mpsc::unbounded_channel::<Piece>();
    let cancel = Arc::new(AtomicBool::new(false));
    // Dropped when the client goes away (the handler or the stream is dropped), which takes
    // the request out of the batch at the next step.
    let guard = CancelOnDrop(cancel.clone());
    let job = Job {
        prompt,
        sampling,
        seed,
        stop,
        logprobs,
        on_text: stream.then(|| {
            Box::new(move |piece: &str, logprobs: &[TokenLogProb]| {
                let _ = text_tx.send((piece.to_string(), logprobs.to_vec()));
            }) as Box<dyn FnMut(&str, &[TokenLogProb]) + Send>
        }),
        cancel,
        done: {
            let (id, started) = (id.clone(), std::time::Instant::now());
            Box::new(move |result: Result<Generated, rco_lm::LmError>| {
                match &result {
                    Err(LmError::Cancelled) => {
                        tracing::info!("{id}: cancelled: the client went away")
                    }
                    Ok(g) => tracing::info!(
                        "{id}: {} prompt + {} completion tokens in {:.2}s ({})",
                        g.prompt_tokens,
                        g.completion_tokens,
                        started.elapsed().as_secs_f64(),
                        g.finish_reason
                    ),
                    Err(e) => tracing::warn!("{id}: failed: {e}"),
                }
                let _ = done_tx.send(result);
            })
        },
    };
    if let Err(e) = server.batcher.submit(job) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            e.to_string(),
            "server_error",
        );
    }
    if stream {
        // The first piece (or the answer, or its refusal) before the 200: a prompt the model
        // cannot take is a 400, not an error inside a stream.
        let mut done_rx = done_rx;
        // The answer first when both are there: a refused job has answered before its
        // text channel closed.
        let first = tokio::select! {
            biased;
            result = &mut done_rx => Err(result),
            piece = text_rx.recv() => Ok(piece),
        };
        let answer = match first {
            Ok(Some(piece)) => {
                return sse(
                    server.name.clone(),
                    id,
                    chat,
                    include_usage,
                    Some(piece),
                    text_rx,
                    Finished::Later(done_rx),
                    guard,
                )
            }
            // The job ended without writing text: its answer decides.
            Ok(None) => done_rx.await,
            Err(result) => result,
        };
        return match answer {
            Ok(Err(e)) => failure(&e),
            Ok(Ok(g)) => sse(
                server.name.clone(),
                id,
                chat,
                include_usage,
                None,
                text_rx,
                Finished::Now(g),
                guard,
            ),
            Err(_) => dropped(),
        };
    }
    let answer = done_rx.await;
    drop(guard);
    match answer {
        Ok(Ok(g)) => Json(body(&server.name, &id, chat, &g)).into_response(),
        Ok(Err(e)) => failure(&e),
        Err(_) => dropped(),
    }
}

/// A piece of streamed text, with its tokens' log-probabilities when asked for.
type Piece = (String, Vec<TokenLogProb>);

/// Sets its flag when dropped: the request it guards is given up.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The answer to a request the model could not serve: the client's fault (400) or the
/// server's (500).
fn failure(e: &LmError) -> Response {
    match e {
        LmError::Request(_) | LmError::Tokenize(_) => bad(e.to_string()),
        _ => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
            "server_error",
        ),
    }
}

fn dropped() -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the model thread dropped the request",
        "server_error",
    )
}

/// The end of a streamed answer: already known, or still to come.
enum Finished {
    Now(Generated),
    Later(tokio::sync::oneshot::Receiver<Result<Generated, LmError>>),
}

fn body(model: &str, id: &str, chat: bool, g: &Generated) -> Value {
    let mut choice = if chat {
        json!({"index": 0, "message": {"role": "assistant", "content": g.text}, "finish_reason": g.finish_reason})
    } else {
        json!({"index": 0, "text": g.text, "finish_reason": g.finish_reason})
    };
    choice["logprobs"] = match &g.logprobs {
        Some(tokens) if chat => chat_logprobs(tokens),
        Some(tokens) => completion_logprobs(tokens),
        None => Value::Null,
    };
    json!({
        "id": id,
        "object": if chat { "chat.completion" } else { "text_completion" },
        "created": created(),
        "model": model,
        "choices": [choice],
        "usage": usage(g),
    })
}

/// Token log-probabilities in the chat API's shape: `{content: [{token, logprob, bytes,
/// top_logprobs}]}`.
fn chat_logprobs(tokens: &[TokenLogProb]) -> Value {
    let entry = |text: &str, logprob: f32| json!({"token": text, "logprob": logprob, "bytes": text.as_bytes()});
    let content: Vec<Value> = tokens
        .iter()
        .map(|t| {
            let mut e = entry(&t.text, t.logprob);
            e["top_logprobs"] = t.top.iter().map(|(text, lp)| entry(text, *lp)).collect();
            e
        })
        .collect();
    json!({ "content": content })
}

/// Token log-probabilities in the completions API's shape: `{tokens, token_logprobs,
/// top_logprobs, text_offset}`.
fn completion_logprobs(tokens: &[TokenLogProb]) -> Value {
    let mut offset = 0;
    let offsets: Vec<usize> = tokens
        .iter()
        .map(|t| {
            let at = offset;
            offset += t.text.len();
            at
        })
        .collect();
    json!({
        "tokens": tokens.iter().map(|t| t.text.clone()).collect::<Vec<_>>(),
        "token_logprobs": tokens.iter().map(|t| t.logprob).collect::<Vec<_>>(),
        "top_logprobs": tokens
            .iter()
            .map(|t| t.top.iter().map(|(text, lp)| (text.clone(), json!(lp))).collect::<serde_json::Map<_, _>>())
            .collect::<Vec<_>>(),
        "text_offset": offsets,
    })
}

/// The token counts of an answer, in OpenAI's shape.
fn usage(g: &Generated) -> Value {
    json!({"prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens,
           "total_tokens": g.prompt_tokens + g.completion_tokens})
}

fn created() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn chunk(
    model: &str,
    id: &str,
    chat: bool,
    text: Option<&str>,
    logprobs: Option<&[TokenLogProb]>,
    finish: Option<&str>,
) -> String {
    let mut choice = if chat {
        let delta = match text {
            Some(t) => json!({"content": t}),
            None => json!({}),
        };
        json!({"index": 0, "delta": delta, "finish_reason": finish})
    } else {
        json!({"index": 0, "text": text.unwrap_or(""), "finish_reason": finish})
    };
    if let Some(tokens) = logprobs {
        choice["logprobs"] = if chat {
            chat_logprobs(tokens)
        } else {
            completion_logprobs(tokens)
        };
    }
    let value = json!({
        "id": id,
        "object": if chat { "chat.completion.chunk" } else { "text_completion" },
        "created": created(),
        "model": model,
        "choices": [choice]
    });
    format!("data: {value}\n\n")
}

/// Server-sent events: a chunk per piece of text as the model writes it (starting with
/// `first`), then the finish reason, the usage if asked, and `[DONE]`. A client that goes
/// away cancels the request (`guard`).
#[allow(clippy::too_many_arguments)]
fn sse(
    model: String,
    id: String,
    chat: bool,
    include_usage: bool,
    first: Option<Piece>,
    mut pieces: tokio::sync::mpsc::UnboundedReceiver<Piece>,
    finished: Finished,
    guard: CancelOnDrop,
) -> Response {
    let stream = async_stream(move |tx| async move {
        let _guard = guard;
        let send = |text: String| tx.send(text).is_ok();
        if chat {
            let opening = json!({"id": id, "object": "chat.completion.chunk", "created": created(), "model": model,
                               "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]});
            if !send(format!("data: {opening}\n\n")) {
                return;
            }
        }
        let piece_chunk = |(text, logprobs): &Piece, asked: bool| {
            chunk(
                &model,
                &id,
                chat,
                Some(text),
                asked.then_some(logprobs.as_slice()),
                None,
            )
        };
        if let Some(piece) = &first {
            if !send(piece_chunk(piece, !piece.1.is_empty())) {
                return;
            }
        }
        let result = match finished {
            Finished::Now(g) => Ok(g),
            Finished::Later(done) => {
                loop {
                    tokio::select! {
                        piece = pieces.recv() => match piece {
                            Some(piece) => {
                                if !send(piece_chunk(&piece, !piece.1.is_empty())) {
                                    return;
                                }
                            }
                            None => break,
                        },
                        // The client went away: dropping the guard cancels the request.
                        _ = tx.closed() => return,
                    }
                }
                match done.await {
                    Ok(result) => result,
                    Err(_) => return,
                }
            }
        };
        // Pieces sent after the first one was taken, when the answer came at once.
        while let Ok(piece) = pieces.try_recv() {
            let _ = send(piece_chunk(&piece, !piece.1.is_empty()));
        }
        match result {
            Ok(g) => {
                let _ = send(chunk(&model, &id, chat, None, None, Some(g.finish_reason)));
                if include_usage {
                    let usage = json!({
                        "id": id,
                        "object": if chat { "chat.completion.chunk" } else { "text_completion" },
                        "created": created(),
                        "model": model,
                        "choices": [],
                        "usage": usage(&g),
                    });
                    let _ = send(format!("data: {usage}\n\n"));
                }
            }
            Err(e) => {
                let _ = send(format!(
                    "data: {}\n\n",
                    json!({"error": {"message": e.to_string(), "type": "server_error"}})
                ));
            }
        }
        let _ = send("data: [DONE]\n\n".to_string());
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// A stream of strings fed by a task.
fn async_stream<F, Fut>(
    producer: F,
) -> impl futures::Stream<Item = Result<String, Infallible>> + Send + 'static
where
    F: FnOnce(tokio::sync::mpsc::UnboundedSender<String>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(producer(tx));
    futures::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|s| (Ok(s), rx)) },
    )
}
