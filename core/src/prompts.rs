//! Prompt builders and the both-order rule, in one place. Every plugin and the runner build
//! the critique, refinement, pairwise and pointwise prompts here, from the task's templates,
//! and every comparison of a refinement with the initial answer is made by [`BothOrders`],
//! which alone knows which slot holds the refinement.

use crate::template::{render, TaskTemplates};
use crate::{BothOrders, Comparison, Judgement, PointwiseRequest, PromptTemplates, TaskItem, Turn};

impl TaskTemplates {
    /// The prompt an actor answers to write an item's initial response: `{prompt}`.
    pub fn answer_prompt(&self, item: &TaskItem) -> String {
        render(&self.answer, &[("prompt", &item.prompt)])
    }

    /// The critique prompt of an item: `{prompt}`, `{response}` (the initial answer).
    pub fn critique_prompt(&self, item: &TaskItem) -> String {
        render(
            &self.critique,
            &[
                ("prompt", &item.prompt),
                ("response", &item.initial_response),
            ],
        )
    }

    /// The refinement prompt of an item and one critique of it.
    pub fn refinement_prompt(&self, item: &TaskItem, critique: &str) -> String {
        render(
            &self.refinement,
            &[
                ("prompt", &item.prompt),
                ("response", &item.initial_response),
                ("critique", critique),
            ],
        )
    }

    /// The refinement of an item and one critique as the conversation a chat actor answers:
    /// one user turn holding [`TaskTemplates::refinement_prompt`], or, with a
    /// `refinement_followup`, the answer prompt, the initial response as the actor's turn and
    /// the follow-up rendered with `{prompt}`, `{response}` and `{critique}`.
    pub fn refinement_turns(&self, item: &TaskItem, critique: &str) -> Vec<Turn> {
        if self.refinement_followup.is_empty() {
            return vec![Turn::user(self.refinement_prompt(item, critique))];
        }
        let followup = render(
            &self.refinement_followup,
            &[
                ("prompt", &item.prompt),
                ("response", &item.initial_response),
                ("critique", critique),
            ],
        );
        vec![
            Turn::user(self.answer_prompt(item)),
            Turn::assistant(item.initial_response.clone()),
            Turn::user(followup),
        ]
    }

    /// The pairwise judge prompt of a comparison: `{prompt}`, `{a}`, `{b}`, `{reference}`.
    pub fn pairwise_prompt(&self, comparison: &Comparison) -> String {
        let reference = comparison.reference.as_deref().unwrap_or_default();
        render(
            &self.pairwise,
            &[
                ("prompt", &comparison.prompt),
                ("a", &comparison.a),
                ("b", &comparison.b),
                ("reference", reference),
            ],
        )
    }

    /// The pointwise judge prompt (RQS): `{prompt}`, `{response}`, `{reference}`.
    pub fn pointwise_prompt(&self, request: &PointwiseRequest) -> String {
        let reference = request.reference.as_deref().unwrap_or_default();
        render(
            &self.pointwise,
            &[
                ("prompt", &request.prompt),
                ("response", &request.response),
                ("reference", reference),
            ],
        )
    }
}

impl PromptTemplates {
    /// Every set of templates with its key under `templates`: `default`, then
    /// `tasks.NAME` for each per-task override.
    pub fn named(&self) -> impl Iterator<Item = (String, &TaskTemplates)> {
        std::iter::once(("default".to_string(), &self.default)).chain(
            self.tasks
                .iter()
                .map(|(task, t)| (format!("tasks.{task}"), t)),
        )
    }

    /// [`TaskTemplates::answer_prompt`] with the item's task templates.
    pub fn answer_prompt(&self, item: &TaskItem) -> String {
        self.for_task(&item.task).answer_prompt(item)
    }

    /// [`TaskTemplates::critique_prompt`] with the item's task templates.
    pub fn critique_prompt(&self, item: &TaskItem) -> String {
        self.for_task(&item.task).critique_prompt(item)
    }

    /// [`TaskTemplates::refinement_prompt`] with the item's task templates.
    pub fn refinement_prompt(&self, item: &TaskItem, critique: &str) -> String {
        self.for_task(&item.task).refinement_prompt(item, critique)
    }

    /// [`TaskTemplates::refinement_turns`] with the item's task templates.
    pub fn refinement_turns(&self, item: &TaskItem, critique: &str) -> Vec<Turn> {
        self.for_task(&item.task).refinement_turns(item, critique)
    }

    /// [`TaskTemplates::pairwise_prompt`] with the comparison's task templates.
    pub fn pairwise_prompt(&self, comparison: &Comparison) -> String {
        self.for_task(&comparison.task).pairwise_prompt(comparison)
    }

