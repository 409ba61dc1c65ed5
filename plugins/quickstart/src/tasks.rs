//! The quickstart task family and its dataset plugin (`kind = "quickstart"`): digit-string
//! transformations whose answers a program can check, each item with an initial response that
//! has exactly one wrong digit, so that critiques and refinements can be scored exactly.

use std::sync::Arc;

use rand::Rng;
use rco_core::registry::{Validate, ValidateContext};
use rco_core::seed::rng_for;
use rco_core::{BuildContext, ConfigProblem, Dataset, Error, Result, TaskItem};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One quickstart task: a transformation of a digit string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Task {
    /// The answer is the input.
    Copy,
    /// The answer is the input reversed.
    Reverse,
    /// The answer adds one to every digit, modulo 10 (`1909` becomes `2010`).
    Increment,
}

impl Task {
    pub const ALL: [Task; 3] = [Task::Copy, Task::Reverse, Task::Increment];

    /// The name used in config and in [`TaskItem::task`].
    pub fn name(self) -> &'static str {
        match self {
            Task::Copy => "copy",
            Task::Reverse => "reverse",
            Task::Increment => "increment",
        }
    }

    /// The name used in prompts (`rev:1234`).
    pub fn short_name(self) -> &'static str {
        match self {
            Task::Copy => "copy",
            Task::Reverse => "rev",
            Task::Increment => "inc",
        }
    }

    /// The task with this config name.
    pub fn from_name(name: &str) -> Option<Task> {
        Task::ALL.into_iter().find(|t| t.name() == name)
    }

    fn from_short_name(name: &str) -> Option<Task> {
        Task::ALL.into_iter().find(|t| t.short_name() == name)
    }

    /// The correct answer for an input of digits.
    pub fn apply(self, digits: &str) -> String {
        match self {
            Task::Copy => digits.to_string(),
            Task::Reverse => digits.chars().rev().collect(),
            Task::Increment => digits
                .chars()
                .map(|c| match c.to_digit(10) {
                    Some(d) => digit_char((d + 1) % 10),
                    None => c,
                })
                .collect(),
        }
    }
}

/// The character of a digit below 10.
pub(crate) fn digit_char(d: u32) -> char {
    char::from_digit(d % 10, 10).unwrap_or('0')
}

/// The task and digit input of a prompt such as `rev:1234`; `None` for anything else.
pub fn parse_prompt(prompt: &str) -> Option<(Task, &str)> {
    let (short, digits) = prompt.trim().split_once(':')?;
    let task = Task::from_short_name(short)?;
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((task, digits))
}

/// The correct answer to a quickstart prompt: `solve("reverse", "rev:1234")` is `4321`.
/// `None` when the task is unknown, the prompt is malformed, or the prompt names another task.
pub fn solve(task: &str, prompt: &str) -> Option<String> {
    let (prompt_task, digits) = parse_prompt(prompt)?;
    // Accepting either name keeps callers that only have the prompt's short name working.
    let named = Task::from_name(task).or_else(|| Task::from_short_name(task))?;
    (named == prompt_task).then(|| prompt_task.apply(digits))
}

/// Character positions (0-based) where `response` is wrong against `reference`: positions whose
/// characters differ, positions where the response has a non-digit, and every position that
/// only one of the two has. Surrounding whitespace of the response is ignored, because model
/// outputs often end in a newline.
pub fn error_positions(response: &str, reference: &str) -> Vec<usize> {
    let response: Vec<char> = response.trim().chars().collect();
    let reference: Vec<char> = reference.chars().collect();
    (0..response.len().max(reference.len()))
        .filter(|&i| match (response.get(i), reference.get(i)) {
            (Some(r), Some(t)) => r != t || !r.is_ascii_digit(),
            _ => true,
        })
        .collect()
}

/// Number of wrong positions: Hamming distance over the common positions plus the length
/// difference (see [`error_positions`]).
pub fn error_count(response: &str, reference: &str) -> usize {
    error_positions(response, reference).len()
}

/// The correct answer for an item: computed from its prompt, else its stored reference.
pub fn correct_answer(item: &TaskItem) -> Option<String> {
    solve(&item.task, &item.prompt).or_else(|| item.reference.clone())
}

