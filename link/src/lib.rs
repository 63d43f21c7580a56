//! The MQTT client side of Flotilla, shared by the hub and the agent: broker URLs
//! (`mqtt://`, `mqtts://`), TLS on rustls with ring, MQTT 5 with a bounded in-flight window,
//! and one event loop that resubscribes on every connect and reconnects with the back-off of
//! `flotilla_shared::wire::reconnect` (2 s doubling to 30 s, jittered).
//!
//! rumqttc traps handled here (../shared/findings.md): a v5 client pre-allocates a
//! 65,536-slot in-flight table (~13.5 MiB) unless its in-flight limit is set; it has no
//! reconnect back-off of its own (every `poll` after an error reconnects at once); it does not
//! resubscribe after a reconnect unless the broker kept the session.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{LastWill, Packet};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::{TlsConfiguration, Transport};
use tokio::sync::mpsc;

use flotilla_shared::wire::reconnect::Reconnect;

/// In-flight QoS 1 publishes per client (see the module docs for why it must be set).
pub const INFLIGHT: u16 = 64;

/// Where the broker is: `mqtt://host[:1883]` or `mqtts://host[:8883]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("broker URL {url:?}: {problem}")]
pub struct UrlError {
    url: String,
    problem: &'static str,
}

impl FromStr for BrokerUrl {
    type Err = UrlError;
    fn from_str(url: &str) -> Result<Self, UrlError> {
        let err = |problem| UrlError { url: url.to_string(), problem };
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://").or_else(|| url.strip_prefix("ssl://"))
        {
            (true, r)
        } else if let Some(r) = url.strip_prefix("mqtt://").or_else(|| url.strip_prefix("tcp://")) {
            (false, r)
        } else {
            return Err(err("must start with mqtt:// or mqtts://"));
        };
        let authority = rest.trim_end_matches('/');
        if authority.contains(['/', '@', '?', '#']) {
            return Err(err("only host and port are allowed (credentials go in their own options)"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            // `[::1]:1883`, `host:1883`; a bare IPv6 address needs brackets.
            Some((h, p)) if !h.contains(':') || (h.starts_with('[') && h.ends_with(']')) => {
                (h.trim_start_matches('[').trim_end_matches(']'), p.parse().map_err(|_| err("bad port"))?)
            }
            Some(_) => return Err(err("an IPv6 address needs brackets: mqtt://[::1]:1883")),
            None => (authority, if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() {
            return Err(err("no host"));
        }
        Ok(BrokerUrl { host: host.to_string(), port, tls })
    }
}

impl std::fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    pub url: BrokerUrl,
    pub client_id: String,
    pub username: String,
    pub password: String,
    /// PEM CA certificates to trust for `mqtts://` (the system's roots when `None`).
    pub ca_pem: Option<Vec<u8>>,
    pub keep_alive: Duration,
    /// Topic filters subscribed (QoS 1) on every connect.
    pub subscriptions: Vec<String>,
    /// A retained QoS 1 last will: (topic, payload).
    pub will: Option<(String, Vec<u8>)>,
    /// Largest packet accepted from the broker.
    pub max_packet: u32,
}

/// What an agent needs to reach its hub: written by `flotilla-hub node add` (or the join
/// flow) and read by `flotilla-agent run --config`. Holds a password: mode 0600.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentConfig {
    /// This node's name (also its broker user name).
    pub node: String,
    /// `mqtt://host:port` or `mqtts://host:port`.
    pub broker: String,
    pub username: String,
    pub password: String,
    #[serde(default = "default_root")]
    pub topic_root: String,
    /// PEM CA certificates for `mqtts://` (the system's roots when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

fn default_root() -> String {
    flotilla_shared::wire::topics::DEFAULT_ROOT.to_string()
}

/// What the event loop reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// Connected (again); `session_present` tells whether the broker kept our session (and,
    /// for the hub, whether retained state may have been lost with a broker restart).
    Connected {
        session_present: bool,
    },
    Message {
        topic: String,
        payload: Bytes,
    },
    /// The connection failed or dropped; the loop reconnects after `retry_in`.
    Disconnected {
        error: String,
        retry_in: Duration,
    },
}

/// A handle to publish through the link. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Link {
    client: AsyncClient,
}

fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

fn tls_config(ca_pem: Option<&[u8]>) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in rustls_pemfile::certs(&mut &pem[..]) {
                roots.add(cert?)?;
            }
            if roots.is_empty() {
                anyhow::bail!("the CA file holds no PEM certificate");
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The MQTT options for `cfg` (exposed for tests and for clients that drive their own loop).
pub fn mqtt_options(cfg: &LinkConfig) -> anyhow::Result<MqttOptions> {
    let mut o = MqttOptions::new(cfg.client_id.clone(), cfg.url.host.clone(), cfg.url.port);
    o.set_credentials(cfg.username.clone(), cfg.password.clone());
    o.set_keep_alive(cfg.keep_alive.max(Duration::from_secs(5)));
    o.set_outgoing_inflight_upper_limit(INFLIGHT);
    o.set_max_packet_size(Some(cfg.max_packet));
    o.set_clean_start(true);
    o.set_connection_timeout(10);
    if let Some((topic, payload)) = &cfg.will {
        o.set_last_will(LastWill::new(topic.clone(), payload.clone(), QoS::AtLeastOnce, true, None));
    }
    if cfg.url.tls {
        let tls = tls_config(cfg.ca_pem.as_deref())?;
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(tls))));
    }
    Ok(o)
}

