//! VT-d invalidations and their two encodings: register-based (CCMD, IVA + IOTLB_REG)
//! and queued invalidation descriptors (context-cache, IOTLB, wait).
#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

/// Register offsets (from the remapping unit's base, 0xFED90000 on QEMU's q35) and bits.
pub mod reg {
    /// Version.
    pub const VER: u32 = 0x00;
    /// Capabilities (64-bit).
    pub const CAP: u32 = 0x08;
    /// Extended capabilities (64-bit).
    pub const ECAP: u32 = 0x10;
    /// Global command (32-bit, write-only; echo GSTS & [`GCMD_ECHO_MASK`]).
    pub const GCMD: u32 = 0x18;
    /// Global status (32-bit).
    pub const GSTS: u32 = 0x1c;
    /// Root table address (64-bit).
    pub const RTADDR: u32 = 0x20;
    /// Fault status (32-bit).
    pub const FSTS: u32 = 0x34;
    /// Fault event control (32-bit).
    pub const FECTL: u32 = 0x38;
    /// Invalidation queue head (64-bit).
    pub const IQH: u32 = 0x80;
    /// Invalidation queue tail (64-bit).
    pub const IQT: u32 = 0x88;
    /// Invalidation queue address (64-bit).
    pub const IQA: u32 = 0x90;
    /// Invalidation completion status (32-bit).
    pub const ICS: u32 = 0x9c;
    /// GCMD/GSTS: translation enable.
    pub const GCMD_TE: u32 = 1 << 31;
    /// GCMD/GSTS: set root table pointer.
    pub const GCMD_SRTP: u32 = 1 << 30;
    /// GCMD/GSTS: queued invalidation enable.
    pub const GCMD_QIE: u32 = 1 << 26;
    /// GSTS bits that are persistent (one-shot commands dropped) for the GCMD echo rule.
    pub const GCMD_ECHO_MASK: u32 = 0x96ff_ffff;
    /// Context Command register.
    pub const CCMD: u32 = 0x28;
    /// CCMD: Invalidate Context-Cache (set to start, reads 0 when done).
    pub const CCMD_ICC: u64 = 1 << 63;
    /// IOTLB_REG (at IRO + 8): Invalidate IOTLB (set to start, reads 0 when done).
    pub const IOTLB_IVT: u64 = 1 << 63;
    /// IOTLB_REG: drain reads.
    pub const IOTLB_DR: u64 = 1 << 49;
    /// IOTLB_REG: drain writes.
    pub const IOTLB_DW: u64 = 1 << 48;
}

/// One invalidation the IOMMU driver must issue after changing tables.
///
/// ```
/// use physvec::map::vtd::Invalidation;
/// // Two pages in one aligned pair: AM = 1.
/// let i = Invalidation::page(3, 0x4000_2000, 0x2000, 18);
/// assert_eq!(i, Invalidation::IotlbPage { did: 3, addr: 0x4000_2000, am: 1 });
/// // Two pages straddling a pair boundary: the covering block is 8 pages.
/// let i = Invalidation::page(3, 0x4000_3000, 0x2000, 18);
/// assert_eq!(i, Invalidation::IotlbPage { did: 3, addr: 0x4000_0000, am: 3 });
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Invalidation {
    /// Context cache, all entries.
    ContextGlobal,
    /// Context cache, one domain.
    ContextDomain {
        /// Domain id.
        did: u16,
    },
    /// Context cache, one device (`sid`), low devfn bits masked by `fm`.
    ContextDevice {
        /// Domain id.
        did: u16,
        /// Source id.
        sid: u16,
        /// Function mask (0..=3).
        fm: u8,
    },
    /// IOTLB, all entries.
    IotlbGlobal,
    /// IOTLB, one domain (DSI).
    IotlbDomain {
        /// Domain id.
        did: u16,
    },
    /// IOTLB, `2^am` pages from `addr` (aligned to that size) in one domain (PSI).
    IotlbPage {
        /// Domain id.
        did: u16,
        /// First page (aligned to `2^am` pages).
        addr: u64,
        /// Address mask: the range is `2^am` 4 KiB pages.
        am: u8,
    },
}

/// One register write of the register-based mechanism: write `value` to the register at
/// `offset` (64-bit), then, when `poll` is set, read it back until those bits are clear.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegisterWrite {
    /// Register offset from the remapping unit's base.
    pub offset: u32,
    /// Value to write.
    pub value: u64,
    /// Bits to poll until clear after the write (0: no poll).
    pub poll: u64,
}

impl Invalidation {
    /// The smallest page-selective invalidation covering `[iova, iova + len)` in domain
    /// `did`, or a domain-selective one when that needs an address mask above `max_am`
    /// (CAP.MAMV; QEMU reports 18).
    pub fn page(did: u16, iova: u64, len: u64, max_am: u8) -> Self {
        let first = iova >> 12;
        let last = iova.saturating_add(len.saturating_sub(1)) >> 12;
        let mut am = 0u32;
        while am < 52 && first.checked_shr(am) != last.checked_shr(am) {
            am = am.saturating_add(1);
        }
        if am > u32::from(max_am) {
            return Invalidation::IotlbDomain { did };
        }
        let page = first
            .checked_shr(am)
            .unwrap_or(0)
            .checked_shl(am)
            .unwrap_or(0);
        Invalidation::IotlbPage {
            did,
            addr: page.checked_shl(12).unwrap_or(0),
            am: am as u8, // am <= max_am <= 255
        }
    }

    /// Whether this is a context-cache invalidation.
    pub const fn is_context(&self) -> bool {
        matches!(
            self,
            Invalidation::ContextGlobal
                | Invalidation::ContextDomain { .. }
                | Invalidation::ContextDevice { .. }
        )
    }

