//! The VFIO mapper (feature `vfio`, Linux): process-virtual memory ([`VirtRange`]) made
//! visible to a device through the IOMMU with VFIO type1, for user-space drivers.
//!
//! VFIO maps *virtual* memory of the process: `VFIO_IOMMU_MAP_DMA {vaddr, iova, size}`
//! pins the pages behind `vaddr` and points the IOVA at them. So this mapper takes
//! [`VirtRange`]s and gives [`DmaRange`]s; it does not implement
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
//! IOVA space comes from physvec's [`IovaAllocator`] with the rules of the kernel's IOVA
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

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::format;
use std::string::String;
use std::vec::Vec;

use super::{DataDirection, IovaAllocator};
use crate::addr::{DmaAddr, PageSize, VirtAddr};
use crate::range::{DmaRange, VirtRange};

/// The x86 interrupt window: DMA writes here are MSIs, never memory (`IOAPIC_RANGE_*` in
/// `drivers/iommu/intel/iommu.c`, reserved in every IOVA domain).
pub const MSI_WINDOW: (u64, u64) = (0xfee0_0000, 0xfeef_ffff);

/// An error of the VFIO mapper: what failed, and at which addresses.
///
/// ```
/// use physvec::map::vfio::VfioError;
/// let e = VfioError::NotRegistered { addr: 0x1000, len: 8 };
/// assert_eq!(e.kind(), "not_registered");
/// assert_eq!(e.to_string(), "virtual range 0x1000+0x8 is not inside a registered region");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum VfioError {
    /// Opening the container, group or device failed (the VFIO library's message).
    Open {
        /// What was being opened.
        what: &'static str,
        /// The underlying error.
        detail: String,
    },
    /// `VFIO_IOMMU_MAP_DMA` failed.
    MapDma {
        /// Process-virtual address.
        vaddr: u64,
        /// IOVA.
        iova: u64,
        /// Bytes.
        len: u64,
        /// The errno (`EEXIST`: overlapping IOVA; `ENOMEM`: memlock limit; `EFAULT`: bad
        /// vaddr), or `None` when the library refused before the call.
        errno: Option<i32>,
    },
    /// `VFIO_IOMMU_UNMAP_DMA` failed or unmapped a different amount than asked.
    UnmapDma {
        /// IOVA.
        iova: u64,
        /// Bytes asked for.
        len: u64,
        /// The errno, or `None` when the kernel unmapped a different size (for example
        /// nothing, because nothing was mapped there).
        errno: Option<i32>,
    },
    /// A registered region or a range was empty.
    Empty,
    /// A registered region must start and end on the granule (the host page size).
    Unaligned {
        /// Start.
        addr: u64,
        /// Length.
        len: u64,
        /// The granule in bytes.
        granule: u64,
    },
    /// The region overlaps one already registered.
    Overlap {
        /// Start.
        addr: u64,
        /// Length.
        len: u64,
    },
    /// A virtual range is not inside one registered region (registered mode).
    NotRegistered {
        /// Start.
        addr: u64,
        /// Length.
        len: u64,
    },
    /// No free IOVA space of this size.
    IovaExhausted {
        /// Bytes asked for.
        len: u64,
    },
    /// `addr + len` passes 2^64.
    AddressOverflow {
        /// Start.
        addr: u64,
        /// Length.
        len: u64,
    },
    /// [`VfioMapper::verify_released`] found a mapping still live in the kernel.
    StillMapped {
        /// IOVA.
        iova: u64,
        /// Bytes.
        len: u64,
    },
    /// The configuration leaves no usable IOVA space.
    InvalidConfig {
        /// What is wrong.
        what: &'static str,
    },
}

impl VfioError {
    /// A stable snake_case name of the variant.
    ///
    /// ```
    /// assert_eq!(physvec::map::vfio::VfioError::Empty.kind(), "empty");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            VfioError::Open { .. } => "open",
            VfioError::MapDma { .. } => "map_dma",
            VfioError::UnmapDma { .. } => "unmap_dma",
            VfioError::Empty => "empty",
            VfioError::Unaligned { .. } => "unaligned",
            VfioError::Overlap { .. } => "overlap",
            VfioError::NotRegistered { .. } => "not_registered",
            VfioError::IovaExhausted { .. } => "iova_exhausted",
            VfioError::AddressOverflow { .. } => "address_overflow",
            VfioError::StillMapped { .. } => "still_mapped",
            VfioError::InvalidConfig { .. } => "invalid_config",
        }
    }
}

impl fmt::Display for VfioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errno = |e: &Option<i32>| match e {
            Some(n) => format!("errno {n} ({})", std::io::Error::from_raw_os_error(*n)),
            None => "size mismatch".into(),
        };
        match self {
            VfioError::Open { what, detail } => write!(f, "cannot open VFIO {what}: {detail}"),
            VfioError::MapDma {
                vaddr,
                iova,
                len,
                errno: e,
            } => write!(
                f,
                "VFIO_IOMMU_MAP_DMA vaddr {vaddr:#x} -> iova {iova:#x} +{len:#x} failed: {}",
                errno(e)
            ),
            VfioError::UnmapDma {
                iova,
                len,
                errno: e,
            } => write!(
                f,
                "VFIO_IOMMU_UNMAP_DMA iova {iova:#x} +{len:#x} failed: {}",
                errno(e)
            ),
            VfioError::Empty => f.write_str("empty range"),
            VfioError::Unaligned { addr, len, granule } => write!(
                f,
                "region {addr:#x}+{len:#x} is not aligned to the {granule:#x}-byte granule"
            ),
            VfioError::Overlap { addr, len } => {
                write!(f, "region {addr:#x}+{len:#x} overlaps a registered region")
            }
            VfioError::NotRegistered { addr, len } => write!(
                f,
                "virtual range {addr:#x}+{len:#x} is not inside a registered region"
            ),
            VfioError::IovaExhausted { len } => write!(f, "no free IOVA space for {len:#x} bytes"),
            VfioError::AddressOverflow { addr, len } => {
                write!(
                    f,
                    "range {addr:#x}+{len:#x} passes the end of the address space"
                )
            }
            VfioError::StillMapped { iova, len } => {
                write!(f, "iova {iova:#x}+{len:#x} is still mapped in the kernel")
            }
            VfioError::InvalidConfig { what } => write!(f, "invalid VFIO mapper config: {what}"),
        }
    }
}

