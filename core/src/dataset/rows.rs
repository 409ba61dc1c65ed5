//! Rows of research data → task items. A row is a JSON object; each item field is read
//! from the column the dataset's `fields` mapping names, else from the first of its usual
//! names that the row has (`reference`, `answer` or `solution`; `tests` or `test`; ...).
//! Columns no field reads are ignored.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Error, Result, TaskItem};

/// The column each item field is read from, for data whose names differ from the usual
/// ones (`[data.fields]`, for example `prompt = "question"`). A key that is not a field
/// name is a config error.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldMap {
    /// The item id (default: `id`, `task_id`; the line number when the row has neither).
    pub id: Option<String>,
    /// The task family (default: `task`; the dataset's `task` when the row has none).
    pub task: Option<String>,
    /// The prompt text (default: `prompt`).
    pub prompt: Option<String>,
    /// A chat conversation `[{role, content}]` to answer, used when the row has no prompt
    /// (default: `messages`).
    pub messages: Option<String>,
    /// The initial response `y0` (default: `initial_response`).
    pub initial_response: Option<String>,
    /// The ground truth (default: `reference`, `answer`, `solution`).
    pub reference: Option<String>,
    /// A code item's tests (default: `tests`, `test`).
    pub tests: Option<String>,
    /// The function a code item's tests call (default: `entry_point`).
    pub entry_point: Option<String>,
}

impl FieldMap {
    /// The columns a field is read from, in order of preference.
    fn columns<'a>(mapped: &'a Option<String>, usual: &'a [&'a str]) -> Vec<&'a str> {
        match mapped {
            Some(column) => vec![column.as_str()],
            None => usual.to_vec(),
        }
    }
}

/// Reads the task items of a JSONL file of rows. `task` is the task of rows without one.
pub fn read_items(path: &Path, fields: &FieldMap, task: Option<&str>) -> Result<Vec<TaskItem>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut items = Vec::new();
    let mut seen = HashSet::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let number = index + 1;
        let fail = |message: String| Error::Data {
            path: path.to_path_buf(),
            line: number,
            message,
        };
        let row: Map<String, Value> = match serde_json::from_str(&line) {
            Ok(Value::Object(row)) => row,
            Ok(other) => return Err(fail(format!("a row must be a JSON object, not {other}"))),
            Err(e) => return Err(fail(format!("malformed JSON record: {e}"))),
        };
        let item = item(&row, fields, task, number).map_err(fail)?;
        if !seen.insert(item.id.clone()) {
            return Err(Error::Data {
                path: path.to_path_buf(),
                line: number,
                message: format!("item id `{}` appears more than once", item.id),
            });
        }
        items.push(item);
    }
    Ok(items)
}

/// One row's item, or what is wrong with it.
fn item(
    row: &Map<String, Value>,
    fields: &FieldMap,
    task: Option<&str>,
    line: usize,
) -> std::result::Result<TaskItem, String> {
    let text = |mapped: &Option<String>, usual: &[&str]| -> std::result::Result<_, String> {
        for column in FieldMap::columns(mapped, usual) {
            if let Some(value) = row.get(column) {
                return text_of(column, value);
            }
        }
        Ok(None)
    };
    let id = text(&fields.id, &["id", "task_id"])?.unwrap_or_else(|| line.to_string());
    let task = match text(&fields.task, &["task"])? {
        Some(task) => task,
        None => task.map(str::to_string).ok_or_else(|| {
            "the row has no `task` and the dataset sets none (add `task = \"NAME\"` to [data])"
                .to_string()
        })?,
    };
    let prompt = match text(&fields.prompt, &["prompt"])? {
        Some(prompt) => prompt,
        None => {
            let column = fields.messages.as_deref().unwrap_or("messages");
            match row.get(column) {
                Some(messages) => render_messages(column, messages)?,
                None => {
                    let wanted = match &fields.prompt {
                        Some(mapped) => format!("`{mapped}` (data.fields.prompt)"),
                        None => "`prompt` or `messages`".to_string(),
                    };
                    return Err(format!("the row has no {wanted}"));
                }
            }
        }
    };
    Ok(TaskItem {
        id,
        task,
        prompt,
        initial_response: text(&fields.initial_response, &["initial_response"])?
            .unwrap_or_default(),
        reference: text(&fields.reference, &["reference", "answer", "solution"])?,
        tests: text(&fields.tests, &["tests", "test"])?,
        entry_point: text(&fields.entry_point, &["entry_point"])?,
    })
}

/// A column's value as text: strings as they are, numbers and booleans written out, a list
/// of strings one per line (a list of tests); `null` is no value.
fn text_of(column: &str, value: &Value) -> std::result::Result<Option<String>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        Value::Array(parts) if parts.iter().all(Value::is_string) => Ok(Some(
            parts
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n"),
        )),
        other => Err(format!(
            "column `{column}` must be text, a number or a list of strings, not {}",
            kind(other)
        )),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A chat conversation as one prompt: a lone user message is its text; a longer
