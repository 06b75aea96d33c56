//! `[sweep.slurm]`: how the SLURM launcher asks for resources. Each value becomes an `#SBATCH`
//! line, so each is checked here for the shape SLURM accepts and for anything that could break
//! out of its line.

/// The keys of `[sweep.slurm]`, for `--set sweep.slurm.KEY=…` and "did you mean".
pub const SLURM_KEYS: [&str; 21] = [
    "partition",
    "account",
    "qos",
    "time",
    "gpus_per_trial",
    "gpus_per_task",
    "cpus_per_trial",
    "cpus_per_gpu",
    "mem",
    "mem_per_gpu",
    "nodelist",
    "exclude",
    "after",
    "setup",
    "max_parallel",
    "max_array_size",
    "constraint",
    "extra",
    "signal_seconds",
    "max_requeues",
    "vitrun",
];

/// The parsed `[sweep.slurm]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct SlurmSpec {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// Wall-time limit per array task, in SLURM's syntax (`30`, `1:00:00`, `2-00:00:00`).
    pub time: Option<String>,
    /// GPUs per array task (`--gres=gpu:N`; 0: none).
    pub gpus_per_trial: usize,
    /// GPUs per array task as `--gpus-per-task=N` (select/cons_tres clusters); instead of
    /// `gpus_per_trial`.
    pub gpus_per_task: Option<usize>,
    /// `--cpus-per-task`; the trial uses this many threads.
    pub cpus_per_trial: usize,
    /// `--cpus-per-gpu`, instead of `cpus_per_trial`.
    pub cpus_per_gpu: Option<usize>,
    /// `--mem` (`8G`, `16000M`).
    pub mem: Option<String>,
    /// `--mem-per-gpu`, instead of `mem`.
    pub mem_per_gpu: Option<String>,
    /// `--nodelist`: only these nodes (`node[01-04],gpu7`).
    pub nodelist: Option<String>,
    /// `--exclude`: never these nodes.
    pub exclude: Option<String>,
    /// `--dependency`: start after other jobs (`afterok:1234`, `afterany:1234:1235`); the
    /// command line's `--dependency` takes its place.
    pub after: Option<String>,
    /// Shell lines the task runs before the trial (`module load cuda/12.4`, `source env.sh`).
    pub setup: Vec<String>,
    /// At most this many array tasks at once (`--array=…%N`).
    pub max_parallel: Option<usize>,
    /// At most this many trials per job array (default: the cluster's `MaxArraySize`); a
    /// larger sweep is submitted as several arrays.
    pub max_array_size: Option<usize>,
    pub constraint: Option<String>,
    /// More `sbatch` options, each starting with `--` (`["--exclusive"]`).
    pub extra: Vec<String>,
    /// USR2 is sent this many seconds before the time limit (`--signal=B:USR2@N`).
    pub signal_seconds: u64,
    /// A trial whose time is up is requeued at most this many times (submitit's
    /// `max_num_timeout`); and never after an attempt that completed no epoch.
    pub max_requeues: u32,
    /// The `vitrun` executable the nodes run (default: this one, which must be on a shared
    /// filesystem).
    pub vitrun: Option<String>,
}

impl Default for SlurmSpec {
    fn default() -> Self {
        SlurmSpec {
            partition: None,
            account: None,
            qos: None,
            time: None,
            gpus_per_trial: 0,
            gpus_per_task: None,
            cpus_per_trial: 1,
            cpus_per_gpu: None,
            mem: None,
            mem_per_gpu: None,
            nodelist: None,
            exclude: None,
            after: None,
            setup: Vec::new(),
            max_parallel: None,
            max_array_size: None,
            constraint: None,
            extra: Vec::new(),
            signal_seconds: 120,
            max_requeues: 3,
            vitrun: None,
        }
    }
}

/// A value that cannot go into `[sweep.slurm]`: (key, what would be valid).
pub type SlurmError = (String, String);

fn err(key: &str, why: &str) -> SlurmError {
    (format!("slurm.{key}"), why.to_string())
}

/// A name SLURM takes (partition, account, qos, constraint): no spaces, quotes or newlines.
fn word(key: &str, v: &toml::Value, allowed: &str) -> Result<String, SlurmError> {
    let s = v
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| err(key, "a non-empty string"))?;
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.,".contains(c) || allowed.contains(c))
    {
        Ok(s.to_string())
    } else {
        Err(err(
            key,
            &format!("{s:?} has characters SLURM does not take here; use letters, digits and - _ . ,{allowed}"),
        ))
    }
}

