//! The device side: walk legacy-mode VT-d tables as the hardware (QEMU 7.2's
//! `intel-iommu`) does, over a [`MemoryReader`], and report the exact fault reason.
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

use super::entry::{
    ctx_lo_reserved, haw_mask, overlaps_interrupt_window, root_lo_reserved, sl_addr, sl_perm,
    sl_reserved, CTX_FPD, CTX_HI_RSVD, ENTRY_P, INTERRUPT_FIRST, INTERRUPT_LAST, SL_PS, SL_R, SL_W,
};
use super::fault::{Access, FaultReason};
use crate::addr::{Phys, PhysAddr};
use crate::map::IoPerm;
use crate::mem::{MemoryError, MemoryReader};

/// What the IOMMU supports (the parts of CAP / ECAP a walk depends on).
///
/// ```
/// use physvec::map::vtd::VtdCaps;
/// let c = VtdCaps::qemu(48);
/// assert_eq!(c.sagaw, 0b00110); // 3- and 4-level tables
/// assert_eq!(VtdCaps::qemu(39).sagaw, 0b00010);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VtdCaps {
    /// Host address width (QEMU's `aw-bits`): 39 or 48. Entry bits at or above it are
    /// reserved and IOVAs at or above `2^min(haw, AGAW)` fault.
    pub haw: u32,
    /// CAP.SAGAW: bit 1 = 3-level (39-bit), bit 2 = 4-level (48-bit) tables.
    pub sagaw: u8,
    /// ECAP.PT: pass-through translation type (10b) is allowed.
    pub pass_through: bool,
    /// ECAP.DT: device-TLB translation type (01b) is allowed.
    pub device_tlb: bool,
}

impl VtdCaps {
    /// The capabilities of QEMU 7.2's `intel-iommu,aw-bits=AW` (39 or 48; other widths
    /// get SAGAW 0, so every context entry faults with reason 3).
    pub const fn qemu(aw_bits: u32) -> Self {
        let sagaw = match aw_bits {
            39 => 0b00010,
            48 => 0b00110,
            _ => 0,
        };
        VtdCaps {
            haw: aw_bits,
            sagaw,
            pass_through: true,
            device_tlb: false,
        }
    }
}

/// A successful translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The physical (guest-physical) address of the IOVA's byte.
    pub phys: u64,
    /// Size of the leaf that translated it (4 KiB, 2 MiB or 1 GiB; 4 KiB for
    /// pass-through).
    pub page_size: u64,
    /// Domain id from the context entry.
    pub domain_id: u16,
    /// Access the whole walk grants (R and W ANDed down the levels).
    pub perm: IoPerm,
    /// Whether the context entry is pass-through (no second-level walk).
    pub pass_through: bool,
}

/// A translation fault: what the IOMMU records in a fault record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The fault reason.
    pub reason: FaultReason,
    /// Whether the fault is recorded: `false` when the context entry's FPD bit
    /// suppresses this (qualified) fault.
    pub recorded: bool,
    /// Second-level table level (4 = PML4 .. 1 = PT) where the walk stopped, or 0 for a
    /// root / context / IOVA-range fault.
    pub level: u32,
}

/// Why [`translate`] produced no address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkError {
    /// A VT-d fault.
    Fault(Fault),
    /// A table read fell outside the memory the reader backs (QEMU would record 8, 9, 3
    /// or 7; a reader over a snapshot cannot tell which memory exists).
    Memory(MemoryError<Phys>),
    /// The IOVA is in the interrupt window 0xFEE00000..=0xFEEFFFFF: the request is an
    /// interrupt, not translated and not recorded as a fault.
    InterruptWindow,
}

