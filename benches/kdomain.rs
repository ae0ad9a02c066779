//! The legacy path's `iommu_domain` + `iova_domain`: the crate's own radix I/O page table
//! ([`IoPageTable`]) and IOVA allocator ([`IovaAllocator`]) with the configuration of
//! [`SoftIommu::new_4k`](physvec::map::SoftIommu::new_4k), so both pipelines program the
//! same kind of page table. The physvec pipeline goes through `SoftIommu` (the
//! `DmaMapper`), which adds its own bookkeeping (reservation map, link tracking, IOTLB
//! invalidation) on top of the same two structures.

use std::cell::RefCell;

use physvec::map::{Attrs, DataDirection, IoPageTable, IoPerm, IovaAllocator};
use physvec::{DmaAddr, PageSize, PhysAddr};

use crate::legacy::dma::{IommuDomain, IOMMU_READ, IOMMU_WRITE};

/// `IOVA_RANGE_CACHE_MAX_SIZE`: `alloc_iova_fast` rounds sizes below
/// `2^(IOVA_RANGE_CACHE_MAX_SIZE - 1)` granules up to a power of two.
const IOVA_RANGE_CACHE_MAX_SIZE: u32 = 6;

/// A DMA-API IOMMU domain with a 4 KiB granule and a 48-bit IOVA space.
pub struct KernelDomain {
    pt: RefCell<IoPageTable>,
    iovad: RefCell<IovaAllocator>,
}

impl KernelDomain {
    /// Like `SoftIommu::new_4k()`: 4 KiB granule, 48-bit, large leaves, IOVA 0 excluded.
    pub fn new_4k() -> Self {
        Self {
            pt: RefCell::new(IoPageTable::new(PageSize::SIZE_4K, 48, true).expect("valid")),
            iovad: RefCell::new(
                IovaAllocator::new(
                    PageSize::SIZE_4K,
                    physvec::DmaAddr::new(0x1000),
                    physvec::DmaAddr::new((1 << 48) - 1),
                )
                .expect("valid"),
            ),
        }
    }

    /// Bytes mapped now (0 when idle).
    pub fn mapped_bytes(&self) -> u64 {
        self.pt.borrow().mapped_bytes()
    }

    /// Free IOVA bytes.
    pub fn iova_free_bytes(&self) -> u64 {
        self.iovad.borrow().free_bytes()
    }

    /// `alloc_iova_fast(iovad, size, limit, size_aligned = true)`'s size rounding.
    fn rounded(size: u64) -> u64 {
        let pages = size >> 12;
        if pages < 1 << (IOVA_RANGE_CACHE_MAX_SIZE - 1) {
            pages.next_power_of_two() << 12
        } else {
            size
        }
    }
}

impl IommuDomain for KernelDomain {
    fn granule(&self) -> u64 {
        4096
    }

    fn alloc_iova(&self, size: u64, dma_limit: u64) -> u64 {
        let size = Self::rounded(size);
        // size_aligned: the IOVA is aligned to the size rounded up to a power of two.
        let align = PageSize::new(size.next_power_of_two()).unwrap_or(PageSize::SIZE_4K);
        match self
            .iovad
            .borrow_mut()
            .alloc(size, align)
            .map(physvec::DmaAddr::as_u64)
        {
            Some(iova) if iova + size - 1 <= dma_limit => iova,
            Some(iova) => {
                let _ = self
                    .iovad
                    .borrow_mut()
                    .free(physvec::DmaAddr::new(iova), size);
                0
            }
            None => 0,
        }
    }

    fn free_iova(&self, iova: u64, size: u64) {
        let r = self
            .iovad
            .borrow_mut()
            .free(physvec::DmaAddr::new(iova), Self::rounded(size));
        debug_assert!(r.is_ok());
    }

    fn map(&self, iova: u64, paddr: u64, size: u64, prot: u8) -> Result<(), ()> {
        // dma_info_to_prot(): IOMMU_READ for DMA_TO_DEVICE, IOMMU_WRITE for FROM.
        let dir = match (prot & IOMMU_READ != 0, prot & IOMMU_WRITE != 0) {
            (true, false) => DataDirection::ToDevice,
            (false, true) => DataDirection::FromDevice,
            _ => DataDirection::Bidirectional,
        };
        let perm = IoPerm::for_transfer(dir, Attrs::empty());
        self.pt
            .borrow_mut()
            .map(DmaAddr::new(iova), PhysAddr::new(paddr), size, perm)
            .map_err(|_| ())
    }

    fn iotlb_sync_map(&self, _iova: u64, _size: u64) {}

    fn unmap_fast(&self, iova: u64, size: u64) -> u64 {
        self.pt
            .borrow_mut()
            .unmap(DmaAddr::new(iova), size)
            .map_or(0, |()| size)
    }

    fn iotlb_sync(&self, _iova: u64, _size: u64) {}
}

impl KernelDomain {
    /// What the device sees at `iova` (a page-table walk).
    pub fn translate(&self, iova: u64) -> Option<u64> {
        self.pt
            .borrow()
            .translate(DmaAddr::new(iova))
            .map(|p| p.as_u64())
    }
}
