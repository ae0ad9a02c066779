//! Allocation and metadata accounting per I/O, and the BENCHMARKS.md tables (medians read
//! back from criterion's `estimates.json`).

use std::path::PathBuf;

use crate::legacy::scatterlist::{sg_table_footprint, INLINE_SG_CNT};
use crate::legacy::{self, Pdu};
use crate::pipeline::{self, PvQueue};
use crate::{allocs_per_call, micro, request, Env, Mode};

/// Bytes of one physvec range (`PhysRange`/`DmaRange`, like the kernel's `phys_vec`).
const RANGE_BYTES: usize = 16;

/// One workload in one mode.
pub struct Row {
    pub mode: Mode,
    pub id: &'static str,
    pub what: &'static str,
    pub legacy_allocs: f64,
    pub physvec_allocs: f64,
    /// Allocations the software IOMMU's page table makes for the same I/O on its own
    /// (reserve, link every range, sync, destroy): tables created and freed per I/O.
    pub iommu_table_allocs: f64,
    /// Scatterlist entries initialised (data + chain slots) × 32 B.
    pub legacy_meta: usize,
    /// Inline chunk + sg_pool objects at slab size.
    pub legacy_held: usize,
    /// DMA ranges × 16 B: what lives until completion.
    pub physvec_meta: usize,
    /// Physical ranges + DMA ranges × 16 B: the peak during submission (the PhysVec is
    /// dropped once mapped).
    pub physvec_peak: usize,
    /// Range storage of the PhysVec and the DmaVec (inline or heap).
    pub physvec_held: usize,
    pub legacy_dma_segments: u32,
    pub physvec_dma_segments: usize,
}

/// Run every workload in both modes with the allocation counter on.
pub fn measure(env: &Env) -> Vec<Row> {
    let mut rows = Vec::new();
    for mode in [Mode::Iommu, Mode::Direct] {
        for (w, bv) in env.workloads.iter().zip(&env.bvecs) {
            let bios = [&bv[..]];
            let rq = request(w, &bios);
            let mut q = env.legacy_queue(mode);
            let mut pdu = Pdu::default();
            let mut legacy_segs = 0;
            let legacy_allocs = allocs_per_call(20, || {
                let (_, n) =
                    legacy::legacy_io(&mut q, &rq, &mut pdu, |_, _, _, _| {}).expect("legacy");
                legacy_segs = n;
            });
            let mut kept = pipeline::Kept::default();
            let req = pipeline::Req::new(&w.phys);
            let physvec_allocs = match mode {
                Mode::Iommu => {
                    let mut q = env.pv_queue(&env.iommu);
                    allocs_per_call(20, || {
                        kept = pipeline::physvec_io(&mut q, &req, w.dptr, pipeline::no_inspect)
                            .expect("physvec")
                            .1;
                    })
                }
                Mode::Direct => {
                    let mut q: PvQueue<'_, _> = env.pv_queue(&env.direct);
                    allocs_per_call(20, || {
                        kept = pipeline::physvec_io(&mut q, &req, w.dptr, pipeline::no_inspect)
                            .expect("physvec")
                            .1;
                    })
                }
            };
            let iommu_table_allocs = match req.phys.first() {
                Some(&first)
                    if mode == Mode::Iommu && req.mergeable && !w.id.starts_with("p2p") =>
                {
                    use physvec::map::{Attrs, DataDirection, DmaMapper};
                    let (iommu, dir) = (&env.iommu, DataDirection::ToDevice);
                    allocs_per_call(20, || {
                        let mut s = iommu
                            .reserve(first.addr(), req.total)
                            .expect("reserve")
                            .expect("iova");
                        let mut off = 0;
                        for &r in req.phys {
                            iommu
                                .link(&mut s, r, off, dir, Attrs::empty())
                                .expect("link");
                            off += r.len();
                        }
                        let s = iommu
                            .sync(s, 0, req.total)
                            .map_err(|e| e.error)
                            .expect("sync");
                        iommu.destroy(s, dir, Attrs::empty()).expect("destroy");
                    })
                }
                _ => 0.0,
            };
            let (entries, legacy_held) = sg_table_footprint(rq.nr_phys_segments, INLINE_SG_CNT);
            rows.push(Row {
                mode,
                id: w.id,
                what: w.what,
                legacy_allocs,
                physvec_allocs,
                iommu_table_allocs,
                legacy_meta: entries as usize * legacy::scatterlist::SG_SIZE,
                legacy_held,
                physvec_meta: kept.bytes(),
                // No physical list: the pages stream through.
                physvec_peak: kept.bytes(),
                physvec_held: pipeline::REQUEST_RANGES * RANGE_BYTES,
                legacy_dma_segments: legacy_segs,
                physvec_dma_segments: kept.ranges,
            });
        }
    }
    rows
}

