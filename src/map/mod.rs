//! The two-step DMA mapper: the kernel's `dma_iova_*` API as a Rust trait, the generic
//! blk-mq-dma style [`map`] entry point, and the mappers that implement it.
//!
//! A driver maps one I/O like this (Linux 6.16 `dma_iova_try_alloc` →
//! `dma_iova_link` × n → `dma_iova_sync`, see `include/linux/dma-mapping.h`):
//!
//! 1. [`DmaMapper::reserve`] contiguous IOVA space for the whole transfer (`None` when
//!    the mapper has no IOMMU: fall back to per-range [`DmaMapper::map_phys`]);
//! 2. [`DmaMapper::link`] every physical range at its byte offset, no IOTLB flush;
//! 3. [`DmaMapper::sync`] once: the device sees one contiguous DMA range.
//!
//! Teardown is [`DmaMapper::destroy`] (unlink everything, free the space). The
//! **merge-boundary rule** makes step 2 possible: every range but the first starts on a
//! granule boundary, every range but the last ends on one. [`map`] / [`map_into`] check
//! the rule, run the steps, unwind on failure, and fall back to per-range mapping when the
//! rule does not hold or the mapper has no IOVA space, as `block/blk-mq-dma.c` does.
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | [`DmaMapper`], [`DataDirection`], [`Attrs`] |
//! | `space.rs` | [`IovaSpace`], the reservation with a typestate ([`Linking`] / [`Synced`]) |
//! | `list.rs` | [`map`], [`map_into`]: the list entry point (classify, then one stream) |
//! | `mapping.rs` | [`Mapping`]: one mapped I/O and what its release undoes |
//! | `stream.rs` | [`MapStream`]: the one mapping implementation, range by range or in link batches |
//! | `error.rs` | [`MapError`] |
//! | `iommu/` | [`SoftIommu`] (`alloc`): radix I/O page table, IOVA allocator, IOTLB |
//! | `pgtable.rs` | [`RadixTable`] (`alloc`): the radix engine over a [`PageTableFormat`] in caller memory |
//! | `vtd/` | [`vtd`]: Intel VT-d tables, the VT-d mapper, the hardware walker, invalidations, faults |
//! | `perm.rs` | [`IoPerm`]: leaf permissions |
//! | `direct.rs` | [`DirectMapper`]: `dma = phys + offset`, DMA mask, swiotlb bounce pool |
//! | `linear.rs` | [`LinearMap`]: a mapper's `phys + offset` translation as a value, for the fused per-I/O loops |
//! | `p2p.rs` | [`P2pMapType`], [`P2pClassifier`], [`P2pProviders`]: PCI P2PDMA kinds |
//! | `checked.rs` | [`Checked`] (`alloc`): `CONFIG_DMA_API_DEBUG` for any mapper |
//! | `vfio.rs` | `vfio` (feature `vfio`, Linux): [`VirtRange`](crate::VirtRange) → IOVA through VFIO type1 |
//!
//! # Example: the two steps by hand, then through [`map`]
//! ```
//! use physvec::map::{self, Attrs, DataDirection, DmaMapper, SoftIommu};
//! use physvec::{PhysAddr, PhysRange};
//!
//! let iommu = SoftIommu::new_4k();
//! let phys = [PhysRange::new(0x10_0800, 0x800), PhysRange::new(0x20_0000, 0x1000)];
//! let dir = DataDirection::ToDevice;
//!
//! // Step 1: reserve 6 KiB of IOVA; the hint sets the sub-granule offset (0x800).
//! let mut space = iommu.reserve(PhysAddr::new(0x10_0800), 0x1800)?.expect("an IOMMU");
//! // Step 2: link each range at its byte offset in the transfer (no IOTLB flush yet).
//! iommu.link(&mut space, phys[0], 0, dir, Attrs::empty())?;
//! iommu.link(&mut space, phys[1], 0x800, dir, Attrs::empty())?;
//! // Step 3: one sync; `space` is now `IovaSpace<Synced>` and cannot be linked again.
//! let space = iommu.sync(space, 0, 0x1800).map_err(|e| e.error)?;
//! let dma = space.dma_range();
//! assert_eq!(iommu.translate(dma.addr()), Some(PhysAddr::new(0x10_0800)));
//! assert_eq!(iommu.translate(dma.addr().checked_add(0x800)?), Some(PhysAddr::new(0x20_0000)));
//! iommu.destroy(space, dir, Attrs::empty())?;
//!
//! // The same through the generic entry point: one DMA range, one sync, unmapped on drop.
//! let m = map::map(&iommu, &phys, dir)?;
//! assert_eq!(m.dma().len(), 1);
//! assert_eq!(m.iova_syncs(), 1);
//! m.unmap()?;
//! assert_eq!(iommu.stats().mapped_bytes, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::fmt;
use core::ops::{BitOr, BitOrAssign};

