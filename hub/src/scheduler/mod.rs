//! The scheduler (pure): which node an unbound pod goes to, with the filters and scores of
//! Kubernetes' default profile that matter on a fleet. Objects in, a decision out; the hub's
//! scheduling loop (`controllers::scheduling`) feeds it the store's contents and writes the
//! binding.
//!
//! Filters, in the default profile's order (a node fails at the first filter that rejects it;
//! the reasons are the scheduler's own texts):
//! - NodeUnschedulable: a cordoned node, unless the pod tolerates
//!   `node.kubernetes.io/unschedulable:NoSchedule`.
//! - TaintToleration: every NoSchedule and NoExecute taint must be tolerated. A node that is not
//!   Ready carries the node controller's taints: `node.kubernetes.io/not-ready` (Ready False) or
//!   `node.kubernetes.io/unreachable` (Ready Unknown).
//! - NodeAffinity: `nodeSelector` and required node affinity.
//! - NodePorts: hostPort conflicts with the node's pods.
//! - NodeResourcesFit: cpu and memory requests and the pod count against allocatable.
//! - VolumeBinding: the bound volume of each claim must fit the node (local volumes pin pods).
//! - InterPodAffinity: existing pods' required anti-affinity, then the pod's own required
//!   affinity and anti-affinity (any topologyKey that nodes carry as a label).
//!
//! Scores (weights as Kubernetes'): TaintToleration (3, fewer untolerated PreferNoSchedule
//! taints), NodeAffinity (2, preferred terms), InterPodAffinity (2, preferred terms), spread of
//! the pod's siblings (2, pods with the same controller), NodeResourcesFit least allocated (1),
//! BalancedAllocation (1). Ties go to the node whose name sorts first, so decisions repeat.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

use flotilla_shared::api::{
    Node, PersistentVolume, PersistentVolumeClaim, Pod, PodAffinityTerm, PodPhase, Protocol, Taint,
    TaintEffect, Toleration, TolerationOperator,
};
use flotilla_shared::selector::Labels;
use flotilla_shared::volume_binding::{self, Bindings};

/// cpu in millicores, memory in bytes, and a pod count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu_milli: u128,
    pub memory: u128,
    pub pods: u128,
}

/// A node as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct NodeView {
    pub name: String,
    pub labels: Labels,
    /// Its own taints and those its state implies (not ready, unreachable).
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resources,
}

impl NodeView {
    /// From a stored Node. Allocatable resources that are not reported are unlimited.
    pub fn from_node(n: &Node) -> NodeView {
        let mut taints = n.spec.taints.clone().unwrap_or_default();
        let ready = n
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.as_str());
        let implied = match ready {
            Some("True") => None,
            Some("False") => Some("node.kubernetes.io/not-ready"),
            _ => Some("node.kubernetes.io/unreachable"),
        };
        if let Some(key) = implied {
            if !taints.iter().any(|t| t.key == key && t.effect == TaintEffect::NoSchedule) {
                taints.push(Taint {
                    key: key.into(),
                    value: None,
                    effect: TaintEffect::NoSchedule,
                    time_added: None,
                });
            }
        }
        // Kubernetes' TaintNodesByCondition: a node under pressure takes no new pods.
        for (condition, key) in [
            ("DiskPressure", "node.kubernetes.io/disk-pressure"),
            ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
            ("PIDPressure", "node.kubernetes.io/pid-pressure"),
        ] {
            let on = n
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == condition && c.status == "True"));
            if on && !taints.iter().any(|t| t.key == key && t.effect == TaintEffect::NoSchedule) {
                taints.push(Taint {
                    key: key.into(),
                    value: None,
                    effect: TaintEffect::NoSchedule,
                    time_added: None,
                });
            }
        }
        let alloc = n.status.as_ref().and_then(|s| s.allocatable.as_ref());
        let q = |k: &str, milli: bool| {
            alloc
                .and_then(|a| a.get(k))
                .and_then(|q| if milli { q.milli_value().ok() } else { q.value().ok() })
                .unwrap_or(u128::MAX)
        };
        NodeView {
            name: n.metadata.name().to_string(),
            labels: n.metadata.labels().clone(),
            taints,
            unschedulable: n.spec.unschedulable == Some(true),
            allocatable: Resources {
                cpu_milli: q("cpu", true),
                memory: q("memory", false),
                pods: q("pods", false),
            },
        }
    }
}

