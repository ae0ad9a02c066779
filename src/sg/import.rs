//! Import: walk a `struct scatterlist` table in memory as `sg_next()` / `for_each_sg()`
//! do, and turn it (or a `bio_vec` array) back into ranges.
//!
//! Every byte read is untrusted. The walk is bounded: it reads at most `max_entries`
//! entries (data and chain entries together, 32 bytes each) and then fails with
//! [`SgImportError::TooManyEntries`]; a cycle is found with Brent's algorithm in O(1)
//! space, after at most `2·max(μ, λ) + λ` data entries (μ entries before the cycle, λ
//! in it), and fails with [`SgImportError::LoopDetected`]. A chain pointer must be non-null, 8-byte
//! aligned and point at a data entry; the first entry must be a data entry.
#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

use core::fmt;

use crate::addr::{Dma, Phys};
use crate::addr::{Virt, VirtAddr};
use crate::mem::MemoryReader;
use crate::range::Range;
use crate::sink::{Coalescing, RangeSink};

use super::layout::{BioVec, Scatterlist, SgTable, DMA_MAPPING_ERROR, SG_PAGE_SIZE};
use super::page::PageModel;

/// A bound on the entries a walk reads, large enough for any kernel table
/// (`SG_MAX_SEGMENTS` is 2048; `sg_alloc_table` users rarely pass a million).
pub const SG_WALK_DEFAULT_LIMIT: u32 = 1 << 20;

/// Why a table (or `bio_vec` array) cannot be imported.
#[derive(Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SgImportError {
    /// An entry could not be read.
    Unreadable {
        /// Address of the entry.
        addr: u64,
    },
    /// The walk came back to an entry it had visited.
    LoopDetected {
        /// Address of the repeated entry.
        at: u64,
    },
    /// The `SG_END` entry came before `expected` entries (`sg_next` returned NULL).
    Truncated {
        /// Entries the caller asked for.
        expected: u32,
        /// Entries found.
        found: u32,
    },
    /// A chain entry with a null or misaligned pointer, a chain to a chain entry, or a
    /// chain entry where a data entry must be (the first one).
    InvalidChain {
        /// Address of the offending entry.
        at: u64,
        /// The pointer it holds (0 for the first-entry case).
        target: u64,
    },
    /// The entry after `at` would lie beyond 2^64.
    AddressOverflow {
        /// Address of the entry.
        at: u64,
    },
    /// More than the walk's limit of entries.
    TooManyEntries {
        /// The limit, in entries read.
        limit: u32,
    },
    /// `page_link` (or `bv_page`) is not a `struct page` of the page model.
    BadPageLink {
        /// Entry index.
        index: u32,
        /// The page pointer.
        page: u64,
    },
    /// A data entry of length zero.
    EmptyEntry {
        /// Entry index.
        index: u32,
    },
    /// `page + offset + length` lies beyond 2^64.
    EntryOverflow {
        /// Entry index.
        index: u32,
    },
    /// An entry of the DMA view carries `DMA_MAPPING_ERROR` or `dma_length == 0`.
    NotDmaMapped {
        /// Entry index.
        index: u32,
    },
    /// `nents > orig_nents` in an `sg_table`.
    InvalidTable {
        /// `nents`.
        nents: u32,
        /// `orig_nents`.
        orig_nents: u32,
    },
    /// The output sink is full.
    SinkFull {
        /// Entry index that did not fit.
        index: u32,
    },
}

