//! [`RangeBuilder`]: appends ranges or page frames, coalesces contiguous neighbours,
//! splits to satisfy [`DmaConstraints`], and rejects what cannot satisfy them.
//!
//! This is what `blk_rq_map_sg`/`__blk_bios_map_sg` do when they turn bio segments into
//! scatterlist entries (`biovec_phys_mergeable`, `get_max_segment_size`), without the
//! scatterlist: the output is any [`RangeSink`], including a fixed-capacity
//! [`RangeArray`](crate::RangeArray) for an allocation-free path.

use crate::addr::{Addr, AddrSpace, PageSize};
use crate::constraints::DmaConstraints;
use crate::error::{BuildError, ConstraintsError};
use crate::range::Range;
use crate::sink::RangeSink;

/// Builds a constrained range list into a sink.
///
/// # Invariants
/// Every segment the builder wrote satisfies every constraint
/// ([`DmaConstraints::segment_ok`]), at most `max_segments` were written, and coalescing
/// is maximal: two adjacent output segments are never contiguous *and* mergeable under
/// the constraints. A rejected push changes nothing.
///
/// # Examples
/// ```
/// use physvec::{DmaConstraints, PageSize, PhysArray, PhysRange, RangeBuilder};
/// let c = DmaConstraints::new().with_max_segment_size(0x2000);
/// let mut b = RangeBuilder::new(c, PhysArray::<8>::new()).unwrap();
/// b.push(PhysRange::new(0x1000, 0x1000)).unwrap();
/// b.push(PhysRange::new(0x2000, 0x1800)).unwrap(); // contiguous: coalesced, then split
/// b.push_pfn(0x40, PageSize::SIZE_4K).unwrap();    // page frame 0x40
/// let out = b.finish();
/// assert_eq!(out.as_slice(), [
///     PhysRange::new(0x1000, 0x2000),
///     PhysRange::new(0x3000, 0x800),
///     PhysRange::new(0x40000, 0x1000),
/// ]);
/// ```
#[derive(Debug)]
pub struct RangeBuilder<S: AddrSpace, K: RangeSink<S>> {
    constraints: DmaConstraints,
    sink: K,
    /// Ranges in the sink before the builder started (never coalesced into).
    base: usize,
    inputs: usize,
    total: u64,
    /// Segments written by this builder (`segments().len()`), cached.
    produced: usize,
    /// The last segment written by this builder (`segments().last()`), cached: the
    /// builder owns the sink, so nothing else can change it.
    tail: Option<Range<S>>,
    _space: core::marker::PhantomData<S>,
}

impl<S: AddrSpace, K: RangeSink<S>> RangeBuilder<S, K> {
    /// A builder writing into `sink` (after whatever it already holds).
    ///
    /// # Errors
    /// The constraints' own [`ConstraintsError`] when they are self-contradictory.
    ///
    /// ```
    /// use physvec::{DmaConstraints, PhysVec, RangeBuilder};
    /// assert!(RangeBuilder::new(DmaConstraints::new(), PhysVec::new()).is_ok());
    /// ```
    pub fn new(constraints: DmaConstraints, sink: K) -> Result<Self, ConstraintsError> {
        let constraints = constraints.validate()?;
        let base = sink.ranges().len();
        Ok(Self {
            constraints,
            sink,
            base,
            inputs: 0,
            total: 0,
            produced: 0,
            tail: None,
            _space: core::marker::PhantomData,
        })
    }

    /// The constraints in force.
    ///
    /// ```
    /// use physvec::{DmaConstraints, PhysVec, RangeBuilder};
    /// let b = RangeBuilder::new(DmaConstraints::new(), PhysVec::new()).unwrap();
    /// assert_eq!(b.constraints().alignment(), 1);
    /// ```
    pub fn constraints(&self) -> &DmaConstraints {
        &self.constraints
    }

