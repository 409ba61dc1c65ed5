//! SmolLM2-135M-Instruct (GGUF Q4_1) through the Llama decoder on the flex backend, against
//! reference numbers from llama.cpp and from an f32 forward of the same weights.
//! The file comes from `scripts/fetch-models.sh` (run by `scripts/test.sh`), whose path is
//! in `SMOLLM2_GGUF`.

use rco_lm::device::Cpu;
use rco_lm::engine::Engine;
use rco_lm::gguf::GgufFile;
use rco_lm::sampling::SamplingConfig;

use crate::common::smollm2_gguf as gguf;
use crate::q8::{assert_q8_agrees, f32_engine};

#[test]
fn smollm2_loads_tokenizes_and_predicts_like_the_reference() {
    let path = gguf();
    let file = GgufFile::open(&path).expect("open gguf");
    assert_eq!(file.version, 3);
    assert_eq!(file.tensors.len(), 272);
    let config = rco_lm::llama::LlamaConfig::from_gguf(&file).expect("config");
    assert_eq!(
        (
            config.layers,
            config.d_model,
            config.d_ff,
            config.heads,
            config.kv_heads,
            config.head_dim,
            config.vocab_size
        ),
        (30, 576, 1536, 9, 3, 64, 49152)
    );
    assert!(config.tied_embeddings);
    drop(file);

    let lm = f32_engine(&path);
    // The tokenizer reproduces llama.cpp's ids.
    let ids = lm
        .tokenizer
        .text_ids("Hello world! 12345 The capital of France is")
        .expect("encode");
    assert_eq!(
        ids,
        vec![19556, 905, 17, 216, 33, 34, 35, 36, 37, 378, 3575, 282, 4649, 314]
    );
    assert_eq!(
        lm.tokenizer.decode(&ids).expect("decode"),
        "Hello world! 12345 The capital of France is"
    );
    let prompt = lm
        .tokenizer
        .prompt_ids("The capital of France is", false)
        .expect("prompt");
    assert_eq!(prompt, vec![504, 3575, 282, 4649, 314]);

    // Next-token log-probs: an f32 forward of the dequantized weights gives
    // " Paris" -0.2581, " the" -2.7408, " London" -4.384 (llama.cpp, with 8-bit activations:
    // -0.2589, -2.7646, -4.295). Tolerance 0.02 nats against the f32 reference.
    let log_probs = lm.next_token_log_probs(&prompt).expect("forward");
    let id = |text: &str| lm.tokenizer.text_ids(text).expect("encode")[0] as usize;
    for (token, reference) in [
        (" Paris", -0.2581f32),
        (" the", -2.7408),
        (" London", -4.384),
    ] {
        let got = log_probs[id(token)];
        assert!(
            (got - reference).abs() < 0.02,
            "{token}: {got} vs {reference}"
        );
    }
    let best = log_probs
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .expect("argmax");
    assert_eq!(best, id(" Paris"));
    // The summed completion log-prob of a one-token completion is that token's log-prob.
    let paris = lm
        .completion_log_prob(&prompt, &[id(" Paris") as u32])
        .expect("score");
    assert!((paris as f32 - log_probs[id(" Paris")]).abs() < 1e-3);

    // Greedy decoding in the chat format answers the question.
    let text = lm
        .tokenizer
        .text()
        .expect("a subword tokenizer")
        .chat_prompt("What is the capital of France?")
        .expect("chat prompt");
    assert!(
        text.starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"),
        "{text}"
    );
    assert!(text.ends_with("<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"), "{text}");
    let chat = lm
        .tokenizer
        .prompt_ids("What is the capital of France?", true)
        .expect("chat prompt");
    assert_eq!(chat[0], 1, "<|im_start|> is one control token");
    let greedy = SamplingConfig {
        temperature: 0.0,
        max_tokens: 12,
        ..Default::default()
    };
    let mut lm = lm;
    lm.settings.sampling = greedy;
    let answer = lm
        .generate_ids(&[chat], &[0])
        .expect("generate")
        .pop()
        .unwrap_or_default();
    assert!(answer.contains("Paris"), "{answer}");
}

