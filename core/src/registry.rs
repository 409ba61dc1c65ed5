//! The plugin registry. Each plugin crate submits a [`PluginDescriptor`] with `inventory`;
//! a config section picks one by `kind = "..."`. A plugin's config struct is its factory:
//! the descriptor validates a section against it and builds the plugin from it.

use std::path::PathBuf;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{
    Actor, ConfigProblem, Critic, Dataset, Error, Judge, NoProgress, ProgressFactory, Result,
    RewardEstimator, Trainer,
};

/// What a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Dataset,
    Critic,
    Actor,
    Judge,
    RewardEstimator,
    Trainer,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Dataset,
        Role::Critic,
        Role::Actor,
        Role::Judge,
        Role::RewardEstimator,
        Role::Trainer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Dataset => "dataset",
            Role::Critic => "critic",
            Role::Actor => "actor",
            Role::Judge => "judge",
            Role::RewardEstimator => "reward estimator",
            Role::Trainer => "trainer",
        }
    }
}

type BuildFn<T> = fn(&Value, &BuildContext) -> Result<T>;

/// How a descriptor builds its plugin.
pub enum Builder {
    Dataset(BuildFn<Arc<dyn Dataset>>),
    Critic(BuildFn<Arc<dyn Critic>>),
    Actor(BuildFn<Arc<dyn Actor>>),
    Judge(BuildFn<Arc<dyn Judge>>),
    RewardEstimator(BuildFn<Arc<dyn RewardEstimator>>),
    Trainer(BuildFn<Box<dyn Trainer>>),
}

/// A registered plugin.
pub struct PluginDescriptor {
    pub role: Role,
    pub kind: &'static str,
    /// One line for `rco plugins`.
    pub summary: &'static str,
    /// An example section (TOML, without the section header).
    pub example: &'static str,
    /// JSON Schema of the section (without `kind`).
    pub schema: fn() -> schemars::Schema,
    /// Every problem of a section, keys relative to the section.
    pub validate: fn(&Value) -> Vec<ConfigProblem>,
    pub build: Builder,
}

inventory::collect!(PluginDescriptor);

/// Everything a plugin may need besides its own section.
#[derive(Clone)]
pub struct BuildContext {
    /// Key path of the section being built, e.g. `actors.strong` (for messages).
    pub name: String,
    pub seed: u64,
    /// Directory relative paths in the config are resolved against.
    pub base_dir: PathBuf,
    /// The run directory, when building for a run.
    pub run_dir: Option<PathBuf>,
    /// Critic: the checkpoint to load (created there first if absent and the plugin can).
    /// Trainer: the checkpoint training starts from.
    pub checkpoint: Option<PathBuf>,
    /// Critic: whether the plugin may create its base checkpoint at `checkpoint` when none
    /// is there (true for the base critic of a run, false for the trained one).
    pub create_checkpoint: bool,
    /// Critic: the OpenAI-compatible endpoint (`http://HOST:PORT/v1`) that serves this
    /// critic's trained weights, when training said they must be served
    /// ([`crate::TrainedCritic::Served`]); a plugin that asks a server asks this one.
    pub endpoint: Option<String>,
    /// Trainer: where the trained critic is written (and its own checkpoints kept).
    pub output: Option<PathBuf>,
    /// Trainer: the critic section, so that a trainer can build the same model.
    pub critic_section: Option<Value>,
    /// The prompt templates of the run.
    pub templates: crate::PromptTemplates,
    pub progress: Arc<dyn ProgressFactory>,
    /// Where per-step numbers go (the run's `metrics.jsonl`).
    pub metrics: Arc<dyn crate::Metrics>,
    /// The run's call ledger (remote plugins record their calls, tokens and cost in it).
    pub usage: Arc<crate::usage::UsageLedger>,
}

impl BuildContext {
    pub fn new(name: impl Into<String>, seed: u64) -> Self {
        Self {
            name: name.into(),
            seed,
            base_dir: PathBuf::from("."),
            run_dir: None,
            checkpoint: None,
            create_checkpoint: false,
            endpoint: None,
            output: None,
            critic_section: None,
            templates: Default::default(),
            progress: Arc::new(NoProgress),
            metrics: Arc::new(crate::NoMetrics),
            usage: Arc::new(crate::usage::UsageLedger::default()),
        }
    }

    /// A path from the config, resolved against the config's directory.
    pub fn resolve(&self, path: &std::path::Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }
}

/// All registered plugins, sorted by role and kind.
pub fn plugins() -> Vec<&'static PluginDescriptor> {
    let mut all: Vec<_> = inventory::iter::<PluginDescriptor>.into_iter().collect();
    all.sort_by_key(|d| (d.role, d.kind));
    all
}

/// Known kinds for a role.
pub fn kinds(role: Role) -> Vec<&'static str> {
    plugins()
        .into_iter()
        .filter(|d| d.role == role)
        .map(|d| d.kind)
        .collect()
}

