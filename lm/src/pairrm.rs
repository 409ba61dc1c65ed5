//! PairRM (llm-blender's pairwise reward model): a DeBERTa-v3 encoder ([`crate::deberta`])
//! reads the prompt and two candidate answers as one sequence,
//!
//! ```text
//! [CLS] <|source|> prompt… [SEP] [CLS] <|candidate1|> answer 1… [SEP] [CLS] <|candidate2|> answer 2… [SEP]
//! ```
//!
//! (the prompt cut to `source_maxlength` tokens, each answer to half of what is left of
//! `source_maxlength + 2 · candidate_maxlength`), and a head — `Linear(2h, h)`, `tanh`,
//! `Linear(h, n_tasks)` — scores the prompt's prefix-token state concatenated with each
//! candidate's. One order's logit is the mean over tasks of `head(src, c1) − head(src, c2)`:
//! positive when the first answer is better. llm-blender's `compare` reads a pair in both
//! orders, `logit([A, B]) − logit([B, A])`; [`PairRm::compare`] does the same.
//!
//! Loads a Hugging Face directory as `llm-blender/PairRM-hf` has it — `config.json` (the
//! DeBERTa-v2 keys plus `n_tasks` and the prefix token ids), `tokenizer.json`, and
//! `model.safetensors` or `pytorch_model.bin` with the tensors `pretrained_model.…` (the
//! encoder) and `head_layer.1.…` / `head_layer.4.…` (the head) — or as `llm-blender/PairRM`
//! has it, whose `config.json` is llm-blender's ranker config (the encoder is then
//! DeBERTa-v3-large's, and the tokenizer DeBERTa-v3's `tokenizer.json` with llm-blender's
//! prefix tokens added, as llm-blender adds them).

use std::path::Path;

use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use serde_json::Value;

use crate::deberta::{Deberta, DebertaConfig};
use crate::weights::Weights;
use crate::LmError;

fn err(path: &Path, message: impl std::fmt::Display) -> LmError {
    LmError::Checkpoint {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// llm-blender's defaults for PairRM: the prompt's share of the sequence and each answer's.
pub const SOURCE_MAX_TOKENS: usize = 1224;
pub const CANDIDATE_MAX_TOKENS: usize = 412;

/// The token ids the layout uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayoutTokens {
    pub cls: u32,
    pub sep: u32,
    pub pad: u32,
    pub source: u32,
    pub candidate1: u32,
    pub candidate2: u32,
}

/// One laid-out pair: its token ids and where the three prefix tokens are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairInput {
    pub ids: Vec<u32>,
    pub source_at: usize,
    pub candidate1_at: usize,
    pub candidate2_at: usize,
}

/// PairRM's tokenizer and input layout.
pub struct PairTokenizer {
    inner: tokenizers::Tokenizer,
    pub tokens: LayoutTokens,
    pub source_max_tokens: usize,
    pub candidate_max_tokens: usize,
}

/// The prefix tokens llm-blender adds to DeBERTa-v3's vocabulary, in order (128001–128004).
pub const PREFIX_TOKENS: [&str; 4] = [
    "<|source|>",
    "<|candidate1|>",
    "<|candidate2|>",
    "<|candidate|>",
];

