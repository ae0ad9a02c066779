//! The physvec pipeline for one NVMe I/O, the way a driver would run it since the
//! streaming rework (issue 13): one [`MapStream`] over the request's pages (IOVA: reserve
//! once, link as pages arrive, sync once; direct: `phys + offset` per page), each DMA
//! range going straight into a `PrpWriter` ([`map_prp`]) or an `SglWriter`
//! ([`map_sgl`]): no physical or DMA list in between, no allocation. The request's
//! preallocated DMA storage receives only what unmapping needs (per-range mappings of a
//! mapper with unmap work; nothing in these workloads). Completion unmaps.

use physvec::map::{Coalesce, DataDirection, DmaMapper, MapStream, P2pProviders, StreamOptions};
use physvec::nvme::{
    map_prp, map_sgl, MemoryPageSize, PrpListPage, SglDescriptor, SglOptions, SglSegmentPage,
};
use physvec::{DmaAddr, DmaVec, PageSize, PhysRange, RangeView};

use crate::workloads::Dptr;

/// Bus address of the physvec queue's PRP list pages.
pub const PRP_PAGES_BUS: u64 = 0x7d00_0000;
/// Bus address of its SGL segment pages.
pub const SGL_PAGES_BUS: u64 = 0x7c00_0000;
/// DMA ranges the per-request storage holds (the NVMe driver's 128 segments).
pub const REQUEST_RANGES: usize = 128;

/// What the block layer hands the driver with a request: its pages, its byte count
/// (`blk_rq_payload_bytes`) and whether its inner boundaries are granule aligned (the
/// request's physical gap mask, kept as bios are merged: `req_phys_gap_mask`).
#[derive(Clone, Copy)]
pub struct Req<'a> {
    pub phys: &'a [PhysRange],
    pub total: u64,
    pub mergeable: bool,
    /// Physically contiguous runs (`blk_rq_nr_phys_segments` with NVMe's limits).
    pub segments: u64,
}

impl<'a> Req<'a> {
    /// The request for `phys` (computed once, outside any timed loop, as the block layer
    /// does while building the request).
    pub fn new(phys: &'a [PhysRange]) -> Self {
        let total = phys.iter().map(|r| r.len()).sum();
        let mergeable = RangeView::full(phys)
            .is_ok_and(|v| physvec::map::merge_boundary_ok(v, PageSize::SIZE_4K));
        let segments = 1 + phys
            .windows(2)
            .filter(|w| !w[0].is_contiguous_with(w[1]))
            .count() as u64;
        Self {
            phys,
            total,
            mergeable,
            segments,
        }
    }
}

/// One queue: the mapper, the P2P providers, the block limits, the list-page pools, and
/// the per-request DMA range storage (allocated once, like the request PDU).
pub struct PvQueue<'a, M> {
    /// The DMA mapper (`SoftIommu` or `DirectMapper`).
    pub mapper: &'a M,
    /// P2PDMA providers.
    pub p2p: P2pProviders<'a>,
    /// PRP list pages (4 KiB each), like `prp_page_pool`.
    pub prp_pages: Vec<Box<[u64]>>,
    /// SGL segment pages (256 descriptors each).
    pub sgl_pages: Vec<Box<[SglDescriptor]>>,
    /// The request's DMA ranges, when it keeps any (SGL, or per-range mappings that need
    /// unmapping): [`REQUEST_RANGES`] preallocated.
    pub dma: DmaVec,
}

impl<'a, M> PvQueue<'a, M> {
    /// A queue with 8 PRP and 2 SGL pages.
    pub fn new(mapper: &'a M, p2p: P2pProviders<'a>) -> Self {
        Self {
            mapper,
            p2p,
            prp_pages: (0..8).map(|_| vec![0u64; 512].into_boxed_slice()).collect(),
            sgl_pages: (0..2)
                .map(|_| vec![SglDescriptor::default(); 256].into_boxed_slice())
                .collect(),
            dma: DmaVec::with_capacity(REQUEST_RANGES),
        }
    }
}

/// The command's 16-byte data pointer as two little-endian u64s.
pub type Dptr16 = [u64; 2];