/// A pod already bound to a node (and not finished): what it uses and what it asks of others.
#[derive(Debug, Clone)]
pub struct Placed {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub labels: Labels,
    /// The uid of its controller (ownerReference with `controller: true`).
    pub controller: Option<String>,
    pub requests: Resources,
    pub host_ports: Vec<HostPort>,
    /// Its required anti-affinity terms (other pods must keep away).
    pub anti_affinity: Vec<PodAffinityTerm>,
}

impl Placed {
    pub fn of(pod: &Pod, node: &str) -> Placed {
        Placed {
            namespace: pod.metadata.namespace().to_string(),
            name: pod.metadata.name().to_string(),
            node: node.to_string(),
            labels: pod.metadata.labels().clone(),
            controller: controller_uid(pod),
            requests: requests(pod),
            host_ports: host_ports(pod),
            anti_affinity: required_terms(pod, false).to_vec(),
        }
    }
}

/// A host port a pod takes: (protocol, host IP or "" for all, port).
pub type HostPort = (Protocol, String, i32);

/// What the scheduler knows of the cluster, indexed for per-node questions.
#[derive(Debug, Default)]
pub struct Cluster {
    pub nodes: Vec<NodeView>,
    pub placed: Vec<Placed>,
    pub volumes: Vec<PersistentVolume>,
    pub claims: Vec<PersistentVolumeClaim>,
    pub bindings: Bindings,
    /// Node name -> index in `nodes`.
    index: HashMap<String, usize>,
    /// Node name -> its pods (indices in `placed`) and the sum of their requests.
    load: HashMap<String, (Vec<usize>, Resources)>,
}

impl Cluster {
    pub fn new(
        nodes: Vec<NodeView>,
        placed: Vec<Placed>,
        volumes: Vec<PersistentVolume>,
        claims: Vec<PersistentVolumeClaim>,
    ) -> Cluster {
        let bindings = volume_binding::bind(&volumes, &claims);
        let index = nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
        let mut c =
            Cluster { nodes, placed: Vec::new(), volumes, claims, bindings, index, load: HashMap::new() };
        for p in placed {
            c.add(p);
        }
        c
    }

    /// From stored objects (JSON): nodes, pods, PersistentVolumes and claims. Pods count when
    /// they are bound and not finished.
    pub fn from_objects(nodes: &[Value], pods: &[Value], volumes: &[Value], claims: &[Value]) -> Cluster {
        let nodes: Vec<NodeView> = nodes
            .iter()
            .filter_map(|n| serde_json::from_value::<Node>(n.clone()).ok())
            .map(|n| NodeView::from_node(&n))
            .collect();
        let placed = pods
            .iter()
            .filter_map(|p| serde_json::from_value::<Pod>(p.clone()).ok())
            .filter(occupies)
            .filter_map(|p| {
                let node = p.spec.node_name.clone().filter(|n| !n.is_empty())?;
                Some(Placed::of(&p, &node))
            })
            .collect();
        let volumes = volumes.iter().filter_map(|v| serde_json::from_value(v.clone()).ok()).collect();
        let claims = claims.iter().filter_map(|v| serde_json::from_value(v.clone()).ok()).collect();
        Cluster::new(nodes, placed, volumes, claims)
    }

    fn add(&mut self, p: Placed) {
        let entry = self.load.entry(p.node.clone()).or_default();
        entry.0.push(self.placed.len());
        entry.1 = Resources {
            cpu_milli: entry.1.cpu_milli.saturating_add(p.requests.cpu_milli),
            memory: entry.1.memory.saturating_add(p.requests.memory),
            pods: entry.1.pods + 1,
        };
        self.placed.push(p);
    }

