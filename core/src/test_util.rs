//! Conformance suites, one per trait, for every plugin: in-tree ones and a team's own
//! (always compiled; the `test-util` feature is kept, as a no-op, for manifests that name
//! it). Each suite checks the contract the runner relies on: one result per input, in input
//! order; a batch gives what each request alone gives (every draw is seeded per request); an
//! empty batch gives an empty answer; odd input gives a value or an error, never a panic. A
//! suite returns the first broken rule as an `Err` naming it.
//!
//! ```ignore
//! #[tokio::test]
//! async fn my_judge_conforms() {
//!     let judge = MyJudge::new();
//!     rco_core::test_util::judge_conforms(&judge, &rco_core::test_util::items()).await.unwrap();
//! }
//! ```

use crate::{
    Actor, BothOrders, Comparison, Critic, CritiqueRequest, Dataset, Judge, Judgement,
    LogProbRequest, PointwiseRequest, Progress, RefineRequest, RespondRequest, RewardEstimator,
    ScoredCritique, TaskItem, Trainer, TrainingGroup, Verdict,
};

/// The rule a plugin broke.
pub type Conformance = std::result::Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        let holds: bool = $cond;
        if !holds {
            return Err(format!($($msg)+));
        }
    };
}

fn call<T>(what: &str, result: crate::Result<T>) -> std::result::Result<T, String> {
    result.map_err(|e| format!("{what} failed: {e}"))
}

/// Four small items of three tasks (five-digit repair tasks, which every plugin here can
/// read), each with a reference answer.
pub fn items() -> Vec<TaskItem> {
    let item = |id: &str, task: &str, prompt: &str, initial: &str, reference: &str| TaskItem {
        id: id.into(),
        task: task.into(),
        prompt: prompt.into(),
        initial_response: initial.into(),
        reference: Some(reference.into()),
        ..TaskItem::default()
    };
    vec![
        item("a", "copy", "copy:12345", "12945", "12345"),
        item("b", "reverse", "rev:12345", "54301", "54321"),
        item("c", "increment", "inc:90127", "01230", "01238"),
        item("d", "copy", "copy:777", "771", "777"),
    ]
}

/// Both orders of each item's reference against its initial answer.
pub fn comparisons(items: &[TaskItem]) -> Vec<Comparison> {
    items
        .iter()
        .enumerate()
        .flat_map(|(i, item)| {
            let reference = item.reference.clone().unwrap_or_default();
            BothOrders::comparisons(item, &reference, |o| 2 * i as u64 + o as u64)
        })
        .collect()
}

/// The [`Judge`] contract, on `compare` and (where the judge scores) `score`.
pub async fn judge_conforms(judge: &dyn Judge, items: &[TaskItem]) -> Conformance {
    let comparisons = comparisons(items);
    let batched = call("compare", judge.compare(&comparisons).await)?;
    ensure!(
        batched.len() == comparisons.len(),
        "compare gave {} judgements for {} comparisons",
        batched.len(),
        comparisons.len()
    );
    for (i, (c, b)) in comparisons.iter().zip(&batched).enumerate() {
        let alone = call("compare", judge.compare(std::slice::from_ref(c)).await)?;
        ensure!(
            alone.len() == 1 && &alone[0] == b,
            "comparison {i} judged alone gave {alone:?}, in the batch {b:?}"
        );
    }
    ensure!(
        call("compare", judge.compare(&[]).await)?.is_empty(),
        "an empty batch gave judgements"
    );
    let junk = Comparison {
        task: "no-such-task".into(),
        prompt: "?".into(),
        reference: None,
        a: "\u{0}".into(),
        b: String::new(),
        seed: 1,
        ..Comparison::default()
    };
    // Odd input may be refused (a tokenizer that cannot spell it), but never half-answered.
    if let Ok(judged) = judge.compare(&[junk]).await {
        ensure!(judged.len() == 1, "one odd comparison gave {judged:?}");
    }
    let requests: Vec<PointwiseRequest> = items
        .iter()
        .enumerate()
        .map(|(i, item)| PointwiseRequest {
            task: item.task.clone(),
            prompt: item.prompt.clone(),
            response: item.initial_response.clone(),
            reference: item.reference.clone(),
            seed: i as u64,
            ..PointwiseRequest::default()
        })
        .collect();
    match judge.score(&requests).await {
        Err(crate::Error::Unsupported(_)) => {}
        Err(e) => return Err(format!("score failed: {e}")),
        Ok(scores) => {
            ensure!(
                scores.len() == requests.len(),
                "score gave {} scores for {} requests",
                scores.len(),
                requests.len()
            );
            ensure!(
                call("score", judge.score(&[]).await)?.is_empty(),
                "an empty batch gave scores"
            );
        }
    }
    Ok(())
}

