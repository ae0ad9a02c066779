//! Decoder settings ([`DecodeOptions`]) and what a successful decode reports
//! ([`DecodeSummary`]).

#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

use crate::nvme::descriptor::SglCapabilities;

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

/// What a successful decode read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeSummary {
    /// PRP entries / SGL descriptors read from memory (DPTR not counted).
    pub descriptors_read: u64,
    /// PRP list pages / SGL segments visited.
    pub segments: u64,
}
