//! The self-refine baseline (`kind = "self-refine"` critic): no critic model. The actor
//! critiques its own answer ([`Actor::self_critique`]: by default it answers the task's
//! critique prompt itself), then refines from that critique like from any other. Built once
//! per evaluation actor (`[eval.critics]`), so that each actor critiques its own answers.

use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::registry::Validate;
use crate::{Actor, Critic, CriticContext, Critique, CritiqueRequest, Error, Result};

/// The self-refine critic has no settings: the actor it serves writes the critiques.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SelfRefineConfig {}

impl Validate for SelfRefineConfig {}

/// A critic that hands the critique to the actor.
pub struct SelfRefine {
    actor: Arc<dyn Actor>,
}

impl SelfRefine {
    pub fn new(actor: Arc<dyn Actor>) -> Self {
        Self { actor }
    }
}

#[async_trait]
impl Critic for SelfRefine {
    fn max_batch_size(&self) -> usize {
        self.actor.max_batch_size()
    }

    async fn critique(&self, requests: &[CritiqueRequest]) -> Result<Vec<Vec<Critique>>> {
        self.actor.self_critique(requests).await
    }
}

fn build(_config: &SelfRefineConfig, ctx: &CriticContext) -> Result<Arc<dyn Critic>> {
    let actor = ctx.actor.clone().ok_or_else(|| {
        Error::plugin(
            &ctx.name,
            "a `self-refine` critic critiques with the actor whose answers it reads, so it can only be an evaluation critic: put it under [eval.critics.NAME], where the runner builds it for each evaluation actor",
        )
    })?;
    Ok(Arc::new(SelfRefine::new(actor)))
}

crate::register_plugin! {
    role: Critic,
    kind: "self-refine",
    summary: "Self-refine baseline: no critic model; each evaluation actor critiques its own answer, then refines (only under [eval.critics])",
    example: "kind = \"self-refine\"\n",
    config: SelfRefineConfig,
    build: build,
}
