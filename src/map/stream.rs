//! The streaming mapper: [`MapStream`], one physical range in, its DMA range out, the
//! logic of the kernel's `blk_rq_dma_map_iter_start()` / `blk_rq_dma_map_iter_next()`
//! (`block/blk-mq-dma.c`, Linux 6.17).
//!
//! The stream is started with the first range (it decides the P2P kind and the
//! sub-granule offset of the IOVA reservation) and the total length of the transfer,
//! then fed every range in order, the first included. It never needs the whole list:
//!
//! - **IOVA** ([`MapStream::is_coalesced`]): IOVA space for the whole transfer is
//!   reserved once at [`MapStream::start`], each range is linked as it arrives (its DMA
//!   range is the reservation's base plus its offset, so the outputs are contiguous), and
//!   [`MapStream::finish`] syncs once. The merge-boundary rule is checked by
//!   [`DmaMapper::link`] as each range arrives; a violation unwinds the stream and
//!   reports [`MapError::MergeBoundary`] (see DESIGN.md, "Streaming and the merge
//!   boundary"). The list entry point [`map_into`](super::map_into) checks the rule
//!   before it starts and picks [`Coalesce::Never`] when it fails.
//! - **Per range**: one [`DmaMapper::map_phys`] per range.
//! - **Bus addresses** (P2P behind a switch): `phys + bus_offset`, no mapper call.
//!
//! **Storage.** With [`Keep::WhenNeeded`] the sink receives only what the teardown
//! needs, like the kernel keeping its DMA vectors only when `dma_need_unmap()`: nothing
//! for an IOVA mapping (the reservation is the state), nothing for bus addresses,
//! nothing for a mapper whose `need_unmap()` is `false`, every range otherwise. With
//! [`Keep::All`] it receives the DMA view a list API returns (one range for IOVA).
//!
//! **Errors.** Any failure (of a push, of the final sync, or a total that does not match
//! the one announced) unwinds everything mapped, linked or reserved so far; the stream
//! then refuses further work with the same error. Dropping an unfinished stream unwinds
//! it as well.
#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

use super::mapping::{Mapping, State};
use super::{
    Attrs, DataDirection, DmaMapper, LinearMap, MapError, P2pClassifier, P2pMapType, SyncError,
};
use crate::addr::Dma;
use crate::range::{DmaRange, PhysRange};
use crate::sink::RangeSink;

/// Ranges the fused writers link per mapper call through an IOMMU (on the stack: 1 KiB).
pub(crate) const LINK_BATCH: usize = 64;

/// Whether a [`MapStream`] may coalesce the transfer into one IOVA range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Coalesce {
    /// Reserve IOVA space when the mapper has some (the merge-boundary rule is then
    /// checked as ranges arrive).
    #[default]
    IfPossible,
    /// Always map range by range.
    Never,
}

/// What a [`MapStream`] writes into its sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Keep {
    /// Only what unmapping needs (nothing for IOVA, bus addresses or a mapper without
    /// unmap work): the streaming default.
    #[default]
    WhenNeeded,
    /// The whole DMA view: one range for an IOVA mapping, every range otherwise (what
    /// [`map_into`](super::map_into) returns).
    All,
}

/// How to start a [`MapStream`]: direction, attributes, coalescing and storage.
///
/// ```
/// use physvec::map::{Attrs, Coalesce, DataDirection, Keep, StreamOptions};
/// let o = StreamOptions::new(DataDirection::ToDevice).with_attrs(Attrs::SKIP_CPU_SYNC).with_keep(Keep::All);
/// assert_eq!((o.coalesce, o.keep), (Coalesce::IfPossible, Keep::All));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamOptions {
    /// Transfer direction.
    pub dir: DataDirection,
    /// DMA attributes ([`Attrs::MMIO`] is added for host-bridge P2P).
    pub attrs: Attrs,
    /// Whether IOVA coalescing may be tried.
    pub coalesce: Coalesce,
    /// What the sink receives.
    pub keep: Keep,
}

impl StreamOptions {
    /// `dir`, no attributes, [`Coalesce::IfPossible`], [`Keep::WhenNeeded`].
    ///
    /// ```
    /// use physvec::map::{DataDirection, StreamOptions};
    /// assert!(StreamOptions::new(DataDirection::FromDevice).attrs.is_empty());
    /// ```
    pub const fn new(dir: DataDirection) -> Self {
        Self {
            dir,
            attrs: Attrs::empty(),
            coalesce: Coalesce::IfPossible,
            keep: Keep::WhenNeeded,
        }
    }

