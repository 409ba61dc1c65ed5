//! The `rco` command line: argument parsing and one function per command.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::{config, progress, run as runner, serve};
use rco_lm::engine::Quantize;

#[derive(Parser)]
#[command(
    name = "rco",
    version,
    about = "Train critic models whose critiques make an actor's answers better (Refinement-oriented Critique Optimization)"
)]
struct Cli {
    /// What to log on stderr, in `tracing`'s filter syntax (`info`, `debug`,
    /// `rco_plugin_openai=debug,warn`); overrides RCO_LOG.
    #[arg(long, global = true, value_name = "FILTER")]
    log_level: Option<String>,
    /// Threads for rco's own model computation (the CPU backend's kernels); default: one per
    /// available core, or RCO_THREADS.
    #[arg(long, global = true, value_name = "N")]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every stage: collect, train, eval, report (resumes an unfinished run directory).
    Run(StageArgs),
    /// Sample critiques, refinements and judgements on the training items.
    Collect(StageArgs),
    /// Train the critic on the collected critique utilities.
    Train(StageArgs),
    /// Evaluate the base and the trained critic with each actor on held-out items.
    Eval(EvalArgs),
    /// Write report.json and report.md from the evaluation and print the CU table.
    Report(StageArgs),
    /// Continue a prompt with a language model file (chat template applied unless --raw).
    Generate {
        /// A GGUF model file.
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        prompt: String,
        #[arg(long, default_value_t = 64)]
        max_tokens: usize,
        /// 0 = greedy.
        #[arg(long, default_value_t = 0.0)]
        temperature: f64,
        #[arg(long, default_value_t = 0)]
        top_k: usize,
        #[arg(long, default_value_t = 1.0)]
        top_p: f64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// cpu, wgpu or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Use the prompt as it is, without the chat template.
        #[arg(long)]
        raw: bool,
        /// Cut the completion before this string (repeatable).
        #[arg(long)]
        stop: Vec<String>,
        /// How the CPU holds the weights: `q8_0` (the fast path) or `none` (f32, exactly
        /// as loaded). GPU devices run in f32.
        #[arg(long, default_value = "q8_0")]
        quantize: Quantize,
    },
    /// Log-probability of a completion after a prompt, and the most likely next tokens.
    ///
    /// The completion is scored as a prefix, with no end-of-sequence token after it; `--end`
    /// adds one, as critics score a finished critique (`ref_logprob`) and trainers train it.
    Logprob {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        prompt: String,
        #[arg(long, default_value = "")]
        completion: String,
        /// Score the completion as finished: the model's end-of-sequence token after it.
        #[arg(long)]
        end: bool,
        #[arg(long, default_value_t = 5)]
        top: usize,
        #[arg(long, default_value = "cpu")]
        device: String,
        #[arg(long)]
        raw: bool,
        /// `q8_0` (the fast path) or `none` (f32, exactly as loaded), as for `generate`.
        #[arg(long, default_value = "q8_0")]
        quantize: Quantize,
    },
    /// Write a model (GGUF file or Hugging Face directory) as a Hugging Face Llama directory
    /// (safetensors, config.json, tokenizer.json) for vLLM, transformers or llama.cpp.
    Export {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Serve a model over an OpenAI-compatible HTTP API (/v1/chat/completions,
    /// /v1/completions, /v1/models), batching concurrent requests.
    Serve(serve::ServeArgs),
    /// Measure the config's judge on preference pairs (prompt, chosen, rejected): accuracy,
    /// position consistency, first-slot, tie and invalid rates, per subset; resumable.
    JudgeEval {
        /// The experiment's TOML config (its `[judge]` is evaluated).
        config: PathBuf,
        /// JSONL preference pairs in RewardBench's shape.
        pairs: PathBuf,
        /// Output directory (default: runs/<config file stem>-judge-eval).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Judge the refinements a run collected again with another judge and compare the
    /// critique utilities (Spearman per item, best-critique agreement): the judge ablation.
    Rejudge {
        /// The run's config.
        config: PathBuf,
        /// A config whose `[judge]` judges again (a judge-only config is enough).
        judge: PathBuf,
        /// Run directory (default: runs/<config file stem>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Name of this judge's results under RUN_DIR/rejudge/ (default: the judge config's
        /// file stem).
        #[arg(long)]
        name: Option<String>,
    },
    /// Write the groups a run collected as training data for other trainers: with
    /// `--format trl`, `rco.jsonl` (prompt, completion, reward = CU) and `preferences.jsonl`
    /// (prompt, chosen, rejected: pairs of critiques of one answer, higher CU chosen).
    ExportGroups {
        /// The run directory (it must hold groups.jsonl).
        run_dir: PathBuf,
        /// The output shape: `trl`.
        #[arg(long, default_value = "trl")]
        format: String,
        /// Output directory (default: RUN_DIR/export/FORMAT).
        #[arg(long)]
        out: Option<PathBuf>,
        /// A pair needs chosen CU − rejected CU larger than this.
        #[arg(long, default_value_t = 0.0)]
        min_gap: f64,
    },
    /// Put finished runs side by side: one CU matrix (RUN/critic rows) and the paired
    /// difference of every two critics from different runs evaluated on the same items.
    Compare {
        /// Two or more run directories (each with report.json and eval.jsonl).
        #[arg(required = true, num_args = 2..)]
        runs: Vec<PathBuf>,
        /// Where the comparison is written as JSON.
        #[arg(long, default_value = "compare.json")]
        out: PathBuf,
        /// Bootstrap resamples of each paired interval.
        #[arg(long, default_value_t = 1000)]
        resamples: usize,
        /// Seed of the bootstrap.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Load a model on several devices and compare each with the first: logits and
    /// log-probs (largest difference, top-1), greedy continuations (first divergence, near-tie
    /// or not) and one RCO training step; prints a table, writes JSON, and exits non-zero
    /// when a device is beyond the tolerances.
    Backends {
        /// A GGUF file, Hugging Face directory or checkpoint directory.
        #[arg(long)]
        model: PathBuf,
        /// Comma-separated devices, the first the reference: cpu, wgpu, cuda:N, each
        /// optionally with +q8_0 (the CPU's Q8_0 inference path).
        #[arg(long, default_value = "cpu,wgpu")]
        devices: String,
        /// Prompts, read raw (no chat template): a JSON list of strings, or one per line.
        #[arg(long)]
        prompts: Option<PathBuf>,
        /// Tokens of each greedy continuation.
        #[arg(long, default_value_t = 16)]
        max_tokens: usize,
        /// Where the comparison is written as JSON.
        #[arg(long, default_value = "backends.json")]
        out: PathBuf,
        /// Looser (or tighter) bounds than the f32 defaults, comma-separated KEY=VALUE:
        /// logits, log_probs, near_tie, step_loss, step_log_probs (for example
        /// `logits=0.1,log_probs=0.1,step_log_probs=0.2` for CUDA, whose matmuls run in TF32).
        #[arg(long, default_value = "")]
        tolerance: String,
    },
    /// Validate a config and report every problem.
    Check { config: PathBuf },
    /// Print the JSON Schema of config files.
    Schema,
    /// List the registered plugins.
    Plugins {
        /// Also print each plugin's example section.
        #[arg(long)]
        examples: bool,
    },
}

#[derive(clap::Args)]
struct StageArgs {
    /// The experiment's TOML config.
    config: PathBuf,
    /// Run directory (default: runs/<config file stem>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Go on in a run directory whose manifest does not match this config or its data
    /// (or that has records but no manifest), and record this config as its own.
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
struct EvalArgs {
    #[command(flatten)]
    stage: StageArgs,
    /// Evaluate only these critics, comma-separated (`base,base-draw-2`); the others need
    /// not have trained yet. Default: every critic the config evaluates.
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    critics: Vec<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Stage {
    Collect,
    Train,
    Eval,
    Report,
}

/// Sizes the compute thread pool from `--threads`, else `RCO_THREADS`, else the cores.
fn set_threads(flag: Option<usize>) -> anyhow::Result<()> {
    use anyhow::Context;
    let var = rco_lm::device::THREADS_VAR;
    let threads = match flag {
        Some(n) => Some(n),
        None => match std::env::var(var) {
            Ok(text) => Some(
                text.trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0)
                    .with_context(|| {
                        format!(
                            "{var}={text:?} is not a thread count (a whole number of at least 1)"
                        )
                    })?,
            ),
            Err(_) => None,
        },
    };
    match threads {
        Some(n) => rco_lm::device::set_threads(n).context("--threads"),
        None => Ok(()),
    }
}

/// Runs the `rco` command line with the process's arguments; every plugin linked into the
/// binary (the built-in ones, and any registered by the crate that calls this) is available.
pub fn main() -> ExitCode {
    rco_plugins::link();
    let cli = Cli::parse();
    let result = crate::logging::init(cli.log_level.as_deref())
        .and_then(|()| set_threads(cli.threads))
        .and_then(|()| run(cli));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => stages(
            &args,
            &[Stage::Collect, Stage::Train, Stage::Eval, Stage::Report],
            &[],
        ),
        Command::Collect(args) => stages(&args, &[Stage::Collect], &[]),
        Command::Train(args) => stages(&args, &[Stage::Train], &[]),
        Command::Eval(args) => stages(&args.stage, &[Stage::Eval], &args.critics),
        Command::Report(args) => stages(&args, &[Stage::Report], &[]),
        Command::JudgeEval { config, pairs, out } => {
            let loaded = config::load_judge(&config)?;
            let out = out.unwrap_or_else(|| {
                let mut dir = default_out(&config).into_os_string();
                dir.push("-judge-eval");
                PathBuf::from(dir)
            });
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let started = std::time::Instant::now();
            let table = runtime.block_on(crate::judge_eval::judge_eval(
                &loaded,
                &pairs,
                &out,
                Arc::new(progress::Bars),
            ))?;
            print!("{table}");
            eprintln!(
                "done in {:.1}s; results in {}",
                started.elapsed().as_secs_f64(),
                out.join(crate::judge_eval::SUMMARY_FILE).display()
            );
            Ok(())
        }
        Command::Rejudge {
            config,
            judge,
            out,
            name,
        } => {
            let loaded = config::load(&config)?;
            let other = config::load_judge(&judge)?;
            let name = name.unwrap_or_else(|| {
                judge
                    .file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .to_string()
            });
            let out = out.unwrap_or_else(|| default_out(&config));
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let a = runtime.block_on(async {
                let run = runner::Run::open(loaded, &out, Arc::new(progress::Bars))?;
                run.rejudge(&other, &name).await
            })?;
            let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
            println!(
                "{} items judged again by `{}` ({}): mean Spearman of critique CUs {} over {} items whose critiques both judges tell apart; best critique agrees on {}; mean CU {} (run's judge) vs {}; invalid rate {:.3}",
                a.items, a.name, a.judge, f(a.mean_spearman), a.correlated_items, f(a.best_critique_agreement), f(a.mean_cu_run_judge), f(a.mean_cu_other_judge), a.invalid_rate
            );
            eprintln!("results in {}", out.join("rejudge").join(&name).display());
            Ok(())
        }
        Command::ExportGroups {
            run_dir,
            format,
            out,
            min_gap,
        } => {
            let e =
                crate::export_groups::export_groups(&run_dir, &format, out.as_deref(), min_gap)?;
            println!(
                "{} groups ({} flat): {} critiques in {}, {} preference pairs in {}",
                e.groups,
                e.flat_groups,
                e.critiques,
                e.dir.join(crate::export_groups::REWARD_FILE).display(),
                e.pairs,
                e.dir.join(crate::export_groups::PREFERENCE_FILE).display()
            );
            if let Some(direct) = e.direct_pairs {
                println!(
                    "{direct} directly judged critique pairs in {}",
                    e.dir
                        .join(crate::export_groups::DIRECT_PREFERENCE_FILE)
                        .display()
                );
            }
            Ok(())
        }
        Command::Compare {
            runs,
            out,
            resamples,
            seed,
        } => {
            let comparison = crate::compare::compare(&runs, resamples, seed)?;
            print!("{}", crate::compare::text(&comparison));
            write_json(&out, &comparison)?;
            eprintln!("written to {}", out.display());
            Ok(())
        }
        Command::Backends {
            model,
            devices,
            prompts,
            max_tokens,
            out,
            tolerance,
        } => {
            let targets = devices
                .split(',')
                .map(|d| rco_lm::parity::Target::parse(d.trim()))
                .collect::<Result<Vec<_>, _>>()
                .context("--devices")?;
            let prompts: Vec<String> = match prompts {
                None => DEFAULT_PARITY_PROMPTS
                    .iter()
                    .map(|p| p.to_string())
                    .collect(),
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    if text.trim_start().starts_with('[') {
                        serde_json::from_str(&text).with_context(|| {
                            format!("{}: not a JSON list of strings", path.display())
                        })?
                    } else {
                        text.lines()
                            .filter(|l| !l.trim().is_empty())
                            .map(str::to_string)
                            .collect()
                    }
                }
            };
            if prompts.is_empty() {
                anyhow::bail!("--prompts: no prompt");
            }
            let report = rco_lm::parity::compare(
                &model,
                &targets,
                &prompts,
                max_tokens,
                rco_lm::parity::Tolerance::default()
                    .with_overrides(&tolerance)
                    .map_err(|e| anyhow::anyhow!("--tolerance: {e}"))?,
            )?;
            print!("{}", report.table());
            write_json(&out, &report)?;
            eprintln!("written to {}", out.display());
            if !report.passed() {
                anyhow::bail!(
                    "a device is beyond the tolerances (see above and {})",
                    out.display()
                );
            }
            Ok(())
        }
        Command::Check { config } => {
            if config::is_judge_only(&config)? {
                let loaded = config::load_judge(&config)?;
                println!(
                    "{}: ok (a judge only, for rco judge-eval; judge `{}`)",
                    config.display(),
                    kind(&loaded.resolved["judge"])
                );
                return Ok(());
            }
            let loaded = config::load(&config)?;
            println!(
                "{}: ok ({} actors; critic `{}`; judge `{}`)",
                config.display(),
                loaded.config.actors.len(),
                kind(&loaded.config.critic),
                kind(&loaded.config.judge)
            );
            Ok(())
        }
        Command::Generate {
            model,
            prompt,
            max_tokens,
            temperature,
            top_k,
            top_p,
            seed,
            device,
            raw,
            stop,
            quantize,
        } => {
            let sampling = rco_lm::sampling::SamplingConfig {
                temperature,
                top_k,
                top_p,
                max_tokens,
            };
            let problems = sampling.problems();
            if let Some(p) = problems.first() {
                anyhow::bail!("--{}: {}", p.key.replace('_', "-"), p.message);
            }
            let text = rco_lm::commands::generate_text(
                &model, &device, &prompt, raw, &sampling, seed, &stop, quantize,
            )?;
            println!("{text}");
            Ok(())
        }
        Command::Logprob {
            model,
            prompt,
            completion,
            end,
            top,
            device,
            raw,
            quantize,
        } => {
            let report = rco_lm::commands::log_prob_text_ending(
                &model,
                &device,
                &prompt,
                &completion,
                end,
                raw,
                top,
                quantize,
            )?;
            if !completion.is_empty() {
                println!(
                    "log p(completion | prompt) = {:.4} over {} tokens {:?}",
                    report.total,
                    report.completion_tokens.len(),
                    report.completion_tokens
                );
            }
            println!("most likely next tokens:");
            for (id, text, lp) in report.top_next {
                println!("  {id:>6} {text:?} {lp:.4}");
            }
            Ok(())
        }
        Command::Export { model, out } => {
            rco_lm::commands::export_hf(&model, &out)?;
            println!("wrote {}", out.display());
            Ok(())
        }
        Command::Serve(args) => serve::serve(args),
        Command::Schema => {
            println!("{}", serde_json::to_string_pretty(&config::schema())?);
            Ok(())
        }
        Command::Plugins { examples } => {
            for d in rco_core::registry::plugins() {
                println!("{:<17} {:<12} {}", d.role.name(), d.kind, d.summary);
                if examples {
                    for line in d.example.lines() {
                        println!("{:<30} {line}", "");
                    }
                }
            }
            Ok(())
        }
    }
}

/// Writes `value` as pretty JSON to a temporary file and renames it to `out`: a reader never
/// sees half a file.
fn write_json(out: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let partial = out.with_extension("json.partial");
    std::fs::write(&partial, serde_json::to_vec_pretty(value)?)
        .with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, out).with_context(|| format!("writing {}", out.display()))
}

/// The prompts `rco backends` compares on when given none: prose, code and arithmetic.
const DEFAULT_PARITY_PROMPTS: [&str; 3] = [
    "The capital of France is",
    "def fibonacci(n):",
    "Question: What is 12 + 7?\nAnswer:",
];

fn kind(section: &serde_json::Value) -> &str {
    section.get("kind").and_then(|k| k.as_str()).unwrap_or("?")
}

fn default_out(config: &Path) -> PathBuf {
    Path::new("runs").join(config.file_stem().unwrap_or_default())
}

/// Runs `stages` in the run directory; `critics` limits the evaluation (all when empty).
fn stages(args: &StageArgs, stages: &[Stage], critics: &[String]) -> anyhow::Result<()> {
    let loaded = config::load(&args.config)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out(&args.config));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let started = std::time::Instant::now();
    let result = runtime.block_on(async {
        let run = runner::Run::open_with(loaded, &out, Arc::new(progress::Bars), args.force)?;
        let outcome = run_stages(&run, stages, critics).await;
        let total = run.usage.total();
        if total.calls > 0 {
            eprintln!(
                "remote calls: {} ({} from the cache), {} requests, {} retries, {} tokens, cost {:.4}; per stage in {}",
                total.calls,
                total.cache_hits,
                total.requests,
                total.retry_count(),
                total.tokens(),
                total.cost,
                run.store.path(runner::USAGE_FILE).display()
            );
        }
        outcome
    });
    if let Err(e) = &result {
        if let Some(rco_core::Error::Budget(_)) = e.downcast_ref::<rco_core::Error>() {
            anyhow::bail!(
                "{e:#}\neverything finished before the budget ran out is saved in {}; raise `budget` in the config (or RCO_BUDGET__MAX_TOKENS / RCO_BUDGET__MAX_COST) and rerun the same command to continue",
                out.display()
            );
        }
    }
    result?;
    eprintln!(
        "done in {:.1}s; run directory {}",
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

async fn run_stages(run: &runner::Run, stages: &[Stage], critics: &[String]) -> anyhow::Result<()> {
    {
        for stage in stages {
            match stage {
                Stage::Collect => run.collect().await?,
                Stage::Train => {
                    let first = run.train().await?;
                    // Iterative RCO: the later rounds collect and train in this stage.
                    let later = run.later_rounds().await?;
                    for (round, summary) in std::iter::once(first).chain(later).enumerate() {
                        let label = match round {
                            0 => "train".to_string(),
                            r => format!("train (round {})", r + 1),
                        };
                        eprintln!(
                            "{label}: {} steps over {} groups ({} flat), loss {:.4} -> {:.4}",
                            summary.steps,
                            summary.groups,
                            summary.flat_groups,
                            summary.first_loss,
                            summary.last_loss
                        );
                    }
                    for (name, summary) in run.train_baselines().await? {
                        eprintln!(
                            "train ({name}): {} steps over {} groups ({} flat), loss {:.4} -> {:.4}",
                            summary.steps,
                            summary.groups,
                            summary.flat_groups,
                            summary.first_loss,
                            summary.last_loss
                        );
                    }
                }
                Stage::Eval => run.eval_only(critics).await?,
                Stage::Report => write_report(run).await?,
            }
        }
        anyhow::Ok(())
    }
}

async fn write_report(run: &runner::Run) -> anyhow::Result<()> {
    print!("{}", run.report().await?);
    Ok(())
}
