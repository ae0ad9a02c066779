//! Containers of ranges: [`RangeVec`] (inline storage spilling to the heap, `alloc`) and
//! [`RangeArray`] (fixed capacity, never allocates), plus the [`RangeSink`] trait that
//! builders and decoders write into.
//!
//! Both cache the total length in bytes, so [`RangeVec::total_len`] is O(1). Neither
//! offers mutable access to its ranges (which would let the cache go stale); they deref
//! to `&[Range<S>]` for reading.

use core::fmt;
use core::ops::Deref;

use arrayvec::ArrayVec;

use crate::addr::{AddrSpace, Dma, Phys};
use crate::error::{CapacityError, ViewError};
use crate::range::Range;
use crate::view::RangeView;

/// Somewhere ranges can be appended: the output side of builders, mappers and decoders.
///
/// Implemented by [`RangeVec`], [`RangeArray`] and (with `alloc`) `Vec<Range<S>>`.
/// Writers check [`RangeSink::remaining_capacity`] first so that they can reject an
/// input as a whole instead of leaving it half-written.
///
/// ```
/// use physvec::{PhysArray, PhysRange, RangeSink};
/// let mut a: PhysArray<2> = PhysArray::new();
/// assert_eq!(a.remaining_capacity(), 2);
/// a.push_range(PhysRange::new(0, 1)).unwrap();
/// assert_eq!(a.remaining_capacity(), 1);
/// ```
pub trait RangeSink<S: AddrSpace> {
    /// Appends a range, or hands it back when there is no room.
    ///
    /// # Errors
    /// [`CapacityError`] holding the rejected range.
    fn push_range(&mut self, range: Range<S>) -> Result<(), CapacityError<Range<S>>>;

    /// The ranges written so far.
    fn ranges(&self) -> &[Range<S>];

    /// Replaces the last range (used to extend it when coalescing). Does nothing when
    /// the sink is empty.
    fn replace_last(&mut self, range: Range<S>);

    /// How many more ranges fit (`usize::MAX` for growable containers).
    fn remaining_capacity(&self) -> usize;

    /// Removes every range after the first `len`.
    fn truncate_ranges(&mut self, len: usize);
}

/// A fixed-capacity list of at most `N` ranges that never allocates.
///
/// # Invariants
/// Every element satisfies the [`Range`] invariants; `total_len` is the sum of their
/// lengths and fits in `u64`.
///
/// # Examples
/// ```
/// use physvec::{PhysArray, PhysRange};
/// let mut a: PhysArray<4> = PhysArray::new();
/// a.try_push(PhysRange::new(0x1000, 0x1000)).unwrap();
/// a.try_push(PhysRange::new(0x8000, 0x200)).unwrap();
/// assert_eq!(a.total_len(), 0x1200);
/// assert_eq!(a.len(), 2);
/// ```
pub struct RangeArray<S: AddrSpace, const N: usize> {
    ranges: ArrayVec<Range<S>, N>,
    total: u64,
}

/// A fixed-capacity list of physical ranges.
pub type PhysArray<const N: usize> = RangeArray<Phys, N>;
/// A fixed-capacity list of DMA ranges.
pub type DmaArray<const N: usize> = RangeArray<Dma, N>;

impl<S: AddrSpace, const N: usize> RangeArray<S, N> {
    /// An empty array.
    ///
    /// ```
    /// let a = physvec::DmaArray::<8>::new();
    /// assert!(a.is_empty());
    /// ```
    pub const fn new() -> Self {
        Self {
            ranges: ArrayVec::new_const(),
            total: 0,
        }
    }

    /// Appends a range.
    ///
    /// # Errors
    /// [`CapacityError`] with the rejected range when the array is full or the total
    /// length would exceed `u64::MAX`.
    ///
    /// ```
    /// use physvec::{DmaArray, DmaRange};
    /// let mut a = DmaArray::<1>::new();
    /// assert!(a.try_push(DmaRange::new(0, 1)).is_ok());
    /// assert_eq!(a.try_push(DmaRange::new(5, 1)).unwrap_err().element(), DmaRange::new(5, 1));
    /// ```
    pub fn try_push(&mut self, range: Range<S>) -> Result<(), CapacityError<Range<S>>> {
        let Some(total) = self.total.checked_add(range.len()) else {
            return Err(CapacityError::new(range));
        };
        self.ranges
            .try_push(range)
            .map_err(|e| CapacityError::new(e.element()))?;
        self.total = total;
        Ok(())
    }

