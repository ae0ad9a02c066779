//! The decoders' output side: [`SglItemSink`] (items in transfer order), [`DataOnly`]
//! (data ranges into any [`RangeSink`]) and the internal emitters that coalesce what
//! *this* decode pushed and roll back on error.

#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

use super::error::DecodeError;
use crate::addr::Dma;
use crate::nvme::descriptor::SglItem;
use crate::range::DmaRange;
use crate::sink::RangeSink;

/// Where the SGL decoder writes [`SglItem`]s, in transfer order.
///
/// Implemented by `Vec<SglItem>` (`alloc`), `arrayvec::ArrayVec<SglItem, N>` and
/// [`DataOnly`] (data ranges into any [`RangeSink`], bit buckets counted).
///
/// # Implementer notes
/// - `push_item` appends, or returns the item and changes nothing.
/// - `replace_last_item` swaps the last item (to coalesce), or returns the new item
///   and changes nothing when there is none.
/// - `mark` / `rollback`: a decoder takes a mark before it writes and rolls back to it
///   on error, so a failed decode leaves the sink exactly as it found it. `rollback`
///   must restore everything `mark` saw (items, counters).
///
/// ```
/// use physvec::nvme::{SglItem, SglItemSink};
/// use physvec::DmaRange;
/// let mut v: Vec<SglItem> = Vec::new();
/// let m = v.mark();
/// v.push_item(SglItem::Data(DmaRange::new(0x1000, 8))).unwrap();
/// v.rollback(m);
/// assert!(v.is_empty());
/// ```
pub trait SglItemSink {
    /// A position to roll back to (for containers, the item count).
    type Mark: Copy;

    /// Appends an item, or hands it back when full.
    ///
    /// # Errors
    /// The rejected item; the sink is unchanged.
    fn push_item(&mut self, item: SglItem) -> Result<(), SglItem>;
    /// The last item pushed, if any.
    fn last_item(&self) -> Option<SglItem>;
    /// Replaces the last item (used to coalesce).
    ///
    /// # Errors
    /// The rejected item when the sink is empty or cannot hold the merged item; the
    /// sink is unchanged.
    fn replace_last_item(&mut self, item: SglItem) -> Result<(), SglItem>;
    /// The current position.
    fn mark(&self) -> Self::Mark;
    /// Undoes everything pushed since `mark` was taken.
    fn rollback(&mut self, mark: Self::Mark);
}

#[cfg(feature = "alloc")]
impl SglItemSink for alloc::vec::Vec<SglItem> {
    type Mark = usize;
    fn push_item(&mut self, item: SglItem) -> Result<(), SglItem> {
        self.push(item);
        Ok(())
    }
    fn last_item(&self) -> Option<SglItem> {
        self.last().copied()
    }
    fn replace_last_item(&mut self, item: SglItem) -> Result<(), SglItem> {
        match self.last_mut() {
            Some(l) => {
                *l = item;
                Ok(())
            }
            None => Err(item),
        }
    }
    fn mark(&self) -> usize {
        self.len()
    }
    fn rollback(&mut self, mark: usize) {
        self.truncate(mark)
    }
}

impl<const N: usize> SglItemSink for arrayvec::ArrayVec<SglItem, N> {
    type Mark = usize;
    fn push_item(&mut self, item: SglItem) -> Result<(), SglItem> {
        self.try_push(item).map_err(|e| e.element())
    }
    fn last_item(&self) -> Option<SglItem> {
        self.last().copied()
    }
    fn replace_last_item(&mut self, item: SglItem) -> Result<(), SglItem> {
        match self.last_mut() {
            Some(l) => {
                *l = item;
                Ok(())
            }
            None => Err(item),
        }
    }
    fn mark(&self) -> usize {
        self.len()
    }
    fn rollback(&mut self, mark: usize) {
        self.truncate(mark)
    }
}

/// An [`SglItemSink`] that writes data ranges into a [`RangeSink<Dma>`] and only counts
/// bit-bucket bytes. Data on either side of a bit bucket is never merged.
///
/// ```
/// use physvec::nvme::{DataOnly, SglItem, SglItemSink};
/// use physvec::{DmaArray, DmaRange};
/// let mut ranges = DmaArray::<4>::new();
/// let mut sink = DataOnly::new(&mut ranges);
/// sink.push_item(SglItem::Data(DmaRange::new(0x1000, 0x10))).unwrap();
/// sink.push_item(SglItem::BitBucket(0x20)).unwrap();
/// assert_eq!(sink.discarded(), 0x20);
/// ```
#[derive(Debug)]
pub struct DataOnly<'k, K> {
    sink: &'k mut K,
    discarded: u64,
    last: Option<SglItem>,
}

