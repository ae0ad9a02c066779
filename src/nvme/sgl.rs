//! SGL encoder (driver side): DMA ranges and bit buckets → SGL descriptors in DPTR and
//! caller-supplied segment pages.
//!
//! Rules (NVMe Base Specification 1.4 §4.4 "Scatter Gather List (SGL)"; Base 2.x
//! §4.1.2): SGL1 in DPTR is a single data descriptor or a Segment / Last Segment
//! descriptor pointing at the first segment; a segment is an array of 16-byte
//! descriptors in which only the last may point at the next segment; the final segment
//! is reached through a Last Segment descriptor and contains no segment descriptors.
//!
//! Layout produced (the `sgl` command of the tool):
//! - one descriptor in total: a Data Block (or Keyed Data Block) directly in DPTR;
//! - otherwise DPTR holds a Last Segment descriptor when everything fits in the first
//!   segment page, or a Segment descriptor when it does not; a page that overflows gives
//!   its last slot to a Segment descriptor to the next page, and the final page is
//!   reached through a Last Segment descriptor. Pages are used in order and only as many
//!   as needed.
//!
//! Contiguous data ranges (and adjacent bit buckets) are merged first. Data Blocks carry
//! at most `2^32 - 1` bytes and Keyed Data Blocks `2^24 - 1`; longer runs are split into
//! pieces of `2^32 - 4096` (resp. `2^24 - 4096`) bytes plus a remainder, so the pieces
//! stay page and dword aligned.

use core::fmt;

use super::descriptor::{SglCapabilities, SglDescriptor, SglItem};
use super::runs::Runs;
use crate::addr::DmaAddr;

/// A page (any size that is a multiple of 16 bytes) the encoder may fill with SGL
/// descriptors: its bus address (8-byte aligned: segments are qword aligned) and the
/// CPU's view of it.
#[derive(Debug)]
pub struct SglSegmentPage<'a> {
    /// Bus address of descriptor 0.
    pub bus: DmaAddr,
    /// Descriptor `i` lives at `bus + 16 * i`.
    pub descriptors: &'a mut [SglDescriptor],
}

impl<'a> SglSegmentPage<'a> {
    /// A page at `bus` backed by `descriptors`.
    pub fn new(bus: DmaAddr, descriptors: &'a mut [SglDescriptor]) -> Self {
        Self { bus, descriptors }
    }
}

/// How to encode an SGL.
///
/// ```
/// use physvec::nvme::{SglCapabilities, SglOptions};
/// let o = SglOptions::new(SglCapabilities::from_raw(0x1)).with_key(Some(0x1234));
/// assert_eq!(o.key, Some(0x1234));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SglOptions {
    /// The controller's SGLS: SGLs must be supported; dword alignment, Keyed Data Block
    /// and Bit Bucket support are honoured.
    pub caps: SglCapabilities,
    /// `Some(rkey)`: emit Keyed SGL Data Blocks (NVMe over RDMA) instead of Data Blocks.
    pub key: Option<u32>,
    /// Lay out chains so that a segment ending in a Last Segment descriptor never has as
    /// many descriptors as the segment before it (one slot left unused), which works
    /// around QEMU's `nvme_map_sgl` defect (see the module docs of [`crate::nvme`]).
    pub qemu_chain_workaround: bool,
}

impl Default for SglOptions {
    /// [`SglCapabilities::ALL_TYPES`], no key, no workaround.
    fn default() -> Self {
        Self::new(SglCapabilities::ALL_TYPES)
    }
}

impl SglOptions {
    /// Options for a controller with `caps`, no key, no workaround.
    pub const fn new(caps: SglCapabilities) -> Self {
        Self {
            caps,
            key: None,
            qemu_chain_workaround: false,
        }
    }

    /// The same options with `key`.
    pub const fn with_key(mut self, key: Option<u32>) -> Self {
        self.key = key;
        self
    }

    /// The same options with the QEMU chain workaround on or off.
    pub const fn with_qemu_chain_workaround(mut self, on: bool) -> Self {
        self.qemu_chain_workaround = on;
        self
    }
}

