//! The output model: [`RangeSink`], somewhere ranges are appended, and [`Coalescing`],
//! the one adaptor that merges contiguous ranges on the way in.
//!
//! Builders, mappers, decoders and importers all write through this trait, so a caller
//! chooses the storage: a fixed-capacity [`RangeArray`](crate::RangeArray) (never
//! allocates), a [`RangeVec`](crate::RangeVec) or a `Vec<Range<S>>` (`alloc`), or a type
//! of its own (a slot in a driver's per-request structure, a ring).
//!
//! Every writer in the crate follows one rule: **on error the sink is left exactly as it
//! was found** (same ranges, same total). Writers take a [`SinkMark`] before they start
//! and [`RangeSink::rollback`] to it on failure.

#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

use core::marker::PhantomData;

use crate::addr::AddrSpace;
use crate::error::CapacityError;
use crate::range::Range;

/// Somewhere ranges can be appended: the output side of builders, mappers and decoders.
///
/// Implemented by [`RangeArray`](crate::RangeArray), [`RangeVec`](crate::RangeVec),
/// `Vec<Range<S>>` (`alloc`) and `&mut K` for any sink `K`.
///
/// # Implementer notes
/// The crate's writers rely on this contract; an implementation that breaks it may
/// make them report wrong totals or lose ranges, but never causes undefined behaviour.
/// - [`push_range`](RangeSink::push_range) appends `range` after everything already
///   there, or returns it in the error and changes nothing. A sink that caches a total
///   length must refuse a range that would make the total exceed `u64::MAX`.
/// - [`ranges`](RangeSink::ranges) is everything pushed and not rolled back, in order,
///   with any [`replace_last`](RangeSink::replace_last) applied.
/// - [`remaining_capacity`](RangeSink::remaining_capacity) is a promise: that many
///   further `push_range` calls will not fail for lack of room (they may still fail
///   for a total-length overflow). Writers use it to refuse an input *before* writing
///   any of it. Growable sinks return `usize::MAX`.
/// - [`replace_last`](RangeSink::replace_last) swaps the last range for another (used to
///   extend it when coalescing), or returns the new range in the error and changes
///   nothing when the sink is empty or a cached total would overflow.
/// - [`rollback`](RangeSink::rollback) removes every range pushed after `mark` was
///   taken; a mark beyond the current length is a no-op. It never fails.
///
/// # Examples
/// ```
/// use physvec::{PhysArray, PhysRange, RangeSink};
/// let mut a: PhysArray<2> = PhysArray::new();
/// assert_eq!(a.remaining_capacity(), 2);
/// let mark = a.mark();
/// a.push_range(PhysRange::new(0, 1)).unwrap();
/// assert_eq!(a.remaining_capacity(), 1);
/// a.rollback(mark);
/// assert!(a.ranges().is_empty());
/// ```
pub trait RangeSink<S: AddrSpace> {
    /// Appends a range, or hands it back when there is no room.
    ///
    /// # Errors
    /// [`CapacityError`] holding the rejected range; the sink is unchanged.
    fn push_range(&mut self, range: Range<S>) -> Result<(), CapacityError<Range<S>>>;

    /// The ranges written so far, in order.
    fn ranges(&self) -> &[Range<S>];

    /// Replaces the last range (used to extend it when coalescing).
    ///
    /// # Errors
    /// [`CapacityError`] holding `range` when the sink is empty or a cached total
    /// length would exceed `u64::MAX`; the sink is unchanged.
    fn replace_last(&mut self, range: Range<S>) -> Result<(), CapacityError<Range<S>>>;

    /// How many more ranges are guaranteed to fit (`usize::MAX` for growable sinks).
    fn remaining_capacity(&self) -> usize;

    /// Removes every range after the first `len`.
    fn truncate_ranges(&mut self, len: usize);

    /// The current position, to [`rollback`](RangeSink::rollback) to.
    #[inline]
    fn mark(&self) -> SinkMark {
        SinkMark(self.ranges().len())
    }

    /// Removes every range pushed after `mark` was taken.
    #[inline]
    fn rollback(&mut self, mark: SinkMark) {
        self.truncate_ranges(mark.0)
    }
}

/// A position in a [`RangeSink`], taken with [`RangeSink::mark`].
///
/// ```
/// use physvec::{DmaRange, DmaArray, RangeSink};
/// let mut a = DmaArray::<4>::new();
/// a.push_range(DmaRange::new(0, 8)).unwrap();
/// let m = a.mark();
/// assert_eq!(m.len(), 1);
/// a.push_range(DmaRange::new(0x100, 8)).unwrap();
/// a.rollback(m);
/// assert_eq!(a.len(), 1);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SinkMark(usize);

