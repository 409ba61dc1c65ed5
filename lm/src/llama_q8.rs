//! The Llama decoder's projections in Q8_0 ([`crate::quant`]) for CPU inference: the query,
//! key and value projections fused into one matrix, the gate and up projections into
//! another, the attention output, the down projection and the output head (or the tied
//! embedding). A snapshot of the f32 weights, taken by [`crate::llama::Llama::quantize_q8`]
//! when an engine opens a model on the CPU; attention, norms and rotary embeddings stay in
//! burn, and training never sees it.

use burn::nn::Linear;
use burn::prelude::*;

use crate::quant::Q8Matrix;

/// One block's matrices.
#[derive(Debug, Clone)]
pub struct Q8Block {
    /// Query, key and value rows, stacked.
    qkv: Q8Matrix,
    /// Rows of the query, key and value parts.
    qkv_rows: [usize; 3],
    /// Qwen2's query, key and value biases, stacked as the rows are.
    qkv_bias: Option<Vec<f32>>,
    output: Q8Matrix,
    /// Gate rows, then up rows.
    gate_up: Q8Matrix,
    down: Q8Matrix,
}

/// One decoder block's projections, as the model holds them.
pub struct BlockProjections<'a, B: Backend> {
    pub query: &'a Linear<B>,
    pub key: &'a Linear<B>,
    pub value: &'a Linear<B>,
    pub output: &'a Linear<B>,
    pub gate: &'a Linear<B>,
    pub up: &'a Linear<B>,
    pub down: &'a Linear<B>,
}

/// Every block's matrices and the output head.
#[derive(Debug, Clone)]
pub struct Q8Llama {
    pub(crate) blocks: Vec<Q8Block>,
    head: Q8Matrix,
}

/// A 2-D float tensor's values, row-major, as f32.
fn values<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32 data after convert")
}

/// A `Linear`'s weight as `[out, in]` rows (burn keeps `[in, out]`).
fn quantize_linear<B: Backend>(linear: &Linear<B>) -> Option<Q8Matrix> {
    quantize_weight(linear.weight.val())
}

/// A `[d_in, d_out]` weight (burn's `Linear` layout) as `d_out` rows of Q8_0 blocks.
fn quantize_weight<B: Backend>(weight: Tensor<B, 2>) -> Option<Q8Matrix> {
    let [d_in, d_out] = weight.dims();
    Q8Matrix::quantize(&values(weight.transpose()), d_out, d_in)
}

/// `x [b, t, d]` times `matrix`: `[b, t, rows]`, `x`'s rows quantized on the way.
fn apply<B: Backend>(matrix: &Q8Matrix, x: Tensor<B, 3>) -> Vec<f32> {
    let [b, t, _] = x.dims();
    matrix.matmul(&values(x), b * t)
}

fn tensor<B: Backend>(values: Vec<f32>, shape: [usize; 3], device: &B::Device) -> Tensor<B, 3> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

impl Q8Llama {
    /// The snapshot of a model's weights: each block's projections as
    /// [`BlockProjections`], the untied head if there is one, else the token embedding;
    /// `None` when a matrix's input size is not a multiple of 32 (the model then runs in f32).
    pub fn new<'a, B: Backend>(
        blocks: impl Iterator<Item = BlockProjections<'a, B>>,
        head: Option<Tensor<B, 2>>,
        embedding: Tensor<B, 2>,
    ) -> Option<Self> {
        let blocks = blocks
            .map(|block| {
                let parts = [
                    quantize_linear(block.query)?,
                    quantize_linear(block.key)?,
                    quantize_linear(block.value)?,
                ];
                let qkv_rows = [parts[0].rows(), parts[1].rows(), parts[2].rows()];
                let qkv_bias = match (&block.query.bias, &block.key.bias, &block.value.bias) {
                    (Some(q), Some(k), Some(v)) => Some(
                        [q, k, v]
                            .into_iter()
                            .flat_map(|bias| values(bias.val()))
                            .collect(),
                    ),
                    _ => None,
                };
                Some(Q8Block {
                    qkv: Q8Matrix::stack(&parts)?,
                    qkv_rows,
                    qkv_bias,
                    output: quantize_linear(block.output)?,
                    gate_up: Q8Matrix::stack(&[
                        quantize_linear(block.gate)?,
                        quantize_linear(block.up)?,
                    ])?,
                    down: quantize_linear(block.down)?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        let head = match head {
            Some(weight) => quantize_weight(weight)?,
            None => {
                let [vocab, d] = embedding.dims();
                Q8Matrix::quantize(&values(embedding), vocab, d)?
            }
        };
        Some(Self { blocks, head })
    }

    /// Logits of hidden states `x [b, t, d]`: `[b, t, vocab]`.
    pub fn head<B: Backend>(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, t, _] = x.dims();
        let device = x.device();
        tensor(apply(&self.head, x), [b, t, self.head.rows()], &device)
    }
}

impl Q8Block {
    /// Queries, keys and values of `x [b, t, d]`, each `[b, t, rows]`.
    pub fn qkv<B: Backend>(&self, x: Tensor<B, 3>) -> [Tensor<B, 3>; 3] {
        let [b, t, _] = x.dims();
        let device = x.device();
        let mut all = apply(&self.qkv, x);
        let width = self.qkv.rows();
        if let Some(bias) = &self.qkv_bias {
            for row in all.chunks_exact_mut(width) {
                for (v, b) in row.iter_mut().zip(bias) {
                    *v += b;
                }
            }
        }
        let mut start = 0;
        self.qkv_rows.map(|rows| {
            let range = start..start + rows;
            start += rows;
            let part: Vec<f32> = all
                .chunks_exact(width)
                .flat_map(|row| row[range.clone()].iter().copied())
                .collect();
            tensor(part, [b, t, rows], &device)
        })
    }

    /// The attention output projection of `x [b, t, heads · head_dim]`.
    pub fn output<B: Backend>(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, t, _] = x.dims();
        let device = x.device();
        tensor(apply(&self.output, x), [b, t, self.output.rows()], &device)
    }

    /// The gated MLP of `x [b, t, d]`: `down(act(gate(x)) · up(x))`, with SiLU, or the tanh
    /// GELU when `gelu` (Gemma).
    pub fn mlp<B: Backend>(&self, x: Tensor<B, 3>, gelu: bool) -> Tensor<B, 3> {
        let [b, t, _] = x.dims();
        let device = x.device();
        let both = apply(&self.gate_up, x);
        let d_ff = self.gate_up.rows() / 2;
        let mut hidden = Vec::with_capacity(b * t * d_ff);
        for row in both.chunks_exact(2 * d_ff) {
            let (gate, up) = row.split_at(d_ff);
            hidden.extend(gate.iter().zip(up).map(|(&g, &u)| {
                let activated = if gelu {
                    gelu_tanh(g)
                } else {
                    g / (1.0 + (-g).exp())
                };
                activated * u
            }));
        }
        let out = self.down.matmul(&hidden, b * t);
        tensor(out, [b, t, self.down.rows()], &device)
    }
}

/// GELU with the tanh approximation (burn's `gelu_approximate`).
fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)).tanh())
}
