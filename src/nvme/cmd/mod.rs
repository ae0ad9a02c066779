//! The 64-byte submission queue entry ([`SubmissionQueueEntry`]), its data pointer
//! ([`DataPointer`], [`Psdt`]), and the commands a user-space driver submits, by name:
//! [`opcode`] constants and constructors for Read, Write, Flush, Identify, Create I/O
//! Submission/Completion Queue and Set Features (Number of Queues), taking a typed
//! [`NamespaceId`] and [`LbaRange`].
//!
//! Layout: NVMe Base Specification 1.4 §4.2, Figure 105 "Common Command Format"
//! (Base 2.x §4.2): CDW0 = opcode 7:0, FUSE 9:8, PSDT 15:14, CID 31:16; NSID at byte 4;
//! MPTR at byte 16; DPTR (PRP1/PRP2 or SGL1) at bytes 24–39; CDW10–15 at bytes 40–63.
//! Command fields: Base 1.4 §5.3 / §5.4 (Create I/O Completion / Submission Queue),
//! §5.15 (Identify), §5.21.1.7 (Number of Queues), §6.8 (Flush), §6.9 (Read), §6.15
//! (Write). Field names in `Display` follow the specification and `nvme-cli`
//! (`opcode`, `flags`, `cid`, `nsid`, `mptr`, `prp1`, `cdw10`…).

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

use super::descriptor::SglDescriptor;
use crate::addr::DmaAddr;

mod named;
pub mod opcode;

pub use named::{CommandError, LbaRange, NamespaceId};

/// PRP or SGL for Data Transfer (CDW0 bits 15:14).
///
/// ```
/// use physvec::nvme::Psdt;
/// assert_eq!(Psdt::from_bits(0b01), Psdt::SglContiguousMetadata);
/// assert!(Psdt::SglMetadataDescriptor.is_sgl() && !Psdt::Prp.is_sgl());
/// assert_eq!(Psdt::Reserved.bits(), 0b11);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Psdt {
    /// 00b: PRPs.
    Prp,
    /// 01b: SGL for data; MPTR is the address of a contiguous metadata buffer.
    SglContiguousMetadata,
    /// 10b: SGL for data; MPTR is the address of one SGL descriptor for metadata.
    SglMetadataDescriptor,
    /// 11b: reserved (a controller answers Invalid Field in Command).
    Reserved,
}

impl Psdt {
    /// From the 2-bit field value.
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 3 {
            0 => Psdt::Prp,
            1 => Psdt::SglContiguousMetadata,
            2 => Psdt::SglMetadataDescriptor,
            _ => Psdt::Reserved,
        }
    }

    /// The 2-bit field value.
    pub const fn bits(self) -> u8 {
        match self {
            Psdt::Prp => 0,
            Psdt::SglContiguousMetadata => 1,
            Psdt::SglMetadataDescriptor => 2,
            Psdt::Reserved => 3,
        }
    }

    /// `true` for 01b and 10b.
    pub const fn is_sgl(self) -> bool {
        matches!(
            self,
            Psdt::SglContiguousMetadata | Psdt::SglMetadataDescriptor
        )
    }
}

/// What DPTR (command bytes 24–39) holds: PRP Entry 1 and 2, or SGL Entry 1.
///
/// ```
/// use physvec::nvme::DataPointer;
/// use physvec::DmaAddr;
/// let p = DataPointer::Prp { prp1: DmaAddr::new(0x10800), prp2: DmaAddr::new(0x11000) };
/// let b = p.to_bytes();
/// assert_eq!(&b[..8], &0x10800u64.to_le_bytes());
/// assert_eq!(DataPointer::from_bytes(false, b), p);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataPointer {
    /// PRP Entry 1 and PRP Entry 2 (an entry, a list pointer, or reserved = 0).
    Prp {
        /// PRP1: the first data page, possibly with an offset.
        prp1: DmaAddr,
        /// PRP2: second data page, PRP list pointer, or 0 when unused.
        prp2: DmaAddr,
    },
    /// SGL Entry 1.
    Sgl(SglDescriptor),
}