use crate::addr::{PageSize, PhysAddr};
use crate::mask::DmaMask;
use crate::range::{DmaRange, PhysRange};

#[cfg(feature = "alloc")]
mod checked;
mod direct;
mod error;
#[cfg(feature = "alloc")]
mod iommu;
mod linear;
mod list;
mod mapping;
mod p2p;
/// Moved to [`crate::pagemap`] (the input side, beside the builder); this path stays for
/// compatibility.
#[cfg(all(feature = "std", target_os = "linux"))]
pub use crate::pagemap;
mod perm;
#[cfg(feature = "alloc")]
mod pgtable;
mod space;
mod stream;
#[cfg(all(feature = "vfio", target_os = "linux"))]
pub mod vfio;
pub mod vtd;

#[cfg(feature = "alloc")]
pub use checked::{Checked, OnLeak};
pub use direct::{BouncePool, DirectMapper};
pub use error::MapError;
#[cfg(feature = "alloc")]
pub use iommu::{IoPageTable, IommuConfig, IommuStats, IovaAllocator, SoftFormat, SoftIommu};
pub use linear::LinearMap;
#[cfg(feature = "alloc")]
pub use list::map;
pub use list::map_into;
pub use mapping::{merge_boundary_ok, Mapping, MappingKind};
pub use p2p::{NoP2p, P2pClassifier, P2pMapType, P2pProviders, P2pRegion};
pub use perm::IoPerm;
#[cfg(feature = "alloc")]
pub use pgtable::{DirectTable, PageTableFormat, Pte, RadixCounts, RadixTable, TableMemory};
pub use space::{IovaSpace, Linking, MapperId, SpaceState, Synced};
pub use stream::{Coalesce, Keep, MapStream, StreamOptions};

/// Direction of a transfer, as seen from the device (`enum dma_data_direction`).
///
/// ```
/// use physvec::map::DataDirection;
/// assert!(DataDirection::ToDevice.device_reads());
/// assert!(!DataDirection::ToDevice.device_writes());
/// assert_eq!(DataDirection::FromDevice.to_string(), "from_device");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataDirection {
    /// Memory → device (`DMA_TO_DEVICE`): the device reads.
    ToDevice,
    /// Device → memory (`DMA_FROM_DEVICE`): the device writes.
    FromDevice,
    /// Both (`DMA_BIDIRECTIONAL`).
    Bidirectional,
}

impl DataDirection {
    /// Whether the device reads the memory (to-device or bidirectional).
    pub const fn device_reads(self) -> bool {
        matches!(self, DataDirection::ToDevice | DataDirection::Bidirectional)
    }

    /// Whether the device writes the memory (from-device or bidirectional).
    pub const fn device_writes(self) -> bool {
        matches!(
            self,
            DataDirection::FromDevice | DataDirection::Bidirectional
        )
    }

    /// The snake_case name the tool uses (`to_device`, `from_device`, `bidirectional`).
    pub const fn as_str(self) -> &'static str {
        match self {
            DataDirection::ToDevice => "to_device",
            DataDirection::FromDevice => "from_device",
            DataDirection::Bidirectional => "bidirectional",
        }
    }
}

