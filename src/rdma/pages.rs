//! Fast-registration page lists with exactly the semantics of the kernel's
//! `ib_sg_to_pages()` (drivers/infiniband/core/verbs.c), the helper behind most
//! drivers' `map_mr_sg` and so behind `ib_map_mr_sg()`.
//!
//! - `iova` = first segment address + `sg_offset` (the first byte offset is kept);
//! - a later segment is appended if it starts and its predecessor ends on a page
//!   boundary (its pages are listed), or if it continues its predecessor with no gap
//!   (merged: the shared page is not listed again); the first gap ends the prefix;
//! - when the page list fills, the result says how many segments were fully mapped and
//!   the offset inside the next one to resume from (SRP spreads an I/O over several
//!   MRs this way). As in the kernel, that offset is the address of the *last page
//!   listed*, so the resumed MR re-lists that page; `length` stops there too.
//!
//! One deliberate difference: when the list fills at the second page of an unaligned
//! first segment, the kernel computes a negative offset and length (wrapped); here that
//! is [`MrError::PageListTooSmall`], as is a list that takes no page at all.

#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

use core::fmt;

use crate::addr::PageSize;
use crate::range::DmaRange;

/// The registration `ib_sg_to_pages` computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MrMapping {
    /// `mr->iova`: address of the first byte (not page aligned).
    pub iova: u64,
    /// `mr->length`: bytes the region covers.
    pub length: u64,
    /// Pages written to the list.
    pub npages: usize,
    /// The return value: segments mapped completely (a prefix).
    pub mapped: u32,
    /// `*sg_offset_p` on return: where to resume inside segment `mapped` when the list
    /// filled up, 0 otherwise.
    pub sg_offset: u64,
}

/// Why a page list cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MrError {
    /// No segments (`sg_nents <= 0`, -EINVAL).
    Empty,
    /// `sg_offset` is larger than the first segment (-EINVAL).
    InvalidSgOffset {
        /// The offset.
        sg_offset: u64,
        /// The first segment's length.
        len: u64,
    },
    /// The page list cannot hold the first pages (the kernel's `set_page` error, or its
    /// wrapped-offset case).
    PageListTooSmall {
        /// Capacity of the page list, in pages.
        max_pages: usize,
    },
    /// The mapped length exceeds `u64::MAX`.
    LengthOverflow,
}

impl MrError {
    /// Stable snake_case name of the variant.
    pub fn kind(&self) -> &'static str {
        match self {
            MrError::Empty => "empty",
            MrError::InvalidSgOffset { .. } => "invalid_sg_offset",
            MrError::PageListTooSmall { .. } => "page_list_too_small",
            MrError::LengthOverflow => "length_overflow",
        }
    }
}

impl fmt::Display for MrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MrError::Empty => f.write_str("no segments to register"),
            MrError::InvalidSgOffset { sg_offset, len } => write!(
                f,
                "sg_offset {sg_offset:#x} exceeds the first segment's {len:#x} bytes"
            ),
            MrError::PageListTooSmall { max_pages } => {
                write!(f, "a page list of {max_pages} pages maps nothing")
            }
            MrError::LengthOverflow => f.write_str("registered length exceeds u64::MAX"),
        }
    }
}

impl core::error::Error for MrError {}

