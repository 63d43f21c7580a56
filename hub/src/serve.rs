//! `flotilla-hub serve`: opens the store, mints the admin token on first start, writes the
//! client file the CLI finds, and serves the API (HTTP on loopback by default, HTTPS when given
//! a certificate and key) until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;

use crate::api::{self, ApiState, Component};
use crate::store::crypto::{random, write_private};
use crate::store::Store;

/// Where things live in the data directory.
pub const TOKEN_FILE: &str = "admin.token";
pub const CLIENT_FILE: &str = "client.json";

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// The CA that signed the serving certificate, recorded for CLIs on this machine.
    pub tls_ca: Option<PathBuf>,
    pub body_limit: usize,
}

/// The data directory when none is given: `$FLOTILLA_DATA_DIR`, else `/var/lib/flotilla-hub`
/// for root and `~/.local/share/flotilla-hub` for other users.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("FLOTILLA_DATA_DIR") {
        return PathBuf::from(d);
    }
    if nix_is_root() {
        return PathBuf::from("/var/lib/flotilla-hub");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/share/flotilla-hub")
}

fn nix_is_root() -> bool {
    // The data directory of root's hub is system-wide; reading our own uid needs no privilege.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Reads the admin token, creating it (mode 0600) on first start.
pub fn ensure_token(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join(TOKEN_FILE);
    if !path.exists() {
        let token = B64URL.encode(random::<32>());
        write_private(&path, format!("{token}\n").as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let token = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .to_string();
    if token.len() < 16 {
        bail!("{} holds a token shorter than 16 characters; delete it to mint a new one", path.display());
    }
    Ok(token)
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    Ok(())
}

/// Components that are not built yet report themselves as such, honestly.
fn components() -> Vec<Component> {
    ["scheduler", "controller-manager", "broker"]
        .into_iter()
        .map(|name| Component {
            name,
            healthy: false,
            message: "not running: not part of this build yet".into(),
        })
        .collect()
}

/// Runs the server until `shutdown` resolves.
pub async fn serve(
    opts: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    create_private_dir(&opts.data_dir)?;
    let dir = opts.data_dir.clone();
    let store =
        tokio::task::spawn_blocking(move || Store::open(&dir)).await.context("opening the store")??;
    let token = ensure_token(&opts.data_dir)?;
    let state = Arc::new(ApiState {
        store: store.clone(),
        tokens: vec![token],
        body_limit: opts.body_limit,
        components: Arc::new(components),
    });
    let app = api::router(state);
    let tls = match (&opts.tls_cert, &opts.tls_key) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        (None, None) => None,
        _ => bail!("--tls-cert and --tls-key go together"),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener =
        std::net::TcpListener::bind(opts.listen).with_context(|| format!("binding {}", opts.listen))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let server_url = format!("{scheme}://{addr}");
    let client = serde_json::json!({
        "server": server_url,
        "certificateAuthority": opts.tls_ca.as_ref().map(|c| std::fs::canonicalize(c).unwrap_or_else(|_| c.clone())),
    });
    write_private(&opts.data_dir.join(CLIENT_FILE), client.to_string().as_bytes())?;
    tracing::info!(url = %server_url, data_dir = %opts.data_dir.display(), revision = store.revision(), "flotilla-hub serving");

    let result = match tls {
        Some((cert, key)) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let config =
                axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key).await.with_context(
                    || format!("loading TLS certificate {} and key {}", cert.display(), key.display()),
                )?;
            let handle = axum_server::Handle::new();
            let h = handle.clone();
            tokio::spawn(async move {
                shutdown.await;
                h.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
            });
            axum_server::from_tcp_rustls(listener, config)
                .handle(handle)
                .serve(app.into_make_service())
                .await
                .context("serving HTTPS")
        }
        None => {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            axum::serve(listener, app).with_graceful_shutdown(shutdown).await.context("serving HTTP")
        }
    };
    tokio::task::spawn_blocking(move || store.close()).await.ok();
    tracing::info!("flotilla-hub stopped");
    result
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
