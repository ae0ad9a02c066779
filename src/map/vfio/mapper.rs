//! [`VfioMapper`](super::VfioMapper): registered regions (lookups without a system call) and per-I/O
//! two-step mappings ([`IoMapping`](super::IoMapping)) over a [`VfioBackend`](super::VfioBackend).
#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::vec::Vec;

use super::{VfioBackend, VfioError, VfioIovaConfig, VfioStats, MSI_WINDOW};
use crate::addr::{DmaAddr, PageSize, VirtAddr};
use crate::map::{DataDirection, IovaAllocator};
use crate::range::{DmaRange, VirtRange};

#[derive(Clone, Copy, Debug)]
struct Region {
    len: u64,
    iova: u64,
}

struct State {
    /// The usable IOVA space, in pieces around the interrupt window.
    allocators: Vec<IovaAllocator>,
    /// Registered regions by virtual start.
    regions: BTreeMap<u64, Region>,
    /// Every IOVA extent ever mapped, for [`VfioMapper::verify_released`](super::VfioMapper::verify_released).
    history: BTreeSet<(u64, u64)>,
    stats: VfioStats,
}

/// A VFIO type1 mapper from process-virtual memory to IOVAs, with registered regions and
/// per-I/O mappings (see the [module docs](super)).
///
/// Methods take `&self`; the bookkeeping sits in a `RefCell`, so the mapper is `!Sync`:
/// one per thread or queue, or behind the caller's lock.
///
/// It takes process-virtual ranges only; a physical range is a type error:
///
/// ```compile_fail,E0308
/// # use physvec::map::vfio::*; use physvec::map::DataDirection; use physvec::*;
/// # struct Nop;
/// # // SAFETY: maps nothing.
/// # unsafe impl VfioBackend for Nop {
/// #     unsafe fn map_dma(&self, _: VirtAddr, _: DmaAddr, _: u64, _: DataDirection) -> Result<(), VfioError> { Ok(()) }
/// #     fn unmap_dma(&self, _: DmaAddr, _: u64) -> Result<(), VfioError> { Ok(()) }
/// # }
/// let m = VfioMapper::new(Nop, VfioIovaConfig::new(39)).unwrap();
/// let _ = m.translate(PhysRange::new(0x1000, 0x1000)); // expected `Range<Virt>`
/// ```
pub struct VfioMapper<B: VfioBackend> {
    backend: B,
    config: VfioIovaConfig,
    state: RefCell<State>,
    lookups: Cell<u64>,
}

impl<B: VfioBackend> fmt::Debug for VfioMapper<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VfioMapper")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Splits `[first, last]` around the interrupt window into allocators.
fn allocators(config: &VfioIovaConfig) -> Result<Vec<IovaAllocator>, VfioError> {
    let g = config.granule.get();
    let last = config.last_iova();
    let mut out = Vec::new();
    let mut pieces = Vec::new();
    // Never IOVA 0: start at one granule.
    if last < MSI_WINDOW.0 {
        pieces.push((g, last));
    } else {
        pieces.push((g, MSI_WINDOW.0.saturating_sub(1)));
        if last > MSI_WINDOW.1 {
            pieces.push((MSI_WINDOW.1.saturating_add(1), last));
        }
    }
    for (first, last) in pieces {
        if let Ok(a) = IovaAllocator::new(config.granule, DmaAddr::new(first), DmaAddr::new(last)) {
            out.push(a);
        }
    }
    if out.is_empty() {
        return Err(VfioError::InvalidConfig {
            what: "the IOMMU width leaves no IOVA space above 0",
        });
    }
    Ok(out)
}

/// Distinct IOVA extents remembered for [`VfioMapper::verify_released`](super::VfioMapper::verify_released); beyond this the
/// kernel-side check covers the first ones only (the books are always checked).
const HISTORY_MAX: usize = 1024;

fn end_of(addr: u64, len: u64) -> Result<u64, VfioError> {
    addr.checked_add(len)
        .ok_or(VfioError::AddressOverflow { addr, len })
}

