//! [`Checked`]: the kernel's `CONFIG_DMA_API_DEBUG` (`kernel/dma/debug.c`) for any
//! [`DmaMapper`] (`alloc`).
//!
//! It records every live mapping and link, refuses (and records) misuse before it reaches
//! the wrapped mapper, and reports leaks on [`Checked::check_leaks`] and on drop:
//!
//! | misuse | error |
//! |---|---|
//! | unmap of an address never mapped | [`MapError::UnknownUnmap`] |
//! | unmap with another size / direction | [`MapError::SizeMismatch`] / [`MapError::DirectionMismatch`] |
//! | unmap of an address already unmapped | [`MapError::DoubleUnmap`] |
//! | sync of bytes that are not linked | [`MapError::SyncOutOfRange`] |
//! | a link overlapping an earlier link | [`MapError::OverlappingLink`] |
//! | unlink of bytes that are not linked | [`MapError::NotLinked`] |
//! | free with links left | [`MapError::StillLinked`] |
//! | mappings alive at the check / drop | [`MapError::Leaked`] |

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
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;

use super::{
    Attrs, DataDirection, DmaMapper, IovaSpace, Linking, MapError, SpaceState, SyncError, Synced,
};
use crate::addr::{PageSize, PhysAddr};
use crate::mask::DmaMask;
use crate::range::{DmaRange, PhysRange};

/// What [`Checked`] does when it is dropped with live mappings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnLeak {
    /// Panic (unless the thread is already panicking, with `std`). The default: a leak is
    /// a bug, and tests should fail on it.
    Panic,
    /// Print the leak report to standard error (`std`).
    #[cfg(feature = "std")]
    Print,
    /// Only record it.
    Ignore,
}

/// How many recently unmapped addresses are remembered to tell a double unmap from an
/// unknown one.
const UNMAP_HISTORY: usize = 1024;

#[derive(Default)]
struct SpaceTrack {
    /// offset → (len, direction)
    links: BTreeMap<u64, (u64, DataDirection)>,
}

impl SpaceTrack {
    fn overlaps(&self, offset: u64, len: u64) -> bool {
        // Links are disjoint, so the last one starting at or before our last byte is
        // the only candidate. Sums of two u64 values in u128 cannot overflow, and
        // `len > 0` (a range length) keeps `- 1` from underflowing.
        #[allow(clippy::arithmetic_side_effects)]
        let last = (offset as u128 + len as u128 - 1).min(u64::MAX as u128) as u64;
        // Sums of two u64 values in u128 cannot overflow.
        #[allow(clippy::arithmetic_side_effects)]
        self.links
            .range(..=last)
            .next_back()
            .is_some_and(|(&o, &(l, _))| o as u128 + l as u128 > offset as u128)
    }

    /// Whether `[offset, offset + len)` is covered by links without a hole; the
    /// directions found.
    fn covered(&self, offset: u64, len: u64) -> Option<Vec<DataDirection>> {
        // Sums of two u64 values in u128 cannot overflow.
        #[allow(clippy::arithmetic_side_effects)]
        let end = offset as u128 + len as u128;
        let mut pos = offset as u128;
        let mut dirs = Vec::new();
        let start_key = self
            .links
            .range(..=offset)
            .next_back()
            .map(|(&o, _)| o)
            .unwrap_or(offset);
        for (&o, &(l, d)) in self.links.range(start_key..) {
            if pos >= end {
                break;
            }
            // Sums of two u64 values in u128 cannot overflow.
            #[allow(clippy::arithmetic_side_effects)]
            let (lo, le) = (o as u128, o as u128 + l as u128);
            if le <= pos {
                continue;
            }
            if lo > pos {
                return None;
            }
            dirs.push(d);
            pos = le;
        }
        (pos >= end).then_some(dirs)
    }

