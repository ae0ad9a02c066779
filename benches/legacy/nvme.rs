//! The NVMe PCI driver's data-pointer setup over a mapped scatterlist
//! (`drivers/nvme/host/pci.c` before the 6.x `blk_rq_dma_map_iter` rewrite:
//! `nvme_pci_setup_prps()`, `nvme_pci_setup_sgls()`, `nvme_free_prps()`), and the DMA
//! pools it takes PRP/SGL list memory from (`mm/dmapool.c`).

use super::scatterlist::{sg_next, Scatterlist};

/// `NVME_CTRL_PAGE_SIZE`.
pub const NVME_CTRL_PAGE_SIZE: u32 = 4096;
/// `NVME_SGL_FMT_DATA_DESC`.
const NVME_SGL_FMT_DATA_DESC: u8 = 0x00;
/// `NVME_SGL_FMT_LAST_SEG_DESC`.
const NVME_SGL_FMT_LAST_SEG_DESC: u8 = 0x03;

/// A `dma_pool` of fixed-size blocks (u64 slots), preallocated so that `dma_pool_alloc`
/// is a free-list pop. The physvec pipeline draws its list pages from the same kind of
/// pool.
pub struct DmaPool {
    blocks: Vec<Box<[u64]>>,
    free: Vec<u32>,
    block_bytes: u64,
    bus_base: u64,
}

impl DmaPool {
    /// `dma_pool_create(name, dev, size, align, 0)` with `nblocks` blocks whose bus
    /// addresses start at `bus_base`.
    pub fn new(block_bytes: usize, nblocks: usize, bus_base: u64) -> Self {
        Self {
            blocks: (0..nblocks)
                .map(|_| vec![0u64; block_bytes / 8].into_boxed_slice())
                .collect(),
            free: (0..nblocks as u32).rev().collect(),
            block_bytes: block_bytes as u64,
            bus_base,
        }
    }

    /// `dma_pool_alloc(pool, GFP_ATOMIC, &dma)`: block index and its bus address.
    #[inline]
    pub fn alloc(&mut self) -> Option<(u32, u64)> {
        let i = self.free.pop()?;
        Some((i, self.bus_base + i as u64 * self.block_bytes))
    }

    /// `dma_pool_free(pool, vaddr, dma)`.
    #[inline]
    pub fn free(&mut self, i: u32) {
        self.free.push(i);
    }

    /// The CPU view of block `i`.
    #[inline]
    pub fn block(&mut self, i: u32) -> &mut [u64] {
        &mut self.blocks[i as usize]
    }

    /// Block `i`, read-only.
    pub fn block_ref(&self, i: u32) -> &[u64] {
        &self.blocks[i as usize]
    }

    /// Blocks currently free.
    pub fn free_blocks(&self) -> usize {
        self.free.len()
    }
}

/// `dev->prp_small_pool` (256 B) and `dev->prp_page_pool` (4 KiB).
pub struct NvmeDev {
    /// 256-byte blocks: PRP lists of up to 32 entries, SGLs of up to 16 descriptors.
    pub prp_small_pool: DmaPool,
    /// Page-sized blocks.
    pub prp_page_pool: DmaPool,
}

impl NvmeDev {
    /// Pools with a few blocks each at distinct bus addresses.
    pub fn new() -> Self {
        Self {
            prp_small_pool: DmaPool::new(256, 16, 0x7f00_0000),
            prp_page_pool: DmaPool::new(4096, 16, 0x7e00_0000),
        }
    }
}

/// The command's data pointer: PRP1/PRP2 or SGL1 (16 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Dptr(pub [u64; 2]);

/// `struct nvme_iod`, the fields these functions use.
#[derive(Default)]
pub struct NvmeIod {
    /// `use_sgl`.
    pub use_sgl: bool,
    /// `nr_allocations`: -1 none, 0 small pool, n page-pool blocks.
    pub nr_allocations: i32,
    /// `list[]`: pool block indices.
    pub list: [u32; 5],
    /// `first_dma`.
    pub first_dma: u64,
}

