//! Device constraints on DMA segments: [`DmaConstraints`], modelled on the kernel's
//! `struct device_dma_parameters` and block-queue limits (`max_segment_size`,
//! `seg_boundary_mask`, `dma_mask`, `dma_alignment`, `max_segments`).

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

use crate::error::ConstraintsError;
use crate::mask::DmaMask;

/// What a device accepts in one scatter-gather segment and one I/O.
///
/// # Invariants (checked by [`DmaConstraints::validate`])
/// - `max_segment_size > 0` bytes and `max_segments > 0`;
/// - `segment_boundary_mask` is `2^k - 1`: no segment may contain two bytes whose
///   addresses differ above the mask bits (it may not cross a `2^k` boundary);
/// - `alignment` is a power of two in bytes, every segment *starts* on it, and it is no
///   larger than the boundary or `max_segment_size`;
/// - `dma_mask` is the highest address the device can reach ([`DmaMask`]).
///
/// # Examples
/// ```
/// use physvec::DmaConstraints;
/// // A typical NVMe controller: 4 GiB segment boundary, 32-bit mask device variant.
/// let c = DmaConstraints::new()
///     .with_max_segment_size(1 << 20)
///     .with_segment_boundary_mask(0xffff_ffff)
///     .with_dma_mask(physvec::DmaMask::BITS_32)
///     .with_max_segments(128);
/// assert!(c.validate().is_ok());
/// assert_eq!(c.dma_mask().get(), 0xffff_ffff);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DmaConstraints {
    max_segment_size: u64,
    segment_boundary_mask: u64,
    dma_mask: DmaMask,
    alignment: u64,
    max_segments: usize,
}

impl Default for DmaConstraints {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for DmaConstraints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DmaConstraints")
            .field(
                "max_segment_size",
                &format_args!("{:#x}", self.max_segment_size),
            )
            .field(
                "segment_boundary_mask",
                &format_args!("{:#x}", self.segment_boundary_mask),
            )
            .field("dma_mask", &self.dma_mask)
            .field("alignment", &format_args!("{:#x}", self.alignment))
            .field("max_segments", &self.max_segments)
            .finish()
    }
}

impl DmaConstraints {
    /// No limits at all: any segment size, no boundary, 64-bit mask, byte alignment,
    /// unlimited segments.
    ///
    /// ```
    /// let c = physvec::DmaConstraints::new();
    /// assert_eq!(c.max_segment_size(), u64::MAX);
    /// ```
    pub const fn new() -> Self {
        Self {
            max_segment_size: u64::MAX,
            segment_boundary_mask: u64::MAX,
            dma_mask: DmaMask::BITS_64,
            alignment: 1,
            max_segments: usize::MAX,
        }
    }

    /// The kernel's defaults for a device that sets nothing: 64 KiB segments
    /// (`BLK_MAX_SEGMENT_SIZE`), 4 GiB boundary (`BLK_SEG_BOUNDARY_MASK`), 32-bit mask,
    /// 128 segments (`BLK_MAX_SEGMENTS`), 512-byte alignment.
    ///
    /// ```
    /// let c = physvec::DmaConstraints::linux_default();
    /// assert_eq!(c.max_segment_size(), 65536);
    /// ```
    pub const fn linux_default() -> Self {
        Self {
            max_segment_size: 65536,
            segment_boundary_mask: 0xffff_ffff,
            dma_mask: DmaMask::BITS_32,
            alignment: 512,
            max_segments: 128,
        }
    }

    /// Sets the largest segment, in bytes.
    ///
    /// ```
    /// let c = physvec::DmaConstraints::new().with_max_segment_size(4096);
    /// assert_eq!(c.max_segment_size(), 4096);
    /// ```
    #[must_use]
    pub const fn with_max_segment_size(mut self, bytes: u64) -> Self {
        self.max_segment_size = bytes;
        self
    }

    /// Sets the boundary mask (`2^k - 1`) no segment may cross.
    ///
    /// ```
    /// let c = physvec::DmaConstraints::new().with_segment_boundary_mask(0xffff);
    /// assert_eq!(c.segment_boundary_mask(), 0xffff);
    /// ```
    #[must_use]
    pub const fn with_segment_boundary_mask(mut self, mask: u64) -> Self {
        self.segment_boundary_mask = mask;
        self
    }

    /// Sets the DMA mask: the highest reachable address (`dma_set_mask`).
    ///
    /// ```
    /// use physvec::{DmaConstraints, DmaMask};
    /// let c = DmaConstraints::new().with_dma_mask(DmaMask::new::<32>());
    /// assert_eq!(c.dma_mask().get(), 0xffff_ffff);
    /// ```
    #[must_use]
    pub const fn with_dma_mask(mut self, mask: DmaMask) -> Self {
        self.dma_mask = mask;
        self
    }

