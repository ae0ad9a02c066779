//! `dma_map_sg()` / `dma_unmap_sg()` (`kernel/dma/mapping.c`) with its two back ends:
//! `iommu_dma_map_sg()` (`drivers/iommu/dma-iommu.c`, with `iommu_map_sg()` from
//! `drivers/iommu/iommu.c` and `__finalise_sg()`) and `dma_direct_map_sg()`
//! (`kernel/dma/direct.c`). The device is cache-coherent and not untrusted (no swiotlb),
//! as an NVMe SSD on x86_64: `iommu_dma_sync_sg_for_device()` and the direct path's
//! `arch_sync_dma_*` are no-ops there and are left out.

use super::mm::{Mem, P2pdmaMapState, P2pdmaMapType};
use super::scatterlist::{sg_next, sg_page, Scatterlist, DMA_MAPPING_ERROR, SG_DMA_BUS_ADDRESS};

/// `IOMMU_READ`.
pub const IOMMU_READ: u8 = 1;
/// `IOMMU_WRITE`.
pub const IOMMU_WRITE: u8 = 2;

/// What `dma-iommu.c` needs from an `iommu_domain` and its `iova_domain`.
pub trait IommuDomain {
    /// `iovad->granule`.
    fn granule(&self) -> u64;
    /// `iommu_dma_alloc_iova(domain, size, dma_limit, dev)`; 0 on failure.
    fn alloc_iova(&self, size: u64, dma_limit: u64) -> u64;
    /// `iommu_dma_free_iova(domain, iova, size, gather)`.
    fn free_iova(&self, iova: u64, size: u64);
    /// `__iommu_map(domain, iova, paddr, size, prot, gfp)`.
    fn map(&self, iova: u64, paddr: u64, size: u64, prot: u8) -> Result<(), ()>;
    /// `ops->iotlb_sync_map(domain, iova, size)`.
    fn iotlb_sync_map(&self, iova: u64, size: u64);
    /// `iommu_unmap_fast(domain, iova, size, gather)`: bytes unmapped.
    fn unmap_fast(&self, iova: u64, size: u64) -> u64;
    /// `iommu_iotlb_sync(domain, gather)`.
    fn iotlb_sync(&self, iova: u64, size: u64);
}

/// How the device's DMA is translated (`dma_map_direct()` vs `use_dma_iommu()`).
pub enum DmaOps<'a, D> {
    /// `dev->dma_iommu`: through the IOMMU domain.
    Iommu(&'a D),
    /// No IOMMU: `dma = phys` (x86_64 `phys_to_dma` without memory encryption).
    Direct,
}

/// `struct device` as the DMA layer sees it.
pub struct Device<'a, D> {
    /// Translation.
    pub ops: DmaOps<'a, D>,
    /// `*dev->dma_mask`.
    pub dma_mask: u64,
    /// `dma_get_seg_boundary(dev)` (PCI default `0xffffffff`).
    pub seg_boundary_mask: u64,
    /// `dma_get_max_seg_size(dev)` (NVMe sets `0xffffffff`).
    pub max_seg_size: u32,
}

/// `sg_phys()`.
#[inline]
fn sg_phys(mem: &Mem, sg: &Scatterlist) -> u64 {
    mem.page_to_phys(sg_page(sg)) + sg.offset as u64
}

/// `dma_map_sg_attrs(dev, sg, nents, dir, 0)` (via `__dma_map_sg_attrs`): the number of
/// DMA segments, or 0 on failure.
///
/// # Safety
/// `sgl` is a table with `nents` filled entries.
pub unsafe fn dma_map_sg<D: IommuDomain>(
    dev: &Device<'_, D>,
    mem: &Mem,
    sgl: *mut Scatterlist,
    nents: u32,
    prot: u8,
) -> u32 {
    // SAFETY: forwarded.
    unsafe {
        match dev.ops {
            DmaOps::Direct => dma_direct_map_sg(dev, mem, sgl, nents),
            DmaOps::Iommu(domain) => iommu_dma_map_sg(dev, domain, mem, sgl, nents, prot),
        }
    }
}

