//! VT-d tables, mapper and walker without QEMU: every fault reason of the walker on
//! hand-made tables, the IOVA allocator's exclusions, the radix engine against a page
//! model, and seeded map / unmap / unlink sequences checked through an IOTLB model that
//! only sees the invalidations the mapper queued (so a forgotten one shows up as a stale
//! translation). `tests/qemu_vtd.rs` checks the same against QEMU's intel-iommu.

use std::collections::BTreeMap;

use physvec::map::vtd::{
    self, Access, Invalidation, PageList, VtdCaps, VtdConfig, VtdIotlb, VtdMapper, VtdTables,
    WalkError,
};
use physvec::map::{self as m, Attrs, DataDirection, DmaMapper, IoPerm, MapError};
use physvec::mem::{MemoryWriter, SparseMemory};
use physvec::{PhysAddr, PhysRange};
use proptest::prelude::*;

const ROOT: u64 = 0x10000;
const CTX: u64 = 0x11000;
const SL: u64 = 0x12000; // PML4 (or PDPT for 3 levels), then 0x13000.. lower levels
const SID: u16 = 0x0108; // bus 1, device 1, function 0

/// Hand-made 4-level tables mapping IOVA 0x4020_1000 to 0x5000 (R|W) through
/// PML4 0x12000 -> PDPT 0x13000 -> PD 0x14000 -> PT 0x15000.
fn tables() -> SparseMemory<physvec::Phys> {
    let mut m = SparseMemory::default();
    m.add_zeroed(physvec::PhysAddr::new(ROOT), 0x6000);
    let mut w = |a: u64, v: u64| {
        m.write(physvec::PhysAddr::new(a), &v.to_le_bytes())
            .unwrap()
    };
    w(ROOT + 16, CTX | 1); // bus 1
    w(CTX + 8 * 16 + 8, (5 << 8) | 2); // devfn 8: DID 5, AW 2
    w(CTX + 8 * 16, SL | 1);
    w(SL, 0x13003); // PML4[0]
    w(0x13000 + 8, 0x14003); // PDPT[1] (IOVA bit 30)
    w(0x14000 + 8, 0x15003); // PD[1] (bit 21)
    w(0x15000 + 8, 0x5003); // PT[1] (bit 12)
    m
}

const IOVA: u64 = 0x4020_1000;

fn set(m: &mut SparseMemory<physvec::Phys>, a: u64, v: u64) {
    m.write(physvec::PhysAddr::new(a), &v.to_le_bytes())
        .unwrap();
}

fn walk(
    m: &SparseMemory<physvec::Phys>,
    iova: u64,
    access: Access,
) -> Result<vtd::Translation, WalkError> {
    vtd::translate(m, ROOT, VtdCaps::qemu(48), SID, iova, access)
}

fn reason(r: Result<vtd::Translation, WalkError>) -> u8 {
    match r {
        Err(WalkError::Fault(f)) => f.reason.code(),
        other => panic!("expected a fault, got {other:?}"),
    }
}

