//! The `rco` binary against OpenAI-compatible servers on 127.0.0.1: a server that injects
//! every kind of fault (each run still completes, retries are counted in the report,
//! nothing is lost or duplicated), the call cache (a rerun makes zero HTTP calls), 401
//! (the run stops at once, naming the endpoint and the status, never the key), the budget,
//! and `kill -9` in the middle of a collection.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rco_plugin_openai::testing::{Faults, ServerOptions, TestServer};

use crate::util::{json, kill_when, line_count, rco_into, records, run, text, write};

/// A small quickstart whose actor and judge are remote: the trainable tiny critic stays
/// local, so the whole run (collect, train, eval, report) goes through the remote plugins.
fn config(dir: &Path, url: &str, remote: &str) -> PathBuf {
    let toml = format!(
        r#"seed = 3

[data]
kind = "quickstart"
train_items = 12
test_items = 6
min_digits = 5
max_digits = 5

[critic]
kind = "quickstart"
model = {{ d_model = 32, heads = 2, layers = 1, d_ff = 64, max_len = 40 }}
warm_start = {{ steps = 20, batch_size = 64, learning_rate = 3e-3, min_digits = 5, max_digits = 5 }}
sampling = {{ temperature = 1.0, max_tokens = 8 }}

[actors.remote]
kind = "openai"
base_urls = ["{url}"]
model = "test-model"
{remote}

[judge]
kind = "openai"
base_urls = ["{url}"]
model = "test-model"
{remote}

[trainer]
kind = "rco"
epochs = 1
groups_per_batch = 4

[collect]
critiques_per_item = 2
refinements_per_critique = 2
items_per_batch = 4
pipelined = true
batches_in_flight = 2

[eval]
critiques_per_item = 1
refinements_per_critique = 2
items_per_batch = 3
pipelined = true

[templates.default]
critique = "{{prompt}}|{{response}}>"
"#
    );
    write(dir, "remote.toml", &toml)
}