impl<'k, K: RangeSink<Dma>> DataOnly<'k, K> {
    /// Wraps `sink`.
    ///
    /// ```
    /// use physvec::nvme::DataOnly;
    /// let mut v: Vec<physvec::DmaRange> = Vec::new();
    /// assert_eq!(DataOnly::new(&mut v).discarded(), 0);
    /// ```
    pub fn new(sink: &'k mut K) -> Self {
        Self {
            sink,
            discarded: 0,
            last: None,
        }
    }

    /// Bit-bucket bytes seen.
    ///
    /// ```
    /// use physvec::nvme::{DataOnly, SglItem, SglItemSink};
    /// let mut v: Vec<physvec::DmaRange> = Vec::new();
    /// let mut d = DataOnly::new(&mut v);
    /// d.push_item(SglItem::BitBucket(8)).unwrap();
    /// assert_eq!(d.discarded(), 8);
    /// ```
    pub const fn discarded(&self) -> u64 {
        self.discarded
    }
}

/// Where a [`DataOnly`] stood: the range sink's mark, the bit-bucket count and the
/// last item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataOnlyMark {
    ranges: crate::sink::SinkMark,
    discarded: u64,
    last: Option<SglItem>,
}

impl<K: RangeSink<Dma>> SglItemSink for DataOnly<'_, K> {
    type Mark = DataOnlyMark;
    fn push_item(&mut self, item: SglItem) -> Result<(), SglItem> {
        match item {
            SglItem::Data(r) => self.sink.push_range(r).map_err(|_| item)?,
            SglItem::BitBucket(l) => self.discarded = self.discarded.saturating_add(l),
        }
        self.last = Some(item);
        Ok(())
    }
    fn last_item(&self) -> Option<SglItem> {
        self.last
    }
    fn replace_last_item(&mut self, item: SglItem) -> Result<(), SglItem> {
        match (self.last, item) {
            (Some(SglItem::Data(_)), SglItem::Data(r)) => {
                self.sink.replace_last(r).map_err(|_| item)?
            }
            (Some(SglItem::BitBucket(old)), SglItem::BitBucket(new)) => {
                self.discarded = self.discarded.saturating_sub(old).saturating_add(new)
            }
            _ => return Err(item),
        }
        self.last = Some(item);
        Ok(())
    }
    fn mark(&self) -> DataOnlyMark {
        DataOnlyMark {
            ranges: self.sink.mark(),
            discarded: self.discarded,
            last: self.last,
        }
    }
    fn rollback(&mut self, mark: DataOnlyMark) {
        self.sink.rollback(mark.ranges);
        self.discarded = mark.discarded;
        self.last = mark.last;
    }
}

/// Output side shared by the decoders: coalesces with what *this decode* pushed.
pub(crate) trait Emit {
    fn emit(&mut self, item: SglItem) -> Result<(), DecodeError>;
}

/// Data ranges into a [`RangeSink`], through the crate's one coalescing adaptor.
pub(crate) struct RangeEmit<'c, 'k, K: RangeSink<Dma> + ?Sized> {
    pub out: &'c mut crate::sink::Coalescing<'k, Dma, K>,
}

impl<K: RangeSink<Dma> + ?Sized> Emit for RangeEmit<'_, '_, K> {
    #[inline]
    fn emit(&mut self, item: SglItem) -> Result<(), DecodeError> {
        let SglItem::Data(r) = item else {
            return Err(DecodeError::OutputFull);
        };
        self.out.push(r).map_err(|_| DecodeError::OutputFull)
    }
}

pub(crate) struct ItemEmit<'k, K> {
    pub sink: &'k mut K,
    pub pushed: bool,
}

impl<K: SglItemSink> Emit for ItemEmit<'_, K> {
    fn emit(&mut self, item: SglItem) -> Result<(), DecodeError> {
        if self.pushed {
            if let Some(m) = self.sink.last_item().and_then(|l| l.merge(item)) {
                return self
                    .sink
                    .replace_last_item(m)
                    .map_err(|_| DecodeError::OutputFull);
            }
        }
        self.sink
            .push_item(item)
            .map_err(|_| DecodeError::OutputFull)?;
        self.pushed = true;
        Ok(())
    }
}

/// Runs `decode` with an [`ItemEmit`] over `out`, rolling `out` back on error.
pub(crate) fn with_items<K: SglItemSink, T>(
    out: &mut K,
    decode: impl FnOnce(&mut ItemEmit<'_, K>) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    let mark = out.mark();
    let mut emit = ItemEmit {
        sink: &mut *out,
        pushed: false,
    };
    let r = decode(&mut emit);
    if r.is_err() {
        out.rollback(mark);
    }
    r
}

/// `addr + len` as a data item, or `None` if it would pass 2^64.
pub(crate) fn data(addr: u64, len: u64) -> Option<SglItem> {
    DmaRange::try_new(addr, len).ok().map(SglItem::Data)
}
