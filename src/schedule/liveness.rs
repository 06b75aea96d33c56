//! Whether the process recorded in a `running` row still exists (stale-row detection).

/// True when `pid` is a live (not zombie) `vitrun` process on this machine.
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
