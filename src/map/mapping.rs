//! The per-I/O entry point: [`map_into`] / [`map`] and the [`Mapping`] they return, the
//! logic of the kernel's `blk_rq_dma_map_iter_start()` / `blk_rq_dma_unmap()`
//! (`block/blk-mq-dma.c`).

use core::fmt;

use super::{
    Attrs, DataDirection, DmaMapper, IovaSpace, MapError, P2pClassifier, P2pMapType, SyncError,
    Synced,
};
use crate::addr::{Dma, DmaAddr, PageSize, Phys};
use crate::range::DmaRange;
use crate::sink::RangeSink;
use crate::view::RangeView;

/// Whether `phys` obeys the merge-boundary rule for `granule`: every segment but the first
/// starts on a granule boundary and every segment but the last ends on one (the kernel's
/// `!(req_phys_gap_mask(req) & dma_get_merge_boundary(dev))`). Only then can the segments
/// be linked into one contiguous IOVA range.
///
/// ```
/// use physvec::map::merge_boundary_ok;
/// use physvec::{PageSize, PhysRange, RangeView};
/// let ok = [PhysRange::new(0x1800, 0x800), PhysRange::new(0x5000, 0x1000), PhysRange::new(0x9000, 0x10)];
/// assert!(merge_boundary_ok(RangeView::full(&ok)?, PageSize::SIZE_4K));
/// let gap = [PhysRange::new(0x1000, 0x800), PhysRange::new(0x5000, 0x1000)];
/// assert!(!merge_boundary_ok(RangeView::full(&gap)?, PageSize::SIZE_4K));
/// # Ok::<(), physvec::ViewError>(())
/// ```
pub fn merge_boundary_ok(phys: RangeView<'_, Phys>, granule: PageSize) -> bool {
    let n = phys.segment_count();
    phys.iter().enumerate().all(|(i, r)| {
        let start_ok = i == 0 || r.addr().is_aligned(granule);
        let end_ok = i + 1 == n || r.end_u64().map_or(true, |e| e & granule.mask() == 0);
        start_ok && end_ok
    })
}

/// How a [`Mapping`] reached the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MappingKind {
    /// One IOVA reservation, every range linked, one sync: a single DMA range.
    Iova,
    /// One [`DmaMapper::map_phys`] per physical range.
    PerRange,
    /// P2P bus addresses: the mapper was bypassed, nothing to unmap.
    BusAddr,
}

enum State {
    Iova(IovaSpace<Synced>),
    PerRange,
    BusAddr,
    Done,
}

/// The DMA side of one I/O: the device-visible ranges and what must be undone.
///
/// Holds the output sink `K` (a [`DmaVec`](crate::DmaVec) from [`map`], or any
/// [`RangeSink`] such as a [`DmaArray`](crate::DmaArray) from [`map_into`], which never
/// allocates). Unmaps exactly what was mapped, either explicitly with
/// [`Mapping::unmap`] (reports errors) or on drop (ignores them).
///
/// # Invariants
/// `dma()` is non-empty; its ranges are live in the mapper until unmap/drop; their total
/// length equals the input's.
#[must_use = "dropping a Mapping unmaps it immediately"]
pub struct Mapping<'m, M: DmaMapper, K: RangeSink<Dma>> {
    mapper: &'m M,
    dma: K,
    state: State,
    dir: DataDirection,
    attrs: Attrs,
    p2p: P2pMapType,
    syncs: u32,
}

impl<M: DmaMapper, K: RangeSink<Dma>> fmt::Debug for Mapping<'_, M, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapping")
            .field("kind", &self.kind())
            .field("dma", &self.dma.ranges())
            .field("dir", &self.dir)
            .field("attrs", &self.attrs)
            .field("p2p", &self.p2p)
            .finish()
    }
}

