//! The embedded broker with real MQTT clients (rumqttc, v5 and 3.1.1) over loopback: the
//! hub's access rules decide every connect, subscribe and publish; retained messages do not
//! expire; last wills outside a node's topics are refused; persistent sessions keep QoS 1
//! messages for a client that was away.

use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{
    ConnectReturnCode, LastWill, Packet, PubAckReason, PublishProperties, SubscribeReasonCode,
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};

use flotilla_hub::mqtt::acl::Role;
use flotilla_hub::mqtt::broker::{Broker, BrokerOptions};
use flotilla_hub::mqtt::users::Users;
use flotilla_shared::wire::topics::Topics;

async fn broker() -> (Broker, u16) {
    let users = Users::default();
    users.insert("hub", Role::Hub, "hub-pw");
    users.insert("pi-1", Role::Node("pi-1".into()), "pi-1-pw");
    users.insert("pi-2", Role::Node("pi-2".into()), "pi-2-pw");
    users.insert("grafana", Role::Viewer, "view-pw");
    let opts = BrokerOptions { tcp: Some("127.0.0.1:0".parse().unwrap()), tls: None, max_packet: 1 << 20 };
    let b = Broker::start(opts, users, Topics::default()).await.unwrap();
    let port = b.tcp_addr.unwrap().port();
    (b, port)
}

fn options(id: &str, port: u16, user: &str, pw: &str) -> MqttOptions {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_credentials(user, pw);
    o.set_keep_alive(Duration::from_secs(10));
    // Without this, a v5 client pre-allocates a 65,536-slot in-flight table (~13.5 MiB).
    o.set_outgoing_inflight_upper_limit(32);
    o
}

/// Polls until the next packet from the broker (skipping outgoing events), or an error.
async fn next(ev: &mut EventLoop) -> Result<Packet, ConnectionError> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ev.poll()).await {
            Ok(Ok(Event::Incoming(p))) => return Ok(p),
            Ok(Ok(Event::Outgoing(_))) => continue,
            Ok(Err(e)) => return Err(e),
            Err(_) => panic!("no packet within 5 s"),
        }
    }
}

async fn connect(o: MqttOptions) -> (AsyncClient, EventLoop) {
    let (c, mut ev) = AsyncClient::new(o, 16);
    match next(&mut ev).await {
        Ok(Packet::ConnAck(a)) => assert_eq!(a.code, ConnectReturnCode::Success),
        other => panic!("expected a ConnAck, got {other:?}"),
    }
    (c, ev)
}

/// Waits for a packet matching `f`, skipping others.
async fn wait_for<T>(ev: &mut EventLoop, mut f: impl FnMut(&Packet) -> Option<T>) -> T {
    loop {
        let p = next(ev).await.expect("connection");
        if let Some(t) = f(&p) {
            return t;
        }
    }
}

async fn suback(ev: &mut EventLoop) -> Vec<SubscribeReasonCode> {
    wait_for(ev, |p| match p {
        Packet::SubAck(a) => Some(a.return_codes.clone()),
        _ => None,
    })
    .await
}

async fn puback(ev: &mut EventLoop) -> PubAckReason {
    wait_for(ev, |p| match p {
        Packet::PubAck(a) => Some(a.reason),
        _ => None,
    })
    .await
}

/// The next publish to arrive on `ev` within `within`: (topic, payload, retain).
async fn receives(ev: &mut EventLoop, within: Duration) -> Option<(String, Vec<u8>, bool)> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ev.poll()).await {
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                return Some((String::from_utf8_lossy(&p.topic).into_owned(), p.payload.to_vec(), p.retain))
            }
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => panic!("connection error: {e}"),
            Err(_) => return None,
        }
    }
}

async fn poll4(ev: &mut rumqttc::EventLoop) -> Result<rumqttc::Event, rumqttc::ConnectionError> {
    tokio::time::timeout(Duration::from_secs(5), ev.poll()).await.expect("no event within 5 s")
}

