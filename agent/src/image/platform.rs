//! Platforms (`linux/arm/v7`): the device's own, normalization of the names in the wild, and
//! choosing a manifest from an index. All pure.

use std::fmt;

use libcontainer::oci_spec::image::Descriptor;
use serde::{Deserialize, Serialize};

/// An OS/architecture/variant triple in OCI (Go) spelling, normalized: `arm64` has no `v8`
/// variant, `amd64` no `v1`, and `arm` always has one (`v7` when unstated, as containerd does).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    #[error("no image for platform {wanted}; the archive or index offers: {}", list(.available))]
    NoMatch { wanted: String, available: Vec<String> },
    #[error("the image is for {found}, which cannot run on this device's platform {wanted}")]
    Mismatch { wanted: String, found: String },
    #[error("unknown CPU architecture {arch:?}: cannot tell which images this device can run")]
    UnknownHostArch { arch: String },
}

fn list(available: &[String]) -> String {
    if available.is_empty() {
        "no platforms".to_string()
    } else {
        available.join(", ")
    }
}

impl Platform {
    /// A normalized platform.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        let (architecture, variant) = normalize_arch(architecture, variant);
        Platform { os: os.to_string(), architecture, variant }
    }

    /// The platform this binary was built for.
    pub fn host() -> Result<Self, PlatformError> {
        let (arch, variant) = map_rust_arch(std::env::consts::ARCH, cfg!(target_endian = "little"))
            .ok_or_else(|| PlatformError::UnknownHostArch { arch: std::env::consts::ARCH.to_string() })?;
        Ok(Platform::new("linux", arch, variant))
    }

    pub fn from_oci(p: &libcontainer::oci_spec::image::Platform) -> Self {
        Platform::new(&p.os().to_string(), &p.architecture().to_string(), p.variant().as_deref())
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Rust's `std::env::consts::ARCH` in OCI spelling (GOARCH), with the variant we assume.
/// 32-bit `arm` is taken as v7 (hard-float): Rust's arm Linux targets that Flotilla ships for
/// are armv7, and v7 also runs v6 and v5 images.
pub fn map_rust_arch(arch: &str, little_endian: bool) -> Option<(&'static str, Option<&'static str>)> {
    Some(match arch {
        "x86_64" => ("amd64", None),
        "x86" => ("386", None),
        "aarch64" => ("arm64", None),
        "arm" => ("arm", Some("v7")),
        "riscv64" => ("riscv64", None),
        "powerpc64" if little_endian => ("ppc64le", None),
        "powerpc64" => ("ppc64", None),
        "s390x" => ("s390x", None),
        "loongarch64" => ("loong64", None),
        "mips64" if little_endian => ("mips64le", None),
        "mips64" => ("mips64", None),
        _ => return None,
    })
}

/// Normalizes the spellings seen in image configs and indexes (`aarch64`, `x86_64`, `armhf`).
pub fn normalize_arch(arch: &str, variant: Option<&str>) -> (String, Option<String>) {
    let lower = arch.to_ascii_lowercase();
    let variant = variant.filter(|v| !v.is_empty()).map(str::to_ascii_lowercase);
    match lower.as_str() {
        "x86_64" | "x86-64" | "amd64" => ("amd64".into(), variant.filter(|v| v != "v1")),
        "aarch64" | "arm64" => ("arm64".into(), variant.filter(|v| v != "v8")),
        "armhf" => ("arm".into(), Some("v7".into())),
        "armel" => ("arm".into(), Some("v6".into())),
        "arm" => ("arm".into(), Some(variant.unwrap_or_else(|| "v7".into()))),
        "i386" | "i686" | "386" => ("386".into(), None),
        _ => (lower, variant),
    }
}

/// Whether a device of platform `want` can run an image built for `have`, and how well:
/// `Some(0)` is an exact match, larger is a worse fallback (an arm v7 device runs v6, then v5).
pub fn compatibility(want: &Platform, have: &Platform) -> Option<u32> {
    if want.os != have.os || want.architecture != have.architecture {
        return None;
    }
    if want.variant == have.variant {
        return Some(0);
    }
    if want.architecture == "arm" {
        let level = |v: &Option<String>| v.as_deref().and_then(|v| v.strip_prefix('v')?.parse::<u32>().ok());
        if let (Some(w), Some(h)) = (level(&want.variant), level(&have.variant)) {
            return (h <= w).then(|| w - h);
        }
    }
    None
}

/// Rank given to a descriptor without a platform: a last resort, whose config the caller must
/// then check (`compatibility` on the config's platform).
const NO_PLATFORM_RANK: u32 = 1000;

/// Chooses the manifest for `want` among an index's descriptors: the best `compatibility`,
/// the first in index order on ties. Descriptors without a platform are only taken when none
/// has a compatible one.
pub fn select_platform<'a>(
    manifests: &'a [Descriptor],
    want: &Platform,
) -> Result<&'a Descriptor, PlatformError> {
    let mut best: Option<(u32, &Descriptor)> = None;
    for d in manifests {
        let rank = match d.platform() {
            Some(p) => compatibility(want, &Platform::from_oci(p)),
            None => Some(NO_PLATFORM_RANK),
        };
        if let Some(rank) = rank {
            if best.is_none_or(|(b, _)| rank < b) {
                best = Some((rank, d));
            }
        }
    }
    best.map(|(_, d)| d).ok_or_else(|| PlatformError::NoMatch {
        wanted: want.to_string(),
        available: manifests
            .iter()
            .map(|d| {
                d.platform().as_ref().map_or("unspecified".to_string(), |p| Platform::from_oci(p).to_string())
            })
            .collect(),
    })
}

