//! `struct page` and the vmemmap: the page-frame bookkeeping the scatterlist path is
//! built on (`include/linux/mm_types.h`, `include/asm-generic/memory_model.h` with
//! `CONFIG_SPARSEMEM_VMEMMAP`), plus just enough of `struct dev_pagemap` for PCI P2PDMA
//! pages (`include/linux/memremap.h`, `include/linux/pci-p2pdma.h`).

/// `PAGE_SHIFT` on x86_64.
pub const PAGE_SHIFT: u32 = 12;
/// `PAGE_SIZE`.
pub const PAGE_SIZE: u32 = 1 << PAGE_SHIFT;

/// Models the zone bits of `page->flags` saying `ZONE_DEVICE` (`is_zone_device_page`).
pub const PG_ZONE_DEVICE: u64 = 1 << 62;

/// `struct page`: 64 bytes on x86_64. Only `flags` and the `pgmap` pointer (here an index
/// into [`Mem::pgmaps`], 0 for none) are modelled; the rest is padding so that the
/// vmemmap has the kernel's stride and cache footprint.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub struct Page {
    /// `page->flags`.
    pub flags: u64,
    /// `page->pgmap` (ZONE_DEVICE pages only): 1-based index into [`Mem::pgmaps`].
    pub pgmap: u64,
    _rest: [u64; 6],
}

const _: () = assert!(core::mem::size_of::<Page>() == 64);

/// How the DMA device reaches a P2PDMA provider (`enum pci_p2pdma_map_type`), cached per
/// pgmap as `__pci_p2pdma_update_state()` computes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum P2pMap {
    /// `PCI_P2PDMA_MAP_BUS_ADDR`: through a switch, `dma = phys + bus_off`.
    BusAddr { bus_off: u64 },
    /// `PCI_P2PDMA_MAP_THRU_HOST_BRIDGE`: mapped like RAM (no workload uses it).
    #[allow(dead_code)]
    ThruHostBridge,
}

/// `struct dev_pagemap` of type `MEMORY_DEVICE_PCI_P2PDMA` plus its provider.
#[derive(Clone, Copy, Debug)]
pub struct DevPagemap {
    /// Physical range of the BAR: `[start, end)`.
    pub start: u64,
    /// End of the BAR (exclusive).
    pub end: u64,
    /// Map type for the DMA device.
    pub map: P2pMap,
}

/// The machine's memory map: the vmemmap (one `struct page` per PFN from 0) and the
/// device pagemaps.
pub struct Mem {
    vmemmap: Vec<Page>,
    /// Device pagemaps (`page->pgmap` points into this).
    pub pgmaps: Vec<DevPagemap>,
}

impl Mem {
    /// A vmemmap for `pfns` page frames (allocated zeroed, so untouched parts stay
    /// virtual) with the given P2PDMA BARs turned into ZONE_DEVICE pages
    /// (`pci_p2pdma_add_resource` → `devm_memremap_pages`).
    pub fn new(pfns: usize, pgmaps: Vec<DevPagemap>) -> Self {
        let zero = Page {
            flags: 0,
            pgmap: 0,
            _rest: [0; 6],
        };
        let mut vmemmap = vec![zero; pfns];
        for (i, pm) in pgmaps.iter().enumerate() {
            for pfn in (pm.start >> PAGE_SHIFT)..(pm.end >> PAGE_SHIFT) {
                let p = &mut vmemmap[pfn as usize];
                p.flags |= PG_ZONE_DEVICE;
                p.pgmap = i as u64 + 1;
            }
        }
        Self { vmemmap, pgmaps }
    }

    /// `pfn_to_page()`: `vmemmap + pfn`.
    #[inline]
    pub fn pfn_to_page(&self, pfn: u64) -> *const Page {
        self.vmemmap.as_ptr().wrapping_add(pfn as usize)
    }

    /// `page_to_pfn()`: `page - vmemmap`.
    #[inline]
    pub fn page_to_pfn(&self, page: *const Page) -> u64 {
        ((page as usize - self.vmemmap.as_ptr() as usize) / core::mem::size_of::<Page>()) as u64
    }

    /// `page_to_phys()`.
    #[inline]
    pub fn page_to_phys(&self, page: *const Page) -> u64 {
        self.page_to_pfn(page) << PAGE_SHIFT
    }

    /// Dereferences a `struct page *` that came from [`Mem::pfn_to_page`].
    #[inline]
    pub fn page(&self, page: *const Page) -> &Page {
        // SAFETY: every page pointer in the model is produced by `pfn_to_page` for a PFN
        // inside the vmemmap, which lives as long as `self`.
        unsafe { &*page }
    }

    /// `is_pci_p2pdma_page()`: `is_zone_device_page(page) &&
    /// page_pgmap(page)->type == MEMORY_DEVICE_PCI_P2PDMA` (every pgmap here is P2PDMA).
    #[inline]
    pub fn is_pci_p2pdma_page(&self, page: *const Page) -> bool {
        self.page(page).flags & PG_ZONE_DEVICE != 0
    }
}

/// `struct pci_p2pdma_map_state`: the pgmap seen last and its map type.
#[derive(Default)]
pub struct P2pdmaMapState {
    pgmap: u64,
    map: Option<P2pMap>,
}

/// What `pci_p2pdma_state()` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum P2pdmaMapType {
    /// `PCI_P2PDMA_MAP_NONE`: ordinary memory.
    None,
    /// `PCI_P2PDMA_MAP_BUS_ADDR`.
    BusAddr,
    /// `PCI_P2PDMA_MAP_THRU_HOST_BRIDGE`.
    ThruHostBridge,
}

impl P2pdmaMapState {
    /// `pci_p2pdma_state(state, dev, page)`: `NONE` for ordinary pages; otherwise refresh
    /// the cached state when the pgmap changed (`__pci_p2pdma_update_state`).
    #[inline]
    pub fn state(&mut self, mem: &Mem, page: *const Page) -> P2pdmaMapType {
        if !mem.is_pci_p2pdma_page(page) {
            return P2pdmaMapType::None;
        }
        let pgmap = mem.page(page).pgmap;
        if self.pgmap != pgmap {
            self.pgmap = pgmap;
            self.map = Some(mem.pgmaps[pgmap as usize - 1].map);
        }
        match self.map {
            Some(P2pMap::BusAddr { .. }) => P2pdmaMapType::BusAddr,
            Some(P2pMap::ThruHostBridge) => P2pdmaMapType::ThruHostBridge,
            None => P2pdmaMapType::None,
        }
    }

    /// `pci_p2pdma_bus_addr_map(state, paddr)`: `paddr + bus_off`.
    #[inline]
    pub fn bus_addr_map(&self, paddr: u64) -> u64 {
        match self.map {
            Some(P2pMap::BusAddr { bus_off }) => paddr.wrapping_add(bus_off),
            _ => paddr,
        }
    }
}
