//! The run config: figment layering (defaults, the TOML file, then `RCO_` environment
//! variables), validation that reports every problem with its key path before anything is
//! built, and the JSON Schema of the whole file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use rco_core::registry::{
    self, ActorRole, CriticRole, DatasetRole, JudgeRole, Parsed, PluginRole, RewardRole, Role,
    TrainerRole,
};
use rco_core::ValidateContext;
use rco_core::{ConfigProblem, PromptTemplates};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A plugin section: `kind = "..."` plus the plugin's own keys.
pub type Section = Value;

/// An RCO experiment.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Seed of everything random in the run (data, sampling, judging, training order).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Where task items come from (a dataset plugin).
    pub data: Section,
    /// The critic to train (a critic plugin).
    pub critic: Section,
    /// Actors by name; `collect.actor` refines during collection, `eval.actors` are evaluated.
    pub actors: BTreeMap<String, Section>,
    /// The pairwise judge (a judge plugin).
    pub judge: Section,
    /// The judge that compares two critiques of one answer directly
    /// (`collect.critique_comparisons`: DPCO's preference pairs); `judge` when absent. A
    /// verifier judges answers, not critiques: with a `math` or `code` judge, put an LLM
    /// judge here to train DPCO on verifier tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critique_judge: Option<Section>,
    /// How critique utility is computed from judgements (a reward-estimator plugin).
    #[serde(default = "default_reward")]
    pub reward: Section,
    /// How the critic is trained (a trainer plugin).
    pub trainer: Section,
    /// Rounds of iterative RCO: round 1 collects with the base critic and trains it; each
    /// later round collects with the critic the round before trained and trains that one
    /// further. Every round's critic is evaluated (`rco`, `rco-round-2`, ...); its files
    /// carry the round (`groups-round-2.jsonl`, `critic/rco-round-2/`).
    #[serde(default = "default_rounds")]
    pub rounds: usize,
    /// Baselines trained beside `trainer`, by name: trainer sections (`kind = "sft"`,
    /// `"dpco"`, or `"rco"` with other settings), each trained on the same collected groups
    /// (round 1's) from the same base critic, so that one collection serves every training
    /// objective. Each writes `critic/NAME/` and `train_summary-NAME.json`, and its critic is
    /// evaluated as `NAME`.
    #[serde(default)]
    pub baselines: BTreeMap<String, Section>,
    /// The collection stage.
    #[serde(default)]
    pub collect: CollectConfig,
    /// The evaluation stage.
    #[serde(default)]
    pub eval: EvalConfig,
    /// Prompt templates, with per-task overrides.
    #[serde(default)]
    pub templates: PromptTemplates,
    /// Times an unreadable judge verdict is asked again (with a new seed) before it is
    /// recorded as invalid.
    #[serde(default = "default_reask")]
    pub reask_invalid: usize,
    /// Prices per model name (the `model` of remote sections), for the cost in the ledger.
    #[serde(default)]
    pub prices: BTreeMap<String, rco_core::usage::Price>,
    /// A hard limit on tokens or cost over the run; reaching it stops the run with
    /// everything so far saved (rerun with a larger budget to continue).
    #[serde(default)]
    pub budget: rco_core::usage::Budget,
    /// How the run directory is written.
    #[serde(default)]
    pub store: StoreConfig,
}

/// How the run directory is written.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `commit`: every append to a run table is synced to disk before the run goes on, so
    /// committed work survives power loss; `fast`: appends survive the process being
    /// killed, not the machine losing power.
    pub durability: rco_core::store::Durability,
}

fn default_rounds() -> usize {
    1
}

/// The most rounds of iterative RCO a config may ask for.
const MAX_ROUNDS: usize = 20;

fn default_reask() -> usize {
    2
}

fn default_seed() -> u64 {
    0
}

fn default_reward() -> Section {
    serde_json::json!({ "kind": "cu" })
}

/// The collection stage: N critiques per training item, M refinements per critique.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CollectConfig {
    /// The actor (a key of `actors`) that refines during collection; the first actor if unset.
    pub actor: Option<String>,
    /// Critiques sampled per item (N).
    pub critiques_per_item: usize,
    /// Refinements per critique (M).
    pub refinements_per_critique: usize,
    /// Items processed (and committed to the run store) together.
    pub items_per_batch: usize,
    /// Let each item of a batch go from critique to refinement to judgement on its own,
    /// instead of every item waiting at each stage: for remote plugins, whose calls run
    /// concurrently. Local models batch better with it off.
    pub pipelined: bool,
    /// Batches processed at the same time (each is committed as it finishes).
    pub batches_in_flight: usize,
    /// Leave out of collection the items whose initial response the judge, a verifier
    /// (`math`, `code`), already finds correct: refinements cannot improve on them. They
    /// are counted in `metrics.jsonl` and the report either way.
    pub skip_solved: bool,
    /// Also judge every two critiques of an item directly against each other, in both
    /// orders (`preferences` in `groups.jsonl`): the preference pairs of the `dpco`
    /// trainer. N·(N−1) more judge calls per item.
    pub critique_comparisons: bool,
}

