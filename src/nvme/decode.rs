//! What the device-side decoders share: [`DecodeOptions`], [`DecodeError`] (each with
//! the NVMe status a controller returns), [`DecodeSummary`], the output sinks
//! ([`SglItemSink`], [`DataOnly`]) and [`decode_command`], which dispatches on PSDT.
//!
//! # Bounds on untrusted input
//! A decoder reads at most [`DecodeOptions::max_descriptors`] PRP entries or SGL
//! descriptors (8 or 16 bytes each, one read per entry) and pushes at most one output
//! item per entry read (plus one for PRP1/PRP2 or SGL1); it keeps O(1) state of its own
//! (no allocation). PRP list pages followed and SGL segments followed are each bounded by
//! the entries read. SGL segment chains are checked for cycles with Brent's algorithm in
//! O(1) memory.

use core::fmt;

use super::cmd::{Psdt, SubmissionQueueEntry};
use super::descriptor::{SglCapabilities, SglDescriptor, SglItem};
use super::page::MemoryPageSize;
use super::status::NvmeStatus;
use crate::addr::Dma;
use crate::mem::MemoryReader;
use crate::range::DmaRange;
use crate::vec::RangeSink;

/// How strict a decoder is and how much work it may do.
///
/// ```
/// use physvec::nvme::{DecodeOptions, SglCapabilities};
/// let qemu = DecodeOptions::default()
///     .with_sgls(SglCapabilities::from_raw(0x1))
///     .with_qemu_compat(true);
/// assert!(qemu.qemu_compat && !qemu.sgls.keyed());
/// assert_eq!(DecodeOptions::default().max_descriptors, 1 << 20);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeOptions {
    /// The controller's SGLS: which descriptor types it accepts, dword granularity,
    /// and whether an SGL may describe more than the transfer (bit 18).
    pub sgls: SglCapabilities,
    /// Largest transfer in bytes (the controller's MDTS); longer → Invalid Field in
    /// Command (02h).
    pub max_transfer_len: u64,
    /// Most PRP entries / SGL descriptors read from memory; beyond → Internal Error
    /// (06h), as QEMU caps its mappings.
    pub max_descriptors: u64,
    /// Accept what QEMU's controller accepts and report its status where the
    /// specification leaves room (see the table in [`crate::nvme`]). QEMU's SGL chain
    /// defect is never reproduced.
    pub qemu_compat: bool,
}

impl Default for DecodeOptions {
    /// [`SglCapabilities::ALL_TYPES`], no MDTS, 2^20 descriptors, strict.
    fn default() -> Self {
        Self {
            sgls: SglCapabilities::ALL_TYPES,
            max_transfer_len: u64::MAX,
            max_descriptors: 1 << 20,
            qemu_compat: false,
        }
    }
}

impl DecodeOptions {
    /// The same options with `sgls`.
    pub const fn with_sgls(mut self, sgls: SglCapabilities) -> Self {
        self.sgls = sgls;
        self
    }

    /// The same options with QEMU compatibility on or off.
    pub const fn with_qemu_compat(mut self, on: bool) -> Self {
        self.qemu_compat = on;
        self
    }

    /// The same options with a descriptor budget.
    pub const fn with_max_descriptors(mut self, n: u64) -> Self {
        self.max_descriptors = n;
        self
    }

    /// The same options with an MDTS in bytes.
    pub const fn with_max_transfer_len(mut self, bytes: u64) -> Self {
        self.max_transfer_len = bytes;
        self
    }
}