/// Generated quickstart items (`kind = "quickstart"`): balanced across tasks, seeded by the
/// run seed, each initial response wrong at exactly one position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct QuickstartDataConfig {
    /// Number of items in the `train` split.
    pub train_items: usize,
    /// Number of items in the `test` split.
    pub test_items: usize,
    /// Tasks to generate, assigned in turn (item `i` gets `tasks[i % len]`):
    /// any of `copy`, `reverse`, `increment`.
    pub tasks: Vec<String>,
    /// Shortest digit string (at least 1).
    pub min_digits: usize,
    /// Longest digit string (at most 9).
    pub max_digits: usize,
    /// Added to the run seed, to draw other items without changing the run seed.
    pub seed_offset: u64,
}

impl Default for QuickstartDataConfig {
    fn default() -> Self {
        Self {
            train_items: 192,
            test_items: 300,
            tasks: Task::ALL.iter().map(|t| t.name().to_string()).collect(),
            min_digits: 4,
            max_digits: 6,
            seed_offset: 0,
        }
    }
}

impl Validate for QuickstartDataConfig {
    fn problems(&self, _ctx: &ValidateContext) -> Vec<ConfigProblem> {
        self.check()
    }
}

/// Most items a split may have (every item is generated in memory).
pub const MAX_ITEMS: usize = 10_000_000;

impl QuickstartDataConfig {
    /// Every problem of the config, keys relative to the section.
    pub fn check(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        // Split readers treat an empty split as an error, so catch it before any run starts.
        for (key, n) in [
            ("train_items", self.train_items),
            ("test_items", self.test_items),
        ] {
            if n == 0 {
                problems.push(ConfigProblem::new(key, "must be at least 1"));
            } else if n > MAX_ITEMS {
                problems.push(ConfigProblem::new(
                    key,
                    format!("is {n}, more than the limit of {MAX_ITEMS}"),
                ));
            }
        }
        if self.tasks.is_empty() {
            problems.push(ConfigProblem::new(
                "tasks",
                "needs at least one of copy, reverse, increment",
            ));
        }
        for (i, task) in self.tasks.iter().enumerate() {
            if Task::from_name(task).is_none() {
                problems.push(ConfigProblem::new(
                    "tasks",
                    format!("unknown task `{task}`; known tasks: copy, reverse, increment"),
                ));
            } else if self.tasks[..i].contains(task) {
                problems.push(ConfigProblem::new(
                    "tasks",
                    format!("task `{task}` is listed more than once"),
                ));
            }
        }
        if self.min_digits < 1 {
            problems.push(ConfigProblem::new("min_digits", "must be at least 1"));
        }
        if self.max_digits > 9 {
            problems.push(ConfigProblem::new(
                "max_digits",
                format!("must be at most 9, found {}", self.max_digits),
            ));
        }
        if self.min_digits > self.max_digits {
            problems.push(ConfigProblem::new(
                "min_digits",
                format!(
                    "must not exceed max_digits ({} > {})",
                    self.min_digits, self.max_digits
                ),
            ));
        }
        problems
    }
}

/// The quickstart dataset: items are generated on request, identically for a given seed.
#[derive(Debug, Clone)]
pub struct QuickstartDataset {
    config: QuickstartDataConfig,
    tasks: Vec<Task>,
    seed: u64,
}

impl QuickstartDataset {
    /// A dataset for a validated config and a run seed.
    pub fn new(config: QuickstartDataConfig, seed: u64) -> Result<Self> {
        let problems = config.check();
        if !problems.is_empty() {
            return Err(Error::Config(problems));
        }
        let tasks = config
            .tasks
            .iter()
            .filter_map(|name| Task::from_name(name))
            .collect();
        Ok(Self {
            seed: seed.wrapping_add(config.seed_offset),
            config,
            tasks,
        })
    }

