//! The physvec benchmark suite: the kernel's legacy scatterlist data path (a faithful
//! model in `legacy/`) against physvec, on the same I/Os and the same kind of software
//! IOMMU, plus micro benches. See BENCHMARKS.md for the figures and how to run it.
//!
//! - Full run (manual): `cargo bench --bench main` (criterion options after `--`, e.g.
//!   `-- --warm-up-time 1 --measurement-time 3`). Prints the BENCHMARKS.md tables at the
//!   end.
//! - Quick mode (CI): `cargo bench --bench main -- --test` or `cargo test --bench main`:
//!   every bench runs once, and the output checks and allocation targets are asserted.

mod check;
mod kdomain;
mod legacy;
mod micro;
mod pipeline;
mod report;
mod vtd;
mod workloads;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use criterion::{BenchmarkId, Criterion};
use physvec::map::{
    Attrs, DataDirection, DirectMapper, DmaMapper, P2pMapType, P2pProviders, P2pRegion, SoftIommu,
};
use physvec::{DmaAddr, DmaConstraints, PhysRange};

use kdomain::KernelDomain;
use legacy::blk::{BioVec, QueueLimits};
use legacy::dma::{Device, DmaOps, IommuDomain, IOMMU_READ, IOMMU_WRITE};
use legacy::mm::{DevPagemap, Mem, P2pMap, PAGE_SHIFT};
use legacy::nvme::NvmeDev;
use legacy::{LegacyQueue, Pdu, Request};
use pipeline::{PvQueue, PRP_PAGES_BUS, SGL_PAGES_BUS};
use workloads::{Dptr, Workload, BAR, BUS_OFFSET};

/// Counts heap allocations (and reallocations) while [`COUNTING`] is on.
struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Heap allocations per call of `f`, averaged over `n` calls (after one warm-up call).
pub fn allocs_per_call(n: u64, mut f: impl FnMut()) -> f64 {
    f();
    ALLOCS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    for _ in 0..n {
        f();
    }
    COUNTING.store(false, Ordering::Relaxed);
    ALLOCS.load(Ordering::Relaxed) as f64 / n as f64
}

/// With or without an IOMMU.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Through the software IOMMU.
    Iommu,
    /// Direct mapping (`dma = phys`).
    Direct,
}

impl Mode {
    /// Group-name suffix.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Iommu => "iommu",
            Mode::Direct => "direct",
        }
    }
}

/// The driver's coherent DMA memory: `[phys, len)`.
const COHERENT: (u64, u64) = (0x1000_0000, 0x1_0000);

/// NVMe's queue limits: `max_segment_size = UINT_MAX`, the PCI default 4 GiB boundary.
const LIMITS: QueueLimits = QueueLimits {
    max_segment_size: u32::MAX,
    seg_boundary_mask: 0xffff_ffff,
};

/// The same limits as physvec constraints.
fn constraints() -> DmaConstraints {
    DmaConstraints::new()
        .with_max_segment_size(u32::MAX as u64)
        .with_segment_boundary_mask(0xffff_ffff)
}

/// Everything the benches share.
pub struct Env {
    mem: Mem,
    kdom: KernelDomain,
    iommu: SoftIommu,
    direct: DirectMapper,
    regions: [P2pRegion; 1],
    workloads: Vec<Workload>,
    bvecs: Vec<Vec<BioVec>>,
}

impl Env {
    fn new() -> Self {
        let mem = Mem::new(
            workloads::VMEMMAP_PFNS,
            vec![DevPagemap {
                start: BAR.0,
                end: BAR.0 + BAR.1,
                map: P2pMap::BusAddr {
                    bus_off: BUS_OFFSET,
                },
            }],
        );
        let workloads = workloads::all();
        let bvecs = workloads
            .iter()
            .map(|w| {
                w.phys
                    .iter()
                    .map(|r| BioVec {
                        bv_page: mem.pfn_to_page(r.addr().as_u64() >> PAGE_SHIFT),
                        bv_offset: (r.addr().as_u64() & 0xfff) as u32,
                        bv_len: r.len() as u32,
                    })
                    .collect()
            })
            .collect();
        Self {
            mem,
            kdom: KernelDomain::new_4k(),
            iommu: SoftIommu::new_4k(),
            direct: DirectMapper::new(0, physvec::DmaMask::BITS_64),
            regions: [P2pRegion {
                bar: PhysRange::new(BAR.0, BAR.1),
                map: P2pMapType::BusAddr {
                    bus_offset: BUS_OFFSET,
                },
            }],
            workloads,
            bvecs,
        }
        .with_coherent_mappings()
    }

