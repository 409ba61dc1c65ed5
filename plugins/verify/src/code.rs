//! The code verifier (`kind = "code"`): runs each answer's program with the item's tests in
//! the [`crate::sandbox`] and compares the fraction of tests passed (or, with
//! `partial_credit = false`, whether all passed). Pointwise, the score is 1 + 9 × the
//! fraction passed. A program that loops, forks, allocates without bound, writes outside
//! its directory, reaches for the network or prints without end fails its tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rco_core::registry::{Validate, ValidateContext};
use rco_core::{
    BuildContext, Comparison, ConfigProblem, Judge, Judgement, PointwiseRequest, PointwiseScore,
    Result, Verdict,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::extract::program;
use crate::sandbox::{self, Limits, Outcome, Program};
use crate::{SOLVED, WRONG};

/// The code verifier's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CodeJudgeConfig {
    /// The Python interpreter that runs programs.
    pub python: String,
    /// Wall-clock seconds per program before its process group is killed.
    pub timeout_seconds: f64,
    /// CPU seconds per program.
    pub cpu_seconds: u64,
    /// Address space per program, in MiB.
    pub memory_mb: u64,
    /// The most a program may print or write, in KiB.
    pub output_kb: u64,
    /// Programs run at the same time (0: one per CPU core).
    pub concurrency: usize,
    /// Compare the fraction of tests passed; `false`: only whether all passed.
    pub partial_credit: bool,
}

impl Default for CodeJudgeConfig {
    fn default() -> Self {
        Self {
            python: "python3".into(),
            timeout_seconds: 10.0,
            cpu_seconds: 5,
            memory_mb: 1024,
            output_kb: 64,
            concurrency: 0,
            partial_credit: true,
        }
    }
}

impl Validate for CodeJudgeConfig {
    fn problems(&self, _ctx: &ValidateContext) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if !(self.timeout_seconds > 0.0 && self.timeout_seconds <= 3600.0) {
            problems.push(ConfigProblem::new(
                "timeout_seconds",
                "must be more than 0 and at most 3600",
            ));
        }
        for (key, value, limit) in [
            ("cpu_seconds", self.cpu_seconds, 3600),
            ("memory_mb", self.memory_mb, 1 << 20),
            ("output_kb", self.output_kb, 1 << 20),
        ] {
            if value == 0 || value > limit {
                problems.push(ConfigProblem::new(
                    key,
                    format!("is {value}; it must be between 1 and {limit}"),
                ));
            }
        }
        if self.concurrency > 1024 {
            problems.push(ConfigProblem::new("concurrency", "must be at most 1024"));
        }
        if self.python.trim().is_empty() {
            problems.push(ConfigProblem::new("python", "must name an interpreter"));
        }
        problems
    }
}

/// The most outcomes kept for answers seen again (both orders of a pair, the same `y0`
/// against each refinement).
const KEEP_OUTCOMES: usize = 20_000;

/// Runs programs against tests.
pub struct CodeJudge {
    config: CodeJudgeConfig,
    limits: Limits,
    slots: Semaphore,
    seen: Mutex<HashMap<Program, Outcome>>,
    warned_network: std::sync::atomic::AtomicBool,
}

