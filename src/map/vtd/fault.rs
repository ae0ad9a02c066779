//! VT-d fault reasons and the fault registers: FSTS and the fault recording registers
//! (FRCD), decoded into typed values.
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

/// Kind of a DMA request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// The device reads memory (fault record T = 1).
    Read,
    /// The device writes memory (T = 0).
    Write,
}

impl Access {
    /// `"read"` or `"write"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
        }
    }
}

/// A DMA-remapping fault reason (VT-d specification, Appendix A: "Non-Recoverable Fault
/// Reason Encodings"), with the legacy-mode reasons QEMU 7.2 records.
///
/// ```
/// use physvec::map::vtd::FaultReason;
/// assert_eq!(FaultReason::from_code(5), FaultReason::WriteNotPermitted);
/// assert_eq!(FaultReason::WriteNotPermitted.code(), 5);
/// assert_eq!(FaultReason::from_code(0x42), FaultReason::Other(0x42));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultReason {
    /// 1: the Present field of the root entry is 0.
    RootNotPresent,
    /// 2: the Present field of the context entry is 0.
    ContextNotPresent,
    /// 3: invalid context-entry programming (AW not in SAGAW, unsupported translation
    /// type, or an unreadable top-level table).
    ContextInvalid,
    /// 4: the input address is above `2^X - 1`, X = min(MGAW, the context's AGAW).
    AddressBeyondAgaw,
    /// 5: a write where some paging entry lacks W (including a not-present entry).
    WriteNotPermitted,
    /// 6: a read where some paging entry lacks R (including a not-present entry).
    ReadNotPermitted,
    /// 7: a paging-structure entry could not be read (or read as all ones).
    PagingEntryInvalid,
    /// 8: the root-table address could not be read.
    RootTableInvalid,
    /// 9: the context-table pointer could not be read.
    ContextTableInvalid,
    /// 0xA: non-zero reserved field in a root entry.
    RootEntryReserved,
    /// 0xB: non-zero reserved field in a context entry.
    ContextEntryReserved,
    /// 0xC: non-zero reserved field in a second-level paging entry (also a misaligned
    /// superpage, SNP without snoop control, PS in a PML4E).
    PagingEntryReserved,
    /// 0xD: the context entry's translation type blocks the request.
    ContextEntryTt,
    /// 0xE: the translated address is in the interrupt address range.
    InterruptAddress,
    /// Any other code.
    Other(u8),
}

impl FaultReason {
    /// The reason from its 8-bit code.
    pub const fn from_code(code: u8) -> Self {
        match code {
            1 => FaultReason::RootNotPresent,
            2 => FaultReason::ContextNotPresent,
            3 => FaultReason::ContextInvalid,
            4 => FaultReason::AddressBeyondAgaw,
            5 => FaultReason::WriteNotPermitted,
            6 => FaultReason::ReadNotPermitted,
            7 => FaultReason::PagingEntryInvalid,
            8 => FaultReason::RootTableInvalid,
            9 => FaultReason::ContextTableInvalid,
            0xA => FaultReason::RootEntryReserved,
            0xB => FaultReason::ContextEntryReserved,
            0xC => FaultReason::PagingEntryReserved,
            0xD => FaultReason::ContextEntryTt,
            0xE => FaultReason::InterruptAddress,
            c => FaultReason::Other(c),
        }
    }

    /// The 8-bit code.
    pub const fn code(self) -> u8 {
        match self {
            FaultReason::RootNotPresent => 1,
            FaultReason::ContextNotPresent => 2,
            FaultReason::ContextInvalid => 3,
            FaultReason::AddressBeyondAgaw => 4,
            FaultReason::WriteNotPermitted => 5,
            FaultReason::ReadNotPermitted => 6,
            FaultReason::PagingEntryInvalid => 7,
            FaultReason::RootTableInvalid => 8,
            FaultReason::ContextTableInvalid => 9,
            FaultReason::RootEntryReserved => 0xA,
            FaultReason::ContextEntryReserved => 0xB,
            FaultReason::PagingEntryReserved => 0xC,
            FaultReason::ContextEntryTt => 0xD,
            FaultReason::InterruptAddress => 0xE,
            FaultReason::Other(c) => c,
        }
    }

    /// Stable snake_case name (`write_not_permitted`, ...; `vtd_fault` for others).
    pub const fn kind(self) -> &'static str {
        match self {
            FaultReason::RootNotPresent => "root_not_present",
            FaultReason::ContextNotPresent => "context_not_present",
            FaultReason::ContextInvalid => "context_invalid",
            FaultReason::AddressBeyondAgaw => "address_beyond_agaw",
            FaultReason::WriteNotPermitted => "write_not_permitted",
            FaultReason::ReadNotPermitted => "read_not_permitted",
            FaultReason::PagingEntryInvalid => "paging_entry_invalid",
            FaultReason::RootTableInvalid => "root_table_invalid",
            FaultReason::ContextTableInvalid => "context_table_invalid",
            FaultReason::RootEntryReserved => "root_entry_reserved",
            FaultReason::ContextEntryReserved => "context_entry_reserved",
            FaultReason::PagingEntryReserved => "paging_entry_reserved",
            FaultReason::ContextEntryTt => "context_entry_tt",
            FaultReason::InterruptAddress => "interrupt_address",
            FaultReason::Other(_) => "vtd_fault",
        }
    }

    /// Whether the context entry's FPD bit suppresses recording of this fault (a
    /// "qualified" fault, as QEMU 7.2 classifies them).
    pub const fn is_qualified(self) -> bool {
        matches!(
            self,
            FaultReason::ContextNotPresent
                | FaultReason::ContextInvalid
                | FaultReason::AddressBeyondAgaw
                | FaultReason::WriteNotPermitted
                | FaultReason::ReadNotPermitted
                | FaultReason::PagingEntryInvalid
                | FaultReason::PagingEntryReserved
                | FaultReason::ContextEntryTt
                | FaultReason::InterruptAddress
        )
    }
}