    /// [`TaskTemplates::pointwise_prompt`] with the request's task templates.
    pub fn pointwise_prompt(&self, request: &PointwiseRequest) -> String {
        self.for_task(&request.task).pointwise_prompt(request)
    }
}

/// Which slot of a comparison holds the refinement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// The refinement is A, the initial answer B.
    RefinedFirst,
    /// The initial answer is A, the refinement B.
    RefinedSecond,
}

impl Order {
    /// Both orders, in the order their judgements are stored.
    pub const BOTH: [Order; 2] = [Order::RefinedFirst, Order::RefinedSecond];

    /// The name seeds are derived from.
    pub fn name(self) -> &'static str {
        match self {
            Order::RefinedFirst => "refined-first",
            Order::RefinedSecond => "refined-second",
        }
    }
}

impl BothOrders {
    /// The two comparisons of a refinement with the item's initial answer, refinement first;
    /// `seed(order)` gives each its judge seed.
    pub fn comparisons(
        item: &TaskItem,
        refinement: &str,
        mut seed: impl FnMut(Order) -> u64,
    ) -> [Comparison; 2] {
        Order::BOTH.map(|order| {
            let (a, b) = match order {
                Order::RefinedFirst => (refinement, item.initial_response.as_str()),
                Order::RefinedSecond => (item.initial_response.as_str(), refinement),
            };
            Comparison {
                task: item.task.clone(),
                prompt: item.prompt.clone(),
                reference: item.reference.clone(),
                a: a.to_string(),
                b: b.to_string(),
                seed: seed(order),
                tests: item.tests.clone(),
                entry_point: item.entry_point.clone(),
            }
        })
    }

    /// The pair from the judgements of [`BothOrders::comparisons`], in that order.
    pub fn from_judgements(refined_first: Judgement, refined_second: Judgement) -> Self {
        Self {
            refined_first,
            refined_second,
        }
    }

    /// The judgement of one order.
    pub fn judgement(&self, order: Order) -> &Judgement {
        match order {
            Order::RefinedFirst => &self.refined_first,
            Order::RefinedSecond => &self.refined_second,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Verdict;

    fn item() -> TaskItem {
        TaskItem {
            id: "1".into(),
            task: "t".into(),
            prompt: "P".into(),
            initial_response: "Y0".into(),
            reference: Some("R".into()),
            ..TaskItem::default()
        }
    }

    #[test]
    fn comparisons_put_the_refinement_in_each_slot() {
        let [first, second] = BothOrders::comparisons(&item(), "Y1", |o| match o {
            Order::RefinedFirst => 1,
            Order::RefinedSecond => 2,
        });
        assert_eq!(
            (first.a.as_str(), first.b.as_str(), first.seed),
            ("Y1", "Y0", 1)
        );
        assert_eq!(
            (second.a.as_str(), second.b.as_str(), second.seed),
            ("Y0", "Y1", 2)
        );
        assert_eq!(first.reference.as_deref(), Some("R"));
        let pair =
            BothOrders::from_judgements(Judgement::hard(Verdict::A), Judgement::hard(Verdict::B));
        assert_eq!(pair.judgement(Order::RefinedFirst).verdict, Verdict::A);
        assert_eq!(pair.judgement(Order::RefinedSecond).verdict, Verdict::B);
    }

    #[test]
    fn prompts_fill_every_field_of_their_template() {
        let t = TaskTemplates {
            critique: "{prompt}|{response}".into(),
            refinement: "{prompt}|{response}|{critique}".into(),
            pairwise: "{prompt}|{a}|{b}|{reference}".into(),
            pointwise: "{prompt}|{response}|{reference}".into(),
            ..TaskTemplates::default()
        };
        let item = item();
        assert_eq!(t.critique_prompt(&item), "P|Y0");
        assert_eq!(t.refinement_prompt(&item, "C"), "P|Y0|C");
        assert_eq!(t.refinement_turns(&item, "C"), vec![Turn::user("P|Y0|C")]);
        let chat = TaskTemplates {
            answer: "Q:{prompt}".into(),
            refinement_followup: "{critique}|{prompt}|{response}".into(),
            ..t.clone()
        };
        assert_eq!(
            chat.refinement_turns(&item, "C"),
            vec![
                Turn::user("Q:P"),
                Turn::assistant("Y0"),
                Turn::user("C|P|Y0")
            ]
        );
        let [c, _] = BothOrders::comparisons(&item, "Y1", |_| 0);
        assert_eq!(t.pairwise_prompt(&c), "P|Y1|Y0|R");
        let request = PointwiseRequest {
            task: "t".into(),
            prompt: "P".into(),
            response: "Y1".into(),
            reference: None,
            seed: 0,
            ..PointwiseRequest::default()
        };
        assert_eq!(t.pointwise_prompt(&request), "P|Y1|");
    }
}
