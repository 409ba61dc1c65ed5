//! SmolLM2-135M-Instruct (GGUF Q4_1) and, when `QWEN_GGUF` is set, Qwen2.5-Coder-0.5B-Instruct
//! (Q4_K_M), on the flex CPU backend in Q8_0 and in f32, against llama.cpp
//! (PyPI `xllamacpp`, same file, same thread count) in the same run: prefill and decode
//! tokens/s at batch 1 and 8, and one RCO training step for one group of N = 4 critiques of
//! ~128 tokens. Needs `SMOLLM2_GGUF` (scripts/fetch-models.sh) and xllamacpp (scripts/test.sh
//! installs it).
//! Run: `SMOLLM2_GGUF=$(scripts/fetch-models.sh) cargo bench -p rco-benches --bench llama`.
//! `BENCH_NEW_TOKENS=N` decodes N new tokens instead of 32.
//! `BENCH_DEVICE=wgpu` or `cuda:0` (with `--features wgpu` or `cuda`) runs the rco side
//! on that device instead; llama.cpp stays on the CPU (scripts/gpu-check.sh does this).

use std::path::PathBuf;
use std::time::Instant;

use burn::backend::Autodiff;
use burn::optim::AdamWConfig;
use burn::prelude::Backend;
use rco_core::objective::residual_offsets;
use rco_lm::device::DeviceSpec;
use rco_lm::engine::{Engine, Quantize, Settings};
use rco_lm::gguf::GgufFile;
use rco_lm::loss::{rco_step, RcoGroup};
use rco_lm::sampling::{sample, SamplingConfig, StopTokens};

const PROMPT: &str = "The history of the printing press begins in the fifteenth century, when a goldsmith in Mainz combined movable metal type, oil-based ink and a wooden screw press into a system that could produce books faster and cheaper than any scribe. Within fifty years presses were running in more than two hundred cities across Europe, and the number of books in circulation grew from thousands to millions. Scholars argue about the";

fn main() {
    let path = PathBuf::from(
        std::env::var("SMOLLM2_GGUF")
            .expect("set SMOLLM2_GGUF (scripts/fetch-models.sh prints the path)"),
    );
    let name = std::env::var("BENCH_DEVICE").unwrap_or_else(|_| "cpu".into());
    let spec = DeviceSpec::parse(&name)
        .and_then(DeviceSpec::compiled)
        .unwrap_or_else(|e| panic!("BENCH_DEVICE: {e}"));
    // Qwen2.5-Coder-0.5B-Instruct (Q4_K_M) too when `QWEN_GGUF` names it.
    let qwen = std::env::var("QWEN_GGUF").ok().map(PathBuf::from);
    let ran: Result<(), rco_lm::LmError> = rco_lm::with_backend!(spec, |B, device| {
        models::<B>(&path, qwen.as_deref(), &name, device);
        Ok(())
    });
    ran.expect("backend");
}

/// SmolLM2 with the training step, then Qwen when there is one.
fn models<B: Backend>(
    smollm2: &std::path::Path,
    qwen: Option<&std::path::Path>,
    device_name: &str,
    device: B::Device,
) {
    bench::<B>(smollm2, device_name, device.clone(), true);
    if let Some(qwen) = qwen {
        println!();
        bench::<B>(qwen, device_name, device, false);
    }
}

/// Generation speed of one model on each path against llama.cpp; with `step`, one RCO
/// training step too.
fn bench<B: Backend>(path: &std::path::Path, device_name: &str, device: B::Device, step: bool) {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    // `BENCH_NEW_TOKENS` decodes longer (the KV cache's cost grows with the length).
    let new_tokens = std::env::var("BENCH_NEW_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let file = path
        .file_name()
        .map_or_else(String::new, |f| f.to_string_lossy().to_string());
    let backend = if device_name == "cpu" {
        "flex CPU backend".to_string()
    } else {
        format!("device {device_name} ({device:?})")
    };
    // On the CPU: the Q8_0 path users get by default, and f32 exactly as loaded.
    let modes: &[Quantize] = if device_name == "cpu" {
        &[Quantize::Q8_0, Quantize::None]
    } else {
        &[Quantize::None]
    };
    let mut prompt = Vec::new();
    let mut ours: Vec<Vec<(usize, f64, f64)>> = Vec::new();
    for &quantize in modes {
        let settings = Settings {
            quantize,
            ..Settings::default()
        };
        let lm = Engine::<B>::open(path, device.clone(), settings).expect("load");
        prompt = lm.tokenizer.text_ids(PROMPT).expect("encode");
        ours.push(measure(&lm, &prompt, new_tokens, device_name));
    }
    println!(
        "{file}, {backend}, {threads} CPU threads, prompt {} tokens, {new_tokens} new tokens",
        prompt.len()
    );
    let names: Vec<String> = modes
        .iter()
        .map(|m| match m {
            Quantize::Q8_0 => "rco q8_0 tok/s".to_string(),
            Quantize::None => "rco f32 tok/s".to_string(),
        })
        .collect();
    print!("{:<24}", "case");
    for name in &names {
        print!(" {name:>15}");
    }
    println!(" {:>16}", "llama.cpp tok/s");

    let reference =
        std::process::Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../scripts/llama_bench.py"
            ))
            .arg(path)
            .arg(threads.to_string())
            .arg(new_tokens.to_string())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok());
    let theirs = |key: String| {
        reference
            .as_ref()
            .and_then(|r| r[&key].as_f64())
            .map_or("-".to_string(), |v| format!("{v:.1}"))
    };
    for (row, &batch) in [1usize, 8].iter().enumerate() {
        for (case, key, pick) in [("prefill", "prefill", 1usize), ("decode", "decode", 2usize)] {
            print!("{:<24}", format!("{case}, batch {batch}"));
            for mode in &ours {
                let (_, prefill, decode) = mode[row];
                print!(" {:>15.1}", if pick == 1 { prefill } else { decode });
            }
            println!(" {:>16}", theirs(format!("{key}_tok_s_batch{batch}")));
        }
    }
    if let Some(r) = reference.as_ref() {
        for (name, mode) in names.iter().zip(&ours) {
            for (row, batch) in [1usize, 8].iter().enumerate() {
                if let Some(theirs) = r[format!("decode_tok_s_batch{batch}")].as_f64() {
                    println!(
                        "batch-{batch} decode, {} / llama.cpp: {:.2}",
                        name.trim_end_matches(" tok/s"),
                        mode[row].2 / theirs
                    );
                }
            }
        }
    }

    if step {
        rco_steps::<B>(path, &prompt, device);
    }
}

