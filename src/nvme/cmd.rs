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

/// Opcodes of the NVMe commands (CDW0 bits 7:0), by name.
///
/// Admin commands go to the admin queue (queue 0), I/O commands to an I/O queue: the
/// same byte means different commands on the two (`0x01` is Create I/O Submission Queue
/// on the admin queue and Write on an I/O queue). Values: NVMe Base Specification 1.4
/// Figure 139 (admin) and Figure 346 (NVM command set).
///
/// ```
/// use physvec::nvme::opcode;
/// assert_eq!(opcode::io::READ, 0x02);
/// assert_eq!(opcode::admin::IDENTIFY, 0x06);
/// assert_eq!(opcode::io::name(0x01), Some("Write"));
/// assert_eq!(opcode::admin::name(0x01), Some("Create I/O Submission Queue"));
/// ```
pub mod opcode {
    /// Admin Command Set opcodes.
    pub mod admin {
        /// Delete I/O Submission Queue.
        pub const DELETE_IO_SQ: u8 = 0x00;
        /// Create I/O Submission Queue.
        pub const CREATE_IO_SQ: u8 = 0x01;
        /// Get Log Page.
        pub const GET_LOG_PAGE: u8 = 0x02;
        /// Delete I/O Completion Queue.
        pub const DELETE_IO_CQ: u8 = 0x04;
        /// Create I/O Completion Queue.
        pub const CREATE_IO_CQ: u8 = 0x05;
        /// Identify.
        pub const IDENTIFY: u8 = 0x06;
        /// Abort.
        pub const ABORT: u8 = 0x08;
        /// Set Features.
        pub const SET_FEATURES: u8 = 0x09;
        /// Get Features.
        pub const GET_FEATURES: u8 = 0x0a;
        /// Asynchronous Event Request.
        pub const ASYNC_EVENT_REQUEST: u8 = 0x0c;
        /// Namespace Management.
        pub const NAMESPACE_MANAGEMENT: u8 = 0x0d;
        /// Firmware Commit.
        pub const FIRMWARE_COMMIT: u8 = 0x10;
        /// Firmware Image Download.
        pub const FIRMWARE_IMAGE_DOWNLOAD: u8 = 0x11;
        /// Namespace Attachment.
        pub const NAMESPACE_ATTACHMENT: u8 = 0x15;
        /// Keep Alive.
        pub const KEEP_ALIVE: u8 = 0x18;
        /// Format NVM.
        pub const FORMAT_NVM: u8 = 0x80;

        /// The specification's name of an admin opcode this module knows.
        ///
        /// ```
        /// assert_eq!(physvec::nvme::opcode::admin::name(0x06), Some("Identify"));
        /// assert_eq!(physvec::nvme::opcode::admin::name(0x7f), None);
        /// ```
        pub const fn name(opcode: u8) -> Option<&'static str> {
            Some(match opcode {
                DELETE_IO_SQ => "Delete I/O Submission Queue",
                CREATE_IO_SQ => "Create I/O Submission Queue",
                GET_LOG_PAGE => "Get Log Page",
                DELETE_IO_CQ => "Delete I/O Completion Queue",
                CREATE_IO_CQ => "Create I/O Completion Queue",
                IDENTIFY => "Identify",
                ABORT => "Abort",
                SET_FEATURES => "Set Features",
                GET_FEATURES => "Get Features",
                ASYNC_EVENT_REQUEST => "Asynchronous Event Request",
                NAMESPACE_MANAGEMENT => "Namespace Management",
                FIRMWARE_COMMIT => "Firmware Commit",
                FIRMWARE_IMAGE_DOWNLOAD => "Firmware Image Download",
                NAMESPACE_ATTACHMENT => "Namespace Attachment",
                KEEP_ALIVE => "Keep Alive",
                FORMAT_NVM => "Format NVM",
                _ => return None,
            })
        }
    }

    /// NVM Command Set (I/O) opcodes.
    pub mod io {
        /// Flush.
        pub const FLUSH: u8 = 0x00;
        /// Write.
        pub const WRITE: u8 = 0x01;
        /// Read.
        pub const READ: u8 = 0x02;
        /// Write Uncorrectable.
        pub const WRITE_UNCORRECTABLE: u8 = 0x04;
        /// Compare.
        pub const COMPARE: u8 = 0x05;
        /// Write Zeroes.
        pub const WRITE_ZEROES: u8 = 0x08;
        /// Dataset Management.
        pub const DATASET_MANAGEMENT: u8 = 0x09;
        /// Verify.
        pub const VERIFY: u8 = 0x0c;

        /// The specification's name of an I/O opcode this module knows.
        ///
        /// ```
        /// assert_eq!(physvec::nvme::opcode::io::name(0x02), Some("Read"));
        /// ```
        pub const fn name(opcode: u8) -> Option<&'static str> {
            Some(match opcode {
                FLUSH => "Flush",
                WRITE => "Write",
                READ => "Read",
                WRITE_UNCORRECTABLE => "Write Uncorrectable",
                COMPARE => "Compare",
                WRITE_ZEROES => "Write Zeroes",
                DATASET_MANAGEMENT => "Dataset Management",
                VERIFY => "Verify",
                _ => return None,
            })
        }
    }
}

