//! The parts of an image config the runtime needs (entrypoint, cmd, env, working dir, user,
//! exposed ports), parsed from untrusted JSON into plain values.

use libcontainer::oci_spec::image::ImageConfiguration;

use super::digest::Digest;
use super::platform::Platform;

/// Runtime defaults an image carries; the pod spec overrides them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=value` strings, in image order (later duplicates win, as in Docker).
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// `user`, `uid`, `user:group` or `uid:gid`, as written in the image.
    pub user: Option<String>,
    /// Sorted and without duplicates.
    pub exposed_ports: Vec<ExposedPort>,
    pub stop_signal: Option<String>,
    pub platform: Platform,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExposedPort {
    pub port: u16,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("image config {digest} is not valid JSON for an OCI image config: {source}")]
    Json { digest: Digest, source: serde_json::Error },
    #[error("image config {digest}: exposed port {port:?} is not <1-65535>[/tcp|/udp|/sctp]")]
    BadPort { digest: Digest, port: String },
    #[error("image config {digest}: env entry {entry:?} has no '='")]
    BadEnv { digest: Digest, entry: String },
}

/// Parses config JSON (its digest is only used to name it in errors).
pub fn parse_config(digest: &Digest, bytes: &[u8]) -> Result<ImageConfiguration, ConfigError> {
    serde_json::from_slice(bytes).map_err(|source| ConfigError::Json { digest: digest.clone(), source })
}

impl RuntimeConfig {
    pub fn from_config(digest: &Digest, config: &ImageConfiguration) -> Result<Self, ConfigError> {
        let platform = Platform::new(
            &config.os().to_string(),
            &config.architecture().to_string(),
            config.variant().as_deref(),
        );
        let Some(c) = config.config() else {
            return Ok(RuntimeConfig {
                entrypoint: Vec::new(),
                cmd: Vec::new(),
                env: Vec::new(),
                working_dir: None,
                user: None,
                exposed_ports: Vec::new(),
                stop_signal: None,
                platform,
            });
        };
        let env = c.env().clone().unwrap_or_default();
        if let Some(bad) = env.iter().find(|e| !e.contains('=')) {
            return Err(ConfigError::BadEnv { digest: digest.clone(), entry: bad.clone() });
        }
        let mut exposed_ports = Vec::new();
        for port in c.exposed_ports().iter().flatten() {
            let parsed = parse_port(port)
                .ok_or_else(|| ConfigError::BadPort { digest: digest.clone(), port: port.clone() })?;
            exposed_ports.push(parsed);
        }
        exposed_ports.sort();
        exposed_ports.dedup();
        Ok(RuntimeConfig {
            entrypoint: c.entrypoint().clone().unwrap_or_default(),
            cmd: c.cmd().clone().unwrap_or_default(),
            env,
            working_dir: c.working_dir().clone().filter(|w| !w.is_empty()),
            user: c.user().clone().filter(|u| !u.is_empty()),
            exposed_ports,
            stop_signal: c.stop_signal().clone().filter(|s| !s.is_empty()),
            platform,
        })
    }

    /// The environment as (key, value) pairs, later duplicates replacing earlier ones.
    pub fn env_pairs(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for e in &self.env {
            let (k, v) = e.split_once('=').unwrap_or((e, ""));
            match out.iter_mut().find(|(key, _)| key == k) {
                Some(slot) => slot.1 = v.to_string(),
                None => out.push((k.to_string(), v.to_string())),
            }
        }
        out
    }
}

/// `80`, `80/tcp`, `53/udp`, `9/sctp`.
pub fn parse_port(s: &str) -> Option<ExposedPort> {
    let (num, proto) = s.split_once('/').unwrap_or((s, "tcp"));
    let protocol = match proto.to_ascii_lowercase().as_str() {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "sctp" => Protocol::Sctp,
        _ => return None,
    };
    let port = num.parse::<u16>().ok().filter(|&p| p != 0 && !num.starts_with('+'))?;
    Some(ExposedPort { port, protocol })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_table() {
        let cases = [
            ("80", Some((80, Protocol::Tcp))),
            ("80/tcp", Some((80, Protocol::Tcp))),
            ("53/udp", Some((53, Protocol::Udp))),
            ("9/SCTP", Some((9, Protocol::Sctp))),
            ("0/tcp", None),
            ("65536", None),
            ("+80", None),
            ("80/icmp", None),
            ("", None),
            ("http", None),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_port(input),
                want.map(|(port, protocol)| ExposedPort { port, protocol }),
                "{input}"
            );
        }
    }

    #[test]
    fn from_docker_style_config() {
        let d = Digest::of_bytes(b"cfg");
        let json = br#"{
            "architecture": "arm64", "variant": "v8", "os": "linux",
            "config": {
                "User": "1000:1000",
                "ExposedPorts": {"8080/tcp": {}, "53/udp": {}, "8080": {}},
                "Env": ["PATH=/usr/bin", "A=1", "A=2"],
                "Entrypoint": ["/bin/sh", "-c"],
                "Cmd": ["echo hi"],
                "WorkingDir": "/srv",
                "StopSignal": "SIGQUIT"
            },
            "rootfs": {"type": "layers", "diff_ids": []}
        }"#;
        let rc = RuntimeConfig::from_config(&d, &parse_config(&d, json).unwrap()).unwrap();
        assert_eq!(rc.entrypoint, ["/bin/sh", "-c"]);
        assert_eq!(rc.cmd, ["echo hi"]);
        assert_eq!(rc.working_dir.as_deref(), Some("/srv"));
        assert_eq!(rc.user.as_deref(), Some("1000:1000"));
        assert_eq!(rc.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(rc.platform, Platform::new("linux", "arm64", None));
        let ports: Vec<_> = rc.exposed_ports.iter().map(|p| (p.port, p.protocol)).collect();
        assert_eq!(ports, [(53, Protocol::Udp), (8080, Protocol::Tcp)]);
        assert_eq!(rc.env_pairs(), [("PATH".into(), "/usr/bin".into()), ("A".into(), "2".into())]);
    }

    #[test]
    fn bad_configs_are_errors() {
        let d = Digest::of_bytes(b"cfg");
        let parse = |s: &str| parse_config(&d, s.as_bytes()).and_then(|c| RuntimeConfig::from_config(&d, &c));
        assert!(matches!(parse("{"), Err(ConfigError::Json { .. })));
        assert!(matches!(parse("[]"), Err(ConfigError::Json { .. })));
        let base = |c: &str| {
            format!(
                r#"{{"architecture":"amd64","os":"linux","config":{c},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
            )
        };
        assert!(matches!(parse(&base(r#"{"ExposedPorts":{"x/tcp":{}}}"#)), Err(ConfigError::BadPort { .. })));
        assert!(matches!(parse(&base(r#"{"Env":["NOEQUALS"]}"#)), Err(ConfigError::BadEnv { .. })));
        let minimal = parse(&base("{}")).unwrap();
        assert_eq!(minimal.platform, Platform::new("linux", "amd64", None));
        assert!(minimal.cmd.is_empty());
    }
}
