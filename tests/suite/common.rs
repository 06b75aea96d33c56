//! Helpers shared by the tests: driving the `vitrun` binary, and a batch loader.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The `vitrun` binary, with no `VITRUN_*` variables leaking in from the environment.
pub fn vitrun(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vitrun"));
    cmd.args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("VITRUN_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// The values of metric `split/name` of trial `id`, in the store's order (by step).
pub fn series(store: &vitrun::track::Store, id: &str, split: &str, name: &str) -> Vec<f64> {
    store
        .metrics(id)
        .unwrap()
        .into_iter()
        .filter(|m| m.split == split && m.name == name)
        .map(|m| m.value)
        .collect()
}

/// `tests/configs/NAME`.
pub fn config(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/configs")
        .join(name)
}

/// `--set train.runs_dir="RUNS"`.
pub fn runs_set(runs: &Path) -> String {
    format!("train.runs_dir={:?}", runs.display().to_string())
}

/// `vitrun run tests/configs/micro.toml --quiet` storing under `runs`, with `extra` arguments.
pub fn micro_command(runs: &Path, extra: &[&str]) -> Command {
    let file = config("micro.toml");
    let set = runs_set(runs);
    let mut args = vec!["run", file.to_str().unwrap(), "--quiet", "--set", &set];
    args.extend_from_slice(extra);
    vitrun(&args)
}

/// Runs [`micro_command`] to its end.
pub fn micro(runs: &Path, extra: &[&str]) -> Output {
    micro_command(runs, extra).output().unwrap()
}

/// Stdout and stderr together.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Writes `body` as an experiment file in `dir` and returns its path.
pub fn experiment(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, body).unwrap();
    path
}

/// Polls `ready` every 5 ms for up to `secs` seconds.
pub fn wait_until(secs: u64, what: &str, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The headless browser to check pages with, if one is installed.
pub fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// Loads `probe` (an HTML file that writes its findings into `<pre id="out">`) in headless
/// Chromium and returns the dumped DOM; `None` (after a note) when no browser is installed,
/// unless `VITRUN_REQUIRE_CHROMIUM` is set.
pub fn browser_dom(probe: &Path) -> Option<String> {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var("VITRUN_REQUIRE_CHROMIUM").is_err(),
            "VITRUN_REQUIRE_CHROMIUM is set but no chromium is installed (apt-get install chromium)"
        );
        eprintln!("skipping the browser check: chromium is not installed");
        return None;
    };
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--allow-file-access-from-files",
            "--virtual-time-budget=20000",
            "--dump-dom",
        ])
        .arg(format!("file://{}", probe.display()))
        .output()
        .unwrap();
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Writes a page that loads `index.html` (beside it) in an iframe and, once everything has
/// loaded, runs `script` with `doc` (the report's document) and `out(text)` (which the test
/// reads back from the dumped DOM).
pub fn probe_page(path: &Path, script: &str) {
    std::fs::write(
        path,
        format!(
            r#"<!DOCTYPE html><html><body><pre id="out">pending</pre>
<iframe id="page" src="index.html" style="width:1280px;height:900px"></iframe>
<script>
const out = text => {{ document.getElementById('out').textContent = text; }};
window.addEventListener('load', () => {{
  const doc = document.getElementById('page').contentDocument;
  {script}
}});
</script></body></html>"#
        ),
    )
    .unwrap();
}

/// A loader over `dataset` through `pipeline` (seed 3, two threads, 2 batches ahead, no
/// repeats, no mixing); tests override fields with `..loader_spec(…)`.
pub fn loader_spec(
    dataset: std::sync::Arc<dyn vitrun::data::Dataset>,
    pipeline: vitrun::data::Pipeline,
    batch_size: usize,
) -> vitrun::data::LoaderSpec<vitrun::data::Labels> {
    vitrun::data::LoaderSpec {
        dataset,
        pipeline: std::sync::Arc::new(pipeline),
        batch_size,
        shuffle: true,
        seed: 3,
        skip_bad: false,
        prefetch: 2,
        pool: std::sync::Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .expect("a thread pool"),
        ),
        repeats: 1,
        transform: None,
    }
}

/// Asserts that trial `id` has the same values of each `split/name` in stores `a` and `b`, bit
/// for bit, with `epochs` values each when given.
pub fn assert_same_series(
    a: &vitrun::track::Store,
    b: &vitrun::track::Store,
    id: &str,
    keys: &[(&str, &str)],
    epochs: Option<usize>,
) {
    for &(split, name) in keys {
        let x = series(a, id, split, name);
        if let Some(n) = epochs {
            assert_eq!(x.len(), n, "{split}/{name}");
        }
        assert_eq!(x, series(b, id, split, name), "{split}/{name}");
    }
}

/// The JSON a report page embeds for its charts.
pub fn page_data(html: &str) -> serde_json::Value {
    let start = html
        .find("id=\"vitrun-data\">")
        .expect("the page embeds its chart data")
        + "id=\"vitrun-data\">".len();
    let end = start + html[start..].find("</script>").unwrap();
    serde_json::from_str(&html[start..end]).unwrap()
}