    /// The segments written so far by this builder.
    ///
    /// ```
    /// use physvec::{DmaConstraints, PhysRange, PhysVec, RangeBuilder};
    /// let mut b = RangeBuilder::new(DmaConstraints::new(), PhysVec::new()).unwrap();
    /// b.push(PhysRange::new(0, 8)).unwrap();
    /// assert_eq!(b.segments(), [PhysRange::new(0, 8)]);
    /// ```
    pub fn segments(&self) -> &[Range<S>] {
        // `base` is the sink's length when the builder started; rollbacks never go below.
        self.sink.ranges().get(self.base..).unwrap_or(&[])
    }

    /// Bytes accepted so far.
    ///
    /// ```
    /// use physvec::{DmaConstraints, PhysRange, PhysVec, RangeBuilder};
    /// let mut b = RangeBuilder::new(DmaConstraints::new(), PhysVec::new()).unwrap();
    /// b.push(PhysRange::new(0, 8)).unwrap();
    /// assert_eq!(b.total_len(), 8);
    /// ```
    pub fn total_len(&self) -> u64 {
        self.total
    }

    /// Number of inputs accepted so far (the index the next input's errors will carry).
    ///
    /// ```
    /// use physvec::{DmaConstraints, PhysVec, RangeBuilder};
    /// let b = RangeBuilder::new(DmaConstraints::new(), PhysVec::new()).unwrap();
    /// assert_eq!(b.inputs(), 0);
    /// ```
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// Returns the sink.
    ///
    /// ```
    /// use physvec::{DmaConstraints, PhysVec, RangeBuilder};
    /// let v = RangeBuilder::new(DmaConstraints::new(), PhysVec::new()).unwrap().finish();
    /// assert!(v.is_empty());
    /// ```
    pub fn finish(self) -> K {
        self.sink
    }

    /// Appends `[addr, addr + len)` given as raw numbers.
    ///
    /// # Errors
    /// [`BuildError::InvalidRange`] for an empty or overflowing range; otherwise as
    /// [`RangeBuilder::push`].
    ///
    /// ```
    /// use physvec::{BuildError, DmaConstraints, PhysVec, RangeBuilder};
    /// let mut b = RangeBuilder::new(DmaConstraints::new(), PhysVec::new()).unwrap();
    /// assert!(matches!(b.push_raw(0x1000, 0), Err(BuildError::InvalidRange { index: 0, .. })));
    /// ```
    pub fn push_raw(&mut self, addr: u64, len: u64) -> Result<(), BuildError> {
        let range = Range::try_new(addr, len).map_err(|error| BuildError::InvalidRange {
            index: self.inputs,
            error,
        })?;
        self.push(range)
    }

    /// Appends one whole page of size `page` starting at `page_addr` (which need not be
    /// page-aligned).
    ///
    /// # Errors
    /// As [`RangeBuilder::push_raw`].
    ///
    /// ```
    /// use physvec::{DmaConstraints, PageSize, PhysAddr, PhysVec, RangeBuilder};
    /// let mut b = RangeBuilder::new(DmaConstraints::new(), PhysVec::new()).unwrap();
    /// b.push_page(PhysAddr::new(0x3000), PageSize::SIZE_4K).unwrap();
    /// b.push_page(PhysAddr::new(0x4000), PageSize::SIZE_4K).unwrap();
    /// assert_eq!(b.segments().len(), 1);
    /// ```
    pub fn push_page(&mut self, page_addr: Addr<S>, page: PageSize) -> Result<(), BuildError> {
        self.push_raw(page_addr.as_u64(), page.get())
    }

    /// Appends page frame `pfn` (the page at `pfn * page`).
    ///
    /// # Errors
    /// [`BuildError::InvalidRange`] when the frame lies beyond 2^64; otherwise as
    /// [`RangeBuilder::push`].
    ///
    /// ```
    /// use physvec::{DmaConstraints, PageSize, PhysVec, RangeBuilder};
    /// let mut b = RangeBuilder::new(DmaConstraints::new(), PhysVec::new()).unwrap();
    /// assert!(b.push_pfn(u64::MAX, PageSize::SIZE_4K).is_err());
    /// ```
    pub fn push_pfn(&mut self, pfn: u64, page: PageSize) -> Result<(), BuildError> {
        match Addr::<S>::from_pfn(pfn, page) {
            Ok(a) => self.push_page(a, page),
            Err(_) => Err(BuildError::InvalidRange {
                index: self.inputs,
                error: crate::RangeError::Overflow {
                    addr: pfn,
                    len: page.get(),
                },
            }),
        }
    }

