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
//! Geometry comes from the format: a granule of 4, 16 or 64 KiB, one granule of 8-byte
//! entries per table, level 0 = the granule leaf level (the x86 / VT-d second-level and
//! ARM LPAE layouts). IOVAs may use all 64 bits (ranges are `u128` inside). Work is
//! bounded: every operation touches at most `levels` tables per granule of the range plus
//! two splits.
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
use crate::range::PhysRange;

/// log2 of the default granule (4 KiB).
pub const GRANULE_SHIFT: u32 = 12;
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
    /// log2 of the granule (the level-0 leaf size): 12 (4 KiB, the default), 14 or 16.
    fn granule_shift(&self) -> u32 {
        GRANULE_SHIFT
    }
    /// Index bits per level: `granule_shift() - 3` (8-byte entries filling one granule).
    fn index_bits(&self) -> u32 {
        self.granule_shift().saturating_sub(3)
    }
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
    /// Returns a table page that is no longer linked. The engine frees only tables whose
    /// entries it has all cleared to 0 (or never wrote), so a memory that keeps freed
    /// tables may hand them out again without zeroing them (unless a write failed).
    fn free_table(&mut self, table: u64);
    /// Optional fast storage for the engine's count of present entries in `table`: a
    /// memory that keeps one counter per table (zero for a new table) returns it here.
    /// The default, `None`, makes the engine keep the counts in its own map.
    fn used_count(&mut self, table: u64) -> Option<&mut u64> {
        let _ = table;
        None
    }
    /// Optional direct access to a table held as a plain array: its entries and its
    /// used counter (as [`TableMemory::used_count`]). The engine then fills and clears
    /// runs of granule leaves with one slice pass instead of one
    /// [`read_entry`](TableMemory::read_entry) / [`write_entry`](TableMemory::write_entry)
    /// per entry. The default, `None`, keeps the entry-by-entry path (memories whose
    /// writes must be single 8-byte stores through an accessor, like VT-d's).
    fn direct(&mut self, table: u64) -> Option<DirectTable<'_>> {
        let _ = table;
        None
    }
}

/// A table's entries and used counter, lent by [`TableMemory::direct`].
///
/// ```
/// use physvec::map::DirectTable;
/// let mut entries = [0u64; 512];
/// let mut used = 0u64;
/// let t = DirectTable { entries: &mut entries, used: &mut used };
/// t.entries[3] = 7;
/// *t.used += 1;
/// assert_eq!((entries[3], used), (7, 1));
/// ```
#[derive(Debug)]
pub struct DirectTable<'a> {
    /// The table's entries (one granule of them).
    pub entries: &'a mut [u64],
    /// The engine's count of present entries in the table.
    pub used: &'a mut u64,
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
    geo: Geo,
    root: u64,
    va_bits: u32,
    /// `2^va_bits - 1`.
    va_mask: u64,
    used: BTreeMap<u64, u64>,
    counts: RadixCounts,
    walk: WalkCache,
}

/// The last walk down to a leaf (level-0) table: the tables on the path, for the span
/// (`iova >> shift(1)`) it reached. Links of one reservation land in the same leaf table,
/// so they reuse it instead of walking from the root. Any table free forgets it.
#[derive(Clone, Copy, Debug)]
struct WalkCache {
    span: Option<u64>,
    /// `path[level]`: the table at `level` (`path[top]` is the root).
    path: [u64; MAX_LEVELS as usize],
}

/// Where a walk towards a leaf table stopped.
enum Reach {
    /// The leaf table.
    Leaf(u64),
    /// An empty entry at this level (nothing mapped in its block).
    Hole(u32),
    /// A large leaf.
    Large,
}

/// What a scan of a range found before a fast unmap.
enum Scan {
    /// Only leaf tables and holes: the fast path applies.
    Fast,
    /// A large leaf: the general path (with splits) applies.
    Large,
    /// The first unmapped IOVA (only when every granule must be mapped).
    Unmapped(u64),
}

/// Table geometry, fixed at construction from the format.
#[derive(Clone, Copy, Debug)]
struct Geo {
    gshift: u32,
    bits: u32,
    /// `shift(1)`: the span of one leaf table is `iova >> span_shift` (at most 29).
    span_shift: u32,
    /// `entries() - 1`.
    emask: u64,
    /// `granule - 1`.
    gmask: u64,
    /// `block(1) - 1`: the bytes of a leaf table's span, less one.
    span_mask: u64,
}

impl Geo {
    fn shift(&self, level: u32) -> u32 {
        self.gshift
            .saturating_add(level.saturating_mul(self.bits))
            .min(127)
    }
    /// Bytes covered by one entry at `level` (at most 2^127).
    fn block(&self, level: u32) -> u128 {
        1u128 << self.shift(level)
    }
    fn index(&self, level: u32, addr: u128) -> u64 {
        let mask = (1u128 << self.bits.min(32)).wrapping_sub(1);
        // Masked to `bits` (<= 13) bits: the cast is exact.
        ((addr >> self.shift(level)) & mask) as u64
    }
    fn entries(&self) -> u64 {
        1u64 << self.bits.min(32)
    }
    /// [`Geo::index`] in 64-bit arithmetic.
    #[inline]
    fn index64(&self, level: u32, addr: u64) -> u64 {
        addr.checked_shr(self.shift(level)).unwrap_or(0) & self.emask
    }
    /// The level-0 index of `addr` (`index64(0, addr)`).
    #[inline]
    fn leaf_index(&self, addr: u64) -> u64 {
        addr.checked_shr(self.gshift).unwrap_or(0) & self.emask
    }
    /// The leaf table span of `addr` (`addr >> shift(1)`).
    #[inline]
    fn span(&self, addr: u64) -> u64 {
        addr.checked_shr(self.span_shift).unwrap_or(0)
    }
    /// `block(level) - 1` in 64 bits (all ones past 2^64).
    #[inline]
    fn block_mask64(&self, level: u32) -> u64 {
        1u64.checked_shl(self.shift(level))
            .map_or(u64::MAX, |b| b.wrapping_sub(1))
    }
}

/// What [`RadixTable::map_rec`] writes in one table: added leaves are counted once per
/// table, not per entry.
#[derive(Default)]
struct Batch {
    leaves: u64,
}

impl<F: PageTableFormat> RadixTable<F> {
    /// An engine over the (already zeroed) top-level table at `root`, for IOVAs below
    /// `2^va_bits`.
    ///
    /// # Errors
    /// [`MapError::InvalidConfig`] when the format has no or too many levels, a granule
    /// other than 4, 16 or 64 KiB, or `va_bits` outside `granule bits + 1 ..= 64` or
    /// beyond what the levels cover.
    pub fn new(fmt: F, root: u64, va_bits: u32) -> Result<Self, MapError> {
        let levels = fmt.levels();
        let (gshift, bits) = (fmt.granule_shift(), fmt.index_bits());
        let geo = Geo {
            gshift,
            bits,
            span_shift: gshift.saturating_add(bits).min(127),
            emask: (1u64 << bits.min(32)).wrapping_sub(1),
            gmask: (1u64 << gshift.min(63)).wrapping_sub(1),
            span_mask: 1u64
                .checked_shl(gshift.saturating_add(bits))
                .map_or(u64::MAX, |b| b.wrapping_sub(1)),
        };
        if !matches!(geo.gshift, 12 | 14 | 16) || geo.bits == 0 || geo.bits > 13 {
            return Err(MapError::InvalidConfig {
                what: "page-table granule must be 4, 16 or 64 KiB",
            });
        }
        if levels == 0 || levels > MAX_LEVELS || va_bits > 64 || va_bits <= geo.gshift {
            return Err(MapError::InvalidConfig {
                what: "page-table levels must be 1..=6 and IOVA bits above the granule, at most 64",
            });
        }
        if va_bits > geo.shift(levels) {
            return Err(MapError::InvalidConfig {
                what: "IOVA bits exceed what the page-table levels cover",
            });
        }
        Ok(RadixTable {
            fmt,
            geo,
            root,
            va_bits,
            va_mask: u64::MAX >> 64u32.saturating_sub(va_bits),
            used: BTreeMap::new(),
            counts: RadixCounts::default(),
            walk: WalkCache {
                span: None,
                path: [0; MAX_LEVELS as usize],
            },
        })
    }

