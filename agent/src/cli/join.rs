//! `flotilla-agent join --hub URL --token TOKEN`: trades a join token for this node's broker
//! credentials and writes the agent configuration (mode 0600). Over HTTPS the hub is trusted
//! only if the CA certificate it serves has the hash the token carries (like k3s' secure
//! tokens), so a man in the middle cannot pose as the hub.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};

use flotilla_link::AgentConfig;
use flotilla_shared::join::Token;

/// Writes a file that holds a password: mode 0600 from the start, atomically.
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn hex_sha256(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// This machine's host name as a node name, if it is a valid one.
fn default_node_name() -> anyhow::Result<String> {
    let host = nix::unistd::gethostname().context("reading the host name")?;
    let name = host.to_string_lossy().to_ascii_lowercase();
    if !flotilla_shared::names::is_dns1123_label(&name) {
        bail!("the host name {name:?} is not a valid node name (a DNS-1123 label): pass --node NAME");
    }
    Ok(name)
}

pub fn join(hub: &str, token: &str, node: Option<String>, config: &Path) -> anyhow::Result<()> {
    let token = Token::parse(token).map_err(anyhow::Error::msg)?;
    let node = match node {
        Some(n) => n,
        None => default_node_name()?,
    };
    let hub = hub.trim_end_matches('/');
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let cfg: AgentConfig = rt.block_on(async {
        let builder = reqwest::Client::builder().timeout(Duration::from_secs(30));
        let client = if hub.starts_with("https://") {
            let Some(want) = &token.ca_hash else {
                bail!("the token carries no CA hash (its hub serves plain HTTP) but --hub is https://");
            };
            // Fetched without verification; trusted only if its hash is the token's.
            let probe = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .danger_accept_invalid_certs(true)
                .build()?;
            let resp = probe
                .get(format!("{hub}/flotilla/v1/cacerts"))
                .send()
                .await
                .with_context(|| format!("cannot reach the hub at {hub}"))?;
            if !resp.status().is_success() {
                bail!("the hub at {hub} serves no CA certificate ({})", resp.status());
            }
            let pem = resp.bytes().await?;
            if &hex_sha256(&pem) != want {
                bail!("the CA certificate served by {hub} does not match the token: refusing to trust it (is something posing as the hub?)");
            }
            let mut b = builder;
            for cert in reqwest::Certificate::from_pem_bundle(&pem).context("parsing the hub's CA certificate")? {
                b = b.add_root_certificate(cert);
            }
            b.build()?
        } else if hub.starts_with("http://") {
            if token.ca_hash.is_some() {
                bail!("the token pins the hub's CA certificate, so the hub must be reached over https://");
            }
            tracing::warn!("the hub serves plain HTTP: its identity cannot be verified");
            builder.build()?
        } else {
            bail!("--hub must be an http:// or https:// URL, not {hub:?}");
        };
        let resp = client
            .post(format!("{hub}/flotilla/v1/join"))
            .json(&serde_json::json!({"token": token.to_string(), "node": node}))
            .send()
            .await
            .with_context(|| format!("cannot reach the hub at {hub}"))?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        if !status.is_success() {
            let msg = body["message"].as_str().unwrap_or("the hub refused the join");
            bail!("{msg} ({status})");
        }
        serde_json::from_value(body).context("the hub's answer is not an agent configuration")
    })?;
    if let Some(dir) = config.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&cfg)? + "\n";
    write_private(config, text.as_bytes()).with_context(|| format!("writing {}", config.display()))?;
    writeln!(
        std::io::stdout(),
        "node {} joined (broker {}); configuration written to {}\nstart the agent: flotilla-agent run --config {}",
        cfg.node,
        cfg.broker,
        config.display(),
        config.display()
    )?;
    Ok(())
}