/// Why a data pointer was rejected. Every variant maps to the status a controller
/// completes the command with ([`DecodeError::nvme_status`]).
///
/// `at` fields are the bus address of the offending PRP entry or SGL descriptor in
/// memory, `None` when it is in the command itself (DPTR).
///
/// ```
/// use physvec::nvme::{DecodeError, NvmeStatus};
/// let e = DecodeError::PrpOffsetInvalid { entry: 0x30200, at: None };
/// assert_eq!((e.kind(), e.nvme_status()), ("invalid_prp_offset", NvmeStatus::PRP_OFFSET_INVALID));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The transfer is longer than [`DecodeOptions::max_transfer_len`] (02h).
    TransferTooLarge {
        /// Transfer length in bytes.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// PSDT is 11b (reserved) (02h).
    InvalidPsdt,
    /// PSDT selects SGLs but SGLS says they are not supported (02h).
    SglNotSupported,
    /// A PRP entry with a forbidden offset: PRP2 or a list entry or chain pointer not
    /// page aligned, PRP1 not dword aligned, a list pointer not qword aligned (13h).
    PrpOffsetInvalid {
        /// The entry's value.
        entry: u64,
        /// Where it was read, `None` for DPTR.
        at: Option<u64>,
    },
    /// A bad Segment / Last Segment descriptor: length 0 or not a multiple of 16,
    /// misaligned or wrapping segment, or a segment descriptor inside a last segment
    /// (0Dh).
    InvalidSegmentDescriptor {
        /// Where the descriptor is, `None` for DPTR.
        at: Option<u64>,
    },
    /// A Segment or Last Segment descriptor that is not the last of its segment (0Eh).
    InvalidDescriptorCount {
        /// Where it is.
        at: u64,
    },
    /// The SGL describes less data than the transfer, or more when SGLS bit 18 is clear,
    /// or a data block wraps past 2^64 (0Fh).
    SglLengthInvalid {
        /// The offending descriptor, `None` when the SGL ended short or it is DPTR.
        at: Option<u64>,
        /// Bytes of the transfer not covered (0 for excess).
        uncovered: u64,
    },
    /// A descriptor type or subtype the controller does not support where it appears
    /// (11h).
    DescriptorTypeInvalid {
        /// Where it is, `None` for DPTR.
        at: Option<u64>,
        /// Its SGL Identifier byte (`type << 4 | subtype`).
        identifier: u8,
    },
    /// A Data Block address or length not dword aligned when SGLS requires it (1Dh).
    GranularityInvalid {
        /// Where it is, `None` for DPTR.
        at: Option<u64>,
    },
    /// An SGL segment chain that returns to a segment it already visited (0Dh).
    LoopDetected {
        /// The descriptor that closes the cycle.
        at: u64,
    },
    /// A read of a PRP list or SGL segment failed (04h).
    MemoryUnreadable {
        /// Start of the failed read.
        addr: u64,
        /// Its length in bytes.
        len: u64,
    },
    /// More than [`DecodeOptions::max_descriptors`] entries would be read (06h).
    LimitExceeded {
        /// The budget.
        limit: u64,
    },
    /// The output sink is full (06h).
    OutputFull,
}

