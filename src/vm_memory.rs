//! rust-vmm `vm-memory` integration (feature `vm-memory`): [`GuestMem`] gives any
//! [`GuestMemory`] — `GuestMemoryMmap`, `GuestMemoryAtomic`'s guard, an `IommuMemory` —
//! this crate's [`MemoryReader`] and [`MemoryWriter`], so a VMM's device model runs the
//! decoders straight on guest RAM.
//!
//! Addresses are guest-physical (or I/O virtual, for an `IommuMemory`). Every failure
//! of the guest memory — an address no region backs, a read running into a hole between
//! regions, an IOMMU fault, `addr + len` past 2^64 — becomes a [`MemoryError`] for
//! exactly the access that failed, which the decoders report as the status a controller
//! returns (Data Transfer Error, 04h, for NVMe; `memory_unreadable` in the tool). A read
//! that spans two adjacent regions succeeds. A write is checked first and writes nothing
//! when any byte is not writable.
//!
//! Built against `vm-memory` 0.18, the version current rust-vmm crates (virtio-queue,
//! vhost, linux-loader) use; 0.18 renamed the old `GuestMemory` to
//! `GuestMemoryBackend`, and every backend implements the new [`GuestMemory`].
//!
//! # Example
//! ```
//! use physvec::mem::{MemoryReader, MemoryWriter};
//! use physvec::vm_memory::GuestMem;
//! use physvec::DmaAddr;
//! use vm_memory::{GuestAddress, GuestMemoryMmap};
//!
//! // 64 KiB of guest RAM at 1 MiB.
//! let ram = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0x10_0000), 0x1_0000)]).unwrap();
//! let mut mem = GuestMem::new(&ram);
//! mem.write(DmaAddr::new(0x10_0008), &0x1122_3344u64.to_le_bytes())?;
//! assert_eq!(mem.read_u64_le(DmaAddr::new(0x10_0008))?, 0x1122_3344);
//! let e = mem.read_u64_le(DmaAddr::new(0x10_fffc)).unwrap_err();   // runs past the end of RAM
//! assert_eq!((e.addr, e.len), (DmaAddr::new(0x10_fffc), 8));
//! # Ok::<(), physvec::mem::MemoryError>(())
//! ```
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

use ::vm_memory::{Bytes, GuestAddress, GuestMemory, Permissions};

use crate::addr::{Addr, AddrSpace};
use crate::mem::{MemoryError, MemoryReader, MemoryWriter};

/// Any [`GuestMemory`] as a [`MemoryReader`] / [`MemoryWriter`] (see the module docs).
///
/// Holds a shared reference: guest memory is written through `&self` in `vm-memory`, so
/// several adapters over the same RAM may coexist, as device models do.
///
/// # Examples
/// A decoder reading a PRP list the guest wrote:
/// ```
/// use physvec::nvme::{decode_prp, DecodeOptions, MemoryPageSize};
/// use physvec::vm_memory::GuestMem;
/// use physvec::DmaRange;
/// use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
///
/// let ram = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
/// ram.write_obj(0x2_0000u64, GuestAddress(0x8000)).unwrap(); // the list: one entry
/// ram.write_obj(0x3_0000u64, GuestAddress(0x8008)).unwrap();
/// let mut out = Vec::new();
/// decode_prp(physvec::DmaAddr::new(0x1_0000), physvec::DmaAddr::new(0x8000), 0x3000, MemoryPageSize::SIZE_4K, &GuestMem::new(&ram),
///            &mut out, &DecodeOptions::default())?;
/// assert_eq!(out, [DmaRange::new(0x1_0000, 0x1000), DmaRange::new(0x2_0000, 0x1000),
///                  DmaRange::new(0x3_0000, 0x1000)]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct GuestMem<'a, M: GuestMemory + ?Sized> {
    mem: &'a M,
}

impl<'a, M: GuestMemory + ?Sized> GuestMem<'a, M> {
    /// An adapter over `mem`.
    ///
    /// ```
    /// use vm_memory::{GuestAddress, GuestMemoryMmap};
    /// let ram = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
    /// let m = physvec::vm_memory::GuestMem::new(&ram);
    /// assert!(std::ptr::eq(m.get(), &ram));
    /// ```
    pub fn new(mem: &'a M) -> Self {
        Self { mem }
    }