impl PairTokenizer {
    /// Reads a DeBERTa-v3 `tokenizer.json` (truncation and padding saved in it are switched
    /// off), adds llm-blender's prefix tokens where the file lacks them, and takes the
    /// lengths and any prefix ids from `config` (a PairRM `config.json`, `config_path` for
    /// errors).
    pub fn open(
        path: &Path,
        config: &Value,
        config_path: &Path,
        source_max_tokens: Option<usize>,
        candidate_max_tokens: Option<usize>,
    ) -> Result<Self, LmError> {
        let mut inner = tokenizers::Tokenizer::from_file(path).map_err(|e| err(path, e))?;
        inner
            .with_truncation(None)
            .map_err(|e| err(path, e))?
            .with_padding(None);
        let missing: Vec<tokenizers::AddedToken> = PREFIX_TOKENS
            .iter()
            .filter(|t| inner.token_to_id(t).is_none())
            .map(|t| tokenizers::AddedToken::from(*t, false))
            .collect();
        inner.add_tokens(&missing);
        let token = |key: &str, text: &str, fallback: Option<u32>| -> Result<u32, LmError> {
            let id = inner.token_to_id(text).or(fallback);
            match (config[key].as_u64().map(|v| v as u32), id) {
                (Some(configured), Some(id)) if configured != id => Err(err(
                    config_path,
                    format!(
                        "`{key}` is {configured}, but the tokenizer gives `{text}` the id {id}"
                    ),
                )),
                (configured, id) => configured
                    .or(id)
                    .ok_or_else(|| err(path, format!("the tokenizer has no `{text}` token"))),
            }
        };
        let tokens = LayoutTokens {
            cls: token("cls_token_id", "[CLS]", Some(1))?,
            sep: token("sep_token_id", "[SEP]", Some(2))?,
            pad: token("pad_token_id", "[PAD]", Some(0))?,
            source: token("source_prefix_id", PREFIX_TOKENS[0], None)?,
            candidate1: token("cand1_prefix_id", PREFIX_TOKENS[1], None)?,
            candidate2: token("cand2_prefix_id", PREFIX_TOKENS[2], None)?,
        };
        let length = |key: &str, given: Option<usize>, default: usize| {
            given
                .or_else(|| config[key].as_u64().map(|v| v as usize))
                .unwrap_or(default)
        };
        let source_max_tokens = length("source_maxlength", source_max_tokens, SOURCE_MAX_TOKENS);
        let candidate_max_tokens = length(
            "candidate_maxlength",
            candidate_max_tokens,
            CANDIDATE_MAX_TOKENS,
        );
        if source_max_tokens < 3 || candidate_max_tokens < 3 {
            return Err(err(
                config_path,
                "the prompt and answer lengths must be at least 3 tokens",
            ));
        }
        Ok(Self {
            inner,
            tokens,
            source_max_tokens,
            candidate_max_tokens,
        })
    }

    /// A text's token ids after a prefix token, encoded as llm-blender encodes them: the
    /// prefix's text and the text as one string (so the tokenizer sees the text where it
    /// follows an added token), `[SEP]` in the text read as a space, without special tokens
    /// and without the prefix itself.
    pub fn encode_after(&self, prefix: u32, text: &str) -> Result<Vec<u32>, LmError> {
        let prefix_text = self
            .inner
            .id_to_token(prefix)
            .ok_or_else(|| LmError::Tokenize(format!("the tokenizer has no token {prefix}")))?;
        let text = text.replace("[SEP]", " ");
        let encoding = self
            .inner
            .encode(format!("{prefix_text}{text}"), false)
            .map_err(|e| LmError::Tokenize(e.to_string()))?;
        match encoding.get_ids().split_first() {
            Some((&first, rest)) if first == prefix => Ok(rest.to_vec()),
            _ => Err(LmError::Tokenize(format!(
                "`{prefix_text}` is not one token of the tokenizer (an added token)"
            ))),
        }
    }

    /// The sequence PairRM reads for `source` with `candidate1` first and `candidate2` second.
    pub fn layout(
        &self,
        source: &str,
        candidate1: &str,
        candidate2: &str,
    ) -> Result<PairInput, LmError> {
        Ok(lay_out(
            &self.tokens,
            &self.encode_after(self.tokens.source, source)?,
            &self.encode_after(self.tokens.candidate1, candidate1)?,
            &self.encode_after(self.tokens.candidate2, candidate2)?,
            self.source_max_tokens,
            self.candidate_max_tokens,
        ))
    }
}

/// A PairRM model on a backend.
pub struct PairRm<B: Backend> {
    pub encoder: Deberta<B>,
    /// `Linear(2·hidden, hidden)` and `Linear(hidden, n_tasks)`.
    head_in: Linear<B>,
    head_out: Linear<B>,
    pub tokenizer: PairTokenizer,
    device: B::Device,
}

