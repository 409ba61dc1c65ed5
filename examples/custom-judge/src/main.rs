//! `custom-judge`: the whole `rco` command line plus one judge defined here, `kind =
//! "shorter"`, which prefers the shorter answer. `custom-judge plugins` lists it,
//! `custom-judge schema` documents it, `custom-judge check` validates it and `custom-judge
//! run` uses it, exactly as the built-in plugins.

use std::sync::Arc;

use rco_core::registry::{Validate, ValidateContext};
use rco_core::{BuildContext, Comparison, ConfigProblem, Judge, Judgement, Result, Verdict};

/// Prefers the shorter answer.
#[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShorterConfig {
    /// Answers whose lengths differ by at most this many characters are a tie.
    #[serde(default)]
    pub tie_within: usize,
}

impl Validate for ShorterConfig {
    fn problems(&self, _ctx: &ValidateContext) -> Vec<ConfigProblem> {
        if self.tie_within > 10_000 {
            vec![ConfigProblem::new("tie_within", "must be at most 10000")]
        } else {
            Vec::new()
        }
    }
}

pub struct Shorter {
    tie_within: usize,
}

#[async_trait::async_trait]
impl Judge for Shorter {
    async fn compare(&self, comparisons: &[Comparison]) -> Result<Vec<Judgement>> {
        Ok(comparisons
            .iter()
            .map(|c| {
                let (a, b) = (c.a.chars().count(), c.b.chars().count());
                Judgement::hard(if a.abs_diff(b) <= self.tie_within {
                    Verdict::Tie
                } else if a < b {
                    Verdict::A
                } else {
                    Verdict::B
                })
            })
            .collect())
    }
}

fn build(config: &ShorterConfig, _ctx: &BuildContext) -> Result<Arc<dyn Judge>> {
    Ok(Arc::new(Shorter {
        tie_within: config.tie_within,
    }))
}

rco_core::register_plugin! {
    role: Judge,
    kind: "shorter",
    summary: "Prefers the shorter answer (a plugin defined outside rco)",
    example: "kind = \"shorter\"\ntie_within = 0\n",
    config: ShorterConfig,
    build: build,
}

fn main() -> std::process::ExitCode {
    rco_cli::main()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shorter_conforms() {
        let judge = Shorter { tie_within: 0 };
        let items = rco_core::test_util::items();
        rco_core::test_util::judge_conforms(&judge, &items)
            .await
            .unwrap();
    }
}