    /// Appends every range of `ranges`, all or nothing.
    ///
    /// # Errors
    /// [`CapacityError`] holding the first range that did not fit; the array is unchanged.
    ///
    /// ```
    /// use physvec::{DmaArray, DmaRange};
    /// let mut a = DmaArray::<2>::new();
    /// a.try_extend_from_slice(&[DmaRange::new(0, 1), DmaRange::new(8, 1)]).unwrap();
    /// assert!(a.try_extend_from_slice(&[DmaRange::new(16, 1)]).is_err());
    /// assert_eq!(a.len(), 2);
    /// ```
    pub fn try_extend_from_slice(
        &mut self,
        ranges: &[Range<S>],
    ) -> Result<(), CapacityError<Range<S>>> {
        let before = self.len();
        for &r in ranges {
            if let Err(e) = self.try_push(r) {
                self.truncate(before);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Removes and returns the last range.
    ///
    /// ```
    /// use physvec::{DmaArray, DmaRange};
    /// let mut a = DmaArray::<1>::new();
    /// a.try_push(DmaRange::new(0, 1)).unwrap();
    /// assert_eq!(a.pop(), Some(DmaRange::new(0, 1)));
    /// assert_eq!(a.total_len(), 0);
    /// ```
    pub fn pop(&mut self) -> Option<Range<S>> {
        let r = self.ranges.pop()?;
        self.total -= r.len();
        Some(r)
    }

    /// Removes every range.
    ///
    /// ```
    /// let mut a = physvec::DmaArray::<1>::new();
    /// a.clear();
    /// assert!(a.is_empty());
    /// ```
    pub fn clear(&mut self) {
        self.ranges.clear();
        self.total = 0;
    }

    /// Keeps only the first `len` ranges.
    ///
    /// ```
    /// use physvec::{DmaArray, DmaRange};
    /// let mut a = DmaArray::<2>::new();
    /// a.try_push(DmaRange::new(0, 1)).unwrap();
    /// a.try_push(DmaRange::new(9, 1)).unwrap();
    /// a.truncate(1);
    /// assert_eq!(a.len(), 1);
    /// ```
    pub fn truncate(&mut self, len: usize) {
        if len == 0 {
            self.clear();
            return;
        }
        if let Some(tail) = self.ranges.get(len..) {
            // The removed lengths are part of the total: no underflow.
            let removed: u64 = tail.iter().map(|r| r.len()).sum();
            self.total -= removed;
            self.ranges.truncate(len);
        }
    }

    /// Total length of all ranges, in bytes.
    ///
    /// ```
    /// assert_eq!(physvec::DmaArray::<2>::new().total_len(), 0);
    /// ```
    pub const fn total_len(&self) -> u64 {
        self.total
    }

    /// The capacity `N`, in ranges.
    ///
    /// ```
    /// assert_eq!(physvec::DmaArray::<2>::new().capacity(), 2);
    /// ```
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Whether no more ranges fit.
    ///
    /// ```
    /// assert!(physvec::DmaArray::<0>::new().is_full());
    /// ```
    pub fn is_full(&self) -> bool {
        self.ranges.is_full()
    }

    /// The ranges as a slice.
    ///
    /// ```
    /// assert!(physvec::DmaArray::<2>::new().as_slice().is_empty());
    /// ```
    pub fn as_slice(&self) -> &[Range<S>] {
        &self.ranges
    }

    /// A zero-copy view over all bytes of the array.
    ///
    /// ```
    /// use physvec::{PhysArray, PhysRange};
    /// let mut a = PhysArray::<2>::new();
    /// a.try_push(PhysRange::new(0x1000, 0x100)).unwrap();
    /// assert_eq!(a.view().len(), 0x100);
    /// ```
    pub fn view(&self) -> RangeView<'_, S> {
        RangeView::from_parts_unchecked_total(&self.ranges, self.total)
    }

    /// A zero-copy view over `[offset, offset + len)` bytes of the array.
    ///
    /// # Errors
    /// [`ViewError::OutOfBounds`] when the window does not fit.
    ///
    /// ```
    /// use physvec::{PhysArray, PhysRange};
    /// let mut a = PhysArray::<2>::new();
    /// a.try_push(PhysRange::new(0x1000, 0x100)).unwrap();
    /// let v = a.window(0x10, 0x20).unwrap();
    /// assert_eq!(v.iter().next(), Some(PhysRange::new(0x1010, 0x20)));
    /// ```
    pub fn window(&self, offset: u64, len: u64) -> Result<RangeView<'_, S>, ViewError> {
        self.view().window(offset, len)
    }
}

impl<S: AddrSpace, const N: usize> Default for RangeArray<S, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: AddrSpace, const N: usize> Clone for RangeArray<S, N> {
    fn clone(&self) -> Self {
        Self {
            ranges: self.ranges.clone(),
            total: self.total,
        }
    }
}

impl<S: AddrSpace, const N: usize> PartialEq for RangeArray<S, N> {
    fn eq(&self, other: &Self) -> bool {
        self.ranges == other.ranges
    }
}
impl<S: AddrSpace, const N: usize> Eq for RangeArray<S, N> {}

impl<S: AddrSpace, const N: usize> Deref for RangeArray<S, N> {
    type Target = [Range<S>];
    fn deref(&self) -> &[Range<S>] {
        &self.ranges
    }
}

impl<S: AddrSpace, const N: usize> AsRef<[Range<S>]> for RangeArray<S, N> {
    fn as_ref(&self) -> &[Range<S>] {
        &self.ranges
    }
}

impl<S: AddrSpace, const N: usize> fmt::Debug for RangeArray<S, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_list(f, &self.ranges, self.total)
    }
}

