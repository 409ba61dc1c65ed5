//! One conformance suite per trait, instantiated for every plugin that can run here: results
//! come back one per input, in input order (a batch gives what each item alone gives, since
//! every draw is seeded per item), an empty batch gives an empty answer, and bad input or
//! bad config gives an error or an invalid value, never a panic.

use std::sync::Arc;

use rco_core::registry::{find, Builder, Role};
use rco_core::{
    Actor, BothOrders, BuildContext, Comparison, Critic, CritiqueRequest, Judge, Judgement,
    LogProbRequest, RefineRequest, RewardEstimator, TaskItem, Verdict,
};
use serde_json::{json, Value};

fn context() -> BuildContext {
    rco_plugins::link();
    let mut ctx = BuildContext::new("under-test", 11);
    ctx.templates.default.critique = "{prompt}|{response}>".into();
    ctx
}

fn items() -> Vec<TaskItem> {
    let item = |id: &str, task: &str, prompt: &str, initial: &str, reference: &str| TaskItem {
        id: id.into(),
        task: task.into(),
        prompt: prompt.into(),
        initial_response: initial.into(),
        reference: Some(reference.into()),
    };
    vec![
        item("a", "copy", "copy:12345", "12945", "12345"),
        item("b", "reverse", "rev:12345", "54301", "54321"),
        item("c", "increment", "inc:90127", "01230", "01238"),
        item("d", "copy", "copy:777", "771", "777"),
    ]
}

fn build_err(role: Role, section: &Value, ctx: &BuildContext) -> Option<String> {
    let descriptor = find(role, section).ok()?;
    let result = match &descriptor.build {
        Builder::Judge(b) => b(section, ctx).err(),
        Builder::Actor(b) => b(section, ctx).err(),
        Builder::Critic(b) => b(section, ctx).err(),
        Builder::RewardEstimator(b) => b(section, ctx).err(),
        Builder::Trainer(b) => b(section, ctx).err(),
        Builder::Dataset(b) => b(section, ctx).err(),
    };
    result.map(|e| e.to_string())
}

fn judge(section: Value) -> Arc<dyn Judge> {
    match &find(Role::Judge, &section).expect("kind").build {
        Builder::Judge(build) => build(&section, &context()).expect("build judge"),
        _ => unreachable!(),
    }
}

fn actor(section: Value) -> Arc<dyn Actor> {
    match &find(Role::Actor, &section).expect("kind").build {
        Builder::Actor(build) => build(&section, &context()).expect("build actor"),
        _ => unreachable!(),
    }
}

fn reward(section: Value) -> Arc<dyn RewardEstimator> {
    match &find(Role::RewardEstimator, &section).expect("kind").build {
        Builder::RewardEstimator(build) => build(&section, &context()).expect("build reward"),
        _ => unreachable!(),
    }
}

/// A quickstart critic warm-started for a few steps into `dir`, and the section that built it.
fn critic(section: Value, dir: &std::path::Path) -> Arc<dyn Critic> {
    let mut ctx = context();
    ctx.checkpoint = Some(dir.to_path_buf());
    ctx.create_checkpoint = true;
    match &find(Role::Critic, &section).expect("kind").build {
        Builder::Critic(build) => build(&section, &ctx).expect("build critic"),
        _ => unreachable!(),
    }
}

macro_rules! judge_conformance {
    ($name:ident, $section:expr) => {
        #[tokio::test]
        async fn $name() {
            let judge = judge($section);
            let comparisons: Vec<Comparison> = items()
                .into_iter()
                .enumerate()
                .flat_map(|(i, item)| {
                    let pair = |a: &str, b: &str, seed: u64| Comparison {
                        task: item.task.clone(),
                        prompt: item.prompt.clone(),
                        reference: item.reference.clone(),
                        a: a.into(),
                        b: b.into(),
                        seed,
                    };
                    vec![
                        pair(
                            item.reference.as_deref().unwrap_or(""),
                            &item.initial_response,
                            2 * i as u64,
                        ),
                        pair(
                            &item.initial_response,
                            item.reference.as_deref().unwrap_or(""),
                            2 * i as u64 + 1,
                        ),
                    ]
                })
                .collect();
            let batched = judge.compare(&comparisons).await.expect("compare");
            assert_eq!(batched.len(), comparisons.len());
            for (c, b) in comparisons.iter().zip(&batched) {
                assert_eq!(
                    &judge
                        .compare(std::slice::from_ref(c))
                        .await
                        .expect("compare")[0],
                    b
                );
            }
            assert!(judge.compare(&[]).await.expect("empty").is_empty());
            // No reference and junk answers: an invalid verdict or a verdict, never a panic.
            let junk = Comparison {
                task: "copy".into(),
                prompt: "?".into(),
                reference: None,
                a: "\u{0}".into(),
                b: String::new(),
                seed: 1,
            };
            assert_eq!(judge.compare(&[junk]).await.expect("compare").len(), 1);
        }
    };
}