/// conversation is written out turn by turn (`User: ...`, `Assistant: ...`), and the answer
/// to write is the next turn.
pub fn render_messages(column: &str, messages: &Value) -> std::result::Result<String, String> {
    let list = messages
        .as_array()
        .filter(|list| !list.is_empty())
        .ok_or_else(|| {
            format!("column `{column}` must be a non-empty list of {{role, content}}")
        })?;
    let mut turns = Vec::with_capacity(list.len());
    for (i, message) in list.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str);
        let content = message.get("content").and_then(Value::as_str);
        match (role, content) {
            (Some(role), Some(content)) => turns.push((role, content)),
            _ => {
                return Err(format!(
                    "`{column}[{i}]` must be an object with string `role` and `content`"
                ))
            }
        }
    }
    if let [("user", content)] = turns.as_slice() {
        return Ok(content.to_string());
    }
    Ok(turns
        .iter()
        .map(|(role, content)| {
            let mut name = role.to_string();
            if let Some(first) = name.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            format!("{name}: {content}")
        })
        .collect::<Vec<_>>()
        .join("\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(lines: &str, fields: &FieldMap, task: Option<&str>) -> Result<Vec<TaskItem>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.jsonl");
        std::fs::write(&path, lines).unwrap();
        read_items(&path, fields, task)
    }

    #[test]
    fn usual_names_are_read_and_extra_columns_ignored() {
        let items = read(
            concat!(
                r#"{"task_id": "HumanEval/0", "task": "code", "prompt": "def f():", "test": "def check(c): pass", "entry_point": "f", "canonical_solution": "x"}"#,
                "\n",
                r#"{"id": 7, "task": "math", "prompt": "2+2?", "answer": 4, "difficulty": "easy"}"#,
                "\n\n",
                r#"{"task": "qa", "prompt": "q", "solution": "s", "initial_response": "y0", "tests": ["assert 1", "assert 2"]}"#,
                "\n"
            ),
            &FieldMap::default(),
            None,
        )
        .unwrap();
        assert_eq!(items[0].id, "HumanEval/0");
        assert_eq!(items[0].tests.as_deref(), Some("def check(c): pass"));
        assert_eq!(items[0].entry_point.as_deref(), Some("f"));
        assert_eq!(items[0].initial_response, "");
        assert_eq!(items[1].id, "7");
        assert_eq!(items[1].reference.as_deref(), Some("4"));
        // No id: the line number.
        assert_eq!(items[2].id, "4");
        assert_eq!(items[2].reference.as_deref(), Some("s"));
        assert_eq!(items[2].initial_response, "y0");
        assert_eq!(items[2].tests.as_deref(), Some("assert 1\nassert 2"));
    }

    #[test]
    fn a_mapping_names_other_columns() {
        let fields = FieldMap {
            prompt: Some("question".into()),
            reference: Some("gold".into()),
            ..FieldMap::default()
        };
        let items = read(
            "{\"question\": \"Who?\", \"gold\": \"Ada\", \"answer\": \"not this\"}\n",
            &fields,
            Some("qa"),
        )
        .unwrap();
        assert_eq!(items[0].prompt, "Who?");
        assert_eq!(items[0].task, "qa");
        assert_eq!(items[0].reference.as_deref(), Some("Ada"));
        let err = read("{\"prompt\": \"Who?\"}\n", &fields, Some("qa")).unwrap_err();
        assert!(
            err.to_string().contains("rows.jsonl, line 1")
                && err.to_string().contains("data.fields.prompt"),
            "{err}"
        );
    }

    #[test]
    fn messages_become_the_prompt() {
        let items = read(
            concat!(
                r#"{"id": "a", "messages": [{"role": "user", "content": "Hi"}]}"#,
                "\n",
                r#"{"id": "b", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "How are you?"}]}"#,
                "\n"
            ),
            &FieldMap::default(),
            Some("dialog"),
        )
        .unwrap();
        assert_eq!(items[0].prompt, "Hi");
        assert_eq!(
            items[1].prompt,
            "User: Hi\n\nAssistant: Hello!\n\nUser: How are you?"
        );
    }

    #[test]
    fn bad_rows_name_their_line() {
        let cases = [
            ("{\"prompt\": \"p\"}\n", "no `task`"),
            ("{\"task\": \"t\"}\n", "no `prompt` or `messages`"),
            ("[1]\n", "JSON object"),
            ("{\"task\": \"t\", \"prompt\": {\"x\": 1}}\n", "an object"),
            (
                "{\"task\": \"t\", \"messages\": [{\"role\": \"user\"}]}\n",
                "messages[0]",
            ),
            (
                "{\"task\": \"t\", \"prompt\": \"p\", \"id\": 1}\n{\"task\": \"t\", \"prompt\": \"p\", \"id\": 1}\n",
                "rows.jsonl, line 2: item id `1` appears more than once",
            ),
        ];
        for (text, expected) in cases {
            let err = read(text, &FieldMap::default(), None)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
            assert!(err.contains("rows.jsonl, line"), "{err}");
        }
    }
}
