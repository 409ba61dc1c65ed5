//! The code sandbox against programs that misbehave: each fails its tests and leaves the
//! machine as it was (no process, no file, no connection).

use std::time::{Duration, Instant};

use rco_core::{Comparison, Judge, PointwiseRequest, PointwiseScore, Verdict};
use rco_plugin_verify::code::{CodeJudge, CodeJudgeConfig};
use rco_plugin_verify::sandbox::{run, Limits, Outcome, Program};

const SETUP: &str = "def add(a: int, b: int) -> int:\n    \"\"\"Add two numbers.\"\"\"\n";
const TESTS: &str = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-1, 1) == 0\n    assert candidate(2, 2) == 4\n";

fn limits() -> Limits {
    Limits {
        wall: Duration::from_secs(4),
        cpu_seconds: 2,
        memory_bytes: 512 << 20,
        output_bytes: 16 << 10,
    }
}

async fn outcome(body: &str) -> Outcome {
    let program = Program {
        program: format!("def add(a, b):\n{body}\n"),
        setup: SETUP.into(),
        tests: TESTS.into(),
        entry_point: Some("add".into()),
    };
    run("python3", &program, limits())
        .await
        .expect("the sandbox runs")
}

/// Every process whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(marker) && !text.contains("cargo") {
                found.push(text);
            }
        }
    }
    found
}

#[tokio::test]
async fn a_correct_program_passes_and_a_wrong_one_passes_some() {
    let good = outcome("    return a + b").await;
    assert_eq!((good.passed, good.total), (3, 3), "{good:?}");
    assert!(good.solved());
    assert!(good.network.starts_with("isolated"), "{}", good.network);
    let wrong = outcome("    return a + b if a > 0 else 7").await;
    assert_eq!((wrong.passed, wrong.total), (2, 3), "{wrong:?}");
    assert!(wrong
        .error
        .as_deref()
        .unwrap_or_default()
        .contains("AssertionError"));
    let broken = outcome("    return (").await;
    assert_eq!(broken.passed, 0, "{broken:?}");
    assert!(broken.error.unwrap().contains("did not run"));
}

#[tokio::test]
async fn a_looping_program_is_stopped() {
    let started = Instant::now();
    let spinning = outcome("    while True:\n        pass").await;
    assert_eq!(spinning.passed, 0, "{spinning:?}");
    let sleeping = outcome("    import time\n    time.sleep(600)").await;
    assert_eq!(sleeping.passed, 0, "{sleeping:?}");
    assert!(sleeping.timed_out, "{sleeping:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_forking_program_starts_nothing() {
    let marker = format!("rco-fork-marker-{}", std::process::id());
    let forks = [
        "    import os\n    if os.fork() == 0:\n        import time\n        time.sleep(600)\n    return a + b".to_string(),
        format!("    import subprocess\n    subprocess.Popen(['sleep', '600', '{marker}'])\n    return a + b"),
        format!("    import os\n    os.system('sleep 600 # {marker}')\n    return a + b"),
    ];
    for body in forks {
        let result = outcome(&body).await;
        assert_eq!(result.passed, 0, "{body}: {result:?}");
        assert!(
            result
                .error
                .as_deref()
                .unwrap_or_default()
                .contains("refuses"),
            "{result:?}"
        );
    }
    assert!(
        processes_with(&marker).is_empty(),
        "{:?}",
        processes_with(&marker)
    );
}

#[tokio::test]
async fn a_memory_hungry_program_fails() {
    let result = outcome("    x = bytearray(8 << 30)\n    return a + b").await;
    assert_eq!(result.passed, 0, "{result:?}");
    assert!(result.error.unwrap().contains("MemoryError"));
    let growing = outcome("    x = []\n    while True:\n        x.append(' ' * (1 << 20))").await;
    assert_eq!(growing.passed, 0, "{growing:?}");
}

#[tokio::test]
async fn a_program_cannot_reach_the_network() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = format!(
        "    import socket\n    socket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'hi')\n    return a + b"
    );
    let result = outcome(&body).await;
    assert_eq!(result.passed, 0, "{result:?}");
    let accepted = listener.accept();
    assert!(accepted.is_err(), "the program connected: {accepted:?}");
}

