//! Memory access traits shared by the device-side decoders, the bounce-buffer model and
//! the scatterlist layout: [`MemoryReader`] (read bytes at a typed address) and
//! [`MemoryWriter`], with [`SliceMemory`] (one borrowed region, no allocation) and, with
//! `alloc`, [`SparseMemory`] (several owned regions).
//!
//! The traits are generic over the address space they are indexed by, defaulting to
//! [`Dma`]: an emulated controller reads a guest's PRP lists and SGL segments at *bus*
//! addresses (`MemoryReader` = `MemoryReader<Dma>`), while a bounce pool copies between
//! *physical* pages (`MemoryReader<Phys>`). A physical address cannot be handed to a
//! reader of bus addresses by mistake.
//!
//! Decoders treat everything read through these traits as untrusted.

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

use crate::addr::{Addr, AddrSpace, Dma};

/// An access that touched bytes the memory does not back.
///
/// ```
/// use physvec::mem::{MemoryError, MemoryReader, SliceMemory};
/// use physvec::DmaAddr;
/// let bytes = [0u8; 16];
/// let m = SliceMemory::new(DmaAddr::new(0x1000), &bytes);
/// let mut buf = [0u8; 8];
/// assert_eq!(m.read(DmaAddr::new(0x100c), &mut buf),
///            Err(MemoryError { addr: DmaAddr::new(0x100c), len: 8 }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryError<S: AddrSpace = Dma> {
    /// Start of the failed access.
    pub addr: Addr<S>,
    /// Its length in bytes.
    pub len: u64,
}

impl<S: AddrSpace> MemoryError<S> {
    /// The error for an access of `len` bytes at `addr`.
    ///
    /// ```
    /// let e = physvec::mem::MemoryError::at(physvec::DmaAddr::new(0x80), 8);
    /// assert_eq!(e.to_string(), "8 bytes at 0x80 are not backed by memory");
    /// ```
    pub fn at(addr: Addr<S>, len: usize) -> Self {
        Self {
            addr,
            len: u64::try_from(len).unwrap_or(u64::MAX),
        }
    }
}

impl<S: AddrSpace> fmt::Display for MemoryError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (unit, verb) = if self.len == 1 {
            ("byte", "is")
        } else {
            ("bytes", "are")
        };
        write!(
            f,
            "{} {unit} at {:#x} {verb} not backed by memory",
            self.len,
            self.addr.as_u64()
        )
    }
}

impl<S: AddrSpace> core::error::Error for MemoryError<S> {}

impl<S: AddrSpace> crate::error::ErrorInfo for MemoryError<S> {
    fn kind(&self) -> &'static str {
        "memory_unreadable"
    }
    fn position(&self) -> Option<crate::error::Position> {
        Some(crate::error::Position::Address(self.addr.as_u64()))
    }
}

/// Reads bytes of host or guest memory at an address of space `S` (by default a bus
/// address, as a device model sees memory).
///
/// Decoders read every untrusted descriptor through this trait, so a VMM implements it
/// over its guest RAM mapping and a test uses [`SliceMemory`] or `SparseMemory`.
///
/// # Implementer notes
/// - Never panic: an address or length outside what you back is a [`MemoryError`].
/// - Either fill all of `buf` or return an error (the decoders never use a partial
///   read; `buf`'s contents are unspecified after an error).
/// - Reads may be issued for any address a hostile guest wrote; check the bounds with
///   checked arithmetic (the crate's readers do).
///
/// ```
/// use physvec::mem::{MemoryError, MemoryReader};
/// use physvec::DmaAddr;
/// /// Guest RAM mapped at bus address 0 (a VMM's view).
/// struct GuestRam(Vec<u8>);
/// impl MemoryReader for GuestRam {
///     fn read(&self, addr: DmaAddr, buf: &mut [u8]) -> Result<(), MemoryError> {
///         let err = MemoryError::at(addr, buf.len());
///         let start = usize::try_from(addr.as_u64()).map_err(|_| err)?;
///         let src = start.checked_add(buf.len()).and_then(|end| self.0.get(start..end)).ok_or(err)?;
///         buf.copy_from_slice(src);
///         Ok(())
///     }
/// }
/// let ram = GuestRam((0u8..32).collect());
/// assert_eq!(ram.read_u64_le(DmaAddr::new(8)), Ok(u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15])));
/// assert!(ram.read_u64_le(DmaAddr::new(30)).is_err()); // past the end: an error, not a panic
/// ```
pub trait MemoryReader<S: AddrSpace = Dma> {
    /// Fills `buf` with the bytes at `[addr, addr + buf.len())`.
    ///
    /// # Errors
    /// [`MemoryError`] when any byte is not backed; `buf` contents are then unspecified.
    fn read(&self, addr: Addr<S>, buf: &mut [u8]) -> Result<(), MemoryError<S>>;

