//! Task suites end to end: the committed slices of the math and code suites, one judge per
//! task (the math and code verifiers), a tiny character transformer as the critic, and two
//! remote actors that write their own first answers: `weak` answers wrongly, `strong`
//! rightly, and both refine to the right answer whatever the critique says. (The critic's
//! text does not matter here, so it is the smallest model that reads these prompts: with
//! SmolLM2 this test took 7 minutes on 2 cores, most of it prefilling code prompts.) Checked: each actor's `y0` is its own and stored once, the
//! verifiers count the solved ones, each cell's CU and solve rates are what the script of
//! the actors implies, the verifiers' position consistency is 1, a rerun asks for nothing,
//! and `collect.skip_solved` leaves solved items out.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rco_plugin_openai::testing::{ServerOptions, TestServer};
use serde_json::Value;

use rco_lm::checkpoint::{Architecture, ModelSpec};
use rco_lm::tiny::TinyLmConfig;
use rco_lm::tokenizer::{CharTokenizer, Tokenizer};

use crate::util::{json, records, run, text, workspace, write};

/// Every item of the committed math and code slices.
fn slice_items() -> Vec<Value> {
    let dir = workspace().join("tests/data/tasks");
    ["math", "code"]
        .iter()
        .flat_map(|suite| {
            ["train", "test"].map(|split| records(&dir.join(suite).join(format!("{split}.jsonl"))))
        })
        .flatten()
        .collect()
}

/// The right answer and a wrong one to the item whose text the prompt contains.
fn answers(items: &[Value], prompt: &str) -> (String, String) {
    let item = items
        .iter()
        .find(|i| prompt.contains(i["prompt"].as_str().unwrap_or("\u{0}")))
        .unwrap_or_else(|| panic!("no item in the prompt {prompt:?}"));
    let reference = item["reference"].as_str().unwrap();
    match item["task"].as_str() {
        Some("code") => {
            let entry = item["entry_point"].as_str().unwrap();
            (
                format!("```python\n{reference}```"),
                format!("```python\ndef {entry}(*args):\n    return None\n```"),
            )
        }
        _ => (
            format!("Step by step.\n#### {reference}"),
            "I think it is\n#### -1".to_string(),
        ),
    }
}

/// The text of a chat request's last message.
fn last_message(body: &Value) -> &str {
    body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
}

/// The actors' server: first answers right for `strong`, wrong for `weak`; refinements
/// always right.
async fn actors() -> TestServer {
    let items = Arc::new(slice_items());
    TestServer::start(ServerOptions {
        answer: Arc::new(move |body: &Value| {
            let prompt = last_message(body);
            let (right, wrong) = answers(&items, prompt);
            let first_answer = prompt.starts_with("Solve the following problem")
                || prompt.starts_with("Complete the following Python function");
            if first_answer && body["model"] == "weak" {
                wrong
            } else {
                right
            }
        }),
        ..ServerOptions::default()
    })
    .await
    .expect("server")
}

/// A randomly initialised character transformer in `dir/critic`, whose alphabet holds every
/// character of the slices and of printable ASCII, and whose context holds the longest
/// critic prompt of these items.
fn tiny_critic(dir: &Path) -> PathBuf {
    let mut alphabet: Vec<char> = (' '..='~').chain(['\n', '\t']).collect();
    for item in slice_items() {
        let fields = item.as_object().into_iter().flat_map(|o| o.values());
        alphabet.extend(fields.filter_map(Value::as_str).flat_map(str::chars));
    }
    alphabet.sort_unstable();
    alphabet.dedup();
    let tokenizer = Tokenizer::Chars(CharTokenizer {
        alphabet: alphabet.into_iter().collect(),
    });
    let config = TinyLmConfig {
        vocab_size: tokenizer.vocab_size(),
        d_model: 16,
        heads: 2,
        layers: 1,
        d_ff: 32,
        max_len: 8192,
    };
    let model = config.init::<rco_lm::device::Cpu>(&Default::default());
    let spec = ModelSpec {
        architecture: Architecture::Tiny(config),
        tokenizer,
    };
    let out = dir.join("critic");
    rco_lm::checkpoint::save(&out, &spec, model).expect("save the tiny critic");
    out
}