/// Addresses and page pointers in hex, indices and counts in decimal.
///
/// ```
/// use physvec::sg::SgImportError;
/// let e = SgImportError::BadPageLink { index: 2, page: 0xffffea0000000401 };
/// assert_eq!(format!("{e:?}"), "BadPageLink { index: 2, page: 0xffffea0000000401 }");
/// ```
impl core::fmt::Debug for SgImportError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        use crate::fmt::Hex;
        match *self {
            SgImportError::Unreadable { addr } => f
                .debug_struct("Unreadable")
                .field("addr", &Hex(addr))
                .finish(),
            SgImportError::LoopDetected { at } => f
                .debug_struct("LoopDetected")
                .field("at", &Hex(at))
                .finish(),
            SgImportError::Truncated { expected, found } => f
                .debug_struct("Truncated")
                .field("expected", &expected)
                .field("found", &found)
                .finish(),
            SgImportError::InvalidChain { at, target } => f
                .debug_struct("InvalidChain")
                .field("at", &Hex(at))
                .field("target", &Hex(target))
                .finish(),
            SgImportError::AddressOverflow { at } => f
                .debug_struct("AddressOverflow")
                .field("at", &Hex(at))
                .finish(),
            SgImportError::TooManyEntries { limit } => f
                .debug_struct("TooManyEntries")
                .field("limit", &limit)
                .finish(),
            SgImportError::BadPageLink { index, page } => f
                .debug_struct("BadPageLink")
                .field("index", &index)
                .field("page", &Hex(page))
                .finish(),
            SgImportError::EmptyEntry { index } => {
                f.debug_struct("EmptyEntry").field("index", &index).finish()
            }
            SgImportError::EntryOverflow { index } => f
                .debug_struct("EntryOverflow")
                .field("index", &index)
                .finish(),
            SgImportError::NotDmaMapped { index } => f
                .debug_struct("NotDmaMapped")
                .field("index", &index)
                .finish(),
            SgImportError::InvalidTable { nents, orig_nents } => f
                .debug_struct("InvalidTable")
                .field("nents", &nents)
                .field("orig_nents", &orig_nents)
                .finish(),
            SgImportError::SinkFull { index } => {
                f.debug_struct("SinkFull").field("index", &index).finish()
            }
        }
    }
}

impl SgImportError {
    /// Stable snake_case name of the variant.
    pub fn kind(&self) -> &'static str {
        match self {
            SgImportError::Unreadable { .. } => "memory_unreadable",
            SgImportError::LoopDetected { .. } => "loop_detected",
            SgImportError::Truncated { .. } => "truncated_chain",
            SgImportError::InvalidChain { .. } => "invalid_chain",
            SgImportError::AddressOverflow { .. } => "address_overflow",
            SgImportError::TooManyEntries { .. } => "too_many_entries",
            SgImportError::BadPageLink { .. } => "bad_page_link",
            SgImportError::EmptyEntry { .. } => "empty_entry",
            SgImportError::EntryOverflow { .. } => "address_overflow",
            SgImportError::NotDmaMapped { .. } => "not_dma_mapped",
            SgImportError::InvalidTable { .. } => "invalid_table",
            SgImportError::SinkFull { .. } => "sink_full",
        }
    }

    /// The byte address or entry index the error is about, if any (the tool's `at`).
    pub fn at(&self) -> Option<u64> {
        match *self {
            SgImportError::Unreadable { addr: a }
            | SgImportError::LoopDetected { at: a }
            | SgImportError::InvalidChain { at: a, .. }
            | SgImportError::AddressOverflow { at: a } => Some(a),
            SgImportError::BadPageLink { index, .. }
            | SgImportError::EmptyEntry { index }
            | SgImportError::EntryOverflow { index }
            | SgImportError::NotDmaMapped { index }
            | SgImportError::SinkFull { index } => Some(u64::from(index)),
            _ => None,
        }
    }
}

