//! The client against local test servers: requests spread over several endpoints, the
//! per-endpoint concurrency limit, `Retry-After`, and the statuses that must not be retried.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use rco_core::usage::UsageLedger;
use rco_core::BuildContext;
use rco_plugin_openai::testing::{Faults, ServerOptions, TestServer};
use rco_plugin_openai::{Call, Client, Message, OpenAiConfig};

fn client(urls: &[String], extra: serde_json::Value) -> (Client, Arc<UsageLedger>) {
    let mut config = serde_json::json!({
        "base_urls": urls,
        "model": "m",
        "cache": false,
        "backoff_s": 0.01,
        "max_backoff_s": 2.0,
        "timeout_s": 5.0,
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        config[k] = v;
    }
    let config: OpenAiConfig = serde_json::from_value(config).expect("config");
    let ledger = Arc::new(UsageLedger::default());
    let ctx = BuildContext {
        usage: ledger.clone(),
        ..BuildContext::new("judge", 0)
    };
    (Client::new("judge", config, &ctx).expect("client"), ledger)
}

fn calls(n: usize) -> Vec<Call> {
    (0..n)
        .map(|i| Call {
            messages: vec![Message {
                role: "user".into(),
                content: format!("question {i}"),
            }],
            sample: 0,
            seed: i as u64,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_spread_over_endpoints_within_each_limit() {
    let options = ServerOptions {
        latency: Duration::from_millis(50),
        ..Default::default()
    };
    let a = TestServer::start(options.clone()).await.unwrap();
    let b = TestServer::start(options).await.unwrap();
    let (client, _) = client(
        &[a.base_url(), b.base_url()],
        serde_json::json!({"concurrency": 4}),
    );
    let started = Instant::now();
    let answers = client.chat_all(calls(40)).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(answers.len(), 40);
    let (sa, sb) = (a.stats().requests, b.stats().requests);
    assert_eq!(sa + sb, 40);
    assert!(sa >= 10 && sb >= 10, "uneven spread: {sa} / {sb}");
    // 40 calls of 50 ms over 2 × 4 slots take at least 5 rounds.
    assert!(
        elapsed >= Duration::from_millis(240),
        "{elapsed:?}: limits not held"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let server = TestServer::start(ServerOptions {
        faults: Faults {
            rate_limited: 1.0,
            max_faults_per_call: 1,
            retry_after_s: 0.6,
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap();
    // The backoff alone would wait about 10 ms.
    let (client, ledger) = client(&[server.base_url()], serde_json::json!({}));
    let started = Instant::now();
    client.chat_all(calls(1)).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(550),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(ledger.total().retries.get("429"), Some(&1));
}

/// A server that answers every request with one status and body.
async fn fixed(
    status: StatusCode,
    body: &'static str,
) -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                (status, body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, hits, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_and_exhausted_quota_are_not_retried() {
    for (status, body, expect) in [
        (
            StatusCode::BAD_REQUEST,
            "{\"error\": {\"message\": \"bad\"}}",
            "400",
        ),
        (
            StatusCode::FORBIDDEN,
            "{\"error\": {\"message\": \"no\"}}",
            "403",
        ),
        (
            StatusCode::NOT_FOUND,
            "{\"error\": {\"message\": \"no model\"}}",
            "404",
        ),
        (
            StatusCode::TOO_MANY_REQUESTS,
            "{\"error\": {\"code\": \"insufficient_quota\", \"message\": \"quota\"}}",
            "quota exhausted",
        ),
    ] {
        let (url, hits, task) = fixed(status, body).await;
        let (client, _) = client(
            std::slice::from_ref(&url),
            serde_json::json!({"concurrency": 1}),
        );
        let error = client.chat_all(calls(3)).await.unwrap_err().to_string();
        assert!(error.contains(expect) && error.contains(&url), "{error}");
        // One request, then the halt keeps the other calls from being sent.
        assert_eq!(
            hits.load(Ordering::SeqCst),
            1,
            "{status} was retried or not halted"
        );
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_until_the_limit() {
    let (url, hits, task) = fixed(StatusCode::SERVICE_UNAVAILABLE, "down").await;
    let (client, ledger) = client(
        std::slice::from_ref(&url),
        serde_json::json!({"max_retries": 3, "concurrency": 1}),
    );
    let error = client.chat_all(calls(1)).await.unwrap_err().to_string();
    assert!(
        error.contains("gave up after 4 attempts") && error.contains("503"),
        "{error}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 4);
    assert_eq!(ledger.total().retries.get("503"), Some(&3));
    task.abort();
}
