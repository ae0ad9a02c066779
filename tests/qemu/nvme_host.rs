//! A minimal NVMe host driver over qtest: finds the controller on PCI, assigns BAR0, enables
//! it with a chosen memory page size (CC.MPS), identifies controller and namespace 1,
//! creates one I/O submission/completion queue pair, and submits one command at a time,
//! polling the completion queue (no interrupts, no guest OS).
//!
//! Test support, not library API. Register offsets and queue setup follow the NVMe Base
//! Specification §3.1 and the recipe in `nvme-prp-sgl.md` §6.

use std::path::Path;
use std::time::{Duration, Instant};

use physvec::nvme::{DataPointer, Doorbells, Psdt, QueuePair, SubmissionQueueEntry};

use super::qtest::Qtest;

/// Guest-physical address BAR0 is assigned to (inside q35's 32-bit PCI hole).
pub const BAR0: u64 = 0xc000_0000;

// Controller registers (offsets into BAR0).
const REG_CAP: u64 = 0x00;
const REG_VS: u64 = 0x08;
const REG_CC: u64 = 0x14;
const REG_CSTS: u64 = 0x1c;
const REG_AQA: u64 = 0x24;
const REG_ASQ: u64 = 0x28;
const REG_ACQ: u64 = 0x30;

/// Queue memory, each 64 KiB aligned so every CC.MPS up to 64 KiB sees page-aligned queues.
const ASQ: u64 = 0x10_0000;
const ACQ: u64 = 0x11_0000;
const IOSQ: u64 = 0x12_0000;
const IOCQ: u64 = 0x13_0000;
/// A 4 KiB buffer for Identify data.
const IDENTIFY_BUF: u64 = 0x14_0000;
/// Entries per queue (admin and I/O).
const QDEPTH: u16 = 16;

/// Admin opcodes.
const OPC_CREATE_IO_SQ: u8 = 0x01;
const OPC_CREATE_IO_CQ: u8 = 0x05;
const OPC_IDENTIFY: u8 = 0x06;
/// NVM command set opcodes.
pub const OPC_WRITE: u8 = 0x01;
/// NVM Read.
pub const OPC_READ: u8 = 0x02;

/// One completion queue entry, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// Command-specific DW0.
    pub dw0: u32,
    /// Status as `SCT << 8 | SC` (the form the crate and the CLI use).
    pub status: u16,
    /// Do Not Retry bit.
    pub dnr: bool,
}

impl Completion {
    /// Whether the command succeeded (SCT 0, SC 0).
    pub fn ok(&self) -> bool {
        self.status == 0
    }
}

impl std::fmt::Display for Completion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SCT {:#x} SC {:#04x}",
            self.status >> 8,
            self.status & 0xff
        )?;
        if self.dnr {
            f.write_str(" DNR")?;
        }
        Ok(())
    }
}

/// A queue pair in guest memory; the ring bookkeeping (tail, head, phase) is the
/// crate's `no_std` [`QueuePair`], the same the VFIO driver example uses.
#[derive(Clone, Copy, Debug)]
struct Queue {
    pair: QueuePair,
    sq: u64,
    cq: u64,
}

impl Queue {
    fn new(qid: u16, sq: u64, cq: u64) -> Queue {
        Queue {
            pair: QueuePair::new(qid, QDEPTH, QDEPTH).expect("QDEPTH >= 2"),
            sq,
            cq,
        }
    }
}

/// A submission queue entry (the crate's type): `opcode`, namespace `nsid`, PRP1 = `prp1`
/// (PSDT 00b, PRP2 0) and CDW10..15.
pub fn sqe(opcode: u8, nsid: u32, prp1: u64, cdw10_15: [u32; 6]) -> SubmissionQueueEntry {
    let mut e = SubmissionQueueEntry::new(opcode);
    e.set_nsid(nsid);
    e.set_data_pointer(DataPointer::Prp {
        prp1: physvec::DmaAddr::new(prp1),
        prp2: physvec::DmaAddr::ZERO,
    });
    for (i, d) in cdw10_15.iter().enumerate() {
        e.set_dword(10 + i, *d);
    }
    e
}

/// DPTR bytes for PRP1/PRP2.
pub fn prp_dptr(prp1: u64, prp2: u64) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[..8].copy_from_slice(&prp1.to_le_bytes());
    d[8..].copy_from_slice(&prp2.to_le_bytes());
    d
}

