//! [`VfioError`](super::VfioError): what a VFIO call or the mapper's books refused, with the addresses.
#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

use std::fmt;
use std::format;
use std::string::String;

/// An error of the VFIO mapper: what failed, and at which addresses.
///
/// ```
/// use physvec::map::vfio::VfioError;
/// let e = VfioError::NotRegistered { addr: 0x1000, len: 8 };
/// assert_eq!(e.kind(), "not_registered");
/// assert_eq!(e.to_string(), "virtual range 0x1000+0x8 is not inside a registered region");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum VfioError {
    /// Opening the container, group or device failed (the VFIO library's message).
    Open {
        /// What was being opened.
        what: &'static str,
        /// The underlying error.
        detail: String,
    },
    /// `VFIO_IOMMU_MAP_DMA` failed.
    MapDma {
        /// Process-virtual address.
        vaddr: u64,
        /// IOVA.
        iova: u64,
        /// Bytes.
        len: u64,
        /// The errno (`EEXIST`: overlapping IOVA; `ENOMEM`: memlock limit; `EFAULT`: bad
        /// vaddr), or `None` when the library refused before the call.
        errno: Option<i32>,
    },
    /// `VFIO_IOMMU_UNMAP_DMA` failed or unmapped a different amount than asked.
    UnmapDma {
        /// IOVA.
        iova: u64,
        /// Bytes asked for.
        len: u64,
        /// The errno, or `None` when the kernel unmapped a different size (for example
        /// nothing, because nothing was mapped there).
        errno: Option<i32>,
    },
    /// A registered region or a range was empty.
    Empty,
    /// A registered region must start and end on the granule (the host page size).
    Unaligned {
        /// Start.
        addr: u64,
        /// Length.
        len: u64,
        /// The granule in bytes.
        granule: u64,
    },
    /// The region overlaps one already registered.
    Overlap {
        /// Start.
        addr: u64,
        /// Length.
        len: u64,
    },
    /// A virtual range is not inside one registered region (registered mode).
    NotRegistered {
        /// Start.
        addr: u64,
        /// Length.
        len: u64,
    },
    /// No free IOVA space of this size.
    IovaExhausted {
        /// Bytes asked for.
        len: u64,
    },
    /// `addr + len` passes 2^64.
    AddressOverflow {
        /// Start.
        addr: u64,
        /// Length.
        len: u64,
    },
    /// [`VfioMapper::verify_released`](super::VfioMapper::verify_released) found a mapping still live in the kernel.
    StillMapped {
        /// IOVA.
        iova: u64,
        /// Bytes.
        len: u64,
    },
    /// The configuration leaves no usable IOVA space.
    InvalidConfig {
        /// What is wrong.
        what: &'static str,
    },
}

impl VfioError {
    /// A stable snake_case name of the variant.
    ///
    /// ```
    /// assert_eq!(physvec::map::vfio::VfioError::Empty.kind(), "empty");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            VfioError::Open { .. } => "open",
            VfioError::MapDma { .. } => "map_dma",
            VfioError::UnmapDma { .. } => "unmap_dma",
            VfioError::Empty => "empty",
            VfioError::Unaligned { .. } => "unaligned",
            VfioError::Overlap { .. } => "overlap",
            VfioError::NotRegistered { .. } => "not_registered",
            VfioError::IovaExhausted { .. } => "iova_exhausted",
            VfioError::AddressOverflow { .. } => "address_overflow",
            VfioError::StillMapped { .. } => "still_mapped",
            VfioError::InvalidConfig { .. } => "invalid_config",
        }
    }
}

impl fmt::Display for VfioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errno = |e: &Option<i32>| match e {
            Some(n) => format!("errno {n} ({})", std::io::Error::from_raw_os_error(*n)),
            None => "size mismatch".into(),
        };
        match self {
            VfioError::Open { what, detail } => write!(f, "cannot open VFIO {what}: {detail}"),
            VfioError::MapDma {
                vaddr,
                iova,
                len,
                errno: e,
            } => write!(
                f,
                "VFIO_IOMMU_MAP_DMA vaddr {vaddr:#x} -> iova {iova:#x} +{len:#x} failed: {}",
                errno(e)
            ),
            VfioError::UnmapDma {
                iova,
                len,
                errno: e,
            } => write!(
                f,
                "VFIO_IOMMU_UNMAP_DMA iova {iova:#x} +{len:#x} failed: {}",
                errno(e)
            ),
            VfioError::Empty => f.write_str("empty range"),
            VfioError::Unaligned { addr, len, granule } => write!(
                f,
                "region {addr:#x}+{len:#x} is not aligned to the {granule:#x}-byte granule"
            ),
            VfioError::Overlap { addr, len } => {
                write!(f, "region {addr:#x}+{len:#x} overlaps a registered region")
            }
            VfioError::NotRegistered { addr, len } => write!(
                f,
                "virtual range {addr:#x}+{len:#x} is not inside a registered region"
            ),
            VfioError::IovaExhausted { len } => write!(f, "no free IOVA space for {len:#x} bytes"),
            VfioError::AddressOverflow { addr, len } => {
                write!(
                    f,
                    "range {addr:#x}+{len:#x} passes the end of the address space"
                )
            }
            VfioError::StillMapped { iova, len } => {
                write!(f, "iova {iova:#x}+{len:#x} is still mapped in the kernel")
            }
            VfioError::InvalidConfig { what } => write!(f, "invalid VFIO mapper config: {what}"),
        }
    }
}

impl std::error::Error for VfioError {}

crate::error::error_info!(VfioError);
