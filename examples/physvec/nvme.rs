//! `prp`, `sgl`, `decode-prp`, `decode-sgl` and the NVMe part of the tour.
use crate::cli::{self, CliError, MemoryEntry};
use physvec::nvme::{
    self, MemoryPageSize, PrpError, PrpListPage, SglDescriptor, SglError, SglItem, SglOptions,
    SglSegmentPage,
};
use physvec::{Dma, DmaAddr, DmaRange};
use serde::Deserialize;
use serde_json::{json, Value};

/// The tool refuses to build lists with more entries than this (it allocates them).
const TOOL_MAX_ENTRIES: u64 = 1 << 24;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrpRequest {
    page_size: u64,
    segments: Vec<[u64; 2]>,
    list_pages: Vec<u64>,
}

fn page_size(bytes: u64) -> Result<MemoryPageSize, CliError> {
    MemoryPageSize::new(bytes).map_err(|e| CliError::rejected(e.kind(), e))
}

fn prp_error(e: PrpError) -> CliError {
    let err = CliError::rejected(e.kind(), e);
    match e.index() {
        Some(i) => err.with("at", i),
        None => err,
    }
}

fn sgl_error(e: SglError) -> CliError {
    let err = CliError::rejected(e.kind(), e);
    match e.index() {
        Some(i) => err.with("at", i),
        None => err,
    }
}

fn limit(what: &str, n: u64) -> CliError {
    CliError::rejected(
        "limit_exceeded",
        format!("{n} {what} exceed the tool's limit of {TOOL_MAX_ENTRIES}"),
    )
}

pub fn prp(input: &str) -> Result<Value, CliError> {
    let req: PrpRequest = cli::parse(input)?;
    let mps = page_size(req.page_size)?;
    let ranges: Vec<DmaRange> = cli::segments::<Dma>(&req.segments)?;
    let n = nvme::prp_entries(ranges.iter().copied(), mps).map_err(prp_error)?;
    let first_off = req.list_pages.first().copied().unwrap_or(0);
    let needed = nvme::prp_list_pages_needed(n, mps, first_off);
    if needed > req.list_pages.len() as u64 {
        return Err(prp_error(PrpError::TooFewListPages {
            needed,
            supplied: req.list_pages.len(),
        }));
    }
    if n > TOOL_MAX_ENTRIES {
        return Err(limit("PRP entries", n));
    }
    // Only the pages (and slots) the encoder can use are allocated.
    let slots = (mps.entries_per_list_page()).min(n) as usize;
    let mut bufs: Vec<Vec<u64>> = (0..needed).map(|_| vec![0u64; slots]).collect();
    let pool = req
        .list_pages
        .iter()
        .zip(bufs.iter_mut())
        .map(|(&a, b)| PrpListPage::new(DmaAddr::new(a), b));
    let prp = nvme::encode_prp(ranges.iter().copied(), mps, pool).map_err(prp_error)?;
    let memory: Vec<(u64, Vec<u8>)> = (0..prp.list_pages_used())
        .map(|i| {
            let k = prp.list_page_entries(i) as usize;
            let bytes = bufs[i][..k]
                .iter()
                .flat_map(|e| u64::from_le(*e).to_le_bytes())
                .collect();
            (req.list_pages[i], bytes)
        })
        .collect();
    Ok(json!({
        "psdt": 0,
        "dptr": cli::hex(&prp.data_pointer().to_bytes()),
        "memory": cli::memory_json(memory.iter().map(|(a, b)| (*a, b.as_slice()))),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SglRequest {
    segments: Vec<[u64; 2]>,
    segment_pages: Vec<u64>,
    segment_page_size: u64,
    key: Option<u32>,
}

pub fn sgl(input: &str) -> Result<Value, CliError> {
    let req: SglRequest = cli::parse(input)?;
    if req.segment_page_size % 16 != 0 || req.segment_page_size < 32 {
        return Err(CliError::rejected(
            "invalid_page_size",
            format!(
                "segment_page_size {} is not a multiple of 16 of at least 32",
                req.segment_page_size
            ),
        ));
    }
    let ranges: Vec<DmaRange> = cli::segments::<Dma>(&req.segments)?;
    let opts = SglOptions::default().with_key(req.key);
    let items = || ranges.iter().copied().map(SglItem::Data);
    let d = nvme::sgl_descriptors(items(), &opts).map_err(sgl_error)?;
    if d > TOOL_MAX_ENTRIES {
        return Err(limit("SGL descriptors", d));
    }
    let page_slots = req.segment_page_size / 16;
    let needed = nvme::sgl_segment_pages_needed(d, page_slots);
    if needed > req.segment_pages.len() as u64 {
        return Err(sgl_error(SglError::TooFewSegmentPages {
            supplied: req.segment_pages.len(),
        }));
    }
    let slots = page_slots.min(d) as usize;
    let mut bufs: Vec<Vec<SglDescriptor>> = (0..needed)
        .map(|_| vec![SglDescriptor::default(); slots])
        .collect();
    let pool = req
        .segment_pages
        .iter()
        .zip(bufs.iter_mut())
        .map(|(&a, b)| SglSegmentPage::new(DmaAddr::new(a), b));
    let sgl = nvme::encode_sgl(items(), opts, pool).map_err(sgl_error)?;
    // Walk the chain the encoder wrote: each pointer's length says how many descriptors
    // the next page holds.
    let mut memory: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut pointer = sgl.dptr;
    for (i, buf) in bufs.iter().enumerate().take(sgl.segments_used()) {
        let count = (pointer.length() / 16) as usize;
        let descs = &buf[..count.min(buf.len())];
        memory.push((
            req.segment_pages[i],
            bytemuck::cast_slice::<SglDescriptor, u8>(descs).to_vec(),
        ));
        match descs.last() {
            Some(d) if d.descriptor_type().is_segment() => pointer = *d,
            _ => break,
        }
    }
    Ok(json!({
        "psdt": 1,
        "dptr": cli::hex(&sgl.dptr.to_bytes()),
        "memory": cli::memory_json(memory.iter().map(|(a, b)| (*a, b.as_slice()))),
    }))
}

#[allow(dead_code)]
fn memory_of(entries: &[MemoryEntry]) -> Result<physvec::mem::SparseMemory, CliError> {
    cli::memory(entries)
}

pub fn decode_prp(_input: &str) -> Result<Value, CliError> {
    Err(CliError::NotImplemented)
}
pub fn decode_sgl(_input: &str) -> Result<Value, CliError> {
    Err(CliError::NotImplemented)
}

pub fn tour() {}