/// An SGL encoding failure.
///
/// ```
/// use physvec::nvme::{encode_sgl, SglCapabilities, SglError, SglItem, SglOptions};
/// let e = encode_sgl([SglItem::BitBucket(16)], SglOptions::new(SglCapabilities::from_raw(1)),
///                    core::iter::empty()).unwrap_err();
/// assert_eq!(e, SglError::BitBucketNotSupported { index: 0 });
/// assert_eq!(e.kind(), "bit_bucket_not_supported");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SglError {
    /// Nothing to encode.
    Empty,
    /// Input item `index` is a zero-length bit bucket (data ranges are never empty).
    EmptyBitBucket {
        /// Index in the input.
        index: usize,
    },
    /// The controller does not support SGLs (SGLS bits 1:0 = 00b or 11b).
    NotSupported,
    /// A key was given but the controller lacks Keyed SGL Data Block support.
    KeyedNotSupported,
    /// Input item `index` is a bit bucket; the controller does not support them.
    BitBucketNotSupported {
        /// Index in the input.
        index: usize,
    },
    /// Input item `index` breaks the controller's dword alignment and granularity rule.
    NotDwordAligned {
        /// Index in the input.
        index: usize,
    },
    /// The pool ran out of segment pages.
    TooFewSegmentPages {
        /// Segment pages the SGL needs in all: exact when every page holds as many
        /// descriptors as the last one supplied (at least 1 when none was).
        needed: u64,
        /// Pages supplied before the pool ran dry.
        supplied: usize,
    },
    /// Segment page `index` has too few slots (a page that links onward needs 2).
    SegmentPageTooSmall {
        /// Position in the pool.
        index: usize,
        /// Its slots.
        slots: usize,
    },
    /// Segment page `index` is not 8-byte aligned.
    SegmentPageMisaligned {
        /// Position in the pool.
        index: usize,
        /// Its bus address.
        bus: u64,
    },
    /// An [`SglWriter`](super::SglWriter) produced more or fewer data descriptors than it was created for.
    StreamLength {
        /// Descriptors announced.
        declared: u64,
        /// Descriptors produced (saturating).
        streamed: u64,
    },
}

impl SglError {
    /// Stable snake_case name of the variant.
    pub const fn kind(&self) -> &'static str {
        match self {
            SglError::Empty => "empty",
            SglError::EmptyBitBucket { .. } => "empty_bit_bucket",
            SglError::NotSupported => "sgl_not_supported",
            SglError::KeyedNotSupported => "keyed_not_supported",
            SglError::BitBucketNotSupported { .. } => "bit_bucket_not_supported",
            SglError::NotDwordAligned { .. } => "not_dword_aligned",
            SglError::TooFewSegmentPages { .. } => "too_few_segment_pages",
            SglError::SegmentPageTooSmall { .. } => "segment_page_too_small",
            SglError::SegmentPageMisaligned { .. } => "segment_page_misaligned",
            SglError::StreamLength { .. } => "stream_length",
        }
    }

    /// Index of the offending input item or segment page, when there is one.
    pub const fn index(&self) -> Option<usize> {
        match *self {
            SglError::EmptyBitBucket { index }
            | SglError::BitBucketNotSupported { index }
            | SglError::NotDwordAligned { index }
            | SglError::SegmentPageTooSmall { index, .. }
            | SglError::SegmentPageMisaligned { index, .. } => Some(index),
            _ => None,
        }
    }
}

impl fmt::Display for SglError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SglError::Empty => f.write_str("no segments to encode"),
            SglError::EmptyBitBucket { index } => write!(f, "bit bucket {index} has length 0"),
            SglError::NotSupported => f.write_str("the controller does not support SGLs"),
            SglError::KeyedNotSupported => {
                f.write_str("the controller does not support Keyed SGL Data Blocks")
            }
            SglError::BitBucketNotSupported { index } => write!(
                f,
                "segment {index} is a bit bucket, which the controller does not support"
            ),
            SglError::NotDwordAligned { index } => write!(
                f,
                "segment {index}: the controller requires dword-aligned addresses and lengths"
            ),
            SglError::TooFewSegmentPages { needed, supplied } => write!(
                f,
                "the SGL needs {needed} segment {}, only {supplied} {} supplied",
                crate::fmt::plural(needed, "page", "pages"),
                crate::fmt::plural(supplied as u64, "was", "were")
            ),
            SglError::SegmentPageTooSmall { index, slots } => write!(
                f,
                "segment page {index} holds {slots} descriptors, too few to link onward"
            ),
            SglError::SegmentPageMisaligned { index, bus } => {
                write!(f, "segment page {index} at {bus:#x} is not qword aligned")
            }
            SglError::StreamLength { declared, streamed } => write!(
                f,
                "the SGL writer was created for {declared} data descriptors but {streamed} were produced"
            ),
        }
    }
}

