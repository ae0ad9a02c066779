//! The software IOMMU (`alloc`): a multi-level radix I/O page table ([`IoPageTable`]),
//! an IOVA allocator over an aperture ([`IovaAllocator`]), a small IOTLB model, and the
//! [`SoftIommu`] mapper that combines them like `drivers/iommu/dma-iommu.c`.
//!
//! The page table follows the ARM LPAE / x86 layout: a node is one granule of 8-byte
//! entries (`granule / 8` entries: 512 for 4 KiB), levels are added until the DMA mask's
//! bits are covered, and leaves may sit at level 0 (one granule), 1 (2 MiB with 4 KiB
//! granules) or 2 (1 GiB) when the IOVA, the physical address and the length allow.
//! Empty nodes are freed on unmap, so the table never grows past what is mapped.
//!
//! | file | what |
//! |---|---|
//! | `page_table.rs` | [`IoPageTable`]: the radix engine over [`SoftFormat`] heap tables |
//! | `iova.rs` | [`IovaAllocator`]: first-fit, coalescing |
//! | `iotlb.rs` | the 64-entry IOTLB model |
//! | `soft.rs` | [`SoftIommu`], [`IommuConfig`], [`IommuStats`] |
#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

mod iotlb;
mod iova;
mod page_table;
mod soft;

pub use iova::IovaAllocator;
pub use page_table::{IoPageTable, SoftFormat};
pub use soft::{IommuConfig, IommuStats, SoftIommu};
