//! Errors of the library crates: each names the plugin, key, file or line concerned.

use std::fmt;
use std::path::PathBuf;

/// One problem found in a config, with the dotted key path it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key path, e.g. `critic.sampling.temperature`.
    pub key: String,
    pub message: String,
}

impl ConfigProblem {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The same problem seen from a parent section (`key` gets `prefix.` in front).
    pub fn under(mut self, prefix: &str) -> Self {
        self.key = if prefix.is_empty() {
            self.key
        } else if self.key.is_empty() || self.key == "." {
            prefix.to_string()
        } else {
            format!("{prefix}.{}", self.key)
        };
        self
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.key, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid config:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Config(Vec<ConfigProblem>),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}, line {line}: {message}")]
    Data {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{plugin}: {message}")]
    Plugin { plugin: String, message: String },
    /// The run's budget is spent; everything committed so far is kept.
    #[error("budget reached: {0}")]
    Budget(String),
    /// A remote endpoint refused a request in a way retrying cannot fix (401, 403, 404,
    /// exhausted quota, ...), or kept failing past the retry limit.
    #[error("{endpoint}: {message}")]
    Remote { endpoint: String, message: String },
    /// Not attempted: the run is stopping after an earlier error (which is the one to report).
    #[error("not attempted: the run is stopping after an earlier error")]
    Halted,
    #[error("{0} is not supported by this plugin")]
    Unsupported(&'static str),
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn plugin(plugin: impl Into<String>, message: impl fmt::Display) -> Self {
        Error::Plugin {
            plugin: plugin.into(),
            message: message.to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The error to report from a set of concurrent results: the first that is not
/// [`Error::Halted`] (the failure that stopped the others), else the first.
pub fn first_cause<T>(results: Vec<Result<T>>) -> Result<Vec<T>> {
    let mut values = Vec::with_capacity(results.len());
    let mut error: Option<Error> = None;
    for result in results {
        match result {
            Ok(v) => values.push(v),
            Err(e) => keep_cause(&mut error, e, |e| matches!(e, Error::Halted)),
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(values),
    }
}

/// Keeps, of the errors seen so far, the first that is not `halted` (the failure that
/// stopped the other work), else the first.
pub fn keep_cause<E>(kept: &mut Option<E>, e: E, halted: impl Fn(&E) -> bool) {
    match kept {
        None => *kept = Some(e),
        Some(k) if halted(k) && !halted(&e) => *kept = Some(e),
        Some(_) => {}
    }
}