impl DataPointer {
    /// The 16 bytes as they lie in the command.
    pub const fn to_bytes(self) -> [u8; 16] {
        match self {
            DataPointer::Prp { prp1, prp2 } => {
                let a = prp1.as_u64().to_le_bytes();
                let b = prp2.as_u64().to_le_bytes();
                [
                    a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], b[0], b[1], b[2], b[3], b[4],
                    b[5], b[6], b[7],
                ]
            }
            DataPointer::Sgl(d) => d.to_bytes(),
        }
    }

    /// Interprets 16 DPTR bytes as SGL1 (`sgl`) or as PRP1/PRP2.
    pub const fn from_bytes(sgl: bool, b: [u8; 16]) -> Self {
        if sgl {
            DataPointer::Sgl(SglDescriptor::from_bytes(b))
        } else {
            DataPointer::Prp {
                prp1: DmaAddr::new(u64::from_le_bytes([
                    b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
                ])),
                prp2: DmaAddr::new(u64::from_le_bytes([
                    b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15],
                ])),
            }
        }
    }
}

/// A 64-byte NVMe submission queue entry, every field little-endian in memory whatever
/// the host's byte order, so `bytemuck::bytes_of(&sqe)` is what goes into the queue.
///
/// # Invariants
/// None: any 64 bytes are an entry.
///
/// # Examples
/// ```
/// use physvec::nvme::{Psdt, SubmissionQueueEntry, DataPointer};
/// let mut sqe = SubmissionQueueEntry::new(0x02); // Read
/// sqe.set_cid(7);
/// sqe.set_nsid(1);
/// sqe.set_data_pointer(DataPointer::Prp { prp1: physvec::DmaAddr::new(0x10000), prp2: physvec::DmaAddr::ZERO });
/// sqe.set_cdw12(7); // 8 blocks
/// let bytes = bytemuck::bytes_of(&sqe);
/// assert_eq!(bytes.len(), 64);
/// assert_eq!(&bytes[0..4], &[0x02, 0x00, 0x07, 0x00]);
/// assert_eq!(&bytes[24..32], &0x10000u64.to_le_bytes());
/// assert_eq!(sqe.psdt(), Psdt::Prp);
/// ```
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SubmissionQueueEntry {
    bytes: [u8; 64],
}

const _: () = assert!(core::mem::size_of::<SubmissionQueueEntry>() == 64);

impl Default for SubmissionQueueEntry {
    /// All 64 bytes zero.
    fn default() -> Self {
        Self { bytes: [0; 64] }
    }
}

macro_rules! cdw {
    ($($get:ident $set:ident $n:literal),*) => {$(
        #[doc = concat!("Command Dword ", stringify!($n), " (command specific).")]
        pub const fn $get(&self) -> u32 {
            self.dword($n)
        }
        #[doc = concat!("Sets Command Dword ", stringify!($n), ".")]
        pub fn $set(&mut self, value: u32) {
            self.set_dword($n, value)
        }
    )*};
}

impl SubmissionQueueEntry {
    /// An entry with `opcode` and every other field zero.
    pub fn new(opcode: u8) -> Self {
        let mut s = Self { bytes: [0; 64] };
        s.set_opcode(opcode);
        s
    }

    /// From 64 bytes in memory order.
    pub const fn from_bytes(bytes: [u8; 64]) -> Self {
        Self { bytes }
    }

    /// The 64 bytes in memory order.
    pub const fn as_bytes(&self) -> &[u8; 64] {
        &self.bytes
    }

    /// Dword `i` (0..16) in host order. `i` is masked to 0..16.
    // `i & 15 <= 15`, so `o <= 60` and `o + 3 <= 63` index the 64 bytes.
    #[allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)]
    pub const fn dword(&self, i: usize) -> u32 {
        let o = (i & 15) * 4;
        let b = &self.bytes;
        u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
    }

