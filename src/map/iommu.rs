//! The software IOMMU (`alloc`): a multi-level radix I/O page table ([`IoPageTable`]),
//! an IOVA allocator over an aperture ([`IovaAllocator`]), a small IOTLB model, and the
//! [`SoftIommu`] mapper that combines them like `drivers/iommu/dma-iommu.c`.
//!
//! The page table follows the ARM LPAE / x86 layout: a node is one granule of 8-byte
//! entries (`granule / 8` entries: 512 for 4 KiB), levels are added until the DMA mask's
//! bits are covered, and leaves may sit at level 0 (one granule), 1 (2 MiB with 4 KiB
//! granules) or 2 (1 GiB) when the IOVA, the physical address and the length allow.
//! Empty nodes are freed on unmap, so the table never grows past what is mapped.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;

use super::{
    Attrs, DataDirection, DmaMapper, IovaSpace, Linking, MapError, MapperId, SpaceState, SyncError,
    Synced,
};
use crate::addr::{DmaAddr, PageSize, PhysAddr};
use crate::range::{DmaRange, PhysRange};

/// Permissions of an I/O page-table leaf (`IOMMU_READ`, `IOMMU_WRITE`, `IOMMU_MMIO`).
///
/// ```
/// use physvec::map::{Attrs, DataDirection, IoPerm};
/// let p = IoPerm::for_transfer(DataDirection::ToDevice, Attrs::empty());
/// assert!(p.contains(IoPerm::READ) && !p.contains(IoPerm::WRITE));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct IoPerm(u8);

impl IoPerm {
    /// The device may read (DMA to the device).
    pub const READ: IoPerm = IoPerm(1);
    /// The device may write (DMA from the device).
    pub const WRITE: IoPerm = IoPerm(2);
    /// Device memory (P2P through a host bridge): uncached.
    pub const MMIO: IoPerm = IoPerm(4);

    /// The permissions a transfer needs.
    pub const fn for_transfer(dir: DataDirection, attrs: Attrs) -> Self {
        let mut bits = 0;
        if dir.device_reads() {
            bits |= 1;
        }
        if dir.device_writes() {
            bits |= 2;
        }
        if attrs.contains(Attrs::MMIO) {
            bits |= 4;
        }
        IoPerm(bits)
    }

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: IoPerm) -> bool {
        self.0 & other.0 == other.0
    }

    /// Raw bits (`READ = 1`, `WRITE = 2`, `MMIO = 4`).
    pub const fn bits(self) -> u8 {
        self.0
    }
}

impl fmt::Debug for IoPerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = if self.contains(IoPerm::READ) {
            "r"
        } else {
            "-"
        };
        let w = if self.contains(IoPerm::WRITE) {
            "w"
        } else {
            "-"
        };
        let m = if self.contains(IoPerm::MMIO) {
            "m"
        } else {
            "-"
        };
        write!(f, "IoPerm({r}{w}{m})")
    }
}

// ---------------------------------------------------------------------------------------
// I/O page table

enum Pte {
    Empty,
    Table(Box<Table>),
    Leaf { phys: u64, perm: IoPerm },
}

struct Table {
    entries: Box<[Pte]>,
    used: usize,
}

impl Table {
    fn new(entries: usize) -> Self {
        Table {
            entries: (0..entries).map(|_| Pte::Empty).collect(),
            used: 0,
        }
    }
}

/// Largest leaf level (0 = granule, 1 = 2 MiB, 2 = 1 GiB for 4 KiB granules).
const MAX_LEAF_LEVEL: u32 = 2;

#[derive(Clone, Copy)]
struct Geometry {
    gshift: u32,
    bits: u32,
    levels: u32,
    max_leaf: u32,
}

impl Geometry {
    fn block(&self, level: u32) -> u128 {
        1u128 << (self.gshift + level * self.bits)
    }
    fn index(&self, level: u32, base: u128, addr: u128) -> usize {
        // A shift, not `/ self.block(level)`: a u128 division is a libcall.
        ((addr - base) >> (self.gshift + level * self.bits)) as usize
    }
}

#[derive(Default)]
struct Counters {
    mapped: u128,
    tables: usize,
    leaves: [u64; 3],
}

/// A multi-level radix I/O page table: IOVA granule → physical granule, with 2 MiB /
/// 1 GiB (for 4 KiB granules) leaves where size and alignment allow.
///
/// Usable on its own, for example as the shadow page table of a VMM that emulates an
/// IOMMU for its guest: [`IoPageTable::map`] / [`IoPageTable::unmap`] what the guest
/// programs, [`IoPageTable::translate`] every device access.
///
/// # Invariants
/// Every mapped IOVA is below `2^va_bits`; each node holds `granule / 8` entries and
/// counts its used entries; a node with no used entry is freed; an IOVA is mapped at most
/// once.
///
/// # Examples
/// ```
/// use physvec::map::{IoPageTable, IoPerm};
/// use physvec::{DmaAddr, PageSize, PhysAddr};
/// let mut pt = IoPageTable::new(PageSize::SIZE_4K, 48, true)?;
/// pt.map(DmaAddr::new(0x4000_0000), PhysAddr::new(0x8020_0000), 0x40_0000, IoPerm::READ)?;
/// assert_eq!(pt.leaf_counts(), [0, 2, 0]); // two 2 MiB leaves
/// assert_eq!(pt.translate(DmaAddr::new(0x4012_3456)), Some(PhysAddr::new(0x8032_3456)));
/// pt.unmap(DmaAddr::new(0x4000_1000), 0x1000)?; // splits one 2 MiB leaf
/// assert_eq!(pt.translate(DmaAddr::new(0x4000_1000)), None);
/// assert_eq!(pt.leaf_counts(), [511, 1, 0]);
/// # Ok::<(), physvec::map::MapError>(())
/// ```
pub struct IoPageTable {
    geo: Geometry,
    va_bits: u32,
    root: Table,
    counters: Counters,
}

impl fmt::Debug for IoPageTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IoPageTable")
            .field("granule", &self.granule())
            .field("levels", &self.geo.levels)
            .field("va_bits", &self.va_bits)
            .field("mapped_bytes", &self.mapped_bytes())
            .field("tables", &self.counters.tables)
            .field("leaves", &self.counters.leaves)
            .finish()
    }
}

