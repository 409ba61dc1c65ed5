//! The `burn` plugins built from config sections through the registry: the `rco` trainer
//! moving probability towards the critique with the highest utility and resuming exactly
//! after a crash (tiny model and SmolLM2), and SmolLM2 as the `burn` critic, actor and
//! self-rewarding judge. The models themselves are tested in `lm/tests`.

use std::sync::Arc;

use rco_core::{
    CritiqueRequest, LogProbRequest, NoProgress, ScoredCritique, TaskItem, TrainingGroup,
};
use rco_lm::checkpoint::{self, ModelSpec};
use rco_lm::critic::open_critic;
use rco_lm::device::{Cpu, DeviceSpec};
use rco_lm::engine::Settings;
// Links the plugin crate, whose registrations the tests find through the registry.
use rco_plugin_burn as _;

#[path = "../../../lm/tests/common/mod.rs"]
mod common;
use common::smollm2_gguf as gguf;

fn spec() -> ModelSpec {
    common::tiny_spec(1)
}

/// A critic's settings: default sampling, chat template, `batch_size` rows at a time.
fn settings(batch_size: usize) -> Settings {
    Settings {
        batch_size,
        ..Settings::default()
    }
}

/// Progress that panics after a number of steps, to stop a training run the hard way.
struct StopAfter(std::sync::atomic::AtomicU64, u64);
impl rco_core::Progress for StopAfter {
    fn inc(&self, delta: u64) {
        let done = self.0.fetch_add(delta, std::sync::atomic::Ordering::SeqCst) + delta;
        if done > self.1 {
            panic!("simulated crash after step {}", self.1);
        }
    }
}

fn trainer(
    section: &serde_json::Value,
    base: &std::path::Path,
    output: &std::path::Path,
) -> Box<dyn rco_core::Trainer> {
    trainer_recording(section, base, output, Arc::new(rco_core::NoMetrics))
}

/// [`trainer`], its per-step records sent to `metrics`.
fn trainer_recording(
    section: &serde_json::Value,
    base: &std::path::Path,
    output: &std::path::Path,
    metrics: Arc<dyn rco_core::Metrics>,
) -> Box<dyn rco_core::Trainer> {
    let mut common = rco_core::BuildContext::new("trainer", 5);
    common.metrics = metrics;
    let ctx = rco_core::TrainerContext {
        common,
        base_checkpoint: base.to_path_buf(),
        output: output.to_path_buf(),
        critic_section: serde_json::json!({}),
    };
    rco_core::registry::build::<rco_core::registry::TrainerRole>("trainer", section, &ctx).unwrap()
}

/// Metrics kept in memory.
#[derive(Default)]
struct Recorded(std::sync::Mutex<Vec<serde_json::Value>>);

impl rco_core::Metrics for Recorded {
    fn record(&self, record: serde_json::Value) {
        self.0.lock().unwrap().push(record);
    }
}

/// One training test at a time. Two of these tests at once deadlocked once, every thread
/// parked: a pool worker blocked on a lock in burn-autodiff's `cleanup_orphaned_entries`
/// while the other tests waited for the pool. The likely cause (read from the stacks, not
/// proven): trainings in one process share rayon's global pool, and a worker waiting inside
/// one training's kernel may steal another's queued step and run it inside the first.
static ONE_TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_training() -> std::sync::MutexGuard<'static, ()> {
    ONE_TRAINING.lock().unwrap_or_else(|e| e.into_inner())
}

/// One group's critiques with their CUs, each with its log-prob under the base as the
/// reference.
fn scored(texts: &[&str], cus: &[f64], before: &[f64]) -> Vec<ScoredCritique> {
    texts
        .iter()
        .zip(cus)
        .zip(before)
        .map(|((t, cu), lp)| ScoredCritique {
            text: t.to_string(),
            cu: *cu,
            ref_logprob: Some(*lp),
            truncated: false,
        })
        .collect()
}

/// A direct comparison of critiques `a` and `b` that scored `score` (P(a better)).
fn preference(a: usize, b: usize, score: f64) -> rco_core::CritiquePreference {
    rco_core::CritiquePreference {
        a,
        b,
        score: Some(score),
        pair: rco_core::BothOrders {
            refined_first: rco_core::Judgement::hard(rco_core::Verdict::A),
            refined_second: rco_core::Judgement::hard(rco_core::Verdict::B),
        },
    }
}

