//! Initial responses: each actor writes its own `y0` for each item (`Actor::respond`, from
//! the task's answer template), or the data's `initial_response` is used. Either way, when
//! the judge is a verifier, each `y0` is scored, so the run can count the items already
//! solved (and, with `collect.skip_solved`, leave them out of collection). One
//! `initial.jsonl` line per actor × split × item, committed a batch at a time, so a killed
//! run resumes with the answers it already has.

use std::collections::HashMap;

use super::records::InitialRecord;
use super::Run;
use anyhow::bail;
use rco_core::dataset::InitialResponse;
use rco_core::seed::derive_seed;
use rco_core::{Actor, Judge, PointwiseRequest, PointwiseScore, RespondRequest, TaskItem};

/// The initial responses' table.
pub const INITIAL_FILE: &str = "initial.jsonl";

/// The initial responses of a split for one actor, by item id.
pub type Initial = HashMap<String, InitialRecord>;

impl Run {
    /// The training items `collect.skip_solved` leaves out: those whose first answer (the
    /// collection actor's) the verifier found correct.
    pub(super) fn left_out_of_collection(
        &self,
    ) -> anyhow::Result<std::collections::HashSet<String>> {
        if !self.loaded.config.collect.skip_solved {
            return Ok(Default::default());
        }
        let actor = self.loaded.collect_actor();
        Ok(self
            .store
            .read::<InitialRecord>(INITIAL_FILE)?
            .into_iter()
            .filter(|r| r.actor == actor && r.split == "train" && r.solved == Some(true))
            .map(|r| r.item_id)
            .collect())
    }

    /// Where the initial responses come from: the dataset's `initial_response` setting,
    /// else the data's own when every item has one, else the actors.
    pub(super) fn initial_source(&self, items: &[TaskItem]) -> anyhow::Result<InitialResponse> {
        let configured = self.dataset()?.initial_response();
        let missing = items.iter().find(|i| i.initial_response.is_empty());
        match (configured, missing) {
            (Some(InitialResponse::Dataset), Some(item)) => bail!(
                "item `{}` has no initial_response, but the dataset's `initial_response = \"dataset\"` asks for the data's own (set it to \"actor\" to have each actor write its own)",
                item.id
            ),
            (Some(source), _) => Ok(source),
            (None, Some(_)) => Ok(InitialResponse::Actor),
            (None, None) => Ok(InitialResponse::Dataset),
        }
    }

    /// The items of `split` with the initial responses `actor` refines (its own, or the
    /// data's), and their records; writes what is missing first.
    pub(super) async fn initial_items(
        &self,
        split: &str,
        actor_name: &str,
        actor: &dyn Actor,
        judge: &dyn Judge,
        batch: usize,
    ) -> anyhow::Result<(Vec<TaskItem>, Initial)> {
        let items = self.items(split)?;
        let source = self.initial_source(&items)?;
        let verified = |item: &TaskItem| judge.solved_score(&item.task);
        if source == InitialResponse::Dataset && items.iter().all(|i| verified(i).is_none()) {
            return Ok((items, Initial::new()));
        }
        self.store.recover(&[], INITIAL_FILE, "item_id")?;
        let mut done: Initial = self
            .store
            .read::<InitialRecord>(INITIAL_FILE)?
            .into_iter()
            .filter(|r| r.actor == actor_name && r.split == split)
            .map(|r| (r.item_id.clone(), r))
            .collect();
        let todo: Vec<&TaskItem> = items.iter().filter(|i| !done.contains_key(&i.id)).collect();
        if !todo.is_empty() {
            let label = match source {
                InitialResponse::Actor => format!("answers ({actor_name}, {split})"),
                InitialResponse::Dataset => format!("check y0 ({split})"),
            };
            let bar = self.progress.start(&label, items.len() as u64);
            bar.resume((items.len() - todo.len()) as u64);
            let seed = self.loaded.config.seed;
            let templates = &self.loaded.config.templates;
            for chunk in todo.chunks(batch.max(1)) {
                if self.usage.is_halted() {
                    return Err(rco_core::Error::Halted.into());
                }
                let texts = match source {
                    InitialResponse::Actor => {
                        let requests: Vec<RespondRequest> = chunk
                            .iter()
                            .map(|item| RespondRequest {
                                item: (*item).clone(),
                                prompt: templates.answer_prompt(item),
                                seed: derive_seed(seed, &["respond", actor_name, split, &item.id]),
                            })
                            .collect();
                        let texts = actor.respond(&requests).await?;
                        if texts.len() != requests.len() {
                            bail!(
                                "the actor `{actor_name}` returned {} answers for {} requests",
                                texts.len(),
                                requests.len()
                            );
                        }
                        texts
                    }
                    InitialResponse::Dataset => {
                        chunk.iter().map(|i| i.initial_response.clone()).collect()
                    }
                };
                // Scored where the item's task has a verifier.
                let checked: Vec<usize> = (0..chunk.len())
                    .filter(|&i| verified(chunk[i]).is_some())
                    .collect();
                let requests: Vec<PointwiseRequest> = checked
                    .iter()
                    .map(|&i| {
                        let item = chunk[i];
                        PointwiseRequest::for_item(
                            item,
                            &texts[i],
                            derive_seed(seed, &["initial-score", split, &item.id]),
                        )
                    })
                    .collect();
                let mut scores: Vec<Option<f64>> = vec![None; chunk.len()];
                if !requests.is_empty() {
                    let got = judge.score(&requests).await?;
                    if got.len() != requests.len() {
                        bail!(
                            "the judge returned {} scores for {} requests",
                            got.len(),
                            requests.len()
                        );
                    }
                    for (&i, score) in checked.iter().zip(got) {
                        if let PointwiseScore::Score(s) = score {
                            scores[i] = Some(s);
                        }
                    }
                }
                let records: Vec<InitialRecord> = chunk
                    .iter()
                    .zip(texts)
                    .zip(scores)
                    .map(|((item, text), score)| InitialRecord {
                        actor: actor_name.to_string(),
                        split: split.to_string(),
                        item_id: item.id.clone(),
                        source,
                        text,
                        score,
                        solved: score.zip(verified(item)).map(|(s, solved)| s >= solved),
                    })
                    .collect();
                self.store.append(INITIAL_FILE, &records)?;
                self.save_usage()?;
                bar.inc(records.len() as u64);
                done.extend(records.into_iter().map(|r| (r.item_id.clone(), r)));
            }
            bar.finish();
            let solved: Vec<bool> = done.values().filter_map(|r| r.solved).collect();
            self.metrics.record(serde_json::json!({
                "stage": "respond",
                "actor": actor_name,
                "split": split,
                "items": done.len(),
                "scored": solved.len(),
                "solved": solved.iter().filter(|s| **s).count(),
            }));
        }
        let items = items
            .into_iter()
            .map(|mut item| {
                if let Some(record) = done.get(&item.id) {
                    item.initial_response = record.text.clone();
                }
                item
            })
            .collect();
        Ok((items, done))
    }
}
