//! Errors of the core model: addresses, ranges, containers, views and the builder.
//!
//! One enum per concern, each carrying the values that were wrong (which segment, which
//! byte, which limit). Adapters and mappers define their own error types in their modules.

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

use crate::nvme::NvmeStatus;

/// What every error of this crate tells a program, beyond its message: a stable name,
/// where it happened, and the NVMe status a controller completes the command with.
///
/// Implemented by every error type of the crate, so a driver or a tool handles them
/// all the same way (the `physvec` tool turns any of them into its JSON error object).
///
/// ```
/// use physvec::error::{ErrorInfo, Position};
/// use physvec::nvme::{DecodeError, NvmeStatus};
/// use physvec::DmaAddr;
/// fn report(e: &dyn ErrorInfo) -> String {
///     let at = e.position().map(|p| format!(" at {p}")).unwrap_or_default();
///     let sc = e.nvme_status().map(|s| format!(" -> {s}")).unwrap_or_default();
///     format!("{}{at}{sc}", e.kind())
/// }
/// let e = DecodeError::LoopDetected { at: DmaAddr::new(0xa000) };
/// assert_eq!(report(&e), "loop_detected at 0xa000 -> Invalid SGL Segment Descriptor (SCT 0h, SC 0dh)");
/// assert_eq!(e.position(), Some(Position::Address(0xa000)));
/// ```
pub trait ErrorInfo: fmt::Display + fmt::Debug {
    /// Stable snake_case name of the variant (the tool's `error.kind`).
    fn kind(&self) -> &'static str;

    /// Where: the index of the offending input (segment, entry, descriptor), or the
    /// byte address of an offending structure in memory.
    fn position(&self) -> Option<Position> {
        None
    }

    /// The status an NVMe controller completes the command with, where the
    /// specification names one for this failure.
    fn nvme_status(&self) -> Option<NvmeStatus> {
        None
    }
}

/// Where an error happened (see [`ErrorInfo::position`]).
///
/// ```
/// use physvec::error::Position;
/// assert_eq!(Position::Index(3).to_string(), "index 3");
/// assert_eq!(Position::Address(0x8000).to_string(), "0x8000");
/// assert_eq!(Position::Address(0x8000).raw(), 0x8000);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// Index of the offending input item (segment, entry, descriptor, list page).
    Index(u64),
    /// Byte address of the offending structure (a list entry, a descriptor, a table).
    Address(u64),
}

impl Position {
    /// The number alone (what the tool prints as `at`).
    pub const fn raw(self) -> u64 {
        match self {
            Position::Index(i) | Position::Address(i) => i,
        }
    }

    /// An index position from a `usize`.
    pub fn index(i: usize) -> Self {
        Position::Index(u64::try_from(i).unwrap_or(u64::MAX))
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Position::Index(i) => write!(f, "index {i}"),
            Position::Address(a) => write!(f, "{a:#x}"),
        }
    }
}

/// Implements [`ErrorInfo`] from an inherent `kind()` and optional position / status
/// functions.
macro_rules! error_info {
    ($ty:ty) => {
        $crate::error::error_info!($ty, |_e| None, |_e| None);
    };
    ($ty:ty, $pos:expr) => {
        $crate::error::error_info!($ty, $pos, |_e| None);
    };
    ($ty:ty, $pos:expr, $status:expr) => {
        impl $crate::error::ErrorInfo for $ty {
            fn kind(&self) -> &'static str {
                <$ty>::kind(self)
            }
            fn position(&self) -> Option<$crate::error::Position> {
                let f: fn(&$ty) -> Option<$crate::error::Position> = $pos;
                f(self)
            }
            fn nvme_status(&self) -> Option<$crate::nvme::NvmeStatus> {
                let f: fn(&$ty) -> Option<$crate::nvme::NvmeStatus> = $status;
                f(self)
            }
        }
    };
}
pub(crate) use error_info;