impl DecodeError {
    /// Stable snake_case name of the variant.
    pub const fn kind(&self) -> &'static str {
        match self {
            DecodeError::TransferTooLarge { .. } => "transfer_too_large",
            DecodeError::InvalidPsdt => "invalid_psdt",
            DecodeError::SglNotSupported => "sgl_not_supported",
            DecodeError::PrpOffsetInvalid { .. } => "invalid_prp_offset",
            DecodeError::InvalidSegmentDescriptor { .. } => "invalid_segment_descriptor",
            DecodeError::InvalidDescriptorCount { .. } => "invalid_descriptor_count",
            DecodeError::SglLengthInvalid { .. } => "sgl_length_invalid",
            DecodeError::DescriptorTypeInvalid { .. } => "invalid_descriptor",
            DecodeError::GranularityInvalid { .. } => "invalid_granularity",
            DecodeError::LoopDetected { .. } => "loop_detected",
            DecodeError::MemoryUnreadable { .. } => "memory_unreadable",
            DecodeError::LimitExceeded { .. } => "limit_exceeded",
            DecodeError::OutputFull => "output_full",
        }
    }

    /// The completion status a controller returns for this input.
    pub const fn nvme_status(&self) -> NvmeStatus {
        match self {
            DecodeError::TransferTooLarge { .. }
            | DecodeError::InvalidPsdt
            | DecodeError::SglNotSupported => NvmeStatus::INVALID_FIELD,
            DecodeError::PrpOffsetInvalid { .. } => NvmeStatus::PRP_OFFSET_INVALID,
            DecodeError::InvalidSegmentDescriptor { .. } | DecodeError::LoopDetected { .. } => {
                NvmeStatus::INVALID_SGL_SEGMENT_DESCRIPTOR
            }
            DecodeError::InvalidDescriptorCount { .. } => {
                NvmeStatus::INVALID_NUMBER_OF_SGL_DESCRIPTORS
            }
            DecodeError::SglLengthInvalid { .. } => NvmeStatus::DATA_SGL_LENGTH_INVALID,
            DecodeError::DescriptorTypeInvalid { .. } => NvmeStatus::SGL_DESCRIPTOR_TYPE_INVALID,
            DecodeError::GranularityInvalid { .. } => {
                NvmeStatus::SGL_DATA_BLOCK_GRANULARITY_INVALID
            }
            DecodeError::MemoryUnreadable { .. } => NvmeStatus::DATA_TRANSFER_ERROR,
            DecodeError::LimitExceeded { .. } | DecodeError::OutputFull => {
                NvmeStatus::INTERNAL_ERROR
            }
        }
    }

    /// The bus address of the offending entry or failed read, when known.
    pub const fn at(&self) -> Option<u64> {
        match *self {
            DecodeError::PrpOffsetInvalid { at, .. }
            | DecodeError::InvalidSegmentDescriptor { at }
            | DecodeError::SglLengthInvalid { at, .. }
            | DecodeError::DescriptorTypeInvalid { at, .. }
            | DecodeError::GranularityInvalid { at } => at,
            DecodeError::InvalidDescriptorCount { at } | DecodeError::LoopDetected { at } => {
                Some(at)
            }
            DecodeError::MemoryUnreadable { addr, .. } => Some(addr),
            _ => None,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.nvme_status();
        match *self {
            DecodeError::TransferTooLarge { len, max } => {
                write!(f, "transfer of {len:#x} bytes exceeds the maximum {max:#x}")?
            }
            DecodeError::InvalidPsdt => f.write_str("PSDT 11b is reserved")?,
            DecodeError::SglNotSupported => {
                f.write_str("PSDT selects an SGL but the controller does not support SGLs")?
            }
            DecodeError::PrpOffsetInvalid { entry, .. } => {
                write!(f, "PRP entry {entry:#x} has a forbidden offset")?
            }
            DecodeError::InvalidSegmentDescriptor { .. } => {
                f.write_str("invalid SGL Segment or Last Segment descriptor")?
            }
            DecodeError::InvalidDescriptorCount { .. } => {
                f.write_str("a segment descriptor that is not the last of its segment")?
            }
            DecodeError::SglLengthInvalid { uncovered: 0, .. } => {
                f.write_str("the SGL describes more data than the transfer")?
            }
            DecodeError::SglLengthInvalid { uncovered, .. } => write!(
                f,
                "the SGL leaves {uncovered:#x} bytes of the transfer undescribed"
            )?,
            DecodeError::DescriptorTypeInvalid { identifier, .. } => write!(
                f,
                "SGL identifier {identifier:#04x}: type/subtype not supported here"
            )?,
            DecodeError::GranularityInvalid { .. } => {
                f.write_str("data block address or length not dword aligned")?
            }
            DecodeError::LoopDetected { .. } => {
                f.write_str("the SGL segment chain loops back to a visited segment")?
            }
            DecodeError::MemoryUnreadable { addr, len } => {
                write!(f, "cannot read {len} bytes at {addr:#x}")?
            }
            DecodeError::LimitExceeded { limit } => {
                write!(f, "more than {limit} descriptors would be read")?
            }
            DecodeError::OutputFull => f.write_str("the output sink is full")?,
        }
        // MemoryUnreadable names its address already.
        if let (Some(at), false) = (
            self.at(),
            matches!(self, DecodeError::MemoryUnreadable { .. }),
        ) {
            write!(f, " (at {at:#x})")?;
        }
        write!(f, ": {status}")
    }
}

impl core::error::Error for DecodeError {}

/// What a successful decode read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeSummary {
    /// PRP entries / SGL descriptors read from memory (DPTR not counted).
    pub descriptors_read: u64,
    /// PRP list pages / SGL segments visited.
    pub segments: u64,
}

/// Where the SGL decoder writes [`SglItem`]s, in transfer order.
///
/// Implemented by `Vec<SglItem>` (`alloc`), `arrayvec::ArrayVec<SglItem, N>` and
/// [`DataOnly`] (data ranges into any [`RangeSink`], bit buckets counted).
pub trait SglItemSink {
    /// Appends an item, or hands it back when full.
    ///
    /// # Errors
    /// The rejected item.
    fn push_item(&mut self, item: SglItem) -> Result<(), SglItem>;
    /// The last item pushed, if any.
    fn last_item(&self) -> Option<SglItem>;
    /// Replaces the last item (used to coalesce). No-op when empty.
    fn replace_last_item(&mut self, item: SglItem);
}

#[cfg(feature = "alloc")]
impl SglItemSink for alloc::vec::Vec<SglItem> {
    fn push_item(&mut self, item: SglItem) -> Result<(), SglItem> {
        self.push(item);
        Ok(())
    }
    fn last_item(&self) -> Option<SglItem> {
        self.last().copied()
    }
    fn replace_last_item(&mut self, item: SglItem) {
        if let Some(l) = self.last_mut() {
            *l = item;
        }
    }
}

