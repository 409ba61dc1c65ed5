//! The fixed critic (`kind = "fixed"`): no model; every critique is the same text, empty by
//! default. It is the control an evaluation needs to tell a critique's effect from the
//! actor's own second try: with empty feedback, a refinement that still wins shows what the
//! actor gains by answering again, and a real critic is worth the difference. A generic
//! text ("Check your arithmetic.") measures what any reminder does.

use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::registry::Validate;
use crate::{Critic, CriticContext, Critique, CritiqueRequest, Result};

/// The fixed critic's one setting: the text of every critique.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FixedCriticConfig {
    /// The critique given for every answer; empty (the default) leaves the feedback out.
    #[serde(default)]
    pub text: String,
}

impl Validate for FixedCriticConfig {}

/// A critic that writes the same critique for every answer.
pub struct FixedCritic {
    text: String,
}

impl FixedCritic {
    pub fn new(text: impl Into<String>) -> Self {
        Self { text: text.into() }
    }
}

#[async_trait]
impl Critic for FixedCritic {
    fn max_batch_size(&self) -> usize {
        1024
    }

    async fn critique(&self, requests: &[CritiqueRequest]) -> Result<Vec<Vec<Critique>>> {
        Ok(requests
            .iter()
            .map(|request| {
                vec![
                    Critique {
                        text: self.text.clone(),
                        ref_logprob: None,
                        truncated: false,
                    };
                    request.n
                ]
            })
            .collect())
    }
}

fn build(config: &FixedCriticConfig, _ctx: &CriticContext) -> Result<Arc<dyn Critic>> {
    Ok(Arc::new(FixedCritic::new(config.text.clone())))
}

crate::register_plugin! {
    role: Critic,
    kind: "fixed",
    summary: "Control critic: no model; every critique is the same text (empty by default), to measure what the actor gains by answering again without feedback",
    example: "kind = \"fixed\"\n# text = \"\"   # the critique of every answer; empty leaves the feedback out\n",
    config: FixedCriticConfig,
    build: build,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{build, CriticRole};
    use crate::{BuildContext, TaskItem};

    fn request(id: &str, n: usize) -> CritiqueRequest {
        CritiqueRequest {
            item: TaskItem {
                id: id.into(),
                ..TaskItem::default()
            },
            prompt: format!("critique {id}"),
            n,
            seed: 7,
        }
    }

    #[tokio::test]
    async fn every_critique_is_the_configured_text_n_times_per_request() {
        let ctx = CriticContext::new(BuildContext::new("critic", 1));
        let section = serde_json::json!({ "kind": "fixed", "text": "Check the arithmetic." });
        let critic = build::<CriticRole>("eval.critics.reminder", &section, &ctx).unwrap();
        let out = critic
            .critique(&[request("a", 3), request("b", 1)])
            .await
            .unwrap();
        assert_eq!(out.iter().map(Vec::len).collect::<Vec<_>>(), [3, 1]);
        assert!(out
            .iter()
            .flatten()
            .all(|c| c.text == "Check the arithmetic." && c.ref_logprob.is_none() && !c.truncated));
    }

    #[tokio::test]
    async fn the_default_text_is_empty_and_unknown_keys_are_refused() {
        let ctx = CriticContext::new(BuildContext::new("critic", 1));
        let critic =
            build::<CriticRole>("c", &serde_json::json!({ "kind": "fixed" }), &ctx).unwrap();
        assert_eq!(
            critic.critique(&[request("a", 2)]).await.unwrap()[0][1].text,
            ""
        );
        let refused = build::<CriticRole>(
            "c",
            &serde_json::json!({ "kind": "fixed", "txt": "typo" }),
            &ctx,
        );
        let message = refused
            .err()
            .expect("an unknown key is refused")
            .to_string();
        assert!(message.contains("txt"), "{message}");
    }
}