impl core::error::Error for SglError {}

/// An SGL encoding: SGL1 for DPTR and how the segment pages were used.
///
/// ```
/// use physvec::nvme::{encode_sgl, SglDescriptor, SglItem, SglOptions, SglSegmentPage, SglDescriptorType};
/// use physvec::{DmaAddr, DmaRange};
/// let items = [SglItem::Data(DmaRange::new(0x1_0000, 0x200)), SglItem::Data(DmaRange::new(0x2_0010, 0x300))];
/// let mut seg = [SglDescriptor::default(); 4];
/// let pool = [SglSegmentPage::new(DmaAddr::new(0x9_0000), &mut seg)];
/// let sgl = encode_sgl(items, SglOptions::default(), pool)?;
/// // Two data blocks: SGL1 is a Last Segment pointing at them.
/// assert_eq!(sgl.dptr.descriptor_type(), SglDescriptorType::LastSegment);
/// assert_eq!((sgl.dptr.address().as_u64(), sgl.dptr.length()), (0x9_0000, 32));
/// assert_eq!((sgl.data_descriptors(), sgl.segments_used()), (2, 1));
/// # Ok::<(), physvec::nvme::SglError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sgl {
    /// SGL Entry 1.
    pub dptr: SglDescriptor,
    descriptors: u64,
    segments: usize,
}

impl Sgl {
    pub(super) const fn new(dptr: SglDescriptor, descriptors: u64, segments: usize) -> Self {
        Self {
            dptr,
            descriptors,
            segments,
        }
    }

    /// DPTR for [`super::SubmissionQueueEntry::set_data_pointer`] (PSDT 01b).
    pub const fn data_pointer(&self) -> super::DataPointer {
        super::DataPointer::Sgl(self.dptr)
    }

    /// Data Block, Keyed Data Block and Bit Bucket descriptors written (DPTR included).
    pub const fn data_descriptors(&self) -> u64 {
        self.descriptors
    }

    /// Segment pages taken from the pool.
    pub const fn segments_used(&self) -> usize {
        self.segments
    }
}

/// Largest number of descriptors in one segment (its length field is 32 bits).
pub(super) const MAX_SEGMENT_SLOTS: usize = (u32::MAX / 16) as usize;

/// Coalesced runs checked against the capabilities, and the descriptors they split into
/// (the counting side of [`sgl_descriptors`]).
#[derive(Clone)]
struct Descriptors<I> {
    runs: Runs<I>,
    caps: SglCapabilities,
    key: Option<u32>,
}

impl<I: Iterator<Item = SglItem>> Descriptors<I> {
    fn new(items: I, opts: &SglOptions) -> Self {
        Self {
            runs: Runs::new(items),
            caps: opts.caps,
            key: opts.key,
        }
    }
}

impl<I: Iterator<Item = SglItem>> Descriptors<I> {
    /// The next run of coalesced input, checked against the capabilities.
    fn next_run(&mut self) -> Option<Result<super::runs::Run, SglError>> {
        let run = match self.runs.next()? {
            Ok(r) => r,
            Err(index) => return Some(Err(SglError::EmptyBitBucket { index })),
        };
        match run.item {
            SglItem::BitBucket(_) if !self.caps.bit_bucket() => {
                return Some(Err(SglError::BitBucketNotSupported { index: run.first }))
            }
            SglItem::Data(r) if self.caps.dword_aligned() => {
                if r.addr().as_u64() & 3 != 0 {
                    return Some(Err(SglError::NotDwordAligned { index: run.first }));
                }
                if r.len() & 3 != 0 {
                    return Some(Err(SglError::NotDwordAligned { index: run.last }));
                }
            }
            _ => {}
        }
        Some(Ok(run))
    }

