//! The `openai` critic, actor and judge.

use std::sync::Arc;

use async_trait::async_trait;
use rco_core::judge::{parse_pairwise, parse_rating};
use rco_core::seed::derive_seed;
use rco_core::{
    Actor, BuildContext, Comparison, Critic, CriticContext, Critique, CritiqueRequest, Judge,
    Judgement, PointwiseRequest, PointwiseScore, PromptTemplates, RefineRequest, Refinement,
    RespondRequest, Result,
};

use crate::cache::Answer;
use crate::client::{Call, Client, Message};
use crate::config::{OpenAiConfig, OpenAiJudgeConfig};

fn user(content: &str) -> Vec<Message> {
    vec![Message {
        role: "user".into(),
        content: content.to_string(),
    }]
}

/// The refinement conversation of a request ([`RefineRequest::conversation`]).
fn refinement_messages(request: &RefineRequest) -> Vec<Message> {
    request
        .conversation()
        .into_iter()
        .map(|t| Message {
            role: t.role,
            content: t.content,
        })
        .collect()
}

/// `n` calls of the same messages: sample `j` draws seed `derive(seed, j)`.
fn samples(messages: &[Message], n: usize, seed: u64) -> Vec<Call> {
    (0..n)
        .map(|j| Call {
            messages: messages.to_vec(),
            sample: j,
            seed: derive_seed(seed, &["sample", &j.to_string()]),
        })
        .collect()
}

fn client(config: &OpenAiConfig, ctx: &BuildContext) -> Result<Client> {
    Client::new(&ctx.name, config.clone(), ctx)
}

/// Batches are split only by the pool's limits, so a plugin takes everything at once.
const BATCH: usize = 1 << 16;

pub struct OpenAiActor {
    client: Client,
}

#[async_trait]
impl Actor for OpenAiActor {
    fn max_batch_size(&self) -> usize {
        BATCH
    }

    async fn respond(&self, requests: &[RespondRequest]) -> Result<Vec<String>> {
        let calls = requests
            .iter()
            .map(|r| Call {
                messages: user(&r.prompt),
                sample: 0,
                seed: r.seed,
            })
            .collect();
        Ok(self
            .client
            .chat_all(calls)
            .await?
            .into_iter()
            .map(|a| a.text)
            .collect())
    }

    async fn refine(&self, requests: &[RefineRequest]) -> Result<Vec<Vec<Refinement>>> {
        let calls: Vec<Call> = requests
            .iter()
            .flat_map(|r| samples(&refinement_messages(r), r.m, r.seed))
            .collect();
        let mut answers = self.client.chat_all(calls).await?.into_iter();
        Ok(requests
            .iter()
            .map(|r| {
                answers
                    .by_ref()
                    .take(r.m)
                    .map(|a| Refinement { text: a.text })
                    .collect()
            })
            .collect())
    }
}

pub struct OpenAiCritic {
    client: Client,
}

#[async_trait]
impl Critic for OpenAiCritic {
    fn max_batch_size(&self) -> usize {
        BATCH
    }

    fn sampling(&self) -> Option<rco_core::CriticSampling> {
        let s = &self.client.config().sampling;
        Some(rco_core::CriticSampling {
            temperature: s.temperature,
            top_p: s.top_p,
            top_k: 0,
            max_tokens: s.max_tokens as usize,
        })
    }

    async fn critique(&self, requests: &[CritiqueRequest]) -> Result<Vec<Vec<Critique>>> {
        let calls: Vec<Call> = requests
            .iter()
            .flat_map(|r| samples(&user(&r.prompt), r.n, r.seed))
            .collect();
        let mut answers = self.client.chat_all(calls).await?.into_iter();
        Ok(requests
            .iter()
            .map(|r| {
                answers
                    .by_ref()
                    .take(r.n)
                    .map(|a| Critique {
                        truncated: a.finish_reason.as_deref() == Some("length"),
                        text: a.text,
                        ref_logprob: a.logprob,
                    })
                    .collect()
            })
            .collect())
    }
}

