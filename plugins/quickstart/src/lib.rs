//! The embedded quickstart world: seeded digit-repair tasks, program actors, a critique
//! language with a warm-start mix, and verifier and noisy judges, so that RCO runs end to end
//! with no model or network.
//!
//! # Design
//! Every task (copy, reverse or increment a digit string) has an answer a program can compute,
//! and every initial response is wrong at exactly one position, so critique quality is
//! measurable: a critique is precise (`@3=7`), vague (`@3`), generic (`ok`) or wrong, and the
//! [`actor::QuickstartActor`] reacts to each kind with fixed probabilities that differ between
//! a weak and a strong actor. All randomness is drawn from `rco_core::seed::rng_for` with the
//! request's seed and the sample's index, so results do not depend on batching or order.
//! One module per role; each registers its plugins with `rco_core::register_plugin!`.

pub mod actor;
pub mod critic;
pub mod judge;
pub mod mix;
pub mod tasks;

pub use actor::{ActorParams, QuickstartActor, QuickstartActorConfig, Strength};
pub use judge::{NoisyJudge, NoisyJudgeConfig, VerifierJudge, VerifierJudgeConfig};
pub use mix::{parse_critique, CritiqueKind, CritiqueMix, ParsedCritique};
pub use tasks::{error_count, error_positions, solve, QuickstartDataConfig, QuickstartDataset};
