//! The five task suites as `scripts/fetch-data.sh` builds them from the PyPI packages (the
//! directory in `RCO_DATA_DIR`; `scripts/test.sh` builds it): every item reads, the counts
//! are the documented ones, the committed slices are the start of each file, every math
//! reference is a number the math verifier reads, and every HumanEval reference solution
//! passes its own tests in the code sandbox.

use std::path::PathBuf;

use rco_core::dataset::suites::DATA_DIR_VAR;
use rco_core::registry::{build, DatasetRole};
use rco_core::{BuildContext, Judge, PointwiseRequest, PointwiseScore, TaskItem};
use rco_plugin_verify::code::{CodeJudge, CodeJudgeConfig};
use serde_json::json;

fn data_dir() -> PathBuf {
    PathBuf::from(std::env::var(DATA_DIR_VAR).unwrap_or_else(|_| {
        panic!("{DATA_DIR_VAR} is not set: run the tests through scripts/test.sh, which builds the suites with scripts/fetch-data.sh")
    }))
}

fn items(suite: &str, split: &str) -> Vec<TaskItem> {
    rco_plugins::link();
    let dataset = build::<DatasetRole>(
        "data",
        &json!({"kind": "tasks", "suites": [suite], "dir": data_dir()}),
        &BuildContext::new("data", 0),
    )
    .expect("dataset");
    dataset.items(split).expect("items")
}

#[test]
fn every_suite_has_its_documented_items() {
    let expected = [
        ("code", 82, 82),
        ("math", 400, 299),
        ("qa", 334, 103),
        ("summarization", 417, 138),
        ("dialog", 1528, 497),
    ];
    for (suite, train, test) in expected {
        let (tr, te) = (items(suite, "train"), items(suite, "test"));
        assert_eq!((tr.len(), te.len()), (train, test), "{suite}");
        for item in tr.iter().chain(&te) {
            assert_eq!(item.task, suite);
            assert!(!item.prompt.trim().is_empty(), "{suite} {}", item.id);
            assert!(
                item.reference
                    .as_deref()
                    .is_some_and(|r| !r.trim().is_empty()),
                "{suite} {}",
                item.id
            );
            assert!(
                item.initial_response.is_empty(),
                "{suite} {}: the actors write y0",
                item.id
            );
        }
        // The committed slices are the first items of each file, byte for byte.
        for split in ["train", "test"] {
            let full =
                std::fs::read_to_string(data_dir().join(suite).join(format!("{split}.jsonl")))
                    .unwrap();
            let slice = std::fs::read_to_string(
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("data/tasks")
                    .join(suite)
                    .join(format!("{split}.jsonl")),
            )
            .unwrap();
            assert!(
                full.starts_with(&slice),
                "{suite}/{split}: the committed slice is not the start of the built file"
            );
        }
    }
}

#[test]
fn sources_pick_the_items_of_one_generator_before_the_item_limits() {
    rco_plugins::link();
    let build_items = |config: serde_json::Value, split: &str| {
        build::<DatasetRole>("data", &config, &BuildContext::new("data", 0))
            .expect("dataset")
            .items(split)
    };
    let config = json!({"kind": "tasks", "suites": ["math"], "dir": data_dir(),
        "sources": ["basic_arithmetic"], "train_items": 5, "test_items": 100});
    let train = build_items(config.clone(), "train").unwrap();
    let ids: Vec<&str> = train.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(
        ids,
        (0..5)
            .map(|i| format!("basic_arithmetic/train/{i}"))
            .collect::<Vec<_>>()
    );
    let test = build_items(config, "test").unwrap();
    assert_eq!(test.len(), 100);
    assert!(test.iter().all(|i| i.id.starts_with("basic_arithmetic/")));
    // A source no item comes from is an error that names it.
    let err = build_items(
        json!({"kind": "tasks", "suites": ["math"], "dir": data_dir(), "sources": ["gsm8k"]}),
        "train",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("`gsm8k`") && err.contains("sources"), "{err}");
}

#[test]
fn math_references_are_numbers_the_verifier_reads() {
    for split in ["train", "test"] {
        for item in items("math", split) {
            let reference = item.reference.unwrap();
            assert_eq!(
                rco_plugin_verify::math::correct(&format!("#### {reference}"), Some(&reference)),
                Ok(true),
                "{}: {reference}",
                item.id
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_humaneval_reference_passes_its_tests_in_the_sandbox() {
    let judge = CodeJudge::new(CodeJudgeConfig::default());
    let all: Vec<TaskItem> = ["train", "test"]
        .iter()
        .flat_map(|s| items("code", s))
        .collect();
    assert_eq!(all.len(), 164);
    let requests: Vec<PointwiseRequest> = all
        .iter()
        .map(|item| {
            let answer = format!("```python\n{}```", item.reference.as_deref().unwrap());
            PointwiseRequest::for_item(item, &answer, 0)
        })
        .collect();
    let scores = judge.score(&requests).await.unwrap();
    let failed: Vec<&str> = all
        .iter()
        .zip(&scores)
        .filter(|(_, s)| **s != PointwiseScore::Score(10.0))
        .map(|(i, _)| i.id.as_str())
        .collect();
    assert!(
        failed.is_empty(),
        "reference solutions that fail their tests: {failed:?}"
    );
    // And a stub (the prompt alone, the body only a docstring) passes none of them fully.
    let stubs: Vec<PointwiseRequest> = all
        .iter()
        .map(|item| PointwiseRequest::for_item(item, &format!("```python\n{}```", item.prompt), 0))
        .collect();
    let solved = judge
        .score(&stubs)
        .await
        .unwrap()
        .into_iter()
        .filter(|s| *s == PointwiseScore::Score(10.0))
        .count();
    assert_eq!(solved, 0);
}
