//! One judge process: started on first use, fed a batch of request lines, its answers
//! matched by `id`. A process that exits or stops answering for `timeout` is killed and
//! started again, and the requests it had not answered are sent to the new one one at a
//! time; a request that two processes in a row did not answer is given up as unanswered
//! (the rest of the run goes on). Its stderr goes to the log, line by line.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::protocol::{Answer, Request};

/// How to start a judge process.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The section's name, for messages.
    pub name: String,
    /// The program and its arguments.
    pub command: Vec<String>,
    /// The directory it runs in (the config file's).
    pub dir: PathBuf,
    /// How long to wait for the next answer.
    pub timeout: Duration,
    /// How many times a worker's process may be started again over the run.
    pub max_restarts: usize,
}

/// A running process.
struct Running {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

/// One worker: at most one process at a time.
pub struct Worker {
    spec: Spec,
    index: usize,
    running: Option<Running>,
    starts: usize,
}

/// Why a whole call failed: the judge cannot be run at all.
pub type Fatal = String;

impl Worker {
    pub fn new(spec: Spec, index: usize) -> Self {
        Self {
            spec,
            index,
            running: None,
            starts: 0,
        }
    }

    /// The process, started if there is none.
    fn process(&mut self) -> Result<&mut Running, Fatal> {
        if self.running.is_none() {
            if self.starts > self.spec.max_restarts {
                return Err(format!(
                    "judge `{}`: worker {} was started {} times and keeps failing (max_restarts = {})",
                    self.spec.name, self.index, self.starts, self.spec.max_restarts
                ));
            }
            let (program, args) = self
                .spec
                .command
                .split_first()
                .ok_or_else(|| format!("judge `{}`: `command` is empty", self.spec.name))?;
            let mut child = Command::new(program)
                .args(args)
                .current_dir(&self.spec.dir)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| {
                    format!(
                        "judge `{}`: cannot start {:?} in {}: {e}",
                        self.spec.name,
                        self.spec.command,
                        self.spec.dir.display()
                    )
                })?;
            self.starts += 1;
            let pid = child.id().unwrap_or_default();
            if let Some(stderr) = child.stderr.take() {
                let name = self.spec.name.clone();
                tokio::spawn(async move {
                    let mut lines = BufReader::new(stderr).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        tracing::info!("judge `{name}` (pid {pid}): {line}");
                    }
                });
            }
            let stdin = child.stdin.take().ok_or("no stdin")?;
            let stdout = child.stdout.take().ok_or("no stdout")?;
            self.running = Some(Running {
                child,
                stdin,
                lines: BufReader::new(stdout).lines(),
            });
        }
        Ok(self.running.as_mut().expect("started above"))
    }

    /// Kills the process (if any) and says how it ended.
    async fn stop(&mut self) -> String {
        match self.running.take() {
            Some(mut running) => {
                let _ = running.child.start_kill();
                match running.child.wait().await {
                    Ok(status) => format!("{status}"),
                    Err(e) => e.to_string(),
                }
            }
            None => "not running".into(),
        }
    }

    /// One answer per request, in request order; `Err` for a request no process answered.
    pub async fn ask(
        &mut self,
        requests: &[Request],
    ) -> Result<Vec<Result<Answer, String>>, Fatal> {
        let mut out: Vec<Option<Result<Answer, String>>> = vec![None; requests.len()];
        let index: HashMap<&str, usize> = requests
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id(), i))
            .collect();
        // How many processes each unanswered request has been sent to.
        let mut tries = vec![0usize; requests.len()];
        // After a process fails, the requests it left are sent one at a time, so that only
        // the one that makes it fail is lost.
        let mut isolate = false;
        loop {
            let mut pending: Vec<usize> =
                (0..requests.len()).filter(|&i| out[i].is_none()).collect();
            if pending.is_empty() {
                break;
            }
            if isolate {
                pending.truncate(1);
            }
            let timeout = self.spec.timeout;
            let name = self.spec.name.clone();
            let running = self.process()?;
            for &i in &pending {
                tries[i] += 1;
            }
            let mut text = String::new();
            for &i in &pending {
                text.push_str(&serde_json::to_string(&requests[i]).map_err(|e| e.to_string())?);
                text.push('\n');
            }
            let mut failure = None;
            if let Err(e) = running.stdin.write_all(text.as_bytes()).await {
                failure = Some(format!("writing to it failed ({e})"));
            } else if let Err(e) = running.stdin.flush().await {
                failure = Some(format!("writing to it failed ({e})"));
            }
            let mut left = pending.len();
            while failure.is_none() && left > 0 {
                match tokio::time::timeout(timeout, running.lines.next_line()).await {
                    Ok(Ok(Some(line))) => match serde_json::from_str::<Answer>(&line) {
                        Ok(answer) => match index.get(answer.id.as_str()) {
                            Some(&i) if out[i].is_none() => {
                                out[i] = Some(Ok(answer));
                                left -= 1;
                            }
                            _ => tracing::warn!(
                                "judge `{name}`: an answer for an id it was not asked about: {line}"
                            ),
                        },
                        Err(_) => tracing::warn!(
                            "judge `{name}`: a line on stdout that is not an answer: {}",
                            line.chars().take(200).collect::<String>()
                        ),
                    },
                    Ok(Ok(None)) => failure = Some("it exited".to_string()),
                    Ok(Err(e)) => failure = Some(format!("reading from it failed ({e})")),
                    Err(_) => {
                        failure = Some(format!(
                            "it gave no answer for {:.1} s (timeout_seconds)",
                            timeout.as_secs_f64()
                        ))
                    }
                }
            }
            if let Some(why) = failure {
                let status = self.stop().await;
                tracing::warn!(
                    "judge `{name}`: worker {}: {why} (status: {status}); starting it again",
                    self.index
                );
                isolate = true;
                for &i in &pending {
                    if out[i].is_none() && tries[i] >= 2 {
                        out[i] = Some(Err(format!(
                            "the judge process did not answer this request twice: {why}"
                        )));
                    }
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|a| a.expect("every request has an outcome"))
            .collect())
    }
}
