//! Containers of ranges: one list type, [`RangeList`], over two storages.
//!
//! - [`RangeArray`] (`PhysArray`, `DmaArray`): fixed capacity `N` in an
//!   [`arrayvec::ArrayVec`], never allocates.
//! - [`RangeVec`] (`PhysVec`, `DmaVec`; `alloc`): `N` ranges inline in a
//!   [`smallvec::SmallVec`], spilling to the heap beyond.
//!
//! Both cache the total length in bytes, so `total_len()` is O(1). Neither offers
//! mutable access to its ranges (which would let the cache go stale); they deref to
//! `&[Range<S>]` for reading and are [`RangeSink`]s for writing.
//!
//! # Invariants
//! Every element satisfies the [`Range`] invariants (the type guarantees it) and the
//! cached total is the sum of their lengths, which fits in `u64`: every operation that
//! would break that is refused with the list unchanged.

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
use core::marker::PhantomData;
use core::ops::Deref;

use arrayvec::ArrayVec;

use crate::addr::{AddrSpace, Dma, Phys};
use crate::error::{CapacityError, ViewError};
use crate::range::Range;
use crate::sink::RangeSink;
use crate::view::RangeView;

mod storage {
    /// Keeps [`Storage`](super::Storage) implementable only here.
    pub trait Sealed {}
}

/// The backing store of a [`RangeList`]: `ArrayVec` (fixed capacity) or, with `alloc`,
/// `SmallVec` (inline, then heap). Sealed: not implementable outside the crate.
pub trait Storage<S: AddrSpace>:
    storage::Sealed + Deref<Target = [Range<S>]> + Default + Clone + IntoIterator<Item = Range<S>>
{
    /// Appends, or hands the range back when there is no slot.
    #[doc(hidden)]
    fn try_push_slot(&mut self, range: Range<S>) -> Result<(), Range<S>>;
    /// The last slot, for coalescing.
    #[doc(hidden)]
    fn last_slot(&mut self) -> Option<&mut Range<S>>;
    /// Removes the last slot.
    #[doc(hidden)]
    fn pop_slot(&mut self) -> Option<Range<S>>;
    /// Keeps the first `len` slots.
    #[doc(hidden)]
    fn truncate_slots(&mut self, len: usize);
    /// How many more slots are guaranteed (`usize::MAX` when growable).
    #[doc(hidden)]
    fn free_slots(&self) -> usize;
}

impl<S: AddrSpace, const N: usize> storage::Sealed for ArrayVec<Range<S>, N> {}
impl<S: AddrSpace, const N: usize> Storage<S> for ArrayVec<Range<S>, N> {
    #[inline]
    fn try_push_slot(&mut self, range: Range<S>) -> Result<(), Range<S>> {
        self.try_push(range).map_err(|e| e.element())
    }
    #[inline]
    fn last_slot(&mut self) -> Option<&mut Range<S>> {
        self.last_mut()
    }
    #[inline]
    fn pop_slot(&mut self) -> Option<Range<S>> {
        self.pop()
    }
    #[inline]
    fn truncate_slots(&mut self, len: usize) {
        self.truncate(len)
    }
    #[inline]
    fn free_slots(&self) -> usize {
        self.remaining_capacity()
    }
}

/// A list of ranges with a cached total length, over storage `B`.
///
/// Use the aliases: [`RangeArray`] / [`PhysArray`] / [`DmaArray`] (fixed capacity) and
/// [`RangeVec`] / `PhysVec` / `DmaVec` (inline then heap, `alloc`).
///
/// # Invariants
/// Every element is a valid [`Range`]; `total_len()` is the sum of their lengths and
/// fits in `u64`.
///
/// # Examples
/// ```
/// use physvec::{PhysArray, PhysRange};
/// let mut a: PhysArray<4> = PhysArray::new();
/// a.try_push(PhysRange::new(0x1000, 0x1000)).unwrap();
/// a.push_coalesced(PhysRange::new(0x2000, 0x1000)).unwrap(); // merges with the tail
/// a.try_push(PhysRange::new(0x8000, 0x200)).unwrap();
/// assert_eq!(a.total_len(), 0x2200);
/// assert_eq!(a.len(), 2);
/// ```
pub struct RangeList<S: AddrSpace, B: Storage<S>> {
    ranges: B,
    total: u64,
    _space: PhantomData<S>,
}

