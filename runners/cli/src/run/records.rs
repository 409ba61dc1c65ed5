//! What a run writes: one record type per run-directory table. The field names are the
//! files' format, which users' scripts read; add fields, never rename them.

use std::collections::HashMap;

use rco_core::{BothOrders, TaskItem};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One item of a split, as stored in `items.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredItem {
    pub split: String,
    pub item: TaskItem,
}

/// A critique of a training item (`critiques.jsonl`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CritiqueRecord {
    pub item_id: String,
    pub critique: usize,
    pub text: String,
    pub ref_logprob: Option<f64>,
    /// The critique stopped at the critic's token limit rather than at its end.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// A refinement of a training item (`refinements.jsonl`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefinementRecord {
    pub item_id: String,
    pub critique: usize,
    pub refinement: usize,
    pub text: String,
}

/// The both-order judgement of one refinement (`verdicts.jsonl`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerdictRecord {
    pub item_id: String,
    pub critique: usize,
    pub refinement: usize,
    pub pair: BothOrders,
}

/// The critique utility of one critique (`cu.jsonl`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CuRecord {
    pub item_id: String,
    pub critique: usize,
    pub cu: Option<f64>,
    pub valid: usize,
    pub invalid: usize,
    pub ties: usize,
    pub disagreements: usize,
}

/// One item's initial response for one actor (`initial.jsonl`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitialRecord {
    pub actor: String,
    pub split: String,
    pub item_id: String,
    /// `actor` (written by the actor) or `dataset` (the data's `initial_response`).
    pub source: rco_core::dataset::InitialResponse,
    pub text: String,
    /// The judge's pointwise score of the response, when the judge is a verifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// The verifier found it correct (`None`: no verifier, or no score).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solved: Option<bool>,
}

/// One evaluated (critic, actor, item) cell entry in `eval.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalRecord {
    pub critic: String,
    pub actor: String,
    pub item_id: String,
    pub task: String,
    pub critiques: Vec<String>,
    pub refinements: Vec<Vec<String>>,
    pub pairs: Vec<Vec<BothOrders>>,
    /// Mean CU of the item's critiques (`None` if no judgement was valid).
    pub cu: Option<f64>,
    /// Mean pointwise score of the refinements, where the judge gives one.
    pub rqs: Option<f64>,
    /// Refinements whose pointwise score the judge gave but could not be read (left out of
    /// `rqs`).
    #[serde(default)]
    pub rqs_invalid: usize,
    /// Characters in the initial response (length changes are measured against it).
    pub initial_chars: usize,
    /// Mean length change of the refinements (characters, refined minus initial).
    pub length_change: f64,
    /// The judge's pointwise score of the initial response, when the judge is a verifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_score: Option<f64>,
    /// The verifier found the initial response correct.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_solved: Option<bool>,
    /// The share of the refinements the verifier found correct.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refined_solved: Option<f64>,
}

/// Run manifest: what made this directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub config_file: String,
    pub config_hash: String,
    pub seed: u64,
    pub versions: HashMap<String, String>,
    pub config: Value,
    /// SHA-256 of each file the dataset reads, by path (absent in manifests written before
    /// it existed).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub data_files: std::collections::BTreeMap<String, String>,
}
