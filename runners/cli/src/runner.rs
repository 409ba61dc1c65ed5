//! The stages of a run (collect → train → eval → report) over a crash-safe run directory.
//! Every unit of work draws its randomness from seeds derived from the run seed and the
//! unit's identity, and is committed with one append, so a killed run resumes where it
//! stopped and ends with the same results as an uninterrupted one.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use rco_core::registry::{self, Builder, Role};
use rco_core::seed::derive_seed;
use rco_core::store::RunStore;
use rco_core::template::render;
use rco_core::{
    Actor, BothOrders, BuildContext, Comparison, Critic, CritiqueRequest, Judge, PointwiseRequest,
    PointwiseScore, ProgressFactory, RefineRequest, RewardEstimator, ScoredCritique, TaskItem,
    TrainingGroup,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use futures::StreamExt;
use rco_core::usage::{UsageLedger, UsageTable};

use crate::config::Loaded;

/// The critic variants a run evaluates: the base critic and the RCO-trained one.
pub const CRITICS: [&str; 2] = ["base", "rco"];

pub struct Run {
    pub loaded: Loaded,
    pub store: RunStore,
    pub progress: Arc<dyn ProgressFactory>,
    /// Calls, tokens and cost of remote plugins, saved in `usage.json`.
    pub usage: Arc<UsageLedger>,
    /// `rco serve` processes this run started (the trained critic of a remote critic).
    served: std::sync::Mutex<Vec<crate::serve::Child>>,
}

/// The ledger's file in the run directory.
pub const USAGE_FILE: &str = "usage.json";

/// One item of a split, as stored in `items.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredItem {
    pub split: String,
    pub item: TaskItem,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CritiqueRecord {
    item_id: String,
    critique: usize,
    text: String,
    ref_logprob: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RefinementRecord {
    item_id: String,
    critique: usize,
    refinement: usize,
    text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct VerdictRecord {
    item_id: String,
    critique: usize,
    refinement: usize,
    pair: BothOrders,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CuRecord {
    item_id: String,
    critique: usize,
    cu: Option<f64>,
    valid: usize,
    invalid: usize,
    ties: usize,
    disagreements: usize,
}

/// One evaluated (critic, actor, item) cell entry in `eval.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalRecord {
    pub critic: String,
    pub actor: String,
    pub item_id: String,
    pub task: String,
    pub critiques: Vec<String>,
    pub refinements: Vec<Vec<String>>,
    pub pairs: Vec<Vec<BothOrders>>,
    /// Mean CU of the item's critiques (`None` if no judgement was valid).
    pub cu: Option<f64>,
    /// Mean pointwise score of the refinements, where the judge gives one.
    pub rqs: Option<f64>,
    /// Characters in the initial response (length changes are measured against it).
    pub initial_chars: usize,
    /// Mean length change of the refinements (characters, refined minus initial).
    pub length_change: f64,
}

/// Run manifest: what made this directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub config_file: String,
    pub config_hash: String,
    pub seed: u64,
    pub versions: HashMap<String, String>,
    pub config: Value,
}

impl Run {
    pub fn open(
        loaded: Loaded,
        out: &Path,
        progress: Arc<dyn ProgressFactory>,
    ) -> anyhow::Result<Self> {
        let store = RunStore::open(out)?;
        let usage = Arc::new(UsageLedger::new(
            loaded.config.prices.clone(),
            loaded.config.budget,
        ));
        let run = Self {
            loaded,
            store,
            progress,
            usage,
            served: Default::default(),
        };
        run.check_manifest()?;
        let saved = run.store.path(USAGE_FILE);
        if let Ok(bytes) = std::fs::read(&saved) {
            let table: UsageTable = serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a usage ledger", saved.display()))?;
            run.usage.restore(table);
        }
        Ok(run)
    }

    /// Writes the ledger (atomically) to `usage.json`.
    pub fn save_usage(&self) -> anyhow::Result<()> {
        self.store
            .write_file(USAGE_FILE, &serde_json::to_vec_pretty(&self.usage.table())?)?;
        Ok(())
    }

    /// Runs a stage with the ledger charging it, and saves the ledger however it ends.
    async fn charged<T>(
        &self,
        stage: &str,
        work: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        self.usage.set_stage(stage);
        let result = work.await;
        let saved = self.save_usage();
        let value = result?;
        saved?;
        Ok(value)
    }

    fn check_manifest(&self) -> anyhow::Result<()> {
        // What a run spends does not change its results: a budget raised to continue a
        // stopped run, or new prices, keep the run directory valid.
        let mut hashed = self.loaded.resolved.clone();
        if let Value::Object(map) = &mut hashed {
            map.remove("budget");
            map.remove("prices");
        }
        let canonical = serde_json::to_vec(&hashed)?;
        let hash = rco_core::seed::sha256_hex(&canonical);
        let path = self.store.path("manifest.json");
        if path.exists() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let manifest: Manifest = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a run manifest", path.display()))?;
            if manifest.config_hash != hash {
                bail!(
                    "{} was made with a different config (hash {} from {}, now {}); use another --out directory, or delete it to start over",
                    self.store.dir().display(),
                    manifest.config_hash.get(..12).unwrap_or(&manifest.config_hash),
                    manifest.config_file,
                    hash.get(..12).unwrap_or(&hash)
                );
            }
            return Ok(());
        }
        let versions = HashMap::from([
            ("rco".to_string(), env!("CARGO_PKG_VERSION").to_string()),
            ("burn".to_string(), "0.21.0".to_string()),
        ]);
        let manifest = Manifest {
            config_file: self.loaded.path.display().to_string(),
            config_hash: hash,
            seed: self.loaded.config.seed,
            versions,
            config: self.loaded.resolved.clone(),
        };
        self.store
            .write_file("manifest.json", &serde_json::to_vec_pretty(&manifest)?)?;
        Ok(())
    }

    fn context(&self, name: &str) -> BuildContext {
        let mut ctx = BuildContext::new(name, self.loaded.config.seed);
        ctx.base_dir = self.loaded.base_dir();
        ctx.run_dir = Some(self.store.dir().to_path_buf());
        ctx.templates = self.loaded.config.templates.clone();
        ctx.progress = self.progress.clone();
        ctx.usage = self.usage.clone();
        ctx.critic_section = Some(self.loaded.config.critic.clone());
        ctx
    }

    fn descriptor(
        &self,
        role: Role,
        key: &str,
        section: &Value,
    ) -> anyhow::Result<&'static rco_core::PluginDescriptor> {
        registry::find(role, section).map_err(|p| anyhow!("{}", p.under(key)))
    }

    /// The checkpoint directory of a critic variant.
    pub fn critic_dir(&self, variant: &str) -> PathBuf {
        self.store.path("critic").join(variant)
    }

    pub fn critic(&self, variant: &str) -> anyhow::Result<Arc<dyn Critic>> {
        let served;
        let mut section = &self.loaded.config.critic;
        // A critic on a server was trained here from a local copy of its model: the trained
        // critic is served by `rco serve` for the run and asked through the same plugin.
        if variant == "rco" && section.get("kind").and_then(Value::as_str) == Some("openai") {
            served = self.serve_trained_critic(section)?;
            section = &served;
        }
        let mut ctx = self.context("critic");
        ctx.checkpoint = Some(self.critic_dir(variant));
        // Only the base critic may be created; the trained one must come from training.
        ctx.create_checkpoint = variant == "base";
        match &self.descriptor(Role::Critic, "critic", section)?.build {
            Builder::Critic(build) => Ok(build(section, &ctx)?),
            _ => bail!("`critic` names a plugin that is not a critic"),
        }
    }

    /// Starts `rco serve` on the trained critic and returns the critic section pointed at it.
    fn serve_trained_critic(&self, section: &Value) -> anyhow::Result<Value> {
        let dir = self.critic_dir("rco");
        let device = self
            .loaded
            .config
            .trainer
            .get("device")
            .and_then(Value::as_str)
            .unwrap_or("cpu")
            .to_string();
        let child = crate::serve::spawn_self(&dir, &device)?;
        let mut section = section.clone();
        if let Value::Object(map) = &mut section {
            map.insert("base_urls".into(), serde_json::json!([child.url.clone()]));
            map.remove("api_key_env");
            map.remove("requests_per_second");
            map.remove("tokens_per_minute");
        }
        self.served
            .lock()
            .map_err(|_| anyhow!("the list of served models is poisoned"))?
            .push(child);
        Ok(section)
    }

    pub fn actor(&self, name: &str) -> anyhow::Result<Arc<dyn Actor>> {
        let key = format!("actors.{name}");
        let section = self
            .loaded
            .config
            .actors
            .get(name)
            .ok_or_else(|| anyhow!("no actor named `{name}`"))?;
        match &self.descriptor(Role::Actor, &key, section)?.build {
            Builder::Actor(build) => Ok(build(section, &self.context(&key))?),
            _ => bail!("`{key}` names a plugin that is not an actor"),
        }
    }

    pub fn judge(&self) -> anyhow::Result<Arc<dyn Judge>> {
        let section = &self.loaded.config.judge;
        match &self.descriptor(Role::Judge, "judge", section)?.build {
            Builder::Judge(build) => Ok(Arc::new(rco_core::judge::ReaskInvalid::new(
                build(section, &self.context("judge"))?,
                self.loaded.config.reask_invalid,
            ))),
            _ => bail!("`judge` names a plugin that is not a judge"),
        }
    }

    pub fn reward(&self) -> anyhow::Result<Arc<dyn RewardEstimator>> {
        let section = &self.loaded.config.reward;
        match &self
            .descriptor(Role::RewardEstimator, "reward", section)?
            .build
        {
            Builder::RewardEstimator(build) => Ok(build(section, &self.context("reward"))?),
            _ => bail!("`reward` names a plugin that is not a reward estimator"),
        }
    }

    /// The items of a split, generated (or read) once and kept in `items.jsonl`.
    pub fn items(&self, split: &str) -> anyhow::Result<Vec<TaskItem>> {
        let stored: Vec<StoredItem> = self.store.read("items.jsonl")?;
        if stored.is_empty() {
            let section = &self.loaded.config.data;
            let dataset = match &self.descriptor(Role::Dataset, "data", section)?.build {
                Builder::Dataset(build) => build(section, &self.context("data"))?,
                _ => bail!("`data` names a plugin that is not a dataset"),
            };
            let mut all = Vec::new();
            for s in ["train", "test"] {
                let items = dataset.items(s)?;
                if items.is_empty() {
                    bail!("the {s} split of the dataset is empty: it needs at least one item");
                }
                all.extend(items.into_iter().map(|item| StoredItem {
                    split: s.to_string(),
                    item,
                }));
            }
            let mut text = String::new();
            for record in &all {
                text.push_str(&serde_json::to_string(record)?);
                text.push('\n');
            }
            self.store.write_file("items.jsonl", text.as_bytes())?;
            return Ok(all
                .into_iter()
                .filter(|s| s.split == split)
                .map(|s| s.item)
                .collect());
        }
        Ok(stored
            .into_iter()
            .filter(|s| s.split == split)
            .map(|s| s.item)
            .collect())
    }

    fn critique_prompt(&self, item: &TaskItem) -> String {
        let t = self.loaded.config.templates.for_task(&item.task);
        render(
            &t.critique,
            &[
                ("prompt", &item.prompt),
                ("response", &item.initial_response),
            ],
        )
    }

    fn refinement_prompt(&self, item: &TaskItem, critique: &str) -> String {
        let t = self.loaded.config.templates.for_task(&item.task);
        render(
            &t.refinement,
            &[
                ("prompt", &item.prompt),
                ("response", &item.initial_response),
                ("critique", critique),
            ],
        )
    }

    /// [`Run::critique_refine_judge`] over a batch: the whole batch stage by stage, or, when
    /// `pipelined`, every item on its own and all items at once.
    async fn process_batch(
        &self,
        items: &[TaskItem],
        pass: &Pass<'_>,
        pipelined: bool,
    ) -> anyhow::Result<Vec<Judged>> {
        if self.usage.is_halted() {
            return Err(rco_core::Error::Halted.into());
        }
        if !pipelined {
            return self.critique_refine_judge(items, pass).await;
        }
        let each = items
            .iter()
            .map(|item| self.critique_refine_judge(std::slice::from_ref(item), pass));
        let results = futures::future::join_all(each).await;
        let mut out = Vec::with_capacity(items.len());
        let mut failure: Option<anyhow::Error> = None;
        for result in results {
            match result {
                Ok(judged) => out.extend(judged),
                Err(e) => keep_cause(&mut failure, e),
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Critiques → refinements → both-order judgements for a batch of items.
    async fn critique_refine_judge(
        &self,
        items: &[TaskItem],
        pass: &Pass<'_>,
    ) -> anyhow::Result<Vec<Judged>> {
        let Pass {
            critic,
            actor,
            judge,
            actor_name,
            n,
            m,
            label,
        } = *pass;
        let seed = self.loaded.config.seed;
        let requests: Vec<CritiqueRequest> = items
            .iter()
            .map(|item| CritiqueRequest {
                item: item.clone(),
                prompt: self.critique_prompt(item),
                n,
                seed: derive_seed(seed, &[label, "critique", &item.id]),
            })
            .collect();
        let critiques = critic.critique(&requests).await?;
        let mut refine_requests = Vec::new();
        for (item, item_critiques) in items.iter().zip(&critiques) {
            for (i, c) in item_critiques.iter().enumerate() {
                refine_requests.push(RefineRequest {
                    item: item.clone(),
                    critique: c.text.clone(),
                    prompt: self.refinement_prompt(item, &c.text),
                    m,
                    seed: derive_seed(
                        seed,
                        &[label, "refine", actor_name, &item.id, &i.to_string()],
                    ),
                });
            }
        }
        let refinements = actor.refine(&refine_requests).await?;
        let mut comparisons = Vec::new();
        for (request, refined) in refine_requests.iter().zip(&refinements) {
            for (j, r) in refined.iter().enumerate() {
                let item = &request.item;
                let base = |order: &str| {
                    derive_seed(
                        seed,
                        &[
                            label,
                            "judge",
                            actor_name,
                            &item.id,
                            &request.seed.to_string(),
                            &j.to_string(),
                            order,
                        ],
                    )
                };
                let comparison = |a: &str, b: &str, order: &str| Comparison {
                    task: item.task.clone(),
                    prompt: item.prompt.clone(),
                    reference: item.reference.clone(),
                    a: a.to_string(),
                    b: b.to_string(),
                    seed: base(order),
                };
                comparisons.push(comparison(&r.text, &item.initial_response, "refined-first"));
                comparisons.push(comparison(
                    &item.initial_response,
                    &r.text,
                    "refined-second",
                ));
            }
        }
        let judgements = judge.compare(&comparisons).await?;
        check_len("critic", "critique lists", critiques.len(), requests.len())?;
        for (got, request) in critiques.iter().zip(&requests) {
            check_len("critic", "critiques", got.len(), request.n)?;
        }
        check_len(
            "actor",
            "refinement lists",
            refinements.len(),
            refine_requests.len(),
        )?;
        for refined in &refinements {
            check_len("actor", "refinements", refined.len(), m)?;
        }
        check_len("judge", "judgements", judgements.len(), comparisons.len())?;
        let mut judgements = judgements.into_iter();
        let mut refinements = refinements.into_iter();
        let mut out = Vec::with_capacity(items.len());
        for (item, item_critiques) in items.iter().zip(critiques) {
            let mut judged = Judged {
                item: item.clone(),
                critiques: Vec::new(),
            };
            for critique in item_critiques {
                let refined = refinements.next().unwrap_or_default();
                let mut pairs = Vec::with_capacity(refined.len());
                for _ in &refined {
                    // The lengths were checked above, so both judgements are there.
                    if let (Some(refined_first), Some(refined_second)) =
                        (judgements.next(), judgements.next())
                    {
                        pairs.push(BothOrders {
                            refined_first,
                            refined_second,
                        });
                    }
                }
                judged.critiques.push((
                    critique,
                    refined.into_iter().map(|r| r.text).collect(),
                    pairs,
                ));
            }
            out.push(judged);
        }
        Ok(out)
    }

    /// Collect: N critiques per training item from the base critic, M refinements each from
    /// the collection actor, both-order judgements, and CU. Committed one batch at a time.
    pub async fn collect(&self) -> anyhow::Result<()> {
        self.charged("collect", self.collect_stage()).await
    }

    async fn collect_stage(&self) -> anyhow::Result<()> {
        let items = self.items("train")?;
        let committed = self.store.recover(
            &[
                "critiques.jsonl",
                "refinements.jsonl",
                "verdicts.jsonl",
                "cu.jsonl",
            ],
            "groups.jsonl",
            "item_id",
        )?;
        let cfg = &self.loaded.config.collect;
        let pending = pending_batches(&items, cfg.items_per_batch, |i| committed.contains(&i.id));
        if pending.is_empty() {
            return Ok(());
        }
        let critic = self.critic("base")?;
        let actor_name = self.loaded.collect_actor().to_string();
        let actor = self.actor(&actor_name)?;
        let judge = self.judge()?;
        let reward = self.reward()?;
        let bar = self.progress.start("collect", items.len() as u64);
        bar.inc(committed.len() as u64);
        let pass = Pass {
            critic: critic.as_ref(),
            actor: actor.as_ref(),
            judge: judge.as_ref(),
            actor_name: &actor_name,
            n: cfg.critiques_per_item,
            m: cfg.refinements_per_critique,
            label: "collect",
        };
        let pass = &pass;
        let mut batches = futures::stream::iter(pending.into_iter().map(|todo| async move {
            let judged = self.process_batch(&todo, pass, cfg.pipelined).await;
            (todo, judged)
        }))
        .buffer_unordered(cfg.batches_in_flight.max(1));
        // After a failure, batches in flight still finish and are committed; no new one starts.
        let mut failure: Option<anyhow::Error> = None;
        while let Some((todo, judged)) = batches.next().await {
            let judged = match judged {
                Ok(judged) => judged,
                Err(e) => {
                    self.usage.halt();
                    keep_cause(&mut failure, e);
                    continue;
                }
            };
            let all_pairs: Vec<Vec<BothOrders>> = judged
                .iter()
                .flat_map(|j| j.critiques.iter().map(|(_, _, p)| p.clone()))
                .collect();
            let mut estimates = reward.estimate(&all_pairs).await?.into_iter();
            let (mut critiques, mut refinements, mut verdicts, mut cus, mut groups) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for j in &judged {
                let id = &j.item.id;
                let mut scored = Vec::new();
                for (ci, (critique, refined, pairs)) in j.critiques.iter().enumerate() {
                    let estimate = estimates.next().ok_or_else(|| {
                        anyhow!("the reward estimator returned too few estimates")
                    })?;
                    critiques.push(CritiqueRecord {
                        item_id: id.clone(),
                        critique: ci,
                        text: critique.text.clone(),
                        ref_logprob: critique.ref_logprob,
                    });
                    for (ri, (text, pair)) in refined.iter().zip(pairs).enumerate() {
                        refinements.push(RefinementRecord {
                            item_id: id.clone(),
                            critique: ci,
                            refinement: ri,
                            text: text.clone(),
                        });
                        verdicts.push(VerdictRecord {
                            item_id: id.clone(),
                            critique: ci,
                            refinement: ri,
                            pair: pair.clone(),
                        });
                    }
                    cus.push(CuRecord {
                        item_id: id.clone(),
                        critique: ci,
                        cu: estimate.cu,
                        valid: estimate.valid,
                        invalid: estimate.invalid,
                        ties: estimate.ties,
                        disagreements: estimate.disagreements,
                    });
                    if let Some(cu) = estimate.cu {
                        scored.push(ScoredCritique {
                            text: critique.text.clone(),
                            ref_logprob: critique.ref_logprob,
                            cu,
                        });
                    }
                }
                groups.push(TrainingGroup {
                    item_id: id.clone(),
                    prompt: self.critique_prompt(&j.item),
                    critiques: scored,
                });
            }
            self.store.append("critiques.jsonl", &critiques)?;
            self.store.append("refinements.jsonl", &refinements)?;
            self.store.append("verdicts.jsonl", &verdicts)?;
            self.store.append("cu.jsonl", &cus)?;
            // The commit record of the batch: one write.
            self.store.append("groups.jsonl", &groups)?;
            self.save_usage()?;
            bar.inc(todo.len() as u64);
        }
        if let Some(e) = failure {
            return Err(e);
        }
        bar.finish();
        Ok(())
    }

    /// Train: the trainer reads the committed groups and writes `critic/rco`.
    pub async fn train(&self) -> anyhow::Result<rco_core::TrainSummary> {
        // A finished training stage is not run again (its summary is its commit record).
        let summary_path = self.store.path("train_summary.json");
        if let Ok(bytes) = std::fs::read(&summary_path) {
            return serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a training summary", summary_path.display()));
        }
        let items = self.items("train")?;
        let groups: Vec<TrainingGroup> = self.store.read("groups.jsonl")?;
        let done: HashSet<&str> = groups.iter().map(|g| g.item_id.as_str()).collect();
        if items.iter().any(|i| !done.contains(i.id.as_str())) {
            bail!(
                "the collection in {} is not finished ({} of {} items); run `rco collect` first",
                self.store.dir().display(),
                done.len(),
                items.len()
            );
        }
        let groups: Vec<TrainingGroup> = groups
            .into_iter()
            .filter(|g| !g.critiques.is_empty())
            .collect();
        let section = &self.loaded.config.trainer;
        let mut ctx = self.context("trainer");
        ctx.checkpoint = Some(self.critic_dir("base"));
        ctx.output = Some(self.critic_dir("rco"));
        let mut trainer = match &self.descriptor(Role::Trainer, "trainer", section)?.build {
            Builder::Trainer(build) => build(section, &ctx)?,
            _ => bail!("`trainer` names a plugin that is not a trainer"),
        };
        let bar = self.progress.start("train", 0);
        let summary = trainer.train(&groups, bar.clone()).await?;
        bar.finish();
        self.store
            .write_file("train_summary.json", &serde_json::to_vec_pretty(&summary)?)?;
        Ok(summary)
    }

    /// Eval: each critic variant with each evaluation actor on the test items.
    pub async fn eval(&self) -> anyhow::Result<()> {
        self.charged("eval", self.eval_stage()).await
    }

    async fn eval_stage(&self) -> anyhow::Result<()> {
        let items = self.items("test")?;
        if !self.store.path("train_summary.json").is_file() {
            bail!(
                "{} has no trained critic yet; run `rco train` first",
                self.store.dir().display()
            );
        }
        self.store.recover(&[], "eval.jsonl", "item_id")?;
        let done: HashSet<(String, String, String)> = self
            .store
            .read::<EvalRecord>("eval.jsonl")?
            .into_iter()
            .map(|r| (r.critic, r.actor, r.item_id))
            .collect();
        let cfg = &self.loaded.config.eval;
        let actors = self.loaded.eval_actors();
        let judge = self.judge()?;
        let reward = self.reward()?;
        let bar = self
            .progress
            .start("eval", (CRITICS.len() * actors.len() * items.len()) as u64);
        bar.inc(done.len() as u64);
        for variant in CRITICS {
            let mut critic = None;
            for actor_name in &actors {
                let pending = pending_batches(&items, cfg.items_per_batch, |i| {
                    done.contains(&(variant.to_string(), actor_name.clone(), i.id.clone()))
                });
                if pending.is_empty() {
                    continue;
                }
                if critic.is_none() {
                    critic = Some(self.critic(variant)?);
                }
                let critic = critic
                    .as_ref()
                    .ok_or_else(|| anyhow!("critic `{variant}` could not be built"))?;
                let actor = self.actor(actor_name)?;
                // Seeds do not depend on the critic variant: both critics meet the same
                // sampling noise, which narrows the comparison.
                let pass = Pass {
                    critic: critic.as_ref(),
                    actor: actor.as_ref(),
                    judge: judge.as_ref(),
                    actor_name,
                    n: cfg.critiques_per_item,
                    m: cfg.refinements_per_critique,
                    label: "eval",
                };
                let mut batches = futures::stream::iter(pending.into_iter().map(|todo| {
                    let (pass, reward) = (&pass, reward.as_ref());
                    async move {
                        let judged = self.process_batch(&todo, pass, cfg.pipelined).await?;
                        let records = self
                            .score(judged, pass.judge, reward, variant, actor_name)
                            .await?;
                        anyhow::Ok((todo.len(), records))
                    }
                }))
                .buffer_unordered(cfg.batches_in_flight.max(1));
                let mut failure: Option<anyhow::Error> = None;
                while let Some(done) = batches.next().await {
                    let (count, records) = match done {
                        Ok(done) => done,
                        Err(e) => {
                            self.usage.halt();
                            keep_cause(&mut failure, e);
                            continue;
                        }
                    };
                    self.store.append("eval.jsonl", &records)?;
                    self.save_usage()?;
                    bar.inc(count as u64);
                }
                if let Some(e) = failure {
                    return Err(e);
                }
            }
        }
        bar.finish();
        Ok(())
    }

    async fn score(
        &self,
        judged: Vec<Judged>,
        judge: &dyn Judge,
        reward: &dyn RewardEstimator,
        critic: &str,
        actor: &str,
    ) -> anyhow::Result<Vec<EvalRecord>> {
        let seed = self.loaded.config.seed;
        let mut pointwise = Vec::new();
        for j in &judged {
            for (ci, (_, refined, _)) in j.critiques.iter().enumerate() {
                for (ri, text) in refined.iter().enumerate() {
                    pointwise.push(PointwiseRequest {
                        task: j.item.task.clone(),
                        prompt: j.item.prompt.clone(),
                        response: text.clone(),
                        reference: j.item.reference.clone(),
                        seed: derive_seed(
                            seed,
                            &[
                                "eval",
                                "rqs",
                                actor,
                                &j.item.id,
                                &ci.to_string(),
                                &ri.to_string(),
                            ],
                        ),
                    });
                }
            }
        }
        let scores: Option<Vec<PointwiseScore>> = match judge.score(&pointwise).await {
            Ok(scores) => Some(scores),
            Err(rco_core::Error::Unsupported(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let mut scores = scores.map(Vec::into_iter);
        let mut records = Vec::with_capacity(judged.len());
        for j in judged {
            let pairs: Vec<Vec<BothOrders>> =
                j.critiques.iter().map(|(_, _, p)| p.clone()).collect();
            let estimates = reward.estimate(&pairs).await?;
            let cus: Vec<f64> = estimates.iter().filter_map(|e| e.cu).collect();
            let refinements: Vec<Vec<String>> =
                j.critiques.iter().map(|(_, r, _)| r.clone()).collect();
            let lengths: Vec<f64> = refinements
                .iter()
                .flatten()
                .map(|r| r.chars().count() as f64 - j.item.initial_response.chars().count() as f64)
                .collect();
            let mut rqs = Vec::new();
            if let Some(scores) = scores.as_mut() {
                for _ in 0..lengths.len() {
                    if let Some(PointwiseScore::Score(s)) = scores.next() {
                        rqs.push(s);
                    }
                }
            }
            records.push(EvalRecord {
                critic: critic.to_string(),
                actor: actor.to_string(),
                item_id: j.item.id.clone(),
                task: j.item.task.clone(),
                critiques: j.critiques.iter().map(|(c, _, _)| c.text.clone()).collect(),
                refinements,
                pairs,
                cu: (!cus.is_empty()).then(|| rco_core::stats::mean(&cus)),
                rqs: (!rqs.is_empty()).then(|| rco_core::stats::mean(&rqs)),
                initial_chars: j.item.initial_response.chars().count(),
                length_change: if lengths.is_empty() {
                    0.0
                } else {
                    rco_core::stats::mean(&lengths)
                },
            });
        }
        Ok(records)
    }
}

/// The unfinished items of each fixed batch that has any. Batches are cut from the whole
/// item list, so a resumed run processes the same batches as an uninterrupted one.
fn pending_batches(
    items: &[TaskItem],
    size: usize,
    done: impl Fn(&TaskItem) -> bool,
) -> Vec<Vec<TaskItem>> {
    items
        .chunks(size)
        .map(|batch| {
            batch
                .iter()
                .filter(|i| !done(i))
                .cloned()
                .collect::<Vec<_>>()
        })
        .filter(|todo| !todo.is_empty())
        .collect()
}

/// The plugins and sizes of one pass of critiques → refinements → judgements. `label`
/// keeps the seeds of the collection and of evaluation apart.
#[derive(Clone, Copy)]
struct Pass<'a> {
    critic: &'a dyn Critic,
    actor: &'a dyn Actor,
    judge: &'a dyn Judge,
    actor_name: &'a str,
    n: usize,
    m: usize,
    label: &'a str,
}

/// Keeps the error that stopped the run rather than the [`rco_core::Error::Halted`] of the
/// work it stopped.
fn keep_cause(kept: &mut Option<anyhow::Error>, e: anyhow::Error) {
    rco_core::error::keep_cause(kept, e, |e| {
        matches!(
            e.downcast_ref::<rco_core::Error>(),
            Some(rco_core::Error::Halted)
        )
    });
}

/// A plugin that breaks the "one result per input" contract fails the stage.
fn check_len(role: &str, what: &str, got: usize, expected: usize) -> anyhow::Result<()> {
    if got != expected {
        bail!("the {role} returned {got} {what} for {expected} requests");
    }
    Ok(())
}

/// The critiques of one item with their refinements and judgements.
struct Judged {
    item: TaskItem,
    critiques: Vec<(rco_core::Critique, Vec<String>, Vec<BothOrders>)>,
}
