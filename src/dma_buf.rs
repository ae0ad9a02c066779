//! Memory a user-space driver can hand to a device (`std`, Linux): [`DmaBuffer`] is
//! page-aligned, backed by 2 MiB hugepages when the system has them, pre-faulted and
//! locked, and translates to a [`PhysVec`] through `/proc/self/pagemap`.
//!
//! This is what SPDK and DPDK do before building PRP lists: the buffer must be resident,
//! must not move while the device uses it, and its physical addresses must be known.
//!
//! | step | how | if it fails |
//! |---|---|---|
//! | allocate | anonymous `mmap(2)`; with [`HugePages::Prefer`] (the default) and 1 MiB or more, first `MAP_HUGETLB \| MAP_HUGE_2MB`, then 4 KiB pages with `MADV_HUGEPAGE` (transparent hugepages) from 2 MiB on | [`DmaBufferError::Map`]; [`HugePages::Require`] gives [`DmaBufferError::NoHugePages`] and how to reserve some |
//! | pre-fault | `MAP_POPULATE`, then `mlock(2)`, which faults every page of the private writable mapping in for writing (no shared zero page) | — |
//! | lock | `mlock(2)` | [`DmaBufferError::Lock`], with the fix (`ulimit -l`, `CAP_IPC_LOCK`) |
//! | translate | [`DmaBuffer::phys`] / [`DmaBuffer::phys_window`] read pagemap | [`PagemapError`]; without `CAP_SYS_ADMIN` [`PagemapError::PfnHidden`] says so and how to fix it |
//! | release | `Drop`: `munlock(2)`, `munmap(2)` | — |
//!
//! [`DmaBuffer::backing`] tells which pages were obtained, and when hugepages were
//! wanted but not given, why ([`Backing::BasePages::hugetlb_error`]).
//!
//! Locked 4 KiB pages stay resident but the kernel may still migrate them (memory
//! compaction, `vm.compact_unevictable_allowed`); hugetlbfs pages are not migrated in
//! normal operation. For memory a device uses for a long time, prefer hugepages, as SPDK
//! does (reserve them with `echo 64 > /proc/sys/vm/nr_hugepages` as root).
//!
//! # Example
//! ```
//! use physvec::dma_buf::DmaBuffer;
//! let mut buf = DmaBuffer::new(1 << 20)?;          // 1 MiB, zeroed, resident, locked
//! buf[0] = 0xab;                                   // derefs to [u8]
//! println!("{}", buf.backing());                   // which pages the system gave
//! match buf.phys() {
//!     Ok(phys) => assert_eq!(phys.total_len(), 1 << 20),
//!     Err(e) => assert_eq!(e.kind(), "pfn_hidden"), // not root: the message says what to do
//! }
//! # Ok::<(), physvec::dma_buf::DmaBufferError>(())
//! ```
//!
//! # Example: one NVMe Read, from the buffer to the command
//! The whole driver flow — buffer, physical ranges, the controller's limits, the
//! two-step mapping, PRPs, the command — without a command dword written by hand:
//! ```
//! use physvec::dma_buf::DmaBuffer;
//! use physvec::map::{self, DataDirection, SoftIommu};
//! use physvec::nvme::{encode_prp, LbaRange, MemoryPageSize, NamespaceId, PrpListPage,
//!                     SubmissionQueueEntry};
//! use physvec::{DmaConstraints, PhysVec, RangeBuilder};
//!
//! let data = DmaBuffer::new(1 << 20)?;                 // where the controller writes
//! let mut pool = DmaBuffer::new(4096)?;                // one page for the PRP list
//! let (Ok(phys), Ok(pool_phys)) = (data.phys(), pool.phys()) else {
//!     return Ok(()); // not root: the errors say how to grant CAP_SYS_ADMIN
//! };
//! // The controller's limits (here: never cross 4 GiB), then the two-step mapping.
//! let limits = DmaConstraints::new().with_segment_boundary_mask(0xffff_ffff);
//! let mut b = RangeBuilder::new(limits, PhysVec::new())?;
//! b.extend_from(phys)?;
//! let phys = b.finish();
//! let iommu = SoftIommu::new_4k();                     // your IOMMU, or DirectMapper
//! let io = map::map(&iommu, &phys, DataDirection::FromDevice)?;
//! let list_page = map::map(&iommu, &pool_phys, DataDirection::ToDevice)?;
//! // PRPs for the DMA ranges; the list is written straight into the (page-aligned) pool.
//! let entries: &mut [u64] = bytemuck::cast_slice_mut(&mut pool[..]);
//! let prp = encode_prp(io.dma(), MemoryPageSize::SIZE_4K,
//!                      [PrpListPage::new(list_page.dma()[0].addr(), entries)])?;
//! // Read the first MiB of namespace 1 (512-byte blocks) into the buffer.
//! let lbas = LbaRange::from_bytes(0, 1 << 20, 512)?;
//! let sqe = SubmissionQueueEntry::read(NamespaceId::new(1), lbas)
//!     .with_cid(1)
//!     .with_data_pointer(prp.data_pointer());
//! assert_eq!(sqe.cdw12(), 2047);                       // NLB: 2048 blocks, 0's based
//! // ... copy `sqe` into the submission queue, ring the doorbell, wait for the
//! // completion entry (nvme::CompletionQueueEntry), then:
//! io.unmap()?;
//! list_page.unmap()?;
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

