//! Segments: [`Range<S>`], a non-empty run of bytes `[addr, addr + len)` in one address
//! space, with the aliases [`PhysRange`] and [`DmaRange`].
//!
//! The layout is the kernel's `struct phys_vec { phys_addr_t paddr; size_t len; }`:
//! 16 bytes, `repr(C)`, no padding. A `&[PhysRange]` can be written out as bytes as it
//! is ([`bytemuck::NoUninit`]), but bytes can only come *in* through a check: the wire
//! form [`RawRange`] is [`bytemuck::Pod`] (any 16 bytes) and converts into a range with
//! [`TryFrom`], and `Range` is [`bytemuck::CheckedBitPattern`], so
//! `bytemuck::checked::try_cast_slice` validates every element of a foreign buffer.
//! This is zerocopy's split of "any bytes" from "checked" types: a `Range` in hand is
//! always valid, and no consumer re-checks it.

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

use crate::addr::{Addr, AddrSpace, Dma, PageSize, Phys, Virt};
use crate::error::RangeError;

/// A non-empty byte range `[addr, addr + len)` in address space `S`.
///
/// # Invariants
/// `len > 0` and `addr + len <= 2^64` (a range may end exactly at the top of the address
/// space). Every constructor checks this, and there is no way around it: the type is not
/// `Pod`/`Zeroable`, and raw bytes become ranges only through [`RawRange`] (`TryFrom`) or
/// `bytemuck::checked` casts, which validate. Consumers therefore never re-check.
///
/// # Examples
/// ```
/// use physvec::{PageSize, PhysRange};
/// let r = PhysRange::new(0x1800, 0x2000);
/// assert_eq!(r.end_u64(), Some(0x3800));
/// assert_eq!(r.pages_spanned(PageSize::SIZE_4K), 3);
/// let (a, b) = r.split_at(0x800).unwrap();
/// assert_eq!((a, b), (PhysRange::new(0x1800, 0x800), PhysRange::new(0x2000, 0x1800)));
/// ```
#[repr(C)]
pub struct Range<S: AddrSpace> {
    addr: Addr<S>,
    len: u64,
}

/// A range of CPU physical memory.
///
/// ```
/// let r = physvec::PhysRange::new(0x1000, 0x1000);
/// assert_eq!(r.len(), 0x1000);
/// ```
pub type PhysRange = Range<Phys>;

/// A range of DMA (bus / IOVA) addresses.
///
/// ```
/// let r = physvec::DmaRange::new(0x1000, 0x1000);
/// assert_eq!(r.addr().as_u64(), 0x1000);
/// ```
pub type DmaRange = Range<Dma>;

/// A range of process-virtual memory (a buffer in this process), what a VFIO user-space
/// driver maps. Only a virtual-space mapper turns it into [`DmaRange`]s.
///
/// ```
/// let buf = vec![0u8; 8192];
/// let r = physvec::VirtRange::from_slice(&buf)?;
/// assert_eq!(r.len(), 8192);
/// # Ok::<(), physvec::RangeError>(())
/// ```
pub type VirtRange = Range<Virt>;

impl Range<Virt> {
    /// The virtual range a byte slice occupies.
    ///
    /// # Errors
    /// [`RangeError::Empty`] for an empty slice.
    ///
    /// ```
    /// let buf = [0u8; 100];
    /// let r = physvec::VirtRange::from_slice(&buf[10..])?;
    /// assert_eq!((r.addr().as_u64(), r.len()), (buf.as_ptr() as u64 + 10, 90));
    /// assert!(physvec::VirtRange::from_slice(&buf[..0]).is_err());
    /// # Ok::<(), physvec::RangeError>(())
    /// ```
    #[inline]
    pub fn from_slice(bytes: &[u8]) -> Result<Self, RangeError> {
        // `usize` is at most 64 bits on every target the crate supports.
        Self::try_new(bytes.as_ptr() as usize as u64, bytes.len() as u64)
    }
}

const _: () = assert!(core::mem::size_of::<PhysRange>() == 16);
const _: () = assert!(core::mem::align_of::<PhysRange>() == 8);
const _: () = assert!(core::mem::size_of::<DmaRange>() == 16);

