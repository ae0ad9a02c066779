//! [`SoftIommu`]: the two-step mapper over [`IoPageTable`], [`IovaAllocator`] and the
//! IOTLB model, like `drivers/iommu/dma-iommu.c`.
#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;

use super::iotlb::{Iotlb, IOTLB_SLOTS};
use super::iova::IovaAllocator;
use super::page_table::{IoPageTable, MAX_LEAF_LEVEL};
use crate::addr::{DmaAddr, PageSize, PhysAddr};
use crate::map::{
    Attrs, DataDirection, DmaMapper, IoPerm, IovaSpace, Linking, MapError, MapperId, SpaceState,
    SyncError, Synced,
};
use crate::mask::DmaMask;
use crate::range::{DmaRange, PhysRange};

/// Configuration of a [`SoftIommu`].
///
/// ```
/// use physvec::map::IommuConfig;
/// use physvec::PageSize;
/// let c = IommuConfig::new(PageSize::SIZE_4K).with_dma_mask(physvec::DmaMask::BITS_32);
/// assert_eq!(c.aperture, (0x1000, 0xffff_ffff));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IommuConfig {
    /// I/O page size: 4 KiB, 16 KiB or 64 KiB.
    pub granule: PageSize,
    /// Highest IOVA the device can emit.
    pub dma_mask: DmaMask,
    /// `[first, last]` IOVAs the allocator hands out (inclusive; clipped to the mask).
    /// IOVA 0 is kept out by default, as the kernel's IOVA domains do.
    pub aperture: (u64, u64),
    /// Use 2 MiB / 1 GiB leaves where alignment allows.
    pub large_leaves: bool,
}

impl IommuConfig {
    /// Granule `granule`, a 48-bit DMA mask, aperture `[granule, mask]`, large leaves on.
    pub fn new(granule: PageSize) -> Self {
        IommuConfig {
            granule,
            dma_mask: DmaMask::new::<48>(),
            aperture: (granule.get(), (1 << 48) - 1),
            large_leaves: true,
        }
    }

    /// Sets the DMA mask and clips the aperture's end to it.
    pub fn with_dma_mask(mut self, mask: DmaMask) -> Self {
        self.dma_mask = mask;
        self.aperture.1 = self.aperture.1.min(mask.get());
        self
    }

    /// Sets the aperture `[first, last]` (inclusive).
    pub fn with_aperture(mut self, first: u64, last: u64) -> Self {
        self.aperture = (first, last);
        self
    }

    /// Turns large (2 MiB / 1 GiB) leaves on or off.
    pub fn with_large_leaves(mut self, on: bool) -> Self {
        self.large_leaves = on;
        self
    }
}

impl Default for IommuConfig {
    fn default() -> Self {
        Self::new(PageSize::SIZE_4K)
    }
}

/// Counters of a [`SoftIommu`] (a snapshot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IommuStats {
    /// Page-table map operations (one per link or `map_phys`).
    pub maps: u64,
    /// Page-table unmap operations.
    pub unmaps: u64,
    /// IOTLB syncs after mapping (`iotlb_sync_map`: one per `sync`, one per `map_phys`).
    pub iotlb_syncs: u64,
    /// IOTLB invalidations (one per unlink / unmap / destroy).
    pub iotlb_invalidations: u64,
    /// Of these, full flushes (range too large to invalidate page by page).
    pub iotlb_flushes: u64,
    /// `translate` calls answered by the IOTLB.
    pub iotlb_hits: u64,
    /// `translate` calls that walked the page table.
    pub iotlb_misses: u64,
    /// Bytes mapped in the page table.
    pub mapped_bytes: u64,
    /// Page-table nodes below the root.
    pub tables: usize,
    /// Live leaves `[granule, 2 MiB, 1 GiB]` (for 4 KiB granules).
    pub leaves: [u64; 3],
    /// Live IOVA allocations (reservations plus `map_phys` mappings).
    pub allocations: usize,
    /// Free IOVA bytes in the aperture.
    pub free_iova_bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AllocKind {
    Single { pad: u64, size: u64 },
}