fn count(key: &str, v: &toml::Value, min: i64, max: i64) -> Result<usize, SlurmError> {
    v.as_integer()
        .filter(|n| (min..=max).contains(n))
        .map(|n| n as usize)
        .ok_or_else(|| err(key, &format!("a whole number from {min} to {max}")))
}

/// SLURM's time formats: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`.
fn is_slurm_time(s: &str) -> bool {
    let digits = |p: &str| !p.is_empty() && p.len() <= 4 && p.chars().all(|c| c.is_ascii_digit());
    let (days, rest) = match s.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, s),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    days.is_none_or(digits)
        && parts.iter().all(|p| digits(p))
        && match days {
            Some(_) => (1..=3).contains(&parts.len()),
            None => (1..=3).contains(&parts.len()),
        }
}

/// `--dependency`: `TYPE:JOB[:JOB…]` (or `singleton`), several joined by `,` (all) or `?`
/// (any); a job is `1234`, `1234_5` (an array task) or `1234+60` (afterok with a delay).
pub fn is_slurm_dependency(s: &str) -> bool {
    const TYPES: [&str; 6] = [
        "after",
        "afterany",
        "afterok",
        "afternotok",
        "aftercorr",
        "afterburstbuffer",
    ];
    let job = |j: &str| {
        let (id, delay) = j.split_once('+').unwrap_or((j, "0"));
        let (id, task) = id.split_once('_').unwrap_or((id, "0"));
        [id, task, delay]
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 12 && p.chars().all(|c| c.is_ascii_digit()))
    };
    !s.is_empty()
        && s.split([',', '?']).all(|one| {
            one == "singleton"
                || one
                    .split_once(':')
                    .is_some_and(|(kind, jobs)| TYPES.contains(&kind) && jobs.split(':').all(job))
        })
}

/// `--mem`: a whole number with an optional K, M, G or T suffix.
fn is_slurm_mem(s: &str) -> bool {
    let body = s.strip_suffix(['K', 'M', 'G', 'T']).unwrap_or(s);
    !body.is_empty() && body.chars().all(|c| c.is_ascii_digit()) && body != "0"
}

impl SlurmSpec {
    /// Parses `[sweep.slurm]`.
    pub fn parse(table: &toml::Table) -> Result<SlurmSpec, SlurmError> {
        let mut spec = SlurmSpec::default();
        for (key, v) in table {
            match key.as_str() {
                "partition" => spec.partition = Some(word(key, v, "")?),
                "account" => spec.account = Some(word(key, v, "")?),
                "qos" => spec.qos = Some(word(key, v, "")?),
                "constraint" => spec.constraint = Some(word(key, v, "&|[]*")?),
                "time" => {
                    let s = v.as_str().unwrap_or_default();
                    if !is_slurm_time(s) {
                        return Err(err(key, "a SLURM time limit: \"MM\", \"HH:MM:SS\" or \"D-HH:MM:SS\", e.g. \"4:00:00\""));
                    }
                    spec.time = Some(s.to_string());
                }
                "mem" | "mem_per_gpu" => {
                    let s = v.as_str().unwrap_or_default();
                    if !is_slurm_mem(s) {
                        return Err(err(
                            key,
                            "memory in SLURM's syntax, e.g. \"16G\" or \"8000M\"",
                        ));
                    }
                    let slot = if key == "mem" {
                        &mut spec.mem
                    } else {
                        &mut spec.mem_per_gpu
                    };
                    *slot = Some(s.to_string());
                }
                "nodelist" => spec.nodelist = Some(word(key, v, "[]")?),
                "exclude" => spec.exclude = Some(word(key, v, "[]")?),
                "after" => {
                    let s = v.as_str().unwrap_or_default();
                    if !is_slurm_dependency(s) {
                        return Err(err(key, "a SLURM dependency, e.g. \"afterok:1234\" or \"afterany:1234:1240,afterok:1300_2\""));
                    }
                    spec.after = Some(s.to_string());
                }
                "setup" => {
                    let list = v.as_array().ok_or_else(|| {
                        err(
                            key,
                            "a list of shell lines, e.g. [\"module load cuda/12.4\"]",
                        )
                    })?;
                    for item in list {
                        let s = item.as_str().unwrap_or_default();
                        if s.trim().is_empty() || s.contains(['\n', '\r', '\0']) {
                            return Err(err(key, &format!("{item} is not one shell line; write each command as its own string")));
                        }
                        spec.setup.push(s.to_string());
                    }
                }
                "gpus_per_trial" => spec.gpus_per_trial = count(key, v, 0, 64)?,
                "gpus_per_task" => spec.gpus_per_task = Some(count(key, v, 1, 64)?),
                "cpus_per_trial" => spec.cpus_per_trial = count(key, v, 1, 1024)?,
                "cpus_per_gpu" => spec.cpus_per_gpu = Some(count(key, v, 1, 1024)?),
                "max_parallel" => spec.max_parallel = Some(count(key, v, 1, 100_000)?),
                "max_array_size" => spec.max_array_size = Some(count(key, v, 1, 4_000_000)?),
                "signal_seconds" => spec.signal_seconds = count(key, v, 1, 65_535)? as u64,
                "max_requeues" => spec.max_requeues = count(key, v, 0, 1000)? as u32,
                "vitrun" => {
                    let s = v
                        .as_str()
                        .filter(|s| {
                            s.starts_with('/') && !s.contains(['\n', '\r', '"', '\'', '$', '`'])
                        })
                        .ok_or_else(|| {
                            err(
                                key,
                                "the absolute path of a vitrun executable the nodes can run",
                            )
                        })?;
                    spec.vitrun = Some(s.to_string());
                }
                "extra" => {
                    let list = v.as_array().ok_or_else(|| {
                        err(key, "a list of sbatch options, e.g. [\"--exclusive\"]")
                    })?;
                    for item in list {
                        let s = item.as_str().unwrap_or_default();
                        if !s.starts_with("--")
                            || s.contains(['\n', '\r'])
                            || s.contains(char::is_whitespace)
                        {
                            return Err(err(key, &format!("{item} is not one sbatch option; write each as \"--name\" or \"--name=value\" without spaces")));
                        }
                        spec.extra.push(s.to_string());
                    }
                }
                other => {
                    let nearest = SLURM_KEYS
                        .iter()
                        .min_by_key(|k| strsim::levenshtein(k, other))
                        .copied()
                        .unwrap_or("partition");
                    return Err(err(
                        other,
                        &format!(
                            "not a [sweep.slurm] key; did you mean `{nearest}`? (keys: {})",
                            SLURM_KEYS.join(", ")
                        ),
                    ));
                }
            }
        }
        spec.exclusive_pairs(table)?;
        Ok(spec)
    }

