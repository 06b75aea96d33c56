//! Experiment files that compose (`extends`), a sweep axis over fragment files, and every
//! `[sweep]` key from `--set` and the environment.

use std::path::{Path, PathBuf};

use vitrun::config::{
    load_with_env, Loaded, Method, Place, Source, StopRule, TrialsPerGpu, SLURM_KEYS,
};
use vitrun::plan::plan;

/// Writes `files` (relative path, text) under a fresh folder; the folder and the first file.
fn tree(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
    }
    let first = dir.path().join(files[0].0);
    (dir, first)
}

fn load(file: &Path, sets: &[&str]) -> Result<Loaded, String> {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    load_with_env(file, &sets, Vec::new()).map_err(|e| e.to_string())
}

fn at(file: &Path, line: usize) -> Source {
    Source::File(Place {
        file: file.to_path_buf(),
        line,
    })
}

#[test]
fn later_files_and_the_file_itself_override_earlier_ones_key_by_key() {
    let (dir, main) = tree(&[
        (
            "exp.toml",
            "extends = [\"base/model.toml\", \"aug/strong.toml\"]\nname = \"composed\"\n\n[train]\nepochs = 3\n",
        ),
        (
            "base/model.toml",
            "extends = \"optim.toml\"\n[model]\nembed_dim = 96\ndepth = 2\nnum_heads = 3\n[optimizer]\nlr = 0.002\n",
        ),
        (
            "base/optim.toml",
            "[optimizer]\nlr = 0.001\nweight_decay = 0.1\n[train]\nepochs = 9\nbatch_size = 16\n",
        ),
        (
            "aug/strong.toml",
            "[augment.hflip]\nenabled = true\n[optimizer]\nweight_decay = 0.2\n",
        ),
    ]);
    let loaded = load(&main, &[]).unwrap();
    let c = &loaded.config;
    assert_eq!(c.train.epochs, 3, "the file beats every base");
    assert_eq!(c.train.batch_size, 16, "a base's key the file leaves alone");
    assert_eq!(
        c.optimizer.lr, 0.002,
        "base/model.toml beats the optim.toml it extends"
    );
    assert_eq!(
        c.optimizer.weight_decay, 0.2,
        "aug/strong.toml comes after base/model.toml"
    );
    assert_eq!(c.model.embed_dim, Some(96));
    assert!(c.augment.hflip.enabled);
    let base = dir.path().join("base");
    assert_eq!(loaded.sources["train.epochs"], at(&main, 5));
    assert_eq!(
        loaded.sources["train.batch_size"],
        at(&base.join("optim.toml"), 6)
    );
    assert_eq!(
        loaded.sources["optimizer.lr"],
        at(&base.join("model.toml"), 7)
    );
    assert_eq!(
        loaded.sources["optimizer.weight_decay"],
        at(&dir.path().join("aug/strong.toml"), 4)
    );
    assert_eq!(loaded.sources["optimizer.betas"], Source::Default);
    assert_eq!(
        loaded.bases(),
        [
            base.join("optim.toml"),
            base.join("model.toml"),
            dir.path().join("aug/strong.toml")
        ]
    );
    // The same values written in one file give the same trial id.
    let (_flat_dir, flat) = tree(&[(
        "flat.toml",
        "name = \"composed\"\n[model]\nembed_dim = 96\ndepth = 2\nnum_heads = 3\n[optimizer]\nlr = 0.002\nweight_decay = 0.2\n[train]\nepochs = 3\nbatch_size = 16\n[augment.hflip]\nenabled = true\n",
    )]);
    assert_eq!(
        load(&flat, &[]).unwrap().config.trial_id(),
        loaded.config.trial_id()
    );
}