/// One RCO optimizer step, full and LoRA, timed.
fn rco_steps<B: Backend>(path: &std::path::Path, prompt: &[u32], device: B::Device) {
    // One RCO optimizer step on one group: N = 4 critiques of 128 tokens after a 32-token
    // prompt; every weight trained, then LoRA adapters (rank 16 on all seven projections)
    // on the frozen model.
    let rows: Vec<(Vec<u32>, Vec<u32>)> = (0..4)
        .map(|i| {
            (
                prompt[..32].to_vec(),
                prompt.iter().cycle().skip(i).take(128).copied().collect(),
            )
        })
        .collect();
    let group = RcoGroup {
        offsets: residual_offsets(&[-300.0; 4], &[1.0, 0.5, 0.0, 0.5], 0.1),
        rows,
    };
    for lora in [None, Some(rco_lm::lora::LoraConfig::default())] {
        let gguf = GgufFile::open(path).expect("gguf");
        let (_, model) = rco_lm::llama::load_gguf::<Autodiff<B>>(&gguf, &device).expect("load");
        drop(gguf);
        let model = match &lora {
            Some(lora) => model.add_lora(lora),
            None => model,
        };
        let mut optimizer = AdamWConfig::new().init::<Autodiff<B>, _>();
        let micro = vec![vec![&group]];
        let start = Instant::now();
        let (model, loss) = rco_step(model, &mut optimizer, &micro, 1e-6, &device);
        let first = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let (_, _) = rco_step(model, &mut optimizer, &micro, 1e-6, &device);
        let what = if lora.is_some() {
            "LoRA r=16 on all projections"
        } else {
            "every weight"
        };
        println!("RCO step ({what}), one group of N=4 x 128-token critiques: {:.1} s (first step {first:.1} s, loss {loss:.1})", start.elapsed().as_secs_f64());
    }
}

/// Prefill and decode tokens/s at batch 1 and 8.
fn measure<B: Backend>(
    lm: &Engine<B>,
    prompt: &[u32],
    new_tokens: usize,
    device_name: &str,
) -> Vec<(usize, f64, f64)> {
    let model = lm.model().expect("model");
    let no_eos = StopTokens {
        eos: u32::MAX,
        ends: Vec::new(),
        banned: Vec::new(),
    };
    let mut out = Vec::new();
    for batch in [1usize, 8] {
        let prompts: Vec<Vec<u32>> = (0..batch)
            .map(|i| {
                let mut p = prompt.to_vec();
                p.push(lm.tokenizer.text_ids(&format!(" {i}")).expect("encode")[0]);
                p
            })
            .collect();
        let seeds = vec![0; batch];
        let one = SamplingConfig {
            temperature: 0.0,
            max_tokens: 1,
            ..Default::default()
        };
        let many = SamplingConfig {
            temperature: 0.0,
            max_tokens: new_tokens + 1,
            ..Default::default()
        };
        let _ = sample(
            &*model,
            &prompts[..1],
            &seeds[..1],
            &one,
            &no_eos,
            &lm.device,
        );
        if device_name != "cpu" {
            // GPU backends compile kernels on first use, for each shape they meet: one
            // untimed pass at this batch size keeps compilation out of the figures.
            let _ = sample(&*model, &prompts, &seeds, &many, &no_eos, &lm.device);
        }
        let start = Instant::now();
        let _ = sample(&*model, &prompts, &seeds, &one, &no_eos, &lm.device);
        let prefill = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let _ = sample(&*model, &prompts, &seeds, &many, &no_eos, &lm.device);
        let total = start.elapsed().as_secs_f64();
        let prompt_tokens = prompts.iter().map(Vec::len).sum::<usize>() as f64;
        out.push((
            batch,
            prompt_tokens / prefill,
            (batch * new_tokens) as f64 / (total - prefill),
        ));
    }
    out
}
