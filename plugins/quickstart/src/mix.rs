//! The quickstart critique language and the warm-start critique mix.
//!
//! A critique is `=48172` (a corrected answer to adopt), `@3=7` (position 3, 1-based, should
//! be 7), `@3` (position 3 is wrong) or `ok` (no information). Anything else, and any
//! position outside the response, reads as generic, so that a critic that writes junk gets no
//! credit rather than an error.
//!
//! The warm-start mix's helpful ("precise") critique is the corrected answer: a tiny
//! transformer learns to write it (each digit is a fixed function of one prompt digit) within
//! a minute on a CPU, while locating the one wrong digit takes far longer to learn.

use std::fmt;

use rand::Rng;
use rco_core::{ConfigProblem, TaskItem};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::tasks::{correct_answer, digit_char, error_positions};

/// What a critique says, with positions 0-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParsedCritique {
    /// The answer should be `digits`.
    Answer { digits: [u8; 16], len: usize },
    /// Position `pos` should be `digit`.
    Precise { pos: usize, digit: u8 },
    /// Position `pos` is wrong.
    Vague { pos: usize },
    /// No usable information.
    Generic,
}

impl fmt::Display for ParsedCritique {
    /// The critique's text, the inverse of [`parse_critique`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParsedCritique::Answer { digits, len } => {
                f.write_str("=")?;
                digits[..*len].iter().try_for_each(|d| write!(f, "{d}"))
            }
            ParsedCritique::Precise { pos, digit } => write!(f, "@{}={digit}", pos + 1),
            ParsedCritique::Vague { pos } => write!(f, "@{}", pos + 1),
            ParsedCritique::Generic => f.write_str("ok"),
        }
    }
}

/// Reads a critique of a response with `response_len` characters (surrounding whitespace of
/// the critique is ignored).
pub fn parse_critique(text: &str, response_len: usize) -> ParsedCritique {
    parse_directive(text.trim(), response_len).unwrap_or(ParsedCritique::Generic)
}

fn parse_directive(text: &str, response_len: usize) -> Option<ParsedCritique> {
    if let Some(answer) = text.strip_prefix('=') {
        return ParsedCritique::answer(answer);
    }
    let rest = text.strip_prefix('@')?;
    let (pos_text, digit_text) = match rest.split_once('=') {
        Some((pos, digit)) => (pos, Some(digit)),
        None => (rest, None),
    };
    // `usize::from_str` would also take a leading `+`, which the language does not have.
    if pos_text.is_empty() || !pos_text.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let pos: usize = pos_text.parse().ok()?;
    if pos == 0 || pos > response_len {
        return None;
    }
    let Some(digit_text) = digit_text else {
        return Some(ParsedCritique::Vague { pos: pos - 1 });
    };
    let mut chars = digit_text.chars();
    let digit = chars.next()?.to_digit(10)?;
    if chars.next().is_some() {
        return None;
    }
    Some(ParsedCritique::Precise {
        pos: pos - 1,
        digit: u8::try_from(digit).ok()?,
    })
}

impl ParsedCritique {
    /// An answer critique from its digits (1 to 16 ASCII digits).
    pub fn answer(text: &str) -> Option<ParsedCritique> {
        let mut digits = [0u8; 16];
        if text.is_empty() || text.len() > digits.len() {
            return None;
        }
        for (slot, c) in digits.iter_mut().zip(text.chars()) {
            *slot = u8::try_from(c.to_digit(10)?).ok()?;
        }
        Some(ParsedCritique::Answer {
            digits,
            len: text.len(),
        })
    }

    /// The proposed answer of an answer critique, as text.
    pub fn answer_text(&self) -> Option<String> {
        match self {
            ParsedCritique::Answer { digits, len } => {
                Some(digits[..*len].iter().map(|&d| digit_to_char(d)).collect())
            }
            _ => None,
        }
    }
}

/// The four kinds of critique the warm-start mix draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CritiqueKind {
    /// The corrected answer (or the wrong position and its right digit).
    Precise,
    /// The wrong position only.
    Vague,
    /// `ok`: no information.
    Generic,
    /// A position that is right, or a digit that is wrong: following it hurts.
    Wrong,
}

impl CritiqueKind {
    pub const ALL: [CritiqueKind; 4] = [
        CritiqueKind::Precise,
        CritiqueKind::Vague,
        CritiqueKind::Generic,
        CritiqueKind::Wrong,
    ];
}

