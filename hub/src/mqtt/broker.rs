//! The embedded MQTT broker (rmqtt): one process is a whole control plane. It runs on a tokio
//! runtime of its own (rmqtt has no stop API: dropping the runtime stops it), with retained
//! messages kept in memory without expiry, persistent sessions, MQTT 3.1.1 and 5, TLS, and
//! every connect, subscribe and publish decided by the hub's own code (`acl`, `users`).
//!
//! rmqtt traps handled here (../shared/findings.md): retained messages would expire after the
//! listener's message expiry (our retainer ignores expiry); last-will topics bypass the publish
//! ACL (checked at connect); anonymous clients would skip the authentication hook (refused);
//! the default busy check refuses connects under load (off); `MqttServer::start` exits the
//! process on error (we run the server ourselves).
//! Each node's publishes are also held to its size caps and budget (`budget`) here, before
//! they are routed, so one node cannot fill the hub's queues.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use rmqtt::codec::v5::SubscribeAckReason;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, Register, ReturnType, Type};
use rmqtt::net::Builder;
use rmqtt::server::MqttServer;
use rmqtt::types::{AuthResult, ConnectInfo, LastWill, PublishAclResult, SubscribeAclResult};

use flotilla_shared::wire::topics::{NodeTopic, Topics};

use super::acl::{may_publish, may_subscribe, may_use_client_id, Role};
use super::budget::{Budget, Throttle, Verdict};
use super::users::Users;

/// Where the embedded broker listens.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// Plain MQTT (loopback by default).
    pub tcp: Option<SocketAddr>,
    /// MQTT over TLS, with the certificate and key (PEM files).
    pub tls: Option<(SocketAddr, PathBuf, PathBuf)>,
    /// Largest packet accepted (a desired snapshot must fit).
    pub max_packet: u32,
}

/// A running embedded broker. Dropping it stops it.
pub struct Broker {
    rt: Option<tokio::runtime::Runtime>,
    _register: Option<Box<dyn Register>>,
    pub tcp_addr: Option<SocketAddr>,
    pub tls_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").field("tcp", &self.tcp_addr).field("tls", &self.tls_addr).finish()
    }
}

fn listener(name: &str, addr: SocketAddr, max_packet: u32) -> Builder {
    Builder::new()
        .name(name)
        .laddr(addr)
        .reuseaddr(Some(true))
        // Anonymous clients would never reach the authentication hook.
        .allow_anonymous(false)
        .max_packet_size(max_packet)
        .min_keepalive(5)
        .max_keepalive(600)
        .allow_zero_keepalive(false)
        // Persistent sessions (clean_session=false / v5 session expiry) survive a day offline.
        .session_expiry_interval(Duration::from_secs(24 * 3600))
        .max_session_expiry_interval(Duration::from_secs(24 * 3600))
        .message_expiry_interval(Duration::from_secs(3600))
        // The hub's own session receives every node's reports: a burst (a fleet joining or
        // coming back at once) must queue, not be dropped. Nodes use clean sessions, so their
        // queues stay short. 100,000 is about a minute of reports from 19,000 nodes.
        .max_mqueue_len(100_000)
        .max_inflight(std::num::NonZeroU16::new(256).unwrap_or(std::num::NonZeroU16::MIN))
        .max_connections(1_000_000)
        .max_handshaking_limit(2000)
        .nodelay(true)
}