impl std::error::Error for VfioError {}

/// The two ioctls the mapper needs, on a VFIO type1 container.
///
/// # Safety
/// An implementation that really maps memory for a device must do exactly what
/// [`VfioBackend::map_dma`] says and nothing more; the mapper relies on
/// [`VfioBackend::unmap_dma`] returning `Ok` only when the whole extent was unmapped.
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
    /// [`VfioError::MapDma`].
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
    /// [`VfioError::UnmapDma`], also when the kernel unmapped a different size.
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

/// Where the mapper may place IOVAs.
///
/// ```
/// use physvec::map::vfio::VfioIovaConfig;
/// let c = VfioIovaConfig::new(39);
/// assert_eq!(c.last_iova(), (1 << 39) - 1);
/// assert_eq!(c.granule.get(), 4096);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VfioIovaConfig {
    /// The IOMMU's input address width in bits (Intel VT-d: 39 or 48; from
    /// `VFIO_IOMMU_GET_INFO`'s IOVA ranges on real hardware).
    pub width_bits: u32,
    /// The host page size: VFIO maps whole pages.
    pub granule: PageSize,
}

impl VfioIovaConfig {
    /// `width_bits` wide, 4 KiB pages.
    ///
    /// ```
    /// assert_eq!(physvec::map::vfio::VfioIovaConfig::new(48).width_bits, 48);
    /// ```
    pub const fn new(width_bits: u32) -> Self {
        VfioIovaConfig {
            width_bits,
            granule: PageSize::SIZE_4K,
        }
    }

    /// The highest IOVA (`2^width - 1`, saturating at `u64::MAX`).
    ///
    /// ```
    /// assert_eq!(physvec::map::vfio::VfioIovaConfig::new(64).last_iova(), u64::MAX);
    /// ```
    pub const fn last_iova(&self) -> u64 {
        if self.width_bits >= 64 {
            u64::MAX
        } else {
            // width < 64: the shift fits and the result is >= 0.
            (1u64 << self.width_bits).wrapping_sub(1)
        }
    }
}

/// Counters of a [`VfioMapper`].
///
/// ```
/// let s = physvec::map::vfio::VfioStats::default();
/// assert_eq!(s.map_ioctls + s.unmap_ioctls, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VfioStats {
    /// `VFIO_IOMMU_MAP_DMA` calls made.
    pub map_ioctls: u64,
    /// `VFIO_IOMMU_UNMAP_DMA` calls made.
    pub unmap_ioctls: u64,
    /// Registered-memory lookups ([`VfioMapper::translate`] ranges).
    pub lookups: u64,
    /// Registered regions live.
    pub regions: usize,
    /// Bytes in registered regions.
    pub registered_bytes: u64,
    /// Per-I/O mappings live.
    pub live_io: usize,
}

#[derive(Clone, Copy, Debug)]
struct Region {
    len: u64,
    iova: u64,
}

struct State {
    /// The usable IOVA space, in pieces around the interrupt window.
    allocators: Vec<IovaAllocator>,
    /// Registered regions by virtual start.
    regions: BTreeMap<u64, Region>,
    /// Every IOVA extent ever mapped, for [`VfioMapper::verify_released`].
    history: BTreeSet<(u64, u64)>,
    stats: VfioStats,
}

/// A VFIO type1 mapper from process-virtual memory to IOVAs, with registered regions and
/// per-I/O mappings (see the [module docs](self)).
///
/// Methods take `&self`; the bookkeeping sits in a `RefCell`, so the mapper is `!Sync`:
/// one per thread or queue, or behind the caller's lock.
///
/// It takes process-virtual ranges only; a physical range is a type error:
///
/// ```compile_fail,E0308
/// # use physvec::map::vfio::*; use physvec::map::DataDirection; use physvec::*;
/// # struct Nop;
/// # // SAFETY: maps nothing.
/// # unsafe impl VfioBackend for Nop {
/// #     unsafe fn map_dma(&self, _: VirtAddr, _: DmaAddr, _: u64, _: DataDirection) -> Result<(), VfioError> { Ok(()) }
/// #     fn unmap_dma(&self, _: DmaAddr, _: u64) -> Result<(), VfioError> { Ok(()) }
/// # }
/// let m = VfioMapper::new(Nop, VfioIovaConfig::new(39)).unwrap();
/// let _ = m.translate(PhysRange::new(0x1000, 0x1000)); // expected `Range<Virt>`
/// ```
pub struct VfioMapper<B: VfioBackend> {
    backend: B,
    config: VfioIovaConfig,
    state: RefCell<State>,
    lookups: Cell<u64>,
}

impl<B: VfioBackend> fmt::Debug for VfioMapper<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VfioMapper")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Splits `[first, last]` around the interrupt window into allocators.
fn allocators(config: &VfioIovaConfig) -> Result<Vec<IovaAllocator>, VfioError> {
    let g = config.granule.get();
    let last = config.last_iova();
    let mut out = Vec::new();
    let mut pieces = Vec::new();
    // Never IOVA 0: start at one granule.
    if last < MSI_WINDOW.0 {
        pieces.push((g, last));
    } else {
        pieces.push((g, MSI_WINDOW.0.saturating_sub(1)));
        if last > MSI_WINDOW.1 {
            pieces.push((MSI_WINDOW.1.saturating_add(1), last));
        }
    }
    for (first, last) in pieces {
        if let Ok(a) = IovaAllocator::new(config.granule, first, last) {
            out.push(a);
        }
    }
    if out.is_empty() {
        return Err(VfioError::InvalidConfig {
            what: "the IOMMU width leaves no IOVA space above 0",
        });
    }
    Ok(out)
}

/// Distinct IOVA extents remembered for [`VfioMapper::verify_released`]; beyond this the
/// kernel-side check covers the first ones only (the books are always checked).
const HISTORY_MAX: usize = 1024;

/// Opens the PCI device `bdf` (`0000:00:03.0`, bound to `vfio-pci`) through VFIO type1:
/// a new container, the device's IOMMU group added to it (the IOMMU type set), and the
/// device fd. The container is what [`VfioMapper::new`] takes.
///
/// # Errors
/// [`VfioError::Open`] naming the step (`container`, `device`) with the library's
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

