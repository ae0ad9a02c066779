//! PRP encoder (driver side): DMA ranges → PRP1/PRP2 and PRP list pages.
//!
//! Rules (NVMe Base Specification 1.4 §4.3 "Physical Region Page Entry and List"; Base 2.x
//! §4.1.1): PRP1 may carry a dword-aligned offset into its page; every later entry (PRP2
//! as a data pointer, every list entry) points at the start of a memory page. When the
//! transfer needs more than two entries, PRP2 points at a PRP list; a list runs to the
//! end of its page, and when more entries remain, the *last slot* of a list page holds
//! the address of the next list page instead of data (Linux `nvme_pci_setup_prps`).
//!
//! Contiguous input ranges are coalesced first, so a layout is rejected only when no PRP
//! can express it: an inner boundary that is not on a memory page boundary, or a first
//! byte that is not dword aligned.

use core::borrow::Borrow;
use core::fmt;

use super::page::MemoryPageSize;
use crate::addr::DmaAddr;
use crate::range::DmaRange;

/// A page the encoder may fill with PRP list entries, as a driver's DMA pool hands it
/// out: its bus address and the CPU's view of its memory as `u64` slots (entries are
/// written little-endian, whatever the host's byte order).
///
/// The first list page used (the one PRP2 points at) may start anywhere 8-byte aligned
/// inside a memory page: its list then runs to the end of that memory page (Linux's
/// 256-byte `prp_small_pool` works this way). Every later list page must be memory-page
/// aligned, since a chain pointer has no offset. `entries` may be shorter than the
/// memory page as long as it holds every slot the encoder writes there.
///
/// Entries are written little-endian (`u64::to_le`), as the controller reads them, so
/// `bytemuck::cast_slice::<u64, u8>(entries)` is the page's content.
///
/// ```
/// use physvec::nvme::{encode_prp, MemoryPageSize, PrpListPage};
/// use physvec::{DmaAddr, DmaRange};
/// // A 256-byte small-pool list (32 slots) at an offset inside its page.
/// let mut small = [0u64; 32];
/// let pool = [PrpListPage::new(DmaAddr::new(0x8_0100), &mut small)];
/// let prp = encode_prp([DmaRange::new(0x10_0000, 0x3000)], MemoryPageSize::SIZE_4K, pool)?;
/// assert_eq!((prp.prp2.as_u64(), prp.list_page_entries(0)), (0x8_0100, 2));
/// assert_eq!(u64::from_le(small[1]), 0x10_2000);
/// # Ok::<(), physvec::nvme::PrpError>(())
/// ```
#[derive(Debug)]
pub struct PrpListPage<'a> {
    /// Bus address of slot 0.
    pub bus: DmaAddr,
    /// Slot `i` lives at `bus + 8 * i`.
    pub entries: &'a mut [u64],
}

impl<'a> PrpListPage<'a> {
    /// A page at `bus` backed by `entries`.
    pub fn new(bus: DmaAddr, entries: &'a mut [u64]) -> Self {
        Self { bus, entries }
    }
}

/// Why a layout has no PRP encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrpIncompatibility {
    /// The first byte is not dword aligned (PRP entry bits 1:0 must be 0).
    Prp1NotDwordAligned,
    /// A range after the first does not start on a memory page boundary.
    StartNotPageAligned,
    /// A range before the last does not end on a memory page boundary.
    EndNotPageAligned,
}

/// A PRP encoding failure.
///
/// ```
/// use physvec::nvme::{encode_prp, MemoryPageSize, PrpError, PrpIncompatibility};
/// use physvec::DmaRange;
/// let ranges = [DmaRange::new(0x10000, 0x800), DmaRange::new(0x20000, 0x1000)];
/// let e = encode_prp(ranges, MemoryPageSize::SIZE_4K, core::iter::empty()).unwrap_err();
/// assert_eq!(e, PrpError::NotPrpCompatible { index: 0, reason: PrpIncompatibility::EndNotPageAligned });
/// assert_eq!((e.kind(), e.index()), ("not_prp_compatible", Some(0)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrpError {
    /// No ranges.
    Empty,
    /// Input range `index` cannot be expressed with PRPs.
    NotPrpCompatible {
        /// Index of the offending range in the input.
        index: usize,
        /// What is wrong with it.
        reason: PrpIncompatibility,
    },
    /// The pool ran out of list pages.
    TooFewListPages {
        /// List pages this transfer needs.
        needed: u64,
        /// List pages the pool supplied.
        supplied: usize,
    },
    /// List page `index` (in pool order) has a bad bus address: the first not 8-byte
    /// aligned, a later one not memory-page aligned.
    ListPageMisaligned {
        /// Position in the pool.
        index: usize,
        /// Its bus address.
        bus: u64,
    },
    /// List page `index` has fewer slots than the encoder must write there.
    ListPageTooSmall {
        /// Position in the pool.
        index: usize,
        /// Slots supplied.
        slots: usize,
        /// Slots needed.
        needed: u64,
    },
    /// A [`PrpWriter`](super::PrpWriter) was fed more or fewer bytes than the total it was created for.
    StreamLength {
        /// The total announced, in bytes.
        declared: u64,
        /// Bytes pushed (saturating).
        streamed: u64,
    },
}