/// Why a command could not be built: a field value the command cannot carry.
///
/// ```
/// use physvec::nvme::{CommandError, LbaRange, NamespaceId};
/// assert_eq!(NamespaceId::try_new(0), Err(CommandError::InvalidNamespaceId { nsid: 0 }));
/// let e = LbaRange::try_new(0, 70_000).unwrap_err();
/// assert_eq!(e.kind(), "too_many_blocks");
/// assert_eq!(e.to_string(), "70000 logical blocks in one command; the most is 65536");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandError {
    /// A namespace id of 0, or the broadcast value where one namespace is needed.
    InvalidNamespaceId {
        /// The rejected value.
        nsid: u32,
    },
    /// A transfer of zero logical blocks.
    ZeroBlocks,
    /// More logical blocks than NLB (16 bits, 0's based) can express.
    TooManyBlocks {
        /// The requested count.
        blocks: u64,
    },
    /// The last logical block would pass 2^64 - 1.
    LbaOverflow {
        /// Starting LBA.
        slba: u64,
        /// Number of blocks.
        blocks: u32,
    },
    /// A byte offset or length that is not a whole number of logical blocks.
    NotBlockMultiple {
        /// The offending byte value.
        bytes: u64,
        /// The logical block size in bytes.
        block_size: u32,
    },
    /// A logical block size that is not a power of two of at least 512 bytes.
    InvalidBlockSize {
        /// The rejected size in bytes.
        block_size: u32,
    },
    /// Queue id 0 (the admin queue) where an I/O queue id is needed.
    InvalidQueueId {
        /// The rejected id.
        qid: u16,
    },
    /// A queue size outside 2..=65536 entries.
    InvalidQueueSize {
        /// The rejected size in entries.
        entries: u32,
    },
    /// A physically contiguous queue whose base is not 4 KiB aligned.
    QueueNotPageAligned {
        /// The rejected base address.
        addr: u64,
    },
    /// A number of queues outside 1..=65535.
    InvalidQueueCount {
        /// The rejected count.
        count: u32,
    },
}