// SAFETY: `Range<S>` is `repr(C)` with two 8-byte, 8-aligned fields (`Addr<S>` is
// `repr(transparent)` over `u64`), so it has no padding and no uninitialised bytes; it
// is `Copy + 'static`. Reading its bytes is therefore sound (writing is not offered).
unsafe impl<S: AddrSpace> bytemuck::NoUninit for Range<S> {}

// SAFETY: `RawRange<S>` has the same `repr(C)` layout as `Range<S>` (two 8-byte fields,
// `Addr<S>` then `u64`, same order, size and alignment), and `is_valid_bit_pattern`
// accepts exactly the bit patterns that satisfy `Range`'s invariants, the ones
// `Range::try_new` accepts.
unsafe impl<S: AddrSpace> bytemuck::CheckedBitPattern for Range<S> {
    type Bits = RawRange<S>;

    #[inline]
    fn is_valid_bit_pattern(bits: &RawRange<S>) -> bool {
        Self::try_new(bits.addr.as_u64(), bits.len).is_ok()
    }
}

/// The wire form of a [`Range`]: any 16 bytes `{addr, len}`, unchecked.
///
/// Use it where ranges arrive from outside (a shared-memory ring, a guest's descriptor,
/// a file): it is [`bytemuck::Pod`], so a byte buffer casts to `&[RawRange<S>]` for free,
/// and each element becomes a [`Range`] through [`TryFrom`], which checks `len > 0` and
/// `addr + len <= 2^64`. `bytemuck::checked::try_cast_slice::<_, Range<S>>` does the
/// same check for a whole slice in place.
///
/// ```
/// use physvec::{PhysAddr, PhysRange, RawRange};
/// let words: [u64; 4] = [0x1000, 0x200, 0x8000, 0];
/// let raw: &[RawRange<physvec::addr::Phys>] = bytemuck::cast_slice(&words);
/// assert_eq!(PhysRange::try_from(raw[0]), Ok(PhysRange::new(0x1000, 0x200)));
/// assert!(PhysRange::try_from(raw[1]).is_err()); // zero length
/// // A whole buffer, checked in place:
/// assert!(bytemuck::checked::try_cast_slice::<u64, PhysRange>(&words).is_err());
/// assert_eq!(RawRange::from(PhysRange::new(0x1000, 0x200)).addr, PhysAddr::new(0x1000));
/// ```
///
/// A `Range` cannot be conjured from raw bytes without that check (it is not `Pod`):
/// ```compile_fail
/// let r: physvec::PhysRange = bytemuck::cast([0x1000u64, 0]); // error: `Range` is not `Pod`
/// ```
/// ```compile_fail
/// let r: physvec::PhysRange = bytemuck::Zeroable::zeroed(); // error: not `Zeroable` either
/// ```
#[repr(C)]
pub struct RawRange<S: AddrSpace> {
    /// The first byte's address.
    pub addr: Addr<S>,
    /// The length in bytes (may be anything, including 0).
    pub len: u64,
}

const _: () = assert!(core::mem::size_of::<RawRange<Phys>>() == 16);

impl<S: AddrSpace> Clone for RawRange<S> {
    #[inline]
    fn clone(&self) -> Self {
        *self
    }
}
impl<S: AddrSpace> Copy for RawRange<S> {}
impl<S: AddrSpace> PartialEq for RawRange<S> {
    #[inline]
    fn eq(&self, o: &Self) -> bool {
        self.addr == o.addr && self.len == o.len
    }
}
impl<S: AddrSpace> Eq for RawRange<S> {}
impl<S: AddrSpace> fmt::Debug for RawRange<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "raw {}:[{:#x}+{:#x}]",
            S::NAME,
            self.addr.as_u64(),
            self.len
        )
    }
}
// SAFETY: `repr(C)` with two 8-byte fields that are both `Pod` (`Addr<S>` is
// `repr(transparent)` over `u64` and itself `Pod`): no padding, every bit pattern valid.
unsafe impl<S: AddrSpace> bytemuck::Zeroable for RawRange<S> {}
// SAFETY: as above; `Copy + 'static`.
unsafe impl<S: AddrSpace> bytemuck::Pod for RawRange<S> {}

impl<S: AddrSpace> From<Range<S>> for RawRange<S> {
    #[inline]
    fn from(r: Range<S>) -> Self {
        Self {
            addr: r.addr,
            len: r.len,
        }
    }
}