pub struct OpenAiJudge {
    client: Client,
    templates: PromptTemplates,
}

/// The prompt, and the start of the answer written into the model's turn (if any).
fn judge_messages(prompt: String, prefix: &str) -> Vec<Message> {
    let mut messages = user(&prompt);
    if !prefix.is_empty() {
        messages.push(Message {
            role: "assistant".into(),
            content: prefix.to_string(),
        });
    }
    messages
}

/// The whole answer: some servers (llama.cpp) return a prefilled answer with its prefix,
/// others only the continuation.
fn with_prefix(prefix: &str, text: &str) -> String {
    if text.starts_with(prefix) {
        text.to_string()
    } else {
        format!("{prefix}{text}")
    }
}

#[async_trait]
impl Judge for OpenAiJudge {
    fn max_batch_size(&self) -> usize {
        BATCH
    }

    async fn compare(&self, comparisons: &[Comparison]) -> Result<Vec<Judgement>> {
        let asks = comparisons.iter().map(|c| {
            let t = self.templates.for_task(&c.task);
            (
                t.pairwise_prompt(c),
                t.pairwise_answer_prefix.clone(),
                c.seed,
            )
        });
        let answers = self.ask(asks.collect()).await?;
        Ok(answers
            .iter()
            .map(|(text, answer)| {
                if self.client.config().verdict_probabilities {
                    verdict_from_top_logprobs(answer)
                } else {
                    Judgement::hard(parse_pairwise(text))
                }
            })
            .collect())
    }

    async fn score(&self, requests: &[PointwiseRequest]) -> Result<Vec<PointwiseScore>> {
        let asks = requests.iter().map(|r| {
            let t = self.templates.for_task(&r.task);
            (
                t.pointwise_prompt(r),
                t.pointwise_answer_prefix.clone(),
                r.seed,
            )
        });
        let answers = self.ask(asks.collect()).await?;
        Ok(answers.iter().map(|(text, _)| parse_rating(text)).collect())
    }
}

/// The judgement in the probabilities the server gave its answer's first token (the one
/// after the pairwise answer prefix): each letter's probability summed over the tokens that
/// spell it (` A` and `A`); a letter outside the top tokens has none.
fn verdict_from_top_logprobs(answer: &Answer) -> Judgement {
    let Some(top) = &answer.first_top_logprobs else {
        return Judgement::hard(rco_core::Verdict::Invalid {
            reason: "the server gave no top_logprobs for the verdict token (verdict_probabilities needs a server that returns them)".into(),
        });
    };
    let log_probs: Vec<f64> = ["A", "B", "C"]
        .iter()
        .map(|letter| {
            let p: f64 = top
                .iter()
                .filter(|(token, _)| token.trim() == *letter)
                .map(|(_, lp)| lp.exp())
                .sum();
            p.ln()
        })
        .collect();
    rco_core::judge::judgement_from_choice_log_probs(&log_probs)
}

impl OpenAiJudge {
    /// One call per (prompt, answer prefix, seed); each whole answer's text, prefix
    /// included, and the answer.
    async fn ask(&self, asks: Vec<(String, String, u64)>) -> Result<Vec<(String, Answer)>> {
        let calls = asks
            .iter()
            .map(|(prompt, prefix, seed)| Call {
                messages: judge_messages(prompt.clone(), prefix),
                sample: 0,
                seed: *seed,
            })
            .collect();
        let answers = self.client.chat_all(calls).await?;
        Ok(answers
            .into_iter()
            .zip(&asks)
            .map(|(a, (_, prefix, _))| (with_prefix(prefix, &a.text), a))
            .collect())
    }
}

fn build_actor(config: &OpenAiConfig, ctx: &BuildContext) -> Result<Arc<dyn Actor>> {
    Ok(Arc::new(OpenAiActor {
        client: client(config, ctx)?,
    }))
}

