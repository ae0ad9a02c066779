//! [`VfioBackend`](super::VfioBackend): the two ioctls the mapper needs, implemented for rust-vmm's
//! `VfioContainer`, and [`open_pci`](super::open_pci), which opens a device through VFIO type1.
#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

use std::format;

use super::VfioError;
use crate::addr::{DmaAddr, VirtAddr};
use crate::map::DataDirection;

/// The two ioctls the mapper needs, on a VFIO type1 container.
///
/// # Safety
/// An implementation that really maps memory for a device must do exactly what
/// [`VfioBackend::map_dma`](super::VfioBackend::map_dma) says and nothing more; the mapper relies on
/// [`VfioBackend::unmap_dma`](super::VfioBackend::unmap_dma) returning `Ok` only when the whole extent was unmapped.
pub unsafe trait VfioBackend {
    /// `VFIO_IOMMU_MAP_DMA`: `[iova, iova + len)` → the pages behind `[vaddr, vaddr +
    /// len)` (page-aligned), readable and/or writable by the device as `dir` says (a
    /// backend may grant both).
    ///
    /// # Safety
    /// The device may read and write that memory until it is unmapped: the caller
    /// guarantees it stays allocated and that no Rust reference relies on its contents
    /// not changing meanwhile (access it through raw pointers / volatile operations).
    ///
    /// # Errors
    /// [`VfioError::MapDma`](super::VfioError::MapDma).
    unsafe fn map_dma(
        &self,
        vaddr: VirtAddr,
        iova: DmaAddr,
        len: u64,
        dir: DataDirection,
    ) -> Result<(), VfioError>;

    /// `VFIO_IOMMU_UNMAP_DMA` of exactly `[iova, iova + len)`.
    ///
    /// # Errors
    /// [`VfioError::UnmapDma`](super::VfioError::UnmapDma), also when the kernel unmapped a different size.
    fn unmap_dma(&self, iova: DmaAddr, len: u64) -> Result<(), VfioError>;
}

// SAFETY: forwards to the referenced backend.
unsafe impl<B: VfioBackend + ?Sized> VfioBackend for &B {
    unsafe fn map_dma(
        &self,
        vaddr: VirtAddr,
        iova: DmaAddr,
        len: u64,
        dir: DataDirection,
    ) -> Result<(), VfioError> {
        // SAFETY: the caller upholds `map_dma`'s contract, which we pass on unchanged.
        unsafe { (**self).map_dma(vaddr, iova, len, dir) }
    }
    fn unmap_dma(&self, iova: DmaAddr, len: u64) -> Result<(), VfioError> {
        (**self).unmap_dma(iova, len)
    }
}

// SAFETY: forwards to the shared backend.
unsafe impl<B: VfioBackend + ?Sized> VfioBackend for std::sync::Arc<B> {
    unsafe fn map_dma(
        &self,
        vaddr: VirtAddr,
        iova: DmaAddr,
        len: u64,
        dir: DataDirection,
    ) -> Result<(), VfioError> {
        // SAFETY: the caller upholds `map_dma`'s contract, which we pass on unchanged.
        unsafe { (**self).map_dma(vaddr, iova, len, dir) }
    }
    fn unmap_dma(&self, iova: DmaAddr, len: u64) -> Result<(), VfioError> {
        (**self).unmap_dma(iova, len)
    }
}

// SAFETY: `vfio_dma_map` / `vfio_dma_unmap` are exactly VFIO_IOMMU_MAP_DMA /
// VFIO_IOMMU_UNMAP_DMA, and the latter fails unless the whole size was unmapped.
unsafe impl VfioBackend for vfio_ioctls::VfioContainer {
    unsafe fn map_dma(
        &self,
        vaddr: VirtAddr,
        iova: DmaAddr,
        len: u64,
        _dir: DataDirection,
    ) -> Result<(), VfioError> {
        let err = |errno| VfioError::MapDma {
            vaddr: vaddr.as_u64(),
            iova: iova.as_u64(),
            len,
            errno,
        };
        let size = usize::try_from(len).map_err(|_| err(None))?;
        let ptr = usize::try_from(vaddr.as_u64()).map_err(|_| err(None))? as *mut u8;
        // SAFETY: the caller keeps the memory allocated and free of conflicting Rust
        // references while it is mapped (this method's contract); the library's only
        // other precondition is the same.
        unsafe { self.vfio_dma_map(iova.as_u64(), size, ptr) }.map_err(|e| match e {
            vfio_ioctls::VfioError::IommuDmaMap(s) => err(Some(s.errno())),
            _ => err(None),
        })
    }

    fn unmap_dma(&self, iova: DmaAddr, len: u64) -> Result<(), VfioError> {
        let err = |errno| VfioError::UnmapDma {
            iova: iova.as_u64(),
            len,
            errno,
        };
        let size = usize::try_from(len).map_err(|_| err(None))?;
        self.vfio_dma_unmap(iova.as_u64(), size)
            .map_err(|e| match e {
                vfio_ioctls::VfioError::IommuDmaUnmap(s) => err(Some(s.errno())),
                _ => err(None),
            })
    }
}

/// Opens the PCI device `bdf` (`0000:00:03.0`, bound to `vfio-pci`) through VFIO type1:
/// a new container, the device's IOMMU group added to it (the IOMMU type set), and the
/// device fd. The container is what [`VfioMapper::new`](super::VfioMapper::new) takes.
///
/// # Errors
/// [`VfioError::Open`](super::VfioError::Open) naming the step (`container`, `device`) with the library's
/// message: no `/dev/vfio/vfio`, no IOMMU group, group not viable (another device of the
/// group bound to a host driver), permission.
///
/// ```no_run
/// let (container, device) = physvec::map::vfio::open_pci("0000:01:00.0")?;
/// let mapper = physvec::map::vfio::VfioMapper::new(container, physvec::map::vfio::VfioIovaConfig::new(48))?;
/// # drop((device, mapper));
/// # Ok::<(), physvec::map::vfio::VfioError>(())
/// ```
pub fn open_pci(
    bdf: &str,
) -> Result<
    (
        std::sync::Arc<vfio_ioctls::VfioContainer>,
        vfio_ioctls::VfioDevice,
    ),
    VfioError,
> {
    let open = |what, e: vfio_ioctls::VfioError| VfioError::Open {
        what,
        detail: format!("{e}"),
    };
    let container = std::sync::Arc::new(
        vfio_ioctls::VfioContainer::new(None).map_err(|e| open("container", e))?,
    );
    let path = format!("/sys/bus/pci/devices/{bdf}");
    let device =
        vfio_ioctls::VfioDevice::new(std::path::Path::new(&path), container.clone(), false)
            .map_err(|e| open("device", e))?;
    Ok((container, device))
}