    /// Sets dword `i` (0..16; masked).
    // `i & 15 <= 15`, so `o..o + 4` lies within bytes 0..64.
    #[allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)]
    pub fn set_dword(&mut self, i: usize, value: u32) {
        let o = (i & 15) * 4;
        self.bytes[o..o + 4].copy_from_slice(&value.to_le_bytes());
    }

    /// Opcode (CDW0 bits 7:0).
    pub const fn opcode(&self) -> u8 {
        self.bytes[0]
    }

    /// Sets the opcode.
    pub fn set_opcode(&mut self, opcode: u8) {
        self.bytes[0] = opcode;
    }

    /// Fused operation (CDW0 bits 9:8).
    pub const fn fuse(&self) -> u8 {
        self.bytes[1] & 3
    }

    /// Sets FUSE (2 bits; higher bits ignored).
    pub fn set_fuse(&mut self, fuse: u8) {
        self.bytes[1] = (self.bytes[1] & !3) | (fuse & 3);
    }

    /// PSDT (CDW0 bits 15:14).
    pub const fn psdt(&self) -> Psdt {
        Psdt::from_bits(self.bytes[1] >> 6)
    }

    /// Sets PSDT.
    pub fn set_psdt(&mut self, psdt: Psdt) {
        self.bytes[1] = (self.bytes[1] & 0x3f) | (psdt.bits() << 6);
    }

    /// Command Identifier (CDW0 bits 31:16).
    pub const fn cid(&self) -> u16 {
        u16::from_le_bytes([self.bytes[2], self.bytes[3]])
    }

    /// Sets the command identifier.
    pub fn set_cid(&mut self, cid: u16) {
        self.bytes[2..4].copy_from_slice(&cid.to_le_bytes());
    }

    /// Namespace Identifier (bytes 4–7).
    pub const fn nsid(&self) -> u32 {
        self.dword(1)
    }

    /// Sets the namespace identifier.
    pub fn set_nsid(&mut self, nsid: u32) {
        self.set_dword(1, nsid)
    }

    /// Metadata Pointer (bytes 16–23).
    pub fn mptr(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.bytes[16..24]);
        u64::from_le_bytes(b)
    }

    /// Sets MPTR: a metadata buffer address (PSDT 00b/01b) or the address of one
    /// metadata SGL descriptor (PSDT 10b).
    pub fn set_mptr(&mut self, mptr: u64) {
        self.bytes[16..24].copy_from_slice(&mptr.to_le_bytes());
    }

    /// The raw DPTR bytes (24–39).
    pub fn dptr(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b.copy_from_slice(&self.bytes[24..40]);
        b
    }

    /// Sets the raw DPTR bytes without touching PSDT.
    pub fn set_dptr(&mut self, dptr: [u8; 16]) {
        self.bytes[24..40].copy_from_slice(&dptr);
    }

    /// Stores an encoder's output: DPTR, and PSDT = 00b for PRPs; for an SGL PSDT
    /// becomes 01b unless it is already 10b (metadata SGL in MPTR).
    pub fn set_data_pointer(&mut self, dp: DataPointer) {
        match dp {
            DataPointer::Prp { .. } => self.set_psdt(Psdt::Prp),
            DataPointer::Sgl(_) => {
                if self.psdt() != Psdt::SglMetadataDescriptor {
                    self.set_psdt(Psdt::SglContiguousMetadata)
                }
            }
        }
        self.set_dptr(dp.to_bytes());
    }

    /// DPTR interpreted according to PSDT; `None` for the reserved PSDT 11b.
    pub fn data_pointer(&self) -> Option<DataPointer> {
        match self.psdt() {
            Psdt::Reserved => None,
            p => Some(DataPointer::from_bytes(p.is_sgl(), self.dptr())),
        }
    }

    cdw!(cdw10 set_cdw10 10, cdw11 set_cdw11 11, cdw12 set_cdw12 12,
         cdw13 set_cdw13 13, cdw14 set_cdw14 14, cdw15 set_cdw15 15);
}

