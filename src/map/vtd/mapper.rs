//! [`VtdMapper`]: the two-step DMA mapper over real VT-d tables, with the invalidations
//! every change needs queued for the caller to issue.
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
use core::cell::{Ref, RefCell, RefMut};
use core::fmt;

use super::entry::{haw_mask, INTERRUPT_FIRST, INTERRUPT_LAST};
use super::inval::Invalidation;
use super::tables::{PageSource, VtdConfig, VtdTables};
use crate::addr::{DmaAddr, PageSize, Phys, PhysAddr};
use crate::map::{
    Attrs, DataDirection, DmaMapper, IoPerm, IovaAllocator, IovaSpace, Linking, MapError, MapperId,
    SpaceState, SyncError, Synced,
};
use crate::mask::DmaMask;
use crate::mem::{MemoryReader, MemoryWriter};
use crate::range::{DmaRange, PhysRange};

/// Counters of a [`VtdMapper`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VtdStats {
    /// Table map operations (one per link, `map_phys` or `map_fixed`).
    pub maps: u64,
    /// Table unmap operations that removed something.
    pub unmaps: u64,
    /// `sync` calls.
    pub syncs: u64,
    /// Invalidations queued.
    pub invalidations: u64,
}

struct Inner<M, P> {
    t: VtdTables<M, P>,
    alloc: IovaAllocator,
    /// Live reservations: base → reserved length.
    spaces: BTreeMap<u64, u64>,
    /// Live `map_phys` mappings: base → (granule-rounded length, pad, size).
    singles: BTreeMap<u64, (u64, u64, u64)>,
    /// Live fixed mappings: IOVA → length.
    fixed: BTreeMap<u64, u64>,
    pending: Vec<Invalidation>,
    stats: VtdStats,
}

/// A [`DmaMapper`] that writes Intel VT-d second-level tables (legacy mode) into memory
/// the caller provides, and queues the invalidations the hardware needs.
///
/// - IOVAs come from an allocator over `[4 KiB, 2^aw_bits)` that never hands out 0 or
///   the interrupt window 0xFEE00000..=0xFEEFFFFF; reservations of 2 MiB or more are
///   2 MiB-aligned (1 GiB for 1 GiB or more) so large leaves can be used.
/// - Leaves get the least permission the direction needs (`to_device` R, `from_device`
///   W, bidirectional R|W); non-leaf entries R|W.
/// - Every unlink / unmap / free that removed a leaf queues a page-selective IOTLB
///   invalidation covering it (domain-selective past CAP.MAMV); with caching mode,
///   `sync` and `map_phys` queue one for the new mapping too; creation queues a global
///   context-cache and a global IOTLB invalidation (the enable sequence). The caller
///   drains them with [`VtdMapper::drain_invalidations`] and issues them (register
///   writes or queued-invalidation descriptors, see [`Invalidation`]) before the device
///   may use the change, and before freed memory is reused.
///
/// Like [`SoftIommu`](crate::map::SoftIommu) it uses a `RefCell` inside, so it is `!Sync`.
///
/// # Examples
/// ```
/// use physvec::map::vtd::{self, Access, Invalidation, PageList, VtdCaps, VtdConfig, VtdMapper};
/// use physvec::map::{self as m, DataDirection};
/// use physvec::mem::SparseMemory;
/// use physvec::PhysRange;
/// let mut ram = SparseMemory::default();
/// ram.add_zeroed(physvec::PhysAddr::new(0x10_0000), 0x8000);
/// let pages = PageList::new((0x10_0000..0x10_8000).step_by(0x1000));
/// let iommu = VtdMapper::new(ram, pages, VtdConfig::new(48, 0x0008, 1))?;
/// assert_eq!(iommu.drain_invalidations(),
///     [Invalidation::ContextGlobal, Invalidation::IotlbGlobal]);
/// let phys = [PhysRange::new(0x7000, 0x1000), PhysRange::new(0x2000, 0x1000)];
/// let io = m::map(&iommu, &phys, DataDirection::FromDevice)?;
/// let dma = io.dma()[0];
/// let t = vtd::translate(&*iommu.memory(), iommu.root_table(), VtdCaps::qemu(48), 0x0008,
///     dma.addr().as_u64() + 0x1000, Access::Write).unwrap();
/// assert_eq!(t.phys, 0x2000);
/// assert!(iommu.drain_invalidations().is_empty()); // mapping needs none (CM = 0)
/// io.unmap()?;
/// // One page-selective invalidation covering both pages (an aligned block of 2^am pages).
/// assert_eq!(iommu.drain_invalidations(),
///     [Invalidation::page(1, dma.addr().as_u64(), 0x2000, 18)]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct VtdMapper<M, P> {
    id: MapperId,
    cfg: VtdConfig,
    inner: RefCell<Inner<M, P>>,
}

