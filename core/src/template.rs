//! Prompt templates are data: set per task in config, with defaults for chat models.
//! Placeholders: `{prompt}`, `{response}`, `{critique}`, `{a}`, `{b}`, `{reference}`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::task_templates::TaskTemplates;
use crate::ConfigProblem;

/// Default templates plus per-task overrides (`[templates.tasks.NAME]`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PromptTemplates {
    /// Templates used by every task without an override.
    pub default: TaskTemplates,
    /// Per-task templates, keyed by task name. For a built-in suite (`code`, `math`, `qa`,
    /// `summarization`, `dialog`) the keys given replace the suite's own templates one by
    /// one; for any other task they replace the built-in defaults.
    #[serde(deserialize_with = "over_suites")]
    pub tasks: BTreeMap<String, TaskTemplates>,
}

/// Reads `[templates.tasks.NAME]` sections as changes to the task's built-in templates.
fn over_suites<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, TaskTemplates>, D::Error> {
    use serde::de::Error;
    let raw: BTreeMap<String, serde_json::Map<String, serde_json::Value>> =
        BTreeMap::deserialize(deserializer)?;
    raw.into_iter()
        .map(|(task, keys)| {
            let base = crate::suites::templates(&task).cloned().unwrap_or_default();
            let mut merged = match serde_json::to_value(base).map_err(D::Error::custom)? {
                serde_json::Value::Object(map) => map,
                _ => serde_json::Map::new(),
            };
            merged.extend(keys);
            let templates: TaskTemplates =
                serde_json::from_value(serde_json::Value::Object(merged))
                    .map_err(|e| D::Error::custom(format!("tasks.{task}: {e}")))?;
            Ok((task, templates))
        })
        .collect()
}

impl PromptTemplates {
    /// The templates of a task: its `[templates.tasks.NAME]`, else the built-in templates
    /// of the suite it names ([`crate::suites`]), else `[templates.default]`.
    pub fn for_task(&self, task: &str) -> &TaskTemplates {
        self.tasks
            .get(task)
            .or_else(|| crate::suites::templates(task))
            .unwrap_or(&self.default)
    }

    /// Every template that uses a placeholder it does not have.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut check = |key: String, t: &TaskTemplates| {
            let allowed: [(&str, &str, &[&str]); 6] = [
                ("answer", &t.answer, &["prompt"]),
                ("critique", &t.critique, &["prompt", "response"]),
                (
                    "refinement",
                    &t.refinement,
                    &["prompt", "response", "critique"],
                ),
                (
                    "refinement_followup",
                    &t.refinement_followup,
                    &["prompt", "response", "critique"],
                ),
                ("pairwise", &t.pairwise, &["prompt", "a", "b", "reference"]),
                (
                    "pointwise",
                    &t.pointwise,
                    &["prompt", "response", "reference"],
                ),
            ];
            for (name, text, ok) in allowed {
                for placeholder in placeholders(text) {
                    if !ok.contains(&placeholder.as_str()) {
                        problems.push(ConfigProblem::new(
                            format!("{key}.{name}"),
                            format!(
                                "unknown placeholder `{{{placeholder}}}` (allowed: {})",
                                ok.iter()
                                    .map(|p| format!("{{{p}}}"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ));
                    }
                }
            }
        };
        check("templates.default".into(), &self.default);
        for (task, t) in &self.tasks {
            check(format!("templates.tasks.{task}"), t);
        }
        problems
    }
}

fn placeholders(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end)
                if after[..end]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && end > 0 =>
            {
                out.push(after[..end].to_string());
                rest = &after[end + 1..];
            }
            _ => rest = after,
        }
    }
    out
}

/// Fills `{name}` placeholders; unknown placeholders stay as they are.
///
/// One pass over the template: a value is pasted as it is and never scanned again, so a
/// prompt or answer that contains `{a}`, `{critique}` or `\frac{a}{b}` stays verbatim.
pub fn render(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let value = after.find('}').and_then(|end| {
            let name = &after[..end];
            values
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v, end))
        });
        match value {
            Some((value, end)) => {
                out.push_str(value);
                rest = &after[end + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_checks_placeholders() {
        assert_eq!(
            render(
                "{prompt}|{response}>",
                &[("prompt", "x"), ("response", "y")]
            ),
            "x|y>"
        );
        let mut t = PromptTemplates::default();
        assert!(t.problems().is_empty());
        t.default.critique = "{prompt} {critique}".into();
        let p = t.problems();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].key, "templates.default.critique");
    }

    #[test]
    fn substituted_values_are_not_scanned_again() {
        // A refinement prompt whose response and critique contain placeholders.
        let t = TaskTemplates::default();
        let out = render(
            &t.refinement,
            &[
                ("prompt", "Simplify \\frac{a}{b} + {critique}"),
                ("response", "f\"{response} = {a}\" and {\"b\": 1}"),
                ("critique", "Use {prompt} less; {b} is wrong."),
            ],
        );
        assert!(out.contains("Simplify \\frac{a}{b} + {critique}"), "{out}");
        assert!(
            out.contains("f\"{response} = {a}\" and {\"b\": 1}"),
            "{out}"
        );
        assert!(out.contains("Use {prompt} less; {b} is wrong."), "{out}");
        // The judge's `{a}` holds text with `{b}`: B's answer is not pasted into it.
        assert_eq!(
            render("A: {a} | B: {b}", &[("a", "x{b}y"), ("b", "Z")]),
            "A: x{b}y | B: Z"
        );
        // Unknown placeholders, braces and repeats in the template itself as before.
        assert_eq!(
            render("{x} {{a}} {a}{a} {} {a", &[("a", "1"), ("a", "2")]),
            "{x} {1} 11 {} {a"
        );
    }
}