impl CommandError {
    /// Stable snake_case name of the variant.
    ///
    /// ```
    /// assert_eq!(physvec::nvme::CommandError::ZeroBlocks.kind(), "empty");
    /// ```
    pub const fn kind(&self) -> &'static str {
        match self {
            CommandError::InvalidNamespaceId { .. } => "invalid_namespace_id",
            CommandError::ZeroBlocks => "empty",
            CommandError::TooManyBlocks { .. } => "too_many_blocks",
            CommandError::LbaOverflow { .. } => "address_overflow",
            CommandError::NotBlockMultiple { .. } => "not_block_multiple",
            CommandError::InvalidBlockSize { .. } => "invalid_block_size",
            CommandError::InvalidQueueId { .. } => "invalid_queue_id",
            CommandError::InvalidQueueSize { .. } => "invalid_queue_size",
            CommandError::QueueNotPageAligned { .. } => "queue_not_page_aligned",
            CommandError::InvalidQueueCount { .. } => "invalid_queue_count",
        }
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CommandError::InvalidNamespaceId { nsid } => {
                write!(
                    f,
                    "namespace id {nsid:#x} names no single namespace (valid: 0x1..=0xfffffffe)"
                )
            }
            CommandError::ZeroBlocks => f.write_str("a transfer of 0 logical blocks"),
            CommandError::TooManyBlocks { blocks } => write!(
                f,
                "{blocks} logical blocks in one command; the most is {}",
                LbaRange::MAX_BLOCKS
            ),
            CommandError::LbaOverflow { slba, blocks } => {
                write!(
                    f,
                    "{blocks} logical blocks from LBA {slba:#x} pass LBA 2^64 - 1"
                )
            }
            CommandError::NotBlockMultiple { bytes, block_size } => write!(
                f,
                "{bytes:#x} bytes is not a whole number of {block_size}-byte logical blocks"
            ),
            CommandError::InvalidBlockSize { block_size } => write!(
                f,
                "logical block size {block_size} is not a power of two of at least 512 bytes"
            ),
            CommandError::InvalidQueueId { qid } => {
                write!(
                    f,
                    "queue id {qid} is the admin queue; I/O queues are 1..=65535"
                )
            }
            CommandError::InvalidQueueSize { entries } => {
                write!(
                    f,
                    "a queue of {entries} entries; the size must be 2..=65536 entries"
                )
            }
            CommandError::QueueNotPageAligned { addr } => {
                write!(f, "queue base {addr:#x} is not 4 KiB aligned")
            }
            CommandError::InvalidQueueCount { count } => {
                write!(f, "{count} queues requested; the count must be 1..=65535")
            }
        }
    }
}

impl core::error::Error for CommandError {}

/// A namespace identifier (NSID) that names one namespace: 1..=0xFFFF_FFFE.
///
/// # Invariants
/// Never 0; [`NamespaceId::BROADCAST`] (0xFFFF_FFFF, "all namespaces") is the only value
/// outside the range, accepted where the specification allows it (Flush).
///
/// # Examples
/// ```
/// use physvec::nvme::NamespaceId;
/// let ns = NamespaceId::new(1);
/// assert_eq!(ns.get(), 1);
/// assert!(NamespaceId::try_new(0).is_err());
/// assert!(NamespaceId::try_new(0xffff_ffff).is_err()); // use NamespaceId::BROADCAST
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamespaceId(u32);

impl NamespaceId {
    /// 0xFFFF_FFFF: every attached namespace (Flush, some Set Features).
    pub const BROADCAST: Self = Self(u32::MAX);

    /// The namespace `nsid`.
    ///
    /// # Errors
    /// [`CommandError::InvalidNamespaceId`] for 0 and 0xFFFF_FFFF.
    pub const fn try_new(nsid: u32) -> Result<Self, CommandError> {
        if nsid == 0 || nsid == u32::MAX {
            Err(CommandError::InvalidNamespaceId { nsid })
        } else {
            Ok(Self(nsid))
        }
    }

    /// The namespace `nsid`, for constants.
    ///
    /// # Panics
    /// For 0 and 0xFFFF_FFFF; use [`NamespaceId::try_new`] for untrusted values.
    #[track_caller]
    // A deliberate, documented `# Panics` constructor for constants (const-evaluated at
    // compile time there); untrusted values use `try_new`.
    #[allow(clippy::panic)]
    pub const fn new(nsid: u32) -> Self {
        match Self::try_new(nsid) {
            Ok(n) => n,
            Err(_) => panic!("namespace id must be 1..=0xfffffffe"),
        }
    }

    /// The raw value.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for NamespaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// The logical blocks one Read or Write moves: starting LBA (SLBA) and a count of 1 to
/// 65536 blocks (the command's NLB field holds `count - 1`).
///
/// # Invariants
/// `1 <= blocks <= 65536` and `slba + blocks - 1` fits in u64.
///
/// # Examples
/// ```
/// use physvec::nvme::LbaRange;
/// // 1 MiB at byte offset 4 MiB of a namespace with 512-byte blocks.
/// let lbas = LbaRange::from_bytes(4 << 20, 1 << 20, 512)?;
/// assert_eq!((lbas.slba(), lbas.blocks(), lbas.nlb()), (8192, 2048, 2047));
/// assert_eq!(lbas.byte_len(512), 1 << 20);
/// assert!(LbaRange::from_bytes(0, 1000, 512).is_err()); // not whole blocks
/// # Ok::<(), physvec::nvme::CommandError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LbaRange {
    slba: u64,
    blocks: u32,
}