/// `dma_unmap_sg_attrs(dev, sg, nents, dir, 0)` with the `nents` given to `dma_map_sg`.
///
/// # Safety
/// As [`dma_map_sg`], after a successful map.
pub unsafe fn dma_unmap_sg<D: IommuDomain>(
    dev: &Device<'_, D>,
    mem: &Mem,
    sgl: *mut Scatterlist,
    nents: u32,
) {
    // SAFETY: forwarded.
    unsafe {
        match dev.ops {
            DmaOps::Direct => dma_direct_unmap_sg(mem, sgl, nents),
            DmaOps::Iommu(domain) => iommu_dma_unmap_sg(domain, sgl, nents),
        }
    }
}

/// `dma_direct_map_sg()`.
///
/// # Safety
/// As [`dma_map_sg`].
unsafe fn dma_direct_map_sg<D>(
    dev: &Device<'_, D>,
    mem: &Mem,
    sgl: *mut Scatterlist,
    nents: u32,
) -> u32 {
    let mut state = P2pdmaMapState::default();
    let mut sg = sgl;
    for _ in 0..nents {
        // SAFETY: `sg` walks the `nents` filled entries through `sg_next`.
        let s = unsafe { &mut *sg };
        match state.state(mem, sg_page(s)) {
            P2pdmaMapType::BusAddr => {
                s.dma_address = state.bus_addr_map(sg_phys(mem, s));
                s.dma_length = s.length;
                s.dma_flags |= SG_DMA_BUS_ADDRESS;
            }
            P2pdmaMapType::None | P2pdmaMapType::ThruHostBridge => {
                // dma_direct_map_page(): phys_to_dma() and the dma_capable() check.
                let dma = sg_phys(mem, s);
                if dma + s.length as u64 - 1 > dev.dma_mask {
                    return 0;
                }
                s.dma_address = dma;
                s.dma_length = s.length;
            }
        }
        // SAFETY: as above.
        sg = unsafe { sg_next(sg) };
    }
    nents
}

/// `dma_direct_unmap_sg()`: `dma_direct_unmap_page()` per entry (`dma_to_phys()` and the
/// `is_swiotlb_buffer()` check, never true here).
///
/// # Safety
/// As [`dma_unmap_sg`].
unsafe fn dma_direct_unmap_sg(mem: &Mem, sgl: *mut Scatterlist, nents: u32) {
    let _ = mem;
    let mut sg = sgl;
    for _ in 0..nents {
        // SAFETY: as in `dma_direct_map_sg`.
        let s = unsafe { &mut *sg };
        if s.dma_flags & SG_DMA_BUS_ADDRESS != 0 {
            s.dma_flags &= !SG_DMA_BUS_ADDRESS;
        } else {
            let phys = s.dma_address; // dma_to_phys()
            std::hint::black_box(phys);
        }
        // SAFETY: as above.
        sg = unsafe { sg_next(sg) };
    }
}