/// A fresh tiny base critic, four critiques of one quickstart prompt, and their log-probs
/// under it.
struct Fixture {
    base: std::path::PathBuf,
    prompt: String,
    texts: [&'static str; 4],
    requests: Vec<LogProbRequest>,
    before: Vec<f64>,
}

impl Fixture {
    /// The four critiques as one training group with these CUs and direct preferences,
    /// each with its log-prob under the base as the reference.
    fn group(
        &self,
        cus: [f64; 4],
        preferences: Vec<rco_core::CritiquePreference>,
    ) -> TrainingGroup {
        TrainingGroup {
            item_id: "a".into(),
            prompt: self.prompt.clone(),
            critiques: scored(&self.texts, &cus, &self.before),
            preferences,
        }
    }
}

/// The [`Fixture`], its base critic saved in `dir/base`.
async fn fixture(dir: &std::path::Path) -> Fixture {
    let spec = spec();
    let base = dir.join("base");
    checkpoint::save(
        &base,
        &spec,
        checkpoint::init::<Cpu>(&spec, &Default::default()),
    )
    .unwrap();
    let critic = open_critic("critic", &base, DeviceSpec::Cpu, settings(16)).unwrap();
    let prompt = "copy:12|13>".to_string();
    let texts = ["@2=2", "ok", "@1=5", "@2"];
    let requests: Vec<LogProbRequest> = texts
        .iter()
        .map(|t| LogProbRequest {
            prompt: prompt.clone(),
            completion: t.to_string(),
        })
        .collect();
    let before = critic.log_probs(&requests).await.unwrap();
    Fixture {
        base,
        prompt,
        texts,
        requests,
        before,
    }
}

#[tokio::test]
async fn rco_trainer_pushes_up_the_useful_critique_and_resumes_exactly() {
    let _one = one_training();
    let dir = tempfile::tempdir().unwrap();
    let fixture = fixture(dir.path()).await;
    let groups = vec![fixture.group([1.0, 0.5, 0.0, 0.5], Vec::new()); 4];
    let Fixture {
        base,
        requests,
        before,
        ..
    } = fixture;

    // `train_flat_groups = false` leaves out groups whose critiques all have the same CU:
    // 4 informative groups and 4 flat ones, one group per step, give 4 steps; the summary
    // still counts the flat groups.
    let mut flat = groups[0].clone();
    flat.critiques.iter_mut().for_each(|c| c.cu = 0.5);
    let mixed: Vec<TrainingGroup> = groups.iter().cloned().chain(vec![flat; 4]).collect();
    // `keep_final_checkpoint = false`: the finished training leaves the critic and
    // `train/state.json`, not the last step's model and optimizer state.
    let section = serde_json::json!({"kind": "rco", "epochs": 1, "groups_per_batch": 1, "train_flat_groups": false, "rows_per_pass": 1, "checkpoint_every": 2, "keep_final_checkpoint": false});
    let informative = dir.path().join("informative");
    let summary = trainer(&section, &base, &informative)
        .train(&mixed, Arc::new(NoProgress))
        .await
        .unwrap();
    assert_eq!((summary.steps, summary.flat_groups), (4, 4), "{summary:?}");
    let left: Vec<String> = std::fs::read_dir(informative.join("train"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["state.json"]);
    open_critic("critic", &informative, DeviceSpec::Cpu, settings(16)).expect("trained critic");

    let section = serde_json::json!({"kind": "rco", "beta": 0.5, "learning_rate": 0.002, "epochs": 6, "groups_per_batch": 2, "accumulation": 2, "checkpoint_every": 1});

    let summary = trainer(&section, &base, &dir.path().join("rco"))
        .train(&groups, Arc::new(NoProgress))
        .await
        .unwrap();
    assert_eq!(summary.steps, 6);
    assert!(summary.last_loss < summary.first_loss, "{summary:?}");
    // By default the last checkpoint stays.
    assert!(dir.path().join("rco/train/step-6").is_dir());
    let trained = open_critic(
        "critic",
        &dir.path().join("rco"),
        DeviceSpec::Cpu,
        settings(16),
    )
    .unwrap();
    let after = trained.log_probs(&requests).await.unwrap();
    assert!(
        after[0] > before[0],
        "best critique {} -> {}",
        before[0],
        after[0]
    );
    assert!(
        after[2] < before[2],
        "worst critique {} -> {}",
        before[2],
        after[2]
    );

    // Training again on a finished directory does nothing more.
    let again = trainer(&section, &base, &dir.path().join("rco"))
        .train(&groups, Arc::new(NoProgress))
        .await
        .unwrap();
    assert_eq!((again.resumed_from_step, again.steps), (6, 6));

    // A run that crashes during step 3 (after its checkpoint) and is resumed ends with the same weights.
    let crashed_dir = dir.path().join("crashed");
    let (s, b, o, g) = (
        section.clone(),
        base.clone(),
        crashed_dir.clone(),
        groups.clone(),
    );
    let crashed = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(trainer(&s, &b, &o).train(&g, Arc::new(StopAfter(Default::default(), 2))))
    })
    .join();
    assert!(crashed.is_err(), "the simulated crash did not happen");
    let resumed = trainer(&section, &base, &crashed_dir)
        .train(&groups, Arc::new(NoProgress))
        .await
        .unwrap();
    assert_eq!(resumed.resumed_from_step, 3);
    let resumed_critic =
        open_critic("critic", &crashed_dir, DeviceSpec::Cpu, settings(16)).unwrap();
    assert_eq!(resumed_critic.log_probs(&requests).await.unwrap(), after);
}

