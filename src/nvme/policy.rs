//! Choosing PRP or SGL for a transfer, in the spirit of Linux's `nvme_pci_use_sgls`
//! (`drivers/nvme/host/pci.c`).
//!
//! Linux uses SGLs on an I/O queue of a controller that supports them when the average
//! physical segment is at least `sgl_threshold` bytes (module parameter, default 32 KiB;
//! 0 disables SGLs), PRPs otherwise: PRPs cost one 8-byte entry per memory page, an SGL
//! one 16-byte descriptor per segment, so large segments favour SGLs. Linux never meets a
//! layout PRPs cannot express (the block layer's virtual boundary prevents it); this
//! crate's callers can, so [`choose_data_pointer`] also picks SGL when the layout needs
//! it, and says [`DataPointerChoice::Bounce`] when neither can express it.

#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

use super::descriptor::{SglCapabilities, SglItem};
use super::page::MemoryPageSize;
use super::prp::is_prp_compatible;
use super::sgl::{sgl_descriptors, SglOptions};
use crate::range::DmaRange;

/// Linux's default `sgl_threshold`: 32 KiB.
pub const DEFAULT_SGL_THRESHOLD: u64 = 32 << 10;

/// Which data pointer to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataPointerChoice {
    /// PRP1/PRP2 and PRP lists ([`super::encode_prp`]).
    Prp,
    /// An SGL ([`super::encode_sgl`]).
    Sgl,
    /// Neither can express the layout for this queue and controller: bounce through a
    /// contiguous buffer or split the command.
    Bounce,
}

/// Where the command goes and what the controller offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataPointerPolicy {
    /// The controller's SGLS.
    pub sgls: SglCapabilities,
    /// Admin queue (qid 0): commands there must use PRPs on PCIe.
    pub admin_queue: bool,
    /// Average segment size in bytes from which SGLs are preferred; 0 means "only when
    /// the layout needs it" (Linux: 0 disables SGLs).
    pub sgl_threshold: u64,
    /// Controller memory page size.
    pub mps: MemoryPageSize,
}

impl DataPointerPolicy {
    /// An I/O-queue policy with Linux's default threshold.
    pub const fn new(sgls: SglCapabilities, mps: MemoryPageSize) -> Self {
        Self {
            sgls,
            admin_queue: false,
            sgl_threshold: DEFAULT_SGL_THRESHOLD,
            mps,
        }
    }
}

/// Picks PRP or SGL for `ranges`.
///
/// SGL when SGLs are usable (supported, I/O queue, and the layout passes the SGL
/// capability checks) and either the layout is not PRP-compatible or
/// `ceil(total / segments) >= sgl_threshold > 0`; PRP when PRP-compatible otherwise;
/// [`DataPointerChoice::Bounce`] when neither works. An empty list chooses PRP.
///
/// ```
/// use physvec::nvme::{choose_data_pointer, DataPointerChoice, DataPointerPolicy, MemoryPageSize, SglCapabilities};
/// use physvec::DmaRange;
/// let p = DataPointerPolicy::new(SglCapabilities::from_raw(1), MemoryPageSize::SIZE_4K);
/// let small = [DmaRange::new(0x1000, 0x1000), DmaRange::new(0x5000, 0x1000)];
/// assert_eq!(choose_data_pointer(&small, &p), DataPointerChoice::Prp);
/// let big = [DmaRange::new(0x100000, 0x10000)];
/// assert_eq!(choose_data_pointer(&big, &p), DataPointerChoice::Sgl);
/// let odd = [DmaRange::new(0x1000, 0x10), DmaRange::new(0x5000, 0x10)];
/// assert_eq!(choose_data_pointer(&odd, &p), DataPointerChoice::Sgl);
/// let admin = DataPointerPolicy { admin_queue: true, ..p };
/// assert_eq!(choose_data_pointer(&odd, &admin), DataPointerChoice::Bounce);
/// ```
pub fn choose_data_pointer(ranges: &[DmaRange], policy: &DataPointerPolicy) -> DataPointerChoice {
    let prp_ok = is_prp_compatible(ranges.iter().copied(), policy.mps);
    let sgl_ok = !policy.admin_queue
        && sgl_descriptors(
            ranges.iter().copied().map(SglItem::Data),
            &SglOptions::new(policy.sgls),
        )
        .is_ok();
    let total: u128 = ranges.iter().map(|r| r.len() as u128).sum();
    let n = ranges.len().max(1) as u128;
    let average = total.div_ceil(n);
    let large = policy.sgl_threshold != 0 && average >= policy.sgl_threshold as u128;
    if sgl_ok && (large || !prp_ok) {
        DataPointerChoice::Sgl
    } else if prp_ok {
        DataPointerChoice::Prp
    } else {
        DataPointerChoice::Bounce
    }
}
