//! Property tests for the wire format: every message type round-trips through its envelope,
//! and no byte string (random, or a mutated valid payload) makes a decoder panic.

use crate::samples;

use flotilla_shared::api::*;
use flotilla_shared::wire::serde_bytes_compat::Bytes;
use flotilla_shared::wire::*;
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,20}[a-z0-9]"
}

fn text() -> impl Strategy<Value = String> {
    any::<String>().prop_map(|s| s.chars().take(40).collect())
}

fn meta() -> impl Strategy<Value = ObjectMeta> {
    (
        name(),
        option::of(name()),
        option::of(btree_map(name(), text(), 0..4)),
        option::of(text()),
        option::of(any::<i64>()),
    )
        .prop_map(|(n, ns, labels, uid, generation)| ObjectMeta {
            name: Some(n),
            namespace: ns,
            labels,
            uid,
            generation,
            ..Default::default()
        })
}

fn int_or_string() -> impl Strategy<Value = IntOrString> {
    prop_oneof![any::<i64>().prop_map(IntOrString::Int), name().prop_map(IntOrString::String)]
}

fn probe() -> impl Strategy<Value = Probe> {
    (
        prop_oneof![
            vec(text(), 1..3).prop_map(|c| (Some(ExecAction { command: Some(c) }), None, None)),
            (int_or_string(), option::of("/[a-z]{0,8}")).prop_map(|(port, path)| (
                None,
                Some(HttpGetAction {
                    path,
                    port,
                    host: None,
                    scheme: Some(UriScheme::Http),
                    http_headers: None
                }),
                None
            )),
            int_or_string().prop_map(|port| (None, None, Some(TcpSocketAction { port, host: None }))),
        ],
        option::of(0i32..100),
        option::of(1i32..100),
    )
        .prop_map(|((exec, http_get, tcp_socket), initial, period)| Probe {
            exec,
            http_get,
            tcp_socket,
            initial_delay_seconds: initial,
            period_seconds: period,
            ..Default::default()
        })
}

fn container() -> impl Strategy<Value = Container> {
    (
        name(),
        option::of("[a-z]{1,10}(:[a-z0-9.]{1,6})?"),
        option::of(vec(text(), 0..4)),
        option::of(vec(
            (name(), option::of(text())).prop_map(|(n, v)| EnvVar { name: n, value: v, value_from: None }),
            0..4,
        )),
        option::of(vec(
            (1i32..65536, option::of(prop_oneof![Just(Protocol::Tcp), Just(Protocol::Udp)])),
            0..3,
        )),
        option::of(btree_map(
            prop_oneof![Just("cpu".to_string()), Just("memory".to_string())],
            "[0-9]{1,4}(m|Mi|Gi)?",
            0..2,
        )),
        option::of(probe()),
        option::of(prop_oneof![
            Just(PullPolicy::Always),
            Just(PullPolicy::IfNotPresent),
            Just(PullPolicy::Never)
        ]),
    )
        .prop_map(|(name, image, args, env, ports, limits, liveness, pull)| Container {
            name,
            image,
            args,
            env,
            ports: ports.map(|ps| {
                ps.into_iter()
                    .map(|(p, proto)| ContainerPort {
                        container_port: p,
                        host_port: None,
                        host_ip: None,
                        protocol: proto,
                        name: None,
                    })
                    .collect()
            }),
            resources: limits.map(|l| ResourceRequirements {
                requests: None,
                limits: Some(l.into_iter().map(|(k, v)| (k, v.as_str().into())).collect()),
            }),
            liveness_probe: liveness,
            image_pull_policy: pull,
            ..Default::default()
        })
}

