//! The built-in datasets: `kind = "jsonl"` reads task items from JSONL files in the shapes
//! research data comes in ([`rows`]); `kind = "tasks"` reads the five task suites that
//! `scripts/fetch-data.sh` builds ([`suites`]).

pub mod rows;
pub mod suites;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::registry::{Validate, ValidateContext};
use crate::{BuildContext, ConfigProblem, Dataset, Error, Result, TaskItem};

pub use rows::FieldMap;

/// Where the initial responses `y0` come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InitialResponse {
    /// Each actor writes its own `y0` for each item (`Actor::respond`), stored in the run
    /// directory; evaluation with several actors uses each actor's own.
    Actor,
    /// The data's `initial_response` column: every actor refines the same `y0`.
    Dataset,
}

/// A dataset read from JSONL files, one row per line: `prompt` or chat `messages`,
/// optional `initial_response`, `reference`/`answer`/`solution`, `tests`/`test` and
/// `entry_point` for code, `task`, `id`. Other columns are ignored.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonlDatasetConfig {
    /// Training items (relative to the config file's directory).
    pub train: PathBuf,
    /// Held-out items for evaluation.
    pub test: PathBuf,
    /// The task of rows that have no `task` column.
    #[serde(default)]
    pub task: Option<String>,
    /// Columns to read fields from, where the data's names are not the usual ones.
    #[serde(default)]
    pub fields: FieldMap,
    /// `actor`: each actor writes its own `y0`; `dataset`: the data's `initial_response`.
    /// Unset: `dataset` when every item has one, else `actor`.
    #[serde(default)]
    pub initial_response: Option<InitialResponse>,
    /// Use only the first this many training items.
    #[serde(default)]
    pub train_items: Option<usize>,
    /// Use only the first this many test items.
    #[serde(default)]
    pub test_items: Option<usize>,
}

impl Validate for JsonlDatasetConfig {
    /// Both files must be there before a run starts.
    fn problems(&self, ctx: &ValidateContext) -> Vec<ConfigProblem> {
        let mut problems: Vec<ConfigProblem> = [("train", &self.train), ("test", &self.test)]
            .into_iter()
            .filter_map(|(key, path)| {
                let resolved = ctx.resolve(path);
                (!resolved.is_file()).then(|| missing_file(key, &resolved))
            })
            .collect();
        problems.extend(limit_problems(self.train_items, self.test_items));
        problems
    }
}

/// `train_items` and `test_items` must leave at least one item.
pub(crate) fn limit_problems(train: Option<usize>, test: Option<usize>) -> Vec<ConfigProblem> {
    [("train_items", train), ("test_items", test)]
        .into_iter()
        .filter(|(_, n)| *n == Some(0))
        .map(|(key, _)| ConfigProblem::new(key, "must be at least 1"))
        .collect()
}

pub struct JsonlDataset {
    train: PathBuf,
    test: PathBuf,
    task: Option<String>,
    fields: FieldMap,
    initial_response: Option<InitialResponse>,
    train_items: Option<usize>,
    test_items: Option<usize>,
}

impl Dataset for JsonlDataset {
    fn files(&self) -> Vec<PathBuf> {
        vec![self.train.clone(), self.test.clone()]
    }

    fn items(&self, split: &str) -> Result<Vec<TaskItem>> {
        let (path, limit) = match split {
            "train" => (&self.train, self.train_items),
            "test" => (&self.test, self.test_items),
            other => {
                return Err(Error::Other(format!(
                    "unknown split `{other}` (expected train or test)"
                )))
            }
        };
        read_split(path, split, &self.fields, self.task.as_deref(), limit)
    }

    fn initial_response(&self) -> Option<InitialResponse> {
        self.initial_response
    }
}

/// The items of one split's file, at most `limit` of them; an empty split is an error.
pub(crate) fn read_split(
    path: &Path,
    split: &str,
    fields: &FieldMap,
    task: Option<&str>,
    limit: Option<usize>,
) -> Result<Vec<TaskItem>> {
    let mut items = rows::read_items(path, fields, task)?;
    if items.is_empty() {
        return Err(Error::File {
            path: path.to_path_buf(),
            message: format!("the {split} dataset is empty: it needs at least one item"),
        });
    }
    if let Some(limit) = limit {
        items.truncate(limit);
    }
    Ok(items)
}

fn build(config: &JsonlDatasetConfig, ctx: &BuildContext) -> Result<Arc<dyn Dataset>> {
    Ok(Arc::new(JsonlDataset {
        train: ctx.resolve(&config.train),
        test: ctx.resolve(&config.test),
        task: config.task.clone(),
        fields: config.fields.clone(),
        initial_response: config.initial_response,
        train_items: config.train_items,
        test_items: config.test_items,
    }))
}

crate::register_plugin! {
    role: Dataset,
    kind: "jsonl",
    summary: "Task items from JSONL files: prompt or messages, initial_response, reference/answer/solution, tests + entry_point, task, id; other columns ignored",
    example: "kind = \"jsonl\"\ntrain = \"data/train.jsonl\"\ntest = \"data/test.jsonl\"\n# fields = { prompt = \"question\" }   # columns with other names\n# initial_response = \"actor\"          # each actor writes its own y0\n",
    config: JsonlDatasetConfig,
    build: build,
}

/// A problem for a file the config names that does not exist.
pub fn missing_file(key: &str, path: &std::path::Path) -> ConfigProblem {
    ConfigProblem::new(key, format!("file {} does not exist", path.display()))
}