fn end_of(addr: u64, len: u64) -> Result<u64, VfioError> {
    addr.checked_add(len)
        .ok_or(VfioError::AddressOverflow { addr, len })
}

impl<B: VfioBackend> VfioMapper<B> {
    /// A mapper over `backend` (a VFIO type1 container whose IOMMU is set).
    ///
    /// # Errors
    /// [`VfioError::InvalidConfig`] when the width leaves no IOVA space.
    ///
    /// ```
    /// # use physvec::map::vfio::*; use physvec::map::DataDirection; use physvec::*;
    /// # struct Nop;
    /// # // SAFETY: maps nothing.
    /// # unsafe impl VfioBackend for Nop {
    /// #     unsafe fn map_dma(&self, _: VirtAddr, _: DmaAddr, _: u64, _: DataDirection) -> Result<(), VfioError> { Ok(()) }
    /// #     fn unmap_dma(&self, _: DmaAddr, _: u64) -> Result<(), VfioError> { Ok(()) }
    /// # }
    /// assert!(VfioMapper::new(Nop, VfioIovaConfig::new(12)).is_err());
    /// assert!(VfioMapper::new(Nop, VfioIovaConfig::new(39)).is_ok());
    /// ```
    pub fn new(backend: B, config: VfioIovaConfig) -> Result<Self, VfioError> {
        Ok(VfioMapper {
            backend,
            config,
            state: RefCell::new(State {
                allocators: allocators(&config)?,
                regions: BTreeMap::new(),
                history: BTreeSet::new(),
                stats: VfioStats::default(),
            }),
            lookups: Cell::new(0),
        })
    }

    /// The backend (to reach the container for other ioctls).
    ///
    /// ```
    /// # use physvec::map::vfio::*; use physvec::map::DataDirection; use physvec::*;
    /// # #[derive(Debug)] struct Nop;
    /// # // SAFETY: maps nothing.
    /// # unsafe impl VfioBackend for Nop {
    /// #     unsafe fn map_dma(&self, _: VirtAddr, _: DmaAddr, _: u64, _: DataDirection) -> Result<(), VfioError> { Ok(()) }
    /// #     fn unmap_dma(&self, _: DmaAddr, _: u64) -> Result<(), VfioError> { Ok(()) }
    /// # }
    /// let m = VfioMapper::new(Nop, VfioIovaConfig::new(39))?;
    /// let _nop: &Nop = m.backend();
    /// # Ok::<(), VfioError>(())
    /// ```
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// A snapshot of the counters.
    ///
    /// ```
    /// # use physvec::map::vfio::*; use physvec::map::DataDirection; use physvec::*;
    /// # struct Nop;
    /// # // SAFETY: maps nothing.
    /// # unsafe impl VfioBackend for Nop {
    /// #     unsafe fn map_dma(&self, _: VirtAddr, _: DmaAddr, _: u64, _: DataDirection) -> Result<(), VfioError> { Ok(()) }
    /// #     fn unmap_dma(&self, _: DmaAddr, _: u64) -> Result<(), VfioError> { Ok(()) }
    /// # }
    /// let m = VfioMapper::new(Nop, VfioIovaConfig::new(39))?;
    /// assert_eq!(m.stats().regions, 0);
    /// # Ok::<(), VfioError>(())
    /// ```
    pub fn stats(&self) -> VfioStats {
        let mut s = self.state.borrow().stats;
        s.lookups = self.lookups.get();
        s
    }

    /// Whether nothing is mapped (no region, no per-I/O mapping) and all IOVA space is
    /// free, by the mapper's own books. [`Self::verify_released`] asks the kernel.
    ///
    /// ```
    /// # use physvec::map::vfio::*; use physvec::map::DataDirection; use physvec::*;
    /// # struct Nop;
    /// # // SAFETY: maps nothing.
    /// # unsafe impl VfioBackend for Nop {
    /// #     unsafe fn map_dma(&self, _: VirtAddr, _: DmaAddr, _: u64, _: DataDirection) -> Result<(), VfioError> { Ok(()) }
    /// #     fn unmap_dma(&self, _: DmaAddr, _: u64) -> Result<(), VfioError> { Ok(()) }
    /// # }
    /// assert!(VfioMapper::new(Nop, VfioIovaConfig::new(39))?.is_idle());
    /// # Ok::<(), VfioError>(())
    /// ```
    pub fn is_idle(&self) -> bool {
        let st = self.state.borrow();
        st.regions.is_empty()
            && st.stats.live_io == 0
            && st.allocators.iter().all(IovaAllocator::is_pristine)
    }

    fn alloc_iova(&self, len: u64) -> Result<u64, VfioError> {
        // Large regions get 2 MiB-aligned IOVAs so the IOMMU can use large leaves.
        let align = if len >= PageSize::SIZE_2M.get() {
            PageSize::SIZE_2M
        } else {
            self.config.granule
        };
        let mut st = self.state.borrow_mut();
        st.allocators
            .iter_mut()
            .find_map(|a| a.alloc(len, align))
            .ok_or(VfioError::IovaExhausted { len })
    }

    fn free_iova(&self, iova: u64, len: u64) {
        let mut st = self.state.borrow_mut();
        for a in st.allocators.iter_mut() {
            if iova >= a.first() && iova <= a.last() {
                // The extent came from this allocator; a failure would be a bookkeeping
                // bug that leaves the space reserved, never a wrong reuse.
                let _ = a.free(iova, len);
                return;
            }
        }
    }

    /// One MAP_DMA, counted and remembered; on error the IOVA is freed.
    ///
    /// # Safety
    /// As [`VfioBackend::map_dma`].
    unsafe fn link(
        &self,
        vaddr: u64,
        iova: u64,
        len: u64,
        dir: DataDirection,
    ) -> Result<(), VfioError> {
        self.bump(|s| s.map_ioctls = s.map_ioctls.saturating_add(1));
        // SAFETY: passed on from the caller.
        unsafe {
            self.backend
                .map_dma(VirtAddr::new(vaddr), DmaAddr::new(iova), len, dir)
        }?;
        let mut st = self.state.borrow_mut();
        if st.history.len() < HISTORY_MAX {
            st.history.insert((iova, len));
        }
        Ok(())
    }

