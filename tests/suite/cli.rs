//! The command line's one habit for the run store: `--runs-dir` on every subcommand,
//! `VITRUN_RUNS_DIR` read by every subcommand, and the store found from a project's subfolder.

use std::path::Path;

use crate::common::vitrun;

/// Every visible subcommand's name, from `vitrun --help`.
fn subcommands() -> Vec<String> {
    let out = vitrun(&["--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        // Printing a completion script touches no store.
        .filter(|c| c != "help" && c != "completions")
        .collect()
}

#[test]
fn every_subcommand_takes_runs_dir() {
    let commands = subcommands();
    assert!(commands.len() >= 15, "{commands:?}");
    for command in commands {
        let out = vitrun(&[&command, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("--runs-dir <DIR>") && help.contains("VITRUN_RUNS_DIR"),
            "`vitrun {command} --help` has no --runs-dir:\n{help}"
        );
    }
}

fn store_at(runs: &Path) {
    std::fs::create_dir_all(runs).unwrap();
    vitrun::track::Store::open(&vitrun::contract::RunsDir::new(runs).store()).unwrap();
}

#[test]
fn the_store_is_found_from_a_subfolder_the_variable_and_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("project");
    let deep = project.join("experiments/ablations");
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::create_dir_all(project.join(".git")).unwrap();
    let ls = |cwd: &Path, extra: &[(&str, &Path)]| {
        let mut cmd = vitrun(&["ls"]);
        cmd.current_dir(cwd);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    // No store yet: the error names ./runs, from where the command ran.
    let out = ls(&deep, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("runs"));

    store_at(&project.join("runs"));
    let out = ls(&deep, &[]);
    assert!(
        out.status.success(),
        "ls from a subfolder reads the project's store: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    assert_eq!(ls(&elsewhere, &[]).status.code(), Some(1));
    let runs = project.join("runs");
    assert!(ls(&elsewhere, &[("VITRUN_RUNS_DIR", &runs)])
        .status
        .success());
    let mut flag = vitrun(&["ls", "--runs-dir", runs.to_str().unwrap()]);
    assert!(flag
        .current_dir(&elsewhere)
        .output()
        .unwrap()
        .status
        .success());

    // An experiment run from the subfolder writes to the same store; check says so.
    let file = deep.join("exp.toml");
    std::fs::write(&file, "name = \"found\"\n").unwrap();
    let check = |cmd: &mut std::process::Command| {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find(|l| l.starts_with("train.runs_dir "))
            .unwrap()
            .to_string()
    };
    let line = check(vitrun(&["check", "exp.toml"]).current_dir(&deep));
    assert!(
        line.contains(&format!("{:?}", runs.display().to_string())),
        "{line}"
    );
    let line = check(
        vitrun(&["check", "exp.toml"])
            .current_dir(&deep)
            .env("VITRUN_RUNS_DIR", "/data/runs"),
    );
    assert!(
        line.contains("\"/data/runs\"") && line.ends_with("# env VITRUN_RUNS_DIR"),
        "{line}"
    );
    let line = check(vitrun(&["check", "exp.toml", "--runs-dir", "/x/runs"]).current_dir(&deep));
    assert!(line.contains("\"/x/runs\""), "{line}");
    let line = check(
        vitrun(&[
            "check",
            "exp.toml",
            "--runs-dir",
            "/x/runs",
            "--set",
            "train.runs_dir=\"/y/runs\"",
        ])
        .current_dir(&deep),
    );
    assert!(
        line.contains("\"/y/runs\""),
        "an explicit --set wins: {line}"
    );
    let out = vitrun(&["check", "exp.toml", "--json", "--set", "optimizer.lr=0.002"])
        .current_dir(&deep)
        .env("VITRUN_RUNS_DIR", "/data/runs")
        .output()
        .unwrap();
    let checked: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(checked["keys"]["optimizer.lr"]["value"], 0.002);
    assert_eq!(checked["keys"]["optimizer.lr"]["source"], "--set");
    assert_eq!(checked["keys"]["name"]["value"], "found");
    assert!(checked["keys"]["name"]["source"]
        .as_str()
        .unwrap()
        .ends_with("exp.toml:1"));
    assert_eq!(checked["keys"]["train.runs_dir"]["value"], "/data/runs");
    assert_eq!(checked["trial_id"].as_str().unwrap().len(), 12);
    let out = vitrun(&["check", "exp.toml", "-q", "--set", "optimizer.lr=0.002"])
        .current_dir(&deep)
        .env("VITRUN_RUNS_DIR", "/data/runs")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}\n", checked["trial_id"].as_str().unwrap())
    );
}

#[test]
fn ls_speaks_json_filters_by_status_and_completions_know_the_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    store_at(&runs);
    let runs = runs.to_str().unwrap();
    let out = vitrun(&["ls", "--runs-dir", runs, "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "[]\n");
    let out = vitrun(&[
        "ls",
        "--runs-dir",
        runs,
        "--status",
        "finished,crashed",
        "--sort",
        "best",
        "--limit",
        "3",
    ])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("# 0 trials\n"));
    // Values are described in plain words, not Rust's parse errors.
    for (args, wanted) in [
        (
            &["ls", "--limit", "ten"][..],
            "for '--limit <N>': expected a whole number ≥ 0",
        ),
        (
            &["serve", "--port", "99999"][..],
            "expected a port number from 0 to 65535",
        ),
        (
            &["report", "--discard", "most"][..],
            "expected a number, such as 0.5",
        ),
    ] {
        let out = vitrun(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(wanted), "{args:?}: {err}");
    }
    let out = vitrun(&["ls", "--runs-dir", runs, "--status", "finnished"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("finnished"), "{err}");
    for shell in ["bash", "zsh", "fish"] {
        let out = vitrun(&["completions", shell]).output().unwrap();
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success()
                && script.contains("--runs-dir")
                && script.contains("export-metrics"),
            "{shell}: {script}"
        );
    }
}

#[test]
fn rm_removes_a_trials_rows_and_folder_and_keeps_a_queued_one() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let runs_set = format!("train.runs_dir={:?}", runs.display().to_string());
    let tiny = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/configs/tiny_synthetic.toml"
    );
    let out = vitrun(&[
        "run",
        tiny,
        "--quiet",
        "--set",
        &runs_set,
        "--set",
        "train.epochs=1",
    ])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = runs.join("vitrun.sqlite");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let id: String = conn
        .query_row("SELECT id FROM trials", [], |r| r.get(0))
        .unwrap();
    let folder = runs.join("tiny_synthetic").join(&id);
    assert!(folder.is_dir());
    let rows = |conn: &rusqlite::Connection| -> i64 {
        [
            "trials WHERE id",
            "metrics WHERE trial",
            "params WHERE trial",
            "events WHERE trial",
            "artifacts WHERE trial",
        ]
        .iter()
        .map(|t| {
            conn.query_row(&format!("SELECT COUNT(*) FROM {t} = ?1"), [&id], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap()
        })
        .sum()
    };
    assert!(rows(&conn) > 10);
    // `ls -q` lists the ids a script pipes into `vitrun rm`.
    let out = vitrun(&["ls", "-q", "--runs-dir", runs.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{id}\n"));
    let rm = |prefix: &str| {
        vitrun(&["rm", prefix, "--runs-dir", runs.to_str().unwrap()])
            .output()
            .unwrap()
    };

    conn.execute("UPDATE trials SET status = 'queued'", [])
        .unwrap();
    let out = rm(&id);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("kept trial"),
        "{out:?}"
    );
    assert!(
        rows(&conn) > 10 && folder.is_dir(),
        "a queued trial is kept whole"
    );

    conn.execute("UPDATE trials SET status = 'finished'", [])
        .unwrap();
    let out = rm(&id[..6]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("removed trial {id}")));
    assert_eq!(rows(&conn), 0, "no row names it");
    assert!(!folder.exists(), "its folder is gone");
    let again = rm(&id);
    assert_eq!(again.status.code(), Some(1), "an unknown trial is an error");
}