impl<B: VfioBackend> VfioMapper<B> {
    /// A mapper over `backend` (a VFIO type1 container whose IOMMU is set).
    ///
    /// # Errors
    /// [`VfioError::InvalidConfig`](super::VfioError::InvalidConfig) when the width leaves no IOVA space.
    ///
    /// ```
    /// # use physvec::map::vfio::*; use physvec::map::DataDirection; use physvec::*;
    /// # struct Nop;
    /// # // SAFETY: maps nothing.
    /// # unsafe impl VfioBackend for Nop {
    /// #     unsafe fn map_dma(&self, _: VirtAddr, _: DmaAddr, _: u64, _: DataDirection) -> Result<(), VfioError> { Ok(()) }
    /// #     fn unmap_dma(&self, _: DmaAddr, _: u64) -> Result<(), VfioError> { Ok(()) }
    /// # }
    /// assert!(VfioMapper::new(Nop, VfioIovaConfig::new(12)).is_err());
    /// assert!(VfioMapper::new(Nop, VfioIovaConfig::new(39)).is_ok());
    /// ```
    pub fn new(backend: B, config: VfioIovaConfig) -> Result<Self, VfioError> {
        Ok(VfioMapper {
            backend,
            config,
            state: RefCell::new(State {
                allocators: allocators(&config)?,
                regions: BTreeMap::new(),
                history: BTreeSet::new(),
                stats: VfioStats::default(),
            }),
            lookups: Cell::new(0),
        })
    }

    /// The backend (to reach the container for other ioctls).
    ///
    /// ```
    /// # use physvec::map::vfio::*; use physvec::map::DataDirection; use physvec::*;
    /// # #[derive(Debug)] struct Nop;
    /// # // SAFETY: maps nothing.
    /// # unsafe impl VfioBackend for Nop {
    /// #     unsafe fn map_dma(&self, _: VirtAddr, _: DmaAddr, _: u64, _: DataDirection) -> Result<(), VfioError> { Ok(()) }
    /// #     fn unmap_dma(&self, _: DmaAddr, _: u64) -> Result<(), VfioError> { Ok(()) }
    /// # }
    /// let m = VfioMapper::new(Nop, VfioIovaConfig::new(39))?;
    /// let _nop: &Nop = m.backend();
    /// # Ok::<(), VfioError>(())
    /// ```
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// A snapshot of the counters.
    ///
    /// ```
    /// # use physvec::map::vfio::*; use physvec::map::DataDirection; use physvec::*;
    /// # struct Nop;
    /// # // SAFETY: maps nothing.
    /// # unsafe impl VfioBackend for Nop {
    /// #     unsafe fn map_dma(&self, _: VirtAddr, _: DmaAddr, _: u64, _: DataDirection) -> Result<(), VfioError> { Ok(()) }
    /// #     fn unmap_dma(&self, _: DmaAddr, _: u64) -> Result<(), VfioError> { Ok(()) }
    /// # }
    /// let m = VfioMapper::new(Nop, VfioIovaConfig::new(39))?;
    /// assert_eq!(m.stats().regions, 0);
    /// # Ok::<(), VfioError>(())
    /// ```
    pub fn stats(&self) -> VfioStats {
        let mut s = self.state.borrow().stats;
        s.lookups = self.lookups.get();
        s
    }

    /// Whether nothing is mapped (no region, no per-I/O mapping) and all IOVA space is
    /// free, by the mapper's own books. [`Self::verify_released`] asks the kernel.
    ///
    /// ```
    /// # use physvec::map::vfio::*; use physvec::map::DataDirection; use physvec::*;
    /// # struct Nop;
    /// # // SAFETY: maps nothing.
    /// # unsafe impl VfioBackend for Nop {
    /// #     unsafe fn map_dma(&self, _: VirtAddr, _: DmaAddr, _: u64, _: DataDirection) -> Result<(), VfioError> { Ok(()) }
    /// #     fn unmap_dma(&self, _: DmaAddr, _: u64) -> Result<(), VfioError> { Ok(()) }
    /// # }
    /// assert!(VfioMapper::new(Nop, VfioIovaConfig::new(39))?.is_idle());
    /// # Ok::<(), VfioError>(())
    /// ```
    pub fn is_idle(&self) -> bool {
        let st = self.state.borrow();
        st.regions.is_empty()
            && st.stats.live_io == 0
            && st.allocators.iter().all(IovaAllocator::is_pristine)
    }

