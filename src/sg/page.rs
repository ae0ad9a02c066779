//! The page model: how a page frame number becomes the `struct page *` stored in
//! `page_link` / `bv_page`, and back.
//!
//! On x86_64 with `SPARSEMEM_VMEMMAP`, `pfn_to_page(pfn)` is `vmemmap + pfn` with a
//! 64-byte `struct page`, so the address is `vmemmap_base + pfn * 64`: that is
//! [`Vmemmap`]. Other models (a flat `mem_map`, a test table) implement [`PageModel`].
#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

/// Maps 4 KiB page frame numbers to `struct page` addresses and back.
///
/// Implementations must be inverse on their domain: `pfn_of(page_of(p)?) == Some(p)`.
/// Returned page addresses must have their two low bits clear (they share `page_link`
/// with the `SG_CHAIN`/`SG_END` flags).
///
/// ```
/// use physvec::sg::{PageModel, Vmemmap};
/// let vm = Vmemmap::new(Vmemmap::X86_64_DEFAULT_BASE); // base + pfn * 64
/// let page = vm.page_of(0x1234).unwrap();
/// assert_eq!(page, 0xffff_ea00_0000_0000 + 0x1234 * 64);
/// assert_eq!(vm.pfn_of(page), Some(0x1234));
/// assert_eq!(vm.pfn_of(page + 8), None); // not a struct page: untrusted input is checked
/// ```
pub trait PageModel {
    /// `pfn_to_page()`: the `struct page` address of frame `pfn`, or `None` when the
    /// frame has no `struct page` in this model.
    fn page_of(&self, pfn: u64) -> Option<u64>;
    /// `page_to_pfn()`: the frame a `struct page` address describes, or `None` when the
    /// address is not a `struct page` of this model (untrusted input).
    fn pfn_of(&self, page: u64) -> Option<u64>;
}

impl<P: PageModel + ?Sized> PageModel for &P {
    fn page_of(&self, pfn: u64) -> Option<u64> {
        (**self).page_of(pfn)
    }
    fn pfn_of(&self, page: u64) -> Option<u64> {
        (**self).pfn_of(page)
    }
}

/// x86_64 `SPARSEMEM_VMEMMAP`: `struct page` of frame `pfn` at `base + pfn * 64`.
///
/// ```
/// use physvec::sg::{PageModel, Vmemmap};
/// let m = Vmemmap::new(0xffffea0000000000);
/// assert_eq!(m.page_of(0x10), Some(0xffffea0000000400));
/// assert_eq!(m.pfn_of(0xffffea0000000400), Some(0x10));
/// assert_eq!(m.pfn_of(0xffffea0000000401), None); // not a struct page boundary
/// assert_eq!(m.pfn_of(0x1000), None); // below the vmemmap
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Vmemmap {
    base: u64,
}

impl Vmemmap {
    /// `sizeof(struct page)` on x86_64, in bytes.
    pub const STRUCT_PAGE_SIZE: u64 = 64;
    /// The default `VMEMMAP_START` of x86_64 with 4-level paging and no KASLR.
    pub const X86_64_DEFAULT_BASE: u64 = 0xffff_ea00_0000_0000;

    /// A vmemmap starting at `base` (its two low bits are ignored).
    pub const fn new(base: u64) -> Self {
        Self { base: base & !3 }
    }

    /// The base address.
    pub const fn base(&self) -> u64 {
        self.base
    }
}

impl PageModel for Vmemmap {
    fn page_of(&self, pfn: u64) -> Option<u64> {
        pfn.checked_mul(Self::STRUCT_PAGE_SIZE)
            .and_then(|o| self.base.checked_add(o))
    }

    fn pfn_of(&self, page: u64) -> Option<u64> {
        let off = page.checked_sub(self.base)?;
        (off % Self::STRUCT_PAGE_SIZE == 0).then_some(off / Self::STRUCT_PAGE_SIZE)
    }
}