#[test]
fn a_value_that_is_not_a_table_replaces_a_table_whole() {
    let (_dir, main) = tree(&[
        (
            "exp.toml",
            "extends = \"base.toml\"\n[distill]\nteacher = \"teacher.safetensors\"\nteacher_model = \"resnet18\"\n",
        ),
        ("teacher.safetensors", ""),
        (
            "base.toml",
            "[distill]\nteacher_model = { arch = \"vit\", embed_dim = 64, depth = 1, num_heads = 2 }\n",
        ),
    ]);
    let loaded = load(&main, &[]).unwrap();
    assert_eq!(
        loaded.config.teacher_model().unwrap().arch,
        vitrun::config::ArchKind::Resnet18
    );
    assert!(
        !loaded
            .sources
            .contains_key("distill.teacher_model.embed_dim")
            || loaded.sources["distill.teacher_model.embed_dim"] == Source::Default,
        "the base's table keys are gone with its table"
    );
}

#[test]
fn cycles_missing_files_and_bad_keys_are_named_with_their_file_and_line() {
    let (dir, main) = tree(&[
        ("exp.toml", "name = \"c\"\nextends = [\"a.toml\"]\n"),
        ("a.toml", "extends = \"sub/b.toml\"\n"),
        ("sub/b.toml", "\n\nextends = [\"../a.toml\"]\n"),
    ]);
    let e = load(&main, &[]).unwrap_err();
    let b = dir.path().join("sub/b.toml");
    assert!(
        e.starts_with(&format!("{}:3: `extends`: extends itself: ", b.display())),
        "{e}"
    );
    assert!(
        e.contains("a.toml → ") && e.contains("remove one of these links"),
        "{e}"
    );

    let (_dir, main) = tree(&[(
        "exp.toml",
        "name = \"m\"\n\nextends = [\"base/none.toml\"]\n",
    )]);
    let e = load(&main, &[]).unwrap_err();
    assert!(
        e.starts_with(&format!(
            "{}:3: `extends`: base/none.toml: ",
            main.display()
        )) && e.contains("paths are relative to the file that names them"),
        "{e}"
    );

    let (dir, main) = tree(&[
        ("exp.toml", "extends = \"base.toml\"\n"),
        ("base.toml", "[optimizer]\nlearning_rate = 0.1\n"),
    ]);
    let e = load(&main, &[]).unwrap_err();
    assert_eq!(
        e,
        format!(
            "{}:2: unknown key `optimizer.learning_rate`; did you mean `optimizer.lr`?",
            dir.path().join("base.toml").display()
        )
    );

    let (dir, main) = tree(&[
        ("exp.toml", "extends = \"base.toml\"\n"),
        ("base.toml", "[optimizer]\nlr = -1.0\n"),
    ]);
    let e = load(&main, &[]).unwrap_err();
    assert!(
        e.starts_with(&format!(
            "{}:2: `optimizer.lr`",
            dir.path().join("base.toml").display()
        )),
        "{e}"
    );

    let (_dir, main) = tree(&[("exp.toml", "extends = 3\n")]);
    let e = load(&main, &[]).unwrap_err();
    assert!(
        e.contains(":1: `extends`: a file path or a list of them"),
        "{e}"
    );

    let (dir, main) = tree(&[
        ("exp.toml", "extends = \"folder\"\n"),
        ("folder/x.toml", ""),
    ]);
    let e = load(&main, &[]).unwrap_err();
    assert!(
        e.contains("is not a regular file"),
        "{e} in {}",
        dir.path().display()
    );
}

