//! The vocabulary-sized weights of a decoder: the token embedding table, `[vocab, d_model]`
//! (which a tied output head also reads), and an untied output head, `[d_model, vocab]`.
//!
//! Each is one tensor on most backends. wgpu binds each tensor as one storage buffer, and the
//! largest binding a device allows can be smaller than a vocabulary's table: WebGPU's default
//! limit and lavapipe's are 128 MiB, where Qwen2.5-0.5B's table is 544 MB and Gemma 3's 671
//! MB, and Qwen2.5's untied heads as large. There they are kept as blocks of rows (of the
//! table) or columns (of the head) under the limit, each a parameter of its own (so full
//! fine-tuning trains every block), and lookups and products work block by block.
//!
//! The first block keeps the name `weight`, so records written by earlier versions (one
//! tensor, no `rest`; a head was burn's `Linear`, whose `bias` was always empty) load as
//! one block.

use burn::module::{Module, Param};
use burn::prelude::*;
use burn::tensor::module::embedding;

use crate::LmError;

#[derive(Module, Debug)]
pub struct TokenTable<B: Backend> {
    /// Rows `0..n` of the table: all of them when it is one block.
    pub weight: Param<Tensor<B, 2>>,
    /// The following blocks of rows, in order, when the table is split.
    pub rest: Option<Vec<Param<Tensor<B, 2>>>>,
}

impl<B: Backend> TokenTable<B> {
    /// A table of one block.
    pub fn new(weight: Tensor<B, 2>) -> Self {
        Self {
            weight: Param::from_tensor(weight),
            rest: None,
        }
    }

    /// A table of values drawn from N(0, 1), as burn's `Embedding` starts, in blocks of at
    /// most `max_bytes` each when given.
    pub fn random(vocab: usize, d: usize, max_bytes: Option<usize>, device: &B::Device) -> Self {
        let rows = block_rows(vocab, d, max_bytes);
        let blocks = (0..vocab.max(1)).step_by(rows).map(|start| {
            let n = rows.min(vocab - start);
            Param::from_tensor(Tensor::random(
                [n, d],
                burn::tensor::Distribution::Normal(0.0, 1.0),
                device,
            ))
        });
        let (weight, rest) = first_and_rest(blocks).expect("at least one block");
        Self { weight, rest }
    }

    /// A table from its values (`vocab × d` row-major), in blocks of at most `max_bytes`
    /// each when given (built block by block, so no tensor over the limit is ever made).
    pub fn from_values(
        values: Vec<f32>,
        vocab: usize,
        d: usize,
        max_bytes: Option<usize>,
        device: &B::Device,
    ) -> Self {
        let rows = block_rows(vocab, d, max_bytes);
        let blocks = values.chunks(rows * d).map(|chunk| {
            Param::from_tensor(Tensor::from_data(
                TensorData::new(chunk.to_vec(), [chunk.len() / d, d]),
                device,
            ))
        });
        let (weight, rest) = first_and_rest(blocks)
            .unwrap_or_else(|| (Param::from_tensor(Tensor::zeros([0, d], device)), None));
        Self { weight, rest }
    }

    /// The blocks, in row order.
    pub fn blocks(&self) -> impl Iterator<Item = &Param<Tensor<B, 2>>> {
        std::iter::once(&self.weight).chain(self.rest.iter().flatten())
    }

    /// The number of tokens.
    pub fn vocab(&self) -> usize {
        self.blocks().map(|b| b.dims()[0]).sum()
    }

    pub fn d_model(&self) -> usize {
        self.weight.dims()[1]
    }

    pub fn device(&self) -> B::Device {
        self.weight.device()
    }

