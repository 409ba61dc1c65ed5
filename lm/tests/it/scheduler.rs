//! The continuous-batching scheduler over SmolLM2: requests that join a running batch at
//! different steps, with prompts of different lengths (one read in chunks), write the same
//! greedy text as each one alone; a cancelled request ends with `Cancelled`; a prompt over
//! the limit is refused with it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use rco_lm::batcher::{Batcher, Generated, Job, Prompt};
use rco_lm::engine::Quantize;
use rco_lm::sampling::SamplingConfig;
use rco_lm::scheduler::Limits;
use rco_lm::LmError;

use crate::common::smollm2_gguf;

fn greedy(max_tokens: usize) -> SamplingConfig {
    SamplingConfig {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        max_tokens,
    }
}

/// Submits a raw-prompt job; its result arrives on the returned channel.
fn submit(
    batcher: &Batcher,
    prompt: &str,
    max_tokens: usize,
    cancel: Arc<AtomicBool>,
) -> mpsc::Receiver<Result<Generated, LmError>> {
    let (tx, rx) = mpsc::channel();
    batcher
        .submit(Job {
            prompt: Prompt::Raw(prompt.into()),
            sampling: greedy(max_tokens),
            seed: 0,
            stop: Vec::new(),
            logprobs: None,
            on_text: None,
            done: Box::new(move |r| {
                let _ = tx.send(r);
            }),
            cancel,
        })
        .unwrap();
    rx
}

fn wait(rx: &mpsc::Receiver<Result<Generated, LmError>>) -> Result<Generated, LmError> {
    rx.recv_timeout(Duration::from_secs(300))
        .expect("an answer")
}

#[test]
fn rows_joining_at_any_step_write_what_they_write_alone() {
    let batcher = Batcher::start(
        &smollm2_gguf(),
        "cpu",
        Limits {
            batch_size: 8,
            max_prompt_tokens: 400,
            prefill_chunk: 24,
            kv_tokens: 65_536,
        },
        Quantize::default(),
    )
    .unwrap();
    let long = format!(
        "{} The lesson of the story is",
        "A fox and a crow met by a river and talked about the weather. ".repeat(4)
    );
    let prompts = [
        "The capital of France is".to_string(),
        "1, 2, 3, 4, 5,".to_string(),
        long,
        "Water boils at a temperature of".to_string(),
    ];
    let never = || Arc::new(AtomicBool::new(false));
    let alone: Vec<Generated> = prompts
        .iter()
        .map(|p| wait(&submit(&batcher, p, 12, never())).unwrap())
        .collect();
    assert!(
        alone[2].prompt_tokens > 48,
        "the long prompt fits one chunk"
    );
    // Together: each one sent a little after the one before, so they join a running batch
    // at different steps (the long one is read in chunks while the others decode).
    let answers: Vec<_> = prompts
        .iter()
        .map(|p| {
            let rx = submit(&batcher, p, 12, never());
            std::thread::sleep(Duration::from_millis(150));
            rx
        })
        .collect();
    for ((rx, solo), prompt) in answers.iter().zip(&alone).zip(&prompts) {
        let together = wait(rx).unwrap();
        assert_eq!(together.text, solo.text, "prompt {prompt:?}");
        assert_eq!(together.completion_tokens, solo.completion_tokens);
    }
    let stats = &batcher.stats;
    assert!(
        stats.max_rows.load(Ordering::Relaxed) >= 2,
        "no two rows ever decoded together"
    );

    // Cancelled before it could finish 200 tokens: ends with `Cancelled`.
    let cancel = never();
    let rx = submit(&batcher, "1, 2, 3,", 200, cancel.clone());
    std::thread::sleep(Duration::from_millis(300));
    cancel.store(true, Ordering::Relaxed);
    assert!(matches!(wait(&rx), Err(LmError::Cancelled)));
    assert_eq!(stats.cancelled.load(Ordering::Relaxed), 1);

    // Over the prompt limit: refused, naming it.
    let rx = submit(&batcher, &"word ".repeat(500), 4, never());
    match wait(&rx) {
        Err(LmError::Request(message)) => assert!(message.contains("at most 400"), "{message}"),
        other => panic!("{other:?}"),
    }
}
