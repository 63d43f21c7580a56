//! What a node may say about itself (pure), as Kubernetes' NodeRestriction admission plugin
//! decides for kubelets: a node is one compromised device away from lying, and the scheduler
//! trusts its labels and capacity. The hub owns `kubernetes.io/hostname` (always the node's
//! identity, its broker user name) and the other well-known labels (from the checked node
//! facts); a node may add labels only outside Kubernetes' namespaces (or under the prefixes
//! Kubernetes leaves to kubelets), never under `node-restriction.kubernetes.io/`, the prefix
//! operators use to pin sensitive workloads; and the sizes and amounts it claims are bounded.
//! Everything refused is named in a warning, which the hub records as an event on the Node.

use std::collections::BTreeMap;

use flotilla_shared::names;
use flotilla_shared::wire::NodeInfo;

/// Most labels a node may set on itself.
pub const MAX_LABELS: usize = 64;
/// Most bytes of label keys and values a node may set on itself.
pub const MAX_LABEL_BYTES: usize = 16 * 1024;
/// Most CPUs and bytes of memory a node may claim (bigger than any edge device by far, small
/// enough that sums over a fleet cannot overflow).
pub const MAX_CPUS: u32 = 1024;
pub const MAX_MEMORY_BYTES: u64 = 16 << 40;
/// Most addresses a node may claim, and the longest free-text fact kept.
pub const MAX_ADDRESSES: usize = 8;
pub const MAX_FACT_CHARS: usize = 256;

/// `kubernetes.io/arch` values the hub accepts (Go's GOARCH names, as Kubernetes uses them).
const ARCHES: &[&str] =
    &["amd64", "arm64", "arm", "386", "riscv64", "ppc64le", "s390x", "mips64le", "loong64"];

/// Labels in Kubernetes' namespaces that a kubelet may set on its Node (NodeRestriction's
/// `IsKubeletLabel`), except the ones the hub sets itself.
const KUBELET_LABELS: &[&str] = &[
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "node.kubernetes.io/instance-type",
    "beta.kubernetes.io/instance-type",
];
const KUBELET_PREFIXES: &[&str] = &["kubelet.kubernetes.io/", "node.kubernetes.io/"];

/// The labels the hub sets from the node's identity and facts.
const HUB_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/os",
];

/// Whether the label's key lies in a namespace Kubernetes reserves (`kubernetes.io`, `k8s.io`
/// and their subdomains).
fn reserved(key: &str) -> bool {
    let Some((prefix, _)) = key.split_once('/') else { return false };
    ["kubernetes.io", "k8s.io"].iter().any(|d| prefix == *d || prefix.ends_with(&format!(".{d}")))
}

