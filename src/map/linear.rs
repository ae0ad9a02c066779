//! [`LinearMap`]: the translation of a mapper that maps ordinary memory as
//! `phys + offset` under a DMA mask and keeps nothing (the kernel's dma-direct without
//! swiotlb, where `dma_need_unmap()` is `false`). A mapper hands it out through
//! [`DmaMapper::linear`](super::DmaMapper::linear); the fused per-I/O paths
//! ([`map_prp`](crate::nvme::map_prp)) then map a page in a few instructions, inside
//! their own loop, instead of calling [`DmaMapper::map_phys`](super::DmaMapper::map_phys)
//! per range.

use crate::addr::PageSize;
use crate::mask::DmaMask;
use crate::range::{DmaRange, PhysRange};

/// `dma = phys + offset`, valid while the last byte is under `mask`.
///
/// # Invariants
/// None beyond its fields: any offset and mask. [`LinearMap::map`] refuses (returns
/// `None`) every range that would wrap past 2^64 or end above the mask; the mapper's
/// own `map_phys` then reports why.
///
/// ```
/// use physvec::map::LinearMap;
/// use physvec::{DmaMask, DmaRange, PhysRange};
/// let lin = LinearMap::new(0x1_0000_0000, DmaMask::BITS_64);
/// assert_eq!(lin.map(PhysRange::new(0x5000, 0x1000)), Some(DmaRange::new(0x1_0000_5000, 0x1000)));
/// assert_eq!(LinearMap::new(0, DmaMask::BITS_32).map(PhysRange::new(0xffff_f000, 0x1001)), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearMap {
    offset: u64,
    mask: DmaMask,
}

impl LinearMap {
    /// `dma = phys + offset` (bytes) for a device that emits addresses up to `mask`.
    ///
    /// ```
    /// use physvec::map::LinearMap;
    /// use physvec::DmaMask;
    /// let lin = LinearMap::new(0x8000_0000, DmaMask::BITS_32);
    /// assert_eq!((lin.offset(), lin.mask()), (0x8000_0000, DmaMask::BITS_32));
    /// ```
    pub const fn new(offset: u64, mask: DmaMask) -> Self {
        Self { offset, mask }
    }

    /// The offset added to every physical address, in bytes.
    ///
    /// ```
    /// use physvec::map::LinearMap;
    /// assert_eq!(LinearMap::new(7, physvec::DmaMask::BITS_64).offset(), 7);
    /// ```
    pub const fn offset(&self) -> u64 {
        self.offset
    }

    /// The highest DMA address the device can emit.
    ///
    /// ```
    /// use physvec::map::LinearMap;
    /// use physvec::DmaMask;
    /// assert_eq!(LinearMap::new(0, DmaMask::BITS_32).mask(), DmaMask::BITS_32);
    /// ```
    pub const fn mask(&self) -> DmaMask {
        self.mask
    }

    /// The DMA range of `phys`, or `None` when `phys + offset` wraps or its last byte
    /// is above the mask.
    ///
    /// ```
    /// use physvec::map::LinearMap;
    /// use physvec::{DmaMask, DmaRange, PhysRange};
    /// let lin = LinearMap::new(0x1000, DmaMask::BITS_64);
    /// assert_eq!(lin.map(PhysRange::new(0x2000, 0x10)), Some(DmaRange::new(0x3000, 0x10)));
    /// assert_eq!(lin.map(PhysRange::new(u64::MAX - 0xfff, 0x1000)), None); // wraps
    /// ```
    #[inline(always)]
    pub fn map(&self, phys: PhysRange) -> Option<DmaRange> {
        let last = phys.last().as_u64().checked_add(self.offset)?;
        if last > self.mask.get() {
            return None;
        }
        // `addr + offset <= last + offset = last'`: no wrap; `len > 0`.
        let first = phys.addr().as_u64().wrapping_add(self.offset);
        Some(DmaRange::new_unchecked(first, phys.len()))
    }

    /// The highest DMA address a whole page of `page` bytes may start at (its last byte
    /// still under the mask), or `None` when no page fits under the mask. Fused loops
    /// hoist this out of their per-page checks.
    ///
    /// ```
    /// use physvec::map::LinearMap;
    /// use physvec::{DmaMask, PageSize};
    /// let lin = LinearMap::new(0, DmaMask::BITS_32);
    /// assert_eq!(lin.last_page_start(PageSize::SIZE_4K), Some(0xffff_f000));
    /// ```
    #[inline]
    pub fn last_page_start(&self, page: PageSize) -> Option<u64> {
        self.mask.get().checked_sub(page.mask())
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::map::{Attrs, DataDirection, DirectMapper, DmaMapper};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Wherever the linear map answers, it answers what the mapper's `map_phys` does.
        #[test]
        fn agrees_with_direct_mapper(
            off in prop::sample::select(vec![0u64, 0x1000, 0x8000_0000, 1 << 40, u64::MAX - 0xffff]),
            bits in 12u32..=64,
            addr in any::<u64>(),
            len in 1u64..0x10_0000,
        ) {
            let mask = DmaMask::bits(bits).unwrap();
            let d = DirectMapper::new(off, mask);
            let lin = d.linear().unwrap();
            prop_assert_eq!(lin, LinearMap::new(off, mask));
            if let Ok(phys) = PhysRange::try_new(addr, len) {
                let via_mapper = d.map_phys(phys, DataDirection::ToDevice, Attrs::empty()).ok();
                prop_assert_eq!(lin.map(phys), via_mapper);
            }
        }
    }

    #[test]
    fn last_page_start_bounds_a_whole_page() {
        let lin = LinearMap::new(0, DmaMask::bits(13).unwrap());
        let top = lin.last_page_start(PageSize::SIZE_4K).unwrap();
        assert_eq!(top, 0x1000);
        assert!(lin.map(PhysRange::new(top, 0x1000)).is_some());
        assert!(lin.map(PhysRange::new(top + 0x1000, 0x1000)).is_none());
        assert_eq!(
            LinearMap::new(0, DmaMask::bits(11).unwrap()).last_page_start(PageSize::SIZE_4K),
            None
        );
    }
}