impl fmt::Display for SgImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SgImportError::Unreadable { addr } => {
                write!(f, "scatterlist entry at {addr:#x} is not readable")
            }
            SgImportError::LoopDetected { at } => {
                write!(f, "scatterlist chain loops back to the entry at {at:#x}")
            }
            SgImportError::Truncated { expected, found } => write!(
                f,
                "table ends (SG_END) after {found} entries, {expected} expected"
            ),
            SgImportError::InvalidChain { at, target } => {
                write!(f, "invalid chain entry at {at:#x} (pointer {target:#x})")
            }
            SgImportError::AddressOverflow { at } => {
                write!(f, "the entry after {at:#x} lies beyond 2^64")
            }
            SgImportError::TooManyEntries { limit } => {
                write!(f, "table has more than {limit} entries")
            }
            SgImportError::BadPageLink { index, page } => {
                write!(f, "entry {index}: {page:#x} is not a struct page")
            }
            SgImportError::EmptyEntry { index } => write!(f, "entry {index} has length 0"),
            SgImportError::EntryOverflow { index } => {
                write!(f, "entry {index} extends beyond 2^64")
            }
            SgImportError::NotDmaMapped { index } => {
                write!(f, "entry {index} of the DMA view is not mapped")
            }
            SgImportError::InvalidTable { nents, orig_nents } => {
                write!(f, "nents {nents} exceeds orig_nents {orig_nents}")
            }
            SgImportError::SinkFull { index } => {
                write!(f, "output is full at entry {index}")
            }
        }
    }
}

impl core::error::Error for SgImportError {}

/// One data entry met by a walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SgEntry {
    /// Position in the table (chain entries not counted).
    pub index: u32,
    /// Address of the entry in memory (CPU virtual).
    pub addr: VirtAddr,
    /// Its contents.
    pub entry: Scatterlist,
}

fn read_entry<M: MemoryReader<Virt> + ?Sized>(
    mem: &M,
    addr: u64,
) -> Result<Scatterlist, SgImportError> {
    let mut b = [0u8; 32];
    mem.read(VirtAddr::new(addr), &mut b)
        .map_err(|_| SgImportError::Unreadable { addr })?;
    Ok(Scatterlist::from_le_bytes(&b))
}

/// The state of an `sg_next()` walk, without a borrow of the memory (so a caller may
/// write the DMA fields of entries between steps).
#[derive(Clone, Debug)]
pub(crate) struct SgCursor {
    sgl: u64,
    nents: Option<u32>,
    limit: u32,
    reads: u32,
    index: u32,
    prev: Option<(u64, Scatterlist)>,
    tortoise: u64,
    power: u32,
    lam: u32,
}

impl SgCursor {
    pub(crate) fn new(sgl: u64, nents: Option<u32>, max_entries: u32) -> Self {
        Self {
            sgl,
            nents,
            limit: max_entries,
            reads: 0,
            index: 0,
            prev: None,
            tortoise: sgl,
            power: 1,
            lam: 0,
        }
    }

    fn read<M: MemoryReader<Virt> + ?Sized>(
        &mut self,
        mem: &M,
        addr: u64,
    ) -> Result<Scatterlist, SgImportError> {
        if self.reads >= self.limit {
            return Err(SgImportError::TooManyEntries { limit: self.limit });
        }
        // Below `limit` (checked above).
        self.reads = self.reads.saturating_add(1);
        read_entry(mem, addr)
    }

    pub(crate) fn step<M: MemoryReader<Virt> + ?Sized>(
        &mut self,
        mem: &M,
    ) -> Result<Option<SgEntry>, SgImportError> {
        if self.nents == Some(self.index) {
            return Ok(None);
        }
        let (addr, entry) = match self.prev {
            None => {
                let e = self.read(mem, self.sgl)?;
                if e.is_chain() {
                    return Err(SgImportError::InvalidChain {
                        at: self.sgl,
                        target: 0,
                    });
                }
                (self.sgl, e)
            }
            Some((paddr, pentry)) => {
                if pentry.is_last() {
                    return match self.nents {
                        Some(expected) => Err(SgImportError::Truncated {
                            expected,
                            found: self.index,
                        }),
                        None => Ok(None),
                    };
                }
                let cand = paddr
                    .checked_add(Scatterlist::SIZE as u64)
                    .ok_or(SgImportError::AddressOverflow { at: paddr })?;
                let e = self.read(mem, cand)?;
                if e.is_chain() {
                    let target = e.chain_ptr();
                    if target == 0 || target % 8 != 0 {
                        return Err(SgImportError::InvalidChain { at: cand, target });
                    }
                    let t = self.read(mem, target)?;
                    if t.is_chain() {
                        return Err(SgImportError::InvalidChain { at: cand, target });
                    }
                    (target, t)
                } else {
                    (cand, e)
                }
            }
        };
        if self.prev.is_some() {
            // Brent: the next data-entry address is a function of the current one.
            if addr == self.tortoise {
                return Err(SgImportError::LoopDetected { at: addr });
            }
            // At most `power`, itself at most the reads made.
            self.lam = self.lam.saturating_add(1);
            if self.lam == self.power {
                self.tortoise = addr;
                self.power = self.power.saturating_mul(2);
                self.lam = 0;
            }
        }
        self.prev = Some((addr, entry));
        let index = self.index;
        // At most the reads made, which stay below `limit`.
        self.index = self.index.saturating_add(1);
        Ok(Some(SgEntry {
            index,
            addr: VirtAddr::new(addr),
            entry,
        }))
    }
}