    /// Records a decision, so the next pod of the same pass sees it.
    pub fn place(&mut self, pod: &Pod, node: &str) {
        self.add(Placed::of(pod, node));
    }

    /// The pods on a node.
    fn on<'a>(&'a self, node: &str) -> impl Iterator<Item = &'a Placed> + 'a {
        self.load.get(node).into_iter().flat_map(|(ix, _)| ix.iter().map(|i| &self.placed[*i]))
    }

    /// What the pods on a node request together (`pods`: how many there are).
    fn used(&self, node: &str) -> Resources {
        self.load.get(node).map(|(_, r)| *r).unwrap_or_default()
    }

    /// A node's value for a topology key.
    fn label(&self, node: &str, key: &str) -> Option<&str> {
        let n = &self.nodes[*self.index.get(node)?];
        n.labels.get(key).map(String::as_str)
    }
}

/// Whether a pod takes room on its node: not finished and not being deleted.
fn occupies(p: &Pod) -> bool {
    let phase = p.status.as_ref().and_then(|s| s.phase);
    !matches!(phase, Some(PodPhase::Succeeded | PodPhase::Failed)) && p.metadata.deletion_timestamp.is_none()
}

/// Whether the scheduler should place this pod: no node yet, not finished, not being deleted,
/// and meant for the default scheduler.
pub fn wants_scheduling(p: &Pod) -> bool {
    p.spec.node_name.as_deref().is_none_or(str::is_empty)
        && occupies(p)
        && p.spec.scheduler_name.as_deref().is_none_or(|s| s.is_empty() || s == "default-scheduler")
}

fn controller_uid(pod: &Pod) -> Option<String> {
    pod.metadata.owner_references.iter().flatten().find(|r| r.controller == Some(true)).map(|r| r.uid.clone())
}

/// The pod's effective requests: the larger of its containers' sum and any one init
/// container's, a request defaulting to its limit (as the API server defaults it).
pub fn requests(pod: &Pod) -> Resources {
    let of = |c: &flotilla_shared::api::Container| -> (u128, u128) {
        let r = c.resources.as_ref();
        let get = |k: &str, milli: bool| {
            let q = r
                .and_then(|r| r.requests.as_ref())
                .and_then(|m| m.get(k))
                .or_else(|| r.and_then(|r| r.limits.as_ref()).and_then(|m| m.get(k)));
            q.and_then(|q| if milli { q.milli_value().ok() } else { q.value().ok() }).unwrap_or(0)
        };
        (get("cpu", true), get("memory", false))
    };
    let (mut cpu, mut mem) = (0u128, 0u128);
    for c in &pod.spec.containers {
        let (a, b) = of(c);
        cpu = cpu.saturating_add(a);
        mem = mem.saturating_add(b);
    }
    for c in pod.spec.init_containers.iter().flatten() {
        let (a, b) = of(c);
        cpu = cpu.max(a);
        mem = mem.max(b);
    }
    Resources { cpu_milli: cpu, memory: mem, pods: 1 }
}

fn host_ports(pod: &Pod) -> Vec<HostPort> {
    pod.spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|p| *p > 0)?;
            let ip = p.host_ip.clone().filter(|ip| ip != "0.0.0.0").unwrap_or_default();
            Some((p.protocol.unwrap_or(Protocol::Tcp), ip, port))
        })
        .collect()
}

fn ports_conflict(a: &HostPort, b: &HostPort) -> bool {
    a.0 == b.0 && a.2 == b.2 && (a.1.is_empty() || b.1.is_empty() || a.1 == b.1)
}

