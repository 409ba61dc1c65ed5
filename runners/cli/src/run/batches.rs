//! The batch loop shared by collection and evaluation: fixed batches cut from the whole item
//! list (so a resumed run processes the same batches as an uninterrupted one), several in
//! flight, each committed as it finishes; after a failure the batches in flight still finish
//! and are committed, no new one starts, and the error that caused it is the one reported.

use std::future::Future;

use futures::StreamExt;
use rco_core::TaskItem;

use super::pass::{keep_cause, Judged, Pass};
use super::Run;

/// The unfinished items of each fixed batch that has any.
pub(super) fn pending_batches(
    items: &[TaskItem],
    size: usize,
    done: impl Fn(&TaskItem) -> bool,
) -> Vec<Vec<TaskItem>> {
    items
        .chunks(size.max(1))
        .map(|batch| {
            batch
                .iter()
                .filter(|i| !done(i))
                .cloned()
                .collect::<Vec<_>>()
        })
        .filter(|todo| !todo.is_empty())
        .collect()
}

impl Run {
    /// Runs `pass` over every pending batch, `in_flight` at a time. `score` turns a batch's
    /// judgements into its records while other batches run; `commit` stores them, one batch
    /// at a time, with the number of items the batch held. The call ledger is saved after
    /// every commit.
    pub(super) async fn run_batches<R, S, F>(
        &self,
        pending: Vec<Vec<TaskItem>>,
        pass: &Pass<'_>,
        in_flight: usize,
        score: S,
        mut commit: impl FnMut(usize, R) -> anyhow::Result<()>,
    ) -> anyhow::Result<()>
    where
        S: Fn(Vec<Judged>) -> F,
        F: Future<Output = anyhow::Result<R>>,
    {
        let score = &score;
        let mut batches = futures::stream::iter(pending.into_iter().map(|todo| async move {
            let judged = self.pass(&todo, pass).await?;
            let records = score(judged).await?;
            anyhow::Ok((todo.len(), records))
        }))
        .buffer_unordered(in_flight.max(1));
        let mut failure: Option<anyhow::Error> = None;
        while let Some(finished) = batches.next().await {
            match finished {
                Ok((count, records)) => {
                    commit(count, records)?;
                    self.save_usage()?;
                }
                Err(e) => {
                    self.usage.halt();
                    keep_cause(&mut failure, e);
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_batches_keep_their_place_in_the_item_list() {
        let items: Vec<TaskItem> = (0..5)
            .map(|i| TaskItem {
                id: i.to_string(),
                task: "t".into(),
                prompt: String::new(),
                initial_response: String::new(),
                reference: None,
                ..TaskItem::default()
            })
            .collect();
        let pending = pending_batches(&items, 2, |i| i.id == "0" || i.id == "3");
        let ids: Vec<Vec<&str>> = pending
            .iter()
            .map(|b| b.iter().map(|i| i.id.as_str()).collect())
            .collect();
        assert_eq!(ids, vec![vec!["1"], vec!["2"], vec!["4"]]);
    }
}
