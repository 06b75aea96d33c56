//! What loading a pretrained checkpoint did to each tensor, for the console and the store.

/// What a pretrained load did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Coverage {
    /// Parameters set from the file.
    pub loaded: Vec<String>,
    /// Parameters that kept their fresh initialisation, with why.
    pub reinitialised: Vec<(String, String)>,
    /// Entries of the file no parameter took, with why.
    pub ignored: Vec<(String, String)>,
    /// What the filter changed before applying (prefixes stripped, tokens mapped).
    pub adapted: Vec<String>,
    /// The task head's parameters, which a class or task change re-initialises freely.
    pub head: Vec<String>,
}

impl Coverage {
    /// Whether `name` is a parameter of the task's head.
    pub fn is_head(&self, name: &str) -> bool {
        self.head.iter().any(|h| h == name)
    }

    /// The encoder parameters that kept their fresh initialisation, with why.
    pub fn encoder_gaps(&self) -> Vec<String> {
        self.reinitialised
            .iter()
            .filter(|(name, _)| !self.is_head(name))
            .map(|(name, why)| format!("{name} ({why})"))
            .collect()
    }

    /// Whether every encoder parameter (all but the head's) came from the file.
    pub fn encoder_complete(&self) -> bool {
        self.encoder_gaps().is_empty()
    }

    /// One paragraph for the console and the store.
    pub fn summary(&self) -> String {
        let list = |items: &[(String, String)]| {
            grouped(items)
                .iter()
                .map(|(n, why)| format!("{n} ({why})"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out = format!(
            "loaded {} tensors; re-initialised {}{}; ignored {}{}",
            self.loaded.len(),
            self.reinitialised.len(),
            if self.reinitialised.is_empty() {
                String::new()
            } else {
                format!(": {}", list(&self.reinitialised))
            },
            self.ignored.len(),
            if self.ignored.is_empty() {
                String::new()
            } else {
                format!(": {}", list(&self.ignored))
            },
        );
        if !self.adapted.is_empty() {
            out.push_str(&format!("; adapted: {}", self.adapted.join("; ")));
        }
        out
    }
}

/// More than this many entries under one top-level module, for one reason, are listed as one.
const LISTED_PER_MODULE: usize = 4;

/// `items` with the entries of a top-level module that share a reason folded into one
/// `module.*` entry when there are more than [`LISTED_PER_MODULE`] (a task decoder's dozens of
/// fresh tensors), in first-seen order.
fn grouped(items: &[(String, String)]) -> Vec<(String, String)> {
    use std::collections::{HashMap, HashSet};
    let module = |name: &str| name.split('.').next().unwrap_or(name).to_string();
    let mut counts: HashMap<(String, &str), usize> = HashMap::new();
    for (name, why) in items {
        *counts.entry((module(name), why.as_str())).or_default() += 1;
    }
    let mut folded: HashSet<(String, &str)> = HashSet::new();
    let mut out: Vec<(String, String)> = Vec::new();
    for (name, why) in items {
        let key = (module(name), why.as_str());
        let n = counts[&key];
        if n <= LISTED_PER_MODULE {
            out.push((name.clone(), why.clone()));
        } else if folded.insert(key.clone()) {
            out.push((format!("{}.*", key.0), format!("{n} tensors, {why}")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decoder's many fresh tensors read as one entry; a few stay listed one by one.
    #[test]
    fn many_fresh_tensors_of_one_module_are_listed_as_one() {
        let missing = "missing in the checkpoint".to_string();
        let mut coverage = Coverage {
            loaded: vec!["cls_token".into()],
            reinitialised: vec![("head.weight".into(), "class count differs".into())],
            ..Coverage::default()
        };
        for i in 0..6 {
            coverage
                .reinitialised
                .push((format!("detr.layers.{i}.fc1.weight"), missing.clone()));
        }
        coverage
            .reinitialised
            .push(("decoder.stages.0.weight".into(), missing.clone()));
        assert_eq!(
            coverage.summary(),
            "loaded 1 tensors; re-initialised 8: head.weight (class count differs), detr.* (6 tensors, missing in the checkpoint), decoder.stages.0.weight (missing in the checkpoint); ignored 0"
        );
    }
}
