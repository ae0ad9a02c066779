//! Legacy Linux scatterlists: byte-exact `struct scatterlist` / `struct sg_table` /
//! `struct bio_vec` mirrors (x86_64, include/linux/scatterlist.h), export of range lists
//! into chained tables, a bounded walker for untrusted tables, and the DMA view.
//!
//! | file | what |
//! |---|---|
//! | `layout` | [`Scatterlist`] (32 B), [`SgTable`] (16 B), [`BioVec`] (16 B), flag bits |
//! | `page` | [`PageModel`]: pfn ↔ `struct page *`; [`Vmemmap`] (`base + pfn * 64`) |
//! | `export` | [`export`]: ranges → chained chunks (`__sg_alloc_table` layout) |
//! | `import` | [`SgWalk`] (`sg_next`), [`import`], [`import_dma`], [`import_bio_vecs`] |
//! | `dma` | [`iommu_map_sg`] (`iommu_dma_map_sg` + `__finalise_sg`), [`direct_map_sg`] |
//!
//! Nothing here allocates: tables live in caller-supplied [`SgChunk`]s (or any
//! [`MemoryReader`](crate::mem::MemoryReader)), ranges go to a
//! [`RangeSink`](crate::RangeSink).
//!
//! # Examples
//! ```
//! use physvec::sg::{export, import, Scatterlist, SgChunk, Vmemmap, SG_DEFAULT_MAX_SEGMENT};
//! use physvec::{PhysArray, PhysRange, RangeView};
//! let vm = Vmemmap::new(Vmemmap::X86_64_DEFAULT_BASE);
//! let ranges = [PhysRange::new(0x10000, 0x3000), PhysRange::new(0x13000, 0x1000), PhysRange::new(0x80000, 0x200)];
//! let (mut a, mut b) = ([Scatterlist::default(); 2], [Scatterlist::default(); 2]);
//! let mut chunks = [SgChunk { addr: physvec::VirtAddr::new(0x1000), entries: &mut a }, SgChunk { addr: physvec::VirtAddr::new(0x2000), entries: &mut b }];
//! let t = export(&RangeView::full(&ranges)?, &vm, SG_DEFAULT_MAX_SEGMENT, &mut chunks)?.table;
//! assert_eq!(t.orig_nents, 2); // the first two ranges merge
//! let mut back = PhysArray::<4>::new();
//! import(&chunks[..], physvec::VirtAddr::new(t.sgl), Some(t.orig_nents), &vm, 64, &mut back)?;
//! assert_eq!(back.as_slice(), [PhysRange::new(0x10000, 0x4000), PhysRange::new(0x80000, 0x200)]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod dma;
mod export;
mod import;
mod layout;
mod page;

pub use dma::{direct_map_sg, iommu_iova_len, iommu_map_sg, IommuSgParams, SgDmaError, SgOp};
pub use export::{chunk_split, entries_needed, export, SgChunk, SgExportError, SgExported};
pub use import::{
    entry_phys, import, import_bio_vecs, import_dma, SgEntry, SgImportError, SgWalk,
    SG_WALK_DEFAULT_LIMIT,
};
pub use layout::{
    BioVec, Scatterlist, SgTable, DMA_MAPPING_ERROR, SG_CHAIN, SG_CHUNK_SIZE,
    SG_DEFAULT_MAX_SEGMENT, SG_DMA_BUS_ADDRESS, SG_DMA_SWIOTLB, SG_END, SG_MAX_SEGMENTS,
    SG_PAGE_LINK_MASK, SG_PAGE_SIZE,
};
pub use page::{PageModel, Vmemmap};