impl fmt::Display for DataDirection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// DMA attributes (`DMA_ATTR_*` bits, same values as the kernel).
///
/// ```
/// use physvec::map::Attrs;
/// let a = Attrs::MMIO | Attrs::SKIP_CPU_SYNC;
/// assert!(a.contains(Attrs::MMIO));
/// assert_eq!(a.bits(), (1 << 10) | (1 << 5));
/// assert_eq!(format!("{a:?}"), "Attrs(SKIP_CPU_SYNC | MMIO)");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Attrs(u32);

impl Attrs {
    /// `DMA_ATTR_SKIP_CPU_SYNC`: no cache maintenance at map/unmap (the driver syncs).
    pub const SKIP_CPU_SYNC: Attrs = Attrs(1 << 5);
    /// `DMA_ATTR_MMIO`: the range is device memory (P2P through a host bridge), never
    /// cached, never bounced.
    pub const MMIO: Attrs = Attrs(1 << 10);

    const NAMES: [(Attrs, &'static str); 2] = [
        (Attrs::SKIP_CPU_SYNC, "SKIP_CPU_SYNC"),
        (Attrs::MMIO, "MMIO"),
    ];

    /// No attribute.
    pub const fn empty() -> Self {
        Attrs(0)
    }

    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Attributes from raw bits, unknown bits kept.
    pub const fn from_bits_retain(bits: u32) -> Self {
        Attrs(bits)
    }

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Attrs) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// `self | other`.
    pub const fn union(self, other: Attrs) -> Self {
        Attrs(self.0 | other.0)
    }
}

impl BitOr for Attrs {
    type Output = Attrs;
    fn bitor(self, rhs: Attrs) -> Attrs {
        self.union(rhs)
    }
}

impl BitOrAssign for Attrs {
    fn bitor_assign(&mut self, rhs: Attrs) {
        *self = self.union(rhs);
    }
}

impl fmt::Debug for Attrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Attrs(")?;
        let mut rest = self.0;
        let mut first = true;
        for (a, name) in Attrs::NAMES {
            if self.contains(a) {
                if !first {
                    f.write_str(" | ")?;
                }
                f.write_str(name)?;
                first = false;
                rest &= !a.0;
            }
        }
        if rest != 0 {
            if !first {
                f.write_str(" | ")?;
            }
            write!(f, "{rest:#x}")?;
        } else if first {
            f.write_str("empty")?;
        }
        f.write_str(")")
    }
}

/// A failed [`DmaMapper::sync`]: the reservation comes back (still [`Linking`]) so that
/// the caller can unwind it.
#[derive(Debug)]
pub struct SyncError {
    /// The reservation, unchanged.
    pub space: IovaSpace<Linking>,
    /// Why the sync failed.
    pub error: MapError,
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl core::error::Error for SyncError {}

impl crate::error::ErrorInfo for SyncError {
    fn kind(&self) -> &'static str {
        self.error.kind()
    }
    fn position(&self) -> Option<crate::error::Position> {
        crate::error::ErrorInfo::position(&self.error)
    }
}

/// A device's view of memory: the two-step IOVA API plus the per-range fallback.
///
/// Methods take `&self` like the kernel's `struct device *`; mappers with state use
/// interior mutability (the [`SoftIommu`] uses a `RefCell` and is therefore `!Sync`: one
/// per queue or behind the caller's lock).
///
/// The IOVA methods have defaults for mappers without IOVA space ([`DirectMapper`]):
/// `reserve` returns `Ok(None)` and the others refuse with [`MapError::NoIovaSpace`],
/// like the kernel's `!CONFIG_IOMMU_DMA` stubs. A mapper with IOVA space overrides all of
/// them and keeps the reservation's bookkeeping through [`IovaSpace::link_with`],
/// [`IovaSpace::unlink_with`], [`IovaSpace::check_sync`] and [`IovaSpace::mark_synced`].
pub trait DmaMapper {
    /// The IOVA granule (`dma_get_merge_boundary() + 1`), a power of two in bytes.
    fn granule(&self) -> PageSize;

