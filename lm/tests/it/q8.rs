//! The Q8_0 inference path (the CPU default, `quantize = "q8_0"`) on the real GGUF models,
//! against the f32 path and llama.cpp. Each model's reference test calls
//! [`assert_q8_agrees`] with what it has already computed in f32 and read from llama.cpp.

use rco_lm::device::Cpu;
use rco_lm::engine::{Engine, Quantize, Settings};
use rco_lm::local::LocalLm;
use rco_lm::sampling::{sample, SamplingConfig, StopTokens};

/// How far (nats) a first-step log-prob of the Q8_0 path may be from the f32 path's: the
/// tolerance the tests already allow llama.cpp, whose 8-bit activations are the same kind
/// of rounding.
const Q8_TOLERANCE: f32 = 0.35;

/// An engine holding f32 weights exactly as loaded.
pub(crate) fn f32_engine(path: &std::path::Path) -> Engine<Cpu> {
    Engine::open(
        path,
        Default::default(),
        Settings {
            quantize: Quantize::None,
            ..Settings::default()
        },
    )
    .expect("load")
}

/// The ranks of `log_probs`, best first.
fn ranked(log_probs: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..log_probs.len()).collect();
    order.sort_by(|a, b| log_probs[*b].total_cmp(&log_probs[*a]));
    order
}

/// The Q8_0 engine of `path`, against the f32 engine `exact` (its greedy continuations
/// `f32_greedy` of up to `n_predict` tokens, sampled with `stop` and first-step log-probs `f32_first` for the prompts
/// `ids`) and llama.cpp's first step (`llama`, as `scripts/llama_reference.py` writes it):
/// - the first-step log-probs of f32's top-5 tokens within [`Q8_TOLERANCE`] of f32's;
/// - first-step top-1 equal to llama.cpp's and top-5 sharing at least 4 with it, except at
///   the prompts in `near_ties` (documented by the caller);
/// - each greedy continuation equal to f32's, or diverging at a near-tie: the f32 log-probs
///   of the two tokens at the first difference within [`Q8_TOLERANCE`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn assert_q8_agrees(
    path: &std::path::Path,
    labels: &[&str],
    ids: &[Vec<u32>],
    exact: &Engine<Cpu>,
    f32_greedy: &[Vec<u32>],
    f32_first: &[Vec<f32>],
    llama: &[serde_json::Value],
    near_ties: &[usize],
    stop: &StopTokens,
) {
    let lm = Engine::<Cpu>::load(path, Default::default()).expect("load q8_0");
    let n_predict = f32_greedy.iter().map(Vec::len).max().unwrap_or(0);
    {
        let model = lm.model().expect("model");
        let LocalLm::Llama(llama_model) = &*model else {
            panic!("not a Llama-family model")
        };
        assert!(llama_model.is_q8(), "the default CPU engine is not Q8_0");
    }
    let mut worst = 0f32;
    for (i, prompt) in ids.iter().enumerate() {
        let q8 = lm.next_token_log_probs(prompt).expect("forward");
        let exact_rank = ranked(&f32_first[i]);
        for &id in &exact_rank[..5] {
            let diff = (q8[id] - f32_first[i][id]).abs();
            worst = worst.max(diff);
            assert!(
                diff < Q8_TOLERANCE,
                "{:?}: token {id}: q8_0 {} vs f32 {}",
                labels[i],
                q8[id],
                f32_first[i][id]
            );
        }
        if near_ties.contains(&i) {
            continue;
        }
        let theirs: Vec<usize> = llama[i]["top5"]
            .as_array()
            .expect("top5")
            .iter()
            .map(|p| p[0].as_u64().expect("id") as usize)
            .collect();
        let ours = ranked(&q8);
        assert_eq!(
            ours[0], theirs[0],
            "{:?}: q8_0 first-step top-1 differs from llama.cpp",
            labels[i]
        );
        let shared = theirs.iter().filter(|id| ours[..5].contains(id)).count();
        assert!(
            shared >= 4,
            "{:?}: q8_0 top-5 shares only {shared} with llama.cpp",
            labels[i]
        );
    }
    eprintln!("q8_0 vs f32: largest first-step top-5 log-prob difference {worst:.4}");

    let greedy = SamplingConfig {
        temperature: 0.0,
        max_tokens: n_predict,
        ..Default::default()
    };
    let seeds = vec![0; ids.len()];
    let q8 = sample(
        &*lm.model().expect("model"),
        ids,
        &seeds,
        &greedy,
        stop,
        &lm.device,
    );
    let mut agreeing = 0;
    for (i, (ours, exact_tokens)) in q8.iter().zip(f32_greedy).enumerate() {
        if ours == exact_tokens {
            agreeing += 1;
            continue;
        }
        let same = ours
            .iter()
            .zip(exact_tokens)
            .take_while(|(a, b)| a == b)
            .count();
        let context: Vec<u32> = ids[i].iter().chain(&ours[..same]).copied().collect();
        let step = exact.next_token_log_probs(&context).expect("forward");
        let (a, b) = (ours[same] as usize, exact_tokens[same] as usize);
        let gap = step[b] - step[a];
        eprintln!(
            "{:?}: q8_0 and f32 agree on {same} tokens, then {:?} vs {:?} (f32 gap {gap:.4})",
            labels[i],
            lm.tokenizer.decode(&ours[same..]).unwrap_or_default(),
            lm.tokenizer
                .decode(&exact_tokens[same..])
                .unwrap_or_default(),
        );
        assert!(
            gap < Q8_TOLERANCE,
            "{:?}: q8_0 diverges from f32 at token {same}, not at a near-tie (gap {gap})",
            labels[i]
        );
    }
    eprintln!(
        "{agreeing} of {} greedy continuations are the same in q8_0 and f32 for {n_predict} tokens",
        ids.len()
    );
}
