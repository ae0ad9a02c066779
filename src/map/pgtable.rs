//! The page-table format abstraction (`alloc`): one radix-walk engine ([`RadixTable`])
//! for every I/O page-table format whose tables live in memory the caller provides.
//!
//! A format ([`PageTableFormat`]) says how many levels there are, which levels may hold
//! leaves, and how an 8-byte entry encodes "empty", "next table" and "leaf with
//! permissions". The table memory ([`TableMemory`]) reads and writes entries and hands out
//! zeroed table pages. [`RadixTable`] does everything else once: the walk, the choice of
//! the largest leaf alignment allows, splitting a large leaf when part of it is unmapped,
//! freeing tables that become empty, rollback of a map that ran out of table pages.
//!
//! Geometry: 4 KiB granule, 512 entries per table, level 0 = the 4 KiB leaf level (the
//! x86 / VT-d second-level and ARM LPAE 4 KiB layouts). Work is bounded: every operation
//! touches at most `levels` tables per 4 KiB of the range plus two splits.
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

use super::{IoPerm, MapError};

/// log2 of the granule (4 KiB).
pub const GRANULE_SHIFT: u32 = 12;
/// Index bits per level (512 entries of 8 bytes per 4 KiB table).
pub const INDEX_BITS: u32 = 9;
/// Entries per table.
pub const ENTRIES: u64 = 1 << INDEX_BITS;
/// Most levels the engine supports.
pub const MAX_LEVELS: u32 = 6;

/// A decoded page-table entry.
///
/// ```
/// use physvec::map::{IoPerm, Pte};
/// let e = Pte::Leaf { phys: 0x5000, perm: IoPerm::READ };
/// assert!(e.is_present());
/// assert!(!Pte::Empty.is_present());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pte {
    /// Not present.
    Empty,
    /// Points to the next-level table at this address.
    Table(u64),
    /// Translates its block to `phys` (block-aligned) with `perm`.
    Leaf {
        /// Physical address of the block.
        phys: u64,
        /// Access the device is granted.
        perm: IoPerm,
    },
}

impl Pte {
    /// Whether the entry is present (a table or a leaf).
    pub fn is_present(&self) -> bool {
        !matches!(self, Pte::Empty)
    }
}

/// How one page-table format encodes its entries (levels counted from 0 = 4 KiB leaves).
///
/// ```
/// use physvec::map::{IoPerm, PageTableFormat, Pte};
/// /// A toy format: bit 0 = present leaf, bit 1 = present table.
/// struct Toy;
/// impl PageTableFormat for Toy {
///     fn levels(&self) -> u32 { 2 }
///     fn max_leaf_level(&self) -> u32 { 0 }
///     fn decode(&self, raw: u64, _level: u32) -> Pte {
///         match raw & 3 {
///             1 => Pte::Leaf { phys: raw & !0xfff, perm: IoPerm::READ },
///             2 => Pte::Table(raw & !0xfff),
///             _ => Pte::Empty,
///         }
///     }
///     fn encode_table(&self, table: u64, _level: u32) -> u64 { table | 2 }
///     fn encode_leaf(&self, phys: u64, _perm: IoPerm, _level: u32) -> u64 { phys | 1 }
/// }
/// assert_eq!(Toy.decode(Toy.encode_table(0x3000, 1), 1), Pte::Table(0x3000));
/// ```
pub trait PageTableFormat {
    /// Number of levels (1..=6): the top table is at level `levels() - 1`.
    fn levels(&self) -> u32;
    /// Highest level that may hold a leaf (0: 4 KiB only, 1: 2 MiB, 2: 1 GiB).
    fn max_leaf_level(&self) -> u32;
    /// Decodes an entry read from a table at `level`.
    fn decode(&self, raw: u64, level: u32) -> Pte;
    /// The entry of a table at `level` pointing to the next-level table at `table`.
    fn encode_table(&self, table: u64, level: u32) -> u64;
    /// The entry of a leaf at `level` translating to `phys` (aligned to the level's block).
    fn encode_leaf(&self, phys: u64, perm: IoPerm, level: u32) -> u64;
    /// Whether a leaf at `level` may translate to `phys`. The default allows all; VT-d
    /// refuses leaves that cover the interrupt window.
    fn leaf_allowed(&self, phys: u64, level: u32) -> bool {
        let _ = (phys, level);
        true
    }
}

