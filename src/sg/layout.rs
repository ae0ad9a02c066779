//! Byte-exact mirrors of Linux x86_64 `struct scatterlist`, `struct sg_table` and
//! `struct bio_vec` (include/linux/scatterlist.h, include/linux/bvec.h), with the
//! `page_link` flag bits.
//!
//! The mirrors are `repr(C)` and `bytemuck::Pod`; [`Scatterlist::to_le_bytes`] and
//! [`Scatterlist::from_le_bytes`] give the little-endian in-memory form on any host, so
//! tables can be written to and read from a [`MemoryReader`](crate::mem::MemoryReader)
//! without casts.
#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

use core::mem::{offset_of, size_of};

use bytemuck::{Pod, Zeroable};

use crate::addr::PageSize;

/// `page_link` bit 0: this entry is a chain link; `page_link & !3` points to the next
/// array of entries.
pub const SG_CHAIN: u64 = 0x1;
/// `page_link` bit 1: this entry is the last one of the table.
pub const SG_END: u64 = 0x2;
/// Both flag bits of `page_link` (`SG_CHAIN | SG_END`); the rest is a `struct page *` or
/// a chain pointer.
pub const SG_PAGE_LINK_MASK: u64 = 0x3;
/// `dma_flags` bit 0: the DMA address is a PCI bus address (P2P), never merged.
pub const SG_DMA_BUS_ADDRESS: u32 = 0x1;
/// `dma_flags` bit 1: the entry was bounced through swiotlb.
pub const SG_DMA_SWIOTLB: u32 = 0x2;
/// `DMA_MAPPING_ERROR`: the DMA address of an entry that is not part of the DMA view.
pub const DMA_MAPPING_ERROR: u64 = !0;
/// The CPU page size of the x86_64 layout (`PAGE_SIZE`): `offset` of a fresh entry is
/// below it and `page_link` names the `struct page` of a 4 KiB frame.
pub const SG_PAGE_SIZE: PageSize = PageSize::SIZE_4K;
/// `SG_CHUNK_SIZE`: entries per chunk the kernel's `sg_pool` allocates (128).
pub const SG_CHUNK_SIZE: usize = 128;
/// `SG_MAX_SEGMENTS`: the block layer's largest chained table, in entries (2048).
pub const SG_MAX_SEGMENTS: usize = 2048;
/// `PAGE_SIZE & ~PAGE_MASK` rounded `UINT_MAX`: the default `max_segment` of
/// `sg_alloc_table_from_pages` (`0xffff_f000` bytes).
pub const SG_DEFAULT_MAX_SEGMENT: u32 = 0xffff_f000;

/// One `struct scatterlist` entry as it lies in memory on Linux x86_64 with
/// `CONFIG_NEED_SG_DMA_LENGTH` (any IOMMU) — 32 bytes.
///
/// # Invariants
/// None enforced: the type mirrors untrusted bytes. The importer validates entries when it
/// walks a table; the exporter only writes well-formed ones.
///
/// # Examples
/// ```
/// use physvec::sg::{Scatterlist, SG_END};
/// let e = Scatterlist::page_entry(0xffffea0000000400, 0x200, 0x1000, true);
/// assert!(e.is_last() && !e.is_chain());
/// assert_eq!(e.page(), 0xffffea0000000400);
/// assert_eq!(Scatterlist::from_le_bytes(&e.to_le_bytes()), e);
/// assert_eq!(e.page_link & SG_END, SG_END);
/// ```
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct Scatterlist {
    /// `struct page *` (or, with [`SG_CHAIN`], the next entry array) ORed with the flag
    /// bits [`SG_CHAIN`] and [`SG_END`].
    pub page_link: u64,
    /// Byte offset of the data inside the page.
    pub offset: u32,
    /// Length of the data in bytes (CPU view).
    pub length: u32,
    /// `sg_dma_address()`: bus address of this DMA segment.
    pub dma_address: u64,
    /// `sg_dma_len()`: length in bytes of this DMA segment (0 outside the DMA view).
    pub dma_length: u32,
    /// `SG_DMA_BUS_ADDRESS` / `SG_DMA_SWIOTLB` flags (the 64-bit padding slot).
    pub dma_flags: u32,
}

const _: () = assert!(size_of::<Scatterlist>() == 32);
const _: () = assert!(offset_of!(Scatterlist, page_link) == 0);
const _: () = assert!(offset_of!(Scatterlist, offset) == 8);
const _: () = assert!(offset_of!(Scatterlist, length) == 12);
const _: () = assert!(offset_of!(Scatterlist, dma_address) == 16);
const _: () = assert!(offset_of!(Scatterlist, dma_length) == 24);
const _: () = assert!(offset_of!(Scatterlist, dma_flags) == 28);

impl Scatterlist {
    /// Size of one entry in bytes.
    pub const SIZE: usize = 32;
    /// Byte offset of `dma_address` inside an entry.
    pub const DMA_ADDRESS_OFFSET: u64 = 16;
    /// Byte offset of `dma_length` inside an entry.
    pub const DMA_LENGTH_OFFSET: u64 = 24;

