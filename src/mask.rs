//! [`DmaMask`]: the highest DMA address a device can emit, as the kernel's
//! `dma_set_mask(dev, DMA_BIT_MASK(n))` states it.
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

use crate::addr::{AddrSpace, DmaAddr};
use crate::range::Range;

/// A device's DMA addressing capability: the mask of the low `n` bits, `2^n - 1`, for
/// `1 <= n <= 64`.
///
/// # Invariants
/// The value is always of the form `2^n - 1` with `n` in `1..=64`, so it can never be
/// confused with an offset or an arbitrary address (the reason `DirectMapper::new`
/// used to take two swappable `u64`s). Build it from a bit count with
/// [`DmaMask::bits`] (checked at run time) or [`DmaMask::new`] (checked at compile
/// time), as Rust-for-Linux's `DmaMask` does.
///
/// # Examples
/// ```
/// use physvec::{DmaAddr, DmaMask};
/// let m = DmaMask::bits(32)?;
/// assert_eq!((m.get(), m.width()), (0xffff_ffff, 32));
/// assert!(m.reaches(DmaAddr::new(0xffff_ffff)));
/// assert!(!m.reaches(DmaAddr::new(0x1_0000_0000)));
/// assert_eq!(DmaMask::new::<64>(), DmaMask::BITS_64);
/// assert!(DmaMask::bits(65).is_err());          // no silent saturation
/// assert!(DmaMask::from_mask(0xfff0).is_err()); // not 2^n - 1
/// # Ok::<(), physvec::DmaMaskError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DmaMask(u64);

/// A bit count or mask value that is not a DMA mask.
///
/// ```
/// use physvec::{DmaMask, DmaMaskError};
/// assert_eq!(DmaMask::bits(0), Err(DmaMaskError::InvalidWidth { bits: 0 }));
/// assert_eq!(DmaMask::from_mask(6), Err(DmaMaskError::NotLowBits { mask: 6 }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaMaskError {
    /// The width is 0 or above 64 bits.
    InvalidWidth {
        /// The width asked for.
        bits: u32,
    },
    /// The value is not `2^n - 1` for any `n` in `1..=64`.
    NotLowBits {
        /// The value given.
        mask: u64,
    },
}

impl DmaMaskError {
    /// Stable snake_case name of the variant.
    ///
    /// ```
    /// assert_eq!(physvec::DmaMask::bits(99).unwrap_err().kind(), "invalid_dma_mask_width");
    /// ```
    pub const fn kind(&self) -> &'static str {
        match self {
            DmaMaskError::InvalidWidth { .. } => "invalid_dma_mask_width",
            DmaMaskError::NotLowBits { .. } => "invalid_dma_mask",
        }
    }
}

impl fmt::Display for DmaMaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DmaMaskError::InvalidWidth { bits } => {
                write!(f, "a DMA mask of {bits} bits: the width must be 1 to 64")
            }
            DmaMaskError::NotLowBits { mask } => {
                write!(f, "{mask:#x} is not a DMA mask (2^n - 1 for n = 1..64)")
            }
        }
    }
}

impl core::error::Error for DmaMaskError {}

impl DmaMask {
    /// `DMA_BIT_MASK(32)`.
    pub const BITS_32: DmaMask = DmaMask(0xffff_ffff);
    /// `DMA_BIT_MASK(64)`: the whole 64-bit space.
    pub const BITS_64: DmaMask = DmaMask(u64::MAX);

    /// The mask of the low `N` bits, checked at compile time.
    ///
    /// ```
    /// assert_eq!(physvec::DmaMask::new::<40>().get(), (1 << 40) - 1);
    /// ```
    ///
    /// A width outside `1..=64` does not compile:
    /// ```compile_fail
    /// let _ = physvec::DmaMask::new::<65>();
    /// ```
    pub const fn new<const N: u32>() -> Self {
        const {
            assert!(N >= 1 && N <= 64, "a DMA mask is 1 to 64 bits wide");
        }
        // 1 <= N <= 64 is asserted above, so the shift is 0..=63.
        Self(u64::MAX >> 64u32.saturating_sub(N))
    }

    /// The mask of the low `bits` bits.
    ///
    /// # Errors
    /// [`DmaMaskError::InvalidWidth`] unless `1 <= bits <= 64`.
    ///
    /// ```
    /// assert_eq!(physvec::DmaMask::bits(48).unwrap().get(), (1 << 48) - 1);
    /// ```
    pub const fn bits(bits: u32) -> Result<Self, DmaMaskError> {
        match 64u32.checked_sub(bits) {
            Some(shift) if bits >= 1 => Ok(Self(u64::MAX >> shift)),
            _ => Err(DmaMaskError::InvalidWidth { bits }),
        }
    }

