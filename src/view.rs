//! Zero-copy byte windows over a range list: [`RangeView`].
//!
//! A view borrows a `&[Range<S>]` and selects the bytes `[offset, offset + len)` of the
//! concatenated ranges. The first and last segments are trimmed *virtually*: nothing is
//! copied or allocated, and the underlying slice is never modified. Adapters (PRP, SGL,
//! scatterlist, RDMA) take views, so a driver can split one I/O into several commands
//! without rebuilding its range list.

#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

use core::fmt;

use crate::addr::{Addr, AddrSpace};
use crate::error::ViewError;
use crate::range::Range;
use crate::sink::RangeSink;

/// A borrowed window of bytes over a list of ranges.
///
/// # Invariants
/// `ranges` holds exactly the segments the window touches; the window starts `head`
/// bytes into `ranges[0]` and ends `tail` bytes into the last one (`0 <= head`,
/// `tail <= last.len()`), and `len` is the number of bytes in the window. An empty view
/// has no segments.
///
/// # Examples
/// ```
/// use physvec::{PhysRange, RangeView};
/// let list = [PhysRange::new(0x1000, 0x1000), PhysRange::new(0x8000, 0x1000)];
/// let v = RangeView::new(&list, 0x800, 0x1000).unwrap();
/// let segs: Vec<_> = v.iter().collect();
/// assert_eq!(segs, [PhysRange::new(0x1800, 0x800), PhysRange::new(0x8000, 0x800)]);
/// assert_eq!(v.seek(0x900), Some((1, 0x100)));
/// ```
pub struct RangeView<'a, S: AddrSpace> {
    ranges: &'a [Range<S>],
    head: u64,
    tail: u64,
    len: u64,
}

impl<S: AddrSpace> Clone for RangeView<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S: AddrSpace> Copy for RangeView<'_, S> {}

impl<S: AddrSpace> PartialEq for RangeView<'_, S> {
    /// Two views are equal when they yield the same trimmed segments.
    fn eq(&self, other: &Self) -> bool {
        self.segment_count() == other.segment_count() && self.iter().eq(other.iter())
    }
}
impl<S: AddrSpace> Eq for RangeView<'_, S> {}