impl Broker {
    /// Starts the broker; returns once its listeners are bound.
    pub async fn start(opts: BrokerOptions, users: Users, topics: Topics) -> anyhow::Result<Broker> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("mqtt-broker")
            .enable_all()
            .build()
            .context("starting the broker's runtime")?;
        let started = rt
            .spawn(async move {
                let scx = ServerContext::new().busy_check_enable(false).mqtt_max_sessions(0).build().await;
                retain::install(&scx).await;
                let register = scx.extends.hook_mgr().register();
                let budget = Arc::new(Mutex::new((Budget::default(), Throttle::default(), Instant::now())));
                for t in
                    [Type::ClientAuthenticate, Type::ClientSubscribeCheckAcl, Type::MessagePublishCheckAcl]
                {
                    let h = Hooks { users: users.clone(), topics: topics.clone(), budget: budget.clone() };
                    register.add(t, Box::new(h)).await;
                }
                register.start().await;
                let mut server = MqttServer::new(scx.clone());
                let (mut tcp_addr, mut tls_addr) = (None, None);
                let mut id = 0;
                if let Some(addr) = opts.tcp {
                    let l = listener("tcp", addr, opts.max_packet)
                        .bind()
                        .with_context(|| format!("binding the MQTT listener on {addr}"))?
                        .tcp()?;
                    tcp_addr = Some(l.local_addr()?);
                    id += 1;
                    server = server.listener_by_id(l, id);
                }
                if let Some((addr, cert, key)) = opts.tls {
                    let l = listener("tls", addr, opts.max_packet)
                        .tls_cert(Some(cert.display().to_string()))
                        .tls_key(Some(key.display().to_string()))
                        .bind()
                        .with_context(|| format!("binding the MQTT TLS listener on {addr}"))?
                        .tls()?;
                    tls_addr = Some(l.local_addr()?);
                    id += 1;
                    server = server.listener_by_id(l, id);
                }
                let server = server.build();
                tokio::spawn(async move {
                    if let Err(e) = server.run().await {
                        tracing::error!(error = %e, "the embedded MQTT broker stopped");
                    }
                });
                Ok::<_, anyhow::Error>((register, tcp_addr, tls_addr))
            })
            .await
            .context("the broker's start-up task")??;
        let (register, tcp_addr, tls_addr) = started;
        Ok(Broker { rt: Some(rt), _register: Some(register), tcp_addr, tls_addr })
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // rmqtt's objects spawn tasks when dropped: drop them on the broker's runtime.
        if let (Some(rt), Some(reg)) = (self.rt.as_ref(), self._register.take()) {
            rt.spawn(async move { drop(reg) });
        }
        if let Some(rt) = self.rt.take() {
            // Dropping a runtime inside another one panics.
            rt.shutdown_background();
        }
    }
}

fn will_topic(ci: &ConnectInfo) -> Option<String> {
    ci.last_will().map(|lw| match lw {
        LastWill::V3(w) => w.topic.to_string(),
        LastWill::V5(w) => w.topic.to_string(),
    })
}

struct Hooks {
    users: Users,
    topics: Topics,
    /// Shared by the hook instances: one budget per node, whichever hook sees its publishes.
    budget: Arc<Mutex<(Budget, Throttle, Instant)>>,
}

impl Hooks {
    fn admit(&self, node: &str, leaf: &NodeTopic, bytes: usize) -> PublishAclResult {
        let now = Instant::now();
        let mut guard = self.budget.lock().unwrap_or_else(|p| p.into_inner());
        let (budget, throttle, pruned) = &mut *guard;
        if now.saturating_duration_since(*pruned) > Duration::from_secs(60) {
            budget.prune(now);
            *pruned = now;
        }
        let (what, detail) = match budget.admit(node, leaf, bytes, now) {
            Verdict::Take => return PublishAclResult::allow(),
            Verdict::TooLarge { max } => ("too large", format!("{bytes} bytes, at most {max} on this topic")),
            Verdict::OverBudget => ("over budget", format!("{bytes} bytes; the node sent too much lately")),
        };
        if let Some(n) = throttle.say(node, what, now) {
            tracing::warn!(
                node,
                refused = n,
                detail,
                "refused a node's publish ({what}); said at most once a minute"
            );
        }
        PublishAclResult::rejected(false, None)
    }

    fn role_of(&self, username: Option<&str>) -> Option<Role> {
        self.users.role(username?)
    }
}

