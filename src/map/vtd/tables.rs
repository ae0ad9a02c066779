//! VT-d legacy-mode tables in caller-provided memory: the root table, one context
//! table, and the second-level tables written by the shared radix engine
//! ([`RadixTable`]) through the [`VtdFormat`].
#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use super::entry::{
    aw_field, context_entry, overlaps_interrupt_window, root_entry, sl_addr, sl_leaf_entry,
    sl_perm, sl_table_entry, SL_PS, SL_R, SL_W,
};
use crate::addr::{Phys, PhysAddr};
use crate::map::pgtable::{PageTableFormat, Pte, RadixCounts, RadixTable, TableMemory};
use crate::map::{IoPerm, MapError};
use crate::mem::{MemoryError, MemoryReader, MemoryWriter};

/// Where table pages come from: 4 KiB-aligned pages of memory the tables may use, as a
/// driver's page allocator or a VMM's reserved region hands them out.
///
/// ```
/// use physvec::map::vtd::{PageList, PageSource};
/// let mut p = PageList::new([0x1000, 0x2000]);
/// assert_eq!(p.alloc_page(), Some(0x1000));
/// p.free_page(0x1000);
/// assert_eq!(p.alloc_page(), Some(0x1000)); // freed pages are reused first
/// assert_eq!(p.alloc_page(), Some(0x2000));
/// assert_eq!(p.alloc_page(), None);
/// ```
pub trait PageSource {
    /// A 4 KiB-aligned page, or `None` when none is left.
    fn alloc_page(&mut self) -> Option<u64>;
    /// Gives back a page from [`PageSource::alloc_page`].
    fn free_page(&mut self, addr: u64);
}

/// A [`PageSource`] over a list of pages, handed out in list order (freed pages first),
/// so the pages in use are always a prefix of the list.
#[derive(Clone, Debug, Default)]
pub struct PageList {
    pages: Vec<u64>,
    next: usize,
    free: Vec<u64>,
}

impl PageList {
    /// A source over `pages` (addresses that are not 4 KiB-aligned are skipped).
    pub fn new(pages: impl IntoIterator<Item = u64>) -> Self {
        PageList {
            pages: pages.into_iter().filter(|p| p & 0xfff == 0).collect(),
            next: 0,
            free: Vec::new(),
        }
    }

    /// How many pages of the list have been handed out at least once.
    pub fn taken(&self) -> usize {
        self.next
    }

    /// Pages currently handed out.
    pub fn in_use(&self) -> usize {
        self.next.saturating_sub(self.free.len())
    }
}

impl PageSource for PageList {
    fn alloc_page(&mut self) -> Option<u64> {
        if let Some(p) = self.free.pop() {
            return Some(p);
        }
        let p = self.pages.get(self.next).copied()?;
        self.next = self.next.saturating_add(1);
        Some(p)
    }

    fn free_page(&mut self, addr: u64) {
        self.free.push(addr);
    }
}

/// The VT-d second-level paging format (legacy mode, 4 KiB granule): non-leaf entries
/// `next | R | W`, leaves `phys | R? | W? | PS (2 MiB / 1 GiB)`, SNP and every reserved
/// bit clear; no leaf covering the interrupt window.
///
/// ```
/// use physvec::map::vtd::VtdFormat;
/// use physvec::map::{IoPerm, PageTableFormat, Pte};
/// let f = VtdFormat::new(48, true)?;
/// assert_eq!(f.levels(), 4);
/// assert_eq!(f.encode_leaf(0x4000_0000, IoPerm::READ, 1), 0x4000_0081); // 2 MiB, R
/// assert_eq!(f.decode(0x5003, 2), Pte::Table(0x5000));
/// assert!(!f.leaf_allowed(0xc000_0000, 2)); // a 1 GiB leaf over the interrupt window
/// # Ok::<(), physvec::map::MapError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VtdFormat {
    levels: u32,
    haw: u32,
    max_leaf: u32,
}