struct Inner {
    pt: IoPageTable,
    alloc: IovaAllocator,
    /// Live `map_phys` mappings by IOVA base.
    allocs: BTreeMap<u64, (u64, AllocKind)>,
    /// Live reservations `(base, len)`, a slab indexed by the slot `reserve` records in
    /// the `IovaSpace` (`None`: a free slot, listed in `free_slots`), so that the
    /// ownership check of every call is one indexed compare and a reservation costs no
    /// map insert/remove.
    spaces: Vec<Option<(u64, u64)>>,
    free_slots: Vec<u32>,
    live_spaces: usize,
    tlb: Iotlb,
    stats: IommuStats,
}

/// A software IOMMU: the two-step IOVA API over a real radix I/O page table, an IOVA
/// allocator and a counted IOTLB.
///
/// It uses a `RefCell` inside (the trait takes `&self`), so it is `!Sync`: give each
/// queue its own, or wrap it in the caller's lock. A borrow conflict cannot happen
/// through the public API (no method calls back into user code while borrowed).
///
/// # Examples
/// ```
/// use physvec::map::{self, DataDirection, SoftIommu};
/// use physvec::{PhysAddr, PhysRange};
/// let iommu = SoftIommu::new_4k();
/// let phys = [PhysRange::new(0x7000, 0x1000), PhysRange::new(0x2000, 0x1000)];
/// let m = map::map(&iommu, &phys, DataDirection::Bidirectional)?;
/// let dma = m.dma()[0];
/// assert_eq!(dma.len(), 0x2000);
/// assert_eq!(iommu.translate(dma.addr()), Some(PhysAddr::new(0x7000)));
/// assert_eq!(iommu.translate(dma.addr().checked_add(0x1000)?), Some(PhysAddr::new(0x2000)));
/// drop(m);
/// assert_eq!(iommu.translate(dma.addr()), None);
/// assert!(iommu.is_idle());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SoftIommu {
    id: MapperId,
    cfg: IommuConfig,
    inner: RefCell<Inner>,
}

impl fmt::Debug for SoftIommu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftIommu")
            .field("cfg", &self.cfg)
            .field("stats", &self.stats())
            .finish()
    }
}

impl SoftIommu {
    /// An IOMMU with the given configuration.
    ///
    /// # Errors
    /// [`MapError::InvalidGranule`], [`MapError::InvalidConfig`] (aperture empty or above
    /// the DMA mask, mask below one granule).
    pub fn new(cfg: IommuConfig) -> Result<Self, MapError> {
        let va_bits = cfg.dma_mask.width();
        let pt = IoPageTable::new(
            cfg.granule,
            va_bits.max(cfg.granule.shift().saturating_add(1)), // a shift is below 64
            cfg.large_leaves,
        )?;
        if cfg.aperture.1 > cfg.dma_mask.get() || cfg.aperture.0 > cfg.aperture.1 {
            return Err(MapError::InvalidConfig {
                what: "IOVA aperture must be non-empty and under the DMA mask",
            });
        }
        let alloc = IovaAllocator::new(
            cfg.granule,
            DmaAddr::new(cfg.aperture.0),
            DmaAddr::new(cfg.aperture.1),
        )?;
        let stats = IommuStats {
            free_iova_bytes: alloc.free_bytes(),
            ..IommuStats::default()
        };
        Ok(SoftIommu {
            id: MapperId::fresh(),
            cfg,
            inner: RefCell::new(Inner {
                pt,
                alloc,
                allocs: BTreeMap::new(),
                spaces: Vec::new(),
                free_slots: Vec::new(),
                live_spaces: 0,
                tlb: Iotlb {
                    slots: [None; IOTLB_SLOTS],
                },
                stats,
            }),
        })
    }

    /// The default IOMMU: 4 KiB granule, 48-bit mask, large leaves.
    pub fn new_4k() -> Self {
        match Self::new(IommuConfig::default()) {
            Ok(s) => s,
            // Proof: the default (4 KiB granule, 48-bit mask, aperture [4 KiB, 2^48 - 1])
            // passes every check of `new`, which the unit test `default_config_is_valid`
            // exercises.
            #[allow(clippy::unreachable)]
            Err(_) => unreachable!("the default configuration is valid"),
        }
    }

