//! `struct scatterlist` / `struct sg_table` and their chained allocation
//! (`include/linux/scatterlist.h`, `lib/scatterlist.c`, `lib/sg_pool.c`).
//!
//! Entries are linked exactly as in the kernel: `page_link` holds a `struct page *` with
//! `SG_CHAIN`/`SG_END` in its low bits, a chain entry's `page_link` points at the next
//! chunk, and [`sg_next`] follows it. That needs raw pointers; every `unsafe` block
//! relies on the table invariant that a chunk's entries up to its chain slot or end mark
//! are valid and initialised (`sg_init_table`).

use std::alloc::{alloc, dealloc, Layout};
use std::ptr;

use super::mm::Page;

/// `SG_CHAIN`: `page_link` points at the next scatterlist chunk.
pub const SG_CHAIN: usize = 0x01;
/// `SG_END`: last entry of the list.
pub const SG_END: usize = 0x02;
/// `SG_DMA_BUS_ADDRESS` in `dma_flags`.
pub const SG_DMA_BUS_ADDRESS: u32 = 1 << 0;
/// `SG_CHUNK_SIZE`.
pub const SG_CHUNK_SIZE: u32 = 128;
/// `DMA_MAPPING_ERROR`.
pub const DMA_MAPPING_ERROR: u64 = !0;

/// `struct scatterlist` on x86_64 with `CONFIG_NEED_SG_DMA_LENGTH` and
/// `CONFIG_NEED_SG_DMA_FLAGS`: 32 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Scatterlist {
    /// `struct page *` | `SG_CHAIN` | `SG_END`, or a chain pointer.
    pub page_link: usize,
    /// Byte offset into the page.
    pub offset: u32,
    /// Bytes.
    pub length: u32,
    /// `sg_dma_address()`.
    pub dma_address: u64,
    /// `sg_dma_len()`.
    pub dma_length: u32,
    /// `SG_DMA_BUS_ADDRESS`, `SG_DMA_SWIOTLB`.
    pub dma_flags: u32,
}

/// `sizeof(struct scatterlist)`.
pub const SG_SIZE: usize = core::mem::size_of::<Scatterlist>();
const _: () = assert!(SG_SIZE == 32);

const ZERO_SG: Scatterlist = Scatterlist {
    page_link: 0,
    offset: 0,
    length: 0,
    dma_address: 0,
    dma_length: 0,
    dma_flags: 0,
};

/// `struct sg_table`.
pub struct SgTable {
    /// First entry.
    pub sgl: *mut Scatterlist,
    /// Mapped entries (after `blk_rq_map_sg`).
    pub nents: u32,
    /// Allocated entries (what `sg_free_table_chained` frees by).
    pub orig_nents: u32,
}

impl Default for SgTable {
    fn default() -> Self {
        Self {
            sgl: ptr::null_mut(),
            nents: 0,
            orig_nents: 0,
        }
    }
}

/// `sg_is_chain()`.
#[inline]
pub fn sg_is_chain(sg: &Scatterlist) -> bool {
    sg.page_link & SG_CHAIN != 0
}

/// `sg_is_last()`.
#[inline]
pub fn sg_is_last(sg: &Scatterlist) -> bool {
    sg.page_link & SG_END != 0
}

/// `sg_chain_ptr()`.
#[inline]
pub fn sg_chain_ptr(sg: &Scatterlist) -> *mut Scatterlist {
    (sg.page_link & !(SG_CHAIN | SG_END)) as *mut Scatterlist
}

/// `sg_page()`.
#[inline]
pub fn sg_page(sg: &Scatterlist) -> *const Page {
    (sg.page_link & !(SG_CHAIN | SG_END)) as *const Page
}

/// `sg_set_page()` (`sg_assign_page` keeps the chain/end bits).
#[inline]
pub fn sg_set_page(sg: &mut Scatterlist, page: *const Page, len: u32, offset: u32) {
    sg.page_link = (sg.page_link & (SG_CHAIN | SG_END)) | page as usize;
    sg.offset = offset;
    sg.length = len;
}

/// `sg_mark_end()`.
#[inline]
pub fn sg_mark_end(sg: &mut Scatterlist) {
    sg.page_link |= SG_END;
    sg.page_link &= !SG_CHAIN;
}

/// `sg_unmark_end()`.
#[inline]
pub fn sg_unmark_end(sg: &mut Scatterlist) {
    sg.page_link &= !SG_END;
}

