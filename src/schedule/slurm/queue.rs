//! What SLURM says of array tasks: `squeue` for the live ones, `scontrol show job` for ones
//! that ended recently (the controller forgets them after `MinJobAge`; `sacct` needs a
//! database many clusters lack). Each program is run once per query, never per trial.

use std::collections::HashMap;
use std::process::Command;

/// One array task as SLURM reports it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TaskState {
    /// `PENDING`, `RUNNING`, `COMPLETED`, `TIMEOUT`, `FAILED`, `CANCELLED`, …
    pub state: String,
    pub node: String,
    /// Why it waits (`Priority`, `JobArrayTaskLimit`, `BeginTime`, …).
    pub reason: String,
    /// `code:signal`, for ended tasks.
    pub exit_code: Option<String>,
    /// How many times SLURM requeued it.
    pub restarts: u32,
}

impl TaskState {
    /// Whether the task may still run (waiting, running or being requeued).
    pub fn is_live(&self) -> bool {
        matches!(
            self.state.as_str(),
            "PENDING"
                | "RUNNING"
                | "CONFIGURING"
                | "COMPLETING"
                | "REQUEUED"
                | "REQUEUE_HOLD"
                | "REQUEUE_FED"
                | "RESIZING"
                | "SUSPENDED"
                | "STAGE_OUT"
                | "SIGNALING"
        )
    }

    /// The state in words: `pending (Priority)`, `running on node1`, `timed out`, ….
    pub fn describe(&self) -> String {
        let exit = self.exit_code.as_deref().unwrap_or("?");
        match self.state.as_str() {
            "PENDING" if self.reason.is_empty() || self.reason == "None" => "pending".into(),
            "PENDING" => format!("pending ({})", self.reason),
            "RUNNING" => format!("running on {}", self.node),
            "TIMEOUT" => "timed out".into(),
            "FAILED" => format!("failed (exit {exit})"),
            "NODE_FAIL" => "node failed".into(),
            "OUT_OF_MEMORY" => "out of memory".into(),
            other => other.to_lowercase(),
        }
    }
}

fn run(cmd: &mut Command) -> anyhow::Result<(bool, String, String)> {
    let out = cmd.output().map_err(|e| {
        anyhow::anyhow!(
            "cannot run {:?}: {e}; is SLURM installed and on PATH?",
            cmd.get_program()
        )
    })?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    ))
}

/// Parses `squeue -h -r -o '%i|%T|%N|%r'` lines, by `JOBID_INDEX`.
pub fn parse_squeue(text: &str) -> HashMap<String, TaskState> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.trim().split('|');
            let id = f.next()?.to_string();
            Some((
                id,
                TaskState {
                    state: f.next()?.to_string(),
                    node: f.next().unwrap_or_default().to_string(),
                    reason: f.next().unwrap_or_default().to_string(),
                    ..TaskState::default()
                },
            ))
        })
        .collect()
}

/// Live tasks of the given job arrays, by `JOBID_INDEX`.
pub fn squeue(jobs: &[String]) -> anyhow::Result<HashMap<String, TaskState>> {
    if jobs.is_empty() {
        return Ok(HashMap::new());
    }
    let (ok, out, err) =
        run(Command::new("squeue").args(["-h", "-r", "-j", &jobs.join(","), "-o", "%i|%T|%N|%r"]))?;
    if !ok && !err.contains("Invalid job id") {
        anyhow::bail!("squeue failed: {err}");
    }
    Ok(parse_squeue(&out))
}

/// Parses `scontrol show job` records (one per array task), by `JOBID_INDEX`.
pub fn parse_scontrol(text: &str) -> HashMap<String, TaskState> {
    let mut out = HashMap::new();
    for record in text.split("\n\n") {
        let fields: HashMap<&str, &str> = record
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .collect();
        let (Some(job), Some(task)) = (fields.get("ArrayJobId"), fields.get("ArrayTaskId")) else {
            continue;
        };
        if task.contains(['[', ',', '-']) {
            continue;
        }
        out.insert(
            format!("{job}_{task}"),
            TaskState {
                state: fields.get("JobState").unwrap_or(&"").to_string(),
                node: fields.get("NodeList").unwrap_or(&"").to_string(),
                reason: fields.get("Reason").unwrap_or(&"").to_string(),
                exit_code: fields.get("ExitCode").map(|s| s.to_string()),
                restarts: fields
                    .get("Restarts")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
            },
        );
    }
    out
}

