//! An actor backed by a local burn model (`kind = "burn"`): initial answers from the task
//! prompt, refinements from the refinement conversation the runner renders (its `turns`).

use std::sync::Arc;

use async_trait::async_trait;
use burn::prelude::*;
use rco_core::seed::derive_seed;
use rco_core::{Actor, BuildContext, RefineRequest, Refinement, RespondRequest, Result};
use rco_lm::engine::Engine;

use crate::config::{placement, BurnModelConfig};

pub struct LmActor<B: Backend> {
    name: String,
    engine: Engine<B>,
}

impl<B: Backend> LmActor<B> {
    fn err(&self, e: impl std::fmt::Display) -> rco_core::Error {
        rco_core::Error::plugin(format!("actor `{}` (burn)", self.name), e)
    }
}

#[async_trait]
impl<B: Backend> Actor for LmActor<B> {
    fn max_batch_size(&self) -> usize {
        self.engine.settings.batch_size
    }

    async fn respond(&self, requests: &[RespondRequest]) -> Result<Vec<String>> {
        let prompts: Vec<String> = requests.iter().map(|r| r.prompt.clone()).collect();
        let seeds: Vec<u64> = requests
            .iter()
            .map(|r| derive_seed(r.seed, &["respond"]))
            .collect();
        self.engine
            .generate(&prompts, &seeds)
            .map_err(|e| self.err(e))
    }

    async fn refine(&self, requests: &[RefineRequest]) -> Result<Vec<Vec<Refinement>>> {
        let mut conversations = Vec::new();
        let mut seeds = Vec::new();
        for r in requests {
            let turns: Vec<(String, String)> = r
                .conversation()
                .into_iter()
                .map(|t| (t.role, t.content))
                .collect();
            for j in 0..r.m {
                conversations.push(turns.clone());
                seeds.push(derive_seed(r.seed, &["refine", &j.to_string()]));
            }
        }
        let texts = self
            .engine
            .generate_turns(&conversations, &seeds)
            .map_err(|e| self.err(e))?;
        let mut flat = texts.into_iter().map(|text| Refinement { text });
        Ok(requests
            .iter()
            .map(|r| flat.by_ref().take(r.m).collect())
            .collect())
    }
}

fn build(config: &BurnModelConfig, ctx: &BuildContext) -> Result<Arc<dyn Actor>> {
    let at = placement(config, ctx, "actor")?;
    let name = ctx.name.clone();
    rco_lm::with_backend!(at.device, |B, device| {
        Engine::<B>::open(&at.path, device, config.settings())
            .map(|engine| {
                Arc::new(LmActor {
                    name: name.clone(),
                    engine,
                }) as Arc<dyn Actor>
            })
            .map_err(|e| rco_core::Error::plugin(format!("actor `{name}` (burn)"), e))
    })
}

rco_core::register_plugin! {
    role: Actor,
    kind: "burn",
    summary: "An actor sampled from a local burn model (checkpoint directory or Llama GGUF file)",
    example: "kind = \"burn\"\ncheckpoint = \"models/SmolLM2-135M-Instruct.Q4_1.gguf\"\ndevice = \"cpu\"\nsampling = { temperature = 0.7, top_p = 0.9, max_tokens = 128 }\n",
    config: BurnModelConfig,
    build: build,
}
