//! Export: a physical range list → a chained Linux `struct scatterlist` table in
//! caller-supplied chunks, as `sg_alloc_table_from_pages_segment` fills and
//! `__sg_alloc_table` chains them (lib/scatterlist.c).
//!
//! # Entries
//! Each entry names the `struct page` of its first byte ([`PageModel`]) and an
//! `offset < 4096`. Contiguous bytes are merged greedily into one entry while the
//! entry's page span `offset + length` stays within `max_segment_size`, which is first
//! rounded down to 4 KiB as the kernel does (`ALIGN_DOWN(max_segment, PAGE_SIZE)`, at
//! least one page). For page-granular input this is exactly the kernel's chunking: a
//! run of consecutive frames is cut every `max_segment / PAGE_SIZE` pages, so an entry
//! starting at offset `o` holds at most `max_segment - o` bytes and ends on a page
//! boundary. Longer ranges are split the same way.
//!
//! # Chunks
//! Chunk `i` of capacity `c`: if more than `c` entries remain, it holds `c - 1` entries
//! and its last slot is the chain entry (`page_link = next chunk | SG_CHAIN`); otherwise
//! it holds all remaining entries and the last one carries `SG_END`. Slots after the
//! last entry are not touched (the kernel allocates only what it uses). Nothing is
//! written unless the whole table fits.
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

use crate::addr::Phys;
use crate::addr::{Virt, VirtAddr};
use crate::mem::{MemoryError, MemoryReader, MemoryWriter};
use crate::view::RangeView;

use super::layout::{Scatterlist, SgTable, SG_PAGE_SIZE};
use super::page::PageModel;

/// One caller-supplied array of entries and the address it lives at (the address the
/// previous chunk's chain entry points to).
///
/// A slice of chunks is also a [`MemoryReader`] / [`MemoryWriter`] over the bytes of the
/// entries at those addresses, so an exported table can be walked or DMA-mapped in place.
#[derive(Debug)]
pub struct SgChunk<'a> {
    /// Address of `entries[0]` (a CPU virtual address, as `struct scatterlist *`);
    /// 8-byte aligned.
    pub addr: VirtAddr,
    /// The slots; capacity = `entries.len()`.
    pub entries: &'a mut [Scatterlist],
}

/// How an export used the chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SgExported {
    /// The table: `sgl` = first chunk address, `nents == orig_nents` = data entries.
    pub table: SgTable,
    /// Chunks used (all but the last end in a chain entry).
    pub chunks: usize,
    /// Slots used in the last chunk.
    pub last_chunk_entries: usize,
}

/// Why a range list cannot be exported.
#[derive(Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SgExportError {
    /// No ranges.
    Empty,
    /// `max_segment_size` rounded down to 4 KiB is zero.
    InvalidMaxSegmentSize {
        /// The requested maximum in bytes.
        max_segment_size: u32,
    },
    /// The page model has no `struct page` (or an unaligned one) for a frame.
    NoStructPage {
        /// Index of the entry.
        index: u64,
        /// The frame number.
        pfn: u64,
    },
    /// More than `u32::MAX` entries.
    TooManyEntries,
    /// The chunks cannot hold the table.
    TooFewChunks {
        /// Entries the table needs (chain entries not counted).
        entries: u32,
        /// Chunks the table needs in all: exact when every chunk holds as many entries as
        /// the last one supplied (at least 1 when none was).
        needed: usize,
        /// Chunks supplied.
        chunks: usize,
    },
    /// A chunk that must hold a chain entry has fewer than two slots, or a chunk is empty.
    ChunkTooSmall {
        /// Index of the chunk.
        chunk: usize,
    },
    /// A chunk address that is not 8-byte aligned, or a chunk whose end (one past its
    /// last byte) is not below 2^64.
    MisalignedChunk {
        /// Index of the chunk.
        chunk: usize,
        /// Its address.
        addr: u64,
    },
}