    /// The driver's long-lived coherent DMA memory (`dma_alloc_coherent`: submission and
    /// completion queues, the PRP pools), mapped in both IOMMUs for the device's lifetime
    /// as on a real system. Without it every I/O would build and tear down the upper
    /// page-table levels, which no real IOMMU domain does.
    fn with_coherent_mappings(self) -> Self {
        let phys = PhysRange::new(COHERENT.0, COHERENT.1);
        let iova = self.kdom.alloc_iova(COHERENT.1, u64::MAX);
        self.kdom
            .map(iova, COHERENT.0, COHERENT.1, IOMMU_READ | IOMMU_WRITE)
            .expect("coherent mapping");
        self.iommu
            .map_phys(phys, DataDirection::Bidirectional, Attrs::empty())
            .expect("coherent mapping");
        self
    }

    /// Both IOMMUs hold exactly the coherent mappings (nothing leaked by an I/O).
    fn assert_iommus_quiescent(&self, what: &str, kdom_free: u64) {
        assert_eq!(
            self.kdom.mapped_bytes(),
            COHERENT.1,
            "{what}: legacy left mappings"
        );
        assert_eq!(
            self.kdom.iova_free_bytes(),
            kdom_free,
            "{what}: legacy leaked IOVA"
        );
        let s = self.iommu.stats();
        assert_eq!(s.mapped_bytes, COHERENT.1, "{what}: physvec left mappings");
        assert_eq!(s.allocations, 1, "{what}: physvec leaked IOVA");
    }

    fn legacy_queue(&self, mode: Mode) -> LegacyQueue<'_, KernelDomain> {
        LegacyQueue {
            mem: &self.mem,
            dev: Device {
                ops: match mode {
                    Mode::Iommu => DmaOps::Iommu(&self.kdom),
                    Mode::Direct => DmaOps::Direct,
                },
                dma_mask: u64::MAX,
                seg_boundary_mask: 0xffff_ffff,
                max_seg_size: u32::MAX,
            },
            lim: LIMITS,
            nvme: NvmeDev::new(),
        }
    }

    fn pv_queue<'a, M>(&'a self, mapper: &'a M) -> PvQueue<'a, M> {
        PvQueue::new(mapper, P2pProviders::new(&self.regions))
    }

    /// Translate a DMA address the way the device's bus would: bus addresses of the
    /// peer BAR directly, everything else through `iommu` (or 1:1 without one).
    fn bus_to_phys(dma: u64, iommu: Option<&dyn Fn(u64) -> Option<u64>>) -> Option<u64> {
        if (BAR.0 + BUS_OFFSET..BAR.0 + BAR.1 + BUS_OFFSET).contains(&dma) {
            return Some(dma - BUS_OFFSET);
        }
        match iommu {
            Some(t) => t(dma),
            None => Some(dma),
        }
    }
}

/// `blk_rq_nr_phys_segments()`: bvec pieces after splitting at the segment boundary and
/// max segment size (what the block layer counted when it built the request).
fn nr_phys_segments(phys: &[PhysRange]) -> u32 {
    let mask = LIMITS.seg_boundary_mask;
    let mut n = 0;
    for r in phys {
        let (mut a, mut left) = (r.addr().as_u64(), r.len());
        while left > 0 {
            let room = (mask - (a & mask) + 1).min(LIMITS.max_segment_size as u64);
            let l = left.min(room);
            a += l;
            left -= l;
            n += 1;
        }
    }
    n
}

fn request<'a>(w: &Workload, bios: &'a [&'a [BioVec]]) -> Request<'a> {
    Request {
        bios,
        nr_phys_segments: nr_phys_segments(&w.phys),
        payload: w.total() as u32,
        use_sgl: w.dptr == Dptr::Sgl,
        prot: IOMMU_READ,
    }
}

/// Read legacy list memory by bus address.
fn legacy_read(nvme: &NvmeDev) -> impl Fn(u64) -> Vec<u64> + '_ {
    move |bus| {
        let (pool, base, bytes) = if bus >= 0x7f00_0000 {
            (&nvme.prp_small_pool, 0x7f00_0000, 256)
        } else {
            (&nvme.prp_page_pool, 0x7e00_0000, 4096)
        };
        let i = ((bus - base) / bytes) as u32;
        let off = ((bus - base) % bytes / 8) as usize;
        pool.block_ref(i)[off..].to_vec()
    }
}

