//! The VFIO mapper through its public API, with a backend written the way a user would
//! (here: an in-process model of VFIO type1 that also checks the pages really are this
//! process's memory, by reading through the virtual address it was given). Real VFIO is
//! exercised end to end in a QEMU guest by `.ci/vfio-guest`.
#![cfg(all(feature = "vfio", target_os = "linux"))]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use physvec::map::vfio::{VfioBackend, VfioError, VfioIovaConfig, VfioMapper};
use physvec::map::DataDirection;
use physvec::nvme::{self, MemoryPageSize, PrpListPage};
use physvec::{DmaAddr, DmaRange, VirtAddr, VirtRange};

/// A model "IOMMU": IOVA page → process-virtual page, with type1's rules.
#[derive(Default)]
struct ModelIommu {
    pages: Mutex<BTreeMap<u64, u64>>,
}

impl ModelIommu {
    /// What a device would read at `iova`: the byte behind the mapped virtual address.
    fn device_read(&self, iova: u64) -> Option<u8> {
        let va = *self.pages.lock().unwrap().get(&(iova & !0xfff))? + (iova & 0xfff);
        // SAFETY: the test maps only live memory it owns and reads it while mapped.
        Some(unsafe { (va as *const u8).read_volatile() })
    }
}

// SAFETY: records mappings only; "device" reads happen in the test, on memory it owns.
unsafe impl VfioBackend for ModelIommu {
    unsafe fn map_dma(
        &self,
        vaddr: VirtAddr,
        iova: DmaAddr,
        len: u64,
        _dir: DataDirection,
    ) -> Result<(), VfioError> {
        let mut p = self.pages.lock().unwrap();
        let n = len / 4096;
        if (0..n).any(|i| p.contains_key(&(iova.as_u64() + i * 4096))) {
            return Err(VfioError::MapDma {
                vaddr: vaddr.as_u64(),
                iova: iova.as_u64(),
                len,
                errno: Some(libc::EEXIST),
            });
        }
        for i in 0..n {
            p.insert(iova.as_u64() + i * 4096, vaddr.as_u64() + i * 4096);
        }
        Ok(())
    }
    fn unmap_dma(&self, iova: DmaAddr, len: u64) -> Result<(), VfioError> {
        let mut p = self.pages.lock().unwrap();
        let gone = (0..len / 4096)
            .filter(|i| p.remove(&(iova.as_u64() + i * 4096)).is_some())
            .count() as u64;
        if gone * 4096 != len {
            return Err(VfioError::UnmapDma {
                iova: iova.as_u64(),
                len,
                errno: None,
            });
        }
        Ok(())
    }
}

/// Page-aligned heap memory (a stand-in for an anonymous mmap).
fn aligned(len: usize) -> (Vec<u8>, usize) {
    let v = vec![0u8; len + 4096];
    let off = (4096 - (v.as_ptr() as usize & 0xfff)) & 0xfff;
    (v, off)
}

fn check_bytes(iommu: &ModelIommu, dma: &[DmaRange], expect: &[u8]) {
    let mut i = 0;
    for r in dma {
        for b in 0..r.len() {
            assert_eq!(iommu.device_read(r.addr().as_u64() + b), Some(expect[i]));
            i += 1;
        }
    }
    assert_eq!(i, expect.len());
}

