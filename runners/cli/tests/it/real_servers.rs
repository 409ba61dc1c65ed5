//! A small collection (4 items, N = 2 critiques, M = 2 refinements, both-order judging)
//! with critic, actor and judge on a real OpenAI-compatible server serving
//! SmolLM2-135M-Instruct: llama.cpp (PyPI `xllamacpp`, `scripts/llama_server.py`) and
//! `rco serve`. The model file's path is in `SMOLLM2_GGUF` (`scripts/test.sh` sets it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{gguf, json, judge_eval, rco, rco_into, records, text, workspace, write, Server};

/// `scripts/llama_server.py` serving SmolLM2 with 4 slots.
fn llama_cpp() -> Server {
    let mut command = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()));
    command
        .arg("scripts/llama_server.py")
        .arg(gguf())
        .arg("0")
        .arg("4");
    Server::start(command, "the llama.cpp server (xllamacpp)")
}

fn config(dir: &Path, url: &str) -> PathBuf {
    let data = std::fs::read_to_string(workspace().join("configs/data/arithmetic-train.jsonl"))
        .expect("arithmetic items");
    let lines: Vec<&str> = data.lines().collect();
    write(dir, "train.jsonl", &lines[..4].join("\n"));
    write(dir, "test.jsonl", &lines[4..6].join("\n"));
    let remote = |sampling: &str, logprobs: bool| {
        format!(
            "kind = \"openai\"\nbase_urls = [\"{url}\"]\nmodel = \"smollm2\"\nconcurrency = 4\ntimeout_s = 300\nlogprobs = {logprobs}\nsampling = {sampling}\n"
        )
    };
    let toml = format!(
        "seed = 5\n\n[data]\nkind = \"jsonl\"\ntrain = \"train.jsonl\"\ntest = \"test.jsonl\"\n\n[critic]\n{}\n[actors.smollm2]\n{}\n[judge]\n{}\n[trainer]\nkind = \"rco\"\n\n[collect]\ncritiques_per_item = 2\nrefinements_per_critique = 2\nitems_per_batch = 4\npipelined = true\n\n[templates.default]\npairwise_answer_prefix = \"Verdict: [[\"\n",
        remote("{ temperature = 0.8, max_tokens = 32, stop = [\"\\n\\n\"] }", true),
        remote("{ temperature = 0.7, max_tokens = 24, stop = [\"\\n\\n\"] }", false),
        remote("{ temperature = 0.0, max_tokens = 4 }", false),
    );
    write(dir, "smollm2-remote.toml", &toml)
}

/// Runs the collection against `url` and checks what it wrote; returns the wall time.
fn collect_against(url: &str, server: &str) -> Duration {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = config(tmp.path(), url);
    let out = tmp.path().join("run");
    let started = Instant::now();
    let output = rco_into("collect", &config, &out)
        .output()
        .expect("run rco");
    let elapsed = started.elapsed();
    assert!(output.status.success(), "{}", text(&output));
    let cu = records(&out.join("cu.jsonl"));
    assert_eq!(cu.len(), 4 * 2, "one CU record per critique");
    let verdicts = records(&out.join("verdicts.jsonl"));
    assert_eq!(
        verdicts.len(),
        4 * 2 * 2,
        "one both-order pair per refinement"
    );
    let valid = verdicts
        .iter()
        .flat_map(|v| [&v["pair"]["refined_first"], &v["pair"]["refined_second"]])
        .filter(|j| j["verdict"]["verdict"] != "invalid")
        .count();
    let scored = cu.iter().filter(|r| r["cu"].is_number()).count();
    let critiques = records(&out.join("critiques.jsonl"));
    assert!(critiques.iter().all(|c| c["text"].is_string()));
    let usage = json(&out.join("usage.json"));
    eprintln!(
        "{server}: collection of 4 items (N=2, M=2, both orders) in {:.1} s; {valid}/32 verdicts valid, {scored}/8 critiques with a CU; usage {}",
        elapsed.as_secs_f64(),
        usage["collect"]
    );
    assert!(valid > 0, "no judge verdict could be read");
    assert!(scored > 0, "no critique got a CU");
    for section in ["critic", "actors.smollm2", "judge"] {
        assert!(
            usage["collect"][section]["completion_tokens"]
                .as_u64()
                .unwrap_or(0)
                > 0,
            "{section} used no tokens: {usage}"
        );
    }
    elapsed
}

#[test]
fn collection_against_llama_cpp_serving_smollm2() {
    let server = llama_cpp();
    collect_against(&server.url, "llama.cpp");
}