impl SinkMark {
    /// The number of ranges the sink held when the mark was taken.
    ///
    /// ```
    /// use physvec::{DmaArray, RangeSink};
    /// assert_eq!(DmaArray::<1>::new().mark().len(), 0);
    /// ```
    #[inline]
    #[allow(clippy::len_without_is_empty)] // a position, not a container
    pub const fn len(self) -> usize {
        self.0
    }
}

/// Lets a builder or decoder write into a sink it does not own.
///
/// ```
/// use physvec::{DmaConstraints, PhysArray, PhysRange, RangeBuilder};
/// let mut out = PhysArray::<4>::new();
/// let mut b = RangeBuilder::new(DmaConstraints::new(), &mut out).unwrap();
/// b.push(PhysRange::new(0x1000, 0x1000)).unwrap();
/// b.finish();
/// assert_eq!(out.len(), 1);
/// ```
impl<S: AddrSpace, K: RangeSink<S> + ?Sized> RangeSink<S> for &mut K {
    #[inline]
    fn push_range(&mut self, range: Range<S>) -> Result<(), CapacityError<Range<S>>> {
        (**self).push_range(range)
    }
    #[inline]
    fn ranges(&self) -> &[Range<S>] {
        (**self).ranges()
    }
    #[inline]
    fn replace_last(&mut self, range: Range<S>) -> Result<(), CapacityError<Range<S>>> {
        (**self).replace_last(range)
    }
    #[inline]
    fn remaining_capacity(&self) -> usize {
        (**self).remaining_capacity()
    }
    #[inline]
    fn truncate_ranges(&mut self, len: usize) {
        (**self).truncate_ranges(len)
    }
}

#[cfg(feature = "alloc")]
impl<S: AddrSpace> RangeSink<S> for alloc::vec::Vec<Range<S>> {
    #[inline]
    fn push_range(&mut self, range: Range<S>) -> Result<(), CapacityError<Range<S>>> {
        self.push(range);
        Ok(())
    }
    #[inline]
    fn ranges(&self) -> &[Range<S>] {
        self
    }
    #[inline]
    fn replace_last(&mut self, range: Range<S>) -> Result<(), CapacityError<Range<S>>> {
        match self.last_mut() {
            Some(last) => {
                *last = range;
                Ok(())
            }
            None => Err(CapacityError::new(range)),
        }
    }
    #[inline]
    fn remaining_capacity(&self) -> usize {
        usize::MAX
    }
    #[inline]
    fn truncate_ranges(&mut self, len: usize) {
        self.truncate(len)
    }
}

/// Writes into a sink, merging each range with the previous one *this adaptor* pushed
/// when they are contiguous. Ranges already in the sink before the adaptor was made are
/// never touched, so one sink can collect several transfers side by side.
///
/// It is the one place the crate coalesces output: the scatterlist importer, the NVMe
/// decoders and the pagemap translator all write through it.
///
/// ```
/// use physvec::sink::Coalescing;
/// use physvec::{DmaArray, DmaRange, RangeSink};
/// let mut out = DmaArray::<4>::new();
/// out.push_range(DmaRange::new(0x1000, 0x100)).unwrap(); // an earlier transfer
/// let mut c = Coalescing::new(&mut out);
/// c.push(DmaRange::new(0x1100, 0x100)).unwrap();          // contiguous, but not ours: kept apart
/// c.push(DmaRange::new(0x1200, 0x100)).unwrap();          // merged with the one above
/// assert_eq!(c.pushed(), 1);
/// assert_eq!(out.as_slice(), [DmaRange::new(0x1000, 0x100), DmaRange::new(0x1100, 0x200)]);
/// ```
#[derive(Debug)]
pub struct Coalescing<'k, S: AddrSpace, K: RangeSink<S> + ?Sized> {
    sink: &'k mut K,
    start: SinkMark,
    _space: PhantomData<S>,
}

impl<'k, S: AddrSpace, K: RangeSink<S> + ?Sized> Coalescing<'k, S, K> {
    /// Wraps `sink`; only ranges pushed from now on may be merged.
    ///
    /// ```
    /// use physvec::sink::Coalescing;
    /// let mut v = Vec::<physvec::DmaRange>::new();
    /// assert_eq!(Coalescing::new(&mut v).pushed(), 0);
    /// ```
    #[inline]
    pub fn new(sink: &'k mut K) -> Self {
        let start = sink.mark();
        Self {
            sink,
            start,
            _space: PhantomData,
        }
    }

