//! Where the mapper places IOVAs ([`VfioIovaConfig`](super::VfioIovaConfig)) and what it counts ([`VfioStats`](super::VfioStats)).
#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

use crate::addr::PageSize;

/// Where the mapper may place IOVAs.
///
/// ```
/// use physvec::map::vfio::VfioIovaConfig;
/// let c = VfioIovaConfig::new(39);
/// assert_eq!(c.last_iova(), (1 << 39) - 1);
/// assert_eq!(c.granule.get(), 4096);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VfioIovaConfig {
    /// The IOMMU's input address width in bits (Intel VT-d: 39 or 48; from
    /// `VFIO_IOMMU_GET_INFO`'s IOVA ranges on real hardware).
    pub width_bits: u32,
    /// The host page size: VFIO maps whole pages.
    pub granule: PageSize,
}

impl VfioIovaConfig {
    /// `width_bits` wide, 4 KiB pages.
    ///
    /// ```
    /// assert_eq!(physvec::map::vfio::VfioIovaConfig::new(48).width_bits, 48);
    /// ```
    pub const fn new(width_bits: u32) -> Self {
        VfioIovaConfig {
            width_bits,
            granule: PageSize::SIZE_4K,
        }
    }

    /// The highest IOVA (`2^width - 1`, saturating at `u64::MAX`).
    ///
    /// ```
    /// assert_eq!(physvec::map::vfio::VfioIovaConfig::new(64).last_iova(), u64::MAX);
    /// ```
    pub const fn last_iova(&self) -> u64 {
        if self.width_bits >= 64 {
            u64::MAX
        } else {
            // width < 64: the shift fits and the result is >= 0.
            (1u64 << self.width_bits).wrapping_sub(1)
        }
    }
}

/// Counters of a [`VfioMapper`](super::VfioMapper).
///
/// ```
/// let s = physvec::map::vfio::VfioStats::default();
/// assert_eq!(s.map_ioctls + s.unmap_ioctls, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VfioStats {
    /// `VFIO_IOMMU_MAP_DMA` calls made.
    pub map_ioctls: u64,
    /// `VFIO_IOMMU_UNMAP_DMA` calls made.
    pub unmap_ioctls: u64,
    /// Registered-memory lookups ([`VfioMapper::translate`](super::VfioMapper::translate) ranges).
    pub lookups: u64,
    /// Registered regions live.
    pub regions: usize,
    /// Bytes in registered regions.
    pub registered_bytes: u64,
    /// Per-I/O mappings live.
    pub live_io: usize,
}