/// Read physvec list memory by bus address.
fn pv_read(lists: pipeline::Lists<'_>) -> impl Fn(u64) -> Vec<u64> + '_ {
    move |bus| {
        if bus >= PRP_PAGES_BUS {
            let i = ((bus - PRP_PAGES_BUS) / 4096) as usize;
            let off = ((bus - PRP_PAGES_BUS) % 4096 / 8) as usize;
            lists.0[i][off..].to_vec()
        } else {
            let i = ((bus - SGL_PAGES_BUS) / 4096) as usize;
            lists.1[i]
                .iter()
                .flat_map(|d| {
                    let b = d.to_bytes();
                    [
                        u64::from_le_bytes(b[..8].try_into().unwrap_or_default()),
                        u64::from_le_bytes(b[8..].try_into().unwrap_or_default()),
                    ]
                })
                .collect()
        }
    }
}

/// Check both pipelines' output for every workload and mode (panics on a mismatch), and
/// that both leave their IOMMU idle.
fn verify_all(env: &Env) {
    let kdom_free = env.kdom.iova_free_bytes();
    for mode in [Mode::Iommu, Mode::Direct] {
        for (w, bv) in env.workloads.iter().zip(&env.bvecs) {
            let bios = [&bv[..]];
            let rq = request(w, &bios);
            let mut q = env.legacy_queue(mode);
            let mut pdu = Pdu::default();
            let what = format!("legacy/{}/{}", mode.name(), w.id);
            legacy::legacy_io(&mut q, &rq, &mut pdu, |d, nvme, _, _| {
                let t = |a: u64| env.kdom.translate(a);
                let tr: Option<&dyn Fn(u64) -> Option<u64>> = (mode == Mode::Iommu).then_some(&t);
                check::verify(&what, w.dptr, d.0, &w.phys, &legacy_read(nvme), &|a| {
                    Env::bus_to_phys(a, tr)
                });
            })
            .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(
                q.nvme.prp_page_pool.free_blocks(),
                16,
                "{what}: leaked list page"
            );
            assert_eq!(
                q.nvme.prp_small_pool.free_blocks(),
                16,
                "{what}: leaked list block"
            );

            let what = format!("physvec/{}/{}", mode.name(), w.id);
            let check = |d: [u64; 2], q: pipeline::Lists<'_>, _| {
                let t = |a: u64| env.iommu.translate(DmaAddr::new(a)).map(|p| p.as_u64());
                let tr: Option<&dyn Fn(u64) -> Option<u64>> = (mode == Mode::Iommu).then_some(&t);
                check::verify(&what, w.dptr, d, &w.phys, &pv_read(q), &|a| {
                    Env::bus_to_phys(a, tr)
                });
            };
            let req = pipeline::Req::new(&w.phys);
            match mode {
                Mode::Iommu => {
                    let mut q = env.pv_queue(&env.iommu);
                    pipeline::physvec_io(&mut q, &req, w.dptr, check)
                }
                Mode::Direct => {
                    let mut q = env.pv_queue(&env.direct);
                    pipeline::physvec_io(&mut q, &req, w.dptr, |d, q, n| {
                        check::verify(&what, w.dptr, d, &w.phys, &pv_read(q), &|a| {
                            Env::bus_to_phys(a, None)
                        });
                        let _ = n;
                    })
                }
            }
            .unwrap_or_else(|e| panic!("{what}: {e}"));
            env.assert_iommus_quiescent(&what, kdom_free);
        }
    }
}

fn bench_physvec<M: DmaMapper>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    env: &Env,
    mapper: &M,
    w: &Workload,
) {
    let mut q = env.pv_queue(mapper);
    let req = pipeline::Req::new(&w.phys);
    g.bench_function(BenchmarkId::new("physvec", w.id), |b| {
        b.iter(|| {
            pipeline::physvec_io(&mut q, black_box(&req), w.dptr, pipeline::no_inspect)
                .expect("physvec I/O")
        })
    });
    // The same pipeline entered from a second, out-of-line call site: its speed must not
    // depend on being inlined into one caller (issue 13: within 10 %).
    g.bench_function(BenchmarkId::new("physvec_site2", w.id), |b| {
        b.iter(|| site2(&mut q, black_box(&req), w.dptr))
    });
}

/// A second call site of the pipeline, never inlined into the bench loop.
#[inline(never)]
fn site2<M: DmaMapper>(q: &mut PvQueue<'_, M>, req: &pipeline::Req<'_>, dptr: Dptr) {
    pipeline::physvec_io(q, req, dptr, pipeline::no_inspect).expect("physvec I/O");
}

