//! Conformance of physvec's VT-d table writer, mapper and walker against QEMU 7.2's
//! emulated Intel IOMMU (`-device intel-iommu`), driven over qtest with the emulated NVMe
//! controller as the DMA engine (see DESIGN.md, "VT-d"). Skipped with a printed reason
//! when `qemu-system-x86_64` is missing, unless `PHYSVEC_REQUIRE_QEMU=1`. Set
//! `PHYSVEC_QEMU_SEED` to replay a run.
//!
//! 1. Seeded random map / unmap / remap / partial-unlink sequences through
//!    [`VtdMapper`]; the changed table pages are copied to guest RAM and the queued
//!    invalidations issued (register-based or queued invalidation). After every step real
//!    NVMe DMA checks that data lands exactly at the physical pages (guard bytes and every
//!    page an IOVA ever pointed to untouched), that unmapped IOVAs fault with a fault
//!    record naming the page, that remapped IOVAs reach the new pages, and that a
//!    direction's permission is enforced.
//! 2. Seeded random and malformed tables: the walker ([`vtd::translate`]) and QEMU must
//!    agree on the translation or the fault reason.

mod qemu;

use std::collections::HashMap;
use std::time::Instant;

use physvec::map::vtd::{
    self, Access, DirtyPages, FaultReason, FaultRecord, PageList, VtdCaps, VtdConfig, VtdMapper,
    VtdTables, WalkError,
};
use physvec::map::{self as m, Attrs, DataDirection, DmaMapper, IoPerm, IovaSpace, Synced};
use physvec::mem::{MemoryReader, MemoryWriter, SparseMemory};
use physvec::nvme::DataPointer;
use physvec::{PhysAddr, PhysRange};
use qemu::nvme_host::{sqe, NvmeHost, BAR0, OPC_READ, OPC_WRITE};
use qemu::qtest::qemu_or_skip;
use qemu::vtd_host::{iommu_args, nvme_source_id, Vtd};
use qemu::Rng;

/// Disk image: 4 MiB of random bytes (8192 LBAs of 512 B).
const IMAGE_LEN: usize = 4 << 20;
/// Table pages of the mapper.
const TABLES_LO: u64 = 0x0100_0000;
const TABLE_PAGES: u64 = 1024;
/// Queued-invalidation queue and wait status.
const QI_PAGE: u64 = 0x0180_0000;
const QI_STATUS: u64 = 0x0180_1000;
/// Table pages of the random-table phase.
const RT_LO: u64 = 0x0190_0000;
const RT_PAGES: u64 = 64;
/// Data pages.
const DATA_LO: u64 = 0x0200_0000;
const DATA_HI: u64 = 0x0c00_0000;
/// NVMe queues, identify buffer (nvme_host's GPAs) and our PRP list page: identity-mapped.
const FIXED_LO: u64 = 0x10_0000;
const FIXED_LEN: u64 = 0x5_1000;
const PRP_LIST: u64 = 0x15_0000;
/// Largest NVMe transfer the checks issue.
const MAX_XFER: u64 = 64 << 10;

type Mapper = VtdMapper<DirtyPages<SparseMemory<physvec::Phys>>, PageList>;

/// One I/O as the harness tracks it.
#[derive(Clone, Debug)]
struct Io {
    phys: Vec<PhysRange>,
    dma: Vec<(u64, u64)>,
    dir: DataDirection,
}

impl Io {
    fn total(&self) -> u64 {
        self.phys.iter().map(|p| p.len()).sum()
    }
    /// Physical address of byte `off` of the transfer.
    fn phys_at(&self, mut off: u64) -> u64 {
        for p in &self.phys {
            if off < p.len() {
                return p.addr().as_u64() + off;
            }
            off -= p.len();
        }
        panic!("offset past the I/O")
    }
    /// DMA address of byte `off` of the transfer.
    fn dma_at(&self, mut off: u64) -> u64 {
        for &(a, l) in &self.dma {
            if off < l {
                return a + off;
            }
            off -= l;
        }
        panic!("offset past the I/O")
    }
    fn phys_pages(&self) -> Vec<u64> {
        let mut v = Vec::new();
        for p in &self.phys {
            let mut a = p.addr().as_u64() & !0xfff;
            while a < p.addr().as_u64() + p.len() {
                v.push(a);
                a += 0x1000;
            }
        }
        v
    }
}

/// The state of one QEMU run.
struct Harness {
    h: NvmeHost,
    vtd: Vtd,
    sid: u16,
    aw: u32,
    rng: Rng,
    seed: u64,
    /// Expected disk contents.
    disk: Vec<u8>,
    /// Expected contents of every data page the harness initialised.
    expect: HashMap<u64, Vec<u8>>,
    /// Every physical page each IOVA page ever translated to.
    history: HashMap<u64, Vec<u64>>,
    data_next: u64,
    dma_checks: u64,
    faults_checked: u64,
}

impl Harness {
    fn start(qemu: &std::path::Path, aw: u32, seed: u64) -> Harness {
        let mut rng = Rng::new(seed);
        let mut disk = vec![0u8; IMAGE_LEN];
        rng.fill(&mut disk);
        let args = iommu_args(aw);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut h = NvmeHost::start_with(qemu, &disk, &args);
        let vtd = Vtd::probe(&mut h.qt);
        let want_sagaw = if aw == 48 { 0b00110 } else { 0b00010 };
        assert_eq!(
            (vtd.sagaw(), vtd.mgaw()),
            (want_sagaw, aw),
            "CAP={:#x}",
            vtd.cap
        );
        assert_eq!(
            vtd.ecap & 2,
            2,
            "no queued invalidation (ECAP={:#x})",
            vtd.ecap
        );
        let sid = nvme_source_id(&mut h.qt);
        Harness {
            h,
            vtd,
            sid,
            aw,
            rng,
            seed,
            disk,
            expect: HashMap::new(),
            history: HashMap::new(),
            data_next: DATA_LO,
            dma_checks: 0,
            faults_checked: 0,
        }
    }