    fn alloc_iova(&self, len: u64) -> Result<u64, VfioError> {
        // Large regions get 2 MiB-aligned IOVAs so the IOMMU can use large leaves.
        let align = if len >= PageSize::SIZE_2M.get() {
            PageSize::SIZE_2M
        } else {
            self.config.granule
        };
        let mut st = self.state.borrow_mut();
        st.allocators
            .iter_mut()
            .find_map(|a| a.alloc(len, align))
            .map(DmaAddr::as_u64)
            .ok_or(VfioError::IovaExhausted { len })
    }

    fn free_iova(&self, iova: u64, len: u64) {
        let mut st = self.state.borrow_mut();
        for a in st.allocators.iter_mut() {
            if iova >= a.first().as_u64() && iova <= a.last().as_u64() {
                // The extent came from this allocator; a failure would be a bookkeeping
                // bug that leaves the space reserved, never a wrong reuse.
                let _ = a.free(DmaAddr::new(iova), len);
                return;
            }
        }
    }

    /// One MAP_DMA, counted and remembered; on error the IOVA is freed.
    ///
    /// # Safety
    /// As [`VfioBackend::map_dma`](super::VfioBackend::map_dma).
    unsafe fn link(
        &self,
        vaddr: u64,
        iova: u64,
        len: u64,
        dir: DataDirection,
    ) -> Result<(), VfioError> {
        self.bump(|s| s.map_ioctls = s.map_ioctls.saturating_add(1));
        // SAFETY: passed on from the caller.
        unsafe {
            self.backend
                .map_dma(VirtAddr::new(vaddr), DmaAddr::new(iova), len, dir)
        }?;
        let mut st = self.state.borrow_mut();
        if st.history.len() < HISTORY_MAX {
            st.history.insert((iova, len));
        }
        Ok(())
    }

    fn unlink(&self, iova: u64, len: u64) -> Result<(), VfioError> {
        self.bump(|s| s.unmap_ioctls = s.unmap_ioctls.saturating_add(1));
        self.backend.unmap_dma(DmaAddr::new(iova), len)
    }

    fn bump(&self, f: impl FnOnce(&mut VfioStats)) {
        f(&mut self.state.borrow_mut().stats);
    }

    /// Registered mode: maps `region` (granule-aligned) once, with one
    /// `VFIO_IOMMU_MAP_DMA`, and returns its DMA range. Later I/O inside it is a
    /// [`Self::translate`] with no system call.
    ///
    /// # Safety
    /// The device may access the region until [`Self::unregister`]: it must stay
    /// allocated, and Rust must not hold references whose contents the device could
    /// change meanwhile (use raw pointers / volatile accesses), as
    /// [`VfioBackend::map_dma`](super::VfioBackend::map_dma) says.
    ///
    /// # Errors
    /// [`VfioError::Empty`](super::VfioError::Empty), [`VfioError::Unaligned`](super::VfioError::Unaligned), [`VfioError::AddressOverflow`](super::VfioError::AddressOverflow),
    /// [`VfioError::Overlap`](super::VfioError::Overlap), [`VfioError::IovaExhausted`](super::VfioError::IovaExhausted), [`VfioError::MapDma`](super::VfioError::MapDma).
    /// Nothing is mapped or reserved on error.
    ///
    /// See the [module example](super).
    pub unsafe fn register(
        &self,
        region: VirtRange,
        dir: DataDirection,
    ) -> Result<DmaRange, VfioError> {
        let (addr, len) = (region.addr().as_u64(), region.len());
        if len == 0 {
            return Err(VfioError::Empty);
        }
        let g = self.config.granule;
        if (addr | len) & g.mask() != 0 {
            return Err(VfioError::Unaligned {
                addr,
                len,
                granule: g.get(),
            });
        }
        let end = end_of(addr, len)?;
        {
            let st = self.state.borrow();
            let before = st.regions.range(..end).next_back();
            if before.is_some_and(|(&s, r)| s.saturating_add(r.len) > addr) {
                return Err(VfioError::Overlap { addr, len });
            }
        }
        let iova = self.alloc_iova(len)?;
        // SAFETY: the caller upholds `register`'s contract, which is `map_dma`'s.
        if let Err(e) = unsafe { self.link(addr, iova, len, dir) } {
            self.free_iova(iova, len);
            return Err(e);
        }
        let mut st = self.state.borrow_mut();
        st.regions.insert(addr, Region { len, iova });
        st.stats.regions = st.regions.len();
        st.stats.registered_bytes = st.stats.registered_bytes.saturating_add(len);
        DmaRange::try_new(iova, len).map_err(|_| VfioError::AddressOverflow { addr: iova, len })
    }