impl<M: DmaMapper, K: RangeSink<Dma>> Mapping<'_, M, K> {
    /// The device-visible ranges, in transfer order.
    pub fn dma(&self) -> &[DmaRange] {
        self.dma.ranges()
    }

    /// The output sink (read-only: its ranges must stay as mapped).
    pub fn sink(&self) -> &K {
        &self.dma
    }

    /// How the I/O was mapped.
    pub fn kind(&self) -> MappingKind {
        match self.state {
            State::Iova(_) => MappingKind::Iova,
            State::BusAddr => MappingKind::BusAddr,
            State::PerRange | State::Done => MappingKind::PerRange,
        }
    }

    /// Whether the I/O became one contiguous IOVA range (`blk_rq_dma_map_coalesce`).
    pub fn is_coalesced(&self) -> bool {
        matches!(self.state, State::Iova(_))
    }

    /// The P2P kind of the I/O.
    pub fn p2p(&self) -> P2pMapType {
        self.p2p
    }

    /// The transfer direction.
    pub fn direction(&self) -> DataDirection {
        self.dir
    }

    /// The attributes used (including [`Attrs::MMIO`] for host-bridge P2P).
    pub fn attrs(&self) -> Attrs {
        self.attrs
    }

    /// `dma_iova_sync` calls made: 1 for an IOVA mapping, 0 otherwise.
    pub fn iova_syncs(&self) -> u32 {
        self.syncs
    }

    /// Total bytes mapped.
    pub fn total_len(&self) -> u64 {
        self.dma.ranges().iter().map(|r| r.len()).sum()
    }

    /// The DMA address of byte `offset` of the transfer.
    ///
    /// ```
    /// use physvec::map::{self, DataDirection, DirectMapper};
    /// use physvec::{DmaAddr, PhysRange};
    /// let d = DirectMapper::new(0x1_0000_0000, physvec::DmaMask::BITS_64);
    /// let m = map::map(&d, &[PhysRange::new(0x1000, 0x10), PhysRange::new(0x8000, 0x10)], DataDirection::ToDevice)?;
    /// assert_eq!(m.dma_addr_at(0x14), Some(DmaAddr::new(0x1_0000_8004)));
    /// # Ok::<(), physvec::map::MapError>(())
    /// ```
    pub fn dma_addr_at(&self, offset: u64) -> Option<DmaAddr> {
        RangeView::full(self.dma.ranges()).ok()?.addr_at(offset)
    }

    /// Unmaps everything, reporting the first error (the rest is still unmapped).
    ///
    /// # Errors
    /// Whatever the mapper's `destroy` / `unmap_phys` report.
    pub fn unmap(mut self) -> Result<(), MapError> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), MapError> {
        match core::mem::replace(&mut self.state, State::Done) {
            State::Iova(space) => self.mapper.destroy(space, self.dir, self.attrs),
            State::PerRange if !self.mapper.need_unmap() => Ok(()),
            State::PerRange => {
                let mut result = Ok(());
                for &r in self.dma.ranges().iter().rev() {
                    if let Err(e) = self.mapper.unmap_phys(r, self.dir, self.attrs) {
                        result = result.and(Err(e));
                    }
                }
                result
            }
            State::BusAddr | State::Done => Ok(()),
        }
    }
}

impl<M: DmaMapper, K: RangeSink<Dma>> Drop for Mapping<'_, M, K> {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