fn pod_spec() -> impl Strategy<Value = PodSpec> {
    (
        vec(container(), 1..3),
        option::of(vec(container(), 0..2)),
        option::of(prop_oneof![
            Just(RestartPolicy::Always),
            Just(RestartPolicy::OnFailure),
            Just(RestartPolicy::Never)
        ]),
        option::of(btree_map(name(), name(), 0..3)),
        option::of(any::<bool>()),
        option::of(0i64..3600),
    )
        .prop_map(|(containers, init, restart, selector, host_network, grace)| PodSpec {
            containers,
            init_containers: init,
            restart_policy: restart,
            node_selector: selector,
            host_network,
            termination_grace_period_seconds: grace,
            ..Default::default()
        })
}

fn config_data() -> impl Strategy<Value = ConfigData> {
    (name(), name(), "[0-9]{1,5}", btree_map(name(), vec(any::<u8>(), 0..64), 0..4)).prop_map(
        |(ns, n, rv, data)| ConfigData {
            namespace: ns,
            name: n,
            resource_version: rv,
            data: data.into_iter().map(|(k, v)| (k, Bytes(v))).collect(),
        },
    )
}

fn desired() -> impl Strategy<Value = DesiredSnapshot> {
    (
        name(),
        any::<u64>(),
        vec((meta(), pod_spec()).prop_map(|(metadata, spec)| DesiredPod { metadata, spec }), 0..4),
        vec(config_data(), 0..3),
        vec(config_data(), 0..3),
        vec(
            (name(), text(), text()).prop_map(|(registry, username, password)| RegistryAuth {
                registry,
                username,
                password,
            }),
            0..2,
        ),
        vec(
            (name(), name(), name(), "/[a-z/]{1,20}").prop_map(|(namespace, claim, volume, path)| {
                ClaimVolume {
                    namespace,
                    claim,
                    volume,
                    host_path: HostPathVolumeSource { path, type_: Some(HostPathType::DirectoryOrCreate) },
                }
            }),
            0..2,
        ),
    )
        .prop_map(|(node, generation, pods, config_maps, secrets, registry_auth, claims)| {
            DesiredSnapshot { node, generation, pods, config_maps, secrets, registry_auth, claims }
        })
}

fn container_state() -> impl Strategy<Value = ContainerState> {
    prop_oneof![
        option::of(text()).prop_map(|r| ContainerState {
            waiting: Some(StateWaiting { reason: r, message: None }),
            ..Default::default()
        }),
        option::of(text()).prop_map(|t| ContainerState {
            running: Some(StateRunning { started_at: t }),
            ..Default::default()
        }),
        (any::<i32>(), option::of(any::<i32>()), option::of(text())).prop_map(|(code, signal, reason)| {
            ContainerState {
                terminated: Some(StateTerminated { exit_code: code, signal, reason, ..Default::default() }),
                ..Default::default()
            }
        }),
    ]
}

