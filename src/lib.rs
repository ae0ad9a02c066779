//! # physvec
//!
//! Typed, page-less containers of physical and DMA address ranges: the scatterlist
//! replacement that Linux's two-step DMA API (`dma_iova_try_alloc` → `dma_iova_link` →
//! `dma_iova_sync`) was built for, as a library any driver, emulator or VMM can use.
//!
//! The data flows one way:
//!
//! ```text
//! PhysAddr ranges ──builder──▶ PhysVec ──mapper (two-step)──▶ DmaVec ──adapter──▶ PRP / SGL / sg / MTT / KLM / SGE
//!   pagemap, pfns     constraints: split/coalesce/reject        views (byte windows)   decoders: device side back to ranges
//! ```
//!
//! - [`addr`]: [`PhysAddr`] and [`DmaAddr`], distinct `u64` newtypes with checked
//!   arithmetic, and [`PageSize`].
//! - [`range`]: [`PhysRange`] / [`DmaRange`], 16-byte `Pod` segments `{addr, len}`.
//! - [`vec`]: [`PhysVec`] / [`DmaVec`] (inline storage, heap spill; `alloc`) and
//!   [`PhysArray`] / [`DmaArray`] (fixed capacity, never allocate).
//! - [`view`]: [`RangeView`], zero-copy byte windows over any range slice.
//! - [`constraints`] and [`builder`]: [`DmaConstraints`] (max segment size, boundary,
//!   DMA mask, alignment, max segments) and [`RangeBuilder`].
//! - [`mem`]: the memory-reader traits decoders read untrusted descriptors through.
//! - [`map`]: the two-step DMA mapper trait and its mappers.
//! - [`nvme`], [`sg`], [`rdma`]: adapters to device formats and validating decoders.
//!
//! ## Example
//! ```
//! use physvec::{DmaConstraints, PhysArray, PhysRange, RangeBuilder};
//! // A device that takes at most 64 KiB per segment, never across a 4 GiB boundary.
//! let c = DmaConstraints::new()
//!     .with_max_segment_size(64 << 10)
//!     .with_segment_boundary_mask(0xffff_ffff);
//! let mut b = RangeBuilder::new(c, PhysArray::<16>::new())?;   // no allocation
//! for pfn in [0x100, 0x101, 0x102, 0x200] {
//!     b.push_pfn(pfn, physvec::PageSize::SIZE_4K)?;
//! }
//! let list = b.finish();
//! assert_eq!(list.as_slice(), [PhysRange::new(0x100000, 0x3000), PhysRange::new(0x200000, 0x1000)]);
//! // A zero-copy window: bytes 0x800..0x3800 of the I/O.
//! let w = list.window(0x800, 0x3000)?;
//! assert_eq!(w.first(), Some(PhysRange::new(0x100800, 0x2800)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `std` | yes | implies `alloc`; the `/proc/self/pagemap` translator |
//! | `alloc` | via `std` | [`PhysVec`]/[`DmaVec`], the software IOMMU, [`mem::SparseMemory`] |
//! | (none) | | everything else: addresses, ranges, fixed-capacity arrays, views, builder, encoders, decoders |
//!
//! The minimum supported Rust version is 1.81 (for `core::error::Error`).
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(all(feature = "std", not(test)))]
extern crate std;

pub mod addr;
pub mod builder;
pub mod constraints;
pub mod error;
pub mod fmt;
pub mod map;
pub mod mem;
pub mod nvme;
pub mod range;
pub mod rdma;
pub mod sg;
pub mod vec;
pub mod view;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use addr::{Addr, AddrSpace, Dma, DmaAddr, PageSize, Phys, PhysAddr};
pub use builder::RangeBuilder;
pub use constraints::{dma_bit_mask, DmaConstraints};
pub use error::{
    AddrError, BuildError, CapacityError, ConstraintsError, RangeError, TotalLenOverflow, ViewError,
};
pub use range::{DmaRange, Pages, PhysRange, Range};
pub use vec::{DmaArray, PhysArray, RangeArray, RangeSink};
#[cfg(feature = "alloc")]
pub use vec::{DmaVec, PhysVec, RangeVec};
pub use view::{RangeView, ViewIter};
