//! The planner: grid, zip and random expansion, validation of every point, id stability, and
//! growing a grid keeping the old trials' ids.

use std::path::PathBuf;

use vitrun::config::load_with_env;
use vitrun::plan::{plan, Plan};

fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exp.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn plan_of(text: &str) -> Result<Plan, String> {
    let (_dir, path) = write(text);
    let loaded = load_with_env(&path, &[], Vec::new()).map_err(|e| e.to_string())?;
    plan(&loaded).map_err(|e| e.to_string())
}

fn plan_err(text: &str) -> String {
    match plan_of(text) {
        Ok(p) => panic!(
            "expected an error, got {} trials for:\n{text}",
            p.trials.len()
        ),
        Err(e) => e,
    }
}

fn values(p: &Plan, key: &str) -> Vec<String> {
    p.trials
        .iter()
        .map(|t| {
            t.point
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.to_string())
                .unwrap()
        })
        .collect()
}

#[test]
fn grid_is_the_cartesian_product_last_axis_fastest() {
    let p = plan_of(
        "name = \"g\"\n[sweep]\n\"optimizer.lr\" = [1e-4, 5e-4, 1e-3]\n\"train.batch_size\" = [16, 32]\n",
    )
    .unwrap();
    assert_eq!(p.trials.len(), 6);
    assert_eq!(p.axes, ["optimizer.lr", "train.batch_size"]);
    assert_eq!(
        values(&p, "train.batch_size"),
        ["16", "32", "16", "32", "16", "32"]
    );
    let lrs: Vec<f64> = p.trials.iter().map(|t| t.config.optimizer.lr).collect();
    assert_eq!(lrs, [1e-4, 1e-4, 5e-4, 5e-4, 1e-3, 1e-3]);
    assert_eq!(p.trials[3].config.train.batch_size, 32);
    let ids: std::collections::HashSet<_> = p.trials.iter().map(|t| &t.id).collect();
    assert_eq!(ids.len(), 6);
}

#[test]
fn zip_axes_vary_together_and_multiply_with_the_grid() {
    let p = plan_of(
        "name = \"z\"\n[sweep]\n\"optimizer.lr\" = [1e-4, 1e-3]\n[[sweep.zip]]\n\"model.embed_dim\" = [96, 192]\n\"model.num_heads\" = [3, 6]\n",
    )
    .unwrap();
    assert_eq!(p.trials.len(), 4);
    for t in &p.trials {
        let m = &t.config.model;
        assert_eq!(
            m.embed_dim.unwrap() / m.num_heads.unwrap(),
            32,
            "zipped pairs stay paired"
        );
    }
}

#[test]
fn random_axes_are_seeded_in_range_and_stable_as_samples_grow() {
    let text = |samples: usize, seed: u64| {
        format!(
            "name = \"r\"\n[sweep]\nsamples = {samples}\nseed = {seed}\n\"optimizer.lr\" = {{ log_uniform = [1e-5, 1e-2] }}\n\"optimizer.weight_decay\" = {{ uniform = [0.0, 0.1] }}\n\"model.pooling\" = {{ choice = [\"cls\", \"mean\"] }}\n"
        )
    };
    let a = plan_of(&text(8, 1)).unwrap();
    assert_eq!(a.trials.len(), 8);
    for t in &a.trials {
        let o = &t.config.optimizer;
        assert!((1e-5..1e-2).contains(&o.lr), "{}", o.lr);
        assert!((0.0..0.1).contains(&o.weight_decay));
    }
    let lrs: Vec<f64> = a.trials.iter().map(|t| t.config.optimizer.lr).collect();
    assert!(
        lrs.iter().any(|&l| l < 1e-4) && lrs.iter().any(|&l| l > 1e-4),
        "log-uniform spreads over decades: {lrs:?}"
    );
    let pools = values(&a, "model.pooling");
    assert!(pools.contains(&"\"cls\"".to_string()) && pools.contains(&"\"mean\"".to_string()));
    let again = plan_of(&text(8, 1)).unwrap();
    let ids = |p: &Plan| p.trials.iter().map(|t| t.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&a), ids(&again), "same file, same trials");
    let grown = plan_of(&text(12, 1)).unwrap();
    assert_eq!(
        ids(&grown)[..8],
        ids(&a)[..],
        "more samples keep the earlier draws"
    );
    let other = plan_of(&text(8, 2)).unwrap();
    assert_ne!(ids(&other), ids(&a), "another seed draws other points");
}

#[test]
fn growing_an_axis_keeps_the_old_ids() {
    let small = plan_of("name = \"grow\"\n[sweep]\n\"optimizer.lr\" = [1e-4, 1e-3]\n").unwrap();
    let big = plan_of(
        "name = \"grow\"\n[sweep]\n\"optimizer.lr\" = [0.0001, 0.001, 3e-3]\nmax_retries = 2\n",
    )
    .unwrap();
    let ids = |p: &Plan| p.trials.iter().map(|t| t.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&big)[..2], ids(&small)[..]);
    assert_eq!(big.trials.len(), 3);
}

#[test]
fn sweep_ids_match_the_same_config_written_out() {
    let p = plan_of("name = \"same\"\n[sweep]\n\"optimizer.lr\" = [1e-3]\n\"model.depth\" = [4]\n")
        .unwrap();
    let (_dir, path) = write("name = \"same\"\n[model]\ndepth = 4\n[optimizer]\nlr = 0.001\n");
    let direct = load_with_env(&path, &[], Vec::new())
        .unwrap()
        .config
        .trial_id();
    assert_eq!(
        p.trials[0].id, direct,
        "a swept point and a hand-written file are one trial"
    );
}