#[test]
fn a_sweep_axis_over_fragment_files_makes_one_trial_per_recipe() {
    let (_dir, main) = tree(&[
        (
            "exp.toml",
            "name = \"recipes\"\nextends = \"base.toml\"\n[optimizer]\nlr = 0.003\n[sweep]\nextends = [\"aug/light.toml\", \"aug/heavy.toml\"]\nseed = [1, 2]\n",
        ),
        ("base.toml", "[train]\nepochs = 2\n[optimizer]\nweight_decay = 0.01\n"),
        (
            "aug/light.toml",
            "[augment.hflip]\nenabled = true\n[optimizer]\nweight_decay = 0.05\n",
        ),
        (
            "aug/heavy.toml",
            "[augment.hflip]\nenabled = true\n[augment.random_erasing]\nenabled = true\np = 0.5\n[optimizer]\nweight_decay = 0.1\nlr = 0.1\n",
        ),
    ]);
    let loaded = load(&main, &[]).unwrap();
    let p = plan(&loaded).unwrap();
    assert_eq!(p.trials.len(), 4);
    assert_eq!(p.axes, ["extends", "seed"]);
    let heavy: Vec<_> = p
        .trials
        .iter()
        .filter(|t| t.config.augment.random_erasing.enabled)
        .collect();
    assert_eq!(heavy.len(), 2);
    for t in &p.trials {
        assert_eq!(
            t.config.train.epochs, 2,
            "the file's own base still applies"
        );
        assert_eq!(t.config.optimizer.lr, 0.003, "the file beats the fragment");
        let wd = if t.config.augment.random_erasing.enabled {
            0.1
        } else {
            0.05
        };
        assert_eq!(
            t.config.optimizer.weight_decay, wd,
            "the fragment beats the base"
        );
        // A trial process is started with the point as `--set`s: it resolves to the same id.
        let sets: Vec<String> = t.sets();
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        assert_eq!(
            load(&main, &sets).unwrap().config.trial_id(),
            t.id,
            "{sets:?}"
        );
    }
    assert!(p.trials[0]
        .describe()
        .starts_with("extends=\"aug/light.toml\""));

    // A missing fragment is an error at the axis, found when planning and by `check`.
    let (_dir, main) = tree(&[(
        "exp.toml",
        "name = \"r\"\n[sweep]\nextends = { choice = [\"aug/none.toml\"] }\nsamples = 1\n",
    )]);
    let loaded = load(&main, &[]).unwrap();
    let e = plan(&loaded).unwrap_err().to_string();
    assert!(
        e.contains(&format!("{}:3", main.display())) && e.contains("aug/none.toml"),
        "{e}"
    );
}