/// Memory holding page tables: entry reads and writes, and zeroed table pages.
///
/// ```
/// use physvec::map::{MapError, TableMemory};
/// use std::collections::HashMap;
/// /// Tables in a hash map, pages handed out from 0x1000 upwards.
/// #[derive(Default)]
/// struct Heap { entries: HashMap<(u64, u64), u64>, next: u64 }
/// impl TableMemory for Heap {
///     fn read_entry(&self, table: u64, index: u64) -> Result<u64, MapError> {
///         Ok(self.entries.get(&(table, index)).copied().unwrap_or(0))
///     }
///     fn write_entry(&mut self, table: u64, index: u64, raw: u64) -> Result<(), MapError> {
///         self.entries.insert((table, index), raw);
///         Ok(())
///     }
///     fn alloc_table(&mut self) -> Result<u64, MapError> {
///         self.next += 0x1000;
///         Ok(self.next)
///     }
///     fn free_table(&mut self, table: u64) {
///         self.entries.retain(|k, _| k.0 != table);
///     }
/// }
/// let mut h = Heap::default();
/// let t = h.alloc_table()?;
/// h.write_entry(t, 3, 7)?;
/// assert_eq!(h.read_entry(t, 3)?, 7);
/// # Ok::<(), MapError>(())
/// ```
pub trait TableMemory {
    /// Reads entry `index` of the table at `table`.
    ///
    /// # Errors
    /// [`MapError::TableMemory`] when the memory is not readable.
    fn read_entry(&self, table: u64, index: u64) -> Result<u64, MapError>;
    /// Writes entry `index` of the table at `table` (one 8-byte store, as hardware
    /// requires for a live table).
    ///
    /// # Errors
    /// [`MapError::TableMemory`] when the memory is not writable.
    fn write_entry(&mut self, table: u64, index: u64, raw: u64) -> Result<(), MapError>;
    /// A new, zeroed table page.
    ///
    /// # Errors
    /// [`MapError::TablePagesExhausted`], [`MapError::TableMemory`].
    fn alloc_table(&mut self) -> Result<u64, MapError>;
    /// Returns a table page that is no longer linked.
    fn free_table(&mut self, table: u64);
}

/// Live counts of a [`RadixTable`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RadixCounts {
    /// Bytes mapped.
    pub mapped_bytes: u64,
    /// Tables below the root.
    pub tables: usize,
    /// Live leaves `[4 KiB, 2 MiB, 1 GiB]`.
    pub leaves: [u64; 3],
}

/// The radix engine over a format: map, unmap (splitting large leaves), lookup, and
/// table freeing, for tables in caller-provided memory.
///
/// The engine keeps one count per table (used entries) so it knows when to free a table;
/// the tables themselves live only in the [`TableMemory`].
///
/// # Invariants
/// Every table the engine linked is in `used` with its count of present entries; the
/// root is never freed; mapped IOVAs are below `2^va_bits`.
///
/// # Examples
/// See [`VtdTables`](super::vtd::VtdTables), which wraps it for VT-d.
#[derive(Clone, Debug)]
pub struct RadixTable<F> {
    fmt: F,
    root: u64,
    va_bits: u32,
    used: BTreeMap<u64, u64>,
    counts: RadixCounts,
}

/// `1 << shift` for shifts below 64 (0 beyond, which callers never ask for).
fn pow2(shift: u32) -> u64 {
    1u64.checked_shl(shift).unwrap_or(0)
}

fn block_shift(level: u32) -> u32 {
    GRANULE_SHIFT.saturating_add(level.saturating_mul(INDEX_BITS))
}

fn index_of(level: u32, addr: u64) -> u64 {
    addr.checked_shr(block_shift(level)).unwrap_or(0) & (ENTRIES.wrapping_sub(1))
}

impl<F: PageTableFormat> RadixTable<F> {
    /// An engine over the (already zeroed) top-level table at `root`, for IOVAs below
    /// `2^va_bits`.
    ///
    /// # Errors
    /// [`MapError::InvalidConfig`] when the format has no or too many levels or
    /// `va_bits` exceeds what the levels cover (or 63).
    pub fn new(fmt: F, root: u64, va_bits: u32) -> Result<Self, MapError> {
        let levels = fmt.levels();
        if levels == 0 || levels > MAX_LEVELS || va_bits > 63 || va_bits <= GRANULE_SHIFT {
            return Err(MapError::InvalidConfig {
                what: "page-table levels must be 1..=6 and IOVA bits 13..=63",
            });
        }
        if va_bits > block_shift(levels) {
            return Err(MapError::InvalidConfig {
                what: "IOVA bits exceed what the page-table levels cover",
            });
        }
        Ok(RadixTable {
            fmt,
            root,
            va_bits,
            used: BTreeMap::new(),
            counts: RadixCounts::default(),
        })
    }

