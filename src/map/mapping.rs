//! The per-I/O entry point: [`map_into`] / [`map`] and the [`Mapping`] they return, the
//! logic of the kernel's `blk_rq_dma_map_iter_start()` / `blk_rq_dma_unmap()`
//! (`block/blk-mq-dma.c`).

use core::fmt;

use super::stream::{Coalesce, Keep, MapStream, StreamOptions};
use super::{
    Attrs, DataDirection, DmaMapper, IovaSpace, Linking, MapError, P2pClassifier, P2pMapType,
    Synced,
};
use crate::addr::{Dma, DmaAddr, PageSize, Phys};
use crate::range::{DmaRange, PhysRange};
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
        let end_ok =
            i.saturating_add(1) == n || r.end_u64().map_or(true, |e| e & granule.mask() == 0);
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

pub(super) enum State {
    /// A reservation being linked by a [`MapStream`].
    Linking(IovaSpace<Linking>),
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
/// From [`map`] / [`map_into`]: `dma()` is non-empty; its ranges are live in the mapper
/// until unmap/drop; their total length equals the input's. From a
/// [`MapStream`] started with [`Keep::WhenNeeded`], `dma()` holds only what unmapping
/// needs (nothing for IOVA, bus addresses or a mapper without unmap work); the
/// teardown state is then the reservation alone.
#[must_use = "dropping a Mapping unmaps it immediately"]
pub struct Mapping<'m, M: DmaMapper, K: RangeSink<Dma>> {
    pub(super) mapper: &'m M,
    pub(super) dma: K,
    pub(super) state: State,
    pub(super) dir: DataDirection,
    pub(super) attrs: Attrs,
    pub(super) p2p: P2pMapType,
    pub(super) syncs: u32,
    /// Bytes mapped.
    pub(super) total: u64,
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

impl<'m, M: DmaMapper, K: RangeSink<Dma>> Mapping<'m, M, K> {
    #[inline]
    pub(super) fn new(
        mapper: &'m M,
        dma: K,
        state: State,
        dir: DataDirection,
        attrs: Attrs,
        p2p: P2pMapType,
    ) -> Self {
        Self {
            mapper,
            dma,
            state,
            dir,
            attrs,
            p2p,
            syncs: 0,
            total: 0,
        }
    }
}

impl<M: DmaMapper, K: RangeSink<Dma>> Mapping<'_, M, K> {
    /// The device-visible ranges, in transfer order: the coalesced view (one range for
    /// an IOVA mapping). Device segment limits are not applied here; split with
    /// [`DmaConstraints::segments`](crate::DmaConstraints::segments) where the consumer
    /// has segments (SGL, scatterlist, SGEs).
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
            State::Iova(_) | State::Linking(_) => MappingKind::Iova,
            State::BusAddr => MappingKind::BusAddr,
            State::PerRange | State::Done => MappingKind::PerRange,
        }
    }

    /// Whether the I/O became one contiguous IOVA range (`blk_rq_dma_map_coalesce`).
    pub fn is_coalesced(&self) -> bool {
        matches!(self.state, State::Iova(_) | State::Linking(_))
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
        self.total
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
    #[inline]
    pub fn unmap(mut self) -> Result<(), MapError> {
        self.teardown()
    }

    #[inline]
    pub(super) fn teardown(&mut self) -> Result<(), MapError> {
        match core::mem::replace(&mut self.state, State::Done) {
            State::Iova(space) => self.mapper.destroy(space, self.dir, self.attrs),
            State::Linking(space) => self.mapper.destroy(space, self.dir, self.attrs),
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
/// list entry point, a thin layer over [`MapStream`].
///
/// Steps, as `blk_rq_dma_map_iter_start()`:
/// 1. **classify** the whole list into a plan (one pass, nothing mapped): range 0
///    decides the P2P kind for the I/O; a range of another kind is
///    [`MapError::MixedP2p`] (with its index), `NotSupported` is
///    [`MapError::P2pNotSupported`]; the same pass checks [`merge_boundary_ok`];
/// 2. **execute** the plan with one [`MapStream`]: one IOVA range (reserve, link every
///    range, one sync) when the merge-boundary rule holds and the mapper has IOVA space,
///    otherwise one [`DmaMapper::map_phys`] per range, or `phys + bus_offset` for a
///    [`P2pMapType::BusAddr`] I/O (the mapper is not called; `ThruHostBridge` adds
///    [`Attrs::MMIO`]).
///
/// A failure at any step undoes everything already linked, reserved or mapped.
///
/// The DMA ranges are the coalesced device view: an IOVA mapping is one range however
/// many segments the physical list has. Device segment limits (`max_segment_size`,
/// segment boundary) are not applied here; consumers that need segments split the view
/// (see [`crate::nvme::encode_sgl`] and [`crate::sg`]).
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
    sink: K,
) -> Result<Mapping<'m, M, K>, MapError>
where
    M: DmaMapper,
    K: RangeSink<Dma>,
    C: P2pClassifier + ?Sized,
{
    let plan = Plan::classify(phys, mapper.granule(), p2p)?;
    let capacity = sink.remaining_capacity();
    let n = phys.segment_count();
    // An IOVA mapping needs one slot; without it the plan is per range, which then
    // reports every range missing (before anything is mapped).
    let coalesce = if plan.merge_ok && capacity >= 1 {
        Coalesce::IfPossible
    } else {
        Coalesce::Never
    };
    let opts = StreamOptions::new(dir)
        .with_attrs(attrs)
        .with_coalesce(coalesce)
        .with_keep(Keep::All);
    let mut stream = MapStream::start(mapper, p2p, plan.first, phys.len(), opts, sink)?;
    if !stream.is_coalesced() && capacity < n {
        return Err(MapError::TooManySegments {
            needed: n,
            capacity,
        });
    }
    for r in phys.iter() {
        stream.push(r)?;
    }
    stream.finish()
}

/// What [`map_into`] learns about an I/O before mapping any of it.
struct Plan {
    first: PhysRange,
    merge_ok: bool,
}

impl Plan {
    /// One pass over `phys`: the P2P errors in range order and the merge-boundary rule.
    #[inline]
    fn classify<C: P2pClassifier + ?Sized>(
        phys: RangeView<'_, Phys>,
        granule: PageSize,
        p2p: &C,
    ) -> Result<Plan, MapError> {
        let first = phys.first().ok_or(MapError::Empty)?;
        let kind = p2p.map_type(first);
        let n = phys.segment_count();
        let gmask = granule.mask();
        let mut merge_ok = true;
        for (index, r) in phys.iter().enumerate() {
            let k = p2p.map_type(r);
            if k == P2pMapType::NotSupported {
                return Err(MapError::P2pNotSupported {
                    index,
                    phys: r.addr().as_u64(),
                });
            }
            if !k.same_kind(kind) {
                return Err(MapError::MixedP2p { index });
            }
            let start_ok = index == 0 || r.addr().as_u64() & gmask == 0;
            let end_ok = index.wrapping_add(1) == n || r.end_u64().map_or(true, |e| e & gmask == 0);
            merge_ok &= start_ok & end_ok;
        }
        Ok(Plan { first, merge_ok })
    }
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