impl PrpError {
    /// Stable snake_case name of the variant.
    pub const fn kind(&self) -> &'static str {
        match self {
            PrpError::Empty => "empty",
            PrpError::NotPrpCompatible { .. } => "not_prp_compatible",
            PrpError::TooFewListPages { .. } => "too_few_list_pages",
            PrpError::ListPageMisaligned { .. } => "list_page_misaligned",
            PrpError::ListPageTooSmall { .. } => "list_page_too_small",
            PrpError::StreamLength { .. } => "stream_length",
        }
    }

    /// Index of the offending input range or list page, when there is one.
    pub const fn index(&self) -> Option<usize> {
        match *self {
            PrpError::NotPrpCompatible { index, .. }
            | PrpError::ListPageMisaligned { index, .. }
            | PrpError::ListPageTooSmall { index, .. } => Some(index),
            PrpError::Empty | PrpError::TooFewListPages { .. } | PrpError::StreamLength { .. } => {
                None
            }
        }
    }
}

impl fmt::Display for PrpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PrpError::Empty => f.write_str("no ranges to encode"),
            PrpError::NotPrpCompatible { index, reason } => {
                let why = match reason {
                    PrpIncompatibility::Prp1NotDwordAligned => {
                        "its first byte is not dword aligned (PRP1 bits 1:0 must be 0)"
                    }
                    PrpIncompatibility::StartNotPageAligned => {
                        "it starts inside a memory page but is not the first segment"
                    }
                    PrpIncompatibility::EndNotPageAligned => {
                        "it ends inside a memory page but is not the last segment"
                    }
                };
                write!(f, "segment {index} cannot be expressed with PRPs: {why}")
            }
            PrpError::TooFewListPages { needed, supplied } => write!(
                f,
                "the transfer needs {needed} PRP list {}, only {supplied} {} supplied",
                crate::fmt::plural(needed, "page", "pages"),
                crate::fmt::plural(supplied as u64, "was", "were")
            ),
            PrpError::ListPageMisaligned { index, bus } => write!(
                f,
                "PRP list page {index} at {bus:#x} is misaligned (first: 8 bytes, later: a memory page)"
            ),
            PrpError::ListPageTooSmall {
                index,
                slots,
                needed,
            } => write!(
                f,
                "PRP list page {index} has {slots} slots, {needed} are needed"
            ),
            PrpError::StreamLength { declared, streamed } => write!(
                f,
                "the PRP writer was created for {declared:#x} bytes but {streamed:#x} were pushed"
            ),
        }
    }
}

impl core::error::Error for PrpError {}

/// A PRP encoding: what goes into DPTR, and how the list pages were used.
///
/// ```
/// use physvec::nvme::{encode_prp, MemoryPageSize};
/// use physvec::DmaRange;
/// // Two pages: PRP2 is the second data page, no list needed.
/// let prp = encode_prp([DmaRange::new(0x10_0800, 0x1000)], MemoryPageSize::SIZE_4K, core::iter::empty())?;
/// assert_eq!((prp.prp1.as_u64(), prp.prp2.as_u64()), (0x10_0800, 0x10_1000));
/// assert_eq!((prp.data_entries(), prp.list_pages_used()), (2, 0));
/// # Ok::<(), physvec::nvme::PrpError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prp {
    /// PRP Entry 1: the first byte of the transfer.
    pub prp1: DmaAddr,
    /// PRP Entry 2: 0 (unused), the second data page, or the PRP list pointer.
    pub prp2: DmaAddr,
    entries: u64,
    list_pages: usize,
    first_page_slots: u64,
    page_slots: u64,
    last_page_entries: u64,
}

impl Prp {
    /// DPTR for [`super::SubmissionQueueEntry::set_data_pointer`] (PSDT 00b).
    pub const fn data_pointer(&self) -> super::DataPointer {
        super::DataPointer::Prp {
            prp1: self.prp1,
            prp2: self.prp2,
        }
    }

    /// PRP entries describing data (PRP1, PRP2 when it is data, list data entries).
    pub const fn data_entries(&self) -> u64 {
        self.entries
    }

    /// List pages taken from the pool (the minimum for this layout).
    pub const fn list_pages_used(&self) -> usize {
        self.list_pages
    }

    /// Slots written in list page `i` (data entries plus the chain pointer, if any);
    /// 0 for pages not used. Slots are consecutive from the page's slot 0.
    pub const fn list_page_entries(&self, i: usize) -> u64 {
        if i >= self.list_pages {
            0
        } else if i.saturating_add(1) == self.list_pages {
            self.last_page_entries
        } else if i == 0 {
            self.first_page_slots
        } else {
            self.page_slots
        }
    }
}

