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

/// One queue: the mapper, the P2P providers, the block limits and the list-page pools.
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
        }
    }
}

/// The command's 16-byte data pointer as two little-endian u64s.
pub type Dptr16 = [u64; 2];

/// Run one I/O; `inspect` sees the data pointer, the queue (its list pages) and the DMA
/// segments before teardown. Returns the data pointer and the DMA segment count.
pub fn physvec_io<M: DmaMapper, F: FnOnce(Dptr16, &PvQueue<'_, M>, usize)>(
    q: &mut PvQueue<'_, M>,
    phys: &[PhysRange],
    dptr: Dptr,
    inspect: F,
) -> Result<(Dptr16, usize), String> {
    let n = phys.len();
    // 1. The PhysVec, sized like the request (inline up to 8 ranges).
    let sink = if n <= 8 {
        PhysVec::new()
    } else {
        PhysVec::with_capacity(n)
    };
    let mut b = RangeBuilder::new(q.constraints, sink).map_err(|e| e.to_string())?;
    for &r in phys {
        b.push(r).map_err(|e| e.to_string())?;
    }
    let pv = b.finish();
    // 2. Two-step mapping. Only the DMA ranges live on until completion (unmap needs
    // nothing else); the PhysVec is dropped here.
    let dma_sink = if q.coalesces || pv.len() <= 8 {
        DmaVec::new()
    } else {
        DmaVec::with_capacity(pv.len())
    };
    let m = map_into(
        q.mapper,
        pv.view(),
        DataDirection::ToDevice,
        Attrs::empty(),
        &q.p2p,
        dma_sink,
    )
    .map_err(|e| e.to_string())?;
    drop(pv);
    // 3. PRP or SGL.
    let d: Dptr16 = match dptr {
        Dptr::Prp => {
            let pool =
                q.prp_pages.iter_mut().enumerate().map(|(i, p)| {
                    PrpListPage::new(DmaAddr::new(PRP_PAGES_BUS + i as u64 * 4096), p)
                });
            let prp = encode_prp(m.dma().iter().copied(), MemoryPageSize::SIZE_4K, pool)
                .map_err(|e| e.to_string())?;
            [prp.prp1.to_le(), prp.prp2.to_le()]
        }
        Dptr::Sgl => {
            let pool = q.sgl_pages.iter_mut().enumerate().map(|(i, p)| {
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
    inspect(d, q, segs);
    // 4. Completion.
    m.unmap().map_err(|e| e.to_string())?;
    Ok((d, segs))
}
