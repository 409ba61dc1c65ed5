//! Continuous service of one local model: requests from many threads queue up for a worker
//! thread that owns the [`Engine`] and batches them continuously ([`crate::scheduler`]):
//! each decoding step is one forward pass over every running request, and requests join
//! and leave between steps. `rco serve` puts HTTP in front of it.

use std::path::Path;
use std::sync::{mpsc, Arc};

use crate::device::DeviceSpec;
use crate::engine::{Engine, Quantize, Settings};
pub use crate::job::{BatchStats, Generated, Job, Prompt, TokenLogProb};
use crate::model::CausalLm;
use crate::scheduler::Limits;
use crate::LmError;

/// What the worker says about its model once it is loaded.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub context: usize,
    pub architecture: &'static str,
}

/// The queue in front of the worker thread.
pub struct Batcher {
    jobs: mpsc::Sender<Job>,
    pub info: ModelInfo,
    pub stats: Arc<BatchStats>,
}

impl Batcher {
    /// Loads the model at `path` on `device` in a new worker thread that schedules within
    /// `limits`, its weights held as `quantize` says.
    pub fn start(
        path: &Path,
        device: &str,
        limits: Limits,
        quantize: Quantize,
    ) -> Result<Batcher, LmError> {
        let spec = DeviceSpec::parse(device)?.compiled()?;
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, loaded) = mpsc::channel::<Result<ModelInfo, LmError>>();
        let path = path.to_path_buf();
        let limits = Limits {
            batch_size: limits.batch_size.max(1),
            ..limits
        };
        let stats = Arc::new(BatchStats::default());
        let counters = stats.clone();
        std::thread::Builder::new()
            .name("rco-model".into())
            .spawn(move || {
                let outcome: Result<(), LmError> = crate::with_backend!(spec, |B, device| {
                    let settings = Settings {
                        batch_size: limits.batch_size,
                        quantize,
                        ..Settings::default()
                    };
                    match Engine::<B>::open(&path, device, settings) {
                        Ok(engine) => {
                            let info = engine.model().map(|model| ModelInfo {
                                context: model.max_len(),
                                architecture: model.architecture(),
                            });
                            let loaded = info.is_ok();
                            let _ = ready.send(info);
                            if loaded {
                                crate::scheduler::run::<B>(&engine, &queue, &counters, &limits);
                            }
                            Ok(())
                        }
                        Err(e) => {
                            let _ = ready.send(Err(e));
                            Ok(())
                        }
                    }
                });
                if let Err(e) = outcome {
                    let _ = ready.send(Err(e));
                }
            })
            .map_err(|e| LmError::Device(format!("starting the model thread: {e}")))?;
        let info = loaded
            .recv()
            .map_err(|_| LmError::Device("the model thread ended while loading".into()))??;
        Ok(Batcher { jobs, info, stats })
    }

    pub fn submit(&self, job: Job) -> Result<(), LmError> {
        self.jobs
            .send(job)
            .map_err(|_| LmError::Device("the model thread has stopped".into()))
    }
}