    /// Sets the attributes.
    ///
    /// ```
    /// use physvec::map::{Attrs, DataDirection, StreamOptions};
    /// let o = StreamOptions::new(DataDirection::ToDevice).with_attrs(Attrs::MMIO);
    /// assert!(o.attrs.contains(Attrs::MMIO));
    /// ```
    #[must_use]
    pub const fn with_attrs(mut self, attrs: Attrs) -> Self {
        self.attrs = attrs;
        self
    }

    /// Sets the coalescing policy.
    ///
    /// ```
    /// use physvec::map::{Coalesce, DataDirection, StreamOptions};
    /// let o = StreamOptions::new(DataDirection::ToDevice).with_coalesce(Coalesce::Never);
    /// assert_eq!(o.coalesce, Coalesce::Never);
    /// ```
    #[must_use]
    pub const fn with_coalesce(mut self, coalesce: Coalesce) -> Self {
        self.coalesce = coalesce;
        self
    }

    /// Sets what the sink receives.
    ///
    /// ```
    /// use physvec::map::{DataDirection, Keep, StreamOptions};
    /// let o = StreamOptions::new(DataDirection::ToDevice).with_keep(Keep::All);
    /// assert_eq!(o.keep, Keep::All);
    /// ```
    #[must_use]
    pub const fn with_keep(mut self, keep: Keep) -> Self {
        self.keep = keep;
        self
    }
}

/// One I/O being mapped range by range (`blk_rq_dma_map_iter_start/next`).
///
/// - **IOVA** ([`MapStream::is_coalesced`]): IOVA space for the whole transfer is
///   reserved once at [`MapStream::start`], each range is linked as it arrives (its DMA
///   range is the reservation's base plus its offset, so the outputs are contiguous), and
///   [`MapStream::finish`] syncs once. The merge-boundary rule is checked by
///   [`DmaMapper::link`] as each range arrives; a violation unwinds the stream and
///   reports [`MapError::MergeBoundary`] (see DESIGN.md, "Streaming and the merge
///   boundary"). The list entry point [`map_into`](super::map_into) checks the rule
///   before it starts and picks [`Coalesce::Never`] when it fails.
/// - **Per range**: one [`DmaMapper::map_phys`] per range.
/// - **Bus addresses** (P2P behind a switch): `phys + bus_offset`, no mapper call.
///
/// **Storage.** With [`Keep::WhenNeeded`] the sink receives only what the teardown
/// needs, like the kernel keeping its DMA vectors only when `dma_need_unmap()`: nothing
/// for an IOVA mapping (the reservation is the state), nothing for bus addresses,
/// nothing for a mapper whose `need_unmap()` is `false`, every range otherwise. With
/// [`Keep::All`] it receives the DMA view a list API returns (one range for IOVA).
///
/// **Errors.** Any failure (of a push, of the final sync, or a total that does not match
/// the one announced) unwinds everything mapped, linked or reserved so far; the stream
/// then refuses further work with the same error. Dropping an unfinished stream unwinds
/// it as well.
///
/// [`MapStream::finish`] turns it into the [`Mapping`] that unmaps at completion.
///
/// # Examples
/// Pages straight to the device, nothing stored (a direct mapper has no unmap work):
/// ```
/// use physvec::map::{DataDirection, DirectMapper, MapStream, NoP2p, StreamOptions};
/// use physvec::{DmaArray, DmaRange, PhysRange};
/// let d = DirectMapper::new(0x1_0000_0000, physvec::DmaMask::BITS_64);
/// let pages = [PhysRange::new(0x5000, 0x1000), PhysRange::new(0x9000, 0x1000)];
/// let opts = StreamOptions::new(DataDirection::ToDevice);
/// let mut s = MapStream::start(&d, &NoP2p, pages[0], 0x2000, opts, DmaArray::<0>::new())?;
/// let mut out = Vec::new();
/// for p in pages {
///     out.push(s.push(p)?);
/// }
/// let m = s.finish()?;
/// assert_eq!(out, [DmaRange::new(0x1_0000_5000, 0x1000), DmaRange::new(0x1_0000_9000, 0x1000)]);
/// assert!(m.dma().is_empty()); // nothing to undo, nothing kept
/// # Ok::<(), physvec::map::MapError>(())
/// ```
///
/// Through an IOMMU: one reservation, every page linked as it arrives, one sync.
/// ```
/// use physvec::map::{DataDirection, MapStream, NoP2p, SoftIommu, StreamOptions};
/// use physvec::{DmaArray, PhysRange};
/// let iommu = SoftIommu::new_4k();
/// let pages = [PhysRange::new(0x5000, 0x1000), PhysRange::new(0x9000, 0x1000)];
/// let opts = StreamOptions::new(DataDirection::ToDevice);
/// let mut s = MapStream::start(&iommu, &NoP2p, pages[0], 0x2000, opts, DmaArray::<0>::new())?;
/// let a = s.push(pages[0])?;
/// let b = s.push(pages[1])?;
/// assert!(a.is_contiguous_with(b));
/// let m = s.finish()?;
/// assert_eq!(m.iova_syncs(), 1);
/// m.unmap()?;
/// assert_eq!(iommu.stats().mapped_bytes, 0);
/// # Ok::<(), physvec::map::MapError>(())
/// ```
#[must_use = "dropping a MapStream unmaps what it mapped"]
pub struct MapStream<'m, 'c, M: DmaMapper, K: RangeSink<Dma>, C: P2pClassifier + ?Sized> {
    m: Mapping<'m, M, K>,
    p2p: &'c C,
    /// The kind of range 0 (the I/O's kind).
    kind: P2pMapType,
    /// Whether every output goes into the sink.
    keep_all: bool,
    /// Whether per-range outputs go into the sink (keep_all, or the mapper needs unmap).
    store: bool,
    /// Ranges pushed so far.
    index: usize,
    /// Bytes pushed so far.
    seen: u64,
    /// The announced total.
    total: u64,
    /// The first error, once the stream has failed.
    failed: Option<MapError>,
    /// Per-range mapping of ordinary memory with nothing to store, not failed: the
    /// common case [`MapStream::push`] takes in a few instructions.
    direct: bool,
    /// The mapper's [`LinearMap`] when `direct` (for the fused writers).
    lin: Option<LinearMap>,
}