impl fmt::Display for FaultReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            FaultReason::RootNotPresent => "root entry not present",
            FaultReason::ContextNotPresent => "context entry not present",
            FaultReason::ContextInvalid => "invalid context entry (address width or type)",
            FaultReason::AddressBeyondAgaw => "address beyond the adjusted guest address width",
            FaultReason::WriteNotPermitted => "write not permitted (W clear or entry not present)",
            FaultReason::ReadNotPermitted => "read not permitted (R clear or entry not present)",
            FaultReason::PagingEntryInvalid => "paging entry could not be read",
            FaultReason::RootTableInvalid => "root table could not be read",
            FaultReason::ContextTableInvalid => "context table could not be read",
            FaultReason::RootEntryReserved => "reserved bit set in the root entry",
            FaultReason::ContextEntryReserved => "reserved bit set in the context entry",
            FaultReason::PagingEntryReserved => "reserved bit set in a second-level entry",
            FaultReason::ContextEntryTt => "translation type blocks the request",
            FaultReason::InterruptAddress => "translated address in the interrupt range",
            FaultReason::Other(_) => "other fault",
        };
        f.write_str(s)
    }
}

/// The Fault Status register (FSTS, offset 0x34).
///
/// ```
/// use physvec::map::vtd::Fsts;
/// let f = Fsts::decode(0x0000_0002);
/// assert!(f.primary_pending && !f.overflow && !f.queue_error);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fsts {
    /// PFO: a fault was lost because the records were full.
    pub overflow: bool,
    /// PPF: some fault record has F set.
    pub primary_pending: bool,
    /// IQE: invalidation queue error.
    pub queue_error: bool,
    /// FRI: index of the first pending fault record.
    pub fault_record_index: u8,
}

impl Fsts {
    /// Decodes the register value.
    pub const fn decode(v: u32) -> Self {
        Fsts {
            overflow: v & 1 != 0,
            primary_pending: v & 2 != 0,
            queue_error: v & (1 << 4) != 0,
            fault_record_index: ((v >> 8) & 0xff) as u8,
        }
    }
}

/// One fault recording register (128 bits at CAP.FRO + 16 * i), decoded.
///
/// ```
/// use physvec::map::vtd::{Access, FaultReason, FaultRecord};
/// // F = 1, T = 1 (read), reason 6, SID 0x0008, page 0x6543_2100_0000.
/// let lo = 0x6543_2100_0000u64;
/// let hi = (1u64 << 63) | (1 << 62) | (6 << 32) | 0x0008;
/// let r = FaultRecord::decode(lo, hi).unwrap();
/// assert_eq!((r.reason, r.source_id, r.addr, r.access),
///     (FaultReason::ReadNotPermitted, 8, 0x6543_2100_0000, Access::Read));
/// assert_eq!(FaultRecord::decode(lo, 0), None); // F clear: no fault
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultRecord {
    /// FR: the fault reason.
    pub reason: FaultReason,
    /// SID: the requester id.
    pub source_id: u16,
    /// FI: the faulting page (bits 63:12 of the request address).
    pub addr: u64,
    /// T: read (1) or write (0) request.
    pub access: Access,
}

impl FaultRecord {
    /// Decodes the low and high quadwords; `None` when the F (fault) bit is clear.
    pub const fn decode(lo: u64, hi: u64) -> Option<Self> {
        if hi >> 63 == 0 {
            return None;
        }
        Some(FaultRecord {
            reason: FaultReason::from_code(((hi >> 32) & 0xff) as u8),
            source_id: (hi & 0xffff) as u16,
            addr: lo & !0xfff,
            access: if (hi >> 62) & 1 != 0 {
                Access::Read
            } else {
                Access::Write
            },
        })
    }
}

impl fmt::Display for FaultRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} fault {:#x} ({}) from {:02x}:{:02x}.{} at page {:#x}",
            self.access.as_str(),
            self.reason.code(),
            self.reason,
            self.source_id >> 8,
            (self.source_id >> 3) & 0x1f,
            self.source_id & 7,
            self.addr
        )
    }
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
    fn codes_round_trip() {
        for c in 0..=255u8 {
            assert_eq!(FaultReason::from_code(c).code(), c);
        }
        assert!(!FaultReason::RootNotPresent.is_qualified());
        assert!(FaultReason::ContextNotPresent.is_qualified());
    }
}