impl<B: Backend> PairRm<B> {
    /// Loads a PairRM checkpoint directory: `llm-blender/PairRM-hf`'s layout (a DeBERTa-v2
    /// `config.json` with PairRM's keys), or llm-blender's own `llm-blender/PairRM` (whose
    /// `config.json` is llm-blender's ranker config: the encoder is then DeBERTa-v3-large's).
    /// The tokenizer is `tokenizer` if given, else the directory's `tokenizer.json`.
    /// `source_max_tokens` / `candidate_max_tokens` override the lengths in `config.json`
    /// (`source_maxlength`, `candidate_maxlength`; llm-blender's 1224 and 412 when it has none).
    pub fn open(
        dir: &Path,
        tokenizer: Option<&Path>,
        source_max_tokens: Option<usize>,
        candidate_max_tokens: Option<usize>,
        device: &B::Device,
    ) -> Result<Self, LmError> {
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path)
            .map_err(|e| err(&config_path, format!("cannot read: {e}")))?;
        let hf: Value =
            serde_json::from_str(&text).map_err(|e| err(&config_path, format!("not JSON: {e}")))?;
        let weights = Weights::open(dir)?;
        // The vocabulary is the embedding's rows: llm-blender resized it to the tokenizer
        // (128,005) where DeBERTa-v3's config says 128,100.
        let embedding = "pretrained_model.embeddings.word_embeddings.weight";
        let rows = weights.shape(embedding).map(|s| s[0]);
        let mut config = if hf.get("hidden_size").is_none() && hf.get("ranker_type").is_some() {
            let model = hf["model_name"].as_str().unwrap_or("?");
            if model != "microsoft/deberta-v3-large" {
                return Err(err(
                    &config_path,
                    format!("llm-blender ranker on `{model}`: only microsoft/deberta-v3-large (PairRM) is known"),
                ));
            }
            DebertaConfig::deberta_v3_large(rows.unwrap_or(128_005))
        } else {
            DebertaConfig::from_json(&hf, &config_path)?
        };
        if let Some(rows) = rows {
            config.vocab_size = rows;
        }
        let tasks = hf["n_tasks"].as_u64().unwrap_or(1) as usize;
        let encoder = Deberta::load(&config, &weights, "pretrained_model.", device)?;
        let d = config.hidden_size;
        let linear = |name: &str, d_in: usize, d_out: usize| -> Result<Linear<B>, LmError> {
            let mut layer = LinearConfig::new(d_in, d_out).init::<B>(device);
            let w = weights.tensor(&format!("{name}.weight"), &[d_out, d_in])?;
            let b = weights.tensor(&format!("{name}.bias"), &[d_out])?;
            layer.weight = Param::from_tensor(
                Tensor::<B, 2>::from_data(TensorData::new(w, [d_out, d_in]), device).transpose(),
            );
            layer.bias = Some(Param::from_tensor(Tensor::from_data(
                TensorData::new(b, [d_out]),
                device,
            )));
            Ok(layer)
        };
        let head_in = linear("head_layer.1", 2 * d, d)?;
        let head_out = linear("head_layer.4", d, tasks)?;
        let tokenizer_path =
            tokenizer.map_or_else(|| dir.join("tokenizer.json"), Path::to_path_buf);
        if !tokenizer_path.is_file() {
            return Err(err(
                &tokenizer_path,
                "is missing: PairRM reads DeBERTa-v3's tokenizer.json (set `tokenizer`, or see `scripts/fetch-models.sh deberta-v3-tokenizer`)",
            ));
        }
        let tokenizer = PairTokenizer::open(
            &tokenizer_path,
            &hf,
            &config_path,
            source_max_tokens,
            candidate_max_tokens,
        )?;
        if let Some(bad) = [
            tokenizer.tokens.source,
            tokenizer.tokens.candidate1,
            tokenizer.tokens.candidate2,
        ]
        .into_iter()
        .find(|&id| id as usize >= config.vocab_size)
        {
            return Err(err(
                &tokenizer_path,
                format!(
                    "prefix token id {bad} is outside the model's {} embeddings",
                    config.vocab_size
                ),
            ));
        }
        Ok(Self {
            encoder,
            head_in,
            head_out,
            tokenizer,
            device: device.clone(),
        })
    }

    /// The sequence PairRM reads for `source` with `candidate1` first and `candidate2` second.
    pub fn layout(
        &self,
        source: &str,
        candidate1: &str,
        candidate2: &str,
    ) -> Result<PairInput, LmError> {
        self.tokenizer.layout(source, candidate1, candidate2)
    }

    /// The encoder's last hidden states `[batch, time, hidden]` of right-padded rows.
    pub fn hidden(&self, rows: &[PairInput]) -> Tensor<B, 3> {
        let t = rows.iter().map(|r| r.ids.len()).max().unwrap_or(1).max(1);
        let b = rows.len();
        let mut ids = Vec::with_capacity(b * t);
        let mut mask = Vec::with_capacity(b * t);
        for row in rows {
            ids.extend(row.ids.iter().map(|&i| i as i64));
            ids.extend(std::iter::repeat_n(
                i64::from(self.tokenizer.tokens.pad),
                t - row.ids.len(),
            ));
            mask.extend(std::iter::repeat_n(1.0f32, row.ids.len()));
            mask.extend(std::iter::repeat_n(0.0f32, t - row.ids.len()));
        }
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [b, t]), &self.device);
        let mask = Tensor::<B, 2>::from_data(TensorData::new(mask, [b, t]), &self.device);
        self.encoder.forward(ids, mask)
    }

    /// One order's logit for each laid-out pair: mean over tasks of
    /// `head([h_source; h_candidate1]) − head([h_source; h_candidate2])`.
    pub fn logits(&self, rows: &[PairInput]) -> Vec<f32> {
        if rows.is_empty() {
            return Vec::new();
        }
        let hidden = self.hidden(rows);
        let [b, t, d] = hidden.dims();
        let flat = hidden.reshape([b * t, d]);
        let pick = |at: fn(&PairInput) -> usize| {
            let index: Vec<i64> = rows
                .iter()
                .enumerate()
                .map(|(r, row)| (r * t + at(row)) as i64)
                .collect();
            flat.clone().select(
                0,
                Tensor::<B, 1, Int>::from_data(TensorData::new(index, [b]), &self.device),
            )
        };
        let source = pick(|r| r.source_at);
        let head = |candidate: Tensor<B, 2>| {
            let joined = Tensor::cat(vec![source.clone(), candidate], 1);
            self.head_out.forward(self.head_in.forward(joined).tanh())
        };
        let left = head(pick(|r| r.candidate1_at));
        let right = head(pick(|r| r.candidate2_at));
        (left - right)
            .mean_dim(1)
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap_or_default()
    }

    /// llm-blender's comparison of each (prompt, a, b): `logit([a, b]) − logit([b, a])`,
    /// positive when `a` is the better answer.
    pub fn compare(&self, pairs: &[(&str, &str, &str)]) -> Result<Vec<f32>, LmError> {
        let mut rows = Vec::with_capacity(2 * pairs.len());
        for (source, a, b) in pairs {
            rows.push(self.layout(source, a, b)?);
            rows.push(self.layout(source, b, a)?);
        }
        Ok(self.logits(&rows).chunks(2).map(|l| l[0] - l[1]).collect())
    }
}