    /// The configuration.
    pub fn config(&self) -> IommuConfig {
        self.cfg
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> IommuStats {
        let i = self.inner.borrow();
        let mut s = i.stats;
        s.mapped_bytes = i.pt.mapped_bytes();
        s.tables = i.pt.tables();
        s.leaves = i.pt.leaf_counts();
        s.allocations = i.allocs.len().saturating_add(i.live_spaces);
        s.free_iova_bytes = i.alloc.free_bytes();
        s
    }

    /// Whether nothing is mapped or allocated and the IOVA space is one free extent.
    pub fn is_idle(&self) -> bool {
        let i = self.inner.borrow();
        i.allocs.is_empty()
            && i.live_spaces == 0
            && i.pt.mapped_bytes() == 0
            && i.pt.tables() == 0
            && i.alloc.is_pristine()
    }

    /// What the device sees at `iova`: the IOTLB first, then a page-table walk that fills
    /// it.
    pub fn translate(&self, iova: DmaAddr) -> Option<PhysAddr> {
        let mut i = self.inner.borrow_mut();
        let gshift = self.cfg.granule.shift();
        let page = iova.as_u64() >> gshift;
        let off = iova.as_u64() & self.cfg.granule.mask();
        let slot = Iotlb::slot(page);
        if let Some(&Some((tag, phys_page))) = i.tlb.slots.get(slot) {
            if tag == page {
                i.stats.iotlb_hits = i.stats.iotlb_hits.saturating_add(1);
                return Some(PhysAddr::new((phys_page << gshift) | off));
            }
        }
        i.stats.iotlb_misses = i.stats.iotlb_misses.saturating_add(1);
        let (p, _, _) = i.pt.lookup(iova)?;
        if let Some(e) = i.tlb.slots.get_mut(slot) {
            *e = Some((page, p.as_u64() >> gshift));
        }
        Some(p)
    }

    /// The page-table entry for `iova` (bypassing the IOTLB): physical address,
    /// permissions, leaf size.
    pub fn walk(&self, iova: DmaAddr) -> Option<(PhysAddr, IoPerm, PageSize)> {
        self.inner.borrow().pt.lookup(iova)
    }

    /// Checks that `space` is a live reservation of this IOMMU (same mapper, same
    /// extent as a live record); returns its slot.
    #[inline]
    /// [`DmaMapper::link`] under an already held borrow.
    fn link_one(
        &self,
        i: &mut Inner,
        space: &mut IovaSpace<Linking>,
        phys: PhysRange,
        offset: u64,
        perm: IoPerm,
    ) -> Result<(), MapError> {
        let g = self.cfg.granule;
        space.link_with(phys, offset, |dma, phys| {
            let (iova, p, len) = granule_span(g, dma, phys);
            i.pt.map(iova, p, len, perm)?;
            i.stats.maps = i.stats.maps.saturating_add(1);
            Ok(())
        })
    }

    fn own<St: SpaceState>(&self, i: &Inner, space: &IovaSpace<St>) -> Result<usize, MapError> {
        let key = Some((space.iova_base().as_u64(), space.reserved_len()));
        let hint = space.slot() as usize;
        if space.owner() == self.id {
            if i.spaces.get(hint) == Some(&key) {
                return Ok(hint);
            }
            if let Some(slot) = Self::find_space(i, key) {
                return Ok(slot);
            }
        }
        Err(MapError::ForeignSpace {
            addr: space.addr().as_u64(),
        })
    }

    /// The slot of a space whose hint is stale or absent (one built by hand).
    #[cold]
    #[inline(never)]
    fn find_space(i: &Inner, key: Option<(u64, u64)>) -> Option<usize> {
        i.spaces.iter().position(|s| *s == key)
    }

    fn alignment_for(&self, len: u64) -> PageSize {
        let g = self.cfg.granule;
        if !self.cfg.large_leaves {
            return g;
        }
        // A table holds `granule / 8` entries: `shift - 3` index bits per level (a
        // granule is at least 4 KiB, so the subtraction cannot underflow).
        let bits = g.shift().saturating_sub(3);
        let mut a = g;
        for level in 1..=MAX_LEAF_LEVEL {
            // Small numbers (shift <= 16, level <= 2): `from_shift` refuses any >= 64.
            let shift = g.shift().saturating_add(level.saturating_mul(bits));
            if let Ok(b) = PageSize::from_shift(shift) {
                if b.get() <= len {
                    a = b;
                }
            }
        }
        a
    }

    fn allocate(&self, i: &mut Inner, len: u64) -> Result<u64, MapError> {
        let align = self.alignment_for(len);
        i.alloc
            .alloc(len, align)
            .or_else(|| i.alloc.alloc(len, self.cfg.granule))
            .map(DmaAddr::as_u64)
            .ok_or(MapError::IovaExhausted { size: len })
    }

    fn invalidate(&self, i: &mut Inner, iova: u64, len: u64) {
        i.stats.iotlb_invalidations = i.stats.iotlb_invalidations.saturating_add(1);
        if i.tlb.invalidate(self.cfg.granule.shift(), iova, len) {
            i.stats.iotlb_flushes = i.stats.iotlb_flushes.saturating_add(1);
        }
    }

    /// Unmaps all of an allocation's extent, forgets its record (a reservation's slot,
    /// or else its `allocs` entry) and returns it to the allocator.
    fn release(
        &self,
        i: &mut Inner,
        slot: Option<usize>,
        base: u64,
        len: u64,
    ) -> Result<u64, MapError> {
        let unmapped = i.pt.unmap_present(DmaAddr::new(base), len)?;
        if unmapped > 0 {
            i.stats.unmaps = i.stats.unmaps.saturating_add(1);
            self.invalidate(i, base, len);
        }
        match slot {
            Some(slot) => Self::forget_space(i, slot),
            None => {
                i.allocs.remove(&base);
            }
        }
        i.alloc.free(DmaAddr::new(base), len)?;
        Ok(unmapped)
    }

    /// Records a live reservation; returns its slot.
    fn record_space(i: &mut Inner, base: u64, len: u64) -> usize {
        // One per live reservation, each holding at least a granule of IOVA space.
        i.live_spaces = i.live_spaces.saturating_add(1);
        if let Some(slot) = i.free_slots.pop() {
            if let Some(s) = i.spaces.get_mut(slot as usize) {
                *s = Some((base, len));
                return slot as usize;
            }
        }
        i.spaces.push(Some((base, len)));
        // Just pushed: not empty.
        i.spaces.len().saturating_sub(1)
    }

    fn forget_space(i: &mut Inner, slot: usize) {
        if let Some(s) = i.spaces.get_mut(slot) {
            if s.take().is_some() {
                // This slot was live, so it was counted.
                i.live_spaces = i.live_spaces.saturating_sub(1);
                // Slots stay below u32::MAX: one per live reservation, each at least a
                // granule of the IOVA aperture.
                i.free_slots.push(slot as u32);
            }
        }
    }
}

/// Bytes from `addr` rounded down to `g` to `addr + len` rounded up to `g`: the granules
/// a range touches.
// Proof: u128 sums of u64 values; `gl >= 4096`; the rounded end is at least the rounded
// start (it is at least `addr`).
#[allow(clippy::arithmetic_side_effects)]
fn granule_len(g: PageSize, addr: u64, len: u64) -> u64 {
    let gl = g.get() as u128;
    let start = addr as u128 & !(gl - 1);
    (((addr as u128 + len as u128 + (gl - 1)) & !(gl - 1)) - start) as u64
}

/// Granule-aligned `[iova, phys, len)` covering `phys` placed at `dma`.
fn granule_span(g: PageSize, dma: DmaAddr, phys: PhysRange) -> (DmaAddr, PhysAddr, u64) {
    let len = granule_len(g, phys.addr().as_u64(), phys.len());
    (dma.align_down(g), phys.addr().align_down(g), len)
}

impl DmaMapper for SoftIommu {
    fn granule(&self) -> PageSize {
        self.cfg.granule
    }

