//! Trial ids are a promise to every store in the field: the ids of the committed experiment
//! files' trials (`vitrun plan`) are pinned in `tests/fixtures/golden_ids.txt`, so a new config
//! key with its default, a renamed type or a reordered field can never silently give an old
//! experiment new ids (and rerun it from scratch).

use std::collections::HashSet;
use std::path::Path;

use vitrun::config::load_with_env;
use vitrun::plan::plan;
use vitrun::search::Proposer;

/// `file id…` lines: each committed experiment file and its trials' ids in plan order.
fn golden() -> Vec<(String, Vec<String>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden_ids.txt");
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut words = l.split_whitespace().map(str::to_string);
            let file = words.next().unwrap();
            (file, words.collect())
        })
        .collect()
}

/// The trials' ids of a planned sweep; of a search, its first three proposals from an empty
/// store (random draws from the sweep seed's streams, so the draws are pinned too).
fn ids_of(file: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let loaded = load_with_env(&path, &[], Vec::new()).unwrap();
    if loaded.sweep.method.is_adaptive() {
        let proposer = Proposer::new(&loaded).unwrap();
        let mut taken = HashSet::new();
        return (0..3)
            .map(|number| {
                let id = proposer.propose(number, &[], &taken).unwrap().unwrap().id;
                taken.insert(id.clone());
                id
            })
            .collect();
    }
    plan(&loaded)
        .unwrap()
        .trials
        .iter()
        .map(|t| t.id.clone())
        .collect()
}

#[test]
fn the_committed_experiment_files_keep_their_trial_ids() {
    let pinned = golden();
    let mut committed: Vec<String> = ["experiments", "tests/configs"]
        .iter()
        .flat_map(|dir| {
            std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
                .unwrap()
                .map(move |e| format!("{dir}/{}", e.unwrap().file_name().to_string_lossy()))
        })
        .filter(|f| f.ends_with(".toml"))
        .collect();
    committed.sort();
    let listed: Vec<&String> = pinned.iter().map(|(f, _)| f).collect();
    assert_eq!(
        listed,
        committed.iter().collect::<Vec<_>>(),
        "every committed experiment file is pinned in tests/fixtures/golden_ids.txt (a new one: add its `vitrun plan` ids)"
    );
    let mut moved = Vec::new();
    for (file, ids) in &pinned {
        let now = ids_of(file);
        if &now != ids {
            moved.push(format!(
                "{file}\n  pinned: {}\n  now:    {}",
                ids.join(" "),
                now.join(" ")
            ));
        }
    }
    assert!(
        moved.is_empty(),
        "trial ids changed; stores in the field would rerun these trials from scratch. A new config key must keep ids while at its default (config::id_keys); an intended change to a file's experiment needs its new ids here:\n{}",
        moved.join("\n")
    );
}

/// A key the id schema has never seen changes no id while it holds its default, and changes
/// the id once set: checked on every committed single-trial file with a key none of them sets
/// (`distill.alpha` postdates the ids; set, it is simulated on the identity).
#[test]
fn a_key_at_its_default_is_left_out_of_the_id_and_a_set_one_is_not() {
    for (file, ids) in golden().iter().filter(|(_, ids)| ids.len() == 1) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let loaded = load_with_env(&path, &["distill.alpha=0.5".into()], Vec::new()).unwrap();
        assert_eq!(
            &loaded.config.trial_id(),
            &ids[0],
            "{file}: distill.alpha at its default"
        );
        let mut identity = loaded.config.identity_json();
        assert!(
            identity.pointer("/distill").is_none(),
            "{file}: a table newer than the id schema is left out at its default"
        );
        identity["distill"] = serde_json::json!({"alpha": 0.7});
        assert_ne!(
            vitrun::config::hash_identity(&identity),
            ids[0],
            "{file}: a set key enters the id"
        );
    }
}
