//! Hugging Face Llama directories (`config.json`, `model.safetensors`, `tokenizer.json`):
//! loading them, and writing any Llama model as one, so that vLLM, llama.cpp's converter or
//! transformers can serve what rco trained.
//!
//! Hugging Face checkpoints apply rotary embeddings to the two halves of each head
//! ("rotate_half"); this decoder (like GGUF) rotates interleaved pairs. Query and key rows are
//! permuted between the two layouts on the way in and out, exactly as llama.cpp's converter
//! does.

use std::path::Path;

use burn::module::Param;
use burn::prelude::*;
use safetensors::tensor::{Dtype, TensorView};
use serde_json::{json, Value};

use crate::device::weight_bytes_limit;
use crate::llama::{Llama, LlamaConfig, RopeLayout, RopeScaling};
use crate::lora::LoraConfig;
use crate::text::TextTokenizer;
use crate::token_table::{TokenTable, VocabHead};
use crate::weights::Weights;
use crate::LmError;

fn err(path: &Path, message: impl std::fmt::Display) -> LmError {
    LmError::Checkpoint {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Reorders the rows of a `[heads * head_dim, cols]` matrix between layouts.
/// `to_interleaved`: half-split (Hugging Face) → interleaved pairs (GGUF, this decoder).
fn permute_rows(
    values: &[f32],
    heads: usize,
    head_dim: usize,
    cols: usize,
    to_interleaved: bool,
) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    let half = head_dim / 2;
    for h in 0..heads {
        for i in 0..half {
            for part in 0..2 {
                let split = h * head_dim + part * half + i;
                let interleaved = h * head_dim + 2 * i + part;
                let (from, to) = if to_interleaved {
                    (split, interleaved)
                } else {
                    (interleaved, split)
                };
                out[to * cols..(to + 1) * cols]
                    .copy_from_slice(&values[from * cols..(from + 1) * cols]);
            }
        }
    }
    out
}

/// Row-major `[out, in]` values of a Linear weight (burn stores `[in, out]`).
fn rows_of<B: Backend>(weight: &Param<Tensor<B, 2>>) -> Result<(Vec<f32>, [usize; 2]), LmError> {
    let t = weight.val().transpose();
    let dims = t.dims();
    let values = t
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| LmError::Tokenize(format!("{e:?}")))?;
    Ok((values, dims))
}

fn vector_of<B: Backend>(param: &Param<Tensor<B, 1>>) -> Result<Vec<f32>, LmError> {
    param
        .val()
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| LmError::Tokenize(format!("{e:?}")))
}