    /// A data entry as `sg_set_page` writes it (DMA fields zero), with [`SG_END`] when
    /// `last`. `page` must have its two low bits clear (a `struct page` is aligned).
    ///
    /// ```
    /// let e = physvec::sg::Scatterlist::page_entry(0x1000, 0, 512, false);
    /// assert_eq!((e.offset, e.length, e.is_last()), (0, 512, false));
    /// ```
    pub const fn page_entry(page: u64, offset: u32, length: u32, last: bool) -> Self {
        Self {
            page_link: (page & !SG_PAGE_LINK_MASK) | if last { SG_END } else { 0 },
            offset,
            length,
            dma_address: 0,
            dma_length: 0,
            dma_flags: 0,
        }
    }

    /// A chain entry as `sg_chain` writes it: `page_link = next | SG_CHAIN`, all else 0.
    ///
    /// ```
    /// let e = physvec::sg::Scatterlist::chain_entry(0x80000);
    /// assert!(e.is_chain());
    /// assert_eq!(e.chain_ptr(), 0x80000);
    /// ```
    pub const fn chain_entry(next: u64) -> Self {
        Self {
            page_link: (next & !SG_PAGE_LINK_MASK) | SG_CHAIN,
            offset: 0,
            length: 0,
            dma_address: 0,
            dma_length: 0,
            dma_flags: 0,
        }
    }

    /// `sg_is_chain()`: bit 0 of `page_link`.
    pub const fn is_chain(&self) -> bool {
        self.page_link & SG_CHAIN != 0
    }

    /// `sg_is_last()`: bit 1 of `page_link`.
    pub const fn is_last(&self) -> bool {
        self.page_link & SG_END != 0
    }

    /// `sg_page()`: the `struct page` address, flag bits cleared.
    pub const fn page(&self) -> u64 {
        self.page_link & !SG_PAGE_LINK_MASK
    }

    /// `sg_chain_ptr()`: the next entry array of a chain entry, flag bits cleared.
    pub const fn chain_ptr(&self) -> u64 {
        self.page_link & !SG_PAGE_LINK_MASK
    }

    /// The 32 bytes of the entry as x86_64 stores them (little-endian).
    pub fn to_le_bytes(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0..8].copy_from_slice(&self.page_link.to_le_bytes());
        b[8..12].copy_from_slice(&self.offset.to_le_bytes());
        b[12..16].copy_from_slice(&self.length.to_le_bytes());
        b[16..24].copy_from_slice(&self.dma_address.to_le_bytes());
        b[24..28].copy_from_slice(&self.dma_length.to_le_bytes());
        b[28..32].copy_from_slice(&self.dma_flags.to_le_bytes());
        b
    }

    /// Parses 32 little-endian bytes.
    pub fn from_le_bytes(b: &[u8; 32]) -> Self {
        let [p0, p1, p2, p3, p4, p5, p6, p7, o0, o1, o2, o3, l0, l1, l2, l3, d0, d1, d2, d3, d4, d5, d6, d7, n0, n1, n2, n3, f0, f1, f2, f3] =
            *b;
        Self {
            page_link: u64::from_le_bytes([p0, p1, p2, p3, p4, p5, p6, p7]),
            offset: u32::from_le_bytes([o0, o1, o2, o3]),
            length: u32::from_le_bytes([l0, l1, l2, l3]),
            dma_address: u64::from_le_bytes([d0, d1, d2, d3, d4, d5, d6, d7]),
            dma_length: u32::from_le_bytes([n0, n1, n2, n3]),
            dma_flags: u32::from_le_bytes([f0, f1, f2, f3]),
        }
    }
}

/// One line, the kernel's field names (`struct scatterlist`, `sg_dma_address`), hex
/// values; a chain entry shows only where it links, and `SG_END` shows as `end`.
///
/// ```
/// use physvec::sg::Scatterlist;
/// let mut e = Scatterlist::page_entry(0xffffea0000000400, 0x200, 0x1000, true);
/// e.dma_address = 0x8000_0200;
/// e.dma_length = 0x1000;
/// assert_eq!(e.to_string(), "page_link=0xffffea0000000402 (page=0xffffea0000000400 end) \
///     offset=0x200 length=0x1000 dma_address=0x80000200 dma_length=0x1000 dma_flags=0x0");
/// assert_eq!(Scatterlist::chain_entry(0x80000).to_string(), "page_link=0x80001 (chain to 0x80000)");
/// ```
impl core::fmt::Display for Scatterlist {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.is_chain() {
            return write!(
                f,
                "page_link={:#x} (chain to {:#x})",
                self.page_link,
                self.chain_ptr()
            );
        }
        write!(
            f,
            "page_link={:#x} (page={:#x}",
            self.page_link,
            self.page()
        )?;
        if self.is_last() {
            f.write_str(" end")?;
        }
        write!(
            f,
            ") offset={:#x} length={:#x} dma_address={:#x} dma_length={:#x} dma_flags={:#x}",
            self.offset, self.length, self.dma_address, self.dma_length, self.dma_flags
        )
    }
}

