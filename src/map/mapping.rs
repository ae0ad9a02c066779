//! [`Mapping`]: one mapped I/O as the device sees it, and what its release undoes (the
//! kernel's `blk_rq_dma_unmap()`); the merge-boundary rule ([`merge_boundary_ok`]).
//! The entry points that produce it are in `list.rs` ([`map_into`](super::map_into),
//! [`map`](super::map)) and `stream.rs`.

use core::fmt;

use super::{Attrs, DataDirection, DmaMapper, IovaSpace, Linking, MapError, P2pMapType, Synced};
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
    /// A reservation being linked by a [`MapStream`](super::MapStream).
    Linking(IovaSpace<Linking>),
    Iova(IovaSpace<Synced>),
    PerRange,
    BusAddr,
    Done,
}

/// The DMA side of one I/O: the device-visible ranges and what must be undone.
///
/// Holds the output sink `K` (a [`DmaVec`](crate::DmaVec) from [`map`](super::map), or any
/// [`RangeSink`] such as a [`DmaArray`](crate::DmaArray) from [`map_into`](super::map_into), which never
/// allocates). Unmaps exactly what was mapped, either explicitly with
/// [`Mapping::unmap`] (reports errors) or on drop (ignores them).
///
/// # Invariants
/// From [`map`](super::map) / [`map_into`](super::map_into): `dma()` is non-empty; its ranges are live in the mapper
/// until unmap/drop; their total length equals the input's. From a
/// [`MapStream`](super::MapStream) started with [`Keep::WhenNeeded`](super::Keep::WhenNeeded), `dma()` holds only what unmapping
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