/// The controller under test.
pub struct NvmeHost {
    /// The qtest connection (tests read and write guest RAM through it).
    pub qt: Qtest,
    db: Doorbells,
    /// CAP register.
    pub cap: u64,
    /// VS register (`0x00010400` = NVMe 1.4).
    pub vs: u32,
    /// Current memory page size (CC.MPS) in bytes.
    pub page_size: u64,
    /// Maximum data transfer size in bytes (Identify MDTS in units of CAP.MPSMIN pages;
    /// `u64::MAX` when MDTS is 0 = unlimited).
    pub mdts_bytes: u64,
    /// Identify Controller SGLS field (bytes 536..540).
    pub sgls: u32,
    /// Model number (Identify Controller bytes 24..64), trimmed.
    pub model: String,
    /// Firmware revision (bytes 64..72), trimmed.
    pub firmware: String,
    /// LBA data size of namespace 1 in bytes.
    pub lba_size: u64,
    /// Namespace 1 size in logical blocks.
    pub nsze: u64,
    admin: Queue,
    io: Queue,
    cid: u16,
    /// Commands submitted (admin + I/O).
    pub commands: u64,
}

impl NvmeHost {
    /// Starts QEMU on a disk image with these contents and enables the controller with
    /// 4 KiB pages.
    pub fn start(qemu: &Path, image: &[u8]) -> NvmeHost {
        Self::start_with(qemu, image, &[])
    }

    /// As [`NvmeHost::start`], with `extra` QEMU arguments (see [`Qtest::spawn_with`]).
    pub fn start_with(qemu: &Path, image: &[u8], extra: &[&str]) -> NvmeHost {
        let mut qt = Qtest::spawn_with(qemu, image, extra);
        let bdf = find_nvme(&mut qt).expect("no NVMe controller (class 010802) on bus 0");
        setup_bar0(&mut qt, bdf);
        let cap = qt.readq(BAR0 + REG_CAP);
        let vs = qt.readl(BAR0 + REG_VS);
        let mut h = NvmeHost {
            qt,
            db: Doorbells::from_cap(cap),
            cap,
            vs,
            page_size: 0,
            mdts_bytes: 0,
            sgls: 0,
            model: String::new(),
            firmware: String::new(),
            lba_size: 0,
            nsze: 0,
            admin: Queue::new(0, ASQ, ACQ),
            io: Queue::new(1, IOSQ, IOCQ),
            cid: 0,
            commands: 0,
        };
        h.enable(4096);
        h
    }

    /// Smallest and largest memory page sizes the controller supports (CAP.MPSMIN/MPSMAX).
    pub fn page_size_range(&self) -> (u64, u64) {
        let min = 1u64 << (12 + ((self.cap >> 48) & 0xf));
        let max = 1u64 << (12 + ((self.cap >> 52) & 0xf));
        (min, max)
    }

