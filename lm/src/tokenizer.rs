//! The character tokenizer of tiny checkpoints (`model.json` names it): one token per
//! character of an alphabet, after the special tokens every model here shares.

use serde::{Deserialize, Serialize};

use crate::LmError;

/// Special tokens every tokenizer here has.
pub const PAD: u32 = 0;
pub const BOS: u32 = 1;
pub const EOS: u32 = 2;
const SPECIALS: u32 = 3;

/// One token per character of a fixed alphabet, after `<pad>`, `<bos>` and `<eos>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CharTokenizer {
    pub alphabet: String,
}

/// The tokenizer a checkpoint names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Tokenizer {
    Chars(CharTokenizer),
}

impl Tokenizer {
    pub fn vocab_size(&self) -> usize {
        match self {
            Tokenizer::Chars(t) => t.alphabet.chars().count() + SPECIALS as usize,
        }
    }

    pub fn bos(&self) -> u32 {
        BOS
    }

    pub fn eos(&self) -> u32 {
        EOS
    }

    pub fn pad(&self) -> u32 {
        PAD
    }

    /// Token ids of a text (no special tokens added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, LmError> {
        match self {
            Tokenizer::Chars(t) => text
                .chars()
                .map(|c| {
                    t.alphabet
                        .chars()
                        .position(|a| a == c)
                        .map(|i| i as u32 + SPECIALS)
                        .ok_or_else(|| {
                            LmError::Tokenize(format!(
                                "character {c:?} is not in the tokenizer's alphabet {:?}",
                                t.alphabet
                            ))
                        })
                })
                .collect(),
        }
    }

    /// Text of token ids; special tokens are dropped.
    pub fn decode(&self, ids: &[u32]) -> String {
        match self {
            Tokenizer::Chars(t) => {
                let chars: Vec<char> = t.alphabet.chars().collect();
                ids.iter()
                    .filter(|&&id| id >= SPECIALS)
                    .filter_map(|&id| chars.get((id - SPECIALS) as usize))
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_unknown_characters() {
        let t = Tokenizer::Chars(CharTokenizer {
            alphabet: "0123456789abc:|>@=".into(),
        });
        assert_eq!(t.vocab_size(), 21);
        let ids = t.encode("ab:12").unwrap();
        assert_eq!(ids, vec![13, 14, 16, 4, 5]);
        assert_eq!(t.decode(&ids), "ab:12");
        assert!(t.encode("x").unwrap_err().to_string().contains("'x'"));
    }
}