impl Default for CollectConfig {
    fn default() -> Self {
        Self {
            actor: None,
            critiques_per_item: 4,
            refinements_per_critique: 2,
            items_per_batch: 32,
            pipelined: false,
            batches_in_flight: 1,
            skip_solved: false,
            critique_comparisons: false,
        }
    }
}

/// The evaluation stage: the base and the trained critic against each actor, on test items.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Actors to evaluate with (keys of `actors`); all of them if empty.
    pub actors: Vec<String>,
    /// Critiques per test item (CU of an item is the mean over them).
    pub critiques_per_item: usize,
    /// Refinements per critique.
    pub refinements_per_critique: usize,
    /// Items processed (and committed) together.
    pub items_per_batch: usize,
    /// As `collect.pipelined`.
    pub pipelined: bool,
    /// As `collect.batches_in_flight`.
    pub batches_in_flight: usize,
    /// Bootstrap resamples of the 95% intervals.
    pub bootstrap_resamples: usize,
    /// Ask the judge for the refinement quality score (RQS, a pointwise score of each
    /// refinement). `false` leaves it out, with the calls it costs: for a judge with no
    /// pointwise prompt (a verdict read from one token), whose every rating would be
    /// invalid. With a verifier judge the refinements' solved rate comes from RQS, so it goes
    /// too.
    pub rqs: bool,
    /// Critics evaluated besides the base and the trained one, by name: a critic section
    /// each, built once per evaluation actor (which it is given, so that a `self-refine`
    /// critic critiques with that actor). Their rows carry the name in `eval.jsonl` and
    /// `report.json`, e.g. `[eval.critics.self-refine]` with `kind = "self-refine"`.
    pub critics: BTreeMap<String, Section>,
    /// Critics whose critiques are drawn again, by name, with how many draws in all:
    /// `draws = { base = 3 }` evaluates the base critic as `base`, `base-draw-2` and
    /// `base-draw-3`, the same critic on the same items, actors' first answers and refinement
    /// seeds, with critique seeds of each draw's own. `base-draw-2 − base` is then an A/A
    /// control: the difference two samplings of one critic make, to read the other critics'
    /// differences against. Any evaluated critic may be drawn again (`rco`, a baseline, one
    /// of `[eval.critics]`).
    pub draws: BTreeMap<String, usize>,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            actors: Vec::new(),
            critiques_per_item: 1,
            refinements_per_critique: 1,
            items_per_batch: 100,
            pipelined: false,
            batches_in_flight: 1,
            bootstrap_resamples: 1000,
            rqs: true,
            critics: BTreeMap::new(),
            draws: BTreeMap::new(),
        }
    }
}

/// A loaded, validated config.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: RunConfig,
    /// The plugin sections, parsed into their plugins' configs.
    pub sections: Sections,
    /// The config after layering, as JSON (hashed into the run manifest).
    pub resolved: Value,
    pub path: PathBuf,
}

impl Loaded {
    /// Directory that relative paths in the config are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    pub fn collect_actor(&self) -> &str {
        self.config
            .collect
            .actor
            .as_deref()
            .or_else(|| self.config.actors.keys().next().map(String::as_str))
            .unwrap_or_default()
    }

    pub fn eval_actors(&self) -> Vec<String> {
        if self.config.eval.actors.is_empty() {
            self.config.actors.keys().cloned().collect()
        } else {
            self.config.eval.actors.clone()
        }
    }
}

/// A problem for each top-level key the config does not have.
fn unknown_keys(top: &serde_json::Map<String, Value>) -> Vec<ConfigProblem> {
    let known_keys = top_level_keys();
    top.keys()
        .filter(|key| !known_keys.contains(key))
        .map(|key| {
            ConfigProblem::new(
                key.clone(),
                format!("unknown key; expected one of: {}", known_keys.join(", ")),
            )
        })
        .collect()
}