/// `iommu_dma_map_sg()`.
///
/// # Safety
/// As [`dma_map_sg`].
unsafe fn iommu_dma_map_sg<D: IommuDomain>(
    dev: &Device<'_, D>,
    domain: &D,
    mem: &Mem,
    sgl: *mut Scatterlist,
    nents: u32,
    prot: u8,
) -> u32 {
    let granule = domain.granule();
    let mask = dev.seg_boundary_mask;
    let mut state = P2pdmaMapState::default();
    let mut prev: *mut Scatterlist = std::ptr::null_mut();
    let mut iova_len: u64 = 0;

    // Work out how much IOVA space we need and align the segments to IOVA granules,
    // stashing the unaligned parts in the as-yet-unused DMA fields.
    let mut sg = sgl;
    for _ in 0..nents {
        // SAFETY: `sg` walks the filled entries; `prev` is an earlier one.
        let s = unsafe { &mut *sg };
        let s_iova_off = s.offset as u64 & (granule - 1);
        let mut s_length = s.length as u64;
        let pad_len = (mask.wrapping_sub(iova_len).wrapping_add(1)) & mask;
        match state.state(mem, sg_page(s)) {
            P2pdmaMapType::ThruHostBridge | P2pdmaMapType::None => {}
            P2pdmaMapType::BusAddr => {
                // iommu_map_sg() skips it, __finalise_sg() copies the bus address.
                s.dma_address = state.bus_addr_map(sg_phys(mem, s));
                s.dma_length = s.length;
                s.dma_flags |= SG_DMA_BUS_ADDRESS;
                // SAFETY: as above.
                sg = unsafe { sg_next(sg) };
                continue;
            }
        }
        s.dma_address = s_iova_off;
        s.dma_length = s_length as u32;
        s.offset -= s_iova_off as u32;
        s_length = (s_length + s_iova_off + granule - 1) & !(granule - 1);
        s.length = s_length as u32;
        if pad_len != 0 && pad_len < s_length - 1 {
            // SAFETY: pad_len != 0 implies iova_len != 0, so `prev` was set.
            unsafe { (*prev).length += pad_len as u32 };
            iova_len += pad_len;
        }
        iova_len += s_length;
        prev = sg;
        // SAFETY: as above.
        sg = unsafe { sg_next(sg) };
    }

    if iova_len == 0 {
        // SAFETY: forwarded.
        return unsafe { finalise_sg(dev, sgl, nents, 0) };
    }
    let iova = domain.alloc_iova(iova_len, dev.dma_mask);
    if iova == 0 {
        // SAFETY: forwarded.
        unsafe { restore_sg(sgl, nents) };
        return 0;
    }
    // We'll leave any physical concatenation to the IOMMU driver's implementation.
    // SAFETY: forwarded.
    let mapped = unsafe { iommu_map_sg(domain, mem, iova, sgl, nents, prot) };
    if mapped < iova_len {
        if mapped > 0 {
            domain.unmap_fast(iova, mapped);
        }
        domain.free_iova(iova, iova_len);
        // SAFETY: forwarded.
        unsafe { restore_sg(sgl, nents) };
        return 0;
    }
    // SAFETY: forwarded.
    unsafe { finalise_sg(dev, sgl, nents, iova) }
}

/// `iommu_map_sg()`: map physically contiguous runs of the (granule-aligned) entries with
/// one `__iommu_map()` each, then one `iotlb_sync_map`. Returns the bytes mapped.
///
/// # Safety
/// As [`dma_map_sg`].
unsafe fn iommu_map_sg<D: IommuDomain>(
    domain: &D,
    mem: &Mem,
    iova: u64,
    sgl: *mut Scatterlist,
    nents: u32,
    prot: u8,
) -> u64 {
    let mut len: u64 = 0;
    let mut mapped: u64 = 0;
    let mut start: u64 = 0;
    let mut sg = sgl;
    let mut i = 0;
    while i <= nents {
        // SAFETY: `sg` stays on a filled entry (the last one when i == nents).
        let s = unsafe { &*sg };
        let s_phys = sg_phys(mem, s);
        if len != 0 && s_phys != start + len {
            if domain.map(iova + mapped, start, len, prot).is_err() {
                return mapped;
            }
            mapped += len;
            len = 0;
        }
        if s.dma_flags & SG_DMA_BUS_ADDRESS == 0 {
            if len != 0 {
                len += s.length as u64;
            } else {
                len = s.length as u64;
                start = s_phys;
            }
        }
        i += 1;
        if i < nents {
            // SAFETY: as above.
            sg = unsafe { sg_next(sg) };
        }
    }
    domain.iotlb_sync_map(iova, mapped);
    mapped
}

