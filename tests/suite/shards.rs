//! Cluster shards without a cluster: what a trial on a node writes folds into the same rows a
//! direct store write gives, folding is idempotent (twice, or while growing), a torn last
//! record waits, and early stopping judged from shards matches the store's judgement.

use std::path::Path;

use vitrun::config::{StopCriterion, StopRule};
use vitrun::contract::{Artifact, Event, Goal, Status};
use vitrun::track::shard::{self, ShardView};
use vitrun::track::{
    find_shards, JobRecord, MetricRow, PeerSnapshot, Recorder, ShardRecorder, Store, TrialStart,
};
use vitrun::train::{EpochGate, Judge};

fn start(id: &str) -> TrialStart {
    TrialStart {
        id: id.into(),
        experiment: "exp".into(),
        file: "exp.toml".into(),
        config_json: "{}".into(),
        seed: 1,
        params: vec![("optimizer.lr".into(), "0.001".into())],
        device: "cpu".into(),
        main_metric: "top1".into(),
    }
}

fn val_loss(epoch: i64, value: f64) -> MetricRow {
    MetricRow {
        split: "val".into(),
        name: "loss".into(),
        step: epoch * 10,
        epoch,
        value,
        wall_time: 1000.0 + epoch as f64,
    }
}

/// A whole trial's life through any recorder.
fn write_trial(r: &mut dyn Recorder, id: &str, losses: &[f64]) {
    r.claim(&start(id), false, true).unwrap();
    r.clear_metrics(id).unwrap();
    for (i, v) in losses.iter().enumerate() {
        r.log_metrics(id, &[val_loss(i as i64 + 1, *v)]).unwrap();
        r.log_event(id, Event::Note, &format!("epoch {}", i + 1))
            .unwrap();
    }
    r.add_artifact(
        id,
        Artifact::CheckpointLast,
        Path::new("last/model.safetensors"),
    )
    .unwrap();
    r.set_status(id, Status::Finished, None).unwrap();
}

/// Every row of the tables a fold writes, minus times the two paths stamp differently.
fn dump(store: &Path) -> Vec<String> {
    let c = rusqlite::Connection::open(store).unwrap();
    let mut out = Vec::new();
    for sql in [
        "SELECT id, experiment, status, attempts, device, error FROM trials ORDER BY id",
        "SELECT trial, key, value FROM params ORDER BY trial, key",
        "SELECT trial, split, name, step, epoch, value FROM metrics ORDER BY trial, split, name, step",
        "SELECT trial, kind, path FROM artifacts ORDER BY trial, kind, path",
        "SELECT trial, kind, message FROM events ORDER BY trial, rowid",
    ] {
        let mut stmt = c.prepare(sql).unwrap();
        let n = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                Ok((0..n)
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect::<Vec<_>>()
                    .join("|"))
            })
            .unwrap();
        out.extend(rows.map(|r| r.unwrap()));
    }
    out
}

#[test]
fn a_folded_shard_gives_the_rows_a_direct_write_gives_and_folding_again_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let direct = dir.path().join("direct.sqlite");
    write_trial(&mut Store::open(&direct).unwrap(), "t1", &[0.9, 0.5, 0.4]);

    let runs = dir.path().join("runs");
    let mut rec = ShardRecorder::new(
        &runs.join("exp"),
        "t1",
        Some("7_0".into()),
        PeerSnapshot::default(),
    );
    write_trial(&mut rec, "t1", &[0.9, 0.5, 0.4]);
    let store_path = runs.join("vitrun.sqlite");
    let first = vitrun::track::sync(&runs).unwrap().unwrap();
    assert_eq!((first.shards, first.grown), (1, 1));
    assert!(first.records >= 9, "{first:?}");
    let once = dump(&store_path);
    assert_eq!(once, dump(&direct));
    let again = vitrun::track::sync(&runs).unwrap().unwrap();
    assert_eq!((again.grown, again.records), (0, 0));
    assert_eq!(dump(&store_path), once);

    // The same shard folded by a store that forgot how far it read: still the same rows.
    let c = rusqlite::Connection::open(&store_path).unwrap();
    c.execute("DELETE FROM shard_progress", []).unwrap();
    let mut store = Store::open(&store_path).unwrap();
    store.fold_shards(&find_shards(&runs)).unwrap();
    assert_eq!(
        dump(&store_path)[1..],
        once[1..],
        "only the attempt count may grow"
    );

    // The row remembers its array task until a local process claims the trial again.
    let mut store = Store::open(&store_path).unwrap();
    assert_eq!(
        store.trial_states_of("t1").unwrap().unwrap().job.as_deref(),
        Some("7_0")
    );
    store.claim_trial(&start("t1"), false, false).unwrap();
    assert_eq!(store.trial_states_of("t1").unwrap().unwrap().job, None);
}