/// The top-level keys, read from the schema of [`RunConfig`] so that they cannot drift.
fn top_level_keys() -> Vec<String> {
    let schema = serde_json::to_value(schemars::schema_for!(RunConfig)).unwrap_or(Value::Null);
    schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// rco's own environment variables. They share the `RCO_` prefix with config overrides
/// (`RCO_SECTION__KEY`) but are never read as config.
pub const OWN_VARIABLES: [&str; 5] = [
    crate::logging::LOG_VAR,
    rco_lm::device::THREADS_VAR,
    "RCO_MODELS_DIR",
    rco_core::dataset::suites::DATA_DIR_VAR,
    crate::progress::PROGRESS_EVERY_VAR,
];

/// The `RCO_` variables read as config overrides, with the key path each sets
/// (`RCO_TRAINER__BETA` sets `trainer.beta`).
fn env_overrides() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| name.starts_with("RCO_") && !OWN_VARIABLES.contains(&name.as_str()))
        .map(|name| {
            let key = name["RCO_".len()..].to_lowercase().replace("__", ".");
            (name, key)
        })
        .collect()
}

/// The variable whose override a problem's key lies under, if any.
fn from_override<'a>(key: &str, overrides: &'a [(String, String)]) -> Option<&'a str> {
    overrides
        .iter()
        .filter(|(_, path)| key == path || key.starts_with(&format!("{path}.")))
        .max_by_key(|(_, path)| path.len())
        .map(|(name, _)| name.as_str())
}

/// A config file layered with the `RCO_` environment variables, as JSON.
fn layered(path: &Path) -> anyhow::Result<Value> {
    if !path.is_file() {
        return Err(anyhow!("config file {} does not exist", path.display()));
    }
    let figment = Figment::new().merge(Toml::file_exact(path)).merge(
        Env::prefixed("RCO_")
            .ignore(&OWN_VARIABLES.map(|v| v.trim_start_matches("RCO_")))
            .split("__"),
    );
    // JSON has no NaN or infinity: find them (and say so, with their key) before the
    // layered config becomes JSON, where they would read as a confusing `null`.
    let raw: figment::value::Value = figment
        .extract()
        .map_err(|e| anyhow!("{}: {}", path.display(), figment_message(&e)))?;
    let mut non_finite = Vec::new();
    find_non_finite(&raw, "", &mut non_finite);
    if !non_finite.is_empty() {
        let list: Vec<String> = non_finite.iter().map(|p| format!("  - {p}")).collect();
        return Err(anyhow!(
            "{} has {} problem(s):\n{}",
            path.display(),
            non_finite.len(),
            list.join("\n")
        ));
    }
    let resolved: Value = figment
        .extract()
        .map_err(|e| anyhow!("{}: {}", path.display(), figment_message(&e)))?;
    Ok(resolved)
}

/// Every problem of a config file, each with the environment variable that set it if one did.
fn listed(path: &Path, problems: &[ConfigProblem]) -> anyhow::Error {
    let overrides = env_overrides();
    let list: Vec<String> = problems
        .iter()
        .map(|p| match from_override(&p.key, &overrides) {
            Some(var) => format!("  - {p} (set by the environment variable {var})"),
            None => format!("  - {p}"),
        })
        .collect();
    anyhow!(
        "{} has {} problem(s):\n{}",
        path.display(),
        problems.len(),
        list.join("\n")
    )
}

/// What `rco judge-eval` reads of a config: the judge and what it is built with. The other
/// sections may be there (a run's config) or not (a config with only a `[judge]`).
#[derive(Debug, Clone)]
pub struct JudgeOnly {
    pub judge: Parsed<JudgeRole>,
    pub templates: PromptTemplates,
    pub seed: u64,
    pub reask_invalid: usize,
    pub durability: rco_core::store::Durability,
    pub bootstrap_resamples: usize,
    /// The config after layering, as JSON.
    pub resolved: Value,
    pub path: PathBuf,
}

impl JudgeOnly {
    /// Directory that relative paths in the config are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }
}

/// Whether a config file holds a `[judge]` and none of a run's other sections (a config
/// for `rco judge-eval` only).
pub fn is_judge_only(path: &Path) -> anyhow::Result<bool> {
    let resolved = layered(path)?;
    Ok(resolved.get("judge").is_some()
        && ["data", "critic", "actors", "trainer"]
            .iter()
            .all(|key| resolved.get(key).is_none()))
}

