//! The plugin registry. Each plugin crate registers its config type with
//! [`register_plugin!`]; a config section picks one by `kind = "..."`. A plugin's config
//! struct is its factory: a section is deserialized once into it ([`parse`]), validated
//! with the whole config in view ([`Validate`], before anything is built), and builds the
//! plugin from a context typed by its role ([`PluginRole::Context`]).

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{
    Actor, ConfigProblem, Critic, Dataset, Error, Judge, Metrics, NoMetrics, NoProgress,
    ProgressFactory, PromptTemplates, Result, RewardEstimator, Trainer,
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

/// A role's types: what its sections build, and the context they are built with.
pub trait PluginRole: Sized + 'static {
    const ROLE: Role;
    /// What a section of this role builds.
    type Plugin;
    /// What the build gets besides the plugin's own config.
    type Context;
    /// The registered plugins of this role.
    fn registered() -> Vec<&'static Plugin<Self>>;
}

macro_rules! roles {
    ($($(#[$doc:meta])* $marker:ident => $role:ident, $plugin:ty, $context:ty;)*) => {$(
        $(#[$doc])*
        pub struct $marker;
        impl PluginRole for $marker {
            const ROLE: Role = Role::$role;
            type Plugin = $plugin;
            type Context = $context;
            fn registered() -> Vec<&'static Plugin<Self>> {
                inventory::iter::<Plugin<Self>>.into_iter().collect()
            }
        }
        inventory::collect!(Plugin<$marker>);
    )*};
}

roles! {
    /// `[data]`: where task items come from.
    DatasetRole => Dataset, Arc<dyn Dataset>, BuildContext;
    /// `[critic]`: the critic the run trains.
    CriticRole => Critic, Arc<dyn Critic>, CriticContext;
    /// `[actors.NAME]`: the actors that refine.
    ActorRole => Actor, Arc<dyn Actor>, BuildContext;
    /// `[judge]`: the pairwise (and pointwise) judge.
    JudgeRole => Judge, Arc<dyn Judge>, BuildContext;
    /// `[reward]`: critique utility from judgements.
    RewardRole => RewardEstimator, Arc<dyn RewardEstimator>, BuildContext;
    /// `[trainer]`: how the critic is trained.
    TrainerRole => Trainer, Box<dyn Trainer>, TrainerContext;
}

/// A parsed section: the plugin's config, which checks itself and builds the plugin.
/// [`register_plugin!`] implements it for a plugin's config type.
pub trait Section<R: PluginRole>: Send + Sync {
    /// Every problem of the config (keys relative to the section).
    fn validate(&self, ctx: &ValidateContext) -> Vec<ConfigProblem>;
    /// Builds the plugin.
    fn build(&self, ctx: &R::Context) -> Result<R::Plugin>;
}

/// One registered plugin of role `R`.
pub struct Plugin<R: PluginRole> {
    pub kind: &'static str,
    /// One line for `rco plugins`.
    pub summary: &'static str,
    /// An example section (TOML, without the section header).
    pub example: &'static str,
    /// JSON Schema of the section (without `kind`).
    pub schema: fn() -> schemars::Schema,
    /// Deserializes a section into the plugin's config.
    pub parse: fn(&Value) -> Result<Box<dyn Section<R>>, ConfigProblem>,
}

/// What `rco plugins` and the schema show of a plugin, whatever its role.
#[derive(Debug, Clone, Copy)]
pub struct PluginInfo {
    pub role: Role,
    pub kind: &'static str,
    pub summary: &'static str,
    pub example: &'static str,
    pub schema: fn() -> schemars::Schema,
}

/// The compatibility name of [`PluginInfo`].
pub type PluginDescriptor = PluginInfo;

fn infos<R: PluginRole>() -> impl Iterator<Item = PluginInfo> {
    R::registered().into_iter().map(|p| PluginInfo {
        role: R::ROLE,
        kind: p.kind,
        summary: p.summary,
        example: p.example,
        schema: p.schema,
    })
}

/// All registered plugins, sorted by role and kind.
pub fn plugins() -> Vec<PluginInfo> {
    let mut all: Vec<PluginInfo> = infos::<DatasetRole>()
        .chain(infos::<CriticRole>())
        .chain(infos::<ActorRole>())
        .chain(infos::<JudgeRole>())
        .chain(infos::<RewardRole>())
        .chain(infos::<TrainerRole>())
        .collect();
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

/// A section parsed into its plugin's config, kept with its key path for messages.
pub struct Parsed<R: PluginRole> {
    /// Key path of the section, e.g. `actors.strong`.
    pub key: String,
    pub kind: &'static str,
    section: Arc<dyn Section<R>>,
}

impl<R: PluginRole> Clone for Parsed<R> {
    fn clone(&self) -> Self {
        Self {
            key: self.key.clone(),
            kind: self.kind,
            section: self.section.clone(),
        }
    }
}

impl<R: PluginRole> std::fmt::Debug for Parsed<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} `{}` ({})", R::ROLE.name(), self.key, self.kind)
    }
}