fn build_critic(config: &OpenAiConfig, ctx: &CriticContext) -> Result<Arc<dyn Critic>> {
    let mut config = config.clone();
    match &ctx.endpoint {
        // The trained critic: its weights are served on this machine for the run, so the
        // section's servers, key and rate limits (meant for the base model) do not apply.
        Some(url) => {
            config.base_urls = vec![url.clone()];
            config.api_key_env = None;
            config.requests_per_second = None;
            config.tokens_per_minute = None;
        }
        None if ctx.is_trained() => {
            return Err(rco_core::Error::plugin(
                format!("critic `{}` (openai)", ctx.name),
                "the trained critic of a critic on a server must be served, but the training summary says nothing about serving it (it was written by an older rco): delete train_summary.json and rerun `rco train` to continue",
            ));
        }
        None => {}
    }
    Ok(Arc::new(OpenAiCritic {
        client: Client::new(&ctx.name, config, ctx)?,
    }))
}

fn build_judge(config: &OpenAiJudgeConfig, ctx: &BuildContext) -> Result<Arc<dyn Judge>> {
    Ok(Arc::new(OpenAiJudge {
        client: client(&config.0, ctx)?,
        templates: ctx.templates.clone(),
    }))
}

const EXAMPLE: &str = "kind = \"openai\"\nbase_urls = [\"http://127.0.0.1:8080/v1\"]\nmodel = \"served-model-name\"\napi_key_env = \"OPENAI_API_KEY\"\nconcurrency = 16\nsampling = { temperature = 0.7, max_tokens = 512 }\n";

rco_core::register_plugin! {
    role: Actor,
    kind: "openai",
    summary: "Actor on an OpenAI-compatible chat-completions server (vLLM, SGLang, llama.cpp, rco serve, hosted APIs)",
    example: EXAMPLE,
    config: OpenAiConfig,
    build: build_actor,
}

rco_core::register_plugin! {
    role: Critic,
    kind: "openai",
    summary: "Critic on an OpenAI-compatible chat-completions server (with `logprobs = true`, critiques carry their log-prob)",
    example: EXAMPLE,
    config: OpenAiConfig,
    build: build_critic,
}

