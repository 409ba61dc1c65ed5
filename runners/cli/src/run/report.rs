//! The report stage: reads the evaluation table and writes `report.json`, `report.md` and
//! `report.html` (the tables are built by [`crate::report`], the page by
//! [`crate::report_html`]); returns what the terminal shows.

use anyhow::bail;

use super::eval::EVAL_FILE;
use super::records::EvalRecord;
use super::train::TRAIN_SUMMARY_FILE;
use super::Run;

impl Run {
    /// The spread of each drawn critic's overall CU over its draws (`[eval] draws`), per
    /// actor, from the draws evaluated so far.
    fn draw_spreads(&self, report: &crate::report::Report) -> Vec<crate::report::DrawSpread> {
        let mut spreads = Vec::new();
        for (critic, &count) in &self.loaded.config.eval.draws {
            for actor in self.loaded.eval_actors() {
                let cu: Vec<f64> = std::iter::once(critic.clone())
                    .chain((2..=count).map(|k| crate::config::draw_name(critic, k)))
                    .filter_map(|name| crate::report::overall_cu(&report.cells, &name, &actor))
                    .collect();
                spreads.extend(crate::report::DrawSpread::new(critic, &actor, cu));
            }
        }
        spreads
    }

    /// Writes the report files and returns the text to print.
    pub async fn report(&self) -> anyhow::Result<String> {
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
        // Each pair scored alone by the run's reward estimator (hard, soft, or a plugin's).
        let pairs: Vec<Vec<rco_core::BothOrders>> = crate::report::pairs_in_order(&records)
            .into_iter()
            .map(|pair| vec![pair])
            .collect();
        let scores: crate::report::PairScores = self
            .reward()?
            .estimate(&pairs)
            .await?
            .into_iter()
            .map(|e| e.cu)
            .collect();
        if scores.len() != pairs.len() {
            bail!(
                "the reward estimator returned {} estimates for {} pairs",
                scores.len(),
                pairs.len()
            );
        }
        let mut report = crate::report::build(
            &records,
            &self.loaded.eval_actors(),
            &self.trained_name(),
            cfg.eval.bootstrap_resamples,
            cfg.seed,
            train,
            Some(&scores),
        );
        report.warnings = self.warnings()?;
        report.draws = self.draw_spreads(&report);
        for name in (2..=self.rounds())
            .map(|r| self.round_name(r))
            .chain(self.baseline_names())
        {
            if let Ok(summary) = self.summary_of(&name) {
                report.trained.insert(name, summary);
            }
        }
        // The judge per stage: the collection's verdicts make the training signal.
        let verdicts: Vec<super::records::VerdictRecord> =
            self.store.read(super::DETAIL_FILES[2]).unwrap_or_default();
        if !verdicts.is_empty() {
            report.judge_health_by_stage.insert(
                "collect".into(),
                crate::report::pair_health(verdicts.iter().map(|v| &v.pair)),
            );
        }
        let groups: Vec<rco_core::TrainingGroup> =
            self.store.read(super::GROUPS_FILE).unwrap_or_default();
        if groups.iter().any(|g| !g.preferences.is_empty()) {
            report.judge_health_by_stage.insert(
                "collect_critiques".into(),
                crate::report::pair_health(
                    groups
                        .iter()
                        .flat_map(|g| g.preferences.iter().map(|p| &p.pair)),
                ),
            );
        }
        report.judge_health_by_stage.insert(
            "eval".into(),
            crate::report::pair_health(records.iter().flat_map(|r| r.pairs.iter().flatten())),
        );
        report.initial_responses = crate::report::initial_summaries(
            &self
                .store
                .read::<super::InitialRecord>(super::INITIAL_FILE)?,
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
        // metrics.jsonl is appended as work happens: a line a crash tore is skipped.
        let metrics: Vec<serde_json::Value> =
            std::fs::read_to_string(self.store.path(super::METRICS_FILE))
                .unwrap_or_default()
                .lines()
                .filter_map(|line| serde_json::from_str(line).ok())
                .collect();
        let title = self
            .store
            .dir()
            .file_name()
            .map_or_else(|| "run".to_string(), |n| n.to_string_lossy().to_string());
        self.store.write_file(
            "report.html",
            crate::report_html::html(&report, &records, &metrics, &title).as_bytes(),
        )?;
        let mut out = format!(
            "CU x100 on {}, 95% bootstrap intervals ({})\n\n",
            crate::report::items_phrase(&report, items),
            crate::report::critics_legend(&report)
        );
        out.push_str(&crate::report::table(&report));
        for actor in report.improvement.keys() {
            if let Some(line) = crate::report::improvement_line(&report, actor) {
                out.push_str(&line);
                out.push('\n');
            }
        }
        for line in crate::report::difference_lines(&report) {
            out.push_str(&line);
            out.push('\n');
        }
        for d in &report.draws {
            out.push_str(&d.line());
            out.push('\n');
        }
        out.push_str(&crate::report::solve_lines(&report));
        for w in &report.warnings {
            out.push_str(&format!("warning ({}): {}\n", w.stage, w.message));
        }
        let h = &report.judge_health;
        out.push_str(&format!("judge health: position consistency {:.3}, first-slot win rate {:.3}, tie rate {:.3}, invalid rate {:.3}\n", h.position_consistency, h.first_slot_win_rate, h.tie_rate, h.invalid_rate));
        Ok(out)
    }
}
