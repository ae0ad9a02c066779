//! The software IOMMU's IOTLB model: 64 direct-mapped granule translations.
#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

pub(super) const IOTLB_SLOTS: usize = 64;

/// A direct-mapped IOTLB of 64 granule translations. `translate` fills it, invalidations
/// clear it; a missing invalidation would show up as a stale translation.
pub(super) struct Iotlb {
    pub(super) slots: [Option<(u64, u64)>; IOTLB_SLOTS],
}

impl Iotlb {
    pub(super) fn slot(page: u64) -> usize {
        // The low 6 bits of the page number (64 slots).
        (page & 0x3f) as usize
    }
    pub(super) fn invalidate(&mut self, gshift: u32, iova: u64, len: u64) -> bool {
        let pages = len >> gshift;
        if pages >= IOTLB_SLOTS as u64 {
            self.slots = [None; IOTLB_SLOTS];
            return true;
        }
        let first = iova >> gshift;
        // `pages < 64`, and a page number is at most 2^64 >> gshift: no overflow.
        for p in first..first.saturating_add(pages) {
            if let Some(slot) = self.slots.get_mut(Self::slot(p)) {
                if slot.is_some_and(|(tag, _)| tag == p) {
                    *slot = None;
                }
            }
        }
        false
    }
}