    /// The highest DMA address the device can emit.
    fn dma_mask(&self) -> DmaMask;

    /// Reserves contiguous IOVA space for a transfer of `size` bytes
    /// (`dma_iova_try_alloc`). Only the sub-granule offset of `phys_hint` matters: byte 0
    /// of the transfer lands at the same offset inside its granule.
    ///
    /// # Errors
    /// [`MapError::Empty`] for `size == 0`, [`MapError::IovaExhausted`]. `Ok(None)` means
    /// the mapper has no IOVA space: use [`DmaMapper::map_phys`].
    fn reserve(&self, phys_hint: PhysAddr, size: u64) -> Result<Option<IovaSpace>, MapError> {
        let _ = (phys_hint, size);
        Ok(None)
    }

    /// Maps `phys` at byte `offset` of the reservation without an IOTLB sync
    /// (`dma_iova_link`). Enforces the merge-boundary rule.
    ///
    /// # Errors
    /// [`MapError::MergeBoundary`], [`MapError::SubGranuleMismatch`],
    /// [`MapError::OutOfReservation`], [`MapError::AlreadyMapped`],
    /// [`MapError::ForeignSpace`], [`MapError::NoIovaSpace`]. Nothing is linked on error.
    fn link(
        &self,
        space: &mut IovaSpace<Linking>,
        phys: PhysRange,
        offset: u64,
        dir: DataDirection,
        attrs: Attrs,
    ) -> Result<(), MapError> {
        let _ = (space, phys, offset, dir, attrs);
        Err(MapError::NoIovaSpace)
    }

    /// Links consecutive ranges: `phys[k]` at `offset` plus the lengths of
    /// `phys[..k]`, exactly as `phys.len()` calls of [`DmaMapper::link`] in order that
    /// stop at the first error. Returns how many were linked (they stay linked) and that
    /// error (nothing is linked for the range it concerns, nothing after it is tried).
    ///
    /// The default calls `link` per range. A mapper may do the whole batch in one pass;
    /// the [`SoftIommu`] maps runs of scattered granules with one page-table pass per
    /// leaf table ([`IovaSpace::link_granules_with`] keeps the bookkeeping).
    ///
    /// # Implementer notes
    /// An override must be observably the same as the default: the same links, the same
    /// count, the same error.
    ///
    /// ```
    /// use physvec::map::{DataDirection, Attrs, DmaMapper, SoftIommu};
    /// use physvec::{PhysAddr, PhysRange};
    /// let iommu = SoftIommu::new_4k();
    /// let pages = [PhysRange::new(0x9000, 0x1000), PhysRange::new(0x3000, 0x1000), PhysRange::new(0x7000, 0x1000)];
    /// let mut space = iommu.reserve(PhysAddr::new(0x9000), 0x3000)?.unwrap();
    /// let (n, r) = iommu.link_many(&mut space, &pages, 0, DataDirection::ToDevice, Attrs::empty());
    /// assert_eq!((n, r), (3, Ok(())));
    /// let space = iommu.sync(space, 0, 0x3000).map_err(|e| e.error)?;
    /// let second = physvec::DmaAddr::new(space.addr().as_u64() + 0x1008);
    /// assert_eq!(iommu.translate(second).map(|p| p.as_u64()), Some(0x3008));
    /// iommu.destroy(space, DataDirection::ToDevice, Attrs::empty())?;
    /// # Ok::<(), physvec::map::MapError>(())
    /// ```
    fn link_many(
        &self,
        space: &mut IovaSpace<Linking>,
        phys: &[PhysRange],
        offset: u64,
        dir: DataDirection,
        attrs: Attrs,
    ) -> (usize, Result<(), MapError>) {
        let mut at = offset;
        for (k, &r) in phys.iter().enumerate() {
            if let Err(e) = self.link(space, r, at, dir, attrs) {
                return (k, Err(e));
            }
            // Linked, so `at + len <= size`: no overflow.
            at = at.saturating_add(r.len());
        }
        (phys.len(), Ok(()))
    }

