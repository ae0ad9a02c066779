//! Typed addresses: [`PhysAddr`] (CPU physical) and [`DmaAddr`] (bus / IOVA), and
//! [`PageSize`], the power-of-two unit used for pages and alignments.
//!
//! Both address types are `repr(transparent)` wrappers around a `u64` that differ only in
//! their address-space marker, so a physical address can never be handed to a device by
//! accident: the only ways from one space to the other are a mapper
//! ([`crate::map`]) or an explicit, greppable [`Addr::cast`].
//!
//! All arithmetic is checked: an operation that would wrap around 2^64 returns
//! [`AddrError::Overflow`] instead.

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
use core::hash::{Hash, Hasher};
use core::marker::PhantomData;

use crate::error::AddrError;

mod sealed {
    pub trait Sealed {}
}

/// An address space: the marker that keeps [`PhysAddr`] and [`DmaAddr`] apart.
///
/// This trait is sealed; the crate defines exactly three spaces: [`Phys`], [`Dma`] and
/// [`Virt`] (process-virtual addresses, what a VFIO user-space driver maps).
pub trait AddrSpace:
    sealed::Sealed + Copy + Eq + Ord + Hash + fmt::Debug + Send + Sync + 'static
{
    /// Short name used in `Debug` output (`"phys"` or `"dma"`).
    const NAME: &'static str;
}

/// Marker for CPU physical addresses (what the MMU maps, what `/proc/self/pagemap` reports).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Phys {}

/// Marker for DMA addresses: bus addresses or IOVAs, as a device sees memory.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Dma {}

/// Marker for CPU virtual addresses: a pointer in the current process, as
/// `VFIO_IOMMU_MAP_DMA` takes it (`vaddr`), or a kernel pointer such as the address of a
/// `struct scatterlist` table. Neither physical nor device-visible: only a virtual-space
/// mapper (the VFIO mapper, feature `vfio`) turns it into a [`DmaAddr`].
///
/// ```
/// use physvec::{VirtAddr, VirtRange};
/// let v = VirtRange::new(0x7f00_0000_1000, 0x2000);
/// assert_eq!(format!("{:?}", v.addr()), "virt:0x7f0000001000");
/// assert_eq!(v.end(), Some(VirtAddr::new(0x7f00_0000_3000)));
/// ```
///
/// A virtual range is a different type from a physical one, so it cannot be handed to an
/// API that wants physical memory (a [`DmaMapper`](crate::map::DmaMapper), the builder's
/// physical sink …):
///
/// ```compile_fail,E0308
/// use physvec::map::{DataDirection, DirectMapper, DmaMapper, Attrs};
/// use physvec::VirtRange;
/// let m = DirectMapper::new(0, physvec::DmaMask::BITS_64);
/// // error[E0308]: expected `Range<Phys>`, found `Range<Virt>`
/// let _ = m.map_phys(VirtRange::new(0x1000, 0x1000), DataDirection::ToDevice, Attrs::empty());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Virt {}

impl sealed::Sealed for Phys {}
impl sealed::Sealed for Dma {}
impl sealed::Sealed for Virt {}
impl AddrSpace for Virt {
    const NAME: &'static str = "virt";
}
impl AddrSpace for Phys {
    const NAME: &'static str = "phys";
}
impl AddrSpace for Dma {
    const NAME: &'static str = "dma";
}

/// A 64-bit address in the address space `S`.
///
/// # Invariants
/// None beyond being a `u64`: every value is a valid address. Arithmetic never wraps.
///
/// # Examples
/// ```
/// use physvec::{PageSize, PhysAddr};
/// let a = PhysAddr::new(0x1_2345);
/// assert_eq!(a.align_down(PageSize::SIZE_4K), PhysAddr::new(0x1_2000));
/// assert_eq!(a.page_offset(PageSize::SIZE_4K), 0x345);
/// assert!(PhysAddr::new(u64::MAX).checked_add(1).is_err());
/// ```
#[repr(transparent)]
pub struct Addr<S: AddrSpace> {
    value: u64,
    _space: PhantomData<S>,
}

/// A CPU physical address.
///
/// ```
/// use physvec::PhysAddr;
/// assert_eq!(PhysAddr::new(0x1000).as_u64(), 0x1000);
/// ```
pub type PhysAddr = Addr<Phys>;

