//! mlx5 translation entries (include/linux/mlx5/qp.h): MTT, KLM and KSM, big-endian,
//! zero-padded to a 64-byte multiple as UMR requires (`MLX5_IB_UMR_XLT_ALIGNMENT`):
//! 8 MTT or 4 KLM/KSM entries per 64 bytes.
//!
//! | entry | layout (big-endian) | size |
//! |---|---|---|
//! | `mlx5_mtt` | `ptag` = page address \| [`MLX5_EN_RD`] \| [`MLX5_EN_WR`] | 8 B |
//! | `mlx5_klm` | `bcount` u32, `key` u32, `va` u64 | 16 B |
//! | `mlx5_ksm` | reserved u32, `key` u32, `va` u64 (fixed entity size) | 16 B |

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

/// MTT enable bit 0: the page may be read.
pub const MLX5_EN_RD: u64 = 0x1;
/// MTT enable bit 1: the page may be written.
pub const MLX5_EN_WR: u64 = 0x2;
/// UMR translation buffers are multiples of this many bytes.
pub const MLX5_UMR_XLT_ALIGNMENT: usize = 64;
/// Largest `bcount` of one KLM (`MLX5_MAX_KLM_BYTE_COUNT`, 2 GiB); longer segments are
/// split.
pub const MLX5_MAX_KLM_BYTE_COUNT: u64 = 0x8000_0000;
/// Size of one MTT entry in bytes.
pub const MLX5_MTT_SIZE: usize = 8;
/// Size of one KLM / KSM entry in bytes.
pub const MLX5_KLM_SIZE: usize = 16;
/// mkey access modes (`mlx5_ifc.h`): MTT.
pub const MLX5_MKC_ACCESS_MODE_MTT: u8 = 0x1;
/// mkey access mode KLMs.
pub const MLX5_MKC_ACCESS_MODE_KLMS: u8 = 0x2;
/// mkey access mode KSM.
pub const MLX5_MKC_ACCESS_MODE_KSM: u8 = 0x3;

/// Why entries cannot be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mlx5Error {
    /// Nothing to encode.
    Empty,
    /// An MTT page address with any of its low 12 bits set (MTT pages are at least
    /// 4 KiB).
    MisalignedPage {
        /// Index of the page.
        index: usize,
        /// Its address.
        addr: u64,
    },
    /// A KSM segment whose address or length is not a multiple of the entity size.
    MisalignedSegment {
        /// Index of the segment.
        index: usize,
    },
    /// The output buffer is shorter than the padded encoding.
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
    },
}

impl Mlx5Error {
    /// Stable snake_case name of the variant.
    pub fn kind(&self) -> &'static str {
        match self {
            Mlx5Error::Empty => "empty",
            Mlx5Error::MisalignedPage { .. } => "misaligned_page",
            Mlx5Error::MisalignedSegment { .. } => "misaligned_segment",
            Mlx5Error::BufferTooSmall { .. } => "buffer_too_small",
        }
    }
}

impl fmt::Display for Mlx5Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Mlx5Error::Empty => f.write_str("no entries to encode"),
            Mlx5Error::MisalignedPage { index, addr } => {
                write!(f, "page {index} at {addr:#x} is not 4 KiB aligned")
            }
            Mlx5Error::MisalignedSegment { index } => {
                write!(f, "segment {index} is not a whole number of KSM entities")
            }
            Mlx5Error::BufferTooSmall { needed } => {
                write!(f, "output buffer needs {needed} bytes")
            }
        }
    }
}

impl core::error::Error for Mlx5Error {}

/// `bytes` rounded up to the UMR alignment; saturates like the entry counts that feed
/// it, so an impossible size stays impossible instead of wrapping to a small one.
const fn padded(bytes: usize) -> usize {
    bytes
        .div_ceil(MLX5_UMR_XLT_ALIGNMENT)
        .saturating_mul(MLX5_UMR_XLT_ALIGNMENT)
}

