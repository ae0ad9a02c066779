//! SGL descriptors ([`SglDescriptor`]), their types, the controller's SGL capabilities
//! ([`SglCapabilities`], Identify Controller SGLS) and [`SglItem`], one element of a
//! transfer as an SGL describes it (data or bit bucket).
//!
//! Layout: NVMe Base Specification 1.4 §4.4 (Base 2.x §4.1.2), Figures "SGL Descriptor
//! Format" and "SGL Descriptor Type"; subtype values as SPDK's `include/spdk/nvme_spec.h`.

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
use crate::range::DmaRange;

/// The 4-bit SGL descriptor type (byte 15 bits 7:4).
///
/// ```
/// use physvec::nvme::SglDescriptorType;
/// assert_eq!(SglDescriptorType::from_nibble(4), SglDescriptorType::KeyedDataBlock);
/// assert_eq!(SglDescriptorType::from_nibble(7), SglDescriptorType::Reserved(7));
/// assert_eq!(SglDescriptorType::LastSegment.nibble(), 3);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SglDescriptorType {
    /// 0h: a data block `[address, address + length)`.
    DataBlock,
    /// 1h: discard `length` bytes of read data (SGLS bit 16).
    BitBucket,
    /// 2h: the next segment, which is not the last one.
    Segment,
    /// 3h: the next segment, which is the last one.
    LastSegment,
    /// 4h: a data block with a 24-bit length and a 32-bit key (NVMe over RDMA).
    KeyedDataBlock,
    /// 5h: transport-specific data block (NVMe/TCP, FC).
    TransportDataBlock,
    /// 6h–Eh: reserved.
    Reserved(u8),
    /// Fh: vendor specific.
    VendorSpecific,
}

impl SglDescriptorType {
    /// The type of a nibble value (only the low 4 bits are used).
    pub const fn from_nibble(n: u8) -> Self {
        match n & 0xf {
            0 => Self::DataBlock,
            1 => Self::BitBucket,
            2 => Self::Segment,
            3 => Self::LastSegment,
            4 => Self::KeyedDataBlock,
            5 => Self::TransportDataBlock,
            0xf => Self::VendorSpecific,
            r => Self::Reserved(r),
        }
    }

    /// The nibble value.
    pub const fn nibble(self) -> u8 {
        match self {
            Self::DataBlock => 0,
            Self::BitBucket => 1,
            Self::Segment => 2,
            Self::LastSegment => 3,
            Self::KeyedDataBlock => 4,
            Self::TransportDataBlock => 5,
            Self::Reserved(r) => r & 0xf,
            Self::VendorSpecific => 0xf,
        }
    }

    /// `true` for Segment and Last Segment (descriptors that point at descriptors).
    pub const fn is_segment(self) -> bool {
        matches!(self, Self::Segment | Self::LastSegment)
    }
}

/// Descriptor subtype 0h: the address field is a memory address.
pub const SGL_SUBTYPE_ADDRESS: u8 = 0x0;
/// Descriptor subtype 1h: the address field is an offset into in-capsule data (fabrics).
pub const SGL_SUBTYPE_OFFSET: u8 = 0x1;
/// Keyed Data Block subtype Fh: remote invalidation of the key (NVMe over RDMA).
pub const SGL_SUBTYPE_INVALIDATE_KEY: u8 = 0xf;

/// One 16-byte SGL descriptor exactly as it lies in memory (little-endian fields).
///
/// | bytes | Data Block, Bit Bucket, Segment, Last Segment | Keyed Data Block |
/// |---|---|---|
/// | 0–7 | address (reserved for Bit Bucket) | address |
/// | 8–11 | length in bytes (32-bit) | 8–10: length (24-bit) |
/// | 12–14 | reserved | 11–14: key |
/// | 15 | `type << 4 \| subtype` | same |
///
/// # Invariants
/// None: every bit pattern is a descriptor (a guest can write anything); accessors
/// decode fields, the decoders judge validity.
///
/// # Examples
/// ```
/// use physvec::nvme::{SglDescriptor, SglDescriptorType};
/// use physvec::DmaAddr;
/// let d = SglDescriptor::data_block(DmaAddr::new(0x1000), 0x200);
/// assert_eq!(d.descriptor_type(), SglDescriptorType::DataBlock);
/// assert_eq!((d.address().as_u64(), d.length()), (0x1000, 0x200));
/// let k = SglDescriptor::keyed_data_block(DmaAddr::new(0x2000), 0x10_0000, 0xabcd).unwrap();
/// assert_eq!((k.keyed_length(), k.key()), (0x10_0000, 0xabcd));
/// assert_eq!(k.to_bytes()[15], 0x40);
/// assert!(SglDescriptor::keyed_data_block(DmaAddr::new(0), 1 << 24, 1).is_none());
/// ```
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SglDescriptor([u8; 16]);