impl LbaRange {
    /// Most logical blocks one command moves (NLB is 16 bits, 0's based).
    pub const MAX_BLOCKS: u32 = 1 << 16;

    /// `blocks` logical blocks starting at `slba`.
    ///
    /// # Errors
    /// [`CommandError::ZeroBlocks`], [`CommandError::TooManyBlocks`],
    /// [`CommandError::LbaOverflow`].
    pub const fn try_new(slba: u64, blocks: u32) -> Result<Self, CommandError> {
        if blocks == 0 {
            return Err(CommandError::ZeroBlocks);
        }
        if blocks > Self::MAX_BLOCKS {
            return Err(CommandError::TooManyBlocks {
                blocks: blocks as u64,
            });
        }
        // `blocks != 0` was checked above.
        #[allow(clippy::arithmetic_side_effects)]
        let last = slba.checked_add(blocks as u64 - 1);
        if last.is_none() {
            return Err(CommandError::LbaOverflow { slba, blocks });
        }
        Ok(Self { slba, blocks })
    }

    /// As [`LbaRange::try_new`], for constants.
    ///
    /// # Panics
    /// Where [`LbaRange::try_new`] returns an error.
    ///
    /// ```
    /// assert_eq!(physvec::nvme::LbaRange::new(0, 8).nlb(), 7);
    /// ```
    #[track_caller]
    // A deliberate, documented `# Panics` constructor for constants (const-evaluated at
    // compile time there); untrusted values use `try_new`.
    #[allow(clippy::panic)]
    pub const fn new(slba: u64, blocks: u32) -> Self {
        match Self::try_new(slba, blocks) {
            Ok(r) => r,
            Err(_) => panic!("LBA range must hold 1..=65536 blocks below 2^64"),
        }
    }

    /// The blocks covering bytes `[offset, offset + len)` of a namespace with
    /// `block_size`-byte logical blocks.
    ///
    /// # Errors
    /// [`CommandError::InvalidBlockSize`], [`CommandError::NotBlockMultiple`] (offset or
    /// length), then as [`LbaRange::try_new`].
    pub const fn from_bytes(offset: u64, len: u64, block_size: u32) -> Result<Self, CommandError> {
        if block_size < 512 || !block_size.is_power_of_two() {
            return Err(CommandError::InvalidBlockSize { block_size });
        }
        let bs = block_size as u64;
        // `bs >= 512` (checked above): every divisor is non-zero.
        #[allow(clippy::arithmetic_side_effects)]
        let (offset_rem, len_rem, blocks, slba) = (offset % bs, len % bs, len / bs, offset / bs);
        if offset_rem != 0 {
            return Err(CommandError::NotBlockMultiple {
                bytes: offset,
                block_size,
            });
        }
        if len_rem != 0 {
            return Err(CommandError::NotBlockMultiple {
                bytes: len,
                block_size,
            });
        }
        if blocks > Self::MAX_BLOCKS as u64 {
            return Err(CommandError::TooManyBlocks { blocks });
        }
        Self::try_new(slba, blocks as u32)
    }

    /// Starting LBA (SLBA, CDW10–11).
    pub const fn slba(self) -> u64 {
        self.slba
    }

    /// Number of logical blocks, 1..=65536.
    pub const fn blocks(self) -> u32 {
        self.blocks
    }

    /// The NLB field (CDW12 bits 15:0): `blocks - 1`.
    // `blocks >= 1` by the LbaRange invariant.
    #[allow(clippy::arithmetic_side_effects)]
    pub const fn nlb(self) -> u16 {
        (self.blocks - 1) as u16
    }

    /// The transfer length in bytes for `block_size`-byte blocks (at most 2^16 × 2^31).
    // `blocks <= 2^16` and `block_size < 2^32`: the product is below 2^48.
    #[allow(clippy::arithmetic_side_effects)]
    pub const fn byte_len(self, block_size: u32) -> u64 {
        self.blocks as u64 * block_size as u64
    }
}

impl fmt::Display for LbaRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "slba={:#x} nlb={:#x}", self.slba, self.nlb())
    }
}