/// Lays out token ids as PairRM reads them: each part encoded with its prefix token as
/// `[CLS] prefix text… [SEP]` and cut to its length — the source to `source_max`, each
/// candidate to half of what the source left of `source_max + 2 · candidate_max`.
pub fn lay_out(
    tokens: &LayoutTokens,
    source: &[u32],
    candidate1: &[u32],
    candidate2: &[u32],
    source_max: usize,
    candidate_max: usize,
) -> PairInput {
    let part = |prefix: u32, text: &[u32], max: usize| {
        let keep = text.len().min(max.saturating_sub(3));
        let mut ids = Vec::with_capacity(keep + 3);
        ids.push(tokens.cls);
        ids.push(prefix);
        ids.extend_from_slice(&text[..keep]);
        ids.push(tokens.sep);
        ids
    };
    let total = source_max + 2 * candidate_max;
    let mut ids = part(tokens.source, source, source_max);
    let each = (total - ids.len()) / 2;
    let candidate1_at = ids.len() + 1;
    ids.extend(part(tokens.candidate1, candidate1, each));
    let candidate2_at = ids.len() + 1;
    ids.extend(part(tokens.candidate2, candidate2, each));
    PairInput {
        ids,
        source_at: 1,
        candidate1_at,
        candidate2_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKENS: LayoutTokens = LayoutTokens {
        cls: 1,
        sep: 2,
        pad: 0,
        source: 10,
        candidate1: 11,
        candidate2: 12,
    };

    #[test]
    fn pairs_are_laid_out_and_cut_as_llm_blender_cuts_them() {
        let input = lay_out(&TOKENS, &[20, 21], &[30], &[40, 41, 42], 8, 5);
        assert_eq!(
            input.ids,
            vec![1, 10, 20, 21, 2, 1, 11, 30, 2, 1, 12, 40, 41, 42, 2]
        );
        assert_eq!(
            (input.source_at, input.candidate1_at, input.candidate2_at),
            (1, 6, 10)
        );
        // A long source is cut to its limit; the answers share what it left.
        let long: Vec<u32> = (100..120).collect();
        let answer: Vec<u32> = (200..220).collect();
        let input = lay_out(&TOKENS, &long, &answer, &answer, 8, 5);
        // Source: 8 tokens; the 10 left split 5 + 5.
        assert_eq!(input.ids.len(), 18);
        assert_eq!(&input.ids[..8], &[1, 10, 100, 101, 102, 103, 104, 2]);
        assert_eq!(&input.ids[8..13], &[1, 11, 200, 201, 2]);
        // A short source leaves the answers more than candidate_max each.
        let input = lay_out(&TOKENS, &[20], &answer, &answer, 8, 5);
        assert_eq!(input.ids.len(), 4 + 2 * 7);
    }
}