impl VtdFormat {
    /// The format for `aw_bits` 39 (3 levels) or 48 (4 levels), with 2 MiB / 1 GiB
    /// leaves when `large_pages`.
    ///
    /// # Errors
    /// [`MapError::InvalidConfig`] for another width.
    pub fn new(aw_bits: u32, large_pages: bool) -> Result<Self, MapError> {
        let levels = match aw_bits {
            39 => 3,
            48 => 4,
            _ => {
                return Err(MapError::InvalidConfig {
                    what: "VT-d address width must be 39 or 48 bits",
                })
            }
        };
        Ok(VtdFormat {
            levels,
            haw: aw_bits,
            max_leaf: if large_pages { 2 } else { 0 },
        })
    }
}

impl PageTableFormat for VtdFormat {
    fn levels(&self) -> u32 {
        self.levels
    }

    fn max_leaf_level(&self) -> u32 {
        self.max_leaf
    }

    fn decode(&self, raw: u64, level: u32) -> Pte {
        if raw & (SL_R | SL_W) == 0 {
            return Pte::Empty;
        }
        let addr = sl_addr(raw, self.haw);
        if level == 0 {
            return Pte::Leaf {
                phys: addr,
                perm: sl_perm(raw),
            };
        }
        if (level == 1 || level == 2) && raw & SL_PS != 0 {
            let size = block_size(level);
            return Pte::Leaf {
                phys: addr & !size.wrapping_sub(1),
                perm: sl_perm(raw),
            };
        }
        Pte::Table(addr)
    }

    fn encode_table(&self, table: u64, _level: u32) -> u64 {
        sl_table_entry(table)
    }

    fn encode_leaf(&self, phys: u64, perm: IoPerm, level: u32) -> u64 {
        sl_leaf_entry(phys, perm, level.saturating_add(1))
    }

    fn leaf_allowed(&self, phys: u64, level: u32) -> bool {
        let size = block_size(level);
        size != 0 && !overlaps_interrupt_window(phys, size)
    }
}

/// Bytes covered by an entry at engine level `level` (0 = 4 KiB); 0 past 2^63.
fn block_size(level: u32) -> u64 {
    1u64.checked_shl(12u32.saturating_add(level.saturating_mul(9)))
        .unwrap_or(0)
}

/// Configuration of one VT-d translation: the IOMMU's address width, the device and its
/// domain.
///
/// ```
/// use physvec::map::vtd::VtdConfig;
/// let c = VtdConfig::new(48, 0x0008, 1);
/// assert!(c.large_pages);
/// assert_eq!(c.max_am, 18);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VtdConfig {
    /// 39 (3-level tables) or 48 (4-level tables); also the host address width.
    pub aw_bits: u32,
    /// The device's requester id (`bus << 8 | dev << 3 | fn`).
    pub source_id: u16,
    /// The domain id written in the context entry (use non-zero: Linux reserves 0).
    pub domain_id: u16,
    /// Use 2 MiB / 1 GiB leaves where IOVA, physical address and length align.
    pub large_pages: bool,
    /// CAP.MAMV: largest address mask of a page-selective invalidation (QEMU: 18).
    pub max_am: u8,
    /// CAP.CM (caching mode): not-present entries may be cached, so mapping also needs
    /// an invalidation.
    pub caching_mode: bool,
}

impl VtdConfig {
    /// `aw_bits`, `source_id`, `domain_id`; large pages on, MAMV 18, caching mode off.
    pub const fn new(aw_bits: u32, source_id: u16, domain_id: u16) -> Self {
        VtdConfig {
            aw_bits,
            source_id,
            domain_id,
            large_pages: true,
            max_am: 18,
            caching_mode: false,
        }
    }
}

/// Adapts a memory and a page source to the engine's [`TableMemory`].
struct Store<'a, M, P> {
    mem: &'a mut M,
    pages: &'a mut P,
}

