//! How `rco serve` schedules requests over SmolLM2 (continuous batching): a short request is
//! answered while a long answer is still being written, and while a long prompt is still
//! being read; a prompt over the limit is a 400 naming it; a request whose client went away
//! leaves the batch.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::util::{gguf, rco, Server};

/// `rco serve` over SmolLM2, reading prompts 128 tokens per pass, prompts up to 1500 tokens.
fn start() -> Server {
    let mut command = rco();
    command
        .args([
            "serve",
            "--port",
            "0",
            "--batch-size",
            "8",
            "--prefill-chunk-tokens",
            "128",
            "--max-prompt-tokens",
            "1500",
            "--model",
        ])
        .arg(gguf());
    Server::start(command, "rco serve")
}

/// A completion that counts on for as long as it is let: greedy SmolLM2 continues the list.
fn counting(max_tokens: u32, stream: bool) -> Value {
    json!({"prompt": "1, 2, 3, 4, 5, 6, 7,", "max_tokens": max_tokens, "temperature": 0, "stream": stream})
}

fn short() -> Value {
    json!({"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 2, "temperature": 0})
}

async fn stats(http: &reqwest::Client, url: &str) -> Value {
    http.get(format!("{url}/../stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits up to `within` for the server's stats to satisfy `holds`.
async fn stats_until(
    http: &reqwest::Client,
    url: &str,
    within: Duration,
    holds: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let s = stats(http, url).await;
        if holds(&s) || start.elapsed() > within {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn short_requests_pass_long_ones_and_gone_clients_are_dropped() {
    let server = start();
    let url = server.url.clone();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap();

    // A long answer is being written; a short request sent meanwhile joins the running batch
    // and is answered while the long one is still writing.
    let mut long = http
        .post(format!("{url}/completions"))
        .json(&counting(80, true))
        .send()
        .await
        .unwrap();
    let first = long.chunk().await.unwrap().expect("a first chunk");
    assert!(!first.is_empty());
    let answer: Value = http
        .post(format!("{url}/chat/completions"))
        .json(&short())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        answer["choices"][0]["message"]["content"].is_string(),
        "{answer}"
    );
    let mut rest = String::new();
    while let Some(piece) = long.chunk().await.unwrap() {
        rest.push_str(&String::from_utf8_lossy(&piece));
    }
    let pieces_after = rest.matches("\"text\":").count();
    assert!(
        pieces_after >= 20,
        "the short request was answered only when the long one had (nearly) finished: {pieces_after} pieces came after it"
    );
    assert!(rest.ends_with("data: [DONE]\n\n"), "{rest}");

    // A long prompt (about 1,400 tokens, read 128 per pass) is being read; a short request
    // sent after it is answered first.
    let long_prompt = "The quick brown fox jumps over the lazy dog. ".repeat(140);
    let long = {
        let http = http.clone();
        let url = url.clone();
        tokio::spawn(async move {
            let body = json!({"prompt": long_prompt, "max_tokens": 1, "temperature": 0});
            let v: Value = http
                .post(format!("{url}/completions"))
                .json(&body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (Instant::now(), v)
        })
    };
    stats_until(&http, &url, Duration::from_secs(30), |s| {
        s["prefill_tokens"].as_u64().unwrap_or(0) > 0 && s["waiting"] == 1
    })
    .await;
    let answer: Value = http
        .post(format!("{url}/chat/completions"))
        .json(&short())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let short_done = Instant::now();
    assert!(
        answer["choices"][0]["message"]["content"].is_string(),
        "{answer}"
    );
    let (long_done, long_answer) = long.await.unwrap();
    assert!(
        long_answer["usage"]["prompt_tokens"].as_u64().unwrap_or(0) > 1000,
        "{long_answer}"
    );
    assert!(
        short_done < long_done,
        "the short request waited for the long prompt to be read"
    );

    // Over the prompt limit: a 400 that names it, streamed or not (streamed nine times: the
    // refusal must win over the closing of the text channel every time).
    let too_long = "The quick brown fox jumps over the lazy dog. ".repeat(200);
    for attempt in 0..10 {
        let stream = attempt > 0;
        let r = http
            .post(format!("{url}/completions"))
            .json(&json!({"prompt": too_long, "max_tokens": 4, "stream": stream}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "streamed: {stream}");
        let v: Value = r.json().await.unwrap();
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("at most 1500"), "{v}");
    }

    // A streaming client that goes away after the first chunk, and a client that gives up
    // waiting for a whole answer: both requests leave the batch long before their 400 tokens.
    let before = stats(&http, &url).await["cancelled"].as_u64().unwrap();
    let mut gone = http
        .post(format!("{url}/completions"))
        .json(&counting(400, true))
        .send()
        .await
        .unwrap();
    gone.chunk().await.unwrap().expect("a first chunk");
    drop(gone);
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(1500))
        .build()
        .unwrap();
    let given_up = impatient
        .post(format!("{url}/completions"))
        .json(&counting(400, false))
        .send()
        .await;
    assert!(given_up.is_err(), "a 400-token answer came within 1.5 s");
    let s = stats_until(&http, &url, Duration::from_secs(20), |s| {
        s["cancelled"].as_u64().unwrap_or(0) >= before + 2 && s["running"] == 0
    })
    .await;
    assert!(
        s["cancelled"].as_u64().unwrap() >= before + 2 && s["running"] == 0,
        "the abandoned requests are still decoding: {s}"
    );
}
