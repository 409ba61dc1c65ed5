//! The report stage: reads the evaluation table and writes `report.json` and `report.md`
//! (the tables themselves are built by [`crate::report`]); returns what the terminal shows.

use anyhow::bail;

use super::eval::EVAL_FILE;
use super::records::EvalRecord;
use super::train::TRAIN_SUMMARY_FILE;
use super::Run;

impl Run {
    /// Writes the report files and returns the text to print.
    pub fn report(&self) -> anyhow::Result<String> {
        let records: Vec<EvalRecord> = self.store.read(EVAL_FILE)?;
        if records.is_empty() {
            bail!(
                "{} has no evaluation records; run `rco eval` first",
                self.store.dir().display()
            );
        }
        let train = std::fs::read(self.store.path(TRAIN_SUMMARY_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let cfg = &self.loaded.config;
        let mut report = crate::report::build(
            &records,
            &self.loaded.eval_actors(),
            cfg.eval.bootstrap_resamples,
            cfg.seed,
            train,
        );
        report.usage = self.usage.table();
        report.usage_total = self.usage.total();
        let items = self.items("test")?.len();
        self.store
            .write_file("report.json", &serde_json::to_vec_pretty(&report)?)?;
        self.store.write_file(
            "report.md",
            crate::report::markdown(&report, items).as_bytes(),
        )?;
        let mut out = format!("CU x100 on {items} held-out items, 95% bootstrap intervals (base = before training, rco = after)\n\n");
        out.push_str(&crate::report::table(&report));
        for (actor, delta) in &report.improvement {
            out.push_str(&format!(
                "rco - base with actor `{actor}`: {delta:+.1} CU points\n"
            ));
        }
        let h = &report.judge_health;
        out.push_str(&format!("judge health: position consistency {:.3}, first-slot win rate {:.3}, tie rate {:.3}, invalid rate {:.3}\n", h.position_consistency, h.first_slot_win_rate, h.tie_rate, h.invalid_rate));
        Ok(out)
    }
}
