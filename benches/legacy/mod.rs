//! A faithful model of the kernel's legacy scatterlist data path for one NVMe I/O, the
//! baseline physvec is measured against. Each function names the kernel function it
//! models and follows its logic step by step (same loops, same merging rules, same
//! allocation pattern); nothing is added to slow it down.
//!
//! Per I/O ([`legacy_io`]):
//! 1. `sg_alloc_table_chained()` with the request PDU's inline chunk of 2 entries, then
//!    128-entry chunks from the `sg_pool` slabs (here: the global allocator), each chunk
//!    but the last giving its last slot to the chain link ([`scatterlist`]);
//! 2. `blk_rq_map_sg()`: fill entries from the request's `bio_vec`s with `struct page`
//!    arithmetic on a vmemmap of 64-byte pages, merging across bios ([`blk`]);
//! 3. `dma_map_sg()`: `iommu_dma_map_sg()` (granule-align in place, one IOVA allocation,
//!    `iommu_map_sg()` per physically contiguous run, `__finalise_sg()` merging into DMA
//!    segments) or `dma_direct_map_sg()` ([`dma`]);
//! 4. `nvme_pci_setup_prps()` / `nvme_pci_setup_sgls()` walking the DMA segments with
//!    `sg_next()` ([`nvme`]);
//! 5. completion: `nvme_unmap_data()` frees the list pages, `dma_unmap_sg()`, and
//!    `sg_free_table_chained()`.
//!
//! `sg_next()` is out of line as in the kernel (an exported function of
//! `lib/scatterlist.c`), so every entry of the map, setup and unmap walks pays a call;
//! chunks come from the allocator and are zeroed (`sg_init_table`) per I/O. The
//! `struct page` flag reads of `pages_are_mergeable()` and the counting pass of
//! `sg_alloc_table_from_pages_segment()` belong to the pages-to-table path, which NVMe
//! does not take (it builds its table from bvecs with `blk_rq_map_sg`, the segment
//! count known from bio merging); the P2P page check of `iommu_dma_map_sg` reads the
//! flags of every entry's page.
//!
//! Left out as in the real fast path on x86_64 with a coherent, trusted device: cache
//! maintenance and swiotlb. Not modelled: NVMe's single-segment bypass
//! (`nvme_setup_prp_simple` via `dma_map_bvec`), so the 4 KiB workload takes the generic
//! path (with the inline chunk, no allocation).

pub mod blk;
pub mod dma;
pub mod mm;
pub mod nvme;
pub mod scatterlist;

use blk::{BioVec, QueueLimits};
use dma::{Device, IommuDomain};
use mm::Mem;
use nvme::{Dptr, NvmeDev, NvmeIod};
use scatterlist::{InlineSg, SgTable, INLINE_SG_CNT};

/// One NVMe queue's view of the stack: memory map, DMA device, block limits, pools.
pub struct LegacyQueue<'a, D> {
    /// vmemmap and pgmaps.
    pub mem: &'a Mem,
    /// The NVMe controller as a DMA device.
    pub dev: Device<'a, D>,
    /// Block queue limits.
    pub lim: QueueLimits,
    /// PRP/SGL pools.
    pub nvme: NvmeDev,
}

/// A request as the driver receives it (`struct request`).
pub struct Request<'a> {
    /// The bios' bvecs.
    pub bios: &'a [&'a [BioVec]],
    /// `blk_rq_nr_phys_segments(req)`, computed at bio split/merge time.
    pub nr_phys_segments: u32,
    /// `blk_rq_payload_bytes(req)`.
    pub payload: u32,
    /// `nvme_pci_use_sgls()`'s verdict.
    pub use_sgl: bool,
    /// `dma_info_to_prot(dir)`.
    pub prot: u8,
}

/// The driver's per-request PDU (`blk_mq_rq_to_pdu`), allocated once with the tag set.
#[derive(Default)]
pub struct Pdu {
    inline_sg: InlineSg,
    sgt: SgTable,
    iod: NvmeIod,
}

/// Run one I/O through the legacy path; `inspect` sees the command's data pointer, the
/// pools and the iod after setup and before teardown (the "device" reading the lists).
/// Returns the data pointer and the number of DMA segments.
pub fn legacy_io<D: IommuDomain, F: FnOnce(Dptr, &NvmeDev, &NvmeIod, u32)>(
    q: &mut LegacyQueue<'_, D>,
    rq: &Request<'_>,
    pdu: &mut Pdu,
    inspect: F,
) -> Result<(Dptr, u32), &'static str> {
    pdu.iod = NvmeIod::default();
    let first_chunk = pdu.inline_sg.0.as_mut_ptr();
    // SAFETY: the inline chunk has INLINE_SG_CNT entries and lives in the PDU, which
    // outlives the table; the table is filled, mapped, walked and freed below in order.
    unsafe {
        scatterlist::sg_alloc_table_chained(
            &mut pdu.sgt,
            rq.nr_phys_segments,
            first_chunk,
            INLINE_SG_CNT,
        );
        let nents = blk::blk_rq_map_sg(q.mem, &q.lim, rq.bios, pdu.sgt.sgl);
        pdu.sgt.nents = nents;
        let count = dma::dma_map_sg(&q.dev, q.mem, pdu.sgt.sgl, nents, rq.prot);
        if count == 0 {
            scatterlist::sg_free_table_chained(&mut pdu.sgt, INLINE_SG_CNT);
            return Err("BLK_STS_RESOURCE");
        }
        let dptr = if rq.use_sgl {
            nvme::nvme_pci_setup_sgls(&mut q.nvme, &mut pdu.iod, pdu.sgt.sgl, count)
        } else {
            nvme::nvme_pci_setup_prps(&mut q.nvme, &mut pdu.iod, pdu.sgt.sgl, rq.payload)
        };
        let result = match dptr {
            Ok(d) => {
                inspect(d, &q.nvme, &pdu.iod, count);
                Ok((d, count))
            }
            Err(e) => Err(e),
        };
        // Completion: nvme_unmap_data().
        nvme::nvme_free_lists(&mut q.nvme, &pdu.iod);
        dma::dma_unmap_sg(&q.dev, q.mem, pdu.sgt.sgl, nents);
        scatterlist::sg_free_table_chained(&mut pdu.sgt, INLINE_SG_CNT);
        result
    }
}
