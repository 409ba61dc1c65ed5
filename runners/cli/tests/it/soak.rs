//! A soak test of `rco serve` over SmolLM2: 32 clients for about a minute, sending a mix of
//! short questions, streamed answers, long prompts, prompts over the limit and requests
//! they abandon. Every request must be answered or cleanly refused (a 4xx JSON error), the
//! abandoned ones must leave the batch, and the server's peak memory must stay under a
//! bound. Prints the latency of the short requests (p50, p99) and the server's counters.
//!
//! Ignored in the parallel run (its latencies would measure its neighbours); `scripts/test.sh`
//! runs it alone: `cargo test -p rco-cli --test it soak:: -- --ignored --nocapture`.
//! `SOAK_SECONDS` changes its length (default 60).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::util::{gguf, rco, Server};

/// Peak resident memory the server may reach: the model (about 0.6 GB as f32), the
/// key/value budget of `--kv-cache-tokens 16384` (about 0.75 GB for SmolLM2) and working
/// memory.
const RSS_BOUND: u64 = 3 << 30;

#[derive(Default)]
struct Tally {
    /// Seconds each short request took.
    short: Vec<f64>,
    answered: usize,
    streamed: usize,
    refused: usize,
    abandoned: usize,
    failures: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a minute long: scripts/test.sh runs it alone"]
async fn thirty_two_clients_for_a_minute() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let mut command = rco();
    command
        .args([
            "serve",
            "--port",
            "0",
            "--batch-size",
            "16",
            "--kv-cache-tokens",
            "16384",
            "--max-prompt-tokens",
            "1024",
            "--model",
        ])
        .arg(gguf());
    let server = Server::start(command, "rco serve");
    let url = server.url.clone();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let end = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let clients: Vec<_> = (0..32)
        .map(|client| {
            let (url, tally) = (url.clone(), tally.clone());
            tokio::spawn(async move { client_loop(client, &url, end, &tally).await })
        })
        .collect();
    for c in clients {
        c.await.expect("a client panicked");
    }
    let wall = started.elapsed().as_secs_f64();
    let http = reqwest::Client::new();
    // The abandoned requests leave the batch: nothing is left running once clients are done.
    let mut stats = Value::Null;
    for _ in 0..100 {
        stats = http
            .get(format!("{url}/../stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if stats["running"] == 0 && stats["waiting"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss = server.peak_rss();
    let tally = tally.lock().unwrap();
    let mut short = tally.short.clone();
    short.sort_by(f64::total_cmp);
    let quantile = |q: f64| short[((short.len() - 1) as f64 * q).round() as usize];
    eprintln!(
        "soak: {wall:.0} s, 32 clients: {} short answered (p50 {:.2} s, p99 {:.2} s), {} other answered, {} streamed, {} refused (over the limit), {} abandoned; peak RSS {:.2} GiB; server stats {stats}",
        short.len(),
        quantile(0.5),
        quantile(0.99),
        tally.answered,
        tally.streamed,
        tally.refused,
        tally.abandoned,
        rss.unwrap_or(0) as f64 / (1u64 << 30) as f64,
    );
    assert!(tally.failures.is_empty(), "{:#?}", tally.failures);
    assert!(
        short.len() >= 32,
        "only {} short requests were answered",
        short.len()
    );
    assert!(tally.streamed > 0 && tally.refused > 0 && tally.abandoned > 0);
    assert_eq!(stats["running"], 0, "{stats}");
    assert_eq!(stats["waiting"], 0, "{stats}");
    assert!(
        stats["cancelled"].as_u64().unwrap_or(0) >= 1,
        "no abandoned request was cancelled: {stats}"
    );
    if let Some(rss) = rss {
        assert!(rss < RSS_BOUND, "peak RSS {rss} bytes is over {RSS_BOUND}");
    }
}

/// One client: requests of its kind, one after another, until `end`.
async fn client_loop(client: usize, url: &str, end: Instant, tally: &Mutex<Tally>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(240))
        .build()
        .unwrap();
    let mut round = 0;
    while Instant::now() < end {
        round += 1;
        let question = format!("What is {client} + {round}?");
        let outcome = match (client % 4, round % 3) {
            // Short questions: the latency that matters.
            (0 | 1, _) => {
                let started = Instant::now();
                let body = json!({"messages": [{"role": "user", "content": question}], "max_tokens": 8, "temperature": 0.7, "seed": round});
                match answer(&http, &format!("{url}/chat/completions"), &body).await {
                    Ok(_) => {
                        tally
                            .lock()
                            .unwrap()
                            .short
                            .push(started.elapsed().as_secs_f64());
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            // Streamed answers, read to the end.
            (2, _) => {
                let body = json!({"messages": [{"role": "user", "content": format!("Write a short poem about the number {round}.")}], "max_tokens": 48, "stream": true});
                streamed(&http, &format!("{url}/chat/completions"), &body)
                    .await
                    .map(|()| tally.lock().unwrap().streamed += 1)
            }
            // A long prompt.
            (_, 0) => {
                let prompt = format!(
                    "{}\nSummarize the text above in one line.",
                    "Numbers are counted one by one, and each is one more than the last. "
                        .repeat(40)
                );
                let body = json!({"prompt": prompt, "max_tokens": 16});
                answer(&http, &format!("{url}/completions"), &body)
                    .await
                    .map(|_| tally.lock().unwrap().answered += 1)
            }
            // A prompt over the limit: refused with a 400.
            (_, 1) => {
                let body = json!({"prompt": "far too long ".repeat(1200), "max_tokens": 4});
                match http
                    .post(format!("{url}/completions"))
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 400 => match r.json::<Value>().await {
                        Ok(v) if v["error"]["message"].is_string() => {
                            tally.lock().unwrap().refused += 1;
                            Ok(())
                        }
                        other => Err(format!("a 400 without a JSON error: {other:?}")),
                    },
                    Ok(r) => Err(format!("an over-long prompt got {}", r.status())),
                    Err(e) => Err(format!("an over-long prompt: {e}")),
                }
            }
            // A streamed request abandoned after its first chunk.
            _ => {
                let body = json!({"prompt": "1, 2, 3, 4,", "max_tokens": 300, "stream": true});
                match http
                    .post(format!("{url}/completions"))
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(mut r) if r.status() == 200 => match r.chunk().await {
                        Ok(Some(_)) => {
                            tally.lock().unwrap().abandoned += 1;
                            Ok(())
                        }
                        other => Err(format!("no first chunk: {other:?}")),
                    },
                    Ok(r) => Err(format!("an abandoned stream got {}", r.status())),
                    Err(e) => Err(format!("an abandoned stream: {e}")),
                }
            }
        };
        if let Err(e) = outcome {
            tally
                .lock()
                .unwrap()
                .failures
                .push(format!("client {client}: {e}"));
        }
    }
}

/// A non-streamed answer, which must be a 200 with a choice.
async fn answer(http: &reqwest::Client, url: &str, body: &Value) -> Result<Value, String> {
    let r = http
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status();
    let v: Value = r.json().await.map_err(|e| format!("{status}: {e}"))?;
    if status != 200 || !v["choices"][0].is_object() {
        return Err(format!("{status}: {v}"));
    }
    Ok(v)
}

/// A streamed answer, read to its `[DONE]`.
async fn streamed(http: &reqwest::Client, url: &str, body: &Value) -> Result<(), String> {
    let r = http
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != 200 {
        return Err(format!("a stream got {}", r.status()));
    }
    let text = r.text().await.map_err(|e| e.to_string())?;
    if text.ends_with("data: [DONE]\n\n") && !text.contains("\"error\"") {
        Ok(())
    } else {
        Err(format!(
            "a stream ended badly: {}",
            &text[text.len().saturating_sub(300)..]
        ))
    }
}