#[test]
fn registered_and_per_io_reach_the_right_bytes() {
    let iommu = Arc::new(ModelIommu::default());
    // The `Arc` backend impl, as a driver holding the container in an `Arc` uses it.
    let m = VfioMapper::new(iommu.clone(), VfioIovaConfig::new(39)).unwrap();

    let (mut region, off) = aligned(0x10000);
    for (i, b) in region.iter_mut().enumerate() {
        *b = i as u8 ^ 0x5a;
    }
    let base = region.as_ptr() as u64 + off as u64;
    let r = VirtRange::new(base, 0x10000);
    // SAFETY: `region` outlives the registration; the model only reads it.
    let d = unsafe { m.register(r, DataDirection::Bidirectional) }.unwrap();
    // A buffer at an odd (dword-aligned, as PRP1 wants) offset inside the region.
    let io = VirtRange::new(base + 0x1234, 0x2100);
    let dma = m.translate(io).unwrap();
    assert_eq!(dma.addr().as_u64(), d.addr().as_u64() + 0x1234);
    let expect: Vec<u8> = region[off + 0x1234..off + 0x1234 + 0x2100].to_vec();
    check_bytes(&iommu, &[dma], &expect);
    // The DMA range goes straight into a PRP list.
    let mut list = [0u64; 512];
    let prp = nvme::encode_prp(
        [dma],
        MemoryPageSize::SIZE_4K,
        [PrpListPage::new(DmaAddr::new(0x9000), &mut list)],
    )
    .unwrap();
    assert_eq!(prp.prp1, dma.addr());

    // Per-I/O: two pieces of a buffer outside the region.
    let (buf, boff) = aligned(0x6000);
    let bbase = buf.as_ptr() as u64 + boff as u64;
    let pieces = [
        VirtRange::new(bbase + 0x10, 0xff0),
        VirtRange::new(bbase + 0x3000, 0x1800),
    ];
    // SAFETY: `buf` outlives the mapping; the model only reads it.
    let io = unsafe { m.map_io(&pieces, DataDirection::ToDevice) }.unwrap();
    assert_eq!(
        io.dma().len(),
        1,
        "piece 1 ends on a page boundary: one IOVA range"
    );
    let mut expect = buf[boff + 0x10..boff + 0x1000].to_vec();
    expect.extend_from_slice(&buf[boff + 0x3000..boff + 0x4800]);
    check_bytes(&iommu, io.dma(), &expect);
    let gone = io.dma()[0];
    m.unregister(r).unwrap();
    assert!(!m.is_idle(), "a live per-I/O mapping, no region");
    io.unmap().unwrap();
    assert!(m.is_idle());
    // SAFETY: as above.
    unsafe { m.register(r, DataDirection::Bidirectional) }.unwrap();
    assert_eq!(iommu.device_read(gone.addr().as_u64()), None, "unmapped");

    m.unregister(r).unwrap();
    assert!(iommu.pages.lock().unwrap().is_empty());
    m.verify_released().unwrap();
    let s = m.stats();
    // The region twice (unregistered and registered again above), one per-I/O map.
    assert_eq!((s.map_ioctls, s.unmap_ioctls, s.lookups), (4, 3, 1));
}

#[test]
fn borrowed_backend_and_typed_errors() {
    let iommu = ModelIommu::default();
    // The `&B` backend impl.
    let m = VfioMapper::new(&iommu, VfioIovaConfig::new(39)).unwrap();
    let (region, off) = aligned(0x2000);
    let base = region.as_ptr() as u64 + off as u64;
    let r = VirtRange::new(base, 0x2000);
    // SAFETY: `region` outlives the registration; nothing reads it.
    unsafe { m.register(r, DataDirection::ToDevice) }.unwrap();
    assert!(!m.is_idle(), "a registered region");
    let dbg = format!("{m:?}");
    assert!(
        dbg.starts_with("VfioMapper { config: VfioIovaConfig {")
            && dbg.contains("stats: VfioStats {"),
        "{dbg}"
    );
    let e = m
        .translate(VirtRange::new(base + 0x1f00, 0x200))
        .unwrap_err();
    assert_eq!(
        e,
        VfioError::NotRegistered {
            addr: base + 0x1f00,
            len: 0x200
        }
    );
    // SAFETY: as above.
    let e = unsafe {
        m.register(
            VirtRange::new(base + 0x1000, 0x1000),
            DataDirection::ToDevice,
        )
    }
    .unwrap_err();
    assert_eq!(e.kind(), "overlap");
    let e = unsafe { m.register(VirtRange::new(base + 1, 0x1000), DataDirection::ToDevice) }
        .unwrap_err();
    assert_eq!(e.kind(), "unaligned");
    m.unregister(r).unwrap();
    assert!(m.is_idle());
    assert!(
        iommu.pages.lock().unwrap().is_empty(),
        "unmapped through the borrowed backend"
    );
    // A kernel refusal comes back with its errno and addresses, and unwinds: something
    // else already maps the IOVA the allocator hands out first.
    iommu.pages.lock().unwrap().insert(0x1000, base);
    // SAFETY: as above.
    let e =
        unsafe { m.map_io(&[VirtRange::new(base + 8, 8)], DataDirection::FromDevice) }.unwrap_err();
    assert_eq!(
        e,
        VfioError::MapDma {
            vaddr: base,
            iova: 0x1000,
            len: 0x1000,
            errno: Some(libc::EEXIST)
        }
    );
    assert!(e.to_string().contains("errno 17"), "{e}");
    assert!(m.is_idle());
}