impl<R: PluginRole> Parsed<R> {
    /// Every problem of the section, keys under the section's key.
    pub fn validate(&self, ctx: &ValidateContext) -> Vec<ConfigProblem> {
        self.section
            .validate(ctx)
            .into_iter()
            .map(|p| p.under(&self.key))
            .collect()
    }

    /// Builds the plugin.
    pub fn build(&self, ctx: &R::Context) -> Result<R::Plugin> {
        self.section.build(ctx)
    }
}

/// Parses a section of role `R` at `key`: finds its plugin by `kind` and deserializes the
/// rest into the plugin's config, once. Problems are keyed under `key`.
pub fn parse<R: PluginRole>(key: &str, section: &Value) -> Result<Parsed<R>, ConfigProblem> {
    let role = R::ROLE.name();
    let plugins = R::registered();
    let mut known: Vec<&str> = plugins.iter().map(|p| p.kind).collect();
    known.sort_unstable();
    let known = known.join(", ");
    let kind = match section {
        Value::Object(map) => match map.get("kind") {
            Some(Value::String(kind)) => kind,
            Some(other) => {
                return Err(ConfigProblem::new(
                    "kind",
                    format!("expected a string, found {other}; known {role} kinds: {known}"),
                )
                .under(key))
            }
            None => {
                return Err(ConfigProblem::new(
                    "kind",
                    format!(
                        "missing; every {role} section names its plugin with `kind = \"...\"` (known: {known})"
                    ),
                )
                .under(key))
            }
        },
        _ => {
            return Err(ConfigProblem::new(
                "",
                format!("expected a table naming a {role} plugin with `kind`"),
            )
            .under(key))
        }
    };
    let plugin = plugins
        .into_iter()
        .find(|p| p.kind == kind)
        .ok_or_else(|| {
            ConfigProblem::new(
                "kind",
                format!("unknown {role} kind `{kind}`; known kinds: {known}"),
            )
            .under(key)
        })?;
    let section = (plugin.parse)(section).map_err(|p| p.under(key))?;
    Ok(Parsed {
        key: key.to_string(),
        kind: plugin.kind,
        section: Arc::from(section),
    })
}

/// Every problem of a section of role `R`: its kind, its types, and its plugin's own checks
/// (keys relative to the section).
pub fn validate<R: PluginRole>(section: &Value, ctx: &ValidateContext) -> Vec<ConfigProblem> {
    match parse::<R>("", section) {
        Ok(parsed) => parsed.validate(ctx),
        Err(problem) => vec![problem],
    }
}

/// Parses and builds a section in one step (tests, and tools that build one plugin).
pub fn build<R: PluginRole>(key: &str, section: &Value, ctx: &R::Context) -> Result<R::Plugin> {
    parse::<R>(key, section)
        .map_err(|p| Error::Config(vec![p]))?
        .build(ctx)
}

