//! [`IoPerm`]: the permissions of an I/O page-table leaf, shared by the software IOMMU
//! and the VT-d tables.
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

use super::{Attrs, DataDirection};

/// Permissions of an I/O page-table leaf (`IOMMU_READ`, `IOMMU_WRITE`, `IOMMU_MMIO`).
///
/// ```
/// use physvec::map::{Attrs, DataDirection, IoPerm};
/// let p = IoPerm::for_transfer(DataDirection::ToDevice, Attrs::empty());
/// assert!(p.contains(IoPerm::READ) && !p.contains(IoPerm::WRITE));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct IoPerm(u8);

impl IoPerm {
    /// The device may read (DMA to the device).
    pub const READ: IoPerm = IoPerm(1);
    /// The device may write (DMA from the device).
    pub const WRITE: IoPerm = IoPerm(2);
    /// Device memory (P2P through a host bridge): uncached.
    pub const MMIO: IoPerm = IoPerm(4);

    /// The permissions a transfer needs.
    pub const fn for_transfer(dir: DataDirection, attrs: Attrs) -> Self {
        let mut bits = 0;
        if dir.device_reads() {
            bits |= 1;
        }
        if dir.device_writes() {
            bits |= 2;
        }
        if attrs.contains(Attrs::MMIO) {
            bits |= 4;
        }
        IoPerm(bits)
    }

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: IoPerm) -> bool {
        self.0 & other.0 == other.0
    }

    /// Raw bits (`READ = 1`, `WRITE = 2`, `MMIO = 4`).
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Permissions from raw bits; unknown bits are dropped.
    ///
    /// ```
    /// use physvec::map::IoPerm;
    /// assert_eq!(IoPerm::from_bits(0xff).bits(), 7);
    /// ```
    pub const fn from_bits(bits: u8) -> Self {
        IoPerm(bits & 7)
    }

    /// `self | other`.
    pub const fn union(self, other: IoPerm) -> Self {
        IoPerm(self.0 | other.0)
    }
}

impl core::ops::BitOr for IoPerm {
    type Output = IoPerm;
    fn bitor(self, rhs: IoPerm) -> IoPerm {
        self.union(rhs)
    }
}

impl fmt::Debug for IoPerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = if self.contains(IoPerm::READ) {
            "r"
        } else {
            "-"
        };
        let w = if self.contains(IoPerm::WRITE) {
            "w"
        } else {
            "-"
        };
        let m = if self.contains(IoPerm::MMIO) {
            "m"
        } else {
            "-"
        };
        write!(f, "IoPerm({r}{w}{m})")
    }
}
