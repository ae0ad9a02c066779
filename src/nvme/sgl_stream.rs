//! [`SglWriter`]: the SGL encoder as a stream, one item at a time (what
//! `nvme_pci_setup_data_sgl` does with `blk_rq_dma_map_iter_next` since Linux 6.17).
//! [`encode_sgl`](super::encode_sgl) is a thin layer over it.
#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

use super::descriptor::{SglDescriptor, SglItem};
use super::runs::Run;
use super::sgl::{
    pages_for, sgl_descriptors, Sgl, SglError, SglOptions, SglSegmentPage, MAX_SEGMENT_SLOTS,
};
use crate::addr::{Dma, DmaAddr};
use crate::map::{DmaMapper, MapStream, Mapping, P2pClassifier};
use crate::range::{DmaRange, PhysRange};
use crate::sink::RangeSink;

/// Writes SGL1 and the segment pages as items arrive: no list, no second pass, no
/// allocation.
///
/// Created with the number of data descriptors the transfer needs (the kernel's
/// segment count; [`sgl_descriptors`](super::sgl_descriptors) computes it for a list):
/// the chaining decisions depend on it. Contiguous data ranges and adjacent bit buckets
/// are merged and long runs split exactly as [`encode_sgl`](super::encode_sgl) does, and
/// for every input the two produce the same SGL1, segment pages and errors (a property
/// test holds them to it), except that a layout error is found when its item arrives
/// (pages may hold partial lists then). Pool errors are reported by
/// [`SglWriter::finish`], after the layout has been checked to the end.
///
/// # Examples
/// ```
/// use physvec::nvme::{SglDescriptor, SglOptions, SglSegmentPage, SglWriter};
/// use physvec::{DmaAddr, DmaRange};
/// let mut seg = [SglDescriptor::default(); 4];
/// let pool = [SglSegmentPage::new(DmaAddr::new(0x9_0000), &mut seg)];
/// let mut w = SglWriter::new(SglOptions::default(), 2, pool);
/// w.push(DmaRange::new(0x1_0000, 0x200))?;
/// w.push(DmaRange::new(0x2_0010, 0x300))?;
/// let sgl = w.finish()?;
/// assert_eq!(sgl.dptr, SglDescriptor::last_segment(DmaAddr::new(0x9_0000), 32));
/// assert_eq!(seg[1], SglDescriptor::data_block(DmaAddr::new(0x2_0010), 0x300));
/// # Ok::<(), physvec::nvme::SglError>(())
/// ```
pub struct SglWriter<'a, P: Iterator<Item = SglSegmentPage<'a>>> {
    opts: SglOptions,
    /// Data descriptors announced.
    total: u64,
    /// Data descriptors emitted.
    emitted: u64,
    pending: Option<Run>,
    index: usize,
    failed: Option<SglError>,
    pool: P,
    used: usize,
    dptr: SglDescriptor,
    /// Data slots of the open page.
    head: core::slice::IterMut<'a, SglDescriptor>,
    /// Where the descriptor pointing at the next page goes.
    pointer: Option<&'a mut SglDescriptor>,
    /// The next page, taken when the open page was laid out.
    next: Option<SglSegmentPage<'a>>,
    prev_count: Option<u64>,
    /// Descriptors not yet given a page.
    remaining: u64,
    /// Whether a page was opened (the first one goes to DPTR).
    opened: bool,
    deferred: Option<SglError>,
    excess: bool,
}

