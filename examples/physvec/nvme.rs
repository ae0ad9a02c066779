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
    Ok(MemoryPageSize::new(bytes)?)
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
    let n = nvme::prp_entries(ranges.iter().copied(), mps)?;
    let first_off = req.list_pages.first().copied().unwrap_or(0);
    let needed = nvme::prp_list_pages_needed(n, mps, first_off);
    if needed > req.list_pages.len() as u64 {
        return Err(CliError::from(PrpError::TooFewListPages {
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
    let prp = nvme::encode_prp(ranges.iter().copied(), mps, pool)?;
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
    let d = nvme::sgl_descriptors(items(), &opts)?;
    if d > TOOL_MAX_ENTRIES {
        return Err(limit("SGL descriptors", d));
    }
    let page_slots = req.segment_page_size / 16;
    let needed = nvme::sgl_segment_pages_needed(d, page_slots);
    if needed > req.segment_pages.len() as u64 {
        return Err(CliError::from(SglError::TooFewSegmentPages {
            needed,
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
    let sgl = nvme::encode_sgl(items(), opts, pool)?;
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecodePrpRequest {
    page_size: u64,
    length: u64,
    dptr: String,
    memory: Vec<MemoryEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecodeSglRequest {
    length: u64,
    dptr: String,
    memory: Vec<MemoryEntry>,
    sgls: Option<u32>,
}

fn dptr_bytes(hex: &str) -> Result<[u8; 16], CliError> {
    let b = cli::unhex(hex)?;
    b.try_into().map_err(|b: Vec<u8>| {
        CliError::Malformed(format!("dptr must be 16 bytes, got {}", b.len()))
    })
}

pub fn decode_prp(input: &str) -> Result<Value, CliError> {
    let req: DecodePrpRequest = cli::parse(input)?;
    let mps = page_size(req.page_size)?;
    let dptr = dptr_bytes(&req.dptr)?;
    let mem = cli::memory(&req.memory)?;
    let nvme::DataPointer::Prp { prp1, prp2 } = nvme::DataPointer::from_bytes(false, dptr) else {
        unreachable!("from_bytes(false, ..) is PRP")
    };
    let mut out: Vec<DmaRange> = Vec::new();
    nvme::decode_prp(
        prp1,
        prp2,
        req.length,
        mps,
        &mem,
        &mut out,
        &nvme::DecodeOptions::default(),
    )?;
    Ok(json!({ "segments": cli::segments_json(&out) }))
}

pub fn decode_sgl(input: &str) -> Result<Value, CliError> {
    let req: DecodeSglRequest = cli::parse(input)?;
    let dptr = dptr_bytes(&req.dptr)?;
    let mem = cli::memory(&req.memory)?;
    let mut opts = nvme::DecodeOptions::default();
    if let Some(sgls) = req.sgls {
        opts = opts.with_sgls(nvme::SglCapabilities::from_raw(sgls));
    }
    let mut out: Vec<SglItem> = Vec::new();
    nvme::decode_sgl(
        SglDescriptor::from_bytes(dptr),
        req.length,
        &mem,
        &mut out,
        &opts,
    )?;
    let segments: Vec<Value> = out
        .iter()
        .map(|item| match item {
            SglItem::Data(r) => json!([r.addr().as_u64(), r.len()]),
            SglItem::BitBucket(l) => json!([null, l]),
        })
        .collect();
    Ok(json!({ "segments": segments }))
}

pub fn tour() {
    use crate::tour::{range, size, why};
    use physvec::nvme::{
        CompletionQueueEntry, CompletionStatus, LbaRange, NamespaceId, SubmissionQueueEntry,
    };
    println!("An NVMe command names its data with a data pointer (DPTR, 16 bytes). A PRP");
    println!("(Physical Region Page) entry names one memory page; more than two go into a PRP");
    println!("list in memory. An SGL (Scatter Gather List) describes any byte range with a");
    println!("16-byte descriptor; lists of descriptors live in segments chained by pointers.");
    let mps = MemoryPageSize::SIZE_4K;
    let ranges = [
        DmaRange::new(0x10_0800, 0x800),
        DmaRange::new(0x20_0000, 0x3000),
        DmaRange::new(0x40_0000, 0x1000),
    ];
    let total: u64 = ranges.iter().map(|r| r.len()).sum();
    println!("a {} transfer in {} DMA ranges:", size(total), ranges.len());
    for (i, r) in ranges.iter().enumerate() {
        println!("  [{i}] {}", range(*r));
    }
    let mut list = [0u64; 512];
    let pool = [PrpListPage::new(DmaAddr::new(0x8_0000), &mut list)];
    let prp = match nvme::encode_prp(ranges, mps, pool) {
        Ok(prp) => prp,
        Err(e) => {
            println!("PRP: {e}");
            return;
        }
    };
    let mem = physvec::mem::SliceMemory::new(DmaAddr::new(0x8_0000), bytemuck::cast_slice(&list));
    let mut p = crate::picture::Picture::new();
    crate::picture::prp(
        &mut p,
        mps.get(),
        total,
        prp.prp1.as_u64(),
        prp.prp2.as_u64(),
        &mem,
    );
    print!("{}", p.render());
    why("one PRP entry per 4 KiB memory page: 1 for range [0], 3 for the 12 KiB of range [1],");
    why("1 for range [2] = 5 entries. PRP1 holds the first; with more than two, PRP2 points at");
    why("a list page holding the other 4.");
    // The command that carries it: a Read of 18 KiB = 36 blocks of 512 bytes at LBA 0x100.
    let lbas = LbaRange::from_bytes(0x100 * 512, total, 512).expect("whole blocks");
    let sqe = SubmissionQueueEntry::read(NamespaceId::new(1), lbas)
        .with_cid(0x11)
        .with_data_pointer(prp.data_pointer());
    println!("the Read command (64-byte submission queue entry), named fields:");
    println!("  {sqe}");
    why("cdw10/cdw11 hold the starting LBA 0x100; cdw12 holds NLB, the block count minus one:");
    why(&format!(
        "{} / 512 = {} blocks -> {:#x}; flags 0x00 = PRPs (0x40 would mean an SGL).",
        size(total),
        lbas.blocks(),
        lbas.nlb()
    ));
    let cqe = CompletionQueueEntry::new(0x11, 1, 1, CompletionStatus::SUCCESS, true);
    println!("its completion (16-byte completion queue entry), as the controller posts it:");
    println!("  {cqe}");
    why("the driver matches cid 0x11 to its command; p (the phase tag) flips each time the");
    why("controller wraps the queue, so p=1 marks a new entry on the first pass.");

    let odd = [
        DmaRange::new(0x10_0000, 0x200),
        DmaRange::new(0x20_0010, 0x300),
    ];
    if let Err(e) = nvme::encode_prp(odd, mps, core::iter::empty()) {
        println!(
            "{} then {} as PRPs: rejected: {e}",
            range(odd[0]),
            range(odd[1])
        );
        why("a PRP entry names a whole page from some offset, so only the first range may start");
        why("inside a page and only the last may end inside one. SGLs have no such rule:");
    }
    // An SGL with small segment pages (4 descriptors each) to show the chaining.
    let many: Vec<DmaRange> = (0..6u64)
        .map(|i| DmaRange::new(0x100_0000 + i * 0x1_0010, 0x200))
        .collect();
    let mut pages = [[SglDescriptor::default(); 4]; 2];
    let [p0, p1] = &mut pages;
    let pool = [
        SglSegmentPage::new(DmaAddr::new(0x9_0000), p0),
        SglSegmentPage::new(DmaAddr::new(0x9_1000), p1),
    ];
    match nvme::encode_sgl(&many, SglOptions::default(), pool) {
        Ok(sgl) => {
            println!(
                "SGL for {} unaligned ranges of 512 bytes, segment pages of 4 descriptors:",
                many.len()
            );
            let mut mem = physvec::mem::SparseMemory::new();
            mem.add(
                DmaAddr::new(0x9_0000),
                bytemuck::cast_slice(&pages[0]).to_vec(),
            );
            mem.add(
                DmaAddr::new(0x9_1000),
                bytemuck::cast_slice(&pages[1]).to_vec(),
            );
            let mut p = crate::picture::Picture::new();
            crate::picture::sgl(&mut p, Some(6 * 0x200), sgl.dptr, &mem);
            print!("{}", p.render());
            why("6 Data Block descriptors do not fit in one 4-slot segment: its last slot becomes");
            why("a Last Segment descriptor pointing at the next page, which holds the other 3.");
            // The device side: decode it back from "memory".
            let mut out: Vec<SglItem> = Vec::new();
            match nvme::decode_sgl(sgl.dptr, 6 * 0x200, &mem, &mut out, &Default::default()) {
                Ok(s) => {
                    println!(
                        "decoded by the controller side: {} ranges after reading {} descriptors in {} segments",
                        out.len(),
                        s.descriptors_read,
                        s.segments
                    );
                    why(
                        "7 descriptors = 6 Data Blocks + the Last Segment link; the ranges are not",
                    );
                    why("contiguous (each starts 0x10010 after the previous), so none merge: 6 ranges.");
                }
                Err(e) => println!("decode: {e}"),
            }
            // And a malformed one: the same chain with DPTR typed Last Segment.
            let bad = SglDescriptor::last_segment(sgl.dptr.address(), sgl.dptr.length());
            if let Err(e) = nvme::decode_sgl(bad, 6 * 0x200, &mem, &mut out, &Default::default()) {
                println!(
                    "the same chain with DPTR retyped as Last Segment: {e} (nvme_status {:#x})",
                    e.nvme_status().raw()
                );
                why("a Last Segment's segment must not link further, yet its last slot does; the");
                why("controller completes the command with that status instead of reading on.");
            }
        }
        Err(e) => println!("SGL: {e}"),
    }
    println!();
}