/// Loads a config's `[judge]` and the keys it is built with, reporting every problem of
/// those at once.
pub fn load_judge(path: &Path) -> anyhow::Result<JudgeOnly> {
    let resolved = layered(path)?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut problems = Vec::new();
    let empty = serde_json::Map::new();
    let top = match resolved.as_object() {
        Some(top) => top,
        None => {
            problems.push(ConfigProblem::new("", "the config must be a table"));
            &empty
        }
    };
    problems.extend(unknown_keys(top));
    let seed = match top.get("seed") {
        Some(v) => typed::<u64>(v, "seed", &mut problems),
        None => Some(default_seed()),
    };
    let reask_invalid = match top.get("reask_invalid") {
        Some(v) => typed::<usize>(v, "reask_invalid", &mut problems),
        None => Some(default_reask()),
    };
    let templates = match top.get("templates") {
        Some(v) => typed::<PromptTemplates>(v, "templates", &mut problems),
        None => Some(PromptTemplates::default()),
    };
    if let Some(templates) = &templates {
        problems.extend(templates.problems());
    }
    let store = match top.get("store") {
        Some(v) => typed::<StoreConfig>(v, "store", &mut problems),
        None => Some(StoreConfig::default()),
    };
    let eval = match top.get("eval") {
        Some(v) => typed::<EvalConfig>(v, "eval", &mut problems),
        None => Some(EvalConfig::default()),
    };
    let context = ValidateContext {
        key: String::new(),
        base_dir,
        templates: templates.clone().unwrap_or_default(),
        config: resolved.clone(),
    };
    let judge = section::<JudgeRole>("judge", top.get("judge"), &context, &mut problems);
    match (judge, seed, reask_invalid, templates, store, eval) {
        (
            Some(judge),
            Some(seed),
            Some(reask_invalid),
            Some(templates),
            Some(store),
            Some(eval),
        ) if problems.is_empty() => Ok(JudgeOnly {
            judge,
            templates,
            seed,
            reask_invalid,
            durability: store.durability,
            bootstrap_resamples: eval.bootstrap_resamples,
            resolved,
            path: path.to_path_buf(),
        }),
        _ => Err(listed(path, &problems)),
    }
}

/// Loads and validates a config file, reporting every problem at once.
pub fn load(path: &Path) -> anyhow::Result<Loaded> {
    let resolved = layered(path)?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let (sections, problems) = check(&resolved, &base_dir);
    if !problems.is_empty() {
        return Err(listed(path, &problems));
    }
    let config: RunConfig =
        serde_json::from_value(resolved.clone()).with_context(|| format!("{}", path.display()))?;
    let sections =
        sections.ok_or_else(|| anyhow!("{}: the plugin sections did not parse", path.display()))?;
    Ok(Loaded {
        config,
        sections,
        resolved,
        path: path.to_path_buf(),
    })
}

