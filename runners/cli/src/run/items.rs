//! The items of a run: read from the dataset plugin once and kept in `items.jsonl`, so that
//! a resumed run works on exactly the items it started with.

use anyhow::bail;
use rco_core::TaskItem;

use super::records::StoredItem;
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
            let mut text = String::new();
            for record in &stored {
                text.push_str(&serde_json::to_string(record)?);
                text.push('\n');
            }
            self.store.write_file(ITEMS_FILE, text.as_bytes())?;
        }
        Ok(stored
            .into_iter()
            .filter(|s| s.split == split)
            .map(|s| s.item)
            .collect())
    }
}