#[test]
fn walker_translates_and_reports_every_fault_reason() {
    let m = tables();
    let t = walk(&m, IOVA + 0x123, Access::Write).unwrap();
    assert_eq!((t.phys, t.page_size, t.domain_id), (0x5123, 0x1000, 5));

    // Root entry: not present (other bus), reserved bits (hi, low bits).
    let r = vtd::translate(&m, ROOT, VtdCaps::qemu(48), 0x0208, IOVA, Access::Read);
    assert_eq!(reason(r), 1);
    let mut x = tables();
    set(&mut x, ROOT + 24, 1);
    assert_eq!(reason(walk(&x, IOVA, Access::Read)), 0xA);
    let mut x = tables();
    set(&mut x, ROOT + 16, CTX | 1 | 0x800);
    assert_eq!(reason(walk(&x, IOVA, Access::Read)), 0xA);
    // Context entry: not present, reserved, AW not in SAGAW, TT 01 / 11, pass-through.
    let r = vtd::translate(&m, ROOT, VtdCaps::qemu(48), 0x0110, IOVA, Access::Read);
    assert_eq!(reason(r), 2);
    let mut x = tables();
    set(&mut x, CTX + 8 * 16 + 8, (5 << 8) | 2 | 0x80);
    assert_eq!(reason(walk(&x, IOVA, Access::Read)), 0xB);
    let mut x = tables();
    set(&mut x, CTX + 8 * 16 + 8, (5 << 8) | 3);
    assert_eq!(reason(walk(&x, IOVA, Access::Read)), 3);
    let r = vtd::translate(&m, ROOT, VtdCaps::qemu(39), SID, IOVA, Access::Read);
    assert_eq!(reason(r), 3, "4-level context on a 39-bit IOMMU");
    for (tt, want) in [(1u64, Some(3u8)), (3, Some(3)), (2, None)] {
        let mut x = tables();
        set(&mut x, CTX + 8 * 16, SL | 1 | (tt << 2));
        match want {
            Some(c) => assert_eq!(reason(walk(&x, IOVA, Access::Read)), c),
            None => {
                let t = walk(&x, 0x1234_5678, Access::Write).unwrap();
                assert!(t.pass_through);
                assert_eq!(t.phys, 0x1234_5678);
            }
        }
    }
    // Address beyond AGAW.
    assert_eq!(reason(walk(&m, 1 << 48, Access::Read)), 4);
    // Not present at any level faults as a permission fault.
    assert_eq!(reason(walk(&m, IOVA + 0x1000, Access::Write)), 5);
    assert_eq!(reason(walk(&m, IOVA + (1 << 39), Access::Read)), 6);
    // Permissions ANDed down the walk: a PDE without W.
    let mut x = tables();
    set(&mut x, 0x14008, 0x15001);
    assert_eq!(reason(walk(&x, IOVA, Access::Write)), 5);
    assert!(walk(&x, IOVA, Access::Read).is_ok());
    // All-ones entries: 3 at the top level, 7 below.
    let mut x = tables();
    set(&mut x, SL, u64::MAX);
    assert_eq!(reason(walk(&x, IOVA, Access::Read)), 3);
    let mut x = tables();
    set(&mut x, 0x14008, u64::MAX);
    assert_eq!(reason(walk(&x, IOVA, Access::Read)), 7);
    // Reserved bits: SNP, an address bit above aw-bits, TM, PS in a PML4E, a
    // misaligned 2 MiB leaf; PS in a PTE and ignored bits are fine.
    for (addr, v, want) in [
        (0x15008, 0x5003 | vtd::SL_SNP, Some(0xC)),
        (0x15008, 0x5003 | 1 << 50, Some(0xC)),
        (0x15008, 0x5003 | vtd::SL_TM, Some(0xC)),
        (SL, 0x13003 | vtd::SL_PS, Some(0xC)),
        (0x14008, 0x20_1000 | 0x83, Some(0xC)),
        (0x15008, 0x5003 | vtd::SL_PS, None),
        (0x15008, 0x5003 | 1 << 52 | 1 << 63, None),
    ] {
        let mut x = tables();
        set(&mut x, addr, v);
        match want {
            Some(c) => assert_eq!(reason(walk(&x, IOVA, Access::Read)), c, "{v:#x}"),
            None => assert_eq!(walk(&x, IOVA, Access::Read).unwrap().phys, 0x5000),
        }
    }
    // A 2 MiB leaf and a 1 GiB leaf.
    let mut x = tables();
    set(&mut x, 0x14008, 0x60_0000 | 0x83);
    let t = walk(&x, IOVA + 5, Access::Read).unwrap();
    assert_eq!((t.phys, t.page_size), (0x60_1005, 2 << 20));
    let mut x = tables();
    set(&mut x, 0x13008, 0x4000_0000 | 0x81);
    let t = walk(&x, IOVA, Access::Read).unwrap();
    assert_eq!((t.phys, t.page_size), (0x4020_1000, 1 << 30));
    // A leaf covering the interrupt window: 0xE (a 1 GiB leaf at 3 GiB covers it).
    let mut x = tables();
    set(&mut x, 0x13008, 0xC000_0000 | 0x81);
    assert_eq!(reason(walk(&x, IOVA, Access::Read)), 0xE);
    // The interrupt window itself is not translated.
    assert_eq!(
        walk(&m, 0xFEE0_0000, Access::Write),
        Err(WalkError::InterruptWindow)
    );
    // FPD: qualified faults are not recorded, root faults still are.
    let mut x = tables();
    set(&mut x, CTX + 8 * 16, SL | 1 | vtd::CTX_FPD);
    match walk(&x, IOVA + 0x1000, Access::Read) {
        Err(WalkError::Fault(f)) => assert!(!f.recorded),
        other => panic!("{other:?}"),
    }
    // Memory the reader does not back.
    let mut x = tables();
    set(&mut x, 0x15008, 0);
    set(&mut x, 0x14008, 0x7700_0003);
    assert!(matches!(
        walk(&x, IOVA, Access::Read),
        Err(WalkError::Memory(_))
    ));
}

