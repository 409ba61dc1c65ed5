//! Judges: one written in Python (`examples/command-judge/judge.py`, `kind = "command"`)
//! through a whole run, every verdict the one its rule gives (an answer containing the
//! reference beats one that does not) in both orders; and `rco judge-eval` on the built-in
//! preference pairs, where the verifiers are perfect and a position-biased judge shows it;
//! PairRM (`kind = "pairrm"`, a synthesized checkpoint) through `rco judge-eval`, where
//! reading each pair in both orders makes its verdicts position-consistent by construction.

use std::collections::HashMap;

use serde_json::Value;

use crate::util::{records, run, text, workspace};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_judge_runs_a_whole_experiment() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let config = workspace().join("examples/command-judge/quickstart.toml");
    let done = run("run", &config, &out, vec![]).await;
    assert!(done.status.success(), "{}", text(&done));
    assert!(out.join("report.json").is_file());

    let items: HashMap<String, Value> = records(&out.join("items.jsonl"))
        .into_iter()
        .map(|r| {
            (
                r["item"]["id"].as_str().unwrap().to_string(),
                r["item"].clone(),
            )
        })
        .collect();
    let refinements: HashMap<(String, u64, u64), String> = records(&out.join("refinements.jsonl"))
        .into_iter()
        .map(|r| {
            (
                (
                    r["item_id"].as_str().unwrap().to_string(),
                    r["critique"].as_u64().unwrap(),
                    r["refinement"].as_u64().unwrap(),
                ),
                r["text"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let verdicts = records(&out.join("verdicts.jsonl"));
    assert_eq!(verdicts.len(), 8 * 2 * 2);
    // The strong actor fixes some answers: the judge has both wins and ties to give.
    let wins = verdicts
        .iter()
        .filter(|v| v["pair"]["refined_first"]["verdict"]["verdict"] == "a")
        .count();
    assert!(wins > 0 && wins < verdicts.len(), "{wins} wins");
    let contains = |answer: &str, reference: &str| {
        let norm = |s: &str| {
            s.to_lowercase()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        norm(answer).contains(&norm(reference))
    };
    for v in &verdicts {
        let id = v["item_id"].as_str().unwrap();
        let item = &items[id];
        let reference = item["reference"].as_str().unwrap();
        let y0 = item["initial_response"].as_str().unwrap();
        let key = (
            id.to_string(),
            v["critique"].as_u64().unwrap(),
            v["refinement"].as_u64().unwrap(),
        );
        let refined = &refinements[&key];
        let (r, i) = (contains(refined, reference), contains(y0, reference));
        let expected = |refined_slot: &'static str, initial_slot: &'static str| {
            if r && !i {
                refined_slot
            } else if i && !r {
                initial_slot
            } else {
                "tie"
            }
        };
        assert_eq!(
            v["pair"]["refined_first"]["verdict"]["verdict"],
            expected("a", "b"),
            "{v}"
        );
        assert_eq!(
            v["pair"]["refined_second"]["verdict"]["verdict"],
            expected("b", "a"),
            "{v}"
        );
    }
}

/// `scripts/judge_pairs.py` over the suites `scripts/test.sh` built (in `RCO_DATA_DIR`).
fn built_pairs(out: &std::path::Path) -> std::path::PathBuf {
    let data = std::env::var("RCO_DATA_DIR").expect(
        "RCO_DATA_DIR is not set: run the tests through scripts/test.sh, which builds the suites",
    );
    let done = std::process::Command::new("python3")
        .arg(workspace().join("scripts/judge_pairs.py"))
        .arg(&data)
        .arg(out)
        .output()
        .expect("python3");
    assert!(done.status.success(), "{}", text(&done));
    out.to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_eval_finds_the_verifiers_perfect_and_a_biased_judge_biased() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = built_pairs(&dir.path().join("pairs"));
    // The ToMi pairs: the reference location against another one the story names.
    let qa = records(&pairs.join("qa.jsonl"));
    assert_eq!(qa.len(), 83);
    for pair in &qa {
        let reference = pair["reference"].as_str().unwrap();
        let rejected = pair["rejected"].as_str().unwrap();
        let wrong = rejected
            .strip_prefix("In the ")
            .unwrap()
            .trim_end_matches('.');
        assert_eq!(pair["chosen"], format!("In the {reference}."), "{pair}");
        assert_ne!(wrong, reference, "{pair}");
        assert!(
            pair["prompt"]
                .as_str()
                .unwrap()
                .contains(&format!("the {wrong}")),
            "{pair}"
        );
        assert_eq!(pair["subset"], "qa-tomi-correct-vs-wrong");
    }
    // Both suites in one file: one subset each.
    let mut both = std::fs::read_to_string(pairs.join("math.jsonl")).unwrap();
    both.push_str(&std::fs::read_to_string(pairs.join("code.jsonl")).unwrap());
    let both_path = dir.path().join("both.jsonl");
    std::fs::write(&both_path, both).unwrap();
    let config = workspace().join("configs/judges/verifiers.toml");
    let out = dir.path().join("verifiers");
    let judge_eval = |config: std::path::PathBuf,
                      pairs: std::path::PathBuf,
                      out: std::path::PathBuf| async move {
        let mut command = crate::util::judge_eval(&config, &pairs, &out);
        tokio::task::spawn_blocking(move || command.output().expect("rco"))
            .await
            .unwrap()
    };
    let done = judge_eval(config.clone(), both_path.clone(), out.clone()).await;
    assert!(done.status.success(), "{}", text(&done));
    let report = crate::util::json(&out.join("judge_eval.json"));
    let overall = &report["overall"];
    assert_eq!(overall["pairs"], 299 + 164, "{report:#}");
    assert_eq!(overall["accuracy"], 1.0, "{report:#}");
    assert_eq!(overall["accuracy_lo"], 1.0);
    assert_eq!(overall["position_consistency"], 1.0);
    assert_eq!(overall["first_slot_win_rate"], 0.5);
    assert_eq!(overall["tie_rate"], 0.0);
    assert_eq!(overall["invalid_rate"], 0.0);
    for subset in ["math-correct-vs-wrong", "code-canonical-vs-mutant"] {
        assert_eq!(report["subsets"][subset]["accuracy"], 1.0, "{subset}");
    }
    assert!(
        text(&done).contains("code-canonical-vs-mutant"),
        "{}",
        text(&done)
    );
    // Resumed: nothing is judged again.
    let lines = records(&out.join("judge_eval.jsonl")).len();
    let again = judge_eval(config.clone(), both_path.clone(), out.clone()).await;
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(records(&out.join("judge_eval.jsonl")).len(), lines);
    // Another pairs file in the same directory is refused.
    let other = judge_eval(config, pairs.join("math.jsonl"), out).await;
    assert!(!other.status.success());
    assert!(
        text(&other).contains("another pairs_sha256"),
        "{}",
        text(&other)
    );

    // A judge that answers "A" 60% of the time whatever the answers: the numbers say so.
    let biased = crate::util::write(
        dir.path(),
        "biased.toml",
        "seed = 3\n[judge]\nkind = \"noisy\"\nposition_bias = 0.6\n",
    );
    let out = dir.path().join("biased");
    let done = judge_eval(biased, pairs.join("math.jsonl"), out.clone()).await;
    assert!(done.status.success(), "{}", text(&done));
    let overall = crate::util::json(&out.join("judge_eval.json"))["overall"].clone();
    let first = overall["first_slot_win_rate"].as_f64().unwrap();
    let consistency = overall["position_consistency"].as_f64().unwrap();
    assert!(first > 0.65, "{overall:#}");
    assert!(consistency < 0.8, "{overall:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairrm_judges_pairs_in_both_orders() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = built_pairs(&dir.path().join("pairs"));
    let first: String = std::fs::read_to_string(pairs.join("math.jsonl"))
        .unwrap()
        .lines()
        .take(20)
        .map(|l| format!("{l}\n"))
        .collect();
    let pairs = crate::util::write(dir.path(), "pairs.jsonl", &first);
    // A PairRM checkpoint with random weights and the real names (scripts/pairrm.py), next to
    // the config that names it by a relative path. Its config.json cuts answers to 20 tokens,
    // where a right and a wrong answer to a word problem are still the same text: the
    // judge's lengths are raised so that the answers differ.
    let made = std::process::Command::new("python3")
        .arg(workspace().join("scripts/pairrm.py"))
        .args(["make"])
        .arg(dir.path().join("PairRM"))
        .output()
        .expect("python3");
    assert!(made.status.success(), "{}", text(&made));
    let mut rates = Vec::new();
    for both_orders in [true, false] {
        let config = crate::util::write(
            dir.path(),
            &format!("pairrm-{both_orders}.toml"),
            &format!(
                "[judge]\nkind = \"pairrm\"\ncheckpoint = \"PairRM\"\nboth_orders = {both_orders}\n\
                 source_max_tokens = 256\ncandidate_max_tokens = 256\n"
            ),
        );
        let out = dir.path().join(format!("out-{both_orders}"));
        let done = crate::util::judge_eval(&config, &pairs, &out)
            .output()
            .expect("rco");
        assert!(done.status.success(), "{}", text(&done));
        let overall = crate::util::json(&out.join("judge_eval.json"))["overall"].clone();
        assert_eq!(overall["scored"], 20, "{overall:#}");
        assert_eq!(overall["invalid_rate"], 0.0, "{overall:#}");
        assert_eq!(overall["tie_rate"], 0.0, "{overall:#}");
        rates.push(overall);
    }
    // logit([a, b]) − logit([b, a]) changes sign with the order: never a position preference.
    assert_eq!(rates[0]["position_consistency"], 1.0, "{:#}", rates[0]);
    assert_eq!(rates[0]["first_slot_win_rate"], 0.5, "{:#}", rates[0]);
    // One order alone is what the untrained head makes of positions: a different number.
    assert_ne!(
        rates[1]["first_slot_win_rate"], rates[0]["first_slot_win_rate"],
        "{:#}",
        rates[1]
    );
}

/// The quickstart world, small, judged by its exact verifier.
const SMALL_RUN: &str = r#"seed = 11
[data]
kind = "quickstart"
train_items = 24
test_items = 4
min_digits = 5
max_digits = 5
[critic]
kind = "quickstart"
model = { d_model = 16, heads = 2, layers = 1, d_ff = 32, max_len = 40 }
warm_start = { steps = 5, batch_size = 16, min_digits = 5, max_digits = 5 }
sampling = { temperature = 1.0, max_tokens = 8 }
[actors.strong]
kind = "quickstart"
strength = "strong"
[judge]
kind = "verifier"
[trainer]
kind = "rco"
epochs = 1
groups_per_batch = 4
[collect]
critiques_per_item = 4
refinements_per_critique = 2
[templates.default]
critique = "{prompt}|{response}>"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejudge_compares_two_judges_on_the_same_refinements() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::util::write(dir.path(), "small.toml", SMALL_RUN);
    let out = dir.path().join("run");
    let done = run("collect", &config, &out, vec![]).await;
    assert!(done.status.success(), "{}", text(&done));
    let rejudge = |judge: std::path::PathBuf| {
        let mut command = crate::util::rco();
        command
            .arg("rejudge")
            .arg(&config)
            .arg(&judge)
            .arg("--out")
            .arg(&out);
        async move {
            tokio::task::spawn_blocking(move || command.output().expect("rco"))
                .await
                .unwrap()
        }
    };
    // The same judge again: the CUs agree exactly.
    let same = crate::util::write(dir.path(), "same.toml", "[judge]\nkind = \"verifier\"\n");
    let done = rejudge(same.clone()).await;
    assert!(done.status.success(), "{}", text(&done));
    let a = crate::util::json(&out.join("rejudge/same/agreement.json"));
    assert_eq!(a["items"], 24, "{a:#}");
    assert!(a["correlated_items"].as_u64().unwrap() > 0, "{a:#}");
    assert_eq!(a["mean_spearman"], 1.0, "{a:#}");
    assert_eq!(a["best_critique_agreement"], 1.0, "{a:#}");
    assert_eq!(a["mean_cu_run_judge"], a["mean_cu_other_judge"]);
    assert_eq!(
        records(&out.join("rejudge/same/verdicts.jsonl")).len(),
        24 * 4 * 2
    );
    // Judged already: nothing is judged again.
    let done = rejudge(same).await;
    assert!(done.status.success(), "{}", text(&done));
    assert_eq!(
        records(&out.join("rejudge/same/verdicts.jsonl")).len(),
        24 * 4 * 2
    );
    // A judge that answers at random: the agreement drops.
    let random = crate::util::write(
        dir.path(),
        "random.toml",
        "seed = 2\n[judge]\nkind = \"noisy\"\nposition_bias = 0.0\ninvalid_rate = 0.0\nnoise = 1.0\n",
    );
    let done = rejudge(random).await;
    assert!(done.status.success(), "{}", text(&done));
    let r = crate::util::json(&out.join("rejudge/random/agreement.json"));
    assert!(r["mean_spearman"].as_f64().unwrap() < 0.5, "{r:#}");
    assert!(
        r["best_critique_agreement"].as_f64().unwrap() < 1.0,
        "{r:#}"
    );
}

/// `rco export-groups --format trl`: every collected critique with its CU as reward, and
/// every pair of one answer's critiques whose CUs differ, the higher chosen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_groups_writes_trl_rewards_and_preferences() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::util::write(dir.path(), "small.toml", SMALL_RUN);
    let out = dir.path().join("run");
    let export = |args: &[&str]| {
        let mut command = crate::util::rco();
        command.arg("export-groups").arg(&out).args(args);
        command.output().expect("rco")
    };
    // Nothing collected yet: the error names the run directory and what is missing.
    std::fs::create_dir_all(&out).unwrap();
    let early = export(&[]);
    assert!(!early.status.success());
    assert!(
        text(&early).contains("groups.jsonl") && text(&early).contains(&*out.to_string_lossy()),
        "{}",
        text(&early)
    );
    let done = run("collect", &config, &out, vec![]).await;
    assert!(done.status.success(), "{}", text(&done));
    let wrong = export(&["--format", "openai"]);
    assert!(!wrong.status.success());
    assert!(
        text(&wrong).contains("unknown format `openai`"),
        "{}",
        text(&wrong)
    );

    let done = export(&[]);
    assert!(done.status.success(), "{}", text(&done));
    let groups = records(&out.join("groups.jsonl"));
    assert_eq!(groups.len(), 24);
    let rewards = records(&out.join("export/trl/rco.jsonl"));
    let preferences = records(&out.join("export/trl/preferences.jsonl"));
    // No critiques were compared directly: no file of direct pairs.
    assert!(!out.join("export/trl/critique_preferences.jsonl").exists());
    // The same critiques and CUs as groups.jsonl, in its order.
    let expected: Vec<(String, String, f64)> = groups
        .iter()
        .flat_map(|g| {
            g["critiques"].as_array().unwrap().iter().map(move |c| {
                (
                    g["prompt"].as_str().unwrap().to_string(),
                    c["text"].as_str().unwrap().to_string(),
                    c["cu"].as_f64().unwrap(),
                )
            })
        })
        .collect();
    let got: Vec<(String, String, f64)> = rewards
        .iter()
        .map(|r| {
            (
                r["prompt"].as_str().unwrap().to_string(),
                r["completion"].as_str().unwrap().to_string(),
                r["reward"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    assert_eq!(rewards.len(), 24 * 4);
    // Pairs: one per two critiques of an item whose CUs differ; the chosen one's is higher.
    let mut pairs = 0;
    let mut flat = 0;
    for g in &groups {
        let cus: Vec<f64> = g["critiques"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["cu"].as_f64().unwrap())
            .collect();
        flat += usize::from(cus.iter().all(|&c| c == cus[0]));
        for i in 0..cus.len() {
            pairs += cus[i + 1..].iter().filter(|&&c| c != cus[i]).count();
        }
    }
    assert!(pairs > 0 && flat < 24, "the collection carries no signal");
    assert_eq!(preferences.len(), pairs);
    for p in &preferences {
        assert!(
            p["chosen_reward"].as_f64() > p["rejected_reward"].as_f64(),
            "{p}"
        );
        assert!(p["prompt"].is_string() && p["chosen"].is_string() && p["rejected"].is_string());
    }
    assert!(
        text(&done).contains(&format!("24 groups ({flat} flat): 96 critiques")),
        "{}",
        text(&done)
    );
    // A gap as large as any CU difference leaves no pair.
    let none = export(&[
        "--min-gap",
        "1",
        "--out",
        &dir.path().join("gap").to_string_lossy(),
    ]);
    assert!(none.status.success(), "{}", text(&none));
    assert_eq!(records(&dir.path().join("gap/preferences.jsonl")).len(), 0);
    assert_eq!(records(&dir.path().join("gap/rco.jsonl")).len(), 96);
}
