//! Bios and `blk_rq_map_sg()` (`include/linux/bvec.h`, `block/blk-merge.c`, 6.x).

use std::ptr;

use super::mm::{Mem, Page, PAGE_SHIFT, PAGE_SIZE};
use super::scatterlist::{sg_mark_end, sg_next, sg_set_page, sg_unmark_end, Scatterlist};

/// `struct bio_vec` (16 bytes): a multi-page segment; pages that `bio_add_page()` found
/// physically contiguous are already merged into one bvec.
#[derive(Clone, Copy)]
pub struct BioVec {
    /// `bv_page`.
    pub bv_page: *const Page,
    /// `bv_len`.
    pub bv_len: u32,
    /// `bv_offset`.
    pub bv_offset: u32,
}

/// `struct queue_limits`, the fields `blk_rq_map_sg` reads.
#[derive(Clone, Copy)]
pub struct QueueLimits {
    /// `max_segment_size`.
    pub max_segment_size: u32,
    /// `seg_boundary_mask`.
    pub seg_boundary_mask: u64,
}

/// `bvec_phys()`.
#[inline]
fn bvec_phys(mem: &Mem, bv: &BioVec) -> u64 {
    mem.page_to_phys(bv.bv_page) + bv.bv_offset as u64
}

/// `get_max_segment_size(lim, paddr, len)`.
#[inline]
fn get_max_segment_size(lim: &QueueLimits, paddr: u64) -> u32 {
    let mask = lim.seg_boundary_mask;
    let room = (mask - (paddr & mask)).wrapping_add(1);
    // min_not_zero
    if room == 0 {
        lim.max_segment_size
    } else {
        room.min(lim.max_segment_size as u64) as u32
    }
}

/// `biovec_phys_mergeable()`.
#[inline]
fn biovec_phys_mergeable(mem: &Mem, lim: &QueueLimits, v1: &BioVec, v2: &BioVec) -> bool {
    let mask = lim.seg_boundary_mask;
    let addr1 = bvec_phys(mem, v1);
    let addr2 = bvec_phys(mem, v2);
    if addr1 + v1.bv_len as u64 != addr2 {
        return false;
    }
    (addr1 | mask) == ((addr2 + v2.bv_len as u64 - 1) | mask)
}

/// `blk_next_sg()`.
///
/// # Safety
/// `*sg` is null or an entry of the table starting at `sglist` with more entries after it.
#[inline]
unsafe fn blk_next_sg(sg: &mut *mut Scatterlist, sglist: *mut Scatterlist) -> *mut Scatterlist {
    if sg.is_null() {
        return sglist;
    }
    // SAFETY: by the caller's contract.
    unsafe {
        sg_unmark_end(&mut **sg);
        sg_next(*sg)
    }
}

/// `__blk_segment_map_sg_merge()`.
#[inline]
fn blk_segment_map_sg_merge(
    mem: &Mem,
    lim: &QueueLimits,
    bvec: &BioVec,
    bvprv: &BioVec,
    sg: *mut Scatterlist,
) -> bool {
    if sg.is_null() {
        return false;
    }
    // SAFETY: `sg` is the current entry of the table being filled.
    let s = unsafe { &mut *sg };
    if s.length as u64 + bvec.bv_len as u64 > lim.max_segment_size as u64 {
        return false;
    }
    if !biovec_phys_mergeable(mem, lim, bvprv, bvec) {
        return false;
    }
    s.length += bvec.bv_len;
    true
}

/// `blk_bvec_map_sg()`: a bvec larger than a page, split by `get_max_segment_size()`,
/// never presenting an offset beyond a page.
///
/// # Safety
/// As [`blk_next_sg`], with room for every piece.
unsafe fn blk_bvec_map_sg(
    mem: &Mem,
    lim: &QueueLimits,
    bvec: &BioVec,
    sglist: *mut Scatterlist,
    sg: &mut *mut Scatterlist,
) -> u32 {
    let mut nbytes = bvec.bv_len;
    let mut nsegs = 0;
    let mut total = 0;
    while nbytes > 0 {
        let offset = bvec.bv_offset + total;
        let len = get_max_segment_size(lim, bvec_phys(mem, bvec) + total as u64).min(nbytes);
        let page = bvec.bv_page.wrapping_add((offset >> PAGE_SHIFT) as usize);
        let offset = offset & (PAGE_SIZE - 1);
        // SAFETY: forwarded.
        unsafe {
            *sg = blk_next_sg(sg, sglist);
            sg_set_page(&mut **sg, page, len, offset);
        }
        total += len;
        nbytes -= len;
        nsegs += 1;
    }
    nsegs
}

/// `__blk_bvec_map_sg()`: the single-page fast path.
///
/// # Safety
/// As [`blk_next_sg`].
#[inline]
unsafe fn blk_bvec_map_sg_single(
    bv: &BioVec,
    sglist: *mut Scatterlist,
    sg: &mut *mut Scatterlist,
) -> u32 {
    // SAFETY: forwarded.
    unsafe {
        *sg = blk_next_sg(sg, sglist);
        sg_set_page(&mut **sg, bv.bv_page, bv.bv_len, bv.bv_offset);
    }
    1
}

/// `blk_rq_map_sg(rq, sglist)` → `__blk_rq_map_sg` → `__blk_bios_map_sg`: fill the table
/// from the request's bios, merging across bio boundaries, and mark the end. Returns the
/// number of entries used.
///
/// # Safety
/// `sglist` is an initialised table with at least `blk_rq_nr_phys_segments(rq)` entries.
pub unsafe fn blk_rq_map_sg(
    mem: &Mem,
    lim: &QueueLimits,
    bios: &[&[BioVec]],
    sglist: *mut Scatterlist,
) -> u32 {
    let mut sg: *mut Scatterlist = ptr::null_mut();
    let mut nsegs = 0;
    let mut bvprv: Option<BioVec> = None;
    let mut new_bio = false;
    for bio in bios {
        for bvec in bio.iter() {
            // Only bvecs of two different bios are merged here: bio_add_page() merged
            // within a bio already.
            let merged =
                new_bio && bvprv.is_some_and(|p| blk_segment_map_sg_merge(mem, lim, bvec, &p, sg));
            if !merged {
                // SAFETY: forwarded.
                nsegs += unsafe {
                    if bvec.bv_offset + bvec.bv_len <= PAGE_SIZE {
                        blk_bvec_map_sg_single(bvec, sglist, &mut sg)
                    } else {
                        blk_bvec_map_sg(mem, lim, bvec, sglist, &mut sg)
                    }
                };
            }
            new_bio = false;
        }
        if let Some(last) = bio.last() {
            bvprv = Some(*last);
            new_bio = true;
        }
    }
    if !sg.is_null() {
        // SAFETY: `sg` is the last entry written.
        unsafe { sg_mark_end(&mut *sg) };
    }
    nsegs
}
