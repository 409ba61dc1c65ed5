//! Throughput of the OpenAI-compatible client against a local endpoint with a fixed latency,
//! served from a child process so that the client's CPU time is measured alone.
//!
//! Efficiency = ideal time (calls × latency / concurrency) / measured time, at concurrency
//! 1, 16, 64 and 256; and the client's CPU time per call (user + system, from
//! /proc/self/stat). Every configuration makes 20 × concurrency distinct calls, so the ideal
//! time is 20 latencies. Run: `cargo bench -p rco-benches --bench remote`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rco_core::usage::UsageLedger;
use rco_core::BuildContext;
use rco_plugin_openai::testing::{serve_forever, ServerOptions};
use rco_plugin_openai::{Call, Client, Message, OpenAiConfig};

const LATENCY: Duration = Duration::from_millis(50);
const ROUNDS: usize = 20;

/// User + system CPU seconds of this process.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which ends with ')'): utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn serve() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("{}", listener.local_addr().expect("addr"));
        serve_forever(
            listener,
            ServerOptions {
                latency: LATENCY,
                ..Default::default()
            },
        )
        .await;
    });
}

fn config(url: &str, concurrency: usize) -> OpenAiConfig {
    serde_json::from_value(serde_json::json!({
        "base_urls": [url],
        "model": "bench",
        "concurrency": concurrency,
        "cache": false,
        "sampling": {"max_tokens": 16}
    }))
    .expect("config")
}

fn main() {
    if std::env::args().any(|a| a == "--serve") {
        serve();
        return;
    }
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .arg("--serve")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the endpoint");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("endpoint address");
    let url = format!("http://{}/v1", line.trim());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "fixed-latency endpoint ({} ms) in a child process; {} calls per concurrency slot",
        LATENCY.as_millis(),
        ROUNDS
    );
    println!("| concurrency | calls | ideal (s) | measured (s) | efficiency | client CPU per call (ms) |");
    println!("|---|---|---|---|---|---|");
    for concurrency in [1usize, 16, 64, 256] {
        let ctx = BuildContext {
            usage: Arc::new(UsageLedger::default()),
            ..BuildContext::new("bench", 0)
        };
        let client = Client::new("bench", config(&url, concurrency), &ctx).expect("client");
        let calls = ROUNDS * concurrency;
        let make = |tag: &str| -> Vec<Call> {
            (0..calls)
                .map(|i| Call {
                    messages: vec![Message {
                        role: "user".into(),
                        content: format!("{tag} request {i}: please answer briefly."),
                    }],
                    sample: 0,
                    seed: i as u64,
                })
                .collect()
        };
        // Warm the connections once.
        runtime
            .block_on(client.chat_all(make("warm").into_iter().take(concurrency).collect()))
            .expect("warm-up");
        let calls_now = make("timed");
        let cpu = cpu_seconds();
        let started = Instant::now();
        let answers = runtime.block_on(client.chat_all(calls_now)).expect("calls");
        let measured = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu;
        assert_eq!(answers.len(), calls);
        let ideal = calls as f64 * LATENCY.as_secs_f64() / concurrency as f64;
        println!(
            "| {concurrency} | {calls} | {ideal:.2} | {measured:.2} | {:.3} | {:.3} |",
            ideal / measured,
            cpu * 1000.0 / calls as f64
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}
