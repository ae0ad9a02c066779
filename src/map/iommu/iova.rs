//! [`IovaAllocator`]: first-fit IOVA allocation over an aperture with coalescing frees.
#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

use alloc::collections::BTreeMap;

use crate::addr::{DmaAddr, PageSize};
use crate::map::MapError;

/// First-fit IOVA allocator over `[first, last]`, granule-aligned, with coalescing frees:
/// freed space is reused, so repeated map/unmap never grows the address use.
///
/// # Invariants
/// Free extents are disjoint, non-adjacent (coalesced), granule-aligned, inside the
/// aperture; `free_bytes` is their total.
///
/// ```
/// use physvec::map::IovaAllocator;
/// use physvec::{DmaAddr, PageSize};
/// let mut a = IovaAllocator::new(PageSize::SIZE_4K, DmaAddr::new(0x1000), DmaAddr::new(0xf_ffff))?;
/// let x = a.alloc(0x2000, PageSize::SIZE_4K).unwrap();
/// let y = a.alloc(0x1000, PageSize::SIZE_4K).unwrap();
/// assert_eq!((x.as_u64(), y.as_u64()), (0x1000, 0x3000));
/// a.free(x, 0x2000)?;
/// a.free(y, 0x1000)?;
/// assert!(a.is_pristine());
/// # Ok::<(), physvec::map::MapError>(())
/// ```
#[derive(Clone, Debug)]
pub struct IovaAllocator {
    granule: PageSize,
    first: u64,
    last: u64,
    /// start → last byte (inclusive) of each free extent.
    free: BTreeMap<u64, u64>,
    free_bytes: u128,
}

impl IovaAllocator {
    /// An allocator over the granules inside `[first, last]` (inclusive; rounded inwards).
    ///
    /// # Errors
    /// [`MapError::InvalidConfig`] when no whole granule fits.
    // Proof: all arithmetic is on u128 values of at most 2^64 + granule, far below 2^128;
    // `end - 1` and `end - start` follow `start < end` (checked), and `end - 1 < 2^64`.
    #[allow(clippy::arithmetic_side_effects)]
    pub fn new(granule: PageSize, first: DmaAddr, last: DmaAddr) -> Result<Self, MapError> {
        let (first, last) = (first.as_u64(), last.as_u64());
        let g = granule.get() as u128;
        let start = (first as u128).div_ceil(g) * g;
        let end = (last as u128 + 1) / g * g; // exclusive
        if start >= end {
            return Err(MapError::InvalidConfig {
                what: "IOVA aperture holds no whole granule",
            });
        }
        let mut free = BTreeMap::new();
        free.insert(start as u64, (end - 1) as u64);
        Ok(Self {
            granule,
            first: start as u64,
            last: (end - 1) as u64,
            free,
            free_bytes: end - start,
        })
    }

    /// First usable IOVA.
    pub fn first(&self) -> DmaAddr {
        DmaAddr::new(self.first)
    }

    /// Last usable IOVA (inclusive).
    pub fn last(&self) -> DmaAddr {
        DmaAddr::new(self.last)
    }

    /// Free bytes (saturating).
    pub fn free_bytes(&self) -> u64 {
        self.free_bytes.min(u64::MAX as u128) as u64
    }

    /// Number of free extents (1 when nothing is allocated).
    pub fn free_extents(&self) -> usize {
        self.free.len()
    }

    /// Whether everything is free (one extent spanning the aperture).
    pub fn is_pristine(&self) -> bool {
        self.free.len() == 1 && self.free.get(&self.first) == Some(&self.last)
    }

    /// Allocates `size` bytes (a granule multiple) at an `align`-aligned IOVA, lowest
    /// address first.
    // Proof: u128 sums of u64 values cannot overflow; `align - 1` with `align >= 1`;
    // `a - 1` only when `a > s >= 0`; `free_bytes >= size` because the chosen extent
    // (counted in `free_bytes`) holds the `size` bytes taken.
    #[allow(clippy::arithmetic_side_effects)]
    pub fn alloc(&mut self, size: u64, align: PageSize) -> Option<DmaAddr> {
        if size == 0 || size & self.granule.mask() != 0 {
            return None;
        }
        let align = align.max(self.granule).get() as u128;
        let found = self.free.iter().find_map(|(&s, &l)| {
            let a = (s as u128 + (align - 1)) & !(align - 1); // power of two: no u128 division
            (a + size as u128 - 1 <= l as u128).then_some((s, l, a as u64))
        });
        let (s, l, a) = found?;
        self.free.remove(&s);
        if a > s {
            self.free.insert(s, a - 1);
        }
        let after = a as u128 + size as u128;
        if after <= l as u128 {
            self.free.insert(after as u64, l);
        }
        self.free_bytes -= size as u128;
        Some(DmaAddr::new(a))
    }