fn pod_report() -> impl Strategy<Value = PodReport> {
    (
        name(),
        name(),
        text(),
        option::of(prop_oneof![
            Just(PodPhase::Pending),
            Just(PodPhase::Running),
            Just(PodPhase::Succeeded),
            Just(PodPhase::Failed),
            Just(PodPhase::Unknown)
        ]),
        vec((name(), option::of(container_state()), any::<bool>(), 0i64..1000), 0..3),
    )
        .prop_map(|(namespace, name, uid, phase, cs)| PodReport {
            namespace,
            name,
            uid,
            status: PodStatus {
                phase,
                container_statuses: Some(
                    cs.into_iter()
                        .map(|(name, state, ready, restart_count)| ContainerStatus {
                            name,
                            state,
                            ready,
                            restart_count,
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            },
        })
}

fn status() -> impl Strategy<Value = StatusReport> {
    (
        name(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        (text(), any::<u32>(), any::<u64>(), btree_map(name(), text(), 0..3), vec(text(), 0..2)),
        vec((text(), any::<bool>(), text(), any::<u64>()), 0..3),
        vec(pod_report(), 0..4),
    )
        .prop_map(
            |(
                node,
                seq,
                observed_generation,
                time_ms,
                (kernel, cpus, memory_bytes, labels, addresses),
                conds,
                pods,
            )| StatusReport {
                node,
                seq,
                observed_generation,
                time_ms,
                info: NodeInfo {
                    arch: "arm".into(),
                    os: "linux".into(),
                    kernel,
                    cpus,
                    memory_bytes,
                    labels,
                    addresses,
                    ..Default::default()
                },
                conditions: conds
                    .into_iter()
                    .map(|(kind, status, reason, since_ms)| NodeCondition {
                        kind,
                        status,
                        reason,
                        message: String::new(),
                        since_ms,
                    })
                    .collect(),
                pods,
                epoch: seq.rotate_left(17),
            },
        )
}

fn roundtrip<M: Message + PartialEq + std::fmt::Debug>(m: &M) {
    let bytes = encode(m);
    assert_eq!(&decode::<M>(&bytes, usize::MAX).unwrap(), m);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn desired_round_trips(m in desired()) { roundtrip(&m); }

    #[test]
    fn status_round_trips(m in status()) { roundtrip(&m); }

    #[test]
    fn heartbeat_round_trips(node in name(), seq in any::<u64>(), g in any::<u64>(), t in any::<u64>()) {
        roundtrip(&Heartbeat { node, seq, observed_generation: g, time_ms: t, epoch: g ^ t });
    }

    #[test]
    fn presence_round_trips(node in name(), online in any::<bool>(), boot_id in text(), v in text(), session in any::<u64>(), t in any::<u64>()) {
        roundtrip(&Presence { node, online, boot_id, agent_version: v, session, time_ms: t });
    }

    #[test]
    fn events_round_trip(node in name(), evs in vec((any::<u64>(), any::<u64>(), any::<bool>(), text(), text(), text(), name()), 0..5)) {
        roundtrip(&Events {
            node,
            events: evs.into_iter().map(|(seq, time_ms, warning, reason, message, pod, container)| Event { seq, time_ms, warning, reason, message, pod, container }).collect(),
        });
    }

    #[test]
    fn log_messages_round_trip(id in name(), tail in option::of(any::<u64>()), follow in any::<bool>(), data in vec(any::<u8>(), 0..256), eof in any::<bool>(), err in option::of(text())) {
        roundtrip(&LogRequest { request_id: id.clone(), namespace: "ns".into(), pod: "p".into(), container: "c".into(), tail_lines: tail, follow, cancel: false });
        roundtrip(&LogChunk { request_id: id, seq: 1, data: Bytes(data), eof, error: err });
    }

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        let _ = decode::<DesiredSnapshot>(&bytes, DEFAULT_MAX_PAYLOAD);
        let _ = decode::<StatusReport>(&bytes, DEFAULT_MAX_PAYLOAD);
        let _ = decode::<Events>(&bytes, DEFAULT_MAX_PAYLOAD);
    }

    #[test]
    fn mutated_payloads_never_panic(pos in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let mut bytes = encode(&samples::desired());
        let i = pos.index(bytes.len());
        bytes[i] = byte;
        let _ = decode::<DesiredSnapshot>(&bytes, DEFAULT_MAX_PAYLOAD);
        let n = cut.index(bytes.len());
        let _ = decode::<DesiredSnapshot>(&bytes[..n], DEFAULT_MAX_PAYLOAD);
        let mut st = encode(&samples::status());
        let j = pos.index(st.len());
        st[j] ^= byte;
        let _ = decode::<StatusReport>(&st, DEFAULT_MAX_PAYLOAD);
    }
}

#[test]
fn samples_round_trip() {
    roundtrip(&samples::desired());
    roundtrip(&samples::status());
    roundtrip(&samples::heartbeat());
    roundtrip(&samples::status_with_epoch());
    roundtrip(&samples::heartbeat_with_epoch());
    roundtrip(&samples::presence());
    roundtrip(&samples::events());
    roundtrip(&samples::log_request());
    roundtrip(&samples::log_chunk());
}
