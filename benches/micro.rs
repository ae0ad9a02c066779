//! Micro benches: PhysVec construction, PRP emission against `memcpy` of the same output
//! bytes (and against the legacy `nvme_pci_setup_prps` walk), SGL emission.

use std::hint::black_box;

use criterion::Criterion;
use physvec::map::{IoPageTable, IoPerm};
use physvec::nvme::{
    encode_prp, encode_sgl, MemoryPageSize, PrpListPage, PrpWriter, SglDescriptor, SglItem,
    SglOptions, SglSegmentPage,
};
use physvec::{DmaAddr, DmaRange, PageSize, PhysAddr, PhysVec, RangeBuilder};

use crate::legacy::nvme::{nvme_pci_setup_prps, NvmeDev, NvmeIod};
use crate::legacy::scatterlist::{sg_init_table, InlineSg};

/// Bytes of PRP output for a contiguous, page-aligned 2 MiB range: PRP1 + PRP2 in the
/// command and 511 list entries.
pub const PRP_2M_OUTPUT_BYTES: usize = 16 + 511 * 8;

pub fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("micro");
    let cons = crate::constraints();

    let contiguous: Vec<u64> = (0x4_0000..0x4_0000 + 512).collect();
    let scattered: Vec<u64> = crate::workloads::all()[3]
        .phys
        .iter()
        .map(|r| r.addr().as_u64() >> 12)
        .collect();
    g.bench_function("build_physvec/512_contiguous_pages", |b| {
        b.iter(|| {
            let mut bld = RangeBuilder::new(cons, PhysVec::new()).expect("constraints");
            for &pfn in black_box(&contiguous) {
                bld.push_pfn(pfn, PageSize::SIZE_4K).expect("push");
            }
            bld.finish()
        })
    });
    g.bench_function("build_physvec/512_scattered_pages", |b| {
        b.iter(|| {
            let mut bld =
                RangeBuilder::new(cons, PhysVec::with_capacity(512)).expect("constraints");
            for &pfn in black_box(&scattered) {
                bld.push_pfn(pfn, PageSize::SIZE_4K).expect("push");
            }
            bld.finish()
        })
    });

    // PRP emission for one contiguous 2 MiB DMA range.
    let range = [DmaRange::new(0x4000_0000, 2 << 20)];
    let mut pages = [[0u64; 512]; 2];
    g.bench_function("prp_emit/2m_contiguous", |b| {
        b.iter(|| {
            let pool = pages
                .iter_mut()
                .enumerate()
                .map(|(i, p)| PrpListPage::new(DmaAddr::new(0x7d00_0000 + i as u64 * 4096), p));
            encode_prp(
                black_box(&range).iter().copied(),
                MemoryPageSize::SIZE_4K,
                pool,
            )
            .expect("prp")
        })
    });
    // PRP emission, streamed, for 512 scattered pages (the same 4104 output bytes).
    let scattered_dma: Vec<DmaRange> = scattered
        .iter()
        .map(|&pfn| DmaRange::new(pfn << 12, 4096))
        .collect();
    g.bench_function("prp_stream/512_scattered_pages", |b| {
        b.iter(|| {
            let pool = pages
                .iter_mut()
                .enumerate()
                .map(|(i, p)| PrpListPage::new(DmaAddr::new(0x7d00_0000 + i as u64 * 4096), p));
            let mut w = PrpWriter::new(MemoryPageSize::SIZE_4K, 2 << 20, pool);
            for &r in black_box(&scattered_dma) {
                w.push(r).expect("prp");
            }
            w.finish().expect("prp")
        })
    });
    let src = vec![0x5au8; PRP_2M_OUTPUT_BYTES];
    let mut dst = vec![0u8; PRP_2M_OUTPUT_BYTES];
    g.bench_function("memcpy/prp_2m_output_bytes", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&src));
            black_box(&mut dst);
        })
    });
    // The same PRPs by the legacy driver walk over a one-entry mapped scatterlist.
    let mut dev = NvmeDev::new();
    let mut inline = InlineSg::default();
    let sgl = inline.0.as_mut_ptr();
    // SAFETY: the inline chunk has 2 entries; one is used, marked as the end, and holds
    // one mapped DMA segment.
    unsafe {
        sg_init_table(sgl, 1);
        (*sgl).dma_address = 0x4000_0000;
        (*sgl).dma_length = 2 << 20;
    }
    g.bench_function("prp_emit_legacy/2m_contiguous", |b| {
        b.iter(|| {
            let mut iod = NvmeIod::default();
            // SAFETY: one mapped entry covering the payload.
            let d = unsafe { nvme_pci_setup_prps(&mut dev, &mut iod, black_box(sgl), 2 << 20) };
            crate::legacy::nvme::nvme_free_lists(&mut dev, &iod);
            d.expect("prp")
        })
    });

    // SGL emission: 255 scattered 4 KiB DMA ranges → one Last Segment of 255 Data Blocks.
    let ranges: Vec<DmaRange> = scattered[..255]
        .iter()
        .map(|&pfn| DmaRange::new(pfn << 12, 4096))
        .collect();
    let mut seg = vec![SglDescriptor::default(); 256];
    g.bench_function("sgl_emit/255_ranges", |b| {
        b.iter(|| {
            let pool = [SglSegmentPage::new(DmaAddr::new(0x7c00_0000), &mut seg)];
            encode_sgl(
                black_box(&ranges).iter().map(|&r| SglItem::Data(r)),
                SglOptions::default(),
                pool,
            )
            .expect("sgl")
        })
    });

    // The shared page-table floor (issue 13) on its own: the software IOMMU's page table
    // (the radix engine over heap tables), as both pipelines program it.
    let mut pt = IoPageTable::new(PageSize::SIZE_4K, 48, true).expect("valid");
    let base = 0x4000_0000u64;
    // One reservation: 512 scattered 4 KiB links into one leaf table, then one batched
    // unmap of the reservation.
    g.bench_function("pgtable/512_scattered_links_and_unmap", |b| {
        b.iter(|| {
            for (k, &pfn) in scattered.iter().enumerate() {
                let iova = DmaAddr::new(base + ((k as u64) << 12));
                pt.map(iova, PhysAddr::new(pfn << 12), 4096, IoPerm::READ)
                    .expect("map");
            }
            pt.unmap_present(DmaAddr::new(base), 2 << 20)
                .expect("unmap")
        })
    });
    // The same 512 scattered links as one batch (`map_granules`, what
    // `SoftIommu::link_many` does for a stream's pages): one pass over the leaf table.
    let pages: Vec<physvec::PhysRange> = scattered
        .iter()
        .map(|&pfn| physvec::PhysRange::new(pfn << 12, 4096))
        .collect();
    g.bench_function("pgtable/512_scattered_link_batch_and_unmap", |b| {
        b.iter(|| {
            let (n, r) = pt.map_granules(DmaAddr::new(base), black_box(&pages), IoPerm::READ);
            r.expect("map");
            assert_eq!(n, 512);
            pt.unmap_present(DmaAddr::new(base), 2 << 20)
                .expect("unmap")
        })
    });
    // One contiguous 2 MiB run that must use 4 KiB leaves (physical address not 2 MiB
    // aligned): one walk, one pass over the leaf table.
    g.bench_function("pgtable/2m_contiguous_run_4k_leaves", |b| {
        b.iter(|| {
            pt.map(
                DmaAddr::new(base),
                PhysAddr::new(0x8000_1000),
                2 << 20,
                IoPerm::READ,
            )
            .expect("map");
            pt.unmap_present(DmaAddr::new(base), 2 << 20)
                .expect("unmap")
        })
    });
    g.finish();
}