/// An address computation that left the 64-bit address space, or a bad power of two.
///
/// ```
/// use physvec::{AddrError, PhysAddr};
/// let e = PhysAddr::new(u64::MAX).checked_add(2).unwrap_err();
/// assert_eq!(e, AddrError::Overflow { addr: u64::MAX, delta: 2 });
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrError {
    /// `addr + delta` does not fit in 64 bits.
    Overflow {
        /// The base address.
        addr: u64,
        /// The byte count added to it.
        delta: u64,
    },
    /// `addr - delta` is below zero.
    Underflow {
        /// The base address.
        addr: u64,
        /// The byte count subtracted from it.
        delta: u64,
    },
    /// `pfn * page_size` does not fit in 64 bits.
    PfnOverflow {
        /// The page frame number.
        pfn: u64,
        /// The page size in bytes.
        page_size: u64,
    },
    /// A page size or alignment that is zero or not a power of two.
    NotPowerOfTwo {
        /// The rejected value.
        value: u64,
    },
}

impl AddrError {
    /// A stable snake_case name for the variant (what the tool prints as `error.kind`).
    ///
    /// ```
    /// # use physvec::*;
    /// assert_eq!(PhysAddr::new(u64::MAX).checked_add(1).unwrap_err().kind(), "address_overflow");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            AddrError::Overflow { .. } => "address_overflow",
            AddrError::Underflow { .. } => "address_underflow",
            AddrError::PfnOverflow { .. } => "address_overflow",
            AddrError::NotPowerOfTwo { .. } => "not_power_of_two",
        }
    }
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AddrError::Overflow { addr, delta } => {
                write!(
                    f,
                    "address overflow: {addr:#x} + {delta:#x} exceeds 2^64 - 1"
                )
            }
            AddrError::Underflow { addr, delta } => {
                write!(f, "address underflow: {addr:#x} - {delta:#x} is below zero")
            }
            AddrError::PfnOverflow { pfn, page_size } => write!(
                f,
                "page frame {pfn:#x} of {page_size:#x}-byte pages lies beyond 2^64"
            ),
            AddrError::NotPowerOfTwo { value } => {
                write!(f, "{value:#x} is not a power of two")
            }
        }
    }
}

impl core::error::Error for AddrError {}

/// A range that cannot exist: empty, past 2^64, or split outside its bounds.
///
/// ```
/// use physvec::{PhysRange, RangeError};
/// assert_eq!(PhysRange::try_new(0x1000, 0), Err(RangeError::Empty { addr: 0x1000 }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeError {
    /// The length is zero; ranges are never empty.
    Empty {
        /// Start of the rejected range.
        addr: u64,
    },
    /// `addr + len` is above 2^64 (a range may end exactly at 2^64).
    Overflow {
        /// Start of the rejected range.
        addr: u64,
        /// Its length in bytes.
        len: u64,
    },
    /// A split or trim offset that is not strictly inside the range.
    OffsetOutOfRange {
        /// The requested offset in bytes from the range start.
        offset: u64,
        /// The range length in bytes.
        len: u64,
    },
}

impl RangeError {
    /// A stable snake_case name for the variant (what the tool prints as `error.kind`).
    ///
    /// ```
    /// # use physvec::*;
    /// assert_eq!(PhysRange::try_new(0x1000, 0).unwrap_err().kind(), "empty_segment");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            RangeError::Empty { .. } => "empty_segment",
            RangeError::Overflow { .. } => "address_overflow",
            RangeError::OffsetOutOfRange { .. } => "offset_out_of_range",
        }
    }
}

impl fmt::Display for RangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RangeError::Empty { addr } => write!(f, "empty range at {addr:#x}"),
            RangeError::Overflow { addr, len } => write!(
                f,
                "range {addr:#x}+{len:#x} ends beyond the 64-bit address space"
            ),
            RangeError::OffsetOutOfRange { offset, len } => write!(
                f,
                "offset {offset:#x} is not inside a range of {len:#x} bytes"
            ),
        }
    }
}