fn entry_addr(table: u64, index: u64) -> Result<u64, MapError> {
    index
        .checked_mul(8)
        .and_then(|o| table.checked_add(o))
        .ok_or(MapError::TableMemory { addr: table })
}

fn zero_page<M: MemoryWriter<Phys>>(mem: &mut M, page: u64) -> Result<(), MapError> {
    mem.write(PhysAddr::new(page), &[0u8; 4096])
        .map_err(|e| MapError::TableMemory {
            addr: e.addr.as_u64(),
        })
}

impl<M: MemoryReader<Phys> + MemoryWriter<Phys>, P: PageSource> TableMemory for Store<'_, M, P> {
    fn read_entry(&self, table: u64, index: u64) -> Result<u64, MapError> {
        let a = entry_addr(table, index)?;
        self.mem
            .read_u64_le(PhysAddr::new(a))
            .map_err(|_| MapError::TableMemory { addr: a })
    }

    fn write_entry(&mut self, table: u64, index: u64, raw: u64) -> Result<(), MapError> {
        let a = entry_addr(table, index)?;
        self.mem
            .write(PhysAddr::new(a), &raw.to_le_bytes())
            .map_err(|_| MapError::TableMemory { addr: a })
    }

    fn alloc_table(&mut self) -> Result<u64, MapError> {
        let p = self
            .pages
            .alloc_page()
            .ok_or(MapError::TablePagesExhausted)?;
        if p & 0xfff != 0 {
            return Err(MapError::TableMemory { addr: p });
        }
        if let Err(e) = zero_page(self.mem, p) {
            self.pages.free_page(p);
            return Err(e);
        }
        Ok(p)
    }

    fn free_table(&mut self, table: u64) {
        self.pages.free_page(table);
    }
}

/// Legacy-mode VT-d tables for one device in caller-provided memory: a root table, a
/// context table with the device's entry (present, translation type 00, FPD 0, AW from
/// the width, the domain id), and second-level tables, all from the [`PageSource`].
///
/// The tables are plain memory writes through [`MemoryWriter`] in the order hardware
/// needs (a new table is filled before the entry that links it; a context entry's high
/// quadword before its low one). Invalidations are the caller's business here; the
/// [`VtdMapper`](super::VtdMapper) produces them.
///
/// # Examples
/// ```
/// use physvec::map::vtd::{self, Access, PageList, VtdCaps, VtdConfig, VtdTables};
/// use physvec::map::IoPerm;
/// use physvec::mem::SparseMemory;
/// let mut ram = SparseMemory::default();
/// ram.add_zeroed(physvec::PhysAddr::new(0x10_0000), 0x10_0000);
/// let pages = PageList::new((0x10_0000..0x20_0000).step_by(0x1000));
/// let mut t = VtdTables::new(ram, pages, VtdConfig::new(48, 0x0008, 1))?;
/// t.map(0x4000_0000, 0x8000_0000, 0x40_0000, IoPerm::READ)?; // two 2 MiB leaves
/// let tr = vtd::translate(t.memory(), t.root_table(), VtdCaps::qemu(48), 0x0008,
///     0x4020_0010, Access::Read).unwrap();
/// assert_eq!((tr.phys, tr.page_size), (0x8020_0010, 2 << 20));
/// t.unmap(0x4000_1000, 0x1000)?; // splits the first 2 MiB leaf
/// assert_eq!(t.counts().leaves, [511, 1, 0]);
/// # Ok::<(), physvec::map::MapError>(())
/// ```
#[derive(Debug)]
pub struct VtdTables<M, P> {
    mem: M,
    pages: P,
    cfg: VtdConfig,
    root_table: u64,
    context_table: u64,
    pt: RadixTable<VtdFormat>,
}

