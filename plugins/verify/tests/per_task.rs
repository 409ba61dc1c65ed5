//! The per-task judge with the two verifiers: each task's comparisons reach its own judge,
//! answers come back in order, and a task without a judge is an error that names it.

use rco_core::registry::{build, validate, JudgeRole};
use rco_core::{BuildContext, Comparison, ValidateContext, Verdict};
use serde_json::json;

fn section() -> serde_json::Value {
    json!({
        "kind": "per_task",
        "tasks": {
            "math": { "kind": "math" },
            "code": { "kind": "code", "timeout_seconds": 5 }
        }
    })
}

#[tokio::test]
async fn each_task_goes_to_its_own_judge() {
    // The verifiers are linked into this test binary.
    let _ = rco_plugin_verify::math::verdict(true, false);
    let judge = build::<JudgeRole>("judge", &section(), &BuildContext::new("judge", 0)).unwrap();
    let math = |a: &str, b: &str| Comparison {
        task: "math".into(),
        prompt: "1 + 1?".into(),
        reference: Some("2".into()),
        a: a.into(),
        b: b.into(),
        ..Comparison::default()
    };
    let code = |a: &str, b: &str| Comparison {
        task: "code".into(),
        prompt: "def one():\n    \"\"\"Return 1.\"\"\"\n".into(),
        a: a.into(),
        b: b.into(),
        tests: Some("def check(candidate):\n    assert candidate() == 1\n".into()),
        entry_point: Some("one".into()),
        ..Comparison::default()
    };
    let judged = judge
        .compare(&[
            math("#### 3", "#### 2"),
            code("def one():\n    return 1\n", "def one():\n    return 2\n"),
            math("#### 2", "#### 2"),
            code("def one():\n    return 0\n", "def one():\n    return 1\n"),
        ])
        .await
        .unwrap();
    let verdicts: Vec<Verdict> = judged.into_iter().map(|j| j.verdict).collect();
    assert_eq!(
        verdicts,
        vec![Verdict::B, Verdict::A, Verdict::Tie, Verdict::B]
    );
    assert_eq!(judge.solved_score("math"), Some(10.0));
    assert_eq!(judge.solved_score("qa"), None);
    let err = judge
        .compare(&[Comparison {
            task: "qa".into(),
            ..math("a", "b")
        }])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no judge for task `qa`"), "{err}");
}

#[test]
fn problems_of_the_inner_sections_are_reported_under_their_keys() {
    let _ = rco_plugin_verify::math::verdict(true, false);
    let bad = json!({
        "kind": "per_task",
        "tasks": {
            "math": { "kind": "nope" },
            "code": { "kind": "code", "timeout_seconds": 0 }
        }
    });
    let problems: Vec<String> = validate::<JudgeRole>(&bad, &ValidateContext::new("judge"))
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("tasks.math.kind") && p.contains("nope")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("tasks.code.timeout_seconds")),
        "{problems:?}"
    );
    let empty = validate::<JudgeRole>(
        &json!({"kind": "per_task", "tasks": {}}),
        &ValidateContext::new("judge"),
    );
    assert_eq!(empty.len(), 1, "{empty:?}");
}