impl<S: AddrSpace> TryFrom<RawRange<S>> for Range<S> {
    type Error = RangeError;

    /// Checks the invariants; errors as [`Range::try_new`].
    #[inline]
    fn try_from(raw: RawRange<S>) -> Result<Self, RangeError> {
        Self::try_new(raw.addr.as_u64(), raw.len)
    }
}

impl<S: AddrSpace> Clone for Range<S> {
    #[inline]
    fn clone(&self) -> Self {
        *self
    }
}
impl<S: AddrSpace> Copy for Range<S> {}
impl<S: AddrSpace> PartialEq for Range<S> {
    #[inline]
    fn eq(&self, o: &Self) -> bool {
        self.addr == o.addr && self.len == o.len
    }
}
impl<S: AddrSpace> Eq for Range<S> {}
impl<S: AddrSpace> PartialOrd for Range<S> {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<S: AddrSpace> Ord for Range<S> {
    fn cmp(&self, o: &Self) -> core::cmp::Ordering {
        (self.addr, self.len).cmp(&(o.addr, o.len))
    }
}
impl<S: AddrSpace> core::hash::Hash for Range<S> {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.addr.hash(state);
        self.len.hash(state);
    }
}

impl<S: AddrSpace> fmt::Debug for Range<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:[{:#x}+{:#x}]", S::NAME, self.addr.as_u64(), self.len)
    }
}

impl<S: AddrSpace> fmt::Display for Range<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Two values below 2^64 summed in u128.
        #[allow(clippy::arithmetic_side_effects)]
        let end = self.addr.as_u64() as u128 + self.len as u128;
        write!(
            f,
            "{:#x}..{end:#x} ({})",
            self.addr.as_u64(),
            crate::fmt::Bytes(self.len)
        )
    }
}

impl<S: AddrSpace> Range<S> {
    /// Creates `[addr, addr + len)`.
    ///
    /// # Panics
    /// If `len == 0` or the range passes 2^64. Use [`Range::try_new`] for untrusted input.
    ///
    /// ```
    /// let r = physvec::PhysRange::new(0x1000, 0x10);
    /// assert_eq!(r.last().as_u64(), 0x100f);
    /// ```
    #[inline]
    #[track_caller]
    // The one deliberate panic: a documented `# Panics` constructor for constants and
    // literals (const-evaluated at compile time there); untrusted input uses `try_new`.
    #[allow(clippy::panic)]
    pub const fn new(addr: u64, len: u64) -> Self {
        match Self::try_new(addr, len) {
            Ok(r) => r,
            Err(_) => panic!("invalid range: empty or beyond 2^64"),
        }
    }

    /// Creates `[addr, addr + len)` from values the caller has already proven valid
    /// (`len > 0`, `addr + len <= 2^64`): no check in release builds.
    #[inline(always)]
    pub(crate) const fn new_unchecked(addr: u64, len: u64) -> Self {
        // Two values below 2^64 summed in u128.
        #[allow(clippy::arithmetic_side_effects)]
        let end = addr as u128 + len as u128;
        debug_assert!(len > 0 && end <= (1u128 << 64));
        Self {
            addr: Addr::new(addr),
            len,
        }
    }

    /// Creates `[addr, addr + len)`, checking the invariants.
    ///
    /// # Errors
    /// [`RangeError::Empty`] for `len == 0`; [`RangeError::Overflow`] when
    /// `addr + len > 2^64`.
    ///
    /// ```
    /// use physvec::PhysRange;
    /// assert!(PhysRange::try_new(u64::MAX, 1).is_ok()); // ends exactly at 2^64
    /// assert!(PhysRange::try_new(u64::MAX, 2).is_err());
    /// ```
    #[inline]
    pub const fn try_new(addr: u64, len: u64) -> Result<Self, RangeError> {
        if len == 0 {
            return Err(RangeError::Empty { addr });
        }
        // The last byte `addr + len - 1` must fit; `len != 0` was checked above.
        #[allow(clippy::arithmetic_side_effects)]
        let last = addr.checked_add(len - 1);
        if last.is_none() {
            return Err(RangeError::Overflow { addr, len });
        }
        Ok(Self {
            addr: Addr::new(addr),
            len,
        })
    }

