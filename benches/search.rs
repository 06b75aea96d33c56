//! `just bench-search` (with benches/search_optuna.py for Optuna's side): how many trials
//! vitrun's TPE and random search need to reach a target on standard test functions (one with
//! mixed continuous, whole-number, categorical and conditional axes) and on a table recorded
//! from a real 135-trial grid, the median over 50 seeds; and how long one TPE proposal takes
//! with 1,000 finished trials, in memory and through the run store.
//!
//! The problems are defined the same way in benches/search_optuna.py.

use std::path::Path;
use std::time::Instant;

use vitrun::config::load_with_env;
use vitrun::contract::{Goal, Status};
use vitrun::search::study::Condition;
use vitrun::search::{Dim, Domain, Point, Proposer, Searcher, Space, Study, Tpe, Uniform};
use vitrun::track::{MetricRow, Store, TrialStart};

const SEEDS: u64 = 50;

fn float(key: &str, low: f64, high: f64, log: bool) -> Dim {
    Dim {
        key: key.into(),
        domain: Domain::Float { low, high, log },
        conditional: false,
    }
}

fn choice(key: &str, values: &[toml::Value]) -> Dim {
    Dim {
        key: key.into(),
        domain: Domain::Choice(values.to_vec()),
        conditional: false,
    }
}

fn get<'p>(point: &'p Point, key: &str) -> Option<&'p toml::Value> {
    point.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn number(point: &Point, key: &str) -> f64 {
    let v = get(point, key).expect("the point has the key");
    v.as_float()
        .or(v.as_integer().map(|i| i as f64))
        .expect("a number")
}

/// A problem: a space, where its conditional axes apply, an objective and a target.
struct Problem {
    name: &'static str,
    space: Space,
    condition: Box<Condition>,
    objective: Box<dyn Fn(&Point) -> f64>,
    goal: Goal,
    target: f64,
    budget: usize,
}

fn branin() -> Problem {
    Problem {
        name: "branin",
        space: Space {
            dims: vec![float("x", -5.0, 10.0, false), float("y", 0.0, 15.0, false)],
        },
        condition: Box::new(|_, _| true),
        objective: Box::new(|p| {
            let (x, y) = (number(p, "x"), number(p, "y"));
            let pi = std::f64::consts::PI;
            (y - 5.1 / (4.0 * pi * pi) * x * x + 5.0 / pi * x - 6.0).powi(2)
                + 10.0 * (1.0 - 1.0 / (8.0 * pi)) * x.cos()
                + 10.0
        }),
        goal: Goal::Minimize,
        target: 0.5,
        budget: 100,
    }
}

/// A made-up training run: an optimizer choice with its own best learning rate, a momentum
/// only SGD has, and a depth; 0 at SGD, lr 10^-1.5, momentum 0.9, 5 layers.
fn mixed() -> Problem {
    let optimizers = ["sgd", "adam", "lamb"].map(toml::Value::from);
    let mut momentum = float("momentum", 0.0, 0.99, false);
    momentum.conditional = true;
    Problem {
        name: "mixed",
        space: Space {
            dims: vec![
                choice("opt", &optimizers),
                float("lr", 1e-5, 1.0, true),
                Dim {
                    key: "layers".into(),
                    domain: Domain::Int { low: 1, high: 8 },
                    conditional: false,
                },
                momentum,
            ],
        },
        condition: Box::new(|p, _| get(p, "opt").and_then(|v| v.as_str()) == Some("sgd")),
        objective: Box::new(|p| {
            let (base, best_lr) = match get(p, "opt").and_then(|v| v.as_str()) {
                Some("sgd") => (0.0, -1.5),
                Some("adam") => (0.05, -3.0),
                _ => (0.1, -2.5),
            };
            let momentum = match get(p, "momentum") {
                Some(_) => 5.0 * (number(p, "momentum") - 0.9).powi(2),
                None => 0.0,
            };
            base + 0.5 * (number(p, "lr").log10() - best_lr).powi(2)
                + 0.1 * (number(p, "layers") - 5.0).abs()
                + momentum
        }),
        goal: Goal::Minimize,
        target: 0.1,
        budget: 100,
    }
}

/// The recorded grid (benches/search/fmnist_grid.csv): validation top-1 looked up by its four
/// settings; the target is the grid's best less half a point.
fn table() -> Problem {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/search/fmnist_grid.csv");
    let mut reader = csv::Reader::from_path(&path).expect("benches/search/fmnist_grid.csv");
    let mut rows: Vec<(String, f64)> = Vec::new();
    for record in reader.records() {
        let r = record.expect("a CSV row");
        let key = format!("{}|{}|{}|{}", &r[0], &r[1], &r[2], &r[3]);
        rows.push((key, r[4].parse().expect("a top-1 value")));
    }
    let column = |i: usize| -> Vec<toml::Value> {
        let mut seen: Vec<String> = Vec::new();
        for (key, _) in &rows {
            let v = key.split('|').nth(i).expect("four settings").to_string();
            if !seen.contains(&v) {
                seen.push(v);
            }
        }
        seen.into_iter().map(toml::Value::from).collect()
    };
    let best = rows.iter().map(|(_, v)| *v).fold(f64::MIN, f64::max);
    let space = Space {
        dims: vec![
            choice("lr", &column(0)),
            choice("weight_decay", &column(1)),
            choice("drop_path", &column(2)),
            choice("recipe", &column(3)),
        ],
    };
    Problem {
        name: "fmnist-grid",
        space,
        condition: Box::new(|_, _| true),
        objective: Box::new(move |p| {
            let key = ["lr", "weight_decay", "drop_path", "recipe"]
                .map(|k| get(p, k).and_then(|v| v.as_str()).unwrap_or("").to_string())
                .join("|");
            rows.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| *v)
                .expect("every grid point is in the table")
        }),
        goal: Goal::Maximize,
        target: best - 0.5,
        budget: 135,
    }
}

