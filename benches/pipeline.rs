//! The physvec pipeline for one NVMe I/O: build a [`PhysVec`] inline with a
//! [`RangeBuilder`], map it with the two-step API ([`map_into`]: reserve, link per
//! range, one sync; per-range or bus-address fallbacks), encode PRPs or an SGL into list
//! pages from a preallocated pool, then unmap.

use physvec::map::{map_into, Attrs, DataDirection, DmaMapper, P2pProviders};
use physvec::nvme::{
    encode_prp, encode_sgl, MemoryPageSize, PrpListPage, SglDescriptor, SglItem, SglOptions,
    SglSegmentPage,
};
use physvec::{DmaAddr, DmaConstraints, DmaVec, PhysRange, PhysVec, RangeBuilder};

use crate::workloads::Dptr;

/// Bus address of the physvec queue's PRP list pages.
pub const PRP_PAGES_BUS: u64 = 0x7d00_0000;
/// Bus address of its SGL segment pages.
pub const SGL_PAGES_BUS: u64 = 0x7c00_0000;

/// One queue: the mapper, the P2P providers, the block limits, the list-page pools, and
/// the per-request range storage (inline capacity, like the request PDU).
pub struct PvQueue<'a, M> {
    /// The DMA mapper (`SoftIommu` or `DirectMapper`).
    pub mapper: &'a M,
    /// Whether the mapper coalesces into one IOVA range (`dma_use_iova`), which sizes the
    /// DMA output.
    pub coalesces: bool,
    /// P2PDMA providers.
    pub p2p: P2pProviders<'a>,
    /// The queue limits, as `DmaConstraints`.
    pub constraints: DmaConstraints,
    /// PRP list pages (4 KiB each), like `prp_page_pool`.
    pub prp_pages: Vec<Box<[u64]>>,
    /// SGL segment pages (256 descriptors each).
    pub sgl_pages: Vec<Box<[SglDescriptor]>>,
    /// The request's physical ranges (inline up to 8; spills per I/O beyond).
    pub phys: PhysVec,
    /// The request's DMA ranges (inline up to 8; spills per I/O beyond).
    pub dma: DmaVec,
}

impl<'a, M> PvQueue<'a, M> {
    /// A queue with 8 PRP and 2 SGL pages.
    pub fn new(
        mapper: &'a M,
        coalesces: bool,
        p2p: P2pProviders<'a>,
        constraints: DmaConstraints,
    ) -> Self {
        Self {
            mapper,
            coalesces,
            p2p,
            constraints,
            prp_pages: (0..8).map(|_| vec![0u64; 512].into_boxed_slice()).collect(),
            sgl_pages: (0..2)
                .map(|_| vec![SglDescriptor::default(); 256].into_boxed_slice())
                .collect(),
            phys: PhysVec::new(),
            dma: DmaVec::new(),
        }
    }
}

/// The command's 16-byte data pointer as two little-endian u64s.
pub type Dptr16 = [u64; 2];

/// List pages as the device sees them: PRP pages and SGL pages.
pub type Lists<'q> = (&'q [Box<[u64]>], &'q [Box<[SglDescriptor]>]);

/// Run one I/O; `inspect` sees the data pointer, the list pages and the DMA segment
/// count before teardown. Returns the data pointer and the DMA segment count.
pub fn physvec_io<M: DmaMapper, F: FnOnce(Dptr16, Lists<'_>, usize)>(
    q: &mut PvQueue<'_, M>,
    phys: &[PhysRange],
    dptr: Dptr,
    inspect: F,
) -> Result<(Dptr16, usize), String> {
    let PvQueue {
        mapper,
        coalesces,
        p2p,
        constraints,
        prp_pages,
        sgl_pages,
        phys: pv,
        dma,
    } = q;
    let n = phys.len();
    // 1. The PhysVec, in the request's storage: inline up to 8 ranges, else one heap
    // allocation sized like the request (given back after mapping).
    pv.clear();
    if n > 8 {
        *pv = PhysVec::with_capacity(n);
    }
    let mut b = RangeBuilder::new(*constraints, &mut *pv).map_err(|e| e.to_string())?;
    for &r in phys {
        b.push(r).map_err(|e| e.to_string())?;
    }
    b.finish();
    // 2. Two-step mapping into the request's DMA storage. Only the DMA ranges live on
    // until completion (unmap needs nothing else): the PhysVec's heap goes now.
    if !*coalesces && pv.len() > 8 {
        *dma = DmaVec::with_capacity(pv.len());
    }
    let m = map_into(
        *mapper,
        pv.view(),
        DataDirection::ToDevice,
        Attrs::empty(),
        &*p2p,
        &mut *dma,
    )
    .map_err(|e| e.to_string())?;
    if pv.spilled() {
        *pv = PhysVec::new();
    }
    // 3. PRP or SGL.
    let d: Dptr16 = match dptr {
        Dptr::Prp => {
            let pool = prp_pages
                .iter_mut()
                .enumerate()
                .map(|(i, p)| PrpListPage::new(DmaAddr::new(PRP_PAGES_BUS + i as u64 * 4096), p));
            let prp = encode_prp(m.dma().iter().copied(), MemoryPageSize::SIZE_4K, pool)
                .map_err(|e| e.to_string())?;
            [prp.prp1.as_u64().to_le(), prp.prp2.as_u64().to_le()]
        }
        Dptr::Sgl => {
            let pool = sgl_pages.iter_mut().enumerate().map(|(i, p)| {
                SglSegmentPage::new(DmaAddr::new(SGL_PAGES_BUS + i as u64 * 4096), p)
            });
            let sgl = encode_sgl(
                m.dma().iter().map(|&r| SglItem::Data(r)),
                SglOptions::default(),
                pool,
            )
            .map_err(|e| e.to_string())?;
            let b = sgl.dptr.to_bytes();
            [
                u64::from_le_bytes(b[..8].try_into().unwrap_or_default()),
                u64::from_le_bytes(b[8..].try_into().unwrap_or_default()),
            ]
        }
    };
    let segs = m.dma().len();
    inspect(d, (prp_pages, sgl_pages), segs);
    // 4. Completion.
    m.unmap().map_err(|e| e.to_string())?;
    if dma.spilled() {
        *dma = DmaVec::new();
    }
    Ok((d, segs))
}