    /// Creates a range from a typed start address.
    ///
    /// # Errors
    /// As [`Range::try_new`].
    ///
    /// ```
    /// use physvec::{DmaAddr, DmaRange};
    /// let r = DmaRange::from_addr(DmaAddr::new(0x2000), 0x100).unwrap();
    /// assert_eq!(r, DmaRange::new(0x2000, 0x100));
    /// ```
    #[inline]
    pub const fn from_addr(addr: Addr<S>, len: u64) -> Result<Self, RangeError> {
        Self::try_new(addr.as_u64(), len)
    }

    /// The first byte's address.
    ///
    /// ```
    /// assert_eq!(physvec::PhysRange::new(0x1000, 1).addr().as_u64(), 0x1000);
    /// ```
    #[inline]
    pub const fn addr(self) -> Addr<S> {
        self.addr
    }

    /// The length in bytes (never zero).
    ///
    /// ```
    /// assert_eq!(physvec::PhysRange::new(0x1000, 7).len(), 7);
    /// ```
    #[inline]
    #[allow(clippy::len_without_is_empty)] // a range is never empty
    pub const fn len(self) -> u64 {
        self.len
    }

    /// The address of the last byte, `addr + len - 1` (always representable).
    ///
    /// ```
    /// assert_eq!(physvec::PhysRange::new(u64::MAX, 1).last().as_u64(), u64::MAX);
    /// ```
    #[inline]
    // `len > 0` and `addr + len <= 2^64` by the Range invariant.
    #[allow(clippy::arithmetic_side_effects)]
    pub const fn last(self) -> Addr<S> {
        Addr::new(self.addr.as_u64() + (self.len - 1))
    }

    /// The exclusive end `addr + len`, or `None` when the range ends exactly at 2^64.
    ///
    /// ```
    /// use physvec::PhysRange;
    /// assert_eq!(PhysRange::new(0x1000, 0x10).end().unwrap().as_u64(), 0x1010);
    /// assert_eq!(PhysRange::new(u64::MAX, 1).end(), None);
    /// ```
    #[inline]
    pub const fn end(self) -> Option<Addr<S>> {
        match self.addr.as_u64().checked_add(self.len) {
            Some(e) => Some(Addr::new(e)),
            None => None,
        }
    }

    /// [`Range::end`] as a raw `u64`.
    ///
    /// ```
    /// assert_eq!(physvec::PhysRange::new(0x1000, 0x10).end_u64(), Some(0x1010));
    /// ```
    #[inline]
    pub const fn end_u64(self) -> Option<u64> {
        self.addr.as_u64().checked_add(self.len)
    }

    /// Whether `addr` lies inside the range.
    ///
    /// ```
    /// use physvec::{PhysAddr, PhysRange};
    /// let r = PhysRange::new(0x1000, 0x10);
    /// assert!(r.contains(PhysAddr::new(0x100f)));
    /// assert!(!r.contains(PhysAddr::new(0x1010)));
    /// ```
    #[inline]
    pub const fn contains(self, addr: Addr<S>) -> bool {
        addr.as_u64() >= self.addr.as_u64() && addr.as_u64() <= self.last().as_u64()
    }

    /// Whether `other` lies entirely inside `self`.
    ///
    /// ```
    /// use physvec::PhysRange;
    /// assert!(PhysRange::new(0x1000, 0x100).contains_range(PhysRange::new(0x1010, 0x10)));
    /// ```
    #[inline]
    pub const fn contains_range(self, other: Self) -> bool {
        self.contains(other.addr) && self.contains(other.last())
    }

    /// Whether the two ranges share at least one byte.
    ///
    /// ```
    /// use physvec::PhysRange;
    /// assert!(PhysRange::new(0x1000, 0x100).overlaps(PhysRange::new(0x10ff, 0x10)));
    /// assert!(!PhysRange::new(0x1000, 0x100).overlaps(PhysRange::new(0x1100, 0x10)));
    /// ```
    #[inline]
    pub const fn overlaps(self, other: Self) -> bool {
        self.addr.as_u64() <= other.last().as_u64() && other.addr.as_u64() <= self.last().as_u64()
    }