    /// Unmaps a region [`Self::register`] mapped (the same range) and frees its IOVAs.
    ///
    /// # Errors
    /// [`VfioError::NotRegistered`](super::VfioError::NotRegistered) when `region` is not exactly a registered region;
    /// [`VfioError::UnmapDma`](super::VfioError::UnmapDma) (the region stays registered).
    ///
    /// See the [module example](super).
    pub fn unregister(&self, region: VirtRange) -> Result<(), VfioError> {
        let (addr, len) = (region.addr().as_u64(), region.len());
        let r = self
            .state
            .borrow()
            .regions
            .get(&addr)
            .copied()
            .filter(|r| r.len == len)
            .ok_or(VfioError::NotRegistered { addr, len })?;
        self.unlink(r.iova, r.len)?;
        self.free_iova(r.iova, r.len);
        let mut st = self.state.borrow_mut();
        st.regions.remove(&addr);
        st.stats.regions = st.regions.len();
        st.stats.registered_bytes = st.stats.registered_bytes.saturating_sub(len);
        Ok(())
    }

    /// Registered mode, per I/O: the DMA range of `virt`, which must lie inside one
    /// registered region. A `BTreeMap` lookup; no system call.
    ///
    /// # Errors
    /// [`VfioError::Empty`](super::VfioError::Empty), [`VfioError::AddressOverflow`](super::VfioError::AddressOverflow),
    /// [`VfioError::NotRegistered`](super::VfioError::NotRegistered).
    ///
    /// See the [module example](super).
    pub fn translate(&self, virt: VirtRange) -> Result<DmaRange, VfioError> {
        let (addr, len) = (virt.addr().as_u64(), virt.len());
        if len == 0 {
            return Err(VfioError::Empty);
        }
        let end = end_of(addr, len)?;
        let st = self.state.borrow();
        let (start, r) = st
            .regions
            .range(..=addr)
            .next_back()
            .filter(|(&s, r)| s.saturating_add(r.len) >= end)
            .ok_or(VfioError::NotRegistered { addr, len })?;
        // `start <= addr` (range bound) and the region's IOVA extent holds the offset.
        let iova = r
            .iova
            .checked_add(addr.wrapping_sub(*start))
            .ok_or(VfioError::AddressOverflow { addr, len })?;
        self.lookups.set(self.lookups.get().saturating_add(1));
        DmaRange::try_new(iova, len).map_err(|_| VfioError::AddressOverflow { addr, len })
    }

