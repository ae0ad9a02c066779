//! User-space virtual → physical translation through `/proc/self/pagemap` (`std`,
//! Linux), as user-space drivers (SPDK, DPDK) do before handing a buffer to a device.
//!
//! Each virtual page has an 8-byte little-endian entry at offset `vpn * 8`: bit 63 =
//! present, bit 62 = swapped, bits 0–54 = page frame number
//! (`Documentation/admin-guide/mm/pagemap.rst`). Since Linux 4.2 the PFN reads as zero
//! without `CAP_SYS_ADMIN`; this module then returns [`PagemapError::PfnHidden`], never a
//! wrong address.
//!
//! The buffer must stay resident while its physical addresses are in use: every page it
//! covers must have been written (a never-written page is absent, or is the shared zero
//! page), and it must be locked (`mlock(2)`) or pinned by other means. The translation
//! is a snapshot.
//!
//! The easy way is [`DmaBuffer`](crate::dma_buf::DmaBuffer): page-aligned memory (2 MiB
//! hugepages when the system has them), pre-faulted and locked, whose
//! [`phys`](crate::dma_buf::DmaBuffer::phys) calls this module. For memory you already
//! have, [`prefault`] writes every page the slice covers, including a partial first and
//! last page (`buf.iter_mut().step_by(4096)` misses the last page of an unaligned
//! buffer), then lock it with `rustix::mm::mlock` or `libc::mlock`.
//!
//! ```
//! use physvec::pagemap;
//! let mut v = vec![0u8; (1 << 20) + 32];
//! let buf = &mut v[16..16 + (1 << 20)];           // 1 MiB at an unaligned address: 257 pages
//! pagemap::prefault(buf);                         // every page, the partial last one too
//! match pagemap::translate_buf(buf) {
//!     Ok(phys) => assert_eq!(phys.total_len(), 1 << 20),
//!     Err(e) => assert_eq!(e.kind(), "pfn_hidden"), // not root: see PagemapError::PfnHidden
//! }
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

/// Why a buffer could not be translated. `Debug` and `Display` print addresses in hex.
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
                write!(
                    f,
                    "virtual page {vaddr:#x} is not resident (touch and lock the buffer first)"
                )
            }
            PagemapError::Swapped { vaddr } => write!(f, "virtual page {vaddr:#x} is swapped out"),
            PagemapError::PfnHidden { vaddr } => write!(
                f,
                "the kernel hides the PFN of {vaddr:#x}: reading physical addresses needs \
                 CAP_SYS_ADMIN (run as root, or `setcap cap_sys_admin+ep` on the binary)"
            ),
        }
    }
}

impl std::fmt::Debug for PagemapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PagemapError::Empty => f.write_str("Empty"),
            PagemapError::AddressOverflow { vaddr, len } => f
                .debug_struct("AddressOverflow")
                .field("vaddr", &format_args!("{vaddr:#x}"))
                .field("len", &format_args!("{len:#x}"))
                .finish(),
            PagemapError::Io { vaddr, source } => f
                .debug_struct("Io")
                .field("vaddr", &format_args!("{vaddr:#x}"))
                .field("source", source)
                .finish(),
            PagemapError::NotPresent { vaddr } => f
                .debug_struct("NotPresent")
                .field("vaddr", &format_args!("{vaddr:#x}"))
                .finish(),
            PagemapError::Swapped { vaddr } => f
                .debug_struct("Swapped")
                .field("vaddr", &format_args!("{vaddr:#x}"))
                .finish(),
            PagemapError::PfnHidden { vaddr } => f
                .debug_struct("PfnHidden")
                .field("vaddr", &format_args!("{vaddr:#x}"))
                .finish(),
        }
    }
}

