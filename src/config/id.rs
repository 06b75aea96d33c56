//! A trial's identity: the resolved config's JSON without what says where or how fast it runs,
//! hashed into its id. Ids are a promise to every store in the field, so the keys that define
//! an id are frozen: [`ID_KEYS`] lists every leaf key the schema had when the rule was fixed,
//! and a key the schema gains later is left out of the id while it holds its default (a
//! golden test, `tests/suite/golden_ids.rs`, pins the committed experiment files' ids).

use std::collections::BTreeSet;
use std::sync::OnceLock;

use serde_json::Value as Json;

use super::schema::{Config, EXECUTION_KEYS};

/// Every leaf key path of the schema when this rule was fixed, one per line.
const ID_KEYS_FILE: &str = include_str!("id_keys.txt");

/// The leaf key paths ids were defined over.
pub fn id_keys() -> &'static BTreeSet<&'static str> {
    static KEYS: OnceLock<BTreeSet<&'static str>> = OnceLock::new();
    KEYS.get_or_init(|| {
        ID_KEYS_FILE
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    })
}

/// Keys (or whole tables) the id schema gained after ids were first defined, each left out of
/// the id while it holds its default as a whole. Frozen: a key added now needs no entry here,
/// it is a key the schema has never seen (see [`identity`]).
pub const LATER_KEYS: [&str; 31] = [
    "model.pretrained",
    "model.conv_stem",
    "model.conv_stem_kind",
    "model.conv_stem_depth",
    "model.conv_stem_norm",
    "model.pretrained_strict",
    "finetune",
    "train.grad_accumulation",
    "augment.rand_augment",
    "augment.mixup",
    "augment.cutmix",
    "data.repeated_aug",
    "train.ema",
    "data.max_objects",
    "augment.min_box_visible",
    "data.annotations",
    "data.val_annotations",
    "data.val_path",
    "head.decoder",
    "head.dice_weight",
    "head.class_weights",
    "head.queries",
    "head.layers",
    "head.groups",
    "head.no_object_weight",
    "head.ce_weight",
    "head.l1_weight",
    "head.giou_weight",
    "head.aux_loss",
    "head.patch_weight",
    "head.score_threshold",
];

/// Whether `path` is a table of the id schema (a proper prefix of one of its keys).
fn known_table(path: &str) -> bool {
    static TABLES: OnceLock<BTreeSet<&'static str>> = OnceLock::new();
    TABLES
        .get_or_init(|| {
            id_keys()
                .iter()
                .flat_map(|k| k.match_indices('.').map(|(i, _)| &k[..i]))
                .collect()
        })
        .contains(path)
}

fn get<'a>(value: &'a Json, path: &str) -> Option<&'a Json> {
    path.split('.').try_fold(value, |n, k| n.get(k))
}

fn remove_path(value: &mut Json, path: &str) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().unwrap_or(path);
    let mut node = value;
    for p in parts {
        match node.get_mut(p) {
            Some(n) => node = n,
            None => return,
        }
    }
    if let Some(map) = node.as_object_mut() {
        map.remove(last);
    }
}

/// Removes the keys newer than the id schema that hold their default in `defaults`, and the
/// new tables that leaves empty.
fn drop_new_defaults(value: &mut Json, defaults: &Json) {
    prune(value, Some(defaults), &mut String::new());
}

/// [`drop_new_defaults`] within the table `value` at `path` (`defaults` its counterpart there);
/// whether any of its entries was removed. A table emptied by removals goes too, unless the id
/// schema knows it; a table that was empty to begin with stays.
fn prune(value: &mut Json, defaults: Option<&Json>, path: &mut String) -> bool {
    let Json::Object(map) = value else {
        return false;
    };
    let mut gone = Vec::new();
    for (key, child) in map.iter_mut() {
        let len = path.len();
        if len > 0 {
            path.push('.');
        }
        path.push_str(key);
        let default = defaults.and_then(|d| d.get(key));
        let remove = match child {
            Json::Object(inner) if !inner.is_empty() => {
                prune(child, default, path)
                    && child.as_object().is_some_and(|m| m.is_empty())
                    && !known_table(path)
            }
            Json::Object(_) => false,
            leaf => !id_keys().contains(path.as_str()) && Some(&*leaf) == default,
        };
        if remove {
            gone.push(key.clone());
        }
        path.truncate(len);
    }
    let removed = !gone.is_empty();
    for key in gone {
        map.remove(&key);
    }
    removed
}

/// The defaults as [`identity`] compares against them: the execution keys and `model.preset`
/// removed (`reference`), and the same with the keys newer than the id schema that hold their
/// default dropped (`trimmed`). The same for every config, so made once.
struct Defaults {
    reference: Json,
    trimmed: Json,
}

fn defaults() -> &'static Defaults {
    static DEFAULTS: OnceLock<Defaults> = OnceLock::new();
    DEFAULTS.get_or_init(|| {
        let mut reference = serde_json::to_value(Config::default()).expect("defaults serialise");
        for key in EXECUTION_KEYS.iter().chain(["model.preset"].iter()) {
            remove_path(&mut reference, key);
        }
        let mut trimmed = reference.clone();
        drop_new_defaults(&mut trimmed, &reference);
        Defaults { reference, trimmed }
    })
}

/// The config as JSON with every key path that defines the trial: without the execution keys
/// and `model.preset` (its dims are resolved), without keys newer than the id schema that hold
/// their default, and without [`LATER_KEYS`] that hold theirs.
pub fn identity(config: &Config) -> Json {
    let mut value = serde_json::to_value(config).expect("config serialises");
    for key in EXECUTION_KEYS.iter().chain(["model.preset"].iter()) {
        remove_path(&mut value, key);
    }
    let Defaults { reference, trimmed } = defaults();
    drop_new_defaults(&mut value, reference);
    for key in LATER_KEYS {
        if get(&value, key) == get(trimmed, key) {
            remove_path(&mut value, key);
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each frozen later key is a key or a table of the id schema.
    #[test]
    fn later_keys_are_part_of_the_id_schema() {
        for key in LATER_KEYS {
            assert!(
                id_keys().contains(key) || known_table(key),
                "{key} is not in id_keys.txt"
            );
        }
    }

    /// Every key of the id schema is still a key of the config: a renamed or removed key would
    /// change ids silently.
    #[test]
    fn every_id_key_is_still_a_config_key() {
        let now = crate::config::schema_paths();
        for key in id_keys() {
            assert!(now.contains(*key), "{key} left the schema");
        }
    }
}
