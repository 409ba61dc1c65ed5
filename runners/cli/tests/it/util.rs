//! What the areas share: the `rco` command and the workspace it runs in, the SmolLM2 model
//! file, server processes, killing a process mid-run, and reading what a run wrote.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The workspace root: where the `rco` commands run, and where `configs/` and `scripts/` are.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `rco` binary of this build, run in the workspace root.
pub fn rco() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rco"));
    command.current_dir(workspace());
    command
}

/// `rco SUBCOMMAND CONFIG --out OUT`.
pub fn rco_into(subcommand: &str, config: &Path, out: &Path) -> Command {
    let mut command = rco();
    command.arg(subcommand).arg(config).arg("--out").arg(out);
    command
}

/// `rco judge-eval CONFIG PAIRS --out OUT`.
pub fn judge_eval(config: &Path, pairs: &Path, out: &Path) -> Command {
    let mut command = rco();
    command
        .arg("judge-eval")
        .arg(config)
        .arg(pairs)
        .arg("--out")
        .arg(out);
    command
}

/// `rco SUBCOMMAND CONFIG --out OUT` with `envs` set, off the async runtime.
pub async fn run(
    subcommand: &str,
    config: &Path,
    out: &Path,
    envs: Vec<(&'static str, String)>,
) -> Output {
    let mut command = rco_into(subcommand, config, out);
    command.envs(envs);
    tokio::task::spawn_blocking(move || command.output().expect("run rco"))
        .await
        .expect("join")
}

/// A command's standard output, then its standard error.
pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// SmolLM2-135M-Instruct's GGUF file, whose path is in `SMOLLM2_GGUF`.
pub fn gguf() -> PathBuf {
    PathBuf::from(std::env::var("SMOLLM2_GGUF").expect(
        "SMOLLM2_GGUF is not set: run the tests through scripts/test.sh, which fetches the model",
    ))
}

/// Writes `content` to `dir/name` and returns that path.
pub fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write");
    path
}

/// A JSON file.
pub fn json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The records of a JSON Lines file; none when there is no file.
pub fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// How many lines a file has; 0 when there is no file.
pub fn line_count(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// Spawns `command` with its output discarded, waits until `ready` holds, then kills it
/// with SIGKILL. Fails if it exits first, or if `ready` does not hold within `within`.
pub fn kill_when(command: &mut Command, ready: impl Fn() -> bool, what: &str, within: Duration) {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn rco");
    let start = Instant::now();
    while !ready() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("rco exited ({status}) before {what}");
        }
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("kill -9");
    child.wait().expect("reap");
}

/// A server process (`rco serve`, llama.cpp), killed when dropped. Its standard error goes
/// to a log file, whose end is shown when it fails to start or the test fails.
pub struct Server {
    child: Child,
    /// The base URL from its `listening on URL` line.
    pub url: String,
    what: String,
    log: tempfile::NamedTempFile,
}

impl Server {
    /// Starts `command` in the workspace and waits up to 180 s for the first line of its
    /// standard output, which must be `listening on URL`.
    pub fn start(mut command: Command, what: &str) -> Server {
        let log = tempfile::NamedTempFile::new().expect("log file");
        let mut child = command
            .current_dir(workspace())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log.reopen().expect("log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        // Read to the end, so that the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut server = Server {
            child,
            url: String::new(),
            what: what.to_string(),
            log,
        };
        let line = match rx.recv_timeout(Duration::from_secs(180)) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!(
                "{what} did not start listening within 180 s; its log ends:\n{}",
                server.log_tail()
            ),
            Err(RecvTimeoutError::Disconnected) => panic!(
                "{what} closed its standard output before listening; its log ends:\n{}",
                server.log_tail()
            ),
        };
        server.url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "unexpected first line {line:?} from {what}; its log ends:\n{}",
                    server.log_tail()
                )
            })
            .to_string();
        server
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The peak resident memory of the server process so far, in bytes (Linux).
    pub fn peak_rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        let tail: Vec<char> = text.chars().rev().take(3000).collect();
        tail.into_iter().rev().collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failure after it started: show what the server said.
        if std::thread::panicking() && !self.url.is_empty() {
            eprintln!("{}'s log ends:\n{}", self.what, self.log_tail());
        }
    }
}