/// DPCO with `pairs_per_pass = 1` (each pair's forward and backward pass alone, gradients
/// summed), and with `rows_per_pass = 1` (each critique's backward pass alone, the pair's
/// weight from a pass without gradients first), trains the critic that all of a group's
/// pairs in one pass train.
#[tokio::test]
async fn dpco_in_passes_of_one_pair_trains_the_same_critic() {
    let _one = one_training();
    let dir = tempfile::tempdir().unwrap();
    let fixture = fixture(dir.path()).await;
    let preferences = [
        (0, 1, 1.0),
        (0, 2, 1.0),
        (0, 3, 0.75),
        (1, 2, 0.75),
        (1, 3, 0.5),
        (2, 3, 0.0),
    ]
    .into_iter()
    .map(|(a, b, score)| preference(a, b, score))
    .collect();
    let groups = vec![fixture.group([0.5; 4], preferences); 2];
    let Fixture {
        base,
        requests,
        before,
        ..
    } = fixture;
    let mut trained = Vec::new();
    for (key, per_pass) in [
        ("pairs_per_pass", 0),
        ("pairs_per_pass", 1),
        ("rows_per_pass", 1),
    ] {
        let section = serde_json::json!({"kind": "dpco", "learning_rate": 0.002, "epochs": 2, "groups_per_batch": 1, key: per_pass});
        let out = dir.path().join(format!("dpco-{key}-{per_pass}"));
        let summary = trainer(&section, &base, &out)
            .train(&groups, Arc::new(NoProgress))
            .await
            .unwrap();
        assert_eq!(summary.steps, 4, "{summary:?}");
        let critic = open_critic("critic", &out, DeviceSpec::Cpu, settings(16)).unwrap();
        trained.push((summary, critic.log_probs(&requests).await.unwrap()));
    }
    let (whole, at_once) = &trained[0];
    for (split, one_by_one) in &trained[1..] {
        assert!(
            (whole.first_loss - split.first_loss).abs() < 1e-5,
            "{whole:?} {split:?}"
        );
        assert!(
            (whole.last_loss - split.last_loss).abs() < 1e-4,
            "{whole:?} {split:?}"
        );
        for (a, b) in at_once.iter().zip(one_by_one) {
            assert!((a - b).abs() < 1e-3, "{at_once:?} {one_by_one:?}");
        }
    }
    // The preferred critique went up.
    assert!(at_once[0] > before[0], "{before:?} -> {at_once:?}");
}

