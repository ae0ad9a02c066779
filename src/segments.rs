//! Device segment limits on the DMA side: [`Segments`] splits ranges at the device's
//! maximum segment size and segment boundary, as the consumers of a coalesced mapping
//! need (an SGL, a scatterlist's DMA view, RDMA SGEs).
//!
//! The constraints a [`RangeBuilder`](crate::RangeBuilder) applies hold for the
//! *physical* list only. A mapping through an IOMMU coalesces it: [`map`](crate::map::map)
//! may return one 1 MiB DMA range from 128 KiB physical segments. A device's limits are
//! about the addresses it sees, so wherever the consumer has segments, split the DMA
//! view again with [`DmaConstraints::segments`] (as `__finalise_sg` bounds the merged
//! segments of `dma_map_sg`). PRPs have no segments and need no split.
#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

use crate::addr::AddrSpace;
use crate::constraints::DmaConstraints;
use crate::range::Range;

/// Ranges cut at a device's maximum segment size and segment boundary, in order: every
/// piece is at most `max_segment_size` long and inside one boundary window; every piece
/// but the last of an input range ends where the next may start (`room_at`, which keeps
/// the next piece aligned). Nothing is merged: contiguous inputs stay separate.
///
/// Made by [`DmaConstraints::segments`].
///
/// ```
/// use physvec::map::{self, DataDirection, SoftIommu};
/// use physvec::{DmaConstraints, DmaRange, PhysRange};
/// let iommu = SoftIommu::new_4k();
/// // Eight 128 KiB physical segments coalesce into one 1 MiB IOVA range...
/// let phys: Vec<PhysRange> = (0..8).map(|i| PhysRange::new(0x100_0000 * (i + 1), 0x2_0000)).collect();
/// let m = map::map(&iommu, &phys, DataDirection::ToDevice)?;
/// assert_eq!(m.dma().len(), 1);
/// // ...which a device with 128 KiB segments sees as eight again.
/// let c = DmaConstraints::new().with_max_segment_size(0x2_0000);
/// let segs: Vec<DmaRange> = c.segments(m.dma().iter().copied()).collect();
/// assert_eq!(segs.len(), 8);
/// assert!(segs.iter().all(|s| c.segment_ok(s.addr().as_u64(), s.len())));
/// # Ok::<(), physvec::map::MapError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Segments<S: AddrSpace, I> {
    inner: I,
    c: DmaConstraints,
    rest: Option<Range<S>>,
}

impl<S: AddrSpace, I: Iterator<Item = Range<S>>> Iterator for Segments<S, I> {
    type Item = Range<S>;

    #[inline]
    fn next(&mut self) -> Option<Range<S>> {
        let r = match self.rest.take() {
            Some(r) => r,
            None => self.inner.next()?,
        };
        let a = r.addr().as_u64();
        let len = r.len();
        if len <= self.c.final_room_at(a) {
            return Some(r);
        }
        // `room_at(a) <= final_room_at(a) < len` and `room_at >= 1`: both pieces are
        // non-empty and the split point lies inside `r` (no overflow).
        let piece = self.c.room_at(a).max(1);
        let rest = a
            .checked_add(piece)
            .zip(len.checked_sub(piece))
            .and_then(|(b, l)| Range::try_new(b, l).ok());
        match (Range::try_new(a, piece), rest) {
            (Ok(head), Some(tail)) => {
                self.rest = Some(tail);
                Some(head)
            }
            _ => Some(r),
        }
    }
}

impl DmaConstraints {
    /// Splits `ranges` at the maximum segment size and the segment boundary (see
    /// [`Segments`]): the device-side view of a mapping.
    ///
    /// ```
    /// use physvec::{DmaConstraints, DmaRange};
    /// let c = DmaConstraints::new().with_segment_boundary_mask(0xffff);
    /// let v: Vec<_> = c.segments([DmaRange::new(0xf000, 0x2000)]).collect();
    /// assert_eq!(v, [DmaRange::new(0xf000, 0x1000), DmaRange::new(0x10000, 0x1000)]);
    /// ```
    pub fn segments<S, I>(&self, ranges: I) -> Segments<S, I::IntoIter>
    where
        S: AddrSpace,
        I: IntoIterator<Item = Range<S>>,
    {
        Segments {
            inner: ranges.into_iter(),
            c: *self,
            rest: None,
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use crate::{DmaConstraints, DmaRange};
    use proptest::prelude::*;
    use std::vec::Vec;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        /// Pieces obey the limits and concatenate back to each input range.
        #[test]
        fn pieces_obey_limits_and_cover(
            rs in prop::collection::vec((0u64..1 << 24, 1u64..1 << 20), 1..8),
            max in 1u64..1 << 18,
            bshift in 12u32..22,
            ashift in 0u32..10,
        ) {
            let align = 1u64 << ashift;
            let max = max.max(align);
            let c = DmaConstraints::new()
                .with_max_segment_size(max)
                .with_segment_boundary_mask((1u64 << bshift) - 1)
                .with_alignment(align)
                .unwrap();
            prop_assume!(c.validate().is_ok());
            let rs: Vec<DmaRange> = rs.iter().map(|&(a, l)| DmaRange::new(a * align, l)).collect();
            let out: Vec<DmaRange> = c.segments(rs.iter().copied()).collect();
            let mut i = 0;
            for r in &rs {
                let mut at = r.addr().as_u64();
                let end = at + r.len();
                while at < end {
                    let s = out[i];
                    prop_assert_eq!(s.addr().as_u64(), at);
                    prop_assert!(s.len() <= max);
                    let last = s.addr().as_u64() + s.len() - 1;
                    prop_assert_eq!(at >> bshift, last >> bshift);
                    at += s.len();
                    i += 1;
                }
                prop_assert_eq!(at, end);
            }
            prop_assert_eq!(i, out.len());
        }
    }
}