#[test]
fn damaged_files_name_the_file_and_the_tensor() {
    let bytes = std::fs::read(gguf()).expect("read");
    let dir = tempfile::tempdir().expect("tempdir");
    // Truncated inside the tensor data: the tensor that runs past the end is named.
    let truncated = dir.path().join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len() - 1_000_000]).expect("write");
    let err = Engine::<Cpu>::load(&truncated, Default::default())
        .err()
        .expect("truncated file loads")
        .to_string();
    assert!(
        err.contains("truncated.gguf") && err.contains("tensor `") && err.contains("past the end"),
        "{err}"
    );
    // Truncated inside the header.
    let header = dir.path().join("header.gguf");
    std::fs::write(&header, &bytes[..4096]).expect("write");
    let err = Engine::<Cpu>::load(&header, Default::default())
        .err()
        .expect("header-only file loads")
        .to_string();
    assert!(
        err.contains("header.gguf") && err.contains("truncated"),
        "{err}"
    );
    // Not a GGUF file at all.
    let text = dir.path().join("notes.gguf");
    std::fs::write(&text, "hello").expect("write");
    let err = Engine::<Cpu>::load(&text, Default::default())
        .err()
        .expect("text file loads")
        .to_string();
    assert!(err.contains("notes.gguf") && err.contains("magic"), "{err}");
    // Another architecture.
    let mut other = bytes.clone();
    let at = other
        .windows(5)
        .position(|w| w == b"llama")
        .expect("architecture string");
    other[at..at + 5].copy_from_slice(b"qwen2");
    let renamed = dir.path().join("other.gguf");
    std::fs::write(&renamed, &other).expect("write");
    let err = Engine::<Cpu>::load(&renamed, Default::default())
        .err()
        .expect("other architecture loads")
        .to_string();
    assert!(err.contains("other.gguf") && err.contains("qwen2"), "{err}");
}

/// Runs a reference script with JSON on stdin; returns its JSON lines.
pub(crate) fn reference(
    script: &str,
    args: &[&std::ffi::OsStr],
    input: &serde_json::Value,
) -> Vec<serde_json::Value> {
    use std::io::Write;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(script);
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = std::process::Command::new(&python)
        .arg(&script)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write input");
    let output = child.wait_with_output().expect("reference");
    assert!(
        output.status.success(),
        "{} failed (scripts/test.sh installs its Python packages):\n{}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .join("\n")
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("reference line"))
        .collect()
}

pub(crate) fn ids_of(value: &serde_json::Value) -> Vec<u32> {
    value
        .as_array()
        .expect("ids")
        .iter()
        .filter_map(|t| t.as_u64())
        .map(|t| t as u32)
        .collect()
}

/// Greedy continuations and first-step log-probs against the f32 numpy forward of the same
/// GGUF (`scripts/f32_reference.py`): the same tokens `ours`, and the reference's six most
/// likely first tokens within 2e-3 nats of `first`, after up to `n_predict` greedy tokens.
/// `labels` name the prompts in messages.
pub(crate) fn assert_matches_f32_reference(
    path: &std::path::Path,
    n_predict: usize,
    labels: &[&str],
    ids: &[Vec<u32>],
    ours: &[Vec<u32>],
    first: &[Vec<f32>],
) {
    let n = n_predict.to_string();
    let f32_ref = reference(
        "f32_reference.py",
        &[path.as_os_str(), n.as_ref()],
        &serde_json::json!(ids),
    );
    for (i, r) in f32_ref.iter().enumerate() {
        assert_eq!(
            ids_of(&r["tokens"]),
            ours[i],
            "{:?}: greedy continuation differs from the f32 reference",
            labels[i]
        );
        for pair in r["top6"].as_array().expect("top6") {
            let (id, lp) = (
                pair[0].as_u64().expect("id") as usize,
                pair[1].as_f64().expect("lp") as f32,
            );
            assert!(
                (first[i][id] - lp).abs() < 2e-3,
                "{:?}: token {id}: {} vs f32 reference {lp}",
                labels[i],
                first[i][id]
            );
        }
    }
}

