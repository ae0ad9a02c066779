//! The 16-byte completion queue entry ([`CompletionQueueEntry`]) and its status field
//! ([`CompletionStatus`]).
//!
//! Layout: NVMe Base Specification 1.4 §4.6, Figures 124–126 (Base 2.x §4.2.1): DW0
//! command specific, DW1 reserved (command specific in 2.x), DW2 = SQ Head Pointer (SQHD)
//! 15:0 and SQ Identifier (SQID) 31:16, DW3 = Command Identifier (CID) 15:0, Phase Tag (P)
//! bit 16, Status Field 31:17 (SC 24:17, SCT 27:25, CRD 29:28, More 30, DNR 31). Every
//! field is little-endian in memory.
//!
//! A driver polls the entry at its completion queue head until the phase tag flips to
//! the value it expects, then reads the status:
//!
//! ```
//! use physvec::nvme::{CompletionQueueEntry, CompletionStatus, NvmeStatus};
//! // What a controller posts for command 7 of submission queue 1 (bytes as in memory).
//! let posted = CompletionQueueEntry::new(7, 1, 5, CompletionStatus::SUCCESS, true);
//! let cqe: CompletionQueueEntry = bytemuck::cast(*posted.as_bytes());
//! assert!(cqe.phase());                           // new entry for phase 1
//! assert_eq!((cqe.cid(), cqe.sq_id(), cqe.sq_head()), (7, 1, 5));
//! assert_eq!(cqe.status(), NvmeStatus::SUCCESS);  // the status meets NvmeStatus
//! assert_eq!(cqe.to_string(),
//!     "cid=0x0007 sqid=0x1 sqhd=0x5 p=1 status=0x0 (Successful Completion) dw0=0x0 dw1=0x0");
//! ```
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

use super::status::NvmeStatus;

/// The 15-bit Status Field of a completion (DW3 bits 31:17): Status Code (SC), Status
/// Code Type (SCT), Command Retry Delay (CRD), More (M) and Do Not Retry (DNR).
///
/// # Invariants
/// Bit 15 of the stored value is 0 (the phase tag is not part of the status).
///
/// # Examples
/// ```
/// use physvec::nvme::{CompletionStatus, NvmeStatus};
/// let s = CompletionStatus::new(NvmeStatus::PRP_OFFSET_INVALID).with_dnr(true);
/// assert_eq!((s.sct(), s.sc(), s.dnr(), s.more(), s.crd()), (0, 0x13, true, false, 0));
/// assert_eq!(s, NvmeStatus::PRP_OFFSET_INVALID);        // SCT/SC compare as NvmeStatus
/// assert_eq!(NvmeStatus::from(s).raw(), 0x13);
/// assert_eq!(s.raw(), 0x4013);                          // DNR is bit 14 of the field
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CompletionStatus(u16);

impl CompletionStatus {
    /// Successful Completion, no flags.
    pub const SUCCESS: Self = Self(0);

    /// The status of `status` (SCT and SC), CRD 0, More and DNR clear.
    pub const fn new(status: NvmeStatus) -> Self {
        Self(status.raw())
    }

    /// From the 15-bit field as it sits in DW3 bits 31:17 (`dw3 >> 17`); bit 15 dropped.
    ///
    /// ```
    /// let s = physvec::nvme::CompletionStatus::from_raw(0x2002);
    /// assert!(s.more() && s.sc() == 0x02);
    /// ```
    pub const fn from_raw(raw: u16) -> Self {
        Self(raw & 0x7fff)
    }

    /// The 15-bit field.
    pub const fn raw(self) -> u16 {
        self.0
    }

    /// Status Code (bits 7:0 of the field).
    pub const fn sc(self) -> u8 {
        self.0.to_le_bytes()[0]
    }

    /// Status Code Type (bits 10:8): 0 generic, 1 command specific, 2 media and data
    /// integrity, 3 path related, 7 vendor specific.
    pub const fn sct(self) -> u8 {
        ((self.0 >> 8) & 0x7) as u8
    }

    /// Command Retry Delay (bits 12:11): which CRDT delay the host waits before a retry.
    pub const fn crd(self) -> u8 {
        ((self.0 >> 11) & 0x3) as u8
    }

    /// More (bit 13): more status is in the Error Information log page.
    pub const fn more(self) -> bool {
        self.0 & (1 << 13) != 0
    }

    /// Do Not Retry (bit 14): the same command is expected to fail again.
    pub const fn dnr(self) -> bool {
        self.0 & (1 << 14) != 0
    }

    /// SCT and SC as an [`NvmeStatus`], without CRD, More and DNR.
    pub const fn nvme_status(self) -> NvmeStatus {
        NvmeStatus::from_raw(self.0 & 0x7ff)
    }

    /// `true` when SCT and SC are 0 (Successful Completion).
    pub const fn is_success(self) -> bool {
        self.0 & 0x7ff == 0
    }

    /// The same status with DNR set or clear.
    pub const fn with_dnr(self, dnr: bool) -> Self {
        Self((self.0 & !(1 << 14)) | if dnr { 1 << 14 } else { 0 })
    }

