//! Reading the part of an answer a verifier checks: the final number of a math answer, the
//! program of a code answer.

/// The final answer of a math response, as written: the number on the line of the last
/// `####` that has one, else the last `\boxed{...}`, else after the last "the answer is" /
/// "answer:", else the last number.
pub fn final_answer(text: &str) -> Option<String> {
    // The last `####` marker that has a number on its line (or, when the rest of its line
    // is blank, on the next line that is not). A marker followed by no number (a model
    // copying the format's placeholder, `#### N`) is no answer, and the numbers of the
    // lines after it are not its answer.
    for (at, _) in text.rmatch_indices("####") {
        let rest = text[at + 4..].trim_start_matches('#');
        let mut lines = rest.lines();
        let line = match lines.next() {
            Some(line) if line.trim().is_empty() => {
                lines.find(|l| !l.trim().is_empty()).unwrap_or_default()
            }
            Some(line) => line,
            None => "",
        };
        if let Some(n) = first_number(line) {
            return Some(n);
        }
    }
    if let Some(boxed) = last_boxed(text) {
        if let Some(n) = first_number(&boxed) {
            return Some(n);
        }
    }
    let lower = text.to_lowercase();
    for cue in ["the answer is", "final answer", "answer:"] {
        if let Some(at) = lower.rfind(cue) {
            // `lower` may differ in byte length from `text` only for non-ASCII case
            // mappings; read from the lowered text, whose digits are the same.
            if let Some(n) = first_number(&lower[at + cue.len()..]) {
                return Some(n);
            }
        }
    }
    last_number(text)
}

/// The content of the last `\boxed{...}`, braces balanced.
fn last_boxed(text: &str) -> Option<String> {
    let at = text.rfind("\\boxed{")?;
    let body = &text[at + "\\boxed{".len()..];
    let mut depth = 1;
    for (i, c) in body.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(body[..i].to_string());
                }
            }
            _ => {}
        }
    }
    None
}

/// Every number token in `text`: an optional minus, digits with optional thousands
/// separators, an optional decimal part, an optional `/denominator`; `\frac{a}{b}` too.
fn numbers(text: &str) -> Vec<String> {
    let text = text
        .replace("\\frac{", "frac{")
        .replace("\\dfrac{", "frac{");
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        // frac{a}{b}
        if chars[i..].starts_with(&['f', 'r', 'a', 'c', '{']) {
            let rest: String = chars[i + 5..].iter().collect();
            if let Some((a, b, used)) = frac(&rest) {
                out.push(format!("{a}/{b}"));
                i += 5 + used;
                continue;
            }
        }
        let negative = chars[i] == '-' && chars.get(i + 1).is_some_and(|c| c.is_ascii_digit());
        let start = if negative { i + 1 } else { i };
        if start < chars.len() && chars[start].is_ascii_digit() {
            let mut j = start;
            let mut token = String::new();
            if negative {
                token.push('-');
            }
            while j < chars.len() {
                let c = chars[j];
                let next_digit = chars.get(j + 1).is_some_and(|c| c.is_ascii_digit());
                if c.is_ascii_digit() {
                    token.push(c);
                } else if c == ',' && next_digit && thousands_group(&chars[j + 1..]) {
                    // a thousands separator: skip it
                } else if (c == '.' || c == '/') && next_digit {
                    token.push(c);
                } else {
                    break;
                }
                j += 1;
            }
            out.push(token);
            i = j;
            continue;
        }
        i += 1;
    }
    out
}

/// Whether the digits after a comma form a group of exactly three.
fn thousands_group(after: &[char]) -> bool {
    after.len() >= 3
        && after[..3].iter().all(|c| c.is_ascii_digit())
        && !after.get(3).is_some_and(|c| c.is_ascii_digit())
}

/// `a}{b}` after `frac{`: the two numbers and the characters read.
fn frac(rest: &str) -> Option<(String, String, usize)> {
    let close = rest.find('}')?;
    let a = rest[..close].trim();
    let after = rest[close + 1..].strip_prefix('{')?;
    let close_b = after.find('}')?;
    let b = after[..close_b].trim();
    let ok = |s: &str| !s.is_empty() && s.parse::<f64>().is_ok();
    (ok(a) && ok(b)).then(|| {
        let used = rest[..close + 1].chars().count() + 1 + after[..close_b + 1].chars().count();
        (a.to_string(), b.to_string(), used)
    })
}

