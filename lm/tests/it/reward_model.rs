//! The reward-model loader and forward against an independent numpy forward: a
//! sequence-classification checkpoint with random weights and the real tensor names and
//! config keys (`scripts/reward_model.py make`), for both architectures, with SmolLM2's real
//! tokenizer and chat template; the rewards match to 1e-4.

use std::path::Path;
use std::process::Command;

use rco_lm::device::Cpu;
use rco_lm::gguf::GgufFile;
use rco_lm::reward::RewardModel;
use rco_lm::text::TextTokenizer;

use crate::common::smollm2_gguf;

fn workspace() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// SmolLM2's tokenizer and chat template as Hugging Face files in `dir`.
fn write_tokenizer(dir: &Path) -> usize {
    let tokenizer = TextTokenizer::from_gguf(&GgufFile::open(&smollm2_gguf()).unwrap()).unwrap();
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_json().unwrap()).unwrap();
    let config = serde_json::json!({
        "chat_template": tokenizer.chat_template,
        "add_bos_token": false,
    });
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
    tokenizer.inner.get_vocab_size(true)
}

fn python(args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(workspace().join("scripts/reward_model.py"))
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn rewards_match_the_numpy_reference() {
    for arch in ["llama", "qwen2"] {
        let dir = tempfile::tempdir().unwrap();
        let vocab = write_tokenizer(dir.path());
        python(&[
            "make",
            dir.path().to_str().unwrap(),
            &vocab.to_string(),
            "--arch",
            arch,
            "--seed",
            "7",
        ]);
        let device = Default::default();
        let model = RewardModel::<Cpu>::open(dir.path(), &device).unwrap();
        let pairs = [
            ("What is 2 + 2?", "4"),
            ("What is 2 + 2?", "It is five, I think."),
            ("Name a prime number larger than ten.", "Eleven is prime."),
        ];
        let rows: Vec<Vec<u32>> = pairs
            .iter()
            .map(|(p, a)| model.tokens(p, a).unwrap())
            .collect();
        // The chat format is SmolLM2's: the answer's turn is closed.
        let text = rows[0].len();
        assert!(text > 10, "{text}");
        let ids = dir.path().join("ids.json");
        std::fs::write(&ids, serde_json::to_string(&rows).unwrap()).unwrap();
        let reference: Vec<f64> = serde_json::from_str(&python(&[
            "reference",
            dir.path().to_str().unwrap(),
            ids.to_str().unwrap(),
        ]))
        .unwrap();
        // Batched (left-padded rows of different lengths) and one at a time.
        let batched = model.rewards(&pairs).unwrap();
        for (i, row) in rows.iter().enumerate() {
            let alone = model.rewards_of(std::slice::from_ref(row))[0];
            for (what, got) in [("batched", batched[i]), ("alone", alone)] {
                assert!(
                    (got as f64 - reference[i]).abs() < 1e-4,
                    "{arch} row {i} {what}: {got} vs reference {}",
                    reference[i]
                );
            }
        }
        // Different answers get different rewards (the head reads the answer).
        assert!((reference[0] - reference[1]).abs() > 1e-3, "{reference:?}");
    }
}

#[test]
fn a_causal_lm_checkpoint_is_not_a_reward_model() {
    let dir = tempfile::tempdir().unwrap();
    let vocab = write_tokenizer(dir.path());
    python(&["make", dir.path().to_str().unwrap(), &vocab.to_string()]);
    let config = dir.path().join("config.json");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("LlamaForSequenceClassification", "LlamaForCausalLM");
    std::fs::write(&config, text).unwrap();
    let err = RewardModel::<Cpu>::open(dir.path(), &Default::default())
        .err()
        .expect("an error");
    assert!(
        err.to_string().contains("lm_head.weight")
            || err.to_string().contains("sequence-classification"),
        "{err}"
    );
}
