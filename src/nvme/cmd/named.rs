//! Commands by name: the constructors a user-space driver submits (Read, Write, Flush,
//! Identify, Create I/O Submission/Completion Queue, Set Features Number of Queues), their
//! typed fields ([`NamespaceId`], [`LbaRange`]) and [`CommandError`].
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

use super::{opcode, DataPointer, SubmissionQueueEntry};
use crate::addr::DmaAddr;

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

crate::error::error_info!(CommandError);