impl<M: MemoryReader<Phys> + MemoryWriter<Phys>, P: PageSource> VtdTables<M, P> {
    /// Takes three pages (root table, context table, top second-level table), zeroes
    /// them and writes the context and root entries for `cfg.source_id`.
    ///
    /// # Errors
    /// [`MapError::InvalidConfig`] (width not 39/48), [`MapError::TablePagesExhausted`],
    /// [`MapError::TableMemory`].
    pub fn new(mut mem: M, mut pages: P, cfg: VtdConfig) -> Result<Self, MapError> {
        let fmt = VtdFormat::new(cfg.aw_bits, cfg.large_pages)?;
        let aw = aw_field(cfg.aw_bits).ok_or(MapError::InvalidConfig {
            what: "VT-d address width must be 39 or 48 bits",
        })?;
        let mut store = Store {
            mem: &mut mem,
            pages: &mut pages,
        };
        let root_table = store.alloc_table()?;
        let context_table = store.alloc_table()?;
        let sl_root = store.alloc_table()?;
        let [ce_lo, ce_hi] = context_entry(sl_root, aw, cfg.domain_id);
        let devfn = u64::from(cfg.source_id & 0xff);
        let bus = u64::from(cfg.source_id >> 8);
        // Context entry: high quadword first (P is in the low one).
        store.write_entry(
            context_table,
            devfn.saturating_mul(2).saturating_add(1),
            ce_hi,
        )?;
        store.write_entry(context_table, devfn.saturating_mul(2), ce_lo)?;
        let [re_lo, re_hi] = root_entry(context_table);
        store.write_entry(root_table, bus.saturating_mul(2).saturating_add(1), re_hi)?;
        store.write_entry(root_table, bus.saturating_mul(2), re_lo)?;
        let pt = RadixTable::new(fmt, sl_root, cfg.aw_bits)?;
        Ok(VtdTables {
            mem,
            pages,
            cfg,
            root_table,
            context_table,
            pt,
        })
    }

    /// The configuration.
    pub fn config(&self) -> VtdConfig {
        self.cfg
    }

    /// Address of the root table (for RTADDR).
    pub fn root_table(&self) -> u64 {
        self.root_table
    }

    /// Address of the context table.
    pub fn context_table(&self) -> u64 {
        self.context_table
    }

    /// Address of the top second-level table (the context entry's SLPTPTR).
    pub fn sl_root(&self) -> u64 {
        self.pt.root()
    }

    /// The memory holding the tables.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// The memory holding the tables, mutably (see [`VtdMapper::memory_mut`](super::VtdMapper::memory_mut)).
    pub fn memory_mut(&mut self) -> &mut M {
        // The caller may change the tables: the engine must walk afresh.
        self.pt.forget_walk();
        &mut self.mem
    }

    /// The page source.
    pub fn pages(&self) -> &P {
        &self.pages
    }

    /// Live counts of the second-level tables.
    pub fn counts(&self) -> RadixCounts {
        self.pt.counts()
    }

    /// Gives back the memory and the page source.
    pub fn into_parts(self) -> (M, P) {
        (self.mem, self.pages)
    }

    fn split(&mut self) -> (&mut RadixTable<VtdFormat>, Store<'_, M, P>) {
        (
            &mut self.pt,
            Store {
                mem: &mut self.mem,
                pages: &mut self.pages,
            },
        )
    }

    /// Maps `[iova, iova + len)` to `[phys, phys + len)` (4 KiB multiples) with `perm`
    /// (at least one of R and W). Nothing changes on error.
    ///
    /// # Errors
    /// As [`RadixTable::map`]; [`MapError::InvalidConfig`] for a permission without R
    /// and W.
    pub fn map(&mut self, iova: u64, phys: u64, len: u64, perm: IoPerm) -> Result<(), MapError> {
        if !perm.contains(IoPerm::READ) && !perm.contains(IoPerm::WRITE) {
            return Err(MapError::InvalidConfig {
                what: "a VT-d leaf needs read or write permission",
            });
        }
        let (pt, mut store) = self.split();
        pt.map(&mut store, iova, phys, len, perm)
    }

