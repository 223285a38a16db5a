//! `index.html`: `moesim run` writes it beside report.md, `moesim report` rebuilds it the same,
//! and headless Chromium shows it with every chart loaded and the verdict first. Without a
//! Chromium (scripts/setup.sh installs the Debian package `chromium`) the browser part skips
//! with a notice.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{moesim, stderr};

/// A small quickstart: two placements, two overlap strategies, every chart.
fn small_report(root: &Path) -> PathBuf {
    let trace = Path::new(env!("CARGO_MANIFEST_DIR")).join("traces/quickstart.parquet");
    let scenario = root.join("small.toml");
    std::fs::write(
        &scenario,
        format!(
            "name = \"small\"\nseed = 7\nmodel = \"olmoe-1b-7b\"\ncluster = \"dgx-h100\"\n\
             tokens_per_gpu = 256\nplacements = [\"contiguous\", \"eplb\"]\n\
             [trace]\nfile = {trace:?}\n[sim]\noverlap = [\"none\", \"dual-batch\"]\n"
        ),
    )
    .unwrap();
    let out = root.join("report");
    let run = moesim(&[
        "run",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    out
}

/// The verdict: report.md's first paragraph, without its Markdown.
fn verdict(report: &Path) -> String {
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    md.lines()
        .nth(2)
        .unwrap()
        .replace("**", "")
        .replace('`', "")
}

#[test]
fn the_page_is_self_contained_and_rebuilt_identically() {
    let root = tempfile::tempdir().unwrap();
    let report = small_report(root.path());
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    let charts = std::fs::read_to_string(report.join("report.md"))
        .unwrap()
        .matches("](")
        .count();
    assert_eq!(charts, 5);
    assert_eq!(html.matches("<img ").count(), charts);
    assert_eq!(html.matches("src=\"data:image/png;base64,").count(), charts);
    assert!(
        !html.contains("http:") && !html.contains("https:"),
        "no network"
    );
    // The verdict comes first, right under the title.
    let verdict_at = html.find("<p class=\"verdict\">").unwrap();
    assert!(verdict_at < html.find("<table>").unwrap());
    assert!(verdict_at < html.find("<h2>").unwrap());
    // `moesim report` rebuilds the same page from the folder.
    std::fs::remove_file(report.join("index.html")).unwrap();
    let rebuilt = moesim(&["report", report.to_str().unwrap()]);
    assert!(rebuilt.status.success(), "{}", stderr(&rebuilt));
    assert_eq!(
        std::fs::read_to_string(report.join("index.html")).unwrap(),
        html
    );
}

#[test]
fn report_refuses_a_folder_that_is_not_a_run() {
    let root = tempfile::tempdir().unwrap();
    let out = moesim(&["report", root.path().to_str().unwrap()]);
    common::assert_fails_with(
        &out,
        &[root.path().to_str().unwrap(), "not a moesim results folder"],
    );
    assert!(!root.path().join("index.html").exists());
    assert_eq!(stderr(&out).lines().count(), 1);
}

/// The headless browser: `$MOESIM_CHROMIUM`, else `chromium` or `chromium-browser` on the path.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("MOESIM_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Runs headless Chromium on the file `page` with `args` (at most 120 s), returning stdout.
fn browse(browser: &Path, profile: &Path, page: &Path, args: &[&str]) -> String {
    let out = Command::new("timeout")
        .arg("120")
        .arg(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1280,2400",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(out.status.success(), "chromium failed: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Marks, once the page has loaded, how many of its images decoded and the verdict's text when
/// it is rendered at the top of the first screen.
const PROBE: &str = r#"<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const loaded = images.filter((i) => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.images = loaded + "/" + images.length;
  const v = document.querySelector("p.verdict");
  const box = v && v.getBoundingClientRect();
  const shown = v && box.height > 0 && box.top < window.innerHeight / 2 &&
    getComputedStyle(v).visibility === "visible";
  document.body.dataset.verdict = shown ? v.textContent : "";
});
</script>
</body>"#;

/// The value of the attribute `name` in `html`.
fn attribute<'a>(html: &'a str, name: &str) -> &'a str {
    let start = html
        .find(&format!("{name}=\""))
        .unwrap_or_else(|| panic!("no {name} in {html}"));
    let value = &html[start + name.len() + 2..];
    &value[..value.find('"').unwrap()]
}

#[test]
fn chromium_shows_every_chart_and_the_verdict() {
    let Some(browser) = chromium() else {
        eprintln!(
            "skipping: no headless Chromium found (scripts/setup.sh installs the Debian package \
             `chromium`; MOESIM_CHROMIUM names another binary)"
        );
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let report = small_report(root.path());
    let profile = root.path().join("chromium-profile");
    let page = report.join("index.html");
    let html = std::fs::read_to_string(&page).unwrap();
    let probe = report.join("probe.html");
    std::fs::write(&probe, html.replace("</body>", PROBE)).unwrap();
    let dom = browse(&browser, &profile, &probe, &["--dump-dom"]);
    assert_eq!(attribute(&dom, "data-images"), "5/5", "broken images");
    assert_eq!(attribute(&dom, "data-verdict"), verdict(&report));

    // A screenshot of the page beside one of a blank page: the report's holds text and charts,
    // so it compresses far worse than the blank one.
    let shot = root.path().join("report.png");
    browse(
        &browser,
        &profile,
        &page,
        &[&format!("--screenshot={}", shot.display())],
    );
    let blank_page = root.path().join("blank.html");
    std::fs::write(&blank_page, "<!DOCTYPE html><html><body></body></html>").unwrap();
    let blank = root.path().join("blank.png");
    browse(
        &browser,
        &profile,
        &blank_page,
        &[&format!("--screenshot={}", blank.display())],
    );
    let (shot, blank) = (
        std::fs::read(&shot).unwrap(),
        std::fs::read(&blank).unwrap(),
    );
    assert_eq!(&shot[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        shot.len() > 5 * blank.len(),
        "screenshot {} bytes, blank page {}",
        shot.len(),
        blank.len()
    );
}

#[test]
fn chromium_shows_the_committed_plan_report() {
    let Some(browser) = chromium() else {
        eprintln!("skipping: no headless Chromium found (see the test above)");
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("reports/plan-example/report");
    let html = std::fs::read_to_string(example.join("index.html")).unwrap();
    let probe = root.path().join("probe.html");
    std::fs::write(&probe, html.replace("</body>", PROBE)).unwrap();
    let dom = browse(
        &browser,
        &root.path().join("profile"),
        &probe,
        &["--dump-dom"],
    );
    // Four heatmaps (cost, TTFT p99, TPOT p99, SLO attainment) and the Pareto front.
    assert_eq!(attribute(&dom, "data-images"), "5/5", "broken images");
    // The dumped DOM escapes the limits' `<=` and `>=` inside the attribute.
    let shown = attribute(&dom, "data-verdict")
        .replace("&lt;", "<")
        .replace("&gt;", ">");
    assert_eq!(shown, verdict(&example));
}
