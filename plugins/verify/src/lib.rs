//! rco-plugin-verify: judges that check answers against ground truth instead of judging
//! them.
//!
//! # Design
//! - [`math`] (`kind = "math"`): reads the final number of each answer (`#### N`,
//!   `\boxed{}`, "the answer is N", else the last number) and compares it with the
//!   item's reference numerically.
//! - [`code`] (`kind = "code"`): runs each answer's program against the item's tests in
//!   a [`sandbox`] and compares the fraction of tests passed.
//!
//! Both are ordinary judges: the runner judges each pair in both orders and computes CU
//! and judge health as for any other; a verifier is deterministic, so its position
//! consistency is 1. Both report [`rco_core::Judge::solved_score`], so the runner can
//! count answers that are already correct.

pub mod code;
pub mod extract;
pub mod math;
pub mod sandbox;

/// The pointwise score of a correct answer (and of a program passing every test).
pub const SOLVED: f64 = 10.0;
/// The pointwise score of a wrong answer (and of a program passing no test).
pub const WRONG: f64 = 1.0;
/// Why a verifier's critique comparisons are invalid.
pub const NOT_CRITIQUES: &str =
    "a verifier checks answers against ground truth and cannot compare critiques; judge critique comparisons (collect.critique_comparisons) with an LLM judge";

/// A verifier's answer to `n` critique comparisons: each invalid, saying why.
pub fn decline_critiques(n: usize) -> Vec<rco_core::Judgement> {
    (0..n)
        .map(|_| {
            rco_core::Judgement::hard(rco_core::Verdict::Invalid {
                reason: NOT_CRITIQUES.into(),
            })
        })
        .collect()
}
