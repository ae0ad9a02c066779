//! How `rdma_rw` (drivers/infiniband/core/rw.c) moves an I/O: one SGE in one work
//! request, several SGEs over `⌈n / max_sge⌉` work requests, or fast-registration MRs —
//! decided, as the kernel's newest code insists, on the *post-coalescing* segment count
//! (passing a pre-mapping count overstated entries and exhausted the MR pool).
//!
//! With a two-step IOVA mapping (`dma_iova_link` of every bvec into one IOVA range) the
//! DMA list is a single range, so the plan is one SGE.

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

use super::pages::sg_to_pages_with;

/// Direction of the RDMA operation, as `rdma_rw` sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RwDirection {
    /// `DMA_TO_DEVICE`: local memory is sent (RDMA WRITE to the peer).
    Write,
    /// `DMA_FROM_DEVICE`: local memory is filled (RDMA READ from the peer).
    Read,
}

/// Device capabilities the decision uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RwCaps {
    /// iWARP port: RDMA READ always needs an MR.
    pub iwarp: bool,
    /// `attrs.max_sgl_rd`: READs with more entries use MRs (0 = no limit).
    pub max_sgl_rd: u32,
    /// SGEs per RDMA WRITE work request (`max_send_sge` or `max_write_sge`).
    pub max_write_sge: u32,
    /// SGEs per RDMA READ work request (`max_read_sge`).
    pub max_read_sge: u32,
    /// `max_fast_reg_page_list_len` (pages per MR; capped at 256 like the kernel).
    pub max_fast_reg_page_list_len: u32,
    /// The `force_mr` module parameter.
    pub force_mr: bool,
    /// MR page size (`PAGE_SIZE`).
    pub page_size: PageSize,
}

impl RwCaps {
    /// A ConnectX-like RoCE device: 30 read SGEs (`MLX5_MAX_SGE_RD`), 30 write SGEs,
    /// `max_sgl_rd` 0, 256-page MRs, 4 KiB pages.
    pub const fn mlx5_like() -> Self {
        Self {
            iwarp: false,
            max_sgl_rd: 0,
            max_write_sge: 30,
            max_read_sge: 30,
            max_fast_reg_page_list_len: 256,
            force_mr: false,
            page_size: PageSize::SIZE_4K,
        }
    }
}

/// `rdma_rw`'s choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RwPlan {
    /// `RDMA_RW_SINGLE_WR`: one SGE (with `local_dma_lkey`).
    SingleSge,
    /// `RDMA_RW_MULTI_WR`: `sges` SGEs over `wrs` work requests.
    MultiSge {
        /// SGEs (= coalesced segments).
        sges: u32,
        /// Work requests.
        wrs: u32,
    },
    /// `RDMA_RW_MR`: `mrs` registrations of at most `pages_per_mr` segments each.
    Mr {
        /// Registrations.
        mrs: u32,
        /// `min(max_fast_reg_page_list_len, 256)`.
        pages_per_mr: u32,
    },
}

/// Why no plan exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RwError {
    /// No segments.
    Empty,
    /// A capability needed for the plan is 0.
    InvalidCaps,
    /// An MR chunk of segments cannot be registered whole (a gap or too many pages),
    /// which the kernel reports as -EINVAL.
    MrCannotMap {
        /// Index of the first segment of the chunk.
        segment: usize,
    },
    /// More than `u32::MAX` segments.
    TooManySegments,
}

impl RwError {
    /// Stable snake_case name of the variant.
    pub fn kind(&self) -> &'static str {
        match self {
            RwError::Empty => "empty",
            RwError::InvalidCaps => "invalid_caps",
            RwError::MrCannotMap { .. } => "mr_cannot_map",
            RwError::TooManySegments => "too_many_segments",
        }
    }
}

impl fmt::Display for RwError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RwError::Empty => f.write_str("no segments"),
            RwError::InvalidCaps => f.write_str("a needed device capability is 0"),
            RwError::MrCannotMap { segment } => write!(
                f,
                "the MR chunk starting at segment {segment} cannot be registered whole"
            ),
            RwError::TooManySegments => f.write_str("more than u32::MAX segments"),
        }
    }
}

impl core::error::Error for RwError {}

/// `rdma_rw_io_needs_mr`: iWARP READ, READ above `max_sgl_rd`, or `force_mr`.
///
/// ```
/// use physvec::rdma::{io_needs_mr, RwCaps, RwDirection};
/// let roce = RwCaps::mlx5_like();
/// assert!(!io_needs_mr(&roce, RwDirection::Read, 64));
/// let iwarp = RwCaps { iwarp: true, ..roce };
/// assert!(io_needs_mr(&iwarp, RwDirection::Read, 1));
/// assert!(!io_needs_mr(&iwarp, RwDirection::Write, 1));
/// ```
pub const fn io_needs_mr(caps: &RwCaps, dir: RwDirection, nents: u32) -> bool {
    let read = matches!(dir, RwDirection::Read);
    (read && caps.iwarp)
        || (read && caps.max_sgl_rd != 0 && nents > caps.max_sgl_rd)
        || caps.force_mr
}