impl<M, P> fmt::Debug for VtdMapper<M, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VtdMapper")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

const G: PageSize = PageSize::SIZE_4K;

/// Granule-aligned `(iova, phys, len)` covering `phys` placed at `dma`.
fn granule_span(dma: u64, phys: PhysRange) -> Result<(u64, u64, u64), MapError> {
    let (p, len) =
        granule_extent(phys.addr().as_u64(), phys.len()).ok_or(MapError::AddressOverflow {
            addr: phys.addr().as_u64(),
            len: phys.len(),
        })?;
    Ok((dma & !G.mask(), p, len))
}

/// `[start, start + len)`: the granules `[addr, addr + bytes)` touches, or `None` when the
/// rounded-up end passes 2^64 (beyond any VT-d address width).
fn granule_extent(addr: u64, bytes: u64) -> Option<(u64, u64)> {
    let mask = G.mask();
    let start = addr & !mask;
    let end = addr.checked_add(bytes)?.checked_add(mask)? & !mask;
    Some((start, end.wrapping_sub(start)))
}

impl<M: MemoryReader<Phys> + MemoryWriter<Phys>, P: PageSource> VtdMapper<M, P> {
    /// Writes the root and context tables (see [`VtdTables::new`]) and queues the
    /// enable-sequence invalidations.
    ///
    /// # Errors
    /// As [`VtdTables::new`].
    pub fn new(mem: M, pages: P, cfg: VtdConfig) -> Result<Self, MapError> {
        let t = VtdTables::new(mem, pages, cfg)?;
        let mut alloc = IovaAllocator::new(
            G,
            DmaAddr::new(G.get()),
            DmaAddr::new(haw_mask(cfg.aw_bits)),
        )?;
        alloc.reserve_range(
            DmaAddr::new(INTERRUPT_FIRST),
            INTERRUPT_LAST.wrapping_sub(INTERRUPT_FIRST).wrapping_add(1),
        )?;
        Ok(VtdMapper {
            id: MapperId::fresh(),
            cfg,
            inner: RefCell::new(Inner {
                t,
                alloc,
                spaces: BTreeMap::new(),
                singles: BTreeMap::new(),
                fixed: BTreeMap::new(),
                pending: alloc::vec![Invalidation::ContextGlobal, Invalidation::IotlbGlobal],
                stats: VtdStats {
                    invalidations: 2,
                    ..VtdStats::default()
                },
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> VtdConfig {
        self.cfg
    }

    /// Address of the root table (for RTADDR).
    pub fn root_table(&self) -> u64 {
        self.inner.borrow().t.root_table()
    }

    /// The tables (for reading them, e.g. with [`translate`](super::translate)).
    pub fn tables(&self) -> Ref<'_, VtdTables<M, P>> {
        Ref::map(self.inner.borrow(), |i| &i.t)
    }

    /// The memory holding the tables.
    pub fn memory(&self) -> Ref<'_, M> {
        Ref::map(self.inner.borrow(), |i| i.t.memory())
    }

    /// The memory holding the tables, mutably: for bookkeeping wrappers such as
    /// [`DirtyPages`](super::DirtyPages). Changing table bytes through it breaks the
    /// mapper's view of its tables.
    pub fn memory_mut(&self) -> RefMut<'_, M> {
        RefMut::map(self.inner.borrow_mut(), |i| i.t.memory_mut())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> VtdStats {
        self.inner.borrow().stats
    }

    /// Takes the queued invalidations, oldest first. Issue them in this order before the
    /// device may use the changes.
    pub fn drain_invalidations(&self) -> Vec<Invalidation> {
        core::mem::take(&mut self.inner.borrow_mut().pending)
    }

    /// Number of invalidations waiting to be drained.
    pub fn pending_invalidations(&self) -> usize {
        self.inner.borrow().pending.len()
    }

    /// Whether nothing is mapped or reserved (fixed mappings included).
    pub fn is_idle(&self) -> bool {
        let i = self.inner.borrow();
        i.spaces.is_empty()
            && i.singles.is_empty()
            && i.fixed.is_empty()
            && i.t.counts().mapped_bytes == 0
            && i.t.counts().tables == 0
    }

    /// Maps the fixed IOVA range `[iova, iova + len)` to `phys` (4 KiB multiples), taking
    /// it out of the allocator, e.g. an identity mapping a device needs before the
    /// driver maps anything (RMRR-style). Queues an invalidation with caching mode.
    ///
    /// # Errors
    /// [`MapError::AlreadyMapped`] when the range overlaps allocated or mapped IOVAs, or
    /// the errors of [`VtdTables::map`].
    pub fn map_fixed(&self, iova: u64, phys: u64, len: u64, perm: IoPerm) -> Result<(), MapError> {
        let mut i = self.inner.borrow_mut();
        if (iova..=iova.saturating_add(len.saturating_sub(1))).contains(&INTERRUPT_FIRST)
            || (INTERRUPT_FIRST..=INTERRUPT_LAST).contains(&iova)
        {
            return Err(MapError::InterruptWindow { phys: iova });
        }
        i.alloc.reserve_range(DmaAddr::new(iova), len)?;
        if let Err(e) = i.t.map(iova, phys, len, perm) {
            let _ = i.alloc.free(DmaAddr::new(iova), len);
            return Err(e);
        }
        i.fixed.insert(iova, len);
        i.stats.maps = i.stats.maps.saturating_add(1);
        if self.cfg.caching_mode {
            self.invalidate(&mut i, iova, len);
        }
        Ok(())
    }

    /// Undoes [`VtdMapper::map_fixed`] of exactly `[iova, iova + len)`.
    ///
    /// # Errors
    /// [`MapError::NotMapped`] when that is not a live fixed mapping.
    pub fn unmap_fixed(&self, iova: u64, len: u64) -> Result<(), MapError> {
        let mut i = self.inner.borrow_mut();
        if i.fixed.get(&iova) != Some(&len) {
            return Err(MapError::NotMapped { dma: iova, len });
        }
        let n = i.t.unmap_present(iova, len)?;
        if n > 0 {
            self.invalidate(&mut i, iova, len);
        }
        i.fixed.remove(&iova);
        let _ = i.alloc.free(DmaAddr::new(iova), len);
        Ok(())
    }

    fn invalidate(&self, i: &mut Inner<M, P>, iova: u64, len: u64) {
        i.pending.push(Invalidation::page(
            self.cfg.domain_id,
            iova,
            len,
            self.cfg.max_am,
        ));
        i.stats.invalidations = i.stats.invalidations.saturating_add(1);
    }

    fn alignment_for(&self, len: u64) -> PageSize {
        if !self.cfg.large_pages {
            return G;
        }
        if len >= PageSize::SIZE_1G.get() {
            PageSize::SIZE_1G
        } else if len >= PageSize::SIZE_2M.get() {
            PageSize::SIZE_2M
        } else {
            G
        }
    }

    fn allocate(&self, i: &mut Inner<M, P>, len: u64) -> Result<u64, MapError> {
        let align = self.alignment_for(len);
        i.alloc
            .alloc(len, align)
            .or_else(|| i.alloc.alloc(len, G))
            .map(DmaAddr::as_u64)
            .ok_or(MapError::IovaExhausted { size: len })
    }

    fn own<St: SpaceState>(&self, i: &Inner<M, P>, space: &IovaSpace<St>) -> Result<(), MapError> {
        let base = space.iova_base().as_u64();
        if space.owner() == self.id && i.spaces.get(&base) == Some(&space.reserved_len()) {
            return Ok(());
        }
        Err(MapError::ForeignSpace {
            addr: space.addr().as_u64(),
        })
    }

    /// Unmaps everything in `[base, base + len)`, queues the invalidation, returns the
    /// IOVA space to the allocator. Returns the bytes unmapped.
    fn release(&self, i: &mut Inner<M, P>, base: u64, len: u64) -> Result<u64, MapError> {
        let n = i.t.unmap_present(base, len)?;
        if n > 0 {
            i.stats.unmaps = i.stats.unmaps.saturating_add(1);
            self.invalidate(i, base, len);
        }
        i.alloc.free(DmaAddr::new(base), len)?;
        Ok(n)
    }
}

fn perm_for(dir: DataDirection) -> IoPerm {
    // MMIO has no encoding in legacy-mode tables.
    IoPerm::for_transfer(dir, Attrs::empty())
}

impl<M: MemoryReader<Phys> + MemoryWriter<Phys>, P: PageSource> DmaMapper for VtdMapper<M, P> {
    fn granule(&self) -> PageSize {
        G
    }

    fn dma_mask(&self) -> DmaMask {
        // `haw_mask` is `2^aw - 1` with aw 39 or 48: always a valid mask.
        DmaMask::from_mask(haw_mask(self.cfg.aw_bits)).unwrap_or(DmaMask::BITS_64)
    }

    fn reserve(&self, phys_hint: PhysAddr, size: u64) -> Result<Option<IovaSpace>, MapError> {
        if size == 0 {
            return Err(MapError::Empty);
        }
        let pad = phys_hint.page_offset(G);
        let len = pad
            .checked_add(size)
            .and_then(|l| l.checked_add(G.mask()))
            .map(|l| l & !G.mask())
            .ok_or(MapError::IovaExhausted { size: u64::MAX })?;
        let mut i = self.inner.borrow_mut();
        let base = self.allocate(&mut i, len)?;
        match IovaSpace::new(self.id, DmaAddr::new(base), pad, size, G) {
            Ok(s) => {
                i.spaces.insert(base, len);
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
        _attrs: Attrs,
    ) -> Result<(), MapError> {
        let mut i = self.inner.borrow_mut();
        self.own(&i, space)?;
        let perm = perm_for(dir);
        space.link_with(phys, offset, |dma, phys| {
            let (iova, p, len) = granule_span(dma.as_u64(), phys)?;
            i.t.map(iova, p, len, perm)?;
            i.stats.maps = i.stats.maps.saturating_add(1);
            Ok(())
        })
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
        i.stats.syncs = i.stats.syncs.saturating_add(1);
        if self.cfg.caching_mode {
            // check_sync proved offset + size <= space size.
            let start = space.addr().as_u64().saturating_add(offset);
            self.invalidate(&mut i, start, size);
        }
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
        let unmap = |dma: DmaRange| {
            let mut i = self.inner.borrow_mut();
            let (start, len) = granule_extent(dma.addr().as_u64(), dma.len())
                .ok_or(MapError::NotLinked { offset, len: size })?;
            i.t.unmap(start, len).map_err(|e| match e {
                MapError::NotMapped { .. } => MapError::NotLinked { offset, len: size },
                e => e,
            })?;
            i.stats.unmaps = i.stats.unmaps.saturating_add(1);
            self.invalidate(&mut i, start, len);
            Ok(())
        };
        // Asked after `unmap` returned (its borrow is over). A table read that fails
        // counts as not mapped: the scan then stops lower, which only refuses more.
        let is_mapped =
            |iova: DmaAddr| matches!(self.inner.borrow_mut().t.lookup(iova.as_u64()), Ok(Some(_)));
        space.unlink_with(offset, size, unmap, is_mapped)
    }

    fn free<St: SpaceState>(&self, mut space: IovaSpace<St>) -> Result<(), MapError> {
        let mut i = self.inner.borrow_mut();
        self.own(&i, &space)?;
        let base = space.iova_base().as_u64();
        let linked = space.linked_bytes();
        let n = self.release(&mut i, base, space.reserved_len())?;
        i.spaces.remove(&base);
        space.clear_links();
        if linked > 0 || n > 0 {
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
        self.own(&i, &space)?;
        let base = space.iova_base().as_u64();
        self.release(&mut i, base, space.reserved_len())?;
        i.spaces.remove(&base);
        space.clear_links();
        Ok(())
    }

    fn map_phys(
        &self,
        phys: PhysRange,
        dir: DataDirection,
        _attrs: Attrs,
    ) -> Result<DmaRange, MapError> {
        let pad = phys.addr().page_offset(G);
        let (_, p, len) = granule_span(pad, phys)?;
        let mut i = self.inner.borrow_mut();
        let base = self.allocate(&mut i, len)?;
        if let Err(e) = i.t.map(base, p, len, perm_for(dir)) {
            let _ = i.alloc.free(DmaAddr::new(base), len);
            return Err(e);
        }
        i.stats.maps = i.stats.maps.saturating_add(1);
        i.singles.insert(base, (len, pad, phys.len()));
        if self.cfg.caching_mode {
            self.invalidate(&mut i, base, len);
        }
        // base + pad + len <= 2^aw: the allocator handed out [base, base + len).
        Ok(DmaRange::new(base.saturating_add(pad), phys.len()))
    }

    fn unmap_phys(
        &self,
        dma: DmaRange,
        _dir: DataDirection,
        _attrs: Attrs,
    ) -> Result<(), MapError> {
        let base = dma.addr().as_u64() & !G.mask();
        let pad = dma.addr().as_u64() & G.mask();
        let mut i = self.inner.borrow_mut();
        let not_mapped = MapError::NotMapped {
            dma: dma.addr().as_u64(),
            len: dma.len(),
        };
        let Some(&(len, p, size)) = i.singles.get(&base) else {
            return Err(not_mapped);
        };
        if (p, size) != (pad, dma.len()) {
            return Err(not_mapped);
        }
        self.release(&mut i, base, len)?;
        i.singles.remove(&base);
        Ok(())
    }
}
