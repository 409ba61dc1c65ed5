//! The library's events (retries and their reason, re-asked verdicts, checkpoints, served
//! requests) go through `tracing` to stderr. `--log-level` or `RCO_LOG` choose what is shown,
//! in `tracing`'s filter syntax (`debug`, `rco_plugin_openai=debug,info`, ...); by default rco's
//! own crates log at `info` and everything else at `warn`.

use tracing_subscriber::EnvFilter;

/// The variable that sets the log filter when `--log-level` does not.
pub const LOG_VAR: &str = "RCO_LOG";

/// What is shown without `--log-level` or `RCO_LOG`.
pub const DEFAULT_FILTER: &str = "warn,rco_core=info,rco_cli=info,rco_lm=info,rco_plugin_burn=info,rco_plugin_openai=info,rco_plugin_quickstart=info";

/// Installs the stderr subscriber once; `level` (from `--log-level`) wins over `RCO_LOG`.
pub fn init(level: Option<&str>) -> anyhow::Result<()> {
    let (filter, source) = match level {
        Some(level) => (level.to_string(), "--log-level"),
        None => match std::env::var(LOG_VAR) {
            Ok(value) if !value.trim().is_empty() => (value, LOG_VAR),
            _ => (DEFAULT_FILTER.to_string(), "the default filter"),
        },
    };
    let filter = EnvFilter::try_new(&filter)
        .map_err(|e| anyhow::anyhow!("{source}: `{filter}` is not a log filter: {e}"))?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // A second call (tests that run the CLI in-process) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .try_init();
    Ok(())
}
