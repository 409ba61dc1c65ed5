//! Progress of long stages on stderr: bars (indicatif) on a terminal, and one plain line
//! every few seconds when stderr is not a terminal (a batch scheduler's log file, `nohup`,
//! CI), so that a long run always shows that it moves and how far it has come. A stage whose
//! steps are long (a batch of real-model generations takes minutes) still prints its line at
//! least once a minute, with the time elapsed, while no step finishes.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rco_core::{Progress, ProgressFactory};

/// The variable that sets the seconds between progress lines off a terminal (default 5).
pub const PROGRESS_EVERY_VAR: &str = "RCO_PROGRESS_EVERY";

/// The longest a stage stays silent off a terminal while none of its steps finishes.
const HEARTBEAT: Duration = Duration::from_secs(60);

/// Bars on a terminal, lines elsewhere.
pub struct Bars;

impl ProgressFactory for Bars {
    fn start(&self, label: &str, len: u64) -> Arc<dyn Progress> {
        if std::io::stderr().is_terminal() {
            Arc::new(Bar::new(label, len))
        } else {
            let every = std::env::var(PROGRESS_EVERY_VAR)
                .ok()
                .and_then(|s| s.parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .unwrap_or(5.0);
            let lines = Arc::new(Lines::new(label, len, Duration::from_secs_f64(every)));
            Lines::keep_alive(&lines, HEARTBEAT.max(Duration::from_secs_f64(every)));
            lines
        }
    }
}

struct Bar(ProgressBar);

impl Bar {
    fn new(label: &str, len: u64) -> Self {
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix:>12} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta} {msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label.to_string());
        Bar(bar)
    }
}

impl Progress for Bar {
    fn set_length(&self, len: u64) {
        self.0.set_length(len);
    }
    fn inc(&self, delta: u64) {
        self.0.inc(delta);
    }
    fn resume(&self, done: u64) {
        self.0.inc(done);
        self.0.reset_eta();
    }
    fn set_message(&self, message: &str) {
        self.0.set_message(message.to_string());
    }
    fn finish(&self) {
        self.0.finish();
    }
}

/// Plain progress lines: `collect: 12/256 (4.7%) 31s elapsed, eta 10m 2s, loss 0.41`.
pub struct Lines {
    label: String,
    len: AtomicU64,
    pos: AtomicU64,
    /// Steps found done when the work resumed: in the position, not in the pace.
    resumed: AtomicU64,
    started: Instant,
    every: Duration,
    state: Mutex<LineState>,
}

struct LineState {
    last: Instant,
    message: String,
    finished: bool,
}

impl Lines {
    pub fn new(label: &str, len: u64, every: Duration) -> Self {
        let now = Instant::now();
        Self {
            label: label.to_string(),
            len: AtomicU64::new(len),
            pos: AtomicU64::new(0),
            resumed: AtomicU64::new(0),
            started: now,
            every,
            state: Mutex::new(LineState {
                last: now,
                message: String::new(),
                finished: false,
            }),
        }
    }

    /// The line for the current position.
    pub fn line(&self) -> String {
        let pos = self.pos.load(Ordering::Relaxed);
        let len = self.len.load(Ordering::Relaxed);
        let elapsed = self.started.elapsed();
        let mut line = format!("{}: {pos}", self.label);
        if len > 0 {
            line.push_str(&format!("/{len} ({:.1}%)", 100.0 * pos as f64 / len as f64));
        }
        line.push_str(&format!(" {} elapsed", duration(elapsed)));
        if let Some(eta) = eta(elapsed, len, pos, self.resumed.load(Ordering::Relaxed)) {
            line.push_str(&format!(", eta {}", duration(eta)));
        }
        if let Ok(state) = self.state.lock() {
            if !state.message.is_empty() {
                line.push_str(&format!(", {}", state.message));
            }
        }
        line
    }

    fn maybe_print(&self, force: bool) {
        if let Some(line) = self.due_line(force, self.every) {
            eprintln!("{line}");
        }
    }

    /// The line to print now, if one is due: `force`d, or `quiet` since the last one. A
    /// finished stage prints nothing more.
    fn due_line(&self, force: bool, quiet: Duration) -> Option<String> {
        let mut state = self.state.lock().ok()?;
        if state.finished || (!force && state.last.elapsed() < quiet) {
            return None;
        }
        state.last = Instant::now();
        drop(state);
        Some(self.line())
    }

    fn is_finished(&self) -> bool {
        self.state.lock().map(|s| s.finished).unwrap_or(true)
    }

