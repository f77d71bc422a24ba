//! How big each multipart part is.
//!
//! S3 allows at most 10,000 parts of 5 MiB to 5 GiB per upload, and
//! objects of up to 5 TiB. Parts are buffered whole in memory (about
//! `part size × (concurrency + 2)`), so they should be as small as the
//! stream allows. A dump's length is only known when it ends, but the
//! agent knows roughly what to expect (the database's size, or a file's),
//! so parts are planned for that: the first [`PLANNED_PARTS`] parts share
//! one size, large enough to hold the expected bytes plus a quarter
//! (never below the configured size). Only a stream that outgrows the plan
//! grows its parts, doubling every [`PARTS_PER_DOUBLING`] parts, which
//! from the 5 MiB minimum still holds more than 5 TiB in 10,000 parts.
//!
//! For a 1 TB database that means ~200 MiB parts throughout, where the
//! previous size-blind schedule (doubling every 900 parts from 16 MiB)
//! reached 1 GiB parts by the end: a fifth of the memory. Dumps expected
//! below ~75 GiB keep the 16 MiB default.

use crate::s3::PART_SIZE_RANGE;

/// Parts that share the planned size, leaving the other 4,000 for a
/// stream that outgrows its estimate.
pub const PLANNED_PARTS: u32 = 6_000;

/// Past the plan, the part size doubles every this many parts: eleven
/// doublings fit in the remaining 4,000, enough for 5 TiB from 5 MiB.
pub const PARTS_PER_DOUBLING: u32 = 360;

/// The size of every part of one upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartSizer {
    planned: u64,
}

impl PartSizer {
    /// Parts of at least `base` bytes, planned for a stream of about
    /// `expected_bytes` (unknown: `None`). The agent refuses bases outside
    /// S3's part sizes when it reads the spec; here a base is only kept
    /// above zero and at most 5 GiB.
    pub fn new(base: u64, expected_bytes: Option<u64>) -> PartSizer {
        let max = *PART_SIZE_RANGE.end();
        let for_expected = expected_bytes.map_or(0, |bytes| {
            let with_headroom = bytes.saturating_add(bytes / 4);
            round_up_to_mib(with_headroom.div_ceil(u64::from(PLANNED_PARTS)))
        });
        PartSizer {
            planned: base.max(for_expected).clamp(1, max),
        }
    }

    /// The size of part `part_number` (numbered from 1, as S3 does).
    pub fn part_size(&self, part_number: u32) -> u64 {
        let max = *PART_SIZE_RANGE.end();
        let past_plan = part_number.saturating_sub(PLANNED_PARTS + 1);
        let doublings = if part_number > PLANNED_PARTS {
            1 + past_plan / PARTS_PER_DOUBLING
        } else {
            0
        };
        if doublings >= self.planned.leading_zeros() {
            return max;
        }
        (self.planned << doublings).min(max)
    }
}

fn round_up_to_mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20).saturating_mul(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::MAX_PARTS;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    const MAX_OBJECT_BYTES: u64 = 5 << 40;

    /// How many bytes parts 1..=`parts` hold together.
    fn capacity(sizer: PartSizer, parts: u32) -> u64 {
        (1..=parts).map(|n| sizer.part_size(n)).sum()
    }

    /// The largest part a stream of `bytes` uses, and how many parts.
    fn largest_part_for(sizer: PartSizer, bytes: u64) -> (u64, u32) {
        let (mut streamed, mut n, mut largest) = (0, 0, 0);
        while streamed < bytes {
            n += 1;
            let size = sizer.part_size(n);
            largest = largest.max(size);
            streamed += size;
        }
        (largest, n)
    }

    #[test]
    fn any_valid_base_and_any_estimate_hold_five_tib_in_ten_thousand_parts() {
        let estimates = [
            None,
            Some(0),
            Some(GIB),
            Some(100 * GIB),
            Some(5 << 40),
            Some(u64::MAX),
        ];
        for base_mib in [5, 6, 8, 16, 64, 100, 512, 5120] {
            for expected in estimates {
                let sizer = PartSizer::new(base_mib * MIB, expected);
                let holds = capacity(sizer, MAX_PARTS as u32);
                assert!(
                    holds >= MAX_OBJECT_BYTES,
                    "base {base_mib} MiB, expecting {expected:?}: holds {holds}"
                );
            }
        }
    }

    #[test]
    fn parts_stay_within_s3_limits_and_never_shrink() {
        for expected in [None, Some(10 * GIB), Some(2 << 40)] {
            let sizer = PartSizer::new(5 * MIB, expected);
            let mut previous = 0;
            for n in 1..=MAX_PARTS as u32 {
                let size = sizer.part_size(n);
                assert!(PART_SIZE_RANGE.contains(&size), "part {n}: {size}");
                assert!(size >= previous, "part {n} shrank");
                previous = size;
            }
            assert_eq!(sizer.part_size(u32::MAX), 5 * GIB);
        }
    }

    #[test]
    fn an_estimate_that_holds_keeps_every_part_one_size() {
        for expected in [GIB, 200 * GIB, 1 << 40, 4 << 40] {
            let sizer = PartSizer::new(16 * MIB, Some(expected));
            let (largest, parts) = largest_part_for(sizer, expected);
            assert_eq!(largest, sizer.part_size(1), "expecting {expected}");
            assert!(
                parts <= PLANNED_PARTS,
                "expecting {expected}: {parts} parts"
            );
        }
    }

    #[test]
    fn small_and_unknown_streams_keep_the_configured_size() {
        for expected in [None, Some(0), Some(GIB), Some(64 * GIB)] {
            let sizer = PartSizer::new(16 * MIB, expected);
            assert_eq!(sizer.part_size(1), 16 * MIB, "expecting {expected:?}");
            assert_eq!(sizer.part_size(PLANNED_PARTS), 16 * MIB);
            assert_eq!(sizer.part_size(PLANNED_PARTS + 1), 32 * MIB);
            assert_eq!(
                sizer.part_size(PLANNED_PARTS + PARTS_PER_DOUBLING + 1),
                64 * MIB
            );
        }
    }

    #[test]
    fn a_terabyte_estimate_keeps_parts_far_below_a_size_blind_schedule() {
        let expected = 1_000_000_000_000;
        let planned = PartSizer::new(16 * MIB, Some(expected));
        let (largest, _) = largest_part_for(planned, expected);
        assert!(largest <= 210 * MIB, "{largest}");
        let (blind, _) = largest_part_for(PartSizer::new(16 * MIB, None), expected);
        assert!(blind >= 4 * largest, "{blind} vs {largest}");
    }

    #[test]
    fn a_stream_that_outgrows_its_estimate_still_fits() {
        // the estimate said 1 GiB; the stream is 5 TiB
        let sizer = PartSizer::new(5 * MIB, Some(GIB));
        let (_, parts) = largest_part_for(sizer, MAX_OBJECT_BYTES);
        assert!(parts <= MAX_PARTS as u32, "{parts}");
    }

    #[test]
    fn the_base_is_kept_within_bounds() {
        assert_eq!(PartSizer::new(0, None).part_size(1), 1);
        assert_eq!(PartSizer::new(1000, None).part_size(1), 1000);
        assert_eq!(PartSizer::new(u64::MAX, None).part_size(1), 5 * GIB);
        assert_eq!(
            PartSizer::new(5 * MIB, Some(u64::MAX)).part_size(1),
            5 * GIB
        );
    }
}