impl IoPageTable {
    /// An empty table for IOVAs below `2^va_bits`.
    ///
    /// # Errors
    /// [`MapError::InvalidGranule`] unless the granule is 4 KiB, 16 KiB or 64 KiB;
    /// [`MapError::InvalidConfig`] when `va_bits` is not in `granule bits + 1 ..= 64`.
    pub fn new(granule: PageSize, va_bits: u32, large_leaves: bool) -> Result<Self, MapError> {
        let gshift = granule.shift();
        if !matches!(gshift, 12 | 14 | 16) {
            return Err(MapError::InvalidGranule {
                granule: granule.get(),
            });
        }
        if va_bits <= gshift || va_bits > 64 {
            return Err(MapError::InvalidConfig {
                what: "I/O virtual address bits must exceed the granule bits and be at most 64",
            });
        }
        let bits = gshift - 3;
        let levels = (va_bits - gshift).div_ceil(bits);
        let max_leaf = if large_leaves {
            MAX_LEAF_LEVEL.min(levels - 1)
        } else {
            0
        };
        Ok(IoPageTable {
            geo: Geometry {
                gshift,
                bits,
                levels,
                max_leaf,
            },
            va_bits,
            root: Table::new(1 << bits),
            counters: Counters::default(),
        })
    }

    /// The granule (smallest leaf) in bytes.
    pub fn granule(&self) -> PageSize {
        PageSize::from_shift(self.geo.gshift).unwrap_or(PageSize::SIZE_4K)
    }

    /// Number of levels of the radix tree.
    pub fn levels(&self) -> u32 {
        self.geo.levels
    }

    /// IOVA bits covered.
    pub fn va_bits(&self) -> u32 {
        self.va_bits
    }

    /// Bytes currently mapped (saturating at `u64::MAX`).
    pub fn mapped_bytes(&self) -> u64 {
        self.counters.mapped.min(u64::MAX as u128) as u64
    }

    /// Page-table nodes allocated below the root.
    pub fn tables(&self) -> usize {
        self.counters.tables
    }

    /// Live leaves per level: `[granule, level 1 (2 MiB), level 2 (1 GiB)]`.
    pub fn leaf_counts(&self) -> [u64; 3] {
        self.counters.leaves
    }

    fn check(&self, iova: u64, phys: Option<u64>, len: u64) -> Result<(u128, u128), MapError> {
        let g = self.granule();
        for v in [Some(iova), phys, Some(len)].into_iter().flatten() {
            if v & g.mask() != 0 {
                return Err(MapError::Misaligned {
                    value: v,
                    granule: g.get(),
                });
            }
        }
        if len == 0 {
            return Err(MapError::Empty);
        }
        let start = iova as u128;
        let end = start + len as u128;
        if end > 1u128 << self.va_bits {
            return Err(MapError::AboveDmaMask {
                dma: iova,
                len,
                mask: (((1u128 << self.va_bits) - 1) as u64),
            });
        }
        if let Some(p) = phys {
            if p as u128 + len as u128 > 1u128 << 64 {
                return Err(MapError::AddressOverflow { addr: p, len });
            }
        }
        Ok((start, end))
    }

    /// Maps `[iova, iova + len)` to `[phys, phys + len)` with `perm`, using the largest
    /// leaves alignment allows. All three values must be granule multiples.
    ///
    /// # Errors
    /// [`MapError::Misaligned`], [`MapError::Empty`], [`MapError::AboveDmaMask`] (beyond
    /// `va_bits`), [`MapError::AddressOverflow`], [`MapError::AlreadyMapped`] (nothing is
    /// changed on error).
    pub fn map(
        &mut self,
        iova: DmaAddr,
        phys: PhysAddr,
        len: u64,
        perm: IoPerm,
    ) -> Result<(), MapError> {
        let (start, end) = self.check(iova.as_u64(), Some(phys.as_u64()), len)?;
        let top = self.geo.levels - 1;
        if self.in_one_leaf_table(start, end) {
            // Fast path: walk down to the leaf table once (no recursion; IOVAs are below
            // 2^va_bits <= 2^64, so u64 index arithmetic), then fill consecutive slots.
            let geo = self.geo;
            let gshift = geo.gshift;
            let s = iova.as_u64();
            let counters = &mut self.counters;
            let mut t = &mut self.root;
            let mut level = top;
            while level > 0 {
                let idx = ((s >> (gshift + level * geo.bits)) & ((1u64 << geo.bits) - 1)) as usize;
                if matches!(t.entries[idx], Pte::Empty) {
                    // Nothing is mapped below a missing table.
                    t.entries[idx] = Pte::Table(Box::new(Table::new(1 << geo.bits)));
                    t.used += 1;
                    counters.tables += 1;
                }
                t = match &mut t.entries[idx] {
                    Pte::Table(child) => child,
                    // A large leaf covers `iova`.
                    _ => return Err(MapError::AlreadyMapped { iova: s }),
                };
                level -= 1;
            }
            let i0 = ((s >> gshift) & ((1u64 << geo.bits) - 1)) as usize;
            let n = (len >> gshift) as usize;
            let slots = &mut t.entries[i0..i0 + n];
            if let Some(k) = slots.iter().position(|e| !matches!(e, Pte::Empty)) {
                return Err(MapError::AlreadyMapped {
                    iova: s + ((k as u64) << gshift),
                });
            }
            let mut p = phys.as_u64();
            for e in slots {
                // The slot is `Empty`: nothing to drop (skips the drop-glue call).
                core::mem::forget(core::mem::replace(e, Pte::Leaf { phys: p, perm }));
                // Wraps only past the last slot of a range ending at 2^64.
                p = p.wrapping_add(1 << gshift);
            }
            t.used += n;
            counters.leaves[0] += n as u64;
            counters.mapped += len as u128;
            return Ok(());
        }
        if let Some(a) = first_mapped(&self.root, &self.geo, top, 0, start, end) {
            return Err(MapError::AlreadyMapped { iova: a as u64 });
        }
        map_rec(
            &mut self.root,
            &self.geo,
            &mut self.counters,
            top,
            0,
            start,
            end,
            phys.as_u64() as u128,
            perm,
        );
        Ok(())
    }