impl core::error::Error for RangeError {}

/// A fixed-capacity container was full; the rejected element is handed back.
///
/// ```
/// use physvec::{PhysArray, PhysRange};
/// let mut a: PhysArray<1> = PhysArray::new();
/// a.try_push(PhysRange::new(0x1000, 0x1000)).unwrap();
/// let err = a.try_push(PhysRange::new(0x3000, 0x1000)).unwrap_err();
/// assert_eq!(err.element(), PhysRange::new(0x3000, 0x1000));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapacityError<T> {
    element: T,
}

impl<T> CapacityError<T> {
    /// Wraps the element that did not fit.
    pub const fn new(element: T) -> Self {
        Self { element }
    }

    /// The element that did not fit.
    pub fn element(self) -> T {
        self.element
    }
}

impl<T> fmt::Display for CapacityError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("container is full")
    }
}

impl<T: fmt::Debug> core::error::Error for CapacityError<T> {}

/// Pushing a range would make the total length of a container exceed `u64::MAX` bytes.
///
/// ```
/// use physvec::{PhysVec, PhysRange};
/// let mut v = PhysVec::new();
/// v.push(PhysRange::new(0, u64::MAX));
/// assert!(v.try_push(PhysRange::new(0, 1)).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TotalLenOverflow {
    /// The total length before the push, in bytes.
    pub total: u64,
    /// The length of the rejected range, in bytes.
    pub len: u64,
}

impl fmt::Display for TotalLenOverflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "total length {:#x} + {:#x} exceeds u64::MAX bytes",
            self.total, self.len
        )
    }
}

impl core::error::Error for TotalLenOverflow {}

/// A byte window that does not fit the range list it views.
///
/// ```
/// use physvec::{PhysRange, RangeView, ViewError};
/// let r = [PhysRange::new(0x1000, 0x100)];
/// assert_eq!(
///     RangeView::new(&r, 0x80, 0x100).unwrap_err(),
///     ViewError::OutOfBounds { offset: 0x80, len: 0x100, total: 0x100 }
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewError {
    /// `[offset, offset + len)` is not inside the `total` bytes of the list.
    OutOfBounds {
        /// Requested start, in bytes from the start of the list.
        offset: u64,
        /// Requested length in bytes.
        len: u64,
        /// Total bytes available.
        total: u64,
    },
    /// The lengths of the underlying ranges add up to more than `u64::MAX`.
    TotalOverflow {
        /// Index of the range at which the sum overflowed.
        index: usize,
    },
}

impl ViewError {
    /// A stable snake_case name for the variant (what the tool prints as `error.kind`).
    ///
    /// ```
    /// # use physvec::*;
    /// let r = [PhysRange::new(0, 8)];
    /// assert_eq!(RangeView::new(&r, 4, 8).unwrap_err().kind(), "out_of_bounds");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            ViewError::OutOfBounds { .. } => "out_of_bounds",
            ViewError::TotalOverflow { .. } => "length_overflow",
        }
    }
}

impl fmt::Display for ViewError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ViewError::OutOfBounds { offset, len, total } => write!(
                f,
                "window {offset:#x}+{len:#x} is outside the {total:#x} bytes of the list"
            ),
            ViewError::TotalOverflow { index } => {
                write!(f, "total length overflows u64 at segment {index}")
            }
        }
    }
}

impl core::error::Error for ViewError {}

