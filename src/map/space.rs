//! [`IovaSpace`]: one contiguous IOVA reservation, the kernel's `struct dma_iova_state`,
//! with its state (linking or synced) in the type.

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

use super::MapError;
use crate::addr::{DmaAddr, PageSize};
use crate::range::{DmaRange, PhysRange};

mod sealed {
    pub trait Sealed {}
}

/// The state of an [`IovaSpace`]: [`Linking`] or [`Synced`]. Sealed.
pub trait SpaceState: sealed::Sealed {}

/// Ranges are being linked; no IOTLB sync yet. Only this state accepts `link`.
#[derive(Debug)]
pub enum Linking {}
/// `sync` ran: the mapping is visible to the device. No more links are possible.
#[derive(Debug)]
pub enum Synced {}

impl sealed::Sealed for Linking {}
impl sealed::Sealed for Synced {}
impl SpaceState for Linking {}
impl SpaceState for Synced {}

/// Identifies the mapper instance that made a reservation, so that a reservation handed
/// to another mapper is refused ([`MapError::ForeignSpace`]).
///
/// ```
/// use physvec::map::MapperId;
/// assert_ne!(MapperId::fresh(), MapperId::fresh());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MapperId(usize);

impl MapperId {
    /// A process-unique id (a global counter).
    pub fn fresh() -> Self {
        use core::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        MapperId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// A contiguous IOVA reservation for one transfer: the kernel's `dma_iova_state`.
///
/// Made by [`DmaMapper::reserve`](super::DmaMapper::reserve) in state [`Linking`];
/// [`DmaMapper::link`](super::DmaMapper::link) fills it, one
/// [`DmaMapper::sync`](super::DmaMapper::sync) turns it into [`Synced`], and
/// [`DmaMapper::destroy`](super::DmaMapper::destroy) or
/// [`DmaMapper::free`](super::DmaMapper::free) consume it.
///
/// The type makes the kernel's misuse cases impossible or detected:
/// - link after sync: `link` only takes `IovaSpace<Linking>` (compile error);
/// - use after free: `free`/`destroy` take the space by value and it is not `Clone`;
/// - sync before link: [`MapError::SyncBeforeLink`];
/// - a link breaking the merge-boundary rule: [`MapError::MergeBoundary`];
/// - a space passed to another mapper: [`MapError::ForeignSpace`].
///
/// # Invariants
/// `iova_base` is granule-aligned, `pad < granule`, `size > 0`, and
/// `iova_base + pad + size` rounded up to the granule fits in 64 bits. `linked` counts
/// the bytes currently linked (never more than `size`).
///
/// # For mapper implementors
/// Construct with [`IovaSpace::new`]; in `link` call [`IovaSpace::link_with`], in
/// `unlink` call [`IovaSpace::unlink_with`], in `sync` check with
/// [`IovaSpace::check_sync`] and finish with [`IovaSpace::mark_synced`]. These keep the
/// bookkeeping and the merge-boundary rule in one place.
#[must_use = "an IOVA reservation must be destroyed or freed"]
pub struct IovaSpace<St: SpaceState = Linking> {
    owner: MapperId,
    iova_base: DmaAddr,
    pad: u64,
    size: u64,
    granule: PageSize,
    linked: u64,
    links: u32,
    /// End offset of a link that ended off-granule; no link may follow it.
    sealed_end: Option<u64>,
    /// Highest end offset of any link since the space was last empty; a link ending
    /// off-granule below it would leave a hole inside the transfer.
    high_end: u64,
    /// A mapper's own bookkeeping index for this reservation (`u32::MAX`: none), a hint
    /// it may use to find its record in O(1); never trusted on its own.
    slot: u32,
    _state: PhantomData<St>,
}

impl<St: SpaceState> fmt::Debug for IovaSpace<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IovaSpace")
            .field("addr", &self.addr())
            .field("size", &self.size)
            .field("granule", &self.granule)
            .field("linked", &self.linked)
            .field("links", &self.links)
            .finish()
    }
}