/// Writes one byte of every page `buf` covers, the partial first and last pages
/// included, so that each is resident and private to this process (not the shared zero
/// page). Contents are unchanged: each touched byte is read and written back.
///
/// This does not lock the pages; see the module docs.
///
/// ```
/// let mut v = vec![7u8; 3 * 4096 + 100];
/// physvec::pagemap::prefault(&mut v[10..]);
/// assert!(v.iter().all(|&b| b == 7));
/// ```
pub fn prefault(buf: &mut [u8]) {
    let page = PAGE_SIZE.get() as usize;
    let start = buf.as_ptr() as usize;
    // Offset of the first page boundary inside `buf` (0 when `buf` starts on one).
    // `page` is 4096 (non-zero) and `start % page < page`.
    #[allow(clippy::arithmetic_side_effects)]
    let first = (page - start % page) % page;
    let touch = |b: &mut u8| {
        // SAFETY: `b` is a valid, exclusive reference; the volatile pair keeps the
        // compiler from dropping a write of the value just read.
        unsafe { core::ptr::write_volatile(b, core::ptr::read_volatile(b)) }
    };
    if let Some(b) = buf.first_mut() {
        touch(b);
    }
    let mut off = first;
    while let Some(b) = buf.get_mut(off) {
        touch(b);
        off = match off.checked_add(page) {
            Some(o) => o,
            None => break,
        };
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
    let overflow = PagemapError::AddressOverflow { vaddr, len };
    // `len != 0` was checked above.
    #[allow(clippy::arithmetic_side_effects)]
    let last = vaddr.checked_add(len - 1).ok_or(overflow)?;
    let shift = PAGE_SIZE.shift();
    let (first_vpn, last_vpn) = (vaddr >> shift, last >> shift);
    // `last >= vaddr`, so `last_vpn >= first_vpn`, and both are below 2^52: the page
    // count and the file offset `first_vpn * 8` stay below 2^56.
    #[allow(clippy::arithmetic_side_effects)]
    let (pages, file_offset) = (last_vpn - first_vpn + 1, first_vpn * 8);
    // A byte count that does not fit in memory (a 32-bit target) is refused.
    let bytes = usize::try_from(pages)
        .ok()
        .and_then(|n| n.checked_mul(8))
        .ok_or(PagemapError::AddressOverflow { vaddr, len })?;
    let io = |source| PagemapError::Io { vaddr, source };
    let file = File::open("/proc/self/pagemap").map_err(io)?;
    let mut raw = vec![0u8; bytes];
    file.read_exact_at(&mut raw, file_offset).map_err(io)?;
    raw.chunks_exact(8)
        .zip(first_vpn..=last_vpn)
        .map(|(b, vpn)| {
            let mut le = [0u8; 8];
            le.copy_from_slice(b); // `chunks_exact(8)`: always 8 bytes.
            decode_entry(u64::from_le_bytes(le), vpn << shift)
        })
        .collect()
}

/// The page frame of one `/proc/self/pagemap` entry for the page at `page`
/// (Documentation/admin-guide/mm/pagemap.rst: bit 63 present, bit 62 swapped, bits 54:0
/// the PFN, which reads as 0 without `CAP_SYS_ADMIN`).
fn decode_entry(e: u64, page: u64) -> Result<u64, PagemapError> {
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
        // `off <= mask < page size`.
        #[allow(clippy::arithmetic_side_effects)]
        let chunk = (PAGE_SIZE.get() - off).min(left);
        let page = PhysAddr::from_pfn(pfn, PAGE_SIZE)
            .map_err(|_| PagemapError::AddressOverflow { vaddr, len })?;
        // `page` is page aligned (at most 2^64 - page size) and `off < page size`.
        #[allow(clippy::arithmetic_side_effects)]
        let addr = page.as_u64() + off;
        let r = PhysRange::try_new(addr, chunk)
            .map_err(|_| PagemapError::AddressOverflow { vaddr, len })?;
        out.push_coalesced(r)
            .map_err(|_| PagemapError::AddressOverflow { vaddr, len })?;
        // `chunk = (..).min(left) <= left`.
        #[allow(clippy::arithmetic_side_effects)]
        {
            left -= chunk;
        }
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
/// physvec::pagemap::prefault(&mut buf); // make every page it covers resident
/// match physvec::pagemap::translate_buf(&buf) {
///     Ok(phys) => assert_eq!(phys.total_len(), buf.len() as u64),
///     Err(e) => assert_eq!(e.kind(), "pfn_hidden"), // without CAP_SYS_ADMIN
/// }
/// ```
pub fn translate_buf(buf: &[u8]) -> Result<PhysVec, PagemapError> {
    translate(buf.as_ptr() as u64, buf.len() as u64)
}

crate::error::error_info!(PagemapError);

#[cfg(test)]
#[allow(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]
mod tests {
    use super::*;

    /// Entries as the kernel writes them: present with a PFN, present with the PFN
    /// hidden, swapped out (a swap entry in the low bits), not present at all; the
    /// soft-dirty (55), exclusive (56) and file/shared (61) flags never reach the PFN.
    #[test]
    fn entries_decode_by_their_flag_bits() {
        let page = 0x7f00_0000_1000;
        let flags = 1 << 55 | 1 << 56 | 1 << 61;
        assert_eq!(
            decode_entry(1 << 63 | flags | 0x12345, page).unwrap(),
            0x12345
        );
        assert_eq!(
            decode_entry(1 << 63 | ((1 << 55) - 1), page).unwrap(),
            (1 << 55) - 1
        );
        assert!(matches!(
            decode_entry(1 << 63 | flags, page),
            Err(PagemapError::PfnHidden { vaddr }) if vaddr == page
        ));
        assert!(matches!(
            decode_entry(1 << 62 | 0x1f << 5 | 3, page),
            Err(PagemapError::Swapped { vaddr }) if vaddr == page
        ));
        assert!(matches!(
            decode_entry(flags | 0x12345, page),
            Err(PagemapError::NotPresent { vaddr }) if vaddr == page
        ));
        assert!(matches!(
            decode_entry(0, page),
            Err(PagemapError::NotPresent { .. })
        ));
    }

    /// `Debug` prints addresses and lengths in hex, one variant per line shape.
    #[test]
    fn debug_prints_addresses_in_hex() {
        let cases = [
            (PagemapError::Empty, "Empty"),
            (
                PagemapError::AddressOverflow {
                    vaddr: 0x10,
                    len: 0x20,
                },
                "AddressOverflow { vaddr: 0x10, len: 0x20 }",
            ),
            (
                PagemapError::NotPresent { vaddr: 0x1000 },
                "NotPresent { vaddr: 0x1000 }",
            ),
            (
                PagemapError::Swapped { vaddr: 0x2000 },
                "Swapped { vaddr: 0x2000 }",
            ),
            (
                PagemapError::PfnHidden { vaddr: 0x3000 },
                "PfnHidden { vaddr: 0x3000 }",
            ),
        ];
        for (e, text) in cases {
            assert_eq!(format!("{e:?}"), text);
        }
        let io = PagemapError::Io {
            vaddr: 0x4000,
            source: std::io::Error::from_raw_os_error(1),
        };
        assert!(format!("{io:?}").starts_with("Io { vaddr: 0x4000, source: "));
    }
}
