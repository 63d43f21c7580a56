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
use crate::files::write_private;
use crate::store::crypto::random;
use crate::store::Store;

/// Where things live in the data directory.
pub use crate::files::{CLIENT_FILE, TOKEN_FILE};

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// The CA that signed the serving certificate, recorded for CLIs on this machine.
    pub tls_ca: Option<PathBuf>,
    pub body_limit: usize,
    pub mqtt: MqttServeOptions,
    pub controllers: crate::controllers::Settings,
}

/// The MQTT side of `serve`: the embedded broker (default) or an external one.
#[derive(Debug, Clone)]
pub struct MqttServeOptions {
    /// The embedded broker's plain listener (loopback by default).
    pub listen: Option<SocketAddr>,
    /// The embedded broker's TLS listener (with the hub's --tls-cert and --tls-key).
    pub tls_listen: Option<SocketAddr>,
    /// Use this broker instead of the embedded one.
    pub external: Option<ExternalBroker>,
    /// The broker URL agents are told to use (default: the embedded broker's listener).
    pub advertise: Option<String>,
    /// A node silent this long is NotReady.
    pub node_grace: std::time::Duration,
    pub topic_root: String,
}

impl Default for MqttServeOptions {
    fn default() -> Self {
        MqttServeOptions {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 1883))),
            tls_listen: None,
            external: None,
            advertise: None,
            node_grace: std::time::Duration::from_secs(40),
            topic_root: flotilla_shared::wire::topics::DEFAULT_ROOT.to_string(),
        }
    }
}

