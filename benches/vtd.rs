//! VT-d benches: the cost of linking into real VT-d tables (caller memory through
//! `MemoryWriter`, table pages from a `PageSource`) against the software IOMMU's heap
//! radix tree, per 4 KiB page and per 2 MiB leaf, and the walker's cost per translation.

use std::hint::black_box;

use criterion::Criterion;
use physvec::map::vtd::{self, Access, PageList, VtdCaps, VtdConfig, VtdMapper};
use physvec::map::{Attrs, DataDirection, DmaMapper, IommuConfig, SoftIommu};
use physvec::mem::SparseMemory;
use physvec::{PageSize, PhysAddr, PhysRange};

const DIR: DataDirection = DataDirection::FromDevice;

fn vtd_mapper() -> VtdMapper<SparseMemory<physvec::Phys>, PageList> {
    let n = 64u64;
    let mut mem = SparseMemory::default();
    mem.add_zeroed(physvec::PhysAddr::new(0x100_0000), (n * 4096) as usize);
    let pages = PageList::new((0..n).map(|i| 0x100_0000 + i * 4096));
    VtdMapper::new(mem, pages, VtdConfig::new(48, 8, 1)).expect("tables")
}

/// Reserve, link `n` separate 4 KiB pages (or one range), sync, destroy.
fn one_io<M: DmaMapper>(m: &M, phys: &[PhysRange]) {
    let total: u64 = phys.iter().map(|p| p.len()).sum();
    let mut s = m
        .reserve(PhysAddr::new(0), total)
        .expect("reserve")
        .expect("IOVA space");
    let mut off = 0;
    for p in phys {
        m.link(&mut s, *p, off, DIR, Attrs::empty()).expect("link");
        off += p.len();
    }
    let s = m.sync(s, 0, total).map_err(|e| e.error).expect("sync");
    m.destroy(s, DIR, Attrs::empty()).expect("destroy");
}

pub fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("vtd");
    let soft = SoftIommu::new(IommuConfig::new(PageSize::SIZE_4K)).expect("soft iommu");
    let hw = vtd_mapper();
    // 32 scattered 4 KiB pages per I/O: link cost per page (divide by 32).
    let pages: Vec<PhysRange> = (0..32u64)
        .map(|i| PhysRange::new(0x4000_0000 + i * 0x3000, 0x1000))
        .collect();
    g.bench_function("link_4k_x32/soft_iommu", |b| {
        b.iter(|| one_io(&soft, black_box(&pages)))
    });
    g.bench_function("link_4k_x32/vtd_tables", |b| {
        b.iter(|| {
            one_io(&hw, black_box(&pages));
            hw.drain_invalidations()
        })
    });
    // One 2 MiB-aligned 2 MiB range: one 2 MiB leaf.
    let big = [PhysRange::new(0x8000_0000, 2 << 20)];
    g.bench_function("link_2m_leaf/soft_iommu", |b| {
        b.iter(|| one_io(&soft, black_box(&big)))
    });
    g.bench_function("link_2m_leaf/vtd_tables", |b| {
        b.iter(|| {
            one_io(&hw, black_box(&big));
            hw.drain_invalidations()
        })
    });
    // Walker: one translation through 4 levels to a 4 KiB leaf and to a 2 MiB leaf.
    let mut s = hw
        .reserve(PhysAddr::new(0), 0x1000)
        .expect("reserve")
        .expect("space");
    hw.link(&mut s, pages[0], 0, DIR, Attrs::empty())
        .expect("link");
    let iova4k = s.addr().as_u64();
    let mut s2 = hw
        .reserve(PhysAddr::new(0), 2 << 20)
        .expect("reserve")
        .expect("space");
    hw.link(&mut s2, big[0], 0, DIR, Attrs::empty())
        .expect("link");
    let iova2m = s2.addr().as_u64();
    let caps = VtdCaps::qemu(48);
    let root = hw.root_table();
    {
        let mem = hw.memory();
        g.bench_function("translate/4k_leaf", |b| {
            b.iter(|| {
                vtd::translate(
                    &*mem,
                    root,
                    caps,
                    8,
                    black_box(iova4k + 0x10),
                    Access::Write,
                )
            })
        });
        g.bench_function("translate/2m_leaf", |b| {
            b.iter(|| {
                vtd::translate(
                    &*mem,
                    root,
                    caps,
                    8,
                    black_box(iova2m + 0x1234),
                    Access::Write,
                )
            })
        });
    }
    hw.destroy(s, DIR, Attrs::empty()).expect("destroy");
    hw.destroy(s2, DIR, Attrs::empty()).expect("destroy");
    g.finish();
}
