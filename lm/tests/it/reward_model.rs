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
    // Llama 3.1's rotary scaling and the linear one, against transformers' formulas in numpy.
    let mut unscaled_llama = Vec::new();
    for (arch, scaling) in [
        ("llama", None),
        ("qwen2", None),
        ("llama", Some("llama3")),
        ("llama", Some("linear")),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let vocab = write_tokenizer(dir.path());
        let vocab = vocab.to_string();
        let mut args = vec![
            "make",
            dir.path().to_str().unwrap(),
            &vocab,
            "--arch",
            arch,
            "--seed",
            "7",
        ];
        if let Some(scaling) = scaling {
            args.extend(["--rope-scaling", scaling]);
        }
        python(&args);
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
        // Different conversations get different rewards (the head reads them).
        let spread = reference.iter().copied().fold(f64::MIN, f64::max)
            - reference.iter().copied().fold(f64::MAX, f64::min);
        assert!(spread > 1e-3, "{reference:?}");
        // The scaling changes the rewards: the comparison would catch it ignored.
        match scaling {
            None if arch == "llama" => unscaled_llama = reference,
            Some(scaling) => assert!(
                (reference[2] - unscaled_llama[2]).abs() > 1e-3,
                "{scaling}: {reference:?} vs {unscaled_llama:?}"
            ),
            None => {}
        }
    }
}

#[test]
fn an_unsupported_rope_scaling_is_an_error_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let vocab = write_tokenizer(dir.path());
    python(&["make", dir.path().to_str().unwrap(), &vocab.to_string()]);
    let config = dir.path().join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    json["rope_scaling"] = serde_json::json!({"rope_type": "yarn", "factor": 4.0});
    std::fs::write(&config, json.to_string()).unwrap();
    let err = RewardModel::<Cpu>::open(dir.path(), &Default::default())
        .err()
        .expect("an error");
    assert!(
        err.to_string()
            .contains("`rope_scaling` of type `yarn` is not supported"),
        "{err}"
    );
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