/// Maps one I/O and writes its DMA ranges into `sink` (cleared first): the allocation-free
/// entry point.
///
/// Steps, as `blk_rq_dma_map_iter_start()`:
/// 1. classify every range with `p2p`; range 0 decides the kind for the I/O; a range of
///    another kind is [`MapError::MixedP2p`], `NotSupported` is
///    [`MapError::P2pNotSupported`]; `BusAddr` ranges become `phys + bus_offset` without
///    touching the mapper; `ThruHostBridge` adds [`Attrs::MMIO`];
/// 2. if the ranges obey [`merge_boundary_ok`] and the mapper reserves IOVA space: link
///    every range, sync once, one DMA range;
/// 3. otherwise one [`DmaMapper::map_phys`] per range.
///
/// A failure at any step undoes everything already linked, reserved or mapped.
///
/// # Errors
/// [`MapError::Empty`], [`MapError::TooManySegments`] (checked before anything is
/// mapped), the P2P errors above, and whatever the mapper reports.
///
/// # Examples
/// ```
/// use physvec::map::{map_into, Attrs, DataDirection, DirectMapper, NoP2p};
/// use physvec::{DmaArray, DmaRange, PhysRange, RangeView};
/// let d = DirectMapper::new(0, physvec::DmaMask::BITS_32);
/// let phys = [PhysRange::new(0x1000, 0x200), PhysRange::new(0x3000, 0x200)];
/// let m = map_into(&d, RangeView::full(&phys)?, DataDirection::FromDevice, Attrs::empty(), &NoP2p, DmaArray::<4>::new())?;
/// assert_eq!(m.dma(), [DmaRange::new(0x1000, 0x200), DmaRange::new(0x3000, 0x200)]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn map_into<'m, M, K, C>(
    mapper: &'m M,
    phys: RangeView<'_, Phys>,
    dir: DataDirection,
    attrs: Attrs,
    p2p: &C,
    mut sink: K,
) -> Result<Mapping<'m, M, K>, MapError>
where
    M: DmaMapper,
    K: RangeSink<Dma>,
    C: P2pClassifier + ?Sized,
{
    let first = phys.first().ok_or(MapError::Empty)?;
    sink.truncate_ranges(0);
    let n = phys.segment_count();
    let granule = mapper.granule();
    let gmask = granule.mask();

    // 1. One P2P kind per I/O, decided by range 0; in the same pass, the merge-boundary
    // rule (`merge_boundary_ok`) for step 2.
    //
    // Fused with it, when it cannot be observed: the bus addresses of a `BusAddr` I/O,
    // and (for a mapper whose `map_phys` holds nothing, `need_unmap() == false`) the
    // per-range mapping of step 3. Both only when the sink has room for every range, so
    // `TooManySegments` cannot arise; the first failure is kept and reported after the
    // classification errors, with the sink holding the ranges before it, exactly as the
    // separate passes leave it.
    let kind = p2p.map_type(first);
    let capacity = sink.remaining_capacity();
    let room = capacity >= n;
    let bus = room && matches!(kind, P2pMapType::BusAddr { .. });
    let attrs1 = if kind == P2pMapType::ThruHostBridge {
        attrs | Attrs::MMIO
    } else {
        attrs
    };
    let speculate = room && !bus && !mapper.need_unmap();
    let mut mapped: Result<(), MapError> = Ok(());
    let mut merge_ok = true;
    for (index, r) in phys.iter().enumerate() {
        let k = if index == 0 { kind } else { p2p.map_type(r) };
        if k == P2pMapType::NotSupported {
            sink.truncate_ranges(0);
            return Err(p2p_not_supported(index, r));
        }
        if !k.same_kind(kind) {
            sink.truncate_ranges(0);
            return Err(MapError::MixedP2p { index });
        }
        let start_ok = index == 0 || r.addr().as_u64() & gmask == 0;
        let end_ok = index + 1 == n || r.end_u64().map_or(true, |e| e & gmask == 0);
        merge_ok &= start_ok & end_ok;
        if mapped.is_ok() && (bus || speculate) {
            if let P2pMapType::BusAddr { bus_offset } = k {
                // `bus`: this range's own bus offset.
                mapped = bus_range(r, bus_offset).and_then(|d| push(&mut sink, d));
            } else if speculate {
                mapped = mapper
                    .map_phys(r, dir, attrs1)
                    .and_then(|d| push(&mut sink, d));
            }
        }
    }
    let mut mapping = Mapping {
        mapper,
        dma: sink,
        state: State::Done,
        dir,
        attrs,
        p2p: kind,
        syncs: 0,
    };
    if bus {
        mapped?;
        mapping.state = State::BusAddr;
        return Ok(mapping);
    }
    if matches!(kind, P2pMapType::BusAddr { .. }) {
        // No room for every range.
        mapping.check_room(n)?;
        for r in phys.iter() {
            let P2pMapType::BusAddr { bus_offset } = p2p.map_type(r) else {
                return Err(MapError::MixedP2p { index: 0 });
            };
            push(&mut mapping.dma, bus_range(r, bus_offset)?)?;
        }
        mapping.state = State::BusAddr;
        return Ok(mapping);
    }
    if kind == P2pMapType::ThruHostBridge {
        mapping.attrs |= Attrs::MMIO;
    }
    let attrs = mapping.attrs;

    // 2. One IOVA range when the merge-boundary rule holds and there is IOVA space.
    if merge_ok && capacity >= 1 {
        let total = phys.len();
        let reserved = mapper.reserve(first.addr(), total);
        if speculate && !matches!(reserved, Ok(None)) {
            // The speculative per-range mappings hold nothing: drop them.
            mapping.dma.truncate_ranges(0);
        }
        if let Some(mut space) = reserved? {
            let mut offset = 0u64;
            for r in phys.iter() {
                if let Err(e) = mapper.link(&mut space, r, offset, dir, attrs) {
                    unwind_links(mapper, space, offset, dir, attrs);
                    return Err(e);
                }
                offset += r.len();
            }
            let space = match mapper.sync(space, 0, total) {
                Ok(s) => s,
                Err(SyncError { space, error }) => {
                    unwind_links(mapper, space, offset, dir, attrs);
                    return Err(error);
                }
            };
            mapping.syncs = 1;
            let range = space.dma_range();
            // Set the state first so that a failing push still tears the space down.
            mapping.state = State::Iova(space);
            push(&mut mapping.dma, range)?;
            return Ok(mapping);
        }
    }

    // 3. Per-range fallback.
    mapping.state = State::PerRange;
    if speculate {
        // Done in step 1 (`room` holds, so `check_room` would pass).
        mapped?;
        return Ok(mapping);
    }
    mapping.check_room(n)?;
    for r in phys.iter() {
        let d = mapper.map_phys(r, dir, attrs)?; // `mapping` drop unmaps the ones before
        if let Err(e) = push(&mut mapping.dma, d) {
            let _ = mapper.unmap_phys(d, dir, attrs);
            return Err(e);
        }
    }
    Ok(mapping)
}