fn first_number(text: &str) -> Option<String> {
    numbers(text).into_iter().next()
}

fn last_number(text: &str) -> Option<String> {
    numbers(text).pop()
}

/// The value of a number token (`-1234.5`, `3/4`).
pub fn value(token: &str) -> Option<f64> {
    let token = token.trim().trim_end_matches('.');
    match token.split_once('/') {
        Some((a, b)) => {
            let (a, b) = (a.parse::<f64>().ok()?, b.parse::<f64>().ok()?);
            (b != 0.0).then(|| a / b)
        }
        None => token.parse::<f64>().ok(),
    }
}

/// Whether two values are the same number (to a relative 1e-6, for decimals written
/// out from fractions).
pub fn same_number(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

/// The program in a code answer: the fenced block that defines `entry_point` (the first
/// fenced block when none does, the longest if several do), or the whole text when there
/// is no fence.
pub fn program(text: &str, entry_point: Option<&str>) -> String {
    let blocks = fenced_blocks(text);
    if blocks.is_empty() {
        return text.to_string();
    }
    if let Some(entry) = entry_point {
        let def = format!("def {entry}");
        if let Some(block) = blocks
            .iter()
            .filter(|b| b.contains(&def))
            .max_by_key(|b| b.len())
        {
            return block.clone();
        }
    }
    blocks[0].clone()
}

/// The contents of every ``` fenced block (the language tag dropped); an unclosed last
/// fence runs to the end of the text.
fn fenced_blocks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("```") {
        let after = &rest[open + 3..];
        let body_start = after.find('\n').map_or(after.len(), |i| i + 1);
        let body = &after[body_start..];
        match body.find("```") {
            Some(close) => {
                out.push(body[..close].to_string());
                rest = &body[close + 3..];
            }
            None => {
                out.push(body.to_string());
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_answers_are_read_in_order_of_preference() {
        let cases = [
            ("She has 3 apples, then 5.\n#### 8", "8"),
            ("#### 1,234 dollars", "1234"),
            ("so x = 4 and \\boxed{\\frac{3}{4}} done", "3/4"),
            ("The answer is -12.5 units, not 7.", "-12.5"),
            ("Final answer: 42", "42"),
            ("First 10, then 20, finally 30 apples.", "30"),
            ("It costs $2,500.00.", "2500.00"),
            ("Answer: 0.5", "0.5"),
            ("\\boxed{12}", "12"),
            // A `####` with no number on its line is no answer: neither the numbers of
            // the lines after it nor a marker placeholder count.
            ("#### N\nresult = -3 * 1 + 7 * 9\nSo the result is 60", "60"),
            ("#### 8\nchecked: 2 + 6\n#### N", "8"),
            ("The total:\n####\n\n15 apples", "15"),
            ("#### N\n```python\nprint(2 * 3)\n```\n\\boxed{6}", "6"),
        ];
        for (text, expected) in cases {
            assert_eq!(final_answer(text).as_deref(), Some(expected), "{text}");
        }
        assert_eq!(final_answer("no digits here"), None);
        // A list, not thousands.
        assert_eq!(final_answer("1,2,3"), Some("3".into()));
    }

    #[test]
    fn values_compare_as_numbers() {
        assert!(same_number(value("3/4").unwrap(), value("0.75").unwrap()));
        assert!(same_number(
            value("2500.00").unwrap(),
            value("2500").unwrap()
        ));
        assert!(same_number(value("-12.").unwrap(), -12.0));
        assert!(!same_number(value("12").unwrap(), value("13").unwrap()));
        assert_eq!(value("1/0"), None);
    }

    #[test]
    fn programs_are_read_from_fenced_blocks() {
        let text =
            "Here:\n```python\nimport math\n```\nand\n```python\ndef f(x):\n    return x\n```\n";
        assert_eq!(program(text, Some("f")), "def f(x):\n    return x\n");
        assert_eq!(program(text, None), "import math\n");
        assert_eq!(program("def f(): pass", Some("f")), "def f(): pass");
        assert_eq!(
            program("```\ndef f():\n  return 1", Some("f")),
            "def f():\n  return 1"
        );
    }
}