    /// Forgets the cached walk to the last leaf table. Call it after changing the tables
    /// behind the engine's back (the engine itself forgets it whenever it frees a table).
    ///
    /// ```
    /// # use physvec::map::vtd::VtdFormat;
    /// # use physvec::map::RadixTable;
    /// let mut t = RadixTable::new(VtdFormat::new(48, true)?, 0x1000, 48)?;
    /// t.forget_walk();
    /// # Ok::<(), physvec::map::MapError>(())
    /// ```
    pub fn forget_walk(&mut self) {
        self.walk.span = None;
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

    fn granule(&self) -> u64 {
        self.geo.gmask.wrapping_add(1)
    }

    /// Checks alignment, emptiness and bounds (in this order); returns the last byte,
    /// `iova + len - 1`, which neither wraps nor leaves `2^va_bits`.
    #[inline]
    fn check(&self, iova: u64, phys: Option<u64>, len: u64) -> Result<u64, MapError> {
        if (iova | phys.unwrap_or(0) | len) & self.geo.gmask != 0 {
            return Err(self.misaligned(iova, phys, len));
        }
        if len == 0 {
            return Err(MapError::Empty);
        }
        // `len >= 1`; `va_bits` is in `granule bits + 1 ..= 64`.
        let mask = self.va_mask;
        let last = iova.wrapping_add(len.wrapping_sub(1));
        if last < iova || last > mask {
            return Err(MapError::AboveDmaMask {
                dma: iova,
                len,
                mask,
            });
        }
        if let Some(p) = phys {
            if p.checked_add(len.wrapping_sub(1)).is_none() {
                return Err(MapError::AddressOverflow { addr: p, len });
            }
        }
        Ok(last)
    }

    /// The error for the first of `iova`, `phys`, `len` that is not granule aligned.
    #[cold]
    fn misaligned(&self, iova: u64, phys: Option<u64>, len: u64) -> MapError {
        let g = self.granule();
        let value = [Some(iova), phys, Some(len)]
            .into_iter()
            .flatten()
            .find(|v| v & g.wrapping_sub(1) != 0)
            .unwrap_or(iova);
        MapError::Misaligned { value, granule: g }
    }

    /// `[iova, last]` as the general path's `[start, end)` in `u128`.
    fn wide(iova: u64, last: u64) -> (u128, u128) {
        (u128::from(iova), u128::from(last).saturating_add(1))
    }

    /// The count of present entries of `table`: the memory's counter if it keeps one,
    /// else the engine's map entry.
    fn used_slot<'a, M: TableMemory>(
        used: &'a mut BTreeMap<u64, u64>,
        mem: &'a mut M,
        table: u64,
    ) -> &'a mut u64 {
        match mem.used_count(table) {
            Some(c) => c,
            None => used.entry(table).or_insert(0),
        }
    }

    fn add_used<M: TableMemory>(&mut self, mem: &mut M, table: u64, n: u64) {
        if n > 0 {
            let u = Self::used_slot(&mut self.used, mem, table);
            *u = u.saturating_add(n);
        }
    }

    /// Lowers `table`'s count by `n`; returns what is left.
    fn sub_used<M: TableMemory>(&mut self, mem: &mut M, table: u64, n: u64) -> u64 {
        let u = Self::used_slot(&mut self.used, mem, table);
        *u = u.saturating_sub(n);
        *u
    }

    fn set_used<M: TableMemory>(&mut self, mem: &mut M, table: u64, n: u64) {
        *Self::used_slot(&mut self.used, mem, table) = n;
    }

    /// Forgets a freed table's count.
    fn drop_used<M: TableMemory>(&mut self, mem: &mut M, table: u64) {
        if let Some(c) = mem.used_count(table) {
            *c = 0;
        }
        self.used.remove(&table);
    }

    /// [`Self::count_leaves`] for `n` granule leaves of one table (`n <= entries`).
    #[inline]
    fn count_granules(&mut self, n: u64, add: bool) {
        // `n <= 2^13` entries of at most 64 KiB: the product is below 2^30.
        let bytes = n.wrapping_mul(self.granule());
        let [c, ..] = &mut self.counts.leaves;
        if add {
            *c = c.saturating_add(n);
            self.counts.mapped_bytes = self.counts.mapped_bytes.saturating_add(bytes);
        } else {
            *c = c.saturating_sub(n);
            self.counts.mapped_bytes = self.counts.mapped_bytes.saturating_sub(bytes);
        }
    }

    #[inline]
    fn count_leaves(&mut self, level: u32, n: u64, add: bool) {
        let bytes = match 1u64.checked_shl(self.geo.shift(level)) {
            Some(b) => n.saturating_mul(b),
            None if n == 0 => 0,
            None => u64::MAX,
        };
        if let Some(c) = self.counts.leaves.get_mut(level as usize) {
            *c = if add {
                c.saturating_add(n)
            } else {
                c.saturating_sub(n)
            };
        }
        self.counts.mapped_bytes = if add {
            self.counts.mapped_bytes.saturating_add(bytes)
        } else {
            self.counts.mapped_bytes.saturating_sub(bytes)
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
        let last = self.check(iova, Some(phys), len)?;
        if self.in_one_leaf_run(iova, last, len) {
            return self.map_leaf_run(mem, iova, phys, len, perm);
        }
        self.map_general(mem, iova, last, phys, perm)
    }

    /// Maps granules at consecutive IOVAs from `iova`: the granule at IOVA
    /// `iova + k * granule` to the physical granule `pages[k]` (one granule each), with
    /// `perm`. This is the link of scattered pages in one pass: one walk per leaf table
    /// (none while the cached walk reaches it) and one loop over its slots, instead of a
    /// walk and a call per page.
    ///
    /// Equivalent to one [`RadixTable::map`]`(iova + k * granule, pages[k], granule)`
    /// per page, in order, stopping at the first error: returns how many granules were
    /// mapped (they stay mapped) and that error (nothing changed for the page it names,
    /// nothing after it tried). A `pages[k]` that is not one granule long is refused
    /// with [`MapError::Misaligned`].
    ///
    /// ```
    /// # use physvec::map::vtd::VtdFormat;
    /// # use physvec::map::{IoPerm, MapError, RadixTable, TableMemory};
    /// # use physvec::PhysRange;
    /// # use std::collections::HashMap;
    /// # #[derive(Default)]
    /// # struct Heap { entries: HashMap<(u64, u64), u64>, next: u64 }
    /// # impl TableMemory for Heap {
    /// #     fn read_entry(&self, t: u64, i: u64) -> Result<u64, MapError> { Ok(self.entries.get(&(t, i)).copied().unwrap_or(0)) }
    /// #     fn write_entry(&mut self, t: u64, i: u64, raw: u64) -> Result<(), MapError> { self.entries.insert((t, i), raw); Ok(()) }
    /// #     fn alloc_table(&mut self) -> Result<u64, MapError> { self.next += 0x1000; Ok(self.next) }
    /// #     fn free_table(&mut self, t: u64) { self.entries.retain(|k, _| k.0 != t); }
    /// # }
    /// let mut mem = Heap::default(); // any `TableMemory`
    /// let root = mem.alloc_table()?;
    /// let mut t = RadixTable::new(VtdFormat::new(48, true)?, root, 48)?;
    /// let pages = [PhysRange::new(0x7000, 0x1000), PhysRange::new(0x3000, 0x1000)];
    /// let (n, r) = t.map_granules(&mut mem, 0x4000_0000, &pages, IoPerm::READ);
    /// assert_eq!((n, r), (2, Ok(())));
    /// assert_eq!(t.lookup(&mem, 0x4000_1234)?.map(|(p, ..)| p), Some(0x3234));
    /// # Ok::<(), physvec::map::MapError>(())
    /// ```
    pub fn map_granules<M: TableMemory>(
        &mut self,
        mem: &mut M,
        iova: u64,
        pages: &[PhysRange],
        perm: IoPerm,
    ) -> (usize, Result<(), MapError>) {
        let g = self.granule();
        let (gmask, gshift) = (self.geo.gmask, self.geo.gshift);
        let mut done = 0usize;
        let mut a = iova;
        while let Some(rest) = pages.get(done..).filter(|r| !r.is_empty()) {
            let first = rest.first().map_or(0, |r| r.addr().as_u64());
            let first_len = rest.first().map_or(0, |r| r.len());
            // The checks of `map` for one granule, then the page's length.
            if let Err(e) = self.check(a, Some(first), g) {
                return (done, Err(e));
            }
            if first_len != g {
                return (
                    done,
                    Err(MapError::Misaligned {
                        value: first_len,
                        granule: g,
                    }),
                );
            }
            let t = match self.reach_leaf(mem, a, true) {
                Ok(Reach::Leaf(t)) => t,
                Ok(Reach::Large | Reach::Hole(_)) => {
                    return (done, Err(MapError::AlreadyMapped { iova: a }))
                }
                Err(e) => {
                    self.undo_map(mem, a, g);
                    return (done, Err(e));
                }
            };
            // The pages of this leaf table's span, none above the IOVA limit (`a` is
            // under it, checked).
            let i0 = self.geo.leaf_index(a);
            let in_span = self.geo.entries().saturating_sub(i0);
            let under_limit = (self.va_mask.wrapping_sub(a) >> gshift).saturating_add(1);
            let m = usize::try_from(in_span.min(under_limit))
                .unwrap_or(usize::MAX)
                .min(rest.len());
            let chunk = rest.get(..m).unwrap_or_default();
            let fmt = &self.fmt;
            let Some(d) = mem.direct(t) else {
                // Table memory without direct access: one map per page.
                for r in chunk {
                    let p = r.addr().as_u64();
                    let e = match self.check(a, Some(p), g) {
                        Ok(_) if r.len() != g => Err(MapError::Misaligned {
                            value: r.len(),
                            granule: g,
                        }),
                        Ok(_) => self.map(mem, a, p, g, perm),
                        Err(e) => Err(e),
                    };
                    if let Err(e) = e {
                        return (done, Err(e));
                    }
                    done = done.saturating_add(1);
                    a = a.wrapping_add(g);
                }
                continue;
            };
            let slots = usize::try_from(i0)
                .ok()
                .and_then(|i| d.entries.get_mut(i..i.saturating_add(m)))
                .unwrap_or_default();
            let mut written = 0u64;
            let mut failed = None;
            for (slot, r) in slots.iter_mut().zip(chunk) {
                let p = r.addr().as_u64();
                // The checks of `map` for one granule at `a + written * g`.
                let at = a.wrapping_add(written << gshift);
                let e = if p & gmask != 0 {
                    Some(MapError::Misaligned {
                        value: p,
                        granule: g,
                    })
                } else if r.len() != g {
                    Some(MapError::Misaligned {
                        value: r.len(),
                        granule: g,
                    })
                } else if fmt.decode(*slot, 0).is_present() {
                    Some(MapError::AlreadyMapped { iova: at })
                } else if !fmt.leaf_allowed(p, 0) {
                    Some(MapError::InterruptWindow { phys: p })
                } else {
                    None
                };
                if let Some(e) = e {
                    failed = Some((at, e));
                    break;
                }
                *slot = fmt.encode_leaf(p, perm, 0);
                written = written.wrapping_add(1);
            }
            if slots.len() < m && failed.is_none() {
                failed = Some((a, MapError::TableMemory { addr: t }));
            }
            *d.used = d.used.saturating_add(written);
            self.count_granules(written, true);
            done = done.saturating_add(usize::try_from(written).unwrap_or(usize::MAX));
            a = a.wrapping_add(written << gshift);
            if let Some((at, e)) = failed {
                if !matches!(e, MapError::AlreadyMapped { .. }) && written == 0 {
                    // A leaf table this call created stays only if something is in it.
                    self.undo_map(mem, at, g);
                }
                return (done, Err(e));
            }
        }
        (done, Ok(()))
    }

    /// [`RadixTable::map`] of a checked range that may use large leaves or cross leaf
    /// tables: one recursive walk over the range (out of line: the granule-leaf path
    /// stays small).
    #[inline(never)]
    fn map_general<M: TableMemory>(
        &mut self,
        mem: &mut M,
        iova: u64,
        last: u64,
        phys: u64,
        perm: IoPerm,
    ) -> Result<(), MapError> {
        let (s, e) = Self::wide(iova, last);
        if let Some(a) = self.first(mem, self.root, self.top(), s, e, true)? {
            return Err(MapError::AlreadyMapped { iova: a });
        }
        let r = self.map_rec(mem, self.root, self.top(), s, e, u128::from(phys), perm);
        if r.is_err() {
            // The range was empty before: clearing it restores the old state.
            let _ = self.clear_rec(mem, self.root, self.top(), s, e);
        }
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn map_rec<M: TableMemory>(
        &mut self,
        mem: &mut M,
        table: u64,
        level: u32,
        s: u128,
        e: u128,
        phys: u128,
        perm: IoPerm,
    ) -> Result<(), MapError> {
        let bs = self.geo.block(level);
        let mut batch = Batch::default();
        let r = self.map_level(mem, table, level, s, e, phys, perm, bs, &mut batch);
        self.add_used(mem, table, batch.leaves);
        self.count_leaves(level, batch.leaves, true);
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn map_level<M: TableMemory>(
        &mut self,
        mem: &mut M,
        table: u64,
        level: u32,
        s: u128,
        e: u128,
        phys: u128,
        perm: IoPerm,
        bs: u128,
        batch: &mut Batch,
    ) -> Result<(), MapError> {
        // The recursion keeps the walk cache's path: the ancestors of the leaf table
        // being filled are the tables of the enclosing calls.
        if level > 0 {
            self.walk.span = None;
            if let Some(p) = self.walk.path.get_mut(level as usize) {
                *p = table;
            }
        }
        let mut a = s;
        while a < e {
            let idx = self.geo.index(level, a);
            let eb = a & !bs.wrapping_sub(1);
            let ee = e.min(eb.saturating_add(bs));
            // `a - s` < len and `phys + len` <= 2^64 (checked): `p` fits in 64 bits.
            let p = phys.wrapping_add(a.wrapping_sub(s));
            let p64 = u64::try_from(p).unwrap_or(u64::MAX);
            let whole = a == eb && ee.wrapping_sub(eb) == bs && p & bs.wrapping_sub(1) == 0;
            let large_ok =
                level <= self.fmt.max_leaf_level() && whole && self.fmt.leaf_allowed(p64, level);
            if level == 0 || large_ok {
                if !self.fmt.leaf_allowed(p64, level) {
                    // Only at level 0: a large leaf that is not allowed is split instead.
                    return Err(MapError::InterruptWindow { phys: p64 });
                }
                mem.write_entry(table, idx, self.fmt.encode_leaf(p64, perm, level))?;
                batch.leaves = batch.leaves.saturating_add(1);
                a = ee;
                continue;
            }
            let child = match self.fmt.decode(mem.read_entry(table, idx)?, level) {
                Pte::Table(c) => c,
                Pte::Leaf { .. } => {
                    return Err(MapError::AlreadyMapped {
                        iova: u64::try_from(a).unwrap_or(u64::MAX),
                    })
                }
                Pte::Empty => self.new_table(mem, table, idx, level)?,
            };
            if level == 1 {
                // A run of granule leaves in one leaf table: one slice pass. Below 2^64
                // (checked), so the casts are exact.
                let (a64, len) = (a as u64, ee.wrapping_sub(a) as u64);
                self.walk.span = None;
                self.fill_leaves(mem, child, a64, p64, len, perm)?;
                // `path[1..]` hold this table and its ancestors (set on entry above).
                self.walk.path[0] = child;
                self.walk.span = Some(self.geo.span(a64));
            } else {
                self.map_rec(mem, child, level.saturating_sub(1), a, ee, p, perm)?;
            }
            a = ee;
        }
        Ok(())
    }

    /// Links a new, empty table at entry `idx` of `table` (at `level`).
    fn new_table<M: TableMemory>(
        &mut self,
        mem: &mut M,
        table: u64,
        idx: u64,
        level: u32,
    ) -> Result<u64, MapError> {
        let c = mem.alloc_table()?;
        self.set_used(mem, c, 0);
        if let Err(err) = mem.write_entry(table, idx, self.fmt.encode_table(c, level)) {
            self.drop_used(mem, c);
            mem.free_table(c);
            return Err(err);
        }
        self.add_used(mem, table, 1);
        self.counts.tables = self.counts.tables.saturating_add(1);
        Ok(c)
    }

    /// Whether `[iova, iova + len)` (checked) lies in one leaf table's span and maps
    /// with granule leaves only (smaller than a level-1 block, or no large leaves).
    #[inline]
    fn in_one_leaf_run(&self, iova: u64, last: u64, len: u64) -> bool {
        self.geo.span(iova) == self.geo.span(last)
            && (len <= self.geo.span_mask || self.fmt.max_leaf_level() == 0)
    }

    /// Walks to the leaf table of `iova`'s span (creating missing tables when
    /// `create`), or takes it from the cached walk.
    #[inline]
    fn reach_leaf<M: TableMemory>(
        &mut self,
        mem: &mut M,
        iova: u64,
        create: bool,
    ) -> Result<Reach, MapError> {
        let span = self.geo.span(iova);
        if self.walk.span == Some(span) {
            return Ok(Reach::Leaf(self.walk.path[0]));
        }
        self.walk_to_leaf(mem, iova, span, create)
    }

    #[inline(never)]
    fn walk_to_leaf<M: TableMemory>(
        &mut self,
        mem: &mut M,
        iova: u64,
        span: u64,
        create: bool,
    ) -> Result<Reach, MapError> {
        self.walk.span = None;
        let mut table = self.root;
        let mut level = self.top();
        while level > 0 {
            if let Some(p) = self.walk.path.get_mut(level as usize) {
                *p = table;
            }
            let idx = self.geo.index64(level, iova);
            table = match self.fmt.decode(mem.read_entry(table, idx)?, level) {
                Pte::Table(c) => c,
                Pte::Leaf { .. } => return Ok(Reach::Large),
                Pte::Empty if !create => return Ok(Reach::Hole(level)),
                Pte::Empty => self.new_table(mem, table, idx, level)?,
            };
            level = level.wrapping_sub(1);
        }
        self.walk.path[0] = table;
        self.walk.span = Some(span);
        Ok(Reach::Leaf(table))
    }

    /// [`RadixTable::map`] of a range inside one leaf table's span: one walk (none when
    /// the last one reached the same leaf table), one pass over the slots.
    fn map_leaf_run<M: TableMemory>(
        &mut self,
        mem: &mut M,
        iova: u64,
        phys: u64,
        len: u64,
        perm: IoPerm,
    ) -> Result<(), MapError> {
        let r = match self.reach_leaf(mem, iova, true) {
            Ok(Reach::Leaf(t)) => self.fill_leaves(mem, t, iova, phys, len, perm),
            // A large leaf covers `iova` (a hole cannot remain when creating).
            Ok(Reach::Large | Reach::Hole(_)) => return Err(MapError::AlreadyMapped { iova }),
            Err(e) => Err(e),
        };
        match r {
            // Found before anything changed, in a leaf table that already existed.
            Err(MapError::AlreadyMapped { .. }) | Ok(()) => r,
            Err(_) => {
                self.undo_map(mem, iova, len);
                r
            }
        }
    }

    /// Clears `[iova, iova + len)` after a failed map that found it empty (the walk
    /// stopped at an empty entry or the slots were checked empty): restores the old state.
    #[cold]
    #[inline(never)]
    fn undo_map<M: TableMemory>(&mut self, mem: &mut M, iova: u64, len: u64) {
        let s = u128::from(iova);
        let _ = self.clear_rec(mem, self.root, self.top(), s, s.saturating_add(len.into()));
    }

    /// Writes granule leaves for `[iova, iova + len)` into leaf table `t`, after checking
    /// the slots are empty and the format allows every leaf.
    // Inlined into both callers: the granule-leaf path of `map` must stay one frame.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn fill_leaves<M: TableMemory>(
        &mut self,
        mem: &mut M,
        t: u64,
        iova: u64,
        phys: u64,
        len: u64,
        perm: IoPerm,
    ) -> Result<(), MapError> {
        let gshift = self.geo.gshift;
        let g = self.granule();
        let i0 = self.geo.leaf_index(iova);
        let n = len >> gshift;
        // In one span: `i0 + n <= entries`.
        let i1 = i0.saturating_add(n);
        let mapped_at = |k: u64| iova.wrapping_add(k.wrapping_shl(gshift));
        let fmt = &self.fmt;
        if let Some(d) = mem.direct(t) {
            if n == 1 {
                // One granule (a scattered page): no loops.
                let slot = usize::try_from(i0)
                    .ok()
                    .and_then(|i| d.entries.get_mut(i))
                    .ok_or(MapError::TableMemory { addr: t })?;
                if fmt.decode(*slot, 0).is_present() {
                    return Err(MapError::AlreadyMapped { iova });
                }
                if !fmt.leaf_allowed(phys, 0) {
                    return Err(MapError::InterruptWindow { phys });
                }
                *slot = fmt.encode_leaf(phys, perm, 0);
                *d.used = d.used.saturating_add(1);
                self.count_granules(1, true);
                return Ok(());
            }
            let slots = usize::try_from(i0)
                .ok()
                .zip(usize::try_from(i1).ok())
                .and_then(|(a, b)| d.entries.get_mut(a..b))
                .ok_or(MapError::TableMemory { addr: t })?;
            if let Some(k) = slots
                .iter()
                .position(|&raw| fmt.decode(raw, 0).is_present())
            {
                return Err(MapError::AlreadyMapped {
                    iova: mapped_at(k as u64),
                });
            }
            check_leaves_allowed(fmt, phys, n, g)?;
            let mut p = phys;
            for slot in slots.iter_mut() {
                *slot = fmt.encode_leaf(p, perm, 0);
                // Wraps only past the last slot of a range ending at 2^64.
                p = p.wrapping_add(g);
            }
            *d.used = d.used.saturating_add(n);
        } else {
            for k in 0..n {
                if fmt
                    .decode(mem.read_entry(t, i0.wrapping_add(k))?, 0)
                    .is_present()
                {
                    return Err(MapError::AlreadyMapped { iova: mapped_at(k) });
                }
            }
            check_leaves_allowed(fmt, phys, n, g)?;
            let mut p = phys;
            for k in 0..n {
                let raw = self.fmt.encode_leaf(p, perm, 0);
                if let Err(e) = mem.write_entry(t, i0.wrapping_add(k), raw) {
                    // Count what was written, so the caller's rollback clears it.
                    self.add_used(mem, t, k);
                    self.count_granules(k, true);
                    return Err(e);
                }
                p = p.wrapping_add(g);
            }
            self.add_used(mem, t, n);
        }
        self.count_granules(n, true);
        Ok(())
    }

    /// [`Self::scan`] when the fast unmap is likely to apply; [`Scan::Large`] without a
    /// look when the range covers a whole leaf-table span (where a large leaf may sit)
    /// and the cached walk is not to a leaf table inside it. A reservation's release
    /// right after its links finds the cache there; a large leaf's unmap saves the scan.
    #[inline]
    fn scan_if_likely<M: TableMemory>(
        &mut self,
        mem: &mut M,
        s: u64,
        last: u64,
        len: u64,
        need_all: bool,
    ) -> Result<Scan, MapError> {
        let whole_span = len > self.geo.span_mask && self.fmt.max_leaf_level() > 0;
        let cached_inside = self
            .walk
            .span
            .is_some_and(|sp| (self.geo.span(s)..=self.geo.span(last)).contains(&sp));
        if whole_span && !cached_inside {
            return Ok(Scan::Large);
        }
        self.scan(mem, s, last, need_all)
    }

    /// Looks at `[s, last]` leaf table by leaf table before a fast unmap: whether a large
    /// leaf needs the general path, and (`need_all`) the first unmapped granule.
    fn scan<M: TableMemory>(
        &mut self,
        mem: &mut M,
        s: u64,
        last: u64,
        need_all: bool,
    ) -> Result<Scan, MapError> {
        let mut a = s;
        loop {
            let mut end = last.min(a | self.geo.span_mask);
            match self.reach_leaf(mem, a, false)? {
                Reach::Large => return Ok(Scan::Large),
                Reach::Hole(_) if need_all => return Ok(Scan::Unmapped(a)),
                Reach::Hole(level) => end = last.min(a | self.geo.block_mask64(level)),
                Reach::Leaf(t) if need_all => {
                    let gshift = self.geo.gshift;
                    let i0 = self.geo.index64(0, a);
                    let i1 = self.geo.index64(0, end);
                    for i in i0..=i1 {
                        if !matches!(self.fmt.decode(mem.read_entry(t, i)?, 0), Pte::Leaf { .. }) {
                            return Ok(Scan::Unmapped(
                                a.wrapping_add(i.wrapping_sub(i0).wrapping_shl(gshift)),
                            ));
                        }
                    }
                }
                Reach::Leaf(_) => {}
            }
            if end >= last {
                return Ok(Scan::Fast);
            }
            a = end.wrapping_add(1);
        }
    }

    /// Clears every granule leaf in `[s, last]` leaf table by leaf table (after a scan
    /// found no large leaf), freeing tables left empty. Returns the bytes unmapped.
    fn clear_runs<M: TableMemory>(
        &mut self,
        mem: &mut M,
        s: u64,
        last: u64,
    ) -> Result<u64, MapError> {
        let mut a = s;
        let mut bytes = 0u64;
        loop {
            let mut end = last.min(a | self.geo.span_mask);
            match self.reach_leaf(mem, a, false)? {
                Reach::Leaf(t) => {
                    let n = self.clear_leaves(mem, t, a, end)?;
                    bytes = bytes.saturating_add(n);
                }
                Reach::Hole(level) => end = last.min(a | self.geo.block_mask64(level)),
                Reach::Large => {
                    // The scan saw none: the tables changed behind the engine's back.
                    // The general path stays correct.
                    let (x, y) = (u128::from(a), u128::from(end).saturating_add(1));
                    self.split_at(mem, x)?;
                    self.split_at(mem, y)?;
                    let n = self.clear_rec(mem, self.root, self.top(), x, y)?;
                    bytes = bytes.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
                }
            }
            if end >= last {
                return Ok(bytes);
            }
            a = end.wrapping_add(1);
        }
    }

    /// Clears the leaves of leaf table `t` in `[a, end]` (one span); frees the table and
    /// then every ancestor left empty (never the root). Returns the bytes unmapped.
    fn clear_leaves<M: TableMemory>(
        &mut self,
        mem: &mut M,
        t: u64,
        a: u64,
        end: u64,
    ) -> Result<u64, MapError> {
        let i0 = self.geo.index64(0, a);
        let i1 = self.geo.index64(0, end).saturating_add(1);
        let fmt = &self.fmt;
        let mut n = 0u64;
        let left;
        if let Some(d) = mem.direct(t) {
            let slots = usize::try_from(i0)
                .ok()
                .zip(usize::try_from(i1).ok())
                .and_then(|(x, y)| d.entries.get_mut(x..y))
                .ok_or(MapError::TableMemory { addr: t })?;
            for slot in slots.iter_mut() {
                // A leaf in the range lies wholly inside it (granule leaves).
                if matches!(fmt.decode(*slot, 0), Pte::Leaf { .. }) {
                    *slot = 0;
                    n = n.wrapping_add(1); // at most `entries`
                }
            }
            *d.used = d.used.saturating_sub(n);
            left = *d.used;
        } else {
            let mut r = Ok(());
            for i in i0..i1 {
                let step = mem.read_entry(t, i).and_then(|raw| {
                    if matches!(fmt.decode(raw, 0), Pte::Leaf { .. }) {
                        mem.write_entry(t, i, 0)?;
                        n = n.wrapping_add(1); // at most `entries`
                    }
                    Ok(())
                });
                if step.is_err() {
                    r = step;
                    break;
                }
            }
            left = self.sub_used(mem, t, n);
            if let Err(e) = r {
                self.count_granules(n, false);
                return Err(e);
            }
        }
        self.count_granules(n, false);
        if left == 0 {
            self.free_up(mem, a)?;
        }
        Ok(n.saturating_mul(self.granule()))
    }

    /// Frees the (empty) leaf table on the cached path to `a`, then each ancestor left
    /// empty by that, below the root.
    fn free_up<M: TableMemory>(&mut self, mem: &mut M, a: u64) -> Result<(), MapError> {
        self.walk.span = None;
        let top = self.top();
        let mut level = 0u32;
        while level < top {
            let up = level.wrapping_add(1); // < top <= 5
            let (Some(&child), Some(&parent)) = (
                self.walk.path.get(level as usize),
                self.walk.path.get(up as usize),
            ) else {
                return Ok(());
            };
            mem.write_entry(parent, self.geo.index64(up, a), 0)?;
            self.drop_used(mem, child);
            mem.free_table(child);
            self.counts.tables = self.counts.tables.saturating_sub(1);
            if self.sub_used(mem, parent, 1) > 0 {
                break;
            }
            level = up;
        }
        Ok(())
    }

    /// First IOVA in `[s, e)` that is mapped (`want_present`) or not mapped.
    fn first<M: TableMemory>(
        &self,
        mem: &M,
        table: u64,
        level: u32,
        s: u128,
        e: u128,
        want_present: bool,
    ) -> Result<Option<u64>, MapError> {
        let bs = self.geo.block(level);
        let mut a = s;
        while a < e {
            let idx = self.geo.index(level, a);
            let eb = a & !bs.wrapping_sub(1);
            let ee = e.min(eb.saturating_add(bs));
            let found = match self.fmt.decode(mem.read_entry(table, idx)?, level) {
                Pte::Empty => !want_present,
                Pte::Leaf { .. } => want_present,
                Pte::Table(c) if level > 0 => {
                    if let Some(x) =
                        self.first(mem, c, level.wrapping_sub(1), a, ee, want_present)?
                    {
                        return Ok(Some(x));
                    }
                    false
                }
                Pte::Table(_) => false,
            };
            if found {
                // `a` < e <= 2^64.
                return Ok(Some(u64::try_from(a).unwrap_or(u64::MAX)));
            }
            a = ee;
        }
        Ok(None)
    }

    /// Splits every large leaf that contains `addr` but does not start at it, down to the
    /// level where `addr` is a block boundary. Translations do not change.
    fn split_at<M: TableMemory>(&mut self, mem: &mut M, addr: u128) -> Result<(), MapError> {
        let mut table = self.root;
        let mut level = self.top();
        while level > 0 {
            let bs = self.geo.block(level);
            if addr & bs.wrapping_sub(1) == 0 {
                return Ok(());
            }
            let idx = self.geo.index(level, addr);
            match self.fmt.decode(mem.read_entry(table, idx)?, level) {
                Pte::Empty => return Ok(()),
                Pte::Table(c) => table = c,
                Pte::Leaf { phys, perm } => {
                    let child = mem.alloc_table()?;
                    let cl = level.wrapping_sub(1);
                    let cbs = u64::try_from(self.geo.block(cl)).unwrap_or(u64::MAX);
                    let n = self.geo.entries();
                    for k in 0..n {
                        let p = phys.wrapping_add(k.wrapping_mul(cbs));
                        if let Err(err) =
                            mem.write_entry(child, k, self.fmt.encode_leaf(p, perm, cl))
                        {
                            Self::free_written(mem, child, k);
                            return Err(err);
                        }
                    }
                    if let Err(err) =
                        mem.write_entry(table, idx, self.fmt.encode_table(child, level))
                    {
                        Self::free_written(mem, child, n);
                        return Err(err);
                    }
                    self.set_used(mem, child, n);
                    self.counts.tables = self.counts.tables.saturating_add(1);
                    self.count_leaves(level, 1, false);
                    self.count_leaves(cl, n, true);
                    table = child;
                }
            }
            level = level.wrapping_sub(1);
        }
        Ok(())
    }

    /// Frees an unlinked table after clearing its first `n` entries (best effort: the
    /// memory just failed a write), so that freed tables are empty as
    /// [`TableMemory::free_table`] promises.
    #[cold]
    fn free_written<M: TableMemory>(mem: &mut M, table: u64, n: u64) {
        for k in 0..n {
            let _ = mem.write_entry(table, k, 0);
        }
        mem.free_table(table);
    }

    /// Clears every leaf in `[s, e)` (callers split straddling leaves first) and frees
    /// tables left empty. Returns the bytes unmapped.
    fn clear_rec<M: TableMemory>(
        &mut self,
        mem: &mut M,
        table: u64,
        level: u32,
        s: u128,
        e: u128,
    ) -> Result<u128, MapError> {
        let bs = self.geo.block(level);
        let mut a = s;
        let mut cleared = 0u128;
        let mut leaves = 0u64;
        let mut r = Ok(());
        while a < e {
            let idx = self.geo.index(level, a);
            let eb = a & !bs.wrapping_sub(1);
            let ee = e.min(eb.saturating_add(bs));
            let step = (|| -> Result<(), MapError> {
                match self.fmt.decode(mem.read_entry(table, idx)?, level) {
                    Pte::Empty => {}
                    Pte::Leaf { .. } => {
                        // After the splits, a leaf in the range is wholly inside it.
                        mem.write_entry(table, idx, 0)?;
                        leaves = leaves.saturating_add(1);
                        cleared = cleared.saturating_add(bs);
                    }
                    Pte::Table(c) if level > 0 => {
                        let n = self.clear_rec(mem, c, level.wrapping_sub(1), a, ee)?;
                        cleared = cleared.saturating_add(n);
                        if *Self::used_slot(&mut self.used, mem, c) == 0 {
                            self.walk.span = None;
                            mem.write_entry(table, idx, 0)?;
                            self.drop_used(mem, c);
                            mem.free_table(c);
                            self.sub_used(mem, table, 1);
                            self.counts.tables = self.counts.tables.saturating_sub(1);
                        }
                    }
                    Pte::Table(_) => {}
                }
                Ok(())
            })();
            if step.is_err() {
                r = step;
                break;
            }
            a = ee;
        }
        self.sub_used(mem, table, leaves);
        self.count_leaves(level, leaves, false);
        r.map(|()| cleared)
    }

    /// Unmaps `[iova, iova + len)`; every granule of it must be mapped. Large leaves that
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
        let last = self.check(iova, None, len)?;
        match self.scan_if_likely(mem, iova, last, len, true)? {
            Scan::Fast => return self.clear_runs(mem, iova, last).map(|_| ()),
            Scan::Unmapped(a) => {
                return Err(MapError::NotMapped {
                    dma: a,
                    len: self.granule(),
                })
            }
            Scan::Large => {}
        }
        let (s, e) = Self::wide(iova, last);
        if let Some(a) = self.first(mem, self.root, self.top(), s, e, false)? {
            return Err(MapError::NotMapped {
                dma: a,
                len: self.granule(),
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
        let last = self.check(iova, None, len)?;
        if let Scan::Fast = self.scan_if_likely(mem, iova, last, len, false)? {
            return self.clear_runs(mem, iova, last);
        }
        let (s, e) = Self::wide(iova, last);
        self.split_at(mem, s)?;
        self.split_at(mem, e)?;
        let n = self.clear_rec(mem, self.root, self.top(), s, e)?;
        Ok(u64::try_from(n).unwrap_or(u64::MAX))
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
        let a = u128::from(iova);
        if a >= 1u128 << self.va_bits.min(64) {
            return Ok(None);
        }
        let mut table = self.root;
        let mut level = self.top();
        loop {
            let idx = self.geo.index(level, a);
            match self.fmt.decode(mem.read_entry(table, idx)?, level) {
                Pte::Empty => return Ok(None),
                Pte::Leaf { phys, perm } => {
                    // Below the block size (< 2^64 for any leaf level): the cast is exact.
                    let off = (a & self.geo.block(level).wrapping_sub(1)) as u64;
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

/// Whether `fmt` allows a granule leaf for each of the `n` granules from `phys`; the
/// first refused one is the error (checked before any write).
#[inline]
fn check_leaves_allowed<F: PageTableFormat>(
    fmt: &F,
    phys: u64,
    n: u64,
    g: u64,
) -> Result<(), MapError> {
    let mut p = phys;
    for _ in 0..n {
        if !fmt.leaf_allowed(p, 0) {
            return Err(MapError::InterruptWindow { phys: p });
        }
        p = p.wrapping_add(g);
    }
    Ok(())
}

#[cfg(test)]
#[allow(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    /// A 4-level, 4 KiB format with 2 MiB / 1 GiB leaves that refuses leaves over
    /// `[WINDOW, WINDOW + 2 MiB)`, as VT-d refuses the interrupt window.
    struct Toy;
    const WINDOW: u64 = 0x20_0000 * 5;
    impl PageTableFormat for Toy {
        fn levels(&self) -> u32 {
            4
        }
        fn max_leaf_level(&self) -> u32 {
            2
        }
        fn decode(&self, raw: u64, _level: u32) -> Pte {
            match raw & 3 {
                1 => Pte::Leaf {
                    phys: raw & !0xfff,
                    perm: IoPerm::from_bits(((raw >> 2) & 7) as u8),
                },
                2 => Pte::Table(raw & !0xfff),
                _ => Pte::Empty,
            }
        }
        fn encode_table(&self, table: u64, _level: u32) -> u64 {
            table | 2
        }
        fn encode_leaf(&self, phys: u64, perm: IoPerm, _level: u32) -> u64 {
            phys | u64::from(perm.bits()) << 2 | 1
        }
        fn leaf_allowed(&self, phys: u64, level: u32) -> bool {
            let size = 1u64 << (12 + 9 * level);
            phys.saturating_add(size) <= WINDOW || phys >= WINDOW + 0x20_0000
        }
    }

    /// Tables in a vector; `direct` turns the slice fast path (and the memory's used
    /// counters) on or off, so both engine paths run on the same operations.
    struct Mem {
        tables: Vec<Vec<u64>>,
        used: Vec<u64>,
        free: Vec<usize>,
        direct: bool,
        /// Lend only this many entries through `direct` (a broken memory).
        short: Option<usize>,
        /// Refuse one write once this many more have been made (a memory that fails
        /// once).
        writes_left: Option<usize>,
    }

    impl Mem {
        fn new(direct: bool) -> Self {
            Mem {
                tables: Vec::new(),
                used: Vec::new(),
                free: Vec::new(),
                direct,
                short: None,
                writes_left: None,
            }
        }
        fn slot(table: u64) -> usize {
            (table >> 12) as usize - 1
        }
    }

    impl TableMemory for Mem {
        fn read_entry(&self, table: u64, index: u64) -> Result<u64, MapError> {
            Ok(self.tables[Self::slot(table)][index as usize])
        }
        fn write_entry(&mut self, table: u64, index: u64, raw: u64) -> Result<(), MapError> {
            if let Some(left) = &mut self.writes_left {
                if *left == 0 {
                    self.writes_left = None;
                    return Err(MapError::TableMemory { addr: table });
                }
                *left -= 1;
            }
            self.tables[Self::slot(table)][index as usize] = raw;
            Ok(())
        }
        fn alloc_table(&mut self) -> Result<u64, MapError> {
            let s = match self.free.pop() {
                Some(s) => {
                    self.tables[s].fill(0);
                    s
                }
                None => {
                    self.tables.push(alloc::vec![0; 512]);
                    self.used.push(0);
                    self.tables.len() - 1
                }
            };
            self.used[s] = 0;
            Ok((s as u64 + 1) << 12)
        }
        fn free_table(&mut self, table: u64) {
            let s = Self::slot(table);
            assert!(
                self.tables[s].iter().all(|&e| e == 0),
                "freed a non-empty table"
            );
            self.free.push(s);
        }
        fn used_count(&mut self, table: u64) -> Option<&mut u64> {
            if self.direct {
                self.used.get_mut(Self::slot(table))
            } else {
                None
            }
        }
        fn direct(&mut self, table: u64) -> Option<DirectTable<'_>> {
            if !self.direct {
                return None;
            }
            let s = Self::slot(table);
            let n = self.short.unwrap_or(self.tables[s].len());
            Some(DirectTable {
                entries: &mut self.tables[s][..n],
                used: &mut self.used[s],
            })
        }
    }

    #[derive(Clone, Copy, Debug)]
    enum Op {
        Map(u64, u64, u64),
        Unmap(u64, u64),
        UnmapPresent(u64, u64),
    }

    /// Page numbers: often 512-aligned (large leaves), within 4 leaf-table spans.
    fn page() -> impl Strategy<Value = u64> {
        prop_oneof![0u64..2048, (0u64..4).prop_map(|b| b * 512)]
    }
    fn pages() -> impl Strategy<Value = u64> {
        prop_oneof![1u64..40, Just(512u64), 1u64..1100]
    }
    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (page(), page(), pages()).prop_map(|(i, p, n)| Op::Map(i, p, n)),
            1 => (page(), pages()).prop_map(|(i, n)| Op::Unmap(i, n)),
            1 => (page(), pages()).prop_map(|(i, n)| Op::UnmapPresent(i, n)),
        ]
    }

    fn engine(m: &mut Mem) -> RadixTable<Toy> {
        let root = m.alloc_table().unwrap();
        RadixTable::new(Toy, root, 48).unwrap()
    }

    #[test]
    fn argument_errors_come_in_order() {
        let mut m = Mem::new(true);
        let root = m.alloc_table().unwrap();
        let mut t = RadixTable::new(Toy, root, 39).unwrap();
        let r = IoPerm::READ;
        assert_eq!(
            t.map(&mut m, 0x1000, 0x2800, 0x1000, r),
            Err(MapError::Misaligned {
                value: 0x2800,
                granule: 0x1000
            })
        );
        assert_eq!(
            t.map(&mut m, 0x1000, 0x2000, 0x1001, r),
            Err(MapError::Misaligned {
                value: 0x1001,
                granule: 0x1000
            })
        );
        assert_eq!(t.map(&mut m, 0x1000, 0x2000, 0, r), Err(MapError::Empty));
        let mask = (1u64 << 39) - 1;
        assert_eq!(
            t.map(&mut m, mask - 0xfff, 0, 0x2000, r),
            Err(MapError::AboveDmaMask {
                dma: mask - 0xfff,
                len: 0x2000,
                mask
            })
        );
        assert_eq!(
            t.unmap(&mut m, u64::MAX - 0xfff, 0x2000),
            Err(MapError::AboveDmaMask {
                dma: u64::MAX - 0xfff,
                len: 0x2000,
                mask
            })
        );
        assert_eq!(
            t.map(&mut m, 0, u64::MAX - 0xfff, 0x2000, r),
            Err(MapError::AddressOverflow {
                addr: u64::MAX - 0xfff,
                len: 0x2000
            })
        );
        // The last granule below 2^64 maps (no wrap in the fill).
        t.map(&mut m, mask - 0xfff, u64::MAX - 0xfff, 0x1000, r)
            .unwrap();
        assert_eq!(t.lookup(&m, mask).unwrap().map(|x| x.0), Some(u64::MAX));
        assert_eq!(t.unmap_present(&mut m, 0, 1 << 39), Ok(0x1000));
        assert_eq!(t.counts(), RadixCounts::default());
    }

    /// Misalignments that cancel out under `^` (two offsets of 0x800) are still
    /// reported, in argument order, by `map` and `unmap`; nothing is mapped.
    #[test]
    fn misalignments_that_cancel_out_are_still_misaligned() {
        let mut m = Mem::new(true);
        let mut t = engine(&mut m);
        let r = IoPerm::READ;
        let mis = |value| MapError::Misaligned {
            value,
            granule: 0x1000,
        };
        // IOVA and physical address off by the same amount, whole-page length.
        assert_eq!(t.map(&mut m, 0x1800, 0x2800, 0x1000, r), Err(mis(0x1800)));
        // Physical address and length off by the same amount, aligned IOVA.
        assert_eq!(t.map(&mut m, 0x1000, 0x2800, 0x1800, r), Err(mis(0x2800)));
        // IOVA and length, for unmap.
        assert_eq!(t.unmap(&mut m, 0x1800, 0x1800), Err(mis(0x1800)));
        assert_eq!(t.unmap_present(&mut m, 0x1800, 0x1800), Err(mis(0x1800)));
        assert_eq!(t.counts(), RadixCounts::default());
    }

    /// `root()` is the table the engine was built on, and a map writes its top entry
    /// there.
    #[test]
    fn root_is_the_top_table() {
        let mut m = Mem::new(true);
        let root = m.alloc_table().unwrap();
        let _other = m.alloc_table().unwrap();
        let mut t = RadixTable::new(Toy, root, 48).unwrap();
        assert_eq!(t.root(), root);
        t.map(&mut m, 0x40_0000_0000, 0x5000, 0x1000, IoPerm::READ)
            .unwrap();
        // Level 3 index of 0x40_0000_0000 (bits 39..48): 0x40_0000_0000 >> 39 = 0.
        assert!(matches!(
            Toy.decode(m.read_entry(root, 0).unwrap(), 3),
            Pte::Table(_)
        ));
    }

    /// A map across leaf-table spans (the general path) leaves the cached walk on its
    /// last leaf table with that table's real ancestors, so a fast unmap that empties
    /// the table frees it and unlinks it from its own parent, not from the tables of an
    /// earlier walk elsewhere in the IOVA space.
    #[test]
    fn a_map_across_spans_leaves_a_walk_with_its_own_ancestors() {
        for direct in [true, false] {
            let mut m = Mem::new(direct);
            let mut t = engine(&mut m);
            let r = IoPerm::READ;
            // An earlier walk under another level-3 entry.
            t.map(&mut m, 0x40_0000_0000, 0x9000, 0x1000, r).unwrap();
            // Two spans: the last granule of one leaf table, the first of the next.
            t.map(&mut m, 0x1f_f000, 0x20_0000, 0x2000, r).unwrap();
            // The next span's only page: its leaf table is emptied and freed.
            t.unmap(&mut m, 0x20_0000, 0x1000).unwrap();
            assert_eq!(t.lookup(&m, 0x40_0000_0000).unwrap(), Some((0x9000, r, 0)));
            assert_eq!(t.lookup(&m, 0x1f_f000).unwrap(), Some((0x20_0000, r, 0)));
            assert_eq!(t.lookup(&m, 0x20_0000).unwrap(), None);
            t.map(&mut m, 0x20_0000, 0x5000, 0x1000, r).unwrap();
            assert_eq!(t.lookup(&m, 0x20_0000).unwrap(), Some((0x5000, r, 0)));
            assert_eq!(t.unmap_present(&mut m, 0, 1 << 48), Ok(0x3000));
            assert_eq!(t.counts(), RadixCounts::default(), "direct {direct}");
        }
    }

    /// An unmap that ends where a large leaf starts leaves that leaf whole (no split of
    /// a leaf the range does not cut).
    #[test]
    fn an_unmap_that_ends_at_a_large_leaf_does_not_split_it() {
        for direct in [true, false] {
            let mut m = Mem::new(direct);
            let mut t = engine(&mut m);
            let r = IoPerm::READ;
            t.map(&mut m, 0x20_0000, 0x4000_0000, 0x40_0000, r).unwrap();
            assert_eq!(t.counts().leaves[1], 2);
            let tables = t.counts().tables;
            t.unmap(&mut m, 0x20_0000, 0x20_0000).unwrap();
            assert_eq!(t.lookup(&m, 0x40_0000).unwrap(), Some((0x4020_0000, r, 1)));
            assert_eq!(t.counts().leaves[..2], [0, 1], "direct {direct}");
            assert_eq!(t.counts().tables, tables);
        }
    }

    /// A split of a large leaf that fails on a table write (in the new table, or when
    /// linking it) returns the error with the translation unchanged and the new table
    /// cleared and handed back to the memory: nothing leaks.
    #[test]
    fn a_failed_split_frees_its_table() {
        for fail_at in [3, 512] {
            let mut m = Mem::new(false);
            let mut t = engine(&mut m);
            let r = IoPerm::READ;
            t.map(&mut m, 0x20_0000, 0x4000_0000, 0x20_0000, r).unwrap();
            let live = m.tables.len() - m.free.len();
            m.writes_left = Some(fail_at);
            assert!(matches!(
                t.unmap(&mut m, 0x20_0000, 0x1000),
                Err(MapError::TableMemory { .. })
            ));
            m.writes_left = None;
            assert_eq!(m.tables.len() - m.free.len(), live, "fail at {fail_at}");
            assert_eq!(t.lookup(&m, 0x20_1000).unwrap(), Some((0x4000_1000, r, 1)));
            assert_eq!(t.counts().leaves[..2], [0, 1]);
        }
    }

    /// After a caller moves a leaf table behind the engine's back (a copy to a new page,
    /// the parent entry repointed), `forget_walk` makes the next map find the new table:
    /// with a stale walk the page would go into the old, unlinked copy.
    #[test]
    fn forget_walk_drops_the_cached_leaf_table() {
        let mut m = Mem::new(true);
        let mut t = engine(&mut m);
        let r = IoPerm::READ;
        t.map(&mut m, 0, 0x9000, 0x1000, r).unwrap();
        // root -> l2 -> l1 -> leaf table, all at index 0 for IOVA 0.
        let next = |m: &Mem, table: u64, level: u32| match Toy
            .decode(m.read_entry(table, 0).unwrap(), level)
        {
            Pte::Table(c) => c,
            other => panic!("{other:?}"),
        };
        let l2 = next(&m, t.root(), 3);
        let l1 = next(&m, l2, 2);
        let old = next(&m, l1, 1);
        let new = m.alloc_table().unwrap();
        let (o, n) = (Mem::slot(old), Mem::slot(new));
        m.tables[n] = m.tables[o].clone();
        m.used[n] = m.used[o];
        m.write_entry(l1, 0, Toy.encode_table(new, 1)).unwrap();
        t.forget_walk();
        t.map(&mut m, 0x1000, 0xa000, 0x1000, r).unwrap();
        assert_eq!(t.lookup(&m, 0x1000).unwrap(), Some((0xa000, r, 0)));
        assert_eq!(t.lookup(&m, 0).unwrap(), Some((0x9000, r, 0)));
        assert_eq!(m.tables[o][1], 0, "the unlinked copy was written");
    }

    #[test]
    fn map_granules_leaves_no_new_table_behind_on_a_refused_first_page() {
        let mut m = Mem::new(true);
        let mut t = engine(&mut m);
        t.map(&mut m, 0, 0x7_7000, 0x1000, IoPerm::READ).unwrap();
        let before = t.counts();
        // The first page of a fresh leaf table (IOVA 2 MiB) falls in the refused window.
        let pages = [
            PhysRange::new(WINDOW + 0x1000, 0x1000),
            PhysRange::new(0x5000, 0x1000),
        ];
        let (n, r) = t.map_granules(&mut m, 0x20_0000, &pages, IoPerm::READ);
        assert_eq!(
            (n, r),
            (
                0,
                Err(MapError::InterruptWindow {
                    phys: WINDOW + 0x1000
                })
            )
        );
        assert_eq!(
            t.counts(),
            before,
            "the leaf table made for the batch was not freed"
        );
        // A refused page after a written one keeps the (non-empty) table.
        let pages = [
            PhysRange::new(0x5000, 0x1000),
            PhysRange::new(WINDOW, 0x1000),
        ];
        let (n, r) = t.map_granules(&mut m, 0x20_0000, &pages, IoPerm::READ);
        assert_eq!((n, r), (1, Err(MapError::InterruptWindow { phys: WINDOW })));
        assert_eq!(t.counts().tables, before.tables + 1);
        assert_eq!(t.counts().mapped_bytes, 0x2000);
    }

    /// A memory that lends fewer entries than a table has: the batch reports the table
    /// instead of writing past what it was lent or panicking.
    #[test]
    fn map_granules_reports_a_short_direct_table() {
        let mut m = Mem::new(true);
        let mut t = engine(&mut m);
        m.short = Some(8);
        let pages: Vec<PhysRange> = (0..16)
            .map(|k| PhysRange::new(0x10_0000 + (k << 12), 0x1000))
            .collect();
        let (n, r) = t.map_granules(&mut m, 0x40_0000, &pages, IoPerm::READ);
        assert!(matches!(r, Err(MapError::TableMemory { .. })), "{r:?}");
        assert!(n <= 8);
    }

    #[test]
    fn map_granules_stops_at_a_mapped_slot() {
        let mut m = Mem::new(true);
        let mut t = engine(&mut m);
        t.map(&mut m, 5 << 12, 0x7_7000, 0x1000, IoPerm::READ)
            .unwrap();
        let pages: Vec<PhysRange> = (0..5)
            .map(|k| PhysRange::new(0x10_0000 + (k << 12), 0x1000))
            .collect();
        let (n, r) = t.map_granules(&mut m, 3 << 12, &pages, IoPerm::READ);
        assert_eq!((n, r), (2, Err(MapError::AlreadyMapped { iova: 5 << 12 })));
        assert_eq!(t.lookup(&m, 5 << 12).unwrap().map(|x| x.0), Some(0x7_7000));
        assert_eq!(t.lookup(&m, 4 << 12).unwrap().map(|x| x.0), Some(0x10_1000));
        assert_eq!(t.lookup(&m, 6 << 12).unwrap(), None);
        assert_eq!(t.counts().mapped_bytes, 3 << 12);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        /// The slice path, the entry-by-entry path and a page model agree on every
        /// result, translation and count (the walk cache included: operations reuse it).
        #[test]
        fn direct_and_entry_paths_agree_with_a_model(ops in proptest::collection::vec(op(), 1..40)) {
            let (mut ma, mut mb) = (Mem::new(true), Mem::new(false));
            let (mut a, mut b) = (engine(&mut ma), engine(&mut mb));
            let mut model: BTreeMap<u64, u64> = BTreeMap::new();
            for op in ops {
                let (ra, rb) = match op {
                    Op::Map(i, p, n) => {
                        let args = (i << 12, p << 12, n << 12);
                        let ra = a.map(&mut ma, args.0, args.1, args.2, IoPerm::READ).map(|()| 0);
                        let rb = b.map(&mut mb, args.0, args.1, args.2, IoPerm::READ).map(|()| 0);
                        let first = (i..i + n).find(|q| model.contains_key(q));
                        let window = (0..n)
                            .map(|k| args.1 + (k << 12))
                            .find(|&x| (WINDOW..WINDOW + 0x20_0000).contains(&x));
                        match (&ra, first) {
                            (Err(MapError::AlreadyMapped { iova }), Some(q)) => prop_assert_eq!(*iova, q << 12),
                            (Err(MapError::InterruptWindow { phys }), None) => {
                                prop_assert_eq!(Some(*phys), window);
                            }
                            (Ok(_), None) if window.is_none() => {
                                for k in 0..n {
                                    model.insert(i + k, args.1 + (k << 12));
                                }
                            }
                            (r, f) => prop_assert!(false, "{:?} with first mapped {:?}", r, f),
                        }
                        (ra, rb)
                    }
                    Op::Unmap(i, n) => {
                        let ra = a.unmap(&mut ma, i << 12, n << 12).map(|()| 0);
                        let rb = b.unmap(&mut mb, i << 12, n << 12).map(|()| 0);
                        let hole = (i..i + n).find(|q| !model.contains_key(q));
                        match (&ra, hole) {
                            (Err(MapError::NotMapped { dma, .. }), Some(q)) => prop_assert_eq!(*dma, q << 12),
                            (Ok(_), None) => {
                                for k in 0..n {
                                    model.remove(&(i + k));
                                }
                            }
                            (r, h) => prop_assert!(false, "{:?} with first hole {:?}", r, h),
                        }
                        (ra, rb)
                    }
                    Op::UnmapPresent(i, n) => {
                        let ra = a.unmap_present(&mut ma, i << 12, n << 12);
                        let rb = b.unmap_present(&mut mb, i << 12, n << 12);
                        let gone = (i..i + n).filter(|q| model.remove(q).is_some()).count() as u64;
                        prop_assert_eq!(&ra, &Ok(gone << 12));
                        (ra, rb)
                    }
                };
                prop_assert_eq!(ra, rb);
                prop_assert_eq!(a.counts(), b.counts());
                prop_assert_eq!(a.counts().mapped_bytes, model.len() as u64 * 4096);
            }
            for q in (0..2048 + 1100).step_by(7) {
                let want = model.get(&q).copied();
                prop_assert_eq!(a.lookup(&ma, q << 12).unwrap().map(|x| x.0), want);
                prop_assert_eq!(b.lookup(&mb, q << 12).unwrap().map(|x| x.0), want);
            }
            prop_assert_eq!(a.unmap_present(&mut ma, 0, 1 << 40), Ok(model.len() as u64 * 4096));
            prop_assert_eq!(b.unmap_present(&mut mb, 0, 1 << 40), Ok(model.len() as u64 * 4096));
            prop_assert_eq!(a.counts(), RadixCounts::default());
            prop_assert_eq!(b.counts(), RadixCounts::default());
        }

        /// `map_granules` is one `map` per page, in order, up to the first error: same
        /// count, same error, same translations and counts afterwards, on the slice path
        /// and the entry path (pages crossing leaf tables, already mapped slots, the
        /// refused window, misaligned and wrong-length pages, the IOVA limit).
        #[test]
        fn map_granules_is_map_per_page(
            pre in proptest::collection::vec((0u64..1100, 0u64..2048), 0..6),
            start in prop_oneof![0u64..1100, Just((1u64 << 27) - 3), 0u64..20],
            small in any::<bool>(),
            pages in proptest::collection::vec(
                prop_oneof![
                    200 => (0u64..2048).prop_map(|p| (p << 12, 0x1000u64)),
                    1 => (0u64..4096).prop_map(|p| ((p << 12) + 0x800, 0x1000u64)),
                    1 => (0u64..4096).prop_map(|p| (p << 12, 0x2000u64)),
                    1 => Just((WINDOW + 0x3000, 0x1000u64)),
                ],
                1..700,
            ),
            direct in any::<bool>(),
        ) {
            let (mut ma, mut mb) = (Mem::new(direct), Mem::new(direct));
            let root_a = ma.alloc_table().unwrap();
            let root_b = mb.alloc_table().unwrap();
            // 39 IOVA bits: `start` near 2^27 pages runs into the limit; 16 bits: a
            // limit inside one leaf table's span.
            let bits = if small { 16 } else { 39 };
            let mut a = RadixTable::new(Toy, root_a, bits).unwrap();
            let mut b = RadixTable::new(Toy, root_b, bits).unwrap();
            for &(i, p) in &pre {
                let _ = a.map(&mut ma, i << 12, p << 12, 0x1000, IoPerm::READ);
                let _ = b.map(&mut mb, i << 12, p << 12, 0x1000, IoPerm::READ);
            }
            let ranges: Vec<PhysRange> =
                pages.iter().map(|&(p, l)| PhysRange::new(p, l)).collect();
            let (n, ra) = a.map_granules(&mut ma, start << 12, &ranges, IoPerm::WRITE);
            let mut rb = Ok(());
            let mut nb = 0;
            for r in &ranges {
                let iova = (start + nb as u64) << 12;
                let p = r.addr().as_u64();
                // A page must be one granule: its length is checked after the
                // arguments of a one-granule map (alignment, IOVA limit).
                rb = match b.map(&mut mb, iova, p, 0x1000, IoPerm::WRITE) {
                    Ok(()) if r.len() != 0x1000 => {
                        b.unmap(&mut mb, iova, 0x1000).unwrap();
                        Err(MapError::Misaligned { value: r.len(), granule: 0x1000 })
                    }
                    Err(MapError::AlreadyMapped { .. } | MapError::InterruptWindow { .. }) if r.len() != 0x1000 => {
                        Err(MapError::Misaligned { value: r.len(), granule: 0x1000 })
                    }
                    other => other,
                };
                if rb.is_err() {
                    break;
                }
                nb += 1;
            }
            prop_assert_eq!((n, ra), (nb, rb));
            prop_assert_eq!(a.counts(), b.counts());
            for k in 0..(ranges.len() as u64 + 2) {
                let q = (start + k) << 12;
                prop_assert_eq!(a.lookup(&ma, q).unwrap(), b.lookup(&mb, q).unwrap());
            }
            let top = 1u64 << bits;
            prop_assert_eq!(a.unmap_present(&mut ma, 0, top), b.unmap_present(&mut mb, 0, top));
            prop_assert_eq!(a.counts(), RadixCounts::default());
        }
    }
}
