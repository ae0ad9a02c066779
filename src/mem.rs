//! Memory access traits shared by the device-side decoders and the bounce-buffer model:
//! [`MemoryReader`] (read bytes at a bus / guest-physical address) and [`MemoryWriter`],
//! with [`SliceMemory`] (one borrowed region, no allocation) and, with `alloc`,
//! [`SparseMemory`] (several owned regions).
//!
//! Decoders treat everything read through these traits as untrusted.

use core::fmt;

/// A read that touched bytes the memory does not back.
///
/// ```
/// use physvec::mem::{MemoryError, MemoryReader, SliceMemory};
/// let bytes = [0u8; 16];
/// let m = SliceMemory::new(0x1000, &bytes);
/// let mut buf = [0u8; 8];
/// assert_eq!(m.read(0x100c, &mut buf), Err(MemoryError { addr: 0x100c, len: 8 }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryError {
    /// Start of the failed access.
    pub addr: u64,
    /// Its length in bytes.
    pub len: u64,
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "memory at {:#x}+{:#x} is not readable",
            self.addr, self.len
        )
    }
}

impl core::error::Error for MemoryError {}

/// Reads bytes of host or guest memory at an address of the reader's address space (a
/// bus address for a device model, a guest-physical address for a VMM).
///
/// Decoders read every untrusted descriptor through this trait, so a VMM implements it
/// over its guest RAM mapping (checking bounds; never panicking) and a test uses
/// [`SliceMemory`] or `SparseMemory`.
///
/// ```
/// use physvec::mem::{MemoryError, MemoryReader};
/// /// Guest RAM mapped at guest-physical address 0 (a VMM's view).
/// struct GuestRam(Vec<u8>);
/// impl MemoryReader for GuestRam {
///     fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
///         let err = MemoryError { addr, len: buf.len() as u64 };
///         let start = usize::try_from(addr).map_err(|_| err)?;
///         let src = start.checked_add(buf.len()).and_then(|end| self.0.get(start..end)).ok_or(err)?;
///         buf.copy_from_slice(src);
///         Ok(())
///     }
/// }
/// let ram = GuestRam((0u8..32).collect());
/// assert_eq!(ram.read_u64_le(8), Ok(u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15])));
/// assert!(ram.read_u64_le(30).is_err()); // past the end: an error, not a panic
/// ```
pub trait MemoryReader {
    /// Fills `buf` with the bytes at `[addr, addr + buf.len())`.
    ///
    /// # Errors
    /// [`MemoryError`] when any byte is not backed; `buf` contents are then unspecified.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError>;

    /// Reads a little-endian `u64` at `addr`.
    ///
    /// # Errors
    /// As [`MemoryReader::read`].
    fn read_u64_le(&self, addr: u64) -> Result<u64, MemoryError> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}

/// Writes bytes of host or guest memory (a device model's DMA writes, the DMA view of a
/// scatterlist).
///
/// ```
/// # #[cfg(feature = "alloc")] {
/// use physvec::mem::{MemoryReader, MemoryWriter, SparseMemory};
/// let mut m = SparseMemory::new();
/// m.add_zeroed(0x1000, 16);
/// m.write(0x1008, &7u64.to_le_bytes()).unwrap();
/// assert_eq!(m.read_u64_le(0x1008), Ok(7));
/// assert!(m.write(0x100c, &[0; 8]).is_err()); // would run past the region: nothing written
/// # }
/// ```
pub trait MemoryWriter {
    /// Stores `buf` at `[addr, addr + buf.len())`.
    ///
    /// # Errors
    /// [`MemoryError`] when any byte is not backed; nothing is written then.
    fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), MemoryError>;
}

impl<M: MemoryReader + ?Sized> MemoryReader for &M {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        (**self).read(addr, buf)
    }
}

/// One borrowed region of memory starting at `base`.
///
/// ```
/// use physvec::mem::{MemoryReader, SliceMemory};
/// let bytes = 0x1122334455667788u64.to_le_bytes();
/// let m = SliceMemory::new(0x2000, &bytes);
/// assert_eq!(m.read_u64_le(0x2000).unwrap(), 0x1122334455667788);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct SliceMemory<'a> {
    base: u64,
    bytes: &'a [u8],
}

impl<'a> SliceMemory<'a> {
    /// Memory whose byte `i` lives at address `base + i`.
    pub const fn new(base: u64, bytes: &'a [u8]) -> Self {
        Self { base, bytes }
    }
}

fn locate(base: u64, size: usize, addr: u64, len: usize) -> Option<usize> {
    let off = addr.checked_sub(base)?;
    let off = usize::try_from(off).ok()?;
    let end = off.checked_add(len)?;
    (end <= size).then_some(off)
}

impl MemoryReader for SliceMemory<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let off = locate(self.base, self.bytes.len(), addr, buf.len()).ok_or(MemoryError {
            addr,
            len: buf.len() as u64,
        })?;
        buf.copy_from_slice(&self.bytes[off..off + buf.len()]);
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
    /// let mut m = SparseMemory::new();
    /// m.add_zeroed(0x1000, 0x1000);
    /// m.write(0x1008, &[1, 2, 3]).unwrap();
    /// let mut b = [0u8; 3];
    /// m.read(0x1008, &mut b).unwrap();
    /// assert_eq!(b, [1, 2, 3]);
    /// assert!(m.read(0x1ffe, &mut b).is_err());
    /// ```
    #[derive(Clone, Debug, Default)]
    pub struct SparseMemory {
        regions: BTreeMap<u64, Vec<u8>>,
    }

    impl SparseMemory {
        /// No memory at all.
        pub fn new() -> Self {
            Self::default()
        }

        /// Adds `len` zero bytes at `addr`.
        pub fn add_zeroed(&mut self, addr: u64, len: usize) {
            self.add(addr, alloc::vec![0; len]);
        }

        /// Adds `bytes` at `addr`. Where it overlaps an existing region, the new bytes
        /// are written into that region instead, so regions stay disjoint.
        pub fn add(&mut self, addr: u64, bytes: Vec<u8>) {
            if self.write(addr, &bytes).is_ok() {
                return;
            }
            self.regions.insert(addr, bytes);
        }

        /// The regions as `(addr, bytes)`, in address order.
        pub fn regions(&self) -> impl Iterator<Item = (u64, &[u8])> {
            self.regions.iter().map(|(a, b)| (*a, b.as_slice()))
        }

        fn find(&self, addr: u64, len: usize) -> Option<(u64, usize)> {
            let (&base, bytes) = self.regions.range(..=addr).next_back()?;
            locate(base, bytes.len(), addr, len).map(|off| (base, off))
        }
    }

    impl MemoryReader for SparseMemory {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
            let (base, off) = self.find(addr, buf.len()).ok_or(MemoryError {
                addr,
                len: buf.len() as u64,
            })?;
            buf.copy_from_slice(&self.regions[&base][off..off + buf.len()]);
            Ok(())
        }
    }

    impl MemoryWriter for SparseMemory {
        fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), MemoryError> {
            let (base, off) = self.find(addr, buf.len()).ok_or(MemoryError {
                addr,
                len: buf.len() as u64,
            })?;
            let region = self.regions.get_mut(&base).ok_or(MemoryError {
                addr,
                len: buf.len() as u64,
            })?;
            region[off..off + buf.len()].copy_from_slice(buf);
            Ok(())
        }
    }
}