/// A DMA (bus or IOVA) address as a device sees it.
///
/// ```
/// use physvec::DmaAddr;
/// assert_eq!(format!("{:?}", DmaAddr::new(0x1000)), "dma:0x1000");
/// ```
pub type DmaAddr = Addr<Dma>;

/// A process-virtual address (a pointer in this process, as a number).
///
/// ```
/// use physvec::VirtAddr;
/// let buf = [0u8; 16];
/// let v = VirtAddr::from_ptr(buf.as_ptr());
/// assert_eq!(v.as_u64(), buf.as_ptr() as u64);
/// ```
pub type VirtAddr = Addr<Virt>;

impl Addr<Virt> {
    /// The virtual address of `ptr` (no dereference, no provenance kept).
    ///
    /// ```
    /// let x = 5u32;
    /// let v = physvec::VirtAddr::from_ptr(&x);
    /// assert_eq!(v.as_u64(), &x as *const u32 as u64);
    /// ```
    #[inline]
    pub fn from_ptr<T>(ptr: *const T) -> Self {
        // `usize` is at most 64 bits on every target the crate supports.
        Self::new(ptr as usize as u64)
    }
}

const _: () = assert!(core::mem::size_of::<PhysAddr>() == 8);
const _: () = assert!(core::mem::size_of::<DmaAddr>() == 8);

// SAFETY: `Addr<S>` is `repr(transparent)` over a `u64` (the PhantomData is a ZST with
// alignment 1), so every bit pattern is valid and there is no padding.
unsafe impl<S: AddrSpace> bytemuck::Zeroable for Addr<S> {}
// SAFETY: as above; `Addr<S>` is `Copy` and `'static` because `S` is.
unsafe impl<S: AddrSpace> bytemuck::Pod for Addr<S> {}

impl<S: AddrSpace> Clone for Addr<S> {
    #[inline]
    fn clone(&self) -> Self {
        *self
    }
}
impl<S: AddrSpace> Copy for Addr<S> {}
impl<S: AddrSpace> PartialEq for Addr<S> {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}
impl<S: AddrSpace> Eq for Addr<S> {}
impl<S: AddrSpace> PartialOrd for Addr<S> {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<S: AddrSpace> Ord for Addr<S> {
    #[inline]
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        self.value.cmp(&other.value)
    }
}
impl<S: AddrSpace> Hash for Addr<S> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.value.hash(state)
    }
}
impl<S: AddrSpace> Default for Addr<S> {
    fn default() -> Self {
        Self::new(0)
    }
}
impl<S: AddrSpace> fmt::Debug for Addr<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{:#x}", S::NAME, self.value)
    }
}
impl<S: AddrSpace> fmt::Display for Addr<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.value)
    }
}
impl<S: AddrSpace> fmt::LowerHex for Addr<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.value, f)
    }
}
/// ```
/// assert_eq!(format!("{:#X}", physvec::DmaAddr::new(0xabc)), "0xABC");
/// ```
impl<S: AddrSpace> fmt::UpperHex for Addr<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::UpperHex::fmt(&self.value, f)
    }
}

/// The raw value, for writing into a register or descriptor.
///
/// ```
/// let raw: u64 = physvec::DmaAddr::new(0x1000).into();
/// assert_eq!(raw, 0x1000);
/// ```
impl<S: AddrSpace> From<Addr<S>> for u64 {
    #[inline]
    fn from(a: Addr<S>) -> u64 {
        a.value
    }
}

impl<S: AddrSpace> Addr<S> {
    /// The address zero.
    pub const ZERO: Self = Self::new(0);

    /// Wraps a raw `u64` as an address in space `S`.
    ///
    /// ```
    /// use physvec::DmaAddr;
    /// assert_eq!(DmaAddr::new(42).as_u64(), 42);
    /// ```
    #[inline]
    pub const fn new(value: u64) -> Self {
        Self {
            value,
            _space: PhantomData,
        }
    }

    /// The raw value.
    ///
    /// ```
    /// use physvec::PhysAddr;
    /// assert_eq!(PhysAddr::new(7).as_u64(), 7);
    /// ```
    #[inline]
    pub const fn as_u64(self) -> u64 {
        self.value
    }