/// A fixed-capacity list of at most `N` ranges that never allocates.
///
/// ```
/// let a = physvec::RangeArray::<physvec::Dma, 8>::new();
/// assert_eq!(a.capacity(), 8);
/// ```
pub type RangeArray<S, const N: usize> = RangeList<S, ArrayVec<Range<S>, N>>;
/// A fixed-capacity list of physical ranges.
pub type PhysArray<const N: usize> = RangeArray<Phys, N>;
/// A fixed-capacity list of DMA ranges.
pub type DmaArray<const N: usize> = RangeArray<Dma, N>;

impl<S: AddrSpace, B: Storage<S>> RangeList<S, B> {
    /// Appends a range.
    ///
    /// # Errors
    /// [`CapacityError`] with the rejected range when there is no slot left or the
    /// total length would exceed `u64::MAX`; the list is unchanged.
    ///
    /// ```
    /// use physvec::{DmaArray, DmaRange};
    /// let mut a = DmaArray::<1>::new();
    /// assert!(a.try_push(DmaRange::new(0, 1)).is_ok());
    /// assert_eq!(a.try_push(DmaRange::new(5, 1)).unwrap_err().element(), DmaRange::new(5, 1));
    /// ```
    #[inline]
    pub fn try_push(&mut self, range: Range<S>) -> Result<(), CapacityError<Range<S>>> {
        let Some(total) = self.total.checked_add(range.len()) else {
            return Err(CapacityError::new(range));
        };
        self.ranges
            .try_push_slot(range)
            .map_err(CapacityError::new)?;
        self.total = total;
        Ok(())
    }

    /// Appends a range, merged into the last one when they are contiguous (the
    /// coalescing push a driver uses while collecting the pages of a buffer).
    ///
    /// # Errors
    /// As [`RangeList::try_push`]; the list is unchanged.
    ///
    /// ```
    /// use physvec::{DmaArray, DmaRange};
    /// let mut a = DmaArray::<1>::new();
    /// a.push_coalesced(DmaRange::new(0x1000, 0x1000)).unwrap();
    /// a.push_coalesced(DmaRange::new(0x2000, 0x1000)).unwrap();
    /// assert_eq!(a.as_slice(), [DmaRange::new(0x1000, 0x2000)]);
    /// assert!(a.push_coalesced(DmaRange::new(0x8000, 1)).is_err()); // full
    /// ```
    #[inline]
    pub fn push_coalesced(&mut self, range: Range<S>) -> Result<(), CapacityError<Range<S>>> {
        match self.ranges.last().and_then(|l| l.merge(range)) {
            Some(merged) => self
                .replace_last(merged)
                .map_err(|_| CapacityError::new(range)),
            None => self.try_push(range),
        }
    }

    /// Appends every range of `ranges`, all or nothing.
    ///
    /// # Errors
    /// [`CapacityError`] holding the first range that did not fit; the list is unchanged.
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
        let r = self.ranges.pop_slot()?;
        // `r.len()` is part of the total: no underflow.
        self.total = self.total.saturating_sub(r.len());
        Some(r)
    }

    /// Removes every range, keeping the storage.
    ///
    /// ```
    /// let mut a = physvec::DmaArray::<1>::new();
    /// a.clear();
    /// assert!(a.is_empty());
    /// ```
    pub fn clear(&mut self) {
        self.ranges.truncate_slots(0);
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
    /// assert_eq!((a.len(), a.total_len()), (1, 1));
    /// ```
    pub fn truncate(&mut self, len: usize) {
        if len == 0 {
            self.clear();
            return;
        }
        if let Some(tail) = self.ranges.get(len..) {
            // The removed lengths are part of the total: neither sum can overflow.
            let removed = tail.iter().fold(0u64, |a, r| a.saturating_add(r.len()));
            self.total = self.total.saturating_sub(removed);
            self.ranges.truncate_slots(len);
        }
    }

    /// Total length of all ranges, in bytes (cached, O(1)).
    ///
    /// ```
    /// assert_eq!(physvec::DmaArray::<2>::new().total_len(), 0);
    /// ```
    #[inline]
    pub const fn total_len(&self) -> u64 {
        self.total
    }

    /// The ranges as a slice.
    ///
    /// ```
    /// assert!(physvec::DmaArray::<2>::new().as_slice().is_empty());
    /// ```
    #[inline]
    pub fn as_slice(&self) -> &[Range<S>] {
        &self.ranges
    }

    /// A zero-copy view over all bytes of the list.
    ///
    /// ```
    /// use physvec::{PhysArray, PhysRange};
    /// let mut a = PhysArray::<2>::new();
    /// a.try_push(PhysRange::new(0x1000, 0x100)).unwrap();
    /// assert_eq!(a.view().len(), 0x100);
    /// ```
    #[inline]
    pub fn view(&self) -> RangeView<'_, S> {
        RangeView::from_parts_unchecked_total(&self.ranges, self.total)
    }

    /// A zero-copy view over `[offset, offset + len)` bytes of the list.
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
            _space: PhantomData,
        }
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
}