/// Checks that `ranges` can be expressed with PRPs and counts the PRP entries it needs
/// (including PRP1). Contiguous ranges are coalesced first. O(n), no allocation.
///
/// # Errors
/// [`PrpError::Empty`] or [`PrpError::NotPrpCompatible`]
/// naming the first offending input range.
///
/// ```
/// use physvec::nvme::{prp_entries, MemoryPageSize};
/// use physvec::DmaRange;
/// let mps = MemoryPageSize::SIZE_4K;
/// assert_eq!(prp_entries([DmaRange::new(0x100800, 0x2000)], mps), Ok(3));
/// // Contiguous pieces coalesce, so an unaligned inner boundary between them is fine.
/// let r = [DmaRange::new(0x1000, 0x800), DmaRange::new(0x1800, 0x800)];
/// assert_eq!(prp_entries(r, mps), Ok(1));
/// ```
pub fn prp_entries<I>(ranges: I, mps: MemoryPageSize) -> Result<u64, PrpError>
where
    I: IntoIterator,
    I::Item: Borrow<DmaRange>,
{
    let ranges = ranges.into_iter().map(by_value);
    let mask = mps.mask();
    // Shifts on u64, not `div_ceil` or u128 (a libcall, and slow shifts).
    let shift = mps.page_size().shift();
    let mut n: u64 = 0;
    let mut prev_end: Option<(u64, usize)> = None;
    fold_data_runs(ranges, |r, first, last| {
        let s = r.addr().as_u64();
        // `e` is the end modulo 2^64: only its offset in the page is used.
        let e = r.last().as_u64().wrapping_add(1);
        // Pages touched by [s, last], computed without overflow; saturates like the
        // total (at most 2^52 + 1 entries per 2^64 bytes).
        // `last >= s`, and the count is at most 2^52 + 1.
        #[allow(clippy::arithmetic_side_effects)]
        let pages = (r.last().as_u64() >> shift) - (s >> shift) + 1;
        match prev_end {
            None => {
                if s & 3 != 0 {
                    return Err(PrpError::NotPrpCompatible {
                        index: first,
                        reason: PrpIncompatibility::Prp1NotDwordAligned,
                    });
                }
                n = n.saturating_add(pages);
            }
            Some((pe, pi)) => {
                if pe & mask != 0 {
                    return Err(PrpError::NotPrpCompatible {
                        index: pi,
                        reason: PrpIncompatibility::EndNotPageAligned,
                    });
                }
                if s & mask != 0 {
                    return Err(PrpError::NotPrpCompatible {
                        index: first,
                        reason: PrpIncompatibility::StartNotPageAligned,
                    });
                }
                n = n.saturating_add(pages);
            }
        }
        prev_end = Some((e, last));
        Ok(())
    })?;
    if prev_end.is_none() {
        return Err(PrpError::Empty);
    }
    // At most 2^64 / 4096 + 1 entries per 2^64 bytes; a slice cannot hold enough
    // ranges to overflow u64 in practice, but saturate rather than wrap.
    Ok(n)
}

/// `true` when [`encode_prp`](super::encode_prp) can express `ranges` (given enough list pages).
///
/// ```
/// use physvec::nvme::{is_prp_compatible, MemoryPageSize};
/// use physvec::DmaRange;
/// let mps = MemoryPageSize::SIZE_4K;
/// assert!(is_prp_compatible([DmaRange::new(0x100800, 0x800), DmaRange::new(0x900000, 0x10)], mps));
/// assert!(!is_prp_compatible([DmaRange::new(0x100002, 0x10)], mps));
/// ```
pub fn is_prp_compatible<I>(ranges: I, mps: MemoryPageSize) -> bool
where
    I: IntoIterator,
    I::Item: Borrow<DmaRange>,
{
    prp_entries(ranges, mps).is_ok()
}

/// A range or a reference to one, by value: what lets the encoders take `&[DmaRange]`
/// as well as iterators of `DmaRange`.
pub(crate) fn by_value<R: Borrow<DmaRange>>(r: R) -> DmaRange {
    *r.borrow()
}

/// List pages needed for a transfer of `entries` PRP entries (from [`prp_entries`])
/// when the first list starts `first_list_offset` bytes into its memory page (0 for a
/// page-aligned list page). This is the minimum any encoding can use.
///
/// ```
/// use physvec::nvme::{prp_list_pages_needed, MemoryPageSize};
/// let mps = MemoryPageSize::SIZE_4K;
/// assert_eq!(prp_list_pages_needed(2, mps, 0), 0);    // PRP1 + PRP2
/// assert_eq!(prp_list_pages_needed(513, mps, 0), 1);  // 512 list entries fill one page
/// assert_eq!(prp_list_pages_needed(514, mps, 0), 2);  // 511 + link, then 2
/// assert_eq!(prp_list_pages_needed(1024, mps, 0), 2); // 511 + 512
/// assert_eq!(prp_list_pages_needed(1025, mps, 0), 3);
/// ```
// Proof of the arithmetic: `entries > 2` below the early return; `first >= 1` (the offset
// is at most `mps - 8`); `full >= 512`; `list > first - 1` in the final branch.
#[allow(clippy::arithmetic_side_effects)]
pub fn prp_list_pages_needed(entries: u64, mps: MemoryPageSize, first_list_offset: u64) -> u64 {
    if entries <= 2 {
        return 0;
    }
    let list = entries - 1;
    let full = mps.entries_per_list_page();
    let first = (mps.get() - (first_list_offset & mps.mask() & !7)) / 8;
    if list <= first {
        return 1;
    }
    // The first page holds first - 1 data entries and the link; each further page holds
    // full - 1 data entries and a link, except the last, which holds up to full.
    let rest = list - (first - 1);
    1 + (rest - 1).div_ceil(full - 1)
}

