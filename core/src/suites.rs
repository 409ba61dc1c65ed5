//! The prompt templates of the five task suites (`code`, `math`, `qa`, `summarization`,
//! `dialog`), written for each task. Items whose `task` is one of these names use them
//! unless the config has its own `[templates.tasks.NAME]`; every other task uses
//! `[templates.default]`.

use std::sync::LazyLock;

use crate::task_templates::TaskTemplates;

/// The names of the built-in suites.
pub const SUITES: [&str; 5] = ["code", "math", "qa", "summarization", "dialog"];

/// The built-in templates of a suite, if `task` names one.
pub fn templates(task: &str) -> Option<&'static TaskTemplates> {
    static ALL: LazyLock<Vec<(&'static str, TaskTemplates)>> = LazyLock::new(|| {
        vec![
            ("code", code()),
            ("math", math()),
            ("qa", qa()),
            ("summarization", summarization()),
            ("dialog", dialog()),
        ]
    });
    ALL.iter().find(|(name, _)| *name == task).map(|(_, t)| t)
}

/// The judge prompts shared by the suites: the task, then each answer, with the criteria
/// of the suite.
fn judged(criteria: &str) -> (String, String) {
    let pairwise = format!(
        "Please act as an impartial judge and decide which of two responses answers the task better. {criteria} Do not let the order or the length of the responses influence you. After a short explanation, give your verdict strictly as \"[[A]]\" if response A is better, \"[[B]]\" if response B is better, or \"[[C]]\" for a tie.\n\n[Task]\n{{prompt}}\n\n[Reference answer]\n{{reference}}\n\n[Response A]\n{{a}}\n\n[Response B]\n{{b}}\n"
    );
    let pointwise = format!(
        "Please act as an impartial judge and rate the response to the task on a scale of 1 to 10. {criteria} After a short explanation, give your rating strictly as \"Rating: [[N]]\".\n\n[Task]\n{{prompt}}\n\n[Reference answer]\n{{reference}}\n\n[Response]\n{{response}}\n"
    );
    (pairwise, pointwise)
}

fn code() -> TaskTemplates {
    let (pairwise, pointwise) = judged("The better response is a correct, complete Python function that passes the task's tests; style matters only between two correct ones.");
    TaskTemplates {
        answer: "Complete the following Python function. Reply with the whole function, including its signature and any imports it needs, in one ```python code block.\n\n```python\n{prompt}```\n".into(),
        critique: "You are an expert Python reviewer. Below is a programming task and a candidate solution. Find the most important bug or missing case in the solution (wrong logic, an unhandled input, a wrong return type) and say concretely how to fix it. If the solution is correct, say so briefly. Do not write the corrected code.\n\n[Task]\n```python\n{prompt}```\n\n[Solution]\n{response}\n\n[Review]\n".into(),
        refinement: "Fix the solution to the programming task using the review. Reply with the whole corrected function in one ```python code block.\n\n[Task]\n```python\n{prompt}```\n\n[Solution]\n{response}\n\n[Review]\n{critique}\n\n[Corrected solution]\n".into(),
        pairwise,
        pointwise,
        ..TaskTemplates::default()
    }
}

fn math() -> TaskTemplates {
    let (pairwise, pointwise) =
        judged("The better response reaches the correct final answer with sound reasoning.");
    TaskTemplates {
        answer: "Solve the following problem step by step. End with the final answer on its own line, written as \"#### N\" where N is a number.\n\n{prompt}\n".into(),
        critique: "You are a careful math teacher. Below is a word problem and a student's solution. Check each step: find the first mistake (a misread quantity, a wrong operation, an arithmetic slip) and say how to correct it. If every step is right, say so briefly. Do not give the final answer yourself.\n\n[Problem]\n{prompt}\n\n[Solution]\n{response}\n\n[Feedback]\n".into(),
        refinement: "Rewrite the solution to the problem using the feedback. Solve it step by step and end with the final answer on its own line, written as \"#### N\".\n\n[Problem]\n{prompt}\n\n[Previous solution]\n{response}\n\n[Feedback]\n{critique}\n\n[Corrected solution]\n".into(),
        pairwise,
        pointwise,
        ..TaskTemplates::default()
    }
}