impl<S: AddrSpace, B: Storage<S>> Default for RangeList<S, B> {
    fn default() -> Self {
        Self {
            ranges: B::default(),
            total: 0,
            _space: PhantomData,
        }
    }
}

impl<S: AddrSpace, B: Storage<S>> Clone for RangeList<S, B> {
    fn clone(&self) -> Self {
        Self {
            ranges: self.ranges.clone(),
            total: self.total,
            _space: PhantomData,
        }
    }
}

impl<S: AddrSpace, B: Storage<S>> PartialEq for RangeList<S, B> {
    fn eq(&self, other: &Self) -> bool {
        self.ranges[..] == other.ranges[..]
    }
}
impl<S: AddrSpace, B: Storage<S>> Eq for RangeList<S, B> {}

impl<S: AddrSpace, B: Storage<S>> Deref for RangeList<S, B> {
    type Target = [Range<S>];
    #[inline]
    fn deref(&self) -> &[Range<S>] {
        &self.ranges
    }
}

impl<S: AddrSpace, B: Storage<S>> AsRef<[Range<S>]> for RangeList<S, B> {
    fn as_ref(&self) -> &[Range<S>] {
        &self.ranges
    }
}

/// `[2 segs, 0x1100 bytes] [phys:[0x1000+0x1000], phys:[0x8000+0x100]]`: counts and
/// every address and length in hex.
impl<S: AddrSpace, B: Storage<S>> fmt::Debug for RangeList<S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{} segs, {:#x} bytes] ", self.ranges.len(), self.total)?;
        f.debug_list().entries(self.ranges.iter()).finish()
    }
}

/// One line: `2 segments, 4352 B: 0x1000..0x2000, 0x8000..0x8100`.
///
/// ```
/// use physvec::{PhysArray, PhysRange};
/// let mut a = PhysArray::<2>::new();
/// a.try_push(PhysRange::new(0x1000, 0x1000)).unwrap();
/// a.try_push(PhysRange::new(0x8000, 0xf0)).unwrap();
/// assert_eq!(a.to_string(), "2 segments, 4336 B: 0x1000..0x2000, 0x8000..0x80f0");
/// ```
impl<S: AddrSpace, B: Storage<S>> fmt::Display for RangeList<S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.ranges.len();
        write!(
            f,
            "{n} segment{}, {} B",
            if n == 1 { "" } else { "s" },
            self.total
        )?;
        for (i, r) in self.ranges.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { ", " })?;
            // Two values below 2^64 summed in u128.
            #[allow(clippy::arithmetic_side_effects)]
            let end = u128::from(r.addr().as_u64()) + u128::from(r.len());
            write!(f, "{:#x}..{end:#x}", r.addr().as_u64())?;
        }
        Ok(())
    }
}

impl<'a, S: AddrSpace, B: Storage<S>> IntoIterator for &'a RangeList<S, B> {
    type Item = &'a Range<S>;
    type IntoIter = core::slice::Iter<'a, Range<S>>;
    fn into_iter(self) -> Self::IntoIter {
        self.ranges.iter()
    }
}

impl<S: AddrSpace, B: Storage<S>> IntoIterator for RangeList<S, B> {
    type Item = Range<S>;
    type IntoIter = B::IntoIter;
    fn into_iter(self) -> Self::IntoIter {
        self.ranges.into_iter()
    }
}

