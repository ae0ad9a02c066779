//! NVMe over RDMA glue: a registered region becomes the command's single Keyed SGL Data
//! Block descriptor, as `nvme_rdma_map_sg_fr` / `nvme_rdma_map_sg_single`
//! (drivers/nvme/host/rdma.c) fill it.

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

use crate::addr::DmaAddr;
use crate::nvme::{SglDescriptor, SGL_SUBTYPE_ADDRESS, SGL_SUBTYPE_INVALIDATE_KEY};

/// A registered memory region as the peer addresses it: `ib_mr`'s `iova`, `length`,
/// `rkey`.
///
/// Usually built from an [`MrMapping`](super::MrMapping) after registration:
///
/// ```
/// use physvec::rdma::{sg_to_pages, RegisteredRegion};
/// use physvec::{DmaRange, PageSize};
/// let mut pages = [0u64; 4];
/// let m = sg_to_pages(&[DmaRange::new(0x10_0200, 0x1e00)], 0, PageSize::SIZE_4K, &mut pages)?;
/// let mr = RegisteredRegion { iova: m.iova, length: m.length, rkey: 0x1234 };
/// assert_eq!((mr.iova, mr.length), (0x10_0200, 0x1e00));
/// # Ok::<(), physvec::rdma::MrError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegisteredRegion {
    /// First byte's address in the region (`mr->iova`).
    pub iova: u64,
    /// Bytes (`mr->length`).
    pub length: u64,
    /// Remote key (`mr->rkey`).
    pub rkey: u32,
}

/// The region does not fit one Keyed SGL Data Block (24-bit length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyedLengthError {
    /// The region's length in bytes.
    pub length: u64,
}

impl KeyedLengthError {
    /// Stable snake_case name: `length_too_large`.
    pub fn kind(&self) -> &'static str {
        "length_too_large"
    }
}

impl fmt::Display for KeyedLengthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:#x} bytes exceed a keyed SGL data block (16 MiB - 1)",
            self.length
        )
    }
}

impl core::error::Error for KeyedLengthError {}

/// The Keyed SGL Data Block for `mr`: address = `iova`, 24-bit length, key = `rkey`,
/// subtype Invalidate Key (`NVME_SGL_FMT_INVALIDATE`, the host's fast-registration
/// path) when `invalidate`, else Address (the global-rkey single-segment path). A
/// zero-length region gives the null keyed descriptor (`nvme_rdma_set_sg_null`).
///
/// # Errors
/// [`KeyedLengthError`] when `length > 2^24 - 1`.
///
/// ```
/// use physvec::rdma::{keyed_sgl, RegisteredRegion};
/// let d = keyed_sgl(&RegisteredRegion { iova: 0x1000_0200, length: 0x3000, rkey: 0x1234_5678 }, true)?;
/// assert_eq!(
///     d.to_bytes(),
///     [0x00, 0x02, 0x00, 0x10, 0, 0, 0, 0, 0x00, 0x30, 0x00, 0x78, 0x56, 0x34, 0x12, 0x4f]
/// );
/// # Ok::<(), physvec::rdma::KeyedLengthError>(())
/// ```
pub fn keyed_sgl(
    mr: &RegisteredRegion,
    invalidate: bool,
) -> Result<SglDescriptor, KeyedLengthError> {
    let err = KeyedLengthError { length: mr.length };
    let len = u32::try_from(mr.length).map_err(|_| err)?;
    let d = SglDescriptor::keyed_data_block(DmaAddr::new(mr.iova), len, mr.rkey).ok_or(err)?;
    Ok(d.with_subtype(if invalidate {
        SGL_SUBTYPE_INVALIDATE_KEY
    } else {
        SGL_SUBTYPE_ADDRESS
    }))
}

crate::error::error_info!(KeyedLengthError);