/// What validation sees besides the section itself: the whole config, so that a plugin can
/// check what it needs of the rest (files that must exist, templates it must honour).
#[derive(Debug, Clone)]
pub struct ValidateContext {
    /// Key path of the section being validated (for messages).
    pub key: String,
    /// Directory relative paths in the config are resolved against.
    pub base_dir: PathBuf,
    /// The run's prompt templates.
    pub templates: PromptTemplates,
    /// The whole layered config, as JSON.
    pub config: Value,
}

impl ValidateContext {
    pub fn new(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            base_dir: PathBuf::from("."),
            templates: PromptTemplates::default(),
            config: Value::Null,
        }
    }

    /// A path from the config, resolved against the config's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        resolve(&self.base_dir, path)
    }

    /// The same context for another section.
    pub fn for_key(&self, key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            ..self.clone()
        }
    }
}

fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// Everything any plugin may need besides its own section.
#[derive(Clone)]
pub struct BuildContext {
    /// Key path of the section being built, e.g. `actors.strong` (for messages).
    pub name: String,
    pub seed: u64,
    /// Directory relative paths in the config are resolved against.
    pub base_dir: PathBuf,
    /// The run directory, when building for a run.
    pub run_dir: Option<PathBuf>,
    /// The prompt templates of the run.
    pub templates: PromptTemplates,
    pub progress: Arc<dyn ProgressFactory>,
    /// Where per-step numbers go (the run's `metrics.jsonl`).
    pub metrics: Arc<dyn Metrics>,
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
            templates: Default::default(),
            progress: Arc::new(NoProgress),
            metrics: Arc::new(NoMetrics),
            usage: Arc::new(crate::usage::UsageLedger::default()),
        }
    }

    /// A path from the config, resolved against the config's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        resolve(&self.base_dir, path)
    }
}

/// What a critic is built with.
#[derive(Clone)]
pub struct CriticContext {
    pub common: BuildContext,
    /// The checkpoint to load (created there first if absent and the plugin can); `None`
    /// when the critic's own config names its model.
    pub checkpoint: Option<PathBuf>,
    /// Whether the plugin may create its base checkpoint at `checkpoint` when none is there
    /// (true for the base critic of a run, false for the trained one).
    pub create_checkpoint: bool,
    /// The OpenAI-compatible endpoint (`http://HOST:PORT/v1`) that serves this critic's
    /// trained weights, when training said they must be served
    /// ([`crate::TrainedCritic::Served`]); a plugin that asks a server asks this one.
    pub endpoint: Option<String>,
    /// The actor whose answers the critic critiques, when the runner builds the critic for
    /// one actor (the critics of `[eval.critics]` are built once per evaluation actor); a
    /// critic that critiques with that actor (`self-refine`) needs it.
    pub actor: Option<Arc<dyn Actor>>,
}

impl CriticContext {
    pub fn new(common: BuildContext) -> Self {
        Self {
            common,
            checkpoint: None,
            create_checkpoint: false,
            endpoint: None,
            actor: None,
        }
    }

    /// Whether this is the trained critic (a checkpoint that training wrote).
    pub fn is_trained(&self) -> bool {
        self.checkpoint.is_some() && !self.create_checkpoint
    }
}

impl Deref for CriticContext {
    type Target = BuildContext;
    fn deref(&self) -> &BuildContext {
        &self.common
    }
}

/// What a trainer is built with.
#[derive(Clone)]
pub struct TrainerContext {
    pub common: BuildContext,
    /// The base critic's checkpoint, where training starts.
    pub base_checkpoint: PathBuf,
    /// Where the trained critic is written (and the trainer's own checkpoints kept).
    pub output: PathBuf,
    /// The critic section, so that a trainer can build the same model.
    pub critic_section: Value,
}

impl Deref for TrainerContext {
    type Target = BuildContext;
    fn deref(&self) -> &BuildContext {
        &self.common
    }
}

fn without_kind(value: &Value) -> Value {
    let mut value = value.clone();
    if let Value::Object(map) = &mut value {
        map.remove("kind");
    }
    value
}

