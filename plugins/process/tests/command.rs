//! The process judge with real Python processes: the example judge in `examples/`, and
//! judges that misbehave — one that dies on a request, one that hangs, one that prints
//! other things on stdout, one that cannot be started.

use std::path::{Path, PathBuf};

use rco_core::{Comparison, Judge, PointwiseRequest, PointwiseScore, Verdict};
use rco_plugin_process::judge::{CommandJudge, CommandJudgeConfig};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn judge(command: &[&str], dir: &Path, timeout: f64) -> CommandJudge {
    CommandJudge::new(
        &CommandJudgeConfig {
            command: command.iter().map(|s| s.to_string()).collect(),
            workers: 2,
            batch_size: 3,
            timeout_seconds: timeout,
            max_restarts: 10,
            solved_score: Some(10.0),
        },
        "judge",
        dir.to_path_buf(),
    )
}

fn pair(a: &str, b: &str) -> Comparison {
    Comparison {
        task: "qa".into(),
        prompt: "Who wrote Emma?".into(),
        reference: Some("Jane Austen".into()),
        a: a.into(),
        b: b.into(),
        ..Comparison::default()
    }
}

fn verdicts(judged: Vec<rco_core::Judgement>) -> Vec<Verdict> {
    judged.into_iter().map(|j| j.verdict).collect()
}

#[tokio::test]
async fn the_example_judge_answers_every_request_in_order() {
    let judge = judge(
        &["python3", "examples/command-judge/judge.py"],
        &workspace(),
        30.0,
    );
    let comparisons: Vec<Comparison> = (0..20)
        .map(|i| {
            if i % 2 == 0 {
                pair("It was jane  AUSTEN.", "Charlotte Bronte")
            } else {
                pair("Dickens", "Jane Austen wrote it")
            }
        })
        .collect();
    let judged = judge.compare(&comparisons).await.unwrap();
    assert_eq!(judged.len(), 20);
    for (i, j) in judged.iter().enumerate() {
        let expected = if i % 2 == 0 { Verdict::A } else { Verdict::B };
        assert_eq!(j.verdict, expected, "{i}");
        assert_eq!(j.prob_a, Some(if i % 2 == 0 { 1.0 } else { 0.0 }));
    }
    let tie = judge.compare(&[pair("x", "y")]).await.unwrap();
    assert_eq!(tie[0].verdict, Verdict::Tie);
    let no_reference = judge
        .compare(&[Comparison {
            reference: None,
            ..pair("a", "b")
        }])
        .await
        .unwrap();
    assert!(
        matches!(&no_reference[0].verdict, Verdict::Invalid { reason } if reason.contains("no reference"))
    );
    let scores = judge
        .score(&[
            PointwiseRequest {
                response: "Jane Austen".into(),
                reference: Some("Jane Austen".into()),
                ..PointwiseRequest::default()
            },
            PointwiseRequest {
                response: "Tolstoy".into(),
                reference: Some("Jane Austen".into()),
                ..PointwiseRequest::default()
            },
        ])
        .await
        .unwrap();
    assert_eq!(
        scores,
        vec![PointwiseScore::Score(10.0), PointwiseScore::Score(1.0)]
    );
    assert_eq!(judge.solved_score("qa"), Some(10.0));
}

/// A judge that answers "A", except that it exits on a request whose `a` is "die" (always)
/// or "die-once" (the first time only, remembered in a file), hangs on "hang", and prints
/// chatter before each answer.
const FLAKY: &str = r#"
import json, os, sys, time
for line in sys.stdin:
    r = json.loads(line)
    print("thinking...", flush=True)
    if r["a"] == "die":
        sys.exit(3)
    if r["a"] == "die-once" and not os.path.exists("died"):
        open("died", "w").close()
        os._exit(4)
    if r["a"] == "hang":
        time.sleep(600)
    print("oops", file=sys.stderr, flush=True)
    print(json.dumps({"id": r["id"], "verdict": "A"}), flush=True)
"#;

#[tokio::test]
async fn a_judge_that_dies_or_hangs_is_started_again_and_only_its_poison_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("flaky.py"), FLAKY).unwrap();
    let judge = judge(&["python3", "flaky.py"], dir.path(), 2.0);
    let comparisons = vec![
        pair("ok", "x"),
        pair("die-once", "x"),
        pair("ok", "x"),
        pair("die", "x"),
        pair("ok", "x"),
        pair("hang", "x"),
        pair("ok", "x"),
    ];
    let started = std::time::Instant::now();
    let got = verdicts(judge.compare(&comparisons).await.unwrap());
    assert!(started.elapsed().as_secs() < 30, "{:?}", started.elapsed());
    assert_eq!(got[0], Verdict::A);
    // Died once, answered by the process started after it.
    assert_eq!(got[1], Verdict::A);
    assert!(
        matches!(&got[3], Verdict::Invalid { reason } if reason.contains("exited")),
        "{got:?}"
    );
    assert!(
        matches!(&got[5], Verdict::Invalid { reason } if reason.contains("no answer")),
        "{got:?}"
    );
    for i in [2, 4, 6] {
        assert_eq!(got[i], Verdict::A, "{i}: {got:?}");
    }
    // The pool still works afterwards.
    assert_eq!(
        verdicts(judge.compare(&[pair("ok", "x")]).await.unwrap()),
        vec![Verdict::A]
    );
}

#[tokio::test]
async fn a_judge_that_cannot_start_fails_the_call_and_names_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let judge = judge(&["no-such-program-xyz", "judge.py"], dir.path(), 5.0);
    let err = judge
        .compare(&[pair("a", "b")])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no-such-program-xyz"), "{err}");
}