    /// Makes the links of `[offset, offset + size)` visible to the device
    /// (`dma_iova_sync`, one IOTLB sync). Consumes the [`Linking`] state.
    ///
    /// # Errors
    /// [`SyncError`] (holding the space) with [`MapError::SyncBeforeLink`],
    /// [`MapError::SyncOutOfRange`], [`MapError::ForeignSpace`].
    fn sync(
        &self,
        space: IovaSpace<Linking>,
        offset: u64,
        size: u64,
    ) -> Result<IovaSpace<Synced>, SyncError> {
        let _ = (offset, size);
        Err(SyncError {
            space,
            error: MapError::NoIovaSpace,
        })
    }

    /// Unmaps `[offset, offset + size)` of the reservation and invalidates the IOTLB
    /// (`dma_iova_unlink`). The space stays reserved.
    ///
    /// # Errors
    /// [`MapError::NotLinked`] (nothing is unlinked then), [`MapError::ForeignSpace`].
    fn unlink<St: SpaceState>(
        &self,
        space: &mut IovaSpace<St>,
        offset: u64,
        size: u64,
        dir: DataDirection,
        attrs: Attrs,
    ) -> Result<(), MapError> {
        let _ = (space, offset, size, dir, attrs);
        Err(MapError::NoIovaSpace)
    }

    /// Returns the reservation to the allocator (`dma_iova_free`). Every link should have
    /// been unlinked; if some are left they are unlinked and
    /// [`MapError::StillLinked`] reports the misuse (nothing leaks).
    ///
    /// # Errors
    /// [`MapError::StillLinked`], [`MapError::ForeignSpace`].
    fn free<St: SpaceState>(&self, space: IovaSpace<St>) -> Result<(), MapError> {
        Err(MapError::ForeignSpace {
            addr: space.addr().as_u64(),
        })
    }

    /// Unlinks everything linked in the reservation and frees it (`dma_iova_destroy`).
    ///
    /// # Errors
    /// [`MapError::ForeignSpace`].
    fn destroy<St: SpaceState>(
        &self,
        space: IovaSpace<St>,
        dir: DataDirection,
        attrs: Attrs,
    ) -> Result<(), MapError> {
        let _ = (dir, attrs);
        self.free(space)
    }

    /// Maps one physical range on its own (`dma_map_phys`), the fallback when there is no
    /// IOVA space or the merge-boundary rule does not hold.
    ///
    /// # Errors
    /// [`MapError::AboveDmaMask`], [`MapError::IovaExhausted`],
    /// [`MapError::BounceExhausted`], [`MapError::AddressOverflow`].
    fn map_phys(
        &self,
        phys: PhysRange,
        dir: DataDirection,
        attrs: Attrs,
    ) -> Result<DmaRange, MapError>;

    /// Whether ranges from [`DmaMapper::map_phys`] must be given back with
    /// [`DmaMapper::unmap_phys`] (the kernel's `dma_need_unmap()`). `false` only for
    /// mappers whose `unmap_phys` of a live mapping does nothing and cannot fail, such as
    /// a [`DirectMapper`] without a bounce pool: a [`Mapping`] then skips the per-range
    /// unmap calls, and [`map_into`] may call `map_phys` before it has classified every
    /// range (dropping the results on an error), so `false` also promises that
    /// `map_phys` has no effect that needs undoing. The default is `true`, always
    /// correct.
    ///
    /// ```
    /// use physvec::map::{DirectMapper, DmaMapper, SoftIommu};
    /// assert!(!DirectMapper::new(0, physvec::DmaMask::BITS_64).need_unmap());
    /// assert!(SoftIommu::new_4k().need_unmap());
    /// ```
    #[inline]
    fn need_unmap(&self) -> bool {
        true
    }