/// Frame numbers and addresses in hex, indices and counts in decimal.
///
/// ```
/// use physvec::sg::SgExportError;
/// let e = SgExportError::MisalignedChunk { chunk: 1, addr: 0x8004 };
/// assert_eq!(format!("{e:?}"), "MisalignedChunk { chunk: 1, addr: 0x8004 }");
/// ```
impl core::fmt::Debug for SgExportError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        use crate::fmt::Hex;
        match *self {
            SgExportError::Empty => f.write_str("Empty"),
            SgExportError::InvalidMaxSegmentSize { max_segment_size } => f
                .debug_struct("InvalidMaxSegmentSize")
                .field("max_segment_size", &Hex(u64::from(max_segment_size)))
                .finish(),
            SgExportError::NoStructPage { index, pfn } => f
                .debug_struct("NoStructPage")
                .field("index", &index)
                .field("pfn", &Hex(pfn))
                .finish(),
            SgExportError::TooManyEntries => f.write_str("TooManyEntries"),
            SgExportError::TooFewChunks {
                entries,
                needed,
                chunks,
            } => f
                .debug_struct("TooFewChunks")
                .field("entries", &entries)
                .field("needed", &needed)
                .field("chunks", &chunks)
                .finish(),
            SgExportError::ChunkTooSmall { chunk } => f
                .debug_struct("ChunkTooSmall")
                .field("chunk", &chunk)
                .finish(),
            SgExportError::MisalignedChunk { chunk, addr } => f
                .debug_struct("MisalignedChunk")
                .field("chunk", &chunk)
                .field("addr", &Hex(addr))
                .finish(),
        }
    }
}

impl SgExportError {
    /// Stable snake_case name of the variant.
    pub fn kind(&self) -> &'static str {
        match self {
            SgExportError::Empty => "empty",
            SgExportError::InvalidMaxSegmentSize { .. } => "invalid_max_segment_size",
            SgExportError::NoStructPage { .. } => "no_struct_page",
            SgExportError::TooManyEntries => "too_many_entries",
            SgExportError::TooFewChunks { .. } => "too_few_chunks",
            SgExportError::ChunkTooSmall { .. } => "chunk_too_small",
            SgExportError::MisalignedChunk { .. } => "misaligned_chunk",
        }
    }
}

impl fmt::Display for SgExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SgExportError::Empty => f.write_str("no ranges to export"),
            SgExportError::InvalidMaxSegmentSize { max_segment_size } => write!(
                f,
                "max_segment_size {max_segment_size:#x} is below one 4 KiB page"
            ),
            SgExportError::NoStructPage { index, pfn } => write!(
                f,
                "entry {index}: the page model has no aligned struct page for pfn {pfn:#x}"
            ),
            SgExportError::TooManyEntries => f.write_str("more than u32::MAX entries"),
            SgExportError::TooFewChunks {
                entries,
                needed,
                chunks,
            } => write!(
                f,
                "{entries} {} need {needed} {} (with chain entries), only {chunks} {} supplied",
                crate::fmt::plural(u64::from(entries), "entry", "entries"),
                crate::fmt::plural(needed as u64, "chunk", "chunks"),
                crate::fmt::plural(chunks as u64, "was", "were")
            ),
            SgExportError::ChunkTooSmall { chunk } => {
                write!(
                    f,
                    "chunk {chunk} is too small to hold an entry and a chain link"
                )
            }
            SgExportError::MisalignedChunk { chunk, addr } => {
                write!(f, "chunk {chunk} at {addr:#x} is not 8-byte aligned")
            }
        }
    }
}

impl core::error::Error for SgExportError {}

/// How a chunk of `capacity` slots is used when `remaining` entries are still to be
/// placed: `(data entries, chained)` as `__sg_alloc_table` decides (`left > max_ents` →
/// `max_ents - 1` entries and a chain slot). `None` when the chunk cannot make progress
/// (empty, or a chain is needed and `capacity < 2`).
///
/// ```
/// use physvec::sg::chunk_split;
/// assert_eq!(chunk_split(300, 128), Some((127, true)));
/// assert_eq!(chunk_split(128, 128), Some((128, false)));
/// assert_eq!(chunk_split(3, 1), None);
/// ```
pub const fn chunk_split(remaining: u32, capacity: usize) -> Option<(usize, bool)> {
    let rem = remaining as usize;
    if capacity == 0 {
        None
    } else if rem > capacity {
        match capacity.checked_sub(1) {
            // A chained chunk needs a data slot besides its chain slot.
            Some(data) if data >= 1 => Some((data, true)),
            _ => None,
        }
    } else {
        Some((rem, false))
    }
}

