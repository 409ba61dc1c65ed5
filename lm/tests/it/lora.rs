//! LoRA adapters: an adapted model starts as its base, training moves the adapters only,
//! merging gives the same function, and the PEFT adapter directory holds what merging adds
//! (checked against two Hugging Face exports of SmolLM2, before and after merging).

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::optim::AdamWConfig;
use burn::prelude::*;
use rco_lm::device::Cpu;
use rco_lm::llama::{LlamaConfig, RopeLayout};
use rco_lm::local::{load_local_with_spec, save_local, LocalLm, LocalSpec};
use rco_lm::lora::LoraConfig;
use rco_lm::loss::nll_step;
use rco_lm::sampling::completion_log_probs;

use crate::common::smollm2_gguf;

type Train = Autodiff<Cpu>;

fn small_config() -> LlamaConfig {
    LlamaConfig {
        vocab_size: 48,
        d_model: 32,
        d_ff: 64,
        layers: 2,
        heads: 4,
        kv_heads: 2,
        head_dim: 8,
        rope_theta: 10_000.0,
        rms_eps: 1e-5,
        max_len: 64,
        tied_embeddings: true,
        architecture: "qwen2".into(),
        qkv_bias: true,
        rope_layout: RopeLayout::HalfSplit,
        rope_scaling: None,
        gemma: None,
    }
}

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32")
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

const ROWS: [(&[u32], &[u32]); 2] = [(&[1, 5, 9, 3], &[7, 7, 2]), (&[1, 4], &[11, 30, 2])];

fn rows() -> Vec<(Vec<u32>, Vec<u32>)> {
    ROWS.iter().map(|(p, c)| (p.to_vec(), c.to_vec())).collect()
}

#[test]
fn adapters_start_as_the_base_train_alone_and_merge_to_the_same_function() {
    let device = Default::default();
    let base = rco_lm::rng::seeded::<Train, _>(&device, 7, || {
        LocalLm::Llama(small_config().init::<Train>(&device))
    });
    let before = values(completion_log_probs(&base, &rows(), &device));
    let query_before = match &base {
        LocalLm::Llama(m) => values(m.blocks()[0].query.weight.val()),
        _ => unreachable!(),
    };
    let lora = LoraConfig {
        rank: 4,
        alpha: 8.0,
        target_modules: vec!["q_proj".into(), "v_proj".into(), "down_proj".into()],
    };
    let mut model = base.add_lora(&lora).expect("adapters");
    // B starts at zero: the adapted model computes what the base computes.
    assert_eq!(
        values(completion_log_probs(&model, &rows(), &device)),
        before
    );
    let mut optimizer = AdamWConfig::new().init::<Train, LocalLm<Train>>();
    let examples = rows();
    let micro = vec![examples.iter().collect::<Vec<_>>()];
    let mut losses = Vec::new();
    for _ in 0..5 {
        let (next, loss) = nll_step(model, &mut optimizer, &micro, 1e-2, &device);
        model = next;
        losses.push(loss);
    }
    assert!(losses[4] < losses[0], "the loss did not fall: {losses:?}");
    let LocalLm::Llama(adapted) = &model else {
        unreachable!()
    };
    let block = &adapted.blocks()[0];
    // The frozen weights did not move; the adapters did, and only where asked.
    assert_eq!(values(block.query.weight.val()), query_before);
    assert!(values(block.lora.query.as_ref().expect("q").b.val())
        .iter()
        .any(|v| *v != 0.0));
    assert!(block.lora.key.is_none() && block.lora.up.is_none());
    let trained = values(completion_log_probs(&model, &rows(), &device));
    assert!(
        max_diff(&trained, &before) > 1e-3,
        "training changed nothing"
    );
    // Merged into the weights, the plain model computes what the adapted one does.
    let valid = model.valid();
    let adapted_valid = values(completion_log_probs(&valid, &rows(), &device));
    let merged = valid.merge_lora();
    let LocalLm::Llama(plain) = &merged else {
        unreachable!()
    };
    assert!(!plain.has_lora());
    let merged_values = values(completion_log_probs(&merged, &rows(), &device));
    assert!(
        max_diff(&merged_values, &adapted_valid) < 1e-4,
        "{merged_values:?} vs {adapted_valid:?}"
    );
}

#[test]
fn lora_settings_name_their_problems() {
    let bad = LoraConfig {
        rank: 0,
        alpha: -1.0,
        target_modules: vec!["q_proj".into(), "lm_head".into()],
    };
    let problems = bad.problems();
    let keys: Vec<_> = problems.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, ["rank", "alpha", "target_modules"]);
    assert!(problems[2].1.contains("`lm_head`"), "{problems:?}");
    assert!(LoraConfig::default().problems().is_empty());
    // The tiny character model has no projections to adapt.
    let device = Default::default();
    let spec = crate::common::tiny_spec(1);
    let tiny = LocalLm::Tiny(rco_lm::checkpoint::init::<Cpu>(&spec, &device));
    let err = tiny
        .add_lora(&LoraConfig::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("Llama-family"), "{err}");
}

