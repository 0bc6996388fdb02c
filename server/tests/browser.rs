//! The role page in a real headless Chromium (Debian's, installed by .ci/run) at a phone viewport,
//! 375x812, against the real server on 127.0.0.1. The screenshot is kept under target/tmp/screenshots.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn chromium(args: &[&str], profile: &Path) -> std::process::Output {
    let binary = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("Chromium is installed (.ci/run installs Debian's chromium)");
    Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=375,812",
            &format!("--user-data-dir={}", profile.display()),
            &format!("--user-agent={IPHONE}"),
        ])
        .args(args)
        .output()
        .expect("chromium runs")
}

fn screenshots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_operator_page_renders_at_phone_size_in_chromium() {
    let app = spawn_app();
    let url = app.url(&format!("/c/{PUMP_CODE}"));
    let profile = tempfile::tempdir().unwrap();

    let dom = chromium(&["--dump-dom", &url], profile.path());
    let html = String::from_utf8_lossy(&dom.stdout);
    assert!(
        html.contains("VP-300 infusion pump, ICU bed 7"),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    assert!(html.contains("Operator quick start"));

    let shot = screenshots_dir().join("pump-operator-375x812.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium(
        &[&format!("--screenshot={}", shot.display()), &url],
        profile.path(),
    );
    assert!(
        shot.is_file(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let (width, height) = (reader.info().width, reader.info().height);
    assert_eq!((width, height), (375, 812), "phone viewport");
    let mut buf = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut buf).unwrap();
    let bytes = &buf[..frame.buffer_size()];
    let channels = frame.color_type.samples();
    let dark = bytes
        .chunks_exact(channels)
        .filter(|px| px[..3.min(channels)].iter().all(|&v| v < 80))
        .count();
    // Text and the dark header bar: a blank or unstyled page would have almost none.
    assert!(
        dark > 2_000,
        "only {dark} dark pixels: the page did not render"
    );

    // The scan by the browser was counted like any other, as an iPhone.
    app.flush_events();
    let devices = app.rows("SELECT DISTINCT device FROM scan_events");
    assert_eq!(devices, vec![vec!["ios"]]);
}