/// Identify CNS value: the Identify Namespace data structure (CNS 00h).
const CNS_NAMESPACE: u32 = 0x00;
/// Identify CNS value: the Identify Controller data structure (CNS 01h).
const CNS_CONTROLLER: u32 = 0x01;
/// Feature identifier of Number of Queues (07h).
const FID_NUMBER_OF_QUEUES: u32 = 0x07;

fn queue_fields(qid: u16, entries: u32, base: DmaAddr) -> Result<u32, CommandError> {
    if qid == 0 {
        return Err(CommandError::InvalidQueueId { qid });
    }
    if !(2..=65536).contains(&entries) {
        return Err(CommandError::InvalidQueueSize { entries });
    }
    if base.as_u64() & 0xfff != 0 {
        return Err(CommandError::QueueNotPageAligned {
            addr: base.as_u64(),
        });
    }
    // `2 <= entries <= 65536` (checked above): `entries - 1` fits in 16 bits.
    #[allow(clippy::arithmetic_side_effects)]
    let qsize = (entries - 1) << 16;
    Ok(qsize | u32::from(qid))
}

fn queue_count(count: u32) -> Result<u32, CommandError> {
    if (1..=65535).contains(&count) {
        // `count >= 1` (the range test).
        #[allow(clippy::arithmetic_side_effects)]
        let zeroes_based = count - 1;
        Ok(zeroes_based)
    } else {
        Err(CommandError::InvalidQueueCount { count })
    }
}

impl SubmissionQueueEntry {
    fn lba_command(opcode: u8, nsid: NamespaceId, lbas: LbaRange) -> Self {
        let mut s = Self::new(opcode);
        s.set_nsid(nsid.get());
        s.set_cdw10(lbas.slba() as u32);
        s.set_cdw11((lbas.slba() >> 32) as u32);
        s.set_cdw12(u32::from(lbas.nlb()));
        s
    }

    /// A Read (I/O opcode 02h) of `lbas` from namespace `nsid`; set the data pointer with
    /// [`SubmissionQueueEntry::with_data_pointer`] and the id with
    /// [`SubmissionQueueEntry::with_cid`].
    ///
    /// ```
    /// use physvec::nvme::{opcode, DataPointer, LbaRange, NamespaceId, SubmissionQueueEntry};
    /// let lbas = LbaRange::from_bytes(0, 1 << 20, 512)?; // the first MiB
    /// let sqe = SubmissionQueueEntry::read(NamespaceId::new(1), lbas)
    ///     .with_cid(7)
    ///     .with_data_pointer(DataPointer::Prp { prp1: physvec::DmaAddr::new(0x10_0000), prp2: physvec::DmaAddr::new(0x8_0000) });
    /// assert_eq!((sqe.opcode(), sqe.nsid(), sqe.cid()), (opcode::io::READ, 1, 7));
    /// assert_eq!(sqe.cdw12(), 2047); // NLB, 0's based
    /// assert_eq!(sqe.lba_range(), Some(lbas));
    /// # Ok::<(), physvec::nvme::CommandError>(())
    /// ```
    pub fn read(nsid: NamespaceId, lbas: LbaRange) -> Self {
        Self::lba_command(opcode::io::READ, nsid, lbas)
    }

    /// A Write (I/O opcode 01h) of `lbas` to namespace `nsid`.
    ///
    /// ```
    /// use physvec::nvme::{opcode, LbaRange, NamespaceId, SubmissionQueueEntry};
    /// let sqe = SubmissionQueueEntry::write(NamespaceId::new(1), LbaRange::new(0x1_0000_0000, 8));
    /// assert_eq!((sqe.opcode(), sqe.cdw10(), sqe.cdw11(), sqe.cdw12()), (opcode::io::WRITE, 0, 1, 7));
    /// ```
    pub fn write(nsid: NamespaceId, lbas: LbaRange) -> Self {
        Self::lba_command(opcode::io::WRITE, nsid, lbas)
    }

    /// A Flush (I/O opcode 00h) of namespace `nsid` ([`NamespaceId::BROADCAST`]: all).
    ///
    /// ```
    /// use physvec::nvme::{NamespaceId, SubmissionQueueEntry};
    /// let sqe = SubmissionQueueEntry::flush(NamespaceId::BROADCAST);
    /// assert_eq!((sqe.opcode(), sqe.nsid()), (0x00, 0xffff_ffff));
    /// ```
    pub fn flush(nsid: NamespaceId) -> Self {
        let mut s = Self::new(opcode::io::FLUSH);
        s.set_nsid(nsid.get());
        s
    }