/// A [`DmaConstraints`](crate::DmaConstraints) value that is self-contradictory.
///
/// ```
/// use physvec::{ConstraintsError, DmaConstraints};
/// let e = DmaConstraints::new().with_max_segment_size(0).validate().unwrap_err();
/// assert_eq!(e, ConstraintsError::ZeroMaxSegmentSize);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConstraintsError {
    /// `max_segment_size` is zero.
    ZeroMaxSegmentSize,
    /// `max_segments` is zero.
    ZeroMaxSegments,
    /// `segment_boundary_mask` is not of the form `2^k - 1`.
    BoundaryMaskNotContiguous {
        /// The rejected mask.
        mask: u64,
    },
    /// `alignment` is not a power of two.
    AlignmentNotPowerOfTwo {
        /// The rejected alignment.
        alignment: u64,
    },
    /// `max_segment_size` rounded down to `alignment` is zero, so no aligned segment fits.
    MaxSegmentBelowAlignment {
        /// The maximum segment size in bytes.
        max_segment_size: u64,
        /// The required alignment in bytes.
        alignment: u64,
    },
    /// The segment boundary is smaller than the alignment, so split points could not
    /// be aligned.
    BoundaryBelowAlignment {
        /// The boundary mask.
        mask: u64,
        /// The required alignment in bytes.
        alignment: u64,
    },
}

impl ConstraintsError {
    /// A stable snake_case name for the variant (what the tool prints as `error.kind`).
    ///
    /// ```
    /// # use physvec::*;
    /// assert_eq!(DmaConstraints::new().with_max_segments(0).validate().unwrap_err().kind(), "zero_max_segments");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            ConstraintsError::ZeroMaxSegmentSize => "zero_max_segment_size",
            ConstraintsError::ZeroMaxSegments => "zero_max_segments",
            ConstraintsError::BoundaryMaskNotContiguous { .. } => "invalid_boundary_mask",
            ConstraintsError::AlignmentNotPowerOfTwo { .. } => "not_power_of_two",
            ConstraintsError::MaxSegmentBelowAlignment { .. } => "max_segment_below_alignment",
            ConstraintsError::BoundaryBelowAlignment { .. } => "boundary_below_alignment",
        }
    }
}

impl fmt::Display for ConstraintsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ConstraintsError::ZeroMaxSegmentSize => f.write_str("max_segment_size is zero"),
            ConstraintsError::ZeroMaxSegments => f.write_str("max_segments is zero"),
            ConstraintsError::BoundaryMaskNotContiguous { mask } => {
                write!(f, "segment boundary mask {mask:#x} is not 2^k - 1")
            }
            ConstraintsError::AlignmentNotPowerOfTwo { alignment } => {
                write!(f, "alignment {alignment:#x} is not a power of two")
            }
            ConstraintsError::MaxSegmentBelowAlignment {
                max_segment_size,
                alignment,
            } => write!(
                f,
                "max_segment_size {max_segment_size:#x} is below the alignment {alignment:#x}"
            ),
            ConstraintsError::BoundaryBelowAlignment { mask, alignment } => write!(
                f,
                "segment boundary {:#x} is below the alignment {alignment:#x}",
                mask.wrapping_add(1)
            ),
        }
    }
}

impl core::error::Error for ConstraintsError {}

/// Why a [`RangeBuilder`](crate::RangeBuilder) rejected an input range.
///
/// `index` is always the position of the offending *input* (the n-th call to `push`),
/// so a driver can point at the bio segment or page that caused it. A rejected push
/// leaves the builder exactly as it was before the call.
///
/// ```
/// use physvec::{BuildError, DmaConstraints, PhysRange, PhysVec, RangeBuilder};
/// let c = DmaConstraints::new().with_alignment(512).unwrap();
/// let mut b = RangeBuilder::new(c, PhysVec::new()).unwrap();
/// let e = b.push(PhysRange::new(0x1001, 0x200)).unwrap_err();
/// assert_eq!(e, BuildError::Unaligned { index: 0, addr: 0x1001, alignment: 512 });
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// The input starts at an address that is not a multiple of the required alignment.
    Unaligned {
        /// Input index.
        index: usize,
        /// The start address.
        addr: u64,
        /// The required alignment in bytes.
        alignment: u64,
    },
    /// Some byte of the input lies above the DMA mask.
    AboveDmaMask {
        /// Input index.
        index: usize,
        /// The last byte address of the input.
        last: u64,
        /// The highest reachable address.
        mask: u64,
    },
    /// Accepting the input would need more than `max_segments` output segments.
    TooManySegments {
        /// Input index.
        index: usize,
        /// The limit.
        max_segments: usize,
    },
    /// The output container has no room for the segments this input needs.
    CapacityExceeded {
        /// Input index.
        index: usize,
        /// How many more segments the input needed.
        needed: usize,
        /// How many slots were left.
        available: usize,
    },
    /// The total length would exceed `u64::MAX` bytes.
    TotalOverflow {
        /// Input index.
        index: usize,
    },
    /// The input itself is not a valid range (raw `addr`/`len` pushes).
    InvalidRange {
        /// Input index.
        index: usize,
        /// What was wrong with it.
        error: RangeError,
    },
}