/// The pod's required affinity (`anti == false`: anti-affinity) terms.
fn required_terms(pod: &Pod, affinity: bool) -> &[PodAffinityTerm] {
    let a = pod.spec.affinity.as_ref();
    let terms = if affinity {
        a.and_then(|a| a.pod_affinity.as_ref())
    } else {
        a.and_then(|a| a.pod_anti_affinity.as_ref())
    };
    terms.and_then(|t| t.required_during_scheduling_ignored_during_execution.as_deref()).unwrap_or_default()
}

/// Kubernetes' toleration matching.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect.is_some_and(|e| e != taint.effect) {
        return false;
    }
    let key = t.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.unwrap_or(TolerationOperator::Equal) {
        TolerationOperator::Exists => true,
        TolerationOperator::Equal => {
            !key.is_empty()
                && t.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default()
        }
    }
}

fn tolerated(pod: &Pod, taint: &Taint) -> bool {
    pod.spec.tolerations.iter().flatten().any(|t| tolerates(t, taint))
}

/// Whether `term` (of a pod in `term_ns`) selects `other` (namespace, labels). A term without a
/// selector selects nothing; an empty selector selects every pod.
fn term_selects(term: &PodAffinityTerm, term_ns: &str, other_ns: &str, other_labels: &Labels) -> bool {
    let in_ns = match term.namespaces.as_deref() {
        Some(list) if !list.is_empty() => list.iter().any(|n| n == other_ns),
        _ => other_ns == term_ns,
    };
    in_ns && term.label_selector.as_ref().is_some_and(|s| s.matches(other_labels))
}

/// Why no node fits a pod: Kubernetes' message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unschedulable(pub String);

/// The pod's inter-pod (anti-)affinity, resolved once against the placed pods: the topology
/// domains (key, value) each rule allows or forbids.
struct PodTerms {
    /// Domains where a placed pod's required anti-affinity forbids this pod.
    existing_anti: HashSet<(String, String)>,
    /// Per required affinity term: its key, the domains of the pods it selects, and whether
    /// the pod may start a group (no pod matches, and the pod matches its own term).
    affinity: Vec<(String, HashSet<String>, bool)>,
    /// Per required anti-affinity term: its key and the domains of the pods it selects.
    anti: Vec<(String, HashSet<String>)>,
    /// Per preferred term: its key, signed weight, and matching pods per domain.
    preferred: Vec<(String, i64, HashMap<String, i64>)>,
}

impl PodTerms {
    fn resolve(pod: &Pod, cluster: &Cluster) -> PodTerms {
        let ns = pod.metadata.namespace();
        let labels = pod.metadata.labels();
        let mut existing_anti = HashSet::new();
        for p in cluster.placed.iter().filter(|p| !p.anti_affinity.is_empty()) {
            for t in &p.anti_affinity {
                if term_selects(t, &p.namespace, ns, labels) {
                    if let Some(v) = cluster.label(&p.node, &t.topology_key) {
                        existing_anti.insert((t.topology_key.clone(), v.to_string()));
                    }
                }
            }
        }
        let domains = |t: &PodAffinityTerm| -> (HashSet<String>, bool) {
            let mut any = false;
            let mut set = HashSet::new();
            for p in cluster.placed.iter().filter(|p| term_selects(t, ns, &p.namespace, &p.labels)) {
                any = true;
                if let Some(v) = cluster.label(&p.node, &t.topology_key) {
                    set.insert(v.to_string());
                }
            }
            (set, any)
        };
        let affinity = required_terms(pod, true)
            .iter()
            .map(|t| {
                let (set, any) = domains(t);
                let may_start = !any && term_selects(t, ns, ns, labels);
                (t.topology_key.clone(), set, may_start)
            })
            .collect();
        let anti =
            required_terms(pod, false).iter().map(|t| (t.topology_key.clone(), domains(t).0)).collect();
        let aff = pod.spec.affinity.as_ref();
        let soft = |anti: bool| {
            let t = if anti {
                aff.and_then(|a| a.pod_anti_affinity.as_ref())
            } else {
                aff.and_then(|a| a.pod_affinity.as_ref())
            };
            t.and_then(|t| t.preferred_during_scheduling_ignored_during_execution.as_deref())
                .unwrap_or_default()
        };
        let mut preferred = Vec::new();
        for (anti, sign) in [(false, 1i64), (true, -1i64)] {
            for w in soft(anti) {
                let t = &w.pod_affinity_term;
                let mut counts: HashMap<String, i64> = HashMap::new();
                for p in cluster.placed.iter().filter(|p| term_selects(t, ns, &p.namespace, &p.labels)) {
                    if let Some(v) = cluster.label(&p.node, &t.topology_key) {
                        *counts.entry(v.to_string()).or_default() += 1;
                    }
                }
                preferred.push((t.topology_key.clone(), sign * i64::from(w.weight), counts));
            }
        }
        PodTerms { existing_anti, affinity, anti, preferred }
    }
}