impl<const N: usize> SglItemSink for arrayvec::ArrayVec<SglItem, N> {
    fn push_item(&mut self, item: SglItem) -> Result<(), SglItem> {
        self.try_push(item).map_err(|e| e.element())
    }
    fn last_item(&self) -> Option<SglItem> {
        self.last().copied()
    }
    fn replace_last_item(&mut self, item: SglItem) {
        if let Some(l) = self.last_mut() {
            *l = item;
        }
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
    pub fn new(sink: &'k mut K) -> Self {
        Self {
            sink,
            discarded: 0,
            last: None,
        }
    }

    /// Bit-bucket bytes seen.
    pub const fn discarded(&self) -> u64 {
        self.discarded
    }
}

impl<K: RangeSink<Dma>> SglItemSink for DataOnly<'_, K> {
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
    fn replace_last_item(&mut self, item: SglItem) {
        match (self.last, item) {
            (Some(SglItem::Data(_)), SglItem::Data(r)) => self.sink.replace_last(r),
            (Some(SglItem::BitBucket(old)), SglItem::BitBucket(new)) => {
                self.discarded = self.discarded.saturating_sub(old).saturating_add(new)
            }
            _ => return,
        }
        self.last = Some(item);
    }
}

/// Output side shared by the decoders: coalesces with what *this decode* pushed.
pub(crate) trait Emit {
    fn emit(&mut self, item: SglItem) -> Result<(), DecodeError>;
}

pub(crate) struct RangeEmit<'k, K> {
    pub sink: &'k mut K,
    pub start: usize,
}

impl<K: RangeSink<Dma>> Emit for RangeEmit<'_, K> {
    fn emit(&mut self, item: SglItem) -> Result<(), DecodeError> {
        let SglItem::Data(r) = item else {
            return Err(DecodeError::OutputFull);
        };
        let ranges = self.sink.ranges();
        if ranges.len() > self.start {
            if let Some(m) = ranges.last().and_then(|l| l.merge(r)) {
                self.sink.replace_last(m);
                return Ok(());
            }
        }
        self.sink.push_range(r).map_err(|_| DecodeError::OutputFull)
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
                self.sink.replace_last_item(m);
                return Ok(());
            }
        }
        self.sink
            .push_item(item)
            .map_err(|_| DecodeError::OutputFull)?;
        self.pushed = true;
        Ok(())
    }
}

/// Decodes the data pointer of `sqe` for a transfer of `len` bytes: PRPs when PSDT is
/// 00b (with memory page size `mps`), SGL1 when it is 01b or 10b.
///
/// # Errors
/// [`DecodeError::InvalidPsdt`] for PSDT 11b; otherwise as [`super::decode_prp`] and
/// [`super::decode_sgl`]. On error `out` holds a prefix of the transfer.
///
/// ```
/// use physvec::nvme::{decode_command, DecodeOptions, MemoryPageSize, SglItem, SubmissionQueueEntry, DataPointer};
/// use physvec::mem::SliceMemory;
/// use physvec::DmaRange;
/// let mut sqe = SubmissionQueueEntry::new(0x02);
/// sqe.set_data_pointer(DataPointer::Prp { prp1: 0x10800, prp2: 0x11000 });
/// let mut out = Vec::new();
/// decode_command(&sqe, 0x1000, MemoryPageSize::SIZE_4K, &SliceMemory::new(0, &[]), &mut out,
///                &DecodeOptions::default())?;
/// assert_eq!(out, [SglItem::Data(DmaRange::new(0x10800, 0x1000))]);
/// # Ok::<(), physvec::nvme::DecodeError>(())
/// ```
pub fn decode_command<M, K>(
    sqe: &SubmissionQueueEntry,
    len: u64,
    mps: MemoryPageSize,
    mem: &M,
    out: &mut K,
    opts: &DecodeOptions,
) -> Result<DecodeSummary, DecodeError>
where
    M: MemoryReader + ?Sized,
    K: SglItemSink,
{
    let dptr = sqe.dptr();
    let mut emit = ItemEmit {
        sink: out,
        pushed: false,
    };
    match sqe.psdt() {
        Psdt::Reserved => Err(DecodeError::InvalidPsdt),
        Psdt::Prp => {
            let mut a = [0u8; 8];
            let mut b = [0u8; 8];
            a.copy_from_slice(&dptr[..8]);
            b.copy_from_slice(&dptr[8..]);
            super::decode_prp::decode_prp_into(
                u64::from_le_bytes(a),
                u64::from_le_bytes(b),
                len,
                mps,
                mem,
                &mut emit,
                opts,
            )
        }
        _ => super::decode_sgl::decode_sgl_into(
            SglDescriptor::from_bytes(dptr),
            len,
            mem,
            &mut emit,
            opts,
        ),
    }
}

/// `addr + len` as a data item, or `None` if it would pass 2^64.
pub(crate) fn data(addr: u64, len: u64) -> Option<SglItem> {
    DmaRange::try_new(addr, len).ok().map(SglItem::Data)
}