/// Calls `f(start, len)` for every entry the export would write, in order.
fn for_each_entry<E>(
    view: &RangeView<'_, Phys>,
    max: u64,
    mut f: impl FnMut(u64, u32) -> Result<(), E>,
) -> Result<(), E> {
    let page_mask = SG_PAGE_SIZE.mask();
    let mut cur: Option<(u64, u64)> = None;
    for r in view.iter() {
        let mut a = r.addr().as_u64();
        let mut rem = r.len();
        while rem > 0 {
            match cur {
                Some((s, l)) if s.checked_add(l) == Some(a) => {
                    // An entry never grows past `max` from its page offset, so both
                    // subtractions stay >= 0; `None` (impossible) just closes the entry.
                    let room = max
                        .checked_sub(s & page_mask)
                        .and_then(|r| r.checked_sub(l))
                        .unwrap_or(0);
                    if room == 0 {
                        f(s, l as u32)?;
                        cur = None;
                        continue;
                    }
                    let take = room.min(rem);
                    // `l + take <= max`, a u32-sized value.
                    cur = Some((s, l.saturating_add(take)));
                    a = a.wrapping_add(take);
                    // `take <= rem`.
                    rem = rem.saturating_sub(take);
                }
                Some((s, l)) => {
                    f(s, l as u32)?;
                    cur = None;
                }
                None => cur = Some((a, 0)),
            }
        }
    }
    if let Some((s, l)) = cur {
        f(s, l as u32)?;
    }
    Ok(())
}

fn effective_max(max_segment_size: u32) -> Result<u64, SgExportError> {
    let max = u64::from(max_segment_size) & !SG_PAGE_SIZE.mask();
    if max == 0 {
        return Err(SgExportError::InvalidMaxSegmentSize { max_segment_size });
    }
    Ok(max)
}

/// The number of entries (chain entries not counted) exporting `view` produces.
///
/// # Errors
/// [`SgExportError::Empty`], [`SgExportError::InvalidMaxSegmentSize`],
/// [`SgExportError::TooManyEntries`].
///
/// ```
/// use physvec::{PhysRange, RangeView};
/// let r = [PhysRange::new(0x10800, 0x3000)];
/// // max 0x2000: 0x1800 (offset 0x800 counts), then 0x1800.
/// assert_eq!(physvec::sg::entries_needed(&RangeView::full(&r).unwrap(), 0x2000), Ok(2));
/// ```
pub fn entries_needed(
    view: &RangeView<'_, Phys>,
    max_segment_size: u32,
) -> Result<u32, SgExportError> {
    let max = effective_max(max_segment_size)?;
    if view.is_empty() {
        return Err(SgExportError::Empty);
    }
    let mut n: u32 = 0;
    for_each_entry(view, max, |_, _| {
        n = n.checked_add(1).ok_or(SgExportError::TooManyEntries)?;
        Ok(())
    })?;
    Ok(n)
}

