//! A judge written in Python (`examples/command-judge/judge.py`, `kind = "command"`) through
//! a whole run: every verdict is the one its rule gives (an answer containing the reference
//! beats one that does not), in both orders.

use std::collections::HashMap;

use serde_json::Value;

use crate::util::{records, run, text, workspace};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_judge_runs_a_whole_experiment() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let config = workspace().join("examples/command-judge/quickstart.toml");
    let done = run("run", &config, &out, vec![]).await;
    assert!(done.status.success(), "{}", text(&done));
    assert!(out.join("report.json").is_file());

    let items: HashMap<String, Value> = records(&out.join("items.jsonl"))
        .into_iter()
        .map(|r| {
            (
                r["item"]["id"].as_str().unwrap().to_string(),
                r["item"].clone(),
            )
        })
        .collect();
    let refinements: HashMap<(String, u64, u64), String> = records(&out.join("refinements.jsonl"))
        .into_iter()
        .map(|r| {
            (
                (
                    r["item_id"].as_str().unwrap().to_string(),
                    r["critique"].as_u64().unwrap(),
                    r["refinement"].as_u64().unwrap(),
                ),
                r["text"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let verdicts = records(&out.join("verdicts.jsonl"));
    assert_eq!(verdicts.len(), 8 * 2 * 2);
    // The strong actor fixes some answers: the judge has both wins and ties to give.
    let wins = verdicts
        .iter()
        .filter(|v| v["pair"]["refined_first"]["verdict"]["verdict"] == "a")
        .count();
    assert!(wins > 0 && wins < verdicts.len(), "{wins} wins");
    let contains = |answer: &str, reference: &str| {
        let norm = |s: &str| {
            s.to_lowercase()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        norm(answer).contains(&norm(reference))
    };
    for v in &verdicts {
        let id = v["item_id"].as_str().unwrap();
        let item = &items[id];
        let reference = item["reference"].as_str().unwrap();
        let y0 = item["initial_response"].as_str().unwrap();
        let key = (
            id.to_string(),
            v["critique"].as_u64().unwrap(),
            v["refinement"].as_u64().unwrap(),
        );
        let refined = &refinements[&key];
        let (r, i) = (contains(refined, reference), contains(y0, reference));
        let expected = |refined_slot: &'static str, initial_slot: &'static str| {
            if r && !i {
                refined_slot
            } else if i && !r {
                initial_slot
            } else {
                "tie"
            }
        };
        assert_eq!(
            v["pair"]["refined_first"]["verdict"]["verdict"],
            expected("a", "b"),
            "{v}"
        );
        assert_eq!(
            v["pair"]["refined_second"]["verdict"]["verdict"],
            expected("b", "a"),
            "{v}"
        );
    }
}
