//! The HTML report opened in headless Chromium (Debian's `chromium`, which `.ci/run` installs):
//! it renders, and every image loads.

use std::path::{Path, PathBuf};
use std::process::Command;

use icm::grid::runner::{run_grid, RunOptions};
use icm::report::{write_report, Formats, ReportSource};
use icm::spec::parse_experiment;

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .map(PathBuf::from)
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

fn headless(browser: &Path, profile: &Path) -> Command {
    let mut c = Command::new(browser);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--virtual-time-budget=10000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

#[test]
fn index_html_renders_with_every_image_in_chromium() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is missing: .ci/run installs Debian's `chromium` for this test"
        );
        eprintln!("no chromium on this machine: browser check not run (CI runs it)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let yaml =
        "name: web\nsplits: [balanced, {long_tailed: {ratio: 5}}, {long_tailed: {ratio: 10}}]\n\
                model: {arch: mlp, hidden: [16]}\ntrain: {epochs: 3, batch_size: 32, lr: 0.05}\n\
                methods: [erm, icm-mixup]\nseeds: [0, 1]\n";
    let exp = parse_experiment(yaml, Path::new("web.yaml")).unwrap();
    let results = tmp.path().join("results");
    run_grid(&exp, &results, &RunOptions::default()).unwrap();
    let report = write_report(
        &ReportSource::Experiment(Box::new(exp)),
        &results,
        &tmp.path().join("reports"),
        Formats::default(),
    )
    .unwrap();
    assert!(report
        .figures
        .iter()
        .any(|f| f.contains("accuracy-vs-imbalance")));
    let url = format!("file://{}", report.dir.join("index.html").display());
    let profile = tmp.path().join("profile");

    let dom = headless(&browser, &profile)
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("data-broken-images=\"0\""),
        "broken images or no load event:\n{}",
        &dom[..dom.len().min(400)]
    );
    assert_eq!(dom.matches("<img ").count(), report.figures.len());

    let shot = tmp.path().join("shot.png");
    let status = headless(&browser, &profile)
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1300,1800")
        .arg(&url)
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = std::fs::read(&shot).unwrap();
    assert_eq!(&bytes[..4], b"\x89PNG");
    assert!(
        bytes.len() > 20_000,
        "screenshot is {} bytes: page looks empty",
        bytes.len()
    );
}
