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
//! - [`addr`]: [`PhysAddr`], [`DmaAddr`] and [`VirtAddr`] (process-virtual, for VFIO),
//!   distinct `u64` newtypes with checked arithmetic, and [`PageSize`].
//! - [`range`]: [`PhysRange`] / [`DmaRange`] / [`VirtRange`], 16-byte `Pod` segments
//!   `{addr, len}`.
//! - [`vec`]: [`PhysVec`] / [`DmaVec`] (inline storage, heap spill; `alloc`) and
//!   [`PhysArray`] / [`DmaArray`] (fixed capacity, never allocate).
//! - [`view`]: [`RangeView`], zero-copy byte windows over any range slice.
//! - [`constraints`] and [`builder`]: [`DmaConstraints`] (max segment size, boundary,
//!   DMA mask, alignment, max segments) and [`RangeBuilder`]; [`segments`]: the same
//!   limits on the DMA side ([`DmaConstraints::segments`]).
//! - [`mem`]: the memory-reader traits decoders read untrusted descriptors through.
//! - `pagemap` and `dma_buf` (`std`, Linux): user-space DMA memory, a locked
//!   `DmaBuffer` translated to a [`PhysVec`] through `/proc/self/pagemap`.
//! - `vm_memory` (feature `vm-memory`): the decoders over any rust-vmm `GuestMemory`.
//! - [`map`]: the two-step DMA mapper trait and its mappers.
//! - [`nvme`], [`sg`], [`rdma`]: adapters to device formats and validating decoders.
//!
//! ## The pipeline, step by step
//!
//! 1. **Build** the physical side: page frames or ranges go into a [`RangeBuilder`],
//!    which coalesces contiguous memory and splits at the device's [`DmaConstraints`]
//!    (maximum segment size, segment boundary, DMA mask), writing into any
//!    [`RangeSink`]: a fixed-capacity [`PhysArray`] (no allocation) or a [`PhysVec`].
//! 2. **Map** it for the device with a [`map::DmaMapper`]: [`map::map`] /
//!    [`map::map_into`] run the kernel's two-step IOVA API (reserve, link each range,
//!    sync once) and fall back to per-range mapping where the merge-boundary rule does
//!    not hold. The [`map::Mapping`] holds the device-visible [`DmaRange`]s and unmaps
//!    them when released.
//! 3. **Adapt** the DMA ranges to what the hardware reads: NVMe PRP lists or SGLs
//!    ([`nvme::encode_prp`], [`nvme::encode_sgl`], chosen by
//!    [`nvme::choose_data_pointer`]) in a [`nvme::SubmissionQueueEntry`]; a Linux
//!    `struct scatterlist` table ([`sg::export`]); RDMA page lists, mlx5 MTT/KLM entries
//!    and keyed SGLs ([`rdma`]). Encoders write into buffers the caller owns.
//! 4. **Decode** on the device side: [`nvme::decode_prp`], [`nvme::decode_sgl`],
//!    [`nvme::decode_command`] and [`sg::import`] read untrusted descriptors through a
//!    [`mem::MemoryReader`], with bounded work and typed errors (an
//!    [`nvme::NvmeStatus`] for every NVMe rejection).
//!
//! Sizes and lengths are bytes (`u64`) throughout; addresses are typed ([`PhysAddr`] on
//! the CPU side, [`DmaAddr`] on the device side), so a physical address cannot be handed
//! to a device by mistake. Bad input never panics: every fallible call returns an error
//! enum with a stable `kind()` name.
//!
//! ## Example: one I/O from page frames to a decoded NVMe command
//! ```
//! use physvec::map::{self, DataDirection, SoftIommu};
//! use physvec::mem::SliceMemory;
//! use physvec::nvme::{self, DataPointerChoice, DataPointerPolicy, MemoryPageSize, SglCapabilities};
//! use physvec::{DmaAddr, DmaConstraints, DmaRange, PageSize, PhysArray, PhysRange, RangeBuilder};
//!
//! // 1. Build: the frames of a 16 KiB buffer (three are contiguous) within device limits.
//! let limits = DmaConstraints::new().with_max_segment_size(1 << 20);
//! let mut b = RangeBuilder::new(limits, PhysArray::<8>::new())?;
//! for pfn in [0x100, 0x101, 0x102, 0x200] {
//!     b.push_pfn(pfn, PageSize::SIZE_4K)?;
//! }
//! let phys = b.finish();
//! assert_eq!(phys.as_slice(), [PhysRange::new(0x10_0000, 0x3000), PhysRange::new(0x20_0000, 0x1000)]);
//!
//! // 2. Map through a (software) IOMMU: one contiguous IOVA range, one IOTLB sync.
//! let iommu = SoftIommu::new_4k();
//! let mapping = map::map(&iommu, &phys, DataDirection::FromDevice)?;
//! let dma: &[DmaRange] = mapping.dma();
//! assert_eq!((dma.len(), dma[0].len(), mapping.iova_syncs()), (1, 0x4000, 1));
//!
//! // 3. Adapt: the policy picks PRPs for small segments; encode into a list page.
//! let mps = MemoryPageSize::SIZE_4K;
//! let policy = DataPointerPolicy::new(SglCapabilities::from_raw(1), mps);
//! assert_eq!(nvme::choose_data_pointer(dma, &policy), DataPointerChoice::Prp);
//! let mut list = [0u64; 512];
//! let prp = nvme::encode_prp(dma, mps,
//!     [nvme::PrpListPage::new(DmaAddr::new(0x8_0000), &mut list)])?;
//! let lbas = nvme::LbaRange::from_bytes(0, 0x4000, 512)?; // 16 KiB from LBA 0
//! let sqe = nvme::SubmissionQueueEntry::read(nvme::NamespaceId::new(1), lbas)
//!     .with_data_pointer(prp.data_pointer());
//!
//! // 4. Decode, as the controller does: the same bytes back to the same DMA range.
//! let mem = SliceMemory::new(DmaAddr::new(0x8_0000), bytemuck::cast_slice(&list));
//! let mut items = Vec::new();
//! nvme::decode_command(&sqe, 0x4000, mps, &mem, &mut items, &nvme::DecodeOptions::default())?;
//! assert_eq!(items, [nvme::SglItem::Data(dma[0])]);
//!
//! mapping.unmap()?; // release: unlink, free the IOVA space
//! assert!(iommu.is_idle());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The worked examples in `examples/` (`nvme_driver`, `vmm_decode`, `rdma_register`,
//! `legacy_sg`) run these steps for real driver and emulator flows; the `physvec` tool
//! (`examples/physvec/`) draws any layout with `physvec explain`.
//!
//! ## Example: no allocation at all
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
//! | `std` | yes | implies `alloc`; on Linux the `/proc/self/pagemap` translator and `dma_buf::DmaBuffer` (through `rustix`) |
//! | `alloc` | via `std` | [`PhysVec`]/[`DmaVec`], the software IOMMU, [`mem::SparseMemory`] |
//! | `vm-memory` | no | implies `std`; `vm_memory::GuestMem`: decoders over rust-vmm `GuestMemory` (vm-memory 0.18) |
//! | `vfio` | no | implies `std`; Linux: `map::vfio`, the VFIO mapper for process-virtual memory ([`VirtRange`]) |
//! | (none) | | everything else: addresses, ranges, fixed-capacity arrays, views, builder, encoders, decoders |
//!
//! The minimum supported Rust version is 1.81 (for `core::error::Error`).
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]
// "Bad input never panics", enforced by the compiler in library code: no unchecked
// arithmetic, no indexing that can panic, no unwrap/expect/panic/unreachable/todo.
// Each remaining exception is a local `#[allow]` with a one-line proof beside it
// (TESTING.md lists them); test modules opt out with their own `#[allow]`.
#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(all(feature = "std", not(test)))]
extern crate std;