/// Quick-mode assertions of the targets that do not depend on timing: no heap
/// allocation per I/O at any size (issue 13), and at most half the legacy metadata
/// bytes held until completion (peak at most the legacy bytes).
pub fn assert_targets(rows: &[Row]) {
    for r in rows {
        let name = format!("{}/{}", r.mode.name(), r.id);
        // The pipeline allocates nothing; the software IOMMU's page table may create
        // and free tables per I/O (its rewrite is another issue): count only those.
        assert_eq!(
            r.physvec_allocs, r.iommu_table_allocs,
            "{name}: the streaming pipeline allocated per I/O"
        );
        assert!(
            2 * r.physvec_meta <= r.legacy_meta,
            "{name}: more than half the legacy metadata"
        );
        assert!(
            r.physvec_peak <= r.legacy_meta,
            "{name}: peak metadata above legacy"
        );
    }
}

/// Where criterion writes its results: `$CRITERION_HOME`, else `<target>/criterion`
/// next to this executable's `target/<profile>/deps/`.
fn criterion_dir() -> PathBuf {
    if let Some(h) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(h);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    exe.ancestors()
        .nth(3)
        .map(|t| t.join("criterion"))
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

/// Median in ns of bench `group/id` from the last run, if any.
pub fn median_ns(group: &str, id: &str) -> Option<f64> {
    let p = criterion_dir()
        .join(group)
        .join(id)
        .join("new/estimates.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn ns(v: Option<f64>) -> String {
    match v {
        Some(x) if x >= 10_000.0 => format!("{:.1} µs", x / 1000.0),
        Some(x) if x >= 1000.0 => format!("{:.2} µs", x / 1000.0),
        Some(x) => format!("{x:.0} ns"),
        None => "-".into(),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "-".into(),
    }
}

/// Allocation / metadata table only (quick mode).
pub fn print_counts(rows: &[Row]) {
    println!("\nper-I/O counts (mode/workload: allocs legacy/physvec, metadata B legacy/physvec, DMA segments legacy / DMA ranges physvec keeps)");
    for r in rows {
        println!(
            "  {}/{}: allocs {:.1}/{:.1} (IOMMU page table alone: {:.1}), metadata {}/{} B (physvec peak {} B), DMA segs/kept {}/{}",
            r.mode.name(),
            r.id,
            r.legacy_allocs,
            r.physvec_allocs,
            r.iommu_table_allocs,
            r.legacy_meta,
            r.physvec_meta,
            r.physvec_peak,
            r.legacy_dma_segments,
            r.physvec_dma_segments
        );
    }
}

/// The BENCHMARKS.md tables.
pub fn print(rows: &[Row]) {
    println!("\n## Results (medians from this run)\n");
    for mode in [Mode::Iommu, Mode::Direct] {
        println!(
            "### {}\n",
            match mode {
                Mode::Iommu => "Through the software IOMMU",
                Mode::Direct => "Direct mapping (no IOMMU)",
            }
        );
        println!("| workload | legacy | physvec | speed-up | allocs/I/O legacy | allocs/I/O physvec | metadata B legacy | metadata B physvec (peak) | held B legacy | held B physvec | DMA segs legacy / ranges kept physvec |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in rows.iter().filter(|r| r.mode == mode) {
            let g = format!("io_{}", mode.name());
            let l = median_ns(&g, &format!("legacy/{}", r.id));
            let p = median_ns(&g, &format!("physvec/{}", r.id));
            println!(
                "| {} | {} | {} | **{}** | {:.1} | {:.1} | {} | {} ({}) | {} | {} | {} / {} |",
                r.what,
                ns(l),
                ns(p),
                ratio(l, p),
                r.legacy_allocs,
                r.physvec_allocs,
                r.legacy_meta,
                r.physvec_meta,
                r.physvec_peak,
                r.legacy_held,
                r.physvec_held,
                r.legacy_dma_segments,
                r.physvec_dma_segments
            );
        }
        println!();
    }
    println!("### Micro benches\n");
    println!("| bench | median |");
    println!("|---|---:|");
    for id in [
        "build_physvec/512_contiguous_pages",
        "build_physvec/512_scattered_pages",
        "prp_emit/2m_contiguous",
        "prp_stream/512_scattered_pages",
        "memcpy/prp_2m_output_bytes",
        "prp_emit_legacy/2m_contiguous",
        "sgl_emit/255_ranges",
        "ib_sg_to_pages/512_scattered_pages",
        "ib_sg_to_pages/2m_contiguous",
        "prp_decode/512_scattered_pages",
    ] {
        println!(
            "| {id} | {} |",
            ns(median_ns("micro", &id.replace('/', "_")))
        );
    }
    let prp = median_ns("micro", "prp_emit_2m_contiguous");
    let mc = median_ns("micro", "memcpy_prp_2m_output_bytes");
    println!(
        "\nPRP emission for a contiguous 2 MiB range ({} output bytes) / memcpy of {} bytes: **{}**",
        micro::PRP_2M_OUTPUT_BYTES,
        micro::PRP_2M_OUTPUT_BYTES,
        ratio(prp, mc)
    );
}

/// Interleaved timing of one workload: batches of legacy and physvec I/Os alternate, so
/// load changes on a shared machine hit both alike. Also times the IOMMU work alone
/// (what any pipeline through this IOMMU must do).
pub struct Paired {
    pub mode: Mode,
    pub id: &'static str,
    pub legacy_ns: f64,
    pub physvec_ns: f64,
    /// IOVA allocation + page-table map of each physically contiguous run + unmap +
    /// free through the legacy domain, nothing else (0 without an IOMMU).
    pub iommu_floor_ns: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Per-call ns of `f`, median over `rounds` batches, batches interleaved across `fs`.
fn interleaved(rounds: usize, fs: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    use std::time::Instant;
    // Calibrate: about 1 ms per batch.
    let iters: Vec<u64> = fs
        .iter_mut()
        .map(|f| {
            let t = Instant::now();
            for _ in 0..10 {
                f();
            }
            let per = t.elapsed().as_nanos().max(1) as f64 / 10.0;
            ((1.0e6 / per) as u64).clamp(1, 100_000)
        })
        .collect();
    let mut samples = vec![Vec::with_capacity(rounds); fs.len()];
    for _ in 0..rounds {
        for (k, f) in fs.iter_mut().enumerate() {
            let t = Instant::now();
            for _ in 0..iters[k] {
                f();
            }
            samples[k].push(t.elapsed().as_nanos() as f64 / iters[k] as f64);
        }
    }
    samples.into_iter().map(median).collect()
}

/// Runs the interleaved comparison for every workload and mode.
pub fn paired(env: &Env, rounds: usize) -> Vec<Paired> {
    use crate::legacy::dma::IommuDomain;
    use std::hint::black_box;
    let mut out = Vec::new();
    for mode in [Mode::Iommu, Mode::Direct] {
        for (w, bv) in env.workloads.iter().zip(&env.bvecs) {
            let bios = [&bv[..]];
            let rq = request(w, &bios);
            let mut q = env.legacy_queue(mode);
            let mut pdu = Pdu::default();
            let mut lf = || {
                legacy::legacy_io(&mut q, black_box(&rq), &mut pdu, |_, _, _, _| {})
                    .expect("legacy");
            };
            // The IOMMU work alone: runs as iommu_map_sg would map them.
            let runs = crate::check::expected(&w.phys);
            let total: u64 = runs
                .iter()
                .map(|r| ((r.0 & 4095) + r.1).div_ceil(4096) * 4096)
                .sum();
            let p2p = w.id.starts_with("p2p");
            let req = pipeline::Req::new(&w.phys);
            let kdom = &env.kdom;
            let mut ff = || {
                if mode == Mode::Direct || p2p {
                    return;
                }
                let iova = kdom.alloc_iova(total, u64::MAX);
                let mut off = 0;
                for &(a, l) in black_box(&runs) {
                    let len = ((a & 4095) + l).div_ceil(4096) * 4096;
                    kdom.map(iova + off, a & !4095, len, 1).expect("map");
                    off += len;
                }
                kdom.unmap_fast(iova, total);
                kdom.free_iova(iova, total);
            };
            let r = match mode {
                Mode::Iommu => {
                    let mut pq = env.pv_queue(&env.iommu);
                    let mut pf = || {
                        pipeline::physvec_io(
                            &mut pq,
                            black_box(&req),
                            w.dptr,
                            pipeline::no_inspect,
                        )
                        .expect("physvec");
                    };
                    interleaved(rounds, &mut [&mut lf, &mut pf, &mut ff])
                }
                Mode::Direct => {
                    let mut pq = env.pv_queue(&env.direct);
                    let mut pf = || {
                        pipeline::physvec_io(
                            &mut pq,
                            black_box(&req),
                            w.dptr,
                            pipeline::no_inspect,
                        )
                        .expect("physvec");
                    };
                    interleaved(rounds, &mut [&mut lf, &mut pf, &mut ff])
                }
            };
            out.push(Paired {
                mode,
                id: w.id,
                legacy_ns: r[0],
                physvec_ns: r[1],
                iommu_floor_ns: if mode == Mode::Iommu && !p2p {
                    r[2]
                } else {
                    0.0
                },
            });
        }
    }
    out
}

/// The interleaved table.
pub fn print_paired(p: &[Paired]) {
    println!("\n### Interleaved timing (same process, alternating batches; median per I/O)\n");
    println!("| mode | workload | legacy | physvec | speed-up | IOMMU work alone | legacy time outside the IOMMU | physvec time outside the IOMMU |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for r in p {
        let f = (r.iommu_floor_ns > 0.0).then_some(r.iommu_floor_ns);
        println!(
            "| {} | {} | {} | {} | **{}** | {} | {} | {} |",
            r.mode.name(),
            r.id,
            ns(Some(r.legacy_ns)),
            ns(Some(r.physvec_ns)),
            ratio(Some(r.legacy_ns), Some(r.physvec_ns)),
            ns(f),
            ns(f.map(|f| r.legacy_ns - f)),
            ns(f.map(|f| r.physvec_ns - f)),
        );
    }
}