#[test]
fn every_sweep_key_can_be_set_from_the_command_line_and_the_environment() {
    let (_dir, main) = tree(&[(
        "exp.toml",
        "name = \"s\"\n[sweep]\n\"optimizer.lr\" = [1e-3, 2e-3]\n[sweep.early_stop]\nrule = \"asha\"\n",
    )]);
    let loaded = load(
        &main,
        &[
            "sweep.max_retries=3",
            "sweep.early_stop.rule=\"median\"",
            "sweep.early_stop.min_epochs=2",
            "sweep.early_stop.min_trials=4",
            "sweep.early_stop.metric=\"val/loss\"",
            "sweep.early_stop.mode=\"min\"",
            "sweep.seed=7",
            "sweep.max_trials=50",
            "sweep.retry_on=[\"oom\"]",
            "sweep.trials_per_gpu=\"auto\"",
            "sweep.optimizer.weight_decay=[0.01, 0.1]",
            "sweep.optimizer.label_smoothing={ uniform = [0.0, 0.2] }",
            "sweep.samples=3",
            "sweep.slurm.partition=\"gpu\"",
        ],
    )
    .unwrap();
    let s = &loaded.sweep;
    assert_eq!(s.max_retries, 3);
    assert_eq!(s.seed, 7);
    assert_eq!(s.max_trials, 50);
    assert_eq!(s.samples, 3);
    assert_eq!(s.retry_on.len(), 1);
    assert_eq!(s.trials_per_gpu, TrialsPerGpu::Auto);
    let stop = s.early_stop.as_ref().unwrap();
    assert_eq!(
        stop.rule,
        StopRule::Median {
            min_epochs: 2,
            min_trials: 4
        }
    );
    assert_eq!(stop.metric.as_deref(), Some("val/loss"));
    let mut grid: Vec<&str> = s.grid.iter().map(|(k, _)| k.as_str()).collect();
    grid.sort();
    assert_eq!(grid, ["optimizer.lr", "optimizer.weight_decay"]);
    assert_eq!(s.random[0].0, "optimizer.label_smoothing");
    assert_eq!(plan(&loaded).unwrap().trials.len(), 2 * 2 * 3);

    let asha = load(
        &main,
        &[
            "sweep.early_stop.rungs=[1, 3]",
            "sweep.early_stop.reduction_factor=3",
        ],
    )
    .unwrap();
    assert_eq!(
        asha.sweep.early_stop.unwrap().rule,
        StopRule::Asha {
            rungs: vec![1, 3],
            reduction_factor: 3
        }
    );
    let zipped = load(
        &main,
        &["sweep.zip=[{ \"model.embed_dim\" = [64, 96], \"model.num_heads\" = [2, 3] }]"],
    )
    .unwrap();
    assert_eq!(zipped.sweep.zip.len(), 1);
    for key in SLURM_KEYS {
        let set = format!("sweep.slurm.{key}=1");
        // Each is accepted as a key (its value is checked by the SLURM table's own rules).
        if let Err(e) = load(&main, &[&set]) {
            assert!(!e.contains("unknown key"), "{set}: {e}");
        }
    }

    let search = load(
        &main,
        &[
            "sweep.method=\"tpe\"",
            "sweep.trials=9",
            "sweep.startup=3",
            "sweep.objective=\"val/loss\"",
        ],
    )
    .unwrap();
    let s = &search.sweep;
    assert_eq!(
        (s.method, s.trials, s.startup, s.objectives.clone()),
        (Method::Tpe, 9, 3, vec!["val/loss".to_string()])
    );
    let random = load_with_env(
        &main,
        &[],
        vec![
            ("VITRUN_SWEEP__METHOD".to_string(), "random".to_string()),
            ("VITRUN_SWEEP__TRIALS".to_string(), "5".to_string()),
        ],
    )
    .unwrap();
    assert_eq!(
        (random.sweep.method, random.sweep.trials),
        (Method::Random, 5)
    );

    let env = vec![
        ("VITRUN_SWEEP__MAX_RETRIES".to_string(), "2".to_string()),
        (
            "VITRUN_SWEEP__EARLY_STOP__RULE".to_string(),
            "median".to_string(),
        ),
        (
            "VITRUN_SWEEP__OPTIMIZER__WEIGHT_DECAY".to_string(),
            "[0.0, 0.05]".to_string(),
        ),
    ];
    let from_env = load_with_env(&main, &[], env).unwrap();
    assert_eq!(from_env.sweep.max_retries, 2);
    assert!(matches!(
        from_env.sweep.early_stop.unwrap().rule,
        StopRule::Median { .. }
    ));
    assert_eq!(from_env.sweep.grid.len(), 2);

    let e = load(&main, &["sweep.max_retry=3"]).unwrap_err();
    assert_eq!(
        e,
        "--set sweep.max_retry=3: unknown key `sweep.max_retry`; did you mean `sweep.max_retries`?"
    );
    let e = load(&main, &["sweep.early_stop.rulez=\"median\""]).unwrap_err();
    assert!(e.contains("did you mean `sweep.early_stop.rule`?"), "{e}");
    let e = load(&main, &["sweep.train.runs_dir=[\"a\", \"b\"]"]).unwrap_err();
    assert!(e.contains("unknown key `sweep.train.runs_dir`"), "{e}");
}

#[test]
fn check_names_the_bases_and_each_keys_file_and_line() {
    let (dir, main) = tree(&[
        ("exp.toml", "extends = \"base.toml\"\nname = \"k\"\n"),
        ("base.toml", "[train]\nepochs = 4\n"),
    ]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vitrun"))
        .args(["check", main.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let base = dir.path().join("base.toml");
    assert!(
        text.contains(&format!(
            "# extends (each overridden by the next, all by the file): {}",
            base.display()
        )),
        "{text}"
    );
    let epochs = text
        .lines()
        .find(|l| l.starts_with("train.epochs "))
        .unwrap();
    assert!(
        epochs.ends_with(&format!("# {}:2", base.display())),
        "{epochs}"
    );
    let name = text.lines().find(|l| l.starts_with("name ")).unwrap();
    assert!(name.ends_with(&format!("# {}:2", main.display())), "{name}");
}