fn ram(pages: u64) -> (SparseMemory<physvec::Phys>, PageList) {
    let mut m = SparseMemory::default();
    m.add_zeroed(
        physvec::PhysAddr::new(0x100_0000),
        (pages * 0x1000) as usize,
    );
    (
        m,
        PageList::new((0..pages).map(|i| 0x100_0000 + i * 0x1000)),
    )
}

#[test]
fn allocator_never_hands_out_zero_the_window_or_beyond_aw() {
    let (mem, pages) = ram(8);
    let iommu = VtdMapper::new(mem, pages, VtdConfig::new(39, 8, 1)).unwrap();
    let mut spaces = Vec::new();
    // Fill the whole 39-bit space with 1 GiB, then 2 MiB, then 4 KiB reservations.
    for size in [1u64 << 30, 2 << 20, 0x1000] {
        while let Ok(Some(s)) = iommu.reserve(PhysAddr::new(0), size) {
            let (a, l) = (s.iova_base().as_u64(), s.reserved_len());
            assert_ne!(a, 0);
            assert!(a + l <= 1 << 39, "{a:#x}+{l:#x} beyond 2^39");
            assert!(
                a + l <= vtd::INTERRUPT_FIRST || a > vtd::INTERRUPT_LAST,
                "{a:#x}+{l:#x} overlaps the interrupt window"
            );
            spaces.push(s);
        }
    }
    assert_eq!(
        iommu.reserve(PhysAddr::new(0), 0x1000).unwrap_err(),
        MapError::IovaExhausted { size: 0x1000 }
    );
    let total: u64 = spaces.iter().map(|s| s.reserved_len()).sum();
    assert_eq!(total, (1 << 39) - 0x1000 - 0x10_0000);
    for s in spaces {
        iommu.free(s).unwrap();
    }
    assert!(iommu.is_idle());
}

#[test]
fn interrupt_window_is_never_a_leaf_target() {
    let (mem, pages) = ram(16);
    let mut t = VtdTables::new(mem, pages, VtdConfig::new(48, 8, 1)).unwrap();
    // A 1 GiB-aligned map over 3..4 GiB falls back to 2 MiB leaves except the window's.
    assert_eq!(
        t.map(1 << 30, 0xC000_0000, 1 << 30, IoPerm::READ),
        Err(MapError::InterruptWindow { phys: 0xFEE0_0000 })
    );
    assert_eq!(t.counts().mapped_bytes, 0, "rolled back");
    assert_eq!(t.counts().tables, 0);
    t.map(1 << 30, 0xC000_0000, 0x3EE0_0000, IoPerm::READ)
        .unwrap();
    assert_eq!(t.counts().leaves, [0, 503, 0]);
}

#[test]
fn too_few_table_pages_changes_nothing() {
    let (mem, pages) = ram(5); // root, context, PML4 + 2
    let mut t = VtdTables::new(mem, pages, VtdConfig::new(48, 8, 1)).unwrap();
    assert_eq!(
        t.map(0x1000, 0x5000, 0x1000, IoPerm::READ),
        Err(MapError::TablePagesExhausted)
    );
    assert_eq!((t.counts().tables, t.pages().in_use()), (0, 3));
    // A 1 GiB leaf needs only the PDPT.
    t.map(1 << 30, 1 << 30, 1 << 30, IoPerm::WRITE).unwrap();
    // Splitting it needs a PD and a PT: only one page is left.
    assert_eq!(t.unmap(1 << 30, 0x1000), Err(MapError::TablePagesExhausted));
    assert_eq!(
        t.lookup((1 << 30) + 0x5000).unwrap().map(|x| x.0),
        Some((1 << 30) + 0x5000)
    );
    assert_eq!(t.counts().mapped_bytes, 1 << 30, "translations unchanged");
}

