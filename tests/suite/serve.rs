//! `vitrun serve`: its routes and JSON against the store, and a live page in headless Chromium
//! (driven over the DevTools protocol by `headless_chrome`) whose curve grows while a trial
//! runs, with hover values and a silent console.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, ChildStdout, Stdio};
use std::time::{Duration, Instant};

use crate::common::{chromium, config, micro, runs_set, series, text, vitrun, wait_until};

/// A `vitrun serve` process on a free port, killed when dropped.
struct Server {
    child: Child,
    /// Held open: the server's stdout stays connected.
    _stdout: BufReader<ChildStdout>,
    address: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(runs: &Path) -> Server {
    let mut child = vitrun(&["serve", "--port", "0", "--runs-dir", runs.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let address = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("the server says where it listens: {line:?}"))
        .to_string();
    assert!(
        address.starts_with("127.0.0.1:"),
        "localhost by default: {line}"
    );
    Server {
        child,
        _stdout: stdout,
        address,
    }
}

/// `method path` over HTTP/1.0: the status and the body.
fn request(address: &str, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {address}\r\n\r\n"
    )
    .unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    let answer = String::from_utf8_lossy(&bytes).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("an HTTP answer: {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}

fn get(address: &str, path: &str) -> (u16, String) {
    request(address, "GET", path)
}

#[test]
fn the_server_answers_from_the_store_and_only_reads() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let out = micro(&runs, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let store = vitrun::track::Store::open(&runs.join("vitrun.sqlite")).unwrap();
    let id = store.trials(None).unwrap()[0].id.clone();
    let server = serve(&runs);
    let at = server.address.as_str();

    let (status, index) = get(at, "/");
    assert_eq!(status, 200);
    assert!(index.contains("<a href=\"/r/micro/\">micro</a>"), "{index}");

    let (status, json) = get(at, &format!("/api/r/{id}"));
    assert_eq!(status, 200, "{json}");
    let live: serde_json::Value = serde_json::from_str(&json).unwrap();
    let chart = live["page"]["charts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "curve_top1")
        .expect("the main metric's chart");
    let line = chart["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["key"] == "val/top1")
        .unwrap();
    let served: Vec<f64> = line["y"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let stored: Vec<f64> = series(&store, &id, "val", "top1")
        .into_iter()
        .map(|v| v * 100.0)
        .collect();
    assert_eq!(served, stored, "the endpoint serves the store's values");
    assert_eq!(live["running"], serde_json::json!([]));

    assert_eq!(get(at, &format!("/r/{id}")).0, 308, "a page is a folder");
    let (status, page) = get(at, &format!("/r/{id}/"));
    assert_eq!(status, 200);
    assert!(page.contains("window.vitrunLiveTarget") && page.contains("id=\"vitrun-data\""));
    assert_eq!(get(at, &format!("/r/{id}/augmentations.png")).0, 200);

    assert_eq!(request(at, "POST", "/").0, 405, "read-only");
    assert_eq!(request(at, "DELETE", &format!("/r/{id}/")).0, 405);
    let (status, body) = get(at, "/r/nope/");
    assert_eq!(status, 404);
    assert!(
        body.contains("no trial, experiment or sweep named \"nope\""),
        "{body}"
    );
    for hostile in [
        format!("/r/{id}/..%2F..%2Fvitrun.sqlite"),
        format!("/r/{id}/.hidden"),
        "/r/..%2F/".to_string(),
        "/api/r/a%00b".to_string(),
    ] {
        assert_eq!(get(at, &hostile).0, 404, "{hostile}");
    }
}

/// The live page's state: the points each update brought, the charts drawn, and the first
/// chart's legend values with the pointer over it.
const PROBE: &str = r#"const box = document.getElementById('vr-live');
  const over = document.querySelector('.uplot .u-over');
  let hover = 'none';
  if (over) {
    const r = over.getBoundingClientRect();
    const at = { clientX: r.left + r.width * 0.9, clientY: r.top + r.height / 2, bubbles: true };
    over.dispatchEvent(new MouseEvent('mouseenter', at));
    over.dispatchEvent(new MouseEvent('mousemove', at));
    hover = Array.from(document.querySelectorAll('.uplot')[0].querySelectorAll('.u-legend .u-value'))
      .map(v => v.textContent.replace(/\s/g, '')).join('|');
  }
  const table = document.querySelector('#vr-live table');
  return { points: box ? box.dataset.points || '' : '', hover: hover,
    charts: document.querySelectorAll('.uplot').length,
    status: (document.getElementById('vr-live-status') || {}).textContent || '',
    running: table ? table.textContent : '' };"#;

/// chromedriver's browser console log (`POST /session/{id}/se/log`), which W3C WebDriver
/// has no command for.
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

/// A chromedriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver() -> Option<Driver> {
    let found = std::process::Command::new("chromedriver")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("VITRUN_REQUIRE_CHROMIUM").is_err(),
            "VITRUN_REQUIRE_CHROMIUM is set but chromedriver is missing (apt-get install chromium-driver)"
        );
        eprintln!("skipping the live page check: chromedriver is not installed");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(30, "chromedriver to listen", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    Some(Driver { child, port })
}

#[test]
fn a_live_page_grows_while_its_trial_runs() {
    if chromium().is_none() {
        assert!(
            std::env::var("VITRUN_REQUIRE_CHROMIUM").is_err(),
            "VITRUN_REQUIRE_CHROMIUM is set but no chromium is installed (apt-get install chromium)"
        );
        return;
    }
    let Some(driver) = chromedriver() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let file = config("micro.toml");
    let set = runs_set(&runs);
    let mut trial = vitrun(&[
        "run",
        file.to_str().unwrap(),
        "--quiet",
        "--set",
        &set,
        "--set",
        "data.train_size=4096",
        "--set",
        "data.image_size=32",
        "--set",
        "train.epochs=60",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let store_path = runs.join("vitrun.sqlite");
    let mut id = String::new();
    wait_until(120, "the trial's first epoch", || {
        let Ok(store) = vitrun::track::Store::open(&store_path) else {
            return false;
        };
        let Some(t) = store.trials(None).ok().and_then(|t| t.into_iter().next()) else {
            return false;
        };
        id = t.id.clone();
        !series(&store, &id, "val", "top1").is_empty()
    });
    let server = serve(&runs);
    let url = format!("http://{}/r/{id}/", server.address);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (last, log) = runtime.block_on(async {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({"args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]}),
        );
        // The live box needs the scripts, not every image: do not wait for the images.
        capabilities.insert("pageLoadStrategy".into(), serde_json::json!("eager"));
        capabilities.insert(
            "goog:loggingPrefs".into(),
            serde_json::json!({"browser": "ALL"}),
        );
        let client = fantoccini::ClientBuilder::new(
            hyper_util::client::legacy::connect::HttpConnector::new(),
        )
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a WebDriver session");
        client.goto(&url).await.unwrap();
        client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(fantoccini::Locator::Id("vr-live-status"))
            .await
            .unwrap();
        let started = Instant::now();
        let mut last = serde_json::Value::Null;
        while started.elapsed() < Duration::from_secs(60) {
            last = client.execute(PROBE, Vec::new()).await.unwrap();
            let seen = points(&last);
            if seen.len() >= 2 && seen.last() > seen.first() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let log = client.issue_cmd(BrowserLog).await.unwrap();
        client.close().await.unwrap();
        (last, log)
    });
    let _ = trial.kill();
    let _ = trial.wait();
    assert!(last["charts"].as_u64().unwrap() >= 3, "{last}");
    let seen = points(&last);
    assert!(
        seen.len() >= 2 && seen.last() > seen.first(),
        "the page took new points without a reload: {last}"
    );
    let hover = last["hover"].as_str().unwrap();
    let values: Vec<&str> = hover.split('|').collect();
    assert!(
        values.len() >= 2 && values[1..].iter().any(|v| v.ends_with('%')),
        "hovering shows values: {hover}"
    );
    assert!(
        last["status"]
            .as_str()
            .unwrap()
            .contains("refreshing every 2 s"),
        "the trial shows as running: {last}"
    );
    let running = last["running"].as_str().unwrap();
    assert!(
        running.contains(&id) && running.contains("/ 60"),
        "the running trial's epoch of 60: {running}"
    );
    assert_eq!(log, serde_json::json!([]), "console messages");
}

/// The points each update of the live page brought (its `data-points`).
fn points(state: &serde_json::Value) -> Vec<usize> {
    state["points"]
        .as_str()
        .unwrap_or_default()
        .split(',')
        .filter_map(|p| p.parse().ok())
        .collect()
}