rco_core::register_plugin! {
    role: Judge,
    kind: "openai",
    summary: "Pairwise ([[A]]/[[B]]/[[C]]) and pointwise (1-10) judge on an OpenAI-compatible chat-completions server",
    example: EXAMPLE,
    config: OpenAiJudgeConfig,
    build: build_judge,
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::{json, Value};

    use super::*;
    use crate::testing::{default_answer, ServerOptions, TestServer};

    /// A chat completion whose first token has these alternatives, as llama.cpp and OpenAI
    /// write `logprobs.content[0].top_logprobs`.
    fn with_top(top: &[(&str, f64)]) -> Answer {
        let top: Vec<Value> = top
            .iter()
            .map(|(token, lp)| json!({"token": token, "logprob": lp, "bytes": []}))
            .collect();
        let body = json!({"choices": [{"message": {"content": "A]]"}, "finish_reason": "length",
            "logprobs": {"content": [{"token": "A", "logprob": -0.1, "top_logprobs": top}]}}]});
        crate::client::parse_completion(&body.to_string(), true).expect("parsed")
    }

    #[test]
    fn verdict_probabilities_are_read_from_the_first_tokens_alternatives() {
        let answer = with_top(&[
            ("A", 0.6f64.ln()),
            (" A", 0.1f64.ln()),
            ("B", 0.2f64.ln()),
            ("The", 0.1f64.ln()),
        ]);
        let j = verdict_from_top_logprobs(&answer);
        assert_eq!(j.verdict, rco_core::Verdict::A);
        // P(A) = 0.7, P(B) = 0.2, no C among the alternatives: over the three, 0.7 / 0.9.
        assert!((j.prob_a.unwrap() - 0.7 / 0.9).abs() < 1e-9, "{j:?}");
        let j = verdict_from_top_logprobs(&with_top(&[("The", -0.1)]));
        assert!(!j.verdict.is_valid());
        let plain = crate::client::parse_completion(
            &json!({"choices": [{"message": {"content": "A]]"}}]}).to_string(),
            true,
        )
        .expect("parsed");
        assert!(!verdict_from_top_logprobs(&plain).verdict.is_valid());
    }

    /// A judge on `url` with a pairwise answer prefix and none for pointwise prompts.
    fn judge(url: &str, extra: Value) -> OpenAiJudge {
        let mut section = json!({"base_urls": [url], "model": "m", "cache": false});
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            section[k] = v;
        }
        let mut ctx = BuildContext::new("judge", 0);
        ctx.templates.default.pairwise_answer_prefix = "Verdict: [[".into();
        OpenAiJudge {
            client: client(&rco_core::registry::parse_config(&section).unwrap(), &ctx).unwrap(),
            templates: ctx.templates,
        }
    }

    /// The request bodies of one comparison and one pointwise score.
    async fn bodies(judge: &OpenAiJudge, seen: &Mutex<Vec<Value>>) -> (Value, Value) {
        seen.lock().unwrap().clear();
        let comparison = Comparison {
            task: "t".into(),
            prompt: "2 + 2?".into(),
            reference: None,
            a: "4".into(),
            b: "5".into(),
            seed: 1,
            ..Comparison::default()
        };
        judge.compare(&[comparison]).await.unwrap();
        let rating = PointwiseRequest {
            task: "t".into(),
            prompt: "2 + 2?".into(),
            response: "4".into(),
            reference: None,
            seed: 2,
            ..PointwiseRequest::default()
        };
        judge.score(&[rating]).await.unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        (seen[0].clone(), seen[1].clone())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_answer_prefix_is_sent_to_be_continued() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorder = seen.clone();
        let server = TestServer::start(ServerOptions {
            answer: Arc::new(move |body: &Value| {
                recorder.lock().unwrap().push(body.clone());
                default_answer(body)
            }),
            ..Default::default()
        })
        .await
        .unwrap();

        let (pairwise, pointwise) = bodies(&judge(&server.base_url(), json!({})), &seen).await;
        assert_eq!(
            pairwise["messages"][1],
            json!({"role": "assistant", "content": "Verdict: [["})
        );
        assert_eq!(
            pairwise["continue_final_message"],
            json!(true),
            "{pairwise}"
        );
        assert_eq!(
            pairwise["add_generation_prompt"],
            json!(false),
            "{pairwise}"
        );
        // No prefix, nothing to continue: the server's defaults apply.
        assert_eq!(pointwise["messages"].as_array().unwrap().len(), 1);
        assert!(
            pointwise.get("continue_final_message").is_none(),
            "{pointwise}"
        );
        assert!(
            pointwise.get("add_generation_prompt").is_none(),
            "{pointwise}"
        );

        // Turned off, for a server that rejects unknown fields.
        let off = judge(&server.base_url(), json!({"continue_final_message": false}));
        let (pairwise, _) = bodies(&off, &seen).await;
        assert_eq!(pairwise["messages"][1]["content"], "Verdict: [[");
        assert!(
            pairwise.get("continue_final_message").is_none(),
            "{pairwise}"
        );
        assert!(
            pairwise.get("add_generation_prompt").is_none(),
            "{pairwise}"
        );

        // `extra` has the last word.
        let extra = judge(
            &server.base_url(),
            json!({"extra": {"add_generation_prompt": true}}),
        );
        let (pairwise, _) = bodies(&extra, &seen).await;
        assert_eq!(pairwise["continue_final_message"], json!(true));
        assert_eq!(pairwise["add_generation_prompt"], json!(true));
    }
}