fn config(dir: &Path, url: &str, extra: &str) -> PathBuf {
    let toml = format!(
        r#"seed = 5

[data]
kind = "tasks"
suites = ["math", "code"]
dir = "{data}"
train_items = 3
test_items = 3

[critic]
kind = "burn"
checkpoint = "{model}"
sampling = {{ temperature = 1.0, max_tokens = 12 }}
batch_size = 16

[actors.weak]
kind = "openai"
base_urls = ["{url}"]
model = "weak"

[actors.strong]
kind = "openai"
base_urls = ["{url}"]
model = "strong"

[judge]
kind = "per_task"
[judge.tasks.math]
kind = "math"
[judge.tasks.code]
kind = "code"
timeout_seconds = 10

[trainer]
kind = "rco"
learning_rate = 0.000001
epochs = 1
groups_per_batch = 6

[collect]
actor = "weak"
critiques_per_item = 2
refinements_per_critique = 1
items_per_batch = 6
{extra}

[eval]
critiques_per_item = 1
refinements_per_critique = 1
items_per_batch = 6
"#,
        data = workspace().join("tests/data/tasks").display(),
        model = tiny_critic(dir).display(),
    );
    write(dir, "tasks.toml", &toml)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actors_answer_first_verifiers_count_what_is_solved() {
    let server = actors().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.base_url(), "");
    let out = dir.path().join("run");
    let done = run("run", &config, &out, vec![]).await;
    assert!(done.status.success(), "{}", text(&done));

    // One first answer per actor × split × item: the collection actor's on train, each
    // evaluated actor's on test, written by the actor and scored by the verifier.
    let initial = records(&out.join("initial.jsonl"));
    let count = |actor: &str, split: &str| {
        initial
            .iter()
            .filter(|r| r["actor"] == actor && r["split"] == split)
            .count()
    };
    assert_eq!(
        (
            count("weak", "train"),
            count("weak", "test"),
            count("strong", "test"),
            count("strong", "train")
        ),
        (6, 6, 6, 0),
        "{initial:#?}"
    );
    for r in &initial {
        assert_eq!(r["source"], "actor");
        let expected = r["actor"] == "strong";
        assert_eq!(r["solved"], expected, "{r}");
        assert_eq!(r["score"], if expected { 10.0 } else { 1.0 }, "{r}");
    }

    // Each actor refines its own y0: the weak actor's refinements fix its wrong answers
    // (CU 100), the strong actor's equal its right ones (ties, CU 50).
    let report = json(&out.join("report.json"));
    let cells = report["cells"].as_array().unwrap();
    for critic in ["base", "rco"] {
        let cell = |actor: &str, task: &str| {
            cells
                .iter()
                .find(|c| c["critic"] == critic && c["actor"] == actor && c["task"] == task)
                .unwrap_or_else(|| panic!("no cell {critic} {actor} {task}"))
        };
        for task in ["math", "code", "overall"] {
            let weak = cell("weak", task);
            assert_eq!(weak["cu"], 100.0, "{weak}");
            assert_eq!(weak["initial_solved"], 0.0, "{weak}");
            assert_eq!(weak["refined_solved"], 1.0, "{weak}");
            let strong = cell("strong", task);
            assert_eq!(strong["cu"], 50.0, "{strong}");
            assert_eq!(strong["initial_solved"], 1.0, "{strong}");
            assert_eq!(strong["refined_solved"], 1.0, "{strong}");
        }
    }
    // Verifiers are deterministic: both orders always agree.
    assert_eq!(report["judge_health"]["position_consistency"], 1.0);
    let summaries = report["initial_responses"].as_array().unwrap();
    assert_eq!(summaries.len(), 3, "{summaries:#?}");
    assert!(summaries
        .iter()
        .any(|s| s["actor"] == "strong" && s["split"] == "test" && s["solved"] == 6));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("## Solve rates (verifier judge)"), "{md}");
    assert!(md.contains("| weak | test | actor | 6 | 6 | 0 |"), "{md}");
    assert!(
        text(&done).contains("solved (rco critic, weak): y0 0.0%, refinements 100.0%"),
        "{}",
        text(&done)
    );

    // Everything is stored: a rerun asks the actors for nothing.
    let before = server.stats().requests;
    let again = run("run", &config, &out, vec![]).await;
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(server.stats().requests, before);
    assert_eq!(records(&out.join("initial.jsonl")).len(), initial.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn solved_items_can_be_left_out_of_collection() {
    // The collection actor answers the math items right and the code items wrong.
    let items = Arc::new(slice_items());
    let server = TestServer::start(ServerOptions {
        answer: Arc::new(move |body: &Value| {
            let prompt = last_message(body);
            let (right, wrong) = answers(&items, prompt);
            if prompt.starts_with("Complete the following Python function") {
                wrong
            } else {
                right
            }
        }),
        ..ServerOptions::default()
    })
    .await
    .expect("server");
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server.base_url(), "skip_solved = true\n");
    let out = dir.path().join("run");
    // Collection and training only: the evaluation is the test above's.
    for stage in ["collect", "train"] {
        let done = run(stage, &config, &out, vec![]).await;
        assert!(done.status.success(), "{stage}: {}", text(&done));
    }
    // Only the three code items were collected and trained on.
    let groups = records(&out.join("groups.jsonl"));
    assert_eq!(groups.len(), 3, "{groups:#?}");
    assert!(groups
        .iter()
        .all(|g| g["item_id"].as_str().unwrap().starts_with("HumanEval/")));
    let metrics = records(&out.join("metrics.jsonl"));
    assert!(
        metrics.iter().any(|m| m["left_out_solved"] == 3),
        "{metrics:#?}"
    );
    assert!(metrics.iter().any(|m| m["stage"] == "respond"
        && m["actor"] == "weak"
        && m["split"] == "train"
        && m["solved"] == 3));
    assert_eq!(json(&out.join("train_summary.json"))["groups"], 3);
    // Finished stages stay finished: they start nothing again.
    let before = server.stats().requests;
    let again = run("train", &config, &out, vec![]).await;
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(server.stats().requests, before);
}