impl<'a, S: AddrSpace, const N: usize> IntoIterator for &'a RangeArray<S, N> {
    type Item = &'a Range<S>;
    type IntoIter = core::slice::Iter<'a, Range<S>>;
    fn into_iter(self) -> Self::IntoIter {
        self.ranges.iter()
    }
}

impl<S: AddrSpace, const N: usize> IntoIterator for RangeArray<S, N> {
    type Item = Range<S>;
    type IntoIter = arrayvec::IntoIter<Range<S>, N>;
    fn into_iter(self) -> Self::IntoIter {
        self.ranges.into_iter()
    }
}

/// # Panics
/// When the array overflows its capacity or its total length; use
/// [`RangeArray::try_push`] to handle that.
impl<S: AddrSpace, const N: usize> Extend<Range<S>> for RangeArray<S, N> {
    #[track_caller]
    fn extend<I: IntoIterator<Item = Range<S>>>(&mut self, iter: I) {
        for r in iter {
            if self.try_push(r).is_err() {
                panic!("RangeArray capacity {N} exceeded");
            }
        }
    }
}

/// # Panics
/// As the `Extend` impl.
impl<S: AddrSpace, const N: usize> FromIterator<Range<S>> for RangeArray<S, N> {
    #[track_caller]
    fn from_iter<I: IntoIterator<Item = Range<S>>>(iter: I) -> Self {
        let mut a = Self::new();
        a.extend(iter);
        a
    }
}

impl<S: AddrSpace, const N: usize> TryFrom<&[Range<S>]> for RangeArray<S, N> {
    type Error = CapacityError<Range<S>>;
    /// ```
    /// use physvec::{PhysArray, PhysRange};
    /// let a = PhysArray::<2>::try_from(&[PhysRange::new(0, 1)][..]).unwrap();
    /// assert_eq!(a.len(), 1);
    /// ```
    fn try_from(ranges: &[Range<S>]) -> Result<Self, Self::Error> {
        let mut a = Self::new();
        a.try_extend_from_slice(ranges)?;
        Ok(a)
    }
}