/// DPCO's `min_margin`: pairs the judge scored within it of a tie do not train. With a
/// decisive pair and two near ties, a margin of 0.1 trains the critic that the decisive pair
/// alone trains; a margin above every pair's distance leaves nothing, and says so.
#[tokio::test]
async fn dpco_min_margin_leaves_out_the_pairs_the_judge_all_but_tied() {
    let _one = one_training();
    let dir = tempfile::tempdir().unwrap();
    let fixture = fixture(dir.path()).await;
    let all = vec![fixture.group(
        [0.5; 4],
        vec![
            preference(0, 1, 0.9),
            preference(0, 2, 0.52),
            preference(3, 1, 0.45),
        ],
    )];
    let decisive = vec![fixture.group([0.5; 4], vec![preference(0, 1, 0.9)])];
    let mut trained = Vec::new();
    for (name, groups, margin) in [("all", &all, 0.1), ("decisive", &decisive, 0.0)] {
        let section = serde_json::json!({"kind": "dpco", "learning_rate": 0.002, "epochs": 2, "min_margin": margin});
        let out = dir.path().join(name);
        let summary = trainer(&section, &fixture.base, &out)
            .train(groups, Arc::new(NoProgress))
            .await
            .unwrap();
        assert_eq!(summary.steps, 2, "{summary:?}");
        let critic = open_critic("critic", &out, DeviceSpec::Cpu, settings(16)).unwrap();
        trained.push((summary, critic.log_probs(&fixture.requests).await.unwrap()));
    }
    let ((margin, with_margin), (alone, decisive_only)) = (&trained[0], &trained[1]);
    assert!(
        (margin.first_loss - alone.first_loss).abs() < 1e-6,
        "{margin:?} {alone:?}"
    );
    for (a, b) in with_margin.iter().zip(decisive_only) {
        assert!((a - b).abs() < 1e-4, "{with_margin:?} {decisive_only:?}");
    }
    // Without the margin the near ties train too: another critic.
    let section = serde_json::json!({"kind": "dpco", "learning_rate": 0.002, "epochs": 2});
    let out = dir.path().join("no-margin");
    trainer(&section, &fixture.base, &out)
        .train(&all, Arc::new(NoProgress))
        .await
        .unwrap();
    let critic = open_critic("critic", &out, DeviceSpec::Cpu, settings(16)).unwrap();
    let no_margin = critic.log_probs(&fixture.requests).await.unwrap();
    assert!(
        no_margin
            .iter()
            .zip(decisive_only)
            .any(|(a, b)| (a - b).abs() > 1e-3),
        "{no_margin:?} {decisive_only:?}"
    );
    // Every pair within the margin: nothing to train on, named.
    let section = serde_json::json!({"kind": "dpco", "min_margin": 0.45});
    let err = trainer(&section, &fixture.base, &dir.path().join("none"))
        .train(&all, Arc::new(NoProgress))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("min_margin"), "{err}");
}

/// `optimizer = "sgd"` moves the critic by as much as the reward says, AdamW by its learning
/// rate: one step on a group, and on the same group with every CU pulled ten times closer
/// to the group's mean. Under SGD the best critique's log-prob moves about a tenth as far
/// (the residuals, so the gradient, are a tenth: `beta` is large enough for the objective
/// to be near linear in CU); under AdamW, whose first step is about the learning rate times
/// the gradient's sign, about as far. A checkpoint of one optimizer does not resume under
/// the other.
#[tokio::test]
async fn sgd_steps_scale_with_the_reward_and_adamw_steps_do_not() {
    let _one = one_training();
    let dir = tempfile::tempdir().unwrap();
    let fixture = fixture(dir.path()).await;
    let wide = vec![fixture.group([1.0, 0.5, 0.0, 0.5], Vec::new())];
    let narrow = vec![fixture.group([0.55, 0.5, 0.45, 0.5], Vec::new())];
    let mut moved = Vec::new();
    for (optimizer, learning_rate) in [("sgd", 0.05), ("adamw", 0.0005)] {
        let mut pair = Vec::new();
        let mut norms = Vec::new();
        for (name, groups) in [("wide", &wide), ("narrow", &narrow)] {
            let section = serde_json::json!({"kind": "rco", "beta": 5.0, "optimizer": optimizer, "learning_rate": learning_rate, "epochs": 1, "groups_per_batch": 1});
            let out = dir.path().join(format!("{optimizer}-{name}"));
            let records = Arc::new(Recorded::default());
            let summary = trainer_recording(&section, &fixture.base, &out, records.clone())
                .train(groups, Arc::new(NoProgress))
                .await
                .unwrap();
            assert_eq!(summary.steps, 1, "{summary:?}");
            let critic = open_critic("critic", &out, DeviceSpec::Cpu, settings(16)).unwrap();
            let after = critic.log_probs(&fixture.requests).await.unwrap();
            pair.push(after[0] - fixture.before[0]);
            let records = records.0.lock().unwrap();
            assert_eq!(records.len(), 1, "{records:?}");
            assert_eq!(records[0]["optimizer"], optimizer, "{records:?}");
            norms.push(records[0]["grad_norm"].as_f64().expect("grad_norm"));
        }
        assert!(
            pair[0] > 1e-3,
            "{optimizer}: the best critique's log-prob moved {pair:?}"
        );
        // At the base every log-ratio is 0, so the gradient is linear in the rewards'
        // spread: a tenth of it, whichever optimizer then steps.
        assert!(norms[0] > 0.0, "{optimizer}: {norms:?}");
        let ratio = norms[1] / norms[0];
        assert!((0.099..0.101).contains(&ratio), "{optimizer}: {norms:?}");
        moved.push((optimizer, pair[1] / pair[0]));
    }
    let (sgd, adamw) = (moved[0].1, moved[1].1);
    assert!((0.07..0.13).contains(&sgd), "{moved:?}");
    assert!(adamw > 0.6, "{moved:?}");

    // A checkpoint written under AdamW, not finished, is refused under SGD, naming both.
    let out = dir.path().join("switched");
    std::fs::create_dir_all(out.join("train/step-1")).unwrap();
    std::fs::write(
        out.join("train/state.json"),
        r#"{"step": 1, "checkpoint": "step-1", "losses": [0.1], "done": false}"#,
    )
    .unwrap();
    let section =
        serde_json::json!({"kind": "rco", "optimizer": "sgd", "epochs": 2, "groups_per_batch": 1});
    let error = trainer(&section, &fixture.base, &out)
        .train(&wide, Arc::new(NoProgress))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("adamw")
            && error.contains("optimizer = \"sgd\"")
            && error.contains("state.json"),
        "{error}"
    );
}

