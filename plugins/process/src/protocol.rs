//! The process judge's protocol: one JSON object per line each way.
//!
//! rco writes requests on the process's stdin:
//! - pairwise: `{"id", "type": "pairwise", "task", "prompt", "a", "b", "reference"?,
//!   "tests"?, "entry_point"?}`
//! - pointwise: `{"id", "type": "pointwise", "task", "prompt", "response", "reference"?,
//!   "tests"?, "entry_point"?}`
//!
//! and reads answers on its stdout, in any order:
//! - `{"id", "verdict": "A" | "B" | "tie", "p_a"?}` (pairwise; `p_a` is the probability
//!   that A is better, for soft CU)
//! - `{"id", "score": N}` (pointwise)
//! - `{"id", "error": "..."}`: the request is recorded as invalid with that reason.
//!
//! Lines that are not JSON objects with a known `id` are logged and skipped, so a judge may
//! print other things on stdout by mistake without breaking the run; stderr is logged.

use rco_core::{Comparison, PointwiseRequest};
use serde::{Deserialize, Serialize};

/// One request line.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    Pairwise {
        id: String,
        task: String,
        prompt: String,
        a: String,
        b: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        tests: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        entry_point: Option<String>,
    },
    Pointwise {
        id: String,
        task: String,
        prompt: String,
        response: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        tests: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        entry_point: Option<String>,
    },
}

impl Request {
    pub fn pairwise(id: String, c: &Comparison) -> Self {
        Request::Pairwise {
            id,
            task: c.task.clone(),
            prompt: c.prompt.clone(),
            a: c.a.clone(),
            b: c.b.clone(),
            reference: c.reference.clone(),
            tests: c.tests.clone(),
            entry_point: c.entry_point.clone(),
        }
    }

    pub fn pointwise(id: String, r: &PointwiseRequest) -> Self {
        Request::Pointwise {
            id,
            task: r.task.clone(),
            prompt: r.prompt.clone(),
            response: r.response.clone(),
            reference: r.reference.clone(),
            tests: r.tests.clone(),
            entry_point: r.entry_point.clone(),
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Request::Pairwise { id, .. } | Request::Pointwise { id, .. } => id,
        }
    }
}

/// One answer line.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Answer {
    pub id: String,
    #[serde(default)]
    pub verdict: Option<String>,
    #[serde(default)]
    pub p_a: Option<f64>,
    #[serde(default)]
    pub score: Option<f64>,
    #[serde(default)]
    pub error: Option<String>,
}