/// A borrowed sink: lets a caller keep its container in place (for example in
/// per-request storage) instead of moving it into a builder or a mapping and back.
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
    fn push_range(&mut self, range: Range<S>) -> Result<(), CapacityError<Range<S>>> {
        (**self).push_range(range)
    }
    fn ranges(&self) -> &[Range<S>] {
        (**self).ranges()
    }
    fn replace_last(&mut self, range: Range<S>) {
        (**self).replace_last(range)
    }
    fn remaining_capacity(&self) -> usize {
        (**self).remaining_capacity()
    }
    fn truncate_ranges(&mut self, len: usize) {
        (**self).truncate_ranges(len)
    }
}

impl<S: AddrSpace, const N: usize> RangeSink<S> for RangeArray<S, N> {
    fn push_range(&mut self, range: Range<S>) -> Result<(), CapacityError<Range<S>>> {
        self.try_push(range)
    }
    fn ranges(&self) -> &[Range<S>] {
        &self.ranges
    }
    fn replace_last(&mut self, range: Range<S>) {
        if let Some(last) = self.ranges.last_mut() {
            self.total = self.total - last.len() + range.len();
            *last = range;
        }
    }
    fn remaining_capacity(&self) -> usize {
        self.ranges.remaining_capacity()
    }
    fn truncate_ranges(&mut self, len: usize) {
        self.truncate(len)
    }
}

fn debug_list<S: AddrSpace>(
    f: &mut fmt::Formatter<'_>,
    ranges: &[Range<S>],
    total: u64,
) -> fmt::Result {
    write!(f, "[{} segs, {:#x} bytes] ", ranges.len(), total)?;
    f.debug_list().entries(ranges.iter()).finish()
}

#[cfg(feature = "alloc")]
pub use self::heap::*;

#[cfg(feature = "alloc")]
mod heap {
    use super::*;
    use crate::error::TotalLenOverflow;
    use smallvec::SmallVec;

    /// A list of ranges stored inline up to `N` entries, spilling to the heap beyond.
    ///
    /// The default inline capacity (8 ranges, 128 bytes) covers most block I/O, so the
    /// common path never touches the allocator.
    ///
    /// # Invariants
    /// Every element satisfies the [`Range`] invariants; `total_len` is the sum of their
    /// lengths and fits in `u64`.
    ///
    /// # Examples
    /// ```
    /// use physvec::{PhysRange, PhysVec};
    /// let v: PhysVec = [PhysRange::new(0x1000, 0x1000), PhysRange::new(0x5000, 0x800)]
    ///     .into_iter()
    ///     .collect();
    /// assert_eq!(v.total_len(), 0x1800);
    /// assert!(!v.spilled());
    /// assert_eq!(format!("{v:?}"), "[2 segs, 0x1800 bytes] [phys:[0x1000+0x1000], phys:[0x5000+0x800]]");
    /// ```
    pub struct RangeVec<S: AddrSpace, const N: usize = 8> {
        ranges: SmallVec<[Range<S>; N]>,
        total: u64,
    }

    /// Physical ranges with inline storage for 8 entries (use `RangeVec<Phys, N>` for
    /// another inline capacity).
    pub type PhysVec = RangeVec<Phys, 8>;
    /// DMA ranges with inline storage for 8 entries (use `RangeVec<Dma, N>` for another
    /// inline capacity).
    pub type DmaVec = RangeVec<Dma, 8>;

    impl<S: AddrSpace, const N: usize> RangeVec<S, N> {
        /// An empty list; does not allocate.
        ///
        /// ```
        /// let v = physvec::PhysVec::new();
        /// assert!(v.is_empty() && !v.spilled());
        /// ```
        pub const fn new() -> Self {
            Self {
                ranges: SmallVec::new_const(),
                total: 0,
            }
        }

