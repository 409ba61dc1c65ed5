//! A [`rco_core::Critic`] over an [`Engine`]: critiques sampled from one local model and
//! scored by it (their reference log-probs). The `burn` and `quickstart` plugins register
//! critics built with [`open_critic`]; nothing is registered here.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use burn::prelude::*;
use rco_core::{Critic, Critique, CritiqueRequest, LogProbRequest, Result};

use crate::device::DeviceSpec;
use crate::engine::{Engine, Settings};

/// A critic over a loaded model on backend `B`.
pub struct LmCritic<B: Backend> {
    name: String,
    engine: Engine<B>,
}

impl<B: Backend> LmCritic<B> {
    pub fn new(name: &str, engine: Engine<B>) -> Self {
        Self {
            name: name.to_string(),
            engine,
        }
    }

    fn err(&self, e: impl std::fmt::Display) -> rco_core::Error {
        rco_core::Error::plugin(format!("critic `{}` (burn)", self.name), e)
    }
}

#[async_trait]
impl<B: Backend> Critic for LmCritic<B> {
    fn max_batch_size(&self) -> usize {
        self.engine.settings.batch_size
    }

    fn sampling(&self) -> Option<rco_core::CriticSampling> {
        let s = &self.engine.settings.sampling;
        Some(rco_core::CriticSampling {
            temperature: s.temperature,
            top_p: s.top_p,
            top_k: s.top_k,
            max_tokens: s.max_tokens,
        })
    }

    async fn critique(&self, requests: &[CritiqueRequest]) -> Result<Vec<Vec<Critique>>> {
        let mut prompts = Vec::new();
        let mut seeds = Vec::new();
        for request in requests {
            for j in 0..request.n {
                prompts.push(request.prompt.clone());
                seeds.push(rco_core::seed::derive_seed(
                    request.seed,
                    &["critique", &j.to_string()],
                ));
            }
        }
        let generated = self
            .engine
            .generations(&prompts, "", &seeds)
            .map_err(|e| self.err(e))?;
        let rows: Vec<(String, String)> = prompts
            .into_iter()
            .zip(generated.iter().map(|g| g.text.clone()))
            .collect();
        // A critique cut at the token limit is scored as the prefix it is, without an end.
        let ended: Vec<bool> = generated.iter().map(|g| !g.truncated).collect();
        let log_probs = self
            .engine
            .log_probs_ending(&rows, &ended)
            .map_err(|e| self.err(e))?;
        let mut flat = generated
            .into_iter()
            .zip(log_probs)
            .map(|(g, lp)| Critique {
                text: g.text,
                ref_logprob: Some(lp),
                truncated: g.truncated,
            });
        Ok(requests
            .iter()
            .map(|r| flat.by_ref().take(r.n).collect())
            .collect())
    }

    async fn log_probs(&self, requests: &[LogProbRequest]) -> Result<Vec<f64>> {
        let rows: Vec<(String, String)> = requests
            .iter()
            .map(|r| (r.prompt.clone(), r.completion.clone()))
            .collect();
        self.engine.log_probs(&rows).map_err(|e| self.err(e))
    }
}

/// Opens a model (checkpoint directory, GGUF file or Hugging Face directory) as a critic
/// named `name` on the device a config names (`cpu`, `wgpu`, `cuda:N`).
pub fn open_critic(
    name: &str,
    path: &Path,
    device: DeviceSpec,
    settings: Settings,
) -> Result<Arc<dyn Critic>> {
    let spec = device
        .compiled()
        .map_err(|e| rco_core::Error::plugin(format!("critic `{name}`"), e))?;
    crate::with_backend!(spec, |B, device| {
        Engine::<B>::open(path, device, settings)
            .map(|engine| Arc::new(LmCritic::new(name, engine)) as Arc<dyn Critic>)
            .map_err(|e| rco_core::Error::plugin(format!("critic `{name}` (burn)"), e))
    })
}