const _: () = assert!(core::mem::size_of::<SglDescriptor>() == 16);

impl SglDescriptor {
    /// Largest length of a (non-keyed) Data Block, Bit Bucket or Segment: `2^32 - 1`.
    pub const MAX_LENGTH: u32 = u32::MAX;
    /// Largest length of a Keyed Data Block: `2^24 - 1` (16 MiB − 1).
    pub const MAX_KEYED_LENGTH: u32 = 0xff_ffff;

    /// The descriptor from its 16 bytes in memory order.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The 16 bytes in memory order.
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0
    }

    const fn build(addr: u64, len: u32, id: u8) -> Self {
        // One 128-bit little-endian value (two stores), not sixteen byte stores.
        let v = addr as u128 | (len as u128) << 64 | (id as u128) << 120;
        Self(v.to_le_bytes())
    }

    /// A Data Block (type 0h, subtype Address) of `len` bytes at `addr`.
    pub const fn data_block(addr: DmaAddr, len: u32) -> Self {
        Self::build(addr.as_u64(), len, 0x00)
    }

    /// A Bit Bucket (type 1h): `len` bytes of read data are discarded.
    pub const fn bit_bucket(len: u32) -> Self {
        Self::build(0, len, 0x10)
    }

    /// A Segment descriptor (type 2h): the next segment, `len` bytes (16 per descriptor)
    /// at `addr`, is not the last one.
    pub const fn segment(addr: DmaAddr, len: u32) -> Self {
        Self::build(addr.as_u64(), len, 0x20)
    }

    /// A Last Segment descriptor (type 3h): the next segment is the last one.
    pub const fn last_segment(addr: DmaAddr, len: u32) -> Self {
        Self::build(addr.as_u64(), len, 0x30)
    }

    /// A Keyed SGL Data Block (type 4h, subtype Address): `len` bytes at `addr` in the
    /// remote memory region `key` (an RDMA rkey). `None` when `len > 2^24 - 1`.
    pub const fn keyed_data_block(addr: DmaAddr, len: u32, key: u32) -> Option<Self> {
        if len > Self::MAX_KEYED_LENGTH {
            return None;
        }
        let a = addr.as_u64().to_le_bytes();
        let l = len.to_le_bytes();
        let k = key.to_le_bytes();
        Some(Self([
            a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], l[0], l[1], l[2], k[0], k[1], k[2],
            k[3], 0x40,
        ]))
    }

    /// The same descriptor with another subtype (low nibble of byte 15).
    pub const fn with_subtype(self, subtype: u8) -> Self {
        let mut b = self.0;
        b[15] = (b[15] & 0xf0) | (subtype & 0xf);
        Self(b)
    }

    /// Byte 15: the SGL Identifier (`type << 4 | subtype`).
    pub const fn identifier(self) -> u8 {
        self.0[15]
    }

    /// The descriptor type.
    pub const fn descriptor_type(self) -> SglDescriptorType {
        SglDescriptorType::from_nibble(self.0[15] >> 4)
    }

    /// The descriptor subtype.
    pub const fn subtype(self) -> u8 {
        self.0[15] & 0xf
    }

    /// Bytes 0–7: the address (a bus address: data, or the next segment).
    ///
    /// ```
    /// use physvec::nvme::SglDescriptor;
    /// use physvec::DmaAddr;
    /// assert_eq!(SglDescriptor::data_block(DmaAddr::new(0x1000), 8).address(), DmaAddr::new(0x1000));
    /// ```
    pub const fn address(self) -> DmaAddr {
        let b = self.0;
        DmaAddr::new(u64::from_le_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }

    /// Bytes 8–11: the 32-bit length in bytes (Data Block, Bit Bucket, Segments).
    pub const fn length(self) -> u32 {
        let b = self.0;
        u32::from_le_bytes([b[8], b[9], b[10], b[11]])
    }

    /// Bytes 8–10: the 24-bit length of a Keyed Data Block.
    pub const fn keyed_length(self) -> u32 {
        let b = self.0;
        u32::from_le_bytes([b[8], b[9], b[10], 0])
    }

    /// Bytes 11–14: the key of a Keyed Data Block.
    pub const fn key(self) -> u32 {
        let b = self.0;
        u32::from_le_bytes([b[11], b[12], b[13], b[14]])
    }

    /// The data length this descriptor describes: `keyed_length` for Keyed Data Blocks,
    /// `length` otherwise.
    pub const fn data_length(self) -> u64 {
        match self.descriptor_type() {
            SglDescriptorType::KeyedDataBlock => self.keyed_length() as u64,
            _ => self.length() as u64,
        }
    }
}

