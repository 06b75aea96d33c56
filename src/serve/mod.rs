//! `vitrun serve`: the report's pages over HTTP, live while trials run. Read-only: it answers
//! `GET`s from the run store and from pages it draws into a private cache; it listens on
//! localhost unless told otherwise (a cluster user reaches it through an SSH tunnel).

mod pages;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tiny_http::{Header, Method, Request, Response, Server};

use crate::config::is_safe_name;

/// Where and what `vitrun serve` serves.
#[derive(Debug, Clone)]
pub struct Options {
    pub runs_dir: PathBuf,
    pub bind: IpAddr,
    /// 0 picks a free port.
    pub port: u16,
}

/// What every request handler shares.
struct State {
    runs_dir: PathBuf,
    /// Drawn pages, one folder per target (removed when the server stops).
    cache: PathBuf,
    /// One page is drawn at a time: two requests of one target share its folder.
    drawing: Mutex<()>,
}

/// An answer: status, content type and body.
struct Answer {
    status: u16,
    kind: &'static str,
    body: Vec<u8>,
    location: Option<String>,
}

impl Answer {
    fn ok(kind: &'static str, body: impl Into<Vec<u8>>) -> Answer {
        Answer {
            status: 200,
            kind,
            body: body.into(),
            location: None,
        }
    }

    fn text(status: u16, body: impl Into<String>) -> Answer {
        Answer {
            status,
            kind: "text/plain; charset=utf-8",
            body: body.into().into_bytes(),
            location: None,
        }
    }

    fn redirect(to: String) -> Answer {
        Answer {
            status: 308,
            kind: "text/plain; charset=utf-8",
            body: format!("moved to {to}").into_bytes(),
            location: Some(to),
        }
    }
}

/// Serves until `stop` is set; `ready` gets the address it listens on (the port chosen when
/// `port` is 0).
pub fn serve(
    options: &Options,
    stop: &AtomicBool,
    ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let server = Server::http((options.bind, options.port)).map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {}:{}: {e}; pick another --port (or --port 0 for any free one)",
            options.bind,
            options.port
        )
    })?;
    let address = server
        .server_addr()
        .to_ip()
        .context("the server listens on a Unix socket, not an address")?;
    let state = Arc::new(State {
        runs_dir: options.runs_dir.clone(),
        cache: std::env::temp_dir().join(format!("vitrun-serve-{}", std::process::id())),
        drawing: Mutex::new(()),
    });
    ready(address);
    while !stop.load(Ordering::SeqCst) {
        match server.recv_timeout(Duration::from_millis(200)) {
            Ok(Some(request)) => {
                let state = state.clone();
                std::thread::spawn(move || respond(&state, request));
            }
            Ok(None) => {}
            Err(e) => return Err(e).context("the server stopped accepting requests"),
        }
    }
    // Best effort: the cache is ours and holds nothing that is not in the store.
    let _ = std::fs::remove_dir_all(&state.cache);
    Ok(())
}

fn respond(state: &State, request: Request) {
    let answer = if matches!(request.method(), Method::Get | Method::Head) {
        let path = request
            .url()
            .split(['?', '#'])
            .next()
            .unwrap_or("/")
            .to_string();
        route(state, &path)
    } else {
        Answer::text(405, "vitrun serve is read-only: GET only")
    };
    let mut response = Response::from_data(answer.body).with_status_code(answer.status);
    let mut headers = vec![
        ("Content-Type", answer.kind.to_string()),
        ("Cache-Control", "no-store".to_string()),
    ];
    if let Some(to) = answer.location {
        headers.push(("Location", to));
    }
    for (name, value) in headers {
        if let Ok(h) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(h);
        }
    }
    // A client that went away is not an error of the server's.
    let _ = request.respond(response);
}

/// The targets of `/r/<a+b>/`: each a trial id, experiment or sweep name.
fn targets(part: &str) -> Option<Vec<String>> {
    let names: Vec<String> = part.split('+').map(String::from).collect();
    names.iter().all(|n| is_safe_name(n)).then_some(names)
}

fn route(state: &State, path: &str) -> Answer {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        [""] => match pages::index(&state.runs_dir) {
            Ok(html) => Answer::ok("text/html; charset=utf-8", html),
            Err(e) => Answer::text(500, format!("{e:#}")),
        },
        ["api", "r", part] => match targets(part) {
            Some(names) => match crate::report::live::live(&state.runs_dir, &names) {
                Ok(live) => Answer::ok(
                    "application/json",
                    serde_json::to_vec(&live).unwrap_or_default(),
                ),
                Err(e) => Answer::text(404, format!("{e:#}")),
            },
            None => Answer::text(404, format!("{part:?} names no trial, experiment or sweep")),
        },
        ["r", part] => Answer::redirect(format!("/r/{part}/")),
        ["r", part, file] => match targets(part) {
            Some(names) if file.is_empty() => page(state, part, &names),
            Some(_) => static_file(&state.cache.join(part), file),
            None => Answer::text(404, format!("{part:?} names no trial, experiment or sweep")),
        },
        _ => Answer::text(
            404,
            format!("nothing at {path}; the experiment list is at /"),
        ),
    }
}

/// The report of `names`, drawn into the cache now, with the live script.
fn page(state: &State, part: &str, names: &[String]) -> Answer {
    let _drawing = state.drawing.lock().unwrap_or_else(|e| e.into_inner());
    let out = state.cache.join(part);
    let built = crate::report::build(
        &state.runs_dir,
        names,
        Some(&out),
        None,
        &crate::report::PanelOptions {
            fusion: crate::report::Fusion::Mean,
            discard: 0.0,
            samples: crate::report::Samples {
                order: crate::report::SampleOrder::First,
                count: 6,
            },
            score_threshold: None,
        },
    );
    match built.and_then(|report| {
        std::fs::read_to_string(&report.index)
            .with_context(|| format!("cannot read {}", report.index.display()))
    }) {
        Ok(html) => Answer::ok(
            "text/html; charset=utf-8",
            pages::with_live_script(&html, part),
        ),
        Err(e) => Answer::text(404, format!("{e:#}")),
    }
}

/// A file of a drawn page: a plain name in its folder.
fn static_file(dir: &Path, file: &str) -> Answer {
    let plain = !file.starts_with('.')
        && file
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    let kind = match file.rsplit('.').next() {
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        Some("html") => "text/html; charset=utf-8",
        _ => "application/octet-stream",
    };
    let missing = || Answer::text(404, format!("no file {file:?}; open the page first"));
    if !plain {
        return missing();
    }
    match std::fs::read(dir.join(file)) {
        Ok(bytes) => Answer::ok(kind, bytes),
        Err(_) => missing(),
    }
}
