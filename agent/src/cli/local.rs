//! `flotilla-agent ps` and `logs`: read what the running agent and its shims keep on disk.

use std::io::{BufRead, Seek, Write};
use std::path::Path;

use anyhow::{bail, Context};

use crate::node::paths::Paths;
use crate::node::StatusFile;

fn status_file(state: &Path) -> anyhow::Result<StatusFile> {
    let p = state.join("status.json");
    let bytes = std::fs::read(&p)
        .with_context(|| format!("reading {} (is `flotilla-agent run` running?)", p.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", p.display()))
}

pub fn ps(state: &Path) -> anyhow::Result<()> {
    let st = status_file(state)?;
    let mut rows = vec![["NAMESPACE", "POD", "CONTAINER", "STATE", "RESTARTS", "EXIT"].map(String::from)];
    for p in &st.pods {
        let phase = p.status.phase.map(|ph| format!("{ph:?}")).unwrap_or_default();
        let statuses = p
            .status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(p.status.container_statuses.iter().flatten());
        for c in statuses {
            let state = c.state.as_ref();
            let (what, exit) = if p.terminating {
                ("Terminating".to_string(), String::new())
            } else if let Some(w) = state.and_then(|s| s.waiting.as_ref()) {
                (w.reason.clone().unwrap_or_else(|| "Waiting".into()), String::new())
            } else if state.and_then(|s| s.running.as_ref()).is_some() {
                ("Running".to_string(), String::new())
            } else if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
                (t.reason.clone().unwrap_or_else(|| "Terminated".into()), t.exit_code.to_string())
            } else {
                (phase.clone(), String::new())
            };
            rows.push([
                p.namespace.clone(),
                p.name.clone(),
                c.name.clone(),
                what,
                c.restart_count.to_string(),
                exit,
            ]);
        }
    }
    let widths: Vec<usize> = (0..6).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0) + 3).collect();
    let mut out = std::io::stdout().lock();
    for r in rows {
        let line: String = r.iter().zip(&widths).map(|(c, w)| format!("{c:w$}")).collect();
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// The text of a CRI log line (`<time> <stream> <F|P> <text>`), and whether it ends a line.
fn cri_text(line: &str) -> (&str, bool) {
    let mut parts = line.splitn(4, ' ');
    let (_, _, tag, text) = (parts.next(), parts.next(), parts.next(), parts.next());
    (text.unwrap_or(""), tag != Some("P"))
}

pub fn logs(
    state: &Path,
    namespace: &str,
    pod: &str,
    container: Option<&str>,
    follow: bool,
    tail: Option<usize>,
) -> anyhow::Result<()> {
    let st = status_file(state)?;
    let Some(entry) = st.pods.iter().find(|p| p.name == pod && p.namespace == namespace) else {
        bail!("pod {namespace}/{pod} is not on this node");
    };
    let name = match container {
        Some(c) => c.to_string(),
        None => entry
            .status
            .container_statuses
            .iter()
            .flatten()
            .next()
            .map(|c| c.name.clone())
            .context("the pod has no containers")?,
    };
    let paths = Paths::new(state, Path::new("/"));
    let dir = paths.logs(&entry.uid, &name);
    let current = dir.join("current.log");
    let mut lines: Vec<String> = Vec::new();
    for f in [dir.join("current.log.1"), current.clone()] {
        if let Ok(text) = std::fs::read_to_string(&f) {
            let mut partial = String::new();
            for l in text.lines() {
                let (t, full) = cri_text(l);
                partial.push_str(t);
                if full {
                    lines.push(std::mem::take(&mut partial));
                }
            }
        }
    }
    let skip = tail.map_or(0, |n| lines.len().saturating_sub(n));
    let mut out = std::io::stdout().lock();
    for l in &lines[skip..] {
        writeln!(out, "{l}")?;
    }
    out.flush()?;
    if !follow {
        return Ok(());
    }
    let mut f = std::fs::File::open(&current).with_context(|| format!("opening {}", current.display()))?;
    let mut pos = f.seek(std::io::SeekFrom::End(0))?;
    loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let len = std::fs::metadata(&current).map(|m| m.len()).unwrap_or(0);
        if len < pos {
            // Rotated: start over on the new file.
            f = std::fs::File::open(&current)?;
            pos = 0;
        }
        f.seek(std::io::SeekFrom::Start(pos))?;
        let mut reader = std::io::BufReader::new(&f);
        let mut line = String::new();
        while reader.read_line(&mut line)? > 0 {
            if !line.ends_with('\n') {
                break;
            }
            pos += line.len() as u64;
            let (t, full) = cri_text(line.trim_end_matches('\n'));
            if full {
                writeln!(out, "{t}")?;
            } else {
                write!(out, "{t}")?;
            }
            line.clear();
        }
        out.flush()?;
    }
}