        /// An empty list with room for `cap` ranges (allocates when `cap > N`).
        ///
        /// ```
        /// let v = physvec::RangeVec::<physvec::Phys, 2>::with_capacity(100);
        /// assert!(v.capacity() >= 100);
        /// ```
        pub fn with_capacity(cap: usize) -> Self {
            Self {
                ranges: SmallVec::with_capacity(cap),
                total: 0,
            }
        }

        /// Builds a list from a slice, checking that the total fits in `u64`.
        ///
        /// # Errors
        /// [`TotalLenOverflow`] when the lengths add up to more than `u64::MAX`.
        ///
        /// ```
        /// use physvec::{PhysRange, PhysVec};
        /// let v = physvec::RangeVec::<physvec::Phys, 4>::try_from_slice(&[PhysRange::new(0, 4)]).unwrap();
        /// assert_eq!(v.total_len(), 4);
        /// ```
        pub fn try_from_slice(ranges: &[Range<S>]) -> Result<Self, TotalLenOverflow> {
            let mut v = Self::with_capacity(ranges.len());
            for &r in ranges {
                v.try_push(r)?;
            }
            Ok(v)
        }

        /// Appends a range.
        ///
        /// # Panics
        /// If the total length would exceed `u64::MAX`; see [`RangeVec::try_push`].
        ///
        /// ```
        /// use physvec::{PhysRange, PhysVec};
        /// let mut v = physvec::RangeVec::<physvec::Phys, 4>::new();
        /// v.push(PhysRange::new(0x1000, 0x10));
        /// assert_eq!(v.len(), 1);
        /// ```
        #[track_caller]
        pub fn push(&mut self, range: Range<S>) {
            if let Err(e) = self.try_push(range) {
                panic!("{e}");
            }
        }

        /// Appends a range unless the total length would exceed `u64::MAX`.
        ///
        /// # Errors
        /// [`TotalLenOverflow`]; the list is unchanged.
        ///
        /// ```
        /// use physvec::{PhysRange, PhysVec};
        /// let mut v = physvec::RangeVec::<physvec::Phys, 4>::new();
        /// v.try_push(PhysRange::new(0, u64::MAX)).unwrap();
        /// assert!(v.try_push(PhysRange::new(0, 1)).is_err());
        /// ```
        pub fn try_push(&mut self, range: Range<S>) -> Result<(), TotalLenOverflow> {
            let total = self
                .total
                .checked_add(range.len())
                .ok_or(TotalLenOverflow {
                    total: self.total,
                    len: range.len(),
                })?;
            self.ranges.push(range);
            self.total = total;
            Ok(())
        }

        /// Removes and returns the last range.
        ///
        /// ```
        /// use physvec::{PhysRange, PhysVec};
        /// let mut v: PhysVec = [PhysRange::new(0, 4)].into_iter().collect();
        /// assert_eq!(v.pop(), Some(PhysRange::new(0, 4)));
        /// assert_eq!(v.pop(), None);
        /// ```
        pub fn pop(&mut self) -> Option<Range<S>> {
            let r = self.ranges.pop()?;
            self.total -= r.len();
            Some(r)
        }

        /// Keeps only the first `len` ranges.
        ///
        /// ```
        /// use physvec::{PhysRange, PhysVec};
        /// let mut v: PhysVec = [PhysRange::new(0, 4), PhysRange::new(8, 4)].into_iter().collect();
        /// v.truncate(1);
        /// assert_eq!(v.total_len(), 4);
        /// ```
        pub fn truncate(&mut self, len: usize) {
            if len == 0 {
                self.clear();
                return;
            }
            if let Some(tail) = self.ranges.get(len..) {
                // The removed lengths are part of the total: no underflow.
                let removed: u64 = tail.iter().map(|r| r.len()).sum();
                self.total -= removed;
                self.ranges.truncate(len);
            }
        }

        /// Removes every range, keeping the storage.
        ///
        /// ```
        /// let mut v = physvec::RangeVec::<physvec::Phys, 4>::new();
        /// v.clear();
        /// assert_eq!(v.total_len(), 0);
        /// ```
        pub fn clear(&mut self) {
            self.ranges.clear();
            self.total = 0;
        }

