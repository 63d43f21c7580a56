//! Reading containers' logs as the shims write them (CRI format, `current.log` rotated to
//! `current.log.1`), for `flotilla-agent logs` on the device and `flotilla-hub logs` through
//! MQTT. Pure parsing (`cri_text`, `tail`) plus a small follower that survives rotation.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::node::paths::Paths;
use crate::node::StatusFile;

/// The text of a CRI log line (`<time> <stream> <F|P> <text>`), and whether it ends a line.
pub fn cri_text(line: &str) -> (&str, bool) {
    let mut parts = line.splitn(4, ' ');
    let (_, _, tag, text) = (parts.next(), parts.next(), parts.next(), parts.next());
    (text.unwrap_or(""), tag != Some("P"))
}

/// Turns CRI log text into the container's own output (partial lines joined), one entry per
/// line without its newline.
pub fn lines(cri: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut partial = String::new();
    for l in cri.lines() {
        let (t, full) = cri_text(l);
        partial.push_str(t);
        if full {
            out.push(std::mem::take(&mut partial));
        }
    }
    out
}

/// Where one container's log lives, found through the agent's status file.
#[derive(Debug, Clone)]
pub struct LogFiles {
    pub dir: PathBuf,
    pub container: String,
}

impl LogFiles {
    pub fn current(&self) -> PathBuf {
        self.dir.join("current.log")
    }

    /// Looks up `namespace/pod` (and its first app container unless `container` is given).
    pub fn locate(
        state: &Path,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
    ) -> anyhow::Result<LogFiles> {
        let p = state.join("status.json");
        let bytes = std::fs::read(&p)
            .with_context(|| format!("reading {} (is `flotilla-agent run` running?)", p.display()))?;
        let st: StatusFile =
            serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", p.display()))?;
        let Some(entry) = st.pods.iter().find(|p| p.name == pod && p.namespace == namespace) else {
            bail!("pod {namespace}/{pod} is not on this node");
        };
        let known: Vec<&str> = entry
            .status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(entry.status.container_statuses.iter().flatten())
            .map(|c| c.name.as_str())
            .collect();
        let name = match container {
            Some(c) if known.contains(&c) => c.to_string(),
            Some(c) => {
                bail!("container {c:?} is not in pod {namespace}/{pod} (it has: {})", known.join(", "))
            }
            None => entry
                .status
                .container_statuses
                .iter()
                .flatten()
                .next()
                .map(|c| c.name.clone())
                .context("the pod has no containers")?,
        };
        let dir = Paths::new(state, Path::new("/")).logs(&entry.uid, &name);
        Ok(LogFiles { dir, container: name })
    }

    /// The last `tail` lines (all when `None`) of the rotated and the current file, each with
    /// its newline, and a follower positioned after them.
    pub fn read_tail(&self, tail: Option<usize>) -> (String, Follower) {
        let mut text = String::new();
        let mut pos = 0;
        for (i, f) in [self.dir.join("current.log.1"), self.current()].iter().enumerate() {
            if let Ok(bytes) = std::fs::read(f) {
                // Only whole lines: a line being written is picked up by the follower.
                let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                text.push_str(&String::from_utf8_lossy(&bytes[..whole]));
                if i == 1 {
                    pos = whole as u64;
                }
            }
        }
        let all = lines(&text);
        let skip = tail.map_or(0, |n| all.len().saturating_sub(n));
        let mut out = String::new();
        for l in &all[skip..] {
            out.push_str(l);
            out.push('\n');
        }
        (out, Follower::new(self.current(), pos))
    }
}

/// Follows `current.log` from a position, across rotations: it keeps the file open, reads it
/// to its end, and moves to the new `current.log` once the shim has renamed the old one.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    file: Option<std::fs::File>,
    pos: u64,
}

impl Follower {
    fn new(path: PathBuf, pos: u64) -> Self {
        let file = std::fs::File::open(&path).ok();
        let pos = if file.is_some() { pos } else { 0 };
        Follower { path, file, pos }
    }

    /// New complete CRI lines since the last call, as the container's output. At most about
    /// `max` bytes per call; the rest comes with the next.
    pub fn poll(&mut self, max: usize) -> std::io::Result<String> {
        use std::os::unix::fs::MetadataExt;
        let mut out = String::new();
        for _ in 0..2 {
            let Some(f) = self.file.as_mut() else {
                self.file = std::fs::File::open(&self.path).ok();
                self.pos = 0;
                if self.file.is_none() {
                    return Ok(out);
                }
                continue;
            };
            f.seek(SeekFrom::Start(self.pos))?;
            let mut buf = Vec::new();
            f.take(max.saturating_sub(out.len()) as u64).read_to_end(&mut buf)?;
            let whole = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            self.pos += whole as u64;
            for l in String::from_utf8_lossy(&buf[..whole]).lines() {
                let (t, full) = cri_text(l);
                out.push_str(t);
                if full {
                    out.push('\n');
                }
            }
            if whole < buf.len() || out.len() >= max {
                return Ok(out); // more to come in this file
            }
            // At the end of this file: if the shim rotated it, continue with the new one.
            let here = f.metadata()?.ino();
            match std::fs::metadata(&self.path) {
                Ok(m) if m.ino() != here => {
                    self.file = std::fs::File::open(&self.path).ok();
                    self.pos = 0;
                }
                _ => return Ok(out),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_lines_are_joined() {
        let cri = "t stdout P hel\nt stdout F lo\nt stderr F world\n";
        assert_eq!(lines(cri), vec!["hello".to_string(), "world".to_string()]);
        assert_eq!(cri_text("t stdout F a b c"), ("a b c", true));
        assert_eq!(cri_text("garbage"), ("", true));
    }

    #[test]
    fn tail_then_follow_across_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let files = LogFiles { dir: dir.path().to_path_buf(), container: "c".into() };
        std::fs::write(dir.path().join("current.log.1"), "t stdout F one\nt stdout F two\n").unwrap();
        std::fs::write(files.current(), "t stdout F three\nt stdout P fo").unwrap();
        let (text, mut f) = files.read_tail(Some(2));
        assert_eq!(text, "two\nthree\n");
        assert_eq!(f.poll(1 << 20).unwrap(), "", "the unfinished line waits");
        let mut cur = std::fs::OpenOptions::new().append(true).open(files.current()).unwrap();
        std::io::Write::write_all(&mut cur, b"\nt stdout F ur\n").unwrap();
        assert_eq!(f.poll(1 << 20).unwrap(), "four\n");
        // Rotation: the shim renames current.log and starts a new one.
        std::fs::rename(files.current(), dir.path().join("current.log.1")).unwrap();
        std::fs::write(files.current(), "t stdout F five\n").unwrap();
        assert_eq!(f.poll(1 << 20).unwrap(), "five\n");
        let (all, _) = files.read_tail(None);
        assert_eq!(all, "three\nfour\nfive\n");
    }
}