    /// The rows of `tokens [b, t]`: `[b, t, d]`.
    pub fn forward(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let Some(rest) = &self.rest else {
            return embedding(self.weight.val(), tokens);
        };
        // Each block looks up the tokens in its range (others read its row 0, then zeroed).
        let mut start = 0i64;
        let mut sum: Option<Tensor<B, 3>> = None;
        for block in std::iter::once(&self.weight).chain(rest) {
            let rows = block.dims()[0] as i64;
            let inside = tokens
                .clone()
                .greater_equal_elem(start)
                .bool_and(tokens.clone().lower_elem(start + rows));
            let local = tokens.clone().sub_scalar(start).clamp(0, rows - 1);
            let part = embedding(block.val(), local) * inside.float().unsqueeze_dim::<3>(2);
            sum = Some(match sum {
                Some(sum) => sum + part,
                None => part,
            });
            start += rows;
        }
        sum.expect("a table has at least one block")
    }

    /// The tied head: `x [n, d]` times the table's transpose, `[n, vocab]`.
    pub fn logits(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        match &self.rest {
            None => x.matmul(self.weight.val().transpose()),
            Some(_) => Tensor::cat(
                self.blocks()
                    .map(|b| x.clone().matmul(b.val().transpose()))
                    .collect(),
                1,
            ),
        }
    }

    /// The whole table as one tensor (on a backend with a binding limit, over it when the
    /// table is split: read it with [`TokenTable::values`] there).
    pub fn whole(&self) -> Tensor<B, 2> {
        match &self.rest {
            None => self.weight.val(),
            Some(_) => Tensor::cat(self.blocks().map(|b| b.val()).collect(), 0),
        }
    }

    /// The table's values, `vocab × d` row-major, read block by block.
    pub fn values(&self) -> Result<Vec<f32>, LmError> {
        let mut values = Vec::with_capacity(self.vocab() * self.d_model());
        for block in self.blocks() {
            values.extend(
                block
                    .val()
                    .into_data()
                    .convert::<f32>()
                    .into_vec::<f32>()
                    .map_err(|e| LmError::Tokenize(format!("{e:?}")))?,
            );
        }
        Ok(values)
    }
}

/// An untied output head, `[d_model, vocab]` (burn's `Linear` layout, no bias), in blocks
/// of columns on backends with a binding limit (see the module's documentation).
#[derive(Module, Debug)]
pub struct VocabHead<B: Backend> {
    /// Columns `0..n` of the head: all of them when it is one block.
    pub weight: Param<Tensor<B, 2>>,
    /// The following blocks of columns, in order, when the head is split.
    pub rest: Option<Vec<Param<Tensor<B, 2>>>>,
}

impl<B: Backend> VocabHead<B> {
    /// A head of one block from a `[d_model, vocab]` weight.
    pub fn new(weight: Tensor<B, 2>) -> Self {
        Self {
            weight: Param::from_tensor(weight),
            rest: None,
        }
    }

    /// A head from its rows as checkpoints store them (`vocab × d` row-major: a row per
    /// token), in blocks of at most `max_bytes` each when given.
    pub fn from_rows(
        values: Vec<f32>,
        vocab: usize,
        d: usize,
        max_bytes: Option<usize>,
        device: &B::Device,
    ) -> Self {
        let TokenTable { weight, rest } =
            TokenTable::<B>::from_values(values, vocab, d, max_bytes, device);
        // Untracked first: on an autodiff backend the block is a tracked leaf, its transpose
        // would be a node of the graph, and a parameter must be a leaf of its own.
        let transpose = |p: Param<Tensor<B, 2>>| {
            Param::from_tensor(p.val().set_require_grad(false).transpose())
        };
        Self {
            weight: transpose(weight),
            rest: rest.map(|rest| rest.into_iter().map(transpose).collect()),
        }
    }

    /// A head of random weights, as burn's `Linear` starts, in blocks when `max_bytes` says.
    pub fn random(vocab: usize, d: usize, max_bytes: Option<usize>, device: &B::Device) -> Self {
        let rows = block_rows(vocab, d, max_bytes);
        let blocks = (0..vocab.max(1)).step_by(rows).map(|start| {
            burn::nn::LinearConfig::new(d, rows.min(vocab - start))
                .with_bias(false)
                .init(device)
                .weight
        });
        let (weight, rest) = first_and_rest(blocks).expect("at least one block");
        Self { weight, rest }
    }