    fn unlink(&self, iova: u64, len: u64) -> Result<(), VfioError> {
        self.bump(|s| s.unmap_ioctls = s.unmap_ioctls.saturating_add(1));
        self.backend.unmap_dma(DmaAddr::new(iova), len)
    }

    fn bump(&self, f: impl FnOnce(&mut VfioStats)) {
        f(&mut self.state.borrow_mut().stats);
    }

    /// Registered mode: maps `region` (granule-aligned) once, with one
    /// `VFIO_IOMMU_MAP_DMA`, and returns its DMA range. Later I/O inside it is a
    /// [`Self::translate`] with no system call.
    ///
    /// # Safety
    /// The device may access the region until [`Self::unregister`]: it must stay
    /// allocated, and Rust must not hold references whose contents the device could
    /// change meanwhile (use raw pointers / volatile accesses), as
    /// [`VfioBackend::map_dma`] says.
    ///
    /// # Errors
    /// [`VfioError::Empty`], [`VfioError::Unaligned`], [`VfioError::AddressOverflow`],
    /// [`VfioError::Overlap`], [`VfioError::IovaExhausted`], [`VfioError::MapDma`].
    /// Nothing is mapped or reserved on error.
    ///
    /// See the [module example](self).
    pub unsafe fn register(
        &self,
        region: VirtRange,
        dir: DataDirection,
    ) -> Result<DmaRange, VfioError> {
        let (addr, len) = (region.addr().as_u64(), region.len());
        if len == 0 {
            return Err(VfioError::Empty);
        }
        let g = self.config.granule;
        if (addr | len) & g.mask() != 0 {
            return Err(VfioError::Unaligned {
                addr,
                len,
                granule: g.get(),
            });
        }
        let end = end_of(addr, len)?;
        {
            let st = self.state.borrow();
            let before = st.regions.range(..end).next_back();
            if before.is_some_and(|(&s, r)| s.saturating_add(r.len) > addr) {
                return Err(VfioError::Overlap { addr, len });
            }
        }
        let iova = self.alloc_iova(len)?;
        // SAFETY: the caller upholds `register`'s contract, which is `map_dma`'s.
        if let Err(e) = unsafe { self.link(addr, iova, len, dir) } {
            self.free_iova(iova, len);
            return Err(e);
        }
        let mut st = self.state.borrow_mut();
        st.regions.insert(addr, Region { len, iova });
        st.stats.regions = st.regions.len();
        st.stats.registered_bytes = st.stats.registered_bytes.saturating_add(len);
        DmaRange::try_new(iova, len).map_err(|_| VfioError::AddressOverflow { addr: iova, len })
    }

    /// Unmaps a region [`Self::register`] mapped (the same range) and frees its IOVAs.
    ///
    /// # Errors
    /// [`VfioError::NotRegistered`] when `region` is not exactly a registered region;
    /// [`VfioError::UnmapDma`] (the region stays registered).
    ///
    /// See the [module example](self).
    pub fn unregister(&self, region: VirtRange) -> Result<(), VfioError> {
        let (addr, len) = (region.addr().as_u64(), region.len());
        let r = self
            .state
            .borrow()
            .regions
            .get(&addr)
            .copied()
            .filter(|r| r.len == len)
            .ok_or(VfioError::NotRegistered { addr, len })?;
        self.unlink(r.iova, r.len)?;
        self.free_iova(r.iova, r.len);
        let mut st = self.state.borrow_mut();
        st.regions.remove(&addr);
        st.stats.regions = st.regions.len();
        st.stats.registered_bytes = st.stats.registered_bytes.saturating_sub(len);
        Ok(())
    }

    /// Registered mode, per I/O: the DMA range of `virt`, which must lie inside one
    /// registered region. A `BTreeMap` lookup; no system call.
    ///
    /// # Errors
    /// [`VfioError::Empty`], [`VfioError::AddressOverflow`],
    /// [`VfioError::NotRegistered`].
    ///
    /// See the [module example](self).
    pub fn translate(&self, virt: VirtRange) -> Result<DmaRange, VfioError> {
        let (addr, len) = (virt.addr().as_u64(), virt.len());
        if len == 0 {
            return Err(VfioError::Empty);
        }
        let end = end_of(addr, len)?;
        let st = self.state.borrow();
        let (start, r) = st
            .regions
            .range(..=addr)
            .next_back()
            .filter(|(&s, r)| s.saturating_add(r.len) >= end)
            .ok_or(VfioError::NotRegistered { addr, len })?;
        // `start <= addr` (range bound) and the region's IOVA extent holds the offset.
        let iova = r
            .iova
            .checked_add(addr.wrapping_sub(*start))
            .ok_or(VfioError::AddressOverflow { addr, len })?;
        self.lookups.set(self.lookups.get().saturating_add(1));
        DmaRange::try_new(iova, len).map_err(|_| VfioError::AddressOverflow { addr, len })
    }