#[tokio::test]
async fn a_truncated_critique_is_scored_and_trained_as_its_prefix() {
    let _one = one_training();
    let spec = spec();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    checkpoint::save(
        &base,
        &spec,
        checkpoint::init::<Cpu>(&spec, &Default::default()),
    )
    .unwrap();
    // Three characters at most: the untrained model rarely ends that soon.
    let mut short = settings(16);
    short.sampling.temperature = 1.0;
    short.sampling.max_tokens = 3;
    let critic = open_critic("critic", &base, DeviceSpec::Cpu, short).unwrap();
    let prompt = "copy:12|13>".to_string();
    let request = CritiqueRequest {
        item: TaskItem::default(),
        prompt: prompt.clone(),
        n: 8,
        seed: 3,
    };
    let cut: Vec<_> = critic
        .critique_one(request)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.truncated)
        .take(4)
        .collect();
    assert!(cut.len() >= 2, "{} of 8 critiques cut", cut.len());
    // The critic's reference for a cut critique is its prefix's: scored with an end after
    // it (as a finished critique is), the same text is less likely by log p(end | prefix).
    let requests: Vec<LogProbRequest> = cut
        .iter()
        .map(|c| LogProbRequest {
            prompt: prompt.clone(),
            completion: c.text.clone(),
        })
        .collect();
    let with_end = critic.log_probs(&requests).await.unwrap();
    for (c, ended) in cut.iter().zip(&with_end) {
        let prefix = c.ref_logprob.unwrap();
        assert!(
            prefix > ended + 1e-3,
            "{:?}: prefix {prefix}, with an end {ended}",
            c.text
        );
    }
    // A group recorded before cut critiques were scored as prefixes: references with the
    // end, and no `truncated` flag in groups.jsonl (the runner takes it from
    // critiques.jsonl). The trainer scores the cut ones again, so at the base its first
    // loss is the loss at log p_theta = log p_ref: the residuals are the targets alone.
    let cus: Vec<f64> = (0..cut.len()).map(|i| (i % 2) as f64).collect();
    let group = TrainingGroup {
        item_id: "a".into(),
        prompt: prompt.clone(),
        critiques: cut
            .iter()
            .zip(&cus)
            .zip(&with_end)
            .map(|((c, cu), ended)| ScoredCritique {
                text: c.text.clone(),
                cu: *cu,
                ref_logprob: Some(*ended),
                truncated: true,
            })
            .collect(),
        preferences: Vec::new(),
    };
    let beta = 0.5;
    let section = serde_json::json!({"kind": "rco", "beta": beta, "learning_rate": 1e-6, "epochs": 1, "groups_per_batch": 1});
    let summary = trainer(&section, &base, &dir.path().join("rco"))
        .train(&[group], Arc::new(NoProgress))
        .await
        .unwrap();
    let zeros = vec![0.0; cus.len()];
    let at_reference = rco_core::objective::group_loss(&zeros, &zeros, &cus, beta);
    assert!(
        (summary.first_loss - at_reference).abs() < 1e-3 * at_reference.max(1.0),
        "first loss {} against {at_reference} at the reference",
        summary.first_loss
    );
}