/// An iterator over the data entries of a table, following `sg_next()`.
///
/// Yields `Err` once and then stops. See the module docs for the work bound.
///
/// ```
/// use physvec::sg::{Scatterlist, SgChunk, SgWalk};
/// let mut a = [Scatterlist::page_entry(0x40, 0, 0x1000, false), Scatterlist::chain_entry(0x2000)];
/// let mut b = [Scatterlist::page_entry(0x80, 0, 0x1000, true)];
/// let chunks = [SgChunk { addr: physvec::VirtAddr::new(0x1000), entries: &mut a }, SgChunk { addr: physvec::VirtAddr::new(0x2000), entries: &mut b }];
/// let addrs: Vec<u64> = SgWalk::new(&chunks[..], physvec::VirtAddr::new(0x1000), None, 16).map(|e| e.unwrap().addr.as_u64()).collect();
/// assert_eq!(addrs, [0x1000, 0x2000]);
/// ```
#[derive(Debug)]
pub struct SgWalk<'m, M: MemoryReader<Virt> + ?Sized> {
    mem: &'m M,
    cursor: SgCursor,
    done: bool,
}

impl<'m, M: MemoryReader<Virt> + ?Sized> SgWalk<'m, M> {
    /// Walks from `sgl`: `nents = Some(n)` visits exactly `n` data entries
    /// (`for_each_sg`, an early `SG_END` is an error); `None` walks to `SG_END`
    /// (`sg_nents`). At most `max_entries` entries are read.
    pub fn new(mem: &'m M, sgl: VirtAddr, nents: Option<u32>, max_entries: u32) -> Self {
        Self {
            mem,
            cursor: SgCursor::new(sgl.as_u64(), nents, max_entries),
            done: false,
        }
    }
}