    /// Item `index` of a split; the same index always gives the same item.
    pub fn item(&self, split: &str, index: usize) -> TaskItem {
        let mut rng = rng_for(self.seed, &["data", split, &index.to_string()]);
        // `new` guarantees at least one task; the fallback only keeps this total.
        let task = self
            .tasks
            .get(index % self.tasks.len().max(1))
            .copied()
            .unwrap_or(Task::Copy);
        let len = rng.random_range(self.config.min_digits..=self.config.max_digits);
        let digits: String = (0..len)
            .map(|_| digit_char(rng.random_range(0..10)))
            .collect();
        let reference = task.apply(&digits);
        let mut initial: Vec<char> = reference.chars().collect();
        // Validation keeps strings non-empty; the guard only keeps a bad state from panicking.
        if !initial.is_empty() {
            let at = rng.random_range(0..initial.len());
            let right = initial[at].to_digit(10).unwrap_or(0);
            // Adding 1..=9 modulo 10 always yields a different digit, uniformly.
            initial[at] = digit_char((right + rng.random_range(1..10)) % 10);
        }
        TaskItem {
            id: format!("{split}-{index:05}"),
            task: task.name().to_string(),
            prompt: format!("{}:{digits}", task.short_name()),
            initial_response: initial.into_iter().collect(),
            reference: Some(reference),
            ..TaskItem::default()
        }
    }
}

impl Dataset for QuickstartDataset {
    fn items(&self, split: &str) -> Result<Vec<TaskItem>> {
        let count = match split {
            "train" => self.config.train_items,
            "test" => self.config.test_items,
            other => {
                return Err(Error::Other(format!(
                    "unknown split `{other}` (expected train or test)"
                )))
            }
        };
        Ok((0..count).map(|i| self.item(split, i)).collect())
    }
}

fn build(config: &QuickstartDataConfig, ctx: &BuildContext) -> Result<Arc<dyn Dataset>> {
    let dataset = QuickstartDataset::new(config.clone(), ctx.seed)
        .map_err(|e| Error::plugin(format!("dataset `{}` (quickstart)", ctx.name), e))?;
    Ok(Arc::new(dataset))
}

