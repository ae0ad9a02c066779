//! `sg`, `decode-sg` and the scatterlist part of the tour.
use crate::cli::{memory, memory_json, parse, segments, segments_json, CliError, MemoryEntry};
use physvec::mem::MemoryReader;
use physvec::sg::{
    chunk_split, entries_needed, export, import, Scatterlist, SgChunk, SgExportError, Vmemmap,
    SG_CHUNK_SIZE, SG_DEFAULT_MAX_SEGMENT,
};
use physvec::{Phys, PhysRange, RangeView};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SgRequest {
    segments: Vec<[u64; 2]>,
    table_pages: Vec<u64>,
    #[serde(default = "default_chunk")]
    chunk_entries: u32,
    vmemmap_base: u64,
    #[serde(default = "default_max")]
    max_segment_size: u32,
}

fn default_chunk() -> u32 {
    SG_CHUNK_SIZE as u32
}
fn default_max() -> u32 {
    SG_DEFAULT_MAX_SEGMENT
}

pub fn sg(input: &str) -> Result<Value, CliError> {
    let req: SgRequest = parse(input)?;
    let ranges = segments::<Phys>(&req.segments)?;
    let view = RangeView::full(&ranges).map_err(|e| CliError::rejected("address_overflow", e))?;
    let n = entries_needed(&view, req.max_segment_size)?;
    // Allocate only the slots the kernel's layout uses (a chained chunk is full).
    let cap = req.chunk_entries as usize;
    let mut store: Vec<Vec<Scatterlist>> = Vec::new();
    let mut rem = n;
    for _ in &req.table_pages {
        if rem == 0 {
            break;
        }
        match chunk_split(rem, cap) {
            Some((data, chained)) => {
                store.push(vec![Scatterlist::default(); data + usize::from(chained)]);
                rem -= data as u32;
            }
            None => {
                store.push(vec![Scatterlist::default(); cap.min(rem as usize)]);
                break;
            }
        }
    }
    let mut chunks: Vec<SgChunk<'_>> = store
        .iter_mut()
        .zip(&req.table_pages)
        .map(|(e, &addr)| SgChunk {
            addr: physvec::VirtAddr::new(addr),
            entries: e,
        })
        .collect();
    let vm = Vmemmap::new(req.vmemmap_base);
    let x = export(&view, &vm, req.max_segment_size, &mut chunks).map_err(|e| match e {
        // The tool allocated no more chunks than pages: report the caller's count.
        SgExportError::TooFewChunks {
            entries, needed, ..
        } => CliError::from(SgExportError::TooFewChunks {
            entries,
            needed,
            chunks: req.table_pages.len(),
        }),
        e => CliError::from(e),
    })?;
    let mem: Vec<(u64, Vec<u8>)> = chunks[..x.chunks]
        .iter()
        .map(|c| {
            (
                c.addr.as_u64(),
                c.entries.iter().flat_map(|e| e.to_le_bytes()).collect(),
            )
        })
        .collect();
    Ok(json!({
        "sgl": x.table.sgl,
        "nents": x.table.nents,
        "memory": memory_json(mem.iter().map(|(a, b)| (*a, b.as_slice()))),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecodeSgRequest {
    sgl: u64,
    vmemmap_base: u64,
    memory: Vec<MemoryEntry>,
}

pub fn decode_sg(input: &str) -> Result<Value, CliError> {
    let req: DecodeSgRequest = parse(input)?;
    let mem = memory(&req.memory)?;
    // A walk without a loop reads distinct entries only; Brent's detector needs at most
    // about three times as many steps for a loop. So this bound never cuts a real table.
    let bytes: u64 = mem.regions().map(|(_, b)| b.len() as u64).sum();
    let limit = u32::try_from((bytes / 32).saturating_mul(3).saturating_add(3)).unwrap_or(u32::MAX);
    let vm = Vmemmap::new(req.vmemmap_base);
    let mut out: Vec<PhysRange> = Vec::new();
    import(
        &mem,
        physvec::VirtAddr::new(req.sgl),
        None,
        &vm,
        limit,
        &mut out,
    )?;
    Ok(json!({ "segments": segments_json(&out) }))
}

pub fn tour() {
    use crate::tour::{range, size, why};
    println!("Linux drivers still pass I/O as a struct scatterlist table: 32-byte entries naming");
    println!("a struct page (page_link), an offset and a length, in chunks chained by a link");
    println!("entry. The crate writes such tables for kernel-facing code and walks them back.");
    let vm = Vmemmap::new(Vmemmap::X86_64_DEFAULT_BASE);
    let ranges = [
        PhysRange::new(0x1_0000_0800, 0x1800),
        PhysRange::new(0x1_0000_2000, 0x3000),
        PhysRange::new(0x2_0000_0000, 0x1000),
        PhysRange::new(0x3_0000_0000, 0x200),
    ];
    let view = RangeView::full(&ranges).expect("valid ranges");
    let max = 0x4000;
    println!(
        "input: {} physical ranges, {} in total; max_segment_size {}; chunks of 3 entries:",
        ranges.len(),
        size(view.len()),
        size(max)
    );
    for (i, r) in ranges.iter().enumerate() {
        println!("  [{i}] {}", range(*r));
    }
    let mut a = [Scatterlist::default(); 3];
    let mut b = [Scatterlist::default(); 3];
    let mut chunks = [
        SgChunk {
            addr: physvec::VirtAddr::new(0xffff_8881_0000_0000),
            entries: &mut a,
        },
        SgChunk {
            addr: physvec::VirtAddr::new(0xffff_8881_0000_1000),
            entries: &mut b,
        },
    ];
    let x = match export(&view, &vm, max as u32, &mut chunks) {
        Ok(x) => x,
        Err(e) => {
            println!("export: {e}\n");
            return;
        }
    };
    println!(
        "sg_table: sgl {:#x}, orig_nents {}, {} chunks",
        x.table.sgl, x.table.orig_nents, x.chunks
    );
    why("[0] and [1] are contiguous (0x100000800 + 6 KiB = 0x100002000): merged they would be");
    why("18 KiB, above max_segment_size. The exporter merges them and splits again, as Linux");
    why("does, where 16 KiB of pages end: pages 0x100000000..0x100004000 hold 14 KiB (the data");
    why("starts 0x800 in), the last 4 KiB go to the next entry, so 4 ranges make 4 entries.");
    why("3 slots per chunk: a full chunk's last slot is the SG_CHAIN link, so 2 data entries");
    why("fit in the first chunk and the other 2 in the second.");
    let mut p = crate::picture::Picture::new();
    crate::picture::scatterlist(&mut p, x.table.sgl, &vm, &chunks[..]);
    print!("{}", p.render());
    why("page_link holds the address of the frame's struct page: the vmemmap base plus");
    why("pfn x 64 (64-byte struct page), e.g. pfn 0x100000 -> 0xffffea0000000000 + 0x4000000.");
    let mut back: Vec<PhysRange> = Vec::new();
    if let Err(e) = import(
        &chunks[..],
        physvec::VirtAddr::new(x.table.sgl),
        None,
        &vm,
        64,
        &mut back,
    ) {
        println!("walk: {e}\n");
        return;
    }
    println!("walked back (sg_next, bounded, loop-checked):");
    for r in &back {
        println!("  {}", range(*r));
    }
    why("entries [0] and [1] are physically contiguous (0x100000800 + 14 KiB = 0x100004000),");
    why("and the walk coalesces contiguous entries: 4 entries -> 3 ranges.");
    match chunks[..].read_u64_le(physvec::VirtAddr::new(x.table.sgl)) {
        Ok(first) => {
            println!("the first 8 bytes of the table in memory (page_link of [0]): {first:#018x}\n")
        }
        Err(e) => println!("read: {e}\n"),
    }
}