/// Reads a safetensors file's f32 tensors by name, with their dims.
fn read_tensors(
    path: &std::path::Path,
) -> std::collections::HashMap<String, (Vec<f32>, Vec<usize>)> {
    let bytes = std::fs::read(path).expect("read safetensors");
    let file = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, (values, view.shape().to_vec()))
        })
        .collect()
}

/// SmolLM2 with adapters on the query and value projections: a few steps move the adapters,
/// the PEFT directory has PEFT's names and shapes, and base + (alpha/r)·B·A of the PEFT
/// tensors is exactly the merged Hugging Face export's weight (query rows included, which
/// go from this decoder's interleaved rotary layout back to Hugging Face's).
#[test]
fn smollm2_adapters_export_as_peft_and_merge_into_the_hugging_face_weights() {
    let device = Default::default();
    let path = smollm2_gguf();
    let (base, tokenizer, spec) = load_local_with_spec::<Train>(&path, &device).expect("load");
    let LocalSpec::Llama(config) = &spec else {
        panic!("not a Llama")
    };
    let dir = tempfile::tempdir().expect("tempdir");
    save_local(base.valid(), &tokenizer, &spec, &dir.path().join("base")).expect("base export");
    let lora = LoraConfig {
        rank: 4,
        alpha: 16.0,
        target_modules: vec!["q_proj".into(), "v_proj".into()],
    };
    let mut model = rco_lm::rng::try_seeded::<Train, _, _>(&device, 3, || base.add_lora(&lora))
        .expect("adapters");
    let prompt = tokenizer
        .prompt_ids("Name a colour.", true)
        .expect("prompt");
    let completion = tokenizer.completion_ids("Blue.").expect("completion");
    let examples = [(prompt, completion)];
    let micro = vec![examples.iter().collect::<Vec<_>>()];
    let mut optimizer = AdamWConfig::new().init::<Train, LocalLm<Train>>();
    let mut losses = Vec::new();
    for _ in 0..3 {
        let (next, loss) = nll_step(model, &mut optimizer, &micro, 1e-3, &device);
        model = next;
        losses.push(loss);
    }
    assert!(losses[2] < losses[0], "the loss did not fall: {losses:?}");
    let valid = model.valid();
    let LocalLm::Llama(adapted) = &valid else {
        unreachable!()
    };
    let peft = dir.path().join("adapter");
    rco_lm::hf::save_peft_adapter(adapted, config, &lora, "SmolLM2-135M-Instruct", &peft)
        .expect("peft");
    let adapter_config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(peft.join("adapter_config.json")).expect("adapter_config"),
    )
    .expect("json");
    assert_eq!(adapter_config["peft_type"], "LORA");
    assert_eq!(adapter_config["r"], 4);
    assert_eq!(adapter_config["lora_alpha"], 16.0);
    assert_eq!(
        adapter_config["target_modules"],
        serde_json::json!(["q_proj", "v_proj"])
    );
    let tensors = read_tensors(&peft.join("adapter_model.safetensors"));
    // 30 layers × 2 projections × (A, B).
    assert_eq!(tensors.len(), 120);
    let name = |i: usize, p: &str, ab: &str| {
        format!("base_model.model.model.layers.{i}.self_attn.{p}.lora_{ab}.weight")
    };
    assert_eq!(tensors[&name(0, "q_proj", "A")].1, [4, 576]);
    assert_eq!(tensors[&name(0, "q_proj", "B")].1, [576, 4]);
    assert_eq!(tensors[&name(29, "v_proj", "B")].1, [192, 4]);

    let merged = valid.merge_lora();
    save_local(merged, &tokenizer, &spec, &dir.path().join("merged")).expect("merged export");
    let base_weights = read_tensors(&dir.path().join("base/model.safetensors"));
    let merged_weights = read_tensors(&dir.path().join("merged/model.safetensors"));
    let scale = 16.0 / 4.0;
    for (layer, projection) in [(0, "q_proj"), (17, "q_proj"), (29, "v_proj")] {
        let key = format!("model.layers.{layer}.self_attn.{projection}.weight");
        let (w0, dims) = &base_weights[&key];
        let (w1, _) = &merged_weights[&key];
        let (a, _) = &tensors[&name(layer, projection, "A")];
        let (b, _) = &tensors[&name(layer, projection, "B")];
        let (rows, cols) = (dims[0], dims[1]);
        let mut largest_delta = 0f32;
        let mut largest_error = 0f32;
        for r in 0..rows {
            for c in 0..cols {
                let delta: f32 =
                    (0..4).map(|k| b[r * 4 + k] * a[k * cols + c]).sum::<f32>() * scale;
                largest_delta = largest_delta.max(delta.abs());
                largest_error =
                    largest_error.max((w0[r * cols + c] + delta - w1[r * cols + c]).abs());
            }
        }
        assert!(largest_delta > 1e-5, "{key}: the adapter adds nothing");
        assert!(
            largest_error < 1e-5,
            "{key}: base + scale·B·A is off by {largest_error}"
        );
    }
    // A model with adapters does not take the Q8_0 snapshot (it would leave them out).
    let (plain, _, _) = load_local_with_spec::<Cpu>(&path, &device).expect("load");
    let LocalLm::Llama(plain) = plain else {
        unreachable!()
    };
    let mut with_adapters = plain.add_lora(&lora);
    assert!(!with_adapters.quantize_q8());
}