impl IovaSpace<Linking> {
    /// A fresh reservation of `size` bytes whose first byte is at `iova_base + pad`.
    ///
    /// # Errors
    /// [`MapError::Empty`] for `size == 0`; [`MapError::InvalidConfig`] when `iova_base`
    /// is not granule-aligned or `pad >= granule`; [`MapError::AddressOverflow`] when the
    /// reservation passes 2^64.
    ///
    /// ```
    /// use physvec::map::{IovaSpace, MapperId};
    /// use physvec::{DmaAddr, PageSize};
    /// let s = IovaSpace::new(MapperId::fresh(), DmaAddr::new(0x10000), 0x200, 0x3000, PageSize::SIZE_4K)?;
    /// assert_eq!(s.addr(), DmaAddr::new(0x10200));
    /// assert_eq!(s.reserved_len(), 0x4000);
    /// # Ok::<(), physvec::map::MapError>(())
    /// ```
    pub fn new(
        owner: MapperId,
        iova_base: DmaAddr,
        pad: u64,
        size: u64,
        granule: PageSize,
    ) -> Result<Self, MapError> {
        if size == 0 {
            return Err(MapError::Empty);
        }
        if !iova_base.is_aligned(granule) || pad >= granule.get() {
            return Err(MapError::InvalidConfig {
                what: "IOVA reservation base must be granule-aligned with pad < granule",
            });
        }
        // Three values below 2^64 summed in u128.
        #[allow(clippy::arithmetic_side_effects)]
        let end = iova_base.as_u64() as u128 + pad as u128 + size as u128;
        if end > 1u128 << 64 {
            return Err(MapError::AddressOverflow {
                addr: iova_base.as_u64(),
                len: size,
            });
        }
        Ok(Self {
            owner,
            iova_base,
            pad,
            size,
            granule,
            linked: 0,
            links: 0,
            sealed_end: None,
            high_end: 0,
            slot: u32::MAX,
            _state: PhantomData,
        })
    }

    /// Checks a link of `phys` at `offset` against the bounds and the merge-boundary rule,
    /// runs `map(iova, phys)` (the mapper's page-table work, with `iova` the DMA address
    /// of `phys`'s first byte) and, if it succeeds, records the link.
    ///
    /// # Errors
    /// [`MapError::OutOfReservation`], [`MapError::MergeBoundary`],
    /// [`MapError::SubGranuleMismatch`], or whatever `map` returns (nothing is recorded
    /// then).
    pub fn link_with<F>(&mut self, phys: PhysRange, offset: u64, map: F) -> Result<(), MapError>
    where
        F: FnOnce(DmaAddr, PhysRange) -> Result<(), MapError>,
    {
        let len = phys.len();
        let end = offset.checked_add(len).filter(|&e| e <= self.size).ok_or(
            MapError::OutOfReservation {
                offset,
                len,
                size: self.size,
            },
        )?;
        let g = self.granule;
        let boundary = MapError::MergeBoundary {
            offset,
            phys: phys.addr().as_u64(),
            granule: g.get(),
        };
        // A link ended off-granule earlier: it had to be the last.
        if let Some(sealed) = self.sealed_end {
            if sealed <= offset {
                return Err(boundary);
            }
        }
        // `offset < end <= size` and `iova_base + pad + size <= 2^64` (invariant).
        #[allow(clippy::arithmetic_side_effects)]
        let dma = DmaAddr::new(self.iova_base.as_u64() + self.pad + offset);
        // Links are disjoint for a mapper whose page tables refuse double mappings, so
        // `linked + len <= size`; a mapper that accepts anything is refused here instead
        // of overflowing the count.
        let linked = self
            .linked
            .checked_add(len)
            .ok_or(MapError::OutOfReservation {
                offset,
                len,
                size: self.size,
            })?;
        if offset > 0 {
            // Every link but the first starts on a granule boundary (phys and IOVA).
            if !dma.is_aligned(g) || !phys.addr().is_aligned(g) {
                return Err(boundary);
            }
        } else if phys.addr().page_offset(g) != self.pad {
            return Err(MapError::SubGranuleMismatch {
                phys: phys.addr().as_u64(),
                dma: dma.as_u64(),
            });
        }
        // Every link but the last ends on a granule boundary: an off-granule end that is
        // not the end of the reservation seals it.
        let ends_aligned = phys.end_u64().map_or(true, |e| e & g.mask() == 0);
        if !ends_aligned && end < self.size && self.high_end > end {
            // Linked out of order: a link above this one exists, so this one is not last.
            return Err(boundary);
        }
        map(dma, phys)?;
        self.high_end = self.high_end.max(end);
        self.linked = linked;
        self.links = self.links.saturating_add(1);
        if !ends_aligned && end < self.size {
            self.sealed_end = Some(end);
        }
        Ok(())
    }

