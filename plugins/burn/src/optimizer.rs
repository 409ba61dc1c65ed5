//! The optimizer a burn trainer steps with (`optimizer` in every trainer section).
//!
//! AdamW, the default, divides each weight's gradient by a running estimate of its size, so
//! every weight moves by about the learning rate per step whatever the loss's slope. Under
//! RCO's squared error a critique whose log-ratio already sits near its target has a tiny
//! gradient, and AdamW still moves the weights by a full step. SGD moves each weight by the
//! learning rate times its gradient: a step as large as the signal.

use rco_core::ConfigProblem;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which optimizer a trainer uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// AdamW (burn's defaults: betas 0.9 and 0.999, epsilon 1e-5), with `weight_decay`
    /// decoupled from the gradient. Each weight moves by about the learning rate per step.
    #[default]
    Adamw,
    /// Stochastic gradient descent, with `momentum` (0: none) and `weight_decay` added to
    /// the gradient (L2). Each weight moves by the learning rate times its gradient, so a
    /// step is as large as the loss's slope; it needs a far larger learning rate than AdamW.
    Sgd,
}

impl OptimizerKind {
    /// The name a config and a training state give it.
    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Adamw => "adamw",
            OptimizerKind::Sgd => "sgd",
        }
    }

    /// The problems of `momentum` (keyed `momentum`) under this optimizer.
    pub fn momentum_problems(self, momentum: f64) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        if !(0.0..1.0).contains(&momentum) {
            p.push(ConfigProblem::new(
                "momentum",
                format!("must be at least 0 and below 1, got {momentum}"),
            ));
        } else if momentum > 0.0 && self != OptimizerKind::Sgd {
            p.push(ConfigProblem::new(
                "momentum",
                "is SGD's: set `optimizer = \"sgd\"` with it (AdamW keeps its own moments)",
            ));
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn momentum_is_checked_against_the_optimizer() {
        assert!(OptimizerKind::Sgd.momentum_problems(0.9).is_empty());
        assert!(OptimizerKind::Adamw.momentum_problems(0.0).is_empty());
        let wrong = OptimizerKind::Adamw.momentum_problems(0.9);
        assert_eq!(wrong.len(), 1);
        assert_eq!(wrong[0].key, "momentum");
        assert!(
            wrong[0].message.contains("optimizer = \"sgd\""),
            "{}",
            wrong[0]
        );
        assert_eq!(OptimizerKind::Sgd.momentum_problems(1.0).len(), 1);
        assert_eq!(OptimizerKind::Sgd.momentum_problems(-0.1).len(), 1);
    }

    #[test]
    fn names_are_the_config_values() {
        for kind in [OptimizerKind::Adamw, OptimizerKind::Sgd] {
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::json!(kind.name())
            );
        }
    }
}
