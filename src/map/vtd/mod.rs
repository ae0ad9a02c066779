//! Intel VT-d (DMA remapping) page tables, legacy mode: the driver side writes them, the
//! device side walks them, and both are checked against QEMU's `intel-iommu`.
//!
//! | file | what | needs |
//! |---|---|---|
//! | `entry.rs` | root / context / second-level entry layouts and reserved-bit masks | core |
//! | `walk.rs` | [`translate`]: the hardware walk with QEMU 7.2's exact fault reasons | core |
//! | `fault.rs` | [`FaultReason`], [`Fsts`], [`FaultRecord`]: fault registers decoded | core |
//! | `inval.rs` | [`Invalidation`]: register writes and queued-invalidation descriptors | core |
//! | `tables.rs` | [`VtdTables`], [`VtdFormat`], [`PageSource`]: tables in caller memory | `alloc` |
//! | `mapper.rs` | [`VtdMapper`]: the two-step [`DmaMapper`](super::DmaMapper) over them | `alloc` |
//! | `iotlb.rs` | [`VtdIotlb`]: a caching model that shows a missing invalidation | `alloc` |
//!
//! The second-level tables are written by the shared radix engine
//! ([`RadixTable`](super::RadixTable)) through [`VtdFormat`]: the walk, the leaf-size
//! choice, splitting and freeing are the same code for every format.
//!
//! # Example: map, translate as the device does, unmap, invalidate
//! ```
//! use physvec::map::vtd::{self, Access, FaultReason, PageList, VtdCaps, VtdConfig, VtdMapper, WalkError};
//! use physvec::map::{self as m, DataDirection};
//! use physvec::mem::SparseMemory;
//! use physvec::PhysRange;
//!
//! let mut ram = SparseMemory::default();
//! ram.add_zeroed(physvec::PhysAddr::new(0x10_0000), 0x10_0000); // table pages live here
//! let pages = PageList::new((0x10_0000..0x20_0000).step_by(0x1000));
//! let iommu = VtdMapper::new(ram, pages, VtdConfig::new(39, 0x0008, 1))?;
//! let root = iommu.root_table();
//! let caps = VtdCaps::qemu(39);
//!
//! let io = m::map(&iommu, &[PhysRange::new(0x20_0000, 0x20_0000)], DataDirection::ToDevice)?;
//! let iova = io.dma()[0].addr().as_u64();
//! let t = vtd::translate(&*iommu.memory(), root, caps, 0x0008, iova + 5, Access::Read).unwrap();
//! assert_eq!((t.phys, t.page_size), (0x20_0005, 2 << 20)); // one 2 MiB leaf, read-only
//! let w = vtd::translate(&*iommu.memory(), root, caps, 0x0008, iova, Access::Write);
//! assert!(matches!(w, Err(WalkError::Fault(f)) if f.reason == FaultReason::WriteNotPermitted));
//!
//! iommu.drain_invalidations(); // the enable sequence's global invalidations
//! io.unmap()?;
//! for inv in iommu.drain_invalidations() {
//!     let writes = inv.register_writes(0xf0); // or inv.descriptor() for queued invalidation
//!     assert!(!writes.is_empty());
//! }
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

mod entry;
mod fault;
mod inval;
#[cfg(feature = "alloc")]
mod iotlb;
#[cfg(feature = "alloc")]
mod mapper;
#[cfg(feature = "alloc")]
mod tables;
mod walk;

pub use entry::{
    aw_field, context_entry, ctx_lo_reserved, haw_mask, overlaps_interrupt_window, root_entry,
    root_lo_reserved, sl_addr, sl_leaf_entry, sl_perm, sl_reserved, sl_table_entry, CTX_FPD,
    CTX_HI_RSVD, ENTRY_P, INTERRUPT_FIRST, INTERRUPT_LAST, SL_IGNORED, SL_PS, SL_R, SL_SNP, SL_TM,
    SL_W,
};
pub use fault::{Access, FaultReason, FaultRecord, Fsts};
pub use inval::{reg, wait_descriptor, Invalidation, RegisterWrite};
#[cfg(feature = "alloc")]
pub use iotlb::VtdIotlb;
#[cfg(feature = "alloc")]
pub use mapper::{VtdMapper, VtdStats};
#[cfg(feature = "alloc")]
pub use tables::{DirtyPages, PageList, PageSource, VtdConfig, VtdFormat, VtdTables};
pub use walk::{translate, translate_traced, Fault, Translation, VtdCaps, WalkError, WalkStep};
