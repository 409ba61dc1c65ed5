//! The run manifest: the hash of the config that made a run directory, checked on every
//! open so that one directory never mixes two experiments.

use std::collections::HashMap;

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
        // What a run spends does not change its results: a budget raised to continue a
        // stopped run, or new prices, keep the run directory valid.
        let mut hashed = self.loaded.resolved.clone();
        if let Value::Object(map) = &mut hashed {
            map.remove("budget");
            map.remove("prices");
        }
        let canonical = serde_json::to_vec(&hashed)?;
        let hash = rco_core::seed::sha256_hex(&canonical);
        let path = self.store.path(MANIFEST_FILE);
        if path.exists() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let manifest: Manifest = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a run manifest", path.display()))?;
            if manifest.config_hash != hash {
                bail!(
                    "{} was made with a different config (hash {} from {}, now {}); use another --out directory, or delete it to start over",
                    self.store.dir().display(),
                    manifest.config_hash.get(..12).unwrap_or(&manifest.config_hash),
                    manifest.config_file,
                    hash.get(..12).unwrap_or(&hash)
                );
            }
            return Ok(());
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
        };
        self.store
            .write_file(MANIFEST_FILE, &serde_json::to_vec_pretty(&manifest)?)?;
        Ok(())
    }
}
