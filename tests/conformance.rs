//! The conformance suites of `rco_core::test_util`, run on every registered plugin: each
//! dataset, critic, actor, judge, reward estimator and trainer, the `openai` ones against the
//! in-process OpenAI-compatible test server. A plugin registered without a suite here fails
//! `every_registered_plugin_is_covered`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rco_core::registry::{
    build, ActorRole, CriticRole, DatasetRole, JudgeRole, PluginRole, RewardRole, Role, TrainerRole,
};
use rco_core::test_util::{
    actor_conforms, critic_conforms, dataset_conforms, groups, items, judge_conforms,
    reward_conforms, trainer_conforms,
};
use rco_core::{BuildContext, CriticContext, TaskItem, TrainerContext};
use rco_plugin_openai::testing::{ServerOptions, TestServer};
use serde_json::{json, Value};

/// Every (role, kind) a suite below runs on.
const COVERED: &[(Role, &str)] = &[
    (Role::Dataset, "jsonl"),
    (Role::Dataset, "quickstart"),
    (Role::Dataset, "tasks"),
    (Role::Critic, "burn"),
    (Role::Critic, "fixed"),
    (Role::Critic, "openai"),
    (Role::Critic, "quickstart"),
    (Role::Critic, "self-refine"),
    (Role::Actor, "burn"),
    (Role::Actor, "openai"),
    (Role::Actor, "quickstart"),
    (Role::Judge, "burn"),
    (Role::Judge, "code"),
    (Role::Judge, "command"),
    (Role::Judge, "math"),
    (Role::Judge, "noisy"),
    (Role::Judge, "openai"),
    (Role::Judge, "pairrm"),
    (Role::Judge, "per_task"),
    (Role::Judge, "reward_model"),
    (Role::Judge, "verifier"),
    (Role::RewardEstimator, "cu"),
    (Role::Trainer, "rco"),
    (Role::Trainer, "sft"),
    (Role::Trainer, "dpco"),
];

/// The prompt templates the tiny character model can spell.
fn context(name: &str) -> BuildContext {
    rco_plugins::link();
    let mut ctx = BuildContext::new(name, 11);
    let t = &mut ctx.templates.default;
    t.critique = "{prompt}|{response}>".into();
    t.refinement = "{prompt}|{response}|{critique}>".into();
    t.pairwise = "{prompt}|{a}|{b}>".into();
    t.pointwise = "{prompt}|{response}>".into();
    ctx
}

fn critique_prompt(item: &TaskItem) -> String {
    context("critic").templates.critique_prompt(item)
}

fn refinement_prompt(item: &TaskItem, critique: &str) -> String {
    context("actor").templates.refinement_prompt(item, critique)
}

fn check<R: PluginRole>(section: &Value, ctx: &R::Context) -> R::Plugin {
    match build::<R>("under-test", section, ctx) {
        Ok(plugin) => plugin,
        Err(e) => panic!("{section} did not build: {e}"),
    }
}

/// A quickstart critic warm-started for a few steps into `dir`: the tiny model every burn
/// plugin below loads.
fn quickstart_critic(dir: &Path) -> Arc<dyn rco_core::Critic> {
    let mut ctx = CriticContext::new(context("critic"));
    ctx.checkpoint = Some(dir.to_path_buf());
    ctx.create_checkpoint = true;
    check::<CriticRole>(
        &json!({"kind": "quickstart", "warm_start": {"steps": 3, "batch_size": 4}, "model": {"d_model": 16, "heads": 2, "layers": 1, "d_ff": 32, "max_len": 64}}),
        &ctx,
    )
}

fn tiny_model() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().join("base");
    quickstart_critic(&base);
    (dir, base)
}

async fn server() -> TestServer {
    TestServer::start(ServerOptions::default())
        .await
        .expect("test server")
}

fn openai(server: &TestServer) -> Value {
    json!({"kind": "openai", "base_urls": [server.base_url()], "model": "m", "cache": false, "logprobs": true})
}

#[test]
fn every_registered_plugin_is_covered() {
    rco_plugins::link();
    for plugin in rco_core::registry::plugins() {
        assert!(
            COVERED.contains(&(plugin.role, plugin.kind)),
            "{} `{}` is registered but no conformance suite runs on it",
            plugin.role.name(),
            plugin.kind
        );
    }
}