    /// Checks a mask value (`2^n - 1`, `n >= 1`), for example one read from a config.
    ///
    /// # Errors
    /// [`DmaMaskError::NotLowBits`] for 0 or a value with a zero bit below its top bit.
    ///
    /// ```
    /// use physvec::DmaMask;
    /// assert_eq!(DmaMask::from_mask(0xffff_ffff), Ok(DmaMask::BITS_32));
    /// assert!(DmaMask::from_mask(0).is_err());
    /// ```
    pub const fn from_mask(mask: u64) -> Result<Self, DmaMaskError> {
        // `2^n - 1` with n >= 1: non-zero and `mask + 1` is a power of two (or 2^64).
        if mask != 0 && mask & mask.wrapping_add(1) == 0 {
            Ok(Self(mask))
        } else {
            Err(DmaMaskError::NotLowBits { mask })
        }
    }

    /// The mask value, `2^width - 1`: the highest reachable DMA address.
    ///
    /// ```
    /// assert_eq!(physvec::DmaMask::BITS_32.get(), u32::MAX as u64);
    /// ```
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The width in bits (1 to 64).
    ///
    /// ```
    /// assert_eq!(physvec::DmaMask::BITS_64.width(), 64);
    /// ```
    pub const fn width(self) -> u32 {
        // The value is 2^n - 1 with n >= 1, so there are 64 - n leading zeros.
        u64::BITS.saturating_sub(self.0.leading_zeros())
    }

    /// The highest reachable DMA address.
    ///
    /// ```
    /// assert_eq!(physvec::DmaMask::BITS_32.highest().as_u64(), 0xffff_ffff);
    /// ```
    pub const fn highest(self) -> DmaAddr {
        DmaAddr::new(self.0)
    }

    /// Whether the device can emit `addr`.
    ///
    /// ```
    /// use physvec::{DmaAddr, DmaMask};
    /// assert!(DmaMask::BITS_32.reaches(DmaAddr::new(0x1000)));
    /// ```
    pub const fn reaches(self, addr: DmaAddr) -> bool {
        addr.as_u64() <= self.0
    }

    /// Whether every byte of `range` is reachable (its last byte is under the mask).
    /// Generic over the space so a builder can check physical ranges that will be
    /// mapped one to one.
    ///
    /// ```
    /// use physvec::{DmaMask, DmaRange};
    /// assert!(DmaMask::BITS_32.covers(DmaRange::new(0xffff_f000, 0x1000)));
    /// assert!(!DmaMask::BITS_32.covers(DmaRange::new(0xffff_f000, 0x1001)));
    /// ```
    pub const fn covers<S: AddrSpace>(self, range: Range<S>) -> bool {
        range.last().as_u64() <= self.0
    }
}

impl Default for DmaMask {
    /// [`DmaMask::BITS_64`].
    fn default() -> Self {
        Self::BITS_64
    }
}

/// `DmaMask(32 bits, 0xffffffff)`.
impl fmt::Debug for DmaMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DmaMask({} bits, {:#x})", self.width(), self.0)
    }
}

/// `32-bit (0xffffffff)`.
///
/// ```
/// assert_eq!(physvec::DmaMask::BITS_32.to_string(), "32-bit (0xffffffff)");
/// ```
impl fmt::Display for DmaMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-bit ({:#x})", self.width(), self.0)
    }
}

impl From<DmaMask> for u64 {
    /// The mask value.
    fn from(m: DmaMask) -> u64 {
        m.0
    }
}

impl TryFrom<u64> for DmaMask {
    type Error = DmaMaskError;
    /// As [`DmaMask::from_mask`].
    fn try_from(mask: u64) -> Result<Self, DmaMaskError> {
        Self::from_mask(mask)
    }
}

crate::error::error_info!(DmaMaskError);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_width_round_trips() {
        for n in 1..=64u32 {
            let m = DmaMask::bits(n).unwrap();
            assert_eq!(m.width(), n);
            assert_eq!(DmaMask::from_mask(m.get()), Ok(m));
            assert_eq!(m.get().count_ones(), n);
        }
        for bad in [0u32, 65, 100, u32::MAX] {
            assert_eq!(
                DmaMask::bits(bad),
                Err(DmaMaskError::InvalidWidth { bits: bad })
            );
        }
        for bad in [0u64, 2, 0xfffe, 0x8000_0000_0000_0000, 0xffff_0000] {
            assert!(DmaMask::from_mask(bad).is_err(), "{bad:#x}");
        }
    }
}