/// Writes `model` as a Hugging Face Llama directory.
pub fn save<B: Backend>(
    model: &Llama<B>,
    config: &LlamaConfig,
    tokenizer: &TextTokenizer,
    dir: &Path,
) -> Result<(), LmError> {
    if config.gemma.is_some() {
        return Err(err(
            dir,
            "writing a Gemma 3 model as a Hugging Face directory is not supported",
        ));
    }
    let rope_scaling = match config.rope_scaling.as_ref().map(|s| (s, s.to_hf())) {
        Some((_, Some(scaling))) => Some(scaling),
        Some((scaling, None)) => {
            return Err(err(
                dir,
                format!("the rotary scaling {scaling:?} has no Hugging Face `rope_scaling` form"),
            ))
        }
        None => None,
    };
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    let mut tensors: Vec<(String, Vec<f32>, Vec<usize>)> = Vec::new();
    let table = model.embedding();
    tensors.push((
        "model.embed_tokens.weight".into(),
        table.values()?,
        vec![table.vocab(), table.d_model()],
    ));
    for (i, block) in model.blocks().iter().enumerate() {
        let p = |name: &str| format!("model.layers.{i}.{name}.weight");
        // Interleaved rotary pairs go back to Hugging Face's split halves; a model that
        // already uses split halves (Qwen2) is written as it is.
        let interleaved = config.rope_layout == RopeLayout::Interleaved;
        let (q, q_dims) = rows_of(&block.query.weight)?;
        tensors.push((
            p("self_attn.q_proj"),
            if interleaved {
                permute_rows(&q, config.heads, config.head_dim, q_dims[1], false)
            } else {
                q
            },
            q_dims.to_vec(),
        ));
        let (k, k_dims) = rows_of(&block.key.weight)?;
        tensors.push((
            p("self_attn.k_proj"),
            if interleaved {
                permute_rows(&k, config.kv_heads, config.head_dim, k_dims[1], false)
            } else {
                k
            },
            k_dims.to_vec(),
        ));
        for (name, linear) in [
            ("self_attn.q_proj", &block.query),
            ("self_attn.k_proj", &block.key),
            ("self_attn.v_proj", &block.value),
        ] {
            if let Some(bias) = &linear.bias {
                let values = vector_of(bias)?;
                let len = values.len();
                tensors.push((format!("model.layers.{i}.{name}.bias"), values, vec![len]));
            }
        }
        for (name, weight) in [
            ("self_attn.v_proj", &block.value.weight),
            ("self_attn.o_proj", &block.output.weight),
            ("mlp.gate_proj", &block.gate.weight),
            ("mlp.up_proj", &block.up.weight),
            ("mlp.down_proj", &block.down.weight),
        ] {
            let (values, dims) = rows_of(weight)?;
            tensors.push((p(name), values, dims.to_vec()));
        }
        tensors.push((
            p("input_layernorm"),
            vector_of(&block.attention_norm.gamma)?,
            vec![config.d_model],
        ));
        tensors.push((
            p("post_attention_layernorm"),
            vector_of(&block.mlp_norm.gamma)?,
            vec![config.d_model],
        ));
    }
    tensors.push((
        "model.norm.weight".into(),
        vector_of(&model.final_norm().gamma)?,
        vec![config.d_model],
    ));
    if let Some(head) = model.output_head() {
        tensors.push((
            "lm_head.weight".into(),
            head.rows()?,
            vec![head.vocab(), config.d_model],
        ));
    }
    write_safetensors(&dir.join("model.safetensors"), tensors)?;
    let (class, model_type) = if config.architecture == "qwen2" {
        ("Qwen2ForCausalLM", "qwen2")
    } else {
        ("LlamaForCausalLM", "llama")
    };
    let mut hf_config = json!({
        "architectures": [class],
        "model_type": model_type,
        "hidden_size": config.d_model,
        "intermediate_size": config.d_ff,
        "num_hidden_layers": config.layers,
        "num_attention_heads": config.heads,
        "num_key_value_heads": config.kv_heads,
        "head_dim": config.head_dim,
        "rms_norm_eps": config.rms_eps,
        "rope_theta": config.rope_theta,
        "max_position_embeddings": config.max_len,
        "vocab_size": config.vocab_size,
        "tie_word_embeddings": config.tied_embeddings,
        "hidden_act": "silu",
        "torch_dtype": "float32",
        "bos_token_id": tokenizer.bos,
        "eos_token_id": tokenizer.eos,
    });
    let write_json = |name: &str, value: &Value| {
        let text = serde_json::to_vec_pretty(value).map_err(|e| err(dir, e))?;
        rco_core::store::write_atomic(&dir.join(name), &text).map_err(|e| err(dir, e))
    };
    if let Some(scaling) = rope_scaling {
        hf_config["rope_scaling"] = scaling;
    }
    write_json("config.json", &hf_config)?;
    let mut tokenizer_config =
        json!({"add_bos_token": tokenizer.add_bos, "model_max_length": config.max_len});
    if let Some(template) = &tokenizer.chat_template {
        tokenizer_config["chat_template"] = json!(template);
    }
    write_json("tokenizer_config.json", &tokenizer_config)?;
    rco_core::store::write_atomic(&dir.join("tokenizer.json"), tokenizer.to_json()?.as_bytes())
        .map_err(|e| err(dir, e))
}

