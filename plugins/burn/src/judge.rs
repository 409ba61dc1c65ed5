//! A self-rewarding judge (`kind = "burn"`): a local burn model, often the critic's own,
//! prompted with the task's pairwise and pointwise templates. Verdicts are read from its
//! answer (`[[A]]`, `[[B]]`, `[[C]]` for a tie; `[[N]]` for a rating); an answer without one
//! is an invalid verdict that keeps the text.

use std::sync::Arc;

use async_trait::async_trait;
use burn::prelude::*;
use rco_core::judge::{parse_pairwise, parse_rating};
use rco_core::registry::parse_section;
use rco_core::template::render;
use rco_core::{
    BuildContext, Comparison, Judge, Judgement, PointwiseRequest, PointwiseScore, PromptTemplates,
    Result,
};

use crate::critic::BurnModelConfig;
use crate::engine::{placement, Engine};

pub struct LmJudge<B: Backend> {
    name: String,
    engine: Engine<B>,
    templates: PromptTemplates,
}

impl<B: Backend> LmJudge<B> {
    fn err(&self, e: impl std::fmt::Display) -> rco_core::Error {
        rco_core::Error::plugin(format!("judge `{}` (burn)", self.name), e)
    }
}

#[async_trait]
impl<B: Backend> Judge for LmJudge<B> {
    fn max_batch_size(&self) -> usize {
        self.engine.batch_size
    }

    async fn compare(&self, comparisons: &[Comparison]) -> Result<Vec<Judgement>> {
        let prompts: Vec<String> = comparisons
            .iter()
            .map(|c| {
                let reference = c.reference.clone().unwrap_or_default();
                render(
                    &self.templates.for_task(&c.task).pairwise,
                    &[
                        ("prompt", &c.prompt),
                        ("a", &c.a),
                        ("b", &c.b),
                        ("reference", &reference),
                    ],
                )
            })
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
            .map(|r| {
                let reference = r.reference.clone().unwrap_or_default();
                render(
                    &self.templates.for_task(&r.task).pointwise,
                    &[
                        ("prompt", &r.prompt),
                        ("response", &r.response),
                        ("reference", &reference),
                    ],
                )
            })
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

fn build(value: &serde_json::Value, ctx: &BuildContext) -> Result<Arc<dyn Judge>> {
    let config: BurnModelConfig = parse_section(value)?;
    let at = placement(&config, ctx, "judge")?;
    let name = ctx.name.clone();
    let templates = ctx.templates.clone();
    crate::with_backend!(at.device, |B, device| {
        Engine::<B>::from_config(&at.path, device, &config)
            .map(|engine| {
                Arc::new(LmJudge {
                    name: name.clone(),
                    engine,
                    templates: templates.clone(),
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
    config: BurnModelConfig,
    build: build,
}