    /// (Re)enables the controller with memory page size `page_size` (CC.MPS), then
    /// identifies it and creates the I/O queue pair. A reset drops all queues.
    ///
    /// # Panics
    /// When the controller does not become ready or a setup command fails.
    pub fn enable(&mut self, page_size: u64) {
        assert!(page_size.is_power_of_two() && page_size >= 4096);
        let mps = page_size.trailing_zeros() - 12;
        let cc = self.qt.readl(BAR0 + REG_CC);
        if cc & 1 != 0 {
            self.qt.writel(BAR0 + REG_CC, 0);
            self.wait_ready(false);
        }
        for q in [ASQ, ACQ, IOSQ, IOCQ] {
            self.qt.memset(q, 0x1_0000, 0);
        }
        self.admin = Queue::new(0, ASQ, ACQ);
        self.io = Queue::new(1, IOSQ, IOCQ);
        let depth = u32::from(QDEPTH - 1);
        self.qt.writel(BAR0 + REG_AQA, (depth << 16) | depth);
        self.qt.writeq(BAR0 + REG_ASQ, ASQ);
        self.qt.writeq(BAR0 + REG_ACQ, ACQ);
        // EN, CSS=NVM, MPS, AMS=RR, IOSQES=6 (64 B), IOCQES=4 (16 B).
        self.qt
            .writel(BAR0 + REG_CC, 1 | (mps << 7) | (6 << 16) | (4 << 20));
        self.wait_ready(true);
        self.page_size = page_size;

        // Identify Controller (CNS 1).
        self.qt.memset(IDENTIFY_BUF, 4096, 0);
        let c = self.admin(sqe(OPC_IDENTIFY, 0, IDENTIFY_BUF, [1, 0, 0, 0, 0, 0]));
        assert!(c.ok(), "Identify Controller failed: {c}");
        let id = self.qt.read_vec(IDENTIFY_BUF, 4096);
        let mdts = id[77];
        let mpsmin = 1u64 << (12 + ((self.cap >> 48) & 0xf));
        self.mdts_bytes = if mdts == 0 { u64::MAX } else { mpsmin << mdts };
        self.sgls = u32::from_le_bytes(id[536..540].try_into().unwrap());
        self.model = String::from_utf8_lossy(&id[24..64]).trim().to_owned();
        self.firmware = String::from_utf8_lossy(&id[64..72]).trim().to_owned();

        // Identify Namespace 1 (CNS 0).
        self.qt.memset(IDENTIFY_BUF, 4096, 0);
        let c = self.admin(sqe(OPC_IDENTIFY, 1, IDENTIFY_BUF, [0; 6]));
        assert!(c.ok(), "Identify Namespace failed: {c}");
        let ns = self.qt.read_vec(IDENTIFY_BUF, 4096);
        self.nsze = u64::from_le_bytes(ns[0..8].try_into().unwrap());
        let flbas = usize::from(ns[26] & 0xf);
        let lbaf = u32::from_le_bytes(ns[128 + 4 * flbas..132 + 4 * flbas].try_into().unwrap());
        self.lba_size = 1 << ((lbaf >> 16) & 0xff);

        // I/O CQ 1 (physically contiguous, no interrupts), then I/O SQ 1 bound to it.
        let size = u32::from(QDEPTH - 1) << 16;
        let c = self.admin(sqe(OPC_CREATE_IO_CQ, 0, IOCQ, [size | 1, 1, 0, 0, 0, 0]));
        assert!(c.ok(), "Create I/O CQ failed: {c}");
        let c = self.admin(sqe(
            OPC_CREATE_IO_SQ,
            0,
            IOSQ,
            [size | 1, (1 << 16) | 1, 0, 0, 0, 0],
        ));
        assert!(c.ok(), "Create I/O SQ failed: {c}");
    }