/// Calls `f(run, first_index, last_index)` for every maximal run of contiguous input
/// ranges, in order (the data-only, inlined equivalent of `Runs`). Every `DmaRange` is
/// valid by construction, so nothing is re-checked here.
#[inline]
fn fold_data_runs<I, F>(ranges: I, mut f: F) -> Result<(), PrpError>
where
    I: Iterator<Item = DmaRange>,
    F: FnMut(DmaRange, usize, usize) -> Result<(), PrpError>,
{
    let mut pending: Option<(DmaRange, usize)> = None;
    let mut index = 0usize;
    for r in ranges {
        pending = match pending {
            None => Some((r, index)),
            Some((p, first)) => match p.merge(r) {
                Some(m) => Some((m, first)),
                None => {
                    // A run is pending, so at least one range came before: `index >= 1`.
                    f(p, first, index.saturating_sub(1))?;
                    Some((r, index))
                }
            },
        };
        // One per input range: an iterator cannot yield `usize::MAX` ranges here.
        index = index.saturating_add(1);
    }
    match pending {
        Some((p, first)) => f(p, first, index.saturating_sub(1)),
        None => Ok(()),
    }
}

/// Writes `first, first + ps, first + 2 * ps, ...` (little-endian) into `dst`.
///
/// With `std` on x86-64 a CPU with AVX2 gets the same loop compiled for 32-byte vector
/// stores (chosen at run time, [`fill_avx2`]); the baseline x86-64 target has 16-byte
/// SSE2 stores only, and store throughput is what bounds this loop (a 2 MiB PRP list,
/// 4104 bytes: about 1.45x a `memcpy` of its bytes with SSE2, 1.1x with AVX2, see
/// BENCHMARKS.md). Short runs stay on the portable loop (the dispatch is not worth it).
#[inline]
pub(super) fn fill(dst: &mut [u64], first: u64, ps: u64) {
    #[cfg(all(feature = "std", target_arch = "x86_64", not(target_feature = "avx2")))]
    if dst.len() >= 64 && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: `fill_avx2` only requires that the CPU supports AVX2, which was
        // detected on this CPU just above.
        unsafe { fill_avx2(dst, first, ps) };
        return;
    }
    fill_portable(dst, first, ps);
}

/// [`fill`] for a CPU with AVX2 (`std`, x86-64; the dispatch is in [`fill`]): after the
/// entries up to the first cache-line boundary, the plain serial loop, which LLVM's loop
/// vectorizer turns into a vector induction (four 32-byte stores and four adds per 16
/// entries). With SSE2 only, the same loop is slower than [`fill_portable`]'s, hence two
/// loops.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(all(feature = "std", target_arch = "x86_64", not(target_feature = "avx2")))]
#[target_feature(enable = "avx2")]
#[inline(never)]
unsafe fn fill_avx2(dst: &mut [u64], first: u64, ps: u64) {
    let (head, dst) = split_at_cache_line(dst);
    let mut v = first;
    for d in head {
        *d = v.to_le();
        v = v.wrapping_add(ps);
    }
    for d in dst {
        *d = v.to_le();
        v = v.wrapping_add(ps);
    }
}

/// `dst` split at its first 64-byte boundary (the address is only inspected), so that
/// the vector stores that follow never straddle a cache line (a split store costs about
/// twice as much).
#[inline(always)]
fn split_at_cache_line(dst: &mut [u64]) -> (&mut [u64], &mut [u64]) {
    let head = (64usize.wrapping_sub(dst.as_ptr() as usize & 63) & 63) / 8;
    dst.split_at_mut(head.min(dst.len()))
}

/// The portable loop of [`fill`]: eight independent entries per step (a base plus
/// constant offsets), so the compiler emits several vector stores per iteration instead
/// of one serial chain of adds. Entries before the first 64-byte boundary are written
/// one by one ([`split_at_cache_line`]).
#[inline(always)]
fn fill_portable(dst: &mut [u64], first: u64, ps: u64) {
    let steps: [u64; 8] = core::array::from_fn(|j| (j as u64).wrapping_mul(ps));
    let mut v = first;
    let (head, dst) = split_at_cache_line(dst);
    for d in head {
        *d = v.to_le();
        v = v.wrapping_add(ps);
    }
    let mut chunks = dst.chunks_exact_mut(8);
    for chunk in &mut chunks {
        for (d, off) in chunk.iter_mut().zip(steps) {
            *d = v.wrapping_add(off).to_le();
        }
        v = v.wrapping_add(ps.wrapping_mul(8));
    }
    for d in chunks.into_remainder() {
        *d = v.to_le();
        v = v.wrapping_add(ps);
    }
}