impl<M: MemoryReader<Virt> + ?Sized> Iterator for SgWalk<'_, M> {
    type Item = Result<SgEntry, SgImportError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.cursor.step(self.mem) {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl<M: MemoryReader<Virt> + ?Sized> core::iter::FusedIterator for SgWalk<'_, M> {}

/// The physical range of a data entry: `pfn_of(page) * 4096 + offset`, `length` bytes.
///
/// # Errors
/// [`SgImportError::BadPageLink`], [`SgImportError::EmptyEntry`],
/// [`SgImportError::EntryOverflow`].
pub fn entry_phys<P: PageModel + ?Sized>(
    model: &P,
    index: u32,
    e: &Scatterlist,
) -> Result<Range<Phys>, SgImportError> {
    page_range(model, index, e.page(), e.offset, e.length)
}

fn page_range<P: PageModel + ?Sized>(
    model: &P,
    index: u32,
    page: u64,
    offset: u32,
    len: u32,
) -> Result<Range<Phys>, SgImportError> {
    let pfn = model
        .pfn_of(page)
        .ok_or(SgImportError::BadPageLink { index, page })?;
    if len == 0 {
        return Err(SgImportError::EmptyEntry { index });
    }
    let addr = pfn
        .checked_mul(SG_PAGE_SIZE.get())
        .and_then(|a| a.checked_add(u64::from(offset)))
        .ok_or(SgImportError::EntryOverflow { index })?;
    Range::try_new(addr, u64::from(len)).map_err(|_| SgImportError::EntryOverflow { index })
}

/// Walks the CPU view of a table from `sgl` (see [`SgWalk::new`] for `nents`) and
/// pushes its physical ranges into `sink`, coalesced. Returns the number of data
/// entries walked.
///
/// # Errors
/// Any [`SgImportError`] of the walk or of an entry; `sink` is then left exactly as it
/// was found.
///
/// # Examples
/// ```
/// use physvec::sg::{import, Scatterlist, SgChunk, Vmemmap};
/// use physvec::{PhysArray, PhysRange};
/// let vm = Vmemmap::new(0);
/// let mut a = [Scatterlist::page_entry(0x10 * 64, 0, 0x1000, false),
///              Scatterlist::page_entry(0x11 * 64, 0, 0x800, true)];
/// let chunks = [SgChunk { addr: physvec::VirtAddr::new(0x1000), entries: &mut a }];
/// let mut out = PhysArray::<4>::new();
/// assert_eq!(import(&chunks[..], physvec::VirtAddr::new(0x1000), None, &vm, 64, &mut out), Ok(2));
/// assert_eq!(out.as_slice(), [PhysRange::new(0x10000, 0x1800)]);
/// ```
pub fn import<M, P, K>(
    mem: &M,
    sgl: VirtAddr,
    nents: Option<u32>,
    model: &P,
    max_entries: u32,
    sink: &mut K,
) -> Result<u32, SgImportError>
where
    M: MemoryReader<Virt> + ?Sized,
    P: PageModel + ?Sized,
    K: RangeSink<Phys> + ?Sized,
{
    let mut out = Coalescing::new(sink);
    let mut n = 0u32;
    for e in SgWalk::new(mem, sgl, nents, max_entries) {
        let pushed = e.and_then(|e| {
            let r = entry_phys(model, e.index, &e.entry)?;
            out.push(r)
                .map_err(|_| SgImportError::SinkFull { index: e.index })
        });
        if let Err(err) = pushed {
            out.rollback();
            return Err(err);
        }
        // At most `max_entries` (a u32) entries are walked.
        n = n.saturating_add(1);
    }
    Ok(n)
}

/// Walks the DMA view of a mapped table (`for_each_sgtable_dma_sg`: the first `nents`
/// entries, `sg_dma_address` / `sg_dma_len`) and pushes one DMA range per segment into
/// `sink` (not coalesced: the segments are what the device sees, each within its
/// limits). Returns the number of DMA segments read.
///
/// # Errors
/// [`SgImportError::InvalidTable`] when `nents > orig_nents`,
/// [`SgImportError::NotDmaMapped`] for an entry without a mapping, and walk errors.
///
/// ```
/// use physvec::sg::{direct_map_sg, export, import_dma, Scatterlist, SgChunk, SgImportError, Vmemmap};
/// use physvec::{DmaArray, DmaRange, PhysRange, RangeView};
/// let vm = Vmemmap::new(0);
/// let r = [PhysRange::new(0x10000, 0x1000), PhysRange::new(0x30000, 0x200)];
/// let mut a = [Scatterlist::default(); 2];
/// let mut chunks = [SgChunk { addr: physvec::VirtAddr::new(0x1000), entries: &mut a }];
/// let mut t = export(&RangeView::full(&r)?, &vm, u32::MAX, &mut chunks)?.table;
/// let mut out = DmaArray::<4>::new();
/// // Not mapped yet: the DMA view is refused, not invented.
/// assert!(matches!(import_dma(&chunks[..], &t, 64, &mut out), Err(SgImportError::NotDmaMapped { index: 0 })));
/// direct_map_sg(&mut chunks[..], &mut t, &vm, 0x8000_0000, 64)?; // dma = phys + offset
/// import_dma(&chunks[..], &t, 64, &mut out)?;
/// assert_eq!(out.as_slice(), [DmaRange::new(0x8001_0000, 0x1000), DmaRange::new(0x8003_0000, 0x200)]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn import_dma<M, K>(
    mem: &M,
    table: &SgTable,
    max_entries: u32,
    sink: &mut K,
) -> Result<u32, SgImportError>
where
    M: MemoryReader<Virt> + ?Sized,
    K: RangeSink<Dma> + ?Sized,
{
    if table.nents > table.orig_nents {
        return Err(SgImportError::InvalidTable {
            nents: table.nents,
            orig_nents: table.orig_nents,
        });
    }
    let mut n = 0u32;
    for e in SgWalk::new(
        mem,
        VirtAddr::new(table.sgl),
        Some(table.nents),
        max_entries,
    ) {
        let e = e?;
        let index = e.index;
        if e.entry.dma_address == DMA_MAPPING_ERROR || e.entry.dma_length == 0 {
            return Err(SgImportError::NotDmaMapped { index });
        }
        let r = Range::try_new(e.entry.dma_address, u64::from(e.entry.dma_length))
            .map_err(|_| SgImportError::EntryOverflow { index })?;
        sink.push_range(r)
            .map_err(|_| SgImportError::SinkFull { index })?;
        // At most `max_entries` entries are walked.
        n = n.saturating_add(1);
    }
    Ok(n)
}

