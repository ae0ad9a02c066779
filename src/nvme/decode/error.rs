//! [`DecodeError`]: why a data pointer was rejected, with the NVMe status a controller
//! completes the command with.

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

use crate::addr::DmaAddr;
use crate::nvme::status::NvmeStatus;

/// Why a data pointer was rejected. Every variant maps to the status a controller
/// completes the command with ([`DecodeError::nvme_status`]).
///
/// `at` fields are the bus address of the offending PRP entry or SGL descriptor in
/// memory, `None` when it is in the command itself (DPTR).
///
/// ```
/// use physvec::nvme::{DecodeError, NvmeStatus};
/// let e = DecodeError::PrpOffsetInvalid { entry: physvec::DmaAddr::new(0x30200), at: None };
/// assert_eq!((e.kind(), e.nvme_status()), ("invalid_prp_offset", NvmeStatus::PRP_OFFSET_INVALID));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The transfer is longer than [`DecodeOptions::max_transfer_len`](super::DecodeOptions::max_transfer_len) (02h).
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
        entry: DmaAddr,
        /// Where it was read, `None` for DPTR.
        at: Option<DmaAddr>,
    },
    /// A bad Segment / Last Segment descriptor: length 0 or not a multiple of 16,
    /// misaligned or wrapping segment, or a segment descriptor inside a last segment
    /// (0Dh).
    InvalidSegmentDescriptor {
        /// Where the descriptor is, `None` for DPTR.
        at: Option<DmaAddr>,
    },
    /// A Segment or Last Segment descriptor that is not the last of its segment (0Eh).
    InvalidDescriptorCount {
        /// Where it is.
        at: DmaAddr,
    },
    /// The SGL describes less data than the transfer, or more when SGLS bit 18 is clear,
    /// or a data block wraps past 2^64 (0Fh).
    SglLengthInvalid {
        /// The offending descriptor, `None` when the SGL ended short or it is DPTR.
        at: Option<DmaAddr>,
        /// Bytes of the transfer not covered (0 for excess).
        uncovered: u64,
    },
    /// A descriptor type or subtype the controller does not support where it appears
    /// (11h).
    DescriptorTypeInvalid {
        /// Where it is, `None` for DPTR.
        at: Option<DmaAddr>,
        /// Its SGL Identifier byte (`type << 4 | subtype`).
        identifier: u8,
    },
    /// A Data Block address or length not dword aligned when SGLS requires it (1Dh).
    GranularityInvalid {
        /// Where it is, `None` for DPTR.
        at: Option<DmaAddr>,
    },
    /// An SGL segment chain that returns to a segment it already visited (0Dh).
    LoopDetected {
        /// The descriptor that closes the cycle.
        at: DmaAddr,
    },
    /// A read of a PRP list or SGL segment failed (04h).
    MemoryUnreadable {
        /// Start of the failed read.
        addr: DmaAddr,
        /// Its length in bytes.
        len: u64,
    },
    /// More than [`DecodeOptions::max_descriptors`](super::DecodeOptions::max_descriptors) entries would be read (06h).
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
    pub const fn at(&self) -> Option<DmaAddr> {
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
                let unit = if len == 1 { "byte" } else { "bytes" };
                write!(f, "cannot read {len} {unit} at {:#x}", addr.as_u64())?
            }
            DecodeError::LimitExceeded { limit } => {
                write!(f, "more than {limit} descriptors would be read")?
            }
            DecodeError::OutputFull => f.write_str("the output sink is full")?,
        }
        // The failed read already names its address.
        if let (Some(at), false) = (
            self.at(),
            matches!(self, DecodeError::MemoryUnreadable { .. }),
        ) {
            write!(f, " (at {:#x})", at.as_u64())?;
        }
        write!(f, ": {status}")
    }
}

impl core::error::Error for DecodeError {}

crate::error::error_info!(
    DecodeError,
    |e| e.at().map(|a| crate::error::Position::Address(a.as_u64())),
    |e| Some(e.nvme_status())
);
