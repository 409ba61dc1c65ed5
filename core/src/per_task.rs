//! The per-task judge (`kind = "per_task"`): each task's items go to the judge its section
//! names (`[judge.tasks.code] kind = "code"`), every other task's to `[judge.default]`.
//! This is how a run over several task suites gives each its own judge: a verifier where
//! answers can be checked, a model judge where they cannot.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::registry::{self, JudgeRole, Validate, ValidateContext};
use crate::{
    BuildContext, Comparison, ConfigProblem, Error, Judge, Judgement, PointwiseRequest,
    PointwiseScore, Result,
};

/// A judge section per task.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PerTaskJudgeConfig {
    /// The judge of each task, by task name: a judge section (`kind = "..."` and its keys).
    pub tasks: BTreeMap<String, Value>,
    /// The judge of every task not in `tasks`; without it, such a task is an error.
    #[serde(default)]
    pub default: Option<Value>,
}

impl PerTaskJudgeConfig {
    fn sections(&self) -> impl Iterator<Item = (String, &Value)> {
        self.tasks
            .iter()
            .map(|(task, section)| (format!("tasks.{task}"), section))
            .chain(self.default.iter().map(|s| ("default".to_string(), s)))
    }
}

impl Validate for PerTaskJudgeConfig {
    fn problems(&self, ctx: &ValidateContext) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if self.tasks.is_empty() && self.default.is_none() {
            problems.push(ConfigProblem::new(
                "tasks",
                "names no judge: add a [judge.tasks.NAME] section per task, or [judge.default]",
            ));
        }
        for (key, section) in self.sections() {
            if section.get("kind").and_then(Value::as_str) == Some("per_task") {
                problems.push(ConfigProblem::new(
                    format!("{key}.kind"),
                    "a per-task judge cannot hold another",
                ));
                continue;
            }
            let inner = ctx.for_key(format!("{}.{key}", ctx.key));
            problems.extend(
                registry::validate::<JudgeRole>(section, &inner)
                    .into_iter()
                    .map(|p| p.under(&key)),
            );
        }
        problems
    }
}

/// Routes each comparison and score to its task's judge.
pub struct PerTaskJudge {
    tasks: BTreeMap<String, Arc<dyn Judge>>,
    default: Option<Arc<dyn Judge>>,
}

impl PerTaskJudge {
    fn judge(&self, task: &str) -> Result<&Arc<dyn Judge>> {
        self.tasks
            .get(task)
            .or(self.default.as_ref())
            .ok_or_else(|| {
                Error::plugin(
                    "judge (per_task)",
                    format!(
                        "no judge for task `{task}`: add [judge.tasks.{task}] or [judge.default]"
                    ),
                )
            })
    }

    /// Runs `call` on each task's share of `requests` and puts the answers back in order.
    async fn routed<Q: Clone, A>(
        &self,
        requests: &[Q],
        task: impl Fn(&Q) -> &str,
        call: impl AsyncCall<Q, A>,
    ) -> Result<Vec<A>> {
        let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, r) in requests.iter().enumerate() {
            groups.entry(task(r)).or_default().push(i);
        }
        let mut out: Vec<Option<A>> = (0..requests.len()).map(|_| None).collect();
        for (task, indices) in groups {
            let judge = self.judge(task)?;
            let share: Vec<Q> = indices.iter().map(|&i| requests[i].clone()).collect();
            let answers = call.call(judge.as_ref(), &share).await?;
            if answers.len() != share.len() {
                return Err(Error::plugin(
                    "judge (per_task)",
                    format!(
                        "the judge of task `{task}` returned {} answers for {} requests",
                        answers.len(),
                        share.len()
                    ),
                ));
            }
            for (i, answer) in indices.into_iter().zip(answers) {
                out[i] = Some(answer);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }
}

/// One judge call on a share of the requests.
#[async_trait]
trait AsyncCall<Q, A>: Send + Sync {
    async fn call(&self, judge: &dyn Judge, requests: &[Q]) -> Result<Vec<A>>;
}

struct Compare;
#[async_trait]
impl AsyncCall<Comparison, Judgement> for Compare {
    async fn call(&self, judge: &dyn Judge, requests: &[Comparison]) -> Result<Vec<Judgement>> {
        judge.compare(requests).await
    }
}

struct CompareCritiques;
#[async_trait]
impl AsyncCall<crate::CritiqueComparison, Judgement> for CompareCritiques {
    async fn call(
        &self,
        judge: &dyn Judge,
        requests: &[crate::CritiqueComparison],
    ) -> Result<Vec<Judgement>> {
        judge.compare_critiques(requests).await
    }
}

struct Score;
#[async_trait]
impl AsyncCall<PointwiseRequest, PointwiseScore> for Score {
    async fn call(
        &self,
        judge: &dyn Judge,
        requests: &[PointwiseRequest],
    ) -> Result<Vec<PointwiseScore>> {
        judge.score(requests).await
    }
}

#[async_trait]
impl Judge for PerTaskJudge {
    fn max_batch_size(&self) -> usize {
        self.tasks
            .values()
            .chain(self.default.iter())
            .map(|j| j.max_batch_size())
            .min()
            .unwrap_or(64)
    }

    async fn compare(&self, comparisons: &[Comparison]) -> Result<Vec<Judgement>> {
        self.routed(comparisons, |c| c.task.as_str(), Compare).await
    }

    async fn compare_critiques(
        &self,
        comparisons: &[crate::CritiqueComparison],
    ) -> Result<Vec<Judgement>> {
        self.routed(comparisons, |c| c.item.task.as_str(), CompareCritiques)
            .await
    }

    async fn score(&self, requests: &[PointwiseRequest]) -> Result<Vec<PointwiseScore>> {
        self.routed(requests, |r| r.task.as_str(), Score).await
    }

    fn solved_score(&self, task: &str) -> Option<f64> {
        self.judge(task).ok()?.solved_score(task)
    }
}

fn build(config: &PerTaskJudgeConfig, ctx: &BuildContext) -> Result<Arc<dyn Judge>> {
    let make = |key: &str, section: &Value| {
        let inner = BuildContext {
            name: format!("{}.{key}", ctx.name),
            ..ctx.clone()
        };
        registry::build::<JudgeRole>(&inner.name.clone(), section, &inner)
    };
    let mut tasks = BTreeMap::new();
    for (task, section) in &config.tasks {
        tasks.insert(task.clone(), make(&format!("tasks.{task}"), section)?);
    }
    let default = config
        .default
        .as_ref()
        .map(|section| make("default", section))
        .transpose()?;
    Ok(Arc::new(PerTaskJudge { tasks, default }))
}

crate::register_plugin! {
    role: Judge,
    kind: "per_task",
    summary: "One judge per task ([judge.tasks.NAME] sections, [judge.default] for the rest): verifiers where answers can be checked, a model judge elsewhere",
    example: "kind = \"per_task\"\n[judge.tasks.math]\nkind = \"math\"\n[judge.tasks.code]\nkind = \"code\"\n",
    config: PerTaskJudgeConfig,
    build: build,
}
