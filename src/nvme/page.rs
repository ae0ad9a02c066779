//! The controller memory page size (CC.MPS): [`MemoryPageSize`].

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

use crate::addr::PageSize;

/// The memory page size a controller was enabled with: 2^(12 + CC.MPS) bytes, a power of
/// two from 4 KiB to 128 MiB (NVMe Base 1.4 §3.1.5, CC bits 10:7). PRP entries and PRP
/// list pages are measured in it.
///
/// # Invariants
/// `4096 <= bytes <= 2^27` and `bytes` is a power of two.
///
/// # Examples
/// ```
/// use physvec::nvme::MemoryPageSize;
/// let mps = MemoryPageSize::new(4096).unwrap();
/// assert_eq!((mps.get(), mps.cc_mps(), mps.entries_per_list_page()), (4096, 0, 512));
/// assert_eq!(MemoryPageSize::from_cc_mps(4).unwrap().get(), 64 << 10);
/// assert!(MemoryPageSize::new(2048).is_err());
/// assert!(MemoryPageSize::new(6000).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemoryPageSize(PageSize);

/// A memory page size outside 4 KiB..=128 MiB or not a power of two.
///
/// ```
/// let e = physvec::nvme::MemoryPageSize::new(3).unwrap_err();
/// assert_eq!((e.bytes, e.kind()), (3, "invalid_page_size"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidPageSize {
    /// The rejected size in bytes.
    pub bytes: u64,
}

impl InvalidPageSize {
    /// Stable name: `invalid_page_size`.
    pub const fn kind(&self) -> &'static str {
        "invalid_page_size"
    }
}

impl fmt::Display for InvalidPageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "memory page size {:#x} is not a power of two from 4 KiB to 128 MiB",
            self.bytes
        )
    }
}

impl core::error::Error for InvalidPageSize {}

impl MemoryPageSize {
    /// 4 KiB, CC.MPS = 0 (what Linux always uses).
    pub const SIZE_4K: Self = Self(PageSize::SIZE_4K);
    /// The smallest size, 4 KiB.
    pub const MIN_BYTES: u64 = 1 << 12;
    /// The largest size, 128 MiB (CC.MPS = 15).
    pub const MAX_BYTES: u64 = 1 << 27;

    /// A page size of `bytes`.
    ///
    /// # Errors
    /// [`InvalidPageSize`] unless `bytes` is a power of two in 4 KiB..=128 MiB.
    pub const fn new(bytes: u64) -> Result<Self, InvalidPageSize> {
        if bytes < Self::MIN_BYTES || bytes > Self::MAX_BYTES || !bytes.is_power_of_two() {
            return Err(InvalidPageSize { bytes });
        }
        match PageSize::new(bytes) {
            Ok(p) => Ok(Self(p)),
            Err(_) => Err(InvalidPageSize { bytes }),
        }
    }

    /// The page size selected by CC.MPS (`2^(12 + mps)`).
    ///
    /// # Errors
    /// [`InvalidPageSize`] when `mps > 15`.
    pub const fn from_cc_mps(mps: u8) -> Result<Self, InvalidPageSize> {
        if mps > 15 {
            return Err(InvalidPageSize { bytes: 0 });
        }
        // `mps <= 15` (checked above): the shift is at most 27.
        #[allow(clippy::arithmetic_side_effects)]
        let bytes = 1 << (12 + mps as u32);
        Self::new(bytes)
    }

    /// Size in bytes.
    pub const fn get(self) -> u64 {
        self.0.get()
    }

    /// The same size as a [`PageSize`].
    pub const fn page_size(self) -> PageSize {
        self.0
    }

    /// The CC.MPS field value (`log2(bytes) - 12`).
    // `shift() >= 12`: every constructor refuses sizes below 4 KiB.
    #[allow(clippy::arithmetic_side_effects)]
    pub const fn cc_mps(self) -> u8 {
        (self.0.shift() - 12) as u8
    }

    /// `bytes - 1`: the offset bits of a PRP entry.
    // A page size is a power of two, so `>= 1`.
    #[allow(clippy::arithmetic_side_effects)]
    pub const fn mask(self) -> u64 {
        self.0.get() - 1
    }

    /// PRP entries (8 bytes each) in one list page.
    pub const fn entries_per_list_page(self) -> u64 {
        self.0.get() / 8
    }
}

impl fmt::Display for MemoryPageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&crate::fmt::Bytes(self.get()), f)
    }
}

crate::error::error_info!(InvalidPageSize);