#[test]
fn a_growing_shard_folds_to_the_same_rows_and_a_torn_record_waits() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let mut whole = ShardRecorder::new(&runs.join("exp"), "t1", None, PeerSnapshot::default());
    write_trial(&mut whole, "t1", &[0.9, 0.5, 0.4]);
    let shard_file = shard::attempts(&runs.join("exp/t1")).remove(0);
    let bytes = std::fs::read(&shard_file).unwrap();
    vitrun::track::sync(&runs).unwrap();
    let at_once = dump(&runs.join("vitrun.sqlite"));

    let grow = dir.path().join("grow");
    let target = grow
        .join("exp/t1/shards")
        .join(shard_file.file_name().unwrap());
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    // Cut mid-record (a torn write), fold, then let the writer finish and fold again.
    let cut = bytes.len() * 2 / 3;
    std::fs::write(&target, &bytes[..cut]).unwrap();
    let partial = vitrun::track::sync(&grow).unwrap().unwrap();
    let complete_lines = bytes[..cut].iter().filter(|b| **b == b'\n').count();
    assert_eq!(
        partial.records, complete_lines,
        "the torn record is not folded"
    );
    std::fs::write(&target, &bytes).unwrap();
    vitrun::track::sync(&grow).unwrap();
    vitrun::track::sync(&grow).unwrap();
    assert_eq!(dump(&grow.join("vitrun.sqlite")), at_once);
}

#[test]
fn a_shard_damaged_before_its_end_is_named_and_the_others_still_fold() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    for id in ["good", "bad"] {
        let mut r = ShardRecorder::new(&runs.join("exp"), id, None, PeerSnapshot::default());
        write_trial(&mut r, id, &[0.5, 0.4]);
    }
    let bad = shard::attempts(&runs.join("exp/bad")).remove(0);
    let mut bytes = std::fs::read(&bad).unwrap();
    bytes[12] ^= 0x01; // one bit inside the first record's JSON: CRC-32 catches every single-bit error
    std::fs::write(&bad, bytes).unwrap();
    let report = vitrun::track::sync(&runs).unwrap().unwrap();
    assert_eq!(report.problems.len(), 1, "{report:?}");
    assert!(
        report.problems[0].contains(&bad.display().to_string()),
        "{}",
        report.problems[0]
    );
    let store = Store::open(&runs.join("vitrun.sqlite")).unwrap();
    assert_eq!(store.status("good").unwrap(), Some(Status::Finished));
    assert_eq!(store.status("bad").unwrap(), None);
}

fn asha() -> StopCriterion {
    StopCriterion {
        rule: StopRule::Asha {
            rungs: vec![1, 2],
            reduction_factor: 2,
        },
        metric: "val/loss".into(),
        goal: Goal::Minimize,
    }
}