/// `sg_next()`: NULL after the last entry, else `sg + 1`, following a chain entry.
///
/// Out of line, as in the kernel (`lib/scatterlist.c`, `EXPORT_SYMBOL(sg_next)`): every
/// `for_each_sg` step in the map, PRP/SGL setup and unmap loops is a call.
///
/// # Safety
/// `sg` is a valid entry of an initialised table.
#[inline(never)]
pub unsafe fn sg_next(sg: *mut Scatterlist) -> *mut Scatterlist {
    // SAFETY: the caller's entry is valid; an entry without SG_END is followed by another
    // entry of the same chunk, which is a data entry or a chain slot.
    unsafe {
        if sg_is_last(&*sg) {
            return ptr::null_mut();
        }
        let next = sg.add(1);
        if sg_is_chain(&*next) {
            sg_chain_ptr(&*next)
        } else {
            next
        }
    }
}

/// `sg_init_table()`: zero `nents` entries and mark the last one.
///
/// # Safety
/// `sgl` points at `nents >= 1` writable entries.
#[inline]
pub unsafe fn sg_init_table(sgl: *mut Scatterlist, nents: u32) {
    // SAFETY: by the caller's contract.
    unsafe {
        ptr::write_bytes(sgl, 0, nents as usize);
        sg_mark_end(&mut *sgl.add(nents as usize - 1));
    }
}

/// `sg_chain(prv, prv_nents, sgl)`: turn `prv[prv_nents - 1]` into a link to `sgl`.
///
/// # Safety
/// `prv` has `prv_nents` entries.
#[inline]
unsafe fn sg_chain(prv: *mut Scatterlist, prv_nents: u32, sgl: *mut Scatterlist) {
    // SAFETY: by the caller's contract.
    let chain = unsafe { &mut *prv.add(prv_nents as usize - 1) };
    chain.offset = 0;
    chain.length = 0;
    chain.page_link = (sgl as usize | SG_CHAIN) & !SG_END;
}

/// Object size of the `sg_pool` mempool serving `nents` entries: `sg_pool_index()`
/// picks the `sgpool-8/16/32/64/128` slab.
#[inline]
pub fn sg_pool_size(nents: u32) -> u32 {
    debug_assert!((1..=SG_CHUNK_SIZE).contains(&nents));
    nents.next_power_of_two().max(8)
}

fn sg_pool_layout(nents: u32) -> Layout {
    match Layout::array::<Scatterlist>(sg_pool_size(nents) as usize) {
        Ok(l) => l,
        Err(_) => unreachable!("at most 128 entries"),
    }
}

/// `sg_pool_alloc()`: `mempool_alloc(sg_pool(nents)->pool, GFP_ATOMIC)` (a slab object).
fn sg_pool_alloc(nents: u32) -> *mut Scatterlist {
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { alloc(sg_pool_layout(nents)) } as *mut Scatterlist;
    assert!(!p.is_null(), "sg_pool_alloc: out of memory");
    p
}

/// `sg_pool_free()`: `mempool_free(sgl, sg_pool(nents)->pool)`.
///
/// # Safety
/// `sgl` came from `sg_pool_alloc(nents)`.
unsafe fn sg_pool_free(sgl: *mut Scatterlist, nents: u32) {
    // SAFETY: by the caller's contract, same layout as the allocation.
    unsafe { dealloc(sgl as *mut u8, sg_pool_layout(nents)) }
}

/// A per-request inline first chunk (`struct scatterlist inline_sg[2]` in the driver's
/// request PDU, e.g. `NVME_INLINE_SG_CNT` / `SCSI_INLINE_SG_CNT`).
pub const INLINE_SG_CNT: u32 = 2;

/// `__sg_alloc_table(table, nents, SG_CHUNK_SIZE, first_chunk, nents_first_chunk,
/// GFP_ATOMIC, sg_pool_alloc)`.
///
/// # Safety
/// `first_chunk`, when non-null, has `nents_first_chunk` entries.
unsafe fn __sg_alloc_table(
    table: &mut SgTable,
    nents: u32,
    max_ents: u32,
    mut first_chunk: *mut Scatterlist,
    nents_first_chunk: u32,
) {
    *table = SgTable::default();
    let mut curr_max_ents = if nents_first_chunk != 0 {
        nents_first_chunk
    } else {
        max_ents
    };
    let mut prv: *mut Scatterlist = ptr::null_mut();
    let mut prv_max_ents = 0;
    let mut left = nents;
    loop {
        let mut alloc_size = left;
        let sg_size;
        if alloc_size > curr_max_ents {
            alloc_size = curr_max_ents;
            sg_size = alloc_size - 1;
        } else {
            sg_size = alloc_size;
        }
        left -= sg_size;
        let sg = if !first_chunk.is_null() {
            let f = first_chunk;
            first_chunk = ptr::null_mut();
            f
        } else {
            sg_pool_alloc(alloc_size)
        };
        // SAFETY: `sg` has at least `alloc_size` entries (inline chunk or pool object);
        // `prv` has `prv_max_ents`.
        unsafe {
            sg_init_table(sg, alloc_size);
            table.orig_nents += sg_size;
            table.nents = table.orig_nents;
            if !prv.is_null() {
                sg_chain(prv, prv_max_ents, sg);
            } else {
                table.sgl = sg;
            }
            if left == 0 {
                sg_mark_end(&mut *sg.add(sg_size as usize - 1));
            }
        }
        prv = sg;
        prv_max_ents = curr_max_ents;
        curr_max_ents = max_ents;
        if left == 0 {
            break;
        }
    }
}

