//! A user-space NVMe driver's I/O path, end to end: a locked DMA buffer of this process
//! ([`DmaBuffer`]) translated to physical addresses through `/proc/self/pagemap`, the
//! controller's limits applied by the builder, the two-step DMA mapping through an IOMMU
//! (the crate's software IOMMU stands in for VFIO's), PRP or SGL chosen by the policy
//! helper, the Write command built by name, checked from the controller's side, its
//! completion read back, and everything released.
//!
//! ```text
//! cargo run --example nvme_driver
//! ```
//!
//! Reading PFNs from pagemap needs `CAP_SYS_ADMIN` (Linux 4.2+ shows zeros otherwise);
//! without it the example prints the library's error (which says how to fix it) and uses
//! a synthetic scattered layout instead. The example asserts its own results: running it
//! is a test (CI runs it, also with `PHYSVEC_SYNTHETIC=1`, which forces the synthetic
//! layout).

use physvec::dma_buf::DmaBuffer;
use physvec::fmt::Bytes;
use physvec::map::{self, Attrs, DataDirection, DmaMapper, SoftIommu};
use physvec::mem::SliceMemory;
use physvec::nvme::{
    self, CompletionQueueEntry, CompletionStatus, DataPointerChoice, DataPointerPolicy,
    DecodeOptions, LbaRange, MemoryPageSize, NamespaceId, NvmeStatus, PrpListPage, SglCapabilities,
    SglDescriptor, SglOptions, SglSegmentPage, SubmissionQueueEntry,
};
use physvec::{DmaAddr, DmaConstraints, PhysAddr, PhysRange, PhysVec, RangeBuilder};

const PAGE: u64 = 4096;
const LBA: u32 = 512;

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

/// The physical ranges of bytes `[off, off + len)` of `buf`: through pagemap, or, when
/// `synthetic`, made up from pairs of contiguous frames scattered over 64 GiB.
fn translate(
    buf: &DmaBuffer,
    off: u64,
    len: u64,
    synthetic: bool,
) -> Result<PhysVec, Box<dyn std::error::Error>> {
    if !synthetic {
        return Ok(buf.phys_window(off as usize, len as usize)?);
    }
    let mut out = PhysVec::new();
    let va0 = buf.vaddr() + off;
    let mut va = va0;
    while va < va0 + len {
        let i = (va - buf.vaddr()) / PAGE;
        let pfn = 0x10_0000 + (i / 2) * 0x1_2345 + (i % 2);
        let piece = (PAGE - va % PAGE).min(va0 + len - va);
        out.push(PhysRange::new(pfn * PAGE + va % PAGE, piece));
        va += piece;
    }
    Ok(out)
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
    // 300 KiB of locked, pre-faulted DMA memory (2 MiB hugepages when the system has
    // free ones), filled with a pattern; the I/Os start 0x200 into it. The pool page for
    // PRP lists / SGL segments is a second, 4 KiB buffer.
    let mut buf = DmaBuffer::new(300 << 10)?;
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    let pool_buf = DmaBuffer::new(PAGE as usize)?;
    println!(
        "data buffer: {} at virtual {:#x}, {}",
        Bytes(buf.len() as u64),
        buf.vaddr(),
        buf.backing()
    );

    // PHYSVEC_SYNTHETIC=1 forces the synthetic layout (CI runs both paths).
    let synthetic = match (std::env::var_os("PHYSVEC_SYNTHETIC"), pool_buf.phys()) {
        (Some(_), _) => {
            println!("PHYSVEC_SYNTHETIC is set: using a SYNTHETIC scattered layout");
            true
        }
        (None, Err(e)) => {
            println!("pagemap not usable here ({e}): using a SYNTHETIC scattered layout");
            true
        }
        (None, Ok(_)) => {
            println!("translated through /proc/self/pagemap: real physical pages of this process");
            false
        }
    };
    let pool_phys = translate(&pool_buf, 0, PAGE, synthetic)?;
    let pool_phys = if synthetic {
        PhysRange::new(0xff_f000 * PAGE, PAGE)
    } else {
        pool_phys[0]
    };
    let list_page =
        map::DmaMapper::map_phys(&iommu, pool_phys, DataDirection::ToDevice, Attrs::empty())?;
    println!(
        "DMA pool page: phys {} -> dma {}",
        pool_phys.addr(),
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
        // 1. Build: the buffer's physical ranges for this window, coalesced and split by
        //    the controller's limits.
        let mut b = RangeBuilder::new(limits, PhysVec::new())?;
        let va0 = buf.vaddr() + off;
        b.extend_from(translate(&buf, off, len, synthetic)?)?;
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
        let lbas = LbaRange::from_bytes(slba * u64::from(LBA), len, LBA)?;
        let mut sqe = SubmissionQueueEntry::write(NamespaceId::new(1), lbas).with_cid(n as u16);
        let mut prp_list = [0u64; 512];
        let mut sgl_seg = [SglDescriptor::default(); 256];
        let pool_bus = list_page.addr();
        match choice {
            DataPointerChoice::Prp => {
                let pool = [PrpListPage::new(pool_bus, &mut prp_list)];
                let prp = nvme::encode_prp(io.dma(), mps, pool)?;
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
                let pool = [SglSegmentPage::new(pool_bus, &mut sgl_seg)];
                let sgl = nvme::encode_sgl(io.dma(), SglOptions::new(sgls), pool)?;
                println!(
                    "policy: SGL (average segment {} >= {}): SGL1 {}",
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
        println!("command: {sqe}");
        println!("command (64 bytes as they go into the submission queue):");
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

        // 5. Completion: the controller posts a 16-byte entry; the driver checks the
        //    phase tag (new entry), the command id and the status, then releases the
        //    mapping (unlink, IOTLB invalidate, free the IOVA).
        let posted =
            CompletionQueueEntry::new(sqe.cid(), 1, n as u16 + 1, CompletionStatus::SUCCESS, true);
        let cqe = CompletionQueueEntry::from_bytes(*posted.as_bytes());
        println!("completion: {cqe}");
        assert!(cqe.phase() && cqe.cid() == sqe.cid());
        assert_eq!(cqe.status(), NvmeStatus::SUCCESS);
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
    drop(pool_buf); // munlock + munmap
    println!("\nnvme_driver: all checks passed");
    Ok(())
}
