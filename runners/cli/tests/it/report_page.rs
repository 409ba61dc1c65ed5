//! `report.html` in a real browser: headless Chromium (Debian's `chromium`, which
//! `scripts/test.sh` installs when it is missing; `RCO_CHROMIUM` names another binary) renders
//! the page to a screenshot, which must not be blank, and logs the page's console, which must
//! hold no error.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The browser binary.
fn chromium() -> PathBuf {
    std::env::var_os("RCO_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("chromium"))
}

/// What a headless render of `page` gives: the screenshot's RGBA pixels and the console
/// lines the browser logged.
fn render(page: &Path) -> (Vec<[u8; 4]>, Vec<String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let shot = dir.path().join("shot.png");
    let output = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1200,1600",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", dir.path().join("profile").display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (install Debian's chromium, or set RCO_CHROMIUM; scripts/test.sh installs it)",
                chromium().display()
            )
        });
    assert!(
        shot.is_file(),
        "chromium wrote no screenshot: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let console = String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught") || l.contains("net::ERR_"))
        .map(str::to_string)
        .collect();
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&shot).expect("screenshot"),
    ));
    let mut reader = decoder.read_info().expect("PNG header");
    let mut buffer = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buffer).expect("PNG frame");
    let channels = info.color_type.samples();
    let pixels = buffer[..info.buffer_size()]
        .chunks_exact(channels)
        .map(|p| match channels {
            4 => [p[0], p[1], p[2], p[3]],
            3 => [p[0], p[1], p[2], 255],
            _ => [p[0], p[0], p[0], 255],
        })
        .collect();
    (pixels, console)
}

/// Asserts a run's `report.html` renders: not blank (more than 2% of the screenshot is not
/// background, in more than 8 colours: text, tables and the charts' bars) and no console
/// error.
pub fn assert_report_renders(run_dir: &Path) {
    let page = run_dir.join("report.html");
    let html = std::fs::read_to_string(&page).expect("report.html");
    // Self-contained: nothing is fetched (SVG's `xmlns` names a namespace, no address to
    // load).
    for outside in [
        "src=\"http",
        "href=\"http",
        "url(http",
        "@import",
        "<script",
        "<link",
        "<iframe",
    ] {
        assert!(!html.contains(outside), "report.html contains {outside:?}");
    }
    assert!(
        html.matches("<svg").count() >= 2,
        "report.html has no charts"
    );
    let (pixels, console) = render(&page);
    assert!(console.is_empty(), "console: {console:#?}");
    let background = pixels[0];
    let drawn = pixels.iter().filter(|p| **p != background).count();
    let colours: std::collections::HashSet<[u8; 4]> = pixels.iter().copied().collect();
    assert!(
        drawn * 50 > pixels.len() && colours.len() > 8,
        "the screenshot is blank: {drawn} of {} pixels drawn, {} colours",
        pixels.len(),
        colours.len()
    );
}

/// The check itself sees what it must: a page that logs a console error, and a blank page.
#[test]
fn the_browser_check_catches_console_errors_and_blank_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let noisy = dir.path().join("noisy.html");
    std::fs::write(
        &noisy,
        "<html><body><h1>page</h1><script>console.error('broken chart');</script></body></html>",
    )
    .unwrap();
    let (_, console) = render(&noisy);
    assert!(
        console.iter().any(|l| l.contains("broken chart")),
        "{console:#?}"
    );
    let blank = dir.path().join("blank.html");
    std::fs::write(&blank, "<html><body></body></html>").unwrap();
    let (pixels, console) = render(&blank);
    assert!(console.is_empty(), "{console:#?}");
    assert!(
        pixels.iter().all(|p| *p == pixels[0]),
        "a blank page has drawn pixels"
    );
}
