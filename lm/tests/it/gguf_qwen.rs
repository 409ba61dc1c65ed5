//! Qwen2.5-Coder-0.5B-Instruct (GGUF Q4_K_M: Q4_K, Q5_0, Q6_K and Q8_0 blocks) through the
//! decoder on the flex backend: its blocks dequantized as llama.cpp's `gguf` package does
//! it, its tokenizer (the `qwen2` pre-tokenizer) against llama.cpp's, its first-step
//! predictions against llama.cpp, its greedy continuations against an f32 numpy forward of
//! the same weights, and a chat answer through its own chat template. The file comes from
//! `scripts/fetch-models.sh qwen2.5-coder-0.5b` (run by `scripts/test.sh`).

use rco_lm::gguf::GgufFile;
use rco_lm::sampling::SamplingConfig;

use crate::common::qwen_gguf;
use crate::gguf_llama::{assert_matches_f32_reference, ids_of, reference};
use crate::q8::{assert_q8_agrees, f32_engine};

#[test]
#[ignore = "long: 10 to 16 min on 2 cores; RCO_FULL_TESTS=1 scripts/test.sh runs it"]
fn qwen2_blocks_tokens_predictions_and_chat_match_the_references() {
    let path = qwen_gguf();

    // Block formats: the first 4096 values and the sum of each tensor type in the file.
    let file = GgufFile::open(&path).expect("header");
    let names = [
        "token_embd.weight",
        "output.weight",
        "blk.0.ffn_down.weight",
        "blk.11.ffn_down.weight",
        "blk.0.attn_q.bias",
    ];
    let expected = reference(
        "gguf_tensors.py",
        &[path.as_os_str()],
        &serde_json::json!(names),
    );
    let mut types = Vec::new();
    for r in &expected {
        let name = r["name"].as_str().expect("name");
        let (values, _) = file.tensor_f32(name).expect("tensor");
        for (i, (ours, theirs)) in values
            .iter()
            .zip(r["head"].as_array().expect("head"))
            .enumerate()
        {
            let theirs = theirs.as_f64().expect("value") as f32;
            assert!(
                (ours - theirs).abs() <= 1e-6 * theirs.abs().max(1.0),
                "{name}[{i}]: {ours} vs {theirs}"
            );
        }
        let sum: f64 = values.iter().map(|&v| f64::from(v)).sum();
        let theirs = r["sum"].as_f64().expect("sum");
        assert!(
            (sum - theirs).abs() <= 1e-3 * theirs.abs().max(1.0),
            "{name}: sum {sum} vs {theirs}"
        );
        types.push(r["type"].as_str().expect("type").to_string());
    }
    for t in ["Q5_0", "Q8_0", "Q6_K", "Q4_K", "F32"] {
        assert!(
            types.iter().any(|x| x == t),
            "no {t} tensor was compared: {types:?}"
        );
    }

    let prompts = [
        "def fibonacci(n):\n    if n < 2:\n        return n",
        "The year 2024 had 366 days; 12345 + 678 = 13023.",
        "Café naïve — 東京 へようこそ! Ünïcödé ✓",
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    ];
    let lm = f32_engine(&path);
    assert_eq!(lm.model().expect("model").architecture(), "qwen2");
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
        &[0; 4],
        &greedy,
        &stop,
        &lm.device,
    );
    let first: Vec<Vec<f32>> = ids
        .iter()
        .map(|p| lm.next_token_log_probs(p).expect("forward"))
        .collect();

    // llama.cpp: the same prompt tokens, the same first token, top-5 sharing at least 4.
    let llama = reference(
        "llama_reference.py",
        &[path.as_os_str(), "1".as_ref()],
        &serde_json::json!(prompts),
    );
    for (i, r) in llama.iter().enumerate() {
        assert_eq!(
            ids_of(&r["prompt_tokens"]),
            ids[i],
            "{:?}: tokenization differs from llama.cpp",
            prompts[i]
        );
        let top5: Vec<usize> = r["top5"]
            .as_array()
            .expect("top5")
            .iter()
            .map(|p| p[0].as_u64().expect("id") as usize)
            .collect();
        let mut ranked: Vec<usize> = (0..first[i].len()).collect();
        ranked.sort_by(|a, b| first[i][*b].total_cmp(&first[i][*a]));
        assert_eq!(
            ranked[0], top5[0],
            "{:?}: first-step top-1 differs from llama.cpp",
            prompts[i]
        );
        let shared = top5.iter().filter(|id| ranked[..5].contains(id)).count();
        assert!(
            shared >= 4,
            "{:?}: top-5 sets share only {shared} tokens",
            prompts[i]
        );
    }

    // The f32 reference: the same 16 greedy tokens, first-step log-probs within 2e-3.
    assert_matches_f32_reference(&path, 16, &prompts, &ids, &ours, &first);

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

    // A chat question through the model's own template (with its default system prompt).
    let chat = lm
        .tokenizer
        .text()
        .expect("subword tokenizer")
        .chat_prompt("Write a Python function is_prime(n).")
        .expect("template");
    assert!(
        chat.starts_with("<|im_start|>system\nYou are Qwen"),
        "{chat}"
    );
    assert!(chat.ends_with("<|im_start|>assistant\n"), "{chat}");
    let mut lm = lm;
    lm.settings.sampling = SamplingConfig {
        temperature: 0.0,
        max_tokens: 40,
        ..Default::default()
    };
    let answer = lm
        .generate(&["Write a Python function is_prime(n).".to_string()], &[0])
        .expect("answer");
    eprintln!("Qwen2.5-Coder-0.5B-Instruct answers:\n{}", answer[0]);
    assert!(answer[0].contains("def is_prime("), "{}", answer[0]);
}

/// A conversation through the model's own chat template: its earlier (wrong) answer as its
/// own turn, then a correction from the user, answered as the assistant's next turn (what an
/// actor does with a `refinement_followup`).
#[test]
fn qwen2_answers_a_conversation_with_its_own_earlier_turn() {
    let mut lm =
        rco_lm::engine::Engine::<rco_lm::device::Cpu>::load(&qwen_gguf(), Default::default())
            .expect("load");
    lm.settings.sampling = SamplingConfig {
        temperature: 0.0,
        max_tokens: 40,
        ..Default::default()
    };
    let turns = [
        ("user", "What is 17 * 3? Reply with the number only."),
        ("assistant", "41"),
        (
            "user",
            "That is wrong: 17 * 3 is 17 + 17 + 17. Reply with the corrected number only.",
        ),
    ];
    let rendered = lm
        .tokenizer
        .text()
        .expect("subword tokenizer")
        .chat_messages(&turns)
        .expect("template");
    assert!(
        rendered.contains("<|im_start|>assistant\n41<|im_end|>\n<|im_start|>user\nThat is wrong")
            && rendered.ends_with("<|im_start|>assistant\n"),
        "{rendered}"
    );
    let owned: Vec<(String, String)> = turns
        .iter()
        .map(|(r, t)| (r.to_string(), t.to_string()))
        .collect();
    let corrected = lm.generate_turns(&[owned], &[0]).expect("corrected");
    eprintln!("after the correction it answers: {}", corrected[0]);
    assert!(corrected[0].contains("51"), "{}", corrected[0]);
}
