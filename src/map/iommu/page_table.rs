//! [`IoPageTable`]: the software IOMMU's multi-level radix I/O page table: the shared
//! radix engine ([`RadixTable`]) over a heap-backed [`TableMemory`] and [`SoftFormat`].
#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use crate::addr::{DmaAddr, PageSize, PhysAddr};
use crate::map::pgtable::{DirectTable, PageTableFormat, Pte, RadixTable, TableMemory};
use crate::map::{IoPerm, MapError};
use crate::range::PhysRange;

/// Largest leaf level (0 = granule, 1 = 2 MiB, 2 = 1 GiB for 4 KiB granules).
pub(super) const MAX_LEAF_LEVEL: u32 = 2;

/// The software IOMMU's entry format: bit 0 = leaf (permissions in bits 2..=4), bit 1 =
/// table; the granule-aligned address above.
///
/// ```
/// use physvec::map::{IoPerm, PageTableFormat, Pte, SoftFormat};
/// use physvec::PageSize;
/// let f = SoftFormat::new(PageSize::SIZE_4K, 48, true)?;
/// assert_eq!((f.levels(), f.max_leaf_level()), (4, 2));
/// let e = f.encode_leaf(0x20_0000, IoPerm::WRITE, 1);
/// assert_eq!(f.decode(e, 1), Pte::Leaf { phys: 0x20_0000, perm: IoPerm::WRITE });
/// # Ok::<(), physvec::map::MapError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftFormat {
    gshift: u32,
    levels: u32,
    max_leaf: u32,
}

impl SoftFormat {
    /// The format for `granule` (4, 16 or 64 KiB) covering `va_bits` of IOVA, with 2 MiB
    /// / 1 GiB (for 4 KiB granules) leaves when `large_leaves`.
    ///
    /// # Errors
    /// [`MapError::InvalidGranule`], [`MapError::InvalidConfig`] (`va_bits` not in
    /// `granule bits + 1 ..= 64`).
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
        let bits = gshift.wrapping_sub(3);
        let levels = va_bits.wrapping_sub(gshift).div_ceil(bits);
        let max_leaf = if large_leaves {
            MAX_LEAF_LEVEL.min(levels.saturating_sub(1))
        } else {
            0
        };
        Ok(SoftFormat {
            gshift,
            levels,
            max_leaf,
        })
    }

    fn addr_mask(&self) -> u64 {
        !(1u64 << self.gshift).wrapping_sub(1)
    }
}

const LEAF: u64 = 1;
const TABLE: u64 = 2;
const PERM_SHIFT: u32 = 2;

impl PageTableFormat for SoftFormat {
    fn granule_shift(&self) -> u32 {
        self.gshift
    }

    fn levels(&self) -> u32 {
        self.levels
    }

    fn max_leaf_level(&self) -> u32 {
        self.max_leaf
    }

    fn decode(&self, raw: u64, _level: u32) -> Pte {
        if raw & LEAF != 0 {
            Pte::Leaf {
                phys: raw & self.addr_mask(),
                perm: IoPerm::from_bits(((raw >> PERM_SHIFT) & 7) as u8), // 3 bits
            }
        } else if raw & TABLE != 0 {
            Pte::Table(raw & self.addr_mask())
        } else {
            Pte::Empty
        }
    }

    fn encode_table(&self, table: u64, _level: u32) -> u64 {
        (table & self.addr_mask()) | TABLE
    }

    fn encode_leaf(&self, phys: u64, perm: IoPerm, _level: u32) -> u64 {
        (phys & self.addr_mask()) | (u64::from(perm.bits()) << PERM_SHIFT) | LEAF
    }
}

/// Heap tables: table `i` has the address `(i + 1) << granule shift`; freed tables are
/// reused.
struct HeapTables {
    gshift: u32,
    entries: usize,
    tables: Vec<Box<[u64]>>,
    /// The engine's count of present entries, per table.
    used: Vec<u64>,
    free: Vec<usize>,
}

impl HeapTables {
    fn slot(&self, table: u64) -> Option<usize> {
        usize::try_from((table >> self.gshift).checked_sub(1)?).ok()
    }
}

impl TableMemory for HeapTables {
    #[inline]
    fn read_entry(&self, table: u64, index: u64) -> Result<u64, MapError> {
        self.slot(table)
            .and_then(|s| self.tables.get(s))
            .and_then(|t| t.get(usize::try_from(index).ok()?))
            .copied()
            .ok_or(MapError::TableMemory { addr: table })
    }