/// `ib_sg_to_pages` with a caller's `set_page`: called with each page address in
/// order, it returns `false` when the list is full. Work is bounded by the pages set
/// plus one step per segment.
///
/// # Errors
/// See [`MrError`]; `max_pages` in [`MrError::PageListTooSmall`] is the number of pages
/// `set_page` accepted.
///
/// ```
/// use physvec::rdma::sg_to_pages_with;
/// use physvec::{DmaRange, PageSize};
/// let mut pages = Vec::new();
/// let m = sg_to_pages_with(&[DmaRange::new(0x10800, 0x1000)], 0, PageSize::SIZE_4K, |p| {
///     pages.push(p);
///     true
/// })?;
/// assert_eq!((m.iova, m.length, m.mapped), (0x10800, 0x1000, 1));
/// assert_eq!(pages, [0x10000, 0x11000]);
/// # Ok::<(), physvec::rdma::MrError>(())
/// ```
pub fn sg_to_pages_with(
    segs: &[DmaRange],
    sg_offset: u64,
    page_size: PageSize,
    mut set_page: impl FnMut(u64) -> bool,
) -> Result<MrMapping, MrError> {
    let first = segs.first().ok_or(MrError::Empty)?;
    if sg_offset > first.len() {
        return Err(MrError::InvalidSgOffset {
            sg_offset,
            len: first.len(),
        });
    }
    let iova = first
        .addr()
        .as_u64()
        .checked_add(sg_offset)
        .ok_or(MrError::InvalidSgOffset {
            sg_offset,
            len: first.len(),
        })?;
    let ps = u128::from(page_size.get());
    // A page size is a power of two, so `ps >= 1`.
    #[allow(clippy::arithmetic_side_effects)]
    let low = ps - 1;
    let mask = !low;
    let mut length: u128 = 0;
    let mut npages = 0usize;
    let mut last_end: u128 = 0;
    let mut last_page_off: u128 = 0;
    let mut off = u128::from(sg_offset);
    let finish = |length: u128, npages, mapped: usize, sg_offset| {
        Ok(MrMapping {
            iova,
            length: u64::try_from(length).map_err(|_| MrError::LengthOverflow)?,
            npages,
            mapped: u32::try_from(mapped).unwrap_or(u32::MAX),
            sg_offset,
        })
    };
    for (i, e) in segs.iter().enumerate() {
        let base = u128::from(e.addr().as_u64());
        // u128 sums of values below 2^64 cannot overflow; `off <= e.len()` (it is
        // `sg_offset <= first.len()`, checked, for the first segment and 0 after).
        #[allow(clippy::arithmetic_side_effects)]
        let (dma_addr, dma_len) = (base + off, u128::from(e.len()) - off);
        #[allow(clippy::arithmetic_side_effects)] // both terms are below 2^65.
        let end = dma_addr + dma_len;
        let mut page = dma_addr & mask;
        let mut prev = dma_addr;
        let mut skip_set = false;
        if i > 0 && (last_page_off != 0 || page != dma_addr) {
            if last_end != dma_addr {
                return finish(length, npages, i, 0); // a gap ends the prefix
            }
            skip_set = true; // contiguous: the shared page is already listed
        }
        loop {
            if !skip_set {
                if !set_page(page as u64) {
                    if prev < dma_addr {
                        // The kernel's offset and length would wrap here.
                        return Err(MrError::PageListTooSmall { max_pages: npages });
                    }
                    // `prev >= dma_addr >= base` (checked just above).
                    #[allow(clippy::arithmetic_side_effects)]
                    let (resume, piece) = ((prev - base) as u64, prev - dma_addr);
                    // `length` sums at most `segs.len()` lengths below 2^65 in u128.
                    #[allow(clippy::arithmetic_side_effects)]
                    {
                        length += piece;
                    }
                    if i == 0 && resume == 0 {
                        return Err(MrError::PageListTooSmall { max_pages: npages });
                    }
                    return finish(length, npages, i, resume);
                }
                // Saturates like `mapped` in `finish`: more than usize::MAX pages can
                // only come from a `set_page` that accepts more than memory can list.
                npages = npages.saturating_add(1);
                prev = page;
            }
            skip_set = false;
            // `page < end < 2^65` before the step, `ps <= 2^63`.
            #[allow(clippy::arithmetic_side_effects)]
            {
                page += ps;
            }
            if page >= end {
                break;
            }
        }
        // A u128 sum of at most `segs.len()` lengths below 2^65.
        #[allow(clippy::arithmetic_side_effects)]
        {
            length += dma_len;
        }
        last_end = end;
        last_page_off = end & low;
        off = 0;
    }
    finish(length, npages, segs.len(), 0)
}

/// `ib_sg_to_pages` into a caller's page list (`max_num_sg = pages.len()`).
///
/// # Errors
/// See [`MrError`].
///
/// # Examples
/// ```
/// use physvec::rdma::sg_to_pages;
/// use physvec::{DmaRange, PageSize};
/// // Two page-aligned segments and a third after a gap: the gap ends the prefix.
/// let segs = [DmaRange::new(0x10000, 0x3000), DmaRange::new(0x40000, 0x800), DmaRange::new(0x90000, 0x1000)];
/// let mut pages = [0u64; 8];
/// let m = sg_to_pages(&segs, 0, PageSize::SIZE_4K, &mut pages)?;
/// assert_eq!((m.iova, m.length, m.mapped, m.sg_offset), (0x10000, 0x3800, 2, 0));
/// assert_eq!(&pages[..m.npages], [0x10000, 0x11000, 0x12000, 0x40000]);
/// // A list of 2 pages fills up inside segment 0. As in the kernel, the resume offset
/// // is the last page listed (0x11000), and the length stops there.
/// let m = sg_to_pages(&segs, 0, PageSize::SIZE_4K, &mut pages[..2])?;
/// assert_eq!((m.length, m.mapped, m.sg_offset), (0x1000, 0, 0x1000));
/// # Ok::<(), physvec::rdma::MrError>(())
/// ```
pub fn sg_to_pages(
    segs: &[DmaRange],
    sg_offset: u64,
    page_size: PageSize,
    pages: &mut [u64],
) -> Result<MrMapping, MrError> {
    let mut n = 0;
    sg_to_pages_with(segs, sg_offset, page_size, |p| match pages.get_mut(n) {
        Some(slot) => {
            *slot = p;
            // `n < pages.len()` (the slot exists).
            #[allow(clippy::arithmetic_side_effects)]
            {
                n += 1;
            }
            true
        }
        None => false,
    })
}

crate::error::error_info!(MrError);
