//! How the scheduler reads a trial process's end: its exit code (see
//! [`crate::contract::TrialExit`]), its signal, what it recorded, its log, and the cgroup's
//! out-of-memory kill counter.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use crate::contract::{Status, TrialExit};

/// How a trial process ended, as the scheduler classifies it.
#[derive(Debug, Clone, PartialEq)]
pub enum Exit {
    Finished,
    Diverged,
    Pruned,
    /// Another live process holds the trial; this one did nothing.
    Busy,
    /// Stopped by our Ctrl-C.
    Interrupted,
    /// Ended badly; `kind` is the failure status to store (failed, crashed, oom, interrupted).
    Failed {
        kind: Status,
        cause: String,
    },
}

/// What the scheduler knows besides the exit status.
#[derive(Debug, Clone, Default)]
pub struct ExitContext<'a> {
    /// The scheduler is stopping (Ctrl-C): an interrupted exit is expected.
    pub stopping: bool,
    /// The error the trial stored itself.
    pub recorded: Option<&'a str>,
    /// The end of the trial's log.
    pub log_tail: &'a str,
    /// Whether the kernel's OOM killer killed a process while the trial ran.
    pub oom_killed: bool,
}

const OOM_NEEDLES: [&str; 4] = [
    "out of memory",
    "CUDA_ERROR_OUT_OF_MEMORY",
    "memory allocation of",
    "cannot allocate memory",
];

/// Classifies a trial process's exit.
pub fn classify(status: ExitStatus, cx: &ExitContext<'_>) -> Exit {
    let oom_line = OOM_NEEDLES.iter().find_map(|needle| {
        cx.log_tail
            .lines()
            .rev()
            .find(|l| l.to_lowercase().contains(&needle.to_lowercase()))
    });
    let oom = |line: &str| Exit::Failed {
        kind: Status::Oom,
        cause: format!("out of memory: {}", line.trim()),
    };
    if let Some(signal) = status.signal() {
        return match (oom_line, signal) {
            (Some(line), _) => oom(line),
            (None, 9) if cx.oom_killed => Exit::Failed {
                kind: Status::Oom,
                cause: "killed by the out-of-memory killer (SIGKILL)".into(),
            },
            (None, s) => Exit::Failed {
                kind: Status::Crashed,
                cause: format!("killed by signal {s}"),
            },
        };
    }
    let code = status.code().unwrap_or(-1);
    match TrialExit::from_code(code) {
        Some(TrialExit::Finished) => Exit::Finished,
        Some(TrialExit::Diverged) => Exit::Diverged,
        Some(TrialExit::Pruned) => Exit::Pruned,
        Some(TrialExit::Busy) => Exit::Busy,
        Some(TrialExit::Interrupted) if cx.stopping => Exit::Interrupted,
        Some(TrialExit::Interrupted) => Exit::Failed {
            kind: Status::Interrupted,
            cause: "stopped by a signal the sweep did not send".into(),
        },
        Some(TrialExit::Failed) => match oom_line {
            Some(line) => oom(line),
            None => Exit::Failed {
                kind: Status::Failed,
                cause: cx
                    .recorded
                    .map(str::to_string)
                    .or_else(|| last_error(cx.log_tail))
                    .unwrap_or_else(|| "exited with code 1; see its log.txt".into()),
            },
        },
        Some(TrialExit::Crashed) | None => match oom_line {
            Some(line) => oom(line),
            None => Exit::Failed {
                kind: Status::Crashed,
                cause: format!(
                    "{} with code {code}: {}",
                    if code == 101 { "panicked" } else { "exited" },
                    last_error(cx.log_tail).unwrap_or_else(|| "no message; see its log.txt".into())
                ),
            },
        },
    }
}

fn last_error(log_tail: &str) -> Option<String> {
    log_tail
        .lines()
        .rev()
        .find(|l| l.contains("panicked") || l.contains("error"))
        .map(|l| l.trim().to_string())
}

/// The cgroup's count of OOM-killer kills (cgroup v2 `memory.events`), when readable.
pub fn oom_kills() -> Option<u64> {
    let text = std::fs::read_to_string("/sys/fs/cgroup/memory.events").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
}