/// Writes named f32 tensors (row-major values, dims) as one safetensors file, atomically.
fn write_safetensors(
    path: &Path,
    tensors: Vec<(String, Vec<f32>, Vec<usize>)>,
) -> Result<(), LmError> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .into_iter()
        .map(|(n, v, d)| (n, v.iter().flat_map(|x| x.to_le_bytes()).collect(), d))
        .collect();
    let views = bytes
        .iter()
        .map(|(n, b, d)| TensorView::new(Dtype::F32, d.clone(), b).map(|v| (n.clone(), v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(path, e))?;
    let serialized = safetensors::serialize(views, None).map_err(|e| err(path, e))?;
    rco_core::store::write_atomic(path, &serialized).map_err(|e| err(path, e))
}

/// Writes a model's LoRA adapters as a PEFT adapter directory (`adapter_config.json`,
/// `adapter_model.safetensors` with PEFT's tensor names, `lora_A` as `[r, d_in]` and
/// `lora_B` as `[d_out, r]`), for the Hugging Face model [`save`] writes of the same base:
/// query and key rows are in Hugging Face's layout, as there. `base` goes into
/// `base_model_name_or_path`.
pub fn save_peft_adapter<B: Backend>(
    model: &Llama<B>,
    config: &LlamaConfig,
    lora: &LoraConfig,
    base: &str,
    dir: &Path,
) -> Result<(), LmError> {
    if !model.has_lora() {
        return Err(err(dir, "the model has no LoRA adapters to write"));
    }
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    let interleaved = config.rope_layout == RopeLayout::Interleaved;
    let mut tensors: Vec<(String, Vec<f32>, Vec<usize>)> = Vec::new();
    for (i, block) in model.blocks().iter().enumerate() {
        for (name, adapter) in block.lora.slots() {
            let Some(adapter) = adapter else { continue };
            let group = if ["gate_proj", "up_proj", "down_proj"].contains(&name) {
                "mlp"
            } else {
                "self_attn"
            };
            let prefix = format!("base_model.model.model.layers.{i}.{group}.{name}");
            let (a, a_dims) = rows_of(&adapter.a)?;
            let (b, b_dims) = rows_of(&adapter.b)?;
            // Output rows of the query and key adapters follow their weights' layout.
            let heads = match name {
                "q_proj" => Some(config.heads),
                "k_proj" => Some(config.kv_heads),
                _ => None,
            };
            let b = match heads {
                Some(heads) if interleaved => {
                    permute_rows(&b, heads, config.head_dim, b_dims[1], false)
                }
                _ => b,
            };
            tensors.push((format!("{prefix}.lora_A.weight"), a, a_dims.to_vec()));
            tensors.push((format!("{prefix}.lora_B.weight"), b, b_dims.to_vec()));
        }
    }
    write_safetensors(&dir.join("adapter_model.safetensors"), tensors)?;
    let adapter_config = json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base,
        "r": lora.rank,
        "lora_alpha": lora.alpha,
        "lora_dropout": 0.0,
        "target_modules": lora.target_modules,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "use_rslora": false,
        "modules_to_save": null,
    });
    let text = serde_json::to_vec_pretty(&adapter_config).map_err(|e| err(dir, e))?;
    rco_core::store::write_atomic(&dir.join("adapter_config.json"), &text).map_err(|e| err(dir, e))
}

fn read_json(path: &Path) -> Result<Value, LmError> {
    let text = std::fs::read_to_string(path).map_err(|e| err(path, format!("cannot read: {e}")))?;
    serde_json::from_str(&text).map_err(|e| err(path, format!("not JSON: {e}")))
}

/// Loads a Hugging Face Llama directory.
pub fn load<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<(LlamaConfig, Llama<B>, TextTokenizer), LmError> {
    let (config, model, tokenizer, _) = load_with_score(dir, device)?;
    Ok((config, model, tokenizer))
}