/// `sg_alloc_table_chained(table, nents, first_chunk, nents_first_chunk)`.
///
/// # Safety
/// `first_chunk` has `nents_first_chunk` entries and outlives the table.
pub unsafe fn sg_alloc_table_chained(
    table: &mut SgTable,
    nents: u32,
    first_chunk: *mut Scatterlist,
    nents_first_chunk: u32,
) {
    assert!(nents != 0);
    if !first_chunk.is_null() && nents_first_chunk != 0 && nents <= nents_first_chunk {
        table.sgl = first_chunk;
        table.nents = nents;
        table.orig_nents = nents;
        // SAFETY: the inline chunk has at least `nents` entries.
        unsafe { sg_init_table(table.sgl, nents) };
        return;
    }
    let (first, nfirst) = if nents_first_chunk <= 1 {
        (ptr::null_mut(), 0)
    } else {
        (first_chunk, nents_first_chunk)
    };
    // SAFETY: forwarded contract.
    unsafe { __sg_alloc_table(table, nents, SG_CHUNK_SIZE, first, nfirst) }
}

/// `sg_free_table_chained(table, nents_first_chunk)` → `__sg_free_table(table,
/// SG_CHUNK_SIZE, nents_first_chunk, sg_pool_free, table->orig_nents)`.
///
/// # Safety
/// `table` came from [`sg_alloc_table_chained`] with the same `nents_first_chunk`.
pub unsafe fn sg_free_table_chained(table: &mut SgTable, nents_first_chunk: u32) {
    if table.orig_nents <= nents_first_chunk {
        return;
    }
    let mut nents_first_chunk = if nents_first_chunk == 1 {
        0
    } else {
        nents_first_chunk
    };
    let max_ents = SG_CHUNK_SIZE;
    let mut curr_max_ents = if nents_first_chunk != 0 {
        nents_first_chunk
    } else {
        max_ents
    };
    let mut sgl = table.sgl;
    let mut num_ents = table.orig_nents;
    while num_ents != 0 {
        let mut alloc_size = num_ents;
        let sg_size;
        let next;
        if alloc_size > curr_max_ents {
            // SAFETY: a chunk of `curr_max_ents` entries ends with its chain slot.
            next = sg_chain_ptr(unsafe { &*sgl.add(curr_max_ents as usize - 1) });
            alloc_size = curr_max_ents;
            sg_size = alloc_size - 1;
        } else {
            sg_size = alloc_size;
            next = ptr::null_mut();
        }
        num_ents -= sg_size;
        if nents_first_chunk != 0 {
            nents_first_chunk = 0;
        } else {
            // SAFETY: this chunk came from `sg_pool_alloc(alloc_size)`.
            unsafe { sg_pool_free(sgl, alloc_size) };
        }
        sgl = next;
        curr_max_ents = max_ents;
    }
    table.sgl = ptr::null_mut();
}

/// Scatterlist entries a table of `nents` entries initialises with an inline first chunk
/// of `nents_first_chunk` (data entries plus chain slots, as `sg_init_table` touches
/// them), and the bytes it holds: the inline chunk (allocated with the request whether
/// used or not) plus every pool object at its slab size. Mirrors `__sg_alloc_table`'s
/// chunking without allocating.
pub fn sg_table_footprint(nents: u32, nents_first_chunk: u32) -> (u32, usize) {
    let inline_bytes = nents_first_chunk as usize * SG_SIZE;
    if nents <= nents_first_chunk {
        return (nents, inline_bytes);
    }
    let mut first = nents_first_chunk > 1;
    let mut curr_max = if first {
        nents_first_chunk
    } else {
        SG_CHUNK_SIZE
    };
    let (mut entries, mut held) = (0u32, inline_bytes);
    let mut left = nents;
    while left != 0 {
        let (alloc_size, sg_size) = if left > curr_max {
            (curr_max, curr_max - 1)
        } else {
            (left, left)
        };
        left -= sg_size;
        entries += alloc_size;
        if first {
            first = false;
        } else {
            held += sg_pool_size(alloc_size) as usize * SG_SIZE;
        }
        curr_max = SG_CHUNK_SIZE;
    }
    (entries, held)
}

/// The request PDU's inline chunk.
pub struct InlineSg(pub [Scatterlist; INLINE_SG_CNT as usize]);

impl Default for InlineSg {
    fn default() -> Self {
        Self([ZERO_SG; INLINE_SG_CNT as usize])
    }
}