/// Checks an image's own platform (from its config) against the device's.
pub fn check_platform(want: &Platform, have: &Platform) -> Result<(), PlatformError> {
    match compatibility(want, have) {
        Some(_) => Ok(()),
        None => Err(PlatformError::Mismatch { wanted: want.to_string(), found: have.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libcontainer::oci_spec::image::{DescriptorBuilder, MediaType, PlatformBuilder};

    fn p(s: &str) -> Platform {
        let mut it = s.split('/');
        let os = it.next().unwrap_or_default();
        let arch = it.next().unwrap_or_default();
        Platform::new(os, arch, it.next())
    }

    #[test]
    fn rust_arch_table() {
        let cases = [
            ("x86_64", true, Some(("amd64", None))),
            ("aarch64", true, Some(("arm64", None))),
            ("arm", true, Some(("arm", Some("v7")))),
            ("x86", true, Some(("386", None))),
            ("riscv64", true, Some(("riscv64", None))),
            ("powerpc64", true, Some(("ppc64le", None))),
            ("powerpc64", false, Some(("ppc64", None))),
            ("sparc", false, None),
        ];
        for (arch, le, want) in cases {
            assert_eq!(map_rust_arch(arch, le), want, "{arch}");
        }
        assert!(Platform::host().is_ok());
    }

    #[test]
    fn normalize_table() {
        let cases = [
            ("aarch64", None, "arm64", None),
            ("arm64", Some("v8"), "arm64", None),
            ("x86_64", None, "amd64", None),
            ("amd64", Some("v1"), "amd64", None),
            ("amd64", Some("v3"), "amd64", Some("v3")),
            ("arm", None, "arm", Some("v7")),
            ("arm", Some("v6"), "arm", Some("v6")),
            ("armhf", None, "arm", Some("v7")),
            ("i386", None, "386", None),
            ("riscv64", None, "riscv64", None),
        ];
        for (arch, variant, want_arch, want_variant) in cases {
            let got = normalize_arch(arch, variant);
            assert_eq!((got.0.as_str(), got.1.as_deref()), (want_arch, want_variant), "{arch} {variant:?}");
        }
    }

    #[test]
    fn compatibility_table() {
        let cases = [
            ("linux/amd64", "linux/amd64", Some(0)),
            ("linux/amd64", "linux/amd64/v1", Some(0)),
            ("linux/amd64", "linux/amd64/v3", None),
            ("linux/amd64", "linux/arm64", None),
            ("linux/amd64", "windows/amd64", None),
            ("linux/arm64", "linux/arm64/v8", Some(0)),
            ("linux/arm/v7", "linux/arm/v7", Some(0)),
            ("linux/arm/v7", "linux/arm/v6", Some(1)),
            ("linux/arm/v7", "linux/arm/v5", Some(2)),
            ("linux/arm/v7", "linux/arm", Some(0)),
            ("linux/arm/v6", "linux/arm/v7", None),
            ("linux/arm/v7", "linux/arm64", None),
        ];
        for (want, have, rank) in cases {
            assert_eq!(compatibility(&p(want), &p(have)), rank, "{want} runs {have}?");
        }
    }

    fn desc(n: u8, platform: Option<&str>) -> Descriptor {
        let digest = format!("sha256:{}", format!("{n:02x}").repeat(32));
        let mut d = DescriptorBuilder::default()
            .media_type(MediaType::ImageManifest)
            .size(1u64)
            .digest(digest.parse::<libcontainer::oci_spec::image::Digest>().unwrap())
            .build()
            .unwrap();
        if let Some(s) = platform {
            let parts: Vec<&str> = s.split('/').collect();
            let mut b = PlatformBuilder::default().os(parts[0]).architecture(parts[1]);
            if let Some(v) = parts.get(2) {
                b = b.variant(v.to_string());
            }
            d.set_platform(Some(b.build().unwrap()));
        }
        d
    }

    #[test]
    fn select_platform_table() {
        let multi = vec![
            desc(1, Some("linux/amd64")),
            desc(2, Some("linux/arm/v6")),
            desc(3, Some("linux/arm/v7")),
            desc(4, Some("linux/arm64/v8")),
            desc(5, Some("unknown/unknown")),
            desc(6, Some("linux/arm64/v8")),
        ];
        let only_v6 = vec![desc(1, Some("linux/amd64")), desc(2, Some("linux/arm/v6"))];
        let bare = vec![desc(9, None), desc(1, Some("linux/amd64"))];
        let cases: Vec<(&Vec<Descriptor>, &str, Result<u8, &str>)> = vec![
            (&multi, "linux/amd64", Ok(1)),
            (&multi, "linux/arm/v7", Ok(3)),
            (&multi, "linux/arm64", Ok(4)),
            (&only_v6, "linux/arm/v7", Ok(2)),
            (&only_v6, "linux/arm64", Err("linux/amd64, linux/arm/v6")),
            (&bare, "linux/amd64", Ok(1)),
            (&bare, "linux/arm64", Ok(9)),
        ];
        for (manifests, want, expected) in cases {
            let got = select_platform(manifests, &p(want))
                .map(|d| u8::from_str_radix(&d.digest().digest()[..2], 16).unwrap());
            match (got, expected) {
                (Ok(n), Ok(m)) => assert_eq!(n, m, "{want}"),
                (Err(e), Err(list)) => {
                    let msg = e.to_string();
                    assert!(msg.contains(want) && msg.contains(list), "{msg}");
                }
                (got, expected) => panic!("{want}: got {got:?}, expected {expected:?}"),
            }
        }
        let none = select_platform(&[], &p("linux/arm64")).unwrap_err();
        assert_eq!(
            none.to_string(),
            "no image for platform linux/arm64; the archive or index offers: no platforms"
        );
    }
}