#[test]
fn early_stopping_from_shards_decides_as_the_store_does() {
    // Peers' val losses per epoch: some ran locally (store only), some on nodes (shards).
    let peers: [(&str, &[f64]); 4] = [
        ("a", &[0.9, 0.6]),
        ("b", &[0.7, 0.3]),
        ("c", &[0.8, 0.8]),
        ("d", &[0.95, 0.2]),
    ];
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("local.sqlite");
    let mut store = Store::open(&store_path).unwrap();
    let members: Vec<String> = peers
        .iter()
        .map(|(id, _)| id.to_string())
        .chain(["me".into()])
        .collect();
    store
        .register_sweep(
            "s",
            "exp",
            "exp.toml",
            &members
                .iter()
                .map(|id| vitrun::track::QueuedTrial {
                    id: id.clone(),
                    config_json: "{}".into(),
                    seed: 0,
                })
                .collect::<Vec<_>>(),
        )
        .unwrap();
    for (id, losses) in &peers {
        write_trial(&mut store, id, losses);
    }
    // On the cluster, a and b have shards (and rung summaries); c and d were done locally
    // before (the snapshot).
    let runs = dir.path().join("runs");
    let mut local_only = Store::open(&dir.path().join("snapshot.sqlite")).unwrap();
    for (id, losses) in &peers[2..] {
        write_trial(&mut local_only, id, losses);
    }
    let snapshot =
        PeerSnapshot::from_store(&local_only, "s", members.clone(), Some("val/loss")).unwrap();
    for (id, losses) in &peers[..2] {
        let mut r = ShardRecorder::new(&runs.join("exp"), id, None, snapshot.clone());
        write_trial(&mut r, id, losses);
    }
    assert_eq!(
        std::fs::read_dir(runs.join("exp/rungs/val-loss/2"))
            .unwrap()
            .count(),
        2,
        "one summary per trial at the rung"
    );
    let median = StopCriterion {
        rule: StopRule::Median {
            min_epochs: 1,
            min_trials: 2,
        },
        ..asha()
    };

    for (mine, rule) in [[0.85, 0.25], [0.75, 0.7], [0.99, 0.99]]
        .into_iter()
        .flat_map(|m| [(m, asha()), (m, median.clone())])
    {
        let mut verdicts = Vec::new();
        let mut node = ShardRecorder::new(&runs.join("exp"), "me", None, snapshot.clone());
        let recorders: [&mut dyn Recorder; 2] = [&mut store, &mut node];
        for r in recorders {
            r.claim(&start("me"), false, false).unwrap();
            r.clear_metrics("me").unwrap();
            let mut judge = Judge {
                sweep: "s".into(),
                rule: rule.clone(),
            };
            let mut said = Vec::new();
            for (e, v) in mine.iter().enumerate() {
                r.log_metrics("me", &[val_loss(e as i64 + 1, *v)]).unwrap();
                said.push(judge.after_epoch(r, "me", e + 1).unwrap());
            }
            verdicts.push(said);
        }
        assert_eq!(verdicts[0], verdicts[1], "losses {mine:?}");
        if mine[0] > 0.95 && matches!(rule.rule, StopRule::Asha { .. }) {
            assert!(
                verdicts[0][0]
                    .as_deref()
                    .is_some_and(|r| r.contains("pruned")),
                "{verdicts:?}"
            );
        }
    }
    let view = ShardView::read(&runs.join("exp/me")).unwrap();
    assert_eq!(view.attempts, 6);
}

#[test]
fn a_value_neither_recorder_can_hold_is_refused_by_both_and_the_shard_stays_readable() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    let runs = dir.path().join("runs");
    let mut node = ShardRecorder::new(&runs.join("exp"), "t1", None, PeerSnapshot::default());
    let recorders: [&mut dyn Recorder; 2] = [&mut store, &mut node];
    for r in recorders {
        r.claim(&start("t1"), false, false).unwrap();
        r.log_metrics("t1", &[val_loss(1, 0.5)]).unwrap();
        assert!(r.log_metrics("t1", &[val_loss(2, f64::NAN)]).is_err());
        r.log_metrics("t1", &[val_loss(3, 0.3)]).unwrap();
    }
    let report = vitrun::track::sync(&runs).unwrap().unwrap();
    assert!(report.problems.is_empty(), "{report:?}");
    assert_eq!(
        ShardView::read(&runs.join("exp/t1"))
            .unwrap()
            .values("val/loss", 9, false),
        vec![0.5, 0.3]
    );
}

