//! [`PrpWriter`]: the PRP encoder as a stream, one DMA range at a time (what
//! `nvme_pci_setup_data_prp` does with `blk_rq_dma_map_iter_next` since Linux 6.17).
//! [`encode_prp`](super::encode_prp) is a thin layer over it.
#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

use core::borrow::Borrow;

use super::page::MemoryPageSize;
use super::prp::{
    by_value, fill, prp_entries, Prp, PrpError, PrpIncompatibility, PrpListPage, Writer,
};
use crate::addr::Dma;
use crate::map::{DmaMapper, LinearMap, MapStream, Mapping, P2pClassifier, P2pMapType};
use crate::range::{DmaRange, PhysRange};
use crate::sink::RangeSink;

/// Writes PRP1/PRP2 and the PRP list pages as DMA ranges arrive: no list of ranges, no
/// second pass, no allocation.
///
/// Created with the transfer's total length ([`PrpWriter::new`]): the number of entries
/// follows from it and from the first range's offset in its page, which is all the
/// chaining decisions need. Each range's entries are written as it arrives, nothing is
/// held back; contiguous ranges share their common page, exactly as
/// [`encode_prp`](super::encode_prp) coalesces them, and for every input the two produce the
/// same PRPs, list contents and errors (a property test holds them to it), except that
/// a layout error is found when its range arrives, so list pages may hold partial lists
/// then (`encode_prp` checks the layout before writing). Pool errors
/// ([`PrpError::TooFewListPages`], ...) are reported by [`PrpWriter::finish`], after
/// the layout has been checked to the end, as `encode_prp` orders them.
///
/// # Examples
/// ```
/// use physvec::nvme::{encode_prp, MemoryPageSize, PrpListPage, PrpWriter};
/// use physvec::{DmaAddr, DmaRange};
/// let pages = [DmaRange::new(0x10_0800, 0x800), DmaRange::new(0x20_0000, 0x1000), DmaRange::new(0x30_0000, 0x1000)];
/// let mut list = [0u64; 512];
/// let mut w = PrpWriter::new(MemoryPageSize::SIZE_4K, 0x2800, [PrpListPage::new(DmaAddr::new(0x8000), &mut list)]);
/// for p in pages {
///     w.push(p)?;
/// }
/// let prp = w.finish()?;
/// assert_eq!((prp.prp1.as_u64(), prp.prp2.as_u64()), (0x10_0800, 0x8000));
/// assert_eq!(&list[..2], &[0x20_0000u64.to_le(), 0x30_0000u64.to_le()]);
///
/// // The same as the list encoder.
/// let mut list2 = [0u64; 512];
/// let prp2 = encode_prp(pages, MemoryPageSize::SIZE_4K, [PrpListPage::new(DmaAddr::new(0x8000), &mut list2)])?;
/// assert_eq!((prp, list), (prp2, list2));
/// # Ok::<(), physvec::nvme::PrpError>(())
/// ```
pub struct PrpWriter<'a, P: Iterator<Item = PrpListPage<'a>>> {
    w: Writer<'a, P>,
    mps: MemoryPageSize,
    /// `mps - 1` and `mps`, cached for the hot path.
    mask: u64,
    ps: u64,
    /// PRP entries of the transfer (PRP1 included); known from the first range.
    n: u64,
    /// The byte total announced, `None` when created from an entry count.
    declared: Option<u64>,
    prp1: u64,
    /// Entries emitted so far (0 before the first range).
    k: u64,
    /// Last byte of the previous range, `None` before the first (kept up to date by
    /// the general path only; the fast path leaves it page-aligned-ended, see `flush`).
    prev_last: Option<u64>,
    /// Whole pages taken by the fast path since the last `flush`: each one list entry
    /// and one page of bytes, the previous range's last byte then being the last byte
    /// of the last such page.
    fast_pages: u64,
    /// Address of the last page the fast path took.
    fast_last: u64,
    /// Entries beyond the first of multi-page fast-path ranges (so that the ranges
    /// taken are `fast_pages - fast_extra`).
    fast_extra: u64,
    index: usize,
    seen: u64,
    /// The first pool error: writing stops, the layout is still checked.
    deferred: Option<PrpError>,
    /// More entries than the announced total allows: writing stops.
    excess: bool,
    /// The layout error, once found (final).
    failed: Option<PrpError>,
    /// Started, healthy, PRP2 is a list, and the previous range ended on a page: a
    /// whole page-aligned page is then one list entry ([`PrpWriter::push`]'s fast path).
    fast: bool,
}