impl<'m, 'c, M, K, C> MapStream<'m, 'c, M, K, C>
where
    M: DmaMapper,
    K: RangeSink<Dma>,
    C: P2pClassifier + ?Sized,
{
    /// Starts mapping a transfer of `total` bytes whose first range is `first`
    /// (`blk_rq_dma_map_iter_start`): classifies `first` with `p2p`, and with
    /// [`Coalesce::IfPossible`] reserves IOVA space for `total` bytes when the mapper
    /// has some. `sink` is cleared first. Nothing is mapped yet: push every range,
    /// `first` included.
    ///
    /// # Errors
    /// [`MapError::Empty`] for `total == 0`, [`MapError::P2pNotSupported`] (index 0),
    /// and whatever [`DmaMapper::reserve`] reports.
    #[inline(always)]
    pub fn start(
        mapper: &'m M,
        p2p: &'c C,
        first: PhysRange,
        total: u64,
        opts: StreamOptions,
        mut sink: K,
    ) -> Result<Self, MapError> {
        if total == 0 {
            return Err(MapError::Empty);
        }
        sink.truncate_ranges(0);
        let kind = p2p.map_type(first);
        let mut attrs = opts.attrs;
        let state = match kind {
            P2pMapType::NotSupported => return Err(not_supported(0, first)),
            P2pMapType::BusAddr { .. } => State::BusAddr,
            P2pMapType::None | P2pMapType::ThruHostBridge => {
                if kind == P2pMapType::ThruHostBridge {
                    attrs |= Attrs::MMIO;
                }
                let reserved = match opts.coalesce {
                    Coalesce::IfPossible => mapper.reserve(first.addr(), total)?,
                    Coalesce::Never => None,
                };
                match reserved {
                    Some(space) => State::Linking(space),
                    None => State::PerRange,
                }
            }
        };
        let keep_all = opts.keep == Keep::All;
        let store = keep_all || (matches!(state, State::PerRange) && mapper.need_unmap());
        let direct = matches!(state, State::PerRange) && !store && kind == P2pMapType::None;
        Ok(Self {
            lin: if direct { mapper.linear() } else { None },
            direct,
            m: Mapping::new(mapper, sink, state, opts.dir, attrs, kind),
            p2p,
            kind,
            keep_all,
            store,
            index: 0,
            seen: 0,
            total,
            failed: None,
        })
    }

    /// Whether the transfer is being coalesced into one IOVA range.
    ///
    /// ```
    /// use physvec::map::{DataDirection, DirectMapper, MapStream, NoP2p, StreamOptions};
    /// use physvec::{DmaArray, PhysRange};
    /// let d = DirectMapper::new(0, physvec::DmaMask::BITS_64);
    /// let r = PhysRange::new(0x1000, 0x10);
    /// let s = MapStream::start(&d, &NoP2p, r, 0x10, StreamOptions::new(DataDirection::ToDevice), DmaArray::<1>::new())?;
    /// assert!(!s.is_coalesced());
    /// # Ok::<(), physvec::map::MapError>(())
    /// ```
    pub fn is_coalesced(&self) -> bool {
        matches!(self.m.state, State::Linking(_))
    }

    /// The P2P kind of the I/O (from the first range).
    ///
    /// ```
    /// use physvec::map::{DataDirection, DirectMapper, MapStream, NoP2p, P2pMapType, StreamOptions};
    /// use physvec::{DmaArray, PhysRange};
    /// let d = DirectMapper::new(0, physvec::DmaMask::BITS_64);
    /// let r = PhysRange::new(0x1000, 0x10);
    /// let s = MapStream::start(&d, &NoP2p, r, 0x10, StreamOptions::new(DataDirection::ToDevice), DmaArray::<1>::new())?;
    /// assert_eq!(s.p2p(), P2pMapType::None);
    /// # Ok::<(), physvec::map::MapError>(())
    /// ```
    pub fn p2p(&self) -> P2pMapType {
        self.kind
    }

    /// Bytes pushed so far.
    ///
    /// ```
    /// use physvec::map::{DataDirection, DirectMapper, MapStream, NoP2p, StreamOptions};
    /// use physvec::{DmaArray, PhysRange};
    /// let d = DirectMapper::new(0, physvec::DmaMask::BITS_64);
    /// let r = PhysRange::new(0x1000, 0x10);
    /// let mut s = MapStream::start(&d, &NoP2p, r, 0x10, StreamOptions::new(DataDirection::ToDevice), DmaArray::<1>::new())?;
    /// s.push(r)?;
    /// assert_eq!(s.streamed(), 0x10);
    /// # Ok::<(), physvec::map::MapError>(())
    /// ```
    pub fn streamed(&self) -> u64 {
        self.seen
    }

    /// Whether the sink receives every DMA range (with [`Keep::All`], or per-range
    /// mappings that need unmapping).
    ///
    /// ```
    /// use physvec::map::{Coalesce, DataDirection, MapStream, NoP2p, SoftIommu, StreamOptions};
    /// use physvec::{DmaArray, PhysRange};
    /// let iommu = SoftIommu::new_4k();
    /// let r = PhysRange::new(0x1000, 0x10);
    /// let o = StreamOptions::new(DataDirection::ToDevice).with_coalesce(Coalesce::Never);
    /// let s = MapStream::start(&iommu, &NoP2p, r, 0x10, o, DmaArray::<1>::new())?;
    /// assert!(s.stores_ranges());
    /// # Ok::<(), physvec::map::MapError>(())
    /// ```
    pub fn stores_ranges(&self) -> bool {
        self.store
    }

    /// The total length announced at [`MapStream::start`].
    ///
    /// ```
    /// use physvec::map::{DataDirection, DirectMapper, MapStream, NoP2p, StreamOptions};
    /// use physvec::{DmaArray, PhysRange};
    /// let d = DirectMapper::new(0, physvec::DmaMask::BITS_64);
    /// let r = PhysRange::new(0x1000, 0x10);
    /// let s = MapStream::start(&d, &NoP2p, r, 0x30, StreamOptions::new(DataDirection::ToDevice), DmaArray::<1>::new())?;
    /// assert_eq!(s.total(), 0x30);
    /// # Ok::<(), physvec::map::MapError>(())
    /// ```
    pub fn total(&self) -> u64 {
        self.total
    }

    /// For the fused writers: the mapper's linear translation while the stream maps
    /// ordinary memory range by range, keeps nothing and has not failed. A range
    /// `phys` whose [`P2pClassifier::map_type`] is `None` and whose `LinearMap::map`
    /// is `Some(d)`, of at most [`MapStream::remaining`] bytes, would be mapped by
    /// [`MapStream::push`] to `d` with no other effect; the writer then accounts for
    /// it with [`MapStream::advance_linear`] instead.
    #[inline(always)]
    pub(crate) fn linear(&self) -> Option<LinearMap> {
        if self.direct {
            self.lin
        } else {
            None
        }
    }

    /// The P2P classifier the stream checks every range with.
    #[inline(always)]
    pub(crate) fn classifier(&self) -> &'c C {
        self.p2p
    }

    /// Bytes still to come (the announced total minus what was pushed).
    #[inline(always)]
    pub(crate) fn remaining(&self) -> u64 {
        self.total.saturating_sub(self.seen)
    }

    /// Accounts for `ranges` ranges of `bytes` bytes in all that a fused writer mapped
    /// itself through [`MapStream::linear`] (at most [`MapStream::remaining`] bytes),
    /// as if each had been pushed.
    #[inline(always)]
    pub(crate) fn advance_linear(&mut self, ranges: usize, bytes: u64) {
        self.seen = self.seen.saturating_add(bytes);
        self.index = self.index.wrapping_add(ranges);
    }

    /// Links the next ranges as one batch ([`DmaMapper::link_many`]) when the stream is
    /// coalescing into an IOVA range, and returns their DMA range: the contiguous piece
    /// of the reservation they fill. Exactly [`MapStream::push`] of each range in turn
    /// (the same links, errors and unwinding), with one mapper call for the batch.
    /// `None` (nothing done) when the stream maps range by range (push them then) or
    /// `phys` is empty.
    ///
    /// # Errors
    /// As [`MapStream::push`]; the stream is unwound then.
    ///
    /// ```
    /// use physvec::map::{DataDirection, MapStream, NoP2p, SoftIommu, StreamOptions};
    /// use physvec::{DmaArray, PhysRange};
    /// let iommu = SoftIommu::new_4k();
    /// let pages = [PhysRange::new(0x5000, 0x1000), PhysRange::new(0x9000, 0x1000), PhysRange::new(0x2000, 0x1000)];
    /// let opts = StreamOptions::new(DataDirection::ToDevice);
    /// let mut s = MapStream::start(&iommu, &NoP2p, pages[0], 0x3000, opts, DmaArray::<0>::new())?;
    /// let d = s.push_batch(&pages).expect("an IOVA stream")?;
    /// assert_eq!(d.len(), 0x3000);
    /// s.finish()?.unmap()?;
    /// assert!(iommu.is_idle());
    /// # Ok::<(), physvec::map::MapError>(())
    /// ```
    pub fn push_batch(&mut self, phys: &[PhysRange]) -> Option<Result<DmaRange, MapError>> {
        if !matches!(self.m.state, State::Linking(_)) || self.failed.is_some() || phys.is_empty() {
            return None;
        }
        Some(self.link_batch(phys))
    }

    /// Takes up to [`LINK_BATCH`] ranges from `it` and links them as one batch
    /// ([`MapStream::push_batch`]): the fused writers' IOVA loop. `None` when `it` is
    /// exhausted or the stream does not link.
    #[inline]
    pub(crate) fn next_batch<I: Iterator<Item = PhysRange>>(
        &mut self,
        it: &mut I,
    ) -> Option<Result<DmaRange, MapError>> {
        let mut batch = arrayvec::ArrayVec::<PhysRange, LINK_BATCH>::new();
        batch.extend(it.take(LINK_BATCH));
        self.push_batch(&batch)
    }

    /// [`MapStream::push_batch`] in the linking state.
    #[inline(never)]
    fn link_batch(&mut self, phys: &[PhysRange]) -> Result<DmaRange, MapError> {
        // Every range of the I/O's kind and the batch inside the announced total:
        // otherwise range by range, for the exact error and its position.
        let mut bytes = 0u64;
        let mut plain = true;
        for &r in phys {
            match bytes.checked_add(r.len()) {
                Some(b) if self.p2p.map_type(r) == self.kind => bytes = b,
                _ => {
                    plain = false;
                    break;
                }
            }
        }
        let offset = self.seen;
        let end = offset.checked_add(bytes).filter(|&e| e <= self.total);
        let (true, Some(end), Some(&first)) = (plain, end, phys.first()) else {
            return self.push_each(phys);
        };
        let (dir, attrs) = (self.m.dir, self.m.attrs);
        let State::Linking(space) = &mut self.m.state else {
            return Err(MapError::SyncBeforeLink);
        };
        let (n, r) = self.m.mapper.link_many(space, phys, offset, dir, attrs);
        let base = space.addr().as_u64();
        if let Err(e) = r {
            return Err(self.fail(e));
        }
        if n < phys.len() {
            // A mapper that stopped early without an error (outside its contract):
            // account for what it linked, link the rest one by one.
            return self.finish_partial_batch(phys, n, base, offset);
        }
        self.seen = end;
        self.index = self.index.wrapping_add(n);
        // The reservation holds `[0, total)` from its address: no overflow.
        match base
            .checked_add(offset)
            .map(|a| DmaRange::try_new(a, bytes))
        {
            Some(Ok(d)) => Ok(d),
            _ => {
                let e = MapError::AddressOverflow {
                    addr: first.addr().as_u64(),
                    len: bytes,
                };
                Err(self.fail(e))
            }
        }
    }

    /// After a `link_many` that linked only `phys[..n]` without an error: accounts for
    /// those, pushes the rest one by one and returns the DMA range of the whole batch.
    #[cold]
    #[inline(never)]
    fn finish_partial_batch(
        &mut self,
        phys: &[PhysRange],
        n: usize,
        base: u64,
        offset: u64,
    ) -> Result<DmaRange, MapError> {
        let (done, rest) = phys.split_at(n.min(phys.len()));
        let done_bytes = done.iter().fold(0u64, |b, r| b.saturating_add(r.len()));
        // Linked, so inside the announced total.
        self.seen = offset.saturating_add(done_bytes);
        self.index = self.index.wrapping_add(done.len());
        let tail = self.push_each(rest)?;
        let len = done_bytes.saturating_add(tail.len());
        match base.checked_add(offset).map(|a| DmaRange::try_new(a, len)) {
            Some(Ok(d)) => Ok(d),
            _ => {
                let e = MapError::AddressOverflow { addr: base, len };
                Err(self.fail(e))
            }
        }
    }

    /// [`MapStream::push`] of each range; the DMA range they fill.
    #[cold]
    fn push_each(&mut self, phys: &[PhysRange]) -> Result<DmaRange, MapError> {
        let mut out: Option<DmaRange> = None;
        for &r in phys {
            let d = self.push(r)?;
            out = Some(match out {
                // Contiguous pieces of one reservation: the union does not overflow.
                Some(o) => {
                    DmaRange::new_unchecked(o.addr().as_u64(), o.len().saturating_add(d.len()))
                }
                None => d,
            });
        }
        out.ok_or(MapError::Empty)
    }

    /// Maps the next range and returns its DMA range (`blk_rq_dma_map_iter_next`).
    /// Through IOVA the returned ranges are contiguous pieces of one reservation, not
    /// yet visible to the device: [`MapStream::finish`] syncs.
    ///
    /// # Errors
    /// [`MapError::P2pNotSupported`], [`MapError::MixedP2p`] (with the range's index),
    /// [`MapError::OutOfReservation`] / [`MapError::StreamLength`] when the ranges pass
    /// the announced total, [`MapError::MergeBoundary`] (IOVA),
    /// [`MapError::TooManySegments`] when the sink is full, and whatever the mapper
    /// reports. The stream is unwound then (nothing stays mapped) and keeps failing.
    #[inline(always)]
    pub fn push(&mut self, phys: PhysRange) -> Result<DmaRange, MapError> {
        match self.push_fast(phys) {
            Some(d) => Ok(d),
            None => self.push_general(phys),
        }
    }

    /// [`MapStream::push`]'s common case alone (direct mapping of ordinary memory with
    /// nothing to store): `Some` when `phys` took it, `None` (nothing done) otherwise.
    /// The fused writers call it, then [`MapStream::push_general`]: the fast result
    /// stays in registers instead of sharing the general path's result slot in memory
    /// (a 16-byte reload of two 8-byte stores stalls store forwarding).
    #[inline(always)]
    pub(crate) fn push_fast(&mut self, phys: PhysRange) -> Option<DmaRange> {
        if self.direct && self.p2p.map_type(phys) == P2pMapType::None {
            let seen = self.seen.checked_add(phys.len())?;
            if seen <= self.total {
                let d = match self.lin {
                    Some(lin) => lin.map(phys),
                    None => self.m.mapper.map_phys(phys, self.m.dir, self.m.attrs).ok(),
                }?;
                self.seen = seen;
                self.index = self.index.wrapping_add(1);
                return Some(d);
            }
        }
        None
    }

    /// [`MapStream::push`] in general: every state, every error.
    #[inline(never)]
    pub(crate) fn push_general(&mut self, phys: PhysRange) -> Result<DmaRange, MapError> {
        match self.push_inner(phys) {
            Ok(d) => Ok(d),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// The per-range work shared by every state, then the state's own: small enough to
    /// inline at every call site; the IOVA link (page-table work) stays out of line.
    #[inline(always)]
    fn push_inner(&mut self, phys: PhysRange) -> Result<DmaRange, MapError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let index = self.index;
        let k = self.p2p.map_type(phys);
        if k != self.kind {
            self.check_kind(index, k, phys)?;
        }
        let offset = self.seen;
        let seen = offset
            .checked_add(phys.len())
            .ok_or(MapError::TotalOverflow)?;
        let d = match self.m.state {
            State::Linking(_) => self.link(phys, offset, seen)?,
            State::PerRange => {
                if seen > self.total {
                    return Err(self.length_error(seen));
                }
                let (dir, attrs) = (self.m.dir, self.m.attrs);
                let d = self.m.mapper.map_phys(phys, dir, attrs)?;
                if self.store {
                    self.store_range(d)?;
                }
                d
            }
            State::BusAddr => {
                if seen > self.total {
                    return Err(self.length_error(seen));
                }
                let P2pMapType::BusAddr { bus_offset } = k else {
                    return Err(MapError::MixedP2p { index });
                };
                let d = bus_range(phys, bus_offset)?;
                if self.keep_all {
                    push(&mut self.m.dma, d)?;
                }
                d
            }
            State::Iova(_) | State::Done => return Err(MapError::SyncBeforeLink),
        };
        self.seen = seen;
        self.index = index.wrapping_add(1);
        Ok(d)
    }

    /// A range whose map type differs from the first one's: an error unless only the
    /// bus offset differs (another provider behind the same switch).
    #[cold]
    #[inline(never)]
    fn check_kind(&self, index: usize, k: P2pMapType, phys: PhysRange) -> Result<(), MapError> {
        if k == P2pMapType::NotSupported {
            Err(not_supported(index, phys))
        } else if !k.same_kind(self.kind) {
            Err(MapError::MixedP2p { index })
        } else {
            Ok(())
        }
    }

    /// Links `phys` at `offset` of the reservation (`dma_iova_link`).
    #[inline(never)]
    fn link(&mut self, phys: PhysRange, offset: u64, seen: u64) -> Result<DmaRange, MapError> {
        let (dir, attrs) = (self.m.dir, self.m.attrs);
        let State::Linking(space) = &mut self.m.state else {
            return Err(MapError::SyncBeforeLink);
        };
        self.m.mapper.link(space, phys, offset, dir, attrs)?;
        let base = space.addr().as_u64();
        base.checked_add(offset)
            .and_then(|a| DmaRange::try_new(a, phys.len()).ok())
            .ok_or(MapError::AddressOverflow {
                addr: base,
                len: seen,
            })
    }

    /// Keeps a per-range mapping for the unmap; unmaps it when the sink is full.
    #[inline]
    fn store_range(&mut self, d: DmaRange) -> Result<(), MapError> {
        if let Err(e) = push(&mut self.m.dma, d) {
            let _ = self.m.mapper.unmap_phys(d, self.m.dir, self.m.attrs);
            return Err(e);
        }
        Ok(())
    }

    fn length_error(&self, streamed: u64) -> MapError {
        MapError::StreamLength {
            declared: self.total,
            streamed,
        }
    }

    /// Unwinds everything and remembers `e`.
    #[cold]
    #[inline(never)]
    fn fail(&mut self, e: MapError) -> MapError {
        let _ = self.m.teardown();
        self.m.dma.truncate_ranges(0);
        self.m.total = 0;
        self.failed = Some(e);
        self.direct = false;
        self.lin = None;
        e
    }

    /// Ends the stream (one `dma_iova_sync` for an IOVA mapping) and returns the
    /// [`Mapping`] to unmap at completion.
    ///
    /// # Errors
    /// [`MapError::StreamLength`] when the ranges pushed do not add up to the announced
    /// total, the stream's earlier error, or whatever the sync reports. Everything is
    /// unwound then.
    #[inline(always)]
    pub fn finish(mut self) -> Result<Mapping<'m, M, K>, MapError> {
        self.finish_in_place()?;
        Ok(self.m)
    }

    /// [`MapStream::finish`] without moving the stream: checks the total and syncs;
    /// afterwards `self.m` is the finished [`Mapping`]. (Moving the whole stream into
    /// `finish` costs a 256-byte copy and a store-forwarding stall on the hot path.)
    #[inline(always)]
    pub(crate) fn finish_in_place(&mut self) -> Result<(), MapError> {
        if self.failed.is_none()
            && self.seen == self.total
            && !matches!(self.m.state, State::Linking(_))
        {
            // Nothing to sync: the common direct case, inline at the call site.
            self.m.total = self.seen;
            return Ok(());
        }
        self.finish_general()
    }

    /// Moves the finished [`Mapping`] out (after [`MapStream::finish_in_place`]).
    #[inline(always)]
    pub(crate) fn into_mapping(self) -> Mapping<'m, M, K> {
        self.m
    }

    /// [`MapStream::finish`] in general: errors and the sync.
    #[inline(never)]
    fn finish_general(&mut self) -> Result<(), MapError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.seen != self.total {
            let e = self.length_error(self.seen);
            return Err(self.fail(e));
        }
        if let State::Linking(_) = self.m.state {
            let State::Linking(space) = core::mem::replace(&mut self.m.state, State::Done) else {
                return Err(MapError::SyncBeforeLink);
            };
            match self.m.mapper.sync(space, 0, self.total) {
                Ok(space) => {
                    let range = space.dma_range();
                    self.m.state = State::Iova(space);
                    self.m.syncs = 1;
                    if self.keep_all {
                        if let Err(e) = push(&mut self.m.dma, range) {
                            return Err(self.fail(e));
                        }
                    }
                }
                Err(SyncError { space, error }) => {
                    self.m.state = State::Linking(space);
                    return Err(self.fail(error));
                }
            }
        }
        self.m.total = self.seen;
        Ok(())
    }
}