/// List pages as the device sees them: PRP pages and SGL pages.
pub type Lists<'q> = (&'q [Box<[u64]>], &'q [Box<[SglDescriptor]>]);

/// What an I/O keeps until completion: DMA ranges stored, and whether it holds an IOVA
/// reservation (16 B of state in the kernel's `dma_iova_state`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Kept {
    pub ranges: usize,
    pub iova: bool,
}

impl Kept {
    /// Bytes of per-I/O metadata held until completion.
    pub fn bytes(self) -> usize {
        self.ranges * 16 + if self.iova { 16 } else { 0 }
    }
}

/// Run one I/O; `inspect` sees the data pointer, the list pages and what the I/O keeps
/// before teardown. Returns the data pointer and what was kept.
#[inline]
pub fn physvec_io<M: DmaMapper, F: FnOnce(Dptr16, Lists<'_>, Kept)>(
    q: &mut PvQueue<'_, M>,
    req: &Req<'_>,
    dptr: Dptr,
    inspect: F,
) -> Result<(Dptr16, Kept), String> {
    physvec_io_inlined(q, req, dptr, inspect)
}

/// [`physvec_io`], always inlined into its caller (the second call site of the
/// callgrind comparison).
#[inline(always)]
pub fn physvec_io_inlined<M: DmaMapper, F: FnOnce(Dptr16, Lists<'_>, Kept)>(
    q: &mut PvQueue<'_, M>,
    req: &Req<'_>,
    dptr: Dptr,
    inspect: F,
) -> Result<(Dptr16, Kept), String> {
    let PvQueue {
        mapper,
        p2p,
        prp_pages,
        sgl_pages,
        dma,
        ..
    } = q;
    let first = *req.phys.first().ok_or("empty request")?;
    let coalesce = if req.mergeable {
        Coalesce::IfPossible
    } else {
        Coalesce::Never
    };
    let opts = StreamOptions::new(DataDirection::ToDevice).with_coalesce(coalesce);
    let (d, m) = match dptr {
        Dptr::Prp => {
            // One pass: pages -> mapping -> PRP entries.
            let stream = MapStream::start(*mapper, &*p2p, first, req.total, opts, &mut *dma)
                .map_err(|e| e.to_string())?;
            let pool = prp_pages
                .iter_mut()
                .enumerate()
                .map(|(i, p)| PrpListPage::new(DmaAddr::new(PRP_PAGES_BUS + i as u64 * 4096), p));
            let (m, prp) = map_prp(
                stream,
                req.phys.iter().copied(),
                MemoryPageSize::SIZE_4K,
                pool,
            )
            .map_err(|e| e.to_string())?;
            ([prp.prp1.as_u64().to_le(), prp.prp2.as_u64().to_le()], m)
        }
        Dptr::Sgl => {
            // One pass: pages -> mapping -> SGL descriptors.
            let stream = MapStream::start(*mapper, &*p2p, first, req.total, opts, &mut *dma)
                .map_err(|e| e.to_string())?;
            let pool = sgl_pages.iter_mut().enumerate().map(|(i, p)| {
                SglSegmentPage::new(DmaAddr::new(SGL_PAGES_BUS + i as u64 * 4096), p)
            });
            let (m, sgl) = map_sgl(
                stream,
                req.phys.iter().copied(),
                req.segments,
                SglOptions::default(),
                pool,
            )
            .map_err(|e| e.to_string())?;
            let b = sgl.dptr.to_bytes();
            (
                [
                    u64::from_le_bytes(b[..8].try_into().unwrap_or_default()),
                    u64::from_le_bytes(b[8..].try_into().unwrap_or_default()),
                ],
                m,
            )
        }
    };
    let kept = Kept {
        ranges: m.dma().len(),
        iova: m.is_coalesced(),
    };
    inspect(d, (prp_pages, sgl_pages), kept);
    // Completion.
    m.unmap().map_err(|e| e.to_string())?;
    Ok((d, kept))
}

/// An `inspect` that looks at nothing (one function, so every call site shares one
/// instance of the pipeline).
pub fn no_inspect(_: Dptr16, _: Lists<'_>, _: Kept) {}