rco_core::register_plugin! {
    role: Dataset,
    kind: "quickstart",
    summary: "Generated digit tasks (copy, reverse, increment) with one wrong digit per initial response",
    example: "kind = \"quickstart\"\ntrain_items = 192\ntest_items = 300\ntasks = [\"copy\", \"reverse\", \"increment\"]\nmin_digits = 4\nmax_digits = 6\n",
    config: QuickstartDataConfig,
    build: build,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rco_core::registry::{build, validate, DatasetRole};
    use rco_core::ValidateContext;
    use serde_json::json;

    fn dataset(config: QuickstartDataConfig, seed: u64) -> QuickstartDataset {
        QuickstartDataset::new(config, seed).unwrap()
    }

    #[test]
    fn solve_examples() {
        assert_eq!(solve("reverse", "rev:1234").as_deref(), Some("4321"));
        assert_eq!(solve("increment", "inc:1909").as_deref(), Some("2010"));
        assert_eq!(solve("copy", "copy:0042").as_deref(), Some("0042"));
        assert_eq!(solve("rev", "rev:12").as_deref(), Some("21"));
        // The task must agree with the prompt, and the input must be digits.
        assert_eq!(solve("copy", "rev:1234"), None);
        assert_eq!(solve("reverse", "rev:12a4"), None);
        assert_eq!(solve("reverse", "rev:"), None);
        assert_eq!(solve("sort", "sort:1234"), None);
    }

    #[test]
    fn error_counts() {
        assert_eq!(error_positions("4321", "4321"), Vec::<usize>::new());
        assert_eq!(error_positions("4301", "4321"), vec![2]);
        assert_eq!(error_positions("43210", "4321"), vec![4]);
        assert_eq!(error_positions("43", "4321"), vec![2, 3]);
        assert_eq!(error_positions("4x21", "4321"), vec![1]);
        assert_eq!(error_count("", "4321"), 4);
        assert_eq!(error_count("4321\n", "4321"), 0);
        assert_eq!(error_count("9999", "4321"), 4);
    }

    #[test]
    fn generation_is_deterministic_balanced_and_one_error_each() {
        let data = dataset(QuickstartDataConfig::default(), 7);
        let train = data.items("train").unwrap();
        assert_eq!(train.len(), 192);
        assert_eq!(train, data.items("train").unwrap());
        assert_eq!(
            train,
            dataset(QuickstartDataConfig::default(), 7)
                .items("train")
                .unwrap()
        );
        assert_ne!(
            train,
            dataset(QuickstartDataConfig::default(), 8)
                .items("train")
                .unwrap()
        );
        assert_eq!(train[0].id, "train-00000");
        assert_eq!(train[191].id, "train-00191");
        let test = data.items("test").unwrap();
        assert_eq!(test.len(), 300);
        assert_eq!(test[299].id, "test-00299");
        for name in ["copy", "reverse", "increment"] {
            assert_eq!(train.iter().filter(|i| i.task == name).count(), 64);
            assert_eq!(test.iter().filter(|i| i.task == name).count(), 100);
        }
        for item in train.iter().chain(&test) {
            let reference = item.reference.clone().unwrap();
            assert_eq!(solve(&item.task, &item.prompt), Some(reference.clone()));
            assert!((4..=6).contains(&reference.len()), "{item:?}");
            assert_eq!(
                error_count(&item.initial_response, &reference),
                1,
                "{item:?}"
            );
            assert_eq!(item.initial_response.len(), reference.len());
        }
        assert_eq!(train[1].task, "reverse");
        assert!(train[1].prompt.starts_with("rev:"));
        assert!(train[2].prompt.starts_with("inc:"));
        // Item i depends on its index only, so a shorter split is a prefix of a longer one.
        let short = dataset(
            QuickstartDataConfig {
                train_items: 10,
                ..Default::default()
            },
            7,
        );
        assert_eq!(short.items("train").unwrap(), train[..10].to_vec());
        assert!(data.items("dev").is_err());
    }

    #[test]
    fn seed_offset_draws_other_items() {
        let offset = dataset(
            QuickstartDataConfig {
                seed_offset: 1,
                ..Default::default()
            },
            7,
        );
        let plain = dataset(QuickstartDataConfig::default(), 8);
        assert_eq!(offset.items("test").unwrap(), plain.items("test").unwrap());
    }

    #[test]
    fn error_position_is_spread_over_the_string() {
        let config = QuickstartDataConfig {
            train_items: 900,
            tasks: vec!["copy".into()],
            min_digits: 3,
            max_digits: 3,
            ..Default::default()
        };
        let items = dataset(config, 1).items("train").unwrap();
        let mut at = [0usize; 3];
        for item in &items {
            let positions = error_positions(&item.initial_response, &item.prompt[5..]);
            at[positions[0]] += 1;
        }
        for count in at {
            assert!((250..350).contains(&count), "{at:?}");
        }
    }

    #[test]
    fn validation_names_the_key() {
        let section =
            |v: serde_json::Value| validate::<DatasetRole>(&v, &ValidateContext::new("data"));
        assert!(section(json!({"kind": "quickstart"})).is_empty());
        let problems = section(json!({"kind": "quickstart", "items": 3}));
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.contains("items"), "{problems:?}");
        let problems = section(json!({"kind": "quickstart", "tasks": ["copy", "sort"]}));
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "tasks");
        assert!(problems[0].message.contains("sort"));
        let problems = section(json!({"kind": "quickstart", "min_digits": 0, "max_digits": 12}));
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["min_digits", "max_digits"]);
        let problems = section(json!({"kind": "quickstart", "min_digits": 7, "max_digits": 5}));
        assert_eq!(problems[0].key, "min_digits");
    }

    #[test]
    fn builds_from_the_registry() {
        let section = json!({"kind": "quickstart", "train_items": 5, "test_items": 2});
        let data =
            build::<DatasetRole>("data", &section, &BuildContext::new("dataset", 3)).unwrap();
        assert_eq!(data.items("train").unwrap().len(), 5);
        assert_eq!(data.items("test").unwrap().len(), 2);
        let bad = json!({"kind": "quickstart", "tasks": []});
        assert!(build::<DatasetRole>("data", &bad, &BuildContext::new("dataset", 3)).is_err());
    }
}
