//! [`Error`]: one error type for a whole driver or emulator flow (build → map → encode,
//! or read → decode), so `?` works across the layers.
//!
//! Every error of the crate converts into it with `From`, keeps its own type inside (match
//! on the variant to get at the details) and answers [`ErrorInfo`] by delegation.

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

use crate::error::{
    AddrError, BuildError, ConstraintsError, ErrorInfo, Position, RangeError, TotalLenOverflow,
    ViewError,
};
use crate::map::MapError;
use crate::mask::DmaMaskError;
use crate::nvme::{DecodeError, InvalidPageSize, NvmeStatus, PrpError, SglError};
use crate::rdma::{Mlx5Error, MrError, SgeError};
use crate::sg::{SgDmaError, SgExportError, SgImportError};

/// Defines [`Error`] from one list of variants, with a `From` per wrapped type and
/// [`Error::inner`], so the list is written once.
macro_rules! variants {
    ($(#[$edoc:meta])* ; $($(#[$doc:meta])* $v:ident($t:ty)),* $(,)?) => {
        $(#[$edoc])*
        #[derive(Debug)]
        #[non_exhaustive]
        pub enum Error {
            $($(#[$doc])* $v($t),)*
        }

        $(impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::$v(e)
            }
        })*

        impl Error {
            /// The wrapped error, as the trait every error implements.
            ///
            /// ```
            /// let e: physvec::Error = physvec::AddrError::Overflow { addr: u64::MAX, delta: 1 }.into();
            /// assert_eq!(e.inner().kind(), "address_overflow");
            /// ```
            pub fn inner(&self) -> &dyn ErrorInfo {
                match self {
                    $(Error::$v(e) => e,)*
                }
            }
        }
    };
}

variants!(
    /// Any error a physvec flow meets, wrapped without loss.
    ///
    /// ```
    /// use physvec::map::{self, DataDirection, SoftIommu};
    /// use physvec::nvme::{self, MemoryPageSize, PrpListPage};
    /// use physvec::{DmaAddr, DmaConstraints, PageSize, PhysVec, RangeBuilder};
    ///
    /// // One `?` per layer, one error type for the caller.
    /// fn submit(pfns: &[u64]) -> Result<[u8; 16], physvec::Error> {
    ///     let mut b = RangeBuilder::new(DmaConstraints::new(), PhysVec::new())?;
    ///     for &pfn in pfns {
    ///         b.push_pfn(pfn, PageSize::SIZE_4K)?;
    ///     }
    ///     let phys = b.finish();
    ///     let iommu = SoftIommu::new_4k();
    ///     let io = map::map(&iommu, &phys, DataDirection::ToDevice)?;
    ///     let mut list = [0u64; 512];
    ///     let pool = [PrpListPage::new(DmaAddr::new(0x8_0000), &mut list)];
    ///     let prp = nvme::encode_prp(io.dma().iter().copied(), MemoryPageSize::SIZE_4K, pool)?;
    ///     let dptr = prp.data_pointer().to_bytes();
    ///     io.unmap()?;
    ///     Ok(dptr)
    /// }
    /// assert!(submit(&[0x100, 0x101, 0x300]).is_ok());
    /// let e = submit(&[]).unwrap_err();
    /// assert_eq!(physvec::error::ErrorInfo::kind(&e), "empty");
    /// ```
    ;
    /// Address arithmetic.
    Addr(AddrError),
    /// A range constructor.
    Range(RangeError),
    /// A byte window.
    View(ViewError),
    /// Device constraints.
    Constraints(ConstraintsError),
    /// A DMA mask.
    DmaMask(DmaMaskError),
    /// The range builder.
    Build(BuildError),
    /// A container's total length.
    TotalLen(TotalLenOverflow),
    /// A mapper.
    Map(MapError),
    /// The PRP encoder.
    Prp(PrpError),
    /// The SGL encoder.
    Sgl(SglError),
    /// A memory page size.
    PageSize(InvalidPageSize),
    /// A PRP / SGL decoder.
    Decode(DecodeError),
    /// Scatterlist export.
    SgExport(SgExportError),
    /// Scatterlist import.
    SgImport(SgImportError),
    /// A scatterlist's DMA view.
    SgDma(SgDmaError),
    /// RDMA memory registration.
    Mr(MrError),
    /// mlx5 MTT / KLM.
    Mlx5(Mlx5Error),
    /// RDMA scatter/gather entries.
    Sge(SgeError),
);

impl From<crate::map::SyncError> for Error {
    /// Keeps the cause; the reservation inside is dropped (use the `SyncError` itself
    /// to unwind it).
    fn from(e: crate::map::SyncError) -> Self {
        Error::Map(e.error)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.inner(), f)
    }
}

impl core::error::Error for Error {}

impl ErrorInfo for Error {
    fn kind(&self) -> &'static str {
        self.inner().kind()
    }
    fn position(&self) -> Option<Position> {
        self.inner().position()
    }
    fn nvme_status(&self) -> Option<NvmeStatus> {
        self.inner().nvme_status()
    }
}