/// The [`Actor`] contract, on `refine` (M refinements each, M varying) and `respond`.
/// `prompt` renders the refinement prompt of an item and a critique the way the actor
/// expects it.
pub async fn actor_conforms(
    actor: &dyn Actor,
    items: &[TaskItem],
    prompt: impl Fn(&TaskItem, &str) -> String,
) -> Conformance {
    let critiques = ["ok", "@2", "=12345", "junk"];
    let requests: Vec<RefineRequest> = items
        .iter()
        .enumerate()
        .map(|(i, item)| RefineRequest {
            critique: critiques[i % 4].into(),
            prompt: prompt(item, critiques[i % 4]),
            turns: vec![crate::Turn::user(prompt(item, critiques[i % 4]))],
            m: i % 3 + 1,
            seed: i as u64,
            item: item.clone(),
        })
        .collect();
    let batched = call("refine", actor.refine(&requests).await)?;
    ensure!(
        batched.len() == requests.len(),
        "refine gave {} lists for {} requests",
        batched.len(),
        requests.len()
    );
    for (i, (r, b)) in requests.iter().zip(&batched).enumerate() {
        ensure!(
            b.len() == r.m,
            "request {i} asked for {} refinements and got {}",
            r.m,
            b.len()
        );
        let alone = call("refine", actor.refine(std::slice::from_ref(r)).await)?;
        ensure!(
            alone.len() == 1 && &alone[0] == b,
            "request {i} refined alone gave {alone:?}, in the batch {b:?}"
        );
    }
    ensure!(
        call("refine", actor.refine(&[]).await)?.is_empty(),
        "an empty batch gave refinements"
    );
    let respond: Vec<RespondRequest> = items
        .iter()
        .enumerate()
        .map(|(i, item)| RespondRequest {
            item: item.clone(),
            prompt: item.prompt.clone(),
            seed: i as u64,
        })
        .collect();
    let answers = call("respond", actor.respond(&respond).await)?;
    ensure!(
        answers.len() == respond.len(),
        "respond gave {} answers for {} requests",
        answers.len(),
        respond.len()
    );
    Ok(())
}

/// The [`Critic`] contract: N critiques each (N varying), the same critiques alone as in a
/// batch, and (for critics that score) finite, non-positive log-probs, one per request.
/// `prompt` renders an item's critique prompt the way the critic expects it.
pub async fn critic_conforms(
    critic: &dyn Critic,
    items: &[TaskItem],
    prompt: impl Fn(&TaskItem) -> String,
) -> Conformance {
    let requests: Vec<CritiqueRequest> = items
        .iter()
        .enumerate()
        .map(|(i, item)| CritiqueRequest {
            prompt: prompt(item),
            n: i % 3 + 1,
            seed: 100 + i as u64,
            item: item.clone(),
        })
        .collect();
    let batched = call("critique", critic.critique(&requests).await)?;
    ensure!(
        batched.len() == requests.len(),
        "critique gave {} lists for {} requests",
        batched.len(),
        requests.len()
    );
    for (i, (r, b)) in requests.iter().zip(&batched).enumerate() {
        ensure!(
            b.len() == r.n,
            "request {i} asked for {} critiques and got {}",
            r.n,
            b.len()
        );
        ensure!(
            b.iter()
                .all(|c| c.ref_logprob.is_none_or(|lp| lp <= 0.0 && lp.is_finite())),
            "request {i}: a critique's ref_logprob is not a finite log-probability: {b:?}"
        );
        let alone = call("critique", critic.critique(std::slice::from_ref(r)).await)?;
        let texts = |cs: &[crate::Critique]| cs.iter().map(|c| c.text.clone()).collect::<Vec<_>>();
        ensure!(
            alone.len() == 1 && texts(&alone[0]) == texts(b),
            "request {i} alone gave {:?}, in the batch {:?}",
            alone.first().map(|a| texts(a)),
            texts(b)
        );
    }
    ensure!(
        call("critique", critic.critique(&[]).await)?.is_empty(),
        "an empty batch gave critiques"
    );
    let scored: Vec<LogProbRequest> = requests
        .iter()
        .zip(&batched)
        .map(|(r, b)| LogProbRequest {
            prompt: r.prompt.clone(),
            completion: b.first().map(|c| c.text.clone()).unwrap_or_default(),
        })
        .collect();
    match critic.log_probs(&scored).await {
        Err(crate::Error::Unsupported(_)) => {}
        Err(e) => return Err(format!("log_probs failed: {e}")),
        Ok(values) => {
            ensure!(
                values.len() == scored.len(),
                "log_probs gave {} values for {} requests",
                values.len(),
                scored.len()
            );
            ensure!(
                values.iter().all(|lp| *lp <= 0.0 && lp.is_finite()),
                "log_probs gave values that are not log-probabilities: {values:?}"
            );
        }
    }
    Ok(())
}

