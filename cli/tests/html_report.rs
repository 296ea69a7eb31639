//! `dataout report --html` on the state of a real local run (the
//! simulators, the example spec, batch runs, delivery, three days of
//! reconciliation), rendered in headless Chromium: the screenshot must not
//! be blank.
//!
//! Chromium is the Debian package (`/usr/bin/chromium`, or
//! `DATAOUT_CHROMIUM`); `scripts/test` installs it where absent. Where it
//! cannot (no apt), the script sets `DATAOUT_SKIP_CHROMIUM=1` and the
//! browser half of this test is skipped with a loud message; without that
//! variable a missing browser fails the test.
//!
//! `DATAOUT_UPDATE_DOCS=1` also copies the screenshot to `docs/report.png`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use dataout::domain::spec::ExportSource;
use dataout::pipeline::reconcile::{reconcile, ReconcileOptions};
use dataout::pipeline::Deps;
use dataout::ports::{Clock, ManualClock, SystemClock};
use dataout_cli::demo::SimEnv;

const DAY_MS: i64 = 86_400_000;

fn example_spec() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/exports.example.yaml")
}

/// A real local run on `state_dir`: two batch passes with delivery, and a
/// reconciliation after each (dated two days and one day ago) plus one now.
async fn local_run(dir: &Path, people: usize) {
    let env = SimEnv::start(people, &dir.join("warehouse")).await.unwrap();
    let state_dir = dir.join("state");
    let rt = Arc::new(env.runtime(&state_dir, Arc::new(SystemClock)).unwrap());
    rt.start_workers().await.unwrap();
    let source = env.source().unwrap();
    let now = SystemClock.now_ms();
    for days_ago in [2, 1] {
        for (name, export) in &env.spec.exports {
            if matches!(export.source, ExportSource::Segment { .. }) {
                rt.run_batch(&source, name).await.unwrap();
            }
        }
        assert!(rt.wait_idle(Duration::from_secs(120)).await.unwrap());
        let deps = Deps {
            clock: Arc::new(ManualClock::new(now - days_ago * DAY_MS)),
            ..rt.deps.clone()
        };
        reconcile(
            &deps,
            Some(&source),
            &rt.destinations,
            &ReconcileOptions::default(),
        )
        .await
        .unwrap();
    }
    rt.reconcile(Some(&source)).await.unwrap();
    rt.shutdown().await;
}

fn dataout(args: &[&str], state_dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dataout"))
        .args(args)
        .arg("--state-dir")
        .arg(state_dir)
        .arg("--config")
        .arg(example_spec())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run dataout")
}

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("DATAOUT_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    path.exists().then_some(path)
}

/// Screenshot `page` in headless Chromium; the PNG's bytes.
fn screenshot(browser: &Path, page: &Path, out: &Path) -> Vec<u8> {
    let profile = tempfile::tempdir().unwrap();
    let status = Command::new(browser)
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
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", out.display()))
        .arg("--window-size=1280,2000")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("start chromium");
    assert!(
        out.exists(),
        "chromium wrote no screenshot: {}\n{}",
        status.status,
        String::from_utf8_lossy(&status.stderr)
    );
    std::fs::read(out).unwrap()
}

/// Share of pixels that differ from the page background (the top-left
/// pixel) and the number of distinct colours (quantised to 4 bits a
/// channel, so anti-aliasing does not count).
fn pixel_stats(png_bytes: &[u8]) -> (u32, u32, f64, usize) {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|p| &p[..3.min(channels)])
        .collect();
    let background = pixels[0];
    let differing = pixels.iter().filter(|p| **p != background).count();
    let colours: std::collections::BTreeSet<(u8, u8, u8)> = pixels
        .iter()
        .filter(|p| p.len() == 3)
        .map(|p| (p[0] >> 4, p[1] >> 4, p[2] >> 4))
        .collect();
    (
        info.width,
        info.height,
        differing as f64 / pixels.len() as f64,
        colours.len(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_report_of_a_local_run_renders_in_chromium_and_is_not_blank() {
    let dir = tempfile::tempdir().unwrap();
    local_run(dir.path(), 1000).await;
    let state_dir = dir.path().join("state");
    let page = dir.path().join("report.html");
    let out = dataout(&["report", "--html", page.to_str().unwrap()], &state_dir);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&page).unwrap();

    // Self-contained: nothing fetched.
    for fetch in ["<script", "<link", "src=", "href=", "url(", "@import"] {
        assert!(!html.contains(fetch), "the page contains `{fetch}`");
    }
    // Every export × destination of the spec, with counts for three days.
    let spec = dataout::domain::config::load_spec_file(&example_spec()).unwrap();
    let mut pairs = 0;
    for export in spec.exports.values() {
        pairs += export.destinations.len();
        for b in &export.destinations {
            let title = format!("{} → {}</h3>", export.name, b.destination);
            assert!(html.contains(&title), "no section {title}");
        }
    }
    let day = |ago: i64| dataout::report::day_of(SystemClock.now_ms() - ago * DAY_MS);
    for ago in [0, 1, 2] {
        assert!(html.contains(&day(ago)), "no counts for {}", day(ago));
    }
    // One counts chart per pair (each has three days), and at most one
    // latency chart per export.
    let charts = html.matches("<svg").count();
    assert!(
        (pairs..=pairs + spec.exports.len()).contains(&charts),
        "{charts} charts for {pairs} pairs"
    );
    assert!(html.contains("suppression overlap"));

    if std::env::var_os("DATAOUT_SKIP_CHROMIUM").is_some() && chromium().is_none() {
        eprintln!(
            "\n!!!!!!!! SKIPPED: the HTML report was NOT rendered in Chromium: \
             /usr/bin/chromium is missing and could not be installed (DATAOUT_SKIP_CHROMIUM) !!!!!!!!\n"
        );
        return;
    }
    let browser = chromium().unwrap_or_else(|| {
        panic!("no Chromium at /usr/bin/chromium: `apt-get install -y chromium` (scripts/test does), or set DATAOUT_CHROMIUM")
    });
    let png_path = dir.path().join("report.png");
    let bytes = screenshot(&browser, &page, &png_path);
    let (width, height, share, colours) = pixel_stats(&bytes);
    eprintln!(
        "screenshot {width}x{height}: {:.1}% non-background pixels, {colours} distinct colours",
        share * 100.0
    );
    assert_eq!((width, height), (1280, 2000));
    assert!(
        share > 0.05,
        "screenshot nearly blank: {:.2}% non-background",
        share * 100.0
    );
    assert!(
        colours >= 8,
        "only {colours} distinct colours: charts not drawn?"
    );
    if std::env::var_os("DATAOUT_UPDATE_DOCS").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::write(docs.join("report.png"), &bytes).unwrap();
        eprintln!("wrote {}", docs.join("report.png").display());
    }
}
