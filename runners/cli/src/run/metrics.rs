//! `metrics.jsonl`: per-step training numbers and per-batch collection counts, appended as
//! they happen, each with the wall-clock time, for plotting a run while it goes.

use std::path::PathBuf;

use serde_json::Value;

/// The metrics' file in the run directory.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// Appends records to a run's `metrics.jsonl`.
pub struct RunMetrics {
    path: PathBuf,
}

impl RunMetrics {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }
}

impl rco_core::Metrics for RunMetrics {
    fn record(&self, mut record: Value) {
        if let Value::Object(map) = &mut record {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default();
            map.insert("time".into(), serde_json::json!(now));
        }
        // Metrics are for watching a run; losing one must not stop it.
        if let Err(e) = rco_core::store::append_jsonl(&self.path, std::slice::from_ref(&record)) {
            tracing::warn!("could not append to {}: {e}", self.path.display());
        }
    }
}