    /// Reinterprets the address in another address space.
    ///
    /// This is the explicit escape hatch for identity-mapped systems (no IOMMU, `dma ==
    /// phys`) and for decoders that hand bus addresses to an emulator's memory model. Use
    /// a mapper when a real translation exists.
    ///
    /// ```
    /// use physvec::{DmaAddr, PhysAddr};
    /// let d: DmaAddr = PhysAddr::new(0x1000).cast();
    /// assert_eq!(d.as_u64(), 0x1000);
    /// ```
    #[inline]
    pub const fn cast<T: AddrSpace>(self) -> Addr<T> {
        Addr::new(self.value)
    }

    /// `self + bytes`, or [`AddrError::Overflow`] if the sum passes `u64::MAX`.
    ///
    /// # Errors
    /// [`AddrError::Overflow`] carrying both operands.
    ///
    /// ```
    /// use physvec::PhysAddr;
    /// assert_eq!(PhysAddr::new(0x1000).checked_add(0x10).unwrap(), PhysAddr::new(0x1010));
    /// assert!(PhysAddr::new(u64::MAX).checked_add(1).is_err());
    /// ```
    #[inline]
    pub const fn checked_add(self, bytes: u64) -> Result<Self, AddrError> {
        match self.value.checked_add(bytes) {
            Some(v) => Ok(Self::new(v)),
            None => Err(AddrError::Overflow {
                addr: self.value,
                delta: bytes,
            }),
        }
    }

    /// `self - bytes`, or [`AddrError::Underflow`] if the result would be negative.
    ///
    /// # Errors
    /// [`AddrError::Underflow`] carrying both operands.
    ///
    /// ```
    /// use physvec::DmaAddr;
    /// assert_eq!(DmaAddr::new(0x1010).checked_sub(0x10).unwrap(), DmaAddr::new(0x1000));
    /// assert!(DmaAddr::new(0).checked_sub(1).is_err());
    /// ```
    #[inline]
    pub const fn checked_sub(self, bytes: u64) -> Result<Self, AddrError> {
        match self.value.checked_sub(bytes) {
            Some(v) => Ok(Self::new(v)),
            None => Err(AddrError::Underflow {
                addr: self.value,
                delta: bytes,
            }),
        }
    }

    /// The distance in bytes from `base` up to `self`, or `None` if `self < base`.
    ///
    /// ```
    /// use physvec::PhysAddr;
    /// assert_eq!(PhysAddr::new(0x1800).offset_from(PhysAddr::new(0x1000)), Some(0x800));
    /// assert_eq!(PhysAddr::new(0x800).offset_from(PhysAddr::new(0x1000)), None);
    /// ```
    #[inline]
    pub const fn offset_from(self, base: Self) -> Option<u64> {
        self.value.checked_sub(base.value)
    }

    /// Rounds down to a multiple of `align`.
    ///
    /// ```
    /// use physvec::{PageSize, DmaAddr};
    /// assert_eq!(DmaAddr::new(0x1fff).align_down(PageSize::SIZE_4K), DmaAddr::new(0x1000));
    /// ```
    #[inline]
    pub const fn align_down(self, align: PageSize) -> Self {
        Self::new(self.value & !align.mask())
    }

    /// Rounds up to a multiple of `align`.
    ///
    /// # Errors
    /// [`AddrError::Overflow`] when the rounded value does not fit in 64 bits.
    ///
    /// ```
    /// use physvec::{PageSize, DmaAddr};
    /// assert_eq!(DmaAddr::new(0x1001).align_up(PageSize::SIZE_4K).unwrap(), DmaAddr::new(0x2000));
    /// assert!(DmaAddr::new(u64::MAX).align_up(PageSize::SIZE_4K).is_err());
    /// ```
    #[inline]
    pub const fn align_up(self, align: PageSize) -> Result<Self, AddrError> {
        if self.value & align.mask() == 0 {
            return Ok(self);
        }
        match self.align_down(align).checked_add(align.get()) {
            Ok(a) => Ok(a),
            Err(_) => Err(AddrError::Overflow {
                addr: self.value,
                delta: align.get(),
            }),
        }
    }