/// Greedy decoding and first-step log-probs against two references on the same GGUF:
/// an independent f32 forward in numpy (`scripts/f32_reference.py`, weights dequantized by
/// llama.cpp's `gguf` package), which must agree exactly; and the real llama.cpp server
/// (PyPI `xllamacpp`, `scripts/llama_reference.py`), which multiplies Q4_1 weights with
/// 8-bit-quantized activations and so flips near-ties late in a continuation.
#[test]
fn greedy_decoding_matches_f32_reference_and_llama_cpp() {
    let path = gguf();
    let prompts = [
        "The capital of France is",
        "def fibonacci(n):",
        "Question: What is 12 + 7?\nAnswer:",
        "<|im_start|>user\nName three colors.<|im_end|>\n<|im_start|>assistant\n",
        "Once upon a time, there was a little",
    ];
    let lm = f32_engine(&path);
    let ids: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| lm.tokenizer.prompt_ids(p, false).expect("prompt"))
        .collect();
    let greedy = SamplingConfig {
        temperature: 0.0,
        max_tokens: 16,
        ..Default::default()
    };
    let stop = rco_lm::sampling::StopTokens {
        eos: lm.tokenizer.eos(),
        ends: Vec::new(),
        banned: Vec::new(),
    };
    let ours = rco_lm::sampling::sample(
        &*lm.model().expect("model"),
        &ids,
        &[0; 5],
        &greedy,
        &stop,
        &lm.device,
    );
    let first: Vec<Vec<f32>> = ids
        .iter()
        .map(|p| lm.next_token_log_probs(p).expect("forward"))
        .collect();

    // The f32 reference: same tokens, same log-probs (to 2e-3 nats).
    assert_matches_f32_reference(&path, 16, &prompts, &ids, &ours, &first);

    // llama.cpp: the same prompt tokens, the same first token, at least 4 of the same top-5
    // tokens, first-step log-probs within 0.35 nats (its 8-bit activations move them by up
    // to ~0.32 on these prompts while the f32 reference agrees with us to 1e-3).
    const LLAMA_CPP_TOLERANCE: f32 = 0.35;
    let llama = reference(
        "llama_reference.py",
        &[path.as_os_str(), "16".as_ref()],
        &serde_json::json!(prompts),
    );
    let mut agreeing = 0;
    for (i, r) in llama.iter().enumerate() {
        assert_eq!(
            ids_of(&r["prompt_tokens"]),
            ids[i],
            "{:?}: tokenization differs from llama.cpp",
            prompts[i]
        );
        let mut theirs = ids_of(&r["tokens"]);
        if theirs.last() == Some(&lm.tokenizer.eos()) {
            theirs.pop();
        }
        if theirs == ours[i] {
            agreeing += 1;
        } else {
            // A divergence must be a near-tie flip: at the first differing step, the exact
            // (f32) log-probs of our token and llama.cpp's differ by less than 0.35 nats.
            let same = theirs
                .iter()
                .zip(&ours[i])
                .take_while(|(a, b)| a == b)
                .count();
            eprintln!(
                "{:?}: llama.cpp and rco agree on {same} tokens, then {:?} vs {:?}",
                prompts[i],
                r["text"],
                lm.tokenizer.decode(&ours[i])
            );
            let context: Vec<u32> = ids[i].iter().chain(&ours[i][..same]).copied().collect();
            let step = lm.next_token_log_probs(&context).expect("forward");
            let (ours_next, theirs_next) = (ours[i][same] as usize, theirs[same] as usize);
            let gap = step[ours_next] - step[theirs_next];
            eprintln!("  step {same}: f32 log-probs {:.4} (ours) vs {:.4} (llama.cpp's token), gap {gap:.4}", step[ours_next], step[theirs_next]);
            assert!(
                same >= 4,
                "{:?}: llama.cpp diverges at token {same}",
                prompts[i]
            );
            assert!(
                (0.0..0.35).contains(&gap),
                "{:?}: divergence at token {same} is not a near-tie (gap {gap})",
                prompts[i]
            );
        }
        let top5: Vec<(usize, f32)> = r["top5"]
            .as_array()
            .expect("top5")
            .iter()
            .map(|p| {
                (
                    p[0].as_u64().expect("id") as usize,
                    p[1].as_f64().expect("lp") as f32,
                )
            })
            .collect();
        let mut ranked: Vec<usize> = (0..first[i].len()).collect();
        ranked.sort_by(|a, b| first[i][*b].total_cmp(&first[i][*a]));
        assert_eq!(
            ranked[0], top5[0].0,
            "{:?}: first-step top-1 differs from llama.cpp",
            prompts[i]
        );
        let shared = top5
            .iter()
            .filter(|(id, _)| ranked[..5].contains(id))
            .count();
        assert!(
            shared >= 4,
            "{:?}: top-5 sets share only {shared} tokens",
            prompts[i]
        );
        for (id, lp) in &top5 {
            assert!(
                (first[i][*id] - lp).abs() < LLAMA_CPP_TOLERANCE,
                "{:?}: token {id}: {} vs llama.cpp {lp}",
                prompts[i],
                first[i][*id]
            );
        }
    }
    eprintln!("{agreeing} of 5 greedy continuations agree with llama.cpp on all 16 tokens");
    assert!(
        agreeing >= 2,
        "only {agreeing} of 5 greedy continuations agree with llama.cpp"
    );

    // The Q8_0 path users get by default, against f32 and llama.cpp.
    assert_q8_agrees(
        &path,
        &prompts,
        &ids,
        &lm,
        &ours,
        &first,
        &llama,
        &[],
        &stop,
    );
}