impl fmt::Debug for SubmissionQueueEntry {
    /// One line, as the `Display` form, inside `SubmissionQueueEntry { … }`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubmissionQueueEntry {{ {self} }}")
    }
}

/// One line, the field names of `nvme-cli` and the specification, hex values:
/// `opcode=0x02 flags=0x00 cid=0x0007 nsid=0x1 mptr=0x0 prp1=0x100000 prp2=0x80000
/// cdw10=0x00000000 … cdw15=0x00000000`. With an SGL, `sgl1=` shows the descriptor.
///
/// ```
/// use physvec::nvme::{DataPointer, LbaRange, NamespaceId, SubmissionQueueEntry};
/// let sqe = SubmissionQueueEntry::read(NamespaceId::new(1), LbaRange::new(0, 8))
///     .with_cid(7)
///     .with_data_pointer(DataPointer::Prp { prp1: physvec::DmaAddr::new(0x10_0000), prp2: physvec::DmaAddr::ZERO });
/// assert_eq!(sqe.to_string(), "opcode=0x02 flags=0x00 cid=0x0007 nsid=0x1 mptr=0x0 \
///     prp1=0x100000 prp2=0x0 cdw10=0x00000000 cdw11=0x00000000 cdw12=0x00000007 \
///     cdw13=0x00000000 cdw14=0x00000000 cdw15=0x00000000");
/// ```
impl fmt::Display for SubmissionQueueEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "opcode={:#04x} flags={:#04x} cid={:#06x} nsid={:#x} mptr={:#x} ",
            self.opcode(),
            self.bytes[1],
            self.cid(),
            self.nsid(),
            self.mptr()
        )?;
        match self.data_pointer() {
            Some(DataPointer::Prp { prp1, prp2 }) => write!(f, "prp1={prp1:#x} prp2={prp2:#x}")?,
            Some(DataPointer::Sgl(d)) => write!(f, "sgl1=({d})")?,
            None => write!(f, "dptr=0x{:032x}", u128::from_le_bytes(self.dptr()))?,
        }
        for i in 10..16 {
            write!(f, " cdw{i}={:#010x}", self.dword(i))?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]
mod tests {
    use super::*;

    #[test]
    fn field_offsets() {
        let mut s = SubmissionQueueEntry::new(0x01);
        s.set_fuse(1);
        s.set_psdt(Psdt::SglMetadataDescriptor);
        s.set_cid(0xbeef);
        s.set_nsid(0x11223344);
        s.set_mptr(0x5566778899aabbcc);
        s.set_cdw10(0xa);
        s.set_cdw15(0xf);
        let b = s.as_bytes();
        assert_eq!(s.dword(0), 0x01 | 1 << 8 | 2 << 14 | 0xbeef << 16);
        assert_eq!(&b[4..8], &0x11223344u32.to_le_bytes());
        assert_eq!(&b[16..24], &0x5566778899aabbccu64.to_le_bytes());
        assert_eq!(&b[40..44], &0xau32.to_le_bytes());
        assert_eq!(&b[60..64], &0xfu32.to_le_bytes());
        assert_eq!(
            (s.fuse(), s.cid(), s.psdt()),
            (1, 0xbeef, Psdt::SglMetadataDescriptor)
        );
        // Keeps PSDT 10b when an SGL is stored.
        s.set_data_pointer(DataPointer::Sgl(SglDescriptor::data_block(
            DmaAddr::new(8),
            4,
        )));
        assert_eq!(s.psdt(), Psdt::SglMetadataDescriptor);
        s.set_data_pointer(DataPointer::Prp {
            prp1: crate::DmaAddr::new(1),
            prp2: crate::DmaAddr::new(2),
        });
        assert_eq!(s.psdt(), Psdt::Prp);
        assert_eq!(
            s.data_pointer(),
            Some(DataPointer::Prp {
                prp1: crate::DmaAddr::new(1),
                prp2: crate::DmaAddr::new(2)
            })
        );
        s.set_psdt(Psdt::Reserved);
        assert_eq!(s.data_pointer(), None);
    }
}
