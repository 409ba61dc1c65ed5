//! `report.html`: the report as a page people look at, self-contained (inline CSS and SVG,
//! no script, nothing fetched): the CU matrix as a table and as grouped bars with their 95%
//! intervals (critic × task, one chart per actor), the training loss and the collection's
//! mean CU from `metrics.jsonl`, judge health, and example critiques with their refinements
//! and verdicts (the items with the best and the worst CU). Charts are drawn by `plotters`'
//! SVG backend.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use plotters::prelude::*;
use serde_json::Value;

use crate::report::Report;
use crate::run::EvalRecord;

/// Bar colours, one per critic in order of appearance.
const PALETTE: [RGBColor; 6] = [
    RGBColor(120, 130, 145),
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
];

/// Examples shown at each end (best and worst CU).
const EXAMPLES: usize = 3;

/// Text made safe inside HTML.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The values in order of first appearance.
fn ordered<'a>(values: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    values
        .filter(|v| seen.insert(v.to_string()))
        .map(str::to_string)
        .collect()
}

/// The whole page. `metrics` are the lines of `metrics.jsonl`; `title` names the run.
pub fn html(report: &Report, records: &[EvalRecord], metrics: &[Value], title: &str) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>rco report: {t}</title><style>{STYLE}</style></head><body>\n\
         <h1>rco report: {t}</h1>\n",
        t = escape(title)
    );
    page.push_str(&matrix_section(report));
    page.push_str(&training_section(metrics));
    page.push_str(&health_section(report));
    page.push_str(&examples_section(records));
    if !report.warnings.is_empty() {
        page.push_str("<h2>Warnings</h2><ul>");
        for w in &report.warnings {
            let _ = write!(
                page,
                "<li>{}: {}</li>",
                escape(&w.stage),
                escape(&w.message)
            );
        }
        page.push_str("</ul>\n");
    }
    page.push_str("</body></html>\n");
    page
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:1100px;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;\
text-align:right}th{background:#f2f2f2}td.l,th.l{text-align:left}\
pre{white-space:pre-wrap;background:#f7f7f7;padding:6px;margin:4px 0;max-height:12em;\
overflow:auto}.chart{margin:1em 0}.note{color:#555}";

fn matrix_section(report: &Report) -> String {
    let mut out = String::from(
        "<h2>Critique utility</h2>\n<p class=\"note\">CU ×100: how often a critique's \
         refinements beat the first answer (both orders judged), with 95% bootstrap \
         intervals; <code>overall</code> is the mean of the task means.</p>\n",
    );
    out.push_str(
        "<table><tr><th class=\"l\">actor</th><th class=\"l\">task</th>\
         <th class=\"l\">critic</th><th>CU</th><th>95% interval</th><th>n</th><th>RQS [95%]</th><th>unreadable scores</th>\
         <th>first answers solved</th><th>refinements solved</th></tr>\n",
    );
    let opt =
        |v: Option<f64>, scale: f64| v.map_or("-".to_string(), |v| format!("{:.1}", v * scale));
    for c in &report.cells {
        let _ = writeln!(
            out,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td>\
             <td>{:.1}</td><td>[{:.1}, {:.1}]</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&c.actor),
            escape(&c.task),
            escape(&c.critic),
            c.cu,
            c.cu_lo,
            c.cu_hi,
            c.n,
            match (c.rqs, c.rqs_lo, c.rqs_hi) {
                (Some(r), Some(lo), Some(hi)) => format!("{r:.2} [{lo:.2}, {hi:.2}]"),
                _ => "-".to_string(),
            },
            c.rqs_invalid,
            opt(c.initial_solved, 100.0),
            opt(c.refined_solved, 100.0),
        );
    }
    out.push_str("</table>\n");
    for (actor, delta) in &report.improvement {
        let lo = report.improvement_lo.get(actor);
        let hi = report.improvement_hi.get(actor);
        let _ = writeln!(
            out,
            "<p>{}: {} − base = {delta:+.1}{}</p>",
            escape(actor),
            escape(&report.trained_critic),
            match (lo, hi) {
                (Some(lo), Some(hi)) => format!(" [{lo:+.1}, {hi:+.1}] (paired bootstrap)"),
                _ => String::new(),
            }
        );
    }
    for d in report
        .differences
        .iter()
        .filter(|d| !(d.critic == report.trained_critic && d.versus == "base"))
    {
        let _ = writeln!(
            out,
            "<p>{}: {} − {} = {:+.1} [{:+.1}, {:+.1}] (paired bootstrap)</p>",
            escape(&d.actor),
            escape(&d.critic),
            escape(&d.versus),
            d.diff,
            d.lo,
            d.hi
        );
    }
    let actors = ordered(report.cells.iter().map(|c| c.actor.as_str()));
    for actor in &actors {
        match bars(report, actor) {
            Ok(svg) => {
                let _ = writeln!(out, "<div class=\"chart\">{svg}</div>");
            }
            Err(e) => {
                let _ = writeln!(
                    out,
                    "<p class=\"note\">chart for {}: {}</p>",
                    escape(actor),
                    escape(&e)
                );
            }
        }
    }
    out
}

/// Grouped bars for one actor: a group per task, a bar per critic, whiskers at the interval.
fn bars(report: &Report, actor: &str) -> Result<String, String> {
    let cells: Vec<_> = report.cells.iter().filter(|c| c.actor == actor).collect();
    let tasks = ordered(cells.iter().map(|c| c.task.as_str()));
    let critics = ordered(cells.iter().map(|c| c.critic.as_str()));
    let mut svg = String::new();
    {
        let width = (160 + 90 * tasks.len() * critics.len().max(1)).clamp(480, 1000) as u32;
        let root = SVGBackend::with_string(&mut svg, (width, 320)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("CU ×100, actor {actor}"), ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(45)
            .build_cartesian_2d(0f64..tasks.len() as f64, 0f64..100f64)
            .map_err(|e| e.to_string())?;
        let names = tasks.clone();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(tasks.len() * 2 + 1)
            .x_label_formatter(&|x| {
                let slot = x - x.floor();
                if (slot - 0.5).abs() < 1e-6 {
                    names.get(*x as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc("CU")
            .draw()
            .map_err(|e| e.to_string())?;
        let slot = 0.8 / critics.len().max(1) as f64;
        for (k, critic) in critics.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            let mine: Vec<_> = cells.iter().filter(|c| &c.critic == critic).collect();
            let place = |task: &str| {
                let t = tasks.iter().position(|x| x == task).unwrap_or(0) as f64;
                t + 0.1 + slot * k as f64
            };
            chart
                .draw_series(mine.iter().map(|c| {
                    let x = place(&c.task);
                    Rectangle::new([(x, 0.0), (x + slot * 0.9, c.cu)], color.filled())
                }))
                .map_err(|e| e.to_string())?
                .label(critic.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
            chart
                .draw_series(mine.iter().map(|c| {
                    let x = place(&c.task) + slot * 0.45;
                    PathElement::new(vec![(x, c.cu_lo), (x, c.cu_hi)], BLACK.stroke_width(2))
                }))
                .map_err(|e| e.to_string())?;
        }
        draw_legend(&mut chart)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// The series' names, upper right, as every chart here draws them.
fn draw_legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| e.to_string())
}

/// A line chart of named series of `(x, y)` points, with a legend when there are several.
fn line_chart(
    series: &[(String, Vec<(f64, f64)>)],
    caption: &str,
    x_desc: &str,
    y_desc: &str,
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (640, 280)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let points = || series.iter().flat_map(|(_, p)| p.iter());
        let (x0, x1) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.0), b.max(p.0))
        });
        let (y0, y1) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.1), b.max(p.1))
        });
        // A flat series (one batch, or a constant loss) still gets a readable axis.
        let pad = ((y1 - y0) * 0.05).max(0.01 * y1.abs().max(1.0));
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1.max(x0 + 1.0), (y0 - pad)..(y1 + pad))
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .draw()
            .map_err(|e| e.to_string())?;
        for (k, (name, points)) in series.iter().enumerate() {
            let color = PALETTE[(k + 1) % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 12, y)], color.stroke_width(2))
                });
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(|e| e.to_string())?;
        }
        if series.len() > 1 {
            draw_legend(&mut chart)?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// The loss per step of each training in `metrics.jsonl` (the run's trainer, its baselines,
/// each round), as a series named after the critic it trains (`rco`, `sft`, `rco-round-2`).
/// A step recorded twice (a training resumed from a checkpoint before it) counts with its
/// last record. Records written before they named their critic are told apart where a
/// training starts: at step 1, or where the steps' total changes.
fn training_losses(metrics: &[Value]) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut series: Vec<(String, BTreeMap<u64, f64>)> = Vec::new();
    let mut unnamed = 0;
    // The unnamed series records without a name go on, and its steps' total.
    let mut open: Option<(usize, Option<u64>)> = None;
    for m in metrics.iter().filter(|m| m["stage"] == "train") {
        let (Some(step), Some(loss)) = (m["step"].as_u64(), m["loss"].as_f64()) else {
            continue;
        };
        let index = match m["critic"].as_str() {
            Some(name) => match series.iter().position(|(n, _)| n == name) {
                Some(i) => i,
                None => {
                    series.push((name.to_string(), BTreeMap::new()));
                    series.len() - 1
                }
            },
            None => {
                let steps = m["steps"].as_u64();
                match open {
                    Some((i, total)) if step != 1 && total == steps => i,
                    _ => {
                        unnamed += 1;
                        series.push((format!("training {unnamed}"), BTreeMap::new()));
                        open = Some((series.len() - 1, steps));
                        series.len() - 1
                    }
                }
            }
        };
        series[index].1.insert(step, loss);
    }
    series
        .into_iter()
        .map(|(name, points)| {
            let points = points.into_iter().map(|(s, l)| (s as f64, l)).collect();
            (name, points)
        })
        .collect()
}