    fn ctx(&self) -> String {
        format!(
            "(seed {:#x}, aw {}; replay with PHYSVEC_QEMU_SEED={:#x})",
            self.seed, self.aw, self.seed
        )
    }

    /// `n` fresh data pages (aligned to `align`), each filled with its own byte value.
    fn alloc_pages(&mut self, n: u64, align: u64) -> u64 {
        let base = (self.data_next + align - 1) & !(align - 1);
        assert!(base + n * 0x1000 <= DATA_HI, "data arena exhausted");
        self.data_next = base + n * 0x1000;
        for i in 0..n {
            let p = base + i * 0x1000;
            let v = (self.rng.next_u64() | 1) as u8;
            self.h.qt.memset(p, 0x1000, v);
            self.expect.insert(p, vec![v; 0x1000]);
        }
        base
    }

    /// Copies changed table pages to guest RAM, then issues the queued invalidations.
    fn flush(&mut self, mapper: &Mapper) {
        upload(&mut self.h.qt, &mut mapper.memory_mut());
        let invs = mapper.drain_invalidations();
        self.vtd.issue(&mut self.h.qt, &invs);
    }

    /// Checks expected contents of these physical pages.
    fn verify_pages(&mut self, pages: impl IntoIterator<Item = u64>, what: &str) {
        let mut seen = std::collections::HashSet::new();
        for p in pages {
            if !seen.insert(p) {
                continue;
            }
            let Some(want) = self.expect.get(&p) else {
                continue;
            };
            let got = self.h.qt.read_vec(p, 0x1000);
            if &got != want {
                let i = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
                panic!(
                    "{what}: page {p:#x} differs at byte {i:#x}: {:#04x}, expected {:#04x} {}",
                    got[i],
                    want[i],
                    self.ctx()
                );
            }
        }
    }

    /// PRP data pointer for the contiguous IOVA window `[iova, iova + len)`.
    fn prp(&mut self, iova: u64, len: u64) -> DataPointer {
        let first_end = (iova & !0xfff) + 0x1000;
        let mut pages = Vec::new();
        let mut a = first_end;
        while a < iova + len {
            pages.push(a);
            a += 0x1000;
        }
        let prp2 = match pages.len() {
            0 => 0,
            1 => pages[0],
            _ => {
                let b: Vec<u8> = pages.iter().flat_map(|e| e.to_le_bytes()).collect();
                self.h.qt.write(PRP_LIST, &b);
                PRP_LIST
            }
        };
        DataPointer::Prp {
            prp1: physvec::DmaAddr::new(iova),
            prp2: physvec::DmaAddr::new(prp2),
        }
    }

    fn assert_no_fault(&mut self, what: &str) {
        if let Some(f) = self.vtd.take_fault(&mut self.h.qt) {
            panic!("{what}: unexpected VT-d fault: {f} {}", self.ctx());
        }
    }

    /// Real DMA through a window of a live I/O: NVMe Read (device writes) and/or Write
    /// (device reads) as the direction allows; data must land exactly.
    fn dma_check(&mut self, io: &Io) {
        if io.dma.len() != 1 {
            return; // a per-range fallback layout: checked through the walker only
        }
        let total = io.total();
        let wlen = (self.rng.range(1, (total.min(MAX_XFER)) / 512)) * 512;
        let woff = self.rng.range(0, (total - wlen) / 512) * 512;
        let iova = io.dma_at(woff);
        for p in (iova & !0xfff..iova + wlen).step_by(0x1000) {
            let phys = io.phys_at(woff + p.saturating_sub(iova)) & !0xfff;
            let h = self.history.entry(p).or_default();
            if !h.contains(&phys) {
                h.push(phys);
            }
        }
        let stale: Vec<u64> = (iova & !0xfff..iova + wlen)
            .step_by(0x1000)
            .flat_map(|p| self.history.get(&p).cloned().unwrap_or_default())
            .collect();
        let nlb = (wlen / 512) as u32;
        if io.dir.device_writes() {
            let lba = self.rng.range(0, (IMAGE_LEN as u64 - wlen) / 512);
            let dp = self.prp(iova, wlen);
            let c = self.h.rw(OPC_READ, lba, nlb, dp);
            assert!(c.ok(), "Read through IOVA {iova:#x}: {c} {}", self.ctx());
            self.assert_no_fault("Read");
            let src = (lba * 512) as usize;
            for i in 0..wlen {
                let pa = io.phys_at(woff + i);
                let page = self.expect.get_mut(&(pa & !0xfff)).expect("data page");
                page[(pa & 0xfff) as usize] = self.disk[src + i as usize];
            }
            let mut pages = io.phys_pages();
            pages.extend(stale.iter().copied());
            self.verify_pages(pages, "device write (NVMe Read)");
            self.dma_checks += 1;
        }
        if io.dir.device_reads() {
            let lba = self.rng.range(0, (IMAGE_LEN as u64 - wlen) / 512);
            let dp = self.prp(iova, wlen);
            let c = self.h.rw(OPC_WRITE, lba, nlb, dp);
            assert!(c.ok(), "Write through IOVA {iova:#x}: {c} {}", self.ctx());
            self.assert_no_fault("Write");
            let want: Vec<u8> = (0..wlen)
                .map(|i| {
                    let pa = io.phys_at(woff + i);
                    self.expect[&(pa & !0xfff)][(pa & 0xfff) as usize]
                })
                .collect();
            let dst = (lba * 512) as usize;
            self.disk[dst..dst + wlen as usize].copy_from_slice(&want);
            let got = self.h.qt.read_image(lba * 512, wlen as usize);
            assert!(
                got == want,
                "device read (NVMe Write) via IOVA {iova:#x}: disk data differs from the pages {}",
                self.ctx()
            );
            self.dma_checks += 1;
        }
    }