    /// Reads a little-endian `u64` at `addr`.
    ///
    /// # Errors
    /// As [`MemoryReader::read`].
    fn read_u64_le(&self, addr: Addr<S>) -> Result<u64, MemoryError<S>> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}

/// Writes bytes of host or guest memory (a device model's DMA writes, the DMA view of a
/// scatterlist, IOMMU page tables).
///
/// # Implementer notes
/// Write all of `buf` or nothing: on error no byte may have changed.
///
/// ```
/// # #[cfg(feature = "alloc")] {
/// use physvec::mem::{MemoryReader, MemoryWriter, SparseMemory};
/// use physvec::DmaAddr;
/// let mut m = SparseMemory::new();
/// m.add_zeroed(DmaAddr::new(0x1000), 16);
/// m.write(DmaAddr::new(0x1008), &7u64.to_le_bytes()).unwrap();
/// assert_eq!(m.read_u64_le(DmaAddr::new(0x1008)), Ok(7));
/// assert!(m.write(DmaAddr::new(0x100c), &[0; 8]).is_err()); // would run past the region: nothing written
/// # }
/// ```
pub trait MemoryWriter<S: AddrSpace = Dma> {
    /// Stores `buf` at `[addr, addr + buf.len())`.
    ///
    /// # Errors
    /// [`MemoryError`] when any byte is not backed; nothing is written then.
    fn write(&mut self, addr: Addr<S>, buf: &[u8]) -> Result<(), MemoryError<S>>;
}

impl<S: AddrSpace, M: MemoryReader<S> + ?Sized> MemoryReader<S> for &M {
    fn read(&self, addr: Addr<S>, buf: &mut [u8]) -> Result<(), MemoryError<S>> {
        (**self).read(addr, buf)
    }
}

/// One borrowed region of memory starting at `base`.
///
/// ```
/// use physvec::mem::{MemoryReader, SliceMemory};
/// use physvec::DmaAddr;
/// let bytes = 0x1122334455667788u64.to_le_bytes();
/// let m = SliceMemory::new(DmaAddr::new(0x2000), &bytes);
/// assert_eq!(m.read_u64_le(DmaAddr::new(0x2000)).unwrap(), 0x1122334455667788);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct SliceMemory<'a, S: AddrSpace = Dma> {
    base: Addr<S>,
    bytes: &'a [u8],
}

impl<'a, S: AddrSpace> SliceMemory<'a, S> {
    /// Memory whose byte `i` lives at address `base + i`.
    ///
    /// ```
    /// let m = physvec::mem::SliceMemory::new(physvec::PhysAddr::new(0x1000), &[0u8; 4]);
    /// assert_eq!(m.base().as_u64(), 0x1000);
    /// ```
    pub const fn new(base: Addr<S>, bytes: &'a [u8]) -> Self {
        Self { base, bytes }
    }

    /// The address of the first byte.
    ///
    /// ```
    /// let m = physvec::mem::SliceMemory::new(physvec::DmaAddr::new(0x80), &[]);
    /// assert_eq!(m.base(), physvec::DmaAddr::new(0x80));
    /// ```
    pub const fn base(&self) -> Addr<S> {
        self.base
    }
}

/// The byte range `[off, off + len)` of a region of `size` bytes at `base` that holds
/// `[addr, addr + len)`, if it does.
fn locate<S: AddrSpace>(
    base: Addr<S>,
    size: usize,
    addr: Addr<S>,
    len: usize,
) -> Option<core::ops::Range<usize>> {
    let off = addr.offset_from(base)?;
    let off = usize::try_from(off).ok()?;
    let end = off.checked_add(len)?;
    (end <= size).then_some(off..end)
}