/// Shares of the critique kinds a warm-start critic writes; they need not sum to 1
/// (they are normalised).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CritiqueMix {
    /// Share of precise critiques (`@pos=digit`, both right).
    pub precise: f64,
    /// Share of vague critiques (`@pos`, the wrong position).
    pub vague: f64,
    /// Share of generic critiques (`ok`).
    pub generic: f64,
    /// Share of wrong critiques (`@pos=digit` naming a right position and a wrong digit).
    pub wrong: f64,
}

impl Default for CritiqueMix {
    fn default() -> Self {
        Self {
            precise: 0.35,
            vague: 0.25,
            generic: 0.25,
            wrong: 0.15,
        }
    }
}

impl CritiqueMix {
    /// Every problem of the mix, keys relative to it.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        for (key, share) in self.named_shares() {
            if !share.is_finite() || share < 0.0 {
                problems.push(ConfigProblem::new(
                    key,
                    format!("must be a non-negative number, found {share}"),
                ));
            }
        }
        if problems.is_empty() && self.named_shares().iter().map(|(_, s)| s).sum::<f64>() <= 0.0 {
            problems.push(ConfigProblem::new(
                "",
                "the shares precise, vague, generic and wrong must not all be 0",
            ));
        }
        problems
    }
}

impl CritiqueMix {
    fn named_shares(&self) -> [(&'static str, f64); 4] {
        [
            ("precise", self.precise),
            ("vague", self.vague),
            ("generic", self.generic),
            ("wrong", self.wrong),
        ]
    }

    /// The shares in [`CritiqueKind::ALL`] order, summing to 1 (all 0 for an invalid mix).
    pub fn normalized(&self) -> [f64; 4] {
        let raw = self
            .named_shares()
            .map(|(_, s)| if s > 0.0 { s } else { 0.0 });
        let total: f64 = raw.iter().sum();
        if !total.is_finite() || total <= 0.0 {
            return [0.0; 4];
        }
        raw.map(|s| s / total)
    }

    /// One kind, drawn with the mix's shares (generic for an invalid mix).
    pub fn sample_kind(&self, rng: &mut impl Rng) -> CritiqueKind {
        let shares = self.normalized();
        let mut u = rng.random::<f64>();
        for (kind, share) in CritiqueKind::ALL.into_iter().zip(shares) {
            if u < share {
                return kind;
            }
            u -= share;
        }
        // Only reached through rounding at the top end, or for an all-zero mix.
        CritiqueKind::ALL
            .into_iter()
            .zip(shares)
            .rev()
            .find(|(_, share)| *share > 0.0)
            .map_or(CritiqueKind::Generic, |(kind, _)| kind)
    }
}

/// What a critic needs to know about an item: its initial response and the right answer.
struct Truth {
    response: Vec<char>,
    correct: Vec<char>,
    /// Positions of the response that are wrong and have a right digit to point to.
    fixable: Vec<usize>,
}

impl Truth {
    fn of(item: &TaskItem) -> Option<Truth> {
        let correct = correct_answer(item)?;
        let response: Vec<char> = item.initial_response.trim().chars().collect();
        let correct: Vec<char> = correct.chars().collect();
        let fixable = error_positions(&item.initial_response, &correct.iter().collect::<String>())
            .into_iter()
            .filter(|&p| p < response.len() && correct.get(p).is_some_and(char::is_ascii_digit))
            .collect();
        Some(Truth {
            response,
            correct,
            fixable,
        })
    }

    fn correct_digit(&self, pos: usize) -> Option<u8> {
        let digit = self.correct.get(pos)?.to_digit(10)?;
        u8::try_from(digit).ok()
    }

