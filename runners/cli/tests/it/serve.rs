//! `rco serve` over SmolLM2-135M-Instruct (the GGUF whose path is in `SMOLLM2_GGUF`):
//! the OpenAI routes, streaming that adds up to the non-streamed text, concurrent requests
//! batched into shared forward passes, bearer-token auth, and 4xx JSON errors for bad
//! requests after which the server is still up.

use std::time::Duration;

use serde_json::{json, Value};

use crate::util::{gguf, rco, text, Server};

/// `rco serve` over SmolLM2 as `smollm2`, batching up to 8 requests, with a bearer token.
fn start() -> Server {
    let mut command = rco();
    command
        .args([
            "serve",
            "--port",
            "0",
            "--batch-size",
            "8",
            "--max-body-bytes",
            "20000",
            "--name",
            "smollm2",
            "--api-key-env",
            "SERVE_TEST_KEY",
            "--model",
        ])
        .arg(gguf())
        .env("SERVE_TEST_KEY", "serve-key-7");
    Server::start(command, "rco serve")
}

/// An HTTP client that waits up to 300 s for an answer.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap()
}

/// A question whose answer is `[[A]]` or `[[B]]`, with the answer prefix `Verdict: [[`.
fn verdict_messages() -> Value {
    json!([
        {"role": "user", "content": "Which is better, A: 2 + 2 = 4 or B: 2 + 2 = 5? Answer [[A]] or [[B]]."},
        {"role": "assistant", "content": "Verdict: [["}
    ])
}

