//! One pass over a batch of items: critiques from the critic, refinements from the actor,
//! both-order judgements from the judge. Collection and evaluation both run it; `label`
//! keeps their seeds apart.

use anyhow::bail;
use rco_core::seed::derive_seed;
use rco_core::{
    Actor, BothOrders, Critic, Critique, CritiqueRequest, Judge, RefineRequest, TaskItem,
};

use super::Run;

/// The plugins and sizes of one pass of critiques → refinements → judgements.
#[derive(Clone, Copy)]
pub(super) struct Pass<'a> {
    pub critic: &'a dyn Critic,
    pub actor: &'a dyn Actor,
    pub judge: &'a dyn Judge,
    pub actor_name: &'a str,
    /// Critiques per item (N).
    pub n: usize,
    /// Refinements per critique (M).
    pub m: usize,
    /// `collect` or `eval`: part of every seed.
    pub label: &'a str,
    /// Which draw of the critic's critiques this is (`[eval] draws`): 1 keeps the critique
    /// seeds every critic shares; a later draw samples its critiques from seeds of its own.
    /// Refinement and judge seeds do not depend on it.
    pub draw: usize,
    /// Each item of the batch goes through the pass on its own (remote plugins), instead of
    /// the whole batch stage by stage (local models batch better).
    pub pipelined: bool,
}

/// One critique with its refinements and their judgements.
pub(super) struct JudgedCritique {
    pub critique: Critique,
    pub refinements: Vec<String>,
    pub pairs: Vec<BothOrders>,
}

/// The critiques of one item with their refinements and judgements.
pub(super) struct Judged {
    pub item: TaskItem,
    pub critiques: Vec<JudgedCritique>,
}

impl Judged {
    /// The both-order pairs of each critique, in critique order.
    pub fn pairs(&self) -> Vec<Vec<BothOrders>> {
        self.critiques.iter().map(|c| c.pairs.clone()).collect()
    }
}

impl Run {
    /// The pass over a batch, stopping at once if another batch has halted the run.
    pub(super) async fn pass(
        &self,
        items: &[TaskItem],
        pass: &Pass<'_>,
    ) -> anyhow::Result<Vec<Judged>> {
        if self.usage.is_halted() {
            return Err(rco_core::Error::Halted.into());
        }
        if !pass.pipelined {
            return self.critique_refine_judge(items, pass).await;
        }
        let each = items
            .iter()
            .map(|item| self.critique_refine_judge(std::slice::from_ref(item), pass));
        let results = futures::future::join_all(each).await;
        let mut out = Vec::with_capacity(items.len());
        let mut failure: Option<anyhow::Error> = None;
        for result in results {
            match result {
                Ok(judged) => out.extend(judged),
                Err(e) => keep_cause(&mut failure, e),
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Critiques → refinements → both-order judgements for a batch of items.
    async fn critique_refine_judge(
        &self,
        items: &[TaskItem],
        pass: &Pass<'_>,
    ) -> anyhow::Result<Vec<Judged>> {
        let Pass {
            critic,
            actor,
            judge,
            actor_name,
            n,
            m,
            label,
            draw,
            ..
        } = *pass;
        let seed = self.loaded.config.seed;
        let templates = &self.loaded.config.templates;
        let requests: Vec<CritiqueRequest> = items
            .iter()
            .map(|item| CritiqueRequest {
                item: item.clone(),
                prompt: templates.critique_prompt(item),
                n,
                seed: if draw <= 1 {
                    derive_seed(seed, &[label, "critique", &item.id])
                } else {
                    derive_seed(
                        seed,
                        &[label, "critique", &item.id, &format!("draw-{draw}")],
                    )
                },
            })
            .collect();
        let critiques = critic.critique(&requests).await?;
        check_len("critic", "critique lists", critiques.len(), requests.len())?;
        for (got, request) in critiques.iter().zip(&requests) {
            check_len("critic", "critiques", got.len(), request.n)?;
        }
        let mut refine_requests = Vec::new();
        for (item, item_critiques) in items.iter().zip(&critiques) {
            for (i, c) in item_critiques.iter().enumerate() {
                refine_requests.push(RefineRequest {
                    item: item.clone(),
                    critique: c.text.clone(),
                    prompt: templates.refinement_prompt(item, &c.text),
                    turns: templates.refinement_turns(item, &c.text),
                    m,
                    seed: derive_seed(
                        seed,
                        &[label, "refine", actor_name, &item.id, &i.to_string()],
                    ),
                });
            }
        }
        let refinements = actor.refine(&refine_requests).await?;
        check_len(
            "actor",
            "refinement lists",
            refinements.len(),
            refine_requests.len(),
        )?;
        for refined in &refinements {
            check_len("actor", "refinements", refined.len(), m)?;
        }
        let mut comparisons = Vec::new();
        for (request, refined) in refine_requests.iter().zip(&refinements) {
            for (j, r) in refined.iter().enumerate() {
                let item = &request.item;
                comparisons.extend(BothOrders::comparisons(item, &r.text, |order| {
                    derive_seed(
                        seed,
                        &[
                            label,
                            "judge",
                            actor_name,
                            &item.id,
                            &request.seed.to_string(),
                            &j.to_string(),
                            order.name(),
                        ],
                    )
                }));
            }
        }
        let judgements = judge.compare(&comparisons).await?;
        check_len("judge", "judgements", judgements.len(), comparisons.len())?;
        let mut judgements = judgements.into_iter();
        let mut refinements = refinements.into_iter();
        let mut out = Vec::with_capacity(items.len());
        for (item, item_critiques) in items.iter().zip(critiques) {
            let mut judged = Judged {
                item: item.clone(),
                critiques: Vec::new(),
            };
            for critique in item_critiques {
                let refined = refinements.next().unwrap_or_default();
                let mut pairs = Vec::with_capacity(refined.len());
                for _ in &refined {
                    // The lengths were checked above, so both judgements are there.
                    if let (Some(refined_first), Some(refined_second)) =
                        (judgements.next(), judgements.next())
                    {
                        pairs.push(BothOrders::from_judgements(refined_first, refined_second));
                    }
                }
                judged.critiques.push(JudgedCritique {
                    critique,
                    refinements: refined.into_iter().map(|r| r.text).collect(),
                    pairs,
                });
            }
            out.push(judged);
        }
        Ok(out)
    }
}

/// Keeps the error that stopped the run rather than the [`rco_core::Error::Halted`] of the
/// work it stopped.
pub(super) fn keep_cause(kept: &mut Option<anyhow::Error>, e: anyhow::Error) {
    rco_core::error::keep_cause(kept, e, |e| {
        matches!(
            e.downcast_ref::<rco_core::Error>(),
            Some(rco_core::Error::Halted)
        )
    });
}

/// A plugin that breaks the "one result per input" contract fails the stage.
fn check_len(role: &str, what: &str, got: usize, expected: usize) -> anyhow::Result<()> {
    if got != expected {
        bail!("the {role} returned {got} {what} for {expected} requests");
    }
    Ok(())
}
