//! RDMA memory registration and work-request formats from DMA range lists.
//!
//! | file | what |
//! |---|---|
//! | `pages` | [`sg_to_pages`]: fast-registration page lists, exactly `ib_sg_to_pages` |
//! | `pgsz` | [`best_page_size`]: `ib_umem_find_best_pgsz` (post-2025 form) |
//! | `mlx5` | [`encode_mtt`], [`encode_klm`], [`encode_ksm`]: big-endian, 64-byte padded |
//! | `sge` | [`IbSge`] (= `ibv_sge`, 16 B) and [`build_sges`] with 32-bit splitting |
//! | `rw` | [`plan_rw`]: single SGE / several SGEs / MR, as `rdma_rw` decides |
//! | `nvme` | [`keyed_sgl`]: registered region → NVMe Keyed SGL Data Block |
//!
//! Outputs go to caller buffers or callbacks; nothing allocates.
//!
//! # Examples
//! ```
//! use physvec::rdma::{encode_mtt, sg_to_pages, MLX5_EN_RD, MLX5_EN_WR};
//! use physvec::{DmaRange, PageSize};
//! let segs = [DmaRange::new(0x10_0200, 0xe00), DmaRange::new(0x10_1000, 0x1000)];
//! let mut pages = [0u64; 4];
//! let m = sg_to_pages(&segs, 0, PageSize::SIZE_4K, &mut pages)?;
//! assert_eq!((m.iova, m.length, m.npages), (0x10_0200, 0x1e00, 2));
//! let mut mtt = [0u8; 64];
//! encode_mtt(&pages[..m.npages], MLX5_EN_RD | MLX5_EN_WR, &mut mtt).unwrap();
//! assert_eq!(mtt[8..16], [0, 0, 0, 0, 0, 0x10, 0x10, 0x03]);
//! # Ok::<(), physvec::rdma::MrError>(())
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

mod mlx5;
mod nvme;
mod pages;
mod pgsz;
mod rw;
mod sge;

pub use mlx5::{
    encode_klm, encode_ksm, encode_mtt, klm_bytes, klm_count, mtt_bytes, Mlx5Error, MLX5_EN_RD,
    MLX5_EN_WR, MLX5_KLM_SIZE, MLX5_MAX_KLM_BYTE_COUNT, MLX5_MKC_ACCESS_MODE_KLMS,
    MLX5_MKC_ACCESS_MODE_KSM, MLX5_MKC_ACCESS_MODE_MTT, MLX5_MTT_SIZE, MLX5_UMR_XLT_ALIGNMENT,
};
pub use nvme::{keyed_sgl, KeyedLengthError, RegisteredRegion};
pub use pages::{sg_to_pages, sg_to_pages_with, MrError, MrMapping};
pub use pgsz::{best_page_size, PgszError};
pub use rw::{coalesced_count, io_needs_mr, plan_rw, RwCaps, RwDirection, RwError, RwPlan};
pub use sge::{build_sges, sge_count, IbSge, IbvSge, SgeError, IB_SGE_MAX_LENGTH};
