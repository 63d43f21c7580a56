//! Image references (`registry[:port]/repo/path:tag@digest`) with Docker Hub's defaults, as the
//! Docker distribution reference grammar defines them.

use std::fmt;
use std::str::FromStr;

pub const DOCKER_HUB: &str = "docker.io";

/// A fully qualified image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// Registry host, with port when one was given (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// Repository path (`library/nginx`).
    pub repository: String,
    /// Tag; `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    /// Digest (`sha256:<64 hex>`).
    pub digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("is not a valid image reference {input:?}: {reason}")]
pub struct ImageRefError {
    pub input: String,
    pub reason: &'static str,
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<Self, ImageRefError> {
        let err = |reason| ImageRefError { input: s.to_string(), reason };
        if s.is_empty() {
            return Err(err("it is empty"));
        }
        if s.len() > 512 {
            return Err(err("it is longer than 512 characters"));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err("it contains white space"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                validate_digest(d).map_err(err)?;
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // The tag follows the last ':' that comes after the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                validate_tag(tag).map_err(err)?;
                (&rest[..last_slash + i], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, path)) if first.contains('.') || first.contains(':') || first == "localhost" => {
                validate_registry(first).map_err(err)?;
                (first.to_string(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        if repository.len() > 255 {
            return Err(err("the repository name is longer than 255 characters"));
        }
        for component in repository.split('/') {
            validate_path_component(component).map_err(err)?;
        }
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let tag = if tag.is_none() && digest.is_none() { Some("latest".to_string()) } else { tag };
        Ok(ImageRef { registry, repository, tag, digest })
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl FromStr for ImageRef {
    type Err = ImageRefError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn validate_digest(d: &str) -> Result<(), &'static str> {
    let (algo, hex) = d.split_once(':').ok_or("the digest must look like sha256:<64 hex digits>")?;
    let hex_ok = |n: usize| hex.len() == n && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    match algo {
        "sha256" if hex_ok(64) => Ok(()),
        "sha512" if hex_ok(128) => Ok(()),
        "sha256" | "sha512" => Err("the digest must be lowercase hex of the algorithm's length"),
        _ => Err("the digest algorithm must be sha256 or sha512"),
    }
}

fn validate_tag(t: &str) -> Result<(), &'static str> {
    let b = t.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err("the tag must be 1-128 letters, digits, '_', '.' and '-', not starting with '.' or '-'")
    }
}

fn validate_registry(r: &str) -> Result<(), &'static str> {
    let (host, port) = match r.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (r, None),
    };
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |p| p == 0) {
            return Err("the registry port must be a number from 1 to 65535");
        }
    }
    let ok = !host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err("the registry host must be a host name or IPv4 address")
    }
}

fn validate_path_component(c: &str) -> Result<(), &'static str> {
    // [a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*
    const MSG: &str =
        "repository path components must be lowercase letters and digits, separated by '.', '_', '__' or '-'";
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return Err(MSG);
    }
    let mut i = 0;
    while i < b.len() {
        let ch = b[i];
        if ch.is_ascii_lowercase() || ch.is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !(b[i].is_ascii_lowercase() || b[i].is_ascii_digit()) {
            i += 1;
        }
        let sep = &c[start..i];
        let sep_ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !sep_ok {
            return Err(MSG);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn docker_hub_defaults() {
        assert_eq!(ImageRef::parse("nginx").unwrap().to_string(), "docker.io/library/nginx:latest");
        assert_eq!(ImageRef::parse("nginx:1.25").unwrap().to_string(), "docker.io/library/nginx:1.25");
        assert_eq!(
            ImageRef::parse("grafana/grafana").unwrap().to_string(),
            "docker.io/grafana/grafana:latest"
        );
        assert_eq!(ImageRef::parse("docker.io/nginx").unwrap().to_string(), "docker.io/library/nginx:latest");
    }

    #[test]
    fn registries_ports_tags_digests() {
        let r = ImageRef::parse("127.0.0.1:5000/tools/busybox:1.36").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "tools/busybox", Some("1.36"))
        );
        let r = ImageRef::parse(&format!("ghcr.io/org/app@{D}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(D));
        let r = ImageRef::parse(&format!("localhost/app:v1@{D}")).unwrap();
        assert_eq!(r.registry, "localhost");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(ImageRef::parse("localhost:5000/a").unwrap().registry, "localhost:5000");
    }

    #[test]
    fn invalid_references() {
        for bad in [
            "",
            "Nginx",
            "nginx:",
            "nginx:-x",
            "nginx@sha256:abc",
            "a//b",
            "a/-b",
            "reg.io:0/x",
            "with space",
            "nginx@md5:00",
            "x:y:z/a",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
    }
}