    /// `Some` when this mapper maps every range of ordinary memory as `phys + offset`
    /// with nothing to undo: the fused per-I/O paths ([`map_prp`](crate::nvme::map_prp))
    /// then translate pages inside their own loop instead of calling
    /// [`DmaMapper::map_phys`] per range. The default is `None`, always correct.
    ///
    /// # Implementer notes
    /// Return `Some(lin)` only if, for every `phys` for which [`LinearMap::map`] returns
    /// `Some(d)`, `map_phys(phys, dir, attrs)` returns `Ok(d)` for every `dir` and
    /// `attrs`, with no effect at all (nothing allocated, counted or recorded), and
    /// [`DmaMapper::need_unmap`] is `false`. Where `LinearMap::map` returns `None` the
    /// callers fall back to `map_phys`, which then reports the error or does the work
    /// (bouncing, say).
    ///
    /// ```
    /// use physvec::map::{DirectMapper, DmaMapper, LinearMap, SoftIommu};
    /// use physvec::DmaMask;
    /// let d = DirectMapper::new(0x1000, DmaMask::BITS_64);
    /// assert_eq!(d.linear(), Some(LinearMap::new(0x1000, DmaMask::BITS_64)));
    /// assert_eq!(SoftIommu::new_4k().linear(), None);
    /// ```
    #[inline]
    fn linear(&self) -> Option<LinearMap> {
        None
    }

    /// Undoes [`DmaMapper::map_phys`] (`dma_unmap_phys`); `dma` is exactly the range it
    /// returned.
    ///
    /// # Errors
    /// [`MapError::NotMapped`] when `dma` is not a live mapping of this mapper.
    fn unmap_phys(&self, dma: DmaRange, dir: DataDirection, attrs: Attrs) -> Result<(), MapError>;
}

impl<M: DmaMapper + ?Sized> DmaMapper for &M {
    fn granule(&self) -> PageSize {
        (**self).granule()
    }
    fn dma_mask(&self) -> DmaMask {
        (**self).dma_mask()
    }
    fn reserve(&self, phys_hint: PhysAddr, size: u64) -> Result<Option<IovaSpace>, MapError> {
        (**self).reserve(phys_hint, size)
    }
    fn link(
        &self,
        space: &mut IovaSpace<Linking>,
        phys: PhysRange,
        offset: u64,
        dir: DataDirection,
        attrs: Attrs,
    ) -> Result<(), MapError> {
        (**self).link(space, phys, offset, dir, attrs)
    }
    fn link_many(
        &self,
        space: &mut IovaSpace<Linking>,
        phys: &[PhysRange],
        offset: u64,
        dir: DataDirection,
        attrs: Attrs,
    ) -> (usize, Result<(), MapError>) {
        (**self).link_many(space, phys, offset, dir, attrs)
    }
    fn sync(
        &self,
        space: IovaSpace<Linking>,
        offset: u64,
        size: u64,
    ) -> Result<IovaSpace<Synced>, SyncError> {
        (**self).sync(space, offset, size)
    }
    fn unlink<St: SpaceState>(
        &self,
        space: &mut IovaSpace<St>,
        offset: u64,
        size: u64,
        dir: DataDirection,
        attrs: Attrs,
    ) -> Result<(), MapError> {
        (**self).unlink(space, offset, size, dir, attrs)
    }
    fn free<St: SpaceState>(&self, space: IovaSpace<St>) -> Result<(), MapError> {
        (**self).free(space)
    }
    fn destroy<St: SpaceState>(
        &self,
        space: IovaSpace<St>,
        dir: DataDirection,
        attrs: Attrs,
    ) -> Result<(), MapError> {
        (**self).destroy(space, dir, attrs)
    }
    fn map_phys(
        &self,
        phys: PhysRange,
        dir: DataDirection,
        attrs: Attrs,
    ) -> Result<DmaRange, MapError> {
        (**self).map_phys(phys, dir, attrs)
    }
    #[inline]
    fn need_unmap(&self) -> bool {
        (**self).need_unmap()
    }
    #[inline]
    fn linear(&self) -> Option<LinearMap> {
        (**self).linear()
    }
    fn unmap_phys(&self, dma: DmaRange, dir: DataDirection, attrs: Attrs) -> Result<(), MapError> {
        (**self).unmap_phys(dma, dir, attrs)
    }
}