    /// [`Self::translate`] for each range of an I/O, into `out` (adjacent DMA ranges are
    /// merged).
    ///
    /// # Errors
    /// As [`Self::translate`], for the first range that fails; `out` may hold the ranges
    /// before it.
    ///
    /// ```
    /// # use physvec::map::vfio::*; use physvec::map::DataDirection; use physvec::*;
    /// # struct Nop;
    /// # // SAFETY: maps nothing.
    /// # unsafe impl VfioBackend for Nop {
    /// #     unsafe fn map_dma(&self, _: VirtAddr, _: DmaAddr, _: u64, _: DataDirection) -> Result<(), VfioError> { Ok(()) }
    /// #     fn unmap_dma(&self, _: DmaAddr, _: u64) -> Result<(), VfioError> { Ok(()) }
    /// # }
    /// let m = VfioMapper::new(Nop, VfioIovaConfig::new(39))?;
    /// // SAFETY: the fake backend maps nothing.
    /// let d = unsafe { m.register(VirtRange::new(0x10000, 0x4000), DataDirection::Bidirectional)? };
    /// let mut out = Vec::new();
    /// m.translate_all(&[VirtRange::new(0x10100, 0xf00), VirtRange::new(0x11000, 0x80)], &mut out)?;
    /// assert_eq!(out, [DmaRange::new(d.addr().as_u64() + 0x100, 0xf80)]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn translate_all(
        &self,
        virts: &[VirtRange],
        out: &mut Vec<DmaRange>,
    ) -> Result<(), VfioError> {
        for v in virts {
            push_merged(out, self.translate(*v)?);
        }
        Ok(())
    }

    /// Per-I/O mode: reserves IOVA space for `virts`, links each range's pages with one
    /// `VFIO_IOMMU_MAP_DMA`, and returns the device-visible ranges. Each range keeps its
    /// offset inside its page, so buffers at any byte offset work; ranges that meet on a
    /// page boundary come out as one DMA range.
    ///
    /// # Safety
    /// As [`Self::register`], until the [`IoMapping`](super::IoMapping) is unmapped or dropped.
    ///
    /// # Errors
    /// [`VfioError::Empty`](super::VfioError::Empty), [`VfioError::AddressOverflow`](super::VfioError::AddressOverflow),
    /// [`VfioError::IovaExhausted`](super::VfioError::IovaExhausted), [`VfioError::MapDma`](super::VfioError::MapDma). Nothing stays mapped or
    /// reserved on error.
    ///
    /// See the [module example](super).
    pub unsafe fn map_io(
        &self,
        virts: &[VirtRange],
        dir: DataDirection,
    ) -> Result<IoMapping<'_, B>, VfioError> {
        let g = self.config.granule;
        // Page-aligned extents covering each range, and their total.
        let mut pages = Vec::with_capacity(virts.len());
        let mut total: u64 = 0;
        for v in virts {
            let (addr, len) = (v.addr().as_u64(), v.len());
            if len == 0 {
                return Err(VfioError::Empty);
            }
            let end = end_of(addr, len)?;
            let start = addr & !g.mask();
            let stop = end
                .checked_add(g.mask())
                .ok_or(VfioError::AddressOverflow { addr, len })?
                & !g.mask();
            // stop >= end > start: no wrap.
            let span = stop.wrapping_sub(start);
            total = total
                .checked_add(span)
                .ok_or(VfioError::AddressOverflow { addr, len })?;
            pages.push((start, span, addr.wrapping_sub(start), len));
        }
        if total == 0 {
            return Err(VfioError::Empty);
        }
        let base = self.alloc_iova(total)?;
        let mut io = IoMapping {
            mapper: self,
            base,
            reserved: total,
            linked: 0,
            dma: Vec::with_capacity(virts.len()),
        };
        for (start, span, off, len) in pages {
            // `linked + span <= total`, and `base + total` fits (the allocator gave it).
            let iova = base.wrapping_add(io.linked);
            // SAFETY: the caller upholds `map_io`'s contract, which is `map_dma`'s.
            unsafe { self.link(start, iova, span, dir) }?; // `io`'s drop unwinds
            io.linked = io.linked.wrapping_add(span);
            let dma = DmaRange::try_new(iova.wrapping_add(off), len)
                .map_err(|_| VfioError::AddressOverflow { addr: iova, len })?;
            push_merged(&mut io.dma, dma);
        }
        self.bump(|s| s.live_io = s.live_io.saturating_add(1));
        io.linked_all();
        Ok(io)
    }

    /// Checks that nothing this mapper ever mapped is still mapped: its books are empty,
    /// and for every IOVA extent it has mapped (the first 1024 distinct ones), the
    /// kernel's `VFIO_IOMMU_UNMAP_DMA` finds nothing to unmap there. Run it after
    /// teardown.
    ///
    /// # Errors
    /// [`VfioError::StillMapped`](super::VfioError::StillMapped) for the first extent still live (a leak, now unmapped).
    ///
    /// ```
    /// # use physvec::map::vfio::*; use physvec::map::DataDirection; use physvec::*;
    /// # struct Nop;
    /// # // SAFETY: maps nothing.
    /// # unsafe impl VfioBackend for Nop {
    /// #     unsafe fn map_dma(&self, _: VirtAddr, _: DmaAddr, _: u64, _: DataDirection) -> Result<(), VfioError> { Ok(()) }
    /// #     fn unmap_dma(&self, i: DmaAddr, l: u64) -> Result<(), VfioError> {
    /// #         Err(VfioError::UnmapDma { iova: i.as_u64(), len: l, errno: None }) } // nothing there
    /// # }
    /// let m = VfioMapper::new(Nop, VfioIovaConfig::new(39))?;
    /// m.verify_released()?;
    /// # Ok::<(), VfioError>(())
    /// ```
    pub fn verify_released(&self) -> Result<(), VfioError> {
        let history = {
            let st = self.state.borrow();
            if let Some(r) = st.regions.values().next() {
                return Err(VfioError::StillMapped {
                    iova: r.iova,
                    len: r.len,
                });
            }
            if st.stats.live_io != 0 {
                return Err(VfioError::StillMapped { iova: 0, len: 0 });
            }
            st.history.clone()
        };
        for (iova, len) in history {
            // Ok means the kernel unmapped the whole extent: it was still mapped.
            if self.backend.unmap_dma(DmaAddr::new(iova), len).is_ok() {
                return Err(VfioError::StillMapped { iova, len });
            }
        }
        Ok(())
    }
}