/// Every task the controller still remembers of a job array (ended ones included).
pub fn scontrol_job(job: &str) -> anyhow::Result<HashMap<String, TaskState>> {
    let (ok, out, err) = run(Command::new("scontrol").args(["show", "job", job]))?;
    if !ok {
        if err.contains("Invalid job id") {
            return Ok(HashMap::new());
        }
        anyhow::bail!("scontrol show job {job} failed: {err}");
    }
    Ok(parse_scontrol(&out))
}

/// Parses `sacct -X -n -P -o JobID,State,ExitCode,NodeList` lines, by `JOBID_INDEX`.
pub fn parse_sacct(text: &str) -> HashMap<String, TaskState> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.trim().split('|').collect();
            let (id, state) = (f.first()?, f.get(1)?);
            if !id.contains('_') || id.contains('[') {
                return None;
            }
            Some((
                id.to_string(),
                TaskState {
                    // `CANCELLED by 0` → `CANCELLED`.
                    state: state
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                    exit_code: f.get(2).map(|s| s.to_string()),
                    node: f.get(3).unwrap_or(&"").to_string(),
                    ..TaskState::default()
                },
            ))
        })
        .collect()
}

/// What the accounting database says of a job array, where the cluster has one (none is
/// not an error: many clusters run without slurmdbd).
fn sacct_job(job: &str) -> HashMap<String, TaskState> {
    Command::new("sacct")
        .args([
            "-X",
            "-n",
            "-P",
            "-j",
            job,
            "-o",
            "JobID,State,ExitCode,NodeList",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| parse_sacct(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or_default()
}

/// The largest array this cluster takes (`MaxArraySize`; SLURM's default, 1001, when it
/// cannot be read).
pub fn max_array_size() -> usize {
    Command::new("scontrol")
        .args(["show", "config"])
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout).lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == "MaxArraySize").then(|| v.trim().parse().ok())?
            })
        })
        .filter(|n: &usize| *n > 0)
        .unwrap_or(1001)
}

/// Everything SLURM knows of the given job arrays' tasks: `scontrol` for all the controller
/// remembers (else the accounting database, where there is one), `squeue` over it for the
/// live view.
pub fn tasks(jobs: &[String]) -> anyhow::Result<HashMap<String, TaskState>> {
    let mut all = HashMap::new();
    for job in jobs {
        let known = scontrol_job(job)?;
        if known.is_empty() {
            all.extend(sacct_job(job));
        }
        all.extend(known);
    }
    for (id, live) in squeue(jobs)? {
        let entry = all.entry(id).or_insert_with(TaskState::default);
        entry.state = live.state;
        entry.node = live.node;
        entry.reason = live.reason;
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_and_scontrol_lines_parse() {
        let q = parse_squeue("4_1|PENDING||JobArrayTaskLimit\n4_0|RUNNING|vm|None\n");
        assert_eq!(q["4_1"].describe(), "pending (JobArrayTaskLimit)");
        assert_eq!(q["4_0"].describe(), "running on vm");
        assert!(q["4_0"].is_live());
        let s = parse_scontrol(
            "JobId=7 ArrayJobId=5 ArrayTaskId=2 JobName=x\n   JobState=FAILED Reason=NonZeroExitCode\n   Requeue=1 Restarts=3 BatchFlag=1 ExitCode=1:0\n   NodeList=node7\n\nJobId=5 ArrayJobId=5 ArrayTaskId=3-9%2 JobState=PENDING\n",
        );
        assert_eq!(s.len(), 1);
        let t = &s["5_2"];
        assert_eq!(t.describe(), "failed (exit 1:0)");
        assert_eq!(t.restarts, 3);
        assert!(!t.is_live());
        let a = parse_sacct(
            "9_0|COMPLETED|0:0|n1\n9_1|CANCELLED by 0|0:15|n2\n9_[2-5]|PENDING|0:0|None assigned\n",
        );
        assert_eq!(a.len(), 2);
        assert_eq!(a["9_1"].describe(), "cancelled");
    }
}