/// # Panics
/// When the list runs out of slots or its total length would exceed `u64::MAX`; use
/// [`RangeList::try_push`] to handle that.
impl<S: AddrSpace, B: Storage<S>> Extend<Range<S>> for RangeList<S, B> {
    #[track_caller]
    fn extend<I: IntoIterator<Item = Range<S>>>(&mut self, iter: I) {
        for r in iter {
            if let Err(e) = self.try_push(r) {
                // Documented: `Extend` cannot return an error.
                #[allow(clippy::panic)]
                {
                    panic!("cannot append {:?}: {e}", e.element());
                }
            }
        }
    }
}

/// # Panics
/// As the `Extend` impl.
impl<S: AddrSpace, B: Storage<S>> FromIterator<Range<S>> for RangeList<S, B> {
    #[track_caller]
    fn from_iter<I: IntoIterator<Item = Range<S>>>(iter: I) -> Self {
        let mut v = Self::default();
        v.extend(iter);
        v
    }
}

/// All or nothing: fails when the slice does not fit (slots or total length).
///
/// ```
/// use physvec::{DmaArray, DmaRange};
/// let list = [DmaRange::new(0, 1), DmaRange::new(8, 1)];
/// assert!(DmaArray::<2>::try_from(&list[..]).is_ok());
/// assert!(DmaArray::<1>::try_from(&list[..]).is_err());
/// ```
impl<S: AddrSpace, B: Storage<S>> TryFrom<&[Range<S>]> for RangeList<S, B> {
    type Error = CapacityError<Range<S>>;

    fn try_from(ranges: &[Range<S>]) -> Result<Self, Self::Error> {
        let mut v = Self::default();
        v.try_extend_from_slice(ranges)?;
        Ok(v)
    }
}

impl<S: AddrSpace, B: Storage<S>> RangeSink<S> for RangeList<S, B> {
    #[inline]
    fn push_range(&mut self, range: Range<S>) -> Result<(), CapacityError<Range<S>>> {
        self.try_push(range)
    }
    #[inline]
    fn ranges(&self) -> &[Range<S>] {
        &self.ranges
    }
    #[inline]
    fn replace_last(&mut self, range: Range<S>) -> Result<(), CapacityError<Range<S>>> {
        let total = self.total;
        let Some(last) = self.ranges.last_slot() else {
            return Err(CapacityError::new(range));
        };
        // `last.len()` is part of the total, so the subtraction cannot underflow; the
        // addition is checked (the overflow a release build used to wrap).
        let Some(total) = total
            .checked_sub(last.len())
            .and_then(|t| t.checked_add(range.len()))
        else {
            return Err(CapacityError::new(range));
        };
        *last = range;
        self.total = total;
        Ok(())
    }
    #[inline]
    fn remaining_capacity(&self) -> usize {
        self.ranges.free_slots()
    }
    #[inline]
    fn truncate_ranges(&mut self, len: usize) {
        self.truncate(len)
    }
}

#[cfg(feature = "alloc")]
pub use self::heap::*;

#[cfg(feature = "alloc")]
mod heap {
    use super::*;
    use crate::error::TotalLenOverflow;
    use smallvec::SmallVec;

    impl<S: AddrSpace, const N: usize> storage::Sealed for SmallVec<[Range<S>; N]> {}
    impl<S: AddrSpace, const N: usize> Storage<S> for SmallVec<[Range<S>; N]> {
        #[inline]
        fn try_push_slot(&mut self, range: Range<S>) -> Result<(), Range<S>> {
            self.push(range);
            Ok(())
        }
        #[inline]
        fn last_slot(&mut self) -> Option<&mut Range<S>> {
            self.last_mut()
        }
        #[inline]
        fn pop_slot(&mut self) -> Option<Range<S>> {
            self.pop()
        }
        #[inline]
        fn truncate_slots(&mut self, len: usize) {
            self.truncate(len)
        }
        #[inline]
        fn free_slots(&self) -> usize {
            usize::MAX
        }
    }