    /// Appends every range of an iterator, stopping at the first rejection.
    ///
    /// # Errors
    /// The first [`BuildError`]; the inputs before it stay accepted.
    ///
    /// ```
    /// use physvec::{DmaConstraints, PhysRange, PhysVec, RangeBuilder};
    /// let mut b = RangeBuilder::new(DmaConstraints::new(), PhysVec::new()).unwrap();
    /// b.extend_from([PhysRange::new(0, 8), PhysRange::new(8, 8)]).unwrap();
    /// assert_eq!(b.segments(), [PhysRange::new(0, 16)]);
    /// ```
    pub fn extend_from<I: IntoIterator<Item = Range<S>>>(
        &mut self,
        ranges: I,
    ) -> Result<(), BuildError> {
        for r in ranges {
            self.push(r)?;
        }
        Ok(())
    }

    /// Appends a range: coalesces it into the previous segment while the constraints
    /// allow, then splits the rest at the segment boundary and maximum segment size.
    ///
    /// # Errors
    /// [`BuildError::Unaligned`], [`BuildError::AboveDmaMask`],
    /// [`BuildError::TooManySegments`], [`BuildError::CapacityExceeded`] or
    /// [`BuildError::TotalOverflow`]; the builder is unchanged.
    ///
    /// ```
    /// use physvec::{BuildError, DmaConstraints, PhysRange, PhysVec, RangeBuilder};
    /// let c = DmaConstraints::new().with_dma_mask(physvec::DmaMask::BITS_32);
    /// let mut b = RangeBuilder::new(c, PhysVec::new()).unwrap();
    /// assert!(matches!(
    ///     b.push(PhysRange::new(0xffff_f000, 0x2000)),
    ///     Err(BuildError::AboveDmaMask { index: 0, last: 0x1_0000_0fff, .. })
    /// ));
    /// ```
    #[inline(always)]
    pub fn push(&mut self, range: Range<S>) -> Result<(), BuildError> {
        // Fast path, the common case: aligned, under the mask, not contiguous with the
        // tail, one piece, room for it. The same checks as `push_slow` in fewer
        // branches; anything else (including every error) goes the general way.
        let c = &self.constraints;
        let addr = range.addr().as_u64();
        let len = range.len();
        // The two input checks both fast paths need; failures go to `push_slow`, which
        // reports them.
        let acceptable = addr & c.alignment_mask() == 0 && c.dma_mask().covers(range);
        if acceptable
            && !self.tail.is_some_and(|t| t.is_contiguous_with(range))
            && len <= c.final_room_at(addr)
            && self.produced < c.max_segments()
        {
            if let Some(total) = self.total.checked_add(len) {
                if self.sink.remaining_capacity() >= 1 {
                    if self.sink.push_range(range).is_err() {
                        // As the general path: the sink refused (its own total).
                        // Both count ranges in the sink: their sum is its length.
                        let before = self.base.saturating_add(self.produced);
                        self.sink.truncate_ranges(before);
                        return Err(BuildError::TotalOverflow { index: self.inputs });
                    }
                    self.total = total;
                    // Counts of ranges pushed: bounded by the sink, far below `usize::MAX`.
                    self.inputs = self.inputs.wrapping_add(1);
                    self.produced = self.produced.wrapping_add(1);
                    self.tail = Some(range);
                    return Ok(());
                }
            }
        }
        // Second fast path: contiguous with the tail and the merged segment still fits
        // (`absorbed == len` in `push_slow`; no new segment, so no count or capacity
        // check applies).
        if let Some(t) = self.tail {
            let ta = t.addr().as_u64();
            if acceptable && t.is_contiguous_with(range) {
                if let (Some(total), Some(merged)) =
                    (self.total.checked_add(len), t.len().checked_add(len))
                {
                    if merged <= c.final_room_at(ta) {
                        let m = Range::new(ta, merged);
                        // A refusal (the sink's own total) goes the general way,
                        // which reports it with nothing changed.
                        if self.sink.replace_last(m).is_ok() {
                            self.total = total;
                            self.inputs = self.inputs.wrapping_add(1);
                            self.tail = Some(m);
                            return Ok(());
                        }
                    }
                }
            }
        }
        self.push_slow(range)
    }

