//! VT-d legacy-mode entry formats: root entries, context entries and second-level
//! paging entries, with the reserved-bit masks QEMU 7.2 checks.
#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

use crate::map::IoPerm;

/// Second-level entry: Read.
pub const SL_R: u64 = 1 << 0;
/// Second-level entry: Write.
pub const SL_W: u64 = 1 << 1;
/// Second-level entry: Page Size (a 2 MiB leaf in a PDE, 1 GiB in a PDPTE).
pub const SL_PS: u64 = 1 << 7;
/// Second-level entry: Snoop (reserved while ECAP.SC = 0).
pub const SL_SNP: u64 = 1 << 11;
/// Second-level entry: Transient Mapping (reserved without ECAP.DT).
pub const SL_TM: u64 = 1 << 62;
/// Ignored bits of a second-level entry: 52..=61 and 63.
pub const SL_IGNORED: u64 = 0xbff0_0000_0000_0000;
/// Root / context entry: Present.
pub const ENTRY_P: u64 = 1;
/// Context entry (lo): Fault Processing Disable.
pub const CTX_FPD: u64 = 1 << 1;
/// Context entry (hi): reserved bits in legacy mode (7 and 63:24).
pub const CTX_HI_RSVD: u64 = 0xffff_ffff_ff00_0080;
/// First byte of the interrupt window (never translated).
pub const INTERRUPT_FIRST: u64 = 0xFEE0_0000;
/// Last byte of the interrupt window.
pub const INTERRUPT_LAST: u64 = 0xFEEF_FFFF;

/// Bits `0..aw` set: the host address width mask (`VTD_HAW_MASK`).
///
/// ```
/// assert_eq!(physvec::map::vtd::haw_mask(39), (1u64 << 39) - 1);
/// ```
pub const fn haw_mask(aw_bits: u32) -> u64 {
    if aw_bits >= 64 {
        u64::MAX
    } else {
        (1u64 << aw_bits).wrapping_sub(1)
    }
}

/// Reserved bits of a legacy root entry's low quadword (the high one must be 0).
pub const fn root_lo_reserved(haw: u32) -> u64 {
    0xffe | !haw_mask(haw)
}

/// Reserved bits of a legacy context entry's low quadword.
pub const fn ctx_lo_reserved(haw: u32) -> u64 {
    0xff0 | !haw_mask(haw)
}

/// Reserved bits of a second-level entry at VT-d `level` (1 = PTE .. 4 = PML4E), as QEMU
/// 7.2 computes them with DT = 0 and SC = 0: a large leaf (PS in a PDE or PDPTE) also
/// reserves the address bits below its size (a misaligned superpage).
///
/// ```
/// use physvec::map::vtd::{sl_reserved, SL_SNP};
/// assert_ne!(sl_reserved(1, false, 48) & SL_SNP, 0);
/// assert_eq!(sl_reserved(2, true, 48) & 0x1f_f000, 0x1f_f000); // misaligned 2 MiB
/// assert_ne!(sl_reserved(4, false, 48) & (1 << 7), 0); // PS is reserved in a PML4E
/// ```
pub const fn sl_reserved(level: u32, large: bool, haw: u32) -> u64 {
    let high = !(haw_mask(haw) | SL_IGNORED);
    let low = match (level, large) {
        (2, true) => 0x1f_f800,
        (3, true) => 0x3fff_f800,
        (4, _) => 0x880,
        _ => 0x800,
    };
    low | high
}

/// Address field of a second-level entry (bits 12 up to the host address width).
pub const fn sl_addr(raw: u64, haw: u32) -> u64 {
    raw & haw_mask(haw) & !0xfff
}

/// The permissions an entry grants.
pub fn sl_perm(raw: u64) -> IoPerm {
    let r = if raw & SL_R != 0 {
        IoPerm::READ
    } else {
        IoPerm::default()
    };
    let w = if raw & SL_W != 0 {
        IoPerm::WRITE
    } else {
        IoPerm::default()
    };
    IoPerm::from_bits(r.bits() | w.bits())
}

/// A legacy root entry pointing to the context table at `ctp` (P set, hi 0).
///
/// ```
/// assert_eq!(physvec::map::vtd::root_entry(0x2000), [0x2001, 0]);
/// ```
pub const fn root_entry(ctp: u64) -> [u64; 2] {
    [(ctp & !0xfff) | ENTRY_P, 0]
}

/// A legacy context entry: present, translation type 00 (second-level tables at
/// `slptptr`), FPD 0, address width `aw` (1 = 3 levels, 2 = 4 levels), domain `did`.
///
/// ```
/// let [lo, hi] = physvec::map::vtd::context_entry(0x3000, 2, 7);
/// assert_eq!((lo, hi), (0x3001, 0x702));
/// ```
pub const fn context_entry(slptptr: u64, aw: u8, did: u16) -> [u64; 2] {
    [
        (slptptr & !0xfff) | ENTRY_P,
        ((did as u64) << 8) | (aw as u64 & 7),
    ]
}

/// The context-entry AW field for an address width of 39 or 48 bits.
pub const fn aw_field(aw_bits: u32) -> Option<u8> {
    match aw_bits {
        39 => Some(1),
        48 => Some(2),
        _ => None,
    }
}

/// A second-level table entry (non-leaf): next table | R | W.
pub const fn sl_table_entry(next: u64) -> u64 {
    (next & !0xfff) | SL_R | SL_W
}

/// A second-level leaf at VT-d `level` (1 = 4 KiB, 2 = 2 MiB, 3 = 1 GiB) with the
/// permissions `perm` asks for (MMIO is not encoded: legacy mode has no memory type).
///
/// ```
/// use physvec::map::{vtd, IoPerm};
/// assert_eq!(vtd::sl_leaf_entry(0x20_0000, IoPerm::WRITE, 2), 0x20_0082);
/// ```
pub fn sl_leaf_entry(phys: u64, perm: IoPerm, level: u32) -> u64 {
    let mut raw = phys & !0xfff;
    if perm.contains(IoPerm::READ) {
        raw |= SL_R;
    }
    if perm.contains(IoPerm::WRITE) {
        raw |= SL_W;
    }
    if level > 1 {
        raw |= SL_PS;
    }
    raw
}

/// Whether a leaf of `size` bytes at `phys` overlaps the interrupt window (VT-d blocks
/// such a translation with fault reason 0xE).
pub const fn overlaps_interrupt_window(phys: u64, size: u64) -> bool {
    let last = phys.saturating_add(size.saturating_sub(1));
    !(phys > INTERRUPT_LAST || last < INTERRUPT_FIRST)
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;

    #[test]
    fn masks_match_qemu() {
        // VTD_SPTE_PAGE_L1_RSVD_MASK(48) with DT = 0: SNP, bit 62 and bits 48..51.
        assert_eq!(sl_reserved(1, false, 48), 0x400f_0000_0000_0800);
        assert_eq!(sl_reserved(3, true, 39), 0x400f_ff80_3fff_f800);
        assert_eq!(root_lo_reserved(48), 0xffff_0000_0000_0ffe);
        assert_eq!(ctx_lo_reserved(39), 0xffff_ff80_0000_0ff0);
        assert!(overlaps_interrupt_window(0xc000_0000, 1 << 30));
        assert!(!overlaps_interrupt_window(0xfef0_0000, 0x1000));
        assert_eq!(sl_perm(3), IoPerm::READ | IoPerm::WRITE);
    }
}