    /// Sets the required start alignment of every segment, in bytes.
    ///
    /// # Errors
    /// [`ConstraintsError::AlignmentNotPowerOfTwo`].
    ///
    /// ```
    /// let c = physvec::DmaConstraints::new().with_alignment(512).unwrap();
    /// assert_eq!(c.alignment(), 512);
    /// assert!(physvec::DmaConstraints::new().with_alignment(3).is_err());
    /// ```
    pub const fn with_alignment(mut self, bytes: u64) -> Result<Self, ConstraintsError> {
        if !bytes.is_power_of_two() {
            return Err(ConstraintsError::AlignmentNotPowerOfTwo { alignment: bytes });
        }
        self.alignment = bytes;
        Ok(self)
    }

    /// Sets the maximum number of segments per I/O.
    ///
    /// ```
    /// let c = physvec::DmaConstraints::new().with_max_segments(16);
    /// assert_eq!(c.max_segments(), 16);
    /// ```
    #[must_use]
    pub const fn with_max_segments(mut self, n: usize) -> Self {
        self.max_segments = n;
        self
    }

    /// Largest segment in bytes.
    ///
    /// ```
    /// assert_eq!(physvec::DmaConstraints::new().max_segment_size(), u64::MAX);
    /// ```
    pub const fn max_segment_size(&self) -> u64 {
        self.max_segment_size
    }

    /// The boundary mask.
    ///
    /// ```
    /// assert_eq!(physvec::DmaConstraints::new().segment_boundary_mask(), u64::MAX);
    /// ```
    pub const fn segment_boundary_mask(&self) -> u64 {
        self.segment_boundary_mask
    }

    /// The device's DMA mask.
    ///
    /// ```
    /// assert_eq!(physvec::DmaConstraints::new().dma_mask(), physvec::DmaMask::BITS_64);
    /// ```
    pub const fn dma_mask(&self) -> DmaMask {
        self.dma_mask
    }

    /// Required segment start alignment in bytes.
    ///
    /// ```
    /// assert_eq!(physvec::DmaConstraints::new().alignment(), 1);
    /// ```
    pub const fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Maximum segments per I/O.
    ///
    /// ```
    /// assert_eq!(physvec::DmaConstraints::new().max_segments(), usize::MAX);
    /// ```
    pub const fn max_segments(&self) -> usize {
        self.max_segments
    }

    /// The largest length a segment starting on an aligned address may have so that the
    /// next segment also starts aligned: `max_segment_size` rounded down to `alignment`.
    ///
    /// ```
    /// let c = physvec::DmaConstraints::new().with_max_segment_size(1000).with_alignment(512).unwrap();
    /// assert_eq!(c.effective_max_segment_size(), 512);
    /// ```
    pub const fn effective_max_segment_size(&self) -> u64 {
        self.max_segment_size & !self.alignment_mask()
    }

    /// `alignment - 1`, the offset bits a segment start must leave clear.
    // `alignment >= 1`: it is only ever set to 1, 512 or a power of two that
    // `with_alignment` checked.
    #[allow(clippy::arithmetic_side_effects)]
    pub(crate) const fn alignment_mask(&self) -> u64 {
        self.alignment - 1
    }

    /// Checks the invariants listed on the type.
    ///
    /// # Errors
    /// The first violated invariant, as a [`ConstraintsError`].
    ///
    /// ```
    /// use physvec::{ConstraintsError, DmaConstraints};
    /// let bad = DmaConstraints::new().with_segment_boundary_mask(0xf0f);
    /// assert_eq!(bad.validate(), Err(ConstraintsError::BoundaryMaskNotContiguous { mask: 0xf0f }));
    /// ```
    pub const fn validate(&self) -> Result<Self, ConstraintsError> {
        if self.max_segment_size == 0 {
            return Err(ConstraintsError::ZeroMaxSegmentSize);
        }
        if self.max_segments == 0 {
            return Err(ConstraintsError::ZeroMaxSegments);
        }
        // 2^k - 1  <=>  mask & (mask + 1) == 0 (u64::MAX included).
        if self.segment_boundary_mask & self.segment_boundary_mask.wrapping_add(1) != 0 {
            return Err(ConstraintsError::BoundaryMaskNotContiguous {
                mask: self.segment_boundary_mask,
            });
        }
        if !self.alignment.is_power_of_two() {
            return Err(ConstraintsError::AlignmentNotPowerOfTwo {
                alignment: self.alignment,
            });
        }
        if self.effective_max_segment_size() == 0 {
            return Err(ConstraintsError::MaxSegmentBelowAlignment {
                max_segment_size: self.max_segment_size,
                alignment: self.alignment,
            });
        }
        if self.segment_boundary_mask < self.alignment_mask() {
            return Err(ConstraintsError::BoundaryBelowAlignment {
                mask: self.segment_boundary_mask,
                alignment: self.alignment,
            });
        }
        Ok(*self)
    }