/// Converts `bio_vec`s (page, length, offset; a multi-page bvec may have
/// `bv_offset >= 4096`) into physical ranges in `sink`, coalesced. Returns the number of
/// bvecs read.
///
/// # Errors
/// [`SgImportError::BadPageLink`], [`SgImportError::EmptyEntry`],
/// [`SgImportError::EntryOverflow`], [`SgImportError::SinkFull`] (index = bvec index).
///
/// ```
/// use physvec::sg::{import_bio_vecs, BioVec, Vmemmap};
/// use physvec::{PhysArray, PhysRange};
/// let vm = Vmemmap::new(0xffffea0000000000);
/// let bv = [BioVec { bv_page: 0xffffea0000000000 + 5 * 64, bv_len: 0x200, bv_offset: 0xe00 },
///           BioVec { bv_page: 0xffffea0000000000 + 6 * 64, bv_len: 0x1000, bv_offset: 0 }];
/// let mut out = PhysArray::<2>::new();
/// import_bio_vecs(&bv, &vm, &mut out).unwrap();
/// assert_eq!(out.as_slice(), [PhysRange::new(0x5e00, 0x1200)]);
/// ```
pub fn import_bio_vecs<P, K>(
    bvecs: &[BioVec],
    model: &P,
    sink: &mut K,
) -> Result<usize, SgImportError>
where
    P: PageModel + ?Sized,
    K: RangeSink<Phys> + ?Sized,
{
    let mut out = Coalescing::new(sink);
    for (i, b) in bvecs.iter().enumerate() {
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        let pushed = page_range(model, index, b.bv_page, b.bv_offset, b.bv_len)
            .and_then(|r| out.push(r).map_err(|_| SgImportError::SinkFull { index }));
        if let Err(err) = pushed {
            out.rollback();
            return Err(err);
        }
    }
    Ok(bvecs.len())
}