/// `struct sg_table`: the first entry and the entry counts — 16 bytes on x86_64.
///
/// `orig_nents` counts the CPU entries (`for_each_sgtable_sg`); `nents` counts the
/// DMA segments after mapping (`for_each_sgtable_dma_sg`), `nents <= orig_nents`.
///
/// ```
/// let t = physvec::sg::SgTable { sgl: 0x80000, nents: 3, orig_nents: 3 };
/// assert_eq!(core::mem::size_of_val(&t), 16);
/// ```
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct SgTable {
    /// Address of the first entry (`struct scatterlist *sgl`).
    pub sgl: u64,
    /// Number of DMA segments (equal to `orig_nents` before mapping).
    pub nents: u32,
    /// Number of CPU entries, chain entries not counted.
    pub orig_nents: u32,
}

const _: () = assert!(size_of::<SgTable>() == 16);
const _: () = assert!(offset_of!(SgTable, sgl) == 0);
const _: () = assert!(offset_of!(SgTable, nents) == 8);
const _: () = assert!(offset_of!(SgTable, orig_nents) == 12);

/// `struct bio_vec` (include/linux/bvec.h): a `struct page *`, a length and an offset —
/// 16 bytes on x86_64. A multi-page bvec may span several physically contiguous pages
/// (`bv_offset` may then exceed the page size).
///
/// ```
/// let b = physvec::sg::BioVec { bv_page: 0xffffea0000000040, bv_len: 4096, bv_offset: 0 };
/// assert_eq!(core::mem::size_of_val(&b), 16);
/// ```
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct BioVec {
    /// `struct page *` of the first page.
    pub bv_page: u64,
    /// Length in bytes.
    pub bv_len: u32,
    /// Byte offset from the start of `bv_page`.
    pub bv_offset: u32,
}

/// Hex for every address and pointer field (`page_link: 0xffffea0000000402`).
///
/// ```
/// let e = physvec::sg::Scatterlist::page_entry(0xffffea0000000400, 0x200, 0x1000, true);
/// assert!(format!("{e:?}").contains("page_link: 0xffffea0000000402"));
/// ```
impl core::fmt::Debug for Scatterlist {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        use crate::fmt::Hex;
        f.debug_struct("Scatterlist")
            .field("page_link", &Hex(self.page_link))
            .field("offset", &Hex(u64::from(self.offset)))
            .field("length", &Hex(u64::from(self.length)))
            .field("dma_address", &Hex(self.dma_address))
            .field("dma_length", &Hex(u64::from(self.dma_length)))
            .field("dma_flags", &Hex(u64::from(self.dma_flags)))
            .finish()
    }
}

/// `SgTable { sgl: 0x80000, nents: 3, orig_nents: 3 }`.
impl core::fmt::Debug for SgTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SgTable")
            .field("sgl", &crate::fmt::Hex(self.sgl))
            .field("nents", &self.nents)
            .field("orig_nents", &self.orig_nents)
            .finish()
    }
}

/// `BioVec { bv_page: 0xffffea0000000040, bv_len: 0x1000, bv_offset: 0x0 }`.
impl core::fmt::Debug for BioVec {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        use crate::fmt::Hex;
        f.debug_struct("BioVec")
            .field("bv_page", &Hex(self.bv_page))
            .field("bv_len", &Hex(u64::from(self.bv_len)))
            .field("bv_offset", &Hex(u64::from(self.bv_offset)))
            .finish()
    }
}

const _: () = assert!(size_of::<BioVec>() == 16);
const _: () = assert!(offset_of!(BioVec, bv_page) == 0);
const _: () = assert!(offset_of!(BioVec, bv_len) == 8);
const _: () = assert!(offset_of!(BioVec, bv_offset) == 12);

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

    #[test]
    fn bytes_are_little_endian_x86_64() {
        let e = Scatterlist {
            page_link: 0x0102_0304_0506_0708,
            offset: 0x1112_1314,
            length: 0x2122_2324,
            dma_address: 0x3132_3334_3536_3738,
            dma_length: 0x4142_4344,
            dma_flags: 0x5152_5354,
        };
        let b = e.to_le_bytes();
        assert_eq!(b[0], 0x08);
        assert_eq!(b[8], 0x14);
        assert_eq!(b[12], 0x24);
        assert_eq!(b[16], 0x38);
        assert_eq!(b[24], 0x44);
        assert_eq!(b[31], 0x51);
        assert_eq!(Scatterlist::from_le_bytes(&b), e);
        if cfg!(target_endian = "little") {
            assert_eq!(bytemuck::bytes_of(&e), &b[..]);
        }
    }
}