/// The JSON answer to `request`.
async fn json_answer(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

fn chat(content: &str, max_tokens: u32) -> Value {
    json!({"model": "smollm2", "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, "temperature": 0})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serves_batches_streams_and_survives_bad_requests() {
    let server = start();
    let url = &server.url;
    let http = http();
    let post = |path: &str, body: String, key: Option<&str>| {
        let mut r = http
            .post(format!("{url}{path}"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send()
    };
    let key = Some("serve-key-7");
    // The JSON answer to `body` posted to `path` with the key.
    let answer = |path: &str, body: Value| {
        let request = post(path, body.to_string(), key);
        async move { request.await.unwrap().json::<Value>().await.unwrap() }
    };

    // Auth.
    let r = http.get(format!("{url}/models")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.json::<Value>().await.unwrap()["error"]["message"].is_string());
    let models = || {
        http.get(format!("{url}/models"))
            .bearer_auth("serve-key-7")
            .send()
    };
    let r = models().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["data"][0]["id"], "smollm2");

    // Bad requests: 4xx with a JSON error each.
    let cases: Vec<(String, u16)> = vec![
        ("{not json".into(), 400),
        ("[1, 2]".into(), 400),
        (json!({"messages": []}).to_string(), 400),
        (
            json!({"messages": [{"role": "robot", "content": "hi"}]}).to_string(),
            400,
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi"}], "n": 2}).to_string(),
            400,
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000})
                .to_string(),
            400,
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"})
                .to_string(),
            400,
        ),
        (
            json!({"messages": [{"role": "user", "content": "x".repeat(30000)}]}).to_string(),
            413,
        ),
    ];
    for (body, status) in cases {
        let r = post("/chat/completions", body.clone(), key).await.unwrap();
        assert_eq!(
            r.status().as_u16(),
            status,
            "{}",
            &body[..body.len().min(80)]
        );
        let v: Value = r.json().await.expect("a JSON error");
        assert!(v["error"]["message"].is_string(), "{v}");
    }
    let r = http.get(format!("{url}/nothing")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // Eight concurrent requests share batched forward passes.
    let prompts: Vec<String> = (1..=8).map(|i| format!("What is {i} + {i}?")).collect();
    let answers = futures::future::join_all(
        prompts
            .iter()
            .map(|p| answer("/chat/completions", chat(p, 8))),
    )
    .await;
    for a in &answers {
        assert_eq!(a["object"], "chat.completion", "{a}");
        assert!(
            a["choices"][0]["message"]["content"]
                .as_str()
                .is_some_and(|t| !t.is_empty()),
            "{a}"
        );
        assert!(a["usage"]["completion_tokens"].as_u64().unwrap() >= 1);
    }
    let stats = json_answer(
        http.get(format!("{url}/../stats"))
            .bearer_auth("serve-key-7"),
    )
    .await;
    assert!(
        stats["max_rows"].as_u64().unwrap() >= 2,
        "no request was batched with another: {stats}"
    );
    // Each decoding step served several requests: fewer steps than tokens decoded.
    let tokens: u64 = answers
        .iter()
        .map(|a| a["usage"]["completion_tokens"].as_u64().unwrap())
        .sum();
    assert!(stats["batches"].as_u64().unwrap() < tokens, "{stats}");

    // Greedy decoding: streamed pieces add up to the non-streamed answer.
    let whole = answer("/chat/completions", chat("Name three colors.", 12)).await;
    let mut streamed = chat("Name three colors.", 12);
    streamed["stream"] = json!(true);
    let text = post("/chat/completions", streamed.to_string(), key)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut pieces = String::new();
    let mut finish = None;
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"));
    for event in &events[..events.len() - 1] {
        let v: Value = serde_json::from_str(event).unwrap();
        if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
            pieces.push_str(t);
        }
        if let Some(f) = v["choices"][0]["finish_reason"].as_str() {
            finish = Some(f.to_string());
        }
    }
    assert!(events.len() > 4, "the answer came in one piece: {text}");
    assert_eq!(
        pieces,
        whole["choices"][0]["message"]["content"].as_str().unwrap()
    );
    assert_eq!(
        finish.as_deref(),
        whole["choices"][0]["finish_reason"].as_str()
    );

    // Raw completions, and a prefilled assistant turn that the model continues.
    let v = answer(
        "/completions",
        json!({"prompt": "The capital of France is", "max_tokens": 3, "temperature": 0}),
    )
    .await;
    assert!(
        v["choices"][0]["text"].as_str().unwrap().contains("Paris"),
        "{v}"
    );
    let v = answer(
        "/chat/completions",
        json!({"messages": verdict_messages(), "max_tokens": 3, "temperature": 0}),
    )
    .await;
    let verdict = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        verdict.starts_with('A') || verdict.starts_with('B') || verdict.starts_with('C'),
        "{verdict:?}"
    );

    // Still up.
    let r = models().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// A final assistant message (an answer prefix) is continued by default and with
/// `continue_final_message: true`, as vLLM and SGLang do with that field; with
/// `continue_final_message: false, add_generation_prompt: true` it is a closed turn and the
/// model answers in a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_assistant_message_is_continued_or_closed_as_asked() {
    let server = start();
    let url = &server.url;
    let http = http();
    let ask = |fields: Value| {
        let mut body = json!({"messages": verdict_messages(), "max_tokens": 3, "temperature": 0});
        for (k, v) in fields.as_object().cloned().unwrap_or_default() {
            body[k] = v;
        }
        let request = http
            .post(format!("{url}/chat/completions"))
            .bearer_auth("serve-key-7")
            .json(&body)
            .send();
        async move {
            let r = request.await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, default) = ask(json!({})).await;
    assert_eq!(status, 200, "{default}");
    let (_, continued) =
        ask(json!({"continue_final_message": true, "add_generation_prompt": false})).await;
    let (_, closed) =
        ask(json!({"continue_final_message": false, "add_generation_prompt": true})).await;
    let tokens = |v: &Value| v["usage"]["prompt_tokens"].as_u64().unwrap();
    let text = |v: &Value| {
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(tokens(&default), tokens(&continued));
    assert_eq!(text(&default), text(&continued));
    // Closed: `<|im_end|>`, `\n`, `<|im_start|>`, `ass`, `istant`, `\n` follow the prefix.
    assert_eq!(
        tokens(&closed),
        tokens(&continued) + 6,
        "{continued} {closed}"
    );
    // No assistant turn to write in, or a flag that is not a boolean: 400.
    for fields in [
        json!({"continue_final_message": false, "add_generation_prompt": false}),
        json!({"continue_final_message": "yes"}),
    ] {
        let (status, v) = ask(fields.clone()).await;
        assert_eq!(status, 400, "{fields}: {v}");
        assert!(v["error"]["message"].is_string(), "{v}");
    }
}

/// The embedded quickstart critic, served: a character-level model that reads the prompt as
/// plain text and answers in the critique language.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_quickstart_critic() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let output = rco()
        .args(["collect", "configs/quickstart.toml", "--out"])
        .arg(&run)
        .env("RCO_DATA__TRAIN_ITEMS", "4")
        .env("RCO_CRITIC__WARM_START__STEPS", "100")
        .env("RCO_CRITIC__WARM_START__BATCH_SIZE", "64")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let mut command = rco();
    command
        .args(["serve", "--port", "0", "--model"])
        .arg(run.join("critic/base"));
    let server = Server::start(command, "rco serve");
    let v = json_answer(
        reqwest::Client::new()
            .post(format!("{}/chat/completions", server.url))
            .json(&json!({"messages": [{"role": "user", "content": "copy:48172|48112>"}], "max_tokens": 8, "temperature": 0})),
    )
    .await;
    let critique = v["choices"][0]["message"]["content"].as_str().unwrap();
    // Every critique of the warm-started critic is in its language: `=digits`, `@p=d`, `@p`
    // or `ok`.
    assert!(
        critique == "ok" || critique.starts_with('=') || critique.starts_with('@'),
        "{critique:?}"
    );
}

/// The command line is checked before the model loads (an empty key variable is refused),
/// `--host localhost` is an address, every route including `/stats` wants the key, the
/// `Bearer` scheme is matched whatever its case, and OpenAI's `developer` role is the
/// system prompt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_hosts_and_roles_as_clients_send_them() {
    let empty = rco()
        .args([
            "serve",
            "--port",
            "0",
            "--api-key-env",
            "SERVE_EMPTY_KEY",
            "--model",
        ])
        .arg(gguf())
        .env("SERVE_EMPTY_KEY", " ")
        .output()
        .expect("run rco serve");
    assert!(!empty.status.success());
    let said = text(&empty);
    assert!(
        said.contains("SERVE_EMPTY_KEY") && said.contains("empty"),
        "{said}"
    );
    assert!(
        !said.contains("loading"),
        "the model was loaded first: {said}"
    );

    let mut command = rco();
    command
        .args([
            "serve",
            "--host",
            "localhost",
            "--port",
            "0",
            "--name",
            "smollm2",
        ])
        .args(["--api-key-env", "SERVE_TEST_KEY", "--model"])
        .arg(gguf())
        .env("SERVE_TEST_KEY", "serve-key-7");
    let server = Server::start(command, "rco serve on localhost");
    let http = http();
    let stats = format!("{}/stats", server.url.trim_end_matches("/v1"));
    let status = |request: reqwest::RequestBuilder| async move {
        request.send().await.unwrap().status().as_u16()
    };
    assert_eq!(status(http.get(&stats)).await, 401);
    assert_eq!(
        status(
            http.get(&stats)
                .header("authorization", "bearer serve-key-7")
        )
        .await,
        200
    );
    assert_eq!(
        status(
            http.get(&stats)
                .header("authorization", "Basic serve-key-7")
        )
        .await,
        401
    );
    let body = json!({"model": "smollm2", "max_tokens": 3, "temperature": 0, "messages": [
        {"role": "developer", "content": "Answer in one word."},
        {"role": "user", "content": "What is the capital of France?"}
    ]});
    let answer = json_answer(
        http.post(format!("{}/chat/completions", server.url))
            .header("authorization", "BEARER serve-key-7")
            .json(&body),
    )
    .await;
    assert!(
        answer["choices"][0]["message"]["content"].is_string(),
        "{answer}"
    );
    let system = body.to_string().replace("\"developer\"", "\"system\"");
    let as_system = json_answer(
        http.post(format!("{}/chat/completions", server.url))
            .bearer_auth("serve-key-7")
            .header("content-type", "application/json")
            .body(system),
    )
    .await;
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        as_system["choices"][0]["message"]["content"]
    );
    assert_eq!(
        answer["usage"]["prompt_tokens"],
        as_system["usage"]["prompt_tokens"]
    );
}