impl<S: AddrSpace> fmt::Debug for RangeView<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "view[{} segs, {:#x} bytes] ",
            self.segment_count(),
            self.len
        )?;
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<S: AddrSpace> Default for RangeView<'_, S> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<'a, S: AddrSpace> RangeView<'a, S> {
    /// A view with no bytes.
    ///
    /// ```
    /// assert!(physvec::RangeView::<physvec::Phys>::empty().is_empty());
    /// ```
    pub const fn empty() -> Self {
        Self {
            ranges: &[],
            head: 0,
            tail: 0,
            len: 0,
        }
    }

    /// A view over all bytes of `ranges`.
    ///
    /// # Errors
    /// [`ViewError::TotalOverflow`] when the lengths add up to more than `u64::MAX`.
    ///
    /// ```
    /// use physvec::{DmaRange, RangeView};
    /// let list = [DmaRange::new(0, 0x10), DmaRange::new(0x100, 0x10)];
    /// assert_eq!(RangeView::full(&list).unwrap().len(), 0x20);
    /// ```
    pub fn full(ranges: &'a [Range<S>]) -> Result<Self, ViewError> {
        let mut total: u64 = 0;
        for (index, r) in ranges.iter().enumerate() {
            total = total
                .checked_add(r.len())
                .ok_or(ViewError::TotalOverflow { index })?;
        }
        Ok(Self::from_parts_unchecked_total(ranges, total))
    }

    /// A view over bytes `[offset, offset + len)` of `ranges`.
    ///
    /// # Errors
    /// As [`RangeView::full`], plus [`ViewError::OutOfBounds`] when the window does not
    /// fit.
    ///
    /// ```
    /// use physvec::{DmaRange, RangeView};
    /// let list = [DmaRange::new(0, 0x10)];
    /// assert!(RangeView::new(&list, 0x8, 0x8).is_ok());
    /// assert!(RangeView::new(&list, 0x8, 0x9).is_err());
    /// ```
    pub fn new(ranges: &'a [Range<S>], offset: u64, len: u64) -> Result<Self, ViewError> {
        Self::full(ranges)?.window(offset, len)
    }

    /// Builds a full view from a list whose total is already known to be `total`.
    pub(crate) fn from_parts_unchecked_total(ranges: &'a [Range<S>], total: u64) -> Self {
        match ranges.last() {
            None => Self::empty(),
            Some(last) => Self {
                ranges,
                head: 0,
                tail: last.len(),
                len: total,
            },
        }
    }

    /// Number of bytes in the window.
    ///
    /// ```
    /// assert_eq!(physvec::RangeView::<physvec::Dma>::empty().len(), 0);
    /// ```
    pub const fn len(&self) -> u64 {
        self.len
    }

    /// Whether the window holds no bytes.
    ///
    /// ```
    /// assert!(physvec::RangeView::<physvec::Dma>::empty().is_empty());
    /// ```
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of (trimmed) segments the window touches.
    ///
    /// ```
    /// use physvec::{PhysRange, RangeView};
    /// let list = [PhysRange::new(0, 8), PhysRange::new(16, 8)];
    /// assert_eq!(RangeView::new(&list, 4, 8).unwrap().segment_count(), 2);
    /// ```
    pub const fn segment_count(&self) -> usize {
        self.ranges.len()
    }

    /// The untrimmed ranges the window touches.
    ///
    /// ```
    /// use physvec::{PhysRange, RangeView};
    /// let list = [PhysRange::new(0, 8), PhysRange::new(16, 8)];
    /// assert_eq!(RangeView::new(&list, 0, 4).unwrap().underlying(), &list[..1]);
    /// ```
    pub const fn underlying(&self) -> &'a [Range<S>] {
        self.ranges
    }

    /// Bytes skipped at the start of the first underlying range.
    ///
    /// ```
    /// use physvec::{PhysRange, RangeView};
    /// let list = [PhysRange::new(0, 8)];
    /// assert_eq!(RangeView::new(&list, 3, 2).unwrap().head_offset(), 3);
    /// ```
    pub const fn head_offset(&self) -> u64 {
        self.head
    }

    /// The `index`-th trimmed segment.
    ///
    /// ```
    /// use physvec::{PhysRange, RangeView};
    /// let list = [PhysRange::new(0x100, 8), PhysRange::new(0x200, 8)];
    /// let v = RangeView::new(&list, 2, 8).unwrap();
    /// assert_eq!(v.get(0), Some(PhysRange::new(0x102, 6)));
    /// assert_eq!(v.get(1), Some(PhysRange::new(0x200, 2)));
    /// assert_eq!(v.get(2), None);
    /// ```
    #[inline]
    pub fn get(&self, index: usize) -> Option<Range<S>> {
        let r = *self.ranges.get(index)?;
        let start = if index == 0 { self.head } else { 0 };
        // `index < ranges.len()` (the `get` above), so `index + 1` cannot overflow.
        #[allow(clippy::arithmetic_side_effects)]
        let is_last = index + 1 == self.ranges.len();
        let end = if is_last { self.tail } else { r.len() };
        // In bounds by the view invariants: start < end <= r.len(), and the range ends
        // at or below 2^64.
        #[allow(clippy::arithmetic_side_effects)]
        let (addr, len) = (r.addr().as_u64() + start, end - start);
        Some(Range::new_unchecked(addr, len))
    }

    /// The first trimmed segment.
    ///
    /// ```
    /// use physvec::{PhysRange, RangeView};
    /// let list = [PhysRange::new(0x100, 8)];
    /// assert_eq!(RangeView::full(&list).unwrap().first(), Some(list[0]));
    /// ```
    pub fn first(&self) -> Option<Range<S>> {
        self.get(0)
    }

    /// The last trimmed segment.
    ///
    /// ```
    /// use physvec::{PhysRange, RangeView};
    /// let list = [PhysRange::new(0x100, 8)];
    /// assert_eq!(RangeView::new(&list, 0, 4).unwrap().last(), Some(PhysRange::new(0x100, 4)));
    /// ```
    pub fn last(&self) -> Option<Range<S>> {
        self.get(self.ranges.len().checked_sub(1)?)
    }

    /// Iterates over the trimmed segments.
    ///
    /// ```
    /// use physvec::{PhysRange, RangeView};
    /// let list = [PhysRange::new(0x100, 8), PhysRange::new(0x200, 8)];
    /// assert_eq!(RangeView::full(&list).unwrap().iter().count(), 2);
    /// ```
    pub fn iter(&self) -> ViewIter<'a, S> {
        ViewIter {
            view: *self,
            front: 0,
            back: self.ranges.len(),
        }
    }

    /// Finds the byte at `offset` from the start of the window: the index of the trimmed
    /// segment that holds it and the offset inside that segment. `None` when
    /// `offset >= len`.
    ///
    /// ```
    /// use physvec::{PhysRange, RangeView};
    /// let list = [PhysRange::new(0x100, 8), PhysRange::new(0x200, 8)];
    /// let v = RangeView::full(&list).unwrap();
    /// assert_eq!(v.seek(9), Some((1, 1)));
    /// assert_eq!(v.seek(16), None);
    /// ```
    pub fn seek(&self, offset: u64) -> Option<(usize, u64)> {
        if offset >= self.len {
            return None;
        }
        let mut rest = offset;
        for (i, seg) in self.iter().enumerate() {
            if rest < seg.len() {
                return Some((i, rest));
            }
            // `rest >= seg.len()` (the test above failed).
            #[allow(clippy::arithmetic_side_effects)]
            {
                rest -= seg.len();
            }
        }
        None
    }

    /// The sub-window `[offset, offset + len)`, relative to this window.
    ///
    /// # Errors
    /// [`ViewError::OutOfBounds`] when it does not fit inside this window.
    ///
    /// ```
    /// use physvec::{PhysRange, RangeView};
    /// let list = [PhysRange::new(0x100, 8), PhysRange::new(0x200, 8)];
    /// let v = RangeView::full(&list).unwrap().window(6, 4).unwrap();
    /// assert_eq!(v.iter().collect::<Vec<_>>(), [PhysRange::new(0x106, 2), PhysRange::new(0x200, 2)]);
    /// ```
    pub fn window(&self, offset: u64, len: u64) -> Result<Self, ViewError> {
        let oob = ViewError::OutOfBounds {
            offset,
            len,
            total: self.len,
        };
        let end = offset.checked_add(len).ok_or(oob)?;
        if end > self.len {
            return Err(oob);
        }
        if len == 0 {
            return Ok(Self::empty());
        }
        // Locate the first byte and the last byte (end - 1) in underlying coordinates.
        // `end >= len > 0`.
        #[allow(clippy::arithmetic_side_effects)]
        let last_byte = end - 1;
        let (first_idx, first_off) = self.locate(offset);
        let (last_idx, last_off) = self.locate(last_byte);
        // `offset <= last_byte < self.len`, so `locate` found both inside `ranges`, in
        // order (`first_idx <= last_idx`), and `last_off < ranges[last_idx].len()`.
        #[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
        Ok(Self {
            ranges: &self.ranges[first_idx..=last_idx],
            head: first_off,
            tail: last_off + 1,
            len,
        })
    }

    /// Splits the window at `offset` into `[0, offset)` and `[offset, len)`.
    ///
    /// # Errors
    /// [`ViewError::OutOfBounds`] when `offset > len`.
    ///
    /// ```
    /// use physvec::{PhysRange, RangeView};
    /// let list = [PhysRange::new(0x100, 8)];
    /// let (a, b) = RangeView::full(&list).unwrap().split_at(3).unwrap();
    /// assert_eq!((a.len(), b.first()), (3, Some(PhysRange::new(0x103, 5))));
    /// ```
    pub fn split_at(&self, offset: u64) -> Result<(Self, Self), ViewError> {
        if offset > self.len {
            return Err(ViewError::OutOfBounds {
                offset,
                len: 0,
                total: self.len,
            });
        }
        // `offset <= len` (checked above).
        #[allow(clippy::arithmetic_side_effects)]
        let rest = self.len - offset;
        Ok((self.window(0, offset)?, self.window(offset, rest)?))
    }

    /// The address of the byte at `offset` from the start of the window.
    ///
    /// ```
    /// use physvec::{PhysAddr, PhysRange, RangeView};
    /// let list = [PhysRange::new(0x100, 8), PhysRange::new(0x200, 8)];
    /// let v = RangeView::full(&list).unwrap();
    /// assert_eq!(v.addr_at(10), Some(PhysAddr::new(0x202)));
    /// ```
    pub fn addr_at(&self, offset: u64) -> Option<Addr<S>> {
        let (i, off) = self.seek(offset)?;
        // `off < len` of segment `i` (what `seek` returns), which ends at or below 2^64.
        #[allow(clippy::arithmetic_side_effects)]
        let addr = self.get(i)?.addr().as_u64() + off;
        Some(Addr::new(addr))
    }

    /// Copies the trimmed segments into `sink`, all or nothing.
    ///
    /// # Errors
    /// Hands back the first range that did not fit; `sink` is restored to its previous
    /// length.
    ///
    /// ```
    /// use physvec::{PhysArray, PhysRange, RangeView};
    /// let list = [PhysRange::new(0x100, 8)];
    /// let mut out = PhysArray::<4>::new();
    /// RangeView::new(&list, 2, 2).unwrap().copy_into(&mut out).unwrap();
    /// assert_eq!(out.as_slice(), [PhysRange::new(0x102, 2)]);
    /// ```
    pub fn copy_into<K: RangeSink<S>>(
        &self,
        sink: &mut K,
    ) -> Result<(), crate::CapacityError<Range<S>>> {
        let before = sink.ranges().len();
        for seg in self.iter() {
            if let Err(e) = sink.push_range(seg) {
                sink.truncate_ranges(before);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Underlying index and offset inside the *untrimmed* range of the byte at `offset`
    /// (`offset < len`).
    ///
    /// The last range needs no special case: for `offset < len` the byte lies before
    /// the trimmed tail, so scanning each range up to its untrimmed end finds it.
    fn locate(&self, offset: u64) -> (usize, u64) {
        let mut remaining = offset;
        for (i, r) in self.ranges.iter().enumerate() {
            let start = if i == 0 { self.head } else { 0 };
            // View invariant: `start < r.len()`.
            #[allow(clippy::arithmetic_side_effects)]
            let seg = r.len() - start;
            if remaining < seg {
                // `start + remaining < r.len()`.
                #[allow(clippy::arithmetic_side_effects)]
                let off = start + remaining;
                return (i, off);
            }
            // `remaining >= seg` (the test above failed).
            #[allow(clippy::arithmetic_side_effects)]
            {
                remaining -= seg;
            }
        }
        // Unreachable for offset < len; return the end of the last range defensively.
        let last = self.ranges.len().saturating_sub(1);
        (last, self.tail.saturating_sub(1))
    }
}

/// Iterator over the trimmed segments of a [`RangeView`].
#[derive(Clone, Debug)]
pub struct ViewIter<'a, S: AddrSpace> {
    view: RangeView<'a, S>,
    front: usize,
    back: usize,
}

impl<S: AddrSpace> Iterator for ViewIter<'_, S> {
    type Item = Range<S>;
    #[inline]
    fn next(&mut self) -> Option<Range<S>> {
        if self.front >= self.back {
            return None;
        }
        let r = self.view.get(self.front);
        // `front < back <= usize::MAX` (checked above).
        #[allow(clippy::arithmetic_side_effects)]
        {
            self.front += 1;
        }
        r
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        // `front <= back`: both only move towards each other while `front < back`.
        #[allow(clippy::arithmetic_side_effects)]
        let n = self.back - self.front;
        (n, Some(n))
    }
}

