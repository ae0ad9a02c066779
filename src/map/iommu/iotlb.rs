//! The software IOMMU's IOTLB model: 64 direct-mapped granule translations.

pub(super) const IOTLB_SLOTS: usize = 64;

/// A direct-mapped IOTLB of 64 granule translations. `translate` fills it, invalidations
/// clear it; a missing invalidation would show up as a stale translation.
pub(super) struct Iotlb {
    pub(super) slots: [Option<(u64, u64)>; IOTLB_SLOTS],
}

impl Iotlb {
    pub(super) fn slot(page: u64) -> usize {
        (page % IOTLB_SLOTS as u64) as usize
    }
    pub(super) fn invalidate(&mut self, gshift: u32, iova: u64, len: u64) -> bool {
        let pages = len >> gshift;
        if pages >= IOTLB_SLOTS as u64 {
            self.slots = [None; IOTLB_SLOTS];
            return true;
        }
        let first = iova >> gshift;
        for p in first..first + pages {
            let s = Self::slot(p);
            if self.slots[s].is_some_and(|(tag, _)| tag == p) {
                self.slots[s] = None;
            }
        }
        false
    }
}