    /// [`RangeBuilder::push`] in general: coalescing, splitting and every error.
    #[cold]
    #[inline(never)]
    fn push_slow(&mut self, range: Range<S>) -> Result<(), BuildError> {
        let index = self.inputs;
        let c = self.constraints;
        let addr = range.addr().as_u64();
        if addr & c.alignment_mask() != 0 {
            return Err(BuildError::Unaligned {
                index,
                addr,
                alignment: c.alignment(),
            });
        }
        let last = range.last().as_u64();
        if !c.dma_mask().covers(range) {
            return Err(BuildError::AboveDmaMask {
                index,
                last,
                mask: c.dma_mask().get(),
            });
        }
        let new_total = self
            .total
            .checked_add(range.len())
            .ok_or(BuildError::TotalOverflow { index })?;

        // How much can join the previous segment of ours?
        let tail = self.segments().last().copied();
        let mut absorbed = 0u64;
        if let Some(t) = tail {
            if t.is_contiguous_with(range) {
                let ta = t.addr().as_u64();
                absorbed = if t.len().saturating_add(range.len()) <= c.final_room_at(ta) {
                    range.len()
                } else {
                    c.room_at(ta).saturating_sub(t.len()).min(range.len())
                };
            }
        }
        // `absorbed <= range.len()` by construction just above.
        let rest_len = range.len().saturating_sub(absorbed);
        // `addr + absorbed` is inside the range (used only when `rest_len > 0`), so it
        // cannot wrap.
        let rest_addr = addr.wrapping_add(absorbed);
        let needed = if rest_len == 0 {
            0
        } else if rest_len <= c.final_room_at(rest_addr) {
            // One piece (the common case): what the commit loop below writes, without
            // count_pieces' u128 arithmetic.
            1
        } else {
            count_pieces(&c, rest_addr, rest_len)
        };
        let produced = self.segments().len() as u64;
        if produced.saturating_add(needed) > c.max_segments() as u64 {
            return Err(BuildError::TooManySegments {
                index,
                max_segments: c.max_segments(),
            });
        }
        let available = self.sink.remaining_capacity();
        if needed > available as u64 {
            return Err(BuildError::CapacityExceeded {
                index,
                needed: usize::try_from(needed).unwrap_or(usize::MAX),
                available,
            });
        }

        // Commit. The sink can still refuse (its own total overflowing), so remember how
        // to roll back.
        let before = self.sink.ranges().len();
        if absorbed > 0 {
            if let Some(t) = tail {
                // Nothing written yet: a refusal leaves the sink as it was.
                if self
                    .sink
                    .replace_last(Range::new(
                        t.addr().as_u64(),
                        t.len().saturating_add(absorbed),
                    ))
                    .is_err()
                {
                    return Err(BuildError::TotalOverflow { index });
                }
            }
        }
        // Wraps only when everything was absorbed into a range ending at 2^64, and then
        // the loop below does not run.
        let mut cur = addr.wrapping_add(absorbed);
        let mut rem = rest_len;
        while rem > 0 {
            let piece = if rem <= c.final_room_at(cur) {
                rem
            } else {
                c.room_at(cur)
            };
            if self.sink.push_range(Range::new(cur, piece)).is_err() {
                self.sink.truncate_ranges(before);
                if let Some(t) = tail {
                    if absorbed > 0 {
                        // Restoring the shorter original lowers the total: it cannot
                        // be refused.
                        let _restored = self.sink.replace_last(t);
                    }
                }
                return Err(BuildError::TotalOverflow { index });
            }
            // `piece <= rem` (both branches above).
            rem = rem.saturating_sub(piece);
            // Wraps only after the final piece of a range ending at 2^64.
            cur = cur.wrapping_add(piece);
        }
        self.total = new_total;
        self.inputs = self.inputs.saturating_add(1);
        self.produced = self.segments().len();
        self.tail = self.segments().last().copied();
        Ok(())
    }
}