    /// The blocks, in column order.
    pub fn blocks(&self) -> impl Iterator<Item = &Param<Tensor<B, 2>>> {
        std::iter::once(&self.weight).chain(self.rest.iter().flatten())
    }

    /// The number of tokens.
    pub fn vocab(&self) -> usize {
        self.blocks().map(|b| b.dims()[1]).sum()
    }

    /// Logits of `x [n, d]`: `[n, vocab]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        match &self.rest {
            None => x.matmul(self.weight.val()),
            Some(_) => Tensor::cat(
                self.blocks().map(|b| x.clone().matmul(b.val())).collect(),
                1,
            ),
        }
    }

    /// The whole head as one `[d_model, vocab]` tensor (see [`TokenTable::whole`]).
    pub fn whole(&self) -> Tensor<B, 2> {
        match &self.rest {
            None => self.weight.val(),
            Some(_) => Tensor::cat(self.blocks().map(|b| b.val()).collect(), 1),
        }
    }

    /// The head's rows (`vocab × d` row-major, as checkpoints store it), read block by block.
    pub fn rows(&self) -> Result<Vec<f32>, LmError> {
        let mut values = Vec::new();
        for block in self.blocks() {
            values.extend(
                block
                    .val()
                    .transpose()
                    .into_data()
                    .convert::<f32>()
                    .into_vec::<f32>()
                    .map_err(|e| LmError::Tokenize(format!("{e:?}")))?,
            );
        }
        Ok(values)
    }
}

/// The first block, and the others when there are any.
#[allow(clippy::type_complexity)]
fn first_and_rest<B: Backend>(
    mut blocks: impl Iterator<Item = Param<Tensor<B, 2>>>,
) -> Option<(Param<Tensor<B, 2>>, Option<Vec<Param<Tensor<B, 2>>>>)> {
    let first = blocks.next()?;
    let rest: Vec<_> = blocks.collect();
    Some((first, (!rest.is_empty()).then_some(rest)))
}