    /// [`Self::translate`] for each range of an I/O, into `out` (adjacent DMA ranges are
    /// merged).
    ///
    /// # Errors
    /// As [`Self::translate`], for the first range that fails; `out` may hold the ranges
    /// before it.
    ///
    /// ```
    /// # use physvec::map::vfio::*; use physvec::map::DataDirection; use physvec::*;
    /// # struct Nop;
    /// # // SAFETY: maps nothing.
    /// # unsafe impl VfioBackend for Nop {
    /// #     unsafe fn map_dma(&self, _: VirtAddr, _: DmaAddr, _: u64, _: DataDirection) -> Result<(), VfioError> { Ok(()) }
    /// #     fn unmap_dma(&self, _: DmaAddr, _: u64) -> Result<(), VfioError> { Ok(()) }
    /// # }
    /// let m = VfioMapper::new(Nop, VfioIovaConfig::new(39))?;
    /// // SAFETY: the fake backend maps nothing.
    /// let d = unsafe { m.register(VirtRange::new(0x10000, 0x4000), DataDirection::Bidirectional)? };
    /// let mut out = Vec::new();
    /// m.translate_all(&[VirtRange::new(0x10100, 0xf00), VirtRange::new(0x11000, 0x80)], &mut out)?;
    /// assert_eq!(out, [DmaRange::new(d.addr().as_u64() + 0x100, 0xf80)]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn translate_all(
        &self,
        virts: &[VirtRange],
        out: &mut Vec<DmaRange>,
    ) -> Result<(), VfioError> {
        for v in virts {
            push_merged(out, self.translate(*v)?);
        }
        Ok(())
    }

    /// Per-I/O mode: reserves IOVA space for `virts`, links each range's pages with one
    /// `VFIO_IOMMU_MAP_DMA`, and returns the device-visible ranges. Each range keeps its
    /// offset inside its page, so buffers at any byte offset work; ranges that meet on a
    /// page boundary come out as one DMA range.
    ///
    /// # Safety
    /// As [`Self::register`], until the [`IoMapping`] is unmapped or dropped.
    ///
    /// # Errors
    /// [`VfioError::Empty`], [`VfioError::AddressOverflow`],
    /// [`VfioError::IovaExhausted`], [`VfioError::MapDma`]. Nothing stays mapped or
    /// reserved on error.
    ///
    /// See the [module example](self).
    pub unsafe fn map_io(
        &self,
        virts: &[VirtRange],
        dir: DataDirection,
    ) -> Result<IoMapping<'_, B>, VfioError> {
        let g = self.config.granule;
        // Page-aligned extents covering each range, and their total.
        let mut pages = Vec::with_capacity(virts.len());
        let mut total: u64 = 0;
        for v in virts {
            let (addr, len) = (v.addr().as_u64(), v.len());
            if len == 0 {
                return Err(VfioError::Empty);
            }
            let end = end_of(addr, len)?;
            let start = addr & !g.mask();
            let stop = end
                .checked_add(g.mask())
                .ok_or(VfioError::AddressOverflow { addr, len })?
                & !g.mask();
            // stop >= end > start: no wrap.
            let span = stop.wrapping_sub(start);
            total = total
                .checked_add(span)
                .ok_or(VfioError::AddressOverflow { addr, len })?;
            pages.push((start, span, addr.wrapping_sub(start), len));
        }
        if total == 0 {
            return Err(VfioError::Empty);
        }
        let base = self.alloc_iova(total)?;
        let mut io = IoMapping {
            mapper: self,
            base,
            reserved: total,
            linked: 0,
            dma: Vec::with_capacity(virts.len()),
        };
        for (start, span, off, len) in pages {
            // `linked + span <= total`, and `base + total` fits (the allocator gave it).
            let iova = base.wrapping_add(io.linked);
            // SAFETY: the caller upholds `map_io`'s contract, which is `map_dma`'s.
            unsafe { self.link(start, iova, span, dir) }?; // `io`'s drop unwinds
            io.linked = io.linked.wrapping_add(span);
            let dma = DmaRange::try_new(iova.wrapping_add(off), len)
                .map_err(|_| VfioError::AddressOverflow { addr: iova, len })?;
            push_merged(&mut io.dma, dma);
        }
        self.bump(|s| s.live_io = s.live_io.saturating_add(1));
        io.linked_all();
        Ok(io)
    }

    /// Checks that nothing this mapper ever mapped is still mapped: its books are empty,
    /// and for every IOVA extent it has mapped (the first 1024 distinct ones), the
    /// kernel's `VFIO_IOMMU_UNMAP_DMA` finds nothing to unmap there. Run it after
    /// teardown.
    ///
    /// # Errors
    /// [`VfioError::StillMapped`] for the first extent still live (a leak, now unmapped).
    ///
    /// ```
    /// # use physvec::map::vfio::*; use physvec::map::DataDirection; use physvec::*;
    /// # struct Nop;
    /// # // SAFETY: maps nothing.
    /// # unsafe impl VfioBackend for Nop {
    /// #     unsafe fn map_dma(&self, _: VirtAddr, _: DmaAddr, _: u64, _: DataDirection) -> Result<(), VfioError> { Ok(()) }
    /// #     fn unmap_dma(&self, i: DmaAddr, l: u64) -> Result<(), VfioError> {
    /// #         Err(VfioError::UnmapDma { iova: i.as_u64(), len: l, errno: None }) } // nothing there
    /// # }
    /// let m = VfioMapper::new(Nop, VfioIovaConfig::new(39))?;
    /// m.verify_released()?;
    /// # Ok::<(), VfioError>(())
    /// ```
    pub fn verify_released(&self) -> Result<(), VfioError> {
        let history = {
            let st = self.state.borrow();
            if let Some(r) = st.regions.values().next() {
                return Err(VfioError::StillMapped {
                    iova: r.iova,
                    len: r.len,
                });
            }
            if st.stats.live_io != 0 {
                return Err(VfioError::StillMapped { iova: 0, len: 0 });
            }
            st.history.clone()
        };
        for (iova, len) in history {
            // Ok means the kernel unmapped the whole extent: it was still mapped.
            if self.backend.unmap_dma(DmaAddr::new(iova), len).is_ok() {
                return Err(VfioError::StillMapped { iova, len });
            }
        }
        Ok(())
    }
}

fn push_merged(out: &mut Vec<DmaRange>, r: DmaRange) {
    if let Some(last) = out.last_mut() {
        if last.end() == Some(r.addr()) {
            let merged = last
                .len()
                .checked_add(r.len())
                .and_then(|len| DmaRange::try_new(last.addr().as_u64(), len).ok());
            if let Some(m) = merged {
                *last = m;
                return;
            }
        }
    }
    out.push(r);
}

/// A per-I/O VFIO mapping from [`VfioMapper::map_io`]: the DMA ranges to put in the
/// command, unmapped (one `VFIO_IOMMU_UNMAP_DMA` for the whole reservation) and freed by
/// [`IoMapping::unmap`] or on drop.
#[must_use = "dropping the mapping unmaps it at once"]
pub struct IoMapping<'a, B: VfioBackend> {
    mapper: &'a VfioMapper<B>,
    base: u64,
    reserved: u64,
    /// Bytes linked from `base`; `u64::MAX` once counted in `live_io`.
    linked: u64,
    dma: Vec<DmaRange>,
}

impl<B: VfioBackend> fmt::Debug for IoMapping<'_, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IoMapping")
            .field("iova", &DmaAddr::new(self.base))
            .field("reserved", &self.reserved)
            .field("dma", &self.dma)
            .finish()
    }
}