/// Whether a node may set the label `key` on itself.
fn node_may_set(key: &str) -> bool {
    if key.starts_with("node-restriction.kubernetes.io/") || HUB_LABELS.contains(&key) {
        return false;
    }
    !reserved(key) || KUBELET_LABELS.contains(&key) || KUBELET_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// The labels a new Node gets: the hub's own from the node's identity and (checked) facts,
/// then those the node asked for that it may set, within the count and size bounds. Returns
/// the labels and a warning for what was refused.
pub fn labels(node: &str, info: &NodeInfo) -> (BTreeMap<String, String>, Vec<String>) {
    let mut warnings = Vec::new();
    let mut out = BTreeMap::from([("kubernetes.io/hostname".to_string(), node.to_string())]);
    if ARCHES.contains(&info.arch.as_str()) {
        out.insert("kubernetes.io/arch".into(), info.arch.clone());
        out.insert("beta.kubernetes.io/arch".into(), info.arch.clone());
    }
    if info.os == "linux" {
        out.insert("kubernetes.io/os".into(), info.os.clone());
        out.insert("beta.kubernetes.io/os".into(), info.os.clone());
    }
    let (mut refused, mut over) = (Vec::new(), 0usize);
    let (mut count, mut bytes) = (0usize, 0usize);
    for (k, v) in &info.labels {
        if out.get(k) == Some(v) {
            continue; // the node said what the hub says
        }
        let valid = names::qualified_name(k).is_ok() && names::label_value(v).is_ok();
        if !valid || !node_may_set(k) {
            refused.push(k.as_str());
            continue;
        }
        if count >= MAX_LABELS || bytes + k.len() + v.len() > MAX_LABEL_BYTES {
            over += 1;
            continue;
        }
        count += 1;
        bytes += k.len() + v.len();
        out.insert(k.clone(), v.clone());
    }
    if !refused.is_empty() {
        let shown: Vec<String> = refused.iter().take(5).map(|k| clip(k, 64)).collect();
        warnings.push(format!(
            "refused {} label(s) the node may not set on itself ({}{}): the hub sets kubernetes.io/hostname, arch and os; nodes may not set other kubernetes.io or k8s.io labels, nor node-restriction.kubernetes.io ones",
            refused.len(),
            shown.join(", "),
            if refused.len() > shown.len() { ", ..." } else { "" }
        ));
    }
    if over > 0 {
        warnings.push(format!(
            "dropped {over} label(s) over the bound of {MAX_LABELS} labels and {MAX_LABEL_BYTES} bytes a node may set"
        ));
    }
    (out, warnings)
}

fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// The node's facts within bounds: capacity clamped, unknown architectures and operating
/// systems dropped, addresses that are not IP addresses dropped, free text cut. Returns the
/// facts and a warning for what was changed (labels are `labels`' business and left as sent).
pub fn facts(info: &NodeInfo) -> (NodeInfo, Vec<String>) {
    let mut out = info.clone();
    let mut warnings = Vec::new();
    if out.cpus > MAX_CPUS {
        warnings.push(format!("claimed {} CPUs; counted as {MAX_CPUS}", out.cpus));
        out.cpus = MAX_CPUS;
    }
    if out.memory_bytes > MAX_MEMORY_BYTES {
        warnings.push(format!(
            "claimed {} bytes of memory; counted as {MAX_MEMORY_BYTES} (16 TiB)",
            out.memory_bytes
        ));
        out.memory_bytes = MAX_MEMORY_BYTES;
    }
    if !out.arch.is_empty() && !ARCHES.contains(&out.arch.as_str()) {
        warnings.push(format!("unknown architecture {:?} ignored", clip(&out.arch, 32)));
        out.arch.clear();
    }
    if !out.os.is_empty() && out.os != "linux" {
        warnings.push(format!("unknown operating system {:?} ignored", clip(&out.os, 32)));
        out.os.clear();
    }
    let before = out.addresses.len();
    out.addresses.retain(|a| a.parse::<std::net::IpAddr>().is_ok());
    out.addresses.truncate(MAX_ADDRESSES);
    if out.addresses.len() != before {
        warnings.push(format!(
            "kept {} of {before} addresses (IP addresses only, at most {MAX_ADDRESSES})",
            out.addresses.len()
        ));
    }
    if !out.hostname.is_empty() && !names::is_dns1123_subdomain(&out.hostname) {
        warnings.push("a hostname that is not a DNS name ignored".into());
        out.hostname.clear();
    }
    for s in [&mut out.kernel, &mut out.os_image, &mut out.agent_version, &mut out.boot_id] {
        if s.chars().count() > MAX_FACT_CHARS {
            *s = clip(s, MAX_FACT_CHARS);
        }
    }
    out.labels.clear();
    (out, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(labels: &[(&str, &str)]) -> NodeInfo {
        NodeInfo {
            arch: "arm64".into(),
            os: "linux".into(),
            cpus: 4,
            memory_bytes: 4 << 30,
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..NodeInfo::default()
        }
    }

    type Labels<'a> = &'a [(&'a str, &'a str)];

    /// (labels the node asks for, labels it gets, warnings expected)
    fn check(cases: &[(Labels, Labels, usize)]) {
        for (asked, want, warns) in cases {
            let (got, warnings) = labels("node-x", &info(asked));
            let want: BTreeMap<String, String> = [
                ("kubernetes.io/hostname", "node-x"),
                ("kubernetes.io/arch", "arm64"),
                ("kubernetes.io/os", "linux"),
                ("beta.kubernetes.io/arch", "arm64"),
                ("beta.kubernetes.io/os", "linux"),
            ]
            .iter()
            .chain(want.iter())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            assert_eq!(got, want, "asked {asked:?}");
            assert_eq!(warnings.len(), *warns, "asked {asked:?}: {warnings:?}");
            // Deciding again from what was decided changes nothing (a re-registration).
            let again = labels("node-x", &NodeInfo { labels: got.clone(), ..info(&[]) });
            assert_eq!((again.0, again.1.len()), (got, 0));
        }
    }

    #[test]
    fn a_node_cannot_claim_another_identity_or_reserved_labels() {
        check(&[
            (&[], &[], 0),
            (&[("kubernetes.io/hostname", "node-x")], &[], 0),
            (&[("kubernetes.io/hostname", "node-y")], &[], 1),
            (&[("kubernetes.io/arch", "amd64")], &[], 1),
            (&[("node-restriction.kubernetes.io/secure", "true")], &[], 1),
            (&[("node-role.kubernetes.io/control-plane", "")], &[], 1),
            (&[("example.k8s.io/x", "1"), ("sub.kubernetes.io/y", "1")], &[], 1),
            (&[("topology.kubernetes.io/zone", "barn")], &[("topology.kubernetes.io/zone", "barn")], 0),
            (
                &[("node.kubernetes.io/instance-type", "pi4")],
                &[("node.kubernetes.io/instance-type", "pi4")],
                0,
            ),
            (
                &[("example.com/camera", "true"), ("site", "north")],
                &[("example.com/camera", "true"), ("site", "north")],
                0,
            ),
            (&[("bad key!", "x"), ("ok", "no spaces allowed")], &[], 1),
        ]);
    }

    #[test]
    fn a_huge_label_set_is_cut_to_the_bounds() {
        let many: Vec<(String, String)> = (0..5000).map(|i| (format!("l{i:05}"), "v".repeat(60))).collect();
        let refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (got, warnings) = labels("node-x", &info(&refs));
        let bytes: usize = got.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(got.len() <= MAX_LABELS + 5 && bytes <= MAX_LABEL_BYTES + 128, "{} labels", got.len());
        assert_eq!(got["kubernetes.io/hostname"], "node-x");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("dropped"), "{warnings:?}");
    }

    #[test]
    fn absurd_facts_are_clamped_with_a_warning() {
        let claimed = NodeInfo {
            cpus: u32::MAX,
            memory_bytes: u64::MAX,
            arch: "vax".into(),
            addresses: vec!["10.0.0.9".into(), "not an address".into()],
            kernel: "k".repeat(100_000),
            hostname: "Not A Name".into(),
            ..info(&[("a", "b")])
        };
        let (got, warnings) = facts(&claimed);
        assert_eq!((got.cpus, got.memory_bytes), (MAX_CPUS, MAX_MEMORY_BYTES));
        assert_eq!((got.arch.as_str(), got.os.as_str()), ("", "linux"));
        assert_eq!(got.addresses, ["10.0.0.9"]);
        assert_eq!((got.kernel.len(), got.hostname.as_str()), (MAX_FACT_CHARS, ""));
        assert!(got.labels.is_empty());
        assert_eq!(warnings.len(), 5, "{warnings:?}");
        let (same, none) = facts(&info(&[]));
        assert_eq!(
            (same, none.len()),
            (NodeInfo { labels: BTreeMap::new(), ..info(&[]) }, 0),
            "honest facts pass"
        );
    }
}