    /// The register-based encoding: the writes to issue in order (while QIE = 0). `iro`
    /// is ECAP.IRO in bytes (IVA at `iro`, IOTLB_REG at `iro + 8`; QEMU: 0xF0).
    ///
    /// ```
    /// use physvec::map::vtd::{reg, Invalidation};
    /// let w = Invalidation::IotlbPage { did: 1, addr: 0x7000, am: 0 }.register_writes(0xf0);
    /// assert_eq!((w[0].offset, w[0].value), (0xf0, 0x7000));
    /// assert_eq!(w[1].offset, 0xf8);
    /// assert_eq!(w[1].value, reg::IOTLB_IVT | (3 << 60) | reg::IOTLB_DR | reg::IOTLB_DW | (1 << 32));
    /// ```
    pub fn register_writes(&self, iro: u32) -> arrayvec::ArrayVec<RegisterWrite, 2> {
        let mut out = arrayvec::ArrayVec::new();
        let iotlb_reg = iro.saturating_add(8);
        let ccmd = |cirg: u64, did: u16, sid: u16, fm: u8| RegisterWrite {
            offset: reg::CCMD,
            value: reg::CCMD_ICC
                | (cirg << 61)
                | (u64::from(fm & 3) << 32)
                | (u64::from(sid) << 16)
                | u64::from(did),
            poll: reg::CCMD_ICC,
        };
        let iotlb = |iirg: u64, did: u16| RegisterWrite {
            offset: iotlb_reg,
            value: reg::IOTLB_IVT
                | (iirg << 60)
                | reg::IOTLB_DR
                | reg::IOTLB_DW
                | (u64::from(did) << 32),
            poll: reg::IOTLB_IVT,
        };
        match *self {
            Invalidation::ContextGlobal => out.push(ccmd(1, 0, 0, 0)),
            Invalidation::ContextDomain { did } => out.push(ccmd(2, did, 0, 0)),
            Invalidation::ContextDevice { did, sid, fm } => out.push(ccmd(3, did, sid, fm)),
            Invalidation::IotlbGlobal => out.push(iotlb(1, 0)),
            Invalidation::IotlbDomain { did } => out.push(iotlb(2, did)),
            Invalidation::IotlbPage { did, addr, am } => {
                out.push(RegisterWrite {
                    offset: iro,
                    value: (addr & !0xfff) | u64::from(am & 0x3f),
                    poll: 0,
                });
                out.push(iotlb(3, did));
            }
        }
        out
    }

    /// The queued-invalidation descriptor (128 bits as `[lo, hi]`): type 1
    /// (context-cache) or type 2 (IOTLB, with drain reads and writes).
    ///
    /// ```
    /// use physvec::map::vtd::Invalidation;
    /// assert_eq!(Invalidation::ContextGlobal.descriptor(), [0x11, 0]);
    /// assert_eq!(Invalidation::IotlbDomain { did: 5 }.descriptor(), [0x0005_00e2, 0]);
    /// assert_eq!(Invalidation::IotlbPage { did: 5, addr: 0x8000, am: 1 }.descriptor(),
    ///     [0x0005_00f2, 0x8001]);
    /// ```
    pub fn descriptor(&self) -> [u64; 2] {
        let cc = |g: u64, did: u16, sid: u16, fm: u8| {
            [
                1 | (g << 4)
                    | (u64::from(did) << 16)
                    | (u64::from(sid) << 32)
                    | (u64::from(fm & 3) << 48),
                0,
            ]
        };
        let iotlb = |g: u64, did: u16, hi: u64| {
            [
                2 | (g << 4) | (1 << 6) | (1 << 7) | (u64::from(did) << 16),
                hi,
            ]
        };
        match *self {
            Invalidation::ContextGlobal => cc(1, 0, 0, 0),
            Invalidation::ContextDomain { did } => cc(2, did, 0, 0),
            Invalidation::ContextDevice { did, sid, fm } => cc(3, did, sid, fm),
            Invalidation::IotlbGlobal => iotlb(1, 0, 0),
            Invalidation::IotlbDomain { did } => iotlb(2, did, 0),
            Invalidation::IotlbPage { did, addr, am } => {
                iotlb(3, did, (addr & !0xfff) | u64::from(am & 0x3f))
            }
        }
    }
}

/// A queued-invalidation wait descriptor (type 5) with SW = 1: the IOMMU writes `data`
/// to the 4-byte-aligned `status_addr` once every earlier descriptor is done.
///
/// ```
/// assert_eq!(physvec::map::vtd::wait_descriptor(0x9000, 1), [(1 << 32) | 0x25, 0x9000]);
/// ```
pub const fn wait_descriptor(status_addr: u64, data: u32) -> [u64; 2] {
    [((data as u64) << 32) | (1 << 5) | 5, status_addr & !3]
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
    fn page_selective_covers_the_range() {
        // A range crossing a 2-page boundary needs a larger aligned block.
        assert_eq!(
            Invalidation::page(1, 0x1000, 0x2000, 18),
            Invalidation::IotlbPage {
                did: 1,
                addr: 0,
                am: 2
            }
        );
        assert_eq!(
            Invalidation::page(1, 0x20_0000, 0x20_0000, 18),
            Invalidation::IotlbPage {
                did: 1,
                addr: 0x20_0000,
                am: 9
            }
        );
        assert_eq!(
            Invalidation::page(1, 0, 1 << 40, 18),
            Invalidation::IotlbDomain { did: 1 }
        );
        let w = Invalidation::ContextDevice {
            did: 2,
            sid: 8,
            fm: 0,
        }
        .register_writes(0xf0);
        assert_eq!(w[0].value, (1 << 63) | (3 << 61) | (8 << 16) | 2);
    }
}