macro_rules! actor_conformance {
    ($name:ident, $section:expr) => {
        #[tokio::test]
        async fn $name() {
            let actor = actor($section);
            let requests: Vec<RefineRequest> = items()
                .into_iter()
                .enumerate()
                .map(|(i, item)| RefineRequest {
                    critique: ["ok", "@2", "=12345", "junk"][i % 4].into(),
                    prompt: String::new(),
                    m: i + 1,
                    seed: i as u64,
                    item,
                })
                .collect();
            let batched = actor.refine(&requests).await.expect("refine");
            assert_eq!(batched.len(), requests.len());
            for (r, b) in requests.iter().zip(&batched) {
                assert_eq!(b.len(), r.m);
                assert_eq!(
                    &actor.refine(std::slice::from_ref(r)).await.expect("refine")[0],
                    b
                );
            }
            assert!(actor.refine(&[]).await.expect("empty").is_empty());
            let answers = actor
                .respond(
                    &items()
                        .into_iter()
                        .map(|item| rco_core::RespondRequest { item, seed: 0 })
                        .collect::<Vec<_>>(),
                )
                .await
                .expect("respond");
            assert_eq!(answers.len(), items().len());
        }
    };
}

judge_conformance!(verifier_judge_conforms, json!({"kind": "verifier"}));
judge_conformance!(
    noisy_judge_conforms,
    json!({"kind": "noisy", "position_bias": 0.3, "noise": 0.1, "invalid_rate": 0.1})
);
actor_conformance!(
    weak_quickstart_actor_conforms,
    json!({"kind": "quickstart", "strength": "weak"})
);
actor_conformance!(
    strong_quickstart_actor_conforms,
    json!({"kind": "quickstart", "strength": "strong"})
);

#[tokio::test]
async fn cu_reward_estimator_conforms() {
    let reward = reward(json!({"kind": "cu", "mode": "hard"}));
    let pair = |a: Verdict, b: Verdict| BothOrders {
        refined_first: Judgement::hard(a),
        refined_second: Judgement::hard(b),
    };
    let groups = vec![
        vec![pair(Verdict::A, Verdict::B)],
        vec![],
        vec![
            pair(Verdict::B, Verdict::A),
            pair(Verdict::Tie, Verdict::Tie),
        ],
    ];
    let estimates = reward.estimate(&groups).await.expect("estimate");
    assert_eq!(
        estimates.iter().map(|e| e.cu).collect::<Vec<_>>(),
        vec![Some(1.0), None, Some(0.25)]
    );
}

#[tokio::test]
async fn critics_conform() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().join("base");
    let quickstart = json!({"kind": "quickstart", "warm_start": {"steps": 3, "batch_size": 4}, "model": {"d_model": 16, "heads": 2, "layers": 1, "d_ff": 32, "max_len": 40}});
    let from_checkpoint = json!({"kind": "burn", "checkpoint": base.to_string_lossy(), "sampling": {"temperature": 0.7, "top_k": 5, "max_tokens": 6}, "batch_size": 3});
    for critic in [critic(quickstart, &base), {
        let mut ctx = context();
        ctx.checkpoint = None;
        match &find(Role::Critic, &from_checkpoint).expect("kind").build {
            Builder::Critic(build) => build(&from_checkpoint, &ctx).expect("build burn critic"),
            _ => unreachable!(),
        }
    }] {
        let requests: Vec<CritiqueRequest> = items()
            .into_iter()
            .enumerate()
            .map(|(i, item)| CritiqueRequest {
                prompt: format!("{}|{}>", item.prompt, item.initial_response),
                n: i + 1,
                seed: 100 + i as u64,
                item,
            })
            .collect();
        let batched = critic.critique(&requests).await.expect("critique");
        assert_eq!(batched.len(), requests.len());
        for (r, b) in requests.iter().zip(&batched) {
            assert_eq!(b.len(), r.n);
            assert!(b
                .iter()
                .all(|c| c.ref_logprob.is_some_and(|lp| lp < 0.0 && lp.is_finite())));
            let alone = critic
                .critique(std::slice::from_ref(r))
                .await
                .expect("critique");
            assert_eq!(
                alone[0].iter().map(|c| &c.text).collect::<Vec<_>>(),
                b.iter().map(|c| &c.text).collect::<Vec<_>>()
            );
        }
        assert!(critic.critique(&[]).await.expect("empty").is_empty());
        let scored = critic
            .log_probs(&[LogProbRequest {
                prompt: "copy:1|2>".into(),
                completion: "=1".into(),
            }])
            .await
            .expect("log_probs");
        assert_eq!(scored.len(), 1);
        // A prompt the tokenizer cannot spell is an error, not a panic.
        let err = critic
            .log_probs(&[LogProbRequest {
                prompt: "COPY".into(),
                completion: "x".into(),
            }])
            .await
            .expect_err("unknown characters");
        assert!(err.to_string().contains("'C'"), "{err}");
    }
}

#[test]
fn bad_sections_are_errors_not_panics() {
    let ctx = context();
    for (role, section) in [
        (
            Role::Judge,
            json!({"kind": "noisy", "position_bias": "lots"}),
        ),
        (
            Role::Actor,
            json!({"kind": "quickstart", "strength": "heroic"}),
        ),
        (
            Role::Critic,
            json!({"kind": "burn", "checkpoint": "/no/such/dir"}),
        ),
        (
            Role::Critic,
            json!({"kind": "quickstart", "model": {"d_model": "wide"}}),
        ),
        (
            Role::RewardEstimator,
            json!({"kind": "cu", "mode": "average"}),
        ),
        (Role::Trainer, json!({"kind": "rco", "beta": "small"})),
        (Role::Dataset, json!({"kind": "jsonl", "train": 3})),
    ] {
        assert!(build_err(role, &section, &ctx).is_some(), "{section} built");
    }
}