fn training_section(metrics: &[Value]) -> String {
    let mut out = String::from("<h2>Training</h2>\n");
    let loss = training_losses(metrics);
    let collected: Vec<(f64, f64)> = metrics
        .iter()
        .filter(|m| m["stage"] == "collect")
        .filter_map(|m| m["mean_cu"].as_f64())
        .enumerate()
        .map(|(i, cu)| ((i + 1) as f64, cu * 100.0))
        .collect();
    let collected = if collected.is_empty() {
        Vec::new()
    } else {
        vec![("collection".to_string(), collected)]
    };
    for (series, caption, x, y, none) in [
        (
            &loss,
            "Training loss per step",
            "step",
            "loss",
            "no training steps in metrics.jsonl",
        ),
        (
            &collected,
            "Mean CU ×100 of each collected batch",
            "batch",
            "CU",
            "no collection batches in metrics.jsonl",
        ),
    ] {
        if series.is_empty() {
            let _ = writeln!(out, "<p class=\"note\">{none}</p>");
            continue;
        }
        match line_chart(series, caption, x, y) {
            Ok(svg) => {
                let _ = writeln!(out, "<div class=\"chart\">{svg}</div>");
            }
            Err(e) => {
                let _ = writeln!(out, "<p class=\"note\">{}: {}</p>", caption, escape(&e));
            }
        }
    }
    out
}

