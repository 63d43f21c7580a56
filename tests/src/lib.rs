//! Helpers for Flotilla's end-to-end tests: locating the real binaries and the test corpora.
//!
//! The binaries are built by `cargo build --workspace --bins` before `cargo test` (the README's
//! test command does both); a missing binary fails the test with that instruction.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// `target/<profile>/` of the running test executable.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test-binary>
    exe.parent().and_then(Path::parent).expect("test executable lives in target/<profile>/deps").to_path_buf()
}

/// Path of a workspace binary (`flotilla-hub`, `flotilla-agent`).
pub fn bin(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the end-to-end tests",
        path.display()
    );
    path
}

/// `tests/corpus/<sub>`.
pub fn corpus(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(sub)
}

/// Runs `flotilla-hub` with `args` in `cwd`, feeding `stdin`.
pub fn hub(args: &[&str], cwd: &Path, stdin: Option<&[u8]>) -> Output {
    run(&bin("flotilla-hub"), args, cwd, stdin)
}

pub fn run(program: &Path, args: &[&str], cwd: &Path, stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        pipe.write_all(input).expect("write stdin");
    }
    child.wait_with_output().expect("wait for child")
}