/// An external broker (Mosquitto, EMQX) and the hub's credentials on it.
#[derive(Debug, Clone)]
pub struct ExternalBroker {
    pub url: String,
    pub username: String,
    pub password: String,
    pub ca: Option<PathBuf>,
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

/// The components besides the store, as they report themselves: the scheduler and the
/// controller manager from their loops' rounds (`controllers::health`), then the broker.
fn components(
    health: crate::controllers::health::Health,
    broker: String,
) -> impl Fn() -> Vec<Component> + Send + Sync {
    move || {
        let mut out = health.components();
        out.push(Component { name: "broker", healthy: true, message: broker.clone() });
        out
    }
}

/// Starts the embedded broker (unless an external one is configured) and the hub's node link.
/// Returns the running broker (kept alive by the caller), the URL to advertise to agents and a
/// description for `status`.
async fn start_mqtt(
    opts: &ServeOptions,
    store: &Store,
) -> anyhow::Result<(Option<crate::mqtt::broker::Broker>, String, String, crate::nodes::NodeLink)> {
    use crate::mqtt::{acl::Role, broker, users};
    let m = &opts.mqtt;
    let topics = flotilla_shared::wire::topics::Topics::new(&m.topic_root).map_err(anyhow::Error::msg)?;
    crate::nodes::credentials::ensure_namespace(store).await.map_err(anyhow::Error::msg)?;
    let (embedded, link, advertise, described) = match &m.external {
        None => {
            let users = users::Users::default();
            let hub_password = users::new_password();
            users.insert("flotilla-hub", Role::Hub, &hub_password);
            tokio::spawn(crate::nodes::credentials::sync_users(store.clone(), users.clone()));
            let tls = match (m.tls_listen, &opts.tls_cert, &opts.tls_key) {
                (Some(a), Some(c), Some(k)) => Some((a, c.clone(), k.clone())),
                (Some(_), _, _) => bail!("--mqtt-tls-listen needs --tls-cert and --tls-key"),
                _ => None,
            };
            let b = broker::Broker::start(
                broker::BrokerOptions { tcp: m.listen, tls, max_packet: (wire_max() + 64 * 1024) as u32 },
                users,
                topics.clone(),
            )
            .await?;
            let (url, ca) = match (b.tcp_addr, b.tls_addr) {
                (Some(a), _) => (format!("mqtt://{}", dial_addr(a)), None),
                (None, Some(a)) => (tls_dial_url(a), opts.tls_ca.clone()),
                (None, None) => bail!("the embedded broker needs --mqtt-listen or --mqtt-tls-listen"),
            };
            let advertise = m.advertise.clone().unwrap_or_else(|| match (b.tls_addr, b.tcp_addr) {
                (Some(a), _) => format!("mqtts://{a}"),
                (None, Some(a)) => format!("mqtt://{a}"),
                (None, None) => url.clone(),
            });
            let described = format!(
                "embedded (rmqtt) on {}",
                [b.tcp_addr.map(|a| format!("mqtt://{a}")), b.tls_addr.map(|a| format!("mqtts://{a}"))]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let ca_pem = ca.map(std::fs::read).transpose()?;
            (Some(b), (url, "flotilla-hub".to_string(), hub_password, ca_pem), advertise, described)
        }
        Some(ext) => {
            let ca_pem = ext.ca.as_ref().map(std::fs::read).transpose()?;
            let advertise = m.advertise.clone().unwrap_or_else(|| ext.url.clone());
            (
                None,
                (ext.url.clone(), ext.username.clone(), ext.password.clone(), ca_pem),
                advertise,
                format!("external {}", ext.url),
            )
        }
    };
    let (url, username, password, ca_pem) = link;
    let cfg = flotilla_link::LinkConfig {
        url: url.parse()?,
        client_id: format!("flotilla-hub-{}", uuid::Uuid::new_v4().simple()),
        username,
        password,
        ca_pem,
        keep_alive: std::time::Duration::from_secs(15),
        subscriptions: topics.hub_filters(),
        will: None,
        max_packet: (wire_max() + 64 * 1024) as u32,
    };
    let node_link = crate::nodes::start(
        store.clone(),
        crate::nodes::NodeLinkOptions { link: cfg, topics, grace: m.node_grace },
    )?;
    Ok((embedded, advertise, described, node_link))
}

/// Where the hub's own client reaches the embedded broker bound at `bound`: that address,
/// or loopback (of the same family) when it listens on every address. A broker bound to one
/// specific address is not reachable through 127.0.0.1.
fn dial_addr(bound: SocketAddr) -> SocketAddr {
    use std::net::{Ipv4Addr, Ipv6Addr};
    let ip = match bound.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    SocketAddr::new(ip, bound.port())
}

/// The TLS listener's URL for the hub's own client: `localhost` (the name a hub's certificate
/// carries) when the listener is on 127.0.0.1, ::1 or every address, else the bound address
/// itself (its certificate then needs that IP address).
fn tls_dial_url(bound: SocketAddr) -> String {
    use std::net::{Ipv4Addr, Ipv6Addr};
    let a = dial_addr(bound);
    if a.ip() == Ipv4Addr::LOCALHOST || a.ip() == Ipv6Addr::LOCALHOST {
        format!("mqtts://localhost:{}", a.port())
    } else {
        format!("mqtts://{a}")
    }
}

fn wire_max() -> usize {
    flotilla_shared::wire::DEFAULT_MAX_PAYLOAD
}

/// Tells systemd (Type=notify) the hub is ready, and pings its watchdog at half the interval
/// for as long as the store answers, so a wedged hub is restarted.
fn notify_systemd(store: Store) {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    let mut usec = 0;
    if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_micros(usec / 2));
            loop {
                tick.tick().await;
                match tokio::time::timeout(std::time::Duration::from_micros(usec / 2), store.health()).await {
                    Ok(Ok(())) => {
                        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
                    }
                    _ => tracing::error!("the store does not answer: not pinging the systemd watchdog"),
                }
            }
        });
    }
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
    let (broker, advertise, described, node_link) = start_mqtt(&opts, &store).await?;
    let health = crate::controllers::health::Health::default();
    crate::controllers::start(store.clone(), opts.controllers, &health);
    let state = Arc::new(ApiState {
        store: store.clone(),
        tokens: vec![token],
        body_limit: opts.body_limit,
        components: Arc::new(components(health, described)),
    });
    let credentials = Arc::new(crate::api::nodes::NodesState {
        api: state.clone(),
        broker: advertise.clone(),
        topics: flotilla_shared::wire::topics::Topics::new(&opts.mqtt.topic_root)
            .map_err(anyhow::Error::msg)?,
        ca_pem: match (&opts.tls_cert, &opts.tls_ca) {
            (Some(_), Some(ca)) => {
                Some(std::fs::read(ca).with_context(|| format!("reading --tls-ca {}", ca.display()))?)
            }
            _ => None,
        },
    });
    let app = axum::Router::new()
        .route("/flotilla/v1/nodes/{name}/credentials", axum::routing::post(crate::api::nodes::credentials))
        .route(
            "/flotilla/v1/viewers/{name}/credentials",
            axum::routing::post(crate::api::nodes::viewer_credentials),
        )
        .route("/flotilla/v1/tokens", axum::routing::post(crate::api::nodes::create_token))
        .route("/flotilla/v1/cacerts", axum::routing::get(crate::api::nodes::cacerts))
        .route("/flotilla/v1/join", axum::routing::post(crate::api::nodes::join))
        .with_state(credentials)
        .merge(
            axum::Router::new()
                .route(
                    "/api/v1/namespaces/{namespace}/pods/{name}/log",
                    axum::routing::get(crate::api::logs::handler),
                )
                .with_state(Arc::new(crate::api::logs::LogsState {
                    api: state.clone(),
                    link: node_link.link.clone(),
                    topics: node_link.topics.clone(),
                    router: node_link.logs.clone(),
                })),
        )
        .merge(api::router(state));
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
    tracing::info!(url = %server_url, data_dir = %opts.data_dir.display(), revision = store.revision(), broker = %advertise, "flotilla-hub serving");
    notify_systemd(store.clone());

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
    drop(broker);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hub_dials_the_address_its_broker_is_bound_to() {
        let check = |bound: &str, tcp: &str, tls: &str| {
            let bound: SocketAddr = bound.parse().unwrap();
            assert_eq!(
                (format!("mqtt://{}", dial_addr(bound)), tls_dial_url(bound)),
                (tcp.to_string(), tls.to_string()),
                "bound to {bound}"
            );
        };
        check("127.0.0.1:1883", "mqtt://127.0.0.1:1883", "mqtts://localhost:1883");
        check("0.0.0.0:1883", "mqtt://127.0.0.1:1883", "mqtts://localhost:1883");
        check("127.0.0.2:1883", "mqtt://127.0.0.2:1883", "mqtts://127.0.0.2:1883");
        check("10.1.2.3:8883", "mqtt://10.1.2.3:8883", "mqtts://10.1.2.3:8883");
        check("[::]:1883", "mqtt://[::1]:1883", "mqtts://localhost:1883");
        check("[fd00::5]:1883", "mqtt://[fd00::5]:1883", "mqtts://[fd00::5]:1883");
    }
}
