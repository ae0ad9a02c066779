//! Direct mapping (`kernel/dma/direct.c`): `dma = phys + dma_offset`, DMA-mask checks,
//! and a swiotlb-like [`BouncePool`] (`kernel/dma/swiotlb.c`) for ranges above the mask.
//! No IOVA space: the generic [`map`](super::map) falls back to one range per segment.
//!
//! The bounce copies are explicit: after `map_phys` of a to-device range call
//! [`DirectMapper::sync_for_device`], before `unmap_phys` of a from-device range call
//! [`DirectMapper::sync_for_cpu`] (the kernel's `dma_sync_single_for_*`), both through the
//! [`MemoryReader`] / [`MemoryWriter`] traits over physical memory. Never allocates.

#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

use core::cell::RefCell;
use core::fmt;

use arrayvec::ArrayVec;

use super::{Attrs, DataDirection, DmaMapper, LinearMap, MapError};
use crate::addr::{PageSize, Phys, PhysAddr};
use crate::mask::DmaMask;
use crate::mem::{MemoryError, MemoryReader, MemoryWriter};
use crate::range::{DmaRange, PhysRange};

/// Most slots a pool can have.
const MAX_SLOTS: usize = 1024;
/// Most live bounced mappings.
const MAX_BOUNCES: usize = 64;

#[derive(Clone, Copy, Debug)]
struct Bounce {
    orig: PhysRange,
    slot: usize,
    nslots: usize,
    dir: DataDirection,
}

struct PoolState {
    used: [u64; MAX_SLOTS / 64],
    live: ArrayVec<Bounce, MAX_BOUNCES>,
    total_bounced: u64,
}

/// A bounce-buffer pool: `nslots` slots of `slot_size` bytes at physical `base`, memory
/// the device can reach (the kernel's swiotlb `io_tlb_mem`). At most 1024 slots and 64
/// live bounced mappings; a mapping takes contiguous slots.
///
/// # Invariants
/// The pool never hands out a slot twice; each live bounce records the original range.
pub struct BouncePool {
    base: PhysAddr,
    slot_size: PageSize,
    nslots: usize,
    state: RefCell<PoolState>,
}

impl fmt::Debug for BouncePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state.borrow();
        f.debug_struct("BouncePool")
            .field("base", &self.base)
            .field("slot_size", &self.slot_size)
            .field("nslots", &self.nslots)
            .field("live", &s.live.len())
            .finish()
    }
}