#[tokio::test]
async fn a_program_cannot_write_outside_its_directory() {
    let outside = tempfile::tempdir().unwrap();
    // Writable by anyone, so that only the sandbox stands in the way.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(outside.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let target = outside.path().join("escaped.txt");
    let writes = [
        format!(
            "    open({:?}, 'w').write('x')\n    return a + b",
            target.display().to_string()
        ),
        format!(
            "    import os\n    fd = os.open({:?}, os.O_WRONLY | os.O_CREAT)\n    return a + b",
            target.display().to_string()
        ),
        "    open('../escaped.txt', 'w').write('x')\n    return a + b".to_string(),
    ];
    for body in writes {
        let result = outcome(&body).await;
        assert_eq!(result.passed, 0, "{body}: {result:?}");
    }
    assert!(!target.exists());
    // Inside its own directory a program may write.
    let local = outcome("    open('scratch.txt', 'w').write('x')\n    return a + b").await;
    assert!(local.solved(), "{local:?}");
}

#[tokio::test]
async fn a_program_that_prints_megabytes_fails_and_its_output_is_cut() {
    let result = outcome("    print('x' * 10_000_000)\n    return a + b").await;
    assert_eq!(result.passed, 0, "{result:?}");
    assert!(result.output.len() <= 4096, "{}", result.output.len());
    let loud =
        outcome("    import sys\n    while True:\n        sys.stdout.write('y' * 65536)").await;
    assert_eq!(loud.passed, 0, "{loud:?}");
}

#[tokio::test]
async fn sandbox_directories_are_removed() {
    for body in [
        "    import os\n    print(os.getcwd())\n    open('left.txt', 'w').write('x')\n    return a + b",
        "    import os, time\n    print(os.getcwd(), flush=True)\n    time.sleep(600)",
    ] {
        let result = outcome(body).await;
        let dir = result.output.trim();
        assert!(dir.contains("rco-sandbox-"), "{result:?}");
        assert!(!std::path::Path::new(dir).exists(), "{dir} is still there");
    }
}

#[tokio::test]
async fn the_code_judge_prefers_the_program_that_passes_more_tests() {
    let judge = CodeJudge::new(CodeJudgeConfig {
        timeout_seconds: 4.0,
        cpu_seconds: 2,
        ..CodeJudgeConfig::default()
    });
    let answer =
        |body: &str| format!("Here is my solution:\n```python\ndef add(a, b):\n{body}\n```\n");
    let (right, half, none) = (
        answer("    return a + b"),
        answer("    return a + b if a > 0 else 7"),
        answer("    while True: pass"),
    );
    let pair = |a: &str, b: &str| Comparison {
        task: "code".into(),
        prompt: SETUP.into(),
        a: a.into(),
        b: b.into(),
        tests: Some(TESTS.into()),
        entry_point: Some("add".into()),
        ..Comparison::default()
    };
    let judged = judge
        .compare(&[
            pair(&right, &half),
            pair(&half, &right),
            pair(&none, &half),
            pair(&right, &right),
            Comparison {
                tests: None,
                ..pair(&right, &half)
            },
        ])
        .await
        .unwrap();
    let verdicts: Vec<&Verdict> = judged.iter().map(|j| &j.verdict).collect();
    assert_eq!(
        &verdicts[..4],
        &[&Verdict::A, &Verdict::B, &Verdict::B, &Verdict::Tie]
    );
    assert!(!verdicts[4].is_valid());
    let scores = judge
        .score(&[
            PointwiseRequest {
                task: "code".into(),
                prompt: SETUP.into(),
                response: half.clone(),
                tests: Some(TESTS.into()),
                entry_point: Some("add".into()),
                ..PointwiseRequest::default()
            },
            PointwiseRequest {
                task: "code".into(),
                prompt: SETUP.into(),
                response: right.clone(),
                tests: Some(TESTS.into()),
                entry_point: Some("add".into()),
                ..PointwiseRequest::default()
            },
        ])
        .await
        .unwrap();
    assert_eq!(
        scores,
        vec![PointwiseScore::Score(7.0), PointwiseScore::Score(10.0)]
    );
    let strict = CodeJudge::new(CodeJudgeConfig {
        partial_credit: false,
        ..CodeJudgeConfig::default()
    });
    let judged = strict.compare(&[pair(&half, &none)]).await.unwrap();
    assert_eq!(judged[0].verdict, Verdict::Tie);
}