impl<'a, P: Iterator<Item = PrpListPage<'a>>> PrpWriter<'a, P> {
    /// A writer for a transfer of `total` bytes, taking list pages from `pool` in order,
    /// only as many as needed (see [`PrpListPage`] for their alignment).
    ///
    /// ```
    /// use physvec::nvme::{MemoryPageSize, PrpWriter};
    /// use physvec::DmaRange;
    /// let mut w = PrpWriter::new(MemoryPageSize::SIZE_4K, 0x2000, core::iter::empty());
    /// w.push(DmaRange::new(0x4000, 0x2000))?;
    /// let prp = w.finish()?;
    /// assert_eq!((prp.prp1.as_u64(), prp.prp2.as_u64()), (0x4000, 0x5000));
    /// # Ok::<(), physvec::nvme::PrpError>(())
    /// ```
    #[inline]
    pub fn new<I>(mps: MemoryPageSize, total: u64, pool: I) -> Self
    where
        I: IntoIterator<IntoIter = P>,
    {
        let mut w = Self::with_entries(mps, 0, pool);
        w.declared = Some(total);
        w
    }

    /// A writer for a transfer of exactly `n` PRP entries (from
    /// [`prp_entries`](super::prp_entries)).
    #[inline]
    pub(super) fn with_entries<I>(mps: MemoryPageSize, n: u64, pool: I) -> Self
    where
        I: IntoIterator<IntoIter = P>,
    {
        Self {
            w: Writer::new(pool.into_iter(), mps, n),
            mps,
            mask: mps.mask(),
            ps: mps.get(),
            n,
            declared: None,
            prp1: 0,
            k: 0,
            prev_last: None,
            fast_pages: 0,
            fast_last: 0,
            fast_extra: 0,
            index: 0,
            seen: 0,
            deferred: None,
            excess: false,
            failed: None,
            fast: false,
        }
    }

    /// Appends the next DMA range of the transfer and writes its entries: one per memory
    /// page it touches that the previous range did not (contiguous ranges share a page).
    ///
    /// # Errors
    /// [`PrpError::NotPrpCompatible`] naming the first offending range, as
    /// [`encode_prp`](super::encode_prp) would; the error is final.
    #[inline(always)]
    pub fn push(&mut self, r: DmaRange) -> Result<(), PrpError> {
        let s = r.addr().as_u64();
        let mask = self.mask;
        if self.fast && s & mask == 0 {
            let len = r.len();
            if len == self.ps {
                if self.w.try_push_one(s) {
                    self.fast_pages = self.fast_pages.wrapping_add(1);
                    self.fast_last = s;
                    return Ok(());
                }
            } else if len & mask == 0 {
                // Whole pages: `count >= 2` entries, `len - ps` does not wrap.
                let count = len >> self.mps.page_size().shift();
                if self.w.try_push_run(s, count) {
                    self.fast_pages = self.fast_pages.wrapping_add(count);
                    self.fast_extra = self.fast_extra.wrapping_add(count.wrapping_sub(1));
                    self.fast_last = s.wrapping_add(len.wrapping_sub(self.ps));
                    return Ok(());
                }
            }
        }
        self.flush();
        let result = self.push_general(r);
        self.fast = self.failed.is_none()
            && self.deferred.is_none()
            && !self.excess
            && self.n != 2
            && self.prev_last.is_some_and(|l| l & mask == mask);
        result
    }

    /// The fused direct loop of [`map_prp`]: while the writer is on its fast path, takes
    /// ranges from `it` that are whole, aligned memory pages (or runs of them) of
    /// ordinary memory (`p2p` says `None`) mapped by `lin`, at most `max_bytes` in all,
    /// and writes their DMA addresses straight into the open list page: one
    /// monomorphic loop, no call per page. Returns the ranges taken (each a whole
    /// number of pages) and the next range, which needs the general path (`None`: `it`
    /// is exhausted). Each range taken is exactly what [`MapStream::push`] then
    /// [`PrpWriter::push`] would have done with it.
    #[inline(always)]
    fn take_linear_pages<I, C>(
        &mut self,
        it: &mut I,
        lin: LinearMap,
        p2p: &C,
        max_bytes: u64,
    ) -> (usize, Option<PhysRange>)
    where
        I: Iterator<Item = PhysRange>,
        C: P2pClassifier + ?Sized,
    {
        let (ps, mask) = (self.ps, self.mask);
        let shift = self.mps.page_size().shift();
        let top = lin.last_page_start(self.mps.page_size());
        if self.fast && self.w.unopened() {
            // The first list entry: open the first list page here rather than through
            // the general path (a pool error is deferred to `finish`, as there).
            if let Err(e) = self.w.open_first() {
                self.deferred = Some(e);
                self.fast = false;
                return (0, it.next());
            }
        }
        let slots = self.w.fast_slots();
        let (true, Some(top)) = (self.fast && !slots.is_empty(), top) else {
            return (0, it.next());
        };
        let off = lin.offset();
        let room = usize::try_from(max_bytes >> shift).unwrap_or(usize::MAX);
        let room = room.min(slots.len());
        let slots = slots.get_mut(..room).unwrap_or_default();
        let mut rest = &mut *slots;
        // Entries beyond the first of multi-page ranges.
        let mut extra = 0u64;
        let next = loop {
            let Some(r) = it.next() else {
                break None;
            };
            let len = r.len();
            let d = r.addr().as_u64().wrapping_add(off);
            // Aligned on the device side, no wrap, ordinary memory.
            if d & mask != 0 || d < off || p2p.map_type(r) != P2pMapType::None {
                break Some(r);
            }
            if len == ps && d <= top {
                // One page: one entry, if there is a slot.
                let Some((slot, tail)) = core::mem::take(&mut rest).split_first_mut() else {
                    break Some(r);
                };
                *slot = d.to_le();
                rest = tail;
            } else {
                // Whole pages: `count >= 2` entries, the last page under the mask, all
                // in free slots.
                let count = usize::try_from(len >> shift).unwrap_or(usize::MAX);
                let fits = len & mask == 0
                    && count <= rest.len()
                    && d.checked_add(len.wrapping_sub(ps))
                        .is_some_and(|lp| lp <= top);
                if !fits {
                    break Some(r);
                }
                // `count <= rest.len()`: always splits.
                let Some((dst, tail)) = core::mem::take(&mut rest).split_at_mut_checked(count)
                else {
                    break Some(r);
                };
                if count <= 32 {
                    let mut v = d;
                    for e in dst.iter_mut() {
                        *e = v.to_le();
                        v = v.wrapping_add(ps);
                    }
                } else {
                    fill(dst, d, ps);
                }
                rest = tail;
                extra = extra.wrapping_add(count as u64).wrapping_sub(1);
            }
        };
        let used = room.saturating_sub(rest.len());
        let last = used.checked_sub(1).and_then(|i| slots.get(i)).copied();
        if let Some(last) = last {
            let used = used as u64;
            self.w.advance_fast(used);
            self.fast_pages = self.fast_pages.wrapping_add(used);
            self.fast_extra = self.fast_extra.wrapping_add(extra);
            self.fast_last = u64::from_le(last);
        }
        // Each range taken wrote one entry plus its extra ones.
        let ranges = (used as u64).wrapping_sub(extra) as usize;
        (ranges, next)
    }

    /// Brings the counters up to date after fast-path pages.
    #[inline]
    fn flush(&mut self) {
        let n = self.fast_pages;
        if n != 0 {
            // `n` entries written, so `n <= 2^61`: no overflow in the products.
            self.k = self.k.saturating_add(n);
            let ranges = n.wrapping_sub(self.fast_extra);
            self.index = self
                .index
                .wrapping_add(usize::try_from(ranges).unwrap_or(usize::MAX));
            self.seen = self.seen.saturating_add(n.saturating_mul(self.ps));
            self.prev_last = Some(self.fast_last | self.mask);
            self.fast_pages = 0;
            self.fast_extra = 0;
        }
    }

    /// [`PrpWriter::push`] in general: every layout, every error.
    #[inline]
    fn push_general(&mut self, r: DmaRange) -> Result<(), PrpError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let index = self.index;
        self.index = index.wrapping_add(1);
        self.seen = self.seen.saturating_add(r.len());
        let mask = self.mps.mask();
        let shift = self.mps.page_size().shift();
        let s = r.addr().as_u64();
        let l = r.last().as_u64();
        // `l >= s`: no overflow in the page counts below.
        let (entry, count) = match self.prev_last {
            Some(pl) if pl.checked_add(1) == Some(s) => {
                // Contiguous: the pages after the one the previous range ended in.
                (
                    (pl | mask).wrapping_add(1),
                    (l >> shift).wrapping_sub(pl >> shift),
                )
            }
            Some(pl) => {
                if pl & mask != mask {
                    return Err(
                        self.fail(index.wrapping_sub(1), PrpIncompatibility::EndNotPageAligned)
                    );
                }
                if s & mask != 0 {
                    return Err(self.fail(index, PrpIncompatibility::StartNotPageAligned));
                }
                (s, (l >> shift).wrapping_sub(s >> shift).wrapping_add(1))
            }
            None => {
                if s & 3 != 0 {
                    return Err(self.fail(index, PrpIncompatibility::Prp1NotDwordAligned));
                }
                if let Some(total) = self.declared {
                    self.n = entries_for(s, total, self.mps);
                    self.w.set_entries(self.n);
                }
                self.prp1 = s;
                self.k = 1;
                (
                    (s | mask).wrapping_add(1),
                    (l >> shift).wrapping_sub(s >> shift),
                )
            }
        };
        self.prev_last = Some(l);
        if count != 0 {
            self.emit(entry, count);
        }
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn fail(&mut self, index: usize, reason: PrpIncompatibility) -> PrpError {
        let e = PrpError::NotPrpCompatible { index, reason };
        self.failed = Some(e);
        e
    }

    /// Writes `count` entries `entry, entry + page, ...` (after PRP1).
    #[inline(always)]
    fn emit(&mut self, entry: u64, count: u64) {
        let k = self.k;
        self.k = k.saturating_add(count);
        if self.deferred.is_some() || self.excess {
            return;
        }
        if count > self.n.saturating_sub(k) {
            self.excess = true;
            return;
        }
        let r = if self.n == 2 {
            // PRP1 and exactly one more entry: PRP2 is a data pointer.
            self.w.prp2 = entry;
            Ok(())
        } else if count == 1 {
            self.w.push_one(entry)
        } else {
            self.w.push_run(entry, count)
        };
        if let Err(e) = r {
            self.deferred = Some(e);
        }
    }

    /// Ends the transfer and returns PRP1/PRP2 and the list usage.
    ///
    /// # Errors
    /// The layout error [`PrpWriter::push`] reported, [`PrpError::Empty`] when nothing
    /// was pushed, [`PrpError::StreamLength`] when the ranges do not add up to the
    /// announced total, then the pool errors of [`encode_prp`](super::encode_prp).
    #[inline]
    pub fn finish(mut self) -> Result<Prp, PrpError> {
        self.flush();
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.prev_last.is_none() {
            return Err(PrpError::Empty);
        }
        if let Some(declared) = self.declared {
            if self.seen != declared {
                return Err(PrpError::StreamLength {
                    declared,
                    streamed: self.seen,
                });
            }
        }
        if self.excess {
            return Err(PrpError::StreamLength {
                declared: self.declared.unwrap_or(0),
                streamed: self.seen,
            });
        }
        if let Some(e) = self.deferred {
            return Err(e);
        }
        Ok(self.w.prp(self.prp1))
    }
}