/// Segments after merging contiguous neighbours.
///
/// ```
/// use physvec::DmaRange;
/// let s = [DmaRange::new(0x1000, 0x1000), DmaRange::new(0x2000, 0x800), DmaRange::new(0x9000, 0x10)];
/// assert_eq!(physvec::rdma::coalesced_count(&s), 2);
/// ```
pub fn coalesced_count(segs: &[DmaRange]) -> usize {
    // A segment starts a coalesced one unless it continues its predecessor.
    core::iter::once(None)
        .chain(segs.iter().map(Some))
        .zip(segs)
        .filter(|&(prev, &s)| prev.map_or(true, |&p| !p.is_contiguous_with(s)))
        .count()
}

/// Chooses how `rdma_rw_ctx_init` would move `segs` (a mapped DMA list).
///
/// # Errors
/// [`RwError::Empty`], [`RwError::InvalidCaps`], [`RwError::TooManySegments`], and
/// [`RwError::MrCannotMap`] when a chunk of `pages_per_mr` segments is not one
/// `ib_map_mr_sg(PAGE_SIZE)` prefix.
///
/// ```
/// use physvec::rdma::{plan_rw, RwCaps, RwDirection, RwPlan};
/// use physvec::DmaRange;
/// let caps = RwCaps { max_sgl_rd: 2, ..RwCaps::mlx5_like() };
/// let three = [DmaRange::new(0x1000, 0x1000), DmaRange::new(0x5000, 0x1000), DmaRange::new(0x9000, 0x1000)];
/// assert_eq!(plan_rw(&three, RwDirection::Write, &caps), Ok(RwPlan::MultiSge { sges: 3, wrs: 1 }));
/// assert_eq!(plan_rw(&three, RwDirection::Read, &caps), Ok(RwPlan::Mr { mrs: 1, pages_per_mr: 256 }));
/// // Contiguous pieces count once: a single SGE.
/// let one = [DmaRange::new(0x1000, 0x1000), DmaRange::new(0x2000, 0x1000)];
/// assert_eq!(plan_rw(&one, RwDirection::Read, &caps), Ok(RwPlan::SingleSge));
/// ```
pub fn plan_rw(segs: &[DmaRange], dir: RwDirection, caps: &RwCaps) -> Result<RwPlan, RwError> {
    if segs.is_empty() {
        return Err(RwError::Empty);
    }
    let n = u32::try_from(coalesced_count(segs)).map_err(|_| RwError::TooManySegments)?;
    if io_needs_mr(caps, dir, n) {
        let ppm = caps.max_fast_reg_page_list_len.min(256);
        if ppm == 0 {
            return Err(RwError::InvalidCaps);
        }
        // Every chunk of `ppm` (coalesced) segments must map whole.
        let mut start = 0usize;
        let mut mrs = 0u32;
        while start < segs.len() {
            // Take raw segments until `ppm` coalesced segments are covered.
            let rest = segs.get(start..).unwrap_or_default();
            let mut take = rest.len().min(1);
            let mut count = 1u32;
            for w in rest.windows(2) {
                let &[prev, next] = w else { break };
                let new = !prev.is_contiguous_with(next);
                if new && count == ppm {
                    break;
                }
                // `count < ppm` when `new` (checked above), so `count <= ppm <= 256`;
                // `take` counts windows seen plus one, `<= rest.len()`.
                #[allow(clippy::arithmetic_side_effects)]
                {
                    count += u32::from(new);
                    take += 1;
                }
            }
            let chunk = rest.get(..take).unwrap_or_default();
            let mut pages = 0u32;
            let m = sg_to_pages_with(chunk, 0, caps.page_size, |_| {
                // `sg_to_pages_with` stops at the first `false`, so this runs at most
                // `ppm + 1 <= 257` times.
                #[allow(clippy::arithmetic_side_effects)]
                {
                    pages += 1;
                }
                pages <= ppm
            })
            .map_err(|_| RwError::MrCannotMap { segment: start })?;
            if m.mapped as usize != chunk.len() {
                return Err(RwError::MrCannotMap { segment: start });
            }
            // Each chunk holds >= 1 coalesced segment, so `mrs <= n <= u32::MAX`; `start +
            // take <= segs.len()` since `take <= rest.len()`.
            #[allow(clippy::arithmetic_side_effects)]
            {
                mrs += 1;
                start += take;
            }
        }
        return Ok(RwPlan::Mr {
            mrs,
            pages_per_mr: ppm,
        });
    }
    if n > 1 {
        let per_wr = match dir {
            RwDirection::Write => caps.max_write_sge,
            RwDirection::Read => caps.max_read_sge,
        };
        if per_wr == 0 {
            return Err(RwError::InvalidCaps);
        }
        return Ok(RwPlan::MultiSge {
            sges: n,
            wrs: n.div_ceil(per_wr),
        });
    }
    Ok(RwPlan::SingleSge)
}

crate::error::error_info!(RwError);