    /// The bookkeeping of a batch of [`IovaSpace::link_with`] calls for scattered whole
    /// granules, for a mapper that maps them in one pass
    /// ([`DmaMapper::link_many`](super::DmaMapper::link_many)).
    ///
    /// Takes the longest prefix of `phys` whose ranges are each exactly one granule at
    /// a granule-aligned address and that fits in the reservation from `offset`, when
    /// the space is not sealed and `offset` lands on a granule boundary of the IOVA
    /// (every link of such a prefix passes the merge-boundary rule, so none needs its
    /// own check). Calls `map(dma, prefix)` once; it returns how many granules it
    /// mapped, from the first, and its error. Records those as linked and returns the
    /// count and the error. `(0, Ok(()))` without calling `map` when no prefix of two
    /// or more qualifies: link `phys[0]` with [`IovaSpace::link_with`] then.
    ///
    /// ```
    /// use physvec::map::{IovaSpace, MapperId};
    /// use physvec::{DmaAddr, PageSize, PhysRange};
    /// let mut s = IovaSpace::new(MapperId::fresh(), DmaAddr::new(0x10_0000), 0, 0x4000, PageSize::SIZE_4K)?;
    /// let pages = [PhysRange::new(0x9000, 0x1000), PhysRange::new(0x3000, 0x1000), PhysRange::new(0x5000, 0x800)];
    /// let (n, r) = s.link_granules_with(&pages, 0, |dma, batch| {
    ///     assert_eq!((dma.as_u64(), batch.len()), (0x10_0000, 2)); // the last one is short
    ///     (batch.len(), Ok(()))
    /// });
    /// assert_eq!((n, r, s.linked_bytes()), (2, Ok(()), 0x2000));
    /// # Ok::<(), physvec::map::MapError>(())
    /// ```
    pub fn link_granules_with<F>(
        &mut self,
        phys: &[PhysRange],
        offset: u64,
        map: F,
    ) -> (usize, Result<(), MapError>)
    where
        F: FnOnce(DmaAddr, &[PhysRange]) -> (usize, Result<(), MapError>),
    {
        let g = self.granule;
        let gm = g.mask();
        // `pad + offset` is granule aligned (the IOVA of the first link; with `offset`
        // 0 the physical offset must be `pad`, i.e. 0 here).
        let at = self.pad.checked_add(offset);
        let (None, Some(0)) = (self.sealed_end, at.map(|a| a & gm)) else {
            return (0, Ok(()));
        };
        let fit = self.size.saturating_sub(offset) >> g.shift();
        let whole = phys
            .iter()
            .take(usize::try_from(fit).unwrap_or(usize::MAX))
            .take_while(|r| r.len() == g.get() && r.addr().as_u64() & gm == 0)
            .count();
        let Some(batch) = phys.get(..whole).filter(|b| b.len() >= 2) else {
            return (0, Ok(()));
        };
        // `offset < size` (a granule fits) and `iova_base + pad + size <= 2^64`.
        let dma = DmaAddr::new(
            self.iova_base
                .as_u64()
                .saturating_add(self.pad)
                .saturating_add(offset),
        );
        let (n, r) = map(dma, batch);
        let n = n.min(batch.len());
        if n > 0 {
            // `n` granules from `offset` fit in the reservation (`n <= fit`).
            let bytes = (n as u64).saturating_mul(g.get());
            self.linked = self.linked.saturating_add(bytes);
            self.links = self
                .links
                .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
            self.high_end = self.high_end.max(offset.saturating_add(bytes));
        }
        (n, r)
    }

    /// Checks that `[offset, offset + len)` may be synced: at least one link exists and
    /// the range lies in the reservation.
    ///
    /// # Errors
    /// [`MapError::SyncBeforeLink`], [`MapError::SyncOutOfRange`].
    pub fn check_sync(&self, offset: u64, len: u64) -> Result<(), MapError> {
        if self.links == 0 || self.linked == 0 {
            return Err(MapError::SyncBeforeLink);
        }
        match offset.checked_add(len) {
            Some(e) if len > 0 && e <= self.size => Ok(()),
            _ => Err(MapError::SyncOutOfRange { offset, len }),
        }
    }