    /// Prints the line whenever `quiet` passes without one, until the stage finishes or is
    /// dropped (a background thread that holds the lines weakly).
    fn keep_alive(lines: &Arc<Self>, quiet: Duration) {
        let weak = Arc::downgrade(lines);
        let tick = quiet
            .min(Duration::from_secs(5))
            .max(Duration::from_millis(10));
        // Without a thread the lines still come as steps finish.
        let _ = std::thread::Builder::new()
            .name("rco-progress".into())
            .spawn(move || loop {
                std::thread::sleep(tick);
                let Some(lines) = weak.upgrade() else { break };
                if lines.is_finished() {
                    break;
                }
                if let Some(line) = lines.due_line(false, quiet) {
                    eprintln!("{line}");
                }
            });
    }
}

impl Progress for Lines {
    fn set_length(&self, len: u64) {
        self.len.store(len, Ordering::Relaxed);
    }
    fn inc(&self, delta: u64) {
        self.pos.fetch_add(delta, Ordering::Relaxed);
        self.maybe_print(false);
    }
    fn resume(&self, done: u64) {
        self.resumed.fetch_add(done, Ordering::Relaxed);
        self.pos.fetch_add(done, Ordering::Relaxed);
    }
    fn set_message(&self, message: &str) {
        if let Ok(mut state) = self.state.lock() {
            state.message = message.to_string();
        }
    }
    fn finish(&self) {
        self.maybe_print(true);
        if let Ok(mut state) = self.state.lock() {
            state.finished = true;
        }
    }
}

/// The time left at this process's own pace: `pos` of `len` steps done, `resumed` of them
/// found done in the records (they took no time here). `None` before a step of its own.
fn eta(elapsed: Duration, len: u64, pos: u64, resumed: u64) -> Option<Duration> {
    let done_here = pos.saturating_sub(resumed);
    (len > 0 && done_here > 0 && pos < len)
        .then(|| elapsed.mul_f64((len - pos) as f64 / done_here as f64))
}

fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_position_share_and_eta() {
        let lines = Lines::new("collect", 8, Duration::from_secs(3600));
        lines.inc(2);
        lines.set_message("loss 0.5");
        let line = lines.line();
        assert!(line.starts_with("collect: 2/8 (25.0%) "), "{line}");
        assert!(line.contains("eta "), "{line}");
        assert!(line.ends_with(", loss 0.5"), "{line}");
        lines.set_length(0);
        assert!(lines.line().starts_with("collect: 2 "));
        assert_eq!(duration(Duration::from_secs(3725)), "1h 2m");
        assert_eq!(duration(Duration::from_secs(125)), "2m 5s");
    }

    #[test]
    fn the_eta_of_resumed_work_counts_only_the_steps_done_here() {
        let minute = Duration::from_secs(60);
        // 4 of 12 items resumed from the records, 4 more done in a minute: 4 left, a minute.
        assert_eq!(eta(minute, 12, 8, 4), Some(minute));
        // Nothing done here yet: no pace to go by.
        assert_eq!(eta(minute, 12, 4, 4), None);
        assert_eq!(eta(minute, 12, 0, 0), None);
        assert_eq!(eta(minute, 12, 12, 4), None);
        let lines = Lines::new("collect", 12, Duration::from_secs(3600));
        lines.resume(4);
        let line = lines.line();
        assert!(line.starts_with("collect: 4/12 (33.3%) "), "{line}");
        assert!(!line.contains("eta"), "{line}");
    }

    #[test]
    fn a_silent_stage_is_due_a_line_after_the_quiet_time_and_a_finished_one_never() {
        let lines = Lines::new("collect", 21, Duration::from_secs(3600));
        let quiet = Duration::from_millis(30);
        // Nothing moved yet and the quiet time has not passed: no line.
        assert_eq!(lines.due_line(false, quiet), None);
        std::thread::sleep(quiet * 2);
        let line = lines
            .due_line(false, quiet)
            .expect("a line once the stage was quiet");
        assert!(line.starts_with("collect: 0/21 (0.0%) "), "{line}");
        // Printing a line restarts the quiet time.
        assert_eq!(lines.due_line(false, quiet), None);
        std::thread::sleep(quiet * 2);
        lines.finish();
        assert!(lines.is_finished());
        assert_eq!(lines.due_line(false, quiet), None);
        assert_eq!(lines.due_line(true, quiet), None);
    }

    #[test]
    fn the_heartbeat_thread_ends_with_its_stage() {
        let lines = Arc::new(Lines::new("eval", 4, Duration::from_secs(3600)));
        Lines::keep_alive(&lines, Duration::from_millis(20));
        let weak = Arc::downgrade(&lines);
        std::thread::sleep(Duration::from_millis(60));
        // The thread holds the lines only while it prints: the stage owns them.
        drop(lines);
        std::thread::sleep(Duration::from_millis(60));
        assert!(weak.upgrade().is_none());
    }
}