    /// A list of ranges stored inline up to `N` entries, spilling to the heap beyond.
    ///
    /// ```
    /// use physvec::{PhysRange, PhysVec};
    /// let mut v = PhysVec::new();
    /// v.push(PhysRange::new(0x1000, 0x1000));
    /// v.push(PhysRange::new(0x3000, 0x1000));
    /// assert_eq!((v.len(), v.total_len()), (2, 0x2000));
    /// ```
    pub type RangeVec<S, const N: usize = 8> = RangeList<S, SmallVec<[Range<S>; N]>>;
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
                _space: PhantomData,
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
                _space: PhantomData,
            }
        }

        /// Builds a list from a slice, checking that the total fits in `u64`.
        ///
        /// # Errors
        /// [`TotalLenOverflow`] when the lengths add up to more than `u64::MAX`.
        ///
        /// ```
        /// use physvec::PhysRange;
        /// let v = physvec::RangeVec::<physvec::Phys, 4>::try_from_slice(&[PhysRange::new(0, 4)]).unwrap();
        /// assert_eq!(v.total_len(), 4);
        /// ```
        pub fn try_from_slice(ranges: &[Range<S>]) -> Result<Self, TotalLenOverflow> {
            let mut v = Self::with_capacity(ranges.len());
            for &r in ranges {
                let total = v.total;
                v.try_push(r).map_err(|_| TotalLenOverflow {
                    total,
                    len: r.len(),
                })?;
            }
            Ok(v)
        }

        /// Appends a range.
        ///
        /// # Panics
        /// If the total length would exceed `u64::MAX`; see [`RangeList::try_push`].
        ///
        /// ```
        /// use physvec::PhysRange;
        /// let mut v = physvec::RangeVec::<physvec::Phys, 4>::new();
        /// v.push(PhysRange::new(0x1000, 0x10));
        /// assert_eq!(v.len(), 1);
        /// ```
        #[track_caller]
        pub fn push(&mut self, range: Range<S>) {
            if self.try_push(range).is_err() {
                // Documented panic; `try_push` is the fallible form.
                #[allow(clippy::panic)]
                {
                    panic!(
                        "{}",
                        TotalLenOverflow {
                            total: self.total,
                            len: range.len()
                        }
                    );
                }
            }
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
        /// use physvec::PhysRange;
        /// let mut v = physvec::RangeVec::<physvec::Phys, 1>::new();
        /// v.push(PhysRange::new(0, 1));
        /// assert!(!v.spilled());
        /// v.push(PhysRange::new(9, 1));
        /// assert!(v.spilled());
        /// ```
        pub fn spilled(&self) -> bool {
            self.ranges.spilled()
        }
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

    #[test]
    fn array_rejects_and_returns() {
        let mut a = PhysArray::<2>::new();
        a.try_push(PhysRange::new(0, 10)).unwrap();
        a.try_push(PhysRange::new(20, 10)).unwrap();
        let e = a.try_push(PhysRange::new(40, 10)).unwrap_err();
        assert_eq!(e.element(), PhysRange::new(40, 10));
        assert_eq!(a.total_len(), 20);
        a.replace_last(PhysRange::new(20, 30)).unwrap();
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

    /// The issue-12 reproducer: `replace_last` used to compute
    /// `total - last.len() + range.len()` unchecked (a panic in debug, a wrong total in
    /// release). Now it is refused and nothing changes.
    #[test]
    fn replace_last_total_overflow_is_refused() {
        let mut a = PhysArray::<4>::new();
        a.try_push(PhysRange::new(0, u64::MAX - 1)).unwrap();
        a.try_push(PhysRange::new(0, 1)).unwrap();
        assert_eq!(a.total_len(), u64::MAX);
        let e = a.replace_last(PhysRange::new(0, 2)).unwrap_err();
        assert_eq!(e.element(), PhysRange::new(0, 2));
        assert_eq!((a.len(), a.total_len()), (2, u64::MAX));
        assert_eq!(a.last(), Some(&PhysRange::new(0, 1)));
        // And a coalescing push that would overflow is refused the same way.
        let mut b = PhysArray::<4>::new();
        b.try_push(PhysRange::new(0, u64::MAX)).unwrap();
        assert!(b.push_coalesced(PhysRange::new(u64::MAX, 1)).is_err());
        assert_eq!(b.total_len(), u64::MAX);
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
        let mut full = RangeVec::<crate::Phys, 2>::new();
        full.push(PhysRange::new(0, u64::MAX - 1));
        full.push(PhysRange::new(0, 1));
        assert!(full.replace_last(PhysRange::new(0, 2)).is_err());
        assert_eq!(full.total_len(), u64::MAX);
    }
}
