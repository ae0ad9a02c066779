//! RDMA memory registration for a scattered buffer: the fast-registration page list
//! (`ib_map_mr_sg` → `ib_sg_to_pages`), the mlx5 MTT entries a UMR writes, the best page
//! size for a user MR, a KLM list for a layout pages cannot express, and the NVMe over
//! RDMA Keyed SGL Data Block that hands the region to the target.
//!
//! ```text
//! cargo run --example rdma_register
//! ```
//!
//! The example asserts its own results: running it is a test (CI runs it).

use physvec::fmt::Bytes;
use physvec::mem::SliceMemory;
use physvec::nvme::{
    decode_command, DataPointer, DecodeOptions, MemoryPageSize, SglDescriptorType, SglItem,
    SubmissionQueueEntry,
};
use physvec::rdma::{
    best_page_size, encode_klm, encode_mtt, keyed_sgl, klm_bytes, klm_count, mtt_bytes,
    sg_to_pages, RegisteredRegion, MLX5_EN_RD, MLX5_EN_WR,
};
use physvec::{DmaRange, PageSize};

fn hexdump(bytes: &[u8], per_line: usize) {
    for (i, line) in bytes.chunks(per_line).enumerate() {
        let h: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
        println!("    +{:03x}: {}", i * per_line, h.join(" "));
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A 17.5 KiB I/O buffer after dma_map_sg: a head starting mid-page, whole pages in
    // the middle, a short tail. Every inner boundary is page aligned, which is what a
    // page-list MR (IB_MR_TYPE_MEM_REG) needs.
    let dma = [
        DmaRange::new(0x10_0200, 0xe00),
        DmaRange::new(0x23_0000, 0x2000),
        DmaRange::new(0x41_0000, 0x1000),
        DmaRange::new(0x52_0000, 0x800),
    ];
    let total: u64 = dma.iter().map(|r| r.len()).sum();
    println!("DMA segments of the buffer ({}):", Bytes(total));
    for (i, r) in dma.iter().enumerate() {
        println!("  [{i}] {r}");
    }

    // 1. ib_sg_to_pages: one entry per 4 KiB page, iova = the first byte.
    let ps = PageSize::SIZE_4K;
    let mut pages = [0u64; 16]; // max_fast_reg_page_list_len of this "device"
    let m = sg_to_pages(&dma, 0, ps, &mut pages)?;
    let pages = &pages[..m.npages];
    println!(
        "\nfast-registration page list ({ps} pages): iova {:#x}, length {}, {} pages, {} of {} segments mapped",
        m.iova,
        Bytes(m.length),
        m.npages,
        m.mapped,
        dma.len()
    );
    for p in pages {
        println!("    {p:#x}");
    }
    assert_eq!((m.iova, m.length, m.mapped), (0x10_0200, total, 4));
    assert_eq!(
        pages,
        [0x10_0000, 0x23_0000, 0x23_1000, 0x41_0000, 0x52_0000]
    );

    // 2. The mlx5 translation entries a UMR work request carries: big-endian page
    //    addresses with the read/write enable bits, padded to a 64-byte multiple.
    let mut mtt = vec![0u8; mtt_bytes(pages.len())];
    let n = encode_mtt(pages, MLX5_EN_RD | MLX5_EN_WR, &mut mtt)?;
    println!(
        "\nmlx5 MTT ({} entries, {} with padding):",
        pages.len(),
        Bytes(n as u64)
    );
    hexdump(&mtt[..n], 16);
    assert_eq!(n, 64);
    assert_eq!(mtt[0..8], [0, 0, 0, 0, 0, 0x10, 0x00, 0x03]);
    assert_eq!(mtt[8..16], [0, 0, 0, 0, 0, 0x23, 0x00, 0x03]);
    assert!(mtt[40..].iter().all(|&b| b == 0));

    // 3. A user MR: the largest page size the HCA supports (mlx5: 4 KiB..2 GiB) that
    //    maps the region. Scattered 4 KiB pages need 4 KiB; a 2 MiB-aligned huge page
    //    at a 2 MiB-aligned VA takes one 2 MiB entry.
    let mlx5_sizes = 0xffff_f000u64;
    let scattered = best_page_size(&dma, 0x7f00_0000_0200, mlx5_sizes)?;
    let huge = [DmaRange::new(0x8000_0000, 0x20_0000)];
    let huge_pg = best_page_size(&huge, 0x7f00_0020_0000, mlx5_sizes)?;
    println!(
        "\nbest page size: scattered buffer {}, one 2 MiB huge page {}",
        scattered.map_or("none".into(), |p| p.to_string()),
        huge_pg.map_or("none".into(), |p| p.to_string())
    );
    assert_eq!(scattered, Some(PageSize::SIZE_4K));
    assert_eq!(huge_pg, Some(PageSize::SIZE_2M));

    // 4. A layout with an unaligned gap: the page list stops at the gap (a prefix is
    //    mapped, the caller would post a second registration), while a KLM list
    //    (IB_MR_TYPE_SG_GAPS) takes any byte ranges.
    let gappy = [
        DmaRange::new(0x10_0000, 0x1000),
        DmaRange::new(0x20_0100, 0x200), // starts mid-page
        DmaRange::new(0x30_0000, 0x1000),
    ];
    let mut p2 = [0u64; 16];
    let partial = sg_to_pages(&gappy, 0, ps, &mut p2)?;
    println!(
        "\nwith an unaligned middle segment the page list maps only {} of {} segments ({})",
        partial.mapped,
        gappy.len(),
        Bytes(partial.length)
    );
    assert!((partial.mapped as usize) < gappy.len());
    let mkey = 0x0000_4321;
    let mut klm = vec![0u8; klm_bytes(klm_count(&gappy) as usize)];
    let n = encode_klm(&gappy, mkey, &mut klm)?;
    println!(
        "mlx5 KLM list instead ({} entries of 16 B, {} padded):",
        klm_count(&gappy),
        Bytes(n as u64)
    );
    hexdump(&klm[..n], 16);
    assert_eq!(klm[16..20], 0x200u32.to_be_bytes());
    assert_eq!(klm[24..32], 0x20_0100u64.to_be_bytes());

    // 5. NVMe over RDMA: the registered region becomes the command's SGL1, a Keyed SGL
    //    Data Block (Invalidate Key subtype: the target invalidates the rkey).
    let mr = RegisteredRegion {
        iova: m.iova,
        length: m.length,
        rkey: 0x00ab_cd01,
    };
    let desc = keyed_sgl(&mr, true)?;
    let mut sqe = SubmissionQueueEntry::new(0x02); // Read
    sqe.set_cid(9);
    sqe.set_nsid(1);
    sqe.set_cdw12((m.length / 512 - 1) as u32);
    sqe.set_data_pointer(DataPointer::Sgl(desc));
    println!(
        "\nNVMe-oF keyed SGL for the region (rkey {:#x}): {:?}",
        mr.rkey, desc
    );
    println!("SQE bytes 24..40 (DPTR):");
    hexdump(&sqe.as_bytes()[24..40], 16);
    assert_eq!(desc.descriptor_type(), SglDescriptorType::KeyedDataBlock);
    assert_eq!((desc.address().as_u64(), desc.key()), (m.iova, mr.rkey));
    assert_eq!(u64::from(desc.keyed_length()), m.length);

    // The target side decodes the same command: one data item naming the remote region.
    let mut items = Vec::new();
    decode_command(
        &sqe,
        m.length,
        MemoryPageSize::SIZE_4K,
        &SliceMemory::new(physvec::DmaAddr::new(0), &[]),
        &mut items,
        &DecodeOptions::default(),
    )?;
    println!("target decodes it as {items:?}");
    assert_eq!(items, [SglItem::Data(DmaRange::new(m.iova, m.length))]);

    println!("\nrdma_register: all checks passed");
    Ok(())
}