/// A stop string ends decoding where it is met: the text is cut before it, the finish
/// reason is `stop`, and `completion_tokens` counts the tokens decoded up to it, not
/// `max_tokens` (streamed or not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_string_ends_decoding_where_it_is_met() {
    let server = start();
    let http = http();
    let mut body = json!({"model": "smollm2", "max_tokens": 48, "temperature": 0, "stop": ["\n"],
        "messages": [{"role": "user", "content": "Count from 1 to 30, separated by commas."}]});
    let answer = json_answer(
        http.post(format!("{}/chat/completions", server.url))
            .bearer_auth("serve-key-7")
            .json(&body),
    )
    .await;
    let text = answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    let tokens = answer["usage"]["completion_tokens"].as_u64().unwrap_or(0);
    assert!(!text.is_empty() && !text.contains('\n'), "{answer}");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop", "{answer}");
    assert!(tokens > 0 && tokens < 16, "{tokens} tokens for {text:?}");
    body["stop"] = json!([]);
    let unstopped = json_answer(
        http.post(format!("{}/chat/completions", server.url))
            .bearer_auth("serve-key-7")
            .json(&body),
    )
    .await;
    let full = unstopped["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    assert!(
        full.starts_with(text),
        "{text:?} is not where {full:?} begins"
    );
    assert!(
        unstopped["usage"]["completion_tokens"]
            .as_u64()
            .unwrap_or(0)
            > tokens
    );
}