    /// Whether the address is a multiple of `align`.
    ///
    /// ```
    /// use physvec::{PageSize, PhysAddr};
    /// assert!(PhysAddr::new(0x2000).is_aligned(PageSize::SIZE_4K));
    /// assert!(!PhysAddr::new(0x2004).is_aligned(PageSize::SIZE_4K));
    /// ```
    #[inline]
    pub const fn is_aligned(self, align: PageSize) -> bool {
        self.value & align.mask() == 0
    }

    /// The byte offset inside the page of size `page` that holds this address.
    ///
    /// ```
    /// use physvec::{PageSize, PhysAddr};
    /// assert_eq!(PhysAddr::new(0x12345).page_offset(PageSize::SIZE_4K), 0x345);
    /// ```
    #[inline]
    pub const fn page_offset(self, page: PageSize) -> u64 {
        self.value & page.mask()
    }

    /// The page frame number: the address divided by the page size.
    ///
    /// ```
    /// use physvec::{PageSize, PhysAddr};
    /// assert_eq!(PhysAddr::new(0x12345).page_number(PageSize::SIZE_4K), 0x12);
    /// ```
    #[inline]
    pub const fn page_number(self, page: PageSize) -> u64 {
        self.value >> page.shift()
    }

    /// Splits the address into its page base and the offset inside that page.
    ///
    /// ```
    /// use physvec::{PageSize, PhysAddr};
    /// let (base, off) = PhysAddr::new(0x12345).split_page(PageSize::SIZE_4K);
    /// assert_eq!((base.as_u64(), off), (0x12000, 0x345));
    /// ```
    #[inline]
    pub const fn split_page(self, page: PageSize) -> (Self, u64) {
        (self.align_down(page), self.page_offset(page))
    }

    /// The address of page frame `pfn` for page size `page`.
    ///
    /// # Errors
    /// [`AddrError::Overflow`] when `pfn * page` does not fit in 64 bits.
    ///
    /// ```
    /// use physvec::{PageSize, PhysAddr};
    /// assert_eq!(PhysAddr::from_pfn(0x12, PageSize::SIZE_4K).unwrap(), PhysAddr::new(0x12000));
    /// assert!(PhysAddr::from_pfn(u64::MAX, PageSize::SIZE_4K).is_err());
    /// ```
    #[inline]
    pub const fn from_pfn(pfn: u64, page: PageSize) -> Result<Self, AddrError> {
        // `shift() <= 63` for a u64 power of two.
        #[allow(clippy::arithmetic_side_effects)]
        let top = 64 - page.shift();
        if page.shift() > 0 && pfn >> top != 0 {
            return Err(AddrError::PfnOverflow {
                pfn,
                page_size: page.get(),
            });
        }
        Ok(Self::new(pfn << page.shift()))
    }
}

/// A power-of-two size in bytes, used for pages (4 KiB, 2 MiB, an NVMe controller's
/// memory page size …) and for alignments (any power of two, including 1).
///
/// # Invariants
/// The value is a power of two: `1 <= size <= 2^63`.
///
/// # Examples
/// ```
/// use physvec::PageSize;
/// let p = PageSize::new(8192).unwrap();
/// assert_eq!(p.shift(), 13);
/// assert!(PageSize::new(3000).is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct PageSize(u64);

impl PageSize {
    /// 4 KiB, the x86 base page and the NVMe/IOMMU granule most devices use.
    pub const SIZE_4K: PageSize = PageSize(4096);
    /// 64 KiB.
    pub const SIZE_64K: PageSize = PageSize(64 << 10);
    /// 2 MiB, an x86 huge page and an I/O page-table level-2 leaf.
    pub const SIZE_2M: PageSize = PageSize(2 << 20);
    /// 1 GiB, an x86 gigantic page and an I/O page-table level-3 leaf.
    pub const SIZE_1G: PageSize = PageSize(1 << 30);