/// `rco logprob` scores a completion as a prefix; with `--end` the end-of-sequence token
/// follows it and adds exactly its log-probability after the completion.
#[test]
fn logprob_scores_a_prefix_and_with_end_a_finished_completion() {
    use rco_lm::engine::{Quantize, Settings};
    let path = gguf();
    let (prompt, completion) = ("Name a primary colour.", "Red.");
    let score = |ended| {
        rco_lm::commands::log_prob_text_ending(
            &path,
            "cpu",
            prompt,
            completion,
            ended,
            false,
            3,
            Quantize::None,
        )
        .expect("logprob")
    };
    let (prefix, finished) = (score(false), score(true));
    let engine = Engine::<Cpu>::open(
        &path,
        Default::default(),
        Settings {
            chat: true,
            quantize: Quantize::None,
            ..Settings::default()
        },
    )
    .expect("engine");
    let eos = engine.tokenizer.eos();
    let ids: Vec<u32> = prefix.completion_tokens.iter().map(|t| t.0).collect();
    assert_eq!(ids, engine.tokenizer.text_ids(completion).expect("ids"));
    assert_eq!(finished.completion_tokens.len(), ids.len() + 1);
    assert_eq!(finished.completion_tokens.last().map(|t| t.0), Some(eos));
    let mut context = engine.prompt_ids(prompt).expect("prompt");
    context.extend(&ids);
    let eos_lp = f64::from(engine.next_token_log_probs(&context).expect("forward")[eos as usize]);
    assert!(eos_lp < 0.0);
    assert!(
        (finished.total - prefix.total - eos_lp).abs() < 1e-3,
        "finished {} = prefix {} + end {eos_lp}",
        finished.total,
        prefix.total
    );
}

/// A model written as a Hugging Face directory reads back with identical logits and tokens.
#[test]
fn hugging_face_export_round_trips() {
    let path = gguf();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("smollm2-hf");
    rco_lm::commands::export_hf(&path, &out).expect("export");
    for name in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(out.join(name).is_file(), "{name} missing");
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).expect("config"))
            .expect("json");
    assert_eq!(
        (
            config["num_hidden_layers"].as_u64(),
            config["num_key_value_heads"].as_u64(),
            config["tie_word_embeddings"].as_bool()
        ),
        (Some(30), Some(3), Some(true))
    );
    let original = Engine::<Cpu>::load(&path, Default::default()).expect("gguf");
    let exported = Engine::<Cpu>::load(&out, Default::default()).expect("hf directory");
    for prompt in ["The capital of France is", "def fibonacci(n):"] {
        let a = original.tokenizer.prompt_ids(prompt, false).expect("ids");
        let b = exported.tokenizer.prompt_ids(prompt, false).expect("ids");
        assert_eq!(a, b);
        assert_eq!(
            original.next_token_log_probs(&a).expect("forward"),
            exported.next_token_log_probs(&b).expect("forward")
        );
    }
    assert_eq!(
        original
            .tokenizer
            .text()
            .expect("subword")
            .chat_prompt("hi")
            .expect("chat"),
        exported
            .tokenizer
            .text()
            .expect("subword")
            .chat_prompt("hi")
            .expect("chat")
    );
    // The same weights in two shards with an index file, as the Hub stores larger models.
    let sharded = dir.path().join("smollm2-sharded");
    std::fs::create_dir_all(&sharded).expect("dir");
    for name in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(out.join(name), sharded.join(name)).expect("copy");
    }
    let bytes = std::fs::read(out.join("model.safetensors")).expect("read");
    let whole = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut names: Vec<String> = whole.names().into_iter().map(String::from).collect();
    names.sort();
    let mut weight_map = serde_json::Map::new();
    for (shard, part) in names.chunks(names.len().div_ceil(2)).enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", shard + 1);
        let views: Vec<(String, safetensors::tensor::TensorView)> = part
            .iter()
            .map(|n| (n.clone(), whole.tensor(n).expect("tensor")))
            .collect();
        let data = safetensors::serialize(views, None).expect("serialize");
        std::fs::write(sharded.join(&file), data).expect("write shard");
        for n in part {
            weight_map.insert(n.clone(), serde_json::json!(file));
        }
    }
    std::fs::write(
        sharded.join("model.safetensors.index.json"),
        serde_json::json!({"metadata": {}, "weight_map": weight_map}).to_string(),
    )
    .expect("index");
    let from_shards = Engine::<Cpu>::load(&sharded, Default::default()).expect("sharded");
    let ids = original
        .tokenizer
        .prompt_ids("The capital of France is", false)
        .expect("ids");
    assert_eq!(
        original.next_token_log_probs(&ids).expect("forward"),
        from_shards.next_token_log_probs(&ids).expect("forward")
    );

    // A damaged directory names the file and the tensor.
    std::fs::write(out.join("model.safetensors"), &bytes[..bytes.len() / 2]).expect("write");
    let err = Engine::<Cpu>::load(&out, Default::default())
        .err()
        .expect("damaged loads")
        .to_string();
    assert!(err.contains("model.safetensors"), "{err}");
}