    #[inline]
    fn write_entry(&mut self, table: u64, index: u64, raw: u64) -> Result<(), MapError> {
        let slot = self.slot(table);
        slot.and_then(|s| self.tables.get_mut(s))
            .and_then(|t| t.get_mut(usize::try_from(index).ok()?))
            .map(|e| *e = raw)
            .ok_or(MapError::TableMemory { addr: table })
    }

    fn alloc_table(&mut self) -> Result<u64, MapError> {
        let slot = match self.free.pop() {
            // The engine frees only tables it has cleared (`TableMemory::free_table`;
            // heap writes never fail): no zeroing on reuse. Debug builds check it.
            Some(s) => {
                debug_assert!(self
                    .tables
                    .get(s)
                    .is_some_and(|t| t.iter().all(|&e| e == 0)));
                s
            }
            None => {
                self.tables
                    .push(alloc::vec![0u64; self.entries].into_boxed_slice());
                self.used.push(0);
                self.tables.len().wrapping_sub(1)
            }
        };
        if let Some(u) = self.used.get_mut(slot) {
            *u = 0;
        }
        // Table `slot` lives at `(slot + 1) * granule`; past 2^64 there is no address.
        (slot as u64)
            .checked_add(1)
            .and_then(|i| i.checked_mul(1u64 << self.gshift))
            .ok_or(MapError::TablePagesExhausted)
    }

    fn free_table(&mut self, table: u64) {
        if let Some(s) = self.slot(table) {
            self.free.push(s);
        }
    }

    #[inline]
    fn used_count(&mut self, table: u64) -> Option<&mut u64> {
        let s = self.slot(table)?;
        self.used.get_mut(s)
    }

    #[inline]
    fn direct(&mut self, table: u64) -> Option<DirectTable<'_>> {
        let s = self.slot(table)?;
        Some(DirectTable {
            entries: self.tables.get_mut(s)?,
            used: self.used.get_mut(s)?,
        })
    }
}

/// A multi-level radix I/O page table: IOVA granule → physical granule, with 2 MiB /
/// 1 GiB (for 4 KiB granules) leaves where size and alignment allow.
///
/// Usable on its own, for example as the shadow page table of a VMM that emulates an
/// IOMMU for its guest: [`IoPageTable::map`] / [`IoPageTable::unmap`] what the guest
/// programs, [`IoPageTable::translate`] every device access.
///
/// It is the shared radix engine ([`RadixTable`]) over [`SoftFormat`] entries in heap
/// tables: the walk, leaf choice, splitting and freeing are the code the VT-d tables use.
///
/// # Invariants
/// Every mapped IOVA is below `2^va_bits`; each node holds `granule / 8` entries; a node
/// with no used entry is freed; an IOVA is mapped at most once.
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
    granule: PageSize,
    pt: RadixTable<SoftFormat>,
    mem: HeapTables,
}