/// The list-page side of the PRP writer: takes pages from the pool, writes entries and
/// chain pointers.
pub(super) struct Writer<'a, P> {
    pool: P,
    mps: MemoryPageSize,
    n: u64,
    /// The open list page's slots (empty before the first page: `used == 0`).
    cur: &'a mut [u64],
    cap: u64,
    slot: u64,
    /// Slots of the open page that take data without a chain decision: `cap` when the
    /// rest of the list fits in it, else `cap - 1` (the last slot chains).
    fast_end: u64,
    /// List entries (data, not links) still to write.
    remaining: u64,
    used: usize,
    first_slots: u64,
    pub(super) prp2: u64,
}

impl<'a, P: Iterator<Item = PrpListPage<'a>>> Writer<'a, P> {
    /// A writer for a transfer of `n` PRP entries (PRP1 included).
    #[inline]
    pub(super) fn new(pool: P, mps: MemoryPageSize, n: u64) -> Self {
        Self {
            pool,
            mps,
            n,
            cur: &mut [],
            cap: 0,
            slot: 0,
            fast_end: 0,
            remaining: n.saturating_sub(1),
            used: 0,
            first_slots: 0,
            prp2: 0,
        }
    }

    /// Sets the entry count (before anything is written).
    pub(super) fn set_entries(&mut self, n: u64) {
        self.n = n;
        self.remaining = n.saturating_sub(1);
    }

    /// The encoding's summary once every entry is written.
    #[inline]
    pub(super) fn prp(&self, prp1: u64) -> Prp {
        Prp {
            prp1: DmaAddr::new(prp1),
            prp2: DmaAddr::new(self.prp2),
            entries: self.n,
            list_pages: self.used,
            first_page_slots: self.first_slots,
            page_slots: self.mps.entries_per_list_page(),
            last_page_entries: self.slot,
        }
    }

    fn take_page(&mut self) -> Result<PrpListPage<'a>, PrpError> {
        match self.pool.next() {
            Some(p) => Ok(p),
            None => {
                let off = if self.used == 0 {
                    0
                } else {
                    self.prp2 & self.mps.mask()
                };
                Err(PrpError::TooFewListPages {
                    needed: prp_list_pages_needed(self.n, self.mps, off),
                    supplied: self.used,
                })
            }
        }
    }

    fn open(&mut self, page: PrpListPage<'a>, cap: u64) -> Result<(), PrpError> {
        let needed = cap.min(self.remaining);
        if (page.entries.len() as u64) < needed {
            return Err(PrpError::ListPageTooSmall {
                index: self.used,
                slots: page.entries.len(),
                needed,
            });
        }
        self.cur = page.entries;
        self.cap = cap;
        self.slot = 0;
        // Also never past the entries still to write (`slot + remaining` is constant
        // within a page), so `slot < fast_end` alone admits a write.
        // A list page has at least one slot (`cap >= 1`), so the chain slot leaves `cap - 1`.
        let data_slots = if self.remaining <= cap {
            cap
        } else {
            cap.saturating_sub(1)
        };
        self.fast_end = data_slots.min(self.remaining);
        self.used = self.used.saturating_add(1);
        Ok(())
    }

    fn write(&mut self, value: u64) {
        if let Some(s) = self.cur.get_mut(self.slot as usize) {
            *s = value.to_le();
        }
        // `slot <= cap <= 2^14` (a list page's slots).
        self.slot = self.slot.saturating_add(1);
    }

    /// Writes `count` list entries `first, first + page, ...`: whole stretches of a
    /// list page at a time (a loop the compiler vectorises), [`Writer::push`] at the
    /// points where a page opens or chains.
    /// Writes one list entry if the open page takes it without a chain decision;
    /// `false` (nothing written) otherwise.
    #[inline(always)]
    pub(super) fn try_push_one(&mut self, entry: u64) -> bool {
        if self.slot < self.fast_end {
            if let Some(d) = self.cur.get_mut(self.slot as usize) {
                *d = entry.to_le();
                // `slot < fast_end <= min(cap, slot + remaining)`: neither wraps.
                self.slot = self.slot.wrapping_add(1);
                self.remaining = self.remaining.wrapping_sub(1);
                return true;
            }
        }
        false
    }

    /// The open page's slots that take data without a chain decision, from the next
    /// one on (empty before the first page is opened): a fused loop writes into them
    /// directly, then reports how many with [`Writer::advance_fast`].
    #[inline(always)]
    pub(super) fn fast_slots(&mut self) -> &mut [u64] {
        let (from, to) = (self.slot as usize, self.fast_end as usize);
        self.cur.get_mut(from..to).unwrap_or_default()
    }

    /// Whether no list page has been opened yet.
    #[inline(always)]
    pub(super) fn unopened(&self) -> bool {
        self.used == 0 && self.remaining != 0
    }

    /// Counts `n` entries written into [`Writer::fast_slots`] (`n` at most its length).
    #[inline(always)]
    pub(super) fn advance_fast(&mut self, n: u64) {
        // `n <= fast_end - slot <= remaining`: neither wraps.
        self.slot = self.slot.saturating_add(n);
        self.remaining = self.remaining.saturating_sub(n);
    }

    /// Writes `count` list entries `first, first + page, ...` if the open page takes
    /// them all without a chain decision; `false` (nothing written) otherwise.
    #[inline]
    pub(super) fn try_push_run(&mut self, first: u64, count: u64) -> bool {
        if count <= self.fast_end.saturating_sub(self.slot) {
            let from = self.slot as usize;
            if let Some(dst) = self.cur.get_mut(from..from.saturating_add(count as usize)) {
                let ps = self.mps.get();
                if count <= 32 {
                    // Short runs: a plain loop (the aligned 8-wide fill pays off on long
                    // runs only).
                    let mut v = first;
                    for d in dst {
                        *d = v.to_le();
                        v = v.wrapping_add(ps);
                    }
                } else {
                    fill(dst, first, ps);
                }
                // `count <= fast_end - slot <= remaining`: neither wraps.
                self.slot = self.slot.wrapping_add(count);
                self.remaining = self.remaining.wrapping_sub(count);
                return true;
            }
        }
        false
    }

    /// One list entry: the common case of scattered pages.
    #[inline(always)]
    pub(super) fn push_one(&mut self, entry: u64) -> Result<(), PrpError> {
        if self.slot < self.fast_end {
            if let Some(d) = self.cur.get_mut(self.slot as usize) {
                *d = entry.to_le();
                // `slot < fast_end <= min(cap, slot + remaining)`: neither wraps.
                self.slot = self.slot.wrapping_add(1);
                self.remaining = self.remaining.wrapping_sub(1);
                return Ok(());
            }
        }
        self.push_run(entry, 1)
    }

    #[inline]
    pub(super) fn push_run(&mut self, mut first: u64, mut count: u64) -> Result<(), PrpError> {
        let ps = self.mps.get();
        // Fast path: the run fits in the open page without a chain decision.
        {
            let page = &mut *self.cur;
            let room = self.fast_end.saturating_sub(self.slot);
            if count <= room {
                let from = self.slot as usize;
                if let Some(dst) = page.get_mut(from..from.saturating_add(count as usize)) {
                    for d in dst {
                        *d = first.to_le();
                        first = first.wrapping_add(ps);
                    }
                    // `count <= fast_end - slot <= remaining`: neither wraps.
                    self.slot = self.slot.wrapping_add(count);
                    self.remaining = self.remaining.wrapping_sub(count);
                    return Ok(());
                }
            }
        }
        while count > 0 {
            // Slots of the current page that take data without a chain decision: all
            // that are left when the rest of the list fits, else all but the last.
            // `slot <= cap` always (a page is opened before its slots are written).
            let left = self.cap.saturating_sub(self.slot);
            let room = if self.used == 0 {
                0
            } else if self.remaining <= left {
                left
            } else {
                left.saturating_sub(1)
            };
            let k = room.min(count);
            if k == 0 {
                self.push(first)?;
                first = first.wrapping_add(ps);
                // `count > 0` (the loop condition).
                count = count.saturating_sub(1);
                continue;
            }
            // `k <= room <= cap - slot`: the slots exist in the open page.
            let (from, to) = (self.slot as usize, self.slot.saturating_add(k) as usize);
            match self.cur.get_mut(from..to) {
                Some(dst) => fill(dst, first, ps),
                None => {
                    // Cannot happen: `open` checked the page holds every slot written.
                    for j in 0..k {
                        self.write(first.wrapping_add(j.wrapping_mul(ps)));
                    }
                    self.slot = self.slot.saturating_sub(k);
                }
            }
            // `k <= count` and `k <= remaining` (the layout counted every entry).
            self.slot = self.slot.saturating_add(k);
            self.remaining = self.remaining.saturating_sub(k);
            first = first.wrapping_add(k.wrapping_mul(ps));
            count = count.saturating_sub(k);
        }
        Ok(())
    }

    /// Opens the first list page (PRP2 then points at it).
    pub(super) fn open_first(&mut self) -> Result<(), PrpError> {
        let page = self.take_page()?;
        let bus = page.bus.as_u64();
        if bus & 7 != 0 {
            return Err(PrpError::ListPageMisaligned { index: 0, bus });
        }
        // `bus & mask < mps`: at least one slot.
        let cap = self.mps.get().saturating_sub(bus & self.mps.mask()) / 8;
        self.prp2 = bus;
        self.first_slots = cap;
        self.open(page, cap)?;
        Ok(())
    }

    fn push(&mut self, entry: u64) -> Result<(), PrpError> {
        if self.used == 0 {
            self.open_first()?;
        }
        if self.slot.saturating_add(1) == self.cap && self.remaining > 1 {
            let next = self.take_page()?;
            let bus = next.bus.as_u64();
            if bus & self.mps.mask() != 0 {
                return Err(PrpError::ListPageMisaligned {
                    index: self.used,
                    bus,
                });
            }
            self.write(bus);
            self.open(next, self.mps.entries_per_list_page())?;
        }
        self.write(entry);
        // The layout counted this entry.
        self.remaining = self.remaining.saturating_sub(1);
        Ok(())
    }
}

