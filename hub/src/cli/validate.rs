//! `flotilla-hub validate`: offline manifest validation with the same rules the API applies.

use std::io::Write;
use std::path::PathBuf;

use flotilla_shared::manifest::load_paths;

/// Prints `OK <kind>/<name>` for each valid object to `out` and every error to `err`. Returns 0
/// only when everything is valid, 1 otherwise.
pub fn run(files: &[PathBuf], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let result = load_paths(files);
    for loaded in &result.objects {
        let o = &loaded.object;
        let _ = writeln!(out, "OK {}/{}", o.kind().info().name.to_lowercase(), o.metadata().name());
    }
    for e in &result.errors {
        let _ = writeln!(err, "{e}");
    }
    if !result.errors.is_empty() {
        let n: usize = result.errors.iter().map(|e| e.errors.len()).sum();
        let _ = writeln!(err, "{n} error(s) in {} document(s)", result.errors.len());
        1
    } else if result.objects.is_empty() {
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        let _ = writeln!(err, "no objects found in {}", names.join(", "));
        1
    } else {
        0
    }
}