    /// Whether `next` starts exactly where `self` ends, so the two could be one range.
    ///
    /// ```
    /// use physvec::PhysRange;
    /// assert!(PhysRange::new(0x1000, 0x1000).is_contiguous_with(PhysRange::new(0x2000, 1)));
    /// assert!(!PhysRange::new(0x1000, 0x1000).is_contiguous_with(PhysRange::new(0x2001, 1)));
    /// ```
    #[inline]
    pub const fn is_contiguous_with(self, next: Self) -> bool {
        match self.end_u64() {
            Some(e) => e == next.addr.as_u64(),
            None => false,
        }
    }

    /// Joins `self` and `next` when they are contiguous; `None` otherwise.
    ///
    /// ```
    /// use physvec::PhysRange;
    /// let m = PhysRange::new(0x1000, 0x10).merge(PhysRange::new(0x1010, 0x10));
    /// assert_eq!(m, Some(PhysRange::new(0x1000, 0x20)));
    /// ```
    #[inline]
    pub const fn merge(self, next: Self) -> Option<Self> {
        if !self.is_contiguous_with(next) {
            return None;
        }
        // Contiguous ranges end where `next` ends, which is <= 2^64 by its invariant,
        // so the summed length fits in u64 unless the pair covers all 2^64 bytes.
        match self.len.checked_add(next.len) {
            Some(len) => Some(Self {
                addr: self.addr,
                len,
            }),
            None => None,
        }
    }

    /// Splits at `offset` bytes from the start into `[0, offset)` and `[offset, len)`.
    ///
    /// # Errors
    /// [`RangeError::OffsetOutOfRange`] unless `0 < offset < len`.
    ///
    /// ```
    /// use physvec::PhysRange;
    /// let (a, b) = PhysRange::new(0x1000, 0x100).split_at(0x40).unwrap();
    /// assert_eq!((a.len(), b.addr().as_u64()), (0x40, 0x1040));
    /// assert!(PhysRange::new(0x1000, 0x100).split_at(0x100).is_err());
    /// ```
    #[inline]
    pub const fn split_at(self, offset: u64) -> Result<(Self, Self), RangeError> {
        if offset == 0 || offset >= self.len {
            return Err(RangeError::OffsetOutOfRange {
                offset,
                len: self.len,
            });
        }
        Ok((
            Self {
                addr: self.addr,
                len: offset,
            },
            // `0 < offset < len` (checked above) and `addr + len <= 2^64`.
            #[allow(clippy::arithmetic_side_effects)]
            Self {
                addr: Addr::new(self.addr.as_u64() + offset),
                len: self.len - offset,
            },
        ))
    }

    /// The sub-range `[offset, offset + len)` relative to the start of `self`.
    ///
    /// # Errors
    /// [`RangeError::Empty`] for `len == 0`; [`RangeError::OffsetOutOfRange`] when the
    /// window does not fit inside `self`.
    ///
    /// ```
    /// use physvec::PhysRange;
    /// let r = PhysRange::new(0x1000, 0x100);
    /// assert_eq!(r.slice(0x10, 0x20).unwrap(), PhysRange::new(0x1010, 0x20));
    /// assert!(r.slice(0xf0, 0x20).is_err());
    /// ```
    #[inline]
    pub const fn slice(self, offset: u64, len: u64) -> Result<Self, RangeError> {
        if len == 0 {
            return Err(RangeError::Empty {
                addr: self.addr.as_u64().wrapping_add(offset),
            });
        }
        match offset.checked_add(len) {
            // `offset < end <= len` and `addr + len <= 2^64`.
            #[allow(clippy::arithmetic_side_effects)]
            Some(end) if end <= self.len => Ok(Self {
                addr: Addr::new(self.addr.as_u64() + offset),
                len,
            }),
            _ => Err(RangeError::OffsetOutOfRange {
                offset,
                len: self.len,
            }),
        }
    }

    /// Number of pages of size `page` the range touches (partial pages count).
    ///
    /// ```
    /// use physvec::{PageSize, PhysRange};
    /// assert_eq!(PhysRange::new(0xfff, 2).pages_spanned(PageSize::SIZE_4K), 2);
    /// assert_eq!(PhysRange::new(0x1000, 0x1000).pages_spanned(PageSize::SIZE_4K), 1);
    /// ```
    #[inline]
    // `last >= first`; the count is `len` (< 2^64) for 1-byte pages and at most
    // `len / page + 2 < 2^64` for larger ones.
    #[allow(clippy::arithmetic_side_effects)]
    pub const fn pages_spanned(self, page: PageSize) -> u64 {
        let first = self.addr.page_number(page);
        let last = self.last().page_number(page);
        last - first + 1
    }