/// A sequence-classification head (`score.weight`, as `LlamaForSequenceClassification` and
/// `Qwen2ForSequenceClassification` save it): `labels × d_model` values, row-major.
pub struct ScoreHead {
    pub weight: Vec<f32>,
    pub labels: usize,
}

/// [`load`], and for a `*ForSequenceClassification` checkpoint its score head (such a
/// checkpoint has no language-model head: the model is loaded with the embedding as its
/// output head, which a reward model never uses).
pub fn load_with_score<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<(LlamaConfig, Llama<B>, TextTokenizer, Option<ScoreHead>), LmError> {
    let config_path = dir.join("config.json");
    let hf = read_json(&config_path)?;
    let arch = hf["model_type"].as_str().unwrap_or("?");
    if arch != "llama" && arch != "qwen2" {
        return Err(err(
            &config_path,
            format!("model_type `{arch}` is not supported (supported: llama, qwen2)"),
        ));
    }
    let qwen2 = arch == "qwen2";
    let rope_scaling = RopeScaling::from_hf(hf.get("rope_scaling").unwrap_or(&Value::Null))
        .map_err(|e| err(&config_path, e))?;
    let n = |key: &str| {
        hf[key].as_u64().map(|v| v as usize).ok_or_else(|| {
            err(
                &config_path,
                format!("`{key}` is missing or not an integer"),
            )
        })
    };
    let classifier = hf["architectures"]
        .as_array()
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .is_some_and(|a| a.ends_with("ForSequenceClassification"));
    let d_model = n("hidden_size")?;
    let heads = n("num_attention_heads")?;
    let config = LlamaConfig {
        vocab_size: n("vocab_size")?,
        d_model,
        d_ff: n("intermediate_size")?,
        layers: n("num_hidden_layers")?,
        heads,
        kv_heads: n("num_key_value_heads").unwrap_or(heads),
        head_dim: n("head_dim").unwrap_or(d_model / heads.max(1)),
        rope_theta: hf["rope_theta"].as_f64().unwrap_or(10_000.0),
        rms_eps: hf["rms_norm_eps"].as_f64().unwrap_or(1e-6),
        max_len: n("max_position_embeddings")?,
        tied_embeddings: classifier || hf["tie_word_embeddings"].as_bool().unwrap_or(false),
        architecture: arch.to_string(),
        qkv_bias: qwen2,
        // Llama weights are permuted to interleaved pairs on the way in; Qwen2's keep their
        // split halves.
        rope_layout: if qwen2 {
            RopeLayout::HalfSplit
        } else {
            RopeLayout::Interleaved
        },
        rope_scaling,
        gemma: None,
    };
    let weights = Weights::open(dir)?;
    let tensor = |name: &str, shape: &[usize]| weights.tensor(name, shape);
    let (d, q_dim, kv_dim, ff) = (
        config.d_model,
        config.heads * config.head_dim,
        config.kv_heads * config.head_dim,
        config.d_ff,
    );
    let mut model = config.init::<B>(device);
    let linear = |values: Vec<f32>, d_out: usize, d_in: usize| {
        Param::from_tensor(
            Tensor::<B, 2>::from_data(TensorData::new(values, [d_out, d_in]), device).transpose(),
        )
    };
    let vector = |values: Vec<f32>| {
        Param::from_tensor(Tensor::<B, 1>::from_data(
            TensorData::new(values.clone(), [values.len()]),
            device,
        ))
    };
    *model.embedding_mut() = TokenTable::from_values(
        tensor("model.embed_tokens.weight", &[config.vocab_size, d])?,
        config.vocab_size,
        d,
        weight_bytes_limit::<B>(),
        device,
    );
    for (i, block) in model.blocks_mut().iter_mut().enumerate() {
        let p = |name: &str| format!("model.layers.{i}.{name}.weight");
        let permute = |rows: Vec<f32>, heads: usize| {
            if qwen2 {
                rows
            } else {
                permute_rows(&rows, heads, config.head_dim, d, true)
            }
        };
        let q = permute(tensor(&p("self_attn.q_proj"), &[q_dim, d])?, config.heads);
        block.query.weight = linear(q, q_dim, d);
        let k = permute(
            tensor(&p("self_attn.k_proj"), &[kv_dim, d])?,
            config.kv_heads,
        );
        block.key.weight = linear(k, kv_dim, d);
        if qwen2 {
            let bias = |name: &str, len: usize| -> Result<_, LmError> {
                Ok(Some(vector(tensor(
                    &format!("model.layers.{i}.{name}.bias"),
                    &[len],
                )?)))
            };
            block.query.bias = bias("self_attn.q_proj", q_dim)?;
            block.key.bias = bias("self_attn.k_proj", kv_dim)?;
            block.value.bias = bias("self_attn.v_proj", kv_dim)?;
        }
        block.value.weight = linear(tensor(&p("self_attn.v_proj"), &[kv_dim, d])?, kv_dim, d);
        block.output.weight = linear(tensor(&p("self_attn.o_proj"), &[d, q_dim])?, d, q_dim);
        block.gate.weight = linear(tensor(&p("mlp.gate_proj"), &[ff, d])?, ff, d);
        block.up.weight = linear(tensor(&p("mlp.up_proj"), &[ff, d])?, ff, d);
        block.down.weight = linear(tensor(&p("mlp.down_proj"), &[d, ff])?, d, ff);
        block.attention_norm.gamma = vector(tensor(&p("input_layernorm"), &[d])?);
        block.mlp_norm.gamma = vector(tensor(&p("post_attention_layernorm"), &[d])?);
    }
    model.final_norm_mut().gamma = vector(tensor("model.norm.weight", &[d])?);
    if let Some(head) = model.output_head_mut() {
        *head = VocabHead::from_rows(
            tensor("lm_head.weight", &[config.vocab_size, d])?,
            config.vocab_size,
            d,
            weight_bytes_limit::<B>(),
            device,
        );
    }
    let score = if classifier {
        let labels = hf["num_labels"]
            .as_u64()
            .or_else(|| hf["id2label"].as_object().map(|m| m.len() as u64))
            .unwrap_or(1) as usize;
        Some(ScoreHead {
            weight: tensor("score.weight", &[labels, d])?,
            labels,
        })
    } else {
        None
    };
    let tokenizer_path = dir.join("tokenizer.json");
    let inner =
        tokenizers::Tokenizer::from_file(&tokenizer_path).map_err(|e| err(&tokenizer_path, e))?;
    let tokenizer_config = read_json(&dir.join("tokenizer_config.json")).unwrap_or(Value::Null);
    let id = |key: &str| hf[key].as_u64().map(|v| v as u32);
    let tokenizer = TextTokenizer {
        end_of_turn: inner.token_to_id("<end_of_turn>"),
        inner,
        bos: id("bos_token_id"),
        eos: id("eos_token_id").ok_or_else(|| err(&config_path, "`eos_token_id` is missing"))?,
        add_bos: tokenizer_config["add_bos_token"].as_bool().unwrap_or(false),
        chat_template: tokenizer_config["chat_template"]
            .as_str()
            .map(str::to_string),
    };
    Ok((config, model, tokenizer, score))
}

#[cfg(test)]
mod tests {
    use super::permute_rows;

    #[test]
    fn rotary_layouts_permute_both_ways() {
        // Two heads of dim 4, one column: rows are labelled by their value.
        let split: Vec<f32> = (0..8).map(|v| v as f32).collect();
        let interleaved = permute_rows(&split, 2, 4, 1, true);
        // Head 0 half-split [x0, x1 | y0, y1] becomes pairs [x0, y0, x1, y1].
        assert_eq!(interleaved, vec![0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
        assert_eq!(permute_rows(&interleaved, 2, 4, 1, false), split);
    }
}