impl fmt::Debug for IoPageTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IoPageTable")
            .field("granule", &self.granule())
            .field("levels", &self.levels())
            .field("va_bits", &self.va_bits())
            .field("mapped_bytes", &self.mapped_bytes())
            .field("tables", &self.tables())
            .field("leaves", &self.leaf_counts())
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
        let fmt = SoftFormat::new(granule, va_bits, large_leaves)?;
        let mut mem = HeapTables {
            gshift: fmt.gshift,
            entries: 1usize << fmt.gshift.wrapping_sub(3),
            tables: Vec::new(),
            used: Vec::new(),
            free: Vec::new(),
        };
        let root = mem.alloc_table()?;
        Ok(IoPageTable {
            granule,
            pt: RadixTable::new(fmt, root, va_bits)?,
            mem,
        })
    }

    /// The granule (smallest leaf) in bytes.
    pub fn granule(&self) -> PageSize {
        self.granule
    }

    /// Number of levels of the radix tree.
    pub fn levels(&self) -> u32 {
        self.pt.format().levels()
    }

    /// IOVA bits covered.
    pub fn va_bits(&self) -> u32 {
        self.pt.va_bits()
    }

    /// Bytes currently mapped (saturating at `u64::MAX`).
    pub fn mapped_bytes(&self) -> u64 {
        self.pt.counts().mapped_bytes
    }

    /// Page-table nodes allocated below the root.
    pub fn tables(&self) -> usize {
        self.pt.counts().tables
    }

    /// Bytes of table memory held: every node ever allocated, the root included. Nodes
    /// freed by unmapping are kept and reused, so map/unmap cycles do not grow it.
    ///
    /// ```
    /// use physvec::map::{IoPageTable, IoPerm};
    /// use physvec::{DmaAddr, PageSize, PhysAddr};
    /// let mut pt = IoPageTable::new(PageSize::SIZE_4K, 48, false)?;
    /// assert_eq!(pt.table_memory(), 4096); // the root
    /// pt.map(DmaAddr::new(0x1000), PhysAddr::new(0x1000), 0x1000, IoPerm::READ)?;
    /// assert_eq!((pt.tables(), pt.table_memory()), (3, 4 * 4096));
    /// pt.unmap(DmaAddr::new(0x1000), 0x1000)?;
    /// assert_eq!((pt.tables(), pt.table_memory()), (0, 4 * 4096));
    /// # Ok::<(), physvec::map::MapError>(())
    /// ```
    pub fn table_memory(&self) -> usize {
        self.mem
            .tables
            .len()
            .saturating_mul(self.granule.get() as usize)
    }

    /// Live leaves per level: `[granule, level 1 (2 MiB), level 2 (1 GiB)]`.
    pub fn leaf_counts(&self) -> [u64; 3] {
        self.pt.counts().leaves
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
        self.pt
            .map(&mut self.mem, iova.as_u64(), phys.as_u64(), len, perm)
    }

    /// Maps scattered granules at consecutive IOVAs: `pages[k]` (one granule each) at
    /// `iova + k * granule`, in one pass per leaf table
    /// ([`RadixTable::map_granules`](crate::map::RadixTable::map_granules)). Returns how
    /// many were mapped and the first error, as that many [`IoPageTable::map`] calls
    /// would.
    ///
    /// ```
    /// use physvec::map::{IoPageTable, IoPerm};
    /// use physvec::{DmaAddr, PageSize, PhysRange};
    /// let mut pt = IoPageTable::new(PageSize::SIZE_4K, 48, false)?;
    /// let pages = [PhysRange::new(0x9000, 0x1000), PhysRange::new(0x2000, 0x1000)];
    /// assert_eq!(pt.map_granules(DmaAddr::new(0x10_0000), &pages, IoPerm::READ), (2, Ok(())));
    /// assert_eq!(pt.lookup(DmaAddr::new(0x10_1008)).map(|(p, ..)| p.as_u64()), Some(0x2008));
    /// # Ok::<(), physvec::map::MapError>(())
    /// ```
    pub fn map_granules(
        &mut self,
        iova: DmaAddr,
        pages: &[PhysRange],
        perm: IoPerm,
    ) -> (usize, Result<(), MapError>) {
        self.pt
            .map_granules(&mut self.mem, iova.as_u64(), pages, perm)
    }

    /// Unmaps `[iova, iova + len)`; every granule of it must be mapped. Larger leaves
    /// that straddle the range are split first.
    ///
    /// # Errors
    /// [`MapError::Misaligned`], [`MapError::Empty`], [`MapError::AboveDmaMask`],
    /// [`MapError::NotMapped`] naming the first unmapped IOVA (nothing is changed then).
    pub fn unmap(&mut self, iova: DmaAddr, len: u64) -> Result<(), MapError> {
        self.pt.unmap(&mut self.mem, iova.as_u64(), len)
    }

    /// Unmaps whatever is mapped in `[iova, iova + len)` and returns the bytes unmapped.
    ///
    /// # Errors
    /// As [`IoPageTable::unmap`] except that holes are skipped.
    pub fn unmap_present(&mut self, iova: DmaAddr, len: u64) -> Result<u64, MapError> {
        self.pt.unmap_present(&mut self.mem, iova.as_u64(), len)
    }

    /// The leaf covering `iova`: the physical address of that byte, its permissions and
    /// the leaf size.
    pub fn lookup(&self, iova: DmaAddr) -> Option<(PhysAddr, IoPerm, PageSize)> {
        let (p, perm, level) = self.pt.lookup(&self.mem, iova.as_u64()).ok()??;
        let shift = self
            .granule
            .shift()
            .saturating_add(level.saturating_mul(self.granule.shift().saturating_sub(3)));
        let size = PageSize::from_shift(shift).ok()?;
        Some((PhysAddr::new(p), perm, size))
    }

    /// The physical address `iova` translates to, if mapped.
    pub fn translate(&self, iova: DmaAddr) -> Option<PhysAddr> {
        self.lookup(iova).map(|(p, _, _)| p)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
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
