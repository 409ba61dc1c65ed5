//! The items of a run: read from the dataset plugin once and kept in `items.jsonl`, so that
//! a resumed run works on exactly the items it started with.

use std::collections::HashMap;

use anyhow::bail;
use rco_core::TaskItem;

use super::records::{InitialRecord, StoredItem};
use super::respond::INITIAL_FILE;
use super::Run;

/// The items' file in the run directory.
pub const ITEMS_FILE: &str = "items.jsonl";

impl Run {
    /// The items of a split (`train` or `test`).
    pub fn items(&self, split: &str) -> anyhow::Result<Vec<TaskItem>> {
        let mut stored: Vec<StoredItem> = self.store.read(ITEMS_FILE)?;
        if stored.is_empty() {
            let dataset = self.dataset()?;
            for s in ["train", "test"] {
                let items = dataset.items(s)?;
                if items.is_empty() {
                    bail!("the {s} split of the dataset is empty: it needs at least one item");
                }
                stored.extend(items.into_iter().map(|item| StoredItem {
                    split: s.to_string(),
                    item,
                }));
            }
            self.store.write_table(ITEMS_FILE, &stored)?;
        }
        Ok(stored
            .into_iter()
            .filter(|s| s.split == split)
            .map(|s| s.item)
            .collect())
    }

    /// The collected items, each with the first answer its critiques were written for.
    pub(super) fn collected_items(&self) -> anyhow::Result<HashMap<String, TaskItem>> {
        let actor = self.loaded.collect_actor();
        let first: HashMap<String, String> = self
            .store
            .read::<InitialRecord>(INITIAL_FILE)?
            .into_iter()
            .filter(|r| r.actor == actor && r.split == "train")
            .map(|r| (r.item_id, r.text))
            .collect();
        Ok(self
            .items("train")?
            .into_iter()
            .map(|mut item| {
                if let Some(text) = first.get(&item.id) {
                    item.initial_response = text.clone();
                }
                (item.id.clone(), item)
            })
            .collect())
    }
}