/// SmolLM2 as the `burn` critic, actor and self-rewarding judge, built from config sections
/// through the registry.
#[tokio::test]
async fn smollm2_plays_critic_actor_and_judge() {
    use rco_core::registry::{build, ActorRole, CriticRole, JudgeRole};
    use rco_core::{
        BuildContext, Comparison, CriticContext, CritiqueRequest, LogProbRequest, PointwiseRequest,
        RefineRequest, TaskItem,
    };

    let path = gguf();
    let section = |temperature: f64, max_tokens: usize| serde_json::json!({"kind": "burn", "checkpoint": path, "sampling": {"temperature": temperature, "top_p": 0.9, "max_tokens": max_tokens}, "batch_size": 8});
    let ctx = BuildContext::new("smollm2", 1);
    let item = |id: &str, prompt: &str, answer: &str| TaskItem {
        id: id.into(),
        task: "qa".into(),
        prompt: prompt.into(),
        initial_response: answer.into(),
        reference: None,
        ..TaskItem::default()
    };
    let items = [
        item("a", "What is 2 + 2?", "2 + 2 = 5."),
        item(
            "b",
            "Name the largest planet.",
            "The largest planet is Mars.",
        ),
    ];

    let critic_section = section(0.8, 24);
    let critic = build::<CriticRole>("critic", &critic_section, &CriticContext::new(ctx.clone()))
        .expect("critic");
    let templates = rco_core::PromptTemplates::default();
    let requests: Vec<CritiqueRequest> = items
        .iter()
        .map(|i| CritiqueRequest {
            prompt: rco_core::template::render(
                &templates.default.critique,
                &[("prompt", &i.prompt), ("response", &i.initial_response)],
            ),
            item: i.clone(),
            n: 2,
            seed: 9,
        })
        .collect();
    let critiques = critic.critique(&requests).await.expect("critique");
    assert_eq!(
        critiques.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![2, 2]
    );
    for (request, group) in requests.iter().zip(&critiques) {
        for c in group {
            assert!(!c.text.trim().is_empty());
            let lp = c.ref_logprob.expect("ref log-prob");
            assert!(lp.is_finite() && lp < 0.0, "{lp}");
            let again = critic
                .log_probs(&[LogProbRequest {
                    prompt: request.prompt.clone(),
                    completion: c.text.clone(),
                }])
                .await
                .expect("log_probs");
            // `log_probs` scores a finished completion, with its end; a critique cut at the
            // token limit is referenced as its prefix, without one.
            if c.truncated {
                assert!(again[0] < lp - 1e-3, "{} vs {lp} (cut)", again[0]);
            } else {
                assert!((again[0] - lp).abs() < 1e-3, "{} vs {lp}", again[0]);
            }
        }
    }

    let actor_section = section(0.7, 24);
    let actor = build::<ActorRole>("actor", &actor_section, &ctx).expect("actor");
    let refine: Vec<RefineRequest> = items
        .iter()
        .zip(&critiques)
        .map(|(i, c)| RefineRequest {
            item: i.clone(),
            critique: c[0].text.clone(),
            prompt: rco_core::template::render(
                &templates.default.refinement,
                &[
                    ("prompt", &i.prompt),
                    ("response", &i.initial_response),
                    ("critique", &c[0].text),
                ],
            ),
            turns: templates.default.refinement_turns(i, &c[0].text),
            m: 2,
            seed: 4,
        })
        .collect();
    let refined = actor.refine(&refine).await.expect("refine");
    assert_eq!(refined.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 2]);

    let judge_section = section(0.0, 48);
    let judge = build::<JudgeRole>("judge", &judge_section, &ctx).expect("judge");
    let comparisons: Vec<Comparison> = items
        .iter()
        .zip(&refined)
        .flat_map(|(i, r)| {
            let pair = |a: &str, b: &str, seed| Comparison {
                task: i.task.clone(),
                prompt: i.prompt.clone(),
                reference: None,
                a: a.into(),
                b: b.into(),
                seed,
                ..Comparison::default()
            };
            vec![
                pair(&r[0].text, &i.initial_response, 1),
                pair(&i.initial_response, &r[0].text, 2),
            ]
        })
        .collect();
    let verdicts = judge.compare(&comparisons).await.expect("compare");
    assert_eq!(verdicts.len(), 4);
    for v in &verdicts {
        if let rco_core::Verdict::Invalid { reason } = &v.verdict {
            assert!(reason.contains("[[A]]"), "{reason}");
        }
    }
    let scores = judge
        .score(&[PointwiseRequest {
            task: "qa".into(),
            prompt: items[0].prompt.clone(),
            response: "2 + 2 = 4.".into(),
            reference: None,
            seed: 3,
            ..PointwiseRequest::default()
        }])
        .await
        .expect("score");
    assert_eq!(scores.len(), 1);
}

