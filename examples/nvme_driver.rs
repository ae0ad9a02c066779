//! A user-space NVMe driver's I/O path, end to end: a buffer of this process translated
//! to physical addresses through `/proc/self/pagemap`, the controller's limits applied by
//! the builder, the two-step DMA mapping through an IOMMU (the crate's software IOMMU
//! stands in for VFIO's), PRP or SGL chosen by the policy helper, the 64-byte Write
//! command filled in, checked from the controller's side, and the mapping released.
//!
//! ```text
//! cargo run --example nvme_driver
//! ```
//!
//! Reading PFNs from pagemap needs `CAP_SYS_ADMIN` (Linux 4.2+ shows zeros otherwise);
//! without it the example says so and uses a synthetic scattered layout instead. The
//! example asserts its own results: running it is a test (CI runs it, also with
//! `PHYSVEC_SYNTHETIC=1`, which forces the synthetic layout).

use physvec::fmt::Bytes;
use physvec::map::{self, Attrs, DataDirection, DmaMapper, SoftIommu};
use physvec::mem::SliceMemory;
use physvec::nvme::{
    self, DataPointerChoice, DataPointerPolicy, DecodeOptions, MemoryPageSize, PrpListPage,
    SglCapabilities, SglDescriptor, SglItem, SglOptions, SglSegmentPage, SubmissionQueueEntry,
};
use physvec::{DmaAddr, DmaConstraints, PhysAddr, PhysRange, PhysVec, RangeBuilder};

const PAGE: u64 = 4096;

/// PFNs of the pages under `[vaddr, vaddr + len)`, through the library's
/// `/proc/self/pagemap` reader (an error, never a wrong address, when PFNs are hidden).
fn pagemap_pfns(vaddr: u64, len: u64) -> Result<Vec<u64>, String> {
    physvec::map::pagemap::pfns(vaddr, len).map_err(|e| e.to_string())
}