/// Picks the node for `pod`.
pub fn schedule(pod: &Pod, cluster: &Cluster) -> Result<String, Unschedulable> {
    let ns = pod.metadata.namespace();
    // PreFilter: the pod's claims must exist and be bound.
    let mut pinned: Vec<&PersistentVolume> = Vec::new();
    for v in pod.spec.volumes.iter().flatten() {
        let Some(c) = &v.persistent_volume_claim else { continue };
        if !cluster.claims.iter().any(|x| x.metadata.namespace() == ns && x.metadata.name() == c.claim_name) {
            return Err(Unschedulable(format!("persistentvolumeclaim {:?} not found", c.claim_name)));
        }
        let bound = cluster.bindings.get(&(ns.to_string(), c.claim_name.clone()));
        match bound.and_then(|b| cluster.volumes.iter().find(|v| v.metadata.name() == b)) {
            Some(v) => pinned.push(v),
            None => {
                return Err(Unschedulable(format!(
                    "0/{} nodes are available: pod has unbound immediate PersistentVolumeClaims.",
                    cluster.nodes.len()
                )))
            }
        }
    }
    if cluster.nodes.is_empty() {
        return Err(Unschedulable("no nodes available to schedule pods".into()));
    }
    let req = requests(pod);
    let ports = host_ports(pod);
    let terms = PodTerms::resolve(pod, cluster);
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut feasible: Vec<&NodeView> = Vec::new();
    for node in &cluster.nodes {
        match filter(pod, node, cluster, &req, &ports, &pinned, &terms) {
            Ok(()) => feasible.push(node),
            Err(rs) => {
                for r in rs {
                    *reasons.entry(r).or_default() += 1;
                }
            }
        }
    }
    if feasible.is_empty() {
        let mut parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
        parts.sort();
        return Err(Unschedulable(format!(
            "0/{} nodes are available: {}.",
            cluster.nodes.len(),
            parts.join(", ")
        )));
    }
    let scores = score(pod, &feasible, cluster, &req, &terms);
    let best = feasible
        .iter()
        .zip(scores)
        .max_by(|(a, sa), (b, sb)| sa.cmp(sb).then_with(|| b.name.cmp(&a.name)))
        .map(|(n, _)| n.name.clone());
    best.ok_or_else(|| Unschedulable("no nodes available to schedule pods".into()))
}

