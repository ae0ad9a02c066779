//! Driving QEMU 7.2's `intel-iommu` (VT-d) over qtest: probe CAP/ECAP, set the root
//! table, enable translation, issue invalidations (register-based or queued), read and
//! clear the fault record. Register layout and the enable sequence follow
//! `shared/reference/vtd.md` §2, §4 and §5. Test support, not library API.

use std::time::{Duration, Instant};

use physvec::map::vtd::{reg, wait_descriptor, FaultRecord, Invalidation};

use super::qtest::Qtest;

/// MMIO base of the remapping unit on q35.
pub const VTD_BASE: u64 = 0xFED9_0000;

/// QEMU arguments for an `intel-iommu` with this address width.
pub fn iommu_args(aw_bits: u32) -> Vec<String> {
    vec![
        "-device".to_owned(),
        format!("intel-iommu,aw-bits={aw_bits}"),
    ]
}

/// How invalidations reach the IOMMU.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// CCMD / IVA + IOTLB_REG writes.
    Register,
    /// Descriptors in a 256-entry queue at `base`, a wait descriptor writing `status`.
    Queued {
        /// Queue base (4 KiB page).
        base: u64,
        /// Status dword address.
        status: u64,
        /// Next free slot.
        tail: u64,
        /// Last wait sequence number.
        seq: u32,
    },
}

/// The remapping unit as the harness sees it.
pub struct Vtd {
    /// CAP register.
    pub cap: u64,
    /// ECAP register.
    pub ecap: u64,
    /// IOTLB register offset (ECAP.IRO * 16).
    pub iro: u32,
    /// Fault recording register offset (CAP.FRO * 16).
    pub fro: u64,
    /// Invalidation mechanism in use.
    pub mode: Mode,
    /// Invalidations issued.
    pub issued: u64,
}

fn poll(qt: &mut Qtest, what: &str, mut done: impl FnMut(&mut Qtest) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done(qt) {
        assert!(
            Instant::now() < deadline,
            "VT-d: timed out waiting for {what}"
        );
        std::thread::yield_now();
    }
}

impl Vtd {
    /// Reads CAP and ECAP.
    pub fn probe(qt: &mut Qtest) -> Vtd {
        let cap = qt.readq(VTD_BASE + u64::from(reg::CAP));
        let ecap = qt.readq(VTD_BASE + u64::from(reg::ECAP));
        Vtd {
            cap,
            ecap,
            iro: (((ecap >> 8) & 0x3ff) * 16) as u32,
            fro: ((cap >> 24) & 0x3ff) * 16,
            mode: Mode::Register,
            issued: 0,
        }
    }

    /// CAP.SAGAW.
    pub fn sagaw(&self) -> u8 {
        ((self.cap >> 8) & 0x1f) as u8
    }

    /// CAP.MGAW + 1.
    pub fn mgaw(&self) -> u32 {
        (((self.cap >> 16) & 0x3f) + 1) as u32
    }

    fn gcmd(&self, qt: &mut Qtest, bit: u32, on: bool) {
        let gsts = qt.readl(VTD_BASE + u64::from(reg::GSTS));
        let v = if on {
            (gsts & reg::GCMD_ECHO_MASK) | bit
        } else {
            gsts & reg::GCMD_ECHO_MASK & !bit
        };
        qt.writel(VTD_BASE + u64::from(reg::GCMD), v);
    }

    /// RTADDR <- `root` (legacy mode), SRTP, wait for RTPS.
    pub fn set_root(&self, qt: &mut Qtest, root: u64) {
        qt.writeq(VTD_BASE + u64::from(reg::RTADDR), root);
        self.gcmd(qt, reg::GCMD_SRTP, true);
        poll(qt, "GSTS.RTPS", |qt| {
            qt.readl(VTD_BASE + u64::from(reg::GSTS)) & reg::GCMD_SRTP != 0
        });
    }

    /// TE on, wait for TES.
    pub fn enable_translation(&self, qt: &mut Qtest) {
        self.gcmd(qt, reg::GCMD_TE, true);
        poll(qt, "GSTS.TES", |qt| {
            qt.readl(VTD_BASE + u64::from(reg::GSTS)) & reg::GCMD_TE != 0
        });
    }

