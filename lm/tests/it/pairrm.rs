//! PairRM against an independent numpy forward (`scripts/pairrm.py`): a checkpoint with
//! random weights, the real tensor names and config keys, at tiny sizes; hidden states and
//! logits match to 1e-4, in a padded batch and with sequences long enough to reach the
//! far relative-position buckets. The same checkpoint as `pytorch_model.bin` reads the same.
//! And DeBERTa-v3's real tokenizer lays pairs out exactly as llm-blender does.

use std::path::Path;
use std::process::Command;

use rco_lm::device::Cpu;
use rco_lm::pairrm::{PairInput, PairRm, PairTokenizer};
use serde_json::{json, Value};

use crate::common::deberta_tokenizer;

fn workspace() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(workspace().join("scripts").join(script))
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

fn tiny_checkpoint(extra: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["make", dir.path().to_str().unwrap(), "--seed", "5"];
    args.extend_from_slice(extra);
    python("pairrm.py", &args);
    dir
}

fn numbers(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().flat_map(numbers).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap()],
        other => panic!("not numbers: {other}"),
    }
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn hidden_states_and_logits_match_the_numpy_reference() {
    let dir = tiny_checkpoint(&[]);
    let device = Default::default();
    let model = PairRm::<Cpu>::open(dir.path(), None, None, None, &device).unwrap();
    // The config's limits: 40 source tokens, 20 per answer (80 in all, beyond the 64
    // positions of the relative buckets, so both index clamps are reached).
    assert_eq!(model.tokenizer.source_max_tokens, 40);
    let long = "what is the five plus two ".repeat(12);
    let rows: Vec<PairInput> = vec![
        model
            .layout("what is two plus two?", "four", "it is five")
            .unwrap(),
        model
            .layout("what is two plus two?", "it is five", "four")
            .unwrap(),
        model.layout(&long, &long, &long).unwrap(),
        model.layout("2+2", "it is five [SEP] four", &long).unwrap(),
    ];
    assert_eq!(rows[2].ids.len(), 80);
    assert_eq!(rows[0].ids[..2], [1, 296]);
    let ids: Vec<Vec<u32>> = rows.iter().map(|r| r.ids.clone()).collect();
    let inputs = dir.path().join("inputs.json");
    std::fs::write(
        &inputs,
        json!({"rows": ids, "compare": [[0, 1]]}).to_string(),
    )
    .unwrap();
    let reference: Value = serde_json::from_str(&python(
        "pairrm.py",
        &[
            "reference",
            dir.path().to_str().unwrap(),
            inputs.to_str().unwrap(),
        ],
    ))
    .unwrap();

    // Hidden states of the padded batch, at each row's real tokens.
    let hidden = model.hidden(&rows);
    let [_, t, d] = hidden.dims();
    let hidden: Vec<f32> = hidden.into_data().to_vec().unwrap();
    let mut worst = 0.0f64;
    for (r, row) in rows.iter().enumerate() {
        let expected = numbers(&reference["rows"][r]["hidden"]);
        let got: Vec<f64> = hidden[r * t * d..(r * t + row.ids.len()) * d]
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        worst = worst.max(max_diff(&got, &expected));
        assert_eq!(
            reference["rows"][r]["cand2_pos"].as_u64().unwrap() as usize,
            row.candidate2_at
        );
    }
    assert!(worst < 1e-4, "hidden states differ by {worst}");

    // One order's logits, batched and one row at a time.
    let logits = model.logits(&rows);
    let expected: Vec<f64> = (0..rows.len())
        .map(|r| reference["rows"][r]["logit"].as_f64().unwrap())
        .collect();
    let got: Vec<f64> = logits.iter().map(|&v| f64::from(v)).collect();
    assert!(max_diff(&got, &expected) < 1e-4, "{got:?} vs {expected:?}");
    for (r, row) in rows.iter().enumerate() {
        let alone = f64::from(model.logits(std::slice::from_ref(row))[0]);
        assert!((alone - expected[r]).abs() < 1e-4);
    }
    // The logits are not all alike: the check would catch a head reading the wrong rows.
    assert!(max_diff(&got[..1], &got[1..2]) > 1e-3);

    // Both orders, as llm-blender compares.
    let both = model
        .compare(&[("what is two plus two?", "four", "it is five")])
        .unwrap();
    let expected = reference["compare"][0].as_f64().unwrap();
    assert!((f64::from(both[0]) - expected).abs() < 1e-4);
}

