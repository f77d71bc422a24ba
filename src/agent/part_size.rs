//! How big each multipart part is.
//!
//! S3 allows at most 10,000 parts of 5 MiB to 5 GiB per upload, and
//! objects of up to 5 TiB. Parts are buffered whole in memory (about
//! `part size × (concurrency + 2)`), so they should be as small as the
//! stream allows, but a dump's length is only known when it ends. So parts
//! start at the configured size and double every [`PARTS_PER_DOUBLING`]
//! parts: memory stays at the configured level for every dump below
//! `PARTS_PER_DOUBLING × part size` (14 GiB at the 16 MiB default) and grows
//! only with the dump (a part is at most 1/450 of the bytes before it),
//! while from the 5 MiB minimum upwards 10,000 parts always hold
//! more than 5 TiB.

use super::upload::PART_SIZE_RANGE;

/// The part size doubles every this many parts: 10,000 parts from a 5 MiB
/// start then hold 9.2 TiB (at 1,000 they would fall short of 5 TiB), and
/// the first doubling comes late enough that common dumps never see it.
pub const PARTS_PER_DOUBLING: u32 = 900;

/// The size of every part of one upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartSizer {
    base: u64,
}

impl PartSizer {
    /// Parts that start at `base` bytes. The agent refuses bases outside
    /// S3's part sizes when it reads the spec; here a base is only kept
    /// above zero and at most 5 GiB.
    pub fn new(base: u64) -> PartSizer {
        PartSizer {
            base: base.clamp(1, *PART_SIZE_RANGE.end()),
        }
    }

    /// The size of part `part_number` (numbered from 1, as S3 does).
    pub fn part_size(&self, part_number: u32) -> u64 {
        let doublings = part_number.saturating_sub(1) / PARTS_PER_DOUBLING;
        let max = *PART_SIZE_RANGE.end();
        if doublings >= max.leading_zeros() {
            return max;
        }
        (self.base << doublings).min(max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::upload::MAX_PARTS;

    const MIB: u64 = 1 << 20;
    const MAX_OBJECT_BYTES: u64 = 5 << 40;

    /// How many bytes parts 1..=`parts` hold together.
    fn capacity(sizer: PartSizer, parts: u32) -> u64 {
        (1..=parts).map(|n| sizer.part_size(n)).sum()
    }

    #[test]
    fn every_valid_base_holds_five_tib_in_ten_thousand_parts() {
        for base_mib in [5, 6, 8, 16, 64, 100, 512, 5120] {
            let sizer = PartSizer::new(base_mib * MIB);
            let holds = capacity(sizer, MAX_PARTS as u32);
            assert!(
                holds >= MAX_OBJECT_BYTES,
                "base {base_mib} MiB holds {holds}"
            );
        }
    }

    #[test]
    fn parts_stay_within_s3_limits_and_never_shrink() {
        let sizer = PartSizer::new(5 * MIB);
        let mut previous = 0;
        for n in 1..=MAX_PARTS as u32 {
            let size = sizer.part_size(n);
            assert!(PART_SIZE_RANGE.contains(&size), "part {n}: {size}");
            assert!(size >= previous, "part {n} shrank");
            previous = size;
        }
        assert_eq!(sizer.part_size(u32::MAX), 5 << 30);
    }

    #[test]
    fn dumps_below_the_first_doubling_keep_the_configured_size() {
        let sizer = PartSizer::new(16 * MIB);
        // an 8 GiB dump is 512 parts, all of the configured size
        assert!((1..=512).all(|n| sizer.part_size(n) == 16 * MIB));
        assert_eq!(sizer.part_size(PARTS_PER_DOUBLING), 16 * MIB);
        assert_eq!(sizer.part_size(PARTS_PER_DOUBLING + 1), 32 * MIB);
        assert_eq!(sizer.part_size(2 * PARTS_PER_DOUBLING + 1), 64 * MIB);
    }

    #[test]
    fn parts_grow_with_the_stream_not_faster() {
        // each part is at most 1/450 of what was streamed before it
        let sizer = PartSizer::new(16 * MIB);
        let mut streamed = 0;
        for n in 1..=MAX_PARTS as u32 {
            let size = sizer.part_size(n);
            if n > PARTS_PER_DOUBLING {
                assert!(size <= streamed / 450, "part {n}: {size} after {streamed}");
            }
            streamed += size;
        }
    }

    #[test]
    fn the_base_is_kept_within_bounds() {
        assert_eq!(PartSizer::new(0).part_size(1), 1);
        assert_eq!(PartSizer::new(1000).part_size(1), 1000);
        assert_eq!(PartSizer::new(u64::MAX).part_size(1), 5 << 30);
    }
}