        /// Total length of all ranges, in bytes (cached, O(1)).
        ///
        /// ```
        /// assert_eq!(physvec::RangeVec::<physvec::Phys, 4>::new().total_len(), 0);
        /// ```
        pub const fn total_len(&self) -> u64 {
            self.total
        }

        /// Current capacity, in ranges.
        ///
        /// ```
        /// assert_eq!(physvec::RangeVec::<physvec::Phys, 4>::new().capacity(), 4);
        /// ```
        pub fn capacity(&self) -> usize {
            self.ranges.capacity()
        }

        /// Whether the ranges moved from inline storage to the heap.
        ///
        /// ```
        /// use physvec::{PhysRange, PhysVec};
        /// let mut v = physvec::RangeVec::<physvec::Phys, 1>::new();
        /// v.push(PhysRange::new(0, 1));
        /// assert!(!v.spilled());
        /// v.push(PhysRange::new(9, 1));
        /// assert!(v.spilled());
        /// ```
        pub fn spilled(&self) -> bool {
            self.ranges.spilled()
        }

        /// The ranges as a slice.
        ///
        /// ```
        /// assert!(physvec::RangeVec::<physvec::Phys, 4>::new().as_slice().is_empty());
        /// ```
        pub fn as_slice(&self) -> &[Range<S>] {
            &self.ranges
        }

        /// A zero-copy view over all bytes of the list.
        ///
        /// ```
        /// use physvec::{PhysRange, PhysVec};
        /// let v: PhysVec = [PhysRange::new(0x1000, 0x100)].into_iter().collect();
        /// assert_eq!(v.view().len(), 0x100);
        /// ```
        pub fn view(&self) -> RangeView<'_, S> {
            RangeView::from_parts_unchecked_total(&self.ranges, self.total)
        }