#[test]
fn datasets_conform() {
    let dir = tempfile::tempdir().expect("tempdir");
    for split in ["train", "test"] {
        let lines: Vec<String> = items()
            .iter()
            .map(|i| serde_json::to_string(i).expect("json"))
            .collect();
        std::fs::write(dir.path().join(format!("{split}.jsonl")), lines.join("\n")).expect("write");
    }
    let mut ctx = context("data");
    ctx.base_dir = dir.path().to_path_buf();
    for section in [
        json!({"kind": "jsonl", "train": "train.jsonl", "test": "test.jsonl"}),
        json!({"kind": "quickstart", "train_items": 6, "test_items": 3}),
        // The committed slices of the five task suites.
        json!({"kind": "tasks", "dir": Path::new(env!("CARGO_MANIFEST_DIR")).join("data/tasks")}),
    ] {
        let dataset = check::<DatasetRole>(&section, &ctx);
        dataset_conforms(dataset.as_ref()).unwrap_or_else(|e| panic!("{section}: {e}"));
    }
}

#[tokio::test]
async fn critics_conform() {
    let (_dir, base) = tiny_model();
    let server = server().await;
    let quickstart = quickstart_critic(&base);
    let burn = check::<CriticRole>(
        &json!({"kind": "burn", "checkpoint": base.to_string_lossy(), "sampling": {"temperature": 0.7, "top_k": 5, "max_tokens": 6}, "batch_size": 3}),
        &CriticContext::new(context("critic")),
    );
    let remote = check::<CriticRole>(&openai(&server), &CriticContext::new(context("critic")));
    // The self-refine critic is built for one actor: the quickstart actor (its own
    // self-critique) and the burn actor (answering the critique prompt).
    let with_actor = |actor: &Value| {
        let mut ctx = CriticContext::new(context("critic"));
        ctx.actor = Some(check::<ActorRole>(actor, &context("actor")));
        check::<CriticRole>(&json!({"kind": "self-refine"}), &ctx)
    };
    let fixed = check::<CriticRole>(
        &json!({"kind": "fixed", "text": "check the last digit"}),
        &CriticContext::new(context("critic")),
    );
    let self_quickstart = with_actor(&json!({"kind": "quickstart", "strength": "strong"}));
    let self_burn = with_actor(
        &json!({"kind": "burn", "checkpoint": base.to_string_lossy(), "sampling": {"temperature": 1.0, "max_tokens": 4}}),
    );
    for (name, critic) in [
        ("quickstart", quickstart),
        ("burn", burn),
        ("fixed", fixed),
        ("openai", remote),
        ("self-refine (quickstart actor)", self_quickstart),
        ("self-refine (burn actor)", self_burn),
    ] {
        critic_conforms(critic.as_ref(), &items(), critique_prompt)
            .await
            .unwrap_or_else(|e| panic!("critic `{name}`: {e}"));
    }
}

#[tokio::test]
async fn actors_conform() {
    let (_dir, base) = tiny_model();
    let server = server().await;
    let ctx = context("actor");
    for section in [
        json!({"kind": "quickstart", "strength": "weak"}),
        json!({"kind": "quickstart", "strength": "strong"}),
        json!({"kind": "burn", "checkpoint": base.to_string_lossy(), "sampling": {"temperature": 0.0, "max_tokens": 4}}),
        openai(&server),
    ] {
        let actor = check::<ActorRole>(&section, &ctx);
        actor_conforms(actor.as_ref(), &items(), refinement_prompt)
            .await
            .unwrap_or_else(|e| panic!("{section}: {e}"));
    }
}

/// A sequence-classification checkpoint with random weights (`scripts/reward_model.py`)
/// and SmolLM2's real tokenizer (`SMOLLM2_GGUF`, which `scripts/test.sh` fetches).
fn reward_model(dir: &Path) {
    let gguf = std::env::var("SMOLLM2_GGUF").expect(
        "SMOLLM2_GGUF is not set: run the tests through scripts/test.sh, which fetches the model",
    );
    let file = rco_lm::gguf::GgufFile::open(Path::new(&gguf)).expect("gguf");
    let tokenizer = rco_lm::text::TextTokenizer::from_gguf(&file).expect("tokenizer");
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_json().unwrap()).unwrap();
    let config = json!({"chat_template": tokenizer.chat_template, "add_bos_token": false});
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
    let vocab = tokenizer.inner.get_vocab_size(true).to_string();
    let made = std::process::Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/reward_model.py"))
        .args(["make", dir.to_str().unwrap(), &vocab])
        .status()
        .expect("python3");
    assert!(made.success());
}