    /// The format.
    pub fn format(&self) -> &F {
        &self.fmt
    }

    /// The top-level table.
    pub fn root(&self) -> u64 {
        self.root
    }

    /// IOVA bits covered.
    pub fn va_bits(&self) -> u32 {
        self.va_bits
    }

    /// Live counts.
    pub fn counts(&self) -> RadixCounts {
        self.counts
    }

    fn top(&self) -> u32 {
        self.fmt.levels().saturating_sub(1)
    }

    fn check(&self, iova: u64, phys: Option<u64>, len: u64) -> Result<u64, MapError> {
        let gmask = pow2(GRANULE_SHIFT).wrapping_sub(1);
        for v in [Some(iova), phys, Some(len)].into_iter().flatten() {
            if v & gmask != 0 {
                return Err(MapError::Misaligned {
                    value: v,
                    granule: pow2(GRANULE_SHIFT),
                });
            }
        }
        if len == 0 {
            return Err(MapError::Empty);
        }
        let limit = pow2(self.va_bits);
        let end = iova
            .checked_add(len)
            .filter(|&e| e <= limit)
            .ok_or(MapError::AboveDmaMask {
                dma: iova,
                len,
                mask: limit.wrapping_sub(1),
            })?;
        if let Some(p) = phys {
            if p.checked_add(len).is_none() {
                return Err(MapError::AddressOverflow { addr: p, len });
            }
        }
        Ok(end)
    }

    fn used_mut(&mut self, table: u64) -> &mut u64 {
        self.used.entry(table).or_insert(0)
    }

    fn inc(&mut self, table: u64) {
        let u = self.used_mut(table);
        *u = u.saturating_add(1);
    }

    fn dec(&mut self, table: u64) -> u64 {
        let u = self.used_mut(table);
        *u = u.saturating_sub(1);
        *u
    }

    fn count_leaf(&mut self, level: u32, add: bool) {
        let bs = pow2(block_shift(level));
        if let Some(c) = self.counts.leaves.get_mut(level as usize) {
            *c = if add {
                c.saturating_add(1)
            } else {
                c.saturating_sub(1)
            };
        }
        self.counts.mapped_bytes = if add {
            self.counts.mapped_bytes.saturating_add(bs)
        } else {
            self.counts.mapped_bytes.saturating_sub(bs)
        };
    }