    /// The same status with More set or clear.
    pub const fn with_more(self, more: bool) -> Self {
        Self((self.0 & !(1 << 13)) | if more { 1 << 13 } else { 0 })
    }

    /// The same status with Command Retry Delay `crd` (2 bits; higher bits dropped).
    pub const fn with_crd(self, crd: u8) -> Self {
        Self((self.0 & !(0x3 << 11)) | (((crd & 0x3) as u16) << 11))
    }
}

impl From<CompletionStatus> for NvmeStatus {
    fn from(s: CompletionStatus) -> Self {
        s.nvme_status()
    }
}

impl From<NvmeStatus> for CompletionStatus {
    fn from(s: NvmeStatus) -> Self {
        Self::new(s)
    }
}

impl PartialEq<NvmeStatus> for CompletionStatus {
    /// SCT and SC equal (CRD, More and DNR ignored).
    fn eq(&self, other: &NvmeStatus) -> bool {
        self.nvme_status() == *other
    }
}

impl PartialEq<CompletionStatus> for NvmeStatus {
    fn eq(&self, other: &CompletionStatus) -> bool {
        *self == other.nvme_status()
    }
}

/// `status=0x4013 (PRP Offset Invalid, dnr)`: the raw field in hex, the specification's
/// name of SCT/SC, and the flags that are set (`crd=N`, `more`, `dnr`).
///
/// ```
/// use physvec::nvme::{CompletionStatus, NvmeStatus};
/// let s = CompletionStatus::new(NvmeStatus::PRP_OFFSET_INVALID).with_dnr(true);
/// assert_eq!(s.to_string(), "status=0x4013 (PRP Offset Invalid, dnr)");
/// assert_eq!(CompletionStatus::from_raw(0x0180).to_string(), "status=0x180 (sct=0x1 sc=0x80)");
/// ```
impl fmt::Display for CompletionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "status={:#x} (", self.0)?;
        let st = self.nvme_status();
        match st.known_name() {
            Some(name) => f.write_str(name)?,
            None => write!(f, "sct={:#x} sc={:#04x}", self.sct(), self.sc())?,
        }
        if self.crd() != 0 {
            write!(f, ", crd={}", self.crd())?;
        }
        if self.more() {
            f.write_str(", more")?;
        }
        if self.dnr() {
            f.write_str(", dnr")?;
        }
        f.write_str(")")
    }
}

/// A 16-byte NVMe completion queue entry, every field little-endian in memory, so
/// `bytemuck::bytes_of(&cqe)` is what lies in the completion queue.
///
/// # Invariants
/// None: any 16 bytes are an entry.
///
/// # Examples
/// ```
/// use physvec::nvme::{CompletionQueueEntry, CompletionStatus, NvmeStatus};
/// let status = CompletionStatus::new(NvmeStatus::DATA_TRANSFER_ERROR).with_dnr(true);
/// let cqe = CompletionQueueEntry::new(0x42, 2, 17, status, false);
/// let b = bytemuck::bytes_of(&cqe);
/// assert_eq!(&b[8..12], &[17, 0, 2, 0]);                       // SQHD, SQID
/// assert_eq!(&b[12..16], &(0x42u32 | (0x4004 << 17)).to_le_bytes()); // CID, P = 0, status
/// assert_eq!(cqe.status(), NvmeStatus::DATA_TRANSFER_ERROR);
/// assert!(cqe.status().dnr() && !cqe.phase());
/// ```
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct CompletionQueueEntry {
    /// DW0..DW3, each stored little-endian.
    dw: [u32; 4],
}

const _: () = assert!(core::mem::size_of::<CompletionQueueEntry>() == 16);

impl CompletionQueueEntry {
    /// The entry a controller posts for command `cid` of submission queue `sq_id`, whose
    /// head has moved to `sq_head`, with `status` and phase tag `phase`; DW0 and DW1 zero.
    pub const fn new(
        cid: u16,
        sq_id: u16,
        sq_head: u16,
        status: CompletionStatus,
        phase: bool,
    ) -> Self {
        let dw2 = (sq_id as u32) << 16 | sq_head as u32;
        let dw3 = (status.raw() as u32) << 17 | (phase as u32) << 16 | cid as u32;
        Self {
            dw: [0, 0, dw2.to_le(), dw3.to_le()],
        }
    }

    /// The same entry with command-specific DW0 `dw0`.
    ///
    /// ```
    /// use physvec::nvme::{CompletionQueueEntry, CompletionStatus};
    /// let c = CompletionQueueEntry::new(1, 0, 1, CompletionStatus::SUCCESS, true).with_dw0(0x0003_0003);
    /// assert_eq!(c.dw0(), 0x0003_0003);
    /// ```
    pub const fn with_dw0(self, dw0: u32) -> Self {
        let [_, dw1, dw2, dw3] = self.dw;
        Self {
            dw: [dw0.to_le(), dw1, dw2, dw3],
        }
    }