/// Number of segments `[addr, addr + len)` splits into, computed in O(1) and saturating
/// at `u64::MAX`: every piece is as long as the constraints allow (`room_at`, which keeps
/// the next start aligned), except that the final piece may use the whole
/// `final_room_at` — which can save exactly one piece when the last two greedy pieces
/// share a boundary window and fit in `max_segment_size` together.
// Proof: u128 arithmetic on values of at most 2^64 (no overflow); `end >= 1` (`len > 0`);
// `end - 1 >= s0` (`s0` is `addr` or the start of the last window, both <= end - 1);
// `last_start = s0 + k * max` with `k >= 1` before `last_start - max`; `max >= 1`;
// `greedy >= 2` before `greedy - 1`.
#[allow(clippy::arithmetic_side_effects)]
fn count_pieces(c: &DmaConstraints, addr: u64, len: u64) -> u64 {
    let greedy = count_greedy(c, addr, len);
    if greedy < 2 || greedy == u64::MAX {
        return greedy;
    }
    let max = c.effective_max_segment_size() as u128;
    let mask = c.segment_boundary_mask() as u128;
    let end = addr as u128 + len as u128; // exclusive, <= 2^64
    let window = (end - 1) & !mask;
    let s0 = core::cmp::max(addr as u128, window);
    let last_start = s0 + ((end - 1 - s0) / max) * max;
    if last_start > s0 && end - (last_start - max) <= c.max_segment_size() as u128 {
        greedy - 1
    } else {
        greedy
    }
}

/// [`count_pieces`] without the final-piece rule.
// Proof: `mask - (addr & mask)` cannot underflow; u128 sums and products of values of at
// most 2^64 cannot overflow; `max >= 1` and `window >= 1` for the divisions; `len >
// to_boundary` before `len - to_boundary`.
#[allow(clippy::arithmetic_side_effects)]
fn count_greedy(c: &DmaConstraints, addr: u64, len: u64) -> u64 {
    let max = c.effective_max_segment_size();
    let mask = c.segment_boundary_mask();
    // Bytes to the first boundary (may be 2^64 when unbounded).
    let to_boundary = ((mask - (addr & mask)) as u128) + 1;
    let len = len as u128;
    let max = max as u128;
    let ceil = |x: u128| x.div_ceil(max);
    if len <= to_boundary {
        return sat(ceil(len));
    }
    let window = (mask as u128) + 1;
    let first = ceil(to_boundary);
    let rest = len - to_boundary;
    let full = rest / window;
    let tail = rest % window;
    sat(first + full * ceil(window) + ceil(tail))
}

fn sat(x: u128) -> u64 {
    u64::try_from(x).unwrap_or(u64::MAX)
}

#[cfg(test)]
#[allow(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]
mod tests {
    use super::*;
    use crate::range::PhysRange;
    use crate::vec::PhysArray;

    fn build(c: DmaConstraints, input: &[PhysRange]) -> PhysArray<64> {
        let mut b = RangeBuilder::new(c, PhysArray::<64>::new()).unwrap();
        b.extend_from(input.iter().copied()).unwrap();
        b.finish()
    }

    #[test]
    fn coalesces_and_splits_at_boundary() {
        let c = DmaConstraints::new().with_segment_boundary_mask(0xffff);
        let out = build(
            c,
            &[
                PhysRange::new(0xf000, 0x800),
                PhysRange::new(0xf800, 0x1000),
            ],
        );
        assert_eq!(
            out.as_slice(),
            [
                PhysRange::new(0xf000, 0x1000),
                PhysRange::new(0x10000, 0x800)
            ]
        );
    }