    /// How many bytes a segment starting at `addr` may hold before it would cross the
    /// segment boundary or exceed the effective maximum segment size.
    /// Always at least 1.
    ///
    /// ```
    /// let c = physvec::DmaConstraints::new().with_segment_boundary_mask(0xfff);
    /// assert_eq!(c.room_at(0x1f00), 0x100);
    /// ```
    pub const fn room_at(&self, addr: u64) -> u64 {
        let to_boundary = self.bytes_to_boundary(addr);
        let max = self.effective_max_segment_size();
        if to_boundary < max {
            to_boundary
        } else {
            max
        }
    }

    /// Bytes from `addr` up to the next segment boundary, `mask - (addr & mask) + 1`,
    /// saturated at `u64::MAX` (it is 2^64 only when the mask is `u64::MAX` and
    /// `addr == 0`).
    // `addr & mask <= mask`, so the subtraction cannot underflow.
    #[allow(clippy::arithmetic_side_effects)]
    const fn bytes_to_boundary(&self, addr: u64) -> u64 {
        (self.segment_boundary_mask - (addr & self.segment_boundary_mask)).saturating_add(1)
    }

    /// How many bytes the *last* segment of a run starting at `addr` may hold: up to the
    /// segment boundary and `max_segment_size` itself (no segment follows it, so its end
    /// need not be aligned). Always at least [`DmaConstraints::room_at`].
    ///
    /// ```
    /// let c = physvec::DmaConstraints::new().with_max_segment_size(1000).with_alignment(512).unwrap();
    /// assert_eq!((c.room_at(0), c.final_room_at(0)), (512, 1000));
    /// ```
    pub const fn final_room_at(&self, addr: u64) -> u64 {
        let to_boundary = self.bytes_to_boundary(addr);
        if to_boundary < self.max_segment_size {
            to_boundary
        } else {
            self.max_segment_size
        }
    }

    /// Whether `[addr, addr + len)` is a legal segment on its own: aligned start, under
    /// the mask, within the size limit and inside one boundary window.
    ///
    /// ```
    /// let c = physvec::DmaConstraints::new().with_max_segment_size(0x1000);
    /// assert!(c.segment_ok(0x1000, 0x1000));
    /// assert!(!c.segment_ok(0x1000, 0x1001));
    /// ```
    pub const fn segment_ok(&self, addr: u64, len: u64) -> bool {
        if len == 0 || addr & self.alignment_mask() != 0 || len > self.max_segment_size {
            return false;
        }
        // `len != 0` was checked above.
        #[allow(clippy::arithmetic_side_effects)]
        let last = addr.checked_add(len - 1);
        let Some(last) = last else {
            return false;
        };
        last <= self.dma_mask.get()
            && (addr & !self.segment_boundary_mask) == (last & !self.segment_boundary_mask)
    }
}

/// `DMA_BIT_MASK(bits)`: the mask of the low `bits` bits (all ones for 64 and above), as
/// the kernel's macro saturates. Prefer [`DmaMask::bits`], which refuses a bad width.
///
/// ```
/// assert_eq!(physvec::dma_bit_mask(32), 0xffff_ffff);
/// assert_eq!(physvec::dma_bit_mask(64), u64::MAX);
/// ```
pub const fn dma_bit_mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        // `bits < 64`: the shift is in range and its result is `>= 1`.
        #[allow(clippy::arithmetic_side_effects)]
        let mask = (1u64 << bits) - 1;
        mask
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
    fn validation() {
        assert!(DmaConstraints::new().validate().is_ok());
        assert!(DmaConstraints::linux_default().validate().is_ok());
        assert_eq!(
            DmaConstraints::new().with_max_segments(0).validate(),
            Err(ConstraintsError::ZeroMaxSegments)
        );
        let c = DmaConstraints::new()
            .with_alignment(4096)
            .unwrap()
            .with_segment_boundary_mask(0xff);
        assert!(matches!(
            c.validate(),
            Err(ConstraintsError::BoundaryBelowAlignment { .. })
        ));
        let c = DmaConstraints::new()
            .with_alignment(4096)
            .unwrap()
            .with_max_segment_size(100);
        assert!(matches!(
            c.validate(),
            Err(ConstraintsError::MaxSegmentBelowAlignment { .. })
        ));
    }

    #[test]
    fn room() {
        let c = DmaConstraints::new();
        assert_eq!(c.room_at(0), u64::MAX);
        let c = DmaConstraints::new()
            .with_segment_boundary_mask(0xffff)
            .with_max_segment_size(0x3000);
        assert_eq!(c.room_at(0xf000), 0x1000);
        assert_eq!(c.room_at(0x0), 0x3000);
        assert!(c.segment_ok(0xf000, 0x1000));
        assert!(!c.segment_ok(0xf000, 0x1001));
        assert!(!c.segment_ok(u64::MAX, 2));
    }
}
