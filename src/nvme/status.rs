//! NVMe completion status values: [`NvmeStatus`] = Status Code Type << 8 | Status Code.
//!
//! The codes are the Generic Command Status values (SCT 0h) of the NVMe Base
//! Specification (1.4 §4.6.1.2.1, Figure 128; Base 2.x §3.3.3.2.1.1) that a controller
//! returns for malformed data pointers. The values match QEMU's `include/block/nvme.h`.

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

/// A completion status: bits 10:8 the Status Code Type (SCT), bits 7:0 the Status Code
/// (SC). This is the value the tool prints as `nvme_status`.
///
/// # Examples
/// ```
/// use physvec::nvme::NvmeStatus;
/// let s = NvmeStatus::PRP_OFFSET_INVALID;
/// assert_eq!((s.sct(), s.sc(), s.raw()), (0, 0x13, 0x0013));
/// // As it appears in CQE DW3 bits 31:17 (phase tag 0), with Do Not Retry set:
/// assert_eq!(s.cqe_dw3_status(true), (0x13 << 17) | (1 << 31));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NvmeStatus(u16);

/// Hex, as the specification writes status values: `NvmeStatus(SCT 0h, SC 13h)`.
///
/// ```
/// use physvec::nvme::NvmeStatus;
/// assert_eq!(format!("{:?}", NvmeStatus::PRP_OFFSET_INVALID), "NvmeStatus(SCT 0h, SC 13h)");
/// ```
impl fmt::Debug for NvmeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "NvmeStatus(SCT {:x}h, SC {:02x}h)",
            self.sct(),
            self.sc()
        )
    }
}

impl NvmeStatus {
    /// Successful Completion (00h).
    pub const SUCCESS: Self = Self(0x00);
    /// Invalid Field in Command (02h): PSDT 11b, a transfer above MDTS.
    pub const INVALID_FIELD: Self = Self(0x02);
    /// Data Transfer Error (04h): host memory could not be read.
    pub const DATA_TRANSFER_ERROR: Self = Self(0x04);
    /// Internal Error (06h): the controller's own resource limits.
    pub const INTERNAL_ERROR: Self = Self(0x06);
    /// Invalid SGL Segment Descriptor (0Dh).
    pub const INVALID_SGL_SEGMENT_DESCRIPTOR: Self = Self(0x0d);
    /// Invalid Number of SGL Descriptors (0Eh).
    pub const INVALID_NUMBER_OF_SGL_DESCRIPTORS: Self = Self(0x0e);
    /// Data SGL Length Invalid (0Fh).
    pub const DATA_SGL_LENGTH_INVALID: Self = Self(0x0f);
    /// Metadata SGL Length Invalid (10h).
    pub const METADATA_SGL_LENGTH_INVALID: Self = Self(0x10);
    /// SGL Descriptor Type Invalid (11h).
    pub const SGL_DESCRIPTOR_TYPE_INVALID: Self = Self(0x11);
    /// Invalid Use of Controller Memory Buffer (12h).
    pub const INVALID_USE_OF_CMB: Self = Self(0x12);
    /// PRP Offset Invalid (13h).
    pub const PRP_OFFSET_INVALID: Self = Self(0x13);
    /// SGL Data Block Granularity Invalid (1Dh): an address or length not dword
    /// aligned when SGLS bits 1:0 = 10b.
    pub const SGL_DATA_BLOCK_GRANULARITY_INVALID: Self = Self(0x1d);

    /// A status from its type and code.
    ///
    /// ```
    /// assert_eq!(physvec::nvme::NvmeStatus::new(1, 0x80).raw(), 0x180);
    /// ```
    pub const fn new(sct: u8, sc: u8) -> Self {
        Self((((sct & 0x7) as u16) << 8) | sc as u16)
    }

    /// From the raw `SCT << 8 | SC` value (bits above 10 are dropped).
    pub const fn from_raw(raw: u16) -> Self {
        Self(raw & 0x7ff)
    }

    /// `SCT << 8 | SC`.
    pub const fn raw(self) -> u16 {
        self.0
    }

    /// Status Code Type (3 bits).
    pub const fn sct(self) -> u8 {
        (self.0 >> 8) as u8
    }

    /// Status Code.
    pub const fn sc(self) -> u8 {
        self.0 as u8
    }

    /// `true` for [`NvmeStatus::SUCCESS`].
    pub const fn is_success(self) -> bool {
        self.0 == 0
    }

    /// The status field as it sits in completion-queue-entry DW3 (bits 31:17: SC at 24:17,
    /// SCT at 27:25, DNR at 31), phase tag and CID zero.
    pub const fn cqe_dw3_status(self, do_not_retry: bool) -> u32 {
        ((self.0 as u32) << 17) | if do_not_retry { 1 << 31 } else { 0 }
    }

    /// The specification's name, for generic status codes this module knows; `"status"`
    /// for others.
    pub const fn name(self) -> &'static str {
        match self.known_name() {
            Some(n) => n,
            None => "status",
        }
    }

    /// The specification's name when this module knows the code, else `None`.
    ///
    /// ```
    /// use physvec::nvme::NvmeStatus;
    /// assert_eq!(NvmeStatus::PRP_OFFSET_INVALID.known_name(), Some("PRP Offset Invalid"));
    /// assert_eq!(NvmeStatus::new(1, 0x80).known_name(), None);
    /// ```
    pub const fn known_name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x00 => "Successful Completion",
            0x02 => "Invalid Field in Command",
            0x04 => "Data Transfer Error",
            0x06 => "Internal Error",
            0x0d => "Invalid SGL Segment Descriptor",
            0x0e => "Invalid Number of SGL Descriptors",
            0x0f => "Data SGL Length Invalid",
            0x10 => "Metadata SGL Length Invalid",
            0x11 => "SGL Descriptor Type Invalid",
            0x12 => "Invalid Use of Controller Memory Buffer",
            0x13 => "PRP Offset Invalid",
            0x1d => "SGL Data Block Granularity Invalid",
            _ => return None,
        })
    }
}

impl fmt::Display for NvmeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (SCT {:x}h, SC {:02x}h)",
            self.name(),
            self.sct(),
            self.sc()
        )
    }
}