    /// The state change a mapper performs at the end of a successful `sync`.
    pub fn mark_synced(self) -> IovaSpace<Synced> {
        self.change_state()
    }
}

impl<St: SpaceState> IovaSpace<St> {
    /// The mapper's bookkeeping hint (`u32::MAX` when none was set).
    #[cfg(feature = "alloc")]
    #[inline]
    pub(crate) fn slot(&self) -> u32 {
        self.slot
    }

    /// Sets the mapper's bookkeeping hint.
    #[cfg(feature = "alloc")]
    #[inline]
    pub(crate) fn set_slot(&mut self, slot: u32) {
        self.slot = slot;
    }

    fn change_state<T: SpaceState>(self) -> IovaSpace<T> {
        IovaSpace {
            owner: self.owner,
            iova_base: self.iova_base,
            pad: self.pad,
            size: self.size,
            granule: self.granule,
            linked: self.linked,
            links: self.links,
            sealed_end: self.sealed_end,
            high_end: self.high_end,
            slot: self.slot,
            _state: PhantomData,
        }
    }

    /// The mapper instance that made the reservation.
    pub fn owner(&self) -> MapperId {
        self.owner
    }

    /// DMA address of byte 0 of the transfer (`iova_base + pad`).
    // `iova_base + pad + size <= 2^64` with `size > 0` (invariant).
    #[allow(clippy::arithmetic_side_effects)]
    pub fn addr(&self) -> DmaAddr {
        DmaAddr::new(self.iova_base.as_u64() + self.pad)
    }

    /// Granule-aligned start of the reserved IOVA extent.
    pub fn iova_base(&self) -> DmaAddr {
        self.iova_base
    }

    /// Sub-granule offset of byte 0 (from the `phys_hint` of `reserve`).
    pub fn pad(&self) -> u64 {
        self.pad
    }

    /// Transfer size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Reserved IOVA bytes: `pad + size` rounded up to the granule.
    // u128 sums of values below 2^64 cannot overflow; `g >= 1` (a power of two).
    #[allow(clippy::arithmetic_side_effects)]
    pub fn reserved_len(&self) -> u64 {
        let raw = self.pad as u128 + self.size as u128;
        let g = self.granule.get() as u128;
        // A power of two: round up with a mask, not a u128 division (a libcall).
        ((raw + (g - 1)) & !(g - 1)) as u64
    }

    /// The mapper's granule (merge boundary + 1).
    pub fn granule(&self) -> PageSize {
        self.granule
    }

    /// Bytes currently linked.
    pub fn linked_bytes(&self) -> u64 {
        self.linked
    }

    /// Successful links so far.
    pub fn link_count(&self) -> u32 {
        self.links
    }

    /// The whole transfer as one DMA range `[addr, addr + size)`.
    pub fn dma_range(&self) -> DmaRange {
        // The invariants guarantee the range fits.
        match DmaRange::from_addr(self.addr(), self.size) {
            Ok(r) => r,
            Err(_) => DmaRange::new(self.addr().as_u64(), 1),
        }
    }