    fn dma_mask(&self) -> DmaMask {
        self.cfg.dma_mask
    }

    fn reserve(&self, phys_hint: PhysAddr, size: u64) -> Result<Option<IovaSpace>, MapError> {
        if size == 0 {
            return Err(MapError::Empty);
        }
        let g = self.cfg.granule;
        let pad = phys_hint.page_offset(g);
        let gm = g.mask() as u128;
        // u128 sums of values below 2^64: cannot overflow.
        #[allow(clippy::arithmetic_side_effects)]
        let len = (pad as u128 + size as u128 + gm) & !gm;
        let len = u64::try_from(len).map_err(|_| MapError::IovaExhausted { size: u64::MAX })?;
        let mut i = self.inner.borrow_mut();
        let base = self.allocate(&mut i, len)?;
        match IovaSpace::new(self.id, DmaAddr::new(base), pad, size, g) {
            Ok(mut s) => {
                let slot = Self::record_space(&mut i, base, len);
                s.set_slot(u32::try_from(slot).unwrap_or(u32::MAX));
                Ok(Some(s))
            }
            Err(e) => {
                let _ = i.alloc.free(DmaAddr::new(base), len);
                Err(e)
            }
        }
    }

    fn link(
        &self,
        space: &mut IovaSpace<Linking>,
        phys: PhysRange,
        offset: u64,
        dir: DataDirection,
        attrs: Attrs,
    ) -> Result<(), MapError> {
        let mut i = self.inner.borrow_mut();
        self.own(&i, space)?;
        self.link_one(
            &mut i,
            space,
            phys,
            offset,
            IoPerm::for_transfer(dir, attrs),
        )
    }

