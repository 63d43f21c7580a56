//! `flotilla-hub validate` end to end: the valid corpus passes, every invalid case produces
//! exactly its recorded errors, and exit statuses follow the contract.

use std::path::PathBuf;

use flotilla_tests::{corpus, hub};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn every_valid_manifest_validates() {
    let dir = corpus("valid");
    let out = hub(&["validate", "-f", "."], &dir, None);
    assert!(out.status.success(), "stderr:\n{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "stderr:\n{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let oks = stdout.lines().filter(|l| l.starts_with("OK ")).count();
    assert!(oks >= 30, "only {oks} objects validated");
    let files = walk(&dir);
    assert!(files.len() >= 30, "only {} valid corpus files", files.len());
    // Each file on its own validates too.
    for f in files {
        let out = hub(&["validate", "-f", f.to_str().unwrap()], &dir, None);
        assert!(out.status.success(), "{}: {}", f.display(), text(&out.stderr));
    }
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json")) {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn every_invalid_manifest_fails_with_its_exact_errors() {
    let dir = corpus("invalid");
    let mut cases = 0;
    let mut failures = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for expected_path in entries.iter().filter(|p| p.extension().and_then(|e| e.to_str()) == Some("err")) {
        let stem = expected_path.file_stem().unwrap().to_str().unwrap();
        let input = ["yaml", "yml", "json", ""]
            .iter()
            .map(|ext| if ext.is_empty() { dir.join(stem) } else { dir.join(format!("{stem}.{ext}")) })
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("no input for {}", expected_path.display()));
        let arg = input.file_name().unwrap().to_str().unwrap();
        let out = hub(&["validate", "-f", arg], &dir, None);
        let expected = std::fs::read_to_string(expected_path).unwrap();
        cases += 1;
        if out.status.code() != Some(1) {
            failures.push(format!("{arg}: exit status {:?}, want 1", out.status.code()));
        }
        let got = text(&out.stderr);
        if got != expected {
            failures.push(format!("{arg}:\n--- want\n{expected}--- got\n{got}"));
        }
    }
    assert!(cases >= 40, "only {cases} invalid cases");
    assert!(failures.is_empty(), "{} of {cases} cases differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn stdin_and_exit_codes() {
    let dir = std::env::temp_dir();
    let good = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: v}\n";
    let out = hub(&["validate", "-f", "-"], &dir, Some(good));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "OK configmap/a\n");

    let json = br#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"edge"}}"#;
    let out = hub(&["validate", "-f", "-"], &dir, Some(json));
    assert_eq!(text(&out.stdout), "OK namespace/edge\n");

    let bad = b"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    lifecycle: {}\n";
    let out = hub(&["validate", "-f", "-"], &dir, Some(bad));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(
            "<stdin>: document 1, line 8: Pod/p: spec.containers[0].lifecycle is not supported by Flotilla"
        ),
        "{}",
        text(&out.stderr)
    );

    let out = hub(&["validate", "-f", "/nonexistent/flotilla.yaml"], &dir, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("/nonexistent/flotilla.yaml"), "{}", text(&out.stderr));

    // An empty input has no objects: that is a failure, not a silent success.
    let out = hub(&["validate", "-f", "-"], &dir, Some(b"# nothing\n"));
    assert_eq!(out.status.code(), Some(1));

    // No -f at all is a usage error (clap exits 2).
    let out = hub(&["validate"], &dir, None);
    assert_eq!(out.status.code(), Some(2));
}