/// `__finalise_sg()`: restore each entry's original offset/length and merge the entries
/// into DMA segments, written from the start of the list. Returns the segment count.
///
/// # Safety
/// As [`dma_map_sg`].
unsafe fn finalise_sg<D>(
    dev: &Device<'_, D>,
    sgl: *mut Scatterlist,
    nents: u32,
    mut dma_addr: u64,
) -> u32 {
    let seg_mask = dev.seg_boundary_mask;
    let max_len = dev.max_seg_size;
    let mut cur = sgl;
    let mut cur_len: u32 = 0;
    let mut count = 0;
    let mut s = sgl;
    for i in 0..nents {
        // SAFETY: `s` walks the entries; `cur` trails it (cur <= s in list order).
        let se = unsafe { &mut *s };
        let s_dma_addr = se.dma_address;
        let s_iova_off = se.dma_address as u32;
        let s_length = se.dma_length;
        let s_iova_len = se.length;
        se.dma_address = DMA_MAPPING_ERROR;
        se.dma_length = 0;

        if se.dma_flags & SG_DMA_BUS_ADDRESS != 0 {
            if i > 0 {
                // SAFETY: as above.
                cur = unsafe { sg_next(cur) };
            }
            se.dma_flags &= !SG_DMA_BUS_ADDRESS;
            // SAFETY: as above.
            let c = unsafe { &mut *cur };
            c.dma_address = s_dma_addr;
            c.dma_length = s_length;
            c.dma_flags |= SG_DMA_BUS_ADDRESS;
            count += 1;
            cur_len = 0;
            // SAFETY: as above.
            s = unsafe { sg_next(s) };
            continue;
        }

        se.offset += s_iova_off;
        se.length = s_length;

        if cur_len != 0
            && s_iova_off == 0
            && (dma_addr & seg_mask) != 0
            && max_len - cur_len >= s_length
        {
            cur_len += s_length;
        } else {
            if i > 0 {
                // SAFETY: as above.
                cur = unsafe { sg_next(cur) };
            }
            cur_len = s_length;
            count += 1;
            // SAFETY: as above.
            unsafe { (*cur).dma_address = dma_addr + s_iova_off as u64 };
        }
        // SAFETY: as above.
        unsafe { (*cur).dma_length = cur_len };
        dma_addr += s_iova_len as u64;
        if s_length + s_iova_off < s_iova_len {
            cur_len = 0;
        }
        // SAFETY: as above.
        s = unsafe { sg_next(s) };
    }
    count
}

/// `__invalidate_sg()`: undo the in-place alignment after a failure.
///
/// # Safety
/// As [`dma_map_sg`].
unsafe fn restore_sg(sgl: *mut Scatterlist, nents: u32) {
    let mut s = sgl;
    for _ in 0..nents {
        // SAFETY: as above.
        let se = unsafe { &mut *s };
        if se.dma_flags & SG_DMA_BUS_ADDRESS != 0 {
            se.dma_flags &= !SG_DMA_BUS_ADDRESS;
        } else {
            if se.dma_address != DMA_MAPPING_ERROR {
                se.offset += se.dma_address as u32;
            }
            if se.dma_length != 0 {
                se.length = se.dma_length;
            }
        }
        se.dma_address = DMA_MAPPING_ERROR;
        se.dma_length = 0;
        // SAFETY: as above.
        s = unsafe { sg_next(s) };
    }
}

/// `iommu_dma_unmap_sg()`: the segments share one IOVA allocation; find its start and
/// end and `__iommu_dma_unmap()` it.
///
/// # Safety
/// As [`dma_unmap_sg`].
unsafe fn iommu_dma_unmap_sg<D: IommuDomain>(domain: &D, sgl: *mut Scatterlist, nents: u32) {
    let mut start: u64 = 0;
    let mut end: u64 = 0;
    let mut tmp = sgl;
    let mut i = 0;
    while i < nents {
        // SAFETY: as above.
        let t = unsafe { &mut *tmp };
        if t.dma_flags & SG_DMA_BUS_ADDRESS != 0 {
            t.dma_flags &= !SG_DMA_BUS_ADDRESS;
        } else {
            if t.dma_length != 0 {
                start = t.dma_address;
            }
            break;
        }
        i += 1;
        // SAFETY: as above.
        tmp = unsafe { sg_next(tmp) };
    }
    while i < nents {
        // SAFETY: as above.
        let t = unsafe { &mut *tmp };
        if t.dma_flags & SG_DMA_BUS_ADDRESS != 0 {
            t.dma_flags &= !SG_DMA_BUS_ADDRESS;
        } else {
            if t.dma_length == 0 {
                break;
            }
            end = t.dma_address + t.dma_length as u64;
        }
        i += 1;
        if i < nents {
            // SAFETY: as above.
            tmp = unsafe { sg_next(tmp) };
        }
    }
    if end != 0 {
        iommu_dma_unmap(domain, start, end - start);
    }
}

/// `__iommu_dma_unmap(dev, dma_addr, size)`.
fn iommu_dma_unmap<D: IommuDomain>(domain: &D, dma_addr: u64, size: u64) {
    let g = domain.granule();
    let iova_off = dma_addr & (g - 1);
    let dma_addr = dma_addr - iova_off;
    let size = (size + iova_off + g - 1) & !(g - 1);
    let unmapped = domain.unmap_fast(dma_addr, size);
    debug_assert_eq!(unmapped, size);
    domain.iotlb_sync(dma_addr, size);
    domain.free_iova(dma_addr, size);
}