#[test]
fn points_that_resolve_to_the_same_config_are_one_trial() {
    let p = plan_of("name = \"dup\"\n[sweep]\n\"optimizer.lr\" = [1e-3, 0.001, 1e-3]\n").unwrap();
    assert_eq!((p.points, p.trials.len()), (3, 1));
}

#[test]
fn a_bad_point_is_an_error_before_anything_runs() {
    let e = plan_err("name = \"bad\"\n[sweep]\n\"optimizer.lr\" = [1e-3, 0.0]\n");
    assert!(
        e.contains("exp.toml:3")
            && e.contains("sweep.optimizer.lr")
            && e.contains("value 0.0 is invalid"),
        "{e}"
    );
    let e = plan_err(
        "name = \"bad\"\n[model]\nnum_heads = 3\n[sweep]\n\"model.embed_dim\" = [96, 100]\n",
    );
    assert!(
        e.contains("sweep.model.embed_dim") && e.contains("value 100"),
        "{e}"
    );
    let e = plan_err("name = \"bad\"\n[model]\nnum_heads = 4\n[sweep]\n\"model.embed_dim\" = [96, 128]\n\"model.num_heads\" = [3, 4]\n");
    assert!(
        e.contains("exp.toml:4")
            && e.contains("the point model.embed_dim=128, model.num_heads=3 is invalid")
            && e.contains("divisible"),
        "{e}"
    );
    let zipped = plan_of("name = \"ok\"\n[[sweep.zip]]\n\"model.embed_dim\" = [96, 128]\n\"model.num_heads\" = [3, 4]\n");
    assert_eq!(
        zipped.unwrap().trials.len(),
        2,
        "values valid only together are fine when zipped"
    );
    let e = plan_err(
        "name = \"bad\"\n[sweep]\n\"model.dropout\" = { uniform = [0.5, 1.5] }\nsamples = 40\n",
    );
    assert!(
        e.contains("sweep.model.dropout") && e.contains("is invalid"),
        "{e}"
    );
}

#[test]
fn early_stop_table_is_checked() {
    let e = plan_err("name = \"e\"\n[sweep]\n\"optimizer.lr\" = [1e-3]\n[sweep.early_stop]\nrule = \"hyperband\"\n");
    assert!(
        e.contains("sweep.early_stop.rule") && e.contains("\"median\""),
        "{e}"
    );
    let e = plan_err("name = \"e\"\n[sweep]\n\"optimizer.lr\" = [1e-3]\n[sweep.early_stop]\nrule = \"asha\"\nrungs = [2, 1]\n");
    assert!(
        e.contains("sweep.early_stop.rungs") && e.contains("increasing"),
        "{e}"
    );
    let e = plan_err("name = \"e\"\n[sweep]\n\"optimizer.lr\" = [1e-3]\n[sweep.early_stop]\nrule = \"asha\"\nmetric = \"val/acc\"\n");
    assert!(e.contains("val/top1"), "{e}");
    // Another task's metric is never logged, so it could never stop a trial.
    let e = plan_err("name = \"e\"\n[sweep]\n\"optimizer.lr\" = [1e-3]\n[sweep.early_stop]\nrule = \"asha\"\nmetric = \"val/miou\"\n");
    assert!(
        e.contains("one of the metrics a \"classification\" trial logs:")
            && e.contains("val/top1")
            && !e.contains("val/miou,"),
        "{e}"
    );
    let detection = "name = \"d\"\n[data]\ndataset = \"synthetic_scenes\"\n[head]\ntask = \"detection\"\n[sweep]\n\"optimizer.lr\" = [1e-3]\n[sweep.early_stop]\nrule = \"asha\"\n";
    let p = plan_of(&format!("{detection}metric = \"val/map\"\n")).unwrap();
    assert_eq!(p.trials.len(), 1);
    let e = plan_err(&format!("{detection}metric = \"val/top1\"\n"));
    assert!(e.contains("val/map50"), "{e}");
    let e = plan_err("name = \"e\"\n[sweep]\n\"optimizer.lr\" = [1e-3]\n[sweep.early_stop]\nrule = \"median\"\nmin_epoch = 2\n");
    assert!(e.contains("did you mean `min_epochs`"), "{e}");
}

#[test]
fn seed_list_is_an_axis_and_seed_number_seeds_the_draws() {
    let p = plan_of("name = \"s\"\n[sweep]\nseed = [1, 2, 3]\n").unwrap();
    let seeds: Vec<u64> = p.trials.iter().map(|t| t.config.seed).collect();
    assert_eq!(seeds, [1, 2, 3]);
    let p = plan_of("name = \"s\"\n[sweep]\nseed = 5\n\"optimizer.lr\" = [1e-3]\n").unwrap();
    assert_eq!((p.trials.len(), p.trials[0].config.seed), (1, 0));
}

#[test]
fn a_file_without_a_sweep_is_one_trial() {
    let p = plan_of("name = \"one\"\n").unwrap();
    assert_eq!(p.trials.len(), 1);
    assert!(p.trials[0].point.is_empty());
}

/// A planned trial's config carries the sweep's table (a cluster task reads its early-stopping
/// rule back from the config snapshot), though a point is resolved without it.
#[test]
fn planned_trials_carry_the_sweep_table() {
    let (_dir, path) = write(
        "name = \"s\"\n[sweep]\n\"optimizer.lr\" = [1e-4, 1e-3]\n[sweep.early_stop]\nrule = \"median\"\n",
    );
    let loaded = load_with_env(&path, &[], Vec::new()).unwrap();
    let p = plan(&loaded).unwrap();
    assert!(loaded.config.sweep.is_some());
    for t in &p.trials {
        assert_eq!(t.config.sweep, loaded.config.sweep);
    }
}