    /// Unmaps `[iova, iova + len)`; every granule of it must be mapped. Larger leaves
    /// that straddle the range are split first.
    ///
    /// # Errors
    /// [`MapError::Misaligned`], [`MapError::Empty`], [`MapError::AboveDmaMask`],
    /// [`MapError::NotMapped`] naming the first unmapped IOVA (nothing is changed then).
    pub fn unmap(&mut self, iova: DmaAddr, len: u64) -> Result<(), MapError> {
        let (start, end) = self.check(iova.as_u64(), None, len)?;
        let top = self.geo.levels - 1;
        let not_mapped = |a: u128| MapError::NotMapped {
            dma: a as u64,
            len: 1 << self.geo.gshift,
        };
        if self.in_one_leaf_table(start, end) {
            // Fast path: walk to the leaf table once, clear consecutive slots (a large
            // leaf, which must be split, takes the general path).
            let geo = self.geo;
            let gshift = geo.gshift;
            let mut clear = |lt: &mut Table, base0: u128, c: &mut Counters| {
                let i0 = ((start - base0) >> gshift) as usize;
                let n = (len >> gshift) as usize;
                let slots = &mut lt.entries[i0..i0 + n];
                if let Some(k) = slots.iter().position(|e| matches!(e, Pte::Empty)) {
                    return Err(start + ((k as u128) << gshift));
                }
                for e in slots {
                    // Every slot is a leaf, which owns nothing: no drop-glue call.
                    core::mem::forget(core::mem::replace(e, Pte::Empty));
                }
                lt.used -= n;
                c.leaves[0] -= n as u64;
                c.mapped -= len as u128;
                Ok(())
            };
            match with_leaf_table(
                &mut self.root,
                &geo,
                &mut self.counters,
                top,
                0,
                start,
                false,
                &mut clear,
            ) {
                Walk::Done(Ok(())) => return Ok(()),
                Walk::Done(Err(a)) => return Err(not_mapped(a)),
                Walk::Hole => return Err(not_mapped(start)),
                Walk::Large => {}
            }
        }
        if let Some(a) = first_unmapped(&self.root, &self.geo, top, 0, start, end) {
            return Err(not_mapped(a));
        }
        unmap_rec(
            &mut self.root,
            &self.geo,
            &mut self.counters,
            top,
            0,
            start,
            end,
        );
        Ok(())
    }

    /// Unmaps whatever is mapped in `[iova, iova + len)` and returns the bytes unmapped.
    ///
    /// # Errors
    /// As [`IoPageTable::unmap`] except that holes are skipped.
    pub fn unmap_present(&mut self, iova: DmaAddr, len: u64) -> Result<u64, MapError> {
        let (start, end) = self.check(iova.as_u64(), None, len)?;
        let before = self.counters.mapped;
        let top = self.geo.levels - 1;
        let geo = self.geo;
        let span_shift = geo.gshift + geo.bits;
        let tables = ((end - 1) >> span_shift) - (start >> span_shift) + 1;
        if geo.levels > 1 && tables <= 8 {
            // Fast path for a few leaf tables (an I/O's reservation): one walk per leaf
            // table, clearing its slots; holes are skipped, large leaves take the
            // general path.
            let gshift = geo.gshift;
            let mut s = start;
            while s < end {
                let e = end.min(((s >> span_shift) + 1) << span_shift);
                let mut clear = |lt: &mut Table, base0: u128, c: &mut Counters| {
                    let i0 = ((s - base0) >> gshift) as usize;
                    let i1 = ((e - base0) >> gshift) as usize;
                    let mut n = 0usize;
                    for slot in &mut lt.entries[i0..i1] {
                        if matches!(slot, Pte::Leaf { .. }) {
                            // A leaf owns nothing: forgetting it skips the drop-glue call.
                            core::mem::forget(core::mem::replace(slot, Pte::Empty));
                            n += 1;
                        }
                    }
                    lt.used -= n;
                    c.leaves[0] -= n as u64;
                    c.mapped -= (n as u128) << gshift;
                };
                let walk = with_leaf_table(
                    &mut self.root,
                    &geo,
                    &mut self.counters,
                    top,
                    0,
                    s,
                    false,
                    &mut clear,
                );
                if let Walk::Large = walk {
                    unmap_rec(&mut self.root, &geo, &mut self.counters, top, 0, s, e);
                }
                s = e;
            }
        } else {
            unmap_rec(&mut self.root, &geo, &mut self.counters, top, 0, start, end);
        }
        Ok((before - self.counters.mapped) as u64)
    }

    /// Whether `[start, end)` lies inside one leaf (level-0) table's span and is smaller
    /// than a level-1 block, so that it maps with granule leaves only.
    fn in_one_leaf_table(&self, start: u128, end: u128) -> bool {
        let span_shift = self.geo.gshift + self.geo.bits;
        self.geo.levels > 1
            && start >> span_shift == (end - 1) >> span_shift
            && end - start < 1u128 << span_shift
    }

    /// The leaf covering `iova`: the physical address of that byte, its permissions and
    /// the leaf size.
    pub fn lookup(&self, iova: DmaAddr) -> Option<(PhysAddr, IoPerm, PageSize)> {
        let a = iova.as_u64() as u128;
        if a >= 1u128 << self.va_bits {
            return None;
        }
        let mut t = &self.root;
        let mut level = self.geo.levels - 1;
        let mut base = 0u128;
        loop {
            let bs = self.geo.block(level);
            let idx = self.geo.index(level, base, a);
            match &t.entries[idx] {
                Pte::Empty => return None,
                Pte::Leaf { phys, perm } => {
                    let off = (a - base) % bs;
                    let size = PageSize::new(bs as u64).ok()?;
                    return Some((PhysAddr::new(*phys + off as u64), *perm, size));
                }
                Pte::Table(child) => {
                    base += idx as u128 * bs;
                    t = child;
                    level = level.checked_sub(1)?;
                }
            }
        }
    }

    /// The physical address `iova` translates to, if mapped.
    pub fn translate(&self, iova: DmaAddr) -> Option<PhysAddr> {
        self.lookup(iova).map(|(p, _, _)| p)
    }
}

fn span(
    geo: &Geometry,
    level: u32,
    base: u128,
    s: u128,
    e: u128,
) -> core::ops::RangeInclusive<usize> {
    geo.index(level, base, s)..=geo.index(level, base, e - 1)
}