impl<S: AddrSpace> DoubleEndedIterator for ViewIter<'_, S> {
    fn next_back(&mut self) -> Option<Range<S>> {
        if self.front >= self.back {
            return None;
        }
        // `back > front >= 0` (checked above).
        #[allow(clippy::arithmetic_side_effects)]
        {
            self.back -= 1;
        }
        self.view.get(self.back)
    }
}

impl<S: AddrSpace> ExactSizeIterator for ViewIter<'_, S> {}
impl<S: AddrSpace> core::iter::FusedIterator for ViewIter<'_, S> {}

impl<'a, S: AddrSpace> IntoIterator for RangeView<'a, S> {
    type Item = Range<S>;
    type IntoIter = ViewIter<'a, S>;
    fn into_iter(self) -> ViewIter<'a, S> {
        self.iter()
    }
}

impl<'a, S: AddrSpace> IntoIterator for &RangeView<'a, S> {
    type Item = Range<S>;
    type IntoIter = ViewIter<'a, S>;
    fn into_iter(self) -> ViewIter<'a, S> {
        self.iter()
    }
}

impl<'a, S: AddrSpace> TryFrom<&'a [Range<S>]> for RangeView<'a, S> {
    type Error = ViewError;
    fn try_from(ranges: &'a [Range<S>]) -> Result<Self, ViewError> {
        Self::full(ranges)
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
    use crate::range::PhysRange;

    fn list() -> [PhysRange; 3] {
        [
            PhysRange::new(0x1000, 0x100),
            PhysRange::new(0x5000, 0x200),
            PhysRange::new(0x9000, 0x300),
        ]
    }

    #[test]
    fn windows_trim_virtually() {
        let l = list();
        let v = RangeView::full(&l).unwrap();
        assert_eq!(v.len(), 0x600);
        let w = v.window(0x80, 0x400).unwrap();
        let segs: std::vec::Vec<_> = w.iter().collect();
        assert_eq!(
            segs,
            [
                PhysRange::new(0x1080, 0x80),
                PhysRange::new(0x5000, 0x200),
                PhysRange::new(0x9000, 0x180)
            ]
        );
        let ww = w.window(0x70, 0x20).unwrap();
        let segs: std::vec::Vec<_> = ww.iter().collect();
        assert_eq!(
            segs,
            [PhysRange::new(0x10f0, 0x10), PhysRange::new(0x5000, 0x10)]
        );
        assert_eq!(w.iter().next_back(), Some(PhysRange::new(0x9000, 0x180)));
    }

    #[test]
    fn out_of_bounds_and_overflow() {
        let l = list();
        let v = RangeView::full(&l).unwrap();
        assert!(v.window(u64::MAX, 2).is_err());
        assert!(v.window(0x600, 0).is_ok());
        assert!(v.window(0x601, 0).is_err());
        let big = [PhysRange::new(0, u64::MAX), PhysRange::new(0, 2)];
        assert_eq!(
            RangeView::full(&big),
            Err(ViewError::TotalOverflow { index: 1 })
        );
    }

    #[test]
    fn seek_and_split() {
        let l = list();
        let v = RangeView::full(&l).unwrap();
        assert_eq!(v.seek(0), Some((0, 0)));
        assert_eq!(v.seek(0x100), Some((1, 0)));
        assert_eq!(v.seek(0x5ff), Some((2, 0x2ff)));
        for at in 0..=0x600 {
            let (a, b) = v.split_at(at).unwrap();
            assert_eq!(a.len() + b.len(), 0x600);
            if at < 0x600 {
                assert_eq!(b.addr_at(0), v.addr_at(at));
            }
        }
        assert!(v.split_at(0x601).is_err());
    }
}