use core::ffi::c_void;
use core::fmt;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;
use std::io;

use rustix::mm::{self, Advice, MapFlags, ProtFlags};

use crate::pagemap::{self, PagemapError};
use crate::vec::PhysVec;

/// Size of a base page (4 KiB).
const BASE_PAGE: usize = 4096;
/// Size of a hugepage (2 MiB).
pub const HUGE_PAGE_SIZE: usize = 2 << 20;

/// Whether a [`DmaBuffer`] should be backed by 2 MiB hugepages.
///
/// ```
/// use physvec::dma_buf::{DmaBuffer, HugePages};
/// let buf = DmaBuffer::with_huge_pages(4096, HugePages::Never)?;
/// assert_eq!(buf.backing().page_size(), 4096);
/// # Ok::<(), physvec::dma_buf::DmaBufferError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum HugePages {
    /// For 1 MiB or more: hugetlbfs 2 MiB pages when the pool has free ones; otherwise
    /// 4 KiB pages, advised for transparent hugepages (`MADV_HUGEPAGE`) from 2 MiB on.
    /// The length is then rounded up to 2 MiB. Below 1 MiB: 4 KiB pages (a hugepage
    /// would waste most of 2 MiB; ask [`HugePages::Require`] for a small buffer that is
    /// physically contiguous).
    #[default]
    Prefer,
    /// hugetlbfs 2 MiB pages or [`DmaBufferError::NoHugePages`].
    Require,
    /// 4 KiB pages only.
    Never,
}

/// The pages that back a [`DmaBuffer`].
///
/// ```
/// use physvec::dma_buf::Backing;
/// assert_eq!(Backing::HugeTlb.page_size(), 2 << 20);
/// assert_eq!(Backing::HugeTlb.to_string(), "2 MiB hugetlbfs pages");
/// ```
#[derive(Debug)]
pub enum Backing {
    /// 2 MiB hugetlbfs pages: each page is physically contiguous and does not move.
    HugeTlb,
    /// 4 KiB pages (possibly promoted to transparent hugepages by the kernel).
    BasePages {
        /// Why hugetlbfs pages were not used: `None` when they were not asked for.
        hugetlb_error: Option<io::Error>,
        /// `true` when the range was advised `MADV_HUGEPAGE`.
        thp_advised: bool,
    },
}

impl Backing {
    /// The page size the translation works in: 2 MiB for [`Backing::HugeTlb`], else 4 KiB.
    pub const fn page_size(&self) -> usize {
        match self {
            Backing::HugeTlb => HUGE_PAGE_SIZE,
            Backing::BasePages { .. } => BASE_PAGE,
        }
    }

    /// `true` for [`Backing::HugeTlb`].
    pub const fn is_huge(&self) -> bool {
        matches!(self, Backing::HugeTlb)
    }
}