    fn wait_ready(&mut self, ready: bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let csts = self.qt.readl(BAR0 + REG_CSTS);
            assert!(csts & 2 == 0, "controller fatal status (CSTS={csts:#x})");
            if (csts & 1 != 0) == ready {
                return;
            }
            assert!(Instant::now() < deadline, "CSTS.RDY did not become {ready}");
            std::thread::yield_now();
        }
    }

    /// Submits an admin command and waits for its completion.
    pub fn admin(&mut self, sqe: SubmissionQueueEntry) -> Completion {
        let mut q = self.admin;
        let c = self.submit(&mut q, sqe);
        self.admin = q;
        c
    }

    /// Submits a command on I/O queue 1 and waits for its completion.
    pub fn io(&mut self, sqe: SubmissionQueueEntry) -> Completion {
        let mut q = self.io;
        let c = self.submit(&mut q, sqe);
        self.io = q;
        c
    }

    /// A Read (`OPC_READ`) or Write (`OPC_WRITE`) of namespace 1, `nlb` blocks starting at
    /// `slba`, with data pointer `dp` (which also sets PSDT: 00b PRP, 01b SGL).
    pub fn rw(&mut self, opcode: u8, slba: u64, nlb: u32, dp: DataPointer) -> Completion {
        let mut e = rw_sqe(opcode, slba, nlb);
        e.set_data_pointer(dp);
        self.io(e)
    }

    /// As [`NvmeHost::rw`] with raw PSDT bits and DPTR bytes (for malformed commands).
    pub fn rw_raw(
        &mut self,
        opcode: u8,
        slba: u64,
        nlb: u32,
        psdt: u8,
        dptr: [u8; 16],
    ) -> Completion {
        let mut e = rw_sqe(opcode, slba, nlb);
        e.set_psdt(Psdt::from_bits(psdt));
        e.set_dptr(dptr);
        self.io(e)
    }

    fn doorbell(&self, qid: u16, completion: bool) -> u64 {
        BAR0 + if completion {
            self.db.cq_head(qid)
        } else {
            self.db.sq_tail(qid)
        }
    }

    fn submit(&mut self, q: &mut Queue, mut sqe: SubmissionQueueEntry) -> Completion {
        let cid = self.cid;
        self.cid = self.cid.wrapping_add(1);
        sqe.set_cid(cid);
        let slot = q.pair.sq.push().expect("submission queue full");
        self.qt.write(q.sq + u64::from(slot) * 64, sqe.as_bytes());
        self.qt.writel(
            self.doorbell(q.pair.qid, false),
            u32::from(q.pair.sq.tail()),
        );
        self.commands += 1;

        let cqe_addr = q.cq + u64::from(q.pair.cq.head()) * 16;
        let deadline = Instant::now() + Duration::from_secs(10);
        let dw3 = loop {
            let dw3 = self.qt.readl(cqe_addr + 12);
            if (dw3 >> 16) & 1 == u32::from(q.pair.cq.phase()) {
                break dw3;
            }
            assert!(
                Instant::now() < deadline,
                "no completion for CID {cid} on queue {} (CSTS={:#x})",
                q.pair.qid,
                self.qt.readl(BAR0 + REG_CSTS)
            );
        };
        let dw0 = self.qt.readl(cqe_addr);
        let dw2 = self.qt.readl(cqe_addr + 8);
        let ccid = (dw3 & 0xffff) as u16;
        assert_eq!(ccid, cid, "completion for the wrong command");
        q.pair
            .complete([dw0, 0, dw2, dw3])
            .expect("phase checked above");
        self.qt
            .writel(self.doorbell(q.pair.qid, true), u32::from(q.pair.cq.head()));
        let sf = dw3 >> 17;
        Completion {
            dw0,
            status: ((((sf >> 8) & 7) << 8) | (sf & 0xff)) as u16,
            dnr: (sf >> 14) & 1 != 0,
        }
    }
}

/// A Read or Write SQE for namespace 1 without its data pointer.
fn rw_sqe(opcode: u8, slba: u64, nlb: u32) -> SubmissionQueueEntry {
    assert!((1..=0x1_0000).contains(&nlb));
    sqe(
        opcode,
        1,
        0,
        [slba as u32, (slba >> 32) as u32, nlb - 1, 0, 0, 0],
    )
}

/// PCI configuration read through the legacy 0xcf8/0xcfc mechanism (bus 0).
fn cfg_read(qt: &mut Qtest, devfn: u32, off: u32) -> u32 {
    qt.outl(0xcf8, 0x8000_0000 | (devfn << 8) | off);
    qt.inl(0xcfc)
}

fn cfg_write(qt: &mut Qtest, devfn: u32, off: u32, v: u32) {
    qt.outl(0xcf8, 0x8000_0000 | (devfn << 8) | off);
    qt.outl(0xcfc, v);
}

/// Bus-0 devfn of the first device with class code 01h/08h/02h (NVMe I/O controller).
fn find_nvme(qt: &mut Qtest) -> Option<u32> {
    (0..32).map(|dev| dev << 3).find(|&devfn| {
        cfg_read(qt, devfn, 0) & 0xffff != 0xffff && cfg_read(qt, devfn, 8) >> 8 == 0x01_0802
    })
}

fn setup_bar0(qt: &mut Qtest, devfn: u32) {
    cfg_write(qt, devfn, 0x10, 0xffff_ffff);
    let probe = cfg_read(qt, devfn, 0x10);
    let size = (!(probe & !0xf)).wrapping_add(1);
    assert!(
        size >= 0x2000,
        "BAR0 size {size:#x} too small for doorbells"
    );
    cfg_write(qt, devfn, 0x10, BAR0 as u32);
    if (probe >> 1) & 3 == 2 {
        cfg_write(qt, devfn, 0x14, (BAR0 >> 32) as u32);
    }
    let cmd = cfg_read(qt, devfn, 0x04);
    cfg_write(qt, devfn, 0x04, (cmd & 0xffff) | 0x6); // memory space + bus master
}