    /// Iterates over the pieces of the range that fall into each page of size `page`,
    /// yielding `(page_addr, offset_in_page, len)`.
    ///
    /// ```
    /// use physvec::{PageSize, PhysAddr, PhysRange};
    /// let pieces: Vec<_> = PhysRange::new(0x1800, 0x1000).pages(PageSize::SIZE_4K).collect();
    /// assert_eq!(pieces, [
    ///     (PhysAddr::new(0x1000), 0x800, 0x800),
    ///     (PhysAddr::new(0x2000), 0, 0x800),
    /// ]);
    /// ```
    #[inline]
    pub const fn pages(self, page: PageSize) -> Pages<S> {
        Pages {
            next: self.addr.as_u64(),
            remaining: self.len,
            page,
            _space: core::marker::PhantomData,
        }
    }

    /// Whether both ends of the range fall on `page` boundaries (the start is aligned and
    /// the length is a whole number of pages).
    ///
    /// ```
    /// use physvec::{PageSize, PhysRange};
    /// assert!(PhysRange::new(0x2000, 0x3000).is_page_aligned(PageSize::SIZE_4K));
    /// assert!(!PhysRange::new(0x2000, 0x3001).is_page_aligned(PageSize::SIZE_4K));
    /// ```
    #[inline]
    pub const fn is_page_aligned(self, page: PageSize) -> bool {
        self.addr.is_aligned(page) && self.len & page.mask() == 0
    }

    /// Reinterprets the range in another address space (see [`Addr::cast`]).
    ///
    /// ```
    /// use physvec::{DmaRange, PhysRange};
    /// let d: DmaRange = PhysRange::new(0x1000, 0x10).cast();
    /// assert_eq!(d, DmaRange::new(0x1000, 0x10));
    /// ```
    #[inline]
    pub const fn cast<T: AddrSpace>(self) -> Range<T> {
        Range {
            addr: self.addr.cast(),
            len: self.len,
        }
    }
}

/// Iterator over the per-page pieces of a range; see [`Range::pages`].
///
/// Yields `(page_addr, offset_in_page, len)` with `offset_in_page + len <= page`.
#[derive(Clone, Debug)]
pub struct Pages<S: AddrSpace> {
    next: u64,
    remaining: u64,
    page: PageSize,
    _space: core::marker::PhantomData<S>,
}

impl<S: AddrSpace> Iterator for Pages<S> {
    type Item = (Addr<S>, u64, u64);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let offset = self.next & self.page.mask();
        // `offset <= next` (a masked copy), `offset <= mask < page`, and
        // `len <= remaining` (the min).
        #[allow(clippy::arithmetic_side_effects)]
        let (base, len) = (
            self.next - offset,
            core::cmp::min(self.page.get() - offset, self.remaining),
        );
        // `len <= remaining` (the min above).
        #[allow(clippy::arithmetic_side_effects)]
        {
            self.remaining -= len;
        }
        // May wrap only after the final piece of a range ending at 2^64, when
        // `remaining` is already zero and the value is never used again.
        self.next = self.next.wrapping_add(len);
        Some((Addr::new(base), offset, len))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.remaining == 0 {
            return (0, Some(0));
        }
        let n = Range::<S>::new(self.next, self.remaining).pages_spanned(self.page);
        match usize::try_from(n) {
            Ok(n) => (n, Some(n)),
            Err(_) => (usize::MAX, None),
        }
    }
}