fn first_mapped(
    t: &Table,
    geo: &Geometry,
    level: u32,
    base: u128,
    s: u128,
    e: u128,
) -> Option<u128> {
    let bs = geo.block(level);
    for idx in span(geo, level, base, s, e) {
        let eb = base + idx as u128 * bs;
        match &t.entries[idx] {
            Pte::Empty => {}
            Pte::Leaf { .. } => return Some(s.max(eb)),
            Pte::Table(c) => {
                if let Some(a) = first_mapped(c, geo, level - 1, eb, s.max(eb), e.min(eb + bs)) {
                    return Some(a);
                }
            }
        }
    }
    None
}

fn first_unmapped(
    t: &Table,
    geo: &Geometry,
    level: u32,
    base: u128,
    s: u128,
    e: u128,
) -> Option<u128> {
    let bs = geo.block(level);
    for idx in span(geo, level, base, s, e) {
        let eb = base + idx as u128 * bs;
        match &t.entries[idx] {
            Pte::Empty => return Some(s.max(eb)),
            Pte::Leaf { .. } => {}
            Pte::Table(c) => {
                if let Some(a) = first_unmapped(c, geo, level - 1, eb, s.max(eb), e.min(eb + bs)) {
                    return Some(a);
                }
            }
        }
    }
    None
}

/// What [`with_leaf_table`] found on the way down.
enum Walk<R> {
    /// Reached the leaf table; the callback's result.
    Done(R),
    /// An empty entry above the leaf table (and `create` was false).
    Hole,
    /// A large leaf above the leaf table covers the address.
    Large,
}

/// Walks from `t` (at `level`, covering IOVAs from `base`) to the level-0 table holding
/// IOVA `s`, creating missing tables when `create`, runs `f(leaf_table, its_base,
/// counters)` there, and on the way back frees tables left without a used entry (as
/// `unmap_rec` does). One index per level: no per-entry u128 arithmetic.
#[allow(clippy::too_many_arguments)]
fn with_leaf_table<R, F>(
    t: &mut Table,
    geo: &Geometry,
    c: &mut Counters,
    level: u32,
    base: u128,
    s: u128,
    create: bool,
    f: &mut F,
) -> Walk<R>
where
    F: FnMut(&mut Table, u128, &mut Counters) -> R,
{
    if level == 0 {
        return Walk::Done(f(t, base, c));
    }
    let idx = geo.index(level, base, s);
    let entry = &mut t.entries[idx];
    match entry {
        Pte::Leaf { .. } => return Walk::Large,
        Pte::Empty if !create => return Walk::Hole,
        Pte::Empty => {
            *entry = Pte::Table(Box::new(Table::new(1 << geo.bits)));
            t.used += 1;
            c.tables += 1;
        }
        Pte::Table(_) => {}
    }
    let Pte::Table(child) = entry else {
        return Walk::Hole;
    };
    let child_base = base + ((idx as u128) << (geo.gshift + level * geo.bits));
    let r = with_leaf_table(child, geo, c, level - 1, child_base, s, create, f);
    if child.used == 0 {
        *entry = Pte::Empty;
        t.used -= 1;
        c.tables -= 1;
    }
    r
}

#[allow(clippy::too_many_arguments)]
fn map_rec(
    t: &mut Table,
    geo: &Geometry,
    c: &mut Counters,
    level: u32,
    base: u128,
    s: u128,
    e: u128,
    phys: u128,
    perm: IoPerm,
) {
    let bs = geo.block(level);
    for idx in span(geo, level, base, s, e) {
        let eb = base + idx as u128 * bs;
        let (ss, ee) = (s.max(eb), e.min(eb + bs));
        let p = phys + (ss - s);
        let entry = &mut t.entries[idx];
        if level <= geo.max_leaf && ss == eb && ee == eb + bs && p & (bs - 1) == 0 {
            debug_assert!(matches!(entry, Pte::Empty));
            *entry = Pte::Leaf {
                phys: p as u64,
                perm,
            };
            t.used += 1;
            c.leaves[level as usize] += 1;
            c.mapped += bs;
            continue;
        }
        if matches!(entry, Pte::Empty) {
            *entry = Pte::Table(Box::new(Table::new(1 << geo.bits)));
            t.used += 1;
            c.tables += 1;
        }
        if let Pte::Table(child) = entry {
            map_rec(child, geo, c, level - 1, eb, ss, ee, p, perm);
        }
    }
}