    fn precise(&self) -> Option<ParsedCritique> {
        self.fixable.first()?;
        ParsedCritique::answer(&self.correct.iter().collect::<String>())
    }
}

/// The precise critique of an item: its corrected answer (`=48172`), or `ok` if the initial
/// response has no wrong digit.
pub fn helpful_critique(item: &TaskItem) -> String {
    Truth::of(item)
        .and_then(|truth| truth.precise())
        .unwrap_or(ParsedCritique::Generic)
        .to_string()
}

/// A critique of the given kind; falls back to `ok` where the item allows no such critique
/// (no wrong digit to point to, or no right position to mislead about).
pub fn critique_of_kind(item: &TaskItem, kind: CritiqueKind, rng: &mut impl Rng) -> String {
    let Some(truth) = Truth::of(item) else {
        return ParsedCritique::Generic.to_string();
    };
    let critique = match kind {
        CritiqueKind::Precise => truth.precise(),
        CritiqueKind::Vague => truth
            .fixable
            .first()
            .map(|&pos| ParsedCritique::Vague { pos }),
        CritiqueKind::Generic => None,
        CritiqueKind::Wrong => {
            let right: Vec<usize> = (0..truth.response.len().min(truth.correct.len()))
                .filter(|&q| truth.response[q] == truth.correct[q])
                .filter(|&q| truth.correct_digit(q).is_some())
                .collect();
            if right.is_empty() {
                None
            } else {
                let q = right[rng.random_range(0..right.len())];
                truth.correct_digit(q).map(|d| ParsedCritique::Precise {
                    pos: q,
                    // Adding 1..=9 modulo 10 gives every other digit with equal chance.
                    digit: (d + rng.random_range(1..10u8)) % 10,
                })
            }
        }
    };
    critique.unwrap_or(ParsedCritique::Generic).to_string()
}

/// One warm-start critique of an item's initial response, of a kind drawn from the mix.
pub fn sample_critique(item: &TaskItem, mix: &CritiqueMix, rng: &mut impl Rng) -> String {
    let kind = mix.sample_kind(rng);
    critique_of_kind(item, kind, rng)
}

/// The kind of a critique of an item's initial response; `None` if the item has no known
/// right answer.
pub fn classify_critique(item: &TaskItem, text: &str) -> Option<CritiqueKind> {
    let truth = Truth::of(item)?;
    let kind = match parse_critique(text, truth.response.len()) {
        ParsedCritique::Generic => CritiqueKind::Generic,
        answer @ ParsedCritique::Answer { .. }
            if answer.answer_text() == Some(truth.correct.iter().collect()) =>
        {
            CritiqueKind::Precise
        }
        ParsedCritique::Vague { pos } if truth.fixable.contains(&pos) => CritiqueKind::Vague,
        ParsedCritique::Precise { pos, digit }
            if truth.fixable.contains(&pos) && truth.correct_digit(pos) == Some(digit) =>
        {
            CritiqueKind::Precise
        }
        _ => CritiqueKind::Wrong,
    };
    Some(kind)
}

/// The character of a digit, for callers that edit responses.
pub(crate) fn digit_to_char(digit: u8) -> char {
    digit_char(u32::from(digit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rco_core::seed::rng_for;

    fn item(prompt: &str, task: &str, initial: &str) -> TaskItem {
        TaskItem {
            id: "t".into(),
            task: task.into(),
            prompt: prompt.into(),
            initial_response: initial.into(),
            reference: None,
            ..TaskItem::default()
        }
    }

    #[test]
    fn parse_cases() {
        use ParsedCritique::*;
        assert_eq!(parse_critique("@3=7", 4), Precise { pos: 2, digit: 7 });
        assert_eq!(parse_critique("  @1=0\n", 4), Precise { pos: 0, digit: 0 });
        assert_eq!(parse_critique("@4", 4), Vague { pos: 3 });
        assert_eq!(parse_critique("ok", 4), Generic);
        // Out of range.
        assert_eq!(parse_critique("@5=1", 4), Generic);
        assert_eq!(parse_critique("@0=1", 4), Generic);
        assert_eq!(parse_critique("@0", 4), Generic);
        assert_eq!(parse_critique("@1", 0), Generic);
        assert_eq!(parse_critique("@99999999999999999999999=1", 4), Generic);
        // Junk.
        for junk in [
            "",
            "@",
            "@=3",
            "@3=",
            "@3=12",
            "@3=x",
            "@+3=1",
            "@-1",
            "@3 = 7",
            "3=7",
            "fix @3=7",
            "@3=7 please",
            "OK",
            "@３=7",
        ] {
            assert_eq!(parse_critique(junk, 4), Generic, "{junk:?}");
        }
    }

    #[test]
    fn display_round_trips() {
        for critique in [
            ParsedCritique::Precise { pos: 2, digit: 7 },
            ParsedCritique::Vague { pos: 0 },
            ParsedCritique::Generic,
        ] {
            assert_eq!(parse_critique(&critique.to_string(), 4), critique);
        }
        assert_eq!(
            ParsedCritique::Precise { pos: 2, digit: 7 }.to_string(),
            "@3=7"
        );
    }

    #[test]
    fn helpful_critique_gives_the_corrected_answer() {
        // rev:1234 -> 4321; the response is wrong at position 3 (1-based).
        let it = item("rev:1234", "reverse", "4391");
        assert_eq!(helpful_critique(&it), "=4321");
        assert_eq!(helpful_critique(&item("rev:1234", "reverse", "4321")), "ok");
        assert_eq!(helpful_critique(&item("sort:1234", "sort", "4391")), "ok");
        // Without a solvable prompt the stored reference is used.
        let mut stored = item("what?", "other", "4391");
        stored.reference = Some("4321".into());
        assert_eq!(helpful_critique(&stored), "=4321");
    }

    #[test]
    fn kinds_are_what_they_say() {
        let it = item("inc:1909", "increment", "2710");
        let mut rng = rng_for(1, &["kinds"]);
        assert_eq!(
            critique_of_kind(&it, CritiqueKind::Precise, &mut rng),
            "=2010"
        );
        assert_eq!(critique_of_kind(&it, CritiqueKind::Vague, &mut rng), "@2");
        assert_eq!(critique_of_kind(&it, CritiqueKind::Generic, &mut rng), "ok");
        for _ in 0..200 {
            let wrong = critique_of_kind(&it, CritiqueKind::Wrong, &mut rng);
            let ParsedCritique::Precise { pos, digit } = parse_critique(&wrong, 4) else {
                panic!("{wrong}");
            };
            assert_ne!(pos, 1, "{wrong}");
            assert_ne!(
                Some(digit_to_char(digit)),
                "2010".chars().nth(pos),
                "{wrong}"
            );
            assert_eq!(classify_critique(&it, &wrong), Some(CritiqueKind::Wrong));
        }
        // A one-digit response has no right position to mislead about.
        let single = item("copy:5", "copy", "6");
        assert_eq!(
            critique_of_kind(&single, CritiqueKind::Wrong, &mut rng),
            "ok"
        );
        assert_eq!(classify_critique(&it, "@2=0"), Some(CritiqueKind::Precise));
        assert_eq!(classify_critique(&it, "@2=5"), Some(CritiqueKind::Wrong));
        assert_eq!(classify_critique(&it, "@1"), Some(CritiqueKind::Wrong));
        assert_eq!(classify_critique(&it, "@2"), Some(CritiqueKind::Vague));
        assert_eq!(classify_critique(&it, "junk"), Some(CritiqueKind::Generic));
    }

    #[test]
    fn empirical_shares_match_the_mix() {
        let it = item("rev:123456", "reverse", "654391");
        let mix = CritiqueMix::default();
        let n = 4000;
        let mut counts = [0usize; 4];
        for j in 0..n {
            let mut rng = rng_for(42, &["mix", &j.to_string()]);
            let text = sample_critique(&it, &mix, &mut rng);
            let kind = classify_critique(&it, &text).unwrap();
            let k = CritiqueKind::ALL.iter().position(|&c| c == kind).unwrap();
            counts[k] += 1;
        }
        for (count, share) in counts.iter().zip(mix.normalized()) {
            let got = *count as f64 / n as f64;
            assert!(
                (got - share).abs() < 0.03,
                "{counts:?} vs {:?}",
                mix.normalized()
            );
        }
        // Unnormalised shares mean the same mix.
        let doubled = CritiqueMix {
            precise: 0.7,
            vague: 0.5,
            generic: 0.5,
            wrong: 0.3,
        };
        for (a, b) in doubled.normalized().iter().zip(mix.normalized()) {
            assert!((a - b).abs() < 1e-12);
        }
        let only_vague = CritiqueMix {
            precise: 0.0,
            vague: 1.0,
            generic: 0.0,
            wrong: 0.0,
        };
        let mut rng = rng_for(3, &["mix"]);
        for _ in 0..50 {
            assert_eq!(sample_critique(&it, &only_vague, &mut rng), "@5");
        }
    }

    #[test]
    fn mix_validation() {
        assert!(CritiqueMix::default().problems().is_empty());
        let negative = CritiqueMix {
            wrong: -0.1,
            ..Default::default()
        };
        let problems = negative.problems();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "wrong");
        let zero = CritiqueMix {
            precise: 0.0,
            vague: 0.0,
            generic: 0.0,
            wrong: 0.0,
        };
        assert_eq!(zero.problems().len(), 1);
        let parsed: Result<CritiqueMix, _> =
            serde_json::from_value(serde_json::json!({"precise": 1.0, "helpful": 2.0}));
        assert!(parsed.unwrap_err().to_string().contains("helpful"));
        let partial: CritiqueMix =
            serde_json::from_value(serde_json::json!({"wrong": 0.0})).unwrap();
        assert_eq!(partial.precise, 0.35);
        assert_eq!(partial.wrong, 0.0);
    }
}
