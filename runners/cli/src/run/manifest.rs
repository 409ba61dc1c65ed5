//! The run manifest: the hash of the config that made a run directory and of the data files
//! it read, checked on every open so that one directory never mixes two experiments.

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, Context};
use serde_json::Value;

use super::records::Manifest;
use super::Run;

/// The manifest's file in the run directory.
pub const MANIFEST_FILE: &str = "manifest.json";

impl Run {
    /// Writes the manifest of a new run directory, or refuses a directory made with another
    /// config.
    pub(super) fn check_manifest(&self) -> anyhow::Result<()> {
        // What a run spends and how it writes do not change its results: a budget raised
        // to continue a stopped run, new prices or another durability keep the run
        // directory valid.
        let mut hashed = self.loaded.resolved.clone();
        if let Value::Object(map) = &mut hashed {
            map.remove("budget");
            map.remove("prices");
            map.remove("store");
        }
        let canonical = serde_json::to_vec(&hashed)?;
        let hash = rco_core::seed::sha256_hex(&canonical);
        let path = self.store.path(MANIFEST_FILE);
        let data_files = self.data_file_hashes()?;
        if !path.exists() {
            let records: Vec<&str> = RECORD_FILES
                .iter()
                .copied()
                .filter(|f| self.store.path(f).exists())
                .collect();
            if !records.is_empty() && !self.force {
                bail!(
                    "{} holds run records ({}) but no {MANIFEST_FILE}, so nothing says which config made them; use another --out directory, or --force to adopt them for this config",
                    self.store.dir().display(),
                    records.join(", ")
                );
            }
        }
        if path.exists() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let manifest: Manifest = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a run manifest", path.display()))?;
            if manifest.config_hash != hash && !self.force {
                bail!(
                    "{} was made with a different config (hash {} from {}, now {}); use another --out directory, or delete it to start over",
                    self.store.dir().display(),
                    manifest.config_hash.get(..12).unwrap_or(&manifest.config_hash),
                    manifest.config_file,
                    hash.get(..12).unwrap_or(&hash)
                );
            }
            let changed: Vec<String> = manifest
                .data_files
                .iter()
                .filter(|(file, sha)| data_files.get(*file) != Some(*sha))
                .map(|(file, sha)| {
                    format!(
                        "{file} (sha256 {} then, {} now)",
                        sha.get(..12).unwrap_or(sha),
                        data_files
                            .get(file)
                            .map_or("missing", |s| s.get(..12).unwrap_or(s))
                    )
                })
                .collect();
            if !changed.is_empty() && !self.force {
                bail!(
                    "the data of {} changed since the run started: {}; the run keeps the items it read then ({}), so use another --out directory for the new data, or --force to go on with the old items",
                    self.store.dir().display(),
                    changed.join(", "),
                    super::ITEMS_FILE
                );
            }
            if !self.force {
                return Ok(());
            }
            if manifest.config.get("data") != self.loaded.resolved.get("data")
                && self.store.path(super::ITEMS_FILE).exists()
            {
                tracing::warn!(
                    "[data] differs from the config that started {}: the run goes on with the items it read then ({}); to run on the new [data], use another --out directory",
                    self.store.dir().display(),
                    super::ITEMS_FILE
                );
            }
        }
        let versions = HashMap::from([
            ("rco".to_string(), env!("CARGO_PKG_VERSION").to_string()),
            ("burn".to_string(), "0.21.0".to_string()),
        ]);
        let manifest = Manifest {
            config_file: self.loaded.path.display().to_string(),
            config_hash: hash,
            seed: self.loaded.config.seed,
            versions,
            config: self.loaded.resolved.clone(),
            data_files,
        };
        self.store
            .write_file(MANIFEST_FILE, &serde_json::to_vec_pretty(&manifest)?)?;
        Ok(())
    }
}

/// The files whose presence says a directory holds a run.
const RECORD_FILES: [&str; 4] = [
    super::ITEMS_FILE,
    super::GROUPS_FILE,
    super::EVAL_FILE,
    super::TRAIN_SUMMARY_FILE,
];

impl Run {
    /// SHA-256 of every file the dataset reads, by path as the dataset names it.
    fn data_file_hashes(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for file in self.dataset()?.files() {
            // A missing file is reported when the items are read, with its path.
            if let Ok(sha) = rco_core::seed::sha256_of_path(&file) {
                out.insert(file.display().to_string(), sha);
            }
        }
        Ok(out)
    }
}
