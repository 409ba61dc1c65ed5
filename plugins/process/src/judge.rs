//! The process judge (`kind = "command"`): `command = ["python3", "my_judge.py"]` is started
//! `workers` times and kept running; each call's comparisons are cut into batches of
//! `batch_size` lines shared among the workers. See [`crate::protocol`] for the lines.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rco_core::registry::{Validate, ValidateContext};
use rco_core::{
    BuildContext, Comparison, ConfigProblem, Judge, Judgement, PointwiseRequest, PointwiseScore,
    Result, Verdict,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Mutex};

use crate::protocol::{Answer, Request};
use crate::worker::{Spec, Worker};

/// The process judge's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandJudgeConfig {
    /// The program and its arguments, run in the config file's directory.
    pub command: Vec<String>,
    /// Processes running at once.
    #[serde(default = "one")]
    pub workers: usize,
    /// Request lines sent to a process at a time.
    #[serde(default = "sixteen")]
    pub batch_size: usize,
    /// Seconds to wait for the next answer before the process is killed and started again.
    #[serde(default = "sixty")]
    pub timeout_seconds: f64,
    /// How many times each worker's process may be started again over a run.
    #[serde(default = "ten")]
    pub max_restarts: usize,
    /// The pointwise score of a correct answer, for a judge that verifies (it makes the
    /// runner count solved answers); unset for a judge whose scores are opinions.
    #[serde(default)]
    pub solved_score: Option<f64>,
}

fn one() -> usize {
    1
}
fn sixteen() -> usize {
    16
}
fn sixty() -> f64 {
    60.0
}
fn ten() -> usize {
    10
}

impl Validate for CommandJudgeConfig {
    fn problems(&self, _ctx: &ValidateContext) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if self.command.is_empty() || self.command[0].trim().is_empty() {
            problems.push(ConfigProblem::new(
                "command",
                "must name a program, for example [\"python3\", \"my_judge.py\"]",
            ));
        }
        for (key, value, limit) in [
            ("workers", self.workers, 256),
            ("batch_size", self.batch_size, 100_000),
        ] {
            if value == 0 || value > limit {
                problems.push(ConfigProblem::new(
                    key,
                    format!("is {value}; it must be between 1 and {limit}"),
                ));
            }
        }
        if !(self.timeout_seconds > 0.0 && self.timeout_seconds <= 86_400.0) {
            problems.push(ConfigProblem::new(
                "timeout_seconds",
                "must be more than 0 and at most 86400",
            ));
        }
        problems
    }
}

/// A pool of judge processes.
pub struct CommandJudge {
    idle_tx: mpsc::UnboundedSender<Worker>,
    idle_rx: Mutex<mpsc::UnboundedReceiver<Worker>>,
    batch_size: usize,
    next_id: AtomicU64,
    solved_score: Option<f64>,
}

impl CommandJudge {
    pub fn new(config: &CommandJudgeConfig, name: &str, dir: PathBuf) -> Self {
        let spec = Spec {
            name: name.to_string(),
            command: config.command.clone(),
            dir,
            timeout: Duration::from_secs_f64(config.timeout_seconds),
            max_restarts: config.max_restarts,
        };
        let (idle_tx, idle_rx) = mpsc::unbounded_channel();
        for i in 0..config.workers.max(1) {
            // The receiver lives as long as the judge: sending cannot fail.
            let _ = idle_tx.send(Worker::new(spec.clone(), i));
        }
        Self {
            idle_tx,
            idle_rx: Mutex::new(idle_rx),
            batch_size: config.batch_size.max(1),
            next_id: AtomicU64::new(0),
            solved_score: config.solved_score,
        }
    }

    /// The answers to `requests` in order, batches spread over the workers.
    async fn ask(
        &self,
        requests: Vec<Request>,
    ) -> Result<Vec<std::result::Result<Answer, String>>> {
        let batches = requests.chunks(self.batch_size).map(|batch| async move {
            let mut worker = {
                let mut idle = self.idle_rx.lock().await;
                idle.recv()
                    .await
                    .ok_or_else(|| rco_core::Error::plugin("judge (command)", "no worker left"))?
            };
            let answers = worker.ask(batch).await;
            let _ = self.idle_tx.send(worker);
            answers.map_err(|e| rco_core::Error::plugin("judge (command)", e))
        });
        let mut out = Vec::with_capacity(requests.len());
        for answers in futures::future::join_all(batches).await {
            out.extend(answers?);
        }
        Ok(out)
    }

    fn id(&self) -> String {
        self.next_id.fetch_add(1, Ordering::Relaxed).to_string()
    }
}

/// A pairwise answer as a judgement.
fn judgement(answer: std::result::Result<Answer, String>) -> Judgement {
    let answer = match answer {
        Ok(answer) => answer,
        Err(reason) => return Judgement::hard(Verdict::Invalid { reason }),
    };
    if let Some(reason) = answer.error {
        return Judgement::hard(Verdict::Invalid { reason });
    }
    let verdict = match answer
        .verdict
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("a") => Verdict::A,
        Some("b") => Verdict::B,
        Some("tie") | Some("c") => Verdict::Tie,
        other => Verdict::Invalid {
            reason: format!(
                "the judge process answered verdict {other:?} (expected \"A\", \"B\" or \"tie\")"
            ),
        },
    };
    let prob_a = answer
        .p_a
        .filter(|p| p.is_finite() && (0.0..=1.0).contains(p));
    Judgement { verdict, prob_a }
}

/// A pointwise answer as a score.
fn score(answer: std::result::Result<Answer, String>) -> PointwiseScore {
    match answer {
        Err(reason) => PointwiseScore::Invalid { reason },
        Ok(Answer {
            error: Some(reason),
            ..
        }) => PointwiseScore::Invalid { reason },
        Ok(Answer { score: Some(s), .. }) if s.is_finite() => PointwiseScore::Score(s),
        Ok(_) => PointwiseScore::Invalid {
            reason: "the judge process answered no finite `score`".into(),
        },
    }
}

#[async_trait]
impl Judge for CommandJudge {
    fn max_batch_size(&self) -> usize {
        self.batch_size
    }

    async fn compare(&self, comparisons: &[Comparison]) -> Result<Vec<Judgement>> {
        let requests = comparisons
            .iter()
            .map(|c| Request::pairwise(self.id(), c))
            .collect();
        Ok(self
            .ask(requests)
            .await?
            .into_iter()
            .map(judgement)
            .collect())
    }

    async fn score(&self, requests: &[PointwiseRequest]) -> Result<Vec<PointwiseScore>> {
        let requests = requests
            .iter()
            .map(|r| Request::pointwise(self.id(), r))
            .collect();
        Ok(self.ask(requests).await?.into_iter().map(score).collect())
    }

    fn solved_score(&self, _task: &str) -> Option<f64> {
        self.solved_score
    }
}

fn build(config: &CommandJudgeConfig, ctx: &BuildContext) -> Result<Arc<dyn Judge>> {
    Ok(Arc::new(CommandJudge::new(
        config,
        &ctx.name,
        ctx.base_dir.clone(),
    )))
}

rco_core::register_plugin! {
    role: Judge,
    kind: "command",
    summary: "A judge in any language: a long-lived child process reading JSON-line requests on stdin and writing verdicts on stdout",
    example: "kind = \"command\"\ncommand = [\"python3\", \"my_judge.py\"]\nworkers = 2\n",
    config: CommandJudgeConfig,
    build: build,
}
