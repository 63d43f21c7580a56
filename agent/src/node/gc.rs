//! Image garbage collection by disk threshold, as the kubelet does it: when the filesystem
//! holding the image store is fuller than the high threshold, images no pod uses are deleted,
//! least recently used first, until usage is under the low threshold.

use crate::image::{Digest, ImageStore, Removed};

/// `--image-gc-high-threshold` / `--image-gc-low-threshold`, in percent of the filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageGcPolicy {
    pub high_percent: u8,
    pub low_percent: u8,
    /// Images used (or imported, or pulled) more recently than this are kept, so an image
    /// imported for a pod that is not deployed yet survives (the kubelet's minimum image age).
    pub min_age_secs: u64,
}

impl Default for ImageGcPolicy {
    /// The kubelet's defaults.
    fn default() -> Self {
        ImageGcPolicy { high_percent: 85, low_percent: 80, min_age_secs: 120 }
    }
}

impl ImageGcPolicy {
    pub fn new(high_percent: u8, low_percent: u8, min_age_secs: u64) -> anyhow::Result<Self> {
        if high_percent > 100 || low_percent > high_percent {
            anyhow::bail!(
                "image GC thresholds must satisfy low <= high <= 100 (got low {low_percent}, high {high_percent})"
            );
        }
        Ok(ImageGcPolicy { high_percent, low_percent, min_age_secs })
    }

    /// Pure: how many bytes to free on a filesystem of `total` bytes with `avail` available:
    /// none while usage is at or under the high threshold, else down to the low threshold.
    pub fn bytes_to_free(&self, total: u64, avail: u64) -> u64 {
        let used = u128::from(total.saturating_sub(avail));
        let pct = |p: u8| u128::from(total) * u128::from(p) / 100;
        if used <= pct(self.high_percent) {
            return 0;
        }
        u64::try_from(used - pct(self.low_percent)).unwrap_or(u64::MAX)
    }
}

/// Pure: whether a filesystem of `total` bytes with `avail` available is under pressure: less
/// than 10 % free (the kubelet's default hard eviction threshold for `nodefs.available`), and
/// on filesystems larger than 10 GiB less than 1 GiB free (a large disk with a few GiB left is
/// not a device in trouble).
pub fn disk_pressure(total: u64, avail: u64) -> bool {
    let threshold = (u128::from(total) / 10).min(1 << 30);
    total > 0 && u128::from(avail) < threshold
}

/// The node's DiskPressure condition for the filesystem holding `dir` (the state directory:
/// images, pod records, logs). Unknown filesystems report no pressure.
#[allow(clippy::unnecessary_cast)] // the statvfs fields are narrower on 32-bit targets
pub fn disk_condition(dir: &std::path::Path) -> flotilla_shared::wire::NodeCondition {
    let under = nix::sys::statvfs::statvfs(dir).is_ok_and(|fs| {
        let frag = fs.fragment_size().max(1) as u64;
        disk_pressure(fs.blocks() as u64 * frag, fs.blocks_available() as u64 * frag)
    });
    let (reason, message) = if under {
        ("AgentHasDiskPressure", "the state directory's filesystem is almost full (under 10% or 1 GiB free)")
    } else {
        ("AgentHasNoDiskPressure", "the state directory's filesystem has enough free space")
    };
    flotilla_shared::wire::NodeCondition {
        kind: "DiskPressure".into(),
        status: under,
        reason: reason.into(),
        message: message.into(),
        since_ms: 0,
    }
}

/// Runs one GC pass over `store`, keeping the images in `in_use` (manifest digests).
pub fn collect(store: &ImageStore, policy: ImageGcPolicy, in_use: &[Digest]) -> anyhow::Result<Removed> {
    let fs = nix::sys::statvfs::statvfs(store.root())?;
    let frag = fs.fragment_size().max(1) as u64;
    let (total, avail) = (fs.blocks() as u64 * frag, fs.blocks_available() as u64 * frag);
    let need = policy.bytes_to_free(total, avail);
    if need == 0 {
        return Ok(Removed::default());
    }
    let stored = store.usage()?.total();
    let now = crate::clock::unix_secs();
    let mut in_use = in_use.to_vec();
    in_use.extend(young_images(&store.index(), now, policy.min_age_secs));
    tracing::info!(need, stored, "disk usage above the image GC threshold; deleting unused images");
    // Everything the store holds counts against the threshold: free `need` of it.
    Ok(store.gc(&in_use, 0, stored.saturating_sub(need))?)
}

/// Pure: the images used within the last `min_age_secs` before `now` (unix seconds).
pub fn young_images(index: &crate::image::Index, now: u64, min_age_secs: u64) -> Vec<Digest> {
    index
        .images
        .values()
        .filter(|r| r.last_used.max(r.created) + min_age_secs > now)
        .map(|r| r.manifest.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frees_down_to_the_low_threshold_only_above_the_high_one() {
        let p = ImageGcPolicy::default();
        let gb = 1u64 << 30;
        let cases = [
            // (total, avail, bytes to free)
            (100 * gb, 50 * gb, 0),
            (100 * gb, 15 * gb, 0),       // exactly 85 % used
            (100 * gb, 10 * gb, 10 * gb), // 90 % used → down to 80 %
            (100 * gb, 0, 20 * gb),       // full
            (0, 0, 0),                    // statvfs of an odd filesystem
            (100, 200, 0),                // more available than total
        ];
        for (total, avail, want) in cases {
            assert_eq!(p.bytes_to_free(total, avail), want, "total {total} avail {avail}");
        }
        let huge = p.bytes_to_free(u64::MAX, 0);
        assert!(huge > u64::MAX / 10 * 2 - 1 && huge < u64::MAX / 4, "no overflow: {huge}");
    }

    #[test]
    fn disk_pressure_below_ten_percent_free() {
        assert!(!disk_pressure(100, 10));
        assert!(disk_pressure(100, 9));
        assert!(disk_pressure(100, 0));
        assert!(!disk_pressure(0, 0), "an odd filesystem");
        assert!(!disk_pressure(u64::MAX, u64::MAX / 5), "no overflow");
        let gib = 1u64 << 30;
        assert!(!disk_pressure(250 * gib, 20 * gib), "a large disk with GiBs left");
        assert!(disk_pressure(250 * gib, gib / 2));
        assert!(disk_pressure(8 * gib, gib / 2), "a small card: 10 %");
    }

    #[test]
    fn thresholds_are_checked() {
        assert!(ImageGcPolicy::new(85, 80, 120).is_ok());
        assert!(ImageGcPolicy::new(100, 100, 0).is_ok());
        assert!(ImageGcPolicy::new(80, 85, 0).is_err());
        assert!(ImageGcPolicy::new(101, 80, 0).is_err());
    }
}