    /// Removes `[offset, offset + len)` from the links, trimming partial ones.
    fn remove(&mut self, offset: u64, len: u64) {
        // Sums of two u64 values in u128 cannot overflow.
        #[allow(clippy::arithmetic_side_effects)]
        let end = offset as u128 + len as u128;
        let keys: Vec<u64> = self.links.keys().copied().collect();
        for o in keys {
            let Some(&(l, d)) = self.links.get(&o) else {
                continue;
            };
            // Sums of two u64 values in u128 cannot overflow.
            #[allow(clippy::arithmetic_side_effects)]
            let (lo, le) = (o as u128, o as u128 + l as u128);
            if le <= offset as u128 || lo >= end {
                continue;
            }
            self.links.remove(&o);
            if lo < offset as u128 {
                // `lo < offset` (the test).
                #[allow(clippy::arithmetic_side_effects)]
                let head = (offset as u128 - lo) as u64;
                self.links.insert(o, (head, d));
            }
            if le > end {
                // `le > end` (the test).
                #[allow(clippy::arithmetic_side_effects)]
                let tail = (le - end) as u64;
                self.links.insert(end as u64, (tail, d));
            }
        }
    }
}

#[derive(Default)]
struct CheckState {
    singles: BTreeMap<u64, (u64, DataDirection)>,
    unmapped: BTreeMap<u64, u64>,
    spaces: BTreeMap<u64, SpaceTrack>,
    violations: Vec<MapError>,
}

impl CheckState {
    fn report(&mut self, e: MapError) -> MapError {
        self.violations.push(e);
        e
    }
}

/// A DMA-API debugging wrapper around any mapper.
///
/// # Examples
/// ```
/// use physvec::map::{Attrs, Checked, DataDirection, DmaMapper, MapError, SoftIommu};
/// use physvec::PhysRange;
/// let m = Checked::new(SoftIommu::new_4k());
/// let dma = m.map_phys(PhysRange::new(0x1000, 0x200), DataDirection::ToDevice, Attrs::empty())?;
/// let wrong = m.unmap_phys(dma, DataDirection::FromDevice, Attrs::empty());
/// assert!(matches!(wrong, Err(MapError::DirectionMismatch { .. })));
/// m.unmap_phys(dma, DataDirection::ToDevice, Attrs::empty())?;
/// assert_eq!(m.unmap_phys(dma, DataDirection::ToDevice, Attrs::empty()), Err(MapError::DoubleUnmap { dma: dma.addr().as_u64() }));
/// assert_eq!(m.violations().len(), 2);
/// m.check_leaks()?;
/// # Ok::<(), MapError>(())
/// ```
pub struct Checked<M: DmaMapper> {
    inner: M,
    state: RefCell<CheckState>,
    on_leak: OnLeak,
}

impl<M: DmaMapper + fmt::Debug> fmt::Debug for Checked<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state.borrow();
        f.debug_struct("Checked")
            .field("inner", &self.inner)
            .field("live_mappings", &s.singles.len())
            .field("live_spaces", &s.spaces.len())
            .field("violations", &s.violations.len())
            .finish()
    }
}

impl<M: DmaMapper> Checked<M> {
    /// Wraps `inner`; leaks panic on drop ([`OnLeak::Panic`]).
    pub fn new(inner: M) -> Self {
        Self {
            inner,
            state: RefCell::new(CheckState::default()),
            on_leak: OnLeak::Panic,
        }
    }

    /// Sets what happens on drop with live mappings.
    pub fn with_on_leak(mut self, on_leak: OnLeak) -> Self {
        self.on_leak = on_leak;
        self
    }

    /// The wrapped mapper.
    pub fn inner(&self) -> &M {
        &self.inner
    }

    /// Every misuse detected so far, in order.
    pub fn violations(&self) -> Vec<MapError> {
        self.state.borrow().violations.clone()
    }

    /// Live single mappings and reservations.
    pub fn live(&self) -> (usize, usize) {
        let s = self.state.borrow();
        (s.singles.len(), s.spaces.len())
    }