    /// DMA to `iova` that must fault with `reason` (device write through NVMe Read when
    /// `access` is Write, device read through NVMe Write otherwise): the command succeeds,
    /// nothing reaches memory, and the fault record names the page.
    fn fault_check(&mut self, iova: u64, access: Access, reason: FaultReason, watch: &[u64]) {
        let dp = DataPointer::Prp {
            prp1: physvec::DmaAddr::new(iova),
            prp2: physvec::DmaAddr::ZERO,
        };
        let lba = self.rng.range(0, IMAGE_LEN as u64 / 512 - 1);
        let opc = match access {
            Access::Write => OPC_READ,
            Access::Read => OPC_WRITE,
        };
        let c = self.h.rw(opc, lba, 1, dp);
        assert!(c.ok(), "DMA to faulting IOVA {iova:#x}: {c} {}", self.ctx());
        let f = self.vtd.take_fault(&mut self.h.qt);
        let want = FaultRecord {
            reason,
            source_id: self.sid,
            addr: iova & !0xfff,
            access,
        };
        assert_eq!(
            f,
            Some(want),
            "DMA to IOVA {iova:#x} ({}) {}",
            access.as_str(),
            self.ctx()
        );
        if access == Access::Read {
            // QEMU 7.2 NVMe writes zeros to the medium when the data read faults.
            let dst = (lba * 512) as usize;
            self.disk[dst..dst + 512].fill(0);
            assert_eq!(self.h.qt.read_image(lba * 512, 512), vec![0u8; 512]);
        }
        self.verify_pages(watch.iter().copied(), "faulting DMA");
        self.faults_checked += 1;
    }

    /// The walker over the mapper's tables agrees with the I/O (every page).
    fn walker_check(&self, mapper: &Mapper, io: &Io, live: bool) {
        let caps = VtdCaps::qemu(self.aw);
        let mem = mapper.memory();
        let root = mapper.root_table();
        let mut off = 0;
        while off < io.total() {
            let iova = io.dma_at(off);
            for access in [Access::Read, Access::Write] {
                let allowed = match access {
                    Access::Read => io.dir.device_reads(),
                    Access::Write => io.dir.device_writes(),
                };
                let r = vtd::translate(&*mem, root, caps, self.sid, iova, access);
                match (live && allowed, r) {
                    (true, Ok(t)) => assert_eq!(t.phys, io.phys_at(off), "walker at {iova:#x}"),
                    (false, Err(WalkError::Fault(f))) => assert_eq!(
                        f.reason,
                        if access == Access::Read {
                            FaultReason::ReadNotPermitted
                        } else {
                            FaultReason::WriteNotPermitted
                        }
                    ),
                    (want, got) => panic!(
                        "walker at {iova:#x} {}: live+allowed {want}, got {got:?} {}",
                        access.as_str(),
                        self.ctx()
                    ),
                }
            }
            let next = (iova & !0xfff) + 0x1000;
            off += next - iova;
        }
    }

    /// A random I/O shape: 1..=4 segments, 512-byte multiples, page-aligned inner
    /// boundaries (so it coalesces), sometimes one large 2 MiB-aligned segment, sometimes
    /// a misaligned inner boundary (the per-range fallback).
    fn random_io(&mut self) -> (Vec<PhysRange>, DataDirection) {
        let dir = *self.rng.pick(&[
            DataDirection::ToDevice,
            DataDirection::FromDevice,
            DataDirection::Bidirectional,
        ]);
        if self.rng.chance(1, 8) {
            let base = self.alloc_pages(512, 2 << 20);
            return (vec![PhysRange::new(base, 2 << 20)], dir);
        }
        let n = self.rng.range(1, 4);
        let fallback = n > 1 && self.rng.chance(1, 8);
        let mut segs = Vec::new();
        for i in 0..n {
            let pages = self.rng.range(1, 4);
            let base = self.alloc_pages(pages + 1, 0x1000); // one guard page after
            let start = if i == 0 || (fallback && i == 1) {
                self.rng.range(0, 7) * 512
            } else {
                0
            };
            let end = if i == n - 1 || (fallback && i == 0) {
                pages * 0x1000 - self.rng.range(0, 7) * 512
            } else {
                pages * 0x1000
            };
            let end = end.max(start + 512);
            segs.push(PhysRange::new(base + start, end - start));
        }
        (segs, dir)
    }
}

/// Copies the table pages written since the last call to guest RAM.
fn upload(qt: &mut qemu::qtest::Qtest, mem: &mut DirtyPages<SparseMemory<physvec::Phys>>) {
    for p in mem.take_dirty() {
        let mut b = vec![0u8; 0x1000];
        mem.read(physvec::PhysAddr::new(p), &mut b)
            .expect("table page");
        qt.write(p, &b);
    }
}

/// A live I/O: mapped through `map::map` or by hand with the two-step API.
enum Live<'a> {
    Mapped(m::Mapping<'a, Mapper, physvec::DmaVec>, Io),
    Space(IovaSpace<Synced>, Io),
}

impl Live<'_> {
    fn io(&self) -> &Io {
        match self {
            Live::Mapped(_, io) | Live::Space(_, io) => io,
        }
    }
}

