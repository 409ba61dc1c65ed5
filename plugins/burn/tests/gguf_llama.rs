//! SmolLM2-135M-Instruct (GGUF Q4_1) through the Llama decoder on the flex backend, against
//! reference numbers from llama.cpp and from an f32 forward of the same weights.
//! The file comes from `scripts/fetch-models.sh` (run by `scripts/test.sh`), whose path is
//! in `SMOLLM2_GGUF`.

use std::path::PathBuf;

use rco_plugin_burn::device::Cpu;
use rco_plugin_burn::generate::LoadedLm;
use rco_plugin_burn::gguf::GgufFile;
use rco_plugin_burn::lm::SamplingConfig;

fn gguf() -> PathBuf {
    let path = std::env::var_os("SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            home.join(".cache/rco/models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch-models.sh (scripts/test.sh does) or set SMOLLM2_GGUF",
        path.display()
    );
    path
}

#[test]
fn smollm2_loads_tokenizes_and_predicts_like_the_reference() {
    let path = gguf();
    let file = GgufFile::open(&path).expect("open gguf");
    assert_eq!(file.version, 3);
    assert_eq!(file.tensors.len(), 272);
    let config = rco_plugin_burn::llama::LlamaConfig::from_gguf(&file).expect("config");
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

    let lm = LoadedLm::<Cpu>::open(&path, Default::default()).expect("load");
    // The tokenizer reproduces llama.cpp's ids.
    let ids = lm
        .tokenizer
        .encode("Hello world! 12345 The capital of France is")
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
        .prompt_ids("The capital of France is", true)
        .expect("prompt");
    assert_eq!(prompt, vec![504, 3575, 282, 4649, 314]);

    // Next-token log-probs: an f32 forward of the dequantized weights gives
    // " Paris" -0.2581, " the" -2.7408, " London" -4.384 (llama.cpp, with 8-bit activations:
    // -0.2589, -2.7646, -4.295). Tolerance 0.02 nats against the f32 reference.
    let log_probs = lm.next_token_log_probs(&prompt).expect("forward");
    let id = |text: &str| lm.tokenizer.encode(text).expect("encode")[0] as usize;
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
        .chat_prompt("What is the capital of France?")
        .expect("chat prompt");
    assert!(
        text.starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"),
        "{text}"
    );
    assert!(text.ends_with("<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"), "{text}");
    let chat = lm
        .prompt_ids("What is the capital of France?", false)
        .expect("chat prompt");
    assert_eq!(chat[0], 1, "<|im_start|> is one control token");
    let greedy = SamplingConfig {
        temperature: 0.0,
        max_tokens: 12,
        ..Default::default()
    };
    let answer = lm
        .generate(&[chat], &[0], &greedy)
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
    let err = LoadedLm::<Cpu>::open(&truncated, Default::default())
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
    let err = LoadedLm::<Cpu>::open(&header, Default::default())
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
    let err = LoadedLm::<Cpu>::open(&text, Default::default())
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
    let err = LoadedLm::<Cpu>::open(&renamed, Default::default())
        .err()
        .expect("other architecture loads")
        .to_string();
    assert!(err.contains("other.gguf") && err.contains("qwen2"), "{err}");
}