    /// GPUs each trial asks for, whichever key said so.
    pub fn gpus(&self) -> usize {
        self.gpus_per_task.unwrap_or(self.gpus_per_trial)
    }

    /// SLURM refuses `--mem` with `--mem-per-gpu` and `--cpus-per-task` with `--cpus-per-gpu`;
    /// vitrun says so before sbatch does, and per-GPU keys need GPUs.
    fn exclusive_pairs(&self, table: &toml::Table) -> Result<(), SlurmError> {
        let pairs = [
            ("mem", "mem_per_gpu"),
            ("cpus_per_trial", "cpus_per_gpu"),
            ("gpus_per_trial", "gpus_per_task"),
        ];
        for (a, b) in pairs {
            if table.contains_key(a) && table.contains_key(b) {
                return Err(err(
                    b,
                    &format!("set either `{a}` or `{b}`, not both (SLURM takes one of them)"),
                ));
            }
        }
        for key in ["mem_per_gpu", "cpus_per_gpu"] {
            if table.contains_key(key) && self.gpus() == 0 {
                return Err(err(key, "asks for something per GPU but the trial asks for none; set gpus_per_trial (or gpus_per_task), or use mem / cpus_per_trial"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_times_and_memory_are_checked() {
        for ok in ["30", "30:00", "4:00:00", "2-00", "2-12:30", "1-00:00:00"] {
            assert!(is_slurm_time(ok), "{ok}");
        }
        for bad in ["", "1h", "1:2:3:4", "-1", "2-", "4:00\n#SBATCH --x"] {
            assert!(!is_slurm_time(bad), "{bad}");
        }
        assert!(
            is_slurm_mem("16G")
                && is_slurm_mem("8000")
                && !is_slurm_mem("0")
                && !is_slurm_mem("16GB")
        );
    }

    #[test]
    fn a_value_cannot_break_out_of_its_sbatch_line() {
        let table: toml::Table = toml::from_str("partition = \"gpu\\n#SBATCH --uid=0\"").unwrap();
        let (key, why) = SlurmSpec::parse(&table).unwrap_err();
        assert_eq!(key, "slurm.partition");
        assert!(why.contains("characters"), "{why}");
        let table: toml::Table = toml::from_str("partiton = \"gpu\"").unwrap();
        let (key, why) = SlurmSpec::parse(&table).unwrap_err();
        assert_eq!(key, "slurm.partiton");
        assert!(why.contains("`partition`"), "{why}");
    }
}