    /// From 16 bytes in memory order.
    ///
    /// ```
    /// use physvec::nvme::CompletionQueueEntry;
    /// let c = CompletionQueueEntry::from_bytes([0; 16]);
    /// assert!(c.status().is_success() && !c.phase());
    /// ```
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        bytemuck::cast(bytes)
    }

    /// The 16 bytes in memory order.
    pub fn as_bytes(&self) -> &[u8; 16] {
        bytemuck::cast_ref(self)
    }

    const fn dword(&self, i: usize) -> u32 {
        let [a, b, c, d] = self.dw;
        u32::from_le(match i {
            0 => a,
            1 => b,
            2 => c,
            _ => d,
        })
    }

    /// DW0, command specific (Set Features Number of Queues: NCQA 31:16, NSQA 15:0, both
    /// 0's based).
    pub const fn dw0(&self) -> u32 {
        self.dword(0)
    }

    /// DW1 (reserved in Base 1.4, command specific in 2.x).
    pub const fn dw1(&self) -> u32 {
        self.dword(1)
    }

    /// SQ Head Pointer (SQHD, DW2 15:0): how far the controller has consumed the
    /// submission queue; entries before it may be reused.
    pub const fn sq_head(&self) -> u16 {
        self.dword(2) as u16
    }

    /// SQ Identifier (SQID, DW2 31:16): the submission queue the command came from.
    pub const fn sq_id(&self) -> u16 {
        (self.dword(2) >> 16) as u16
    }

    /// Command Identifier (CID, DW3 15:0), as the driver set it in the SQE.
    pub const fn cid(&self) -> u16 {
        self.dword(3) as u16
    }

    /// Phase Tag (P, DW3 bit 16): flips each time the controller wraps the queue, so an
    /// entry is new when it equals the phase the driver expects.
    pub const fn phase(&self) -> bool {
        self.dword(3) & (1 << 16) != 0
    }

    /// The Status Field (DW3 31:17).
    pub const fn status(&self) -> CompletionStatus {
        CompletionStatus::from_raw((self.dword(3) >> 17) as u16)
    }

    /// `true` when the status is Successful Completion.
    pub const fn is_success(&self) -> bool {
        self.status().is_success()
    }
}

impl fmt::Debug for CompletionQueueEntry {
    /// One line, as the `Display` form, inside `CompletionQueueEntry { … }`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CompletionQueueEntry {{ {self} }}")
    }
}

/// One line, the field names of the specification (`cid`, `sqid`, `sqhd`, `p`, the
/// status, `dw0`, `dw1`), hex values.
///
/// ```
/// use physvec::nvme::{CompletionQueueEntry, CompletionStatus, NvmeStatus};
/// let s = CompletionStatus::new(NvmeStatus::INVALID_FIELD).with_dnr(true);
/// let c = CompletionQueueEntry::new(3, 1, 9, s, false);
/// assert_eq!(c.to_string(),
///     "cid=0x0003 sqid=0x1 sqhd=0x9 p=0 status=0x4002 (Invalid Field in Command, dnr) dw0=0x0 dw1=0x0");
/// ```
impl fmt::Display for CompletionQueueEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cid={:#06x} sqid={:#x} sqhd={:#x} p={} {} dw0={:#x} dw1={:#x}",
            self.cid(),
            self.sq_id(),
            self.sq_head(),
            u8::from(self.phase()),
            self.status(),
            self.dw0(),
            self.dw1()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_stay_apart() {
        for (cid, sqid, sqhd, raw, p) in [
            (0u16, 0u16, 0u16, 0u16, false),
            (0xffff, 0xffff, 0xffff, 0x7fff, true),
            (0x1234, 0x5678, 0x9abc, 0x0155, true),
        ] {
            let c = CompletionQueueEntry::new(cid, sqid, sqhd, CompletionStatus::from_raw(raw), p)
                .with_dw0(0xdead_beef);
            let back = CompletionQueueEntry::from_bytes(*c.as_bytes());
            assert_eq!(
                (
                    back.cid(),
                    back.sq_id(),
                    back.sq_head(),
                    back.status().raw()
                ),
                (cid, sqid, sqhd, raw)
            );
            assert_eq!((back.phase(), back.dw0(), back.dw1()), (p, 0xdead_beef, 0));
        }
    }

    #[test]
    fn status_flags() {
        let s = CompletionStatus::from_raw(0xffff);
        assert_eq!(s.raw(), 0x7fff);
        assert_eq!(
            (s.sct(), s.sc(), s.crd(), s.more(), s.dnr()),
            (7, 0xff, 3, true, true)
        );
        let t = s.with_dnr(false).with_more(false).with_crd(0);
        assert_eq!(t.raw(), 0x7ff);
        assert_eq!(t, NvmeStatus::new(7, 0xff));
        assert!(!t.is_success());
        assert_eq!(
            s.to_string(),
            "status=0x7fff (sct=0x7 sc=0xff, crd=3, more, dnr)"
        );
    }
}