/// `vitrun status` lists each experiment once, also when its submissions interleave with
/// another experiment's (a repeat that is not adjacent is still a repeat).
#[test]
fn status_lists_each_experiment_once_when_submissions_interleave() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    std::fs::create_dir_all(&runs).unwrap();
    let mut store = Store::open(&runs.join("vitrun.sqlite")).unwrap();
    for (i, experiment) in ["alpha", "beta", "alpha", "beta"].iter().enumerate() {
        store
            .claim_trial(
                &TrialStart {
                    experiment: experiment.to_string(),
                    ..start(&format!("{experiment}{i}"))
                },
                false,
                false,
            )
            .unwrap();
        let job = JobRecord {
            job: format!("{}", 100 + i),
            experiment: experiment.to_string(),
            sweep: experiment.to_string(),
            dir: format!("runs/{experiment}/slurm/{}", 100 + i),
            tasks: 0,
            submitted_at: format!("2026-01-0{}T00:00:00Z", i + 1),
            cancelled_at: None,
        };
        store.record_job(&job, &[]).unwrap();
    }
    drop(store);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vitrun"))
        .args(["status", "--runs-dir", runs.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tables = text.lines().filter(|l| l.starts_with("trial ")).count();
    assert_eq!(tables, 2, "one table per experiment:\n{text}");
    for experiment in ["alpha", "beta"] {
        let jobs = text
            .lines()
            .filter(|l| l.starts_with(&format!("# {experiment}: job")))
            .count();
        assert_eq!(
            jobs, 2,
            "{experiment}'s two submissions, once each:\n{text}"
        );
    }
}

#[test]
fn another_spelling_of_the_runs_folder_or_a_forgetful_store_never_replays_an_older_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let mut rec = ShardRecorder::new(
        &runs.join("exp"),
        "t1",
        Some("7_0".into()),
        PeerSnapshot::default(),
    );
    write_trial(&mut rec, "t1", &[0.9, 0.5, 0.4]);
    vitrun::track::sync(&runs).unwrap().unwrap();
    // The trial runs again on this host (a second attempt written directly), with other values.
    let store_path = runs.join("vitrun.sqlite");
    let mut store = Store::open(&store_path).unwrap();
    let claim = store.claim(&start("t1"), false, false).unwrap();
    assert!(
        matches!(claim, vitrun::track::Claim::Taken { attempt: 2 }),
        "{claim:?}"
    );
    store.clear_metrics("t1").unwrap();
    store
        .log_metrics("t1", &[val_loss(1, 0.8), val_loss(2, 0.3)])
        .unwrap();
    store.set_status("t1", Status::Finished, None).unwrap();
    drop(store);
    let newest = dump(&store_path);
    assert!(newest[0].contains("Integer(2)"), "{newest:?}");
    assert!(newest.iter().any(|r| r.contains("Real(0.3)")), "{newest:?}");

    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&runs, &link).unwrap();
    let spellings = [
        runs.clone(),
        dir.path().join("runs/../runs"),
        dir.path().join("./runs/"),
        link.clone(),
        link.join("."),
    ];
    for spelling in &spellings {
        vitrun::track::sync(spelling).unwrap();
        assert_eq!(
            dump(&store_path),
            newest,
            "folded as {}",
            spelling.display()
        );
    }
    // Even a store that lost how far it read each shard does not put the first attempt's
    // records over the second's.
    let c = rusqlite::Connection::open(&store_path).unwrap();
    c.execute("DELETE FROM shard_progress", []).unwrap();
    drop(c);
    vitrun::track::sync(&link).unwrap();
    assert_eq!(dump(&store_path), newest);
}
