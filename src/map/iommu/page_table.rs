//! [`IoPageTable`]: the software IOMMU's multi-level radix I/O page table on the heap.

use alloc::boxed::Box;
use core::fmt;

use crate::addr::{DmaAddr, PageSize, PhysAddr};
use crate::map::{IoPerm, MapError};

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
pub(super) const MAX_LEAF_LEVEL: u32 = 2;

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
}