fn unmap_rec(
    t: &mut Table,
    geo: &Geometry,
    c: &mut Counters,
    level: u32,
    base: u128,
    s: u128,
    e: u128,
) {
    let bs = geo.block(level);
    for idx in span(geo, level, base, s, e) {
        let eb = base + idx as u128 * bs;
        let (ss, ee) = (s.max(eb), e.min(eb + bs));
        let entry = &mut t.entries[idx];
        match entry {
            Pte::Empty => continue,
            Pte::Leaf { .. } if ss == eb && ee == eb + bs => {
                *entry = Pte::Empty;
                t.used -= 1;
                c.leaves[level as usize] -= 1;
                c.mapped -= bs;
                continue;
            }
            Pte::Leaf { phys, perm } => {
                // Split a large leaf into next-level leaves, then unmap part of them.
                let (phys, perm) = (*phys as u128, *perm);
                let cbs = geo.block(level - 1);
                let n = 1usize << geo.bits;
                let mut child = Table::new(n);
                for (k, slot) in child.entries.iter_mut().enumerate() {
                    *slot = Pte::Leaf {
                        phys: (phys + k as u128 * cbs) as u64,
                        perm,
                    };
                }
                child.used = n;
                c.leaves[level as usize] -= 1;
                c.leaves[level as usize - 1] += n as u64;
                c.tables += 1;
                *entry = Pte::Table(Box::new(child));
            }
            Pte::Table(_) => {}
        }
        if let Pte::Table(child) = entry {
            unmap_rec(child, geo, c, level - 1, eb, ss, ee);
            if child.used == 0 {
                *entry = Pte::Empty;
                t.used -= 1;
                c.tables -= 1;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// IOVA allocator

/// First-fit IOVA allocator over `[first, last]`, granule-aligned, with coalescing frees:
/// freed space is reused, so repeated map/unmap never grows the address use.
///
/// # Invariants
/// Free extents are disjoint, non-adjacent (coalesced), granule-aligned, inside the
/// aperture; `free_bytes` is their total.
///
/// ```
/// use physvec::map::IovaAllocator;
/// use physvec::PageSize;
/// let mut a = IovaAllocator::new(PageSize::SIZE_4K, 0x1000, 0xf_ffff)?;
/// let x = a.alloc(0x2000, PageSize::SIZE_4K).unwrap();
/// let y = a.alloc(0x1000, PageSize::SIZE_4K).unwrap();
/// assert_eq!((x, y), (0x1000, 0x3000));
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
    pub fn new(granule: PageSize, first: u64, last: u64) -> Result<Self, MapError> {
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
    pub fn first(&self) -> u64 {
        self.first
    }

    /// Last usable IOVA (inclusive).
    pub fn last(&self) -> u64 {
        self.last
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
    pub fn alloc(&mut self, size: u64, align: PageSize) -> Option<u64> {
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
        Some(a)
    }

    /// Returns `[start, start + size)` to the free space, merging neighbours.
    ///
    /// # Errors
    /// [`MapError::NotMapped`] when the extent is outside the aperture, misaligned, or
    /// overlaps free space (a double free).
    pub fn free(&mut self, start: u64, size: u64) -> Result<(), MapError> {
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

// ---------------------------------------------------------------------------------------
// IOTLB

const IOTLB_SLOTS: usize = 64;

/// A direct-mapped IOTLB of 64 granule translations. `translate` fills it, invalidations
/// clear it; a missing invalidation would show up as a stale translation.
struct Iotlb {
    slots: [Option<(u64, u64)>; IOTLB_SLOTS],
}

impl Iotlb {
    fn slot(page: u64) -> usize {
        (page % IOTLB_SLOTS as u64) as usize
    }
    fn invalidate(&mut self, gshift: u32, iova: u64, len: u64) -> bool {
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

// ---------------------------------------------------------------------------------------
// SoftIommu

/// Configuration of a [`SoftIommu`].
///
/// ```
/// use physvec::map::IommuConfig;
/// use physvec::PageSize;
/// let c = IommuConfig::new(PageSize::SIZE_4K).with_dma_mask(u32::MAX as u64);
/// assert_eq!(c.aperture, (0x1000, 0xffff_ffff));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IommuConfig {
    /// I/O page size: 4 KiB, 16 KiB or 64 KiB.
    pub granule: PageSize,
    /// Highest IOVA the device can emit.
    pub dma_mask: u64,
    /// `[first, last]` IOVAs the allocator hands out (inclusive; clipped to the mask).
    /// IOVA 0 is kept out by default, as the kernel's IOVA domains do.
    pub aperture: (u64, u64),
    /// Use 2 MiB / 1 GiB leaves where alignment allows.
    pub large_leaves: bool,
}

impl IommuConfig {
    /// Granule `granule`, a 48-bit DMA mask, aperture `[granule, mask]`, large leaves on.
    pub fn new(granule: PageSize) -> Self {
        IommuConfig {
            granule,
            dma_mask: (1 << 48) - 1,
            aperture: (granule.get(), (1 << 48) - 1),
            large_leaves: true,
        }
    }

    /// Sets the DMA mask and clips the aperture's end to it.
    pub fn with_dma_mask(mut self, mask: u64) -> Self {
        self.dma_mask = mask;
        self.aperture.1 = self.aperture.1.min(mask);
        self
    }

    /// Sets the aperture `[first, last]` (inclusive).
    pub fn with_aperture(mut self, first: u64, last: u64) -> Self {
        self.aperture = (first, last);
        self
    }

    /// Turns large (2 MiB / 1 GiB) leaves on or off.
    pub fn with_large_leaves(mut self, on: bool) -> Self {
        self.large_leaves = on;
        self
    }
}

impl Default for IommuConfig {
    fn default() -> Self {
        Self::new(PageSize::SIZE_4K)
    }
}

/// Counters of a [`SoftIommu`] (a snapshot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IommuStats {
    /// Page-table map operations (one per link or `map_phys`).
    pub maps: u64,
    /// Page-table unmap operations.
    pub unmaps: u64,
    /// IOTLB syncs after mapping (`iotlb_sync_map`: one per `sync`, one per `map_phys`).
    pub iotlb_syncs: u64,
    /// IOTLB invalidations (one per unlink / unmap / destroy).
    pub iotlb_invalidations: u64,
    /// Of these, full flushes (range too large to invalidate page by page).
    pub iotlb_flushes: u64,
    /// `translate` calls answered by the IOTLB.
    pub iotlb_hits: u64,
    /// `translate` calls that walked the page table.
    pub iotlb_misses: u64,
    /// Bytes mapped in the page table.
    pub mapped_bytes: u64,
    /// Page-table nodes below the root.
    pub tables: usize,
    /// Live leaves `[granule, 2 MiB, 1 GiB]` (for 4 KiB granules).
    pub leaves: [u64; 3],
    /// Live IOVA allocations (reservations plus `map_phys` mappings).
    pub allocations: usize,
    /// Free IOVA bytes in the aperture.
    pub free_iova_bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AllocKind {
    Single { pad: u64, size: u64 },
}

struct Inner {
    pt: IoPageTable,
    alloc: IovaAllocator,
    /// Live `map_phys` mappings by IOVA base.
    allocs: BTreeMap<u64, (u64, AllocKind)>,
    /// Live reservations `(base, len)`, a slab indexed by the slot `reserve` records in
    /// the `IovaSpace` (`None`: a free slot, listed in `free_slots`), so that the
    /// ownership check of every call is one indexed compare and a reservation costs no
    /// map insert/remove.
    spaces: Vec<Option<(u64, u64)>>,
    free_slots: Vec<u32>,
    live_spaces: usize,
    tlb: Iotlb,
    stats: IommuStats,
}

/// A software IOMMU: the two-step IOVA API over a real radix I/O page table, an IOVA
/// allocator and a counted IOTLB.
///
/// It uses a `RefCell` inside (the trait takes `&self`), so it is `!Sync`: give each
/// queue its own, or wrap it in the caller's lock. A borrow conflict cannot happen
/// through the public API (no method calls back into user code while borrowed).
///
/// # Examples
/// ```
/// use physvec::map::{self, DataDirection, SoftIommu};
/// use physvec::{PhysAddr, PhysRange};
/// let iommu = SoftIommu::new_4k();
/// let phys = [PhysRange::new(0x7000, 0x1000), PhysRange::new(0x2000, 0x1000)];
/// let m = map::map(&iommu, &phys, DataDirection::Bidirectional)?;
/// let dma = m.dma()[0];
/// assert_eq!(dma.len(), 0x2000);
/// assert_eq!(iommu.translate(dma.addr()), Some(PhysAddr::new(0x7000)));
/// assert_eq!(iommu.translate(dma.addr().checked_add(0x1000)?), Some(PhysAddr::new(0x2000)));
/// drop(m);
/// assert_eq!(iommu.translate(dma.addr()), None);
/// assert!(iommu.is_idle());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SoftIommu {
    id: MapperId,
    cfg: IommuConfig,
    inner: RefCell<Inner>,
}

impl fmt::Debug for SoftIommu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftIommu")
            .field("cfg", &self.cfg)
            .field("stats", &self.stats())
            .finish()
    }
}

impl SoftIommu {
    /// An IOMMU with the given configuration.
    ///
    /// # Errors
    /// [`MapError::InvalidGranule`], [`MapError::InvalidConfig`] (aperture empty or above
    /// the DMA mask, mask below one granule).
    pub fn new(cfg: IommuConfig) -> Result<Self, MapError> {
        let va_bits = 64 - cfg.dma_mask.leading_zeros();
        let pt = IoPageTable::new(
            cfg.granule,
            va_bits.max(cfg.granule.shift() + 1),
            cfg.large_leaves,
        )?;
        if cfg.aperture.1 > cfg.dma_mask || cfg.aperture.0 > cfg.aperture.1 {
            return Err(MapError::InvalidConfig {
                what: "IOVA aperture must be non-empty and under the DMA mask",
            });
        }
        let alloc = IovaAllocator::new(cfg.granule, cfg.aperture.0, cfg.aperture.1)?;
        let stats = IommuStats {
            free_iova_bytes: alloc.free_bytes(),
            ..IommuStats::default()
        };
        Ok(SoftIommu {
            id: MapperId::fresh(),
            cfg,
            inner: RefCell::new(Inner {
                pt,
                alloc,
                allocs: BTreeMap::new(),
                spaces: Vec::new(),
                free_slots: Vec::new(),
                live_spaces: 0,
                tlb: Iotlb {
                    slots: [None; IOTLB_SLOTS],
                },
                stats,
            }),
        })
    }

    /// The default IOMMU: 4 KiB granule, 48-bit mask, large leaves.
    pub fn new_4k() -> Self {
        match Self::new(IommuConfig::default()) {
            Ok(s) => s,
            Err(_) => unreachable!("the default configuration is valid"),
        }
    }

    /// The configuration.
    pub fn config(&self) -> IommuConfig {
        self.cfg
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> IommuStats {
        let i = self.inner.borrow();
        let mut s = i.stats;
        s.mapped_bytes = i.pt.mapped_bytes();
        s.tables = i.pt.tables();
        s.leaves = i.pt.leaf_counts();
        s.allocations = i.allocs.len() + i.live_spaces;
        s.free_iova_bytes = i.alloc.free_bytes();
        s
    }

    /// Whether nothing is mapped or allocated and the IOVA space is one free extent.
    pub fn is_idle(&self) -> bool {
        let i = self.inner.borrow();
        i.allocs.is_empty()
            && i.live_spaces == 0
            && i.pt.mapped_bytes() == 0
            && i.pt.tables() == 0
            && i.alloc.is_pristine()
    }

    /// What the device sees at `iova`: the IOTLB first, then a page-table walk that fills
    /// it.
    pub fn translate(&self, iova: DmaAddr) -> Option<PhysAddr> {
        let mut i = self.inner.borrow_mut();
        let gshift = self.cfg.granule.shift();
        let page = iova.as_u64() >> gshift;
        let off = iova.as_u64() & self.cfg.granule.mask();
        let slot = Iotlb::slot(page);
        if let Some((tag, phys_page)) = i.tlb.slots[slot] {
            if tag == page {
                i.stats.iotlb_hits += 1;
                return Some(PhysAddr::new((phys_page << gshift) | off));
            }
        }
        i.stats.iotlb_misses += 1;
        let (p, _, _) = i.pt.lookup(iova)?;
        i.tlb.slots[slot] = Some((page, p.as_u64() >> gshift));
        Some(p)
    }

    /// The page-table entry for `iova` (bypassing the IOTLB): physical address,
    /// permissions, leaf size.
    pub fn walk(&self, iova: DmaAddr) -> Option<(PhysAddr, IoPerm, PageSize)> {
        self.inner.borrow().pt.lookup(iova)
    }

    /// Checks that `space` is a live reservation of this IOMMU (same mapper, same
    /// extent as a live record); returns its slot.
    #[inline]
    fn own<St: SpaceState>(&self, i: &Inner, space: &IovaSpace<St>) -> Result<usize, MapError> {
        let key = Some((space.iova_base().as_u64(), space.reserved_len()));
        let hint = space.slot() as usize;
        if space.owner() == self.id {
            if i.spaces.get(hint) == Some(&key) {
                return Ok(hint);
            }
            if let Some(slot) = Self::find_space(i, key) {
                return Ok(slot);
            }
        }
        Err(MapError::ForeignSpace {
            addr: space.addr().as_u64(),
        })
    }

    /// The slot of a space whose hint is stale or absent (one built by hand).
    #[cold]
    #[inline(never)]
    fn find_space(i: &Inner, key: Option<(u64, u64)>) -> Option<usize> {
        i.spaces.iter().position(|s| *s == key)
    }

    fn alignment_for(&self, len: u64) -> PageSize {
        let g = self.cfg.granule;
        if !self.cfg.large_leaves {
            return g;
        }
        let bits = g.shift() - 3;
        let mut a = g;
        for level in 1..=MAX_LEAF_LEVEL {
            if let Ok(b) = PageSize::from_shift(g.shift() + level * bits) {
                if b.get() <= len {
                    a = b;
                }
            }
        }
        a
    }

    fn allocate(&self, i: &mut Inner, len: u64) -> Result<u64, MapError> {
        let align = self.alignment_for(len);
        i.alloc
            .alloc(len, align)
            .or_else(|| i.alloc.alloc(len, self.cfg.granule))
            .ok_or(MapError::IovaExhausted { size: len })
    }

    fn invalidate(&self, i: &mut Inner, iova: u64, len: u64) {
        i.stats.iotlb_invalidations += 1;
        if i.tlb.invalidate(self.cfg.granule.shift(), iova, len) {
            i.stats.iotlb_flushes += 1;
        }
    }

    /// Unmaps all of an allocation's extent, forgets its record (a reservation's slot,
    /// or else its `allocs` entry) and returns it to the allocator.
    fn release(
        &self,
        i: &mut Inner,
        slot: Option<usize>,
        base: u64,
        len: u64,
    ) -> Result<u64, MapError> {
        let unmapped = i.pt.unmap_present(DmaAddr::new(base), len)?;
        if unmapped > 0 {
            i.stats.unmaps += 1;
            self.invalidate(i, base, len);
        }
        match slot {
            Some(slot) => Self::forget_space(i, slot),
            None => {
                i.allocs.remove(&base);
            }
        }
        i.alloc.free(base, len)?;
        Ok(unmapped)
    }

    /// Records a live reservation; returns its slot.
    fn record_space(i: &mut Inner, base: u64, len: u64) -> usize {
        i.live_spaces += 1;
        match i.free_slots.pop() {
            Some(slot) => {
                i.spaces[slot as usize] = Some((base, len));
                slot as usize
            }
            None => {
                i.spaces.push(Some((base, len)));
                i.spaces.len() - 1
            }
        }
    }

    fn forget_space(i: &mut Inner, slot: usize) {
        if let Some(s) = i.spaces.get_mut(slot) {
            if s.take().is_some() {
                i.live_spaces -= 1;
                // Slots stay below u32::MAX: one per live reservation, each at least a
                // granule of the IOVA aperture.
                i.free_slots.push(slot as u32);
            }
        }
    }
}

/// Granule-aligned `[iova, phys, len)` covering `phys` placed at `dma`.
fn granule_span(g: PageSize, dma: DmaAddr, phys: PhysRange) -> (DmaAddr, PhysAddr, u64) {
    let iova = dma.align_down(g);
    let p = phys.addr().align_down(g);
    let end = phys.addr().as_u64() as u128 + phys.len() as u128;
    let gl = g.get() as u128;
    let len = (((end + (gl - 1)) & !(gl - 1)) - p.as_u64() as u128) as u64;
    (iova, p, len)
}

impl DmaMapper for SoftIommu {
    fn granule(&self) -> PageSize {
        self.cfg.granule
    }

    fn dma_mask(&self) -> u64 {
        self.cfg.dma_mask
    }

    fn reserve(&self, phys_hint: PhysAddr, size: u64) -> Result<Option<IovaSpace>, MapError> {
        if size == 0 {
            return Err(MapError::Empty);
        }
        let g = self.cfg.granule;
        let pad = phys_hint.page_offset(g);
        let raw = pad as u128 + size as u128;
        let gm = g.mask() as u128;
        let len = (raw + gm) & !gm;
        let len = u64::try_from(len).map_err(|_| MapError::IovaExhausted { size: u64::MAX })?;
        let mut i = self.inner.borrow_mut();
        let base = self.allocate(&mut i, len)?;
        match IovaSpace::new(self.id, DmaAddr::new(base), pad, size, g) {
            Ok(mut s) => {
                let slot = Self::record_space(&mut i, base, len);
                s.set_slot(u32::try_from(slot).unwrap_or(u32::MAX));
                Ok(Some(s))
            }
            Err(e) => {
                let _ = i.alloc.free(base, len);
                Err(e)
            }
        }
    }

    fn link(
        &self,
        space: &mut IovaSpace<Linking>,
        phys: PhysRange,
        offset: u64,
        dir: DataDirection,
        attrs: Attrs,
    ) -> Result<(), MapError> {
        let mut i = self.inner.borrow_mut();
        self.own(&i, space)?;
        let g = self.cfg.granule;
        let perm = IoPerm::for_transfer(dir, attrs);
        space.link_with(phys, offset, |dma, phys| {
            let (iova, p, len) = granule_span(g, dma, phys);
            i.pt.map(iova, p, len, perm)?;
            i.stats.maps += 1;
            Ok(())
        })
    }

    fn sync(
        &self,
        space: IovaSpace<Linking>,
        offset: u64,
        size: u64,
    ) -> Result<IovaSpace<Synced>, SyncError> {
        let mut i = self.inner.borrow_mut();
        if let Err(error) = self
            .own(&i, &space)
            .and_then(|_| space.check_sync(offset, size))
        {
            return Err(SyncError { space, error });
        }
        i.stats.iotlb_syncs += 1;
        Ok(space.mark_synced())
    }

    fn unlink<St: SpaceState>(
        &self,
        space: &mut IovaSpace<St>,
        offset: u64,
        size: u64,
        _dir: DataDirection,
        _attrs: Attrs,
    ) -> Result<(), MapError> {
        self.own(&self.inner.borrow(), space)?;
        let g = self.cfg.granule;
        let unmap = |dma: DmaRange| {
            let mut i = self.inner.borrow_mut();
            let iova = dma.addr().align_down(g);
            let end = dma.addr().as_u64() as u128 + dma.len() as u128;
            let gl = g.get() as u128;
            let len = (((end + (gl - 1)) & !(gl - 1)) - iova.as_u64() as u128) as u64;
            i.pt.unmap(iova, len)
                .map_err(|_| MapError::NotLinked { offset, len: size })?;
            i.stats.unmaps += 1;
            self.invalidate(&mut i, iova.as_u64(), len);
            Ok(())
        };
        // Asked after `unmap` returned (its borrow is over).
        let is_mapped = |iova| self.inner.borrow().pt.lookup(iova).is_some();
        space.unlink_with(offset, size, unmap, is_mapped)
    }

    fn free<St: SpaceState>(&self, mut space: IovaSpace<St>) -> Result<(), MapError> {
        let mut i = self.inner.borrow_mut();
        let slot = self.own(&i, &space)?;
        let linked = space.linked_bytes();
        let unmapped = self.release(
            &mut i,
            Some(slot),
            space.iova_base().as_u64(),
            space.reserved_len(),
        )?;
        space.clear_links();
        if linked > 0 || unmapped > 0 {
            return Err(MapError::StillLinked { bytes: linked });
        }
        Ok(())
    }

    fn destroy<St: SpaceState>(
        &self,
        mut space: IovaSpace<St>,
        _dir: DataDirection,
        _attrs: Attrs,
    ) -> Result<(), MapError> {
        let mut i = self.inner.borrow_mut();
        let slot = self.own(&i, &space)?;
        self.release(
            &mut i,
            Some(slot),
            space.iova_base().as_u64(),
            space.reserved_len(),
        )?;
        space.clear_links();
        Ok(())
    }

    fn map_phys(
        &self,
        phys: PhysRange,
        dir: DataDirection,
        attrs: Attrs,
    ) -> Result<DmaRange, MapError> {
        let g = self.cfg.granule;
        let pad = phys.addr().page_offset(g);
        let (_, p, len) = granule_span(g, DmaAddr::new(pad), phys);
        let mut i = self.inner.borrow_mut();
        let base = self.allocate(&mut i, len)?;
        if let Err(e) =
            i.pt.map(DmaAddr::new(base), p, len, IoPerm::for_transfer(dir, attrs))
        {
            let _ = i.alloc.free(base, len);
            return Err(e);
        }
        i.stats.maps += 1;
        i.stats.iotlb_syncs += 1;
        i.allocs.insert(
            base,
            (
                len,
                AllocKind::Single {
                    pad,
                    size: phys.len(),
                },
            ),
        );
        Ok(DmaRange::new(base + pad, phys.len()))
    }

    fn unmap_phys(
        &self,
        dma: DmaRange,
        _dir: DataDirection,
        _attrs: Attrs,
    ) -> Result<(), MapError> {
        let g = self.cfg.granule;
        let (base, pad) = dma.addr().split_page(g);
        let mut i = self.inner.borrow_mut();
        let want = AllocKind::Single {
            pad,
            size: dma.len(),
        };
        let Some(&(len, kind)) = i.allocs.get(&base.as_u64()) else {
            return Err(MapError::NotMapped {
                dma: dma.addr().as_u64(),
                len: dma.len(),
            });
        };
        if kind != want {
            return Err(MapError::NotMapped {
                dma: dma.addr().as_u64(),
                len: dma.len(),
            });
        }
        self.release(&mut i, None, base.as_u64(), len)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_table_uses_large_leaves_and_splits() {
        let mut pt = IoPageTable::new(PageSize::SIZE_4K, 48, true).unwrap();
        assert_eq!(pt.levels(), 4);
        pt.map(
            DmaAddr::new(0x4000_0000),
            PhysAddr::new(0x1_4000_0000),
            1 << 30,
            IoPerm::READ,
        )
        .unwrap();
        assert_eq!(pt.leaf_counts(), [0, 0, 1]);
        assert_eq!(
            pt.lookup(DmaAddr::new(0x4000_1234))
                .map(|(p, _, s)| (p.as_u64(), s)),
            Some((0x1_4000_1234, PageSize::SIZE_1G))
        );
        pt.unmap(DmaAddr::new(0x4020_0000), 0x1000).unwrap();
        assert_eq!(pt.leaf_counts(), [511, 511, 0]);
        assert_eq!(pt.translate(DmaAddr::new(0x4020_0000)), None);
        assert_eq!(
            pt.translate(DmaAddr::new(0x4020_1000)),
            Some(PhysAddr::new(0x1_4020_1000))
        );
        assert!(matches!(
            pt.map(
                DmaAddr::new(0x4000_0000),
                PhysAddr::new(0),
                0x2000,
                IoPerm::READ
            ),
            Err(MapError::AlreadyMapped { iova: 0x4000_0000 })
        ));
        pt.map(
            DmaAddr::new(0x4020_0000),
            PhysAddr::new(0x9000),
            0x1000,
            IoPerm::WRITE,
        )
        .unwrap();
        assert_eq!(pt.unmap_present(DmaAddr::new(0), 1 << 40).unwrap(), 1 << 30);
        assert_eq!(pt.tables(), 0);
        assert_eq!(pt.mapped_bytes(), 0);
    }

    #[test]
    fn unmap_of_hole_changes_nothing() {
        let mut pt = IoPageTable::new(PageSize::SIZE_4K, 39, true).unwrap();
        pt.map(
            DmaAddr::new(0x1000),
            PhysAddr::new(0x5000),
            0x1000,
            IoPerm::READ,
        )
        .unwrap();
        assert!(matches!(
            pt.unmap(DmaAddr::new(0x1000), 0x2000),
            Err(MapError::NotMapped { dma: 0x2000, .. })
        ));
        assert_eq!(pt.mapped_bytes(), 0x1000);
        assert!(pt
            .map(
                DmaAddr::new(1 << 39),
                PhysAddr::new(0),
                0x1000,
                IoPerm::READ
            )
            .is_err());
    }

    #[test]
    fn allocator_reuses_and_coalesces() {
        let mut a = IovaAllocator::new(PageSize::SIZE_4K, 0, 0xffff).unwrap();
        let x: Vec<u64> = (0..16)
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

    #[test]
    fn two_step_misuse_is_detected() {
        let iommu = SoftIommu::new_4k();
        let other = SoftIommu::new_4k();
        let dir = DataDirection::ToDevice;
        let a = Attrs::empty();
        let space = iommu.reserve(PhysAddr::new(0), 0x3000).unwrap().unwrap();
        let e = iommu.sync(space, 0, 0x3000).unwrap_err();
        assert_eq!(e.error, MapError::SyncBeforeLink);
        let mut space = e.space;
        // Second link not granule-aligned.
        iommu
            .link(&mut space, PhysRange::new(0x1000, 0x800), 0, dir, a)
            .unwrap();
        assert!(matches!(
            iommu.link(&mut space, PhysRange::new(0x5800, 0x800), 0x800, dir, a),
            Err(MapError::MergeBoundary { .. })
        ));
        // A foreign mapper refuses the space.
        assert!(matches!(
            other.link(&mut space, PhysRange::new(0x5000, 0x1000), 0x1000, dir, a),
            Err(MapError::ForeignSpace { .. })
        ));
        assert_eq!(
            iommu.free(space),
            Err(MapError::StillLinked { bytes: 0x800 })
        );
        assert!(iommu.is_idle());
    }
}
