//! The VFIO mapper (feature `vfio`, Linux): process-virtual memory ([`VirtRange`](crate::VirtRange)) made
//! visible to a device through the IOMMU with VFIO type1, for user-space drivers.
//!
//! VFIO maps *virtual* memory of the process: `VFIO_IOMMU_MAP_DMA {vaddr, iova, size}`
//! pins the pages behind `vaddr` and points the IOVA at them. So this mapper takes
//! [`VirtRange`](crate::VirtRange)s and gives [`DmaRange`](crate::DmaRange)s; it does not implement
//! [`DmaMapper`](super::DmaMapper), whose input is physical, and a virtual range cannot be
//! handed to a physical mapper (or the other way round) without a compile error.
//!
//! Two modes, one [`VfioMapper`]:
//!
//! - **registered memory** ([`VfioMapper::register`] once, [`VfioMapper::translate`] per
//!   I/O): a DMA region is mapped once, and each I/O is a lookup from virtual ranges to
//!   DMA ranges with no system call (SPDK's `vtophys`, io_uring's registered buffers);
//! - **per-I/O two-step mapping** ([`VfioMapper::map_io`] / [`IoMapping::unmap`]):
//!   reserve IOVA space for the transfer, link each range with one `VFIO_IOMMU_MAP_DMA`,
//!   and at the end unlink the whole reservation with one `VFIO_IOMMU_UNMAP_DMA` and free
//!   it: the kernel's `dma_iova_try_alloc` → `dma_iova_link` → `dma_iova_destroy`.
//!
//! IOVA space comes from physvec's [`IovaAllocator`](crate::map::IovaAllocator) with the rules of the kernel's IOVA
//! domains: never IOVA 0, never the x86 interrupt window `0xFEE0_0000..=0xFEEF_FFFF`
//! (a DMA write there is an MSI, not memory), and below the IOMMU's address width.
//!
//! The ioctls go through a [`VfioBackend`]: rust-vmm's [`vfio_ioctls::VfioContainer`]
//! in a driver, a recording fake in tests.
//!
//! ```
//! use physvec::map::vfio::{VfioBackend, VfioError, VfioIovaConfig, VfioMapper};
//! use physvec::map::DataDirection;
//! use physvec::{DmaAddr, VirtAddr, VirtRange};
//!
//! /// A backend that accepts everything (a real driver passes a `VfioContainer`).
//! struct Nop;
//! // SAFETY: it never makes memory device-visible.
//! unsafe impl VfioBackend for Nop {
//!     unsafe fn map_dma(&self, _: VirtAddr, _: DmaAddr, _: u64, _: DataDirection) -> Result<(), VfioError> { Ok(()) }
//!     fn unmap_dma(&self, _: DmaAddr, _: u64) -> Result<(), VfioError> { Ok(()) }
//! }
//!
//! let m = VfioMapper::new(Nop, VfioIovaConfig::new(39))?;
//! // Registered memory: one MAP_DMA for the region, lookups afterwards.
//! let region = VirtRange::new(0x7f00_0000_0000, 0x20_0000);
//! // SAFETY: the fake backend gives no device access to the region.
//! let dma = unsafe { m.register(region, DataDirection::Bidirectional)? };
//! let io = m.translate(VirtRange::new(0x7f00_0000_1234, 0x800))?;
//! assert_eq!(io.addr(), dma.addr().checked_add(0x1234)?);
//! assert_eq!(m.stats().map_ioctls, 1);
//! // Per-I/O: a buffer outside the region, reserved + linked, then unlinked + freed.
//! let buf = VirtRange::new(0x5555_0000_0100, 0x1f00);
//! // SAFETY: as above.
//! let io = unsafe { m.map_io(&[buf], DataDirection::FromDevice)? };
//! assert_eq!((io.dma().len(), io.dma()[0].len()), (1, 0x1f00));
//! assert_eq!(io.dma()[0].addr().as_u64() & 0xfff, 0x100);
//! io.unmap()?;
//! m.unregister(region)?;
//! assert_eq!((m.stats().map_ioctls, m.stats().unmap_ioctls), (2, 2));
//! assert!(m.is_idle());
//! # Ok::<(), Box<dyn std::error::Error>>(())
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

mod backend;
mod config;
mod error;
mod mapper;

pub use backend::{open_pci, VfioBackend};
pub use config::{VfioIovaConfig, VfioStats};
pub use error::VfioError;
pub use mapper::{IoMapping, VfioMapper};

/// `drivers/iommu/intel/iommu.c`, reserved in every IOVA domain).
pub const MSI_WINDOW: (u64, u64) = (0xfee0_0000, 0xfeef_ffff);
