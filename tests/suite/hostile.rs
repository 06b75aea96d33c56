//! Hostile surroundings of a command: a non-UTF-8 environment, a store from a newer vitrun, a
//! FIFO as the experiment file, escape sequences in stored strings. Each gets a named error
//! or a safe rendering, never a panic, a hang or a write.

use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use crate::common::{config, micro, text, vitrun};

#[test]
fn a_non_utf8_environment_variable_does_not_stop_a_command() {
    let out = vitrun(&["check", config("micro.toml").to_str().unwrap()])
        .env("OLDPWD", std::ffi::OsStr::from_bytes(b"/tmp/\xff\xfe"))
        .env(std::ffi::OsStr::from_bytes(b"LC_\xff"), "x")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // A VITRUN_ variable is configuration: one that is not UTF-8 is named, not ignored.
    let out = vitrun(&["check", config("micro.toml").to_str().unwrap()])
        .env("VITRUN_TRAIN__EPOCHS", std::ffi::OsStr::from_bytes(b"\xff"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("VITRUN_TRAIN__EPOCHS"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_store_from_a_newer_vitrun_is_refused_and_left_as_it_was() {
    let runs = tempfile::tempdir().unwrap();
    assert!(micro(runs.path(), &[]).status.success());
    let db = runs.path().join("vitrun.sqlite");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.pragma_update(None, "user_version", 99).unwrap();
    c.pragma_update(None, "journal_mode", "DELETE").unwrap();
    drop(c);
    let before = std::fs::read(&db).unwrap();
    let out = vitrun(&["ls", "--runs-dir", runs.path().to_str().unwrap()])
        .output()
        .unwrap();
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains("schema version 99") && msg.contains("newer") && msg.contains("vitrun.sqlite"),
        "{msg}"
    );
    assert!(
        std::fs::read(&db).unwrap() == before,
        "the store was written"
    );
}

#[test]
fn a_fifo_as_the_experiment_file_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("exp.toml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let started = Instant::now();
    let out = vitrun(&["check", fifo.to_str().unwrap()]).output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(20));
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains("exp.toml") && msg.contains("regular file"),
        "{msg}"
    );
}

#[test]
fn escape_sequences_in_stored_strings_never_reach_the_terminal() {
    let runs = tempfile::tempdir().unwrap();
    assert!(micro(runs.path(), &[]).status.success());
    let c = rusqlite::Connection::open(runs.path().join("vitrun.sqlite")).unwrap();
    c.execute(
        "UPDATE trials SET device = 'cpu\u{1b}]0;pwned\u{7}\u{1b}[2J', error = 'x\u{1b}[31m'",
        [],
    )
    .unwrap();
    drop(c);
    let out = vitrun(&["ls", "--runs-dir", runs.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!out.stdout.contains(&0x1b), "{}", text(&out));
    assert!(!out.stdout.contains(&0x07));
    assert!(
        text(&out).contains("pwned"),
        "shown, made harmless: {}",
        text(&out)
    );
}

#[test]
fn a_stored_config_that_breaks_the_rules_is_named_by_report_and_diff() {
    let runs = tempfile::tempdir().unwrap();
    assert!(micro(runs.path(), &[]).status.success());
    let c = rusqlite::Connection::open(runs.path().join("vitrun.sqlite")).unwrap();
    let id: String = c
        .query_row("SELECT id FROM trials", [], |r| r.get(0))
        .unwrap();
    let changed = c
        .execute(
            "UPDATE trials SET config = json_set(config, '$.model.patch_size', 0)",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(c);
    let dir = runs.path().to_str().unwrap();
    for args in [
        vec!["report", &id[..], "--runs-dir", dir],
        vec!["diff", &id[..], &id[..], "--runs-dir", dir],
    ] {
        let out = vitrun(&args).output().unwrap();
        let msg = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {msg}");
        assert!(
            msg.contains(&id) && msg.contains("patch_size") && !msg.contains("panicked"),
            "{args:?}: {msg}"
        );
    }
}

/// `vitrun ARGS` as another host would run it: a UTS namespace with its own hostname, the
/// store taken for one on a network filesystem. `None` when namespaces are not allowed here.
fn on_other_host(args: &[&str]) -> Option<std::process::Output> {
    let exe = env!("CARGO_BIN_EXE_vitrun");
    let out = std::process::Command::new("unshare")
        .args([
            "--uts",
            "sh",
            "-c",
            "hostname login-2 && exec \"$0\" \"$@\"",
            exe,
        ])
        .args(args)
        .env("VITRUN_STORE_FS", "network")
        .output()
        .ok()?;
    let t = text(&out);
    (!t.contains("unshare failed") && !t.contains("Operation not permitted")).then_some(out)
}

#[test]
fn on_a_network_filesystem_one_host_writes_the_store_and_another_is_refused_by_name() {
    let runs = tempfile::tempdir().unwrap();
    let out = crate::common::micro_command(runs.path(), &[])
        .env("VITRUN_STORE_FS", "network")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let db = runs.path().join("vitrun.sqlite");
    let lease = runs.path().join("vitrun.sqlite.host");
    let holder = std::fs::read_to_string(&lease).unwrap();
    let here = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert!(holder.starts_with(here.trim()), "{holder}");
    let c = rusqlite::Connection::open(&db).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete", "no WAL on a network filesystem");
    drop(c);
    let before = std::fs::read(&db).unwrap();

    let dir = runs.path().to_str().unwrap();
    let Some(out) = on_other_host(&["ls", "--runs-dir", dir]) else {
        eprintln!("skipped: unshare --uts is not allowed here");
        return;
    };
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains(&format!("host {}", here.trim()))
            && msg.contains("cannot be written from this host"),
        "{msg}"
    );
    assert!(
        std::fs::read(&db).unwrap() == before,
        "the refused host wrote the store"
    );

    // Once the first host has been quiet past the lease, the other takes the store over.
    let parts: Vec<&str> = holder.split_whitespace().collect();
    let lapsed = format!("{} {} {}\n", parts[0], parts[1], 0);
    std::fs::write(&lease, lapsed).unwrap();
    let out = on_other_host(&["ls", "--runs-dir", dir]).unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(std::fs::read_to_string(&lease)
        .unwrap()
        .starts_with("login-2 "));
    let refused = crate::common::micro_command(runs.path(), &["--force"])
        .env("VITRUN_STORE_FS", "network")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused).contains("host login-2"),
        "{}",
        text(&refused)
    );
}

#[test]
fn a_device_this_build_lacks_is_named_with_the_file_and_where_it_was_set() {
    if vitrun::train::backend::HAS_GPU_BACKEND {
        return;
    }
    let runs = tempfile::tempdir().unwrap();
    for command in ["check", "run"] {
        let file = config("micro.toml");
        let mut args = vec![
            command,
            file.to_str().unwrap(),
            "--set",
            "train.device=\"cuda:0\"",
        ];
        let set = crate::common::runs_set(runs.path());
        if command == "run" {
            args.extend(["--set", &set]);
        }
        let out = vitrun(&args).output().unwrap();
        let msg = text(&out);
        assert_eq!(out.status.code(), Some(1), "{msg}");
        assert!(
            msg.contains("micro.toml")
                && msg.contains("from --set")
                && msg.contains("--features cuda"),
            "{command}: {msg}"
        );
    }
}
