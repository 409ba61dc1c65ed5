//! Scalar reward models: a decoder with a sequence-classification head (`score.weight`, as
//! `LlamaForSequenceClassification` and `Qwen2ForSequenceClassification` save it). The
//! reward of an answer is the head's first output at the last token of the conversation
//! (the prompt as the user's turn, the answer as the assistant's) in the model's own chat
//! format, as Hugging Face's sequence-classification models read it.

use std::path::Path;

use burn::prelude::*;

use crate::hf::{self, ScoreHead};
use crate::llama::Llama;
use crate::sampling::PaddedBatch;
use crate::text::TextTokenizer;
use crate::LmError;

/// A reward model on a backend.
pub struct RewardModel<B: Backend> {
    model: Llama<B>,
    /// `[d_model, labels]`.
    score: Tensor<B, 2>,
    tokenizer: TextTokenizer,
    device: B::Device,
    max_len: usize,
}

impl<B: Backend> RewardModel<B> {
    /// Loads a Hugging Face `*ForSequenceClassification` checkpoint directory.
    pub fn open(dir: &Path, device: &B::Device) -> Result<Self, LmError> {
        let (config, model, tokenizer, score) = hf::load_with_score::<B>(dir, device)?;
        let ScoreHead { weight, labels } = score.ok_or_else(|| LmError::Checkpoint {
            path: dir.join("config.json"),
            message: "not a sequence-classification checkpoint (its `architectures` must name a *ForSequenceClassification class with a `score.weight` head)".into(),
        })?;
        let score =
            Tensor::<B, 2>::from_data(TensorData::new(weight, [labels, config.d_model]), device)
                .transpose();
        Ok(Self {
            model,
            score,
            tokenizer,
            device: device.clone(),
            max_len: config.max_len,
        })
    }

    /// The token ids the model reads for a prompt and an answer.
    pub fn tokens(&self, prompt: &str, answer: &str) -> Result<Vec<u32>, LmError> {
        let text = self
            .tokenizer
            .conversation(&[("user", prompt), ("assistant", answer)])?;
        // As the engine reads a chat prompt: BOS first where the model wants it.
        let ids = self.tokenizer.encode_prompt(&text)?;
        if ids.len() > self.max_len {
            return Err(LmError::Request(format!(
                "the conversation is {} tokens, more than the model's {}",
                ids.len(),
                self.max_len
            )));
        }
        Ok(ids)
    }

    /// The reward of each row of token ids (the first label of the head).
    pub fn rewards_of(&self, rows: &[Vec<u32>]) -> Vec<f32> {
        if rows.is_empty() {
            return Vec::new();
        }
        let batch = PaddedBatch::<B>::new(rows, &self.device);
        let hidden = self
            .model
            .last_hidden(batch.tokens, batch.positions, batch.mask);
        let scores = hidden.matmul(self.score.clone());
        let [b, labels] = scores.dims();
        let values: Vec<f32> = scores
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap_or_default();
        (0..b).map(|r| values[r * labels]).collect()
    }

    /// The reward of each (prompt, answer).
    pub fn rewards(&self, pairs: &[(&str, &str)]) -> Result<Vec<f32>, LmError> {
        let rows = pairs
            .iter()
            .map(|(p, a)| self.tokens(p, a))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.rewards_of(&rows))
    }
}