impl CodeJudge {
    pub fn new(config: CodeJudgeConfig) -> Self {
        let concurrency = match config.concurrency {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let limits = Limits {
            wall: Duration::from_secs_f64(config.timeout_seconds),
            cpu_seconds: config.cpu_seconds,
            memory_bytes: config.memory_mb << 20,
            output_bytes: config.output_kb << 10,
        };
        Self {
            config,
            limits,
            slots: Semaphore::new(concurrency),
            seen: Mutex::new(HashMap::new()),
            warned_network: Default::default(),
        }
    }

    /// The outcome of each answer (`None`: the item has no tests), each distinct program
    /// run once.
    pub async fn outcomes(
        &self,
        answers: &[(&str, &str, Option<&str>, Option<&str>)],
    ) -> Result<Vec<Option<Outcome>>> {
        let programs: Vec<Option<Program>> = answers
            .iter()
            .map(|&(answer, prompt, tests, entry)| {
                tests.map(|tests| Program {
                    program: program(answer, entry),
                    setup: prompt.to_string(),
                    tests: tests.to_string(),
                    entry_point: entry.map(str::to_string),
                })
            })
            .collect();
        let mut todo: Vec<&Program> = Vec::new();
        {
            let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            for p in programs.iter().flatten() {
                if !seen.contains_key(p) && !todo.contains(&p) {
                    todo.push(p);
                }
            }
        }
        let runs = todo.iter().map(|p| async move {
            let _slot = self.slots.acquire().await.map_err(|e| e.to_string())?;
            sandbox::run(&self.config.python, p, self.limits).await
        });
        let results = futures::future::join_all(runs).await;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() + todo.len() > KEEP_OUTCOMES {
            seen.clear();
        }
        let mut fresh = HashMap::new();
        for (p, result) in todo.into_iter().zip(results) {
            let outcome = result.map_err(|e| rco_core::Error::plugin("judge (code)", e))?;
            self.warn_about_network(&outcome);
            fresh.insert(p.clone(), outcome);
        }
        let out = programs
            .iter()
            .map(|p| {
                p.as_ref()
                    .map(|p| fresh.get(p).or_else(|| seen.get(p)).cloned())
                    .map(|o| o.expect("every program was run"))
            })
            .collect();
        seen.extend(fresh);
        Ok(out)
    }

    fn warn_about_network(&self, outcome: &Outcome) {
        if outcome.network.starts_with("not isolated")
            && !self
                .warned_network
                .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                "code judge: the network is {} (programs still cannot open sockets from Python)",
                outcome.network
            );
        }
    }

    fn credit(&self, outcome: &Outcome) -> f64 {
        if self.config.partial_credit {
            outcome.fraction()
        } else if outcome.solved() {
            1.0
        } else {
            0.0
        }
    }
}

const NO_TESTS: &str = "the item has no tests (the code judge needs `tests`)";

#[async_trait]
impl Judge for CodeJudge {
    /// A verifier checks answers, not critiques: every critique comparison is invalid.
    async fn compare_critiques(
        &self,
        comparisons: &[rco_core::CritiqueComparison],
    ) -> Result<Vec<Judgement>> {
        Ok(crate::decline_critiques(comparisons.len()))
    }

    async fn compare(&self, comparisons: &[Comparison]) -> Result<Vec<Judgement>> {
        let answers: Vec<_> = comparisons
            .iter()
            .flat_map(|c| {
                [&c.a, &c.b].map(|answer| {
                    (
                        answer.as_str(),
                        c.prompt.as_str(),
                        c.tests.as_deref(),
                        c.entry_point.as_deref(),
                    )
                })
            })
            .collect();
        let outcomes = self.outcomes(&answers).await?;
        Ok(outcomes
            .chunks(2)
            .map(|pair| match pair {
                [Some(a), Some(b)] => {
                    let (a, b) = (self.credit(a), self.credit(b));
                    let verdict = if a > b {
                        Verdict::A
                    } else if b > a {
                        Verdict::B
                    } else {
                        Verdict::Tie
                    };
                    Judgement {
                        verdict,
                        prob_a: None,
                    }
                }
                _ => Judgement::hard(Verdict::Invalid {
                    reason: NO_TESTS.into(),
                }),
            })
            .collect())
    }

    async fn score(&self, requests: &[PointwiseRequest]) -> Result<Vec<PointwiseScore>> {
        let answers: Vec<_> = requests
            .iter()
            .map(|r| {
                (
                    r.response.as_str(),
                    r.prompt.as_str(),
                    r.tests.as_deref(),
                    r.entry_point.as_deref(),
                )
            })
            .collect();
        Ok(self
            .outcomes(&answers)
            .await?
            .into_iter()
            .map(|outcome| match outcome {
                Some(o) => PointwiseScore::Score(WRONG + (SOLVED - WRONG) * self.credit(&o)),
                None => PointwiseScore::Invalid {
                    reason: NO_TESTS.into(),
                },
            })
            .collect())
    }

    fn solved_score(&self, _task: &str) -> Option<f64> {
        Some(SOLVED)
    }
}

fn build(config: &CodeJudgeConfig, _ctx: &BuildContext) -> Result<Arc<dyn Judge>> {
    Ok(Arc::new(CodeJudge::new(config.clone())))
}

rco_core::register_plugin! {
    role: Judge,
    kind: "code",
    summary: "Code verifier: runs each program with the item's tests in a sandbox (own directory, process group, CPU/memory/output limits, no network); more tests passed wins",
    example: "kind = \"code\"\ntimeout_seconds = 10\nconcurrency = 2\n",
    config: CodeJudgeConfig,
    build: build,
}
