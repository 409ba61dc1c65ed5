//! Warm-starts a quickstart critic and reports the kinds of critiques it samples.
//! `cargo run --release -p rco-plugin-quickstart --example warm_start_probe -- STEPS LR MIN MAX D LAYERS`
use rco_core::{BuildContext, CritiqueRequest, Dataset};
use rco_plugin_quickstart::critic::QuickstartCriticConfig;
use rco_plugin_quickstart::mix::classify_critique;
use rco_plugin_quickstart::tasks::{QuickstartDataConfig, QuickstartDataset};

#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    let steps: usize = a.get(1).and_then(|s| s.parse().ok()).unwrap_or(600);
    let lr: f64 = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(3e-3);
    let min: usize = a.get(3).and_then(|s| s.parse().ok()).unwrap_or(4);
    let max: usize = a.get(4).and_then(|s| s.parse().ok()).unwrap_or(6);
    let d: usize = a.get(5).and_then(|s| s.parse().ok()).unwrap_or(64);
    let layers: usize = a.get(6).and_then(|s| s.parse().ok()).unwrap_or(2);
    let mut config: QuickstartCriticConfig = serde_json::from_value(serde_json::json!({})).unwrap();
    config.warm_start.steps = steps;
    config.warm_start.learning_rate = lr;
    config.warm_start.min_digits = min;
    config.warm_start.max_digits = max;
    config.model.d_model = d;
    config.model.layers = layers;
    if let Ok(mix) = std::env::var("MIX") {
        config.warm_start.mix = serde_json::from_str(&mix).unwrap();
    }
    if let Ok(b) = std::env::var("BATCH") {
        config.warm_start.batch_size = b.parse().unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = BuildContext::new("critic", 7);
    ctx.templates.default.critique = "{prompt}|{response}>".into();
    struct Print(std::sync::atomic::AtomicU64);
    impl rco_core::Progress for Print {
        fn inc(&self, d: u64) {
            self.0.fetch_add(d, std::sync::atomic::Ordering::SeqCst);
        }
        fn set_message(&self, m: &str) {
            eprintln!(
                "step {} {m}",
                self.0.load(std::sync::atomic::Ordering::SeqCst)
            );
        }
    }
    impl rco_core::ProgressFactory for Print {
        fn start(&self, _: &str, _: u64) -> std::sync::Arc<dyn rco_core::Progress> {
            std::sync::Arc::new(Print(Default::default()))
        }
    }
    ctx.progress = std::sync::Arc::new(Print(Default::default()));
    let t = std::time::Instant::now();
    rco_plugin_quickstart::critic::warm_start(&config, &ctx, dir.path()).unwrap();
    eprintln!(
        "warm start {steps} steps: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let critic =
        rco_plugin_burn::critic::open_critic("c", dir.path(), "cpu", config.sampling.clone(), 256)
            .unwrap();
    let data = QuickstartDataset::new(
        QuickstartDataConfig {
            min_digits: min,
            max_digits: max,
            ..Default::default()
        },
        99,
    )
    .unwrap();
    let items = data.items("test").unwrap();
    let reqs: Vec<CritiqueRequest> = items
        .iter()
        .map(|i| CritiqueRequest {
            item: i.clone(),
            prompt: format!("{}|{}>", i.prompt, i.initial_response),
            n: 4,
            seed: rco_core::seed::derive_seed(1, &[&i.id]),
        })
        .collect();
    let t = std::time::Instant::now();
    let out = critic.critique(&reqs).await.unwrap();
    eprintln!("sampling 1200 critiques: {:.1}s", t.elapsed().as_secs_f64());
    let mut counts = std::collections::BTreeMap::new();
    for (i, cs) in items.iter().zip(&out) {
        for c in cs {
            *counts
                .entry(format!("{:?}", classify_critique(i, &c.text)))
                .or_insert(0) += 1;
        }
    }
    println!("{counts:?}");
    for (i, cs) in items.iter().zip(&out).take(12) {
        println!(
            "{}|{} -> {:?}",
            i.prompt,
            i.initial_response,
            cs.iter().map(|c| c.text.clone()).collect::<Vec<_>>()
        );
    }
}