fn map_io<'a>(mapper: &'a Mapper, phys: Vec<PhysRange>, dir: DataDirection) -> Live<'a> {
    let mapping = m::map(mapper, &phys, dir).expect("map");
    let dma = mapping
        .dma()
        .iter()
        .map(|r| (r.addr().as_u64(), r.len()))
        .collect();
    Live::Mapped(mapping, Io { phys, dma, dir })
}

fn unmap_live(mapper: &Mapper, l: Live<'_>) -> Io {
    match l {
        Live::Mapped(mapping, io) => {
            mapping.unmap().expect("unmap");
            io
        }
        Live::Space(space, io) => {
            mapper
                .destroy(space, io.dir, Attrs::empty())
                .expect("destroy");
            io
        }
    }
}

/// The fault a device access to an unmapped IOVA records.
fn denied(access: Access) -> FaultReason {
    match access {
        Access::Write => FaultReason::WriteNotPermitted,
        Access::Read => FaultReason::ReadNotPermitted,
    }
}

/// Phase 1: random map / unmap / remap / partial unlink sequences, checked by DMA.
fn mapper_sequence(hs: &mut Harness, steps: usize, queued: bool) -> String {
    let mut mem = SparseMemory::default();
    mem.add_zeroed(
        physvec::PhysAddr::new(TABLES_LO),
        (TABLE_PAGES * 0x1000) as usize,
    );
    let pages = PageList::new((0..TABLE_PAGES).map(|i| TABLES_LO + i * 0x1000));
    let did = hs.rng.range(1, 0xffff) as u16;
    let cfg = VtdConfig::new(hs.aw, hs.sid, did);
    let mapper = Mapper::new(DirtyPages::new(mem), pages, cfg).expect("VtdMapper");
    mapper
        .map_fixed(FIXED_LO, FIXED_LO, FIXED_LEN, IoPerm::READ | IoPerm::WRITE)
        .expect("identity map of the queues");
    // Enable: tables in RAM, RTADDR + SRTP, (QI), global invalidations, TE.
    upload(&mut hs.h.qt, &mut mapper.memory_mut());
    hs.vtd.set_root(&mut hs.h.qt, mapper.root_table());
    if queued {
        hs.h.qt.memset(QI_PAGE, 0x2000, 0);
        hs.vtd.enable_qi(&mut hs.h.qt, QI_PAGE, QI_STATUS);
    }
    let invs = mapper.drain_invalidations();
    hs.vtd.issue(&mut hs.h.qt, &invs);
    hs.vtd.enable_translation(&mut hs.h.qt);
    assert_eq!(hs.vtd.fsts(&mut hs.h.qt), 0);

    let mut live: Vec<Live<'_>> = Vec::new();
    let mut ops: HashMap<&str, u32> = HashMap::new();
    for _ in 0..steps {
        let op = if live.len() < 2 {
            "map"
        } else {
            *hs.rng
                .pick(&["map", "unmap", "remap", "remap", "recheck", "perm", "split"])
        };
        *ops.entry(op).or_default() += 1;
        match op {
            "map" => {
                let (phys, dir) = hs.random_io();
                let l = map_io(&mapper, phys, dir);
                hs.flush(&mapper);
                hs.walker_check(&mapper, l.io(), true);
                hs.dma_check(l.io());
                live.push(l);
            }
            "recheck" => {
                let i = hs.rng.range(0, live.len() as u64 - 1) as usize;
                let io = live[i].io().clone();
                hs.dma_check(&io);
            }
            "unmap" | "remap" => {
                let i = hs.rng.range(0, live.len() as u64 - 1) as usize;
                let old = unmap_live(&mapper, live.swap_remove(i));
                hs.flush(&mapper);
                hs.walker_check(&mapper, &old, false);
                // The device used these IOVAs before: they must fault now.
                let iova = old.dma[0].0 & !511;
                let watch = old.phys_pages();
                let access = if hs.rng.chance(1, 2) {
                    Access::Write
                } else {
                    Access::Read
                };
                hs.fault_check(iova, access, denied(access), &watch);
                if op == "remap" {
                    // Same shape, new pages: first-fit hands out the same IOVAs again.
                    let mut phys = Vec::new();
                    for p in &old.phys {
                        let off = p.addr().as_u64() & 0xfff;
                        let n = (off + p.len()).div_ceil(0x1000);
                        let align = if p.len() >= 2 << 20 { 2 << 20 } else { 0x1000 };
                        let base = hs.alloc_pages(n, align);
                        phys.push(PhysRange::new(base + off, p.len()));
                    }
                    let l = map_io(&mapper, phys, old.dir);
                    hs.flush(&mapper);
                    hs.walker_check(&mapper, l.io(), true);
                    hs.dma_check(l.io());
                    live.push(l);
                }
            }
            "perm" => {
                // The direction's permission is enforced: the other access faults.
                let i = hs.rng.range(0, live.len() as u64 - 1) as usize;
                let io = live[i].io().clone();
                let access = match io.dir {
                    DataDirection::ToDevice => Access::Write,
                    DataDirection::FromDevice => Access::Read,
                    DataDirection::Bidirectional => continue,
                };
                let iova = io.dma[0].0 & !511;
                // QEMU 7.2 records a permission fault only on an IOTLB miss: a hit
                // whose cached access flags lack the access fails silently. Force a
                // miss first (an extra invalidation is always allowed).
                hs.vtd.issue(
                    &mut hs.h.qt,
                    &[vtd::Invalidation::page(did, iova, 0x1000, 18)],
                );
                hs.fault_check(iova, access, denied(access), &io.phys_pages());
            }
            "split" => {
                // Two-step by hand: a 2 MiB leaf, then unlink a 4 KiB-aligned middle part
                // (the leaf is split); the rest still translates, the hole faults.
                let base = hs.alloc_pages(512, 2 << 20);
                let dir = DataDirection::Bidirectional;
                let mut space = mapper
                    .reserve(PhysAddr::new(base), 2 << 20)
                    .expect("reserve")
                    .expect("IOVA space");
                mapper
                    .link(
                        &mut space,
                        PhysRange::new(base, 2 << 20),
                        0,
                        dir,
                        Attrs::empty(),
                    )
                    .expect("link");
                let space = mapper.sync(space, 0, 2 << 20).expect("sync");
                let iova = space.addr().as_u64();
                let io = Io {
                    phys: vec![PhysRange::new(base, 2 << 20)],
                    dma: vec![(iova, 2 << 20)],
                    dir,
                };
                hs.flush(&mapper);
                hs.dma_check(&io);
                // Touch the page to be unlinked so the IOTLB holds the 2 MiB entry.
                let hole = hs.rng.range(1, 500) * 0x1000;
                let whole = Io {
                    phys: vec![PhysRange::new(base + hole, 0x1000)],
                    dma: vec![(iova + hole, 0x1000)],
                    dir,
                };
                hs.dma_check(&whole);
                let mut space = space;
                mapper
                    .unlink(&mut space, hole, 0x2000, dir, Attrs::empty())
                    .expect("partial unlink");
                hs.flush(&mapper);
                let access = if hs.rng.chance(1, 2) {
                    Access::Write
                } else {
                    Access::Read
                };
                hs.fault_check(
                    iova + hole + 0x1000,
                    access,
                    denied(access),
                    &[base + hole + 0x1000],
                );
                let before = Io {
                    phys: vec![PhysRange::new(base, hole)],
                    dma: vec![(iova, hole)],
                    dir,
                };
                hs.walker_check(&mapper, &before, true);
                hs.dma_check(&before);
                let after = Io {
                    phys: vec![PhysRange::new(
                        base + hole + 0x2000,
                        (2 << 20) - hole - 0x2000,
                    )],
                    dma: vec![(iova + hole + 0x2000, (2 << 20) - hole - 0x2000)],
                    dir,
                };
                hs.walker_check(&mapper, &after, true);
                hs.dma_check(&after);
                // Keep the rest alive as one I/O record (the hole stays unlinked).
                live.push(Live::Space(space, before));
            }
            _ => unreachable!(),
        }
    }
    while let Some(l) = live.pop() {
        let old = unmap_live(&mapper, l);
        hs.flush(&mapper);
        hs.walker_check(&mapper, &old, false);
    }
    mapper
        .unmap_fixed(FIXED_LO, FIXED_LEN)
        .expect("unmap_fixed");
    assert!(mapper.is_idle(), "tables left after teardown {}", hs.ctx());
    let mut ops: Vec<_> = ops.into_iter().collect();
    ops.sort();
    ops.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Phase 2: random and malformed second-level tables; walker and QEMU must agree.
fn random_tables(hs: &mut Harness, cases: usize) -> HashMap<String, u32> {
    let caps = VtdCaps::qemu(hs.aw);
    let mut outcomes: HashMap<String, u32> = HashMap::new();
    for case in 0..cases {
        let mut mem = SparseMemory::default();
        mem.add_zeroed(physvec::PhysAddr::new(RT_LO), (RT_PAGES * 0x1000) as usize);
        let pages = PageList::new((0..RT_PAGES).map(|i| RT_LO + i * 0x1000));
        let did = hs.rng.range(1, 0xffff) as u16;
        let mut t = VtdTables::new(
            DirtyPages::new(mem),
            pages,
            VtdConfig::new(hs.aw, hs.sid, did),
        )
        .expect("tables");
        t.map(FIXED_LO, FIXED_LO, FIXED_LEN, IoPerm::READ | IoPerm::WRITE)
            .expect("queues");
        // The IOVA under test: its top-level index differs from the queues' (0).
        let top_shift = 12 + 9 * (if hs.aw == 48 { 3 } else { 2 });
        let top = hs.rng.range(1, 511);
        let size: u64 = *hs.rng.pick(&[0x1000, 0x1000, 2 << 20, 1 << 30]);
        let iova_base = (top << top_shift) | (hs.rng.range(0, (1 << top_shift) / size - 1) * size);
        let phys_base = match size {
            0x1000 => hs.alloc_pages(1, 0x1000),
            s if s == 2 << 20 => hs.alloc_pages(512, 2 << 20),
            _ => 0, // 1 GiB leaf at GPA 0: the data arena lies inside it
        };
        let perm = *hs
            .rng
            .pick(&[IoPerm::READ, IoPerm::WRITE, IoPerm::READ | IoPerm::WRITE]);
        t.map(iova_base, phys_base, size, perm)
            .expect("map under test");
        // The byte the device accesses: inside the data arena for a 1 GiB leaf.
        let off = if size == 1 << 30 {
            let p = hs.alloc_pages(1, 0x1000);
            p + hs.rng.range(0, 7) * 512
        } else {
            hs.rng.range(0, size / 512 - 1) * 512
        };
        let mut iova = iova_base + off;
        // Mutate one entry on the path (or the IOVA).
        let mut path = Vec::new(); // (level, entry address, raw)
        let _ = vtd::translate_traced(
            t.memory(),
            t.root_table(),
            caps,
            hs.sid,
            iova,
            Access::Read,
            &mut |s| {
                if let vtd::WalkStep::Sl { level, addr, raw } = s {
                    path.push((level, addr, raw));
                }
            },
        );
        let mutation = hs.rng.range(0, 15);
        let (level, addr, raw) = *hs.rng.pick(&path);
        let new = match mutation {
            1 => Some(raw & !1),
            2 => Some(raw & !2),
            3 => Some(0),
            4 => Some(raw | vtd::SL_SNP),
            5 => Some(raw | 1 << hs.rng.range(u64::from(hs.aw), 51)),
            6 => Some(raw | vtd::SL_TM),
            7 => Some(raw | 1 << *hs.rng.pick(&[52, 55, 58, 61, 63])),
            8 => Some(raw | vtd::SL_PS),
            9 if raw & vtd::SL_PS != 0 && level > 1 => Some(raw | 1 << hs.rng.range(12, 20)),
            10 => Some(u64::MAX),
            11 => Some(raw | 1 << hs.rng.range(2, 6) | 1 << hs.rng.range(8, 10)),
            12 => {
                iova |= 1 << hs.rng.range(u64::from(hs.aw), 63);
                None
            }
            13 if level > 1 && raw & vtd::SL_PS == 0 => {
                Some((RT_LO + hs.rng.range(0, RT_PAGES - 1) * 0x1000) | 3)
            }
            14 if level == 1 => Some(vtd::INTERRUPT_FIRST | (raw & 3)),
            _ => None,
        };
        if let Some(v) = new {
            t.memory_mut()
                .write(physvec::PhysAddr::new(addr), &v.to_le_bytes())
                .expect("mutate");
        }
        // Context-entry variations that keep the queues reachable: FPD (qualified faults
        // are not recorded) and pass-through (TT 10b: identity, so the IOVA becomes a
        // data page's address).
        let ce = t.context_table() + u64::from(hs.sid & 0xff) * 16;
        let ce_lo = t.sl_root() | 1;
        let fpd = hs.rng.chance(1, 8);
        let pass_through = !fpd && hs.rng.chance(1, 12);
        if fpd {
            t.memory_mut()
                .write(
                    physvec::PhysAddr::new(ce),
                    &(ce_lo | vtd::CTX_FPD).to_le_bytes(),
                )
                .expect("FPD");
        }
        if pass_through {
            t.memory_mut()
                .write(physvec::PhysAddr::new(ce), &(ce_lo | 2 << 2).to_le_bytes())
                .expect("TT");
            iova = hs.alloc_pages(1, 0x1000) + hs.rng.range(0, 7) * 512;
        }
        // To QEMU: table pages, new root, global invalidations.
        upload(&mut hs.h.qt, t.memory_mut());
        hs.vtd.set_root(&mut hs.h.qt, t.root_table());
        hs.vtd.issue(
            &mut hs.h.qt,
            &[
                vtd::Invalidation::ContextGlobal,
                vtd::Invalidation::IotlbGlobal,
            ],
        );
        let access = if hs.rng.chance(1, 2) {
            Access::Write
        } else {
            Access::Read
        };
        let walk = vtd::translate(t.memory(), t.root_table(), caps, hs.sid, iova, access);
        let what = format!(
            "case {case}: iova {iova:#x} {} size {size:#x} perm {perm:?}, mutation {mutation} at level {level} ({raw:#x} -> {new:x?}): walker {walk:?}",
            access.as_str()
        );
        let what = format!(
            "{what}{}{}",
            if fpd { ", FPD" } else { "" },
            if pass_through { ", pass-through" } else { "" }
        );
        match walk {
            Ok(tr) => {
                let k = if tr.pass_through {
                    "pass_through"
                } else {
                    "translated"
                };
                *outcomes.entry(k.into()).or_default() += 1;
                let io = Io {
                    phys: vec![PhysRange::new(tr.phys, 512)],
                    dma: vec![(iova, 512)],
                    dir: if access == Access::Write {
                        DataDirection::FromDevice
                    } else {
                        DataDirection::ToDevice
                    },
                };
                assert!(
                    hs.expect.contains_key(&(tr.phys & !0xfff)),
                    "{what}: translation outside the data arena {}",
                    hs.ctx()
                );
                hs.dma_check(&io);
            }
            Err(WalkError::Fault(f)) => {
                *outcomes
                    .entry(format!("{:#x}", f.reason.code()))
                    .or_default() += 1;
                if !f.recorded {
                    *outcomes.entry("fpd".into()).or_default() += 1;
                    // FPD: nothing is recorded, nothing reaches memory.
                    let dp = DataPointer::Prp {
                        prp1: physvec::DmaAddr::new(iova),
                        prp2: physvec::DmaAddr::ZERO,
                    };
                    let opc = if access == Access::Write {
                        OPC_READ
                    } else {
                        OPC_WRITE
                    };
                    let lba = hs.rng.range(0, IMAGE_LEN as u64 / 512 - 1);
                    let c = hs.h.rw(opc, lba, 1, dp);
                    assert!(c.ok(), "{what}: {c}");
                    let f = hs.vtd.take_fault(&mut hs.h.qt);
                    assert_eq!(
                        f,
                        None,
                        "{what}: FPD set but a fault was recorded {}",
                        hs.ctx()
                    );
                    if access == Access::Read {
                        let dst = (lba * 512) as usize;
                        hs.disk[dst..dst + 512].fill(0);
                    }
                    continue;
                }
                let watch = if phys_base != 0 {
                    vec![phys_base & !0xfff]
                } else {
                    vec![]
                };
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    hs.fault_check(iova, access, f.reason, &watch)
                }));
                if let Err(e) = r {
                    eprintln!("{what}");
                    std::panic::resume_unwind(e);
                }
            }
            // Mutation 13 points a table entry at another page of the table arena; when
            // that page was never allocated the model memory does not back it (QEMU
            // reads the guest RAM there): nothing to compare, the case is skipped.
            Err(WalkError::Memory(_)) if mutation == 13 => {
                *outcomes.entry("unbacked".into()).or_default() += 1;
            }
            Err(e) => panic!("{what}: unexpected walker result {e} {}", hs.ctx()),
        }
    }
    outcomes
}