impl<'a, P: Iterator<Item = SglSegmentPage<'a>>> SglWriter<'a, P> {
    /// A writer for `descriptors` data descriptors (after merging and splitting), taking
    /// segment pages from `pool` in order, only as many as needed.
    ///
    /// ```
    /// use physvec::nvme::{SglOptions, SglWriter};
    /// use physvec::DmaRange;
    /// let mut w = SglWriter::new(SglOptions::default(), 1, core::iter::empty());
    /// w.push(DmaRange::new(0x1000, 0x200))?;
    /// assert_eq!(w.finish()?.data_descriptors(), 1);
    /// # Ok::<(), physvec::nvme::SglError>(())
    /// ```
    pub fn new<I>(opts: SglOptions, descriptors: u64, pool: I) -> Self
    where
        I: IntoIterator<IntoIter = P>,
    {
        let failed = if !opts.caps.supported() {
            Some(SglError::NotSupported)
        } else if opts.key.is_some() && !opts.caps.keyed() {
            Some(SglError::KeyedNotSupported)
        } else {
            None
        };
        Self {
            opts,
            total: descriptors,
            emitted: 0,
            pending: None,
            index: 0,
            failed,
            pool: pool.into_iter(),
            used: 0,
            dptr: SglDescriptor::default(),
            head: [].iter_mut(),
            pointer: None,
            next: None,
            prev_count: None,
            remaining: descriptors,
            opened: false,
            deferred: None,
            excess: false,
        }
    }

    /// [`SglWriter::push`] of a data range, with the common cases in place: a range
    /// contiguous with the pending data run extends it, and any other range closes the
    /// pending run through the fast emit path and becomes the pending one. The pending
    /// run is updated field by field (no copy of the whole run through memory).
    #[inline(always)]
    pub(crate) fn push_data(&mut self, r: DmaRange) -> Result<(), SglError> {
        let i = self.index;
        if self.failed.is_none() {
            if let Some(Run {
                item: SglItem::Data(p),
                ..
            }) = self.pending
            {
                // (the run's item, whether `r` starts a new run)
                let next = match p.merge(r) {
                    Some(m) => Some((m, false)),
                    None if self.emit_fast(p) => Some((r, true)),
                    None => None,
                };
                if let (Some((item, new_run)), Some(run)) = (next, &mut self.pending) {
                    if new_run {
                        run.first = i;
                    }
                    run.item = SglItem::Data(item);
                    run.last = i;
                    self.index = i.saturating_add(1);
                    return Ok(());
                }
            }
        }
        self.push(r)
    }

    /// [`SglWriter::close`]'s fast path for a data run: one unkeyed Data Block that
    /// passes the alignment rule, written into a free slot of the open page. `false`
    /// (nothing written) when the run needs the general path.
    #[inline(always)]
    fn emit_fast(&mut self, r: DmaRange) -> bool {
        let aligned = !self.opts.caps.dword_aligned() || (r.addr().as_u64() | r.len()) & 3 == 0;
        if self.opts.key.is_none()
            && aligned
            && self.deferred.is_none()
            && !self.excess
            && self.emitted < self.total
            && self.total != 1
        {
            // A Data Block holds up to `MAX_LENGTH` = `u32::MAX` bytes: any length
            // that fits in a `u32` is one descriptor.
            if let Ok(len) = u32::try_from(r.len()) {
                if let Some(slot) = self.head.next() {
                    *slot = SglDescriptor::data_block(r.addr(), len);
                    self.emitted = self.emitted.wrapping_add(1);
                    return true;
                }
            }
        }
        false
    }

    /// Appends the next item: a data range (`DmaRange`) or a bit bucket ([`SglItem`]).
    ///
    /// # Errors
    /// The capability and layout errors of [`encode_sgl`](super::encode_sgl), naming the
    /// first offending item; the error is final.
    #[inline]
    pub fn push<T: Into<SglItem>>(&mut self, item: T) -> Result<(), SglError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let r = self.push_item(item.into());
        if let Err(e) = r {
            self.failed = Some(e);
        }
        r
    }

    #[inline]
    fn push_item(&mut self, item: SglItem) -> Result<(), SglError> {
        let i = self.index;
        self.index = i.saturating_add(1);
        if matches!(item, SglItem::BitBucket(0)) {
            if let Some(p) = self.pending.take() {
                self.close(p)?;
            }
            return Err(SglError::EmptyBitBucket { index: i });
        }
        let run = |item| Run {
            item,
            first: i,
            last: i,
        };
        match self.pending {
            None => self.pending = Some(run(item)),
            Some(p) => match p.item.merge(item) {
                Some(m) => {
                    self.pending = Some(Run {
                        item: m,
                        first: p.first,
                        last: i,
                    })
                }
                None => {
                    self.pending = Some(run(item));
                    self.close(p)?;
                }
            },
        }
        Ok(())
    }

    /// A finished run. Fast path, the common case: one unkeyed Data Block that passes
    /// the alignment rule and has a free slot in the open page.
    #[inline(always)]
    fn close(&mut self, run: Run) -> Result<(), SglError> {
        if let SglItem::Data(r) = run.item {
            if self.emit_fast(r) {
                return Ok(());
            }
        }
        self.close_general(run)
    }

    /// A finished run in general: check it against the capabilities, emit its
    /// descriptors.
    #[inline(never)]
    fn close_general(&mut self, run: Run) -> Result<(), SglError> {
        let caps = self.opts.caps;
        match run.item {
            SglItem::BitBucket(_) if !caps.bit_bucket() => {
                return Err(SglError::BitBucketNotSupported { index: run.first })
            }
            SglItem::Data(r) if caps.dword_aligned() => {
                if r.addr().as_u64() & 3 != 0 {
                    return Err(SglError::NotDwordAligned { index: run.first });
                }
                if r.len() & 3 != 0 {
                    return Err(SglError::NotDwordAligned { index: run.last });
                }
            }
            _ => {}
        }
        let keyed = self.opts.key.is_some() && matches!(run.item, SglItem::Data(_));
        let (max, chunk) = if keyed {
            (u64::from(SglDescriptor::MAX_KEYED_LENGTH), 0xff_f000)
        } else {
            (u64::from(SglDescriptor::MAX_LENGTH), 0xffff_f000)
        };
        let total = run.item.len();
        let mut done = 0u64;
        while done < total {
            let left = total.wrapping_sub(done);
            let piece = if total <= max { left } else { left.min(chunk) };
            // `piece <= max <= u32::MAX`.
            let len = u32::try_from(piece).unwrap_or(u32::MAX);
            let d = match run.item {
                SglItem::BitBucket(_) => SglDescriptor::bit_bucket(len),
                SglItem::Data(r) => {
                    let a = DmaAddr::new(r.addr().as_u64().wrapping_add(done));
                    match self.opts.key {
                        Some(k) => SglDescriptor::keyed_data_block(a, len, k)
                            .unwrap_or(SglDescriptor::data_block(a, len)),
                        None => SglDescriptor::data_block(a, len),
                    }
                }
            };
            self.emit(d);
            done = done.saturating_add(piece);
        }
        Ok(())
    }

    /// Places one descriptor: in DPTR (a lone data descriptor), or the next data slot,
    /// opening pages as the list encoder lays them out.
    fn emit(&mut self, d: SglDescriptor) {
        let n = self.emitted;
        self.emitted = n.saturating_add(1);
        if self.deferred.is_some() || self.excess {
            return;
        }
        if n >= self.total {
            self.excess = true;
            return;
        }
        if self.total == 1 && d.descriptor_type() != super::SglDescriptorType::BitBucket {
            self.dptr = d;
            return;
        }
        loop {
            if let Some(slot) = self.head.next() {
                *slot = d;
                return;
            }
            let page = if self.opened {
                self.next.take()
            } else {
                self.take(1).ok()
            };
            let Some(page) = page else {
                // Pool error recorded by `take`, or no page where the layout put one
                // (only with a wrong announced count).
                self.excess |= self.deferred.is_none();
                return;
            };
            self.opened = true;
            if let Err(e) = self.open(page) {
                self.deferred = Some(e);
                return;
            }
        }
    }

    /// Takes a page from the pool (`more`: pages still needed, this one included).
    fn take(&mut self, more: u64) -> Result<SglSegmentPage<'a>, SglError> {
        let r = self.take_inner(more);
        if let Err(e) = r {
            self.deferred = Some(e);
        }
        r
    }

    fn take_inner(&mut self, more: u64) -> Result<SglSegmentPage<'a>, SglError> {
        let used = self.used;
        let page = self.pool.next().ok_or(SglError::TooFewSegmentPages {
            needed: (used as u64).saturating_add(more),
            supplied: used,
        })?;
        self.used = used.saturating_add(1);
        if page.bus.as_u64() & 7 != 0 {
            return Err(SglError::SegmentPageMisaligned {
                index: used,
                bus: page.bus.as_u64(),
            });
        }
        if page.descriptors.is_empty() {
            return Err(SglError::SegmentPageTooSmall {
                index: used,
                slots: 0,
            });
        }
        Ok(page)
    }

    /// Lays out a page as `encode_sgl` does and writes the descriptor pointing at it.
    fn open(&mut self, page: SglSegmentPage<'a>) -> Result<(), SglError> {
        let bus = page.bus;
        let slots = page.descriptors;
        let nslots = slots.len();
        let cap = nslots.min(MAX_SEGMENT_SLOTS) as u64;
        let remaining = self.remaining;
        let (count, link) = if remaining <= cap {
            (remaining, false)
        } else {
            if cap < 2 {
                return Err(SglError::SegmentPageTooSmall {
                    index: self.used.saturating_sub(1),
                    slots: nslots,
                });
            }
            let next = self.take(pages_for(
                remaining.saturating_sub(cap.saturating_sub(1)),
                cap,
            ))?;
            let next_cap = next.descriptors.len().min(MAX_SEGMENT_SLOTS) as u64;
            let mut data = cap.saturating_sub(1);
            let ends_in_last_segment = remaining.saturating_sub(data) <= next_cap;
            if self.opts.qemu_chain_workaround
                && ends_in_last_segment
                && self.pointer.is_some()
                && self.prev_count == Some(data.saturating_add(1))
            {
                data = data.saturating_sub(1);
            }
            self.next = Some(next);
            (data, true)
        };
        // `count <= cap <= slots.len()`.
        let (head, tail) = slots.split_at_mut(usize::try_from(count).unwrap_or(0).min(nslots));
        let to_here = if link {
            let len = count.saturating_add(1).saturating_mul(16);
            SglDescriptor::segment(bus, u32::try_from(len).unwrap_or(u32::MAX))
        } else {
            let len = count.saturating_mul(16);
            SglDescriptor::last_segment(bus, u32::try_from(len).unwrap_or(u32::MAX))
        };
        match self.pointer.take() {
            None => self.dptr = to_here,
            Some(p) => *p = to_here,
        }
        self.head = head.iter_mut();
        if link {
            self.pointer = tail.first_mut();
            self.prev_count = Some(count.saturating_add(1));
            self.remaining = remaining.saturating_sub(count);
        }
        Ok(())
    }

    /// Ends the transfer: emits the last run and returns SGL1 and the page usage.
    ///
    /// # Errors
    /// The stream's error if it failed, the capability/layout errors of the last run,
    /// [`SglError::Empty`] when nothing was pushed, [`SglError::StreamLength`] when the
    /// descriptors do not match the announced count, then the pool errors.
    pub fn finish(mut self) -> Result<Sgl, SglError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let Some(p) = self.pending.take() else {
            return Err(SglError::Empty);
        };
        self.close(p)?;
        if self.emitted != self.total || self.excess {
            return Err(SglError::StreamLength {
                declared: self.total,
                streamed: self.emitted,
            });
        }
        if let Some(e) = self.deferred {
            return Err(e);
        }
        Ok(Sgl::new(self.dptr, self.total, self.used))
    }
}

