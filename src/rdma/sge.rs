//! Scatter/gather elements of work requests: the kernel's `struct ib_sge`
//! (include/rdma/ib_verbs.h) and rdma-core's `struct ibv_sge` (verbs.h), which share one
//! 16-byte layout `{u64 addr; u32 length; u32 lkey}`.

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
use core::mem::{offset_of, size_of};

use bytemuck::{Pod, Zeroable};

use crate::addr::Dma;
use crate::view::RangeView;

/// One SGE: `length` bytes at `addr`, accessed through local key `lkey`.
///
/// ```
/// let s = physvec::rdma::IbSge { addr: 0x1000, length: 512, lkey: 7 };
/// assert_eq!(core::mem::size_of_val(&s), 16);
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct IbSge {
    /// Address (a DMA address for kernel ULPs, a registered VA for user verbs).
    pub addr: u64,
    /// Length in bytes.
    pub length: u32,
    /// Local key of the memory region.
    pub lkey: u32,
}

/// rdma-core's `struct ibv_sge`: the same layout as [`IbSge`].
pub type IbvSge = IbSge;

const _: () = assert!(size_of::<IbSge>() == 16);
const _: () = assert!(offset_of!(IbSge, addr) == 0);
const _: () = assert!(offset_of!(IbSge, length) == 8);
const _: () = assert!(offset_of!(IbSge, lkey) == 12);

/// Why SGEs cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SgeError {
    /// Nothing to describe.
    Empty,
    /// `max_len` is 0.
    InvalidMaxLength,
    /// More SGEs are needed than `max_sge` (the output length) allows.
    TooManySges {
        /// SGEs needed.
        needed: u64,
        /// SGEs allowed.
        max_sge: usize,
    },
}

impl SgeError {
    /// Stable snake_case name of the variant.
    pub fn kind(&self) -> &'static str {
        match self {
            SgeError::Empty => "empty",
            SgeError::InvalidMaxLength => "invalid_max_length",
            SgeError::TooManySges { .. } => "too_many_sges",
        }
    }
}

impl fmt::Display for SgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SgeError::Empty => f.write_str("no ranges"),
            SgeError::InvalidMaxLength => f.write_str("maximum SGE length is 0"),
            SgeError::TooManySges { needed, max_sge } => {
                write!(f, "{needed} SGEs needed, at most {max_sge} allowed")
            }
        }
    }
}

impl core::error::Error for SgeError {}

/// The largest SGE length: the 32-bit `length` field.
pub const IB_SGE_MAX_LENGTH: u32 = u32::MAX;

/// Calls `f(addr, len)` for each SGE: contiguous ranges merged, pieces at most
/// `max_len` bytes.
fn for_each_sge(view: &RangeView<'_, Dma>, max_len: u64, mut f: impl FnMut(u64, u64)) {
    let mut cur: Option<(u64, u64)> = None;
    let emit = |a: u64, mut l: u64, f: &mut dyn FnMut(u64, u64)| {
        let mut a = a;
        while l > 0 {
            let take = l.min(max_len);
            f(a, take);
            a = a.wrapping_add(take);
            // `take <= l` (the min).
            #[allow(clippy::arithmetic_side_effects)]
            {
                l -= take;
            }
        }
    };
    for r in view.iter() {
        let (a, l) = (r.addr().as_u64(), r.len());
        cur = match cur {
            // A run's length is part of `view.len()`, a u64 total the view checked.
            #[allow(clippy::arithmetic_side_effects)]
            Some((ca, cl)) if ca.checked_add(cl) == Some(a) => Some((ca, cl + l)),
            Some((ca, cl)) => {
                emit(ca, cl, &mut f);
                Some((a, l))
            }
            None => Some((a, l)),
        };
    }
    if let Some((ca, cl)) = cur {
        emit(ca, cl, &mut f);
    }
}

/// SGEs `view` needs with pieces of at most `max_len` bytes (after merging contiguous
/// ranges).
///
/// ```
/// use physvec::{DmaRange, RangeView};
/// let r = [DmaRange::new(0, 5 << 30)];
/// assert_eq!(physvec::rdma::sge_count(&RangeView::full(&r).unwrap(), u32::MAX), 2);
/// ```
pub fn sge_count(view: &RangeView<'_, Dma>, max_len: u32) -> u64 {
    let mut n = 0u64;
    // Each SGE holds >= 1 byte of the view, so `n <= view.len() <= u64::MAX`.
    #[allow(clippy::arithmetic_side_effects)]
    for_each_sge(view, u64::from(max_len.max(1)), |_, _| n += 1);
    n
}

/// Writes `view` as SGEs with key `lkey` into `out` (`max_sge = out.len()`): contiguous
/// ranges merged, split at `max_len` bytes (use [`IB_SGE_MAX_LENGTH`] for the field's
/// limit). Returns the SGEs written.
///
/// # Errors
/// [`SgeError::Empty`], [`SgeError::InvalidMaxLength`], [`SgeError::TooManySges`];
/// `out` is unchanged on error.
///
/// ```
/// use physvec::rdma::{build_sges, IbSge};
/// use physvec::{DmaRange, RangeView};
/// let r = [DmaRange::new(0x1000, 0x800), DmaRange::new(0x1800, 0x800), DmaRange::new(0x9000, 0x100)];
/// let mut out = [IbSge::default(); 2];
/// assert_eq!(build_sges(&RangeView::full(&r).unwrap(), 0x42, u32::MAX, &mut out), Ok(2));
/// assert_eq!(out[0], IbSge { addr: 0x1000, length: 0x1000, lkey: 0x42 });
/// ```
pub fn build_sges(
    view: &RangeView<'_, Dma>,
    lkey: u32,
    max_len: u32,
    out: &mut [IbSge],
) -> Result<usize, SgeError> {
    if max_len == 0 {
        return Err(SgeError::InvalidMaxLength);
    }
    if view.is_empty() {
        return Err(SgeError::Empty);
    }
    let needed = sge_count(view, max_len);
    if needed > out.len() as u64 {
        return Err(SgeError::TooManySges {
            needed,
            max_sge: out.len(),
        });
    }
    let mut i = 0;
    // `needed <= out.len()` was checked, so every piece finds a slot.
    for_each_sge(view, u64::from(max_len), |addr, len| {
        if let Some(slot) = out.get_mut(i) {
            *slot = IbSge {
                addr,
                length: len as u32,
                lkey,
            };
            // `i < out.len()` (the slot exists).
            #[allow(clippy::arithmetic_side_effects)]
            {
                i += 1;
            }
        }
    });
    Ok(i)
}

crate::error::error_info!(SgeError);
