//! The best device page size for a registered region: `ib_umem_find_best_pgsz()`
//! (drivers/infiniband/core/umem.c) in its current form (after commit 486055f5e09d,
//! 2025): only real discontinuities of the DMA list limit the page size, not entry
//! boundaries of contiguous memory.
//!
//! For a page size `P` to work, the VA and DMA addresses must agree modulo `P` at every
//! run of contiguous DMA memory, and every break between runs must fall on a VA
//! multiple of `P`. The result is also capped at the smallest supported size that
//! covers the whole VA span in one page (`GENMASK(63, bits_per((len - 1 + va) ^ va))`),
//! since larger pages only waste translation space.

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

/// Why a page size cannot be computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PgszError {
    /// No segments.
    Empty,
    /// `va + length - 1` or the total length exceeds 2^64 - 1.
    AddressOverflow,
}

impl PgszError {
    /// Stable snake_case name of the variant.
    pub fn kind(&self) -> &'static str {
        match self {
            PgszError::Empty => "empty",
            PgszError::AddressOverflow => "address_overflow",
        }
    }
}

impl fmt::Display for PgszError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgszError::Empty => f.write_str("no segments"),
            PgszError::AddressOverflow => f.write_str("the region ends beyond 2^64"),
        }
    }
}

impl core::error::Error for PgszError {}

/// `bits_per(n)`: bits needed to represent `n` (1 for 0 and 1).
const fn bits_per(n: u64) -> u32 {
    if n < 2 {
        1
    } else {
        // `leading_zeros() <= 64`.
        #[allow(clippy::arithmetic_side_effects)]
        let bits = 64 - n.leading_zeros();
        bits
    }
}

/// `GENMASK(63, lo)`, 0 when `lo >= 64`.
const fn genmask_from(lo: u32) -> u64 {
    if lo >= 64 {
        0
    } else {
        u64::MAX << lo
    }
}

/// The largest page size in `supported` (a bitmap of page sizes in bytes, bit `k` =
/// `2^k`) that maps the region whose bytes are `segs` (DMA ranges in VA order) at
/// virtual address `va`; `None` when no supported size works.
///
/// # Errors
/// [`PgszError::Empty`], [`PgszError::AddressOverflow`].
///
/// # Examples
/// ```
/// use physvec::rdma::best_page_size;
/// use physvec::{DmaRange, PageSize};
/// let mlx5 = 0xffff_f000u64; // 4 KiB ... 2 GiB
/// // 2 MiB-aligned on both sides: 2 MiB pages.
/// let one = [DmaRange::new(0x4020_0000, 0x20_0000)];
/// assert_eq!(best_page_size(&one, 0x7f00_0020_0000, mlx5)?, Some(PageSize::SIZE_2M));
/// // Contiguous memory split into several entries does not matter.
/// let split = [DmaRange::new(0x4020_0000, 0x1000), DmaRange::new(0x4020_1000, 0x1f_f000)];
/// assert_eq!(best_page_size(&split, 0x7f00_0020_0000, mlx5)?, Some(PageSize::SIZE_2M));
/// // VA and DMA agree only modulo 64 KiB: 64 KiB pages.
/// let off = [DmaRange::new(0x4001_0000, 0x20_0000)];
/// assert_eq!(best_page_size(&off, 0x7f00_0020_0000, mlx5)?, Some(PageSize::SIZE_64K));
/// // A 4 MiB region at a 2 MiB offset fits one 8 MiB page (the span cap allows it).
/// let four = [DmaRange::new(0x4020_0000, 0x40_0000)];
/// assert_eq!(best_page_size(&four, 0x7f00_0020_0000, mlx5)?, PageSize::new(8 << 20).ok());
/// # Ok::<(), physvec::rdma::PgszError>(())
/// ```
pub fn best_page_size(
    segs: &[DmaRange],
    va: u64,
    supported: u64,
) -> Result<Option<PageSize>, PgszError> {
    if segs.is_empty() {
        return Err(PgszError::Empty);
    }
    let mut length: u64 = 0;
    for s in segs {
        length = length
            .checked_add(s.len())
            .ok_or(PgszError::AddressOverflow)?;
    }
    // `segs` is not empty and every range has `len > 0`, so `length >= 1`.
    #[allow(clippy::arithmetic_side_effects)]
    let last = va.checked_add(length - 1);
    let last = last.ok_or(PgszError::AddressOverflow)?;
    let mut bitmap = supported;
    let mut mask = bitmap & genmask_from(bits_per(last ^ va));
    let mut cur_base: u64 = !0;
    let mut cur_len: u64 = 0;
    let mut v = va;
    for (i, s) in segs.iter().enumerate() {
        let dma = s.addr().as_u64();
        if cur_base.checked_add(cur_len) != Some(dma) {
            cur_base = dma;
            cur_len = 0;
            mask |= cur_base ^ v; // VA/DMA low bits must agree
            if i != 0 {
                mask |= v; // a break must fall on a page boundary
            }
        }
        cur_len = cur_len.wrapping_add(s.len());
        v = v.wrapping_add(s.len());
    }
    if mask != 0 {
        let tz = mask.trailing_zeros();
        // `tz < 63` in the else branch, so the shift is `<= 63` and its result `>= 1`.
        #[allow(clippy::arithmetic_side_effects)]
        let keep = if tz >= 63 {
            u64::MAX
        } else {
            (1u64 << (tz + 1)) - 1
        };
        bitmap &= keep;
    }
    Ok(if bitmap == 0 {
        None
    } else {
        // `bitmap != 0`, so `leading_zeros() <= 63`.
        #[allow(clippy::arithmetic_side_effects)]
        let top = 63 - bitmap.leading_zeros();
        PageSize::from_shift(top).ok()
    })
}

crate::error::error_info!(PgszError);