/// Trials until the best value reaches the target (`budget + 1` when it never does).
fn trials_to_target(problem: &Problem, searcher: &dyn Searcher, seed: u64) -> usize {
    let mut study = Study::new(
        &problem.space,
        searcher,
        vec![problem.goal],
        seed,
        problem.condition.as_ref(),
    );
    for n in 1..=problem.budget {
        let Some(point) = study.ask() else {
            break;
        };
        let value = (problem.objective)(&point);
        study.tell(vec![value]);
        let reached = match problem.goal {
            Goal::Minimize => value <= problem.target,
            Goal::Maximize => value >= problem.target,
        };
        if reached {
            return n;
        }
    }
    problem.budget + 1
}

fn median(mut v: Vec<usize>) -> f64 {
    v.sort_unstable();
    let n = v.len();
    (v[(n - 1) / 2] + v[n / 2]) as f64 / 2.0
}

fn compare(problem: &Problem) {
    let tpe = Tpe::new(10);
    for (method, searcher) in [
        ("vitrun-tpe", &tpe as &dyn Searcher),
        ("vitrun-random", &Uniform),
    ] {
        let counts: Vec<usize> = (0..SEEDS)
            .map(|seed| trials_to_target(problem, searcher, seed))
            .collect();
        let reached = counts.iter().filter(|&&c| c <= problem.budget).count();
        println!(
            "search {} {method} trials-to-target median: {} (reached {reached}/{SEEDS} within {})",
            problem.name,
            median(counts),
            problem.budget
        );
    }
}

/// One TPE proposal's time with `n` finished trials, in memory.
fn proposal_in_memory(n: usize) -> f64 {
    let problem = mixed();
    let tpe = Tpe::new(10);
    let mut study = Study::new(
        &problem.space,
        &tpe,
        vec![problem.goal],
        1,
        problem.condition.as_ref(),
    );
    for _ in 0..n {
        let point = study.ask().expect("a continuous space never runs out");
        study.tell(vec![(problem.objective)(&point)]);
    }
    let started = Instant::now();
    study.ask();
    started.elapsed().as_secs_f64() * 1000.0
}

const STORE_SEARCH: &str = r#"name = "bench_search"
[data]
dataset = "synthetic"
image_size = 16
classes = ["bus", "car"]
[model]
embed_dim = 24
depth = 1
num_heads = 2
patch_size = 4
[sweep]
method = "tpe"
trials = 1001
"optimizer.lr" = { log_uniform = [1e-5, 1.0] }
"optimizer.name" = ["sgd", "adamw"]
"optimizer.momentum" = { uniform = [0.0, 0.99], when = { "optimizer.name" = "sgd" } }
"model.depth" = { int = [1, 8] }
"#;

/// TPE proposals through the run store (read, propose, resolve, record) at 100, 500 and
/// 1,000 finished trials.
fn proposals_through_the_store() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let file = dir.path().join("search.toml");
    std::fs::write(&file, STORE_SEARCH).expect("the experiment file");
    let runs = format!(
        "train.runs_dir={:?}",
        dir.path().join("runs").display().to_string()
    );
    let loaded = load_with_env(&file, &[runs], Vec::new()).expect("the experiment loads");
    std::fs::create_dir_all(dir.path().join("runs")).expect("the runs folder");
    let mut store = Store::open(&loaded.config.store_path()).expect("the store");
    let proposer = Proposer::new(&loaded).expect("the proposer");
    for n in 0..=1000 {
        let started = Instant::now();
        let t = proposer
            .next(&mut store)
            .expect("a proposal")
            .expect("budget left");
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        if [100, 500, 1000].contains(&n) {
            println!("search tpe proposal through the store with {n} finished trials ms: {ms:.2}");
        }
        let lr = t.config.optimizer.lr.log10();
        let top1 = 0.9
            - 0.05 * (lr + 2.5).powi(2)
            - 0.01 * (t.config.model.depth.unwrap_or(4) as f64 - 4.0).abs();
        store
            .claim_trial(
                &TrialStart {
                    id: t.id.clone(),
                    experiment: t.config.name.clone(),
                    file: "search.toml".into(),
                    config_json: serde_json::to_string(&t.config).expect("a config serialises"),
                    seed: t.config.seed,
                    params: t.config.flat_params(),
                    device: "cpu".into(),
                    main_metric: "top1".into(),
                },
                false,
                false,
            )
            .expect("the claim");
        let row = MetricRow {
            split: "val".into(),
            name: "top1".into(),
            step: 1,
            epoch: 1,
            value: top1,
            wall_time: 1.0,
        };
        store.log_metrics(&t.id, &[row]).expect("the metric");
        store
            .set_status(&t.id, Status::Finished, None)
            .expect("the status");
    }
}

fn main() {
    for problem in [branin(), mixed(), table()] {
        compare(&problem);
    }
    for n in [100, 1000] {
        println!(
            "search tpe proposal in memory with {n} finished trials ms: {:.2}",
            proposal_in_memory(n)
        );
    }
    proposals_through_the_store();
}