impl WalkError {
    /// Stable snake_case name: the fault reason's name, `memory_unreadable` or
    /// `interrupt_window`.
    pub const fn kind(&self) -> &'static str {
        match self {
            WalkError::Fault(f) => f.reason.kind(),
            WalkError::Memory(_) => "memory_unreadable",
            WalkError::InterruptWindow => "interrupt_window",
        }
    }
}

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalkError::Fault(x) => {
                write!(f, "VT-d fault {:#x}: {}", x.reason.code(), x.reason)?;
                if x.level > 0 {
                    write!(f, " (at second-level table level {})", x.level)?;
                }
                if !x.recorded {
                    f.write_str(" (not recorded: FPD)")?;
                }
                Ok(())
            }
            WalkError::Memory(m) => fmt::Display::fmt(m, f),
            WalkError::InterruptWindow => {
                f.write_str("IOVA in the interrupt window: an interrupt request, not translated")
            }
        }
    }
}

impl core::error::Error for WalkError {}

/// One table entry the walk read (for drawing a walk).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkStep {
    /// The root entry for the bus: its address and both quadwords.
    Root {
        /// Address of the entry.
        addr: u64,
        /// Low and high quadword.
        raw: [u64; 2],
    },
    /// The context entry for the device/function.
    Context {
        /// Address of the entry.
        addr: u64,
        /// Low and high quadword.
        raw: [u64; 2],
    },
    /// A second-level entry at `level` (4 = PML4 .. 1 = PT).
    Sl {
        /// VT-d level.
        level: u32,
        /// Address of the entry.
        addr: u64,
        /// The entry.
        raw: u64,
    },
}

fn read_pair<R: MemoryReader<Phys> + ?Sized>(mem: &R, addr: u64) -> Result<[u64; 2], WalkError> {
    let lo = mem
        .read_u64_le(PhysAddr::new(addr))
        .map_err(WalkError::Memory)?;
    let hi_addr = addr
        .checked_add(8)
        .ok_or(WalkError::Memory(MemoryError::at(PhysAddr::new(addr), 16)))?;
    let hi = mem
        .read_u64_le(PhysAddr::new(hi_addr))
        .map_err(WalkError::Memory)?;
    Ok([lo, hi])
}

fn fault(reason: FaultReason, fpd: bool, level: u32) -> WalkError {
    WalkError::Fault(Fault {
        reason,
        recorded: !(fpd && reason.is_qualified()),
        level,
    })
}

/// Translates `iova` for the device `source_id` (`bus << 8 | dev << 3 | fn`) through the
/// legacy-mode tables whose root table is at `root_table`, as QEMU 7.2's `intel-iommu`
/// does (`vtd_dev_to_context_entry` then `vtd_iova_to_slpte`), without any cache.
///
/// Order of checks: root entry present (1) and reserved bits (0xA); context entry
/// present (2), reserved bits (0xB), AW in SAGAW and translation type (3); IOVA below
/// `2^min(AGAW, haw)` (4); then per level: an all-ones entry (3 at the top level, 7
/// below), the R or W bit the access needs (6 or 5, so a not-present entry faults as a
/// permission fault), reserved bits (0xC); finally a leaf covering the interrupt window
/// (0xE). Work is bounded: at most 2 + 4 entry reads.
///
/// # Errors
/// [`WalkError::Fault`] with the reason, [`WalkError::Memory`] when a read is not
/// backed, [`WalkError::InterruptWindow`].
///
/// # Examples
/// ```
/// use physvec::map::vtd::{self, Access, FaultReason, VtdCaps, WalkError};
/// use physvec::mem::{MemoryWriter, SparseMemory};
/// let mut m = SparseMemory::default();
/// m.add_zeroed(physvec::PhysAddr::new(0x10000), 0x5000); // root, context, PML4, PDPT, PD
/// let w = |m: &mut SparseMemory<physvec::Phys>, a: u64, v: u64| m.write(physvec::PhysAddr::new(a), &v.to_le_bytes()).unwrap();
/// w(&mut m, 0x10000, 0x11001);                 // bus 0 -> context table 0x11000
/// w(&mut m, 0x11000 + 8 * 16 + 8, 0x0102);      // devfn 8: AW=2 (4 levels), DID 1
/// w(&mut m, 0x11000 + 8 * 16, 0x12001);         //          SLPTPTR 0x12000, P
/// w(&mut m, 0x12000, 0x13003);                  // PML4[0] -> PDPT
/// w(&mut m, 0x13000, 0x14003);                  // PDPT[0] -> PD
/// w(&mut m, 0x14000 + 8, 0x4000_0081);          // PD[1]: 2 MiB leaf, read-only
/// let caps = VtdCaps::qemu(48);
/// let t = vtd::translate(&m, 0x10000, caps, 0x0008, 0x20_1234, Access::Read)?;
/// assert_eq!((t.phys, t.page_size, t.domain_id), (0x4000_1234, 2 << 20, 1));
/// let e = vtd::translate(&m, 0x10000, caps, 0x0008, 0x20_1234, Access::Write).unwrap_err();
/// assert!(matches!(e, WalkError::Fault(f) if f.reason == FaultReason::WriteNotPermitted));
/// # Ok::<(), WalkError>(())
/// ```
pub fn translate<R: MemoryReader<Phys> + ?Sized>(
    mem: &R,
    root_table: u64,
    caps: VtdCaps,
    source_id: u16,
    iova: u64,
    access: Access,
) -> Result<Translation, WalkError> {
    translate_traced(mem, root_table, caps, source_id, iova, access, &mut |_| {})
}

