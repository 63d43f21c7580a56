//! Facts about the device for the node's status: architecture and OS (as Kubernetes' well-known
//! labels), kernel, OS image, CPUs, memory, boot id, addresses. Parsing is pure; reading the
//! files is at the edge.

use std::collections::BTreeMap;

use flotilla_shared::wire::NodeInfo;

/// `PRETTY_NAME` from an os-release file, unquoted.
pub fn os_image(os_release: &str) -> String {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_string())
        .unwrap_or_else(|| "Linux".into())
}

/// `MemTotal` from /proc/meminfo, in bytes.
pub fn mem_total(meminfo: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb.saturating_mul(1024))
}

/// The well-known labels an agent sets on its node.
pub fn node_labels(node: &str, arch: &str) -> BTreeMap<String, String> {
    [
        ("kubernetes.io/arch", arch),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/hostname", node),
        ("beta.kubernetes.io/arch", arch),
        ("beta.kubernetes.io/os", "linux"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The device's addresses (IPv4 and IPv6, not loopback), from `ip -o addr` output lines
/// (`2: eth0    inet 10.0.0.5/24 brd ...`).
pub fn addresses_from_ip(output: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in output.lines() {
        let mut f = line.split_whitespace();
        let (Some(_), Some(ifname), Some(family), Some(cidr)) = (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        if ifname == "lo" || !(family == "inet" || family == "inet6") {
            continue;
        }
        let addr = cidr.split('/').next().unwrap_or(cidr);
        if addr.starts_with("fe80:") {
            continue;
        }
        out.push(addr.to_string());
    }
    out
}

/// Gathers the node's facts.
pub fn gather(node: &str) -> NodeInfo {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let arch = crate::image::Platform::host().map(|p| p.architecture).unwrap_or_else(|_| "unknown".into());
    let addresses = std::process::Command::new("ip")
        .args(["-o", "addr", "show"])
        .output()
        .map(|o| addresses_from_ip(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or_default();
    NodeInfo {
        labels: node_labels(node, &arch),
        arch,
        os: "linux".into(),
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        os_image: os_image(&read("/etc/os-release")),
        hostname: nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        memory_bytes: mem_total(&read("/proc/meminfo")),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        boot_id: read("/proc/sys/kernel/random/boot_id").trim().to_string(),
        addresses,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_system_files() {
        assert_eq!(
            os_image("NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"),
            "Debian GNU/Linux 12 (bookworm)"
        );
        assert_eq!(os_image(""), "Linux");
        assert_eq!(mem_total("MemTotal:        8055584 kB\nMemFree: 1 kB\n"), 8055584 * 1024);
        assert_eq!(mem_total("garbage"), 0);
        let ip = "1: lo    inet 127.0.0.1/8 scope host lo\n2: eth0    inet 10.0.0.5/24 brd 10.0.0.255 scope global eth0\n2: eth0    inet6 fe80::1/64 scope link\n3: wlan0    inet6 2001:db8::5/64 scope global\n";
        assert_eq!(addresses_from_ip(ip), ["10.0.0.5", "2001:db8::5"]);
        let labels = node_labels("pi-1", "arm64");
        assert_eq!(labels["kubernetes.io/arch"], "arm64");
        assert_eq!(labels["kubernetes.io/hostname"], "pi-1");
    }
}