/// `ib_sg_to_pages()`-style MR page lists and PRP decoding (the device side).
pub fn benches_rdma_decode(c: &mut Criterion) {
    use physvec::mem::SliceMemory;
    use physvec::nvme::{decode_prp, DecodeOptions};
    use physvec::rdma::sg_to_pages;

    let mut g = c.benchmark_group("micro");
    let scattered: Vec<DmaRange> = crate::workloads::all()[3]
        .phys
        .iter()
        .map(|r| DmaRange::new(r.addr().as_u64(), r.len()))
        .collect();
    let contiguous = [DmaRange::new(0x4000_0000, 2 << 20)];
    let mut pages = vec![0u64; 512];
    g.bench_function("ib_sg_to_pages/512_scattered_pages", |b| {
        b.iter(|| sg_to_pages(black_box(&scattered), 0, PageSize::SIZE_4K, &mut pages).expect("mr"))
    });
    g.bench_function("ib_sg_to_pages/2m_contiguous", |b| {
        b.iter(|| {
            sg_to_pages(black_box(&contiguous), 0, PageSize::SIZE_4K, &mut pages).expect("mr")
        })
    });

    // A controller decoding the PRPs of 512 scattered pages: PRP1 + a 511-entry list.
    let list_bus = 0x7d00_0000u64;
    let mut list = [0u64; 512];
    let pool = [PrpListPage::new(DmaAddr::new(list_bus), &mut list)];
    let prp = encode_prp(scattered.iter().copied(), MemoryPageSize::SIZE_4K, pool).expect("prp");
    let bytes: Vec<u8> = list.iter().flat_map(|e| e.to_le_bytes()).collect();
    let mem = SliceMemory::new(physvec::DmaAddr::new(list_bus), &bytes);
    let mut out: Vec<DmaRange> = Vec::with_capacity(512);
    let opts = DecodeOptions::default();
    g.bench_function("prp_decode/512_scattered_pages", |b| {
        b.iter(|| {
            out.clear();
            decode_prp(
                prp.prp1,
                prp.prp2,
                2 << 20,
                MemoryPageSize::SIZE_4K,
                &mem,
                &mut out,
                &opts,
            )
            .expect("decode")
        })
    });
    g.finish();
}