    /// A page size of `bytes` bytes.
    ///
    /// # Errors
    /// [`AddrError::NotPowerOfTwo`] when `bytes` is zero or not a power of two.
    ///
    /// ```
    /// use physvec::PageSize;
    /// assert_eq!(PageSize::new(4096).unwrap(), PageSize::SIZE_4K);
    /// assert!(PageSize::new(0).is_err());
    /// ```
    #[inline]
    pub const fn new(bytes: u64) -> Result<Self, AddrError> {
        if bytes.is_power_of_two() {
            Ok(PageSize(bytes))
        } else {
            Err(AddrError::NotPowerOfTwo { value: bytes })
        }
    }

    /// A page size of `1 << shift` bytes.
    ///
    /// # Errors
    /// [`AddrError::NotPowerOfTwo`] when `shift >= 64`.
    ///
    /// ```
    /// use physvec::PageSize;
    /// assert_eq!(PageSize::from_shift(21).unwrap(), PageSize::SIZE_2M);
    /// ```
    #[inline]
    pub const fn from_shift(shift: u32) -> Result<Self, AddrError> {
        if shift < 64 {
            Ok(PageSize(1 << shift))
        } else {
            Err(AddrError::NotPowerOfTwo { value: 0 })
        }
    }

    /// The size in bytes.
    ///
    /// ```
    /// assert_eq!(physvec::PageSize::SIZE_4K.get(), 4096);
    /// ```
    #[inline]
    pub const fn get(self) -> u64 {
        self.0
    }

    /// log2 of the size.
    ///
    /// ```
    /// assert_eq!(physvec::PageSize::SIZE_4K.shift(), 12);
    /// ```
    #[inline]
    pub const fn shift(self) -> u32 {
        self.0.trailing_zeros()
    }

    /// `size - 1`: the mask of the offset bits (the kernel's merge-boundary form).
    ///
    /// ```
    /// assert_eq!(physvec::PageSize::SIZE_4K.mask(), 0xfff);
    /// ```
    #[inline]
    // A page size is a power of two, so `>= 1`.
    #[allow(clippy::arithmetic_side_effects)]
    pub const fn mask(self) -> u64 {
        self.0 - 1
    }
}

impl fmt::Debug for PageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PageSize({:#x})", self.0)
    }
}

impl fmt::Display for PageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&crate::fmt::Bytes(self.0), f)
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
    fn spaces_do_not_mix_but_cast_explicitly() {
        let p = PhysAddr::new(0x1000);
        let d: DmaAddr = p.cast();
        assert_eq!(d.as_u64(), p.as_u64());
        assert_eq!(format!("{p:?}"), "phys:0x1000");
        assert_eq!(format!("{d:?}"), "dma:0x1000");
    }

    #[test]
    fn checked_arithmetic_never_wraps() {
        assert_eq!(
            PhysAddr::new(u64::MAX).checked_add(1),
            Err(AddrError::Overflow {
                addr: u64::MAX,
                delta: 1
            })
        );
        assert!(PhysAddr::new(u64::MAX - 1).checked_add(1).is_ok());
        assert!(PhysAddr::new(0).checked_sub(1).is_err());
        assert!(PhysAddr::new(u64::MAX - 10)
            .align_up(PageSize::SIZE_4K)
            .is_err());
        assert_eq!(
            PhysAddr::new(u64::MAX - 0xfff).align_up(PageSize::SIZE_4K),
            Ok(PhysAddr::new(u64::MAX - 0xfff))
        );
    }

    #[test]
    fn page_sizes() {
        for shift in 0..64 {
            let p = PageSize::from_shift(shift).unwrap();
            assert_eq!(p.shift(), shift);
            assert_eq!(PageSize::new(p.get()), Ok(p));
        }
        assert!(PageSize::from_shift(64).is_err());
        assert!(PageSize::new(0).is_err());
        assert!(PageSize::new(6).is_err());
        assert_eq!(
            PhysAddr::from_pfn(1 << 40, PageSize::SIZE_4K)
                .unwrap()
                .as_u64(),
            1 << 52
        );
        assert!(PhysAddr::from_pfn(u64::MAX >> 12, PageSize::SIZE_4K).is_ok());
        assert!(PhysAddr::from_pfn((u64::MAX >> 12) + 1, PageSize::SIZE_4K).is_err());
        assert_eq!(
            PhysAddr::from_pfn(u64::MAX, PageSize::new(1).unwrap())
                .unwrap()
                .as_u64(),
            u64::MAX
        );
    }
}