#[test]
fn pytorch_checkpoints_read_the_same_as_safetensors() {
    // Saved by an older transformers: the int64 `position_ids` buffer is in the file too.
    let dir = tiny_checkpoint(&["--position-ids"]);
    let device = Default::default();
    let rows = |model: &PairRm<Cpu>| {
        vec![
            model
                .layout("what is two plus two?", "four", "five")
                .unwrap(),
            model.layout("2+2", "it is 4", "4").unwrap(),
        ]
    };
    let safetensors = PairRm::<Cpu>::open(dir.path(), None, None, None, &device).unwrap();
    let expected = safetensors.logits(&rows(&safetensors));
    let weights = dir.path().join("model.safetensors");
    let bin = dir.path().join("pytorch_model.bin");
    python(
        "pytorch_bin.py",
        &[weights.to_str().unwrap(), bin.to_str().unwrap()],
    );
    std::fs::remove_file(&weights).unwrap();
    let pytorch = PairRm::<Cpu>::open(dir.path(), None, None, None, &device).unwrap();
    assert_eq!(pytorch.logits(&rows(&pytorch)), expected);
}

#[test]
fn a_missing_tensor_and_a_wrong_shape_name_the_tensor() {
    let dir = tiny_checkpoint(&[]);
    let config_path = dir.path().join("config.json");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["num_hidden_layers"] = json!(3);
    std::fs::write(&config_path, config.to_string()).unwrap();
    let device = Default::default();
    let error = PairRm::<Cpu>::open(dir.path(), None, None, None, &device)
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("pretrained_model.encoder.layer.2.attention.self.query_proj.weight"),
        "{error}"
    );
    config["num_hidden_layers"] = json!(2);
    config["intermediate_size"] = json!(48);
    std::fs::write(&config_path, config.to_string()).unwrap();
    let error = PairRm::<Cpu>::open(dir.path(), None, None, None, &device)
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("intermediate.dense.weight` has shape [64, 32], expected [48, 32]"),
        "{error}"
    );
}

#[test]
fn deberta_v3_tokenizer_lays_pairs_out_as_llm_blender_does() {
    let path = deberta_tokenizer();
    // PairRM-hf's config names the prefix ids; the loader adds the tokens at those ids.
    let config = json!({"source_prefix_id": 128001, "cand1_prefix_id": 128002,
                        "cand2_prefix_id": 128003, "cand_prefix_id": 128004});
    let tokenizer =
        PairTokenizer::open(&path, &config, Path::new("config.json"), None, None).unwrap();
    // The token ids llm-blender's tokenizer (transformers' DeBERTa-v3 fast tokenizer with the
    // prefix tokens added) gives, from the PairRM-hf model card's two pairs.
    let demo = tokenizer.layout("hello!", "hi!", "f**k off!").unwrap();
    assert_eq!(
        demo.ids,
        [
            1, 128001, 12018, 300, 2, 1, 128002, 8595, 300, 2, 1, 128003, 2994, 1225, 1225, 1165,
            442, 300, 2
        ]
    );
    let demo = tokenizer
        .layout("I love you!", "I hate you!", "I love you, too!")
        .unwrap();
    assert_eq!(
        demo.ids,
        [
            1, 128001, 273, 472, 274, 300, 2, 1, 128002, 273, 3254, 274, 300, 2, 1, 128003, 273,
            472, 274, 261, 461, 300, 2
        ]
    );
    // Whitespace runs, tabs, newlines, NFKC (ﬁ → fi, ① → 1), an emoji the vocabulary lacks.
    let candidate = 128004;
    for (text, ids) in [
        ("hello, how are you!", vec![12018, 261, 361, 281, 274, 300]),
        (
            "hi! I am fine, thanks!",
            vec![8595, 300, 273, 481, 1399, 261, 1644, 300],
        ),
        (
            "  Two  spaces\tand\nnewline  ",
            vec![1852, 3654, 263, 353, 2291],
        ),
        (
            "café ﬁ ① 😀 日本",
            vec![15924, 16466, 376, 54783, 507, 100868],
        ),
    ] {
        assert_eq!(
            tokenizer.encode_after(candidate, text).unwrap(),
            ids,
            "{text}"
        );
    }
    // A config whose prefix ids disagree with the tokenizer is refused, naming the key.
    let wrong = json!({"source_prefix_id": 5});
    let error = PairTokenizer::open(&path, &wrong, Path::new("config.json"), None, None)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("`source_prefix_id` is 5"), "{error}");
}