impl fmt::Display for Backing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backing::HugeTlb => f.write_str("2 MiB hugetlbfs pages"),
            Backing::BasePages {
                hugetlb_error,
                thp_advised,
            } => {
                f.write_str("4 KiB pages")?;
                if *thp_advised {
                    f.write_str(" (advised for transparent hugepages)")?;
                }
                if let Some(e) = hugetlb_error {
                    write!(
                        f,
                        "; no 2 MiB hugetlbfs page ({e}): reserve some with \
                         `echo 64 > /proc/sys/vm/nr_hugepages` as root"
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// Why a [`DmaBuffer`] could not be set up.
///
/// ```
/// use physvec::dma_buf::DmaBuffer;
/// let e = DmaBuffer::new(0).unwrap_err();
/// assert_eq!(e.kind(), "empty");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum DmaBufferError {
    /// A zero-length buffer.
    Empty,
    /// The length rounded up to whole pages passes `isize::MAX`.
    TooLarge {
        /// The requested length in bytes.
        len: usize,
    },
    /// `mmap(2)` failed.
    Map {
        /// The mapping length in bytes.
        len: usize,
        /// The system error.
        source: io::Error,
    },
    /// [`HugePages::Require`] and no 2 MiB hugetlbfs page could be mapped.
    NoHugePages {
        /// The mapping length in bytes.
        len: usize,
        /// The system error (`ENOMEM`: the pool has too few free pages).
        source: io::Error,
    },
    /// `mlock(2)` failed.
    Lock {
        /// The length to lock in bytes.
        len: usize,
        /// The system error (`ENOMEM` or `EPERM`: above `RLIMIT_MEMLOCK`).
        source: io::Error,
    },
}

impl DmaBufferError {
    /// Stable snake_case name of the variant.
    pub fn kind(&self) -> &'static str {
        match self {
            DmaBufferError::Empty => "empty",
            DmaBufferError::TooLarge { .. } => "too_large",
            DmaBufferError::Map { .. } => "mmap_failed",
            DmaBufferError::NoHugePages { .. } => "no_huge_pages",
            DmaBufferError::Lock { .. } => "mlock_failed",
        }
    }
}

impl fmt::Display for DmaBufferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DmaBufferError::Empty => f.write_str("a DMA buffer of 0 bytes"),
            DmaBufferError::TooLarge { len } => {
                write!(
                    f,
                    "a DMA buffer of {len:#x} bytes is larger than the address space allows"
                )
            }
            DmaBufferError::Map { len, source } => {
                write!(f, "cannot map {len:#x} bytes of anonymous memory: {source}")
            }
            DmaBufferError::NoHugePages { len, source } => write!(
                f,
                "cannot map {len:#x} bytes of 2 MiB hugetlbfs pages ({source}): reserve \
                 hugepages with `echo {} > /proc/sys/vm/nr_hugepages` as root, or use \
                 HugePages::Prefer to fall back to 4 KiB pages",
                len.div_ceil(HUGE_PAGE_SIZE)
            ),
            DmaBufferError::Lock { len, source } => write!(
                f,
                "cannot lock {len:#x} bytes in memory ({source}): raise the locked-memory \
                 limit (`ulimit -l`, RLIMIT_MEMLOCK) or run with CAP_IPC_LOCK"
            ),
        }
    }
}