    /// Identify Controller (admin opcode 06h, CNS 01h): the controller returns 4096 bytes
    /// into the buffer the data pointer names.
    ///
    /// ```
    /// use physvec::nvme::SubmissionQueueEntry;
    /// let sqe = SubmissionQueueEntry::identify_controller();
    /// assert_eq!((sqe.opcode(), sqe.cdw10()), (0x06, 0x01));
    /// ```
    pub fn identify_controller() -> Self {
        let mut s = Self::new(opcode::admin::IDENTIFY);
        s.set_cdw10(CNS_CONTROLLER);
        s
    }

    /// Identify Namespace (admin opcode 06h, CNS 00h) of `nsid`: 4096 bytes.
    ///
    /// ```
    /// use physvec::nvme::{NamespaceId, SubmissionQueueEntry};
    /// let sqe = SubmissionQueueEntry::identify_namespace(NamespaceId::new(1));
    /// assert_eq!((sqe.opcode(), sqe.nsid(), sqe.cdw10()), (0x06, 1, 0x00));
    /// ```
    pub fn identify_namespace(nsid: NamespaceId) -> Self {
        let mut s = Self::new(opcode::admin::IDENTIFY);
        s.set_nsid(nsid.get());
        s.set_cdw10(CNS_NAMESPACE);
        s
    }

    /// Create I/O Completion Queue (admin opcode 05h): queue `qid` of `entries` 16-byte
    /// entries in the physically contiguous memory at `base` (PC = 1), interrupting on
    /// MSI-X vector `interrupt` (`None`: polled, IEN = 0).
    ///
    /// # Errors
    /// [`CommandError::InvalidQueueId`] (0), [`CommandError::InvalidQueueSize`] (outside
    /// 2..=65536), [`CommandError::QueueNotPageAligned`].
    ///
    /// ```
    /// use physvec::nvme::SubmissionQueueEntry;
    /// use physvec::DmaAddr;
    /// let sqe = SubmissionQueueEntry::create_io_cq(1, 256, DmaAddr::new(0x20_0000), Some(3))?;
    /// assert_eq!((sqe.opcode(), sqe.cdw10(), sqe.cdw11()), (0x05, 255 << 16 | 1, 3 << 16 | 0b11));
    /// # Ok::<(), physvec::nvme::CommandError>(())
    /// ```
    pub fn create_io_cq(
        qid: u16,
        entries: u32,
        base: DmaAddr,
        interrupt: Option<u16>,
    ) -> Result<Self, CommandError> {
        let cdw10 = queue_fields(qid, entries, base)?;
        let mut s = Self::new(opcode::admin::CREATE_IO_CQ);
        s.set_data_pointer(DataPointer::Prp {
            prp1: base,
            prp2: DmaAddr::ZERO,
        });
        s.set_cdw10(cdw10);
        s.set_cdw11(match interrupt {
            Some(iv) => (u32::from(iv) << 16) | 0b11, // IV, IEN, PC
            None => 0b01,                             // PC
        });
        Ok(s)
    }

    /// Create I/O Submission Queue (admin opcode 01h): queue `qid` of `entries` 64-byte
    /// entries in the physically contiguous memory at `base` (PC = 1), completing into
    /// completion queue `cqid` (create that one first), priority Urgent (QPRIO 00b; used
    /// only with weighted round robin arbitration).
    ///
    /// # Errors
    /// As [`SubmissionQueueEntry::create_io_cq`]; `cqid` 0 is
    /// [`CommandError::InvalidQueueId`].
    ///
    /// ```
    /// use physvec::nvme::SubmissionQueueEntry;
    /// use physvec::DmaAddr;
    /// let sqe = SubmissionQueueEntry::create_io_sq(1, 256, DmaAddr::new(0x30_0000), 1)?;
    /// assert_eq!((sqe.opcode(), sqe.cdw10(), sqe.cdw11()), (0x01, 255 << 16 | 1, 1 << 16 | 1));
    /// # Ok::<(), physvec::nvme::CommandError>(())
    /// ```
    pub fn create_io_sq(
        qid: u16,
        entries: u32,
        base: DmaAddr,
        cqid: u16,
    ) -> Result<Self, CommandError> {
        let cdw10 = queue_fields(qid, entries, base)?;
        if cqid == 0 {
            return Err(CommandError::InvalidQueueId { qid: cqid });
        }
        let mut s = Self::new(opcode::admin::CREATE_IO_SQ);
        s.set_data_pointer(DataPointer::Prp {
            prp1: base,
            prp2: DmaAddr::ZERO,
        });
        s.set_cdw10(cdw10);
        s.set_cdw11((u32::from(cqid) << 16) | 0b1); // CQID, QPRIO 00b, PC
        Ok(s)
    }