#[cold]
#[inline(never)]
fn not_supported(index: usize, r: PhysRange) -> MapError {
    MapError::P2pNotSupported {
        index,
        phys: r.addr().as_u64(),
    }
}

/// `phys + bus_offset` (`PCI_P2PDMA_MAP_BUS_ADDR`).
#[inline]
pub(super) fn bus_range(r: PhysRange, bus_offset: u64) -> Result<DmaRange, MapError> {
    DmaRange::try_new(r.addr().as_u64().wrapping_add(bus_offset), r.len()).map_err(|_| {
        MapError::AddressOverflow {
            addr: r.addr().as_u64(),
            len: r.len(),
        }
    })
}

#[inline]
pub(super) fn push<K: RangeSink<Dma>>(sink: &mut K, r: DmaRange) -> Result<(), MapError> {
    sink.push_range(r).map_err(|_| MapError::TooManySegments {
        needed: sink.ranges().len().saturating_add(1),
        capacity: 0,
    })
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;
    use crate::map::{DirectMapper, NoP2p, SoftIommu};
    use crate::{DmaArray, DmaMask};

    fn opts() -> StreamOptions {
        StreamOptions::new(DataDirection::ToDevice)
    }

    #[test]
    fn iova_error_mid_stream_unwinds_links_and_reservation() {
        let iommu = SoftIommu::new_4k();
        let a = PhysRange::new(0x5000, 0x1000);
        let bad = PhysRange::new(0x9800, 0x800); // starts inside a granule
        let mut s =
            MapStream::start(&iommu, &NoP2p, a, 0x1800, opts(), DmaArray::<0>::new()).unwrap();
        s.push(a).unwrap();
        assert!(iommu.stats().mapped_bytes > 0);
        let e = s.push(bad).unwrap_err();
        assert_eq!(e.kind(), "merge_boundary");
        assert_eq!(iommu.stats().mapped_bytes, 0);
        // Keeps failing, finish reports the same error.
        assert_eq!(s.push(a).unwrap_err(), e);
        assert_eq!(s.finish().unwrap_err(), e);
        assert_eq!(iommu.stats().mapped_bytes, 0);
    }

    #[test]
    fn short_or_long_stream_is_refused_and_unwound() {
        let iommu = SoftIommu::new_4k();
        let a = PhysRange::new(0x5000, 0x1000);
        let mut s =
            MapStream::start(&iommu, &NoP2p, a, 0x2000, opts(), DmaArray::<0>::new()).unwrap();
        s.push(a).unwrap();
        let e = s.finish().unwrap_err();
        assert_eq!(
            e,
            MapError::StreamLength {
                declared: 0x2000,
                streamed: 0x1000
            }
        );
        assert_eq!(iommu.stats().mapped_bytes, 0);

        let d = DirectMapper::new(0, DmaMask::BITS_64);
        let mut s = MapStream::start(&d, &NoP2p, a, 0x1000, opts(), DmaArray::<0>::new()).unwrap();
        s.push(a).unwrap();
        assert_eq!(s.push(a).unwrap_err().kind(), "stream_length");
    }

    #[test]
    fn dropped_stream_unmaps_per_range_mappings() {
        // `Coalesce::Never` on an IOMMU: per-range mappings, kept for the unmap.
        let iommu = SoftIommu::new_4k();
        let a = PhysRange::new(0x5000, 0x1000);
        let o = opts().with_coalesce(Coalesce::Never);
        let mut s = MapStream::start(&iommu, &NoP2p, a, 0x2000, o, DmaArray::<2>::new()).unwrap();
        s.push(a).unwrap();
        assert_eq!(s.m.dma.len(), 1);
        drop(s);
        assert_eq!(iommu.stats().mapped_bytes, 0);
    }

    #[test]
    fn full_sink_unwinds() {
        let iommu = SoftIommu::new_4k();
        let a = PhysRange::new(0x5000, 0x1000);
        let o = opts().with_coalesce(Coalesce::Never);
        let mut s = MapStream::start(&iommu, &NoP2p, a, 0x2000, o, DmaArray::<1>::new()).unwrap();
        s.push(a).unwrap();
        let e = s.push(PhysRange::new(0x7000, 0x1000)).unwrap_err();
        assert_eq!(e.kind(), "too_many_segments");
        assert_eq!(iommu.stats().mapped_bytes, 0);
    }
}
