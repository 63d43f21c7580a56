//! Image garbage collection by disk threshold, as the kubelet does it: when the filesystem
//! holding the image store is fuller than the high threshold, images no pod uses are deleted,
//! least recently used first, until usage is under the low threshold.

use crate::image::{Digest, ImageStore, Removed};

/// `--image-gc-high-threshold` / `--image-gc-low-threshold`, in percent of the filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageGcPolicy {
    pub high_percent: u8,
    pub low_percent: u8,
}

impl Default for ImageGcPolicy {
    /// The kubelet's defaults.
    fn default() -> Self {
        ImageGcPolicy { high_percent: 85, low_percent: 80 }
    }
}

impl ImageGcPolicy {
    pub fn new(high_percent: u8, low_percent: u8) -> anyhow::Result<Self> {
        if high_percent > 100 || low_percent > high_percent {
            anyhow::bail!(
                "image GC thresholds must satisfy low <= high <= 100 (got low {low_percent}, high {high_percent})"
            );
        }
        Ok(ImageGcPolicy { high_percent, low_percent })
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
    tracing::info!(need, stored, "disk usage above the image GC threshold; deleting unused images");
    // Everything the store holds counts against the threshold: free `need` of it.
    Ok(store.gc(in_use, 0, stored.saturating_sub(need))?)
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
    fn thresholds_are_checked() {
        assert!(ImageGcPolicy::new(85, 80).is_ok());
        assert!(ImageGcPolicy::new(100, 100).is_ok());
        assert!(ImageGcPolicy::new(80, 85).is_err());
        assert!(ImageGcPolicy::new(101, 80).is_err());
    }
}