fn run(aw: u32, queued: bool) {
    let name = format!("vtd_conformance_aw{aw}");
    let Some(qemu) = qemu_or_skip(&name) else {
        return;
    };
    let seed = qemu::seed();
    let t0 = Instant::now();
    let mut hs = Harness::start(&qemu, aw, seed);
    let ops = mapper_sequence(&mut hs, 40, queued);
    let outcomes = random_tables(&mut hs, 60);
    let mut o: Vec<_> = outcomes.into_iter().collect();
    o.sort();
    let o = o
        .iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect::<Vec<_>>()
        .join(",");
    println!(
        "vtd conformance: seed={seed:#x} aw={aw} invalidation={} ops[{ops}] dma_checks={} faults={} invalidations={} tables[{o}] qemu_round_trips={} in {:.1}s",
        if queued { "queued" } else { "register" },
        hs.dma_checks,
        hs.faults_checked,
        hs.vtd.issued,
        hs.h.qt.round_trips,
        t0.elapsed().as_secs_f64()
    );
}

/// 4-level tables (`aw-bits=48`), register-based invalidation.
fn vtd_conformance_aw48_register() {
    run(48, false);
}

/// 3-level tables (`aw-bits=39`), queued invalidation.
fn vtd_conformance_aw39_queued() {
    run(39, true);
}