/// A live I/O as the model knows it: (DMA address, physical address) per 4 KiB page
/// (the page-aligned bases), plus the direction.
#[derive(Clone, Debug)]
struct Model {
    pages: Vec<(u64, u64)>,
    dir: DataDirection,
}

fn access_for(dir: DataDirection) -> Access {
    if dir.device_writes() {
        Access::Write
    } else {
        Access::Read
    }
}

/// Runs `ops` (seeded) through a VtdMapper; after each step the IOTLB model sees only
/// the queued invalidations (all of them, or none when `drop_invalidations`), then every
/// live page must translate to its page and every page unmapped since must fault.
/// Returns the number of stale translations seen.
fn sequence(seed: u64, steps: usize, aw: u32, drop_invalidations: bool) -> usize {
    let mut rng = seed;
    let mut next = move |n: u64| {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) % n
    };
    let (mem, pages) = ram(256);
    let iommu = VtdMapper::new(mem, pages, VtdConfig::new(aw, 8, 9)).unwrap();
    let caps = VtdCaps::qemu(aw);
    let mut tlb = VtdIotlb::new();
    let mut live: Vec<(m::Mapping<'_, _, physvec::DmaVec>, Model)> = Vec::new();
    let mut dead: Vec<Model> = Vec::new();
    let mut phys_next = 0x1000_0000u64;
    let mut stale = 0;
    for _ in 0..steps {
        if live.is_empty() || next(3) > 0 && live.len() < 6 {
            let n = 1 + next(3);
            let mut segs = Vec::new();
            for _ in 0..n {
                let len = if next(6) == 0 {
                    2 << 20
                } else {
                    (1 + next(3)) * 0x1000
                };
                phys_next = (phys_next + len - 1) & !(len.min(2 << 20) - 1);
                segs.push(PhysRange::new(phys_next, len));
                phys_next += len + 0x1000;
            }
            let dir = [
                DataDirection::ToDevice,
                DataDirection::FromDevice,
                DataDirection::Bidirectional,
            ][next(3) as usize];
            let mapping = m::map(&iommu, &segs, dir).unwrap();
            let mut pages = Vec::new();
            let mut off = 0;
            for s in &segs {
                for p in (0..s.len()).step_by(0x1000) {
                    let dma = mapping.dma_addr_at(off + p).unwrap().as_u64();
                    pages.push((dma, s.addr().as_u64() + p));
                }
                off += s.len();
            }
            live.push((mapping, Model { pages, dir }));
        } else {
            let i = next(live.len() as u64) as usize;
            let (mapping, model) = live.swap_remove(i);
            mapping.unmap().unwrap();
            dead.push(model);
        }
        let invs = iommu.drain_invalidations();
        if !drop_invalidations {
            for inv in &invs {
                tlb.apply(inv);
            }
        }
        let mem = iommu.memory();
        let root = iommu.root_table();
        for (_, model) in &live {
            let a = access_for(model.dir);
            for &(dma, phys) in &model.pages {
                let t = tlb.translate(&*mem, root, caps, 8, dma, a);
                let w = vtd::translate(&*mem, root, caps, 8, dma, a).unwrap();
                if t.map(|t| t.phys) != Ok(phys) {
                    stale += 1;
                }
                assert_eq!(w.phys, phys, "walker disagrees with the writer at {dma:#x}");
            }
        }
        for model in &dead {
            let a = access_for(model.dir);
            for &(dma, _) in &model.pages {
                let live_now = live
                    .iter()
                    .any(|(_, l)| l.pages.iter().any(|&(d, _)| d == dma));
                if live_now {
                    continue;
                }
                if tlb.translate(&*mem, root, caps, 8, dma, a).is_ok() {
                    stale += 1;
                }
            }
        }
        dead.retain(|d| d.pages.len() < 2048);
    }
    for (mapping, _) in live {
        mapping.unmap().unwrap();
    }
    assert!(iommu.is_idle());
    assert_eq!(iommu.tables().pages().in_use(), 3, "table pages leaked");
    stale
}

#[test]
fn mapper_sequences_leave_no_stale_translation() {
    for seed in 0..3 {
        assert_eq!(sequence(seed, 60, 48, false), 0, "seed {seed}");
        assert_eq!(sequence(seed, 60, 39, false), 0, "seed {seed}");
    }
}