    /// Appends `range`, merged into the last range this adaptor pushed when contiguous.
    ///
    /// # Errors
    /// [`CapacityError`] holding `range` when the sink is full (or its total would
    /// overflow); the sink is unchanged.
    ///
    /// ```
    /// use physvec::sink::Coalescing;
    /// use physvec::{DmaArray, DmaRange};
    /// let mut out = DmaArray::<1>::new();
    /// let mut c = Coalescing::new(&mut out);
    /// c.push(DmaRange::new(0, 0x10)).unwrap();
    /// c.push(DmaRange::new(0x10, 0x10)).unwrap();            // merged: still one slot
    /// assert!(c.push(DmaRange::new(0x100, 0x10)).is_err()); // a second slot: full
    /// ```
    #[inline]
    pub fn push(&mut self, range: Range<S>) -> Result<(), CapacityError<Range<S>>> {
        if self.pushed() > 0 {
            if let Some(merged) = self.sink.ranges().last().and_then(|l| l.merge(range)) {
                return self
                    .sink
                    .replace_last(merged)
                    .map_err(|_| CapacityError::new(range));
            }
        }
        self.sink.push_range(range)
    }

    /// How many ranges this adaptor has added to the sink (after merging).
    ///
    /// ```
    /// use physvec::sink::Coalescing;
    /// use physvec::DmaRange;
    /// let mut v = Vec::new();
    /// let mut c = Coalescing::new(&mut v);
    /// c.push(DmaRange::new(0, 1)).unwrap();
    /// c.push(DmaRange::new(1, 1)).unwrap();
    /// assert_eq!(c.pushed(), 1);
    /// ```
    #[inline]
    pub fn pushed(&self) -> usize {
        self.sink.ranges().len().saturating_sub(self.start.len())
    }

    /// The ranges this adaptor has added so far.
    ///
    /// ```
    /// use physvec::sink::Coalescing;
    /// use physvec::DmaRange;
    /// let mut v = vec![DmaRange::new(0x100, 1)];
    /// let mut c = Coalescing::new(&mut v);
    /// c.push(DmaRange::new(0, 1)).unwrap();
    /// assert_eq!(c.written(), [DmaRange::new(0, 1)]);
    /// ```
    #[inline]
    pub fn written(&self) -> &[Range<S>] {
        self.sink.ranges().get(self.start.len()..).unwrap_or(&[])
    }

    /// The mark taken when the adaptor was made.
    ///
    /// ```
    /// use physvec::sink::Coalescing;
    /// let mut v = vec![physvec::DmaRange::new(0, 1)];
    /// assert_eq!(Coalescing::new(&mut v).start().len(), 1);
    /// ```
    #[inline]
    pub fn start(&self) -> SinkMark {
        self.start
    }

    /// Removes everything this adaptor pushed, leaving the sink as it was found.
    ///
    /// ```
    /// use physvec::sink::Coalescing;
    /// use physvec::DmaRange;
    /// let mut v = vec![DmaRange::new(0x100, 1)];
    /// let mut c = Coalescing::new(&mut v);
    /// c.push(DmaRange::new(0, 1)).unwrap();
    /// c.rollback();
    /// assert_eq!(v, [DmaRange::new(0x100, 1)]);
    /// ```
    #[inline]
    pub fn rollback(self) {
        self.sink.rollback(self.start)
    }
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
    use crate::{PhysArray, PhysRange};

    #[test]
    fn coalescing_respects_capacity_and_rolls_back() {
        let mut out = PhysArray::<2>::new();
        out.push_range(PhysRange::new(0x1000, 0x1000)).unwrap();
        let mut c = Coalescing::new(&mut out);
        c.push(PhysRange::new(0x2000, 0x1000)).unwrap();
        c.push(PhysRange::new(0x3000, 0x1000)).unwrap();
        assert_eq!(c.written(), [PhysRange::new(0x2000, 0x2000)]);
        let e = c.push(PhysRange::new(0x9000, 1)).unwrap_err();
        assert_eq!(e.element(), PhysRange::new(0x9000, 1));
        c.rollback();
        assert_eq!(out.as_slice(), [PhysRange::new(0x1000, 0x1000)]);
        assert_eq!(out.total_len(), 0x1000);
    }

    #[test]
    fn coalescing_refuses_a_total_overflow_without_change() {
        let mut out = PhysArray::<4>::new();
        out.push_range(PhysRange::new(0, 1 << 63)).unwrap();
        let mut c = Coalescing::new(&mut out);
        c.push(PhysRange::new(1 << 63, 1 << 62)).unwrap();
        // Merging would make the cached total 2^64 + 2^62 - 1... > u64::MAX.
        let top = PhysRange::new((1 << 63) + (1 << 62), (1 << 62) - 1);
        assert!(c.push(top).is_ok());
        assert_eq!(out.total_len(), u64::MAX);
        let mut c = Coalescing::new(&mut out);
        assert!(c.push(PhysRange::new(0, 1)).is_err());
        assert_eq!(out.total_len(), u64::MAX);
    }

    #[test]
    fn replace_last_on_empty_is_refused() {
        let mut a = PhysArray::<1>::new();
        assert!(a.replace_last(PhysRange::new(0, 1)).is_err());
        let mut v: Vec<PhysRange> = Vec::new();
        assert!(v.replace_last(PhysRange::new(0, 1)).is_err());
        assert_eq!(a.mark(), SinkMark(0));
    }
}