/// The harness catches a forgotten invalidation: after an unmap whose invalidation is
/// dropped, the device still reaches the old page (QEMU's IOTLB), and no fault is
/// recorded, which is exactly what `fault_check` rejects.
fn vtd_forgotten_invalidation_is_caught() {
    let Some(qemu) = qemu_or_skip("vtd_forgotten_invalidation_is_caught") else {
        return;
    };
    let mut hs = Harness::start(&qemu, 48, qemu::seed());
    let mut mem = SparseMemory::default();
    mem.add_zeroed(
        physvec::PhysAddr::new(TABLES_LO),
        (TABLE_PAGES * 0x1000) as usize,
    );
    let pages = PageList::new((0..TABLE_PAGES).map(|i| TABLES_LO + i * 0x1000));
    let mapper =
        Mapper::new(DirtyPages::new(mem), pages, VtdConfig::new(48, hs.sid, 7)).expect("mapper");
    mapper
        .map_fixed(FIXED_LO, FIXED_LO, FIXED_LEN, IoPerm::READ | IoPerm::WRITE)
        .expect("identity");
    upload(&mut hs.h.qt, &mut mapper.memory_mut());
    hs.vtd.set_root(&mut hs.h.qt, mapper.root_table());
    let invs = mapper.drain_invalidations();
    hs.vtd.issue(&mut hs.h.qt, &invs);
    hs.vtd.enable_translation(&mut hs.h.qt);

    let page = hs.alloc_pages(1, 0x1000);
    let l = map_io(
        &mapper,
        vec![PhysRange::new(page, 0x1000)],
        DataDirection::FromDevice,
    );
    hs.flush(&mapper);
    let io = l.io().clone();
    hs.dma_check(&io); // the IOTLB now caches the translation
    let _ = unmap_live(&mapper, l);
    // Tables written, invalidation dropped.
    upload(&mut hs.h.qt, &mut mapper.memory_mut());
    let dropped = mapper.drain_invalidations();
    assert!(
        !dropped.is_empty(),
        "the mapper queued no invalidation for an unmap"
    );
    hs.h.qt.memset(page, 0x1000, 0x5a);
    let c = hs.h.rw(
        OPC_READ,
        0,
        8,
        DataPointer::Prp {
            prp1: physvec::DmaAddr::new(io.dma[0].0),
            prp2: physvec::DmaAddr::ZERO,
        },
    );
    assert!(c.ok());
    let stale = hs.vtd.take_fault(&mut hs.h.qt);
    assert_eq!(
        stale, None,
        "QEMU recorded a fault although the IOTLB was not invalidated"
    );
    assert_eq!(
        hs.h.qt.read_vec(page, 0x1000),
        hs.disk[..0x1000],
        "without the invalidation the device still wrote the old page"
    );
    // Issuing the dropped invalidation makes the IOVA fault as it must.
    hs.vtd.issue(&mut hs.h.qt, &dropped);
    hs.fault_check(
        io.dma[0].0,
        Access::Write,
        FaultReason::WriteNotPermitted,
        &[],
    );
}