impl fmt::Debug for SglDescriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.descriptor_type() {
            SglDescriptorType::KeyedDataBlock => write!(
                f,
                "KeyedDataBlock({:#x}+{:#x}, key {:#x})",
                self.address(),
                self.keyed_length(),
                self.key()
            ),
            SglDescriptorType::BitBucket => write!(f, "BitBucket({:#x})", self.length()),
            t => write!(
                f,
                "{:?}({:#x}+{:#x}, subtype {:#x})",
                t,
                self.address(),
                self.length(),
                self.subtype()
            ),
        }
    }
}

impl SglDescriptorType {
    /// The specification's name: "Data Block", "Bit Bucket", "Segment", "Last Segment",
    /// "Keyed Data Block", "Transport Data Block", "Reserved", "Vendor Specific".
    ///
    /// ```
    /// use physvec::nvme::SglDescriptorType;
    /// assert_eq!(SglDescriptorType::LastSegment.name(), "Last Segment");
    /// ```
    pub const fn name(self) -> &'static str {
        match self {
            Self::DataBlock => "Data Block",
            Self::BitBucket => "Bit Bucket",
            Self::Segment => "Segment",
            Self::LastSegment => "Last Segment",
            Self::KeyedDataBlock => "Keyed Data Block",
            Self::TransportDataBlock => "Transport Data Block",
            Self::Reserved(_) => "Reserved",
            Self::VendorSpecific => "Vendor Specific",
        }
    }
}

/// One line, the specification's names, hex values: `Data Block addr=0x10000
/// len=0x200`, `Keyed Data Block addr=… len=… key=…`, `Bit Bucket len=…`, `Last Segment
/// addr=… len=…`; a non-zero subtype and reserved types show `type=`/`subtype=`.
///
/// ```
/// use physvec::nvme::SglDescriptor;
/// use physvec::DmaAddr;
/// let d = SglDescriptor::data_block(DmaAddr::new(0x10000), 0x200);
/// assert_eq!(d.to_string(), "Data Block addr=0x10000 len=0x200");
/// let k = SglDescriptor::keyed_data_block(DmaAddr::new(0x2000), 0x1000, 0xab).unwrap();
/// assert_eq!(k.to_string(), "Keyed Data Block addr=0x2000 len=0x1000 key=0xab");
/// assert_eq!(SglDescriptor::bit_bucket(512).to_string(), "Bit Bucket len=0x200");
/// ```
impl fmt::Display for SglDescriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.descriptor_type();
        f.write_str(t.name())?;
        if let SglDescriptorType::Reserved(n) = t {
            write!(f, " type={n:#x}")?;
        }
        match t {
            SglDescriptorType::KeyedDataBlock => write!(
                f,
                " addr={:#x} len={:#x} key={:#x}",
                self.address(),
                self.keyed_length(),
                self.key()
            )?,
            SglDescriptorType::BitBucket => write!(f, " len={:#x}", self.length())?,
            _ => write!(f, " addr={:#x} len={:#x}", self.address(), self.length())?,
        }
        if self.subtype() != 0 {
            write!(f, " subtype={:#x}", self.subtype())?;
        }
        Ok(())
    }
}

/// The controller's SGL Support field (Identify Controller bytes 539:536, "SGLS").
///
/// | bits | meaning |
/// |---|---|
/// | 1:0 | 00b not supported, 01b supported, 10b supported with dword alignment and granularity |
/// | 2 | Keyed SGL Data Block |
/// | 16 | Bit Bucket |
/// | 17 | byte-aligned contiguous metadata buffer |
/// | 18 | SGL longer than the data transfer allowed |
/// | 19 | MPTR may hold an SGL descriptor |
/// | 20 | address field may be an offset |
/// | 21 | Transport SGL Data Block |
///
/// ```
/// use physvec::nvme::SglCapabilities;
/// let qemu = SglCapabilities::from_raw(0x1);
/// assert!(qemu.supported() && !qemu.dword_aligned() && !qemu.keyed() && !qemu.bit_bucket());
/// assert!(SglCapabilities::from_raw(0x2).dword_aligned());
/// assert!(!SglCapabilities::NONE.supported());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SglCapabilities(u32);