/// One 16-byte KLM / KSM entry: `word0` (KLM `bcount`, KSM reserved), `key`, `va`,
/// big-endian.
const fn klm_entry(word0: u32, key: u32, va: u64) -> [u8; MLX5_KLM_SIZE] {
    let [a0, a1, a2, a3] = word0.to_be_bytes();
    let [k0, k1, k2, k3] = key.to_be_bytes();
    let [v0, v1, v2, v3, v4, v5, v6, v7] = va.to_be_bytes();
    [
        a0, a1, a2, a3, k0, k1, k2, k3, v0, v1, v2, v3, v4, v5, v6, v7,
    ]
}

/// Bytes of the padded MTT encoding of `n` pages.
///
/// ```
/// assert_eq!(physvec::rdma::mtt_bytes(9), 128);
/// ```
pub const fn mtt_bytes(n: usize) -> usize {
    padded(n.saturating_mul(MLX5_MTT_SIZE))
}

/// Encodes `pages` as big-endian MTT entries with the `access` bits
/// ([`MLX5_EN_RD`] | [`MLX5_EN_WR`], other bits ignored), as `mlx5_set_page` does, and
/// zero-pads to 64 bytes. Returns the bytes written.
///
/// # Errors
/// [`Mlx5Error::Empty`], [`Mlx5Error::MisalignedPage`], [`Mlx5Error::BufferTooSmall`];
/// `out` is unchanged on error.
///
/// ```
/// use physvec::rdma::{encode_mtt, MLX5_EN_RD, MLX5_EN_WR};
/// let mut out = [0xffu8; 64];
/// assert_eq!(encode_mtt(&[0x1234_5000], MLX5_EN_RD | MLX5_EN_WR, &mut out), Ok(64));
/// assert_eq!(out[..8], [0, 0, 0, 0, 0x12, 0x34, 0x50, 0x03]);
/// assert!(out[8..].iter().all(|&b| b == 0));
/// ```
pub fn encode_mtt(pages: &[u64], access: u64, out: &mut [u8]) -> Result<usize, Mlx5Error> {
    if pages.is_empty() {
        return Err(Mlx5Error::Empty);
    }
    if let Some((index, &addr)) = pages.iter().enumerate().find(|(_, &p)| p & 0xfff != 0) {
        return Err(Mlx5Error::MisalignedPage { index, addr });
    }
    let needed = mtt_bytes(pages.len());
    let out = out
        .get_mut(..needed)
        .ok_or(Mlx5Error::BufferTooSmall { needed })?;
    let bits = access & (MLX5_EN_RD | MLX5_EN_WR);
    let mut chunks = out.chunks_exact_mut(MLX5_MTT_SIZE);
    // `pages` first: `zip` stops on it without consuming a chunk.
    for (&p, chunk) in pages.iter().zip(chunks.by_ref()) {
        chunk.copy_from_slice(&(p | bits).to_be_bytes());
    }
    for chunk in chunks {
        chunk.fill(0);
    }
    Ok(needed)
}

fn klm_pieces(s: &DmaRange) -> u64 {
    s.len().div_ceil(MLX5_MAX_KLM_BYTE_COUNT)
}

/// KLM entries `segs` need (segments above 2 GiB take several).
///
/// ```
/// use physvec::DmaRange;
/// assert_eq!(physvec::rdma::klm_count(&[DmaRange::new(0, 5 << 30)]), 3);
/// ```
pub fn klm_count(segs: &[DmaRange]) -> u64 {
    segs.iter().map(klm_pieces).fold(0u64, u64::saturating_add)
}

/// Bytes of the padded KLM or KSM encoding of `n` entries.
pub const fn klm_bytes(n: usize) -> usize {
    padded(n.saturating_mul(MLX5_KLM_SIZE))
}

