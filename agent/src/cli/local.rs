//! `flotilla-agent ps` and `logs`: read what the running agent and its shims keep on disk.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use crate::node::logs::LogFiles;
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

pub fn logs(
    state: &Path,
    namespace: &str,
    pod: &str,
    container: Option<&str>,
    follow: bool,
    tail: Option<usize>,
) -> anyhow::Result<()> {
    let files = LogFiles::locate(state, namespace, pod, container)?;
    let (text, mut follower) = files.read_tail(tail);
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    if !follow {
        return Ok(());
    }
    loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let more =
            follower.poll(1 << 20).with_context(|| format!("following {}", files.current().display()))?;
        out.write_all(more.as_bytes())?;
        out.flush()?;
    }
}
