//! The tree's structural invariants (ARCHITECTURE.md), read from the sources: no import circle
//! between a crate's top-level modules, nor between the rooms of one module; the hub's CLI
//! verbs reach the server only through its HTTP API (never `nodes`, `controllers`, `store`,
//! `scheduler` or `serve`; `cli/mod.rs`, the binary's dispatcher, starts the server); `shared`
//! never depends on tokio, rumqttc or rusqlite.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Every `.rs` file under `dir`, tests' own files (`tests.rs`, `tests/`) left out.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "tests") {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "rs")
                && p.file_name().is_some_and(|n| n != "tests.rs")
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The source without `#[cfg(test)]` modules' bodies (a crude cut at the attribute: test
/// modules sit at the end of files in this tree) and without comment lines.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// The module names that `text` reaches as `prefix<name>` (`crate::nodes`, `super::take`).
fn reached(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices(prefix) {
        let before = text[..i].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let name: String =
            text[i + prefix.len()..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

/// The room (child module) of `dir` that `file` belongs to.
fn room(dir: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(dir).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "mod" && name != "lib" && name != "main").then(|| name.to_string())
}

/// Arrows between the rooms of the module in `dir` (`crate_path` its path from the crate
/// root, such as `crate::nodes`): a room reaching a sibling by its full path or, from a file
/// directly in `dir` (or a room's `mod.rs`), through `super::`.
fn arrows(dir: &Path, crate_path: &str) -> BTreeMap<String, BTreeSet<String>> {
    let rooms: BTreeSet<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| room(dir, &e.path()))
        .filter(|r| r != "tests")
        .collect();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in sources(dir) {
        let Some(from) = room(dir, &file) else { continue };
        let text = code(&file);
        let mut to = reached(&text, &format!("{crate_path}::"));
        let depth = file.strip_prefix(dir).unwrap().components().count();
        let direct = depth == 1 || file.file_name().is_some_and(|n| n == "mod.rs") && depth == 2;
        if direct {
            to.extend(reached(&text, "super::"));
        }
        for t in to {
            if t != from && rooms.contains(&t) {
                out.entry(from.clone()).or_default().insert(t);
            }
        }
    }
    out
}

/// Every circle among the arrows, each as `a -> b -> a`.
fn circles(arrows: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut found = BTreeSet::new();
    for start in arrows.keys() {
        // Depth-first search for a path from each successor back to `start`.
        let mut stack: Vec<Vec<String>> = vec![vec![start.clone()]];
        while let Some(path) = stack.pop() {
            let last = path.last().unwrap();
            for next in arrows.get(last).into_iter().flatten() {
                if next == start {
                    let mut cycle = path.clone();
                    let min =
                        cycle.iter().enumerate().min_by_key(|(_, n)| n.as_str()).map(|(i, _)| i).unwrap();
                    cycle.rotate_left(min);
                    cycle.push(cycle[0].clone());
                    found.insert(cycle.join(" -> "));
                } else if !path.contains(next) && path.len() < 8 {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push(longer);
                }
            }
        }
    }
    found.into_iter().collect()
}

#[test]
fn no_import_circles_inside_a_crate() {
    let root = workspace();
    let mut all = Vec::new();
    for krate in ["shared", "link", "hub", "agent", "bench"] {
        let src = root.join(krate).join("src");
        // The crate's top level, then each module directory's rooms.
        let mut dirs = vec![(src.clone(), "crate".to_string())];
        let mut i = 0;
        while i < dirs.len() {
            let (dir, path) = dirs[i].clone();
            for e in std::fs::read_dir(&dir).unwrap().flatten() {
                let p = e.path();
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                if p.is_dir() && name != "tests" && name != "bin" {
                    dirs.push((p, format!("{path}::{name}")));
                }
            }
            i += 1;
        }
        for (dir, path) in dirs {
            for c in circles(&arrows(&dir, &path)) {
                all.push(format!("{krate}: {path}: {c}"));
            }
        }
    }
    assert!(
        all.is_empty(),
        "import circles (move the shared piece to a room both can use):\n{}",
        all.join("\n")
    );
}

#[test]
fn the_clis_verbs_reach_the_server_only_through_its_api() {
    let cli = workspace().join("hub/src/cli");
    let mut found = Vec::new();
    for file in sources(&cli) {
        if file.file_name().is_some_and(|n| n == "mod.rs") && file.parent() == Some(cli.as_path()) {
            continue; // the dispatcher starts the server (`serve`, `backup`)
        }
        for m in reached(&code(&file), "crate::") {
            if ["nodes", "controllers", "store", "scheduler", "serve"].contains(&m.as_str()) {
                found.push(format!("{} uses crate::{m}", file.strip_prefix(workspace()).unwrap().display()));
            }
        }
    }
    assert!(found.is_empty(), "CLI verbs importing server modules:\n{}", found.join("\n"));
}

#[test]
fn shared_does_no_io_of_its_own() {
    let manifest = std::fs::read_to_string(workspace().join("shared/Cargo.toml")).unwrap();
    let deps = manifest.split("[dependencies]").nth(1).unwrap_or_default();
    let deps = deps.split("\n[").next().unwrap_or_default();
    for forbidden in ["tokio", "rumqttc", "rusqlite"] {
        assert!(
            !deps.lines().any(|l| l.trim_start().starts_with(forbidden)),
            "shared depends on {forbidden}"
        );
    }
}

#[test]
fn the_circle_finder_finds_circles() {
    let arrows: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a", "d"]),
        ("d", vec![]),
        ("x", vec!["y"]),
        ("y", vec!["x"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(circles(&arrows), ["a -> b -> c -> a", "x -> y -> x"]);
    assert_eq!(
        reached("use crate::nodes::x; crate::api::y; notcrate::z", "crate::"),
        ["api", "nodes"].map(String::from).into()
    );
}
