//! Whether the process recorded in a `running` row still exists (stale-row detection), used
//! by claims, the scheduler, `ls` and reports alike.

use crate::contract::Status;

/// True when `pid` is a live (not zombie) `vitrun` process on this machine other than this one.
pub fn vitrun_alive(pid: i64) -> bool {
    if pid <= 0 || pid == i64::from(std::process::id()) {
        return false;
    }
    let proc = std::path::Path::new("/proc").join(pid.to_string());
    let Ok(stat) = std::fs::read_to_string(proc.join("stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    if state == Some("Z") || state == Some("X") {
        return false;
    }
    std::fs::read(proc.join("cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains("vitrun"))
        .unwrap_or(false)
}

/// The status a reader should show: a `running` row whose process on this host is gone is
/// `stale`. Rows of other hosts are taken at their word.
pub fn effective_status(status: Status, pid: Option<i64>, host: Option<&str>) -> Status {
    let here = host == Some(super::hostname().as_str());
    if status == Status::Running && here && !pid.is_some_and(vitrun_alive) {
        Status::Stale
    } else {
        status
    }
}