impl BuildError {
    /// The index of the input that was rejected.
    ///
    /// ```
    /// use physvec::BuildError;
    /// assert_eq!(BuildError::TotalOverflow { index: 3 }.index(), 3);
    /// ```
    pub fn index(&self) -> usize {
        match *self {
            BuildError::Unaligned { index, .. }
            | BuildError::AboveDmaMask { index, .. }
            | BuildError::TooManySegments { index, .. }
            | BuildError::CapacityExceeded { index, .. }
            | BuildError::TotalOverflow { index }
            | BuildError::InvalidRange { index, .. } => index,
        }
    }
}

impl BuildError {
    /// A stable snake_case name for the variant (what the tool prints as `error.kind`).
    ///
    /// ```
    /// # use physvec::*;
    /// let mut b = RangeBuilder::new(DmaConstraints::new().with_dma_mask(physvec::DmaMask::BITS_32), PhysVec::new()).unwrap();
    /// assert_eq!(b.push_raw(1 << 40, 1).unwrap_err().kind(), "above_dma_mask");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            BuildError::Unaligned { .. } => "unaligned",
            BuildError::AboveDmaMask { .. } => "above_dma_mask",
            BuildError::TooManySegments { .. } => "too_many_segments",
            BuildError::CapacityExceeded { .. } => "capacity_exceeded",
            BuildError::TotalOverflow { .. } => "length_overflow",
            BuildError::InvalidRange { error, .. } => error.kind(),
        }
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BuildError::Unaligned {
                index,
                addr,
                alignment,
            } => write!(
                f,
                "input {index}: start {addr:#x} is not aligned to {alignment:#x}"
            ),
            BuildError::AboveDmaMask { index, last, mask } => write!(
                f,
                "input {index}: byte {last:#x} is above the DMA mask {mask:#x}"
            ),
            BuildError::TooManySegments {
                index,
                max_segments,
            } => write!(
                f,
                "input {index}: would exceed the limit of {max_segments} segments"
            ),
            BuildError::CapacityExceeded {
                index,
                needed,
                available,
            } => write!(
                f,
                "input {index}: needs {needed} more segments, container has room for {available}"
            ),
            BuildError::TotalOverflow { index } => {
                write!(f, "input {index}: total length exceeds u64::MAX bytes")
            }
            BuildError::InvalidRange { index, error } => write!(f, "input {index}: {error}"),
        }
    }
}

impl core::error::Error for BuildError {}

error_info!(AddrError);
error_info!(RangeError);
error_info!(ViewError, |e| match *e {
    ViewError::TotalOverflow { index } => Some(Position::index(index)),
    _ => None,
});
error_info!(ConstraintsError);
error_info!(BuildError, |e| Some(Position::index(e.index())));

impl<T: fmt::Debug> ErrorInfo for CapacityError<T> {
    fn kind(&self) -> &'static str {
        "capacity_exceeded"
    }
}

impl ErrorInfo for TotalLenOverflow {
    fn kind(&self) -> &'static str {
        "length_overflow"
    }
}
