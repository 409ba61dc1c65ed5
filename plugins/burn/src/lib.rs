//! rco-plugin-burn: local language models in burn as critics, actors, judges and the RCO
//! trainer.
//!
//! # Design
//! The models live in [`rco_lm`]; this crate gives them roles. One config section
//! ([`config::BurnModelConfig`]) names a model and its device and sampling; the `burn`
//! critic, actor and judge each open it as an [`rco_lm::engine::Engine`] and register under
//! `kind = "burn"`. The `rco` trainer ([`trainer`]) regresses a local critic onto the RCO
//! objective with [`rco_lm::loss`], checkpointing model and optimizer state as it goes.
//! Two judges are models of their own rather than chat models: a scalar reward model
//! ([`reward_judge`], `kind = "reward_model"`) and PairRM ([`pairrm_judge`], `kind = "pairrm"`).

pub mod actor;
pub mod config;
pub mod critic;
pub mod judge;
pub mod optimizer;
pub mod pairrm_judge;
pub mod reward_judge;
pub mod trainer;