    /// One borrow and one ownership check for the batch; runs of scattered granules
    /// are mapped with one page-table pass per leaf table
    /// ([`IoPageTable::map_granules`]), every other range as by [`DmaMapper::link`].
    fn link_many(
        &self,
        space: &mut IovaSpace<Linking>,
        phys: &[PhysRange],
        offset: u64,
        dir: DataDirection,
        attrs: Attrs,
    ) -> (usize, Result<(), MapError>) {
        let mut i = self.inner.borrow_mut();
        if let Err(e) = self.own(&i, space) {
            return (0, Err(e));
        }
        let perm = IoPerm::for_transfer(dir, attrs);
        let (mut done, mut at) = (0usize, offset);
        while let Some(rest) = phys.get(done..).filter(|r| !r.is_empty()) {
            let (n, r) = space.link_granules_with(rest, at, |dma, pages| {
                let (n, r) = i.pt.map_granules(dma, pages, perm);
                i.stats.maps = i.stats.maps.saturating_add(n as u64);
                (n, r)
            });
            done = done.saturating_add(n);
            // Linked granules fit in the reservation: no overflow.
            at = at.saturating_add((n as u64).saturating_mul(self.cfg.granule.get()));
            if r.is_err() {
                return (done, r);
            }
            if n == 0 {
                let Some(&one) = rest.first() else {
                    break;
                };
                if let Err(e) = self.link_one(&mut i, space, one, at, perm) {
                    return (done, Err(e));
                }
                done = done.saturating_add(1);
                at = at.saturating_add(one.len());
            }
        }
        (done, Ok(()))
    }

    fn sync(
        &self,
        space: IovaSpace<Linking>,
        offset: u64,
        size: u64,
    ) -> Result<IovaSpace<Synced>, SyncError> {
        let mut i = self.inner.borrow_mut();
        if let Err(error) = self
            .own(&i, &space)
            .and_then(|_| space.check_sync(offset, size))
        {
            return Err(SyncError { space, error });
        }
        i.stats.iotlb_syncs = i.stats.iotlb_syncs.saturating_add(1);
        Ok(space.mark_synced())
    }

    fn unlink<St: SpaceState>(
        &self,
        space: &mut IovaSpace<St>,
        offset: u64,
        size: u64,
        _dir: DataDirection,
        _attrs: Attrs,
    ) -> Result<(), MapError> {
        self.own(&self.inner.borrow(), space)?;
        let g = self.cfg.granule;
        let unmap = |dma: DmaRange| {
            let mut i = self.inner.borrow_mut();
            let iova = dma.addr().align_down(g);
            let len = granule_len(g, dma.addr().as_u64(), dma.len());
            i.pt.unmap(iova, len)
                .map_err(|_| MapError::NotLinked { offset, len: size })?;
            i.stats.unmaps = i.stats.unmaps.saturating_add(1);
            self.invalidate(&mut i, iova.as_u64(), len);
            Ok(())
        };
        // Asked after `unmap` returned (its borrow is over).
        let is_mapped = |iova| self.inner.borrow().pt.lookup(iova).is_some();
        space.unlink_with(offset, size, unmap, is_mapped)
    }

    fn free<St: SpaceState>(&self, mut space: IovaSpace<St>) -> Result<(), MapError> {
        let mut i = self.inner.borrow_mut();
        let slot = self.own(&i, &space)?;
        let linked = space.linked_bytes();
        let unmapped = self.release(
            &mut i,
            Some(slot),
            space.iova_base().as_u64(),
            space.reserved_len(),
        )?;
        space.clear_links();
        if linked > 0 || unmapped > 0 {
            return Err(MapError::StillLinked { bytes: linked });
        }
        Ok(())
    }