impl<B: VfioBackend> IoMapping<'_, B> {
    fn linked_all(&mut self) {
        self.linked = u64::MAX;
    }

    /// The device-visible ranges, in transfer order.
    ///
    /// See the [module example](super::vfio).
    pub fn dma(&self) -> &[DmaRange] {
        &self.dma
    }

    /// The reserved IOVA extent (page-aligned, covers every range's pages).
    ///
    /// See the [module example](super::vfio).
    pub fn reservation(&self) -> DmaRange {
        DmaRange::new(self.base, self.reserved)
    }

    /// Unlinks the whole reservation with one `VFIO_IOMMU_UNMAP_DMA` and frees it.
    ///
    /// # Errors
    /// [`VfioError::UnmapDma`]; the IOVA space is then kept reserved (never reused while
    /// the kernel may still map it).
    ///
    /// See the [module example](super::vfio).
    pub fn unmap(mut self) -> Result<(), VfioError> {
        let r = self.release();
        self.reserved = 0;
        r
    }

    fn release(&mut self) -> Result<(), VfioError> {
        if self.reserved == 0 {
            return Ok(());
        }
        let complete = self.linked == u64::MAX;
        let linked = if complete { self.reserved } else { self.linked };
        let m = self.mapper;
        if complete {
            m.bump(|s| s.live_io = s.live_io.saturating_sub(1));
        }
        if linked != 0 {
            m.unlink(self.base, linked)?;
        }
        m.free_iova(self.base, self.reserved);
        Ok(())
    }
}