/// SmolLM2's group for the training tests: a useful critique (CU 1) and a useless one
/// (CU 0) of a wrong answer, with the base model's log-probs as their reference; returns the
/// log-prob requests of the two critiques, their log-probs and the group.
async fn two_plus_two(path: &std::path::Path) -> (Vec<LogProbRequest>, Vec<f64>, TrainingGroup) {
    let critic = open_critic("critic", path, DeviceSpec::Cpu, settings(8)).expect("critic");
    let prompt = "Critique this answer to 'What is 2 + 2?': 2 + 2 = 5.".to_string();
    let texts = ["The answer is wrong: 2 + 2 = 4.", "Looks good."];
    let requests: Vec<LogProbRequest> = texts
        .iter()
        .map(|t| LogProbRequest {
            prompt: prompt.clone(),
            completion: t.to_string(),
        })
        .collect();
    let before = critic.log_probs(&requests).await.expect("log_probs");
    let group = TrainingGroup {
        item_id: "a".into(),
        prompt,
        critiques: scored(&texts, &[1.0, 0.0], &before),
        preferences: Vec::new(),
    };
    (requests, before, group)
}

/// The RCO trainer fine-tunes SmolLM2 itself: the critique with the highest utility gains
/// probability, the lowest loses it, and the trained critic is written as a Hugging Face
/// directory that the `burn` critic reads back.
#[tokio::test]
async fn rco_trains_smollm2_and_writes_a_hugging_face_critic() {
    let _one = one_training();
    use rco_core::registry::TrainerRole;
    use rco_core::{BuildContext, NoProgress, TrainerContext};

    let path = gguf();
    let dir = tempfile::tempdir().expect("tempdir");
    let (requests, before, group) = two_plus_two(&path).await;
    let section = serde_json::json!({"kind": "rco", "beta": 0.5, "learning_rate": 0.000001, "epochs": 2, "groups_per_batch": 1, "checkpoint_every": 100});
    let ctx = TrainerContext {
        common: BuildContext::new("trainer", 1),
        base_checkpoint: path.clone(),
        output: dir.path().join("rco"),
        critic_section: serde_json::json!({}),
    };
    let build = |section: &serde_json::Value, ctx: &TrainerContext| {
        rco_core::registry::build::<TrainerRole>("trainer", section, ctx)
    };
    let summary = build(&section, &ctx)
        .expect("trainer")
        .train(&[group.clone()], std::sync::Arc::new(NoProgress))
        .await
        .expect("train");
    assert_eq!(summary.steps, 2);
    assert!(summary.last_loss < summary.first_loss, "{summary:?}");
    assert!(
        dir.path().join("rco/config.json").is_file()
            && dir.path().join("rco/model.safetensors").is_file()
    );
    let trained = open_critic(
        "critic",
        &dir.path().join("rco"),
        DeviceSpec::Cpu,
        settings(8),
    )
    .expect("trained critic");
    let after = trained.log_probs(&requests).await.expect("log_probs");
    assert!(
        after[0] > before[0],
        "useful critique {} -> {}",
        before[0],
        after[0]
    );
    assert!(
        after[1] < before[1],
        "useless critique {} -> {}",
        before[1],
        after[1]
    );

    // The same training stopped by a crash after its first checkpoint (step 1 of 2), then
    // resumed from the saved model and AdamW state, ends where the uninterrupted one did.
    struct CrashAfterFirstStep;
    impl rco_core::Progress for CrashAfterFirstStep {
        fn inc(&self, delta: u64) {
            assert!(delta != 1, "simulated crash after the first step");
        }
    }
    let resumed_dir = dir.path().join("resumed");
    let mut ctx = ctx.clone();
    ctx.output = resumed_dir.clone();
    let section = serde_json::json!({"kind": "rco", "beta": 0.5, "learning_rate": 0.000001, "epochs": 2, "groups_per_batch": 1, "checkpoint_every": 1});
    let mut trainer = build(&section, &ctx).expect("trainer");
    let groups = vec![group];
    let crashed = {
        let groups = groups.clone();
        tokio::spawn(async move {
            let _ = trainer
                .train(&groups, std::sync::Arc::new(CrashAfterFirstStep))
                .await;
        })
        .await
    };
    assert!(
        crashed.is_err_and(|e| e.is_panic()),
        "the first run did not crash"
    );
    assert!(!resumed_dir.join("config.json").exists());
    let summary = build(&section, &ctx)
        .expect("trainer")
        .train(&groups, std::sync::Arc::new(NoProgress))
        .await
        .expect("resumed training");
    assert_eq!(
        (summary.resumed_from_step, summary.steps),
        (1, 2),
        "{summary:?}"
    );
    let resumed = open_critic("critic", &resumed_dir, DeviceSpec::Cpu, settings(8))
        .expect("resumed critic")
        .log_probs(&requests)
        .await
        .expect("log_probs");
    for (a, b) in after.iter().zip(&resumed) {
        assert!(
            (a - b).abs() < 1e-3,
            "uninterrupted {after:?} vs resumed {resumed:?}"
        );
    }
}