/// Encodes `segs` as big-endian KLM entries `{bcount, key, va}` (as
/// `mlx5_ib_sg_to_klms` does for `IB_MR_TYPE_SG_GAPS`), splitting segments above
/// [`MLX5_MAX_KLM_BYTE_COUNT`], and zero-pads to 64 bytes. Returns the bytes written.
///
/// # Errors
/// [`Mlx5Error::Empty`], [`Mlx5Error::BufferTooSmall`]; `out` is unchanged on error.
///
/// ```
/// use physvec::rdma::encode_klm;
/// use physvec::DmaRange;
/// let mut out = [0u8; 64];
/// assert_eq!(encode_klm(&[DmaRange::new(0x10000, 0x100)], 7, &mut out), Ok(64));
/// assert_eq!(out[..16], [0, 0, 1, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 1, 0, 0]);
/// ```
pub fn encode_klm(segs: &[DmaRange], key: u32, out: &mut [u8]) -> Result<usize, Mlx5Error> {
    if segs.is_empty() {
        return Err(Mlx5Error::Empty);
    }
    let n = usize::try_from(klm_count(segs)).unwrap_or(usize::MAX);
    let needed = klm_bytes(n);
    let out = out
        .get_mut(..needed)
        .ok_or(Mlx5Error::BufferTooSmall { needed })?;
    let mut slots = out.chunks_exact_mut(MLX5_KLM_SIZE);
    for s in segs {
        let mut va = s.addr().as_u64();
        let mut left = s.len();
        while left > 0 {
            let bcount = left.min(MLX5_MAX_KLM_BYTE_COUNT);
            if let Some(slot) = slots.next() {
                slot.copy_from_slice(&klm_entry(bcount as u32, key, va));
            }
            va = va.wrapping_add(bcount);
            // `bcount = left.min(..) <= left`.
            #[allow(clippy::arithmetic_side_effects)]
            {
                left -= bcount;
            }
        }
    }
    for slot in slots {
        slot.fill(0);
    }
    Ok(needed)
}

/// Encodes `segs` as big-endian KSM entries `{0, key, va}`, one per `entity` bytes
/// (the mkey's fixed entity size, `2^log_page_size`), and zero-pads to 64 bytes.
/// Returns the bytes written.
///
/// # Errors
/// [`Mlx5Error::Empty`], [`Mlx5Error::MisalignedSegment`] (address or length not a
/// multiple of `entity`), [`Mlx5Error::BufferTooSmall`]; `out` is unchanged on error.
///
/// ```
/// use physvec::rdma::encode_ksm;
/// use physvec::{DmaRange, PageSize};
/// let mut out = [0u8; 64];
/// encode_ksm(&[DmaRange::new(0x20000, 0x2000)], 9, PageSize::SIZE_4K, &mut out).unwrap();
/// assert_eq!(out[..16], [0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 2, 0, 0]);
/// assert_eq!(out[24..32], [0, 0, 0, 0, 0, 2, 0x10, 0]);
/// ```
pub fn encode_ksm(
    segs: &[DmaRange],
    key: u32,
    entity: PageSize,
    out: &mut [u8],
) -> Result<usize, Mlx5Error> {
    if segs.is_empty() {
        return Err(Mlx5Error::Empty);
    }
    let mut n: u64 = 0;
    for (index, s) in segs.iter().enumerate() {
        if !s.is_page_aligned(entity) {
            return Err(Mlx5Error::MisalignedSegment { index });
        }
        n = n.saturating_add(s.len() >> entity.shift());
    }
    let needed = klm_bytes(usize::try_from(n).unwrap_or(usize::MAX));
    let out = out
        .get_mut(..needed)
        .ok_or(Mlx5Error::BufferTooSmall { needed })?;
    let mut slots = out.chunks_exact_mut(MLX5_KLM_SIZE);
    for s in segs {
        for (page, _, _) in s.pages(entity) {
            if let Some(slot) = slots.next() {
                slot.copy_from_slice(&klm_entry(0, key, page.as_u64()));
            }
        }
    }
    for slot in slots {
        slot.fill(0);
    }
    Ok(needed)
}

crate::error::error_info!(Mlx5Error, |e| match *e {
    Mlx5Error::MisalignedPage { index, .. } => Some(crate::error::Position::index(index)),
    _ => None,
});

#[cfg(test)]
#[allow(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]
mod tests {
    use super::*;

    /// A size too large for memory stays too large (and is refused as
    /// `BufferTooSmall`) instead of panicking or wrapping to a small size.
    #[test]
    fn sizes_of_huge_counts_saturate() {
        assert_eq!(mtt_bytes(usize::MAX), usize::MAX);
        assert_eq!(klm_bytes(usize::MAX), usize::MAX);
        assert_eq!(klm_bytes(usize::MAX / 16), usize::MAX);
        assert_eq!(mtt_bytes(0), 0);
        assert_eq!(klm_bytes(5), 128);
    }
}
