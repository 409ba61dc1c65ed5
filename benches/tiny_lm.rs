//! Throughput of the burn side at the quickstart critic's size on the CPU (flex) backend:
//! batched sampling, batched completion log-probs, one warm-start step and one RCO step.
//! Run: `cargo bench -p rco-benches --bench tiny_lm`.

use std::time::Instant;

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::optim::AdamWConfig;
use rco_core::objective::residual_offsets;
use rco_lm::checkpoint::{init_seeded, Architecture, ModelSpec};
use rco_lm::device::Cpu;
use rco_lm::loss::{rco_step, supervised, Example, RcoGroup};
use rco_lm::sampling::{completion_log_probs, sample, SamplingConfig, StopTokens};
use rco_lm::tiny::TinyLmConfig;
use rco_lm::tokenizer::{CharTokenizer, Tokenizer};

fn spec() -> ModelSpec {
    let tokenizer = Tokenizer::Chars(CharTokenizer {
        alphabet: rco_plugin_quickstart::critic::ALPHABET.into(),
    });
    let config = TinyLmConfig {
        vocab_size: tokenizer.vocab_size(),
        d_model: 64,
        heads: 4,
        layers: 2,
        d_ff: 256,
        max_len: 40,
    };
    ModelSpec {
        architecture: Architecture::Tiny(config),
        tokenizer,
    }
}

fn examples(spec: &ModelSpec, n: usize) -> Vec<Example> {
    (0..n)
        .map(|i| {
            let digits = format!("{:05}", (i * 7919) % 100_000);
            let mut prompt = vec![spec.tokenizer.bos()];
            prompt.extend(
                spec.tokenizer
                    .encode(&format!("copy:{digits}|{digits}>"))
                    .unwrap_or_default(),
            );
            let mut completion = spec
                .tokenizer
                .encode(&format!("={digits}"))
                .unwrap_or_default();
            completion.push(spec.tokenizer.eos());
            (prompt, completion)
        })
        .collect()
}

/// Median seconds of `runs` calls after one warm-up call.
fn time(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut samples: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

fn main() {
    let spec = spec();
    let device = Default::default();
    let model = init_seeded::<Cpu>(&spec, &device, 1);
    println!(
        "tiny_lm (d_model 64, 2 layers, char vocab {}), flex CPU backend, median of 5",
        spec.tokenizer.vocab_size()
    );
    println!("{:<44} {:>12} {:>16}", "case", "seconds", "throughput");

    for batch in [1usize, 64, 256] {
        let data = examples(&spec, batch);
        let prompts: Vec<Vec<u32>> = data.iter().map(|(p, _)| p.clone()).collect();
        let seeds: Vec<u64> = (0..batch as u64).collect();
        // A fixed 8 new tokens per row (EOS is never drawn at temperature 1 from a fresh model
        // often enough to matter; rows that stop early only make this faster).
        let config = SamplingConfig {
            temperature: 1.0,
            max_tokens: 8,
            ..Default::default()
        };
        let mut tokens = 0usize;
        let s = time(5, || {
            tokens = sample(
                &model,
                &prompts,
                &seeds,
                &config,
                &StopTokens {
                    eos: u32::MAX,
                    ends: Vec::new(),
                    banned: vec![],
                },
                &device,
            )
            .iter()
            .map(Vec::len)
            .sum()
        });
        println!(
            "{:<44} {:>12.4} {:>11.0} tok/s",
            format!("sample, batch {batch}, 8 new tokens"),
            s,
            tokens as f64 / s
        );
    }
    for batch in [64usize, 256] {
        let data = examples(&spec, batch);
        let s = time(5, || {
            let _ = completion_log_probs(&model, &data, &device).into_data();
        });
        println!(
            "{:<44} {:>12.4} {:>10.0} seq/s",
            format!("completion log-probs, batch {batch}"),
            s,
            batch as f64 / s
        );
    }

    let data = examples(&spec, 256);
    let trainable = init_seeded::<Autodiff<Cpu>>(&spec, &device, 1);
    let mut slot = Some(trainable);
    let s = time(5, || {
        let m = slot.take().expect("model");
        let (m, _) = supervised(m, 1, 1e-3, &device, |_| data.clone(), &rco_core::NoProgress);
        slot = Some(m);
    });
    println!(
        "{:<44} {:>12.4} {:>10.0} seq/s",
        "warm-start step, batch 256",
        s,
        256.0 / s
    );

    // One RCO optimizer step: 8 groups of N = 8 critiques.
    let groups: Vec<RcoGroup> = (0..8)
        .map(|g| {
            let rows = examples(&spec, 8)
                .into_iter()
                .map(|(p, c)| (p, c.into_iter().rev().collect::<Vec<_>>()))
                .collect::<Vec<_>>();
            let cus: Vec<f64> = (0..8).map(|i| ((i + g) % 3) as f64 / 2.0).collect();
            RcoGroup {
                offsets: residual_offsets(&[-5.0; 8], &cus, 0.1),
                rows,
            }
        })
        .collect();
    let micro = vec![groups.iter().collect::<Vec<_>>()];
    let mut optimizer = AdamWConfig::new().init::<Autodiff<Cpu>, _>();
    let mut slot = Some(init_seeded::<Autodiff<Cpu>>(&spec, &device, 2));
    let s = time(5, || {
        let m = slot.take().expect("model");
        let (m, _) = rco_step(m, &mut optimizer, &micro, 1e-3, &device);
        slot = Some(m);
    });
    println!(
        "{:<44} {:>12.4} {:>10.0} seq/s",
        "RCO step, 8 groups x N=8",
        s,
        64.0 / s
    );
    let _ = slot.map(|m| m.valid());
}