    fn destroy<St: SpaceState>(
        &self,
        mut space: IovaSpace<St>,
        _dir: DataDirection,
        _attrs: Attrs,
    ) -> Result<(), MapError> {
        let mut i = self.inner.borrow_mut();
        let slot = self.own(&i, &space)?;
        self.release(
            &mut i,
            Some(slot),
            space.iova_base().as_u64(),
            space.reserved_len(),
        )?;
        space.clear_links();
        Ok(())
    }

    fn map_phys(
        &self,
        phys: PhysRange,
        dir: DataDirection,
        attrs: Attrs,
    ) -> Result<DmaRange, MapError> {
        let g = self.cfg.granule;
        let pad = phys.addr().page_offset(g);
        let (_, p, len) = granule_span(g, DmaAddr::new(pad), phys);
        let mut i = self.inner.borrow_mut();
        let base = self.allocate(&mut i, len)?;
        if let Err(e) =
            i.pt.map(DmaAddr::new(base), p, len, IoPerm::for_transfer(dir, attrs))
        {
            let _ = i.alloc.free(DmaAddr::new(base), len);
            return Err(e);
        }
        i.stats.maps = i.stats.maps.saturating_add(1);
        i.stats.iotlb_syncs = i.stats.iotlb_syncs.saturating_add(1);
        i.allocs.insert(
            base,
            (
                len,
                AllocKind::Single {
                    pad,
                    size: phys.len(),
                },
            ),
        );
        // `base` heads an allocation of `pad + phys.len()` bytes (rounded up) inside the
        // IOVA aperture, so `base + pad` and the range's end fit.
        #[allow(clippy::arithmetic_side_effects)]
        let start = base + pad;
        Ok(DmaRange::new(start, phys.len()))
    }

    fn unmap_phys(
        &self,
        dma: DmaRange,
        _dir: DataDirection,
        _attrs: Attrs,
    ) -> Result<(), MapError> {
        let g = self.cfg.granule;
        let (base, pad) = dma.addr().split_page(g);
        let mut i = self.inner.borrow_mut();
        let want = AllocKind::Single {
            pad,
            size: dma.len(),
        };
        let Some(&(len, kind)) = i.allocs.get(&base.as_u64()) else {
            return Err(MapError::NotMapped {
                dma: dma.addr().as_u64(),
                len: dma.len(),
            });
        };
        if kind != want {
            return Err(MapError::NotMapped {
                dma: dma.addr().as_u64(),
                len: dma.len(),
            });
        }
        self.release(&mut i, None, base.as_u64(), len)?;
        Ok(())
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

    /// `new_4k` relies on the default configuration being valid (its `unreachable!`).
    #[test]
    fn default_config_is_valid() {
        assert!(SoftIommu::new(IommuConfig::default()).is_ok());
        assert!(SoftIommu::new_4k().is_idle());
    }

    #[test]
    fn two_step_misuse_is_detected() {
        let iommu = SoftIommu::new_4k();
        let other = SoftIommu::new_4k();
        let dir = DataDirection::ToDevice;
        let a = Attrs::empty();
        let space = iommu.reserve(PhysAddr::new(0), 0x3000).unwrap().unwrap();
        let e = iommu.sync(space, 0, 0x3000).unwrap_err();
        assert_eq!(e.error, MapError::SyncBeforeLink);
        let mut space = e.space;
        // Second link not granule-aligned.
        iommu
            .link(&mut space, PhysRange::new(0x1000, 0x800), 0, dir, a)
            .unwrap();
        assert!(matches!(
            iommu.link(&mut space, PhysRange::new(0x5800, 0x800), 0x800, dir, a),
            Err(MapError::MergeBoundary { .. })
        ));
        // A foreign mapper refuses the space.
        assert!(matches!(
            other.link(&mut space, PhysRange::new(0x5000, 0x1000), 0x1000, dir, a),
            Err(MapError::ForeignSpace { .. })
        ));
        assert_eq!(
            iommu.free(space),
            Err(MapError::StillLinked { bytes: 0x800 })
        );
        assert!(iommu.is_idle());
    }
}
