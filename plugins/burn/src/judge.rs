//! A self-rewarding judge (`kind = "burn"`): a local burn model, often the critic's own,
//! prompted with the task's pairwise and pointwise templates. Verdicts are read from its
//! answer (`[[A]]`, `[[B]]`, `[[C]]` for a tie; `[[N]]` for a rating); an answer without one
//! is an invalid verdict that keeps the text.

use std::sync::Arc;

use async_trait::async_trait;
use burn::prelude::*;
use rco_core::judge::{parse_pairwise, parse_rating};
use rco_core::{
    BuildContext, Comparison, Judge, Judgement, PointwiseRequest, PointwiseScore, PromptTemplates,
    Result,
};
use rco_lm::engine::Engine;

use crate::config::{placement, BurnJudgeConfig};

pub struct LmJudge<B: Backend> {
    name: String,
    engine: Engine<B>,
    templates: PromptTemplates,
    verdict_probabilities: bool,
}

impl<B: Backend> LmJudge<B> {
    fn err(&self, e: impl std::fmt::Display) -> rco_core::Error {
        rco_core::Error::plugin(format!("judge `{}` (burn)", self.name), e)
    }
}

#[async_trait]
impl<B: Backend> Judge for LmJudge<B> {
    fn max_batch_size(&self) -> usize {
        self.engine.settings.batch_size
    }

    async fn compare(&self, comparisons: &[Comparison]) -> Result<Vec<Judgement>> {
        let prompts: Vec<String> = comparisons
            .iter()
            .map(|c| self.templates.pairwise_prompt(c))
            .collect();
        let seeds: Vec<u64> = comparisons.iter().map(|c| c.seed).collect();
        let mut out = Vec::with_capacity(comparisons.len());
        // Comparisons of one task share the answer prefix; runs of them generate together.
        for (prefix, range) in runs(comparisons.iter().map(|c| {
            self.templates
                .for_task(&c.task)
                .pairwise_answer_prefix
                .as_str()
        })) {
            if self.verdict_probabilities {
                let scores = self
                    .engine
                    .choice_log_probs(&prompts[range], prefix, &["A", "B", "C"])
                    .map_err(|e| self.err(e))?;
                out.extend(
                    scores
                        .iter()
                        .map(|lp| rco_core::judge::judgement_from_choice_log_probs(lp)),
                );
                continue;
            }
            let answers = self
                .engine
                .generate_after(&prompts[range.clone()], prefix, &seeds[range])
                .map_err(|e| self.err(e))?;
            out.extend(answers.iter().map(|a| Judgement::hard(parse_pairwise(a))));
        }
        Ok(out)
    }

    async fn score(&self, requests: &[PointwiseRequest]) -> Result<Vec<PointwiseScore>> {
        let prompts: Vec<String> = requests
            .iter()
            .map(|r| self.templates.pointwise_prompt(r))
            .collect();
        let seeds: Vec<u64> = requests.iter().map(|r| r.seed).collect();
        let mut out = Vec::with_capacity(requests.len());
        for (prefix, range) in runs(requests.iter().map(|r| {
            self.templates
                .for_task(&r.task)
                .pointwise_answer_prefix
                .as_str()
        })) {
            let answers = self
                .engine
                .generate_after(&prompts[range.clone()], prefix, &seeds[range])
                .map_err(|e| self.err(e))?;
            out.extend(answers.iter().map(|a| parse_rating(a)));
        }
        Ok(out)
    }
}

/// Consecutive runs of equal values, as (value, index range).
fn runs<'a>(values: impl Iterator<Item = &'a str>) -> Vec<(&'a str, std::ops::Range<usize>)> {
    let mut out: Vec<(&str, std::ops::Range<usize>)> = Vec::new();
    for (i, v) in values.enumerate() {
        match out.last_mut() {
            Some((last, range)) if *last == v => range.end = i + 1,
            _ => out.push((v, i..i + 1)),
        }
    }
    out
}

fn build(config: &BurnJudgeConfig, ctx: &BuildContext) -> Result<Arc<dyn Judge>> {
    let config = &config.0;
    let problems =
        rco_core::judge::verdict_prefix_problems(config.verdict_probabilities, &ctx.templates);
    if !problems.is_empty() {
        return Err(rco_core::Error::Config(
            problems.into_iter().map(|p| p.under(&ctx.name)).collect(),
        ));
    }
    let verdict_probabilities = config.verdict_probabilities;
    let at = placement(config, ctx, "judge")?;
    let name = ctx.name.clone();
    let templates = ctx.templates.clone();
    rco_lm::with_backend!(at.device, |B, device| {
        Engine::<B>::open(&at.path, device, config.settings())
            .map(|engine| {
                Arc::new(LmJudge {
                    name: name.clone(),
                    engine,
                    templates: templates.clone(),
                    verdict_probabilities,
                }) as Arc<dyn Judge>
            })
            .map_err(|e| rco_core::Error::plugin(format!("judge `{name}` (burn)"), e))
    })
}

rco_core::register_plugin! {
    role: Judge,
    kind: "burn",
    summary: "Self-rewarding judge: a local burn model prompted with the pairwise/pointwise templates",
    example: "kind = \"burn\"\ncheckpoint = \"models/SmolLM2-135M-Instruct.Q4_1.gguf\"\nsampling = { temperature = 0.0, max_tokens = 256 }\n",
    config: BurnJudgeConfig,
    build: build,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_of_one_prefix_run_together() {
        assert_eq!(
            runs(["x", "x", "y", "x"].into_iter()),
            vec![("x", 0..2), ("y", 2..3), ("x", 3..4)]
        );
    }
}