/// A stream asked for `stream_options.include_usage` ends with a chunk of token counts
/// (the same as the plain answer's), and a body that cannot be read is a 400, not the 413
/// of an oversized one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_chunks_and_unreadable_bodies() {
    let server = start();
    let http = http();
    let url = format!("{}/chat/completions", server.url);
    let plain = json_answer(
        http.post(&url)
            .bearer_auth("serve-key-7")
            .json(&chat("Name a color.", 6)),
    )
    .await;
    let mut streamed = chat("Name a color.", 6);
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let events = http
        .post(&url)
        .bearer_auth("serve-key-7")
        .json(&streamed)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let chunks: Vec<Value> = events
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let last = chunks.last().expect("chunks");
    assert_eq!(last["choices"], json!([]), "{events}");
    assert_eq!(last["usage"], plain["usage"], "{events}");
    assert!(events.trim_end().ends_with("data: [DONE]"), "{events}");

    // A chunked body whose chunk size is not a number.
    use std::io::{Read, Write};
    let authority = server
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/v1")
        .to_string();
    let mut stream = std::net::TcpStream::connect(&authority).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer serve-key-7\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    assert!(
        reply.starts_with("HTTP/1.1 400") && reply.contains("could not be read"),
        "{reply}"
    );
}

/// A client that never finishes its headers is cut off after `--header-timeout-s`, and
/// connections past `--max-connections` wait rather than starve the server: with both
/// slots taken by idle connections, a real request is answered once the idle ones time
/// out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_bounded() {
    use std::io::{Read, Write};
    let mut command = rco();
    command
        .args(["serve", "--port", "0", "--name", "smollm2"])
        .args([
            "--max-connections",
            "2",
            "--header-timeout-s",
            "1",
            "--model",
        ])
        .arg(gguf());
    let server = Server::start(command, "rco serve with tight connection limits");
    let authority = server
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/v1")
        .to_string();
    let started = std::time::Instant::now();
    let mut partial = std::net::TcpStream::connect(&authority).expect("connect");
    partial
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(partial, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n").unwrap();
    let idle = std::net::TcpStream::connect(&authority).expect("connect");
    // Both slots are taken: this request waits until the server closes one.
    let answer = json_answer(
        http()
            .post(format!("{}/chat/completions", server.url))
            .json(&chat("Hi", 2)),
    )
    .await;
    assert!(
        answer["choices"][0]["message"]["content"].is_string(),
        "{answer}"
    );
    let mut rest = Vec::new();
    let _ = partial.read_to_end(&mut rest);
    let closed_after = started.elapsed();
    assert!(
        closed_after < Duration::from_secs(15),
        "the half-sent request was held open for {closed_after:?}"
    );
    drop(idle);
}

/// `logprobs` in both APIs: one entry per decoded token, finite log-probabilities under the
/// model, alternatives most likely first (greedy decoding picks the first), the completions
/// API's tokens spelling its text; streamed, the same entries spread over the chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_logprobs_in_both_apis() {
    let server = start();
    let http = http();
    let ask = |path: &str, body: Value| {
        http.post(format!("{}{path}", server.url))
            .bearer_auth("serve-key-7")
            .json(&body)
    };
    let mut body = chat("What is the capital of France?", 6);
    body["logprobs"] = json!(true);
    body["top_logprobs"] = json!(3);
    let answer = json_answer(ask("/chat/completions", body.clone())).await;
    let content = answer["choices"][0]["logprobs"]["content"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        content.len() as u64,
        answer["usage"]["completion_tokens"].as_u64().unwrap_or(0),
        "{answer}"
    );
    for entry in &content {
        let lp = entry["logprob"].as_f64().unwrap_or(1.0);
        assert!(lp <= 0.0 && lp.is_finite(), "{entry}");
        let top = entry["top_logprobs"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(top.len(), 3, "{entry}");
        assert_eq!(
            top[0]["token"], entry["token"],
            "greedy takes the most likely: {entry}"
        );
        assert!(top
            .windows(2)
            .all(|w| w[0]["logprob"].as_f64() >= w[1]["logprob"].as_f64()));
    }
    let completion = json_answer(ask(
        "/completions",
        json!({"model": "smollm2", "prompt": "The capital of France is", "max_tokens": 5, "temperature": 0, "logprobs": 2}),
    ))
    .await;
    let logprobs = &completion["choices"][0]["logprobs"];
    let tokens: Vec<&str> = logprobs["tokens"]
        .as_array()
        .map(|t| t.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(
        tokens.concat(),
        completion["choices"][0]["text"]
            .as_str()
            .unwrap_or_default(),
        "{completion}"
    );
    assert_eq!(
        logprobs["token_logprobs"].as_array().map(Vec::len),
        Some(tokens.len())
    );
    // Streamed, each chunk carries its own tokens' entries: together, the same as above.
    body["stream"] = json!(true);
    let text = ask("/chat/completions", body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let streamed: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|e| *e != "[DONE]")
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .flat_map(|v| {
            v["choices"][0]["logprobs"]["content"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(streamed, content, "{text}");
}
