//! The built-in JSONL dataset (`kind = "jsonl"`): one [`TaskItem`] per line, one file per split.

use std::path::PathBuf;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::registry::{Validate, ValidateContext};
use crate::{BuildContext, ConfigProblem, Dataset, Error, Result, TaskItem};

/// A dataset read from JSONL files of task items
/// (`{"id", "task", "prompt", "initial_response", "reference"?}` per line).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonlDatasetConfig {
    /// Training items (relative to the config file's directory).
    pub train: PathBuf,
    /// Held-out items for evaluation.
    pub test: PathBuf,
}

impl Validate for JsonlDatasetConfig {
    /// Both files must be there before a run starts.
    fn problems(&self, ctx: &ValidateContext) -> Vec<ConfigProblem> {
        [("train", &self.train), ("test", &self.test)]
            .into_iter()
            .filter_map(|(key, path)| {
                let resolved = ctx.resolve(path);
                (!resolved.is_file()).then(|| missing_file(key, &resolved))
            })
            .collect()
    }
}

pub struct JsonlDataset {
    train: PathBuf,
    test: PathBuf,
}

impl Dataset for JsonlDataset {
    fn files(&self) -> Vec<PathBuf> {
        vec![self.train.clone(), self.test.clone()]
    }

    fn items(&self, split: &str) -> Result<Vec<TaskItem>> {
        let path = match split {
            "train" => &self.train,
            "test" => &self.test,
            other => {
                return Err(Error::Other(format!(
                    "unknown split `{other}` (expected train or test)"
                )))
            }
        };
        let items: Vec<TaskItem> = crate::store::read_jsonl(path)?;
        if items.is_empty() {
            return Err(Error::File {
                path: path.clone(),
                message: format!("the {split} dataset is empty: it needs at least one item"),
            });
        }
        let mut seen = std::collections::HashSet::new();
        for item in &items {
            if !seen.insert(item.id.as_str()) {
                return Err(Error::File {
                    path: path.clone(),
                    message: format!("item id `{}` appears more than once", item.id),
                });
            }
        }
        Ok(items)
    }
}

fn build(config: &JsonlDatasetConfig, ctx: &BuildContext) -> Result<Arc<dyn Dataset>> {
    Ok(Arc::new(JsonlDataset {
        train: ctx.resolve(&config.train),
        test: ctx.resolve(&config.test),
    }))
}

crate::register_plugin! {
    role: Dataset,
    kind: "jsonl",
    summary: "Task items from JSONL files, one item per line (id, task, prompt, initial_response, reference)",
    example: "kind = \"jsonl\"\ntrain = \"data/train.jsonl\"\ntest = \"data/test.jsonl\"\n",
    config: JsonlDatasetConfig,
    build: build,
}

/// A problem for a file the config names that does not exist.
pub fn missing_file(key: &str, path: &std::path::Path) -> ConfigProblem {
    ConfigProblem::new(key, format!("file {} does not exist", path.display()))
}