/// Rows per block for a `vocab × d` f32 table under `max_bytes` (all rows when unlimited or
/// when it fits).
fn block_rows(vocab: usize, d: usize, max_bytes: Option<usize>) -> usize {
    let row_bytes = d.max(1) * std::mem::size_of::<f32>();
    match max_bytes {
        Some(limit) if vocab * row_bytes > limit => (limit / row_bytes).max(1),
        _ => vocab.max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Cpu;

    fn table(max_bytes: Option<usize>) -> TokenTable<Cpu> {
        let (vocab, d) = (7, 3);
        let values: Vec<f32> = (0..vocab * d).map(|i| i as f32 * 0.5 - 3.0).collect();
        TokenTable::from_values(values, vocab, d, max_bytes, &Default::default())
    }

    #[test]
    fn a_split_table_looks_up_and_projects_as_one_block_does() {
        let whole = table(None);
        // 2 rows (24 bytes) per block: blocks of 2, 2, 2 and 1 rows.
        let split = table(Some(24));
        assert!(whole.rest.is_none());
        assert_eq!(split.blocks().count(), 4);
        assert_eq!(split.vocab(), 7);
        let device = Default::default();
        let tokens = Tensor::<Cpu, 2, Int>::from_data([[0, 6, 3], [5, 1, 2]], &device);
        let a = whole.forward(tokens.clone()).into_data();
        let b = split.forward(tokens).into_data();
        assert_eq!(a, b);
        let x = Tensor::<Cpu, 2>::from_data([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0]], &device);
        whole
            .logits(x.clone())
            .into_data()
            .assert_approx_eq::<f32>(&split.logits(x).into_data(), Default::default());
        assert_eq!(whole.values().unwrap(), split.values().unwrap());
        assert_eq!(whole.whole().into_data(), split.whole().into_data());
    }

    #[test]
    fn a_split_head_gives_the_logits_of_one_block() {
        let (vocab, d) = (7, 3);
        let rows: Vec<f32> = (0..vocab * d).map(|i| i as f32 * 0.25 - 2.0).collect();
        let device = Default::default();
        let whole = VocabHead::<Cpu>::from_rows(rows.clone(), vocab, d, None, &device);
        let split = VocabHead::<Cpu>::from_rows(rows.clone(), vocab, d, Some(24), &device);
        assert_eq!(split.blocks().count(), 4);
        assert_eq!((whole.vocab(), split.vocab()), (7, 7));
        let x = Tensor::<Cpu, 2>::from_data([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0]], &device);
        let a = whole.forward(x.clone());
        a.clone()
            .into_data()
            .assert_approx_eq::<f32>(&split.forward(x.clone()).into_data(), Default::default());
        // The same products as the rows read as a table.
        let table = TokenTable::<Cpu>::from_values(rows.clone(), vocab, d, None, &device);
        a.into_data()
            .assert_approx_eq::<f32>(&table.logits(x).into_data(), Default::default());
        assert_eq!(split.rows().unwrap(), rows);
        assert_eq!(whole.whole().into_data(), split.whole().into_data());
    }

    #[test]
    fn a_head_from_rows_is_trainable_under_autodiff() {
        // Loading an untied head (Qwen2.5's) for training: every block a leaf with a gradient.
        type Ad = burn::backend::Autodiff<Cpu>;
        let (vocab, d) = (7, 3);
        let rows: Vec<f32> = (0..vocab * d).map(|i| i as f32 * 0.25 - 2.0).collect();
        let device = Default::default();
        for max_bytes in [None, Some(24)] {
            let head = VocabHead::<Ad>::from_rows(rows.clone(), vocab, d, max_bytes, &device);
            let x = Tensor::<Ad, 2>::from_data([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0]], &device);
            let grads = head.forward(x).sum().backward();
            for block in head.blocks() {
                let grad = block.grad(&grads).expect("every block has a gradient");
                assert_eq!(grad.dims(), block.dims());
            }
        }
    }

    #[test]
    fn a_linear_record_loads_into_a_head() {
        // What earlier versions saved as an untied head: burn's Linear without a bias.
        let dir = tempfile::tempdir().unwrap();
        let device = Default::default();
        let weight: Vec<f32> = (0..21).map(|i| i as f32 * 0.5 - 5.0).collect();
        let linear = burn::nn::Linear::<Cpu> {
            weight: Param::from_tensor(Tensor::from_data(TensorData::new(weight, [3, 7]), &device)),
            bias: None,
        };
        crate::checkpoint::save_weights(linear.clone(), dir.path(), "h").unwrap();
        let loaded = crate::checkpoint::load_weights(
            VocabHead::<Cpu>::new(Tensor::zeros([3, 7], &device)),
            dir.path(),
            "h",
            &device,
        )
        .unwrap();
        assert!(loaded.rest.is_none());
        assert_eq!(loaded.whole().into_data(), linear.weight.val().into_data());
    }

    #[test]
    fn a_record_of_one_tensor_loads_into_a_table() {
        // What earlier versions saved as a model's `embedding`: burn's Embedding, `weight` only.
        let dir = tempfile::tempdir().unwrap();
        let whole = table(None);
        let old = burn::nn::Embedding {
            weight: Param::from_tensor(whole.whole()),
        };
        crate::checkpoint::save_weights(old, dir.path(), "t").unwrap();
        let loaded = crate::checkpoint::load_weights(
            TokenTable::<Cpu>::new(Tensor::zeros([7, 3], &Default::default())),
            dir.path(),
            "t",
            &Default::default(),
        )
        .unwrap();
        assert!(loaded.rest.is_none());
        assert_eq!(loaded.values().unwrap(), whole.values().unwrap());
    }
}