    #[test]
    fn count_matches_writing() {
        let cs = [
            DmaConstraints::new(),
            DmaConstraints::new().with_max_segment_size(0x3000),
            DmaConstraints::new()
                .with_max_segment_size(0x3000)
                .with_segment_boundary_mask(0x7fff),
            DmaConstraints::new()
                .with_max_segment_size(0x10000)
                .with_segment_boundary_mask(0xfff),
            DmaConstraints::new()
                .with_max_segment_size(0x2800)
                .with_alignment(0x1000)
                .unwrap()
                .with_segment_boundary_mask(0x7fff),
        ];
        for c in cs {
            for (addr, len) in [
                (0, 1),
                (0x7ff0, 0x20),
                (0x1234, 0x23456),
                (0, 0x8000),
                (0x1000, 0x5000),
                (0x6000, 0x3800),
            ] {
                if addr % c.alignment() != 0 {
                    continue;
                }
                let out = build(c, &[PhysRange::new(addr, len)]);
                assert_eq!(count_pieces(&c, addr, len), out.len() as u64, "{c:?}");
            }
        }
        assert_eq!(
            count_pieces(&DmaConstraints::new().with_max_segment_size(1), 0, u64::MAX),
            u64::MAX
        );
    }

    #[test]
    fn rejections_leave_builder_unchanged() {
        let c = DmaConstraints::new()
            .with_max_segment_size(0x1000)
            .with_max_segments(3);
        let mut b = RangeBuilder::new(c, PhysArray::<8>::new()).unwrap();
        b.push(PhysRange::new(0, 0x800)).unwrap();
        let before: std::vec::Vec<_> = b.segments().to_vec();
        // Needs 0x800 absorbed + 3 more segments: 4 > 3.
        assert_eq!(
            b.push(PhysRange::new(0x800, 0x3800)),
            Err(BuildError::TooManySegments {
                index: 1,
                max_segments: 3
            })
        );
        assert_eq!(b.segments(), &before[..]);
        assert_eq!(b.total_len(), 0x800);
        // Capacity: a 2-slot array.
        let mut b = RangeBuilder::new(DmaConstraints::new(), PhysArray::<2>::new()).unwrap();
        b.push(PhysRange::new(0, 1)).unwrap();
        b.push(PhysRange::new(5, 1)).unwrap();
        assert_eq!(
            b.push(PhysRange::new(9, 1)),
            Err(BuildError::CapacityExceeded {
                index: 2,
                needed: 1,
                available: 0
            })
        );
        // Contiguous input still fits by coalescing.
        b.push(PhysRange::new(6, 1)).unwrap();
        assert_eq!(b.segments()[1], PhysRange::new(5, 2));
    }

    #[test]
    fn final_piece_uses_full_max_segment_size() {
        let c = DmaConstraints::new()
            .with_max_segment_size(1000)
            .with_alignment(512)
            .unwrap();
        let out = build(c, &[PhysRange::new(0, 1500)]);
        assert_eq!(
            out.as_slice(),
            [PhysRange::new(0, 512), PhysRange::new(512, 988)]
        );
        assert_eq!(count_pieces(&c, 0, 1500), 2);
        let out = build(c, &[PhysRange::new(0, 512), PhysRange::new(512, 476)]);
        assert_eq!(out.as_slice(), [PhysRange::new(0, 988)]);
    }

    #[test]
    fn top_of_address_space() {
        let c = DmaConstraints::new().with_max_segment_size(0x1000);
        let out = build(c, &[PhysRange::new(u64::MAX - 0x1fff, 0x2000)]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].last().as_u64(), u64::MAX);
    }

    #[test]
    fn does_not_coalesce_into_existing_sink_content() {
        let mut sink = PhysArray::<4>::new();
        sink.try_push(PhysRange::new(0, 0x10)).unwrap();
        let mut b = RangeBuilder::new(DmaConstraints::new(), sink).unwrap();
        b.push(PhysRange::new(0x10, 0x10)).unwrap();
        assert_eq!(b.finish().len(), 2);
    }
}