/// `nvme_pci_setup_prps()`: walk the DMA segments with `sg_next`, one entry per
/// controller page. `length` is `blk_rq_payload_bytes(req)`.
///
/// # Safety
/// `sgl` holds the mapped DMA segments covering `length` bytes.
pub unsafe fn nvme_pci_setup_prps(
    dev: &mut NvmeDev,
    iod: &mut NvmeIod,
    sgl: *mut Scatterlist,
    length: u32,
) -> Result<Dptr, &'static str> {
    let page = NVME_CTRL_PAGE_SIZE as i64;
    let mut length = length as i64;
    let mut sg = sgl;
    // SAFETY: by the caller's contract (every entry reached is a mapped segment).
    let first = unsafe { &*sg };
    let mut dma_len = first.dma_length as i64;
    let mut dma_addr = first.dma_address;
    let offset = (dma_addr & (page as u64 - 1)) as i64;
    iod.nr_allocations = -1;

    length -= page - offset;
    if length <= 0 {
        iod.first_dma = 0;
        return Ok(Dptr([first.dma_address, iod.first_dma]));
    }
    dma_len -= page - offset;
    if dma_len != 0 {
        dma_addr += (page - offset) as u64;
    } else {
        // SAFETY: as above.
        unsafe {
            sg = sg_next(sg);
            dma_addr = (*sg).dma_address;
            dma_len = (*sg).dma_length as i64;
        }
    }
    if length <= page {
        iod.first_dma = dma_addr;
        return Ok(Dptr([first.dma_address, iod.first_dma]));
    }

    let nprps = (length + page - 1) / page;
    let small = nprps <= 256 / 8;
    let pool = if small {
        iod.nr_allocations = 0;
        &mut dev.prp_small_pool
    } else {
        iod.nr_allocations = 1;
        &mut dev.prp_page_pool
    };
    let (mut blk, prp_dma) = pool.alloc().ok_or("BLK_STS_RESOURCE")?;
    iod.list[0] = blk;
    iod.first_dma = prp_dma;
    let mut i = 0usize;
    loop {
        if i == (NVME_CTRL_PAGE_SIZE >> 3) as usize {
            let old = blk;
            let (nb, nd) = pool.alloc().ok_or("BLK_STS_RESOURCE")?;
            iod.list[iod.nr_allocations as usize] = nb;
            iod.nr_allocations += 1;
            let moved = pool.block(old)[i - 1];
            pool.block(nb)[0] = moved;
            pool.block(old)[i - 1] = nd.to_le();
            blk = nb;
            i = 1;
        }
        pool.block(blk)[i] = dma_addr.to_le();
        i += 1;
        dma_len -= page;
        dma_addr += page as u64;
        length -= page;
        if length <= 0 {
            break;
        }
        if dma_len > 0 {
            continue;
        }
        if dma_len < 0 {
            return Err("Invalid SGL for payload");
        }
        // SAFETY: as above.
        unsafe {
            sg = sg_next(sg);
            dma_addr = (*sg).dma_address;
            dma_len = (*sg).dma_length as i64;
        }
    }
    Ok(Dptr([first.dma_address, iod.first_dma]))
}

/// `nvme_pci_sgl_set_data()`: one Data Block descriptor as two little-endian u64s.
#[inline]
fn sgl_data(addr: u64, len: u32) -> [u64; 2] {
    [
        addr.to_le(),
        (len as u64 | (NVME_SGL_FMT_DATA_DESC as u64) << 60).to_le(),
    ]
}

/// `nvme_pci_setup_sgls()`: one Data Block per DMA segment (`entries` = mapped count).
///
/// # Safety
/// `sgl` holds `entries` mapped DMA segments.
pub unsafe fn nvme_pci_setup_sgls(
    dev: &mut NvmeDev,
    iod: &mut NvmeIod,
    sgl: *mut Scatterlist,
    entries: u32,
) -> Result<Dptr, &'static str> {
    iod.use_sgl = true;
    let mut sg = sgl;
    if entries == 1 {
        // SAFETY: by the caller's contract.
        let s = unsafe { &*sg };
        iod.nr_allocations = -1;
        return Ok(Dptr(sgl_data(s.dma_address, s.dma_length)));
    }
    let pool = if entries as usize <= 256 / 16 {
        iod.nr_allocations = 0;
        &mut dev.prp_small_pool
    } else {
        iod.nr_allocations = 1;
        &mut dev.prp_page_pool
    };
    let (blk, sgl_dma) = pool.alloc().ok_or("BLK_STS_RESOURCE")?;
    iod.list[0] = blk;
    iod.first_dma = sgl_dma;
    let list = pool.block(blk);
    for i in 0..entries as usize {
        // SAFETY: as above.
        let s = unsafe { &*sg };
        let d = sgl_data(s.dma_address, s.dma_length);
        list[2 * i] = d[0];
        list[2 * i + 1] = d[1];
        // SAFETY: as above.
        sg = unsafe { sg_next(sg) };
    }
    // nvme_pci_sgl_set_seg(): a Last Segment descriptor in the command.
    let seg_len = entries as u64 * 16;
    Ok(Dptr([
        sgl_dma.to_le(),
        (seg_len | (NVME_SGL_FMT_LAST_SEG_DESC as u64) << 60).to_le(),
    ]))
}

/// The list pages of `nvme_unmap_data()`: `nvme_free_prps()` follows the chain links in
/// each page's last slot; SGL and small-pool lists are one block.
pub fn nvme_free_lists(dev: &mut NvmeDev, iod: &NvmeIod) {
    match iod.nr_allocations {
        -1 => {}
        0 => dev.prp_small_pool.free(iod.list[0]),
        n if iod.use_sgl => {
            debug_assert_eq!(n, 1);
            dev.prp_page_pool.free(iod.list[0]);
        }
        n => {
            let last_prp = (NVME_CTRL_PAGE_SIZE / 8 - 1) as usize;
            for i in 0..n as usize {
                let blk = iod.list[i];
                let next_dma = dev.prp_page_pool.block(blk)[last_prp];
                std::hint::black_box(next_dma);
                dev.prp_page_pool.free(blk);
            }
        }
    }
}