/// Writes `view` as a chained scatterlist table into `chunks` (see the module docs for
/// the exact layout) and returns the table.
///
/// # Errors
/// Everything is checked before the first write: no ranges, a `max_segment_size`
/// below 4 KiB, a frame without `struct page`, too few or too small chunks, a misaligned
/// chunk. On error the chunks are unchanged.
///
/// # Examples
/// ```
/// use physvec::sg::{export, Scatterlist, SgChunk, Vmemmap, SG_DEFAULT_MAX_SEGMENT};
/// use physvec::{PhysRange, RangeView};
/// let r = [PhysRange::new(0x10000, 0x2000), PhysRange::new(0x40200, 0x200)];
/// let mut a = [Scatterlist::default(); 2];
/// let mut b = [Scatterlist::default(); 2];
/// let mut chunks = [SgChunk { addr: physvec::VirtAddr::new(0x8000), entries: &mut a }, SgChunk { addr: physvec::VirtAddr::new(0x9000), entries: &mut b }];
/// let vm = Vmemmap::new(0xffffea0000000000);
/// let t = export(&RangeView::full(&r)?, &vm, SG_DEFAULT_MAX_SEGMENT, &mut chunks)?.table;
/// assert_eq!((t.sgl, t.nents, t.orig_nents), (0x8000, 2, 2));
/// assert_eq!(a[0].page(), 0xffffea0000000000 + 0x10 * 64);
/// assert!(a[1].is_last() && a[1].offset == 0x200);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn export<P: PageModel + ?Sized>(
    view: &RangeView<'_, Phys>,
    model: &P,
    max_segment_size: u32,
    chunks: &mut [SgChunk<'_>],
) -> Result<SgExported, SgExportError> {
    let max = effective_max(max_segment_size)?;
    let n = entries_needed(view, max_segment_size)?;
    // Validate pages.
    let mut index = 0u64;
    for_each_entry(view, max, |s, _| {
        let pfn = s >> SG_PAGE_SIZE.shift();
        match model.page_of(pfn) {
            Some(p) if p & 3 == 0 => {
                // One per entry, at most `u32::MAX` entries.
                index = index.saturating_add(1);
                Ok(())
            }
            _ => Err(SgExportError::NoStructPage { index, pfn }),
        }
    })?;
    // Validate chunk layout.
    let mut rem = n;
    let mut used = 0usize;
    let mut last_used = 0usize;
    while rem > 0 {
        let Some(chunk) = chunks.get(used) else {
            // Assume further chunks the size of the last one to say how many are needed.
            let cap = chunks.last().map_or(0, |c| c.entries.len());
            // Such a chunk holds `cap - 1` data entries plus the chain entry when more
            // follow, and up to `cap` when it is the last one. (`cap` is at least 2 here
            // when entries remain: a last chunk of 1 slot failed `chunk_split` above.)
            let more = (rem as usize)
                .checked_sub(cap)
                .zip(cap.checked_sub(1).and_then(core::num::NonZeroUsize::new))
                .map_or(1, |(over, per)| over.div_ceil(per.get()).saturating_add(1));
            return Err(SgExportError::TooFewChunks {
                entries: n,
                needed: used.saturating_add(more),
                chunks: chunks.len(),
            });
        };
        let bytes = (chunk.entries.len() as u64).saturating_mul(Scatterlist::SIZE as u64);
        if chunk.addr.as_u64() % 8 != 0 || chunk.addr.checked_add(bytes).is_err() {
            return Err(SgExportError::MisalignedChunk {
                chunk: used,
                addr: chunk.addr.as_u64(),
            });
        }
        let (data, chained) = chunk_split(rem, chunk.entries.len())
            .ok_or(SgExportError::ChunkTooSmall { chunk: used })?;
        // `chunk_split` gives `data <= rem` and `data < entries.len()` when chained.
        rem = rem.saturating_sub(data as u32);
        last_used = data.saturating_add(usize::from(chained));
        used = used.saturating_add(1);
    }
    // Write. The layout was validated above, so every `get` below finds its slot; a miss
    // (impossible) stops the write instead of panicking.
    let (mut c, mut slot, mut left) = (0usize, 0usize, n);
    let mut chunk_room = chunks
        .first()
        .and_then(|ch| chunk_split(n, ch.entries.len()))
        .map_or(0, |(d, _)| d);
    let _ = for_each_entry(view, max, |s, len| -> Result<(), ()> {
        if chunk_room == 0 {
            let next = chunks.get(c.saturating_add(1)).ok_or(())?.addr;
            let chain = chunks
                .get_mut(c)
                .and_then(|ch| ch.entries.get_mut(slot))
                .ok_or(())?;
            *chain = Scatterlist::chain_entry(next.as_u64());
            c = c.saturating_add(1);
            slot = 0;
            chunk_room = chunks
                .get(c)
                .and_then(|ch| chunk_split(left, ch.entries.len()))
                .map_or(0, |(d, _)| d);
        }
        let page = model.page_of(s >> SG_PAGE_SIZE.shift()).unwrap_or(0);
        let offset = (s & SG_PAGE_SIZE.mask()) as u32;
        let entry = chunks
            .get_mut(c)
            .and_then(|ch| ch.entries.get_mut(slot))
            .ok_or(())?;
        *entry = Scatterlist::page_entry(page, offset, len, left == 1);
        // One entry per call, `n` calls in all: none of these wraps.
        slot = slot.saturating_add(1);
        chunk_room = chunk_room.saturating_sub(1);
        left = left.saturating_sub(1);
        Ok(())
    });
    Ok(SgExported {
        table: SgTable {
            sgl: chunks.first().map_or(0, |ch| ch.addr.as_u64()),
            nents: n,
            orig_nents: n,
        },
        chunks: used,
        last_chunk_entries: last_used,
    })
}

