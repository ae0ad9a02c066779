//! `mr-pages`, `mlx5-mtt`, `mlx5-klm`, `best-page-size` and the RDMA part of the tour.
use crate::cli::{hex, parse, segments, CliError};
use physvec::rdma::{
    best_page_size as best_pgsz, encode_klm, encode_mtt, keyed_sgl, klm_bytes, klm_count,
    mtt_bytes, plan_rw, sg_to_pages, sg_to_pages_with, RegisteredRegion, RwCaps, RwDirection,
    RwPlan, MLX5_EN_RD, MLX5_EN_WR,
};
use physvec::{Dma, DmaRange, PageSize};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MrPagesRequest {
    segments: Vec<[u64; 2]>,
    page_size: u64,
    max_pages: u32,
    #[serde(default)]
    sg_offset: u64,
}

pub fn mr_pages(input: &str) -> Result<Value, CliError> {
    let req: MrPagesRequest = parse(input)?;
    let segs = segments::<Dma>(&req.segments)?;
    let ps =
        PageSize::new(req.page_size).map_err(|e| CliError::rejected("invalid_page_size", e))?;
    let mut pages: Vec<u64> = Vec::new();
    let max = req.max_pages as usize;
    let m = sg_to_pages_with(&segs, req.sg_offset, ps, |p| {
        if pages.len() < max {
            pages.push(p);
            true
        } else {
            false
        }
    })?;
    Ok(json!({
        "iova": m.iova,
        "length": m.length,
        "pages": pages,
        "mapped": m.mapped,
        "sg_offset": m.sg_offset,
    }))
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Access {
    Read,
    Write,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MttRequest {
    pages: Vec<u64>,
    access: Vec<Access>,
}

pub fn mlx5_mtt(input: &str) -> Result<Value, CliError> {
    let req: MttRequest = parse(input)?;
    let bits = req.access.iter().fold(0, |b, a| {
        b | match a {
            Access::Read => MLX5_EN_RD,
            Access::Write => MLX5_EN_WR,
        }
    });
    let mut out = vec![0u8; mtt_bytes(req.pages.len())];
    let n = encode_mtt(&req.pages, bits, &mut out)?;
    Ok(json!({ "hex": hex(&out[..n]) }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KlmRequest {
    segments: Vec<[u64; 2]>,
    key: u32,
}

pub fn mlx5_klm(input: &str) -> Result<Value, CliError> {
    let req: KlmRequest = parse(input)?;
    let segs = segments::<Dma>(&req.segments)?;
    let n = usize::try_from(klm_count(&segs)).unwrap_or(usize::MAX);
    let mut out = vec![0u8; klm_bytes(n)];
    let n = encode_klm(&segs, req.key, &mut out)?;
    Ok(json!({ "hex": hex(&out[..n]) }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PgszRequest {
    segments: Vec<[u64; 2]>,
    va: u64,
    supported: u64,
}

pub fn best_page_size(input: &str) -> Result<Value, CliError> {
    let req: PgszRequest = parse(input)?;
    let segs = segments::<Dma>(&req.segments)?;
    let p = best_pgsz(&segs, req.va, req.supported)?;
    Ok(json!({ "page_size": p.map_or(0, |p| p.get()) }))
}

pub fn tour() {
    use crate::tour::{hex_list, range, size, why};
    println!("An RDMA NIC reaches memory through a registered memory region (MR): a page list");
    println!("the NIC translates with (mlx5: MTT entries), or, for uneven pieces, KLM entries of");
    println!("{{length, key, address}}. The NIC then accepts work requests naming the region.");
    let segs = [
        DmaRange::new(0x8_0000_0200, 0x1e00),
        DmaRange::new(0x8_0000_2000, 0x2000),
        DmaRange::new(0x8_0010_0000, 0x1000),
    ];
    println!("DMA segments after mapping:");
    for (i, s) in segs.iter().enumerate() {
        println!("  [{i}] {}", range(*s));
    }
    let mut pages = [0u64; 8];
    let m = match sg_to_pages(&segs, 0, PageSize::SIZE_4K, &mut pages) {
        Ok(m) => m,
        Err(e) => {
            println!("ib_sg_to_pages: {e}\n");
            return;
        }
    };
    println!(
        "ib_sg_to_pages (4 KiB pages): iova {:#x}, length {}, {} segments mapped, {} pages:",
        m.iova,
        size(m.length),
        m.mapped,
        m.npages
    );
    println!("  {}", hex_list(&pages[..m.npages]));
    why("[0] and [1] are contiguous and cover pages 0x800000000..0x800003000 (4 pages; [0]");
    why("starts 0x200 into the first, which the MR's iova keeps); [2] adds 1 page: 5 pages.");
    let mut mtt = [0u8; 64];
    match encode_mtt(&pages[..m.npages], MLX5_EN_RD | MLX5_EN_WR, &mut mtt) {
        Ok(n) => {
            let mut p = crate::picture::Picture::new();
            crate::picture::mtt(&mut p, &mtt[..n], m.npages);
            print!("{}", p.render());
        }
        Err(e) => println!("MTT: {e}"),
    }
    let mut klm = [0u8; 64];
    match encode_klm(&segs, 0x1234, &mut klm) {
        Ok(n) => {
            println!("mlx5 KLM entries for an SG_GAPS MR, all {n} bytes (big-endian):");
            for (i, row) in klm[..n].chunks(16).enumerate() {
                println!("  {:#04x}: {}", i * 16, hex(row));
            }
            let mut p = crate::picture::Picture::new();
            crate::picture::klm(&mut p, &klm[..n], segs.len());
            print!("{}", p.render());
            why("one 16-byte KLM per segment (3 x 16 = 48 bytes), zero-padded to a 64-byte multiple.");
        }
        Err(e) => println!("KLM: {e}"),
    }
    let caps = RwCaps::mlx5_like();
    match plan_rw(&segs, RwDirection::Read, &caps) {
        Ok(plan) => println!(
            "rdma_rw plan for an RDMA READ of these segments: {}",
            describe_plan(plan)
        ),
        Err(e) => println!("rdma_rw plan: {e}"),
    }
    why("rdma_rw merges contiguous segments into one SGE: [0]+[1] and [2] make 2 SGEs, which");
    why("fit in one work request, so no memory registration is needed.");
    let huge = [DmaRange::new(0x4020_0000, 0x20_0000)];
    let p = best_pgsz(&huge, 0x7f00_0020_0000, 0xffff_f000)
        .ok()
        .flatten();
    println!(
        "best page size for 2 MiB at DMA 0x40200000, VA 0x7f0000200000, on mlx5 (4 KiB..2 GiB): {}",
        p.map_or("none".to_string(), |p| size(p.get()))
    );
    why("a page size fits when the VA and the DMA address agree below it and the region");
    why("starts and ends on it: both are 2 MiB aligned and the length is 2 MiB.");
    let mr = RegisteredRegion {
        iova: m.iova,
        length: m.length,
        rkey: 0x0102_0304,
    };
    if let Ok(d) = keyed_sgl(&mr, true) {
        println!(
            "NVMe/RDMA keyed SGL data block (16 bytes): {}",
            hex(&d.to_bytes())
        );
        println!("  {d}");
        why("NVMe over RDMA names the registered region by its rkey; subtype 0xf (Invalidate");
        why("Key) asks the target to invalidate the rkey once the transfer is done.");
    }
    println!();
}

/// The plan in words (the kernel's `RDMA_RW_*` names).
fn describe_plan(plan: RwPlan) -> String {
    match plan {
        RwPlan::SingleSge => "RDMA_RW_SINGLE_WR: 1 SGE".to_string(),
        RwPlan::MultiSge { sges, wrs } => {
            format!("RDMA_RW_MULTI_WR: {sges} SGE(s) in {wrs} work request(s)")
        }
        RwPlan::Mr { mrs, pages_per_mr } => {
            format!("RDMA_RW_MR: {mrs} registration(s) of at most {pages_per_mr} pages")
        }
    }
}