pub mod addr;
pub mod builder;
pub mod constraints;
#[cfg(all(feature = "std", target_os = "linux"))]
pub mod dma_buf;
pub mod error;
pub mod flow;
pub mod fmt;
pub mod map;
pub mod mask;
pub mod mem;
pub mod nvme;
#[cfg(all(feature = "std", target_os = "linux"))]
pub mod pagemap;
pub mod range;
pub mod rdma;
pub mod segments;
pub mod sg;
pub mod sink;
pub mod vec;
pub mod view;
#[cfg(feature = "vm-memory")]
pub mod vm_memory;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use addr::{Addr, AddrSpace, Dma, DmaAddr, PageSize, Phys, PhysAddr, Virt, VirtAddr};
pub use builder::RangeBuilder;
pub use constraints::{dma_bit_mask, DmaConstraints};
#[cfg(all(feature = "std", target_os = "linux"))]
pub use dma_buf::DmaBuffer;
pub use error::{
    AddrError, BuildError, CapacityError, ConstraintsError, RangeError, TotalLenOverflow, ViewError,
};
pub use flow::Error;
pub use mask::{DmaMask, DmaMaskError};
pub use range::{DmaRange, Pages, PhysRange, Range, RawRange, VirtRange};
pub use segments::Segments;
pub use sink::{Coalescing, RangeSink, SinkMark};
pub use vec::{DmaArray, PhysArray, RangeArray, RangeList};
#[cfg(feature = "alloc")]
pub use vec::{DmaVec, PhysVec, RangeVec};
pub use view::{RangeView, ViewIter};