        /// A zero-copy view over `[offset, offset + len)` bytes of the list.
        ///
        /// # Errors
        /// [`ViewError::OutOfBounds`] when the window does not fit.
        ///
        /// ```
        /// use physvec::{PhysRange, PhysVec};
        /// let v: PhysVec = [PhysRange::new(0x1000, 0x100), PhysRange::new(0x3000, 0x100)]
        ///     .into_iter()
        ///     .collect();
        /// let w = v.window(0xf0, 0x20).unwrap();
        /// assert_eq!(w.segment_count(), 2);
        /// ```
        pub fn window(&self, offset: u64, len: u64) -> Result<RangeView<'_, S>, ViewError> {
            self.view().window(offset, len)
        }
    }

    impl<S: AddrSpace, const N: usize> Default for RangeVec<S, N> {
        fn default() -> Self {
            Self::new()
        }
    }

    impl<S: AddrSpace, const N: usize> Clone for RangeVec<S, N> {
        fn clone(&self) -> Self {
            Self {
                ranges: self.ranges.clone(),
                total: self.total,
            }
        }
    }

    impl<S: AddrSpace, const N: usize> PartialEq for RangeVec<S, N> {
        fn eq(&self, other: &Self) -> bool {
            self.ranges[..] == other.ranges[..]
        }
    }
    impl<S: AddrSpace, const N: usize> Eq for RangeVec<S, N> {}

    impl<S: AddrSpace, const N: usize> Deref for RangeVec<S, N> {
        type Target = [Range<S>];
        fn deref(&self) -> &[Range<S>] {
            &self.ranges
        }
    }

    impl<S: AddrSpace, const N: usize> AsRef<[Range<S>]> for RangeVec<S, N> {
        fn as_ref(&self) -> &[Range<S>] {
            &self.ranges
        }
    }

    impl<S: AddrSpace, const N: usize> fmt::Debug for RangeVec<S, N> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            debug_list(f, &self.ranges, self.total)
        }
    }

    /// # Panics
    /// If the total length would exceed `u64::MAX`.
    impl<S: AddrSpace, const N: usize> Extend<Range<S>> for RangeVec<S, N> {
        fn extend<I: IntoIterator<Item = Range<S>>>(&mut self, iter: I) {
            for r in iter {
                self.push(r);
            }
        }
    }

    /// # Panics
    /// If the total length would exceed `u64::MAX`.
    impl<S: AddrSpace, const N: usize> FromIterator<Range<S>> for RangeVec<S, N> {
        fn from_iter<I: IntoIterator<Item = Range<S>>>(iter: I) -> Self {
            let mut v = Self::new();
            v.extend(iter);
            v
        }
    }

    impl<'a, S: AddrSpace, const N: usize> IntoIterator for &'a RangeVec<S, N> {
        type Item = &'a Range<S>;
        type IntoIter = core::slice::Iter<'a, Range<S>>;
        fn into_iter(self) -> Self::IntoIter {
            self.ranges.iter()
        }
    }

    impl<S: AddrSpace, const N: usize> IntoIterator for RangeVec<S, N> {
        type Item = Range<S>;
        type IntoIter = smallvec::IntoIter<[Range<S>; N]>;
        fn into_iter(self) -> Self::IntoIter {
            self.ranges.into_iter()
        }
    }

    impl<S: AddrSpace, const N: usize> RangeSink<S> for RangeVec<S, N> {
        fn push_range(&mut self, range: Range<S>) -> Result<(), CapacityError<Range<S>>> {
            self.try_push(range).map_err(|_| CapacityError::new(range))
        }
        fn ranges(&self) -> &[Range<S>] {
            &self.ranges
        }
        fn replace_last(&mut self, range: Range<S>) {
            if let Some(last) = self.ranges.last_mut() {
                self.total = self.total - last.len() + range.len();
                *last = range;
            }
        }
        fn remaining_capacity(&self) -> usize {
            usize::MAX
        }
        fn truncate_ranges(&mut self, len: usize) {
            self.truncate(len)
        }
    }

    impl<S: AddrSpace> RangeSink<S> for alloc::vec::Vec<Range<S>> {
        fn push_range(&mut self, range: Range<S>) -> Result<(), CapacityError<Range<S>>> {
            self.push(range);
            Ok(())
        }
        fn ranges(&self) -> &[Range<S>] {
            self
        }
        fn replace_last(&mut self, range: Range<S>) {
            if let Some(last) = self.last_mut() {
                *last = range;
            }
        }
        fn remaining_capacity(&self) -> usize {
            usize::MAX
        }
        fn truncate_ranges(&mut self, len: usize) {
            self.truncate(len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::range::PhysRange;

    #[test]
    fn array_rejects_and_returns() {
        let mut a = PhysArray::<2>::new();
        a.try_push(PhysRange::new(0, 10)).unwrap();
        a.try_push(PhysRange::new(20, 10)).unwrap();
        let e = a.try_push(PhysRange::new(40, 10)).unwrap_err();
        assert_eq!(e.element(), PhysRange::new(40, 10));
        assert_eq!(a.total_len(), 20);
        a.replace_last(PhysRange::new(20, 30));
        assert_eq!(a.total_len(), 40);
        a.truncate(0);
        assert_eq!(a.total_len(), 0);
    }

    #[test]
    fn array_total_overflow_is_rejected() {
        let mut a = PhysArray::<4>::new();
        a.try_push(PhysRange::new(0, u64::MAX)).unwrap();
        assert!(a.try_push(PhysRange::new(0, 1)).is_err());
        assert_eq!(a.len(), 1);
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn vec_spills_and_keeps_total() {
        let mut v = RangeVec::<crate::Phys, 2>::new();
        for i in 0..10u64 {
            v.push(PhysRange::new(i * 0x2000, 0x1000));
        }
        assert!(v.spilled());
        assert_eq!(v.total_len(), 10 * 0x1000);
        assert_eq!(v.len(), 10);
        let w: RangeVec<crate::Phys, 2> = v.clone().into_iter().collect();
        assert_eq!(w, v);
        v.truncate(3);
        assert_eq!(v.total_len(), 3 * 0x1000);
    }
}