fn filter(
    pod: &Pod,
    node: &NodeView,
    cluster: &Cluster,
    req: &Resources,
    ports: &[HostPort],
    pinned: &[&PersistentVolume],
    terms: &PodTerms,
) -> Result<(), Vec<String>> {
    let one = |r: &str| Err(vec![r.to_string()]);
    // NodeUnschedulable.
    let cordon = Taint {
        key: "node.kubernetes.io/unschedulable".into(),
        value: None,
        effect: TaintEffect::NoSchedule,
        time_added: None,
    };
    if node.unschedulable && !tolerated(pod, &cordon) {
        return one("node(s) were unschedulable");
    }
    // TaintToleration.
    if let Some(t) = node
        .taints
        .iter()
        .find(|t| matches!(t.effect, TaintEffect::NoSchedule | TaintEffect::NoExecute) && !tolerated(pod, t))
    {
        return one(&format!(
            "node(s) had untolerated taint {{{}: {}}}",
            t.key,
            t.value.as_deref().unwrap_or_default()
        ));
    }
    // NodeAffinity.
    if !node_matches(pod, node) {
        return one("node(s) didn't match Pod's node affinity/selector");
    }
    // NodePorts.
    if !ports.is_empty()
        && ports
            .iter()
            .any(|a| cluster.on(&node.name).any(|p| p.host_ports.iter().any(|b| ports_conflict(a, b))))
    {
        return one("node(s) didn't have free ports for the requested pod ports");
    }
    // NodeResourcesFit.
    let used = cluster.used(&node.name);
    let mut short = Vec::new();
    if used.pods + 1 > node.allocatable.pods {
        short.push("Too many pods".to_string());
    }
    if req.cpu_milli > 0 && used.cpu_milli.saturating_add(req.cpu_milli) > node.allocatable.cpu_milli {
        short.push("Insufficient cpu".to_string());
    }
    if req.memory > 0 && used.memory.saturating_add(req.memory) > node.allocatable.memory {
        short.push("Insufficient memory".to_string());
    }
    if !short.is_empty() {
        return Err(short);
    }
    // VolumeBinding.
    if pinned.iter().any(|v| !volume_binding::fits_node(v, &node.name, &node.labels)) {
        return one("node(s) had volume node affinity conflict");
    }
    // InterPodAffinity: existing pods' anti-affinity first, then the pod's own rules.
    let value = |key: &str| node.labels.get(key).cloned();
    if terms.existing_anti.iter().any(|(k, v)| node.labels.get(k) == Some(v)) {
        return one("node(s) didn't satisfy existing pods anti-affinity rules");
    }
    for (key, domains, may_start) in &terms.affinity {
        let ok = match value(key) {
            Some(v) => domains.contains(&v) || *may_start,
            None => false,
        };
        if !ok {
            return one("node(s) didn't match pod affinity rules");
        }
    }
    if terms.anti.iter().any(|(key, domains)| value(key).is_some_and(|v| domains.contains(&v))) {
        return one("node(s) didn't match pod anti-affinity rules");
    }
    Ok(())
}

/// Whether a DaemonSet's pod belongs on `node`, as Kubernetes' DaemonSet controller decides:
/// its node selector and required node affinity match, and it tolerates the node's NoSchedule
/// and NoExecute taints. Cordons and resources do not matter, and neither does readiness (the
/// taints a node's state implies are tolerated, as DaemonSet pods tolerate them). A pod already
/// `running` there stays unless a NoExecute taint says otherwise: NoSchedule keeps new pods
/// off, not running ones.
pub fn daemon_fits(pod: &Pod, node: &NodeView, running: bool) -> bool {
    let implied = ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"];
    let taints_ok = node
        .taints
        .iter()
        .filter(|t| t.effect == TaintEffect::NoExecute || (t.effect == TaintEffect::NoSchedule && !running))
        .filter(|t| !implied.contains(&t.key.as_str()))
        .all(|t| tolerated(pod, t));
    taints_ok && node_matches(pod, node)
}

/// The pod's nodeSelector and required node affinity match the node.
fn node_matches(pod: &Pod, node: &NodeView) -> bool {
    let selector_ok = pod.spec.node_selector.iter().flatten().all(|(k, v)| node.labels.get(k) == Some(v));
    selector_ok
        && pod
            .spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
            .is_none_or(|r| r.matches(&node.name, &node.labels))
}

/// Scales raw scores to 0..=100 over the feasible nodes (min-max; all equal gives 0, or 100 when
/// they are equal and positive); `reverse` makes lower raw values score higher.
fn normalize(raw: &[i64], reverse: bool) -> Vec<i64> {
    let max = raw.iter().copied().max().unwrap_or(0);
    let min = raw.iter().copied().min().unwrap_or(0);
    raw.iter()
        .map(|&r| {
            let s = if max == min {
                if max == 0 {
                    0
                } else {
                    100
                }
            } else {
                (r - min) * 100 / (max - min)
            };
            if reverse {
                100 - s
            } else {
                s
            }
        })
        .collect()
}