/// The same SmolLM2 training with LoRA adapters (`lora` in the trainer's section): the
/// useful critique gains probability and the useless one loses it; the critic is written
/// with the adapters merged (a plain Hugging Face directory) and the adapters alone as a
/// PEFT directory; training checkpoints hold the adapters only (kilobytes, not the model);
/// and a run stopped after its first checkpoint resumes to the same critic.
#[tokio::test]
async fn rco_trains_smollm2_lora_adapters_merges_them_and_resumes() {
    let _one = one_training();
    use rco_core::registry::TrainerRole;
    use rco_core::{BuildContext, TrainerContext};

    let path = gguf();
    let dir = tempfile::tempdir().expect("tempdir");
    let (requests, before, group) = two_plus_two(&path).await;
    let groups = vec![group];
    let section = |checkpoint_every: usize| {
        serde_json::json!({"kind": "rco", "beta": 0.5, "learning_rate": 0.0001, "epochs": 2,
            "groups_per_batch": 1, "checkpoint_every": checkpoint_every,
            "lora": {"rank": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj", "down_proj"]}})
    };
    let context = |out: &str| TrainerContext {
        common: BuildContext::new("trainer", 1),
        base_checkpoint: path.clone(),
        output: dir.path().join(out),
        critic_section: serde_json::json!({}),
    };
    let build = |section: &serde_json::Value, ctx: &TrainerContext| {
        rco_core::registry::build::<TrainerRole>("trainer", section, ctx).expect("trainer")
    };
    let summary = build(&section(100), &context("lora"))
        .train(&groups, Arc::new(NoProgress))
        .await
        .expect("train");
    assert_eq!(summary.steps, 2);
    assert!(summary.last_loss < summary.first_loss, "{summary:?}");
    let out = dir.path().join("lora");
    for file in [
        "config.json",
        "model.safetensors",
        "adapter/adapter_config.json",
        "adapter/adapter_model.safetensors",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let after = open_critic("critic", &out, DeviceSpec::Cpu, settings(8))
        .expect("trained critic")
        .log_probs(&requests)
        .await
        .expect("log_probs");
    assert!(after[0] > before[0], "useful {} -> {}", before[0], after[0]);
    assert!(
        after[1] < before[1],
        "useless {} -> {}",
        before[1],
        after[1]
    );

    // Stopped after the first step's checkpoint, then resumed.
    struct CrashAfterFirstStep;
    impl rco_core::Progress for CrashAfterFirstStep {
        fn inc(&self, delta: u64) {
            assert!(delta != 1, "simulated crash after the first step");
        }
    }
    let ctx = context("resumed");
    let mut trainer = build(&section(1), &ctx);
    let crashed = {
        let groups = groups.clone();
        tokio::spawn(async move {
            let _ = trainer.train(&groups, Arc::new(CrashAfterFirstStep)).await;
        })
        .await
    };
    assert!(
        crashed.is_err_and(|e| e.is_panic()),
        "the first run did not crash"
    );
    let step = ctx.output.join("train/step-1");
    let adapters = step.join("adapters.mpk");
    assert!(
        !step.join("model.mpk").exists(),
        "the checkpoint holds the whole model"
    );
    let size = std::fs::metadata(&adapters).expect("adapters.mpk").len();
    assert!(size < 8_000_000, "adapter checkpoint of {size} bytes");
    // The checkpoint holds adapters only: resuming them on another base is refused.
    let other_base = dir.path().join("other-base.gguf");
    let mut bytes = std::fs::read(&path).expect("read gguf");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x11;
    std::fs::write(&other_base, &bytes).expect("write gguf");
    let other = TrainerContext {
        base_checkpoint: other_base,
        ..context("resumed")
    };
    let refused = build(&section(1), &other)
        .train(&groups, Arc::new(NoProgress))
        .await
        .expect_err("adapters resumed on another base");
    let message = refused.to_string();
    assert!(
        message.contains("LoRA adapters were trained on a base") && message.contains("other-base"),
        "{message}"
    );
    let summary = build(&section(1), &ctx)
        .train(&groups, Arc::new(NoProgress))
        .await
        .expect("resumed training");
    assert_eq!(
        (summary.resumed_from_step, summary.steps),
        (1, 2),
        "{summary:?}"
    );
    let resumed = open_critic("critic", &ctx.output, DeviceSpec::Cpu, settings(8))
        .expect("resumed critic")
        .log_probs(&requests)
        .await
        .expect("log_probs");
    for (a, b) in after.iter().zip(&resumed) {
        assert!(
            (a - b).abs() < 1e-3,
            "uninterrupted {after:?} vs resumed {resumed:?}"
        );
    }
}