/// The plugin named by a section's `kind`, or a problem listing the known kinds.
pub fn find(role: Role, section: &Value) -> Result<&'static PluginDescriptor, ConfigProblem> {
    let known = kinds(role).join(", ");
    let kind = match section.get("kind") {
        Some(Value::String(kind)) => kind,
        Some(other) => {
            return Err(ConfigProblem::new(
                "kind",
                format!(
                    "expected a string, found {other}; known {} kinds: {known}",
                    role.name()
                ),
            ))
        }
        None => {
            return Err(ConfigProblem::new(
                "kind",
                format!(
                "missing; every {} section names its plugin with `kind = \"...\"` (known: {known})",
                role.name()
            ),
            ))
        }
    };
    plugins()
        .into_iter()
        .find(|d| d.role == role && d.kind == kind)
        .ok_or_else(|| {
            ConfigProblem::new(
                "kind",
                format!(
                    "unknown {} kind `{kind}`; known kinds: {known}",
                    role.name()
                ),
            )
        })
}

/// Every problem of a section: an unknown kind, or the plugin's own validation.
pub fn validate(role: Role, section: &Value) -> Vec<ConfigProblem> {
    if !section.is_object() {
        return vec![ConfigProblem::new(
            "",
            format!(
                "expected a table naming a {} plugin with `kind`",
                role.name()
            ),
        )];
    }
    match find(role, section) {
        Ok(descriptor) => (descriptor.validate)(section),
        Err(problem) => vec![problem],
    }
}

fn without_kind(value: &Value) -> Value {
    let mut value = value.clone();
    if let Value::Object(map) = &mut value {
        map.remove("kind");
    }
    value
}

/// Deserializes a section (without its `kind`) into a plugin's config, naming the key on error.
pub fn parse_section<T: DeserializeOwned>(value: &Value) -> Result<T> {
    parse_problem(value).map_err(|p| Error::Config(vec![p]))
}

fn parse_problem<T: DeserializeOwned>(value: &Value) -> Result<T, ConfigProblem> {
    let stripped = without_kind(value);
    serde_path_to_error::deserialize::<_, T>(&stripped).map_err(|err| {
        let path = err.path().to_string();
        let message = err.inner().to_string();
        ConfigProblem::new(if path == "." { String::new() } else { path }, message)
    })
}

/// Validation by deserialization, plus the config's own checks.
pub fn validate_section<T: DeserializeOwned + Validate>(value: &Value) -> Vec<ConfigProblem> {
    match parse_problem::<T>(value) {
        Ok(config) => config.problems(),
        Err(problem) => vec![problem],
    }
}

/// Checks a config beyond its types (ranges, files that must exist, ...).
pub trait Validate {
    fn problems(&self) -> Vec<ConfigProblem> {
        Vec::new()
    }
}

/// The schema of a section: the plugin config's schema plus its `kind`.
pub fn section_schema(descriptor: &PluginDescriptor) -> Value {
    let mut schema = serde_json::to_value((descriptor.schema)()).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut schema {
        map.remove("$schema");
        map.insert(
            "title".into(),
            Value::String(format!("{} `{}`", descriptor.role.name(), descriptor.kind)),
        );
        map.insert(
            "description".into(),
            Value::String(descriptor.summary.into()),
        );
        let properties = map
            .entry("properties")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Value::Object(props) = properties {
            props.insert("kind".into(), serde_json::json!({ "const": descriptor.kind, "description": "Which plugin this section builds." }));
        }
        let required = map
            .entry("required")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(required) = required {
            required.insert(0, Value::String("kind".into()));
        }
    }
    schema
}

/// Registers a plugin: `register_plugin! { role: Judge, kind: "verifier", summary: "...",
/// example: "...", config: VerifierConfig, build: build_fn }`. The config type implements
/// `Deserialize`, `JsonSchema` and [`Validate`].
#[macro_export]
macro_rules! register_plugin {
    (role: $role:ident, kind: $kind:expr, summary: $summary:expr, example: $example:expr, config: $config:ty, build: $build:path $(,)?) => {
        const _: () = {
            fn schema() -> $crate::schemars::Schema {
                $crate::schemars::schema_for!($config)
            }
            fn validate(value: &$crate::serde_json::Value) -> Vec<$crate::ConfigProblem> {
                $crate::registry::validate_section::<$config>(value)
            }
            $crate::inventory::submit! {
                $crate::registry::PluginDescriptor {
                    role: $crate::registry::Role::$role,
                    kind: $kind,
                    summary: $summary,
                    example: $example,
                    schema,
                    validate,
                    build: $crate::registry::Builder::$role($build),
                }
            }
        };
    };
}

impl Validate for crate::reward::CuEstimatorConfig {}