fn push_merged(out: &mut Vec<DmaRange>, r: DmaRange) {
    if let Some(last) = out.last_mut() {
        if last.end() == Some(r.addr()) {
            let merged = last
                .len()
                .checked_add(r.len())
                .and_then(|len| DmaRange::try_new(last.addr().as_u64(), len).ok());
            if let Some(m) = merged {
                *last = m;
                return;
            }
        }
    }
    out.push(r);
}

/// A per-I/O VFIO mapping from [`VfioMapper::map_io`](super::VfioMapper::map_io): the DMA ranges to put in the
/// command, unmapped (one `VFIO_IOMMU_UNMAP_DMA` for the whole reservation) and freed by
/// [`IoMapping::unmap`](super::IoMapping::unmap) or on drop.
#[must_use = "dropping the mapping unmaps it at once"]
pub struct IoMapping<'a, B: VfioBackend> {
    mapper: &'a VfioMapper<B>,
    base: u64,
    reserved: u64,
    /// Bytes linked from `base`; `u64::MAX` once counted in `live_io`.
    linked: u64,
    dma: Vec<DmaRange>,
}

impl<B: VfioBackend> fmt::Debug for IoMapping<'_, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IoMapping")
            .field("iova", &DmaAddr::new(self.base))
            .field("reserved", &self.reserved)
            .field("dma", &self.dma)
            .finish()
    }
}

impl<B: VfioBackend> IoMapping<'_, B> {
    fn linked_all(&mut self) {
        self.linked = u64::MAX;
    }

    /// The device-visible ranges, in transfer order.
    ///
    /// See the [module example](super).
    pub fn dma(&self) -> &[DmaRange] {
        &self.dma
    }

    /// The reserved IOVA extent (page-aligned, covers every range's pages).
    ///
    /// See the [module example](super).
    pub fn reservation(&self) -> DmaRange {
        DmaRange::new(self.base, self.reserved)
    }

    /// Unlinks the whole reservation with one `VFIO_IOMMU_UNMAP_DMA` and frees it.
    ///
    /// # Errors
    /// [`VfioError::UnmapDma`](super::VfioError::UnmapDma); the IOVA space is then kept reserved (never reused while
    /// the kernel may still map it).
    ///
    /// See the [module example](super).
    pub fn unmap(mut self) -> Result<(), VfioError> {
        let r = self.release();
        self.reserved = 0;
        r
    }

    fn release(&mut self) -> Result<(), VfioError> {
        if self.reserved == 0 {
            return Ok(());
        }
        let complete = self.linked == u64::MAX;
        let linked = if complete { self.reserved } else { self.linked };
        let m = self.mapper;
        if complete {
            m.bump(|s| s.live_io = s.live_io.saturating_sub(1));
        }
        if linked != 0 {
            m.unlink(self.base, linked)?;
        }
        m.free_iova(self.base, self.reserved);
        Ok(())
    }
}

impl<B: VfioBackend> Drop for IoMapping<'_, B> {
    fn drop(&mut self) {
        // Errors cannot be reported from drop; `unmap` reports them.
        let _ = self.release();
        self.reserved = 0;
    }
}

#[cfg(test)]
mod tests;