#[test]
fn a_forgotten_invalidation_is_caught() {
    // The same check with the invalidations dropped must see stale translations.
    let stale: usize = (0..3).map(|seed| sequence(seed, 60, 48, true)).sum();
    assert!(stale > 0, "dropping every invalidation went unnoticed");
}

#[test]
fn partial_unlink_splits_and_invalidates_the_range() {
    let (mem, pages) = ram(16);
    let iommu = VtdMapper::new(mem, pages, VtdConfig::new(48, 8, 2)).unwrap();
    let dir = DataDirection::Bidirectional;
    let mut s = iommu.reserve(PhysAddr::new(0), 2 << 20).unwrap().unwrap();
    iommu
        .link(
            &mut s,
            PhysRange::new(0x4000_0000, 2 << 20),
            0,
            dir,
            Attrs::empty(),
        )
        .unwrap();
    let mut s = iommu.sync(s, 0, 2 << 20).unwrap();
    let base = s.addr().as_u64();
    assert_eq!(base % (2 << 20), 0);
    assert_eq!(iommu.tables().counts().leaves, [0, 1, 0]);
    iommu.drain_invalidations();
    iommu
        .unlink(&mut s, 0x3000, 0x2000, dir, Attrs::empty())
        .unwrap();
    assert_eq!(iommu.tables().counts().leaves, [510, 0, 0]);
    assert_eq!(
        iommu.drain_invalidations(),
        [Invalidation::page(2, base + 0x3000, 0x2000, 18)]
    );
    let caps = VtdCaps::qemu(48);
    let mem = iommu.memory();
    let root = iommu.root_table();
    assert!(vtd::translate(&*mem, root, caps, 8, base + 0x3000, Access::Read).is_err());
    let t = vtd::translate(&*mem, root, caps, 8, base + 0x5000, Access::Read).unwrap();
    assert_eq!((t.phys, t.page_size), (0x4000_5000, 0x1000));
    drop(mem);
    iommu.destroy(s, dir, Attrs::empty()).unwrap();
    assert!(iommu.is_idle());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// The radix engine (through the VT-d format) against a page model: random maps and
    /// unmaps with mixed leaf sizes; lookups agree and every table is freed at the end.
    #[test]
    fn radix_engine_matches_a_page_model(ops in proptest::collection::vec(
        (any::<bool>(), 0u64..64, 1u64..1100, 0u64..4), 1..24)) {
        let (mem, pages) = ram(128);
        let mut t = VtdTables::new(mem, pages, VtdConfig::new(48, 8, 1)).unwrap();
        let mut model: BTreeMap<u64, u64> = BTreeMap::new(); // iova page -> phys page
        for (is_map, start, len, phys_sel) in ops {
            let iova = start * (1 << 20); // 1 MiB steps: some ranges 2 MiB-aligned
            let len = len * 0x1000;
            if is_map {
                let phys = 0x1_0000_0000 + phys_sel * (1 << 21) + start * (1 << 20);
                let free = (0..len / 0x1000).all(|k| !model.contains_key(&(iova + k * 0x1000)));
                let r = t.map(iova, phys, len, IoPerm::READ);
                prop_assert_eq!(r.is_ok(), free, "{:?}", r);
                if free {
                    for k in 0..len / 0x1000 {
                        model.insert(iova + k * 0x1000, phys + k * 0x1000);
                    }
                }
            } else {
                let mapped = (0..len / 0x1000).all(|k| model.contains_key(&(iova + k * 0x1000)));
                let r = t.unmap(iova, len);
                prop_assert_eq!(r.is_ok(), mapped, "{:?}", r);
                if mapped {
                    for k in 0..len / 0x1000 {
                        model.remove(&(iova + k * 0x1000));
                    }
                }
            }
            prop_assert_eq!(t.counts().mapped_bytes, model.len() as u64 * 0x1000);
        }
        for probe in (0..70u64 << 20).step_by(0x3_3000) {
            let page = probe & !0xfff;
            let got = t.lookup(probe).unwrap().map(|x| x.0);
            prop_assert_eq!(got, model.get(&page).map(|p| p + (probe & 0xfff)));
        }
        let n = t.unmap_present(0, 1 << 40).unwrap();
        prop_assert_eq!(n, model.len() as u64 * 0x1000);
        prop_assert_eq!(t.counts().tables, 0);
        prop_assert_eq!(t.pages().in_use(), 3);
    }
}