crate::error::error_info!(PrpError, |e| e.index().map(crate::error::Position::index));

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
    use crate::nvme::encode_prp;
    use std::vec::Vec;

    const LIST: u64 = 0xDEAD_B000; // page-aligned stand-in for SPDK's 0xDEADBEEF

    /// `fill` (the AVX2 loop on a CPU that has it, from 64 entries), its portable loop
    /// and its AVX2 loop (where the CPU has AVX2) each write exactly the arithmetic
    /// sequence, little-endian, for every length and every start alignment within a
    /// cache line, wrapping at 2^64, and touch nothing outside `dst`.
    #[test]
    fn fill_writes_the_sequence_and_nothing_else() {
        type Fill = fn(&mut [u64], u64, u64);
        let mut loops: Vec<(&str, Fill)> = vec![
            ("fill", fill),
            ("portable", |d, f, p| fill_portable(d, f, p)),
        ];
        #[cfg(all(feature = "std", target_arch = "x86_64", not(target_feature = "avx2")))]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 was detected on this CPU.
            loops.push(("avx2", |d, f, p| unsafe { fill_avx2(d, f, p) }));
        }
        for (name, fill) in loops {
            for (first, ps) in [
                (0x4000_0000u64, 0x1000u64),
                (u64::MAX - 0x3000, 0x1000),
                (0, 1 << 16),
            ] {
                for start in 0..8 {
                    for len in (0..80).chain([255, 256, 257, 511, 512]) {
                        let mut buf = vec![0x5a5a_5a5a_5a5a_5a5au64; start + len + 8];
                        fill(&mut buf[start..start + len], first, ps);
                        for (i, &e) in buf.iter().enumerate() {
                            let want = if (start..start + len).contains(&i) {
                                first.wrapping_add((i - start) as u64 * ps).to_le()
                            } else {
                                0x5a5a_5a5a_5a5a_5a5a
                            };
                            assert_eq!(e, want, "{name}: first {first:#x} ps {ps:#x} start {start} len {len} entry {i}");
                        }
                    }
                }
            }
        }
    }

    /// Runs SPDK's `nvme_pcie_prp_list_append` equivalent: returns (idx, prp1, prp2, list).
    fn spdk(segs: &[(u64, u64)]) -> Result<(u64, u64, u64, Vec<u64>), PrpError> {
        let ranges: Vec<DmaRange> = segs.iter().map(|&(a, l)| DmaRange::new(a, l)).collect();
        let mut buf = vec![0u64; 512];
        let pool = [PrpListPage::new(DmaAddr::new(LIST), &mut buf)];
        let p = encode_prp(ranges.iter().copied(), MemoryPageSize::SIZE_4K, pool)?;
        let n = p.list_page_entries(0) as usize;
        Ok((
            p.data_entries(),
            p.prp1.as_u64(),
            p.prp2.as_u64(),
            buf[..n].to_vec(),
        ))
    }

    #[test]
    fn spdk_prp_list_append_vectors() {
        let bad = |r: Result<_, PrpError>| matches!(r, Err(PrpError::NotPrpCompatible { .. }));
        assert!(bad(spdk(&[(0x100001, 0x1000)])));
        assert_eq!(
            spdk(&[(0x100000, 0x200)]).unwrap(),
            (1, 0x100000, 0, vec![])
        );
        assert_eq!(
            spdk(&[(0x108000, 0x200)]).unwrap(),
            (1, 0x108000, 0, vec![])
        );
        assert_eq!(
            spdk(&[(0x100000, 0x1000)]).unwrap(),
            (1, 0x100000, 0, vec![])
        );
        assert_eq!(
            spdk(&[(0x100800, 0x1000)]).unwrap(),
            (2, 0x100800, 0x101000, vec![])
        );
        assert_eq!(
            spdk(&[(0x100000, 0x2000)]).unwrap(),
            (2, 0x100000, 0x101000, vec![])
        );
        assert_eq!(
            spdk(&[(0x100800, 0x2000)]).unwrap(),
            (3, 0x100800, LIST, vec![0x101000, 0x102000])
        );
        assert_eq!(
            spdk(&[(0x100000, 0x3000)]).unwrap(),
            (3, 0x100000, LIST, vec![0x101000, 0x102000])
        );
        assert_eq!(
            spdk(&[(0x100800, 0x3000)]).unwrap(),
            (4, 0x100800, LIST, vec![0x101000, 0x102000, 0x103000])
        );
        assert_eq!(
            spdk(&[(0x100000, 0x1000), (0x900000, 0x1000)]).unwrap(),
            (2, 0x100000, 0x900000, vec![])
        );
        // SPDK's `prp_list_append` accepts this pair (idx 3, list [0x101000, 0x900000])
        // because it never checks where the previous buffer *ended*; a controller would
        // then transfer 0x101800..0x102000 too. The first segment ends inside a page, so
        // the layout is not expressible and the encoder names segment 0.
        assert_eq!(
            spdk(&[(0x100800, 0x1000), (0x900000, 0x1000)]),
            Err(PrpError::NotPrpCompatible {
                index: 0,
                reason: PrpIncompatibility::EndNotPageAligned
            })
        );
        // The same data ending on a page boundary is SPDK's list [0x101000, 0x900000].
        assert_eq!(
            spdk(&[(0x100800, 0x1800), (0x900000, 0x1000)]).unwrap(),
            (3, 0x100800, LIST, vec![0x101000, 0x900000])
        );
        assert_eq!(
            spdk(&[(0x100800, 0x1000), (0x900800, 0x1000)]),
            Err(PrpError::NotPrpCompatible {
                index: 0,
                reason: PrpIncompatibility::EndNotPageAligned
            })
        );
        // SPDK caps a tracker at 503 list entries; one 4 KiB list page holds 512 without
        // chaining, so (503 + 1) pages fit in one page here, and so does 0x100800 + 503 pages.
        let (idx, _, _, list) = spdk(&[(0x100000, 504 * 0x1000)]).unwrap();
        assert_eq!((idx, list.len()), (504, 503));
        let (idx, _, _, list) = spdk(&[(0x100800, 503 * 0x1000)]).unwrap();
        assert_eq!((idx, list.len()), (504, 503));
        // What SPDK refuses for lack of tracker room, a chained list expresses: 513 list
        // entries need a second page, and only one was supplied.
        assert_eq!(
            spdk(&[(0x100000, 514 * 0x1000)]),
            Err(PrpError::TooFewListPages {
                needed: 2,
                supplied: 1
            })
        );
    }

    #[test]
    fn chain_moves_last_slot_to_next_page() {
        let mps = MemoryPageSize::SIZE_4K;
        let mut a = vec![0u64; 512];
        let mut b = vec![0u64; 512];
        let pool = [
            PrpListPage::new(DmaAddr::new(0x80000), &mut a),
            PrpListPage::new(DmaAddr::new(0x81000), &mut b),
        ];
        // 514 pages: PRP1 + 513 list entries = 511 + link, then 2.
        let p = encode_prp([DmaRange::new(0x1000_0000, 514 * 0x1000)], mps, pool).unwrap();
        assert_eq!(p.list_pages_used(), 2);
        assert_eq!((p.list_page_entries(0), p.list_page_entries(1)), (512, 2));
        assert_eq!(u64::from_le(a[510]), 0x1000_0000 + 511 * 0x1000);
        assert_eq!(u64::from_le(a[511]), 0x81000);
        assert_eq!(u64::from_le(b[0]), 0x1000_0000 + 512 * 0x1000);
        assert_eq!(u64::from_le(b[1]), 0x1000_0000 + 513 * 0x1000);
    }

    #[test]
    fn list_page_with_offset_and_misaligned_pages() {
        let mps = MemoryPageSize::SIZE_4K;
        let mut a = vec![0u64; 2];
        let mut b = vec![0u64; 512];
        // First list at page end - 16: two slots, so entry 2 of 3 becomes a link.
        let pool = [
            PrpListPage::new(DmaAddr::new(0x80ff0), &mut a),
            PrpListPage::new(DmaAddr::new(0x90000), &mut b),
        ];
        let p = encode_prp([DmaRange::new(0x10000, 0x4000)], mps, pool).unwrap();
        assert_eq!(p.prp2, DmaAddr::new(0x80ff0));
        assert_eq!(
            a.iter().map(|&x| u64::from_le(x)).collect::<Vec<_>>(),
            [0x11000, 0x90000]
        );
        assert_eq!(
            b[..2].iter().map(|&x| u64::from_le(x)).collect::<Vec<_>>(),
            [0x12000, 0x13000]
        );
        let mut a = vec![0u64; 512];
        let mut b = vec![0u64; 512];
        let pool = [
            PrpListPage::new(DmaAddr::new(0x80ff0), &mut a),
            PrpListPage::new(DmaAddr::new(0x90008), &mut b),
        ];
        let e = encode_prp([DmaRange::new(0x10000, 0x4000)], mps, pool).unwrap_err();
        assert_eq!(
            e,
            PrpError::ListPageMisaligned {
                index: 1,
                bus: 0x90008
            }
        );
        let mut a = vec![0u64; 1];
        let pool = [PrpListPage::new(DmaAddr::new(0x80000), &mut a)];
        let e = encode_prp([DmaRange::new(0x10000, 0x4000)], mps, pool).unwrap_err();
        assert_eq!(e.kind(), "list_page_too_small");
    }

    #[test]
    fn range_ending_at_top_of_address_space() {
        let mps = MemoryPageSize::SIZE_4K;
        let r = DmaRange::new(u64::MAX - 0x1fff, 0x2000);
        let p = encode_prp([r], mps, core::iter::empty()).unwrap();
        assert_eq!(
            (p.prp1.as_u64(), p.prp2.as_u64()),
            (u64::MAX - 0x1fff, u64::MAX - 0xfff)
        );
    }
}