fn score(pod: &Pod, nodes: &[&NodeView], cluster: &Cluster, req: &Resources, terms: &PodTerms) -> Vec<i64> {
    let ns = pod.metadata.namespace();
    let labels = pod.metadata.labels();
    // TaintToleration: untolerated PreferNoSchedule taints (fewer is better).
    let taints: Vec<i64> = nodes
        .iter()
        .map(|n| {
            n.taints
                .iter()
                .filter(|t| t.effect == TaintEffect::PreferNoSchedule && !tolerated(pod, t))
                .count() as i64
        })
        .collect();
    let taint_scores =
        if taints.iter().all(|t| *t == 0) { vec![100; nodes.len()] } else { normalize(&taints, true) };
    // NodeAffinity: weights of the preferred terms a node matches.
    let preferred = pod
        .spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_deref())
        .unwrap_or_default();
    let preferred: Vec<(i64, flotilla_shared::api::NodeSelector)> = preferred
        .iter()
        .map(|p| {
            (
                i64::from(p.weight),
                flotilla_shared::api::NodeSelector { node_selector_terms: vec![p.preference.clone()] },
            )
        })
        .collect();
    let node_aff: Vec<i64> = nodes
        .iter()
        .map(|n| preferred.iter().filter(|(_, s)| s.matches(&n.name, &n.labels)).map(|(w, _)| w).sum())
        .collect();
    let node_aff = normalize(&node_aff, false);
    // InterPodAffinity: preferred affinity adds, preferred anti-affinity subtracts.
    let pod_aff: Vec<i64> = nodes
        .iter()
        .map(|n| {
            terms
                .preferred
                .iter()
                .map(|(key, weight, counts)| {
                    n.labels.get(key).and_then(|v| counts.get(v)).map_or(0, |c| weight * c)
                })
                .sum()
        })
        .collect();
    let pod_aff = normalize(&pod_aff, false);
    // Spread: siblings (same controller, or same labels in the namespace for bare pods) per node.
    let controller = controller_uid(pod);
    let siblings: Vec<i64> = nodes
        .iter()
        .map(|n| {
            cluster
                .on(&n.name)
                .filter(|p| match &controller {
                    Some(c) => p.controller.as_ref() == Some(c),
                    None => p.namespace == ns && !labels.is_empty() && &p.labels == labels,
                })
                .count() as i64
        })
        .collect();
    let spread =
        if siblings.iter().all(|s| *s == 0) { vec![100; nodes.len()] } else { normalize(&siblings, true) };
    // Resources: least allocated and balanced, after adding this pod.
    let (least, balanced): (Vec<i64>, Vec<i64>) = nodes
        .iter()
        .map(|n| {
            let used = cluster.used(&n.name);
            let frac = |used: u128, alloc: u128| -> f64 {
                if alloc == 0 || alloc == u128::MAX {
                    0.0
                } else {
                    (used as f64 / alloc as f64).min(1.0)
                }
            };
            let cpu = frac(used.cpu_milli.saturating_add(req.cpu_milli), n.allocatable.cpu_milli);
            let mem = frac(used.memory.saturating_add(req.memory), n.allocatable.memory);
            let least = (((1.0 - cpu) + (1.0 - mem)) / 2.0 * 100.0) as i64;
            let balanced = ((1.0 - (cpu - mem).abs()) * 100.0) as i64;
            (least, balanced)
        })
        .unzip();
    (0..nodes.len())
        .map(|i| {
            3 * taint_scores[i] + 2 * node_aff[i] + 2 * pod_aff[i] + 2 * spread[i] + least[i] + balanced[i]
        })
        .collect()
}
