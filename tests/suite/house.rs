//! The house rules the code is held to: the module layers `src/lib.rs` documents (each module
//! imports only modules of the layers above its own), no two files that import each other, and
//! one match on `head.task` and one on `model.arch` in the whole code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/`, with its text before its unit tests.
fn sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&src(), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).unwrap();
            let text = match text.find("#[cfg(test)]") {
                Some(at) => &text[..at],
                None => &text[..],
            };
            let code: Vec<&str> = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect();
            (f, code.join("\n"))
        })
        .collect()
}

/// The layers `src/lib.rs`'s doc lists: `N. `a`, `b`: …` lines, module names in backquotes
/// before the first colon.
fn layers() -> BTreeMap<String, usize> {
    let doc = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let mut out = BTreeMap::new();
    for line in doc.lines().filter_map(|l| l.strip_prefix("//! ")) {
        let Some((number, rest)) = line.split_once(". ") else {
            continue;
        };
        let Ok(layer) = number.trim().parse::<usize>() else {
            continue;
        };
        let names = rest.split(':').next().unwrap_or("");
        for name in names.split('`').skip(1).step_by(2) {
            out.insert(name.to_string(), layer);
        }
    }
    out
}

/// The top-level module a file belongs to (`src/task/panels.rs` → `task`).
fn module_of(file: &Path) -> String {
    let rel = file.strip_prefix(src()).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The crate modules a file names: `crate::x…` paths and `use crate::{x, y}` lists.
fn imports(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(list) = rest.strip_prefix('{') {
            let end = list.find('}').unwrap_or(list.len());
            for item in list[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
    }
    out
}

#[test]
fn every_module_imports_only_modules_of_the_layers_above_it() {
    let layers = layers();
    assert!(layers.len() >= 10, "lib.rs lists its layers: {layers:?}");
    let mut wrong = Vec::new();
    for (file, code) in sources() {
        let module = module_of(&file);
        if module == "lib" || module == "main" {
            continue;
        }
        let own = *layers
            .get(&module)
            .unwrap_or_else(|| panic!("module {module} is missing from lib.rs's layer list"));
        for used in imports(&code) {
            if used == module {
                continue;
            }
            match layers.get(&used) {
                Some(&layer) if layer < own => {}
                Some(&layer) => wrong.push(format!(
                    "{} (layer {own}) imports {used} (layer {layer})",
                    file.display()
                )),
                None => wrong.push(format!("{} imports unknown module {used}", file.display())),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

/// The `::`-separated names that follow `prefix` at `rest`'s start (`a::b::c`).
fn chain(rest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = rest;
    loop {
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            return names;
        }
        rest = &rest[name.len()..];
        names.push(name);
        match rest.strip_prefix("::") {
            Some(next) => rest = next,
            None => return names,
        }
    }
}

/// The deepest source file a module path under `base` names (`task/panels.rs` for
/// `task::panels::x`).
fn file_of(base: &Path, names: &[String]) -> Option<PathBuf> {
    (1..=names.len()).rev().find_map(|n| {
        let dir: PathBuf = names[..n].iter().collect();
        [
            base.join(&dir).with_extension("rs"),
            base.join(&dir).join("mod.rs"),
        ]
        .into_iter()
        .find(|f| f.is_file())
    })
}

/// The other source files a file imports, through `super::` and `crate::` paths.
fn file_imports(file: &Path, code: &str) -> BTreeSet<PathBuf> {
    let dir = file.parent().unwrap();
    let is_mod = file
        .file_name()
        .is_some_and(|n| n == "mod.rs" || n == "lib.rs");
    let parent = if is_mod { dir.parent().unwrap() } else { dir };
    let mut out = BTreeSet::new();
    for (prefix, base) in [("super::", parent.to_path_buf()), ("crate::", src())] {
        let mut rest = code;
        while let Some(at) = rest.find(prefix) {
            rest = &rest[at + prefix.len()..];
            if let Some(f) = file_of(&base, &chain(rest)).filter(|f| f != file) {
                out.insert(f);
            }
        }
    }
    out
}

#[test]
fn no_two_files_import_each_other() {
    let files = sources();
    let graph: BTreeMap<PathBuf, BTreeSet<PathBuf>> = files
        .iter()
        .map(|(f, code)| (f.clone(), file_imports(f, code)))
        .collect();
    let mut pairs = Vec::new();
    for (a, uses) in &graph {
        for b in uses {
            if a < b && graph.get(b).is_some_and(|back| back.contains(a)) {
                pairs.push(format!("{} <-> {}", a.display(), b.display()));
            }
        }
    }
    assert!(
        pairs.is_empty(),
        "files that import each other:\n{}",
        pairs.join("\n")
    );
}

#[test]
fn one_match_turns_the_task_kind_and_one_the_architecture_into_types() {
    for (arm, home) in [
        ("TaskKind::Classification =>", "task/mod.rs"),
        ("ArchKind::Vit =>", "model/backbone.rs"),
    ] {
        let at: Vec<String> = sources()
            .iter()
            .filter(|(_, code)| code.contains(arm))
            .map(|(f, _)| f.strip_prefix(src()).unwrap().display().to_string())
            .collect();
        assert_eq!(at, [home], "`{arm}` arms");
    }
}
