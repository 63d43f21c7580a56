//! Fixed sample messages shared by the golden-vector and property tests.

use std::collections::BTreeMap;

use flotilla_shared::api::*;
use flotilla_shared::wire::serde_bytes_compat::Bytes;
use flotilla_shared::wire::*;

pub fn pod_spec() -> PodSpec {
    PodSpec {
        containers: vec![Container {
            name: "web".into(),
            image: Some("127.0.0.1:5000/tools/busybox:1.36".into()),
            command: Some(vec!["httpd".into(), "-f".into()]),
            env: Some(vec![EnvVar { name: "MODE".into(), value: Some("edge".into()), value_from: None }]),
            ports: Some(vec![ContainerPort {
                container_port: 8080,
                host_port: None,
                host_ip: None,
                protocol: Some(Protocol::Tcp),
                name: Some("http".into()),
            }]),
            resources: Some(ResourceRequirements {
                requests: Some(BTreeMap::from([("cpu".into(), "100m".into())])),
                limits: Some(BTreeMap::from([("memory".into(), "64Mi".into())])),
            }),
            volume_mounts: Some(vec![VolumeMount {
                name: "conf".into(),
                mount_path: "/etc/web".into(),
                sub_path: None,
                read_only: Some(true),
            }]),
            readiness_probe: Some(Probe {
                http_get: Some(HttpGetAction {
                    path: Some("/healthz".into()),
                    port: IntOrString::String("http".into()),
                    host: None,
                    scheme: None,
                    http_headers: None,
                }),
                period_seconds: Some(5),
                ..Default::default()
            }),
            ..Default::default()
        }],
        restart_policy: Some(RestartPolicy::Always),
        volumes: Some(vec![Volume {
            name: "conf".into(),
            config_map: Some(ConfigMapVolumeSource { name: "web-conf".into(), ..Default::default() }),
            ..Default::default()
        }]),
        termination_grace_period_seconds: Some(10),
        ..Default::default()
    }
}

pub fn desired() -> DesiredSnapshot {
    DesiredSnapshot {
        claims: vec![],
        node: "pi-1".into(),
        generation: 42,
        pods: vec![DesiredPod {
            metadata: ObjectMeta {
                name: Some("web-7d4b9c".into()),
                namespace: Some("default".into()),
                uid: Some("3f1c2a9e-0000-4000-8000-000000000001".into()),
                labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                ..Default::default()
            },
            spec: pod_spec(),
        }],
        config_maps: vec![ConfigData {
            namespace: "default".into(),
            name: "web-conf".into(),
            resource_version: "17".into(),
            data: BTreeMap::from([("index.html".into(), Bytes::from("<h1>hi</h1>"))]),
        }],
        secrets: vec![],
        registry_auth: vec![RegistryAuth {
            registry: "127.0.0.1:5000".into(),
            username: "edge".into(),
            password: "s3cret".into(),
        }],
    }
}

pub fn status() -> StatusReport {
    StatusReport {
        node: "pi-1".into(),
        seq: 9,
        observed_generation: 42,
        time_ms: 1_764_400_000_000,
        info: NodeInfo {
            arch: "arm64".into(),
            os: "linux".into(),
            kernel: "6.1.0-rpi7".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            hostname: "pi-1".into(),
            cpus: 4,
            memory_bytes: 4 << 30,
            labels: BTreeMap::from([("kubernetes.io/arch".into(), "arm64".into())]),
            agent_version: "0.1.0".into(),
            boot_id: "5b0c1f5e-1111-4222-8333-444455556666".into(),
            addresses: vec!["192.0.2.10".into()],
        },
        conditions: vec![NodeCondition {
            kind: "Ready".into(),
            status: true,
            reason: "AgentReady".into(),
            message: "agent is posting ready status".into(),
            since_ms: 1_764_399_000_000,
        }],
        pods: vec![PodReport {
            namespace: "default".into(),
            name: "web-7d4b9c".into(),
            uid: "3f1c2a9e-0000-4000-8000-000000000001".into(),
            status: PodStatus {
                phase: Some(PodPhase::Running),
                container_statuses: Some(vec![ContainerStatus {
                    name: "web".into(),
                    state: Some(ContainerState {
                        running: Some(StateRunning { started_at: Some("2026-11-29T10:00:00Z".into()) }),
                        ..Default::default()
                    }),
                    last_state: Some(ContainerState {
                        terminated: Some(StateTerminated {
                            exit_code: 137,
                            reason: Some("OOMKilled".into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ready: true,
                    restart_count: 1,
                    ..Default::default()
                }]),
                ..Default::default()
            },
        }],
        epoch: 0,
    }
}

/// A report from an agent that counts in epochs (`epoch` present on the wire).
pub fn status_with_epoch() -> StatusReport {
    StatusReport { seq: 3, epoch: 0x5eed_1dea_0000_0001, ..status() }
}

pub fn heartbeat() -> Heartbeat {
    Heartbeat { node: "pi-1".into(), seq: 10, observed_generation: 42, time_ms: 1_764_400_030_000, epoch: 0 }
}

pub fn heartbeat_with_epoch() -> Heartbeat {
    Heartbeat { seq: 3, epoch: 0x5eed_1dea_0000_0001, ..heartbeat() }
}

pub fn presence() -> Presence {
    Presence {
        node: "pi-1".into(),
        online: false,
        boot_id: "5b0c1f5e-1111-4222-8333-444455556666".into(),
        agent_version: "0.1.0".into(),
        session: 3,
        time_ms: 1_764_400_000_000,
    }
}

pub fn events() -> Events {
    Events {
        node: "pi-1".into(),
        events: vec![Event {
            seq: 1,
            time_ms: 1_764_400_000_500,
            warning: true,
            reason: "OOMKilled".into(),
            message: "container web exceeded its 64Mi memory limit".into(),
            pod: "default/web-7d4b9c".into(),
            container: "web".into(),
        }],
    }
}

pub fn log_request() -> LogRequest {
    LogRequest {
        request_id: "r1".into(),
        namespace: "default".into(),
        pod: "web-7d4b9c".into(),
        container: "web".into(),
        tail_lines: Some(100),
        follow: true,
        cancel: false,
    }
}

pub fn log_chunk() -> LogChunk {
    LogChunk { request_id: "r1".into(), seq: 0, data: Bytes::from("hello\n"), eof: false, error: None }
}
