//! The `sbatch` script of a job array: one `#SBATCH` line per resource, then the array task.

use std::path::Path;

use crate::config::SlurmSpec;

/// What the script is made of.
pub struct Script<'a> {
    pub experiment: &'a str,
    pub tasks: usize,
    /// The submission folder (absolute): plan, script and SLURM's own output per task.
    pub dir: &'a Path,
    /// Where the tasks start (absolute): the submit command's folder, so relative paths in the
    /// experiment resolve as they did there.
    pub workdir: &'a Path,
    pub exe: &'a Path,
    pub slurm: &'a SlurmSpec,
}

/// A path SLURM can take on an `#SBATCH` line (no whitespace or quotes).
pub fn sbatch_path(path: &Path) -> anyhow::Result<String> {
    let s = path.display().to_string();
    anyhow::ensure!(
        !s.contains(|c: char| c.is_whitespace() || "\"'\\$`%".contains(c)),
        "{s}: SLURM cannot take a path with spaces, quotes, $ or % in an #SBATCH line; move the runs folder (train.runs_dir) or the working folder to a path without them"
    );
    Ok(s)
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The script text.
pub fn render(s: &Script<'_>) -> anyhow::Result<String> {
    let dir = sbatch_path(s.dir)?;
    let workdir = sbatch_path(s.workdir)?;
    let slurm = s.slurm;
    let mut array = format!("0-{}", s.tasks.saturating_sub(1));
    if let Some(n) = slurm.max_parallel {
        array.push_str(&format!("%{n}"));
    }
    let mut lines = vec![
        "#!/bin/bash".to_string(),
        format!(
            "# vitrun: {} trials of experiment {}",
            s.tasks, s.experiment
        ),
        format!("#SBATCH --job-name=vitrun.{}", s.experiment),
        format!("#SBATCH --array={array}"),
        "#SBATCH --ntasks=1".into(),
        "#SBATCH --requeue".into(),
        format!("#SBATCH --signal=B:USR2@{}", slurm.signal_seconds),
        format!("#SBATCH --output={dir}/task-%a.out"),
        "#SBATCH --open-mode=append".into(),
        format!("#SBATCH --chdir={workdir}"),
    ];
    lines.push(match slurm.cpus_per_gpu {
        Some(n) => format!("#SBATCH --cpus-per-gpu={n}"),
        None => format!("#SBATCH --cpus-per-task={}", slurm.cpus_per_trial),
    });
    let optional = [
        ("partition", &slurm.partition),
        ("account", &slurm.account),
        ("qos", &slurm.qos),
        ("time", &slurm.time),
        ("mem", &slurm.mem),
        ("mem-per-gpu", &slurm.mem_per_gpu),
        ("constraint", &slurm.constraint),
        ("nodelist", &slurm.nodelist),
        ("exclude", &slurm.exclude),
        ("dependency", &slurm.after),
    ];
    for (key, value) in optional {
        if let Some(v) = value {
            lines.push(format!("#SBATCH --{key}={v}"));
        }
    }
    match slurm.gpus_per_task {
        Some(n) => lines.push(format!("#SBATCH --gpus-per-task={n}")),
        // --gres rather than --gpus: it works with select/cons_res as well as cons_tres.
        None if slurm.gpus_per_trial > 0 => {
            lines.push(format!("#SBATCH --gres=gpu:{}", slurm.gpus_per_trial));
        }
        None => {}
    }
    lines.extend(slurm.extra.iter().map(|e| format!("#SBATCH {e}")));
    // The setup lines run in the batch shell before the trial; one that fails ends the task
    // (its exit status is SLURM's), with the line named in the task's log.
    for line in &slurm.setup {
        lines.push(format!(
            "{line} || {{ echo {} >&2; exit 1; }}",
            quote(&format!("vitrun: [sweep.slurm] setup line failed: {line}"))
        ));
    }
    // exec: the batch shell becomes vitrun, so `--signal=B:USR2` reaches the trial itself.
    lines.push(format!(
        "exec {} array-task {}",
        quote(&s.exe.display().to_string()),
        quote(&dir)
    ));
    Ok(lines.join("\n") + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_asks_for_what_the_file_says() {
        let slurm = SlurmSpec {
            partition: Some("gpu".into()),
            time: Some("4:00:00".into()),
            gpus_per_trial: 1,
            cpus_per_trial: 8,
            max_parallel: Some(4),
            extra: vec!["--exclusive".into()],
            exclude: Some("node[03-04]".into()),
            after: Some("afterok:1234_7".into()),
            setup: vec!["module load cuda/12.4".into()],
            ..SlurmSpec::default()
        };
        let text = render(&Script {
            experiment: "e",
            tasks: 10,
            dir: Path::new("/runs/e/slurm/s1"),
            workdir: Path::new("/work"),
            exe: Path::new("/opt/vitrun"),
            slurm: &slurm,
        })
        .unwrap();
        for line in [
            "#SBATCH --array=0-9%4",
            "#SBATCH --cpus-per-task=8",
            "#SBATCH --gres=gpu:1",
            "#SBATCH --partition=gpu",
            "#SBATCH --time=4:00:00",
            "#SBATCH --signal=B:USR2@120",
            "#SBATCH --requeue",
            "#SBATCH --exclusive",
            "#SBATCH --exclude=node[03-04]",
            "#SBATCH --dependency=afterok:1234_7",
            "module load cuda/12.4 || { echo 'vitrun: [sweep.slurm] setup line failed: module load cuda/12.4' >&2; exit 1; }",
            "exec '/opt/vitrun' array-task '/runs/e/slurm/s1'",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        let err = sbatch_path(Path::new("/my runs/e"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("train.runs_dir"), "{err}");
    }
}