/// A PairRM checkpoint with random weights and its small tokenizer (`scripts/pairrm.py`).
fn pairrm(dir: &Path) {
    let made = std::process::Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pairrm.py"))
        .args(["make", dir.to_str().unwrap()])
        .status()
        .expect("python3");
    assert!(made.success());
}

#[tokio::test]
async fn judges_conform() {
    let (_dir, base) = tiny_model();
    let server = server().await;
    let ctx = context("judge");
    let rm = tempfile::tempdir().expect("tempdir");
    reward_model(rm.path());
    let prm = tempfile::tempdir().expect("tempdir");
    pairrm(prm.path());
    for section in [
        json!({"kind": "pairrm", "checkpoint": prm.path(), "batch_size": 3}),
        json!({"kind": "pairrm", "checkpoint": prm.path(), "both_orders": false}),
        json!({"kind": "reward_model", "checkpoint": rm.path(), "batch_size": 3}),
        json!({"kind": "verifier"}),
        json!({"kind": "math"}),
        json!({"kind": "code", "timeout_seconds": 5}),
        json!({"kind": "command", "command": ["python3", Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/command-judge/judge.py")], "workers": 2, "batch_size": 3}),
        json!({"kind": "per_task", "tasks": {"math": {"kind": "math"}}, "default": {"kind": "verifier"}}),
        json!({"kind": "noisy", "position_bias": 0.3, "noise": 0.1, "invalid_rate": 0.1}),
        json!({"kind": "burn", "checkpoint": base.to_string_lossy(), "sampling": {"temperature": 0.0, "max_tokens": 4}}),
        openai(&server),
    ] {
        let judge = check::<JudgeRole>(&section, &ctx);
        judge_conforms(judge.as_ref(), &items())
            .await
            .unwrap_or_else(|e| panic!("{section}: {e}"));
    }
}

#[tokio::test]
async fn reward_estimators_conform() {
    for mode in ["hard", "soft"] {
        let reward = check::<RewardRole>(&json!({"kind": "cu", "mode": mode}), &context("reward"));
        reward_conforms(reward.as_ref())
            .await
            .unwrap_or_else(|e| panic!("cu ({mode}): {e}"));
    }
}

#[tokio::test]
async fn trainers_conform() {
    let (dir, base) = tiny_model();
    for kind in ["rco", "sft", "dpco"] {
        let ctx = TrainerContext {
            common: context("trainer"),
            base_checkpoint: base.clone(),
            output: dir.path().join(kind),
            critic_section: json!({"kind": "quickstart"}),
        };
        let section =
            json!({"kind": kind, "epochs": 1, "groups_per_batch": 2, "checkpoint_every": 1});
        trainer_conforms(
            || build::<TrainerRole>("trainer", &section, &ctx),
            &groups(&items(), critique_prompt),
        )
        .await
        .unwrap_or_else(|e| panic!("trainer `{kind}`: {e}"));
    }
}

#[test]
fn bad_sections_are_errors_not_panics() {
    let ctx = context("bad");
    let critic = CriticContext::new(ctx.clone());
    let problems = |r: rco_core::Result<()>| r.err().map(|e| e.to_string());
    for (what, outcome) in [
        (
            "noisy judge",
            problems(
                build::<JudgeRole>(
                    "j",
                    &json!({"kind": "noisy", "position_bias": "lots"}),
                    &ctx,
                )
                .map(drop),
            ),
        ),
        (
            "quickstart actor",
            problems(
                build::<ActorRole>(
                    "a",
                    &json!({"kind": "quickstart", "strength": "heroic"}),
                    &ctx,
                )
                .map(drop),
            ),
        ),
        (
            "burn critic",
            problems(
                build::<CriticRole>(
                    "c",
                    &json!({"kind": "burn", "checkpoint": "/no/such/dir"}),
                    &critic,
                )
                .map(drop),
            ),
        ),
        (
            "quickstart critic",
            problems(
                build::<CriticRole>(
                    "c",
                    &json!({"kind": "quickstart", "model": {"d_model": "wide"}}),
                    &critic,
                )
                .map(drop),
            ),
        ),
        (
            "cu reward",
            problems(
                build::<RewardRole>("r", &json!({"kind": "cu", "mode": "average"}), &ctx).map(drop),
            ),
        ),
        (
            "jsonl dataset",
            problems(
                build::<DatasetRole>("d", &json!({"kind": "jsonl", "train": 3}), &ctx).map(drop),
            ),
        ),
    ] {
        assert!(outcome.is_some(), "a bad {what} section built");
    }
}