fn qa() -> TaskTemplates {
    let (pairwise, pointwise) = judged("The better response answers the question correctly and only with what the passage supports.");
    TaskTemplates {
        answer: "Answer the question from the passage. Be brief.\n\n{prompt}\n".into(),
        critique: "You are a careful reader. Below is a passage with a question and an answer to it. Say whether the answer is correct and supported by the passage; if not, point to the part of the passage that gives the right answer. Be brief.\n\n[Passage and question]\n{prompt}\n\n[Answer]\n{response}\n\n[Critique]\n".into(),
        refinement: "Improve the answer to the question using the critique. Reply with the improved answer only, briefly.\n\n[Passage and question]\n{prompt}\n\n[Answer]\n{response}\n\n[Critique]\n{critique}\n\n[Improved answer]\n".into(),
        pairwise,
        pointwise,
        ..TaskTemplates::default()
    }
}

fn summarization() -> TaskTemplates {
    let (pairwise, pointwise) = judged(
        "The better response is faithful to the text, covers its main point and is concise.",
    );
    TaskTemplates {
        answer: "Write a short title that summarises the following text. Reply with the title only.\n\n{prompt}\n".into(),
        critique: "You are an editor. Below is a text and a short summary of it. Say what the summary gets wrong, leaves out or adds that the text does not say, and how to make it more faithful and concise. Be brief.\n\n[Text]\n{prompt}\n\n[Summary]\n{response}\n\n[Critique]\n".into(),
        refinement: "Improve the summary of the text using the critique. Reply with the improved summary only.\n\n[Text]\n{prompt}\n\n[Summary]\n{response}\n\n[Critique]\n{critique}\n\n[Improved summary]\n".into(),
        pairwise,
        pointwise,
        ..TaskTemplates::default()
    }
}

fn dialog() -> TaskTemplates {
    let (pairwise, pointwise) = judged(
        "The better response is a natural, relevant and helpful next turn of the conversation.",
    );
    TaskTemplates {
        answer: "Write the assistant's next reply in the conversation below. Reply with that one turn only.\n\n{prompt}\n".into(),
        critique: "You are a conversation coach. Below is a conversation and the assistant's next reply. Say what makes the reply unnatural, off-topic or unhelpful and how to improve it. Be brief.\n\n[Conversation]\n{prompt}\n\n[Reply]\n{response}\n\n[Critique]\n".into(),
        refinement: "Improve the assistant's reply using the critique. Reply with the improved turn only.\n\n[Conversation]\n{prompt}\n\n[Reply]\n{response}\n\n[Critique]\n{critique}\n\n[Improved reply]\n".into(),
        pairwise,
        pointwise,
        ..TaskTemplates::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PromptTemplates;

    #[test]
    fn every_suite_has_templates_with_known_placeholders() {
        let templates = PromptTemplates {
            tasks: SUITES
                .iter()
                .map(|s| (s.to_string(), templates(s).expect("templates").clone()))
                .collect(),
            ..PromptTemplates::default()
        };
        assert!(
            templates.problems().is_empty(),
            "{:?}",
            templates.problems()
        );
        assert!(super::templates("arithmetic").is_none());
    }

    #[test]
    fn a_suite_task_uses_its_templates_unless_the_config_has_its_own() {
        let mut templates = PromptTemplates::default();
        assert!(templates.for_task("math").answer.contains("####"));
        assert_eq!(templates.for_task("other").answer, "{prompt}");
        templates
            .tasks
            .insert("math".into(), TaskTemplates::default());
        assert_eq!(templates.for_task("math").answer, "{prompt}");
    }

    #[test]
    fn a_config_section_for_a_suite_changes_only_the_keys_it_gives() {
        let parsed: PromptTemplates = serde_json::from_value(serde_json::json!({
            "tasks": {
                "qa": { "pairwise_answer_prefix": "Verdict: [[" },
                "other": { "answer": "Q: {prompt}" }
            }
        }))
        .unwrap();
        let qa = parsed.for_task("qa");
        assert_eq!(qa.pairwise_answer_prefix, "Verdict: [[");
        assert_eq!(qa.answer, templates("qa").unwrap().answer);
        let other = parsed.for_task("other");
        assert_eq!(other.answer, "Q: {prompt}");
        assert_eq!(other.critique, TaskTemplates::default().critique);
        // Written out and read back, nothing changes.
        let again: PromptTemplates =
            serde_json::from_value(serde_json::to_value(&parsed).unwrap()).unwrap();
        assert_eq!(again, parsed);
        let typo = serde_json::from_value::<PromptTemplates>(serde_json::json!({
            "tasks": { "qa": { "pairwse": "x" } }
        }))
        .unwrap_err();
        assert!(typo.to_string().contains("pairwse"), "{typo}");
    }
}