impl BouncePool {
    /// A pool of `nslots` slots of `slot_size` bytes starting at physical `base`.
    ///
    /// # Errors
    /// [`MapError::InvalidConfig`] for 0 or more than 1024 slots, or a pool passing 2^64.
    ///
    /// ```
    /// use physvec::map::BouncePool;
    /// use physvec::{PageSize, PhysAddr};
    /// let pool = BouncePool::new(PhysAddr::new(0x100_0000), PageSize::new(2048)?, 256)?;
    /// assert_eq!(pool.range().len(), 512 << 10);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(base: PhysAddr, slot_size: PageSize, nslots: usize) -> Result<Self, MapError> {
        if nslots == 0 || nslots > MAX_SLOTS {
            return Err(MapError::InvalidConfig {
                what: "bounce pool needs 1..=1024 slots",
            });
        }
        let len = slot_size
            .get()
            .checked_mul(nslots as u64)
            .filter(|&l| PhysRange::try_new(base.as_u64(), l).is_ok())
            .ok_or(MapError::InvalidConfig {
                what: "bounce pool passes the end of the address space",
            })?;
        let _ = len;
        Ok(Self {
            base,
            slot_size,
            nslots,
            state: RefCell::new(PoolState {
                used: [0; MAX_SLOTS / 64],
                live: ArrayVec::new(),
                total_bounced: 0,
            }),
        })
    }

    /// The pool's physical memory.
    // `new` checked that `slot_size * nslots` fits and is a valid range from `base`.
    #[allow(clippy::arithmetic_side_effects)]
    pub fn range(&self) -> PhysRange {
        PhysRange::new(
            self.base.as_u64(),
            self.slot_size.get() * self.nslots as u64,
        )
    }

    /// Live bounced mappings.
    pub fn live(&self) -> usize {
        self.state.borrow().live.len()
    }

    /// Mappings bounced since creation.
    pub fn total_bounced(&self) -> u64 {
        self.state.borrow().total_bounced
    }

    /// Slots in use.
    pub fn used_slots(&self) -> usize {
        self.state
            .borrow()
            .used
            .iter()
            .map(|w| w.count_ones() as usize)
            .sum()
    }

    /// Slot `i < nslots <= MAX_SLOTS` is in use (every such `i` has its word).
    fn is_used(s: &PoolState, i: usize) -> bool {
        s.used.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn set(s: &mut PoolState, slot: usize, n: usize, on: bool) {
        // Callers pass slots of the pool: `slot + n <= nslots <= MAX_SLOTS`.
        #[allow(clippy::arithmetic_side_effects)]
        let end = slot + n;
        for i in slot..end {
            if let Some(w) = s.used.get_mut(i / 64) {
                if on {
                    *w |= 1 << (i % 64);
                } else {
                    *w &= !(1 << (i % 64));
                }
            }
        }
    }

    /// Physical address of slot `slot < nslots`.
    // `new` checked that `base + slot_size * nslots` fits, and `slot < nslots`.
    #[allow(clippy::arithmetic_side_effects)]
    fn slot_addr(&self, slot: usize) -> u64 {
        self.base.as_u64() + slot as u64 * self.slot_size.get()
    }

    fn take(&self, orig: PhysRange, dir: DataDirection) -> Result<PhysAddr, MapError> {
        let full = MapError::BounceExhausted { len: orig.len() };
        let nslots =
            usize::try_from(orig.len().div_ceil(self.slot_size.get())).map_err(|_| full)?;
        let mut s = self.state.borrow_mut();
        if nslots > self.nslots || s.live.is_full() {
            return Err(full);
        }
        // `nslots <= self.nslots` (checked above), so `start + nslots <= self.nslots`.
        #[allow(clippy::arithmetic_side_effects)]
        let slot = (0..=self.nslots - nslots)
            .find(|&start| (start..start + nslots).all(|i| !Self::is_used(&s, i)))
            .ok_or(full)?;
        Self::set(&mut s, slot, nslots, true);
        s.live.push(Bounce {
            orig,
            slot,
            nslots,
            dir,
        });
        // One per bounce; u64::MAX of them would take 2^64 mappings.
        #[allow(clippy::arithmetic_side_effects)]
        {
            s.total_bounced += 1;
        }
        Ok(PhysAddr::new(self.slot_addr(slot)))
    }

    fn find(&self, bounce: PhysRange) -> Option<(usize, Bounce)> {
        let s = self.state.borrow();
        s.live.iter().enumerate().find_map(|(i, b)| {
            let addr = self.slot_addr(b.slot);
            (addr == bounce.addr().as_u64() && b.orig.len() == bounce.len()).then_some((i, *b))
        })
    }

    fn release(&self, index: usize) {
        let mut s = self.state.borrow_mut();
        let b = s.live.swap_remove(index);
        Self::set(&mut s, b.slot, b.nslots, false);
    }
}