impl std::error::Error for DmaBufferError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DmaBufferError::Map { source, .. }
            | DmaBufferError::NoHugePages { source, .. }
            | DmaBufferError::Lock { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A zeroed buffer for device DMA: page-aligned, pre-faulted, locked in memory, and
/// released (unlocked, unmapped) on drop.
///
/// # Invariants
/// `ptr` is the start of a private anonymous mapping of `map_len` bytes, page-aligned
/// (2 MiB aligned for [`Backing::HugeTlb`]), readable and writable, locked, owned by this
/// value alone; `len <= map_len`.
///
/// # Examples
/// A 1 MiB window at an unaligned offset translates on the first try:
/// ```
/// use physvec::dma_buf::DmaBuffer;
/// let buf = DmaBuffer::new((1 << 20) + 4096)?;
/// match buf.phys_window(0x10, 1 << 20) {
///     Ok(phys) => {
///         assert_eq!(phys.total_len(), 1 << 20);
///         assert_eq!(phys.first().unwrap().addr().as_u64() & 0xfff, 0x10);
///     }
///     Err(e) => assert_eq!(e.kind(), "pfn_hidden"),
/// }
/// # Ok::<(), physvec::dma_buf::DmaBufferError>(())
/// ```
pub struct DmaBuffer {
    ptr: NonNull<u8>,
    len: usize,
    map_len: usize,
    backing: Backing,
}

// SAFETY: `DmaBuffer` owns its mapping exclusively (like `Vec<u8>` owns its heap block);
// `&DmaBuffer` gives only shared access to the bytes and `&mut DmaBuffer` exclusive access.
unsafe impl Send for DmaBuffer {}
// SAFETY: as above: shared references only read.
unsafe impl Sync for DmaBuffer {}

fn round_up(len: usize, page: usize) -> Option<usize> {
    let r = len.checked_next_multiple_of(page)?;
    (r <= isize::MAX as usize).then_some(r)
}

/// An anonymous private read-write mapping of `len` bytes, or the system error.
fn map_anonymous(len: usize, flags: MapFlags) -> io::Result<NonNull<u8>> {
    // SAFETY: a null hint lets the kernel choose the address, so no existing mapping is
    // replaced; the result is a fresh mapping owned by the caller.
    let p = unsafe {
        mm::mmap_anonymous(
            core::ptr::null_mut(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            flags | MapFlags::PRIVATE,
        )
    }
    .map_err(io::Error::from)?;
    NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::from(io::ErrorKind::AddrNotAvailable))
}

/// Unmaps `[ptr, ptr + len)`, which the caller owns and no longer uses.
fn unmap(ptr: NonNull<u8>, len: usize) {
    if len == 0 {
        return;
    }
    // SAFETY: the caller owns this part of a mapping it created and holds no reference
    // into it. A failure (only for invalid arguments) leaves the memory mapped: a leak,
    // never unsoundness.
    let _ = unsafe { mm::munmap(ptr.as_ptr().cast::<c_void>(), len) };
}

impl DmaBuffer {
    /// A zeroed, locked buffer of `len` bytes with [`HugePages::Prefer`].
    ///
    /// # Errors
    /// [`DmaBufferError::Empty`], [`DmaBufferError::TooLarge`], [`DmaBufferError::Map`],
    /// [`DmaBufferError::Lock`].
    ///
    /// ```
    /// let buf = physvec::dma_buf::DmaBuffer::new(8192)?;
    /// assert_eq!(buf.len(), 8192);
    /// assert_eq!(buf.as_ptr() as usize % 4096, 0);
    /// assert!(buf.iter().all(|&b| b == 0));
    /// # Ok::<(), physvec::dma_buf::DmaBufferError>(())
    /// ```
    pub fn new(len: usize) -> Result<Self, DmaBufferError> {
        Self::with_huge_pages(len, HugePages::Prefer)
    }

    /// A zeroed, locked buffer of `len` bytes, backed as `huge` asks.
    ///
    /// # Errors
    /// As [`DmaBuffer::new`]; with [`HugePages::Require`], [`DmaBufferError::NoHugePages`]
    /// when the hugetlbfs pool cannot supply the pages.
    ///
    /// ```
    /// use physvec::dma_buf::{DmaBuffer, HugePages};
    /// match DmaBuffer::with_huge_pages(2 << 20, HugePages::Require) {
    ///     Ok(buf) => assert!(buf.backing().is_huge()),
    ///     Err(e) => assert_eq!(e.kind(), "no_huge_pages"), // the message says how to reserve some
    /// }
    /// ```
    pub fn with_huge_pages(len: usize, huge: HugePages) -> Result<Self, DmaBufferError> {
        if len == 0 {
            return Err(DmaBufferError::Empty);
        }
        let huge_len = round_up(len, HUGE_PAGE_SIZE).ok_or(DmaBufferError::TooLarge { len })?;
        let mut hugetlb_error = None;
        let try_hugetlb = match huge {
            HugePages::Never => false,
            HugePages::Require => true,
            HugePages::Prefer => len >= HUGE_PAGE_SIZE / 2,
        };
        if try_hugetlb {
            let flags = MapFlags::HUGETLB | MapFlags::HUGE_2MB | MapFlags::POPULATE;
            match map_anonymous(huge_len, flags) {
                Ok(ptr) => return Self::finish(ptr, len, huge_len, Backing::HugeTlb),
                Err(source) if huge == HugePages::Require => {
                    return Err(DmaBufferError::NoHugePages {
                        len: huge_len,
                        source,
                    })
                }
                Err(source) => hugetlb_error = Some(source),
            }
        }
        let thp = huge == HugePages::Prefer && len >= HUGE_PAGE_SIZE;
        let (ptr, map_len) = if thp {
            Self::map_thp(huge_len)?
        } else {
            let map_len = round_up(len, BASE_PAGE).ok_or(DmaBufferError::TooLarge { len })?;
            let ptr = map_anonymous(map_len, MapFlags::POPULATE).map_err(|source| {
                DmaBufferError::Map {
                    len: map_len,
                    source,
                }
            })?;
            (ptr, map_len)
        };
        let backing = Backing::BasePages {
            hugetlb_error,
            thp_advised: thp,
        };
        Self::finish(ptr, len, map_len, backing)
    }

    /// A 2 MiB-aligned mapping of `len` (a multiple of 2 MiB) bytes advised
    /// `MADV_HUGEPAGE`: map 2 MiB more, trim both ends to the aligned part.
    fn map_thp(len: usize) -> Result<(NonNull<u8>, usize), DmaBufferError> {
        let over = len
            .checked_add(HUGE_PAGE_SIZE)
            .ok_or(DmaBufferError::TooLarge { len })?;
        let raw = map_anonymous(over, MapFlags::empty())
            .map_err(|source| DmaBufferError::Map { len: over, source })?;
        let addr = raw.as_ptr() as usize;
        // `over` bytes are mapped from `addr`, so the aligned start and its `len` bytes lie
        // inside: head <= 2 MiB - 4 KiB and head + len <= over.
        let head = addr.wrapping_neg() % HUGE_PAGE_SIZE;
        let tail = over.saturating_sub(head).saturating_sub(len);
        // SAFETY: `head < over`, so the result stays inside the mapping just created.
        let aligned = unsafe { raw.add(head) };
        unmap(raw, head);
        // SAFETY: `head + len <= over`: the tail starts inside (or at the end of) the mapping.
        unmap(unsafe { aligned.add(len) }, tail);
        // SAFETY: `[aligned, aligned + len)` is part of a mapping this function owns.
        // MADV_HUGEPAGE is advice: failure (THP disabled) only means 4 KiB pages.
        let _ = unsafe {
            mm::madvise(
                aligned.as_ptr().cast::<c_void>(),
                len,
                Advice::LinuxHugepage,
            )
        };
        Ok((aligned, len))
    }

    /// Pre-faults and locks `[ptr, ptr + map_len)`, taking ownership of the mapping.
    fn finish(
        ptr: NonNull<u8>,
        len: usize,
        map_len: usize,
        backing: Backing,
    ) -> Result<Self, DmaBufferError> {
        let buf = Self {
            ptr,
            len,
            map_len,
            backing,
        };
        // `mlock` faults every page in, and for a private writable mapping it faults them
        // for writing (the kernel breaks copy-on-write while populating): private pages,
        // never the shared zero page, whatever MAP_POPULATE managed.
        // SAFETY: the range is exactly the mapping `buf` owns.
        unsafe { mm::mlock(ptr.as_ptr().cast::<c_void>(), map_len) }.map_err(|source| {
            DmaBufferError::Lock {
                len: map_len,
                source: source.into(),
            }
        })?; // on error `buf` drops here and unmaps
        Ok(buf)
    }

    /// Length in bytes, as requested.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always `false`: a buffer holds at least one byte (a zero length is refused).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Bytes actually mapped and locked: the length rounded up to the page size.
    ///
    /// ```
    /// use physvec::dma_buf::{DmaBuffer, HugePages};
    /// let b = DmaBuffer::with_huge_pages(100, HugePages::Never)?;
    /// assert_eq!((b.len(), b.mapped_len()), (100, 4096));
    /// # Ok::<(), physvec::dma_buf::DmaBufferError>(())
    /// ```
    pub fn mapped_len(&self) -> usize {
        self.map_len
    }

    /// Which pages back the buffer, and why hugepages were not used.
    pub fn backing(&self) -> &Backing {
        &self.backing
    }

    /// The virtual address of byte 0.
    pub fn vaddr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    /// The physical ranges of the whole buffer, physically contiguous pages merged.
    ///
    /// # Errors
    /// [`PagemapError`]; [`PagemapError::PfnHidden`] when the process lacks
    /// `CAP_SYS_ADMIN` (its message says how to grant it).
    pub fn phys(&self) -> Result<PhysVec, PagemapError> {
        pagemap::translate(self.vaddr(), self.len as u64)
    }

    /// The physical ranges of bytes `[offset, offset + len)` of the buffer.
    ///
    /// # Errors
    /// As [`DmaBuffer::phys`]; [`PagemapError::AddressOverflow`] when the window passes
    /// the end of the buffer, [`PagemapError::Empty`] for `len == 0`.
    ///
    /// ```
    /// let buf = physvec::dma_buf::DmaBuffer::new(4096)?;
    /// assert_eq!(buf.phys_window(4000, 200).unwrap_err().kind(), "address_overflow");
    /// # Ok::<(), physvec::dma_buf::DmaBufferError>(())
    /// ```
    pub fn phys_window(&self, offset: usize, len: usize) -> Result<PhysVec, PagemapError> {
        let vaddr = self.vaddr().saturating_add(offset as u64);
        match offset.checked_add(len) {
            Some(end) if end <= self.len => pagemap::translate(vaddr, len as u64),
            _ => Err(PagemapError::AddressOverflow {
                vaddr,
                len: len as u64,
            }),
        }
    }
}

impl Deref for DmaBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` is valid for `len <= map_len` initialised (zero-filled) bytes,
        // owned by `self`; the borrow of `self` keeps the mapping alive.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for DmaBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes the access exclusive.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl fmt::Debug for DmaBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DmaBuffer {{ vaddr: {:#x}, len: {:#x}, mapped_len: {:#x}, backing: {} }}",
            self.vaddr(),
            self.len,
            self.map_len,
            self.backing
        )
    }
}

impl Drop for DmaBuffer {
    fn drop(&mut self) {
        // SAFETY: the mapping is owned by `self` and no borrow of it outlives `self`.
        // munlock failure is impossible for a range we locked; munmap also unlocks.
        let _ = unsafe { mm::munlock(self.ptr.as_ptr().cast::<c_void>(), self.map_len) };
        unmap(self.ptr, self.map_len);
    }
}

crate::error::error_info!(DmaBufferError);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn base_pages_are_zeroed_aligned_and_writable() {
        let mut b = DmaBuffer::with_huge_pages(3 * BASE_PAGE + 1, HugePages::Never).unwrap();
        assert_eq!(b.mapped_len(), 4 * BASE_PAGE);
        assert_eq!(b.vaddr() % BASE_PAGE as u64, 0);
        assert!(b.iter().all(|&x| x == 0));
        b[3 * BASE_PAGE] = 9;
        assert_eq!(b[3 * BASE_PAGE], 9);
        assert!(matches!(
            b.backing(),
            Backing::BasePages {
                hugetlb_error: None,
                thp_advised: false
            }
        ));
    }

    #[test]
    fn prefer_keeps_small_buffers_on_base_pages() {
        let b = DmaBuffer::new(64 << 10).unwrap();
        assert!(matches!(
            b.backing(),
            Backing::BasePages {
                hugetlb_error: None,
                thp_advised: false
            }
        ));
        assert_eq!(b.mapped_len(), 64 << 10);
    }

    #[test]
    fn thp_path_is_2m_aligned() {
        // `Prefer` with 2 MiB or more: hugetlbfs if the pool has pages, else the THP path.
        let b = DmaBuffer::new(HUGE_PAGE_SIZE + 1).unwrap();
        assert_eq!(b.vaddr() % HUGE_PAGE_SIZE as u64, 0);
        assert_eq!(b.mapped_len(), 2 * HUGE_PAGE_SIZE);
        assert_eq!(b.len(), HUGE_PAGE_SIZE + 1);
    }

    #[test]
    fn errors() {
        assert_eq!(DmaBuffer::new(0).unwrap_err().kind(), "empty");
        assert_eq!(DmaBuffer::new(usize::MAX).unwrap_err().kind(), "too_large");
        let b = DmaBuffer::with_huge_pages(10, HugePages::Never).unwrap();
        assert_eq!(
            b.phys_window(usize::MAX, 2).unwrap_err().kind(),
            "address_overflow"
        );
        assert_eq!(b.phys_window(0, 0).unwrap_err().kind(), "empty");
    }
}
