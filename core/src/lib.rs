//! rco-core: the domain of Refinement-oriented Critique Optimization (RCO) without any model,
//! network or config-file machinery.
//!
//! # Design
//! Everything a plugin or a runner shares lives here: the domain types ([`TaskItem`],
//! [`Critique`], [`Verdict`], ...), the five object-safe, batch-first traits ([`Critic`],
//! [`Actor`], [`Judge`], [`RewardEstimator`], [`Trainer`]) plus [`Dataset`], the `inventory`
//! plugin registry keyed by `kind`, critique-utility estimation, the RCO objective as plain
//! math, prompt templates, seeds and the crash-safe JSONL run store. Plugins depend on this
//! crate only; the `rco` binary assembles them from config.

pub mod dataset;
pub mod error;
pub mod fixed_critic;
pub mod judge;
pub mod objective;
pub mod per_task;
pub mod prompts;
pub mod registry;
pub mod reward;
pub mod seed;
pub mod self_refine;
pub mod stats;
pub mod store;
pub mod suites;
pub mod task_templates;
pub mod template;
pub mod test_util;
pub mod traits;
pub mod types;
pub mod usage;

pub use error::{ConfigProblem, Error, Result};
pub use prompts::Order;
pub use registry::{
    BuildContext, CriticContext, PluginDescriptor, PluginInfo, Role, TrainerContext,
    ValidateContext,
};
pub use template::PromptTemplates;
pub use traits::*;
pub use types::*;

// Re-exported so that plugin crates register themselves without naming these crates.
pub use inventory;
pub use schemars;
pub use serde_json;
