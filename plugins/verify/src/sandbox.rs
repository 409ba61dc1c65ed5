//! The sandbox the code verifier runs programs in: a child `python3` (the harness in
//! `harness.py`) in its own empty temporary directory and its own process group, with
//! limits on CPU time, address space, output and processes, no network where the kernel
//! allows a new network namespace, and a wall-clock limit after which the whole process
//! group is killed. The directory is removed afterwards, so a run leaves nothing behind.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// The harness, run with `python3 -I -c`.
const HARNESS: &str = include_str!("harness.py");

/// The most bytes kept of the candidate's output and of the harness's own streams.
const KEEP_BYTES: usize = 4096;

/// The limits of one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Wall-clock time before the process group is killed.
    pub wall: Duration,
    /// CPU seconds (the kernel stops the process after them).
    pub cpu_seconds: u64,
    /// Address space, in bytes.
    pub memory_bytes: u64,
    /// The most the program may write (its output and its files), in bytes.
    pub output_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            wall: Duration::from_secs(10),
            cpu_seconds: 5,
            memory_bytes: 1 << 30,
            output_bytes: 64 << 10,
        }
    }
}

/// What to run: the candidate's program after the task's own code, then the tests.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Program {
    /// The candidate's code.
    pub program: String,
    /// The task's code (imports, helpers, the function's stub), run first.
    pub setup: String,
    /// The tests: HumanEval's `check(candidate)`, or top-level asserts.
    pub tests: String,
    /// The function the tests call.
    pub entry_point: Option<String>,
}

/// How a run went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Tests passed, of `total`.
    pub passed: usize,
    pub total: usize,
    /// The first failure, or why the program did not finish.
    pub error: Option<String>,
    /// Whether the network was isolated (`isolated ...` or `not isolated: why`).
    pub network: String,
    /// The start of what the program printed.
    #[serde(default)]
    pub output: String,
    /// The program ran past the wall-clock limit and was killed.
    #[serde(default)]
    pub timed_out: bool,
}

impl Outcome {
    /// The fraction of tests passed.
    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.passed as f64 / self.total as f64
        }
    }

    /// Every test passed.
    pub fn solved(&self) -> bool {
        self.total > 0 && self.passed == self.total
    }
}

/// What the harness writes.
#[derive(Deserialize)]
struct Reply {
    passed: usize,
    total: usize,
    error: Option<String>,
    network: String,
}

/// Runs a program in the sandbox. `Err` means the sandbox itself could not run (no
/// `python3`, no temporary directory); everything the program does is in the [`Outcome`].
pub async fn run(python: &str, program: &Program, limits: Limits) -> Result<Outcome, String> {
    let dir = tempfile::Builder::new()
        .prefix("rco-sandbox-")
        .tempdir()
        .map_err(|e| format!("cannot make a sandbox directory: {e}"))?;
    let request = serde_json::json!({
        "program": program.program,
        "setup": program.setup,
        "tests": program.tests,
        "entry_point": program.entry_point,
        "cpu_seconds": limits.cpu_seconds,
        "memory_bytes": limits.memory_bytes,
        "output_bytes": limits.output_bytes,
    });
    let mut child = Command::new(python)
        .args(["-I", "-c", HARNESS])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", dir.path())
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start `{python}` for the code sandbox: {e}"))?;
    let group = child.id().map(|pid| nix::unistd::Pid::from_raw(pid as i32));
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let body = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
    let feed = async move {
        // A harness that dies early closes its stdin: that is for the outcome to say.
        let _ = stdin.write_all(&body).await;
        drop(stdin);
    };
    let work = async {
        let ((), out, err, status) =
            tokio::join!(feed, capped(stdout), capped(stderr), child.wait());
        (out, err, status)
    };
    let finished = tokio::time::timeout(limits.wall, work).await;
    // Whatever happened, nothing of the group outlives the run.
    if let Some(group) = group {
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    }
    let _ = child.wait().await;
    let output = read_start(&dir.path().join("output.txt"));
    let (out, err, status) = match finished {
        Ok(done) => done,
        Err(_) => {
            return Ok(Outcome {
                passed: 0,
                total: 1,
                error: Some(format!(
                    "timed out after {:.1} s of wall-clock time (killed)",
                    limits.wall.as_secs_f64()
                )),
                network: String::new(),
                output,
                timed_out: true,
            })
        }
    };
    let status = status.map_err(|e| format!("waiting for the sandbox: {e}"))?;
    let reply = String::from_utf8_lossy(&out);
    match serde_json::from_str::<Reply>(reply.trim()) {
        Ok(reply) => Ok(Outcome {
            passed: reply.passed,
            total: reply.total,
            error: reply.error,
            network: reply.network,
            output,
            timed_out: false,
        }),
        Err(_) => {
            let stderr = String::from_utf8_lossy(&err);
            if stderr.contains("Traceback") && stderr.contains("harness") {
                return Err(format!("the sandbox harness failed: {stderr}"));
            }
            Ok(Outcome {
                passed: 0,
                total: 1,
                error: Some(format!(
                    "the program was stopped ({}){}",
                    describe(status),
                    if stderr.trim().is_empty() {
                        String::new()
                    } else {
                        format!(": {}", stderr.trim())
                    }
                )),
                network: String::new(),
                output,
                timed_out: false,
            })
        }
    }
}

/// The first [`KEEP_BYTES`] of a stream, reading (and dropping) the rest so that the writer
/// never blocks.
async fn capped(mut stream: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = KEEP_BYTES.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// The start of a file the program wrote, as text.
fn read_start(path: &Path) -> String {
    use std::io::Read;
    let mut kept = Vec::new();
    if let Ok(file) = std::fs::File::open(path) {
        let _ = file.take(KEEP_BYTES as u64).read_to_end(&mut kept);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => {
            let name = nix::sys::signal::Signal::try_from(signal)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|_| signal.to_string());
            let why = match signal {
                24 => " — the CPU-time limit",
                9 => " — killed",
                _ => "",
            };
            format!("signal {name}{why}")
        }
        _ => "unknown status".into(),
    }
}