/// nvme_host's I/O submission queue (identity-mapped here).
const IOSQ: u64 = 0x12_0000;

/// Root- and context-entry faults stop the controller (the queue fetch itself faults,
/// CSTS.CFS), so each case gets its own QEMU: the walker's verdict for the SQ fetch (a
/// read of IOSQ) must be the fault QEMU records.
fn vtd_conformance_root_and_context_faults() {
    let Some(qemu) = qemu_or_skip("vtd_conformance_root_and_context_faults") else {
        return;
    };
    let seed = qemu::seed();
    let mut rng = Rng::new(seed);
    let t0 = Instant::now();
    let mut outcomes: HashMap<String, u32> = HashMap::new();
    let cases = 12u64;
    for case in 0..cases {
        let aw = if case % 2 == 0 { 48 } else { 39 };
        let mut hs = Harness::start(&qemu, aw, rng.next_u64());
        let mut mem = SparseMemory::default();
        mem.add_zeroed(physvec::PhysAddr::new(RT_LO), (RT_PAGES * 0x1000) as usize);
        let pages = PageList::new((0..RT_PAGES).map(|i| RT_LO + i * 0x1000));
        let cfg = VtdConfig::new(aw, hs.sid, rng.range(1, 0xffff) as u16);
        let mut t = VtdTables::new(DirtyPages::new(mem), pages, cfg).expect("tables");
        t.map(FIXED_LO, FIXED_LO, FIXED_LEN, IoPerm::READ | IoPerm::WRITE)
            .expect("queues");
        let re = t.root_table(); // bus 0
        let ce = t.context_table() + u64::from(hs.sid & 0xff) * 16;
        let rd = |a: u64| {
            t.memory()
                .read_u64_le(physvec::PhysAddr::new(a))
                .expect("entry")
        };
        let (re_lo, ce_lo, ce_hi) = (rd(re), rd(ce), rd(ce + 8));
        let haw = u64::from(aw);
        let bad_aw = if aw == 39 { 2 } else { 0 };
        let (addr, v) = match rng.range(0, 10) {
            0 => (re, re_lo & !1),
            1 => (re + 8, 1 << rng.range(0, 63)),
            2 => (re, re_lo | 1 << rng.range(1, 11)),
            3 => (re, re_lo | 1 << rng.range(haw, 63)),
            4 => (ce, ce_lo & !1),
            5 => (
                ce + 8,
                ce_hi | *rng.pick(&[0x80, 1 << 24, 1 << 40, 1 << 63]),
            ),
            6 => (ce, ce_lo | 1 << rng.range(4, 11)),
            7 => (ce + 8, (ce_hi & !7) | *rng.pick(&[0, 3, 4, 7, bad_aw])),
            8 => (ce, ce_lo | *rng.pick(&[1u64, 3]) << 2),
            9 => (ce, (ce_lo & !1) | vtd::CTX_FPD),
            _ => (t.sl_root(), u64::MAX),
        };
        t.memory_mut()
            .write(physvec::PhysAddr::new(addr), &v.to_le_bytes())
            .expect("mutate");
        upload(&mut hs.h.qt, t.memory_mut());
        hs.vtd.set_root(&mut hs.h.qt, t.root_table());
        hs.vtd.issue(
            &mut hs.h.qt,
            &[
                vtd::Invalidation::ContextGlobal,
                vtd::Invalidation::IotlbGlobal,
            ],
        );
        hs.vtd.enable_translation(&mut hs.h.qt);
        let caps = VtdCaps::qemu(aw);
        let walk = vtd::translate(t.memory(), t.root_table(), caps, hs.sid, IOSQ, Access::Read);
        let what = format!(
            "case {case} (aw {aw}): entry {addr:#x} <- {v:#x}: walker {walk:?} \
             (seed {seed:#x}; replay with PHYSVEC_QEMU_SEED={seed:#x})"
        );
        // Ring I/O SQ 1 once (slot 0: the fresh host issued no I/O yet) without waiting.
        let mut e = sqe(OPC_READ, 1, 0x1000, [0; 6]);
        e.set_cid(0x77);
        hs.h.qt.write(IOSQ, e.as_bytes());
        let stride = 4u64 << ((hs.h.cap >> 32) & 0xf);
        hs.h.qt.writel(BAR0 + 0x1000 + 2 * stride, 1);
        let deadline = Instant::now() + std::time::Duration::from_secs(3);
        let csts = loop {
            let csts = hs.h.qt.readl(BAR0 + 0x1c);
            if csts & 2 != 0 || Instant::now() > deadline {
                break csts;
            }
        };
        let f = hs.vtd.fault(&mut hs.h.qt);
        match walk {
            Err(WalkError::Fault(w)) => {
                assert_eq!(csts & 2, 2, "{what}: controller not fatal (CSTS={csts:#x})");
                let want = w.recorded.then_some(FaultRecord {
                    reason: w.reason,
                    source_id: hs.sid,
                    addr: IOSQ,
                    access: Access::Read,
                });
                assert_eq!(f, want, "{what}");
                let k = format!(
                    "{:#x}{}",
                    w.reason.code(),
                    if w.recorded { "" } else { "(fpd)" }
                );
                *outcomes.entry(k).or_default() += 1;
            }
            other => panic!("{what}: the mutation left the queue reachable: {other:?}"),
        }
    }
    let mut o: Vec<_> = outcomes.into_iter().collect();
    o.sort();
    let o = o
        .iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect::<Vec<_>>()
        .join(",");
    println!(
        "vtd root/context conformance: seed={seed:#x} cases={cases} [{o}] in {:.1}s",
        t0.elapsed().as_secs_f64()
    );
}

/// Runs the VT-d trials with the QEMU-aware runner (tests/qemu/harness.rs): without
/// `qemu-system-x86_64` each is reported `ignored` with the reason in the summary, and
/// `PHYSVEC_REQUIRE_QEMU=1` makes that a failure.
fn main() -> std::process::ExitCode {
    use qemu::harness::{Body, Trial};
    qemu::harness::run(&[
        Trial {
            name: "vtd_conformance_aw48_register",
            body: Body::Qemu(|_| vtd_conformance_aw48_register()),
        },
        Trial {
            name: "vtd_conformance_aw39_queued",
            body: Body::Qemu(|_| vtd_conformance_aw39_queued()),
        },
        Trial {
            name: "vtd_forgotten_invalidation_is_caught",
            body: Body::Qemu(|_| vtd_forgotten_invalidation_is_caught()),
        },
        Trial {
            name: "vtd_conformance_root_and_context_faults",
            body: Body::Qemu(|_| vtd_conformance_root_and_context_faults()),
        },
    ])
}