    /// Takes the fixed extent `[start, start + size)` out of the free space (for IOVAs
    /// that must never be handed out, such as an interrupt window, or a fixed mapping).
    /// The part of it outside the aperture is ignored.
    ///
    /// # Errors
    /// [`MapError::AlreadyMapped`] when some granule of it inside the aperture is not
    /// free (nothing is taken then); [`MapError::Misaligned`] for an extent that is not
    /// granule-aligned.
    ///
    /// ```
    /// use physvec::map::IovaAllocator;
    /// use physvec::{DmaAddr, PageSize};
    /// let mut a = IovaAllocator::new(PageSize::SIZE_4K, DmaAddr::new(0x1000), DmaAddr::new(0xf_ffff))?;
    /// a.reserve_range(DmaAddr::new(0x1000), 0x2000)?;
    /// assert_eq!(a.alloc(0x1000, PageSize::SIZE_4K), Some(DmaAddr::new(0x3000)));
    /// assert!(a.reserve_range(DmaAddr::new(0x3000), 0x1000).is_err()); // already taken
    /// # Ok::<(), physvec::map::MapError>(())
    /// ```
    // Proof: `size - 1` after `size != 0`; `start - 1` only when `s < start`; `last + 1`
    // only when `last < l <= u64::MAX`; `last - start` after `start <= last`; the taken
    // bytes lie in a free extent, so `free_bytes` covers them.
    #[allow(clippy::arithmetic_side_effects)]
    pub fn reserve_range(&mut self, start: DmaAddr, size: u64) -> Result<(), MapError> {
        let start = start.as_u64();
        let g = self.granule;
        for v in [start, size] {
            if v & g.mask() != 0 {
                return Err(MapError::Misaligned {
                    value: v,
                    granule: g.get(),
                });
            }
        }
        if size == 0 {
            return Ok(());
        }
        let last = start.saturating_add(size - 1).min(self.last);
        let start = start.max(self.first);
        if start > last {
            return Ok(());
        }
        let Some((s, l)) = self
            .free
            .range(..=start)
            .next_back()
            .map(|(&s, &l)| (s, l))
            .filter(|&(_, l)| l >= last)
        else {
            return Err(MapError::AlreadyMapped { iova: start });
        };
        self.free.remove(&s);
        if s < start {
            self.free.insert(s, start - 1);
        }
        if last < l {
            self.free.insert(last + 1, l);
        }
        self.free_bytes -= (last - start) as u128 + 1;
        Ok(())
    }

    /// Returns `[start, start + size)` to the free space, merging neighbours.
    ///
    /// # Errors
    /// [`MapError::NotMapped`] when the extent is outside the aperture, misaligned, or
    /// overlaps free space (a double free).
    // Proof: `size - 1` after `size != 0`; `free_bytes` counts free bytes of a 2^64 space
    // in a u128, so adding a freed extent (not free before: checked) cannot overflow.
    #[allow(clippy::arithmetic_side_effects)]
    pub fn free(&mut self, start: DmaAddr, size: u64) -> Result<(), MapError> {
        let start = start.as_u64();
        let bad = MapError::NotMapped {
            dma: start,
            len: size,
        };
        if size == 0 || (start | size) & self.granule.mask() != 0 || start < self.first {
            return Err(bad);
        }
        let last = start
            .checked_add(size - 1)
            .filter(|&l| l <= self.last)
            .ok_or(bad)?;
        let prev = self.free.range(..=last).next_back().map(|(&s, &l)| (s, l));
        if prev.is_some_and(|(_, l)| l >= start) {
            return Err(bad);
        }
        let (mut s, mut l) = (start, last);
        if let Some((ps, pl)) = prev {
            if pl.checked_add(1) == Some(start) {
                self.free.remove(&ps);
                s = ps;
            }
        }
        if let Some(n) = last.checked_add(1) {
            if let Some(nl) = self.free.remove(&n) {
                l = nl;
            }
        }
        self.free.insert(s, l);
        self.free_bytes += size as u128;
        Ok(())
    }
}

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
    use alloc::vec::Vec;

    #[test]
    fn allocator_reuses_and_coalesces() {
        let mut a =
            IovaAllocator::new(PageSize::SIZE_4K, DmaAddr::new(0), DmaAddr::new(0xffff)).unwrap();
        let x: Vec<DmaAddr> = (0..16)
            .map(|_| a.alloc(0x1000, PageSize::SIZE_4K).unwrap())
            .collect();
        assert!(a.alloc(0x1000, PageSize::SIZE_4K).is_none());
        for &v in x.iter().step_by(2) {
            a.free(v, 0x1000).unwrap();
        }
        assert!(a.free(x[0], 0x1000).is_err());
        for &v in x.iter().skip(1).step_by(2) {
            a.free(v, 0x1000).unwrap();
        }
        assert!(a.is_pristine());
    }
}