    /// Reports mappings and reservations still alive.
    ///
    /// # Errors
    /// [`MapError::Leaked`] with the counts.
    pub fn check_leaks(&self) -> Result<(), MapError> {
        match self.live() {
            (0, 0) => Ok(()),
            (mappings, spaces) => Err(MapError::Leaked { mappings, spaces }),
        }
    }

    fn space_key<St: SpaceState>(space: &IovaSpace<St>) -> u64 {
        space.addr().as_u64()
    }
}

impl<M: DmaMapper> Drop for Checked<M> {
    fn drop(&mut self) {
        let Err(e) = self.check_leaks() else {
            return;
        };
        match self.on_leak {
            OnLeak::Ignore => {}
            #[cfg(feature = "std")]
            OnLeak::Print => std::eprintln!("{e}"),
            OnLeak::Panic => {
                #[cfg(feature = "std")]
                if std::thread::panicking() {
                    std::eprintln!("{e}");
                    return;
                }
                // Not a bad-input panic: the caller asked for one with `OnLeak::Panic`
                // (the debug checker's loud mode, like CONFIG_DMA_API_DEBUG's WARN).
                #[allow(clippy::panic)]
                {
                    panic!("{e}");
                }
            }
        }
    }
}

impl<M: DmaMapper> DmaMapper for Checked<M> {
    fn granule(&self) -> PageSize {
        self.inner.granule()
    }

    fn dma_mask(&self) -> DmaMask {
        self.inner.dma_mask()
    }

    fn reserve(&self, phys_hint: PhysAddr, size: u64) -> Result<Option<IovaSpace>, MapError> {
        let space = self.inner.reserve(phys_hint, size)?;
        if let Some(s) = &space {
            self.state
                .borrow_mut()
                .spaces
                .insert(Self::space_key(s), SpaceTrack::default());
        }
        Ok(space)
    }

    fn link(
        &self,
        space: &mut IovaSpace<Linking>,
        phys: PhysRange,
        offset: u64,
        dir: DataDirection,
        attrs: Attrs,
    ) -> Result<(), MapError> {
        let key = Self::space_key(space);
        {
            let mut s = self.state.borrow_mut();
            let overlapping = s
                .spaces
                .get(&key)
                .is_some_and(|t| t.overlaps(offset, phys.len()));
            if overlapping {
                return Err(s.report(MapError::OverlappingLink {
                    offset,
                    len: phys.len(),
                }));
            }
        }
        self.inner.link(space, phys, offset, dir, attrs)?;
        if let Some(t) = self.state.borrow_mut().spaces.get_mut(&key) {
            t.links.insert(offset, (phys.len(), dir));
        }
        Ok(())
    }

    fn sync(
        &self,
        space: IovaSpace<Linking>,
        offset: u64,
        size: u64,
    ) -> Result<IovaSpace<Synced>, SyncError> {
        {
            let mut s = self.state.borrow_mut();
            let ok = s
                .spaces
                .get(&Self::space_key(&space))
                .is_some_and(|t| size > 0 && t.covered(offset, size).is_some());
            if !ok {
                let error = s.report(MapError::SyncOutOfRange { offset, len: size });
                return Err(SyncError { space, error });
            }
        }
        self.inner.sync(space, offset, size)
    }