/// [`translate`], calling `trace` with every entry read, in walk order.
///
/// # Errors
/// As [`translate`].
///
/// ```
/// use physvec::map::vtd::{self, Access, VtdCaps, WalkStep};
/// use physvec::mem::SparseMemory;
/// let mut m = SparseMemory::default();
/// m.add_zeroed(physvec::PhysAddr::new(0x10000), 0x1000); // an empty root table
/// let mut steps = Vec::new();
/// let e = vtd::translate_traced(&m, 0x10000, VtdCaps::qemu(48), 0x0100, 0x1000,
///     Access::Read, &mut |s| steps.push(s)).unwrap_err();
/// assert_eq!(e.kind(), "root_not_present");
/// assert_eq!(steps, [WalkStep::Root { addr: 0x10010, raw: [0, 0] }]); // bus 1
/// ```
pub fn translate_traced<R: MemoryReader<Phys> + ?Sized>(
    mem: &R,
    root_table: u64,
    caps: VtdCaps,
    source_id: u16,
    iova: u64,
    access: Access,
    trace: &mut dyn FnMut(WalkStep),
) -> Result<Translation, WalkError> {
    if (INTERRUPT_FIRST..=INTERRUPT_LAST).contains(&iova) {
        return Err(WalkError::InterruptWindow);
    }
    let bus = u64::from(source_id >> 8);
    let devfn = u64::from(source_id & 0xff);
    let haw = caps.haw;
    // Root entry (the root table pointer is 4 KiB-aligned: RTADDR bits 63:12).
    let re_addr = (root_table & !0xfff) | (bus << 4);
    let re = read_pair(mem, re_addr)?;
    trace(WalkStep::Root {
        addr: re_addr,
        raw: re,
    });
    let [re_lo, re_hi] = re;
    if re_lo & ENTRY_P == 0 {
        return Err(fault(FaultReason::RootNotPresent, false, 0));
    }
    if re_hi != 0 || re_lo & root_lo_reserved(haw) != 0 {
        return Err(fault(FaultReason::RootEntryReserved, false, 0));
    }
    // Context entry.
    let ce_addr = (re_lo & !0xfff) | (devfn << 4);
    let ce = read_pair(mem, ce_addr)?;
    trace(WalkStep::Context {
        addr: ce_addr,
        raw: ce,
    });
    let [ce_lo, ce_hi] = ce;
    let fpd = ce_lo & CTX_FPD != 0;
    if ce_lo & ENTRY_P == 0 {
        return Err(fault(FaultReason::ContextNotPresent, fpd, 0));
    }
    if ce_hi & CTX_HI_RSVD != 0 || ce_lo & ctx_lo_reserved(haw) != 0 {
        return Err(fault(FaultReason::ContextEntryReserved, fpd, 0));
    }
    let aw = (ce_hi & 7) as u32; // 3 bits: the cast is exact
    let levels = aw.wrapping_add(2);
    let sagaw_bit = 1u32.checked_shl(aw).unwrap_or(0);
    if u32::from(caps.sagaw) & sagaw_bit == 0 {
        return Err(fault(FaultReason::ContextInvalid, fpd, 0));
    }
    let domain_id = ((ce_hi >> 8) & 0xffff) as u16; // 16 bits: the cast is exact
    match (ce_lo >> 2) & 3 {
        0 => {}
        1 if caps.device_tlb => {}
        2 if caps.pass_through => {
            return Ok(Translation {
                phys: iova,
                page_size: 0x1000,
                domain_id,
                perm: IoPerm::READ | IoPerm::WRITE,
                pass_through: true,
            });
        }
        _ => return Err(fault(FaultReason::ContextInvalid, fpd, 0)),
    }
    // IOVA range: below 2^min(AGAW, haw). AGAW = 30 + 9 * AW (AW <= 7 checked above via
    // SAGAW, which only has bits 0..=4).
    let agaw = aw.saturating_mul(9).saturating_add(30);
    if iova & !haw_mask(agaw.min(haw)) != 0 {
        return Err(fault(FaultReason::AddressBeyondAgaw, fpd, 0));
    }
    let need = match access {
        Access::Read => SL_R,
        Access::Write => SL_W,
    };
    let mut table = ce_lo & !0xfff;
    let mut level = levels;
    let mut reads = true;
    let mut writes = true;
    while level >= 1 {
        let shift = 12u32.saturating_add(level.saturating_sub(1).saturating_mul(9));
        let idx = iova.checked_shr(shift).unwrap_or(0) & 0x1ff;
        let addr = table | (idx << 3);
        let raw = mem
            .read_u64_le(PhysAddr::new(addr))
            .map_err(WalkError::Memory)?;
        trace(WalkStep::Sl { level, addr, raw });
        if raw == u64::MAX {
            // QEMU cannot tell an all-ones entry from a failed read.
            let reason = if level == levels {
                FaultReason::ContextInvalid
            } else {
                FaultReason::PagingEntryInvalid
            };
            return Err(fault(reason, fpd, level));
        }
        reads &= raw & SL_R != 0;
        writes &= raw & SL_W != 0;
        if raw & need == 0 {
            let reason = match access {
                Access::Read => FaultReason::ReadNotPermitted,
                Access::Write => FaultReason::WriteNotPermitted,
            };
            return Err(fault(reason, fpd, level));
        }
        let large = (level == 2 || level == 3) && raw & SL_PS != 0;
        if raw & sl_reserved(level, large, haw) != 0 {
            return Err(fault(FaultReason::PagingEntryReserved, fpd, level));
        }
        if level == 1 || raw & SL_PS != 0 {
            let size = 1u64.checked_shl(shift).unwrap_or(0);
            let base = sl_addr(raw, haw) & !size.wrapping_sub(1);
            if overlaps_interrupt_window(base, size) {
                return Err(fault(FaultReason::InterruptAddress, fpd, level));
            }
            let perm = sl_perm((if reads { SL_R } else { 0 }) | (if writes { SL_W } else { 0 }));
            return Ok(Translation {
                phys: base | (iova & size.wrapping_sub(1)),
                page_size: size,
                domain_id,
                perm,
                pass_through: false,
            });
        }
        table = sl_addr(raw, haw);
        level = level.wrapping_sub(1);
    }
    // Unreachable in practice (level 1 always returns); kept as a typed fault.
    Err(fault(FaultReason::PagingEntryInvalid, fpd, 1))
}