    /// Checks an unlink of `[offset, offset + len)`, runs `unmap(dma_range)` (the
    /// mapper's page-table work; the mapper must verify every byte is linked) and, if it
    /// succeeds, records it.
    ///
    /// `is_mapped(iova)` answers whether the granule starting at `iova` is still mapped
    /// after `unmap`. It is asked only when the unlink removed the highest link while
    /// others remain, to find the highest link still present (granule by granule,
    /// downwards from `offset`), so that a short last link may follow below it.
    ///
    /// The unlinked bytes must start at offset 0 or on a granule boundary and end at the
    /// reservation end, at the end of an off-granule last link, or on a granule boundary,
    /// so that the granules they cover hold no other link's bytes.
    ///
    /// # Errors
    /// [`MapError::OutOfReservation`], [`MapError::NotLinked`] (also for sub-granule
    /// bounds), or whatever `unmap` returns.
    pub fn unlink_with<F, P>(
        &mut self,
        offset: u64,
        len: u64,
        unmap: F,
        is_mapped: P,
    ) -> Result<(), MapError>
    where
        F: FnOnce(DmaRange) -> Result<(), MapError>,
        P: FnMut(DmaAddr) -> bool,
    {
        let end = offset
            .checked_add(len)
            .filter(|&e| len > 0 && e <= self.size)
            .ok_or(MapError::OutOfReservation {
                offset,
                len,
                size: self.size,
            })?;
        let mask = self.granule.mask();
        // `offset < end <= size` and `iova_base + pad + size <= 2^64` (invariant): the
        // u64 sum stays below 2^64; the u128 one cannot overflow.
        #[allow(clippy::arithmetic_side_effects)]
        let (start_ok, end_ok) = (
            offset == 0 || (self.pad + offset) & mask == 0,
            end == self.size
                || Some(end) == self.sealed_end
                || (self.pad as u128 + end as u128) & mask as u128 == 0,
        );
        // Bytes past an off-granule last link were never linked.
        let linked_len = match self.sealed_end {
            // `s > offset` (the guard).
            #[allow(clippy::arithmetic_side_effects)]
            Some(s) if s > offset && s < end => s - offset,
            _ => len,
        };
        if !start_ok || !end_ok || linked_len > self.linked {
            return Err(MapError::NotLinked { offset, len });
        }
        // `offset < size` and `addr() + size <= 2^64` (invariant).
        #[allow(clippy::arithmetic_side_effects)]
        let first = DmaAddr::new(self.addr().as_u64() + offset);
        let dma =
            DmaRange::from_addr(first, len).map_err(|_| MapError::NotLinked { offset, len })?;
        unmap(dma)?;
        // `linked_len <= linked` (checked above).
        #[allow(clippy::arithmetic_side_effects)]
        {
            self.linked -= linked_len;
        }
        if self.sealed_end.is_some_and(|s| s > offset && s <= end) {
            self.sealed_end = None;
        }
        if self.linked == 0 {
            self.high_end = 0;
        } else if end >= self.high_end {
            // Nothing is linked above `offset` any more: the highest link still present
            // ends in the highest granule below `offset` that is still mapped.
            self.high_end = self.highest_mapped_end_below(offset, is_mapped);
        }
        Ok(())
    }

    /// End offset (at most `below`) of the highest granule below transfer offset `below`
    /// that `is_mapped` reports mapped; 0 when none is. `below` is 0 or a granule boundary
    /// of the IOVA (an unlink start).
    fn highest_mapped_end_below<P: FnMut(DmaAddr) -> bool>(
        &self,
        below: u64,
        mut is_mapped: P,
    ) -> u64 {
        let g = self.granule.get();
        // IOVA offset (from `iova_base`) of the end of the granule being probed.
        let mut top = self.pad.saturating_add(below) & !self.granule.mask();
        while top > 0 {
            let start = top.saturating_sub(g);
            if is_mapped(DmaAddr::new(self.iova_base.as_u64().saturating_add(start))) {
                return top.saturating_sub(self.pad).min(below);
            }
            top = start;
        }
        0
    }

    /// Records that the mapper tore down every link (for `destroy`/`free`).
    pub fn clear_links(&mut self) {
        self.linked = 0;
        self.sealed_end = None;
        self.high_end = 0;
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
    use crate::addr::PhysAddr;

    /// A mapper whose `map` accepts anything may link the same bytes twice; the count
    /// of linked bytes refuses to overflow instead of panicking or wrapping.
    #[test]
    fn linked_bytes_never_overflow() {
        let half = 1u64 << 63;
        let mut s = IovaSpace::new(
            MapperId::fresh(),
            DmaAddr::new(0),
            0,
            half,
            PageSize::SIZE_4K,
        )
        .unwrap();
        let p = PhysRange::from_addr(PhysAddr::new(0), half).unwrap();
        s.link_with(p, 0, |_, _| Ok(())).unwrap();
        let e = s.link_with(p, 0, |_, _| Ok(())).unwrap_err();
        assert_eq!(e.kind(), "out_of_reservation");
        assert_eq!(s.linked_bytes(), half);
    }
}