    fn unlink<St: SpaceState>(
        &self,
        space: &mut IovaSpace<St>,
        offset: u64,
        size: u64,
        dir: DataDirection,
        attrs: Attrs,
    ) -> Result<(), MapError> {
        let key = Self::space_key(space);
        {
            let mut s = self.state.borrow_mut();
            let dirs = s.spaces.get(&key).and_then(|t| t.covered(offset, size));
            match dirs {
                None => return Err(s.report(MapError::NotLinked { offset, len: size })),
                Some(d) => {
                    if let Some(&mapped) = d.iter().find(|&&d| d != dir) {
                        // `offset` lies inside links the inner mapper accepted, so
                        // inside the space, which ends at or below 2^64.
                        #[allow(clippy::arithmetic_side_effects)]
                        let dma = space.addr().as_u64() + offset;
                        return Err(s.report(MapError::DirectionMismatch {
                            dma,
                            mapped,
                            unmapped: dir,
                        }));
                    }
                }
            }
        }
        self.inner.unlink(space, offset, size, dir, attrs)?;
        if let Some(t) = self.state.borrow_mut().spaces.get_mut(&key) {
            t.remove(offset, size);
        }
        Ok(())
    }

    fn free<St: SpaceState>(&self, space: IovaSpace<St>) -> Result<(), MapError> {
        let key = Self::space_key(&space);
        let still = self
            .state
            .borrow_mut()
            .spaces
            .remove(&key)
            .map(|t| t.links.values().map(|&(l, _)| l).sum::<u64>());
        let r = self.inner.free(space);
        if let Some(bytes @ 1..) = still {
            self.state
                .borrow_mut()
                .report(MapError::StillLinked { bytes });
        }
        r
    }

    fn destroy<St: SpaceState>(
        &self,
        space: IovaSpace<St>,
        dir: DataDirection,
        attrs: Attrs,
    ) -> Result<(), MapError> {
        let key = Self::space_key(&space);
        {
            let mut s = self.state.borrow_mut();
            let wrong = s.spaces.get(&key).and_then(|t| {
                t.links
                    .iter()
                    .find(|(_, &(_, d))| d != dir)
                    .map(|(&o, &(_, d))| (o, d))
            });
            if let Some((o, mapped)) = wrong {
                // `o` starts a link the inner mapper accepted, inside the space, which
                // ends at or below 2^64.
                #[allow(clippy::arithmetic_side_effects)]
                let dma = space.addr().as_u64() + o;
                s.report(MapError::DirectionMismatch {
                    dma,
                    mapped,
                    unmapped: dir,
                });
            }
            s.spaces.remove(&key);
        }
        self.inner.destroy(space, dir, attrs)
    }

    fn map_phys(
        &self,
        phys: PhysRange,
        dir: DataDirection,
        attrs: Attrs,
    ) -> Result<DmaRange, MapError> {
        let dma = self.inner.map_phys(phys, dir, attrs)?;
        let mut s = self.state.borrow_mut();
        let a = dma.addr().as_u64();
        s.unmapped.remove(&a);
        s.singles.insert(a, (dma.len(), dir));
        Ok(dma)
    }

    fn unmap_phys(&self, dma: DmaRange, dir: DataDirection, attrs: Attrs) -> Result<(), MapError> {
        let a = dma.addr().as_u64();
        {
            let mut s = self.state.borrow_mut();
            match s.singles.get(&a).copied() {
                None if s.unmapped.contains_key(&a) => {
                    return Err(s.report(MapError::DoubleUnmap { dma: a }))
                }
                None => return Err(s.report(MapError::UnknownUnmap { dma: a })),
                Some((len, _)) if len != dma.len() => {
                    return Err(s.report(MapError::SizeMismatch {
                        dma: a,
                        mapped: len,
                        unmapped: dma.len(),
                    }))
                }
                Some((_, mapped)) if mapped != dir => {
                    return Err(s.report(MapError::DirectionMismatch {
                        dma: a,
                        mapped,
                        unmapped: dir,
                    }))
                }
                Some(_) => {}
            }
        }
        self.inner.unmap_phys(dma, dir, attrs)?;
        let mut s = self.state.borrow_mut();
        s.singles.remove(&a);
        if s.unmapped.len() >= UNMAP_HISTORY {
            s.unmapped.pop_first();
        }
        s.unmapped.insert(a, dma.len());
        Ok(())
    }
}