fn locate_chunk(chunks: &[SgChunk<'_>], addr: u64, len: usize) -> Option<(usize, usize)> {
    chunks.iter().enumerate().find_map(|(i, c)| {
        let off = addr.checked_sub(c.addr.as_u64())?;
        let size = (c.entries.len() as u64).saturating_mul(Scatterlist::SIZE as u64);
        let end = off.checked_add(len as u64)?;
        (end <= size).then_some((i, off as usize))
    })
}

impl MemoryReader<Virt> for [SgChunk<'_>] {
    fn read(&self, addr: VirtAddr, buf: &mut [u8]) -> Result<(), MemoryError<Virt>> {
        let err = MemoryError::at(addr, buf.len());
        let (ci, mut off) = locate_chunk(self, addr.as_u64(), buf.len()).ok_or(err)?;
        let entries = &self.get(ci).ok_or(err)?.entries;
        let mut rest = &mut buf[..];
        while !rest.is_empty() {
            let bytes = entries
                .get(off / Scatterlist::SIZE)
                .ok_or(err)?
                .to_le_bytes();
            let src = bytes.get(off % Scatterlist::SIZE..).ok_or(err)?;
            let take = src.len().min(rest.len());
            let (dst, tail) = core::mem::take(&mut rest).split_at_mut(take);
            dst.copy_from_slice(src.get(..take).ok_or(err)?);
            rest = tail;
            // `locate_chunk` checked `off + buf.len()` against the chunk's size.
            off = off.saturating_add(take);
        }
        Ok(())
    }
}

impl MemoryWriter<Virt> for [SgChunk<'_>] {
    fn write(&mut self, addr: VirtAddr, buf: &[u8]) -> Result<(), MemoryError<Virt>> {
        let err = MemoryError::at(addr, buf.len());
        let (ci, mut off) = locate_chunk(self, addr.as_u64(), buf.len()).ok_or(err)?;
        let entries = &mut self.get_mut(ci).ok_or(err)?.entries;
        let mut rest = buf;
        while !rest.is_empty() {
            let e = entries.get_mut(off / Scatterlist::SIZE).ok_or(err)?;
            let mut bytes = e.to_le_bytes();
            let dst = bytes.get_mut(off % Scatterlist::SIZE..).ok_or(err)?;
            let take = dst.len().min(rest.len());
            let (src, tail) = rest.split_at(take);
            dst.get_mut(..take).ok_or(err)?.copy_from_slice(src);
            *e = Scatterlist::from_le_bytes(&bytes);
            rest = tail;
            // `locate_chunk` checked `off + buf.len()` against the chunk's size.
            off = off.saturating_add(take);
        }
        Ok(())
    }
}

crate::error::error_info!(SgExportError, |e| match *e {
    SgExportError::NoStructPage { index, .. } => Some(crate::error::Position::Index(index)),
    SgExportError::ChunkTooSmall { chunk } | SgExportError::MisalignedChunk { chunk, .. } => {
        Some(crate::error::Position::index(chunk))
    }
    _ => None,
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
    use super::super::layout::{SG_CHAIN, SG_END};
    use super::super::page::Vmemmap;
    use super::*;
    use crate::PhysRange;

    const VM: Vmemmap = Vmemmap::new(0xffff_ea00_0000_0000);

    #[test]
    fn chains_full_chunks_like_sg_alloc_table() {
        // 6 single-page entries in chunks of 3: [e0 e1 chain] [e2 e3 chain] [e4 e5]
        let r: [PhysRange; 6] =
            core::array::from_fn(|i| PhysRange::new(0x10000 * (i as u64 + 1), 0x1000));
        let mut a = [Scatterlist::default(); 3];
        let mut b = [Scatterlist::default(); 3];
        let mut c = [Scatterlist::default(); 3];
        let mut chunks = [
            SgChunk {
                addr: VirtAddr::new(0x1000),
                entries: &mut a,
            },
            SgChunk {
                addr: VirtAddr::new(0x2000),
                entries: &mut b,
            },
            SgChunk {
                addr: VirtAddr::new(0x3000),
                entries: &mut c,
            },
        ];
        let x = export(&RangeView::full(&r).unwrap(), &VM, u32::MAX, &mut chunks).unwrap();
        assert_eq!(
            x.table,
            SgTable {
                sgl: 0x1000,
                nents: 6,
                orig_nents: 6
            }
        );
        assert_eq!((x.chunks, x.last_chunk_entries), (3, 2));
        assert_eq!(a[2].page_link, 0x2000 | SG_CHAIN);
        assert_eq!(b[2].page_link, 0x3000 | SG_CHAIN);
        assert_eq!(c[0].page_link & SG_END, 0);
        assert_eq!(c[1].page_link & SG_END, SG_END);
        assert_eq!(c[2], Scatterlist::default());
    }

    #[test]
    fn exact_fit_needs_no_chain() {
        let r: [PhysRange; 3] =
            core::array::from_fn(|i| PhysRange::new(0x10000 * (i as u64 + 1), 0x1000));
        let mut a = [Scatterlist::default(); 3];
        let mut chunks = [SgChunk {
            addr: VirtAddr::new(0x1000),
            entries: &mut a,
        }];
        let x = export(&RangeView::full(&r).unwrap(), &VM, u32::MAX, &mut chunks).unwrap();
        assert_eq!(x.table.nents, 3);
        assert!(a[2].is_last() && !a[2].is_chain());
    }

    #[test]
    fn splits_like_the_kernel_and_merges() {
        // Unaligned start: the first entry ends on a page boundary.
        let r = [
            PhysRange::new(0x10800, 0x1800),
            PhysRange::new(0x12000, 0x2000),
        ];
        let mut a = [Scatterlist::default(); 8];
        let mut chunks = [SgChunk {
            addr: VirtAddr::new(0x1000),
            entries: &mut a,
        }];
        let x = export(&RangeView::full(&r).unwrap(), &VM, 0x2fff, &mut chunks).unwrap();
        // max rounds down to 0x2000: [0x10800, 0x1800] [0x12000, 0x2000]
        assert_eq!(x.table.nents, 2);
        assert_eq!((a[0].offset, a[0].length), (0x800, 0x1800));
        assert_eq!((a[1].offset, a[1].length), (0, 0x2000));
        assert_eq!(a[1].page(), VM.page_of(0x12).unwrap());
    }

    #[test]
    fn errors_leave_chunks_untouched() {
        let r: [PhysRange; 4] =
            core::array::from_fn(|i| PhysRange::new(0x10000 * (i as u64 + 1), 0x1000));
        let mut a = [Scatterlist::default(); 3];
        let mut chunks = [SgChunk {
            addr: VirtAddr::new(0x1000),
            entries: &mut a,
        }];
        let e = export(&RangeView::full(&r).unwrap(), &VM, u32::MAX, &mut chunks).unwrap_err();
        assert_eq!(e.kind(), "too_few_chunks");
        assert!(a.iter().all(|e| *e == Scatterlist::default()));
        let mut a = [Scatterlist::default(); 3];
        let mut b = [Scatterlist::default(); 1];
        let mut chunks = [
            SgChunk {
                addr: VirtAddr::new(0x1000),
                entries: &mut a,
            },
            SgChunk {
                addr: VirtAddr::new(0x2000),
                entries: &mut b,
            },
        ];
        let e = export(&RangeView::full(&r).unwrap(), &VM, u32::MAX, &mut chunks).unwrap_err();
        assert_eq!(e, SgExportError::ChunkTooSmall { chunk: 1 });
        let mut a = [Scatterlist::default(); 2];
        let mut b = [Scatterlist::default(); 2];
        let mut chunks = [
            SgChunk {
                addr: VirtAddr::new(0x1000),
                entries: &mut a,
            },
            SgChunk {
                addr: VirtAddr::new(0x2000),
                entries: &mut b,
            },
        ];
        let e = export(&RangeView::full(&r).unwrap(), &VM, u32::MAX, &mut chunks).unwrap_err();
        assert_eq!(
            e,
            SgExportError::TooFewChunks {
                entries: 4,
                needed: 3,
                chunks: 2
            }
        );
        let e = export(&RangeView::full(&r).unwrap(), &VM, 0xfff, &mut chunks).unwrap_err();
        assert_eq!(e.kind(), "invalid_max_segment_size");
    }

    #[test]
    fn chunks_are_memory() {
        let mut a = [Scatterlist::page_entry(0x40, 1, 2, true)];
        let mut chunks = [SgChunk {
            addr: VirtAddr::new(0x1000),
            entries: &mut a,
        }];
        assert_eq!(chunks.read_u64_le(VirtAddr::new(0x1000)).unwrap(), 0x42);
        chunks
            .write(VirtAddr::new(0x1010), &7u64.to_le_bytes())
            .unwrap();
        assert!(chunks.read_u64_le(VirtAddr::new(0x1020)).is_err());
        assert_eq!(a[0].dma_address, 7);
    }
}