fn bench_io(c: &mut Criterion, env: &Env) {
    for mode in [Mode::Iommu, Mode::Direct] {
        let mut g = c.benchmark_group(format!("io_{}", mode.name()));
        for (w, bv) in env.workloads.iter().zip(&env.bvecs) {
            let bios = [&bv[..]];
            let rq = request(w, &bios);
            let mut q = env.legacy_queue(mode);
            let mut pdu = Pdu::default();
            g.bench_function(BenchmarkId::new("legacy", w.id), |b| {
                b.iter(|| {
                    legacy::legacy_io(&mut q, black_box(&rq), &mut pdu, |_, _, _, _| {})
                        .expect("legacy I/O")
                })
            });
            match mode {
                Mode::Iommu => bench_physvec(&mut g, env, &env.iommu, w),
                Mode::Direct => bench_physvec(&mut g, env, &env.direct, w),
            }
        }
        g.finish();
    }
}

/// One legacy I/O, out of line: what `PHYSVEC_CALLGRIND` counts.
#[inline(never)]
fn cg_legacy(q: &mut LegacyQueue<'_, KernelDomain>, rq: &Request<'_>, pdu: &mut Pdu) {
    legacy::legacy_io(q, black_box(rq), pdu, |_, _, _, _| {}).expect("legacy I/O");
}

/// One physvec I/O, out of line: what `PHYSVEC_CALLGRIND` counts.
#[inline(never)]
fn cg_physvec<M: DmaMapper>(q: &mut PvQueue<'_, M>, req: &pipeline::Req<'_>, dptr: Dptr) {
    pipeline::physvec_io(q, black_box(req), dptr, pipeline::no_inspect).expect("physvec I/O");
}

/// The same I/O from a second out-of-line site, with the whole pipeline forced inline
/// into it (`PHYSVEC_CALLGRIND_SITE=2`): its instruction count against `cg_physvec`'s
/// (where the compiler outlines `physvec_io`, called from seven places) shows the
/// pipeline's speed does not hang on the inliner.
#[inline(never)]
fn cg_physvec_site2<M: DmaMapper>(q: &mut PvQueue<'_, M>, req: &pipeline::Req<'_>, dptr: Dptr) {
    pipeline::physvec_io_inlined(q, black_box(req), dptr, pipeline::no_inspect)
        .expect("physvec I/O");
}

/// `PHYSVEC_CALLGRIND=<mode>/<workload>`: run 1000 I/Os of each pipeline through
/// `cg_legacy` / `cg_physvec` and exit, for instruction counts that do not depend on
/// the machine's load:
///
/// ```text
/// PHYSVEC_CALLGRIND=direct/2m_512pages valgrind --tool=callgrind \
///     --toggle-collect='main::cg_legacy*' target/release/deps/main-*   # then cg_physvec*
/// ```
fn callgrind_mode(env: &Env, what: &str) {
    let (mode, id) = what.split_once('/').expect("<mode>/<workload>");
    let mode = if mode == "iommu" {
        Mode::Iommu
    } else {
        Mode::Direct
    };
    let i = env
        .workloads
        .iter()
        .position(|w| w.id == id)
        .expect("workload");
    let (w, bv) = (&env.workloads[i], &env.bvecs[i]);
    let bios = [&bv[..]];
    let rq = request(w, &bios);
    let mut q = env.legacy_queue(mode);
    let mut pdu = Pdu::default();
    let req = pipeline::Req::new(&w.phys);
    for _ in 0..1000 {
        cg_legacy(&mut q, &rq, &mut pdu);
    }
    let site2 = std::env::var("PHYSVEC_CALLGRIND_SITE").is_ok_and(|s| s == "2");
    match mode {
        Mode::Iommu => {
            let mut pq = env.pv_queue(&env.iommu);
            for _ in 0..1000 {
                if site2 {
                    cg_physvec_site2(&mut pq, &req, w.dptr);
                } else {
                    cg_physvec(&mut pq, &req, w.dptr);
                }
            }
        }
        Mode::Direct => {
            let mut pq = env.pv_queue(&env.direct);
            for _ in 0..1000 {
                if site2 {
                    cg_physvec_site2(&mut pq, &req, w.dptr);
                } else {
                    cg_physvec(&mut pq, &req, w.dptr);
                }
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Ok(what) = std::env::var("PHYSVEC_CALLGRIND") {
        callgrind_mode(&Env::new(), &what);
        return;
    }
    let full = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    let env = Env::new();
    verify_all(&env);
    let rows = report::measure(&env);
    report::print_counts(&rows);
    report::assert_targets(&rows);

    let mut c = Criterion::default().configure_from_args();
    bench_io(&mut c, &env);
    micro::benches(&mut c);
    micro::benches_rdma_decode(&mut c);
    vtd::benches(&mut c);
    c.final_summary();

    let paired = report::paired(&env, if full { 31 } else { 1 });
    if full {
        report::print(&rows);
        report::print_paired(&paired);
    }
}