fn health_section(report: &Report) -> String {
    let h = &report.judge_health;
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    format!(
        "<h2>Judge health (evaluation)</h2>\n<table>\
         <tr><th class=\"l\">measure</th><th>value</th></tr>\
         <tr><td class=\"l\">position consistency</td><td>{:.3}</td></tr>\
         <tr><td class=\"l\">first-slot win rate</td><td>{:.3}</td></tr>\
         <tr><td class=\"l\">tie rate</td><td>{:.3}</td></tr>\
         <tr><td class=\"l\">invalid rate</td><td>{:.3}</td></tr>\
         <tr><td class=\"l\">mean length change (characters)</td><td>{:.1}</td></tr>\
         <tr><td class=\"l\">CU ×100, refinements longer than the answer</td><td>{}</td></tr>\
         <tr><td class=\"l\">CU ×100, refinements not longer</td><td>{}</td></tr>\
         <tr><td class=\"l\">judgements</td><td>{}</td></tr></table>\n",
        h.position_consistency,
        h.first_slot_win_rate,
        h.tie_rate,
        h.invalid_rate,
        h.mean_length_change,
        opt(h.cu_longer),
        opt(h.cu_not_longer),
        h.judgements
    )
}

/// The verdicts of one refinement against the first answer, in both orders.
fn verdicts(pair: &rco_core::BothOrders) -> String {
    use rco_core::Verdict;
    let said = |verdict: &Verdict, refined: Verdict| match verdict {
        Verdict::Tie => "tie".to_string(),
        Verdict::Invalid { .. } => "invalid".to_string(),
        v if *v == refined => "refinement better".to_string(),
        _ => "first answer better".to_string(),
    };
    format!(
        "refinement shown first: {}; shown second: {}",
        said(&pair.refined_first.verdict, Verdict::A),
        said(&pair.refined_second.verdict, Verdict::B)
    )
}