/// A backend that accepts every map, touches no memory, and accepts every unmap or,
/// with `refuse_unmap`, refuses it as the kernel does with `EINVAL`.
struct NoMemory {
    refuse_unmap: bool,
}

// SAFETY: maps nothing, so no device can reach memory through it.
unsafe impl VfioBackend for NoMemory {
    unsafe fn map_dma(
        &self,
        _: VirtAddr,
        _: DmaAddr,
        _: u64,
        _: DataDirection,
    ) -> Result<(), VfioError> {
        Ok(())
    }
    fn unmap_dma(&self, iova: DmaAddr, len: u64) -> Result<(), VfioError> {
        if !self.refuse_unmap {
            return Ok(());
        }
        Err(VfioError::UnmapDma {
            iova: iova.as_u64(),
            len,
            errno: Some(libc::EINVAL),
        })
    }
}

/// IOVA space is split around the x86 MSI window (0xfee00000..0xfeefffff): a region
/// too large for the space below it lands above it, and unregistering it returns the
/// IOVA to that allocator (the mapper is idle again).
#[test]
fn regions_above_the_msi_window_are_returned() {
    let m = VfioMapper::new(
        NoMemory {
            refuse_unmap: false,
        },
        VfioIovaConfig::new(39),
    )
    .unwrap();
    let big = VirtRange::new(0x7000_0000_0000, 5 << 30);
    // SAFETY: the backend never maps or reads the range.
    let d = unsafe { m.register(big, DataDirection::ToDevice) }.unwrap();
    assert!(
        d.addr().as_u64() > 0xfeef_ffff,
        "above the MSI window: {d:?}"
    );
    m.unregister(big).unwrap();
    assert!(
        m.is_idle(),
        "the IOVA went back to the allocator above the window"
    );
}

/// A per-I/O mapping's `unmap` reports the kernel's refusal (the IOVA then stays
/// reserved, never reused while the kernel may still map it); its `Debug` shows where
/// it is.
#[test]
fn per_io_unmap_reports_the_kernels_refusal() {
    let m = VfioMapper::new(NoMemory { refuse_unmap: true }, VfioIovaConfig::new(39)).unwrap();
    let piece = [VirtRange::new(0x7000_0000_0000, 0x1000)];
    // SAFETY: the backend never maps or reads the range.
    let io = unsafe { m.map_io(&piece, DataDirection::ToDevice) }.unwrap();
    let r = io.reservation();
    let dbg = format!("{io:?}");
    assert!(
        dbg.starts_with("IoMapping { iova: ") && dbg.contains("reserved: 4096"),
        "{dbg}"
    );
    assert_eq!(
        io.unmap(),
        Err(VfioError::UnmapDma {
            iova: r.addr().as_u64(),
            len: 0x1000,
            errno: Some(libc::EINVAL)
        })
    );
    assert!(!m.is_idle(), "the IOVA stays reserved");
}