/// Deserializes a section (its `kind` aside) into a plugin's config, naming the key of
/// the first problem.
pub fn parse_config<T: DeserializeOwned>(value: &Value) -> Result<T, ConfigProblem> {
    let stripped = without_kind(value);
    serde_path_to_error::deserialize::<_, T>(&stripped).map_err(|err| {
        let path = err.path().to_string();
        let message = err.inner().to_string();
        ConfigProblem::new(if path == "." { String::new() } else { path }, message)
    })
}

/// [`parse_config`] as an [`Error`].
pub fn parse_section<T: DeserializeOwned>(value: &Value) -> Result<T> {
    parse_config(value).map_err(|p| Error::Config(vec![p]))
}

/// Checks a config beyond its types (ranges, files that must exist, templates the plugin
/// must honour), with the whole config in view. Keys are relative to the section.
pub trait Validate {
    fn problems(&self, _ctx: &ValidateContext) -> Vec<ConfigProblem> {
        Vec::new()
    }
}

/// The schema of a section: the plugin config's schema plus its `kind`.
pub fn section_schema(descriptor: &PluginInfo) -> Value {
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

/// Registers a plugin:
///
/// ```ignore
/// rco_core::register_plugin! {
///     role: Judge,            // Dataset, Critic, Actor, Judge, RewardEstimator or Trainer
///     kind: "shorter",        // what `kind = "..."` selects it by
///     summary: "Prefers the shorter answer",
///     example: "kind = \"shorter\"\n",
///     config: ShorterConfig,  // Deserialize + JsonSchema + Validate + Send + Sync
///     build: build,           // fn(&ShorterConfig, &Role's context) -> Result<Role's plugin>
/// }
/// ```
///
/// The contexts: [`CriticContext`] for critics, [`TrainerContext`] for trainers,
/// [`BuildContext`] for the rest.
#[macro_export]
macro_rules! register_plugin {
    (role: Dataset, $($rest:tt)*) => { $crate::register_plugin!(@role $crate::registry::DatasetRole, $($rest)*); };
    (role: Critic, $($rest:tt)*) => { $crate::register_plugin!(@role $crate::registry::CriticRole, $($rest)*); };
    (role: Actor, $($rest:tt)*) => { $crate::register_plugin!(@role $crate::registry::ActorRole, $($rest)*); };
    (role: Judge, $($rest:tt)*) => { $crate::register_plugin!(@role $crate::registry::JudgeRole, $($rest)*); };
    (role: RewardEstimator, $($rest:tt)*) => { $crate::register_plugin!(@role $crate::registry::RewardRole, $($rest)*); };
    (role: Trainer, $($rest:tt)*) => { $crate::register_plugin!(@role $crate::registry::TrainerRole, $($rest)*); };
    (@role $role:ty, kind: $kind:expr, summary: $summary:expr, example: $example:expr, config: $config:ty, build: $build:path $(,)?) => {
        const _: () = {
            struct Parsed($config);
            impl $crate::registry::Section<$role> for Parsed {
                fn validate(
                    &self,
                    ctx: &$crate::registry::ValidateContext,
                ) -> ::std::vec::Vec<$crate::ConfigProblem> {
                    $crate::registry::Validate::problems(&self.0, ctx)
                }
                fn build(
                    &self,
                    ctx: &<$role as $crate::registry::PluginRole>::Context,
                ) -> $crate::Result<<$role as $crate::registry::PluginRole>::Plugin> {
                    $build(&self.0, ctx)
                }
            }
            fn parse(
                value: &$crate::serde_json::Value,
            ) -> ::std::result::Result<
                ::std::boxed::Box<dyn $crate::registry::Section<$role>>,
                $crate::ConfigProblem,
            > {
                ::std::result::Result::Ok(::std::boxed::Box::new(Parsed(
                    $crate::registry::parse_config::<$config>(value)?,
                )))
            }
            fn schema() -> $crate::schemars::Schema {
                $crate::schemars::schema_for!($config)
            }
            $crate::inventory::submit! {
                $crate::registry::Plugin::<$role> {
                    kind: $kind,
                    summary: $summary,
                    example: $example,
                    schema,
                    parse,
                }
            }
        };
    };
}

impl Validate for crate::reward::CuEstimatorConfig {}