fn examples_section(records: &[EvalRecord]) -> String {
    let mut out = String::from("<h2>Examples</h2>\n");
    // The trained critic's items when there is one, else the last critic's.
    let critics = ordered(records.iter().map(|r| r.critic.as_str()));
    let Some(critic) = critics.iter().find(|c| *c != "base").or(critics.last()) else {
        out.push_str("<p class=\"note\">no evaluation records</p>\n");
        return out;
    };
    let mut scored: Vec<&EvalRecord> = records
        .iter()
        .filter(|r| &r.critic == critic && r.cu.is_some())
        .collect();
    scored.sort_by(|a, b| b.cu.unwrap_or(0.0).total_cmp(&a.cu.unwrap_or(0.0)));
    let best = scored.iter().take(EXAMPLES);
    let worst = scored
        .iter()
        .rev()
        .take(EXAMPLES.min(scored.len().saturating_sub(EXAMPLES)));
    for (heading, picked) in [
        ("Best CU", best.collect::<Vec<_>>()),
        ("Worst CU", worst.collect::<Vec<_>>()),
    ] {
        let _ = writeln!(out, "<h3>{heading} (critic {})</h3>", escape(critic));
        for r in picked {
            let _ = write!(
                out,
                "<h4>{} · {} · actor {} · CU {:.2}</h4>",
                escape(&r.task),
                escape(&r.item_id),
                escape(&r.actor),
                r.cu.unwrap_or(0.0)
            );
            for (i, critique) in r.critiques.iter().enumerate().take(2) {
                let _ = write!(
                    out,
                    "<p>Critique {}:</p><pre>{}</pre>",
                    i + 1,
                    escape(critique)
                );
                if let Some(refinements) = r.refinements.get(i) {
                    for (j, refined) in refinements.iter().enumerate().take(2) {
                        let verdict = r
                            .pairs
                            .get(i)
                            .and_then(|p| p.get(j))
                            .map(verdicts)
                            .unwrap_or_default();
                        let _ = write!(
                            out,
                            "<p>Refinement {}.{} ({}):</p><pre>{}</pre>",
                            i + 1,
                            j + 1,
                            escape(&verdict),
                            escape(refined)
                        );
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{escape, training_losses};

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
    }

    #[test]
    fn each_training_is_its_own_loss_curve() {
        let record = |critic: Option<&str>, step: u32, steps: u32, loss: f64| {
            let mut m =
                serde_json::json!({"stage": "train", "step": step, "steps": steps, "loss": loss});
            if let Some(c) = critic {
                m["critic"] = c.into();
            }
            m
        };
        let named = vec![
            record(Some("rco"), 1, 4, 0.5),
            record(Some("rco"), 2, 4, 0.4),
            record(Some("rco"), 3, 4, 9.0),
            serde_json::json!({"stage": "collect", "mean_cu": 0.5}),
            record(Some("sft"), 1, 2, 2.0),
            record(Some("sft"), 2, 2, 1.0),
            // Resumed from its step-2 checkpoint: step 3 again, then on.
            record(Some("rco"), 3, 4, 0.3),
            record(Some("rco"), 4, 4, 0.2),
        ];
        assert_eq!(
            training_losses(&named),
            vec![
                (
                    "rco".to_string(),
                    vec![(1.0, 0.5), (2.0, 0.4), (3.0, 0.3), (4.0, 0.2)]
                ),
                ("sft".to_string(), vec![(1.0, 2.0), (2.0, 1.0)]),
            ]
        );
        // Records that name no critic: a resume stays on its curve; a new training (step 1,
        // or another total) starts one.
        let unnamed = vec![
            record(None, 1, 3, 0.5),
            record(None, 2, 3, 0.4),
            record(None, 2, 3, 0.45),
            record(None, 3, 3, 0.3),
            record(None, 1, 2, 2.0),
            record(None, 2, 2, 1.0),
            record(None, 2, 5, 7.0),
        ];
        assert_eq!(
            training_losses(&unnamed),
            vec![
                (
                    "training 1".to_string(),
                    vec![(1.0, 0.5), (2.0, 0.45), (3.0, 0.3)]
                ),
                ("training 2".to_string(), vec![(1.0, 2.0), (2.0, 1.0)]),
                ("training 3".to_string(), vec![(2.0, 7.0)]),
            ]
        );
    }
}
