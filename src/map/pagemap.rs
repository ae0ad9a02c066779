//! User-space virtual → physical translation through `/proc/self/pagemap` (`std`,
//! Linux), as user-space drivers (SPDK, DPDK) do before handing a buffer to a device.
//!
//! Each virtual page has an 8-byte little-endian entry at offset `vpn * 8`: bit 63 =
//! present, bit 62 = swapped, bits 0–54 = page frame number
//! (`Documentation/admin-guide/mm/pagemap.rst`). Since Linux 4.2 the PFN reads as zero
//! without `CAP_SYS_ADMIN`; this module then returns [`PagemapError::PfnHidden`], never a
//! wrong address.
//!
//! The buffer must stay resident while its physical addresses are in use: write to
//! every page first (a never-written page is absent, or is the shared zero page), and lock
//! it (`mlock`) or keep it pinned by other means. The translation is a snapshot.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::vec;
use std::vec::Vec;

use crate::addr::{PageSize, PhysAddr};
use crate::range::PhysRange;
use crate::vec::PhysVec;

const PRESENT: u64 = 1 << 63;
const SWAPPED: u64 = 1 << 62;
const PFN_MASK: u64 = (1 << 55) - 1;

/// Why a buffer could not be translated.
#[derive(Debug)]
#[non_exhaustive]
pub enum PagemapError {
    /// Zero-length buffer.
    Empty,
    /// The virtual range passes the end of the address space.
    AddressOverflow {
        /// Start of the buffer.
        vaddr: u64,
        /// Its length in bytes.
        len: u64,
    },
    /// `/proc/self/pagemap` could not be opened or read.
    Io {
        /// Virtual address whose entry was being read.
        vaddr: u64,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The page is not resident (never touched, or reclaimed).
    NotPresent {
        /// Virtual address of the page.
        vaddr: u64,
    },
    /// The page is swapped out.
    Swapped {
        /// Virtual address of the page.
        vaddr: u64,
    },
    /// The kernel hides PFNs from this process (no `CAP_SYS_ADMIN`): the entry says
    /// present but the PFN reads as zero.
    PfnHidden {
        /// Virtual address of the page.
        vaddr: u64,
    },
}

impl PagemapError {
    /// Stable snake_case name of the variant.
    pub fn kind(&self) -> &'static str {
        match self {
            PagemapError::Empty => "empty",
            PagemapError::AddressOverflow { .. } => "address_overflow",
            PagemapError::Io { .. } => "pagemap_io",
            PagemapError::NotPresent { .. } => "page_not_present",
            PagemapError::Swapped { .. } => "page_swapped",
            PagemapError::PfnHidden { .. } => "pfn_hidden",
        }
    }
}

impl std::fmt::Display for PagemapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PagemapError::Empty => f.write_str("empty buffer"),
            PagemapError::AddressOverflow { vaddr, len } => {
                write!(f, "virtual range {vaddr:#x}+{len:#x} passes 2^64")
            }
            PagemapError::Io { vaddr, source } => {
                write!(f, "cannot read /proc/self/pagemap for {vaddr:#x}: {source}")
            }
            PagemapError::NotPresent { vaddr } => {
                write!(f, "virtual page {vaddr:#x} is not resident (touch and lock the buffer first)")
            }
            PagemapError::Swapped { vaddr } => write!(f, "virtual page {vaddr:#x} is swapped out"),
            PagemapError::PfnHidden { vaddr } => write!(
                f,
                "the kernel hides the PFN of {vaddr:#x} (reading physical addresses needs CAP_SYS_ADMIN)"
            ),
        }
    }
}

impl std::error::Error for PagemapError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PagemapError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The base page size assumed for `/proc/self/pagemap` entries (4 KiB, x86_64 and the
/// default arm64 configuration).
pub const PAGE_SIZE: PageSize = PageSize::SIZE_4K;

/// The raw page frame numbers of the virtual pages covering `[vaddr, vaddr + len)`, one
/// per page, checked as [`translate`] does.
///
/// # Errors
/// As [`translate`].
pub fn pfns(vaddr: u64, len: u64) -> Result<Vec<u64>, PagemapError> {
    if len == 0 {
        return Err(PagemapError::Empty);
    }
    let last = vaddr
        .checked_add(len - 1)
        .ok_or(PagemapError::AddressOverflow { vaddr, len })?;
    let shift = PAGE_SIZE.shift();
    let (first_vpn, last_vpn) = (vaddr >> shift, last >> shift);
    let n = (last_vpn - first_vpn + 1) as usize;
    let io = |source| PagemapError::Io { vaddr, source };
    let file = File::open("/proc/self/pagemap").map_err(io)?;
    let mut raw = vec![0u8; n * 8];
    file.read_exact_at(&mut raw, first_vpn * 8).map_err(io)?;
    raw.chunks_exact(8)
        .enumerate()
        .map(|(i, b)| {
            let e = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
            let page = (first_vpn + i as u64) << shift;
            if e & PRESENT == 0 {
                return Err(if e & SWAPPED != 0 {
                    PagemapError::Swapped { vaddr: page }
                } else {
                    PagemapError::NotPresent { vaddr: page }
                });
            }
            match e & PFN_MASK {
                0 => Err(PagemapError::PfnHidden { vaddr: page }),
                pfn => Ok(pfn),
            }
        })
        .collect()
}

/// Translates the virtual range `[vaddr, vaddr + len)` of this process into physical
/// ranges, merging physically contiguous pages.
///
/// # Errors
/// [`PagemapError::Empty`], [`PagemapError::AddressOverflow`], [`PagemapError::Io`],
/// [`PagemapError::NotPresent`], [`PagemapError::Swapped`], [`PagemapError::PfnHidden`].
pub fn translate(vaddr: u64, len: u64) -> Result<PhysVec, PagemapError> {
    let pfns = pfns(vaddr, len)?;
    let mut out = PhysVec::new();
    let mut off = vaddr & PAGE_SIZE.mask();
    let mut left = len;
    for pfn in pfns {
        let chunk = (PAGE_SIZE.get() - off).min(left);
        let addr = PhysAddr::from_pfn(pfn, PAGE_SIZE)
            .map_err(|_| PagemapError::AddressOverflow { vaddr, len })?
            .as_u64()
            + off;
        let r = PhysRange::try_new(addr, chunk)
            .map_err(|_| PagemapError::AddressOverflow { vaddr, len })?;
        out.push_coalesced(r)
            .map_err(|_| PagemapError::AddressOverflow { vaddr, len })?;
        left -= chunk;
        off = 0;
    }
    Ok(out)
}

/// Translates a buffer of this process (see the module docs on residency).
///
/// # Errors
/// As [`translate`].
///
/// # Examples
/// ```
/// let mut buf = vec![0u8; 3 * 4096];
/// buf.iter_mut().step_by(4096).for_each(|b| *b = 1); // make every page resident
/// match physvec::map::pagemap::translate_buf(&buf) {
///     Ok(phys) => assert_eq!(phys.total_len(), buf.len() as u64),
///     Err(e) => assert_eq!(e.kind(), "pfn_hidden"), // without CAP_SYS_ADMIN
/// }
/// ```
pub fn translate_buf(buf: &[u8]) -> Result<PhysVec, PagemapError> {
    translate(buf.as_ptr() as u64, buf.len() as u64)
}
