//! `flotilla-agent image import|ls|rm`: the local image store from the command line.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use super::ImageCommand;
use crate::clock::unix_secs;
use crate::image::{ImageStore, Platform};

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

pub fn run(root: &Path, cmd: ImageCommand) -> anyhow::Result<()> {
    let store =
        ImageStore::open(root).with_context(|| format!("opening the image store in {}", root.display()))?;
    match cmd {
        ImageCommand::Import { file } => {
            let imported = store
                .import_archive(&file, &Platform::host().context("this device's platform")?, unix_secs())
                .with_context(|| format!("importing {}", file.display()))?;
            for i in imported {
                let name = if i.tags.is_empty() { "<untagged>".to_string() } else { i.tags.join(", ") };
                writeln!(
                    std::io::stdout(),
                    "imported {name} ({}, {})",
                    i.record.manifest,
                    human(i.record.size)
                )?;
            }
        }
        ImageCommand::Ls => {
            let mut rows =
                vec![["IMAGE".to_string(), "DIGEST".to_string(), "PLATFORM".to_string(), "SIZE".to_string()]];
            for s in store.list() {
                let digest = s.record.manifest.to_string();
                let short = digest.get(..19).unwrap_or(&digest).to_string();
                let tags = if s.tags.is_empty() { vec!["<none>".to_string()] } else { s.tags.clone() };
                for t in tags {
                    rows.push([t, short.clone(), s.record.platform.to_string(), human(s.record.size)]);
                }
            }
            let widths: Vec<usize> =
                (0..4).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0) + 3).collect();
            for r in rows {
                writeln!(
                    std::io::stdout(),
                    "{:w0$}{:w1$}{:w2$}{}",
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    w0 = widths[0],
                    w1 = widths[1],
                    w2 = widths[2]
                )?;
            }
        }
        ImageCommand::Rm { reference } => {
            let removed = store.remove(&reference).with_context(|| format!("removing {reference}"))?;
            for t in &removed.tags {
                writeln!(std::io::stdout(), "untagged {t}")?;
            }
            for d in &removed.images {
                writeln!(std::io::stdout(), "deleted {d}")?;
            }
        }
    }
    Ok(())
}