    /// The guest memory.
    pub fn get(&self) -> &'a M {
        self.mem
    }

    /// `addr` as a guest address, when `[addr, addr + len)` does not pass 2^64.
    fn start<S: AddrSpace>(addr: Addr<S>, len: usize) -> Result<GuestAddress, MemoryError<S>> {
        match u64::try_from(len)
            .ok()
            .and_then(|l| addr.as_u64().checked_add(l))
        {
            Some(_) => Ok(GuestAddress(addr.as_u64())),
            None => Err(MemoryError::at(addr, len)),
        }
    }
}

impl<M: GuestMemory + ?Sized> Clone for GuestMem<'_, M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M: GuestMemory + ?Sized> Copy for GuestMem<'_, M> {}

impl<M: GuestMemory + ?Sized> fmt::Debug for GuestMem<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GuestMem { .. }")
    }
}

/// Guest-physical addresses are what an emulated device without an IOMMU sees (`Dma`,
/// the default); any space is accepted so a VMM can index guest RAM as it models it.
impl<S: AddrSpace, M: GuestMemory + ?Sized> MemoryReader<S> for GuestMem<'_, M> {
    fn read(&self, addr: Addr<S>, buf: &mut [u8]) -> Result<(), MemoryError<S>> {
        let len = buf.len();
        let ga = Self::start(addr, len)?;
        if len == 0 {
            return Ok(());
        }
        self.mem
            .read_slice(buf, ga)
            .map_err(|_| MemoryError::at(addr, len))
    }
}

impl<S: AddrSpace, M: GuestMemory + ?Sized> MemoryWriter<S> for GuestMem<'_, M> {
    fn write(&mut self, addr: Addr<S>, buf: &[u8]) -> Result<(), MemoryError<S>> {
        let len = buf.len();
        let ga = Self::start(addr, len)?;
        if len == 0 {
            return Ok(());
        }
        // Checked first: `write_slice` may store a prefix before it fails.
        if !self.mem.check_range(ga, len, Permissions::Write) {
            return Err(MemoryError::at(addr, len));
        }
        self.mem
            .write_slice(buf, ga)
            .map_err(|_| MemoryError::at(addr, len))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::DmaAddr;
    use ::vm_memory::GuestMemoryMmap;

    fn two_regions_with_a_hole() -> GuestMemoryMmap<()> {
        // [0x1000, 0x2000) and [0x2000, 0x3000) adjacent; hole at [0x3000, 0x5000).
        GuestMemoryMmap::<()>::from_ranges(&[
            (GuestAddress(0x1000), 0x1000),
            (GuestAddress(0x2000), 0x1000),
            (GuestAddress(0x5000), 0x1000),
        ])
        .unwrap()
    }

    #[test]
    fn adjacent_regions_read_as_one() {
        let ram = two_regions_with_a_hole();
        let mut m = GuestMem::new(&ram);
        m.write(DmaAddr::new(0x1ffc), &[1, 2, 3, 4, 5, 6, 7, 8])
            .unwrap();
        assert_eq!(
            m.read_u64_le(DmaAddr::new(0x1ffc)).unwrap(),
            u64::from_le_bytes([1, 2, 3, 4, 5, 6, 7, 8])
        );
    }

    #[test]
    fn holes_ends_and_overflow_are_errors_and_write_nothing() {
        let ram = two_regions_with_a_hole();
        let mut m = GuestMem::new(&ram);
        let mut b = [0u8; 8];
        for a in [0x0, 0xffc, 0x2ffc, 0x3000, 0x5ffc, 0x6000, u64::MAX - 3] {
            let addr = DmaAddr::new(a);
            assert_eq!(
                m.read(addr, &mut b),
                Err(MemoryError { addr, len: 8 }),
                "{a:#x}"
            );
            assert_eq!(
                m.write(addr, &[9; 8]),
                Err(MemoryError { addr, len: 8 }),
                "{a:#x}"
            );
        }
        // The failed write at 0x2ffc stored nothing in the backed part.
        let mut tail = [0u8; 4];
        m.read(DmaAddr::new(0x2ffc), &mut tail).unwrap();
        assert_eq!(tail, [0; 4]);
        // Zero-length accesses succeed anywhere that does not overflow.
        assert!(m.read(DmaAddr::new(0x9999_0000), &mut []).is_ok());
    }
}
