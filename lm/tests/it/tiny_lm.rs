//! The tiny character model on the default (flex) backend: sampling, log-probs, the warm
//! start, checkpoints and the KV cache.

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use rco_core::NoProgress;
use rco_lm::checkpoint::{self, ModelSpec};
use rco_lm::device::Cpu;
use rco_lm::sampling::{completion_log_probs, sample, SamplingConfig, StopTokens};

/// The one-layer tiny model these tests train.
pub fn spec() -> ModelSpec {
    crate::common::tiny_spec(1)
}

pub fn ids(spec: &ModelSpec, text: &str, bos: bool) -> Vec<u32> {
    let mut out = if bos {
        vec![spec.tokenizer.bos()]
    } else {
        vec![]
    };
    out.extend(spec.tokenizer.encode(text).unwrap());
    out
}

#[test]
fn sampled_log_probs_match_scoring_and_padding_does_not_matter() {
    let spec = spec();
    let device = Default::default();
    let model = checkpoint::init::<Cpu>(&spec, &device);
    let prompts = vec![
        ids(&spec, "copy:123|124>", true),
        ids(&spec, "rev:98|89>", true),
        ids(&spec, "a>", true),
    ];
    let config = SamplingConfig {
        temperature: 1.0,
        max_tokens: 6,
        ..Default::default()
    };
    let seeds = [1, 2, 3];
    let together = sample(
        &model,
        &prompts,
        &seeds,
        &config,
        &StopTokens::of(&spec.tokenizer),
        &device,
    );
    // Each row's sample is independent of the rows beside it (left padding is masked).
    for i in 0..3 {
        let alone = sample(
            &model,
            &prompts[i..=i],
            &seeds[i..=i],
            &config,
            &StopTokens::of(&spec.tokenizer),
            &device,
        );
        assert_eq!(alone[0], together[i]);
    }
    // Scoring a row alone or in a padded batch gives the same log-prob.
    let rows: Vec<_> = prompts
        .iter()
        .zip(&together)
        .map(|(p, c)| {
            (
                p.clone(),
                c.iter()
                    .copied()
                    .chain([spec.tokenizer.eos()])
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    let batched: Vec<f32> = completion_log_probs(&model, &rows, &device)
        .into_data()
        .to_vec()
        .unwrap();
    for (i, row) in rows.iter().enumerate() {
        let single: Vec<f32> = completion_log_probs(&model, std::slice::from_ref(row), &device)
            .into_data()
            .to_vec()
            .unwrap();
        assert!(
            (single[0] - batched[i]).abs() < 1e-4,
            "{} vs {}",
            single[0],
            batched[i]
        );
        assert!(batched[i] < 0.0);
    }
    // Greedy decoding is deterministic whatever the seed.
    let greedy = SamplingConfig {
        temperature: 0.0,
        max_tokens: 5,
        ..Default::default()
    };
    let stop = StopTokens::of(&spec.tokenizer);
    assert_eq!(
        sample(&model, &prompts, &[7, 8, 9], &greedy, &stop, &device),
        sample(&model, &prompts, &[1, 1, 1], &greedy, &stop, &device)
    );
}

#[test]
fn warm_start_learns_and_checkpoint_round_trips() {
    let spec = spec();
    let device = Default::default();
    let model = checkpoint::init::<Autodiff<Cpu>>(&spec, &device);
    // Learn to answer "x>" with "yes" and "z>" with "no".
    let examples = vec![
        (
            ids(&spec, "x>", true),
            ids(&spec, "yes", false)
                .into_iter()
                .chain([2])
                .collect::<Vec<_>>(),
        ),
        (
            ids(&spec, "z>", true),
            ids(&spec, "no", false).into_iter().chain([2]).collect(),
        ),
    ];
    let (model, loss) =
        rco_lm::loss::supervised(model, 150, 3e-3, &device, |_| examples.clone(), &NoProgress);
    assert!(loss < 0.05, "final nll {loss}");
    let model = model.valid();
    let greedy = SamplingConfig {
        temperature: 0.0,
        max_tokens: 5,
        ..Default::default()
    };
    let out = sample(
        &model,
        &[examples[0].0.clone(), examples[1].0.clone()],
        &[0, 0],
        &greedy,
        &StopTokens::of(&spec.tokenizer),
        &device,
    );
    assert_eq!(spec.tokenizer.decode(&out[0]), "yes");
    assert_eq!(spec.tokenizer.decode(&out[1]), "no");

    let dir = tempfile::tempdir().unwrap();
    checkpoint::save(dir.path(), &spec, model.clone()).unwrap();
    let (loaded_spec, loaded) = checkpoint::load::<Cpu>(dir.path(), &device).unwrap();
    assert_eq!(loaded_spec, spec);
    let a: Vec<f32> = completion_log_probs(&model, &examples, &device)
        .into_data()
        .to_vec()
        .unwrap();
    let b: Vec<f32> = completion_log_probs(&loaded, &examples, &device)
        .into_data()
        .to_vec()
        .unwrap();
    assert_eq!(a, b);
    // A truncated weights file is an error that names the file.
    let weights = dir.path().join("model.mpk");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let err = checkpoint::load::<Cpu>(dir.path(), &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.mpk"), "{err}");
}

/// Greedy decoding through the KV cache (rows of different lengths, rows stopping early and
/// leaving the batch) gives what recomputing each row's whole sequence gives.
#[test]
fn cached_decoding_matches_full_recompute() {
    use rco_lm::model::CausalLm;
    use rco_lm::sampling::PaddedBatch;

    let spec = spec();
    let device = Default::default();
    let model = checkpoint::init_seeded::<Cpu>(&spec, &device, 3);
    let prompts = vec![
        ids(&spec, "copy:123|124>", true),
        ids(&spec, "a>", true),
        ids(&spec, "rev:98|89>", true),
        ids(&spec, "inc:1|2>", true),
    ];
    let greedy = SamplingConfig {
        temperature: 0.0,
        max_tokens: 12,
        ..Default::default()
    };
    // Stop on the token a few rows produce early, so rows leave the batch at different steps.
    let first: Vec<u32> = sample(
        &model,
        &prompts,
        &[0; 4],
        &SamplingConfig {
            max_tokens: 3,
            ..greedy.clone()
        },
        &StopTokens {
            eos: u32::MAX,
            ends: Vec::new(),
            banned: vec![0, 1],
        },
        &device,
    )
    .into_iter()
    .map(|r| r[2])
    .collect();
    for stop in [
        StopTokens {
            eos: u32::MAX,
            ends: Vec::new(),
            banned: vec![0, 1],
        },
        StopTokens {
            eos: first[0],
            ends: Vec::new(),
            banned: vec![0, 1],
        },
    ] {
        let cached = sample(&model, &prompts, &[0; 4], &greedy, &stop, &device);
        for (prompt, got) in prompts.iter().zip(&cached) {
            let mut row = prompt.clone();
            let mut expected = Vec::new();
            for _ in 0..greedy.max_tokens {
                let batch = PaddedBatch::<Cpu>::new(std::slice::from_ref(&row), &device);
                let logits = model.logits(batch.tokens, batch.positions, batch.mask);
                let [_, t, vocab] = logits.dims();
                let last: Vec<f32> = logits
                    .slice([0..1, t - 1..t, 0..vocab])
                    .into_data()
                    .to_vec()
                    .unwrap();
                let token = (0..vocab)
                    .filter(|&i| i > 1)
                    .max_by(|&a, &b| last[a].total_cmp(&last[b]))
                    .unwrap() as u32;
                if token == stop.eos {
                    break;
                }
                expected.push(token);
                row.push(token);
            }
            assert_eq!(got, &expected, "stop token {}", stop.eos);
        }
    }
}

/// The RCO step in passes of at most one critique (`rows_per_pass`) computes the same loss
/// and moves the model where the step over whole groups does.
#[test]
fn rco_step_in_passes_matches_whole_groups() {
    use burn::optim::AdamWConfig;
    use rco_lm::loss::{rco_step_in_passes, RcoGroup};
    let spec = spec();
    let device = Default::default();
    let group = |prompt: &str, critiques: [&str; 3], offsets: [f64; 3]| RcoGroup {
        rows: critiques
            .iter()
            .map(|c| {
                (
                    ids(&spec, prompt, true),
                    ids(&spec, c, false).into_iter().chain([2]).collect(),
                )
            })
            .collect(),
        offsets: offsets.to_vec(),
    };
    let groups = [
        group("copy:12|13>", ["@2=2", "ok", "=12"], [9.0, 14.0, 11.0]),
        group("rev:34|34>", ["=43", "@1=4", "ok"], [12.0, 8.0, 10.0]),
    ];
    let micro = vec![vec![&groups[0]], vec![&groups[1]]];
    let step = |rows_per_pass: usize| {
        let model = checkpoint::init_seeded::<Autodiff<Cpu>>(&spec, &device, 11);
        let mut optimizer = AdamWConfig::new().init();
        let (model, loss) =
            rco_step_in_passes(model, &mut optimizer, &micro, 1e-3, rows_per_pass, &device);
        let rows: Vec<_> = groups.iter().flat_map(|g| g.rows.clone()).collect();
        let after = completion_log_probs(&model.valid(), &rows, &device)
            .into_data()
            .into_vec::<f32>()
            .unwrap();
        (loss, after)
    };
    let (whole_loss, whole) = step(0);
    let (passes_loss, passes) = step(1);
    assert!(
        (whole_loss - passes_loss).abs() <= 1e-5 * whole_loss.abs(),
        "{whole_loss} vs {passes_loss}"
    );
    for (a, b) in whole.iter().zip(&passes) {
        assert!((a - b).abs() < 1e-4, "{whole:?} vs {passes:?}");
    }
}

/// DPO with one critique per backward pass (`dpo_step_in_rows`: the pair's scores first,
/// then each critique's gradient with its pair's weight held fixed) computes the same loss
/// and gradient as the step over whole pairs (plain SGD, so the update is the gradient),
/// also for a pair at x = 0, where the critic is still the reference.
#[test]
fn dpo_step_in_rows_matches_whole_pairs() {
    use burn::optim::SgdConfig;
    use rco_lm::loss::{dpo_step, dpo_step_in_rows, PreferencePair};
    let spec = spec();
    let device = Default::default();
    let row = |prompt: &str, critique: &str| {
        (
            ids(&spec, prompt, true),
            ids(&spec, critique, false)
                .into_iter()
                .chain([2])
                .collect::<Vec<u32>>(),
        )
    };
    // Reference margins far apart, so the pairs' weights σ(−x) differ.
    let pairs = [
        PreferencePair {
            chosen: row("copy:12|13>", "@2=2"),
            rejected: row("copy:12|13>", "ok"),
            reference_margin: 0.5,
        },
        PreferencePair {
            chosen: row("rev:34|34>", "=43"),
            rejected: row("rev:34|34>", "@1=4"),
            reference_margin: -3.0,
        },
        PreferencePair {
            chosen: row("rev:34|34>", "ok"),
            rejected: row("rev:34|34>", "=43"),
            reference_margin: 6.0,
        },
        // The start's own margin, as where the critic is the reference: x = 0 exactly.
        PreferencePair {
            chosen: row("copy:5|6>", "=5"),
            rejected: row("copy:5|6>", "ok"),
            reference_margin: 0.0,
        },
    ];
    let start = || checkpoint::init_seeded::<Autodiff<Cpu>>(&spec, &device, 11);
    let mut pairs = pairs;
    let own = completion_log_probs(
        &start().valid(),
        &[pairs[3].chosen.clone(), pairs[3].rejected.clone()],
        &device,
    )
    .into_data()
    .into_vec::<f32>()
    .unwrap();
    pairs[3].reference_margin = own[0] as f64 - own[1] as f64;
    let micro = vec![vec![&pairs[0], &pairs[1]], vec![&pairs[2], &pairs[3]]];
    let rows: Vec<_> = pairs
        .iter()
        .flat_map(|p| [p.chosen.clone(), p.rejected.clone()])
        .collect();
    let after = |model: &rco_lm::tiny::TinyLm<Autodiff<Cpu>>| {
        completion_log_probs(&model.valid(), &rows, &device)
            .into_data()
            .into_vec::<f32>()
            .unwrap()
    };
    let (model, whole_loss) = dpo_step(
        start(),
        &mut SgdConfig::new().init(),
        &micro,
        0.5,
        0.5,
        &device,
    );
    let whole = after(&model);
    for per_pass in [1, 3] {
        let (model, rows_loss) = dpo_step_in_rows(
            start(),
            &mut SgdConfig::new().init(),
            &micro,
            0.5,
            0.5,
            per_pass,
            &device,
        );
        assert!(
            (whole_loss - rows_loss).abs() <= 1e-5 * whole_loss.abs(),
            "{per_pass} per pass: {whole_loss} vs {rows_loss}"
        );
        let moved = after(&model);
        for (a, b) in whole.iter().zip(&moved) {
            assert!(
                (a - b).abs() < 1e-4,
                "{per_pass} per pass: {whole:?} vs {moved:?}"
            );
        }
    }
}