/// Client settings that make faults cheap: short timeout, short backoff.
const FAST: &str =
    "concurrency = 8\ntimeout_s = 1.0\nbackoff_s = 0.01\nmax_backoff_s = 0.2\nmax_retries = 6";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faulty_server_every_item_completes_retries_are_reported_nothing_lost_or_duplicated() {
    let server = TestServer::start(ServerOptions {
        faults: Faults {
            rate_limited: 0.08,
            rate_limited_no_header: 0.08,
            server_error: 0.08,
            hang: 0.04,
            drop_connection: 0.08,
            truncated: 0.08,
            max_faults_per_call: 2,
            hang_for: Duration::from_secs(3),
            retry_after_s: 0.05,
        },
        ..Default::default()
    })
    .await
    .expect("server");
    let tmp = tempfile::tempdir().expect("tempdir");
    let cache = tmp.path().join("shared-cache.jsonl");
    let remote = format!("{FAST}\ncache_path = \"{}\"", cache.display());
    let config = config(tmp.path(), &server.base_url(), &remote);
    let out = tmp.path().join("run");
    let output = run("run", &config, &out, vec![]).await;
    assert!(output.status.success(), "{}", text(&output));

    let stats = server.stats();
    let injected: u64 = stats.faults.values().sum();
    for kind in ["429_retry_after", "429", "500", "hang", "drop", "truncated"] {
        assert!(
            stats.faults.get(kind).copied().unwrap_or(0) > 0,
            "no `{kind}` fault injected: {stats:?}"
        );
    }
    // Every call was answered once: none lost (the run finished), none made twice.
    assert!(
        stats.answers_per_call.values().all(|&n| n == 1),
        "a call was answered twice"
    );

    let report = json(&out.join("report.json"));
    let total = &report["usage_total"];
    eprintln!(
        "faults injected {:?} over {} requests; report: retries {} , calls {}, requests {}",
        stats.faults, stats.requests, total["retries"], total["calls"], total["requests"]
    );
    let retries: u64 = total["retries"]
        .as_object()
        .expect("retries by reason")
        .values()
        .map(|v| v.as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        retries, injected,
        "retries in the report {total} vs faults injected {stats:?}"
    );
    assert_eq!(total["requests"].as_u64(), Some(stats.requests), "{total}");
    assert_eq!(total["calls"].as_u64(), Some(stats.answered), "{total}");
    for reason in ["429", "500", "timeout", "connection", "bad_body"] {
        assert!(
            total["retries"][reason].as_u64().unwrap_or(0) > 0,
            "no {reason} retry: {total}"
        );
    }
    assert!(
        report["usage"]["collect"]["judge"]["calls"]
            .as_u64()
            .unwrap_or(0)
            > 0
    );
    assert!(std::fs::read_to_string(out.join("report.md"))
        .unwrap()
        .contains("Calls to remote plugins"));

    // Collection: 12 items × N=2 critiques, M=2 refinements, both orders.
    let cu = records(&out.join("cu.jsonl"));
    assert_eq!(cu.len(), 12 * 2);
    let mut keys: Vec<String> = cu
        .iter()
        .map(|r| format!("{}/{}", r["item_id"], r["critique"]))
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 24, "duplicated CU records");
    assert_eq!(records(&out.join("verdicts.jsonl")).len(), 12 * 2 * 2);

    // The same collection into a new directory, sharing the call cache: no HTTP call at all,
    // and the same records.
    let before = server.stats().requests;
    let again = tmp.path().join("again");
    let output = run("collect", &config, &again, vec![]).await;
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(server.stats().requests, before, "the rerun made HTTP calls");
    // Batches in flight commit in the order they finish: the same records, in any order.
    let sorted = |dir: &Path| {
        let text = std::fs::read_to_string(dir.join("verdicts.jsonl")).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    assert!(
        sorted(&again) == sorted(&out),
        "the cached rerun judged differently"
    );
    let usage = json(&again.join("usage.json"));
    let judge = &usage["collect"]["judge"];
    assert_eq!(judge["calls"], judge["cache_hits"], "{usage}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_stops_the_run_at_once_naming_endpoint_and_status_never_the_key() {
    let server = TestServer::start(ServerOptions {
        api_key: Some("the-right-key".into()),
        ..Default::default()
    })
    .await
    .expect("server");
    let tmp = tempfile::tempdir().expect("tempdir");
    let remote = format!("{FAST}\napi_key_env = \"REMOTE_TEST_API_KEY\"");
    let config = config(tmp.path(), &server.base_url(), &remote);
    let out = tmp.path().join("run");
    let started = Instant::now();
    let output = run(
        "collect",
        &config,
        &out,
        vec![("REMOTE_TEST_API_KEY", "sk-wrong-secret-0042".into())],
    )
    .await;
    let message = text(&output);
    assert!(!output.status.success(), "{message}");
    assert!(message.contains("401"), "{message}");
    assert!(message.contains(&server.base_url()), "{message}");
    assert!(
        !message.contains("sk-wrong-secret-0042"),
        "the key was printed: {message}"
    );
    // No retries: at most one request per slot was in flight when the first 401 came back.
    let stats = server.stats();
    assert!(stats.requests <= 16, "{stats:?}");
    assert!(started.elapsed() < Duration::from_secs(60));
    for file in ["manifest.json", "usage.json", "cache/calls.jsonl"] {
        if let Ok(text) = std::fs::read_to_string(out.join(file)) {
            assert!(
                !text.contains("sk-wrong-secret-0042"),
                "the key is in {file}"
            );
        }
    }

    // A missing variable is a config error naming the key.
    let output = run("collect", &config, &tmp.path().join("other"), vec![]).await;
    let message = text(&output);
    assert!(!output.status.success());
    assert!(
        message.contains("REMOTE_TEST_API_KEY") && message.contains("api_key_env"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_stops_cleanly_and_a_larger_budget_continues_from_the_saved_calls() {
    let server = TestServer::start(ServerOptions::default())
        .await
        .expect("server");
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = config(tmp.path(), &server.base_url(), FAST);
    let out = tmp.path().join("run");
    let output = run(
        "collect",
        &config,
        &out,
        vec![("RCO_BUDGET__MAX_TOKENS", "3000".into())],
    )
    .await;
    let message = text(&output);
    assert!(!output.status.success(), "{message}");
    assert!(message.contains("budget reached"), "{message}");
    let usage = json(&out.join("usage.json"));
    let spent: u64 = ["actors.remote", "judge"]
        .iter()
        .map(|s| {
            usage["collect"][s]["prompt_tokens"].as_u64().unwrap_or(0)
                + usage["collect"][s]["completion_tokens"]
                    .as_u64()
                    .unwrap_or(0)
        })
        .sum();
    assert!(spent >= 3000, "{usage}");
    let answered = server.stats().answered;
    assert!(answered > 0);

    let output = run(
        "collect",
        &config,
        &out,
        vec![("RCO_BUDGET__MAX_TOKENS", "10000000".into())],
    )
    .await;
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(records(&out.join("cu.jsonl")).len(), 12 * 2);
    let stats = server.stats();
    assert!(
        stats.answers_per_call.values().all(|&n| n == 1),
        "a finished call was repeated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_a_collection_loses_at_most_the_calls_in_flight() {
    let server = TestServer::start(ServerOptions {
        latency: Duration::from_millis(40),
        ..Default::default()
    })
    .await
    .expect("server");
    let tmp = tempfile::tempdir().expect("tempdir");
    // Concurrency 4 per section, two sections: at most 8 calls in flight.
    let remote = "concurrency = 4";
    let config = config(tmp.path(), &server.base_url(), remote);
    let out = tmp.path().join("run");
    let cache = out.join("cache").join("calls.jsonl");
    kill_when(
        &mut rco_into("collect", &config, &out),
        || line_count(&cache) >= 30,
        "30 cached calls",
        Duration::from_secs(120),
    );
    let output = run("collect", &config, &out, vec![]).await;
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(records(&out.join("cu.jsonl")).len(), 12 * 2);
    let repeated = server
        .stats()
        .answers_per_call
        .values()
        .filter(|&&n| n > 1)
        .count();
    assert!(
        repeated <= 8,
        "{repeated} calls were made again after the kill"
    );
}
