//! [`VtdIotlb`]: a model of the IOTLB in front of the walker, caching leaf translations
//! the way QEMU 7.2 does, so a missing invalidation shows up as a stale translation.
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

use super::fault::Access;
use super::fault::FaultReason;
use super::inval::Invalidation;
use super::walk::{translate, Fault, Translation, VtdCaps, WalkError};
use crate::addr::Phys;
use crate::map::IoPerm;
use crate::mem::MemoryReader;

/// An IOTLB model: leaf translations keyed by (source id, leaf-aligned IOVA, leaf size)
/// and tagged with the domain id read at walk time. Faults are not cached (no negative
/// caching); invalidations evict what they cover. A hit whose cached permissions lack
/// the access fails without a walk and without a recorded fault, as in QEMU 7.2.
///
/// ```
/// use physvec::map::vtd::{Access, Invalidation, PageList, VtdCaps, VtdIotlb, VtdTables, VtdConfig};
/// use physvec::map::IoPerm;
/// use physvec::mem::SparseMemory;
/// let mut ram = SparseMemory::default();
/// ram.add_zeroed(physvec::PhysAddr::new(0x10_0000), 0x10_0000);
/// let pages = PageList::new((0x10_0000..0x20_0000).step_by(0x1000));
/// let mut t = VtdTables::new(ram, pages, VtdConfig::new(48, 8, 1))?;
/// let (root, caps) = (t.root_table(), VtdCaps::qemu(48));
/// t.map(0x5000, 0xa000, 0x1000, IoPerm::READ)?;
/// let mut tlb = VtdIotlb::new();
/// assert_eq!(tlb.translate(t.memory(), root, caps, 8, 0x5000, Access::Read).unwrap().phys, 0xa000);
/// t.unmap(0x5000, 0x1000)?;
/// // Without an invalidation the device still reaches the old page.
/// assert_eq!(tlb.translate(t.memory(), root, caps, 8, 0x5000, Access::Read).unwrap().phys, 0xa000);
/// tlb.apply(&Invalidation::page(1, 0x5000, 0x1000, 18));
/// assert!(tlb.translate(t.memory(), root, caps, 8, 0x5000, Access::Read).is_err());
/// # Ok::<(), physvec::map::MapError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct VtdIotlb {
    /// (sid, leaf base IOVA, leaf size) → translation of the leaf base.
    entries: BTreeMap<(u16, u64, u64), Translation>,
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that walked the tables.
    pub misses: u64,
}

const SIZES: [u64; 3] = [1 << 12, 1 << 21, 1 << 30];

impl VtdIotlb {
    /// An empty IOTLB.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cached entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What the device sees at `iova`: a cached leaf that grants `access`, else a walk
    /// (see [`translate`]) whose leaf is cached.
    ///
    /// # Errors
    /// As [`translate`].
    pub fn translate<R: MemoryReader<Phys> + ?Sized>(
        &mut self,
        mem: &R,
        root_table: u64,
        caps: VtdCaps,
        source_id: u16,
        iova: u64,
        access: Access,
    ) -> Result<Translation, WalkError> {
        let need = match access {
            Access::Read => IoPerm::READ,
            Access::Write => IoPerm::WRITE,
        };
        for size in SIZES {
            let mask = size.wrapping_sub(1);
            if let Some(t) = self.entries.get(&(source_id, iova & !mask, size)) {
                self.hits = self.hits.saturating_add(1);
                if !t.perm.contains(need) {
                    // As QEMU 7.2: a hit whose cached access flags lack the access fails
                    // without a walk, so no fault is recorded.
                    return Err(WalkError::Fault(Fault {
                        reason: match access {
                            Access::Read => FaultReason::ReadNotPermitted,
                            Access::Write => FaultReason::WriteNotPermitted,
                        },
                        recorded: false,
                        level: 0,
                    }));
                }
                return Ok(Translation {
                    phys: t.phys | (iova & mask),
                    ..*t
                });
            }
        }
        self.misses = self.misses.saturating_add(1);
        let t = translate(mem, root_table, caps, source_id, iova, access)?;
        if !t.pass_through {
            let mask = t.page_size.wrapping_sub(1);
            self.entries.insert(
                (source_id, iova & !mask, t.page_size),
                Translation {
                    phys: t.phys & !mask,
                    ..t
                },
            );
        }
        Ok(t)
    }

    /// Applies an invalidation: global and domain-selective ones drop whole sets,
    /// page-selective ones every leaf overlapping `2^am` pages from `addr` in the domain.
    /// Context-cache invalidations drop nothing here (the model does not cache context
    /// entries).
    pub fn apply(&mut self, inv: &Invalidation) {
        match *inv {
            Invalidation::IotlbGlobal => self.entries.clear(),
            Invalidation::IotlbDomain { did } => self.entries.retain(|_, t| t.domain_id != did),
            Invalidation::IotlbPage { did, addr, am } => {
                let len = 1u64
                    .checked_shl(u32::from(am).saturating_add(12))
                    .unwrap_or(u64::MAX);
                let first = addr & !len.wrapping_sub(1);
                let last = first.saturating_add(len.wrapping_sub(1));
                self.entries.retain(|&(_, base, size), t| {
                    let end = base.saturating_add(size.wrapping_sub(1));
                    !(t.domain_id == did && base <= last && end >= first)
                });
            }
            Invalidation::ContextGlobal
            | Invalidation::ContextDomain { .. }
            | Invalidation::ContextDevice { .. } => {}
        }
    }
}