    /// Switches to queued invalidation with the queue page at `base` and the wait status
    /// dword at `status`.
    pub fn enable_qi(&mut self, qt: &mut Qtest, base: u64, status: u64) {
        qt.writeq(VTD_BASE + u64::from(reg::IQT), 0);
        qt.writeq(VTD_BASE + u64::from(reg::IQA), base); // QS = 0: 256 entries, DW = 0
        self.gcmd(qt, reg::GCMD_QIE, true);
        poll(qt, "GSTS.QIES", |qt| {
            qt.readl(VTD_BASE + u64::from(reg::GSTS)) & reg::GCMD_QIE != 0
        });
        self.mode = Mode::Queued {
            base,
            status,
            tail: 0,
            seq: 0,
        };
    }

    /// Issues `invs` in order with the current mechanism and waits for completion.
    pub fn issue(&mut self, qt: &mut Qtest, invs: &[Invalidation]) {
        if invs.is_empty() {
            return;
        }
        self.issued += invs.len() as u64;
        match &mut self.mode {
            Mode::Register => {
                for inv in invs {
                    for w in inv.register_writes(self.iro) {
                        let addr = VTD_BASE + u64::from(w.offset);
                        qt.writeq(addr, w.value);
                        if w.poll != 0 {
                            poll(qt, "invalidation completion", |qt| {
                                qt.readq(addr) & w.poll == 0
                            });
                        }
                    }
                }
            }
            Mode::Queued {
                base,
                status,
                tail,
                seq,
            } => {
                *seq = seq.wrapping_add(1);
                let mut put = |d: [u64; 2], tail: &mut u64| {
                    let mut b = [0u8; 16];
                    b[..8].copy_from_slice(&d[0].to_le_bytes());
                    b[8..].copy_from_slice(&d[1].to_le_bytes());
                    qt.write(*base + *tail * 16, &b);
                    *tail = (*tail + 1) % 256;
                };
                for inv in invs {
                    put(inv.descriptor(), tail);
                }
                put(wait_descriptor(*status, *seq), tail);
                let (status, seq, t) = (*status, *seq, *tail);
                qt.writeq(VTD_BASE + u64::from(reg::IQT), t << 4);
                poll(qt, "wait descriptor status", |qt| qt.readl(status) == seq);
                let fsts = qt.readl(VTD_BASE + u64::from(reg::FSTS));
                assert_eq!(fsts & 0x10, 0, "invalidation queue error (FSTS={fsts:#x})");
            }
        }
    }

    /// FSTS.
    pub fn fsts(&self, qt: &mut Qtest) -> u32 {
        qt.readl(VTD_BASE + u64::from(reg::FSTS))
    }

    /// The fault record 0 (NFR = 1 on QEMU), if its F bit is set.
    pub fn fault(&self, qt: &mut Qtest) -> Option<FaultRecord> {
        let lo = qt.readq(VTD_BASE + self.fro);
        let hi = qt.readq(VTD_BASE + self.fro + 8);
        FaultRecord::decode(lo, hi)
    }

    /// Clears the fault record (F is RW1C) and FSTS.PFO/IQE.
    pub fn clear_fault(&self, qt: &mut Qtest) {
        qt.writel(VTD_BASE + self.fro + 12, 0x8000_0000);
        qt.writel(VTD_BASE + u64::from(reg::FSTS), 0x7f);
    }

    /// The fault recorded since the last clear (then cleared), checking FSTS agrees.
    pub fn take_fault(&self, qt: &mut Qtest) -> Option<FaultRecord> {
        let f = self.fault(qt);
        let fsts = self.fsts(qt);
        assert_eq!(fsts & 1, 0, "fault overflow (FSTS={fsts:#x})");
        if f.is_some() {
            assert_ne!(fsts & 2, 0, "fault record F set but FSTS.PPF clear");
            self.clear_fault(qt);
        }
        f
    }
}

/// Bus-0 devfn of the first NVMe controller (class 01h/08h/02h): its source id.
pub fn nvme_source_id(qt: &mut Qtest) -> u16 {
    for dev in 0..32u32 {
        let devfn = dev << 3;
        qt.outl(0xcf8, 0x8000_0000 | (devfn << 8));
        let id = qt.inl(0xcfc);
        if id & 0xffff == 0xffff {
            continue;
        }
        qt.outl(0xcf8, 0x8000_0000 | (devfn << 8) | 8);
        if qt.inl(0xcfc) >> 8 == 0x01_0802 {
            return devfn as u16;
        }
    }
    panic!("no NVMe controller on bus 0");
}