/// Direct mapping: `dma = phys + dma_offset`, checked against the DMA mask, bouncing
/// unreachable ranges through an optional [`BouncePool`].
///
/// # Examples
/// ```
/// use physvec::map::{Attrs, BouncePool, DataDirection, DirectMapper, DmaMapper, MapError};
/// use physvec::mem::{MemoryReader, MemoryWriter, SparseMemory};
/// use physvec::{PageSize, PhysAddr, PhysRange};
///
/// // A 32-bit device; a 4 KiB-slot bounce pool at 16 MiB.
/// let pool = BouncePool::new(PhysAddr::new(0x100_0000), PageSize::SIZE_4K, 16)?;
/// let d = DirectMapper::new(0, physvec::DmaMask::BITS_32).with_bounce_pool(pool);
/// let high = PhysRange::new(0x1_0000_0000, 8); // above 4 GiB
/// let dma = d.map_phys(high, DataDirection::ToDevice, Attrs::empty())?;
/// assert_eq!(dma.addr().as_u64(), 0x100_0000); // bounced
///
/// // Physical memory, indexed by physical addresses.
/// let mut ram = SparseMemory::<physvec::Phys>::default();
/// ram.add(PhysAddr::new(0x1_0000_0000), b"payload!".to_vec());
/// ram.add_zeroed(PhysAddr::new(0x100_0000), 0x1000);
/// d.sync_for_device(dma, &mut ram)?; // copy-in
/// let mut buf = [0u8; 8];
/// ram.read(PhysAddr::new(0x100_0000), &mut buf)?;
/// assert_eq!(&buf, b"payload!");
/// d.unmap_phys(dma, DataDirection::ToDevice, Attrs::empty())?;
///
/// // MMIO is never bounced.
/// assert!(matches!(d.map_phys(high, DataDirection::ToDevice, Attrs::MMIO), Err(MapError::AboveDmaMask { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct DirectMapper {
    dma_offset: u64,
    dma_mask: DmaMask,
    granule: PageSize,
    bounce: Option<BouncePool>,
}

impl DirectMapper {
    /// A direct mapper with `dma = phys + dma_offset` (bytes) for a device with
    /// `dma_mask`.
    ///
    /// ```
    /// use physvec::map::{DirectMapper, DmaMapper};
    /// use physvec::DmaMask;
    /// let d = DirectMapper::new(0x8000_0000, DmaMask::BITS_32);
    /// assert_eq!((d.dma_offset(), d.dma_mask()), (0x8000_0000, DmaMask::BITS_32));
    /// ```
    pub const fn new(dma_offset: u64, dma_mask: DmaMask) -> Self {
        Self {
            dma_offset,
            dma_mask,
            granule: PageSize::SIZE_4K,
            bounce: None,
        }
    }

    /// Adds a bounce pool for ranges above the mask.
    pub fn with_bounce_pool(mut self, pool: BouncePool) -> Self {
        self.bounce = Some(pool);
        self
    }

    /// The bounce pool, if any.
    pub fn bounce_pool(&self) -> Option<&BouncePool> {
        self.bounce.as_ref()
    }

    /// The DMA offset.
    pub fn dma_offset(&self) -> u64 {
        self.dma_offset
    }

    /// `map_phys` beyond the fast path: every error, and bouncing.
    #[cold]
    #[inline(never)]
    fn map_phys_slow(
        &self,
        phys: PhysRange,
        dir: DataDirection,
        attrs: Attrs,
    ) -> Result<DmaRange, MapError> {
        let dma = self.to_dma(phys)?;
        if self.reachable(dma) {
            return Ok(dma);
        }
        let above = MapError::AboveDmaMask {
            dma: dma.addr().as_u64(),
            len: dma.len(),
            mask: self.dma_mask.get(),
        };
        let pool = match &self.bounce {
            Some(p) if !attrs.contains(Attrs::MMIO) => p,
            _ => return Err(above),
        };
        let bounce = pool.take(phys, dir)?;
        let out = PhysRange::try_new(bounce.as_u64(), phys.len())
            .map_err(|_| above)
            .and_then(|b| self.to_dma(b))
            .and_then(|d| if self.reachable(d) { Ok(d) } else { Err(above) });
        if out.is_err() {
            if let Some((i, _)) = pool.find(PhysRange::new(bounce.as_u64(), phys.len())) {
                pool.release(i);
            }
        }
        out
    }