/// The [`RewardEstimator`] contract: one estimate per critique, in order; CU in [0, 1]
/// where defined and `None` for a critique without valid judgements.
pub async fn reward_conforms(reward: &dyn RewardEstimator) -> Conformance {
    let pair = |a: Verdict, b: Verdict| {
        BothOrders::from_judgements(Judgement::hard(a), Judgement::hard(b))
    };
    let invalid = || Verdict::Invalid {
        reason: "unreadable".into(),
    };
    let groups = vec![
        vec![pair(Verdict::A, Verdict::B)],
        vec![],
        vec![
            pair(Verdict::B, Verdict::A),
            pair(Verdict::Tie, Verdict::Tie),
        ],
        vec![pair(invalid(), invalid())],
    ];
    let estimates = call("estimate", reward.estimate(&groups).await)?;
    ensure!(
        estimates.len() == groups.len(),
        "estimate gave {} estimates for {} critiques",
        estimates.len(),
        groups.len()
    );
    ensure!(
        estimates[1].cu.is_none() && estimates[3].cu.is_none(),
        "critiques without a valid judgement got a CU: {estimates:?}"
    );
    ensure!(
        estimates
            .iter()
            .filter_map(|e| e.cu)
            .all(|cu| (0.0..=1.0).contains(&cu)),
        "a CU outside [0, 1]: {estimates:?}"
    );
    ensure!(
        estimates[0].cu > estimates[2].cu,
        "a refinement that wins in both orders does not beat one that loses: {estimates:?}"
    );
    ensure!(
        call("estimate", reward.estimate(&[]).await)?.is_empty(),
        "an empty batch gave estimates"
    );
    Ok(())
}

/// The [`Dataset`] contract: both splits non-empty, ids unique within a split, the same
/// items in the same order on every call.
pub fn dataset_conforms(dataset: &dyn Dataset) -> Conformance {
    for split in ["train", "test"] {
        let items = call(split, dataset.items(split))?;
        ensure!(!items.is_empty(), "the {split} split is empty");
        let mut ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        ensure!(
            ids.len() == items.len(),
            "the {split} split repeats item ids"
        );
        ensure!(
            call(split, dataset.items(split))? == items,
            "the {split} split changed between two calls"
        );
    }
    Ok(())
}

/// Training groups of the given items: two critiques each, with different CU.
pub fn groups(items: &[TaskItem], prompt: impl Fn(&TaskItem) -> String) -> Vec<TrainingGroup> {
    items
        .iter()
        .map(|item| TrainingGroup {
            item_id: item.id.clone(),
            prompt: prompt(item),
            critiques: vec![
                ScoredCritique {
                    text: format!("={}", item.reference.clone().unwrap_or_default()),
                    ref_logprob: Some(-4.0),
                    cu: 1.0,
                    truncated: false,
                },
                ScoredCritique {
                    text: "ok".into(),
                    ref_logprob: Some(-2.0),
                    cu: 0.0,
                    truncated: false,
                },
            ],
            // The judge preferred the first critique in both orders.
            preferences: vec![crate::CritiquePreference {
                a: 0,
                b: 1,
                score: Some(1.0),
                pair: crate::BothOrders::from_judgements(
                    crate::Judgement::hard(crate::Verdict::A),
                    crate::Judgement::hard(crate::Verdict::B),
                ),
            }],
        })
        .collect()
}

/// The [`Trainer`] contract: no groups is an error, not a panic; training reports every
/// group and a finite loss; a second `train` on the same output resumes rather than
/// starting over (it reports the step it resumed from, or the same summary).
pub async fn trainer_conforms(
    mut build: impl FnMut() -> crate::Result<Box<dyn Trainer>>,
    groups: &[TrainingGroup],
) -> Conformance {
    let progress: std::sync::Arc<dyn Progress> = std::sync::Arc::new(crate::NoProgress);
    let mut trainer = call("build", build())?;
    ensure!(
        trainer.train(&[], progress.clone()).await.is_err(),
        "training on no groups did not fail"
    );
    let summary = call("train", trainer.train(groups, progress.clone()).await)?;
    ensure!(
        summary.groups == groups.len(),
        "the summary counts {} groups of {}",
        summary.groups,
        groups.len()
    );
    ensure!(summary.steps > 0, "training took no step");
    ensure!(
        summary.first_loss.is_finite() && summary.last_loss.is_finite(),
        "a loss is not finite: {summary:?}"
    );
    let mut again = call("build", build())?;
    let resumed = call("train", again.train(groups, progress).await)?;
    ensure!(
        resumed.steps == summary.steps,
        "a second run on the same output took {} steps, the first {}",
        resumed.steps,
        summary.steps
    );
    Ok(())
}