#[async_trait]
impl Handler for Hooks {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::ClientAuthenticate(ci) => {
                let role = match (ci.username(), ci.password()) {
                    (Some(u), Some(p)) => self.users.authenticate(u, p),
                    _ => None,
                };
                let result = match role {
                    None => AuthResult::BadUsernameOrPassword,
                    // The will is published by the broker on the client's behalf, past the
                    // publish ACL: check its topic now.
                    Some(r) if will_topic(ci).is_some_and(|t| !may_publish(&r, &self.topics, &t)) => {
                        tracing::warn!(user = ?ci.username(), will = ?will_topic(ci), "refused a connect whose last will is outside its topics");
                        AuthResult::NotAuthorized
                    }
                    Some(r)
                        if !may_use_client_id(
                            &r,
                            &ci.id().client_id,
                            self.users.role(&ci.id().client_id).is_some(),
                        ) =>
                    {
                        tracing::warn!(user = ?ci.username(), client_id = %ci.id().client_id, "refused a connect with a client id that is not its own");
                        AuthResult::NotAuthorized
                    }
                    Some(r) => AuthResult::Allow(r == Role::Hub, None),
                };
                (false, Some(HookResult::AuthResult(result)))
            }
            Parameter::ClientSubscribeCheckAcl(s, sub) => {
                let allowed = self
                    .role_of(Some(s.id.username_ref()))
                    .is_some_and(|r| may_subscribe(&r, &self.topics, &sub.topic_filter));
                let r = if allowed {
                    SubscribeAclResult::new_success(sub.opts.qos(), None)
                } else {
                    tracing::debug!(user = ?s.id.username, filter = %sub.topic_filter, "subscription refused");
                    SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized)
                };
                (false, Some(HookResult::SubscribeAclResult(r)))
            }
            Parameter::MessagePublishCheckAcl(s, p) => {
                let role = self.role_of(Some(s.id.username_ref()));
                let allowed = role.as_ref().is_some_and(|r| may_publish(r, &self.topics, &p.topic));
                let r = if !allowed {
                    tracing::debug!(user = ?s.id.username, topic = %p.topic, "publish refused");
                    PublishAclResult::rejected(false, None)
                } else if let (Some(Role::Node(node)), Some((_, leaf))) =
                    (&role, self.topics.parse_node_topic(&p.topic))
                {
                    // A node's budget is spent here, before the message is routed (and queued
                    // for the hub): a flood from one node is refused at the door.
                    self.admit(node, &leaf, p.payload.len())
                } else {
                    PublishAclResult::allow()
                };
                (false, Some(HookResult::PublishAclResult(r)))
            }
            _ => (true, acc),
        }
    }
}

/// Retained messages in memory that never expire (rmqtt's default retainer would expire them
/// with the listener's message expiry, 5 minutes by default).
mod retain {
    use std::time::Duration;

    use async_trait::async_trait;
    use rmqtt::retain::{DefaultRetainStorage, RetainStorage};
    use rmqtt::types::{Retain, TopicFilter, TopicName};

    struct Forever(DefaultRetainStorage);

    #[async_trait]
    impl RetainStorage for Forever {
        fn enable(&self) -> bool {
            true
        }
        async fn set(
            &self,
            topic: &TopicName,
            retain: Retain,
            _expiry: Option<Duration>,
        ) -> rmqtt::Result<()> {
            self.0.set_with_timeout(topic, retain, None).await
        }
        async fn get(&self, filter: &TopicFilter) -> rmqtt::Result<Vec<(TopicName, Retain)>> {
            self.0.get_message(filter).await
        }
        async fn count(&self) -> isize {
            self.0.count().await
        }
        async fn max(&self) -> isize {
            self.0.max().await
        }
    }

    pub async fn install(scx: &rmqtt::context::ServerContext) {
        *scx.extends.retain_mut().await = Box::new(Forever(DefaultRetainStorage::new()));
    }
}