    /// Set Features, Number of Queues (admin opcode 09h, FID 07h): ask for
    /// `submission_queues` I/O submission and `completion_queues` I/O completion queues
    /// (counts, not 0's based). The controller answers with the counts allocated in
    /// completion DW0 (see
    /// [`CompletionQueueEntry::dw0`](crate::nvme::CompletionQueueEntry::dw0)).
    ///
    /// # Errors
    /// [`CommandError::InvalidQueueCount`] for a count outside 1..=65535.
    ///
    /// ```
    /// use physvec::nvme::SubmissionQueueEntry;
    /// let sqe = SubmissionQueueEntry::set_features_number_of_queues(4, 4)?;
    /// assert_eq!((sqe.opcode(), sqe.cdw10(), sqe.cdw11()), (0x09, 0x07, 3 << 16 | 3));
    /// # Ok::<(), physvec::nvme::CommandError>(())
    /// ```
    pub fn set_features_number_of_queues(
        submission_queues: u32,
        completion_queues: u32,
    ) -> Result<Self, CommandError> {
        let nsqr = queue_count(submission_queues)?;
        let ncqr = queue_count(completion_queues)?;
        let mut s = Self::new(opcode::admin::SET_FEATURES);
        s.set_cdw10(FID_NUMBER_OF_QUEUES);
        s.set_cdw11((ncqr << 16) | nsqr);
        Ok(s)
    }

    /// The same entry with command identifier `cid`.
    ///
    /// ```
    /// let sqe = physvec::nvme::SubmissionQueueEntry::identify_controller().with_cid(9);
    /// assert_eq!(sqe.cid(), 9);
    /// ```
    pub fn with_cid(mut self, cid: u16) -> Self {
        self.set_cid(cid);
        self
    }

    /// The same entry with data pointer `dp` (as
    /// [`SubmissionQueueEntry::set_data_pointer`]).
    ///
    /// ```
    /// use physvec::nvme::{DataPointer, SubmissionQueueEntry};
    /// let sqe = SubmissionQueueEntry::identify_controller()
    ///     .with_data_pointer(DataPointer::Prp { prp1: physvec::DmaAddr::new(0x9000), prp2: physvec::DmaAddr::ZERO });
    /// assert_eq!(sqe.data_pointer(), Some(DataPointer::Prp { prp1: physvec::DmaAddr::new(0x9000), prp2: physvec::DmaAddr::ZERO }));
    /// ```
    pub fn with_data_pointer(mut self, dp: DataPointer) -> Self {
        self.set_data_pointer(dp);
        self
    }

    /// SLBA (CDW10–11) and NLB (CDW12 bits 15:0) read back as an [`LbaRange`], as a
    /// controller reads a Read or Write; `None` when the range passes LBA 2^64 - 1.
    /// Meaningful only for commands that carry an LBA range.
    ///
    /// ```
    /// use physvec::nvme::{LbaRange, NamespaceId, SubmissionQueueEntry};
    /// let sqe = SubmissionQueueEntry::read(NamespaceId::new(1), LbaRange::new(16, 8));
    /// assert_eq!(sqe.lba_range(), Some(LbaRange::new(16, 8)));
    /// ```
    pub fn lba_range(&self) -> Option<LbaRange> {
        let slba = u64::from(self.cdw10()) | (u64::from(self.cdw11()) << 32);
        // `(cdw12 & 0xffff) + 1 <= 65536`.
        #[allow(clippy::arithmetic_side_effects)]
        let blocks = (self.cdw12() & 0xffff) + 1;
        LbaRange::try_new(slba, blocks).ok()
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

crate::error::error_info!(CommandError);

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