impl<M: DmaMapper, K: RangeSink<Dma>> Mapping<'_, M, K> {
    fn check_room(&self, needed: usize) -> Result<(), MapError> {
        let capacity = self.dma.remaining_capacity();
        if capacity < needed {
            return Err(MapError::TooManySegments { needed, capacity });
        }
        Ok(())
    }
}

#[cold]
#[inline(never)]
fn p2p_not_supported(index: usize, r: crate::range::PhysRange) -> MapError {
    MapError::P2pNotSupported {
        index,
        phys: r.addr().as_u64(),
    }
}

/// `phys + bus_offset` (`PCI_P2PDMA_MAP_BUS_ADDR`).
#[inline]
fn bus_range(r: crate::range::PhysRange, bus_offset: u64) -> Result<DmaRange, MapError> {
    DmaRange::try_new(r.addr().as_u64().wrapping_add(bus_offset), r.len()).map_err(|_| {
        MapError::AddressOverflow {
            addr: r.addr().as_u64(),
            len: r.len(),
        }
    })
}

#[inline]
fn push<K: RangeSink<Dma>>(sink: &mut K, r: DmaRange) -> Result<(), MapError> {
    sink.push_range(r).map_err(|_| MapError::TooManySegments {
        needed: sink.ranges().len() + 1,
        capacity: 0,
    })
}

/// Undoes a partly linked reservation: unlink the prefix `[0, linked)`, then free.
fn unwind_links<M: DmaMapper>(
    mapper: &M,
    mut space: IovaSpace,
    linked: u64,
    dir: DataDirection,
    attrs: Attrs,
) {
    if linked > 0 {
        let _ = mapper.unlink(&mut space, 0, linked, dir, attrs);
    }
    let _ = mapper.free(space);
}

/// Maps `phys` for `dir` with no attributes and no P2P, into a [`DmaVec`](crate::DmaVec).
///
/// # Errors
/// As [`map_into`]; [`MapError::TotalOverflow`] when the lengths add up past `u64::MAX`.
///
/// # Examples
/// ```
/// use physvec::map::{self, DataDirection, SoftIommu};
/// use physvec::PhysRange;
/// let iommu = SoftIommu::new_4k();
/// // A gap inside a granule breaks the merge-boundary rule: one DMA range per segment.
/// let m = map::map(&iommu, &[PhysRange::new(0x1000, 0x800), PhysRange::new(0x3000, 0x1000)], DataDirection::ToDevice)?;
/// assert_eq!(m.dma().len(), 2);
/// assert_eq!(m.iova_syncs(), 0);
/// # Ok::<(), physvec::map::MapError>(())
/// ```
#[cfg(feature = "alloc")]
pub fn map<'m, M: DmaMapper>(
    mapper: &'m M,
    phys: &[crate::PhysRange],
    dir: DataDirection,
) -> Result<Mapping<'m, M, crate::DmaVec>, MapError> {
    let view = RangeView::full(phys).map_err(|_| MapError::TotalOverflow)?;
    map_into(
        mapper,
        view,
        dir,
        Attrs::empty(),
        &super::NoP2p,
        crate::DmaVec::new(),
    )
}