fn refused(r: Result<Packet, ConnectionError>) -> bool {
    matches!(r, Err(ConnectionError::ConnectionRefused(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hubs_rules_decide_connects_subscribes_and_publishes() {
    let (_b, port) = broker().await;
    let t = Topics::default();

    // Wrong password, unknown user, no credentials: refused.
    for (user, pw) in [("pi-1", "wrong"), ("nobody", "x")] {
        let (_c, mut ev) = AsyncClient::new(options("x", port, user, pw), 16);
        assert!(refused(next(&mut ev).await), "{user}/{pw} was let in");
    }
    let mut anon = MqttOptions::new("anon", "127.0.0.1", port);
    anon.set_outgoing_inflight_upper_limit(8);
    let (_c, mut ev) = AsyncClient::new(anon, 16);
    assert!(refused(next(&mut ev).await), "anonymous was let in");

    // The hub publishes pi-1's desired state, retained, before pi-1 subscribes.
    let (hub, mut hub_ev) = connect(options("flotilla-hub", port, "hub", "hub-pw")).await;
    hub.subscribe(format!("{}/nodes/+/status", t.root()), QoS::AtLeastOnce).await.unwrap();
    assert!(matches!(suback(&mut hub_ev).await[0], SubscribeReasonCode::Success(_)));
    hub.publish(t.desired("pi-1"), QoS::AtLeastOnce, true, b"snapshot-1".to_vec()).await.unwrap();
    puback(&mut hub_ev).await;

    // pi-1 may read its own desired topic (and gets the retained snapshot), not pi-2's.
    let (pi1, mut pi1_ev) = connect(options("pi-1", port, "pi-1", "pi-1-pw")).await;
    pi1.subscribe(t.desired("pi-2"), QoS::AtLeastOnce).await.unwrap();
    let codes = suback(&mut pi1_ev).await;
    assert!(!matches!(codes[0], SubscribeReasonCode::Success(_)), "another node's desired: {codes:?}");
    pi1.subscribe(t.desired("pi-1"), QoS::AtLeastOnce).await.unwrap();
    let got = receives(&mut pi1_ev, Duration::from_secs(5)).await.expect("the retained snapshot");
    assert_eq!(got, (t.desired("pi-1"), b"snapshot-1".to_vec(), true));

    // pi-1 may publish its own status; publishing as pi-2 is refused (v5: NotAuthorized) and
    // never reaches the hub.
    pi1.publish(t.status("pi-2"), QoS::AtLeastOnce, false, b"forged".to_vec()).await.unwrap();
    assert_eq!(puback(&mut pi1_ev).await, PubAckReason::NotAuthorized);
    pi1.publish(t.status("pi-1"), QoS::AtLeastOnce, false, b"real".to_vec()).await.unwrap();
    assert_eq!(puback(&mut pi1_ev).await, PubAckReason::Success);
    let got = receives(&mut hub_ev, Duration::from_secs(5)).await.expect("pi-1's status");
    assert_eq!((got.0.as_str(), got.1.as_slice()), (t.status("pi-1").as_str(), &b"real"[..]));
    assert_eq!(receives(&mut hub_ev, Duration::from_millis(500)).await, None, "the forged status arrived");

    // pi-2 cannot take over pi-1's session (and its subscription to pi-1's desired state) by
    // connecting with pi-1's client id; pi-1 stays connected and keeps receiving.
    for (id, user, pw) in
        [("pi-1", "pi-2", "pi-2-pw"), ("pi-1", "grafana", "view-pw"), ("flotilla-hub", "pi-2", "pi-2-pw")]
    {
        let mut o = options(id, port, user, pw);
        o.set_clean_start(false);
        let (_c, mut ev) = AsyncClient::new(o, 16);
        assert!(refused(next(&mut ev).await), "{user} connected as client id {id}");
    }
    hub.publish(t.desired("pi-1"), QoS::AtLeastOnce, true, b"snapshot-2".to_vec()).await.unwrap();
    puback(&mut hub_ev).await;
    let got = receives(&mut pi1_ev, Duration::from_secs(5)).await.expect("pi-1 still subscribed");
    assert_eq!(got.1, b"snapshot-2".to_vec());

    // A viewer reads the fleet topics only.
    let (viewer, mut viewer_ev) = connect(options("dash", port, "grafana", "view-pw")).await;
    viewer.subscribe(format!("{}/#", t.root()), QoS::AtMostOnce).await.unwrap();
    let all = suback(&mut viewer_ev).await;
    viewer.subscribe(t.fleet_filter(), QoS::AtMostOnce).await.unwrap();
    let fleet = suback(&mut viewer_ev).await;
    assert!(!matches!(all[0], SubscribeReasonCode::Success(_)), "{all:?}");
    assert!(matches!(fleet[0], SubscribeReasonCode::Success(_)), "{fleet:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_last_will_outside_the_nodes_topics_is_refused() {
    let (_b, port) = broker().await;
    let t = Topics::default();
    // rmqtt publishes wills past the publish ACL: the hub checks them at connect.
    let mut o = options("pi-1", port, "pi-1", "pi-1-pw");
    o.set_last_will(LastWill::new(t.presence("pi-2"), b"offline".to_vec(), QoS::AtLeastOnce, true, None));
    let (_c, mut ev) = AsyncClient::new(o, 16);
    assert!(refused(next(&mut ev).await), "a will on another node's presence was accepted");
    let mut o = options("pi-1", port, "pi-1", "pi-1-pw");
    o.set_last_will(LastWill::new(t.presence("pi-1"), b"offline".to_vec(), QoS::AtLeastOnce, true, None));
    connect(o).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_outlive_their_expiry_and_sessions_keep_messages() {
    let (_b, port) = broker().await;
    let t = Topics::default();
    let (hub, mut hub_ev) = connect(options("flotilla-hub", port, "hub", "hub-pw")).await;
    // A retained message with a 1 s expiry (rmqtt's own retainer would also apply the
    // listener's 5-minute expiry): still retained after 2 s.
    let props = PublishProperties { message_expiry_interval: Some(1), ..Default::default() };
    hub.publish_with_properties(t.desired("pi-1"), QoS::AtLeastOnce, true, b"gen-1".to_vec(), props)
        .await
        .unwrap();
    puback(&mut hub_ev).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (pi1, mut pi1_ev) = connect(options("pi-1", port, "pi-1", "pi-1-pw")).await;
    pi1.subscribe(t.desired("pi-1"), QoS::AtLeastOnce).await.unwrap();
    let got = receives(&mut pi1_ev, Duration::from_secs(5)).await.expect("still retained");
    assert_eq!(got.1, b"gen-1");
    // An empty retained message clears the topic (how the fleet topics forget deleted pods).
    let fleet = t.fleet_pod("default", "gone");
    hub.publish(fleet.clone(), QoS::AtLeastOnce, true, b"{}".to_vec()).await.unwrap();
    puback(&mut hub_ev).await;
    hub.publish(fleet.clone(), QoS::AtLeastOnce, true, Vec::new()).await.unwrap();
    puback(&mut hub_ev).await;
    let (v, mut v_ev) = connect(options("dash", port, "grafana", "view-pw")).await;
    v.subscribe(fleet.clone(), QoS::AtLeastOnce).await.unwrap();
    let got = receives(&mut v_ev, Duration::from_secs(2)).await;
    assert_eq!(got, None, "a cleared retained message was delivered");

    // A persistent session (MQTT 3.1.1, clean_session = false) gets what was published while
    // it was away.
    use rumqttc::{AsyncClient as C4, Event as E4, MqttOptions as O4, Packet as P4, QoS as Q4};
    let mut o = O4::new("pi-2", "127.0.0.1", port);
    o.set_credentials("pi-2", "pi-2-pw");
    o.set_clean_session(false);
    let (c, mut ev) = C4::new(o.clone(), 16);
    c.subscribe(t.log_request("pi-2"), Q4::AtLeastOnce).await.unwrap();
    loop {
        if let E4::Incoming(P4::SubAck(_)) = poll4(&mut ev).await.unwrap() {
            break;
        }
    }
    c.disconnect().await.unwrap();
    // Keep polling until the disconnect is sent (queued requests are lost otherwise).
    loop {
        match poll4(&mut ev).await {
            Ok(E4::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    drop(ev);
    hub.publish(t.log_request("pi-2"), QoS::AtLeastOnce, false, b"while-away".to_vec()).await.unwrap();
    puback(&mut hub_ev).await;
    let (_c, mut ev) = C4::new(o, 16);
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ev.poll().await {
                Ok(E4::Incoming(P4::Publish(p))) => return p.payload.to_vec(),
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await
    .expect("the queued message");
    assert_eq!(got, b"while-away");
}