    fn to_dma(&self, phys: PhysRange) -> Result<DmaRange, MapError> {
        DmaRange::try_new(
            phys.addr()
                .as_u64()
                .checked_add(self.dma_offset)
                .ok_or(MapError::AddressOverflow {
                    addr: phys.addr().as_u64(),
                    len: phys.len(),
                })?,
            phys.len(),
        )
        .map_err(|_| MapError::AddressOverflow {
            addr: phys.addr().as_u64(),
            len: phys.len(),
        })
    }

    fn reachable(&self, dma: DmaRange) -> bool {
        self.dma_mask.covers(dma)
    }

    fn bounced(&self, dma: DmaRange) -> Option<(&BouncePool, usize, Bounce)> {
        let pool = self.bounce.as_ref()?;
        let phys = PhysRange::try_new(dma.addr().as_u64().checked_sub(self.dma_offset)?, dma.len())
            .ok()?;
        pool.find(phys).map(|(i, b)| (pool, i, b))
    }

    fn copy<R: MemoryReader<Phys> + MemoryWriter<Phys> + ?Sized>(
        mem: &mut R,
        from: u64,
        to: u64,
        len: u64,
    ) -> Result<(), MemoryError<Phys>> {
        let mut buf = [0u8; 256];
        let mut done = 0;
        // `done < len` in the loop, `n <= buf.len()`, and `from`/`to` start ranges of
        // `len` bytes (the original and its bounce slots), so the sums stay below 2^64.
        #[allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)]
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            mem.read(PhysAddr::new(from + done), &mut buf[..n])?;
            mem.write(PhysAddr::new(to + done), &buf[..n])?;
            done += n as u64;
        }
        Ok(())
    }

    /// Before the device reads: copies the original bytes into the bounce buffer if `dma`
    /// was bounced for a to-device or bidirectional transfer. Returns whether it copied.
    ///
    /// # Errors
    /// [`MemoryError`] from the memory.
    pub fn sync_for_device<R: MemoryReader<Phys> + MemoryWriter<Phys> + ?Sized>(
        &self,
        dma: DmaRange,
        mem: &mut R,
    ) -> Result<bool, MemoryError<Phys>> {
        match self.bounced(dma) {
            Some((_, _, b)) if b.dir.device_reads() => {
                // `bounced` found it through `dma - dma_offset` (a checked_sub).
                #[allow(clippy::arithmetic_side_effects)]
                let to = dma.addr().as_u64() - self.dma_offset;
                Self::copy(mem, b.orig.addr().as_u64(), to, b.orig.len())?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// After the device wrote: copies the bounce buffer back to the original bytes if
    /// `dma` was bounced for a from-device or bidirectional transfer. Returns whether it
    /// copied.
    ///
    /// # Errors
    /// [`MemoryError`] from the memory.
    pub fn sync_for_cpu<R: MemoryReader<Phys> + MemoryWriter<Phys> + ?Sized>(
        &self,
        dma: DmaRange,
        mem: &mut R,
    ) -> Result<bool, MemoryError<Phys>> {
        match self.bounced(dma) {
            Some((_, _, b)) if b.dir.device_writes() => {
                // `bounced` found it through `dma - dma_offset` (a checked_sub).
                #[allow(clippy::arithmetic_side_effects)]
                let from = dma.addr().as_u64() - self.dma_offset;
                Self::copy(mem, from, b.orig.addr().as_u64(), b.orig.len())?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

impl DmaMapper for DirectMapper {
    fn granule(&self) -> PageSize {
        self.granule
    }

    fn dma_mask(&self) -> DmaMask {
        self.dma_mask
    }

    /// `false` without a bounce pool: a direct mapping holds nothing (the kernel's
    /// `dma_need_unmap()` for dma-direct without swiotlb).
    #[inline]
    fn need_unmap(&self) -> bool {
        self.bounce.is_some()
    }

    /// `phys + dma_offset` under the mask, without a bounce pool (with one, mappings
    /// above the mask are bounced and need unmapping).
    #[inline]
    fn linear(&self) -> Option<LinearMap> {
        if self.bounce.is_some() {
            None
        } else {
            Some(LinearMap::new(self.dma_offset, self.dma_mask))
        }
    }

    #[inline]
    fn map_phys(
        &self,
        phys: PhysRange,
        dir: DataDirection,
        attrs: Attrs,
    ) -> Result<DmaRange, MapError> {
        // Fast path: `phys + dma_offset` neither wraps nor passes 2^64 and is under the
        // mask (the checks of `to_dma` and `reachable`, on the last byte).
        let a = phys.addr().as_u64();
        if let Some(last) = phys.last().as_u64().checked_add(self.dma_offset) {
            if last <= self.dma_mask.get() {
                // `a + offset <= last` does not wrap either, and `len > 0`.
                #[allow(clippy::arithmetic_side_effects)]
                let first = a + self.dma_offset;
                return Ok(DmaRange::new_unchecked(first, phys.len()));
            }
        }
        self.map_phys_slow(phys, dir, attrs)
    }

    fn unmap_phys(
        &self,
        dma: DmaRange,
        _dir: DataDirection,
        _attrs: Attrs,
    ) -> Result<(), MapError> {
        if let Some((pool, i, _)) = self.bounced(dma) {
            pool.release(i);
            return Ok(());
        }
        let not_mapped = MapError::NotMapped {
            dma: dma.addr().as_u64(),
            len: dma.len(),
        };
        if dma.addr().as_u64() < self.dma_offset || !self.reachable(dma) {
            return Err(not_mapped);
        }
        if let Some(pool) = &self.bounce {
            // An address inside the pool that is not a live bounce: a stale unmap.
            let phys = dma.cast::<crate::addr::Phys>();
            // `dma >= dma_offset` (checked above); subtracting keeps a valid range.
            #[allow(clippy::arithmetic_side_effects)]
            let phys = PhysRange::new_unchecked(phys.addr().as_u64() - self.dma_offset, phys.len());
            if pool.range().overlaps(phys) {
                return Err(not_mapped);
            }
        }
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

    #[test]
    fn offset_mask_and_bounce() {
        let pool = BouncePool::new(PhysAddr::new(0x10_0000), PageSize::SIZE_4K, 4).unwrap();
        let d = DirectMapper::new(0x1000, DmaMask::BITS_32).with_bounce_pool(pool);
        let dir = DataDirection::FromDevice;
        let a = Attrs::empty();
        assert_eq!(
            d.map_phys(PhysRange::new(0x2000, 0x10), dir, a).unwrap(),
            DmaRange::new(0x3000, 0x10)
        );
        let hi = PhysRange::new(0x2_0000_0000, 0x3000);
        let b1 = d.map_phys(hi, dir, a).unwrap();
        assert_eq!(b1, DmaRange::new(0x10_1000, 0x3000));
        // Only one slot left.
        assert_eq!(
            d.map_phys(hi, dir, a),
            Err(MapError::BounceExhausted { len: 0x3000 })
        );
        let mut ram = crate::mem::SparseMemory::<Phys>::default();
        ram.add_zeroed(PhysAddr::new(0x2_0000_0000), 0x3000);
        ram.add(PhysAddr::new(0x10_0000), [7u8; 0x4000].to_vec());
        assert!(d.sync_for_cpu(b1, &mut ram).unwrap());
        let mut buf = [0u8; 4];
        ram.read(PhysAddr::new(0x2_0000_2ffc), &mut buf).unwrap();
        assert_eq!(buf, [7; 4]);
        d.unmap_phys(b1, dir, a).unwrap();
        assert!(d.unmap_phys(b1, dir, a).is_err());
        assert_eq!(d.bounce_pool().unwrap().used_slots(), 0);
        assert!(matches!(
            d.map_phys(PhysRange::new(u64::MAX - 0x10, 0x10), dir, a),
            Err(MapError::AddressOverflow { .. })
        ));
    }
}