/// The fused per-I/O path: physical ranges (pages) → [`MapStream`] → PRP entries, in
/// one pass, with no list in between and no allocation (`nvme_pci_setup_data_prp`
/// driving `blk_rq_dma_map_iter_next`).
///
/// `stream` was started for the transfer (its first range and total length); `phys`
/// yields every range, the first included. Each range is mapped and its DMA range goes
/// straight into a [`PrpWriter`]. For a direct mapper without unmap work
/// (`need_unmap() == false`) and [`Keep::WhenNeeded`](crate::map::Keep), nothing is
/// stored at all; through an IOMMU the mapping keeps only its reservation.
///
/// # Errors
/// The stream's and the writer's errors; on any error everything mapped so far is
/// unmapped (the stream or the mapping is dropped).
///
/// # Examples
/// ```
/// use physvec::map::{DataDirection, DirectMapper, MapStream, NoP2p, StreamOptions};
/// use physvec::nvme::{map_prp, MemoryPageSize, PrpListPage};
/// use physvec::{DmaAddr, DmaArray, PhysRange};
/// let d = DirectMapper::new(0, physvec::DmaMask::BITS_64);
/// let pfns = [0x100u64, 0x2a0, 0x2a1, 0x777];
/// let pages = pfns.iter().map(|&pfn| PhysRange::new(pfn << 12, 0x1000));
/// let opts = StreamOptions::new(DataDirection::ToDevice);
/// let first = PhysRange::new(pfns[0] << 12, 0x1000);
/// let stream = MapStream::start(&d, &NoP2p, first, 4 * 0x1000, opts, DmaArray::<0>::new())?;
/// let mut list = [0u64; 512];
/// let pool = [PrpListPage::new(DmaAddr::new(0x9000), &mut list)];
/// let (io, prp) = map_prp(stream, pages, MemoryPageSize::SIZE_4K, pool)?;
/// assert_eq!((prp.prp1.as_u64(), prp.prp2.as_u64()), (0x10_0000, 0x9000));
/// assert_eq!(&list[..3], &[0x2a_0000u64.to_le(), 0x2a_1000u64.to_le(), 0x77_7000u64.to_le()]);
/// io.unmap()?;
/// # Ok::<(), physvec::Error>(())
/// ```
#[inline(always)]
pub fn map_prp<'m, 'a, M, K, C, I, P>(
    mut stream: MapStream<'m, '_, M, K, C>,
    phys: I,
    mps: MemoryPageSize,
    pool: P,
) -> Result<(Mapping<'m, M, K>, Prp), crate::Error>
where
    M: DmaMapper,
    K: RangeSink<Dma>,
    C: P2pClassifier + ?Sized,
    I: IntoIterator<Item = PhysRange>,
    P: IntoIterator<Item = PrpListPage<'a>>,
{
    let mut w = PrpWriter::new(mps, stream.total(), pool);
    let mut it = phys.into_iter();
    match stream.linear() {
        // Direct mapping with nothing to keep: whole pages go from the input to the list
        // page in one loop; everything else through the stream and the writer.
        Some(lin) => loop {
            if w.prev_last.is_none() {
                // The first range (PRP1) always takes the general path.
                let Some(r) = it.next() else {
                    break;
                };
                let d = stream.push(r)?;
                w.push(d)?;
                continue;
            }
            let p2p = stream.classifier();
            let before = w.fast_pages;
            let (ranges, next) = w.take_linear_pages(&mut it, lin, p2p, stream.remaining());
            if ranges != 0 {
                // Whole pages, at most `remaining` bytes: no overflow.
                let pages = w.fast_pages.wrapping_sub(before);
                stream.advance_linear(ranges, pages.saturating_mul(mps.get()));
            }
            let Some(r) = next else {
                break;
            };
            let d = stream.push(r)?;
            w.push(d)?;
        },
        // Through an IOMMU: the first range alone (PRP1's alignment is checked before
        // anything past it), then batches of ranges linked in one mapper call each; their
        // DMA side is one contiguous piece of the reservation, written as one run.
        None if stream.is_coalesced() => {
            if let Some(r) = it.next() {
                let d = stream.push(r)?;
                w.push(d)?;
            }
            while let Some(d) = stream.next_batch(&mut it) {
                w.push(d?)?;
            }
        }
        None => {
            for r in it {
                let d = match stream.push_fast(r) {
                    Some(d) => d,
                    None => stream.push_general(r)?,
                };
                w.push(d)?;
            }
        }
    }
    stream.finish_in_place()?;
    let prp = w.finish()?;
    Ok((stream.into_mapping(), prp))
}

/// PRP entries of a PRP-compatible transfer of `total` bytes starting at `first`: the
/// memory pages `[offset(first), offset(first) + total)` touches.
#[inline]
fn entries_for(first: u64, total: u64, mps: MemoryPageSize) -> u64 {
    let Some(t) = total.checked_sub(1) else {
        return 0;
    };
    let mask = mps.mask();
    let shift = mps.page_size().shift();
    // (first & mask) + (t & mask) < 2 * page size: no overflow.
    (t >> shift)
        .saturating_add(((first & mask).saturating_add(t & mask)) >> shift)
        .saturating_add(1)
}

/// Encodes `ranges` (a `&[DmaRange]`, a `&DmaVec`, an array, a `RangeView<Dma>`, or any
/// iterator of ranges or references to ranges) as PRP1/PRP2 plus PRP lists written into pages taken from
/// `pool`, in order, only as many as needed.
///
/// Never allocates; runs in O(ranges + entries). The first list page may start at an
/// 8-byte-aligned offset inside a memory page (see [`PrpListPage`]).
///
/// # Errors
/// Layout errors as [`prp_entries`] (checked before anything is written), then
/// [`PrpError::TooFewListPages`], [`PrpError::ListPageMisaligned`] or
/// [`PrpError::ListPageTooSmall`] (pages already taken hold partial lists then).
///
/// # Examples
/// SPDK's `test_prp_list_append` case "0x100800, 0x3000 → list of three":
/// ```
/// use physvec::nvme::{encode_prp, MemoryPageSize, PrpListPage};
/// use physvec::{DmaAddr, DmaRange};
/// let mut list = [0u64; 512];
/// let pool = [PrpListPage::new(DmaAddr::new(0x80000), &mut list)];
/// let prp = encode_prp([DmaRange::new(0x100800, 0x3000)], MemoryPageSize::SIZE_4K, pool).unwrap();
/// assert_eq!((prp.prp1.as_u64(), prp.prp2.as_u64()), (0x100800, 0x80000));
/// assert_eq!(prp.list_page_entries(0), 3);
/// assert_eq!(&list[..3], &[0x101000u64.to_le(), 0x102000u64.to_le(), 0x103000u64.to_le()]);
/// ```
pub fn encode_prp<'a, I, P>(ranges: I, mps: MemoryPageSize, pool: P) -> Result<Prp, PrpError>
where
    I: IntoIterator,
    I::Item: Borrow<DmaRange>,
    I::IntoIter: Clone,
    P: IntoIterator<Item = PrpListPage<'a>>,
{
    let ranges = ranges.into_iter().map(by_value);
    // Every layout error before anything is written; then the one streaming writer.
    let n = prp_entries(ranges.clone(), mps)?;
    let mut w = PrpWriter::with_entries(mps, n, pool);
    for r in ranges {
        w.push(r)?;
    }
    w.finish()
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;
    use crate::nvme::{encode_prp, prp_entries};
    use crate::DmaAddr;
    use proptest::prelude::*;
    use std::vec::Vec;

    fn pages(n: usize, bus: u64) -> Vec<Vec<u64>> {
        let _ = bus;
        (0..n).map(|_| vec![0u64; 512]).collect()
    }

    fn pool<'a>(
        mem: &'a mut [Vec<u64>],
        first_off: u64,
    ) -> impl Iterator<Item = PrpListPage<'a>> + 'a {
        mem.iter_mut().enumerate().map(move |(i, p)| {
            let bus = 0x7d00_0000 + i as u64 * 0x1000 + if i == 0 { first_off } else { 0 };
            let slots = if i == 0 {
                ((0x1000 - first_off) / 8) as usize
            } else {
                512
            };
            PrpListPage::new(DmaAddr::new(bus), &mut p[..slots])
        })
    }

    #[test]
    fn entries_from_total_match_prp_entries() {
        let mps = MemoryPageSize::SIZE_4K;
        for (a, l) in [(0x1000, 1), (0x1ffc, 8), (0x1800, 0x1000), (0x1000, 0x1000)] {
            let n = prp_entries([DmaRange::new(a, l)], mps).unwrap();
            assert_eq!(entries_for(a, l, mps), n);
        }
        assert_eq!(entries_for(0, 0, mps), 0);
        assert_eq!(entries_for(u64::MAX - 0xfff, 0x1000, mps), 1);
    }

    #[test]
    fn wrong_total_is_reported() {
        let mps = MemoryPageSize::SIZE_4K;
        let mut w = PrpWriter::new(mps, 0x1000, core::iter::empty());
        w.push(DmaRange::new(0x1000, 0x1000)).unwrap();
        w.push(DmaRange::new(0x8000, 0x1000)).unwrap();
        assert_eq!(
            w.finish(),
            Err(PrpError::StreamLength {
                declared: 0x1000,
                streamed: 0x2000
            })
        );
        let w = PrpWriter::new(mps, 0x1000, core::iter::empty());
        assert_eq!(w.finish(), Err(PrpError::Empty));
    }

    /// Ranges on a small grid of pages so that contiguity, sub-page pieces and
    /// misalignment all occur.
    fn layout() -> impl Strategy<Value = Vec<DmaRange>> {
        prop::collection::vec((0u64..24, 0u64..3, 1u64..4, any::<bool>()), 1..40).prop_map(|v| {
            let mut out = Vec::new();
            let mut next = 0x10_0000u64;
            for (page, off, len, contiguous) in v {
                let addr = if contiguous {
                    next
                } else {
                    0x10_0000 + page * 0x1000 + [0, 0x800, 0x4][off as usize]
                };
                let len = [0x1000, 0x800, 0x3000, 0x10][len as usize % 4];
                out.push(DmaRange::new(addr, len));
                next = addr + len;
            }
            out
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// For every input: the streaming writer and `encode_prp` give the same result
        /// (errors included) and, on success, the same list pages.
        #[test]
        fn stream_equals_list(rs in layout(), npages in 0usize..3, first_off in prop::sample::select(vec![0u64, 0xf00, 0xff0])) {
            let mps = MemoryPageSize::SIZE_4K;
            let total: u64 = rs.iter().map(|r| r.len()).sum();
            let mut a = pages(npages, 0);
            let mut b = pages(npages, 0);
            let list = encode_prp(rs.iter(), mps, pool(&mut a, first_off));
            let mut w = PrpWriter::new(mps, total, pool(&mut b, first_off));
            let mut stream = Ok(());
            for &r in &rs {
                stream = w.push(r);
                if stream.is_err() {
                    break;
                }
            }
            let stream = stream.and_then(|()| w.finish());
            prop_assert_eq!(list, stream);
            if list.is_ok() {
                prop_assert_eq!(a, b);
            }
        }
    }
}
