//! The list entry point: [`map_into`] / [`map`], the logic of the kernel's
//! `blk_rq_dma_map_iter_start()` (`block/blk-mq-dma.c`) as "classify into a plan, then
//! run one [`MapStream`](super::stream)".

use super::mapping::Mapping;
use super::stream::{Coalesce, Keep, MapStream, StreamOptions};
use super::{Attrs, DataDirection, DmaMapper, MapError, P2pClassifier, P2pMapType};
use crate::addr::{Dma, PageSize, Phys};
use crate::range::PhysRange;
use crate::sink::RangeSink;
use crate::view::RangeView;

/// Maps one I/O and writes its DMA ranges into `sink` (cleared first): the allocation-free
/// list entry point, a thin layer over [`MapStream`].
///
/// Steps, as `blk_rq_dma_map_iter_start()`:
/// 1. **classify** the whole list into a plan (one pass, nothing mapped): range 0
///    decides the P2P kind for the I/O; a range of another kind is
///    [`MapError::MixedP2p`] (with its index), `NotSupported` is
///    [`MapError::P2pNotSupported`]; the same pass checks [`merge_boundary_ok`](super::merge_boundary_ok);
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