    /// Unmaps `[iova, iova + len)`, every 4 KiB of which must be mapped.
    ///
    /// # Errors
    /// As [`RadixTable::unmap`].
    pub fn unmap(&mut self, iova: u64, len: u64) -> Result<(), MapError> {
        let (pt, mut store) = self.split();
        pt.unmap(&mut store, iova, len)
    }

    /// Unmaps whatever is mapped in `[iova, iova + len)`; returns the bytes unmapped.
    ///
    /// # Errors
    /// As [`RadixTable::unmap_present`].
    pub fn unmap_present(&mut self, iova: u64, len: u64) -> Result<u64, MapError> {
        let (pt, mut store) = self.split();
        pt.unmap_present(&mut store, iova, len)
    }

    /// The leaf covering `iova` (as the writer sees it, without the hardware checks of
    /// [`translate`](super::translate)): physical address, permissions, leaf size.
    ///
    /// # Errors
    /// [`MapError::TableMemory`].
    pub fn lookup(&mut self, iova: u64) -> Result<Option<(u64, IoPerm, u64)>, MapError> {
        let (pt, store) = self.split();
        Ok(pt
            .lookup(&store, iova)?
            .map(|(p, perm, level)| (p, perm, block_size(level))))
    }
}

/// A memory wrapper that records which 4 KiB pages were written, so that a driver (or a
/// test harness, or the CLI) can copy exactly the changed table pages to where the
/// hardware reads them.
///
/// ```
/// use physvec::map::vtd::DirtyPages;
/// use physvec::mem::{MemoryWriter, SparseMemory};
/// let mut m = SparseMemory::default();
/// m.add_zeroed(physvec::PhysAddr::new(0x1000), 0x3000);
/// let mut d = DirtyPages::new(m);
/// d.write(physvec::PhysAddr::new(0x1ffc), &[1; 8]).unwrap(); // straddles two pages
/// assert_eq!(d.take_dirty(), [0x1000, 0x2000]);
/// assert!(d.take_dirty().is_empty());
/// ```
#[derive(Clone, Debug, Default)]
pub struct DirtyPages<M> {
    inner: M,
    dirty: BTreeSet<u64>,
}

impl<M> DirtyPages<M> {
    /// Wraps `inner`; nothing is dirty yet.
    pub fn new(inner: M) -> Self {
        DirtyPages {
            inner,
            dirty: BTreeSet::new(),
        }
    }

    /// The pages written since the last call, in address order.
    pub fn take_dirty(&mut self) -> Vec<u64> {
        core::mem::take(&mut self.dirty).into_iter().collect()
    }

    /// The wrapped memory.
    pub fn inner(&self) -> &M {
        &self.inner
    }

    /// Unwraps the memory.
    pub fn into_inner(self) -> M {
        self.inner
    }
}

impl<M: MemoryReader<Phys>> MemoryReader<Phys> for DirtyPages<M> {
    fn read(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), MemoryError<Phys>> {
        self.inner.read(addr, buf)
    }
}

impl<M: MemoryWriter<Phys>> MemoryWriter<Phys> for DirtyPages<M> {
    fn write(&mut self, at: PhysAddr, buf: &[u8]) -> Result<(), MemoryError<Phys>> {
        self.inner.write(at, buf)?;
        let addr = at.as_u64();
        let len = buf.len() as u64; // usize fits in u64 on every supported target
        if len > 0 {
            let last = addr.saturating_add(len.wrapping_sub(1)) >> 12;
            let mut p = addr >> 12;
            while p <= last {
                self.dirty.insert(p << 12);
                p = p.saturating_add(1);
                if p == 0 {
                    break;
                }
            }
        }
        Ok(())
    }
}