/// Every NaN or infinite number in a layered config, with its key.
fn find_non_finite(value: &figment::value::Value, key: &str, out: &mut Vec<ConfigProblem>) {
    use figment::value::Value as V;
    let join = |k: &str| {
        if key.is_empty() {
            k.to_string()
        } else {
            format!("{key}.{k}")
        }
    };
    match value {
        V::Num(_, n) => {
            if let Some(x) = n.to_f64().filter(|x| !x.is_finite()) {
                out.push(ConfigProblem::new(
                    key,
                    format!("is {x}; a number here must be finite"),
                ));
            }
        }
        V::Dict(_, map) => {
            for (k, v) in map {
                find_non_finite(v, &join(k), out);
            }
        }
        V::Array(_, items) => {
            for (i, v) in items.iter().enumerate() {
                find_non_finite(v, &format!("{key}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn figment_message(error: &figment::Error) -> String {
    let mut out = Vec::new();
    for e in error.clone() {
        let key = e.path.join(".");
        let origin = e
            .metadata
            .as_ref()
            .map(|m| m.name.to_string())
            .unwrap_or_default();
        let text = e.kind.to_string();
        out.push(match (key.is_empty(), origin.is_empty()) {
            (true, _) => text,
            (false, true) => format!("`{key}`: {text}"),
            (false, false) => format!("`{key}` (from {origin}): {text}"),
        });
    }
    out.join("; ")
}

fn typed<T: DeserializeOwned>(
    value: &Value,
    key: &str,
    problems: &mut Vec<ConfigProblem>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let path = e.path().to_string();
            let key = if path == "." {
                key.to_string()
            } else {
                format!("{key}.{path}")
            };
            problems.push(ConfigProblem::new(key, e.inner().to_string()));
            None
        }
    }
}

/// Most critiques per item, or refinements per critique.
pub const MAX_SAMPLES: usize = 1024;
/// Most items in one batch.
pub const MAX_BATCH: usize = 100_000;
/// Most batches in flight at once.
pub const MAX_IN_FLIGHT: usize = 1024;
/// Most bootstrap resamples.
pub const MAX_RESAMPLES: usize = 1_000_000;
/// Most judgements (items × N × M × 2 orders) one batch may hold in memory at once.
pub const MAX_BATCH_JUDGEMENTS: usize = 10_000_000;

/// A size that must be at least 1 and at most `limit` (a larger one could not fit in memory).
fn size_problem(key: &str, value: usize, limit: usize) -> Option<ConfigProblem> {
    if value == 0 {
        Some(ConfigProblem::new(key, "must be at least 1"))
    } else if value > limit {
        Some(ConfigProblem::new(
            key,
            format!("is {value}, more than the limit of {limit}"),
        ))
    } else {
        None
    }
}

/// One batch's judgements (items × N × M × both orders) must fit in memory.
fn work_problem(stage: &str, items: usize, n: usize, m: usize) -> Option<ConfigProblem> {
    let judgements = items
        .checked_mul(n)
        .and_then(|x| x.checked_mul(m))
        .and_then(|x| x.checked_mul(2));
    match judgements {
        Some(j) if j <= MAX_BATCH_JUDGEMENTS => None,
        _ => Some(ConfigProblem::new(
            format!("{stage}.items_per_batch"),
            format!(
                "a batch of {items} items × {n} critiques × {m} refinements × 2 orders is more than {MAX_BATCH_JUDGEMENTS} judgements at once; use smaller batches"
            ),
        )),
    }
}

/// The plugin sections of a config, each parsed once into its plugin's config.
#[derive(Debug, Clone)]
pub struct Sections {
    pub data: Parsed<DatasetRole>,
    pub critic: Parsed<CriticRole>,
    pub actors: BTreeMap<String, Parsed<ActorRole>>,
    pub judge: Parsed<JudgeRole>,
    pub reward: Parsed<RewardRole>,
    pub trainer: Parsed<TrainerRole>,
    /// `[eval.critics.NAME]`: critics evaluated besides the base and the trained one.
    pub eval_critics: BTreeMap<String, Parsed<CriticRole>>,
    /// `[baselines.NAME]`: trainers trained on the same groups as `trainer`.
    pub baselines: BTreeMap<String, Parsed<TrainerRole>>,
    /// `[critique_judge]`, when the config has one.
    pub critique_judge: Option<Parsed<JudgeRole>>,
}

/// Parses the section at `key` (a missing one is a problem) and validates it.
fn section<R: PluginRole>(
    key: &str,
    value: Option<&Value>,
    context: &ValidateContext,
    problems: &mut Vec<ConfigProblem>,
) -> Option<Parsed<R>> {
    let Some(value) = value else {
        problems.push(ConfigProblem::new(
            key,
            format!(
                "missing; add a [{key}] section naming a {} plugin with `kind`",
                R::ROLE.name()
            ),
        ));
        return None;
    };
    match registry::parse::<R>(key, value) {
        Ok(parsed) => {
            problems.extend(parsed.validate(&context.for_key(key)));
            Some(parsed)
        }
        Err(problem) => {
            problems.push(problem);
            None
        }
    }
}

/// Every problem of a layered config, each with its key path (paths resolved against the
/// current directory).
pub fn validate(resolved: &Value) -> Vec<ConfigProblem> {
    check(resolved, Path::new(".")).1
}

/// Parses every plugin section once and validates the whole config with each plugin's
/// own checks, which see the rest of the config (paths resolved against `base_dir`).
/// The sections come back when there was no problem.
pub fn check(resolved: &Value, base_dir: &Path) -> (Option<Sections>, Vec<ConfigProblem>) {
    let mut problems = Vec::new();
    let Some(top) = resolved.as_object() else {
        return (
            None,
            vec![ConfigProblem::new("", "the config must be a table")],
        );
    };
    problems.extend(unknown_keys(top));
    if let Some(seed) = top.get("seed") {
        typed::<u64>(seed, "seed", &mut problems);
    }
    if let Some(rounds) = top
        .get("rounds")
        .and_then(|r| typed::<usize>(r, "rounds", &mut problems))
    {
        if !(1..=MAX_ROUNDS).contains(&rounds) {
            problems.push(ConfigProblem::new(
                "rounds",
                format!("must be between 1 and {MAX_ROUNDS}, got {rounds}"),
            ));
        }
    }
    let templates = top
        .get("templates")
        .map(|v| typed::<PromptTemplates>(v, "templates", &mut problems))
        .unwrap_or_default();
    if let Some(templates) = &templates {
        problems.extend(templates.problems());
    }
    let context = ValidateContext {
        key: String::new(),
        base_dir: base_dir.to_path_buf(),
        templates: templates.unwrap_or_default(),
        config: resolved.clone(),
    };
    let default_reward = default_reward();
    let data = section::<DatasetRole>("data", top.get("data"), &context, &mut problems);
    let critic = section::<CriticRole>("critic", top.get("critic"), &context, &mut problems);
    let judge = section::<JudgeRole>("judge", top.get("judge"), &context, &mut problems);
    let critique_judge = top.get("critique_judge").and_then(|value| {
        section::<JudgeRole>("critique_judge", Some(value), &context, &mut problems)
    });
    let reward = section::<RewardRole>(
        "reward",
        Some(top.get("reward").unwrap_or(&default_reward)),
        &context,
        &mut problems,
    );
    let trainer = section::<TrainerRole>("trainer", top.get("trainer"), &context, &mut problems);
    let mut actor_names = Vec::new();
    let mut actors = BTreeMap::new();
    match top.get("actors") {
        Some(Value::Object(sections)) if !sections.is_empty() => {
            for (name, value) in sections {
                actor_names.push(name.clone());
                let key = format!("actors.{name}");
                if let Some(parsed) =
                    section::<ActorRole>(&key, Some(value), &context, &mut problems)
                {
                    actors.insert(name.clone(), parsed);
                }
            }
        }
        Some(Value::Object(_)) | None => problems.push(ConfigProblem::new(
            "actors",
            "needs at least one actor, e.g. [actors.main] with `kind`",
        )),
        Some(_) => problems.push(ConfigProblem::new(
            "actors",
            "must be a table of named actor sections",
        )),
    }
    let known = |name: &str| actor_names.iter().any(|a| a == name);
    if let Some(collect) = top
        .get("collect")
        .map(|v| typed::<CollectConfig>(v, "collect", &mut problems))
        .unwrap_or(Some(CollectConfig::default()))
    {
        if let Some(actor) = &collect.actor {
            if !known(actor) {
                problems.push(ConfigProblem::new(
                    "collect.actor",
                    format!(
                        "no actor named `{actor}` (actors: {})",
                        actor_names.join(", ")
                    ),
                ));
            }
        }
        for (key, value, limit) in [
            (
                "collect.critiques_per_item",
                collect.critiques_per_item,
                MAX_SAMPLES,
            ),
            (
                "collect.refinements_per_critique",
                collect.refinements_per_critique,
                MAX_SAMPLES,
            ),
            (
                "collect.items_per_batch",
                collect.items_per_batch,
                MAX_BATCH,
            ),
            (
                "collect.batches_in_flight",
                collect.batches_in_flight,
                MAX_IN_FLIGHT,
            ),
        ] {
            problems.extend(size_problem(key, value, limit));
        }
        problems.extend(work_problem(
            "collect",
            collect.items_per_batch,
            collect.critiques_per_item,
            collect.refinements_per_critique,
        ));
    }
    let mut eval_critics = BTreeMap::new();
    let mut draws = BTreeMap::new();
    if let Some(eval) = top
        .get("eval")
        .map(|v| typed::<EvalConfig>(v, "eval", &mut problems))
        .unwrap_or(Some(EvalConfig::default()))
    {
        for actor in &eval.actors {
            if !known(actor) {
                problems.push(ConfigProblem::new(
                    "eval.actors",
                    format!(
                        "no actor named `{actor}` (actors: {})",
                        actor_names.join(", ")
                    ),
                ));
            }
        }
        for (key, value, limit) in [
            (
                "eval.critiques_per_item",
                eval.critiques_per_item,
                MAX_SAMPLES,
            ),
            (
                "eval.refinements_per_critique",
                eval.refinements_per_critique,
                MAX_SAMPLES,
            ),
            ("eval.items_per_batch", eval.items_per_batch, MAX_BATCH),
            (
                "eval.batches_in_flight",
                eval.batches_in_flight,
                MAX_IN_FLIGHT,
            ),
            (
                "eval.bootstrap_resamples",
                eval.bootstrap_resamples,
                MAX_RESAMPLES,
            ),
        ] {
            problems.extend(size_problem(key, value, limit));
        }
        problems.extend(work_problem(
            "eval",
            eval.items_per_batch,
            eval.critiques_per_item,
            eval.refinements_per_critique,
        ));
        let trained = trained_name(top);
        for (name, value) in &eval.critics {
            let key = format!("eval.critics.{name}");
            if let Some(problem) = critic_name_problem(name, name == "base" || name == trained) {
                problems.push(ConfigProblem::new(key, problem));
                continue;
            }
            if let Some(parsed) = section::<CriticRole>(&key, Some(value), &context, &mut problems)
            {
                eval_critics.insert(name.clone(), parsed);
            }
        }
        draws = eval.draws;
    }
    let mut baselines = BTreeMap::new();
    if let Some(value) = top.get("baselines") {
        if let Some(sections) =
            typed::<BTreeMap<String, Section>>(value, "baselines", &mut problems)
        {
            let trained = trained_name(top);
            let round = |name: &str| {
                name.strip_prefix("round-")
                    .or_else(|| {
                        name.strip_prefix(trained)
                            .and_then(|rest| rest.strip_prefix("-round-"))
                    })
                    .is_some_and(|n| n.parse::<usize>().is_ok())
            };
            for (name, value) in &sections {
                let key = format!("baselines.{name}");
                let taken = name == "base"
                    || name == trained
                    || round(name)
                    || eval_critics.contains_key(name);
                if let Some(problem) = critic_name_problem(name, taken) {
                    problems.push(ConfigProblem::new(key, problem));
                    continue;
                }
                if let Some(parsed) =
                    section::<TrainerRole>(&key, Some(value), &context, &mut problems)
                {
                    baselines.insert(name.clone(), parsed);
                }
            }
        }
    }
    let critics = evaluated_critic_names(
        trained_name(top),
        top.get("rounds").and_then(Value::as_u64).unwrap_or(1) as usize,
        baselines.keys().chain(eval_critics.keys()).cloned(),
    );
    problems.extend(draws_problems(&draws, &critics));
    if let Some(prices) = top.get("prices") {
        typed::<BTreeMap<String, rco_core::usage::Price>>(prices, "prices", &mut problems);
    }
    if let Some(store) = top.get("store") {
        typed::<StoreConfig>(store, "store", &mut problems);
    }
    if let Some(budget) = top.get("budget") {
        typed::<rco_core::usage::Budget>(budget, "budget", &mut problems);
    }
    let sections = match (data, critic, judge, reward, trainer) {
        (Some(data), Some(critic), Some(judge), Some(reward), Some(trainer))
            if problems.is_empty() =>
        {
            Some(Sections {
                data,
                critic,
                actors,
                judge,
                reward,
                trainer,
                eval_critics,
                baselines,
                critique_judge,
            })
        }
        _ => None,
    };
    (sections, problems)
}

/// What is wrong with `[eval] draws`: a name that is not an evaluated critic (the base, the
/// trained critic, a later round's, a baseline, one of `[eval.critics]`), a count of 0 or
/// above [`MAX_SAMPLES`], or a draw's name (`NAME-draw-K`) that another critic has already.
fn draws_problems(draws: &BTreeMap<String, usize>, critics: &[String]) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    for (name, &count) in draws {
        let key = format!("eval.draws.{name}");
        if !critics.contains(name) {
            problems.push(ConfigProblem::new(
                key,
                format!(
                    "no evaluated critic named `{name}` (critics: {})",
                    critics.join(", ")
                ),
            ));
            continue;
        }
        if count == 0 || count > MAX_SAMPLES {
            problems.push(ConfigProblem::new(
                key,
                format!(
                    "{count} draws: give the number of draws in all, from 1 (the critic's own \
                     evaluation only) to {MAX_SAMPLES}"
                ),
            ));
            continue;
        }
        for k in 2..=count {
            let draw = draw_name(name, k);
            if critics.contains(&draw) {
                problems.push(ConfigProblem::new(
                    key.clone(),
                    format!("draw {k} would be named `{draw}`, which names another critic"),
                ));
            }
        }
    }
    problems
}

/// The trained critic's name in a config: the trainer's kind, `rco` when it is not given.
fn trained_name(top: &serde_json::Map<String, Value>) -> &str {
    top.get("trainer")
        .and_then(|t| t.get("kind"))
        .and_then(Value::as_str)
        .unwrap_or("rco")
}

/// The critic round `round` trains (rounds count from 1): `trained`, then
/// `TRAINED-round-2`, ...; round 0 is the base critic.
pub fn round_name(trained: &str, round: usize) -> String {
    match round {
        0 => "base".to_string(),
        1 => trained.to_string(),
        r => format!("{trained}-round-{r}"),
    }
}

/// The critics a run evaluates before draws: `base`, the trained critic, the critics of
/// later rounds (`rco-round-2`, ...), then `others` (the baselines, then `[eval.critics]`).
pub fn evaluated_critic_names(
    trained: &str,
    rounds: usize,
    others: impl IntoIterator<Item = String>,
) -> Vec<String> {
    let mut names: Vec<String> = (0..=rounds.max(1))
        .map(|r| round_name(trained, r))
        .collect();
    names.extend(others);
    names
}

/// The name of draw `k` (from 2) of critic `name`: `NAME-draw-K`.
pub fn draw_name(name: &str, k: usize) -> String {
    format!("{name}-draw-{k}")
}

/// Why `name` cannot name a critic of the run (`None` when it can): `taken` by another
/// (the base, the trained critic, a round's, another section's), or holding characters other
/// than letters, digits, `-` and `_` (it names rows and files).
fn critic_name_problem(name: &str, taken: bool) -> Option<String> {
    if taken {
        return Some(format!(
            "`{name}` names another critic of the run already (the base, the trained critic, a round's or one of [eval.critics]); give this one another name"
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Some(
            "a critic's name may hold letters, digits, `-` and `_` only (it names rows and files)"
                .into(),
        );
    }
    None
}

/// JSON Schema of a config file: the run config with each plugin section expanded into the
/// schemas of the registered plugins of its role.
pub fn schema() -> Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(RunConfig)).unwrap_or(Value::Null);
    let one_of = |role: Role| {
        let variants: Vec<Value> = registry::plugins()
            .into_iter()
            .filter(|d| d.role == role)
            .map(|d| registry::section_schema(&d))
            .collect();
        serde_json::json!({ "oneOf": variants })
    };
    if let Some(Value::Object(props)) = schema.get_mut("properties") {
        for (key, role) in [
            ("data", Role::Dataset),
            ("critic", Role::Critic),
            ("judge", Role::Judge),
            ("critique_judge", Role::Judge),
            ("reward", Role::RewardEstimator),
            ("trainer", Role::Trainer),
        ] {
            if let Some(Value::Object(section)) = props.get_mut(key) {
                let description = section.get("description").cloned();
                section.clear();
                if let Some(d) = description {
                    section.insert("description".into(), d);
                }
                if let Value::Object(variants) = one_of(role) {
                    section.extend(variants);
                }
            }
        }
        if let Some(Value::Object(actors)) = props.get_mut("actors") {
            actors.insert("additionalProperties".into(), one_of(Role::Actor));
        }
        if let Some(Value::Object(baselines)) = props.get_mut("baselines") {
            baselines.insert("additionalProperties".into(), one_of(Role::Trainer));
        }
    }
    // `eval.critics` lives in the `EvalConfig` definition, which `eval` refers to.
    for defs in ["$defs", "definitions"] {
        if let Some(Value::Object(critics)) =
            schema.pointer_mut(&format!("/{defs}/EvalConfig/properties/critics"))
        {
            critics.insert("additionalProperties".into(), one_of(Role::Critic));
        }
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_past_their_limits_and_non_finite_numbers_are_named() {
        rco_plugins::link();
        let config = serde_json::json!({
            "data": {"kind": "quickstart", "train_items": 1_000_000_000_000u64},
            "critic": {"kind": "quickstart"},
            "actors": {"weak": {"kind": "quickstart", "strength": "weak"}},
            "judge": {"kind": "verifier"},
            "trainer": {"kind": "rco"},
            "collect": {"critiques_per_item": 1_000_000_000_000u64},
            "eval": {"items_per_batch": 100_000, "critiques_per_item": 1000, "refinements_per_critique": 1000},
        });
        let problems = validate(&config);
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        for key in [
            "data.train_items",
            "collect.critiques_per_item",
            "eval.items_per_batch",
        ] {
            assert!(keys.contains(&key), "{key} missing from {problems:#?}");
        }
        let mut found = Vec::new();
        let raw = figment::Figment::from(figment::providers::Toml::string(
            "[trainer]\nbeta = nan\nlist = [1.0, inf]\n",
        ))
        .extract::<figment::value::Value>()
        .expect("toml");
        find_non_finite(&raw, "", &mut found);
        let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["trainer.beta", "trainer.list[1]"], "{found:?}");
    }

    #[test]
    fn a_problem_under_an_override_names_the_variable() {
        let overrides = vec![
            ("RCO_TRAINER__BETA".to_string(), "trainer.beta".to_string()),
            ("RCO_SURPRISE".to_string(), "surprise".to_string()),
        ];
        assert_eq!(
            from_override("trainer.beta", &overrides),
            Some("RCO_TRAINER__BETA")
        );
        assert_eq!(from_override("surprise", &overrides), Some("RCO_SURPRISE"));
        assert_eq!(from_override("trainer.epochs", &overrides), None);
        assert!(OWN_VARIABLES.contains(&"RCO_MODELS_DIR"));
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        rco_plugins::link();
        let config = serde_json::json!({
            "seed": "seven",
            "surprise": 1,
            "data": {"kind": "quickstart", "train_items": 0},
            "critic": {"kind": "nonexistent"},
            "actors": {"weak": {"kind": "quickstart", "strength": "weak", "colour": "red"}},
            "judge": {"kind": "noisy", "position_bias": 2.0},
            "trainer": {"kind": "rco", "beta": "high"},
            "collect": {"actor": "strong"},
        });
        let problems = validate(&config);
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        for expected in [
            "seed",
            "surprise",
            "data.train_items",
            "critic.kind",
            "actors.weak.colour",
            "judge.position_bias",
            "trainer.beta",
            "collect.actor",
        ] {
            assert!(
                keys.contains(&expected),
                "{expected} missing from {problems:#?}"
            );
        }
        let unknown = problems.iter().find(|p| p.key == "critic.kind").unwrap();
        assert!(
            unknown.message.contains("quickstart") && unknown.message.contains("burn"),
            "{unknown}"
        );
    }
}
