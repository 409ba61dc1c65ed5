//! The call ledger of a run: calls, cache hits, retries, tokens and cost, per stage and per
//! plugin, with an optional hard budget. Remote plugins record into the ledger their build
//! context carries; the runner names the stage, saves the ledger with each commit and puts
//! it in the report.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What one plugin spent in one stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    /// Calls answered (over the network or from the cache).
    pub calls: u64,
    /// Calls answered from the call cache, without a request.
    pub cache_hits: u64,
    /// HTTP requests sent (attempts, retries included).
    pub requests: u64,
    /// Requests retried, by reason (`429`, `500`, `timeout`, `connection`, `bad_body`, ...).
    pub retries: BTreeMap<String, u64>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Cost in the currency of the configured prices (0 without prices).
    pub cost: f64,
}

impl Usage {
    pub fn add(&mut self, other: &Usage) {
        self.calls += other.calls;
        self.cache_hits += other.cache_hits;
        self.requests += other.requests;
        for (reason, n) in &other.retries {
            *self.retries.entry(reason.clone()).or_default() += n;
        }
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.cost += other.cost;
    }

    pub fn retry_count(&self) -> u64 {
        self.retries.values().sum()
    }

    pub fn tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// Price of a model, per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Price {
    /// Per million prompt tokens.
    pub input_per_million: f64,
    /// Per million completion tokens.
    pub output_per_million: f64,
}

/// A hard limit on what a run may spend; reaching it stops the run with everything so far
/// saved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Budget {
    /// Most prompt + completion tokens over the whole run.
    pub max_tokens: Option<u64>,
    /// Most cost over the whole run (needs `prices`).
    pub max_cost: Option<f64>,
}

/// The ledger: usage keyed by (stage, plugin section).
#[derive(Debug, Default)]
pub struct UsageLedger {
    state: Mutex<LedgerState>,
    prices: BTreeMap<String, Price>,
    budget: Budget,
    halted: AtomicBool,
}

#[derive(Debug, Default)]
struct LedgerState {
    stage: String,
    entries: BTreeMap<String, BTreeMap<String, Usage>>,
}

/// The saved form of a ledger: stage → plugin → usage.
pub type UsageTable = BTreeMap<String, BTreeMap<String, Usage>>;

impl UsageLedger {
    pub fn new(prices: BTreeMap<String, Price>, budget: Budget) -> Self {
        Self {
            state: Mutex::new(LedgerState {
                stage: "other".into(),
                entries: BTreeMap::new(),
            }),
            prices,
            budget,
            halted: AtomicBool::new(false),
        }
    }

    /// Stops new work: calls not yet sent fail with [`Error::Halted`], while calls in flight
    /// finish and are saved. Set on the first error that stops a run.
    pub fn halt(&self) {
        self.halted.store(true, Ordering::SeqCst);
    }

    pub fn is_halted(&self) -> bool {
        self.halted.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LedgerState> {
        // A panic while holding the lock leaves counters, never broken invariants.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Continues from a saved table (a resumed run keeps counting).
    pub fn restore(&self, table: UsageTable) {
        self.lock().entries = table;
    }

    /// The stage calls are charged to from now on.
    pub fn set_stage(&self, stage: &str) {
        self.lock().stage = stage.to_string();
    }

    /// Adds to the current stage's entry of `plugin`; the cost comes from `model`'s price.
    pub fn record(&self, plugin: &str, model: Option<&str>, mut usage: Usage) {
        if let Some(price) = model.and_then(|m| self.prices.get(m)) {
            usage.cost += usage.prompt_tokens as f64 * price.input_per_million / 1e6
                + usage.completion_tokens as f64 * price.output_per_million / 1e6;
        }
        let mut state = self.lock();
        let stage = state.stage.clone();
        state
            .entries
            .entry(stage)
            .or_default()
            .entry(plugin.to_string())
            .or_default()
            .add(&usage);
    }

    pub fn table(&self) -> UsageTable {
        self.lock().entries.clone()
    }

    /// Everything spent so far, all stages and plugins.
    pub fn total(&self) -> Usage {
        let mut total = Usage::default();
        for plugins in self.lock().entries.values() {
            for usage in plugins.values() {
                total.add(usage);
            }
        }
        total
    }

    /// `Err(Error::Budget)` once the run has spent its budget; plugins ask before each call.
    pub fn check_budget(&self) -> Result<()> {
        if self.budget.max_tokens.is_none() && self.budget.max_cost.is_none() {
            return Ok(());
        }
        let total = self.total();
        if let Some(max) = self.budget.max_tokens {
            if total.tokens() >= max {
                return Err(Error::Budget(format!(
                    "{} tokens spent, budget.max_tokens is {max}",
                    total.tokens()
                )));
            }
        }
        if let Some(max) = self.budget.max_cost {
            if total.cost >= max {
                return Err(Error::Budget(format!(
                    "cost {:.4} spent, budget.max_cost is {max}",
                    total.cost
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_stages_prices_and_budget() {
        let prices = BTreeMap::from([(
            "m".to_string(),
            Price {
                input_per_million: 1.0,
                output_per_million: 2.0,
            },
        )]);
        let ledger = UsageLedger::new(
            prices,
            Budget {
                max_tokens: Some(3_000_000),
                max_cost: None,
            },
        );
        ledger.set_stage("collect");
        let call = Usage {
            calls: 1,
            prompt_tokens: 1_000_000,
            completion_tokens: 500_000,
            ..Default::default()
        };
        ledger.record("judge", Some("m"), call.clone());
        assert!(ledger.check_budget().is_ok());
        ledger.set_stage("eval");
        ledger.record("judge", Some("unpriced"), call);
        let table = ledger.table();
        assert_eq!(table["collect"]["judge"].cost, 2.0);
        assert_eq!(table["eval"]["judge"].cost, 0.0);
        assert_eq!(ledger.total().tokens(), 3_000_000);
        assert!(matches!(ledger.check_budget(), Err(Error::Budget(_))));
    }
}
