//! Legacy scatterlists: a range list exported as a Linux x86_64 `struct scatterlist`
//! table (chained chunks), walked back with a bounded `sg_next`, then DMA-mapped the way
//! `iommu_dma_map_sg()` merges entries, with the byte cost of each representation.
//!
//! ```text
//! cargo run --example legacy_sg
//! ```
//!
//! The example asserts its own results: running it is a test (CI runs it).

use physvec::fmt::Bytes;
use physvec::sg::{
    export, import, import_bio_vecs, import_dma, iommu_iova_len, iommu_map_sg, BioVec,
    IommuSgParams, PageModel, Scatterlist, SgChunk, SgWalk, Vmemmap, SG_DEFAULT_MAX_SEGMENT,
};
use physvec::{DmaAddr, DmaRange, PageSize, PhysRange, PhysVec, RangeView};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // An I/O buffer as the block layer would hand it over: a few physically scattered
    // pieces, some page-aligned and contiguous (they merge), one starting mid-page.
    let phys = [
        PhysRange::new(0x1_0000_0800, 0x800),  // tail of a page
        PhysRange::new(0x1_0000_1000, 0x2000), // contiguous with the previous one
        PhysRange::new(0x2_4000_0000, 0x3000),
        PhysRange::new(0x3_0000_0000, 0x1000),
        PhysRange::new(0x3_8000_0000, 0x1000),
        PhysRange::new(0x4_8000_0000, 0x2000),
        PhysRange::new(0x4_0000_0000, 0x400), // a short head of a page
    ];
    let view = RangeView::full(&phys)?;
    println!(
        "input: {} physical ranges, {} in total",
        phys.len(),
        Bytes(view.len())
    );
    for (i, r) in phys.iter().enumerate() {
        println!("  [{i}] {r}");
    }

    // 1. Export: the `__sg_alloc_table` layout. Small chunks (3 slots) so that the table
    //    chains: a full chunk's last slot is an SG_CHAIN link to the next chunk.
    let vm = Vmemmap::new(Vmemmap::X86_64_DEFAULT_BASE);
    let mut store = [[Scatterlist::default(); 3]; 3];
    let chunk_addrs = [
        0xffff_8881_0000_0000u64,
        0xffff_8881_0000_1000,
        0xffff_8881_0000_2000,
    ];
    let mut chunks: Vec<SgChunk<'_>> = store
        .iter_mut()
        .zip(chunk_addrs)
        .map(|(e, addr)| SgChunk {
            addr: physvec::VirtAddr::new(addr),
            entries: e,
        })
        .collect();
    let x = export(&view, &vm, SG_DEFAULT_MAX_SEGMENT, &mut chunks)?;
    let mut table = x.table;
    println!(
        "\nexported: sg_table {{ sgl {:#x}, nents {}, orig_nents {} }} in {} chunks of 3 slots",
        table.sgl, table.nents, table.orig_nents, x.chunks
    );
    // The first two ranges are contiguous: one entry. 6 data entries in 3-slot chunks:
    // [d d CHAIN] [d d CHAIN] [d d -].
    assert_eq!(table.orig_nents, 6);
    assert_eq!(x.chunks, 3);
    let mut chain_entries = 0;
    for c in &chunks[..x.chunks] {
        println!("  chunk @ {:#x}:", c.addr);
        for (i, e) in c.entries.iter().enumerate() {
            let at = c.addr.as_u64() + (i * Scatterlist::SIZE) as u64;
            if e.is_chain() {
                chain_entries += 1;
                println!("    {at:#x}  SG_CHAIN -> {:#x}", e.chain_ptr());
            } else if e.page_link != 0 {
                let pfn = vm.pfn_of(e.page()).expect("a vmemmap page");
                println!(
                    "    {at:#x}  page {:#x} (pfn {pfn:#x}) +{:#05x} {:>8}{}",
                    e.page(),
                    e.offset,
                    Bytes(u64::from(e.length)),
                    if e.is_last() { "  SG_END" } else { "" }
                );
            }
        }
    }
    assert_eq!(chain_entries, 2);

    // 2. Walk it back exactly as a consumer of an untrusted table would: a bounded
    //    sg_next with loop detection, from the memory the chunks live in.
    let walked: Vec<u64> = SgWalk::new(&chunks[..], physvec::VirtAddr::new(table.sgl), None, 64)
        .map(|e| e.map(|e| e.addr.as_u64()))
        .collect::<Result<_, _>>()?;
    let mut back = PhysVec::new();
    import(
        &chunks[..],
        physvec::VirtAddr::new(table.sgl),
        None,
        &vm,
        64,
        &mut back,
    )?;
    println!(
        "\nwalked back: {} data entries at {:x?}",
        walked.len(),
        walked
    );
    println!("coalesced physical ranges:");
    for r in back.iter() {
        println!("  {r}");
    }
    let mut expected = PhysVec::new();
    expected.try_push(PhysRange::new(0x1_0000_0800, 0x2800))?;
    for r in &phys[2..] {
        expected.try_push(*r)?;
    }
    assert_eq!(back.as_slice(), expected.as_slice());
    assert_eq!(back.total_len(), view.len());

    // 3. The DMA view: iommu_dma_map_sg lays the entries out in one IOVA allocation and
    //    __finalise_sg merges the ones that meet on granule boundaries. Each mapped span
    //    is recorded here instead of a real IOMMU page table.
    let params = IommuSgParams {
        granule: PageSize::SIZE_4K,
        seg_boundary_mask: 0xffff_ffff,
        max_seg_size: 0x1_0000,
    };
    let iova_len = iommu_iova_len(&chunks[..], &table, &vm, params, 64)?;
    let iova_base = DmaAddr::new(0xfff0_0000);
    let mut maps: Vec<(DmaAddr, PhysRange)> = Vec::new();
    let nents = iommu_map_sg(
        &mut chunks[..],
        &mut table,
        &vm,
        params,
        iova_base,
        64,
        |_, iova, span| {
            maps.push((iova, span));
            true
        },
    )?;
    println!(
        "\ndma_map_sg through an IOMMU (4 KiB granule, max_seg_size {}): IOVA {} at {:#x}",
        Bytes(params.max_seg_size.into()),
        Bytes(iova_len),
        iova_base
    );
    for (iova, span) in &maps {
        println!("  map {iova:#x} -> {span}");
    }
    let mut dma = Vec::<DmaRange>::new();
    import_dma(&chunks[..], &table, 64, &mut dma)?;
    println!("nents {nents} (orig_nents {}):", table.orig_nents);
    for r in &dma {
        println!("  {r}");
    }
    // Everything starts/ends on granules except the first head and the last tail:
    // one IOVA segment of the whole transfer.
    assert_eq!(maps.len(), 6);
    assert_eq!(nents, 1);
    assert_eq!(dma, [DmaRange::new(0xfff0_0800, view.len())]);

    // 4. The same I/O as bio_vecs (what a bio carries before a table exists).
    let bvecs: Vec<BioVec> = back
        .iter()
        .map(|r| {
            let pfn = r.addr().as_u64() >> 12;
            BioVec {
                bv_page: vm.page_of(pfn).expect("a vmemmap page"),
                bv_len: r.len() as u32,
                bv_offset: (r.addr().as_u64() & 0xfff) as u32,
            }
        })
        .collect();
    let mut from_bvecs = PhysVec::new();
    import_bio_vecs(&bvecs, &vm, &mut from_bvecs)?;
    assert_eq!(from_bvecs.as_slice(), back.as_slice());

    // 5. What each representation costs in metadata for this one I/O.
    let sg_slots: usize = chunks[..x.chunks].iter().map(|c| c.entries.len()).sum();
    let sizes = [
        ("PhysRange list (16 B per range)", back.len() * 16),
        ("bio_vec array (16 B per bvec)", bvecs.len() * 16),
        (
            "struct scatterlist table (32 B per slot, incl. chain slots)",
            sg_slots * Scatterlist::SIZE,
        ),
        ("DMA view as DmaRange (16 B per segment)", dma.len() * 16),
    ];
    println!("\nmetadata for this {} I/O:", Bytes(view.len()));
    for (what, bytes) in sizes {
        println!("  {what:<62} {:>6}", Bytes(bytes as u64).to_string());
    }
    assert_eq!(sizes[0].1, 96);
    assert_eq!(sizes[2].1, 9 * 32);
    println!("\nlegacy_sg: all checks passed");
    Ok(())
}