    /// Longest descriptor for `item`, and the piece size a longer item is cut into.
    fn limits(&self, item: SglItem) -> (u64, u64) {
        let keyed = self.key.is_some() && matches!(item, SglItem::Data(_));
        if keyed {
            (SglDescriptor::MAX_KEYED_LENGTH as u64, 0xff_f000)
        } else {
            (SglDescriptor::MAX_LENGTH as u64, 0xffff_f000)
        }
    }

    /// How many descriptors `next` would yield before its first error, or that error:
    /// the same walk per run instead of per descriptor.
    fn count_checked(mut self) -> Result<u64, SglError> {
        let mut n = 0u64;
        while let Some(run) = self.next_run() {
            let item = run?.item;
            let (max, chunk) = self.limits(item);
            let total = item.len();
            n = n.saturating_add(if total <= max {
                1
            } else {
                total.div_ceil(chunk)
            });
        }
        Ok(n)
    }
}

/// Checks that `items` can be encoded for a controller with `opts` and counts the data
/// descriptors (after merging and splitting). O(n), no allocation.
///
/// # Errors
/// As [`encode_sgl`](super::encode_sgl), except the pool errors.
///
/// ```
/// use physvec::nvme::{sgl_descriptors, SglItem, SglOptions};
/// use physvec::DmaRange;
/// let items = [SglItem::Data(DmaRange::new(0, 5 << 30)), SglItem::BitBucket(512)];
/// assert_eq!(sgl_descriptors(items, &SglOptions::default()), Ok(3)); // 4 GiB - 4 KiB, rest, bucket
/// ```
pub fn sgl_descriptors<I>(items: I, opts: &SglOptions) -> Result<u64, SglError>
where
    I: IntoIterator,
    I::Item: Into<SglItem>,
{
    let items = items.into_iter().map(Into::into);
    if !opts.caps.supported() {
        return Err(SglError::NotSupported);
    }
    if opts.key.is_some() && !opts.caps.keyed() {
        return Err(SglError::KeyedNotSupported);
    }
    let n = Descriptors::new(items, opts).count_checked()?;
    if n == 0 {
        return Err(SglError::Empty);
    }
    Ok(n)
}

/// Pages that hold `rem` more descriptors when each holds `cap` (at least 2) and every
/// page but the last spends one slot on the link to the next.
pub(super) fn pages_for(rem: u64, cap: u64) -> u64 {
    match (rem.checked_sub(cap), cap.checked_sub(1)) {
        // More than one page: the first holds `cap - 1` and a link, and so on.
        (Some(over), Some(per)) if over > 0 && per > 0 => over.div_ceil(per).saturating_add(1),
        _ => 1,
    }
}

/// Segment pages an SGL of `descriptors` data descriptors needs when every page holds
/// `slots` descriptors (at least 2), without the QEMU workaround: 0 when one data
/// descriptor goes straight into DPTR.
///
/// ```
/// use physvec::nvme::sgl_segment_pages_needed;
/// assert_eq!(sgl_segment_pages_needed(1, 256), 0);
/// assert_eq!(sgl_segment_pages_needed(256, 256), 1);
/// assert_eq!(sgl_segment_pages_needed(257, 256), 2); // 255 + Segment, then 2
/// assert_eq!(sgl_segment_pages_needed(511, 256), 2);
/// assert_eq!(sgl_segment_pages_needed(512, 256), 3);
/// ```
pub fn sgl_segment_pages_needed(descriptors: u64, slots: u64) -> u64 {
    let slots = slots.max(2);
    match descriptors {
        0 | 1 => 0,
        d if d <= slots => 1,
        // `d > slots >= 2`: the first page holds `slots - 1` data descriptors and a link.
        d => d
            .saturating_sub(slots)
            .div_ceil(slots.saturating_sub(1))
            .saturating_add(1),
    }
}

crate::error::error_info!(SglError, |e| e.index().map(crate::error::Position::index));