/// The fused per-I/O SGL path: physical ranges → [`MapStream`] → SGL descriptors, in
/// one pass, nothing stored in between (`nvme_pci_setup_data_sgl` with
/// `blk_rq_dma_map_iter_next`).
///
/// `segments` is the number of DMA runs the transfer has when it is mapped range by
/// range without storage (a direct mapper: contiguous physical ranges count once, the
/// request's segment count); a coalesced (IOVA) stream is one run whatever it says, and
/// a stream that stores its ranges for the unmap (per-range IOMMU or bounce mappings,
/// whose DMA contiguity only the mapper knows) is encoded from them after mapping. Device segment limits are not
/// applied: a device that has them needs the DMA ranges split
/// ([`DmaConstraints::segments`](crate::DmaConstraints::segments)), and the count to
/// match.
///
/// # Errors
/// The stream's and the writer's errors ([`SglError::StreamLength`] when `segments` was
/// wrong); everything mapped is unmapped then.
///
/// # Examples
/// ```
/// use physvec::map::{DataDirection, DirectMapper, MapStream, NoP2p, StreamOptions};
/// use physvec::nvme::{map_sgl, SglDescriptor, SglOptions, SglSegmentPage};
/// use physvec::{DmaAddr, DmaArray, PhysRange};
/// let d = DirectMapper::new(0, physvec::DmaMask::BITS_64);
/// let phys = [PhysRange::new(0x10_0200, 0xe00), PhysRange::new(0x30_0000, 0x200)];
/// let opts = StreamOptions::new(DataDirection::ToDevice);
/// let stream = MapStream::start(&d, &NoP2p, phys[0], 0x1000, opts, DmaArray::<0>::new())?;
/// let mut seg = [SglDescriptor::default(); 8];
/// let pool = [SglSegmentPage::new(DmaAddr::new(0x9000), &mut seg)];
/// let (io, sgl) = map_sgl(stream, phys, 2, SglOptions::default(), pool)?;
/// assert_eq!(sgl.data_descriptors(), 2);
/// io.unmap()?;
/// # Ok::<(), physvec::Error>(())
/// ```
#[inline]
pub fn map_sgl<'m, 'a, M, K, C, I, P>(
    mut stream: MapStream<'m, '_, M, K, C>,
    phys: I,
    segments: u64,
    opts: SglOptions,
    pool: P,
) -> Result<(Mapping<'m, M, K>, Sgl), crate::Error>
where
    M: DmaMapper,
    K: RangeSink<Dma>,
    C: P2pClassifier + ?Sized,
    I: IntoIterator<Item = PhysRange>,
    P: IntoIterator<Item = SglSegmentPage<'a>>,
{
    if !stream.is_coalesced() && stream.stores_ranges() {
        // Per-range mappings that must be kept for the unmap (an IOMMU without the
        // merge-boundary rule, a bounce pool): their DMA contiguity is the mapper's
        // choice, so the descriptor count is not known up front. The ranges are stored
        // anyway: encode them from there.
        for r in phys {
            stream.push(r)?;
        }
        let io = stream.finish()?;
        let sgl = super::encode_sgl(io.dma(), opts, pool)?;
        return Ok((io, sgl));
    }
    let runs = if stream.is_coalesced() {
        let one = crate::DmaRange::try_new(0, stream.total()).map_err(crate::Error::from)?;
        super::sgl_descriptors([one], &opts)?
    } else {
        segments
    };
    let mut w = SglWriter::new(opts, runs, pool);
    let mut it = phys.into_iter();
    if stream.is_coalesced() {
        // Through an IOMMU: the first range alone, then batches of ranges linked in one
        // mapper call each; their DMA side is one contiguous piece of the reservation,
        // which extends the one data run.
        if let Some(r) = it.next() {
            let d = stream.push(r)?;
            w.push_data(d)?;
        }
        while let Some(d) = stream.next_batch(&mut it) {
            w.push_data(d?)?;
        }
    }
    for r in it {
        let d = match stream.push_fast(r) {
            Some(d) => d,
            None => stream.push_general(r)?,
        };
        w.push_data(d)?;
    }
    stream.finish_in_place()?;
    let sgl = w.finish()?;
    Ok((stream.into_mapping(), sgl))
}

/// Encodes a transfer as an SGL: `items` are data ranges and bit buckets in transfer
/// order — plain ranges (`&[DmaRange]`, a `&DmaVec`, a `RangeView<Dma>`, an array) need
/// no wrapping; mix in bit buckets with [`SglItem`]s — segment pages come from `pool` in
/// order, only as many as needed.
///
/// Never allocates; O(items + descriptors).
///
/// **Device segment limits.** The encoder only splits at the descriptor length limits.
/// A device with a smaller maximum segment size or a segment boundary needs the DMA
/// view of a mapping split first: pass `constraints.segments(mapping.dma().iter().copied())`
/// ([`DmaConstraints::segments`](crate::DmaConstraints::segments)); an IOVA mapping is
/// one coalesced range however the physical list was segmented.
///
/// # Errors
/// [`SglError`]: layout and capability errors before anything is written; pool errors
/// (too few, misaligned or too small pages) possibly after earlier pages were written.
///
/// # Examples
/// ```
/// use physvec::nvme::{encode_sgl, SglDescriptor, SglDescriptorType, SglItem, SglOptions, SglSegmentPage};
/// use physvec::{DmaAddr, DmaRange};
/// let items = [DmaRange::new(0x10000, 0x200), DmaRange::new(0x20010, 0x300)];
/// let mut seg = [SglDescriptor::default(); 256];
/// let pool = [SglSegmentPage::new(DmaAddr::new(0x80000), &mut seg)];
/// let sgl = encode_sgl(items, SglOptions::default(), pool).unwrap();
/// assert_eq!(sgl.dptr, SglDescriptor::last_segment(DmaAddr::new(0x80000), 32));
/// assert_eq!(seg[1], SglDescriptor::data_block(DmaAddr::new(0x20010), 0x300));
/// ```
pub fn encode_sgl<'a, I, P>(items: I, opts: SglOptions, pool: P) -> Result<Sgl, SglError>
where
    I: IntoIterator,
    I::Item: Into<SglItem>,
    I::IntoIter: Clone,
    P: IntoIterator<Item = SglSegmentPage<'a>>,
{
    let items = items.into_iter().map(Into::<SglItem>::into);
    // Every capability and layout error before anything is written; then the one
    // streaming writer.
    let total = sgl_descriptors(items.clone(), &opts)?;
    let mut w = SglWriter::new(opts, total, pool);
    for item in items {
        w.push(item)?;
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
    use crate::nvme::{encode_sgl, sgl_descriptors, SglCapabilities};
    use crate::DmaRange;
    use proptest::prelude::*;
    use std::vec::Vec;

    fn item() -> impl Strategy<Value = (u8, u64, u64, bool)> {
        (0u8..8, 0u64..16, 0u64..4, any::<bool>())
    }

    fn items(v: &[(u8, u64, u64, bool)]) -> Vec<SglItem> {
        let mut next = 0x10_0000u64;
        v.iter()
            .map(|&(kind, page, len, contiguous)| {
                let len = [0x1000, 0x200, 0x3, 0x1_0000][len as usize];
                if kind == 0 {
                    return SglItem::BitBucket(if page == 0 { 0 } else { len });
                }
                let a = if contiguous {
                    next
                } else {
                    0x10_0000 + page * 0x2_0000 + u64::from(kind & 1) * 2
                };
                next = a + len;
                SglItem::Data(DmaRange::new(a, len))
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// For every input: the streaming writer (given the list's count) and
        /// `encode_sgl` agree on SGL1, pages and errors.
        #[test]
        fn stream_equals_list(
            v in prop::collection::vec(item(), 1..24),
            npages in 0usize..4,
            slots in 2usize..6,
            caps in prop::sample::select(vec![0x1u32, 0x2, 0x1 | (1 << 16), 0x5, 0]),
            key in prop::option::of(1u32..10),
            qemu in any::<bool>(),
        ) {
            let its = items(&v);
            let opts = SglOptions::new(SglCapabilities::from_raw(caps)).with_key(key).with_qemu_chain_workaround(qemu);
            let mut a = vec![vec![SglDescriptor::default(); slots]; npages];
            let mut b = a.clone();
            let list = encode_sgl(
                its.iter().copied(),
                opts,
                a.iter_mut().enumerate().map(|(i, p)| SglSegmentPage::new(DmaAddr::new(0x9_0000 + i as u64 * 0x1000), p)),
            );
            let n = sgl_descriptors(its.iter().copied(), &opts).unwrap_or(0);
            let mut w = SglWriter::new(
                opts,
                n,
                b.iter_mut().enumerate().map(|(i, p)| SglSegmentPage::new(DmaAddr::new(0x9_0000 + i as u64 * 0x1000), p)),
            );
            let mut r = Ok(());
            for &it in &its {
                r = w.push(it);
                if r.is_err() {
                    break;
                }
            }
            let stream = r.and_then(|()| w.finish());
            prop_assert_eq!(list, stream);
            if list.is_ok() {
                prop_assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn wrong_count_is_reported() {
        let mut w = SglWriter::new(SglOptions::default(), 1, core::iter::empty());
        w.push(DmaRange::new(0x1000, 0x10)).unwrap();
        w.push(DmaRange::new(0x8000, 0x10)).unwrap();
        assert_eq!(
            w.finish(),
            Err(SglError::StreamLength {
                declared: 1,
                streamed: 2
            })
        );
    }
}
