//! `mr-pages`, `mlx5-mtt`, `mlx5-klm`, `best-page-size` and the RDMA part of the tour.
use crate::cli::{hex, parse, segments, CliError};
use physvec::fmt::Bytes;
use physvec::rdma::{
    best_page_size as best_pgsz, encode_klm, encode_mtt, keyed_sgl, klm_bytes, klm_count,
    mtt_bytes, plan_rw, sg_to_pages, sg_to_pages_with, RegisteredRegion, RwCaps, RwDirection,
    MLX5_EN_RD, MLX5_EN_WR,
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
    })
    .map_err(|e| CliError::rejected(e.kind(), e))?;
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
    let n = encode_mtt(&req.pages, bits, &mut out).map_err(|e| {
        let err = CliError::rejected(e.kind(), e);
        match e {
            physvec::rdma::Mlx5Error::MisalignedPage { index, .. } => err.with("at", index),
            _ => err,
        }
    })?;
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
    let n = encode_klm(&segs, req.key, &mut out).map_err(|e| CliError::rejected(e.kind(), e))?;
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
    let p = best_pgsz(&segs, req.va, req.supported).map_err(|e| CliError::rejected(e.kind(), e))?;
    Ok(json!({ "page_size": p.map_or(0, |p| p.get()) }))
}

pub fn tour() {
    println!("== 5. RDMA memory registration ==");
    let segs = [
        DmaRange::new(0x8_0000_0200, 0x1e00),
        DmaRange::new(0x8_0000_2000, 0x2000),
        DmaRange::new(0x8_0010_0000, 0x1000),
    ];
    println!("DMA segments after mapping:");
    for s in &segs {
        println!("  {s}");
    }
    let mut pages = [0u64; 8];
    let m = sg_to_pages(&segs, 0, PageSize::SIZE_4K, &mut pages).expect("maps");
    println!(
        "ib_sg_to_pages (4 KiB): iova {:#x}, length {}, {} segments mapped, {} pages:",
        m.iova,
        Bytes(m.length),
        m.mapped,
        m.npages
    );
    println!("  {:x?}", &pages[..m.npages]);
    let mut mtt = [0u8; 64];
    let n = encode_mtt(&pages[..m.npages], MLX5_EN_RD | MLX5_EN_WR, &mut mtt).expect("aligned");
    let mut p = crate::picture::Picture::new();
    crate::picture::mtt(&mut p, &mtt[..n], m.npages);
    print!("{}", p.render());
    let mut klm = [0u8; 64];
    let n = encode_klm(&segs, 0x1234, &mut klm).expect("fits");
    println!(
        "mlx5 KLM for an SG_GAPS MR ({n} bytes): {}",
        hex(&klm[..16])
    );
    let caps = RwCaps::mlx5_like();
    println!(
        "rdma_rw plan for an RDMA READ of these segments: {:?}",
        plan_rw(&segs, RwDirection::Read, &caps)
    );
    let huge = [DmaRange::new(0x4020_0000, 0x20_0000)];
    let p = best_pgsz(&huge, 0x7f00_0020_0000, 0xffff_f000)
        .ok()
        .flatten();
    println!(
        "best page size for 2 MiB at VA 0x7f0000200000 on mlx5 (4 KiB..2 GiB): {}",
        p.map_or("none".to_string(), |p| Bytes(p.get()).to_string())
    );
    let mr = RegisteredRegion {
        iova: m.iova,
        length: m.length,
        rkey: 0x0102_0304,
    };
    if let Ok(d) = keyed_sgl(&mr, true) {
        println!("NVMe/RDMA keyed SGL data block: {}\n", hex(&d.to_bytes()));
    }
}