impl<S: AddrSpace> MemoryReader<S> for SliceMemory<'_, S> {
    fn read(&self, addr: Addr<S>, buf: &mut [u8]) -> Result<(), MemoryError<S>> {
        let src = locate(self.base, self.bytes.len(), addr, buf.len())
            .and_then(|r| self.bytes.get(r))
            .ok_or(MemoryError::at(addr, buf.len()))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

#[cfg(feature = "alloc")]
pub use self::sparse::SparseMemory;

#[cfg(feature = "alloc")]
mod sparse {
    use super::*;
    use alloc::collections::BTreeMap;
    use alloc::vec::Vec;

    /// Owned, possibly scattered regions of memory: a test double for host or guest RAM.
    ///
    /// Regions never overlap: adding one that overlaps existing regions overwrites the
    /// shared bytes. A read or write must fall entirely inside one region.
    ///
    /// ```
    /// use physvec::mem::{MemoryReader, MemoryWriter, SparseMemory};
    /// use physvec::DmaAddr;
    /// let mut m = SparseMemory::new();
    /// m.add_zeroed(DmaAddr::new(0x1000), 0x1000);
    /// m.write(DmaAddr::new(0x1008), &[1, 2, 3]).unwrap();
    /// let mut b = [0u8; 3];
    /// m.read(DmaAddr::new(0x1008), &mut b).unwrap();
    /// assert_eq!(b, [1, 2, 3]);
    /// assert!(m.read(DmaAddr::new(0x1ffe), &mut b).is_err());
    /// ```
    #[derive(Clone, Debug)]
    pub struct SparseMemory<S: AddrSpace = Dma> {
        regions: BTreeMap<Addr<S>, Vec<u8>>,
    }

    impl<S: AddrSpace> Default for SparseMemory<S> {
        fn default() -> Self {
            Self {
                regions: BTreeMap::new(),
            }
        }
    }

    impl SparseMemory<Dma> {
        /// No memory at all, indexed by bus addresses (use `SparseMemory::<Phys>::default()`
        /// for physical memory).
        ///
        /// ```
        /// assert_eq!(physvec::mem::SparseMemory::new().regions().count(), 0);
        /// ```
        pub fn new() -> Self {
            Self::default()
        }
    }

    impl<S: AddrSpace> SparseMemory<S> {
        /// Adds `len` zero bytes at `addr`.
        ///
        /// ```
        /// let mut m = physvec::mem::SparseMemory::<physvec::Phys>::default();
        /// m.add_zeroed(physvec::PhysAddr::new(0x1000), 16);
        /// assert_eq!(m.regions().next().map(|(a, b)| (a.as_u64(), b.len())), Some((0x1000, 16)));
        /// ```
        pub fn add_zeroed(&mut self, addr: Addr<S>, len: usize) {
            self.add(addr, alloc::vec![0; len]);
        }

        /// Adds `bytes` at `addr`. Where it overlaps an existing region, the new bytes
        /// are written into that region instead, so regions stay disjoint.
        ///
        /// ```
        /// use physvec::mem::{MemoryReader, SparseMemory};
        /// use physvec::DmaAddr;
        /// let mut m = SparseMemory::new();
        /// m.add(DmaAddr::new(0x10), vec![1, 2]);
        /// assert_eq!(m.read_u64_le(DmaAddr::new(0x10)).is_err(), true); // only 2 bytes
        /// ```
        pub fn add(&mut self, addr: Addr<S>, bytes: Vec<u8>) {
            if self.write(addr, &bytes).is_ok() {
                return;
            }
            self.regions.insert(addr, bytes);
        }

        /// The regions as `(addr, bytes)`, in address order.
        ///
        /// ```
        /// let m = physvec::mem::SparseMemory::new();
        /// assert!(m.regions().next().is_none());
        /// ```
        pub fn regions(&self) -> impl Iterator<Item = (Addr<S>, &[u8])> {
            self.regions.iter().map(|(a, b)| (*a, b.as_slice()))
        }

        fn find(&self, addr: Addr<S>, len: usize) -> Option<(Addr<S>, core::ops::Range<usize>)> {
            let (&base, bytes) = self.regions.range(..=addr).next_back()?;
            locate(base, bytes.len(), addr, len).map(|r| (base, r))
        }
    }

    impl<S: AddrSpace> MemoryReader<S> for SparseMemory<S> {
        fn read(&self, addr: Addr<S>, buf: &mut [u8]) -> Result<(), MemoryError<S>> {
            let src = self
                .find(addr, buf.len())
                .and_then(|(base, r)| self.regions.get(&base)?.get(r))
                .ok_or(MemoryError::at(addr, buf.len()))?;
            buf.copy_from_slice(src);
            Ok(())
        }
    }

    impl<S: AddrSpace> MemoryWriter<S> for SparseMemory<S> {
        fn write(&mut self, addr: Addr<S>, buf: &[u8]) -> Result<(), MemoryError<S>> {
            let err = MemoryError::at(addr, buf.len());
            let (base, r) = self.find(addr, buf.len()).ok_or(err)?;
            let dst = self
                .regions
                .get_mut(&base)
                .and_then(|region| region.get_mut(r))
                .ok_or(err)?;
            dst.copy_from_slice(buf);
            Ok(())
        }
    }
}