crate::error::error_info!(SgImportError, |e| match *e {
    SgImportError::Unreadable { addr: a }
    | SgImportError::LoopDetected { at: a }
    | SgImportError::InvalidChain { at: a, .. }
    | SgImportError::AddressOverflow { at: a } => Some(crate::error::Position::Address(a)),
    _ => e.at().map(crate::error::Position::Index),
});

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
    use super::super::export::SgChunk;
    use super::super::page::Vmemmap;
    use super::*;
    use crate::PhysArray;

    const VM: Vmemmap = Vmemmap::new(0);

    fn walk_err(chunks: &[SgChunk<'_>], sgl: u64, nents: Option<u32>) -> SgImportError {
        let mut out = PhysArray::<64>::new();
        import(chunks, VirtAddr::new(sgl), nents, &VM, 1000, &mut out).unwrap_err()
    }

    #[test]
    fn loops_are_detected() {
        let mut a = [
            Scatterlist::page_entry(64, 0, 0x1000, false),
            Scatterlist::page_entry(128, 0, 0x1000, false),
            Scatterlist::chain_entry(0x1020),
        ];
        let chunks = [SgChunk {
            addr: VirtAddr::new(0x1000),
            entries: &mut a,
        }];
        assert_eq!(
            walk_err(&chunks, 0x1000, None),
            SgImportError::LoopDetected { at: 0x1020 }
        );
        // Self loop to the first entry.
        let mut a = [
            Scatterlist::page_entry(64, 0, 0x1000, false),
            Scatterlist::chain_entry(0x1000),
        ];
        let chunks = [SgChunk {
            addr: VirtAddr::new(0x1000),
            entries: &mut a,
        }];
        assert_eq!(walk_err(&chunks, 0x1000, None).kind(), "loop_detected");
    }

    #[test]
    fn bad_chains_and_truncation() {
        let mut a = [
            Scatterlist::page_entry(64, 0, 0x1000, false),
            Scatterlist::chain_entry(0),
        ];
        let chunks = [SgChunk {
            addr: VirtAddr::new(0x1000),
            entries: &mut a,
        }];
        assert_eq!(walk_err(&chunks, 0x1000, None).kind(), "invalid_chain");
        let mut a = [Scatterlist::page_entry(64, 0, 0x1000, false)];
        let chunks = [SgChunk {
            addr: VirtAddr::new(0x1000),
            entries: &mut a,
        }];
        assert_eq!(
            walk_err(&chunks, 0x1000, None),
            SgImportError::Unreadable { addr: 0x1020 }
        );
        let mut a = [Scatterlist::page_entry(64, 0, 0x1000, true)];
        let chunks = [SgChunk {
            addr: VirtAddr::new(0x1000),
            entries: &mut a,
        }];
        assert_eq!(
            walk_err(&chunks, 0x1000, Some(2)),
            SgImportError::Truncated {
                expected: 2,
                found: 1
            }
        );
        let mut a = [Scatterlist::chain_entry(0x1000)];
        let chunks = [SgChunk {
            addr: VirtAddr::new(0x1000),
            entries: &mut a,
        }];
        assert_eq!(walk_err(&chunks, 0x1000, None).kind(), "invalid_chain");
        let mut a = [Scatterlist::page_entry(96, 0, 0x1000, true)];
        let chunks = [SgChunk {
            addr: VirtAddr::new(0x1000),
            entries: &mut a,
        }];
        assert_eq!(walk_err(&chunks, 0x1000, None).kind(), "bad_page_link");
    }

    #[test]
    fn nents_stops_without_end_mark() {
        let mut a = [
            Scatterlist::page_entry(64, 0, 0x1000, false),
            Scatterlist::page_entry(64 * 9, 0, 0x10, false),
        ];
        let chunks = [SgChunk {
            addr: VirtAddr::new(0x1000),
            entries: &mut a,
        }];
        let mut out = PhysArray::<4>::new();
        assert_eq!(
            import(
                &chunks[..],
                VirtAddr::new(0x1000),
                Some(2),
                &VM,
                8,
                &mut out
            ),
            Ok(2)
        );
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn limit_bounds_work() {
        let mut a = [Scatterlist::page_entry(64, 0, 0x1000, false); 8];
        a[7].page_link |= super::super::layout::SG_END;
        let chunks = [SgChunk {
            addr: VirtAddr::new(0x1000),
            entries: &mut a,
        }];
        let mut out = PhysArray::<16>::new();
        assert_eq!(
            import(&chunks[..], VirtAddr::new(0x1000), None, &VM, 5, &mut out),
            Err(SgImportError::TooManyEntries { limit: 5 })
        );
    }
}
