//! [`MapError`]: everything a mapper, the generic [`map`](super::map_into) entry point
//! or the checking wrapper can refuse, each variant carrying the values that were wrong.

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

use super::DataDirection;

/// A DMA mapping operation that failed or was refused.
///
/// Every variant has a stable snake_case name ([`MapError::kind`]) that the tool prints
/// as `error.kind`. Variants that the kernel would report with a `WARN` (misuse of the
/// two-step API) are errors here; nothing panics.
///
/// ```
/// use physvec::map::MapError;
/// let e = MapError::AboveDmaMask { dma: 1 << 40, len: 0x1000, mask: u32::MAX as u64 };
/// assert_eq!(e.kind(), "above_dma_mask");
/// assert!(e.to_string().contains("0xffffffff"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MapError {
    /// Nothing to map: the list or view has no bytes.
    Empty,
    /// The lengths of the input ranges add up to more than `u64::MAX`.
    TotalOverflow,
    /// `addr + len` (after adding a DMA or bus offset) passes 2^64.
    AddressOverflow {
        /// Start address that overflowed.
        addr: u64,
        /// Length in bytes.
        len: u64,
    },
    /// The device cannot reach `[dma, dma + len)` with its DMA mask and no bounce buffer
    /// could take the range.
    AboveDmaMask {
        /// First DMA address of the range.
        dma: u64,
        /// Length in bytes.
        len: u64,
        /// The device's DMA mask.
        mask: u64,
    },
    /// A granule that the mapper does not support (the software IOMMU takes 4 KiB,
    /// 16 KiB and 64 KiB).
    InvalidGranule {
        /// The rejected granule in bytes.
        granule: u64,
    },
    /// A mapper configuration that contradicts itself (aperture outside the DMA mask,
    /// empty bounce pool, ...).
    InvalidConfig {
        /// What is wrong.
        what: &'static str,
    },
    /// An I/O page-table operation on an address or length that is not a multiple of the
    /// granule.
    Misaligned {
        /// The offending address or length.
        value: u64,
        /// The granule in bytes.
        granule: u64,
    },
    /// The mapper has no IOVA space (dma-direct): only `map_phys` works.
    NoIovaSpace,
    /// The IOVA allocator has no free extent of `size` bytes under the DMA mask.
    IovaExhausted {
        /// Requested size in bytes (granule-rounded).
        size: u64,
    },
    /// The reservation was not made by this mapper, or was already freed.
    ForeignSpace {
        /// DMA address of the reservation's first byte.
        addr: u64,
    },
    /// A link or unlink outside the reserved size.
    OutOfReservation {
        /// Offset in bytes from the reservation start.
        offset: u64,
        /// Length in bytes.
        len: u64,
        /// Reserved size in bytes.
        size: u64,
    },
    /// A link that breaks the merge-boundary rule: every link but the first must start
    /// on a granule boundary, every link but the last must end on one.
    MergeBoundary {
        /// Offset of the offending link inside the reservation.
        offset: u64,
        /// Physical start of the offending link.
        phys: u64,
        /// The mapper's granule (merge boundary + 1) in bytes.
        granule: u64,
    },
    /// The first link's sub-granule offset differs from the one the reservation was made
    /// for (the `phys_hint` of `reserve`).
    SubGranuleMismatch {
        /// Physical start of the link.
        phys: u64,
        /// DMA address it would land at.
        dma: u64,
    },
    /// Part of the I/O virtual range is already mapped (a double or overlapping link).
    AlreadyMapped {
        /// First I/O virtual address found mapped.
        iova: u64,
    },
    /// An unlink of bytes that are not linked.
    NotLinked {
        /// Offset in bytes inside the reservation.
        offset: u64,
        /// Length in bytes.
        len: u64,
    },
    /// An unmap of a DMA address this mapper did not map (or already unmapped).
    NotMapped {
        /// The DMA address.
        dma: u64,
        /// Length in bytes.
        len: u64,
    },
    /// `sync` on a reservation that has no link yet.
    SyncBeforeLink,
    /// `sync` of bytes outside what is linked.
    SyncOutOfRange {
        /// Offset in bytes inside the reservation.
        offset: u64,
        /// Length in bytes.
        len: u64,
    },
    /// `free` of a reservation that still had linked bytes (they were unlinked; the
    /// caller should have called `destroy`).
    StillLinked {
        /// Bytes that were still linked.
        bytes: u64,
    },
    /// The bounce-buffer pool has no room for `len` bytes.
    BounceExhausted {
        /// Requested length in bytes.
        len: u64,
    },
    /// A peer-to-peer range whose provider the device cannot reach
    /// (`PCI_P2PDMA_MAP_NOT_SUPPORTED`, the kernel's `-EREMOTEIO`).
    P2pNotSupported {
        /// Index of the range in the input.
        index: usize,
        /// Its physical start.
        phys: u64,
    },
    /// Ranges of different P2P kinds in one I/O (the kernel decides the kind from the
    /// first segment, so an I/O must not mix them).
    MixedP2p {
        /// Index of the first range whose kind differs from range 0.
        index: usize,
    },
    /// The output sink cannot hold the mapping's ranges.
    TooManySegments {
        /// Ranges the mapping needs.
        needed: usize,
        /// Ranges the sink still takes.
        capacity: usize,
    },
    /// DMA-API debug: unmap of an address that was never mapped.
    UnknownUnmap {
        /// The DMA address.
        dma: u64,
    },
    /// DMA-API debug: unmap of an address that was mapped and already unmapped.
    DoubleUnmap {
        /// The DMA address.
        dma: u64,
    },
    /// DMA-API debug: unmap with a different size than the map.
    SizeMismatch {
        /// The DMA address.
        dma: u64,
        /// Mapped length in bytes.
        mapped: u64,
        /// Length passed to unmap, in bytes.
        unmapped: u64,
    },
    /// DMA-API debug: unmap with a different direction than the map.
    DirectionMismatch {
        /// The DMA address.
        dma: u64,
        /// Direction of the map.
        mapped: DataDirection,
        /// Direction passed to unmap.
        unmapped: DataDirection,
    },
    /// DMA-API debug: a link overlapping an existing link of the same reservation.
    OverlappingLink {
        /// Offset of the new link.
        offset: u64,
        /// Length of the new link in bytes.
        len: u64,
    },
    /// A [`MapStream`](super::MapStream) was fed more or fewer bytes than the total it
    /// was started with.
    StreamLength {
        /// The total announced at start, in bytes.
        declared: u64,
        /// Bytes pushed (up to and including the offending range).
        streamed: u64,
    },
    /// DMA-API debug: mappings still live when checked (`check_leaks`).
    Leaked {
        /// Live single mappings.
        mappings: usize,
        /// Live reservations.
        spaces: usize,
    },
    /// The page source of an in-memory page table (VT-d) has no page left for a table.
    TablePagesExhausted,
    /// Table memory could not be read or written at `addr` (an in-memory page table).
    TableMemory {
        /// Address of the failed access.
        addr: u64,
    },
    /// A leaf would translate into the interrupt window 0xFEE0_0000..=0xFEEF_FFFF, which
    /// VT-d blocks (fault reason 0xE).
    InterruptWindow {
        /// Physical address of the offending page.
        phys: u64,
    },
}