/// The same SmolLM2 file judging the same pairs with `verdict_probabilities`: in process
/// (burn, f32 weights, its own chat template) and behind llama.cpp (the judge reads the
/// server's `top_logprobs` for the token after `Verdict: [[`). Both give every judgement a
/// probability, and the two agree on it (measured: within 0.021 on these 8 judgements).
#[test]
fn verdict_probabilities_from_llama_cpp_agree_with_the_in_process_judge() {
    let server = llama_cpp();
    let tmp = tempfile::tempdir().expect("tempdir");
    let pairs: Vec<String> = [
        ("What is 7 + 5?", "12", "13"),
        ("What is the capital of France?", "Paris", "Berlin"),
        ("Name a primary colour.", "Red", "The number four."),
        ("What is 3 times 4?", "7", "12"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (prompt, chosen, rejected))| {
        serde_json::json!({"id": format!("p{i}"), "prompt": prompt, "chosen": chosen, "rejected": rejected})
            .to_string()
    })
    .collect();
    let pairs = write(tmp.path(), "pairs.jsonl", &pairs.join("\n"));
    let templates = "[templates.default]\npairwise_answer_prefix = \"Verdict: [[\"\n";
    let burn = format!(
        "[judge]\nkind = \"burn\"\ncheckpoint = {:?}\nverdict_probabilities = true\nquantize = \"none\"\nsampling = {{ temperature = 0.0, max_tokens = 1 }}\n\n{templates}",
        gguf().display().to_string()
    );
    let remote = format!(
        "[judge]\nkind = \"openai\"\nbase_urls = [\"{}\"]\nmodel = \"smollm2\"\nverdict_probabilities = true\ncache = false\nsampling = {{ temperature = 0.0, max_tokens = 1 }}\n\n{templates}",
        server.url
    );
    let judged = |name: &str, toml: &str| {
        let config = write(tmp.path(), &format!("{name}.toml"), toml);
        let out = tmp.path().join(name);
        let output = judge_eval(&config, &pairs, &out)
            .output()
            .expect("rco judge-eval");
        assert!(output.status.success(), "{name}: {}", text(&output));
        let mut records = records(&out.join("judge_eval.jsonl"));
        records.sort_by_key(|r| r["id"].as_str().map(str::to_string));
        records
            .iter()
            .flat_map(|r| {
                ["refined_first", "refined_second"].map(|order| {
                    let j = &r["pair"][order];
                    (
                        j["verdict"]["verdict"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        j["prob_a"]
                            .as_f64()
                            .expect("a probability for every judgement"),
                    )
                })
            })
            .collect::<Vec<_>>()
    };
    let local = judged("burn", &burn);
    let served = judged("llama-cpp", &remote);
    eprintln!("in process: {local:?}\nllama.cpp:  {served:?}");
    assert_eq!(local.len(), 8);
    assert_eq!(served.len(), 8);
    for ((lv, lp), (sv, sp)) in local.iter().zip(&served) {
        assert!((0.0..=1.0).contains(sp), "{sp}");
        assert!(
            (lp - sp).abs() < 0.05,
            "P(A better): in process {lp}, llama.cpp {sp}"
        );
        if (lp - 0.5).abs() > 0.1 {
            assert_eq!(lv, sv, "P(A better): in process {lp}, llama.cpp {sp}");
        }
    }
}

#[test]
fn collection_against_rco_serve_serving_smollm2() {
    let mut command = rco();
    command
        .args(["serve", "--port", "0", "--batch-size", "8", "--model"])
        .arg(gguf());
    let server = Server::start(command, "rco serve");
    collect_against(&server.url, "rco serve");
}

/// `rco run` with every role on llama.cpp: the trainer fine-tunes a local copy of the served
/// model (`trainer.base_model`), and evaluation asks the trained critic through `rco serve`,
/// which the run starts itself.
#[test]
#[ignore = "long: fine-tunes SmolLM2 on the CPU, 574 s on 2 cores; RCO_FULL_TESTS=1 scripts/test.sh runs it"]
fn run_with_a_remote_critic_trains_a_local_copy_and_serves_it_for_eval() {
    let server = llama_cpp();
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = config(tmp.path(), &server.url);
    let out = tmp.path().join("run");
    let started = Instant::now();
    let output = rco_into("run", &config, &out)
        .env("RCO_TRAINER__BASE_MODEL", gguf())
        .env("RCO_TRAINER__LEARNING_RATE", "0.000001")
        .env("RCO_TRAINER__EPOCHS", "1")
        .env("RCO_TRAINER__GROUPS_PER_BATCH", "2")
        .env("RCO_EVAL__REFINEMENTS_PER_CRITIQUE", "1")
        .output()
        .expect("run rco");
    assert!(output.status.success(), "{}", text(&output));
    eprintln!(
        "rco run with a remote critic: {:.1} s\n{}",
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(
        out.join("critic/rco/config.json").is_file(),
        "no trained critic"
    );
    let report = json(&out.join("report.json"));
    let cells = report["cells"].as_array().expect("cells");
    for critic in ["base", "rco"] {
        assert!(
            cells
                .iter()
                .any(|c| c["critic"] == critic && c["task"] == "overall"),
            "no {critic} cell: {report}"
        );
    }
    // The trained critic was asked through the server the run started: eval calls of the
    // critic section cover both variants (2 test items × 1 critique each).
    assert_eq!(
        report["usage"]["eval"]["critic"]["calls"].as_u64(),
        Some(4),
        "{report}"
    );
}