impl Link {
    /// Starts the event loop on the current tokio runtime; events go to `events` (the loop
    /// ends when `events` is closed).
    pub fn spawn(cfg: LinkConfig, events: mpsc::Sender<LinkEvent>) -> anyhow::Result<Link> {
        let (client, mut ev) = AsyncClient::new(mqtt_options(&cfg)?, 256);
        let subscriber = client.clone();
        tokio::spawn(async move {
            let mut backoff = Reconnect::default();
            let mut up_since: Option<Instant> = None;
            loop {
                let event = match ev.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        up_since = Some(Instant::now());
                        for filter in &cfg.subscriptions {
                            // From inside the loop: never wait on the request channel it drains.
                            if let Err(e) = subscriber.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                                tracing::warn!(filter, error = %e, "cannot subscribe");
                            }
                        }
                        tracing::info!(broker = %cfg.url, session_present = ack.session_present, "connected to the broker");
                        Some(LinkEvent::Connected { session_present: ack.session_present })
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => Some(LinkEvent::Message {
                        topic: String::from_utf8_lossy(&p.topic).into_owned(),
                        payload: p.payload,
                    }),
                    Ok(_) => None,
                    Err(e) => {
                        if let Some(t) = up_since.take() {
                            backoff.link_up_for(t.elapsed());
                        }
                        let retry_in = backoff.next_delay(random_unit());
                        tracing::warn!(broker = %cfg.url, error = %e, retry_in = ?retry_in, "broker connection lost");
                        let event = LinkEvent::Disconnected { error: e.to_string(), retry_in };
                        if events.send(event).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(retry_in).await;
                        None
                    }
                };
                if let Some(e) = event {
                    if events.send(e).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Link { client })
    }

    /// Publishes at QoS 1 (queued while disconnected, up to the request channel's capacity).
    pub async fn publish(&self, topic: String, payload: Vec<u8>, retain: bool) -> anyhow::Result<()> {
        self.client.publish(topic, QoS::AtLeastOnce, retain, payload).await?;
        Ok(())
    }

    /// Like `publish`, but fails instead of waiting when the request queue is full.
    pub fn try_publish(&self, topic: String, payload: Vec<u8>, retain: bool) -> anyhow::Result<()> {
        self.client.try_publish(topic, QoS::AtLeastOnce, retain, payload)?;
        Ok(())
    }

    /// Sends a DISCONNECT (a clean one: the broker does not publish the last will).
    pub async fn disconnect(&self) {
        let _ = self.client.disconnect().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        let ok = [
            ("mqtt://hub.local", "hub.local", 1883, false),
            ("mqtts://hub.local", "hub.local", 8883, true),
            ("mqtt://10.0.0.1:11883/", "10.0.0.1", 11883, false),
            ("ssl://h:8884", "h", 8884, true),
            ("mqtt://[::1]:1883", "::1", 1883, false),
        ];
        for (url, host, port, tls) in ok {
            let u: BrokerUrl = url.parse().unwrap();
            assert_eq!((u.host.as_str(), u.port, u.tls), (host, port, tls), "{url}");
            assert_eq!(u.to_string().parse::<BrokerUrl>().unwrap(), u, "round trip of {url}");
        }
        for bad in ["http://h", "mqtt://", "mqtt://h:x", "mqtt://u:p@h", "mqtt://::1", "mqtt://h/path"] {
            assert!(bad.parse::<BrokerUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn random_units_are_in_range() {
        for _ in 0..1000 {
            let u = random_unit();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