impl MapError {
    /// Stable snake_case name of the variant.
    ///
    /// ```
    /// assert_eq!(physvec::map::MapError::NoIovaSpace.kind(), "no_iova_space");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            MapError::Empty => "empty",
            MapError::TotalOverflow => "total_overflow",
            MapError::AddressOverflow { .. } => "address_overflow",
            MapError::AboveDmaMask { .. } => "above_dma_mask",
            MapError::InvalidGranule { .. } => "invalid_granule",
            MapError::InvalidConfig { .. } => "invalid_config",
            MapError::Misaligned { .. } => "misaligned",
            MapError::NoIovaSpace => "no_iova_space",
            MapError::IovaExhausted { .. } => "iova_exhausted",
            MapError::ForeignSpace { .. } => "foreign_space",
            MapError::OutOfReservation { .. } => "out_of_reservation",
            MapError::MergeBoundary { .. } => "merge_boundary",
            MapError::SubGranuleMismatch { .. } => "sub_granule_mismatch",
            MapError::AlreadyMapped { .. } => "already_mapped",
            MapError::NotLinked { .. } => "not_linked",
            MapError::NotMapped { .. } => "not_mapped",
            MapError::SyncBeforeLink => "sync_before_link",
            MapError::SyncOutOfRange { .. } => "sync_out_of_range",
            MapError::StillLinked { .. } => "still_linked",
            MapError::BounceExhausted { .. } => "bounce_exhausted",
            MapError::P2pNotSupported { .. } => "p2p_not_supported",
            MapError::MixedP2p { .. } => "mixed_p2p",
            MapError::TooManySegments { .. } => "too_many_segments",
            MapError::UnknownUnmap { .. } => "unknown_unmap",
            MapError::DoubleUnmap { .. } => "double_unmap",
            MapError::SizeMismatch { .. } => "size_mismatch",
            MapError::DirectionMismatch { .. } => "direction_mismatch",
            MapError::OverlappingLink { .. } => "overlapping_link",
            MapError::StreamLength { .. } => "stream_length",
            MapError::Leaked { .. } => "leaked",
            MapError::TablePagesExhausted => "too_few_table_pages",
            MapError::TableMemory { .. } => "table_memory",
            MapError::InterruptWindow { .. } => "interrupt_window",
        }
    }

    /// The input segment index the error names, where it names one.
    ///
    /// ```
    /// use physvec::map::MapError;
    /// assert_eq!(MapError::MixedP2p { index: 3 }.index(), Some(3));
    /// assert_eq!(MapError::Empty.index(), None);
    /// ```
    pub fn index(&self) -> Option<usize> {
        match *self {
            MapError::P2pNotSupported { index, .. } | MapError::MixedP2p { index } => Some(index),
            _ => None,
        }
    }
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MapError::Empty => f.write_str("nothing to map: the range list is empty"),
            MapError::TotalOverflow => f.write_str("total length of the ranges exceeds u64::MAX"),
            MapError::AddressOverflow { addr, len } => {
                write!(f, "range {addr:#x}+{len:#x} passes the end of the 64-bit address space")
            }
            MapError::AboveDmaMask { dma, len, mask } => write!(
                f,
                "DMA range {dma:#x}+{len:#x} is above the device's DMA mask {mask:#x}"
            ),
            MapError::InvalidGranule { granule } => {
                write!(f, "granule {granule:#x} is not supported")
            }
            MapError::InvalidConfig { what } => write!(f, "invalid mapper configuration: {what}"),
            MapError::Misaligned { value, granule } => {
                write!(f, "{value:#x} is not a multiple of the {granule:#x}-byte granule")
            }
            MapError::NoIovaSpace => f.write_str("the mapper has no IOVA space (direct mapping)"),
            MapError::IovaExhausted { size } => {
                write!(f, "no free IOVA extent of {size:#x} bytes under the DMA mask")
            }
            MapError::ForeignSpace { addr } => write!(
                f,
                "IOVA reservation at {addr:#x} does not belong to this mapper or was freed"
            ),
            MapError::OutOfReservation { offset, len, size } => write!(
                f,
                "{offset:#x}+{len:#x} lies outside the {size:#x}-byte IOVA reservation"
            ),
            MapError::MergeBoundary {
                offset,
                phys,
                granule,
            } => write!(
                f,
                "link of phys {phys:#x} at offset {offset:#x} breaks the {granule:#x}-byte merge boundary rule"
            ),
            MapError::SubGranuleMismatch { phys, dma } => write!(
                f,
                "phys {phys:#x} and IOVA {dma:#x} differ in their offset inside a granule"
            ),
            MapError::AlreadyMapped { iova } => write!(f, "IOVA {iova:#x} is already mapped"),
            MapError::NotLinked { offset, len } => {
                write!(f, "bytes {offset:#x}+{len:#x} of the reservation are not linked")
            }
            MapError::NotMapped { dma, len } => {
                write!(f, "DMA range {dma:#x}+{len:#x} is not mapped by this mapper")
            }
            MapError::SyncBeforeLink => f.write_str("sync of an IOVA reservation with no link"),
            MapError::SyncOutOfRange { offset, len } => {
                write!(f, "sync of {offset:#x}+{len:#x} outside the linked bytes")
            }
            MapError::StillLinked { bytes } => write!(
                f,
                "free of a reservation with {bytes:#x} bytes still linked (use destroy)"
            ),
            MapError::BounceExhausted { len } => {
                write!(f, "bounce-buffer pool has no room for {len:#x} bytes")
            }
            MapError::P2pNotSupported { index, phys } => write!(
                f,
                "segment {index} (phys {phys:#x}) is peer memory the device cannot reach"
            ),
            MapError::MixedP2p { index } => write!(
                f,
                "segment {index} is a different kind of P2P memory than segment 0"
            ),
            MapError::TooManySegments { needed, capacity } => write!(
                f,
                "mapping needs {needed} DMA ranges but the output holds {capacity} more"
            ),
            MapError::UnknownUnmap { dma } => {
                write!(f, "DMA-API debug: unmap of never-mapped address {dma:#x}")
            }
            MapError::DoubleUnmap { dma } => {
                write!(f, "DMA-API debug: double unmap of {dma:#x}")
            }
            MapError::SizeMismatch {
                dma,
                mapped,
                unmapped,
            } => write!(
                f,
                "DMA-API debug: {dma:#x} mapped with {mapped:#x} bytes, unmapped with {unmapped:#x}"
            ),
            MapError::DirectionMismatch {
                dma,
                mapped,
                unmapped,
            } => write!(
                f,
                "DMA-API debug: {dma:#x} mapped {mapped}, unmapped {unmapped}"
            ),
            MapError::OverlappingLink { offset, len } => write!(
                f,
                "DMA-API debug: link {offset:#x}+{len:#x} overlaps an earlier link"
            ),
            MapError::StreamLength { declared, streamed } => write!(
                f,
                "the stream was started for {declared:#x} bytes but {streamed:#x} were pushed"
            ),
            MapError::Leaked { mappings, spaces } => write!(
                f,
                "DMA-API debug: {mappings} mapping(s) and {spaces} IOVA reservation(s) leaked"
            ),
            MapError::TablePagesExhausted => {
                f.write_str("no page left in the page source for an I/O page table")
            }
            MapError::TableMemory { addr } => {
                write!(f, "page-table memory at {addr:#x} is not accessible")
            }
            MapError::InterruptWindow { phys } => write!(
                f,
                "page {phys:#x} lies in the interrupt window 0xfee00000..=0xfeefffff"
            ),
        }
    }
}

impl core::error::Error for MapError {}

crate::error::error_info!(MapError, |e| e.index().map(crate::error::Position::index));