impl<B: VfioBackend> Drop for IoMapping<'_, B> {
    fn drop(&mut self) {
        // Errors cannot be reported from drop; `unmap` reports them.
        let _ = self.release();
        self.reserved = 0;
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic
)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A fake container: records mappings with the kernel's type1 rules (EEXIST on an
    /// overlapping IOVA, unmap must cover whole mappings, size reported).
    #[derive(Default)]
    struct Fake {
        maps: RefCell<BTreeMap<u64, (u64, u64)>>, // iova -> (vaddr, len)
        fail_map_at: Cell<Option<u64>>,           // fail the n-th map call
        calls: Cell<u64>,
    }

    // SAFETY: maps nothing for any device; only records.
    unsafe impl VfioBackend for Fake {
        unsafe fn map_dma(
            &self,
            vaddr: VirtAddr,
            iova: DmaAddr,
            len: u64,
            _: DataDirection,
        ) -> Result<(), VfioError> {
            let n = self.calls.get();
            self.calls.set(n + 1);
            let (i, v) = (iova.as_u64(), vaddr.as_u64());
            let err = |errno| VfioError::MapDma {
                vaddr: v,
                iova: i,
                len,
                errno: Some(errno),
            };
            if self.fail_map_at.get() == Some(n) {
                return Err(err(libc::ENOMEM));
            }
            assert_eq!((i | v | len) & 0xfff, 0, "type1 maps whole pages");
            assert!(i != 0 && !(MSI_WINDOW.0..=MSI_WINDOW.1).contains(&i));
            let mut m = self.maps.borrow_mut();
            if m.iter().any(|(&s, &(_, l))| s < i + len && i < s + l) {
                return Err(err(libc::EEXIST));
            }
            m.insert(i, (v, len));
            Ok(())
        }
        fn unmap_dma(&self, iova: DmaAddr, len: u64) -> Result<(), VfioError> {
            let (i, end) = (iova.as_u64(), iova.as_u64() + len);
            let mut m = self.maps.borrow_mut();
            let inside: Vec<u64> = m
                .iter()
                .filter(|(&s, &(_, l))| s >= i && s + l <= end)
                .map(|(&s, _)| s)
                .collect();
            let mut unmapped = 0;
            for s in inside {
                unmapped += m.remove(&s).unwrap().1;
            }
            if unmapped != len {
                return Err(VfioError::UnmapDma {
                    iova: i,
                    len,
                    errno: None,
                });
            }
            Ok(())
        }
    }

    fn reg(m: &VfioMapper<Fake>, r: VirtRange, d: DataDirection) -> Result<DmaRange, VfioError> {
        // SAFETY: the fake backend makes no memory device-visible.
        unsafe { m.register(r, d) }
    }

    fn mio<'a>(
        m: &'a VfioMapper<Fake>,
        v: &[VirtRange],
        d: DataDirection,
    ) -> Result<IoMapping<'a, Fake>, VfioError> {
        // SAFETY: the fake backend makes no memory device-visible.
        unsafe { m.map_io(v, d) }
    }

    fn mapper(width: u32) -> VfioMapper<Fake> {
        VfioMapper::new(Fake::default(), VfioIovaConfig::new(width)).unwrap()
    }

    #[test]
    fn registered_lookup_needs_no_ioctl() {
        let m = mapper(39);
        let region = VirtRange::new(0x7000_0000_0000, 0x40_0000);
        let d = reg(&m, region, DataDirection::Bidirectional).unwrap();
        assert_eq!(
            d.addr().as_u64() % (2 << 20),
            0,
            "2 MiB aligned for large leaves"
        );
        assert_ne!(d.addr().as_u64(), 0);
        for off in [0u64, 1, 0xfff, 0x3f_ff00] {
            let t = m
                .translate(VirtRange::new(0x7000_0000_0000 + off, 0x100))
                .unwrap();
            assert_eq!(t.addr().as_u64(), d.addr().as_u64() + off);
        }
        // Past the end, before the start, empty, overflowing.
        for (a, l, kind) in [
            (0x7000_003f_ff01, 0x100, "not_registered"),
            (0x6fff_ffff_ffff, 2, "not_registered"),
            (u64::MAX, 1, "address_overflow"),
        ] {
            assert_eq!(m.translate(VirtRange::new(a, l)).unwrap_err().kind(), kind);
        }
        let s = m.stats();
        assert_eq!((s.map_ioctls, s.unmap_ioctls, s.lookups), (1, 0, 4));
        let mut out = Vec::new();
        let v = [
            VirtRange::new(0x7000_0000_0000, 8),
            VirtRange::new(0x1000, 8),
        ];
        assert_eq!(
            m.translate_all(&v, &mut out).unwrap_err().kind(),
            "not_registered"
        );
        assert_eq!(out.len(), 1);
        assert_eq!((s.regions, s.registered_bytes), (1, 0x40_0000));
        m.unregister(region).unwrap();
        assert!(m.is_idle());
        m.verify_released().unwrap();
    }

    #[test]
    fn register_rejects_bad_regions_without_side_effects() {
        let m = mapper(39);
        let r = VirtRange::new(0x10000, 0x2000);
        let bad = [
            (VirtRange::new(0x10100, 0x1000), "unaligned"),
            (VirtRange::new(0x10000, 0x1001), "unaligned"),
            (VirtRange::new(!0xfff, 0x1000), "address_overflow"),
        ];
        for (v, kind) in bad {
            let e = reg(&m, v, DataDirection::ToDevice).unwrap_err();
            assert_eq!(e.kind(), kind, "{v:?}");
        }
        reg(&m, r, DataDirection::ToDevice).unwrap();
        for v in [
            VirtRange::new(0x11000, 0x1000),
            VirtRange::new(0xf000, 0x2000),
            VirtRange::new(0x10000, 0x2000),
        ] {
            let e = reg(&m, v, DataDirection::ToDevice).unwrap_err();
            assert_eq!(e.kind(), "overlap", "{v:?}");
        }
        // Adjacent is fine.
        let adj = VirtRange::new(0x12000, 0x1000);
        reg(&m, adj, DataDirection::ToDevice).unwrap();
        assert_eq!(m.stats().map_ioctls, 2);
        // A failing MAP_DMA frees the IOVA and registers nothing.
        m.backend().fail_map_at.set(Some(m.backend().calls.get()));
        let e = reg(&m, VirtRange::new(0x40000, 0x1000), DataDirection::ToDevice).unwrap_err();
        assert_eq!(e.kind(), "map_dma");
        assert!(e.to_string().contains("errno"), "{e}");
        assert_eq!(
            m.unregister(VirtRange::new(0x10000, 0x1000))
                .unwrap_err()
                .kind(),
            "not_registered"
        );
        m.unregister(r).unwrap();
        m.unregister(adj).unwrap();
        assert!(m.is_idle());
    }

    #[test]
    fn per_io_keeps_offsets_merges_on_page_boundaries_and_unwinds() {
        let m = mapper(39);
        let v = [
            VirtRange::new(0x1_0234, 0xdcc),  // ends on a page boundary ...
            VirtRange::new(0x5_0000, 0x1800), // ... so this one merges
            VirtRange::new(0x9_0010, 0x10),   // mid-page: a new DMA range
        ];
        let io = mio(&m, &v, DataDirection::FromDevice).unwrap();
        let d = io.dma();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].addr().as_u64() & 0xfff, 0x234);
        assert_eq!(d[0].len(), 0xdcc + 0x1800);
        assert_eq!(d[1].addr().as_u64() & 0xfff, 0x10);
        assert_eq!(io.reservation().len(), 0x1000 + 0x2000 + 0x1000);
        assert_eq!(m.stats().live_io, 1);
        assert_eq!(m.backend().maps.borrow().len(), 3);
        io.unmap().unwrap();
        let s = m.stats();
        assert_eq!((s.map_ioctls, s.unmap_ioctls, s.live_io), (3, 1, 0));
        assert!(m.backend().maps.borrow().is_empty());
        assert!(m.is_idle());
        m.verify_released().unwrap();

        // A MAP_DMA failure in the middle unlinks what was linked, frees the space.
        m.backend()
            .fail_map_at
            .set(Some(m.backend().calls.get() + 1));
        let e = mio(&m, &v, DataDirection::ToDevice).unwrap_err();
        assert_eq!(e.kind(), "map_dma");
        assert!(m.backend().maps.borrow().is_empty());
        assert!(m.is_idle());
        // Drop unmaps too.
        {
            let _io = mio(&m, &v[..1], DataDirection::ToDevice).unwrap();
            assert_eq!(m.backend().maps.borrow().len(), 1);
        }
        assert!(m.backend().maps.borrow().is_empty() && m.is_idle());
        for (bad, kind) in [
            (VirtRange::new(u64::MAX, 1), "address_overflow"),
            (VirtRange::new(u64::MAX - 0x800, 0x100), "address_overflow"),
        ] {
            let e = mio(&m, &[bad], DataDirection::ToDevice).unwrap_err();
            assert_eq!(e.kind(), kind, "{bad:?}");
        }
        assert_eq!(
            mio(&m, &[], DataDirection::ToDevice).unwrap_err().kind(),
            "empty"
        );
    }

    #[test]
    fn iova_rules_zero_msi_window_width() {
        // 32-bit IOMMU: the space stops below the interrupt window; 4 GiB of mappings
        // fill it without ever touching 0 or the window.
        let m = mapper(32);
        let mut regions = Vec::new();
        let chunk = 0x1000_0000u64;
        let mut va = 0x1_0000_0000u64;
        loop {
            let r = VirtRange::new(va, chunk);
            match reg(&m, r, DataDirection::Bidirectional) {
                Ok(d) => {
                    let (s, e) = (d.addr().as_u64(), d.addr().as_u64() + chunk - 1);
                    assert!(s != 0 && e < MSI_WINDOW.0, "{d:?}");
                    regions.push(r);
                }
                Err(e) => {
                    assert_eq!(e.kind(), "iova_exhausted");
                    break;
                }
            }
            va += chunk;
        }
        assert_eq!(
            regions.len(),
            15,
            "0x1000..0xfee00000 holds 15 aligned 256 MiB"
        );
        // Small pieces still fit below the window, never inside it.
        let small = VirtRange::new(0x100_0000_0000, 0x1000);
        let d = reg(&m, small, DataDirection::ToDevice).unwrap();
        assert!(d.addr().as_u64() < MSI_WINDOW.0);
        // 40 bits: space above the window too.
        let m40 = mapper(40);
        let big = VirtRange::new(0x1000_0000_0000, 0x1_0000_0000);
        let d = reg(&m40, big, DataDirection::ToDevice).unwrap();
        assert!(d.addr().as_u64() > MSI_WINDOW.1);
        assert!(d.end().unwrap().as_u64() <= 1 << 40);
        assert_eq!(
            VfioMapper::new(Fake::default(), VfioIovaConfig::new(12))
                .unwrap_err()
                .kind(),
            "invalid_config"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 48, ..proptest::prelude::ProptestConfig::default()
        })]

        /// Random register / unregister / per-I/O map / unmap / translate sequences on a
        /// narrow (33-bit) IOMMU: the kernel-side mappings always equal the mapper's
        /// books, never touch IOVA 0, the interrupt window or past the width, and
        /// everything is released at the end.
        #[test]
        fn books_match_the_kernel(ops in proptest::collection::vec(
            (0u8..5, 0usize..4, 1u64..0x9000, 0u64..0x3000), 1..60)) {
            let m = mapper(33);
            let regions: [VirtRange; 4] = [
                VirtRange::new(0x10_0000_0000, 0x20_0000),
                VirtRange::new(0x10_0020_0000, 0x1000),
                VirtRange::new(0x20_0000_0000, 0x4000_0000),
                VirtRange::new(0x30_0000_0000, 0x3000),
            ];
            let mut registered = [None::<DmaRange>; 4];
            let mut ios: Vec<IoMapping<'_, Fake>> = Vec::new();
            for (op, i, len, off) in ops {
                match op {
                    0 => match reg(&m, regions[i], DataDirection::Bidirectional) {
                        Ok(d) => {
                            proptest::prop_assert!(registered[i].is_none());
                            registered[i] = Some(d);
                        }
                        Err(e) => proptest::prop_assert!(
                            registered[i].is_some() && e.kind() == "overlap"
                                || e.kind() == "iova_exhausted",
                            "{e}"
                        ),
                    },
                    1 => proptest::prop_assert_eq!(
                        m.unregister(regions[i]).is_ok(),
                        registered[i].take().is_some()
                    ),
                    2 => {
                        let v = [
                            VirtRange::new(0x40_0000_0000 + off, len),
                            VirtRange::new(0x50_0000_0000 + off * 3, len + 7),
                        ];
                        let io = mio(&m, &v[..1 + i % 2], DataDirection::FromDevice).unwrap();
                        let total: u64 = io.dma().iter().map(|r| r.len()).sum();
                        proptest::prop_assert_eq!(
                            total,
                            v[..1 + i % 2].iter().map(|r| r.len()).sum::<u64>()
                        );
                        ios.push(io);
                    }
                    3 => {
                        if !ios.is_empty() {
                            let io = ios.swap_remove(i % ios.len());
                            if i % 2 == 0 { io.unmap().unwrap() } else { drop(io) }
                        }
                    }
                    _ => {
                        let r = regions[i];
                        let probe = VirtRange::new(r.addr().as_u64() + off % r.len(), 1);
                        match (m.translate(probe), registered[i]) {
                            (Ok(d), Some(reg)) => proptest::prop_assert_eq!(
                                d.addr().as_u64(),
                                reg.addr().as_u64() + off % r.len()
                            ),
                            (Err(e), None) => proptest::prop_assert_eq!(e.kind(), "not_registered"),
                            (got, want) => proptest::prop_assert!(false, "{got:?} vs {want:?}"),
                        }
                    }
                }
                // The kernel's mappings are exactly the books.
                let maps = m.backend().maps.borrow();
                let reg_bytes: u64 = registered.iter().flatten().map(|d| d.len()).sum();
                let io_bytes: u64 = ios.iter().map(|io| io.reservation().len()).sum();
                let kernel_bytes: u64 = maps.values().map(|&(_, l)| l).sum();
                proptest::prop_assert_eq!(kernel_bytes, reg_bytes + io_bytes);
                for (&iova, &(_, l)) in maps.iter() {
                    proptest::prop_assert!(iova != 0 && iova + l <= 1 << 33);
                    proptest::prop_assert!(iova + l <= MSI_WINDOW.0 || iova > MSI_WINDOW.1);
                }
            }
            drop(ios);
            for (i, r) in regions.iter().enumerate() {
                if registered[i].is_some() {
                    m.unregister(*r).unwrap();
                }
            }
            proptest::prop_assert!(m.is_idle());
            proptest::prop_assert!(m.backend().maps.borrow().is_empty());
            m.verify_released().unwrap();
        }
    }

    #[test]
    fn open_pci_reports_the_failing_step() {
        // No such device (and usually no /dev/vfio here): a typed error, never a panic.
        let Err(e) = open_pci("ffff:ff:1f.7") else {
            panic!("opened a device that does not exist");
        };
        assert_eq!(e.kind(), "open");
        assert!(e.to_string().starts_with("cannot open VFIO "), "{e}");
    }

    #[test]
    fn history_is_bounded() {
        let m = mapper(39);
        let v = VirtRange::new(0x1000, 0x1000);
        // Distinct extents: hold one mapping each time so the IOVA moves.
        let mut held = Vec::new();
        for _ in 0..HISTORY_MAX + 10 {
            held.push(mio(&m, &[v], DataDirection::ToDevice).unwrap());
        }
        assert_eq!(m.state.borrow().history.len(), HISTORY_MAX);
        drop(held);
        m.verify_released().unwrap();
    }

    #[test]
    fn verify_released_catches_a_kernel_side_leak() {
        let m = mapper(39);
        let r = VirtRange::new(0x20000, 0x1000);
        let d = reg(&m, r, DataDirection::ToDevice).unwrap();
        assert_eq!(m.verify_released().unwrap_err().kind(), "still_mapped");
        m.unregister(r).unwrap();
        // Simulate a mapping the books lost: the kernel still has it.
        // SAFETY: the fake backend makes no memory device-visible.
        unsafe {
            m.backend().map_dma(
                VirtAddr::new(0x20000),
                d.addr(),
                0x1000,
                DataDirection::ToDevice,
            )
        }
        .unwrap();
        assert_eq!(
            m.verify_released(),
            Err(VfioError::StillMapped {
                iova: d.addr().as_u64(),
                len: 0x1000
            })
        );
        m.verify_released().unwrap(); // the check unmapped it
        for e in [
            VfioError::Open {
                what: "group",
                detail: "x".into(),
            },
            VfioError::UnmapDma {
                iova: 1,
                len: 2,
                errno: Some(libc::EINVAL),
            },
            VfioError::IovaExhausted { len: 3 },
            VfioError::InvalidConfig { what: "w" },
            VfioError::Unaligned {
                addr: 1,
                len: 2,
                granule: 4096,
            },
            VfioError::Overlap { addr: 1, len: 2 },
            VfioError::AddressOverflow { addr: 1, len: 2 },
            VfioError::StillMapped { iova: 1, len: 2 },
            VfioError::Empty,
        ] {
            assert!(!e.to_string().is_empty() && !e.kind().is_empty());
        }
    }
}