impl SglCapabilities {
    /// SGLs not supported (SGLS = 0).
    pub const NONE: Self = Self(0);
    /// Supported without alignment requirement, plus Keyed Data Block and Bit Bucket:
    /// every data and segment descriptor type the specification defines for PCIe and
    /// RDMA. Excess length (bit 18) is *not* included.
    pub const ALL_TYPES: Self = Self(0x1 | 1 << 2 | 1 << 16);

    /// From the raw SGLS value.
    pub const fn from_raw(raw: u32) -> Self {
        Self(raw)
    }

    /// The raw SGLS value.
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// Bits 1:0 are 01b or 10b. (11b is reserved and treated as unsupported.)
    pub const fn supported(self) -> bool {
        matches!(self.0 & 3, 1 | 2)
    }

    /// Bits 1:0 = 10b: Data Block addresses and lengths must be dword aligned.
    pub const fn dword_aligned(self) -> bool {
        self.0 & 3 == 2
    }

    /// Bit 2: Keyed SGL Data Block descriptors.
    pub const fn keyed(self) -> bool {
        self.0 & (1 << 2) != 0
    }

    /// Bit 16: Bit Bucket descriptors.
    pub const fn bit_bucket(self) -> bool {
        self.0 & (1 << 16) != 0
    }

    /// Bit 18: an SGL may describe more data than the command transfers.
    pub const fn excess_length(self) -> bool {
        self.0 & (1 << 18) != 0
    }

    /// Bit 19: MPTR may hold an SGL descriptor (PSDT 10b).
    pub const fn metadata_sgl(self) -> bool {
        self.0 & (1 << 19) != 0
    }

    /// The same capabilities with bit `bit` set or cleared.
    pub const fn with_bit(self, bit: u32, on: bool) -> Self {
        if bit >= 32 {
            return self;
        }
        if on {
            Self(self.0 | 1 << bit)
        } else {
            Self(self.0 & !(1 << bit))
        }
    }
}

/// One element of a transfer as an SGL describes it, in transfer order: bytes moved to
/// or from a DMA range, or bytes of read data the controller discards (Bit Bucket).
///
/// The SGL encoder takes these as input and the SGL decoder produces them. The tool
/// prints a bit bucket as `[null, len]`.
///
/// ```
/// use physvec::nvme::SglItem;
/// use physvec::DmaRange;
/// let a = SglItem::Data(DmaRange::new(0x1000, 0x10));
/// assert_eq!(a.len(), 0x10);
/// assert_eq!(SglItem::BitBucket(7).range(), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SglItem {
    /// Data moved to or from this range.
    Data(DmaRange),
    /// This many bytes of read data discarded (never 0 in decoder output).
    BitBucket(u64),
}

impl SglItem {
    /// Length in bytes.
    pub const fn len(self) -> u64 {
        match self {
            SglItem::Data(r) => r.len(),
            SglItem::BitBucket(l) => l,
        }
    }

    /// `true` for a zero-length bit bucket (data ranges are never empty).
    pub const fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// The data range, `None` for a bit bucket.
    pub const fn range(self) -> Option<DmaRange> {
        match self {
            SglItem::Data(r) => Some(r),
            SglItem::BitBucket(_) => None,
        }
    }

    /// `self` followed by `next` as one item, when both are contiguous data or both bit
    /// buckets (and the length fits in u64).
    pub const fn merge(self, next: Self) -> Option<Self> {
        match (self, next) {
            (SglItem::Data(a), SglItem::Data(b)) => match a.merge(b) {
                Some(r) => Some(SglItem::Data(r)),
                None => None,
            },
            (SglItem::BitBucket(a), SglItem::BitBucket(b)) => match a.checked_add(b) {
                Some(l) => Some(SglItem::BitBucket(l)),
                None => None,
            },
            _ => None,
        }
    }
}

impl From<DmaRange> for SglItem {
    fn from(r: DmaRange) -> Self {
        SglItem::Data(r)
    }
}

impl From<&DmaRange> for SglItem {
    fn from(r: &DmaRange) -> Self {
        SglItem::Data(*r)
    }
}

impl From<&SglItem> for SglItem {
    fn from(i: &SglItem) -> Self {
        *i
    }
}
