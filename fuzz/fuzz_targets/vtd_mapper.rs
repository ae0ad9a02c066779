//! Map / unmap / partial-unlink sequences through the VT-d mapper under `Checked` (DMA
//! API debug), with table pages from a small pool. After every operation the queued
//! invalidations go to an IOTLB model: every live page must translate (through the IOTLB
//! and through a fresh walk) to its physical page with the direction's permission, and
//! every page unmapped since must fault (a missing invalidation would leave it stale). At
//! the end everything is torn down, no leak is reported, and every table page is back.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use physvec::map::vtd::{self, Access, PageList, VtdCaps, VtdConfig, VtdIotlb, VtdMapper};
use physvec::map::{self as m, Checked, DataDirection};
use physvec::mem::SparseMemory;
use physvec::PhysRange;

#[derive(Arbitrary, Debug)]
enum Op {
    Map {
        segs: Vec<(u16, u8, u16, u16)>,
        dir: u8,
    },
    Unmap {
        i: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    aw48: bool,
    large: bool,
    pool: u8,
    ops: Vec<Op>,
}

const DIRS: [DataDirection; 3] = [
    DataDirection::ToDevice,
    DataDirection::FromDevice,
    DataDirection::Bidirectional,
];

fuzz_target!(|input: Input| {
    let aw = if input.aw48 { 48 } else { 39 };
    let npages = 3 + u64::from(input.pool % 64);
    let mut mem = SparseMemory::default();
    mem.add_zeroed(
        physvec::PhysAddr::new(0x100_0000),
        (npages * 0x1000) as usize,
    );
    let pages = PageList::new((0..npages).map(|i| 0x100_0000 + i * 0x1000));
    let mut cfg = VtdConfig::new(aw, 8, 1);
    cfg.large_pages = input.large;
    let inner = VtdMapper::new(mem, pages, cfg).expect("3 pages are enough");
    let checked = Checked::new(inner);
    let caps = VtdCaps::qemu(aw);
    let mut tlb = VtdIotlb::new();
    let mut live = Vec::new();
    let mut dead: Vec<(Vec<u64>, Access)> = Vec::new();
    for op in input.ops.iter().take(64) {
        match op {
            Op::Map { segs, dir } => {
                let dir = DIRS[usize::from(*dir % 3)];
                // (pfn, pages, head, tail): page-granular pieces with sub-page ends.
                let phys: Vec<PhysRange> = segs
                    .iter()
                    .take(6)
                    .map(|&(pfn, n, head, tail)| {
                        let start = (u64::from(pfn) << 12) + 0x1_0000_0000 + u64::from(head % 4096);
                        let len = (u64::from(n % 8) << 12) + u64::from(tail % 4096) + 1;
                        PhysRange::new(start, len)
                    })
                    .collect();
                if phys.is_empty() {
                    continue;
                }
                if let Ok(mapping) = m::map(&checked, &phys, dir) {
                    let mut pages = Vec::new();
                    let mut off = 0;
                    for p in &phys {
                        for b in [0, p.len() - 1] {
                            let dma = mapping.dma_addr_at(off + b).expect("in range").as_u64();
                            pages.push((dma, p.addr().as_u64() + b));
                        }
                        off += p.len();
                    }
                    live.push((mapping, pages, dir));
                }
            }
            Op::Unmap { i } => {
                if live.is_empty() {
                    continue;
                }
                let (mapping, pages, dir) = live.swap_remove(usize::from(*i) % live.len());
                mapping.unmap().expect("unmap of a live mapping");
                let a = if dir.device_writes() {
                    Access::Write
                } else {
                    Access::Read
                };
                dead.push((pages.iter().map(|p| p.0).collect(), a));
            }
        }
        let inner = checked.inner();
        for inv in inner.drain_invalidations() {
            tlb.apply(&inv);
        }
        let mem = inner.memory();
        let root = inner.root_table();
        let mut live_iovas = std::collections::HashSet::new();
        for (mapping, pages, dir) in &live {
            for r in mapping.dma() {
                let mut p = r.addr().as_u64() & !0xfff;
                while p < r.addr().as_u64() + r.len() {
                    live_iovas.insert(p);
                    p += 0x1000;
                }
            }
            let a = if dir.device_writes() {
                Access::Write
            } else {
                Access::Read
            };
            for &(dma, phys) in pages {
                let t = tlb
                    .translate(&*mem, root, caps, 8, dma, a)
                    .expect("live page");
                assert_eq!(t.phys, phys, "IOTLB at {dma:#x}");
                let w = vtd::translate(&*mem, root, caps, 8, dma, a).expect("live page");
                assert_eq!(w.phys, phys, "walk at {dma:#x}");
            }
        }
        for (iovas, a) in &dead {
            for &d in iovas {
                if !live_iovas.contains(&(d & !0xfff)) {
                    assert!(
                        tlb.translate(&*mem, root, caps, 8, d, *a).is_err(),
                        "stale translation at {d:#x}"
                    );
                }
            }
        }
    }
    for (mapping, _, _) in live {
        mapping.unmap().expect("teardown");
    }
    assert_eq!(checked.check_leaks(), Ok(()));
    assert!(
        checked.violations().is_empty(),
        "{:?}",
        checked.violations()
    );
    let inner = checked.inner();
    assert!(inner.is_idle());
    assert_eq!(inner.tables().pages().in_use(), 3, "table pages leaked");
});