impl<S: AddrSpace> core::iter::FusedIterator for Pages<S> {}

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

    #[test]
    fn constructors_check_invariants() {
        assert_eq!(PhysRange::try_new(5, 0), Err(RangeError::Empty { addr: 5 }));
        assert!(PhysRange::try_new(u64::MAX, 1).is_ok());
        assert!(PhysRange::try_new(0, u64::MAX).is_ok());
        assert!(PhysRange::try_new(1, u64::MAX).is_ok()); // ends exactly at 2^64
        assert_eq!(
            PhysRange::try_new(2, u64::MAX),
            Err(RangeError::Overflow {
                addr: 2,
                len: u64::MAX
            })
        );
    }

    #[test]
    #[should_panic]
    fn new_panics_on_empty() {
        let _ = PhysRange::new(0, 0);
    }

    #[test]
    fn top_of_address_space() {
        let r = DmaRange::new(u64::MAX - 0xfff, 0x1000);
        assert_eq!(r.end(), None);
        assert_eq!(r.last().as_u64(), u64::MAX);
        assert!(!r.is_contiguous_with(DmaRange::new(0, 1)));
        let pieces: alloc_free::Vec4 = r.pages(PageSize::SIZE_4K).collect();
        assert_eq!(pieces.0, 1);
        assert_eq!(r.pages_spanned(PageSize::SIZE_4K), 1);
        let full = DmaRange::new(0, u64::MAX);
        assert_eq!(full.merge(DmaRange::new(u64::MAX, 1)), None);
    }

    #[test]
    fn page_iteration_covers_every_byte() {
        let r = PhysRange::new(0x1234, 0x5678);
        let mut next = r.addr().as_u64();
        let mut total = 0;
        for (page, off, len) in r.pages(PageSize::SIZE_4K) {
            assert_eq!(page.as_u64() + off, next);
            assert!(off + len <= 4096);
            next += len;
            total += len;
        }
        assert_eq!(total, r.len());
        assert_eq!(
            r.pages(PageSize::SIZE_4K).count() as u64,
            r.pages_spanned(PageSize::SIZE_4K)
        );
        assert_eq!(
            r.pages(PageSize::SIZE_4K).size_hint().0 as u64,
            r.pages_spanned(PageSize::SIZE_4K)
        );
    }

    #[test]
    fn split_slice_merge() {
        let r = PhysRange::new(0x1000, 0x100);
        let (a, b) = r.split_at(1).unwrap();
        assert_eq!(a.merge(b), Some(r));
        assert!(r.split_at(0).is_err());
        assert!(r.slice(0, 0).is_err());
        assert!(r.slice(u64::MAX, 2).is_err());
        assert_eq!(r.slice(0, 0x100), Ok(r));
    }

    #[test]
    fn pod_layout() {
        let r = PhysRange::new(0x1122334455667788, 0x10);
        let bytes: &[u8] = bytemuck::bytes_of(&r);
        assert_eq!(&bytes[..8], &0x1122334455667788u64.to_ne_bytes());
        assert_eq!(&bytes[8..], &0x10u64.to_ne_bytes());
        assert_eq!(format!("{r:?}"), "phys:[0x1122334455667788+0x10]");
    }

    #[test]
    fn checked_casts_from_raw_words() {
        // Exercises the `CheckedBitPattern` impl: a foreign `[addr, len]` word array
        // viewed in place after every element is checked.
        let words: [u64; 4] = [0x1000, 0x200, 0x8000, 0x10];
        let ranges: &[DmaRange] = bytemuck::checked::try_cast_slice(&words).unwrap();
        assert_eq!(
            ranges,
            [DmaRange::new(0x1000, 0x200), DmaRange::new(0x8000, 0x10)]
        );
        let addrs: &[crate::DmaAddr] = bytemuck::cast_slice(&words[..2]);
        assert_eq!(addrs[1].as_u64(), 0x200);
        // Raw memory may violate the invariants; the checked cast refuses it.
        for bad in [[0u64, 0], [0x1000, 0], [u64::MAX, 2], [2, u64::MAX]] {
            assert!(bytemuck::checked::try_cast_slice::<u64, PhysRange>(&bad).is_err());
            let raw: RawRange<Phys> = bytemuck::cast(bad);
            assert!(PhysRange::try_from(raw).is_err());
        }
        let top: RawRange<Phys> = bytemuck::cast([u64::MAX, 1u64]);
        assert_eq!(PhysRange::try_from(top), Ok(PhysRange::new(u64::MAX, 1)));
        assert_eq!(RawRange::from(PhysRange::new(u64::MAX, 1)), top);
    }

    mod alloc_free {
        /// Counts items without allocating.
        pub struct Vec4(pub usize);
        impl<T> FromIterator<T> for Vec4 {
            fn from_iter<I: IntoIterator<Item = T>>(i: I) -> Self {
                Vec4(i.into_iter().count())
            }
        }
    }
}