/// Physical address of byte `off` of the transfer described by `phys`.
fn phys_at(phys: &[PhysRange], mut off: u64) -> u64 {
    for r in phys {
        if off < r.len() {
            return r.addr().as_u64() + off;
        }
        off -= r.len();
    }
    panic!("offset past the transfer");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // ---- The controller (values an Identify Controller and CAP would report) ----
    let mps = MemoryPageSize::SIZE_4K; // CC.MPS = 0
    let mdts_bytes = 1u64 << 20; // MDTS = 8 with CAP.MPSMIN 4 KiB
    let sgls = SglCapabilities::from_raw(0x1); // SGLs supported, byte granularity
    let limits = DmaConstraints::new()
        .with_segment_boundary_mask(0xffff_ffff) // what Linux's nvme-pci sets
        .with_dma_mask(physvec::DmaMask::BITS_64);
    println!(
        "controller: MPS {mps}, MDTS {}, SGLs supported; segment boundary 4 GiB",
        Bytes(mdts_bytes)
    );

    // One IOMMU domain for the device; the PRP list / SGL segment pages of the driver's
    // DMA pool are mapped into it once, at start-up.
    let iommu = SoftIommu::new_4k();
    let dir = DataDirection::ToDevice;

    // ---- The buffers of this process ----
    // 300 KiB, every page written so that it is present; I/O starts 0x200 into it.
    let mut buf = vec![0u8; 300 << 10];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    let base = buf.as_ptr() as u64;
    let pool_buf = vec![0u8; 3 * PAGE as usize]; // holds at least one aligned 4 KiB page
    let pool_va = (pool_buf.as_ptr() as u64).next_multiple_of(PAGE);

    // PHYSVEC_SYNTHETIC=1 forces the synthetic layout (CI runs both paths).
    let real = std::env::var_os("PHYSVEC_SYNTHETIC")
        .map_or(Ok(()), |_| Err("PHYSVEC_SYNTHETIC is set".to_string()))
        .and_then(|()| pagemap_pfns(base, buf.len() as u64))
        .and_then(|data| Ok((data, pagemap_pfns(pool_va, PAGE)?[0])));
    let (pfns, pool_pfn) = match real {
        Ok(p) => {
            println!("translated through /proc/self/pagemap: real PFNs of this process");
            p
        }
        Err(why) => {
            println!("pagemap not usable here ({why}): using a SYNTHETIC scattered layout");
            let n = buf.len().div_ceil(PAGE as usize) + 1;
            // Pairs of contiguous frames scattered over 64 GiB.
            let pfns = (0..n as u64)
                .map(|i| 0x10_0000 + (i / 2) * 0x1_2345 + (i % 2))
                .collect();
            (pfns, 0xff_f000)
        }
    };
    let list_page = map::DmaMapper::map_phys(
        &iommu,
        PhysRange::new(pool_pfn * PAGE, PAGE),
        DataDirection::ToDevice,
        Attrs::empty(),
    )?;
    println!(
        "DMA pool page: phys {:#x} -> dma {}",
        pool_pfn * PAGE,
        list_page
    );

    // Two I/Os: a small one (PRP territory) and a large one (SGL territory).
    let ios = [(0x200u64, 20u64 << 10, 8u64), (0x200, 256 << 10, 64)];
    for (n, &(off, len, slba)) in ios.iter().enumerate() {
        println!(
            "\n== I/O {n}: write {} from buffer offset {off:#x} to LBA {slba} ==",
            Bytes(len)
        );
        assert!(len <= mdts_bytes && len % 512 == 0);
        // 1. Build: one piece per virtual page, coalesced and split by the limits.
        let mut b = RangeBuilder::new(limits, PhysVec::new())?;
        let va0 = base + off;
        let mut va = va0;
        while va < va0 + len {
            let piece = (PAGE - va % PAGE).min(va0 + len - va);
            let pfn = pfns[((va - base + base % PAGE) / PAGE) as usize];
            b.push_raw(pfn * PAGE + va % PAGE, piece)?;
            va += piece;
        }
        let phys = b.finish();
        println!(
            "physical: {} range(s) for {} virtual pages",
            phys.len(),
            (va0 + len - 1) / PAGE - va0 / PAGE + 1
        );
        for r in phys.iter().take(6) {
            println!("  {r}");
        }
        if phys.len() > 6 {
            println!("  ... {} more", phys.len() - 6);
        }
        assert_eq!(phys.total_len(), len);

        // 2. Map: reserve IOVA, link every range, sync once. Middle pieces are whole
        //    pages, so the merge-boundary rule holds: one contiguous DMA range.
        let io = map::map(&iommu, &phys, dir)?;
        println!(
            "mapped ({:?}): {} DMA range(s), {} IOTLB sync(s): {}",
            io.kind(),
            io.dma().len(),
            io.iova_syncs(),
            io.dma()[0]
        );
        assert_eq!(io.dma().len(), 1);
        for probe in [0, len / 2, len - 1] {
            let dma = io.dma_addr_at(probe).expect("inside the mapping");
            assert_eq!(
                iommu.translate(dma),
                Some(PhysAddr::new(phys_at(&phys, probe)))
            );
        }

        // 3. PRP or SGL, as Linux's nvme_pci_use_sgls would decide for an I/O queue.
        let policy = DataPointerPolicy::new(sgls, mps);
        let choice = nvme::choose_data_pointer(io.dma(), &policy);
        let mut sqe = SubmissionQueueEntry::new(0x01); // Write
        sqe.set_cid(n as u16);
        sqe.set_nsid(1);
        sqe.set_cdw10(slba as u32);
        sqe.set_cdw11((slba >> 32) as u32);
        sqe.set_cdw12((len / 512 - 1) as u32);
        let mut prp_list = [0u64; 512];
        let mut sgl_seg = [SglDescriptor::default(); 256];
        let pool_bus = list_page.addr();
        match choice {
            DataPointerChoice::Prp => {
                let pool = [PrpListPage::new(pool_bus, &mut prp_list)];
                let prp = nvme::encode_prp(io.dma().iter().copied(), mps, pool)?;
                println!(
                    "policy: PRP (average segment {} < {}): PRP1 {:#x}, PRP2 {:#x}, {} list entries",
                    Bytes(len / io.dma().len() as u64),
                    Bytes(policy.sgl_threshold),
                    prp.prp1,
                    prp.prp2,
                    prp.list_page_entries(0)
                );
                sqe.set_data_pointer(prp.data_pointer());
            }
            DataPointerChoice::Sgl => {
                let items = io.dma().iter().copied().map(SglItem::Data);
                let pool = [SglSegmentPage::new(pool_bus, &mut sgl_seg)];
                let sgl = nvme::encode_sgl(items, SglOptions::new(sgls), pool)?;
                println!(
                    "policy: SGL (average segment {} >= {}): SGL1 {:?}",
                    Bytes(len / io.dma().len() as u64),
                    Bytes(policy.sgl_threshold),
                    sgl.dptr
                );
                sqe.set_data_pointer(sgl.data_pointer());
            }
            DataPointerChoice::Bounce => unreachable!("one DMA range is always expressible"),
        }
        assert_eq!(
            choice,
            if n == 0 {
                DataPointerChoice::Prp
            } else {
                DataPointerChoice::Sgl
            }
        );
        println!("command (64 bytes):");
        for row in sqe.as_bytes().chunks(16) {
            let h: Vec<String> = row.iter().map(|b| format!("{b:02x}")).collect();
            println!("  {}", h.join(" "));
        }

        // 4. What the controller will do with it: decode DPTR (reading the list page at
        //    its bus address) and follow every byte through the IOMMU to the buffer.
        let pool_bytes: &[u8] = if choice == DataPointerChoice::Prp {
            bytemuck::cast_slice(&prp_list)
        } else {
            bytemuck::cast_slice(&sgl_seg)
        };
        let bus_view = SliceMemory::new(pool_bus, pool_bytes);
        let mut items = Vec::new();
        nvme::decode_command(
            &sqe,
            len,
            mps,
            &bus_view,
            &mut items,
            &DecodeOptions::default().with_sgls(sgls),
        )?;
        let mut at = 0u64;
        for it in &items {
            let r = it.range().expect("data only");
            let mut o = 0;
            while o < r.len() {
                let dma = DmaAddr::new(r.addr().as_u64() + o);
                assert_eq!(
                    iommu.translate(dma),
                    Some(PhysAddr::new(phys_at(&phys, at + o)))
                );
                o += (PAGE - dma.as_u64() % PAGE).min(r.len() - o);
            }
            at += r.len();
        }
        assert_eq!(at, len);
        println!(
            "controller view checked: {} decoded range(s), every page lands in the buffer",
            items.len()
        );

        // 5. Completion: release the mapping (unlink, IOTLB invalidate, free the IOVA).
        io.unmap()?;
    }

    iommu.unmap_phys(list_page, dir, Attrs::empty())?;
    let s = iommu.stats();
    println!(
        "\nreleased: IOMMU idle = {}; {} maps, {} unmaps, {} IOTLB syncs over the run",
        iommu.is_idle(),
        s.maps,
        s.unmaps,
        s.iotlb_syncs
    );
    assert!(iommu.is_idle());
    drop(pool_buf);
    println!("\nnvme_driver: all checks passed");
    Ok(())
}