    /// Maps `[iova, iova + len)` to `[phys, phys + len)` with `perm`, using the largest
    /// leaves that alignment and the format allow. Nothing changes on error.
    ///
    /// # Errors
    /// [`MapError::Misaligned`], [`MapError::Empty`], [`MapError::AboveDmaMask`],
    /// [`MapError::AddressOverflow`], [`MapError::AlreadyMapped`],
    /// [`MapError::InterruptWindow`], [`MapError::TablePagesExhausted`],
    /// [`MapError::TableMemory`].
    pub fn map<M: TableMemory>(
        &mut self,
        mem: &mut M,
        iova: u64,
        phys: u64,
        len: u64,
        perm: IoPerm,
    ) -> Result<(), MapError> {
        let end = self.check(iova, Some(phys), len)?;
        if let Some(a) = self.first(mem, self.root, self.top(), iova, end, true)? {
            return Err(MapError::AlreadyMapped { iova: a });
        }
        let r = self.map_rec(mem, self.root, self.top(), iova, end, phys, perm);
        if r.is_err() {
            // The range was empty before: clearing it restores the old state.
            let _ = self.clear_rec(mem, self.root, self.top(), iova, end);
        }
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn map_rec<M: TableMemory>(
        &mut self,
        mem: &mut M,
        table: u64,
        level: u32,
        s: u64,
        e: u64,
        phys: u64,
        perm: IoPerm,
    ) -> Result<(), MapError> {
        let bs = pow2(block_shift(level));
        let mut a = s;
        while a < e {
            let idx = index_of(level, a);
            let eb = a & !bs.wrapping_sub(1);
            let ee = e.min(eb.saturating_add(bs));
            // `a - s` fits: a >= s; `phys + len` was checked not to overflow.
            let p = phys.wrapping_add(a.wrapping_sub(s));
            let whole = a == eb && ee.wrapping_sub(eb) == bs && p & bs.wrapping_sub(1) == 0;
            let large_ok =
                level <= self.fmt.max_leaf_level() && whole && self.fmt.leaf_allowed(p, level);
            if level == 0 || large_ok {
                if !self.fmt.leaf_allowed(p, level) {
                    // Only at level 0: a large leaf that is not allowed is split instead.
                    return Err(MapError::InterruptWindow { phys: p });
                }
                let raw = self.fmt.encode_leaf(p, perm, level);
                mem.write_entry(table, idx, raw)?;
                self.inc(table);
                self.count_leaf(level, true);
                a = ee;
                continue;
            }
            let child = match self.fmt.decode(mem.read_entry(table, idx)?, level) {
                Pte::Table(c) => c,
                Pte::Leaf { .. } => return Err(MapError::AlreadyMapped { iova: a }),
                Pte::Empty => {
                    let c = mem.alloc_table()?;
                    self.used.insert(c, 0);
                    if let Err(err) = mem.write_entry(table, idx, self.fmt.encode_table(c, level)) {
                        self.used.remove(&c);
                        mem.free_table(c);
                        return Err(err);
                    }
                    self.inc(table);
                    self.counts.tables = self.counts.tables.saturating_add(1);
                    c
                }
            };
            self.map_rec(mem, child, level.saturating_sub(1), a, ee, p, perm)?;
            a = ee;
        }
        Ok(())
    }

    /// First IOVA in `[s, e)` that is mapped (`want_present`) or not mapped.
    fn first<M: TableMemory>(
        &self,
        mem: &M,
        table: u64,
        level: u32,
        s: u64,
        e: u64,
        want_present: bool,
    ) -> Result<Option<u64>, MapError> {
        let bs = pow2(block_shift(level));
        let mut a = s;
        while a < e {
            let idx = index_of(level, a);
            let eb = a & !bs.wrapping_sub(1);
            let ee = e.min(eb.saturating_add(bs));
            match self.fmt.decode(mem.read_entry(table, idx)?, level) {
                Pte::Empty if !want_present => return Ok(Some(a)),
                Pte::Leaf { .. } if want_present => return Ok(Some(a)),
                Pte::Table(c) if level > 0 => {
                    if let Some(x) =
                        self.first(mem, c, level.wrapping_sub(1), a, ee, want_present)?
                    {
                        return Ok(Some(x));
                    }
                }
                _ => {}
            }
            a = ee;
        }
        Ok(None)
    }

    /// Splits every large leaf that contains `addr` but does not start at it, down to the
    /// level where `addr` is a block boundary. Translations do not change.
    fn split_at<M: TableMemory>(&mut self, mem: &mut M, addr: u64) -> Result<(), MapError> {
        let mut table = self.root;
        let mut level = self.top();
        while level > 0 {
            let bs = pow2(block_shift(level));
            if addr & bs.wrapping_sub(1) == 0 {
                return Ok(());
            }
            let idx = index_of(level, addr);
            match self.fmt.decode(mem.read_entry(table, idx)?, level) {
                Pte::Empty => return Ok(()),
                Pte::Table(c) => table = c,
                Pte::Leaf { phys, perm } => {
                    let child = mem.alloc_table()?;
                    let cl = level.wrapping_sub(1);
                    let cbs = pow2(block_shift(cl));
                    for k in 0..ENTRIES {
                        let p = phys.wrapping_add(k.wrapping_mul(cbs));
                        if let Err(err) =
                            mem.write_entry(child, k, self.fmt.encode_leaf(p, perm, cl))
                        {
                            mem.free_table(child);
                            return Err(err);
                        }
                    }
                    if let Err(err) =
                        mem.write_entry(table, idx, self.fmt.encode_table(child, level))
                    {
                        mem.free_table(child);
                        return Err(err);
                    }
                    self.used.insert(child, ENTRIES);
                    self.counts.tables = self.counts.tables.saturating_add(1);
                    self.count_leaf(level, false);
                    for _ in 0..ENTRIES {
                        self.count_leaf(cl, true);
                    }
                    table = child;
                }
            }
            level = level.wrapping_sub(1);
        }
        Ok(())
    }

    /// Clears every leaf in `[s, e)` (callers split straddling leaves first) and frees
    /// tables left empty. Returns the bytes unmapped.
    fn clear_rec<M: TableMemory>(
        &mut self,
        mem: &mut M,
        table: u64,
        level: u32,
        s: u64,
        e: u64,
    ) -> Result<u64, MapError> {
        let bs = pow2(block_shift(level));
        let mut a = s;
        let mut cleared = 0u64;
        while a < e {
            let idx = index_of(level, a);
            let eb = a & !bs.wrapping_sub(1);
            let ee = e.min(eb.saturating_add(bs));
            match self.fmt.decode(mem.read_entry(table, idx)?, level) {
                Pte::Empty => {}
                Pte::Leaf { .. } => {
                    // After the splits, a leaf in the range is wholly inside it.
                    mem.write_entry(table, idx, 0)?;
                    self.dec(table);
                    self.count_leaf(level, false);
                    cleared = cleared.saturating_add(bs);
                }
                Pte::Table(c) if level > 0 => {
                    cleared = cleared.saturating_add(self.clear_rec(
                        mem,
                        c,
                        level.wrapping_sub(1),
                        a,
                        ee,
                    )?);
                    if self.used.get(&c).copied().unwrap_or(0) == 0 {
                        mem.write_entry(table, idx, 0)?;
                        self.used.remove(&c);
                        mem.free_table(c);
                        self.dec(table);
                        self.counts.tables = self.counts.tables.saturating_sub(1);
                    }
                }
                Pte::Table(_) => {}
            }
            a = ee;
        }
        Ok(cleared)
    }

    /// Unmaps `[iova, iova + len)`; every 4 KiB of it must be mapped. Large leaves that
    /// straddle the bounds are split first (if that runs out of table pages, the error
    /// comes back with every translation unchanged).
    ///
    /// # Errors
    /// [`MapError::Misaligned`], [`MapError::Empty`], [`MapError::AboveDmaMask`],
    /// [`MapError::NotMapped`] (first unmapped IOVA; nothing changed),
    /// [`MapError::TablePagesExhausted`], [`MapError::TableMemory`].
    pub fn unmap<M: TableMemory>(
        &mut self,
        mem: &mut M,
        iova: u64,
        len: u64,
    ) -> Result<(), MapError> {
        let end = self.check(iova, None, len)?;
        if let Some(a) = self.first(mem, self.root, self.top(), iova, end, false)? {
            return Err(MapError::NotMapped {
                dma: a,
                len: pow2(GRANULE_SHIFT),
            });
        }
        self.unmap_present(mem, iova, len).map(|_| ())
    }

    /// Unmaps whatever is mapped in `[iova, iova + len)`; returns the bytes unmapped.
    ///
    /// # Errors
    /// As [`RadixTable::unmap`] except that holes are skipped.
    pub fn unmap_present<M: TableMemory>(
        &mut self,
        mem: &mut M,
        iova: u64,
        len: u64,
    ) -> Result<u64, MapError> {
        let end = self.check(iova, None, len)?;
        self.split_at(mem, iova)?;
        self.split_at(mem, end)?;
        self.clear_rec(mem, self.root, self.top(), iova, end)
    }

    /// The leaf covering `iova`: physical address of that byte, permissions, and the
    /// leaf level (0 = 4 KiB).
    ///
    /// # Errors
    /// [`MapError::TableMemory`].
    pub fn lookup<M: TableMemory>(
        &self,
        mem: &M,
        iova: u64,
    ) -> Result<Option<(u64, IoPerm, u32)>, MapError> {
        if iova >= pow2(self.va_bits) {
            return Ok(None);
        }
        let mut table = self.root;
        let mut level = self.top();
        loop {
            match self
                .fmt
                .decode(mem.read_entry(table, index_of(level, iova))?, level)
            {
                Pte::Empty => return Ok(None),
                Pte::Leaf { phys, perm } => {
                    let off = iova & pow2(block_shift(level)).wrapping_sub(1);
                    return Ok(Some((phys | off, perm, level)));
                }
                Pte::Table(c) => {
                    if level == 0 {
                        return Ok(None);
                    }
                    table = c;
                    level = level.wrapping_sub(1);
                }
            }
        }
    }
}
