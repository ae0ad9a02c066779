//! `explain`: a human-readable picture of a layout, and the renderer the tour uses.
//!
//! `physvec explain < request.json` takes the request of any layout command with one more
//! field, `"command"` (`prp`, `sgl`, `decode-prp`, `decode-sgl`, `sg`, `decode-sg`,
//! `mr-pages`, `mlx5-mtt`, `mlx5-klm`, `map`). It runs that command (the library decides,
//! exactly as the JSON command would) and draws what it built or read: PRP1/PRP2 and each
//! PRP list page with its chain pointer, SGL segments and their descriptors, scatterlist
//! chunks and chain entries, MR pages, MTT/KLM entries, DMA mappings. Addresses are hex,
//! sizes human ([`Bytes`]). When the command rejects the request, the picture is still
//! drawn and the offending entry is marked `<== ERROR`. Exit codes are the commands'
//! (0 ok, 1 rejected, 2 malformed).
//!
//! The walks here are for display only and bounded ([`MAX_LINES`] entries, loops cut);
//! validation is always the library's.

use crate::cli::CliError;
use physvec::fmt::Bytes;
use physvec::mem::{MemoryReader, SparseMemory};
use physvec::nvme::{SglDescriptor, SglDescriptorType};
use physvec::sg::{PageModel, Scatterlist, Vmemmap};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::fmt::Write as _;

/// Entries drawn per structure before the picture is cut short.
pub const MAX_LINES: usize = 2048;

/// One line of a picture, with what an error can point at.
struct Line {
    text: String,
    /// Bus address of the entry the line shows.
    addr: Option<u64>,
    /// Index of the entry (segment index, data-entry index, page index).
    index: Option<u64>,
    /// Which DPTR field (1 = PRP1 / SGL1, 2 = PRP2).
    dptr: Option<u8>,
    mark: Option<String>,
}

/// Where an error points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A byte address of an entry in memory.
    Addr(u64),
    /// An entry index.
    Index(u64),
    /// A DPTR field (1 or 2).
    Dptr(u8),
    /// An address or an index (the tool's `at` for scatterlists is either).
    AddrOrIndex(u64),
}

/// A rendered layout: titled sections of lines.
#[derive(Default)]
pub struct Picture {
    lines: Vec<Line>,
    trailer: Vec<String>,
}

impl Picture {
    pub fn new() -> Self {
        Self::default()
    }

    /// A heading or plain line.
    pub fn text(&mut self, text: impl Into<String>) {
        self.push(text.into(), None, None, None);
    }

    fn push(&mut self, text: String, addr: Option<u64>, index: Option<u64>, dptr: Option<u8>) {
        self.lines.push(Line {
            text,
            addr,
            index,
            dptr,
            mark: None,
        });
    }

    /// Marks the first line `target` points at with `note`; if none matches, the note
    /// goes under the picture. Returns whether a line matched.
    pub fn mark(&mut self, target: Option<Target>, note: &str) -> bool {
        let hit = target.and_then(|t| {
            self.lines.iter_mut().find(|l| match t {
                Target::Addr(a) => l.addr == Some(a),
                Target::Index(i) => l.index == Some(i),
                Target::Dptr(d) => l.dptr == Some(d),
                Target::AddrOrIndex(v) => l.addr == Some(v) || l.index == Some(v),
            })
        });
        match hit {
            Some(l) => {
                l.mark = Some(note.to_string());
                true
            }
            None => {
                self.trailer.push(format!("<== ERROR {note}"));
                false
            }
        }
    }

    /// The picture as text, one line per entry, marks aligned after the longest line.
    pub fn render(&self) -> String {
        let width = self
            .lines
            .iter()
            .filter(|l| l.mark.is_some())
            .map(|l| l.text.chars().count())
            .max()
            .unwrap_or(0);
        let mut s = String::new();
        for l in &self.lines {
            match &l.mark {
                Some(m) => {
                    let _ = writeln!(s, "{:<width$}   <== ERROR {m}", l.text);
                }
                None => {
                    let _ = writeln!(s, "{}", l.text);
                }
            }
        }
        for t in &self.trailer {
            let _ = writeln!(s, "{t}");
        }
        s
    }
}

/// Lists `[addr, len]` segments (one line each, index = position).
pub fn segments(p: &mut Picture, title: &str, segs: &[[u64; 2]]) {
    let total: u128 = segs.iter().map(|s| u128::from(s[1])).sum();
    p.text(format!(
        "{title}: {} segment(s), {}",
        segs.len(),
        Bytes(u64::try_from(total).unwrap_or(u64::MAX))
    ));
    for (i, &[a, l]) in segs.iter().enumerate().take(MAX_LINES) {
        let end = match a.checked_add(l) {
            Some(e) => format!("{e:#x}"),
            None if u128::from(a) + u128::from(l) == 1 << 64 => "2^64".into(),
            None => "past 2^64".into(),
        };
        p.push(
            format!("  [{i}] {a:#x}..{end} ({})", Bytes(l)),
            None,
            Some(i as u64),
            None,
        );
    }
    if segs.len() > MAX_LINES {
        p.text(format!("  ... {} more", segs.len() - MAX_LINES));
    }
}

/// PRP1/PRP2 and the PRP list pages of a `len`-byte transfer, as a controller consumes
/// them (memory page size `mps` bytes, a power of two).
pub fn prp<M: MemoryReader + ?Sized>(
    p: &mut Picture,
    mps: u64,
    len: u64,
    prp1: u64,
    prp2: u64,
    mem: &M,
) {
    let mask = mps - 1;
    p.text(format!(
        "PRP data pointer: {} transfer, {} memory pages",
        Bytes(len),
        Bytes(mps)
    ));
    if len == 0 {
        p.text("  zero-length transfer: DPTR unused");
        return;
    }
    let first = len.min(mps - (prp1 & mask));
    p.push(
        format!(
            "  PRP1  {prp1:#018x}  data  {} (offset {:#x} in page {:#x})",
            Bytes(first),
            prp1 & mask,
            prp1 & !mask
        ),
        None,
        None,
        Some(1),
    );
    let mut rem = len - first;
    if rem == 0 {
        p.push(format!("  PRP2  {prp2:#018x}  unused"), None, None, Some(2));
        return;
    }
    if rem <= mps {
        p.push(
            format!("  PRP2  {prp2:#018x}  data  {}", Bytes(rem)),
            None,
            None,
            Some(2),
        );
        return;
    }
    p.push(
        format!("  PRP2  {prp2:#018x}  -> PRP list"),
        None,
        None,
        Some(2),
    );
    let mut list = prp2;
    let mut shown = 0usize;
    for page in 0.. {
        let slots = (mps - (list & mask)) / 8;
        p.text(format!(
            "  PRP list page {page} at {list:#x} ({slots} slots of 8 B):"
        ));
        for slot in 0..slots {
            let Some(at) = list.checked_add(slot * 8) else {
                p.text("    (list runs past 2^64)");
                return;
            };
            if shown == MAX_LINES {
                p.text(format!("    ... {} more to describe", Bytes(rem)));
                return;
            }
            shown += 1;
            let Ok(e) = mem.read_u64_le(at) else {
                p.push(
                    format!("    [{slot:>3}] {at:#x}  <unreadable>"),
                    Some(at),
                    None,
                    None,
                );
                return;
            };
            if slot + 1 == slots && rem > mps {
                p.push(
                    format!("    [{slot:>3}] {at:#x}  {e:#018x}  -> next PRP list page"),
                    Some(at),
                    None,
                    None,
                );
                list = e;
                break;
            }
            let l = rem.min(mps);
            p.push(
                format!("    [{slot:>3}] {at:#x}  {e:#018x}  data  {}", Bytes(l)),
                Some(at),
                None,
                None,
            );
            rem -= l;
            if rem == 0 {
                return;
            }
        }
    }
}

fn descriptor(d: &SglDescriptor) -> String {
    match d.descriptor_type() {
        SglDescriptorType::DataBlock => format!(
            "Data Block        {:#x}, {}",
            d.address(),
            Bytes(u64::from(d.length()))
        ),
        SglDescriptorType::BitBucket => {
            format!(
                "Bit Bucket        {} discarded",
                Bytes(u64::from(d.length()))
            )
        }
        SglDescriptorType::Segment => format!(
            "Segment        -> {:#x}, {} descriptors",
            d.address(),
            d.length() / 16
        ),
        SglDescriptorType::LastSegment => format!(
            "Last Segment   -> {:#x}, {} descriptors",
            d.address(),
            d.length() / 16
        ),
        SglDescriptorType::KeyedDataBlock => format!(
            "Keyed Data Block  {:#x}, {}, key {:#x}",
            d.address(),
            Bytes(u64::from(d.keyed_length())),
            d.key()
        ),
        t => format!(
            "{t:?} (identifier {:#04x}) {:#x} length {:#x}",
            d.identifier(),
            d.address(),
            d.length()
        ),
    }
    .to_string()
        + &match d.subtype() {
            0 => String::new(),
            s => format!(" [subtype {s:#x}]"),
        }
}

/// SGL1 and the segments it chains, each descriptor on a line.
pub fn sgl<M: MemoryReader + ?Sized>(
    p: &mut Picture,
    len: Option<u64>,
    sgl1: SglDescriptor,
    mem: &M,
) {
    match len {
        Some(l) => p.text(format!("SGL data pointer: {} transfer", Bytes(l))),
        None => p.text("SGL data pointer:"),
    }
    p.push(
        format!("  SGL1 (DPTR)  {}", descriptor(&sgl1)),
        None,
        None,
        Some(1),
    );
    let mut data = 0u64;
    let mut bucket = 0u64;
    let mut count = |d: &SglDescriptor| match d.descriptor_type() {
        SglDescriptorType::DataBlock => data = data.saturating_add(d.length().into()),
        SglDescriptorType::KeyedDataBlock => data = data.saturating_add(d.keyed_length().into()),
        SglDescriptorType::BitBucket => bucket = bucket.saturating_add(d.length().into()),
        _ => {}
    };
    count(&sgl1);
    let mut next = sgl1.descriptor_type().is_segment().then_some(sgl1);
    let mut visited = HashSet::new();
    let mut shown = 0usize;
    let mut n_seg = 0;
    while let Some(ptr) = next.take() {
        let addr = ptr.address();
        let n = u64::from(ptr.length() / 16);
        p.text(format!(
            "  {} {n_seg} at {addr:#x}: {n} descriptor(s){}",
            if ptr.descriptor_type() == SglDescriptorType::LastSegment {
                "last segment"
            } else {
                "segment"
            },
            if ptr.length() % 16 != 0 {
                format!(" (length {} is not a multiple of 16)", ptr.length())
            } else {
                String::new()
            }
        ));
        n_seg += 1;
        if !visited.insert(addr) {
            p.text("    (already visited: the chain loops)");
            break;
        }
        for i in 0..n {
            let Some(at) = addr.checked_add(i * 16) else {
                p.text("    (segment runs past 2^64)");
                break;
            };
            if shown == MAX_LINES {
                p.text("    ... (cut)");
                return;
            }
            shown += 1;
            let mut b = [0u8; 16];
            if mem.read(at, &mut b).is_err() {
                p.push(
                    format!("    [{i:>3}] {at:#x}  <unreadable>"),
                    Some(at),
                    None,
                    None,
                );
                break;
            }
            let d = SglDescriptor::from_bytes(b);
            count(&d);
            p.push(
                format!("    [{i:>3}] {at:#x}  {}", descriptor(&d)),
                Some(at),
                None,
                None,
            );
            if i + 1 == n && d.descriptor_type().is_segment() {
                next = Some(d);
            }
        }
    }
    p.text(format!(
        "  describes {} of data{}",
        Bytes(data),
        if bucket > 0 {
            format!(" and {} of bit buckets", Bytes(bucket))
        } else {
            String::new()
        }
    ));
}

/// A Linux `struct scatterlist` table from `sgl`: chunks, data entries (index = data
/// entry number) and chain entries.
pub fn scatterlist<M: MemoryReader + ?Sized>(p: &mut Picture, sgl: u64, vm: &Vmemmap, mem: &M) {
    p.text(format!(
        "struct scatterlist table at {sgl:#x} (32-byte entries, vmemmap {:#x}):",
        vm.base()
    ));
    p.text(format!("  chunk at {sgl:#x}:"));
    let mut at = sgl;
    let mut visited = HashSet::from([sgl]);
    let mut index = 0u64;
    let mut total = 0u64;
    for _ in 0..MAX_LINES {
        let mut b = [0u8; 32];
        if mem.read(at, &mut b).is_err() {
            p.push(format!("    {at:#x}  <unreadable>"), Some(at), None, None);
            return;
        }
        let e = Scatterlist::from_le_bytes(&b);
        if e.is_chain() {
            let next = e.chain_ptr();
            p.push(
                format!("    {at:#x}  SG_CHAIN -> {next:#x}"),
                Some(at),
                None,
                None,
            );
            if !visited.insert(next) {
                p.text("    (chain returns to a visited chunk: loop)");
                return;
            }
            p.text(format!("  chunk at {next:#x}:"));
            at = next;
            continue;
        }
        let page = e.page();
        let phys = vm
            .pfn_of(page)
            .and_then(|pfn| pfn.checked_mul(4096))
            .and_then(|a| a.checked_add(u64::from(e.offset)));
        let phys = match phys {
            Some(a) => format!("phys {a:#x}"),
            None => "not a struct page".into(),
        };
        let dma = if e.dma_length != 0 {
            format!(
                "  dma {:#x}+{}",
                e.dma_address,
                Bytes(u64::from(e.dma_length))
            )
        } else {
            String::new()
        };
        p.push(
            format!(
                "    {at:#x}  [{index}] page {page:#x} +{:#x} {} ({phys}){dma}{}",
                e.offset,
                Bytes(u64::from(e.length)),
                if e.is_last() { "  SG_END" } else { "" }
            ),
            Some(at),
            Some(index),
            None,
        );
        total = total.saturating_add(e.length.into());
        index += 1;
        if e.is_last() {
            p.text(format!("  {index} data entries, {}", Bytes(total)));
            return;
        }
        match at.checked_add(32) {
            Some(a) => at = a,
            None => {
                p.text("    (table runs past 2^64)");
                return;
            }
        }
    }
    p.text("    ... (cut)");
}

/// A fast-registration page list.
pub fn mr_pages(p: &mut Picture, page_size: u64, iova: u64, length: u64, pages: &[u64]) {
    p.text(format!(
        "MR: iova {iova:#x}, length {}, {} page(s) of {}:",
        Bytes(length),
        pages.len(),
        Bytes(page_size)
    ));
    let first_off = iova & page_size.wrapping_sub(1);
    for (i, pg) in pages.iter().enumerate().take(MAX_LINES) {
        let note = if i == 0 && first_off != 0 {
            format!("  (region starts at +{first_off:#x})")
        } else {
            String::new()
        };
        p.push(
            format!("  [{i:>3}] {pg:#x}{note}"),
            None,
            Some(i as u64),
            None,
        );
    }
}

/// Big-endian mlx5 MTT entries (`entries` real ones, the rest padding).
pub fn mtt(p: &mut Picture, bytes: &[u8], entries: usize) {
    p.text(format!(
        "mlx5 MTT: {} entries of 8 B, {} with padding",
        entries,
        Bytes(bytes.len() as u64)
    ));
    for (i, e) in bytes.chunks_exact(8).enumerate().take(MAX_LINES) {
        let v = u64::from_be_bytes(e.try_into().unwrap_or([0; 8]));
        if i >= entries {
            p.text(format!("  [{i:>3}] padding"));
            continue;
        }
        p.push(
            format!(
                "  [{i:>3}] page {:#x} {}{}",
                v & !0x3,
                if v & 1 != 0 { "R" } else { "-" },
                if v & 2 != 0 { "W" } else { "-" }
            ),
            None,
            Some(i as u64),
            None,
        );
    }
}

/// Big-endian mlx5 KLM entries (`entries` real ones, the rest padding).
pub fn klm(p: &mut Picture, bytes: &[u8], entries: usize) {
    p.text(format!(
        "mlx5 KLM: {} entries of 16 B, {} with padding",
        entries,
        Bytes(bytes.len() as u64)
    ));
    for (i, e) in bytes.chunks_exact(16).enumerate().take(MAX_LINES) {
        if i >= entries {
            p.text(format!("  [{i:>3}] padding"));
            continue;
        }
        let bcount = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
        let key = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
        let va = u64::from_be_bytes([e[8], e[9], e[10], e[11], e[12], e[13], e[14], e[15]]);
        p.push(
            format!(
                "  [{i:>3}] va {va:#x}, {}, mkey {key:#x}",
                Bytes(u64::from(bcount))
            ),
            None,
            Some(i as u64),
            None,
        );
    }
}

// ---- the `explain` command ----

fn u64_field(req: &Map<String, Value>, key: &str) -> Option<u64> {
    req.get(key).and_then(Value::as_u64)
}

fn pairs(v: Option<&Value>) -> Vec<[u64; 2]> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|p| {
                    let f = |i: usize| p.get(i).and_then(Value::as_u64).unwrap_or(0);
                    [f(0), f(1)]
                })
                .collect()
        })
        .unwrap_or_default()
}

fn memory(v: Option<&Value>) -> Result<SparseMemory, CliError> {
    let entries: Vec<crate::cli::MemoryEntry> = match v {
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| CliError::Malformed(format!("bad memory: {e}")))?,
        None => Vec::new(),
    };
    crate::cli::memory(&entries)
}

fn dptr(v: Option<&Value>) -> Result<[u8; 16], CliError> {
    let b = crate::cli::unhex(v.and_then(Value::as_str).unwrap_or(""))?;
    b.try_into()
        .map_err(|_| CliError::Malformed("dptr must be 16 bytes".into()))
}

fn split_dptr(b: [u8; 16]) -> (u64, u64) {
    let mut a = [0u8; 8];
    let mut c = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    c.copy_from_slice(&b[8..]);
    (u64::from_le_bytes(a), u64::from_le_bytes(c))
}

fn total(segs: &[[u64; 2]]) -> u64 {
    segs.iter().fold(0u64, |t, s| t.saturating_add(s[1]))
}

/// What the command said.
enum Verdict {
    Ok(Value),
    Rejected {
        kind: &'static str,
        message: String,
        extra: Map<String, Value>,
    },
}

impl Verdict {
    fn response(&self) -> Option<&Value> {
        match self {
            Verdict::Ok(v) => Some(v),
            Verdict::Rejected { .. } => None,
        }
    }
}

/// Draws the request `req` of `command` given the command's verdict.
fn draw(command: &str, req: &Map<String, Value>, v: &Verdict) -> Result<Picture, CliError> {
    let mut p = Picture::new();
    let resp = v.response();
    let segs = pairs(req.get("segments"));
    // Errors point at segment indexes for the encoders, at addresses for the decoders.
    let mut target_kind: fn(u64) -> Target = Target::Index;
    match command {
        "prp" => {
            segments(&mut p, "input DMA segments", &segs);
            if let Some(r) = resp {
                let (prp1, prp2) = split_dptr(dptr(r.get("dptr"))?);
                let mem = memory(r.get("memory"))?;
                prp(
                    &mut p,
                    u64_field(req, "page_size").unwrap_or(4096),
                    total(&segs),
                    prp1,
                    prp2,
                    &mem,
                );
            }
        }
        "sgl" => {
            segments(&mut p, "input DMA segments", &segs);
            if let Some(r) = resp {
                let d = SglDescriptor::from_bytes(dptr(r.get("dptr"))?);
                let mem = memory(r.get("memory"))?;
                sgl(&mut p, Some(total(&segs)), d, &mem);
            }
        }
        "decode-prp" => {
            let b = dptr(req.get("dptr"))?;
            let (prp1, prp2) = split_dptr(b);
            let mem = memory(req.get("memory"))?;
            let mps = u64_field(req, "page_size").unwrap_or(4096);
            prp(
                &mut p,
                mps,
                u64_field(req, "length").unwrap_or(0),
                prp1,
                prp2,
                &mem,
            );
            target_kind = Target::Addr;
            if let Verdict::Rejected {
                kind: "invalid_prp_offset",
                extra,
                ..
            } = v
            {
                if !extra.contains_key("at") {
                    // DPTR itself: PRP1 when it is misaligned, else PRP2.
                    let which = if prp1 & 3 != 0 { 1 } else { 2 };
                    mark(&mut p, v, Some(Target::Dptr(which)));
                    return Ok(p);
                }
            }
        }
        "decode-sgl" => {
            let d = SglDescriptor::from_bytes(dptr(req.get("dptr"))?);
            let mem = memory(req.get("memory"))?;
            sgl(&mut p, u64_field(req, "length"), d, &mem);
            target_kind = Target::Addr;
            if let Verdict::Rejected { extra, .. } = v {
                if !extra.contains_key("at") {
                    mark(&mut p, v, Some(Target::Dptr(1)));
                    return Ok(p);
                }
            }
        }
        "sg" => {
            segments(&mut p, "input physical segments", &segs);
            if let Some(r) = resp {
                let mem = memory(r.get("memory"))?;
                let vm = Vmemmap::new(u64_field(req, "vmemmap_base").unwrap_or(0));
                scatterlist(
                    &mut p,
                    u64_field(r.as_object().unwrap_or(&Map::new()), "sgl").unwrap_or(0),
                    &vm,
                    &mem,
                );
            }
        }
        "decode-sg" => {
            let mem = memory(req.get("memory"))?;
            let vm = Vmemmap::new(u64_field(req, "vmemmap_base").unwrap_or(0));
            scatterlist(&mut p, u64_field(req, "sgl").unwrap_or(0), &vm, &mem);
            target_kind = Target::AddrOrIndex;
        }
        "mr-pages" => {
            segments(&mut p, "input DMA segments", &segs);
            if let Some(r) = resp.and_then(Value::as_object) {
                let pages: Vec<u64> = r
                    .get("pages")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_u64).collect())
                    .unwrap_or_default();
                let mapped = u64_field(r, "mapped").unwrap_or(0);
                mr_pages(
                    &mut p,
                    u64_field(req, "page_size").unwrap_or(4096),
                    u64_field(r, "iova").unwrap_or(0),
                    u64_field(r, "length").unwrap_or(0),
                    &pages,
                );
                if mapped < segs.len() as u64 {
                    p.text(format!(
                        "  page list full: {mapped} of {} segments mapped, resume in segment {mapped} at offset {:#x}",
                        segs.len(),
                        u64_field(r, "sg_offset").unwrap_or(0)
                    ));
                } else {
                    p.text(format!("  all {} segments mapped", segs.len()));
                }
            }
        }
        "mlx5-mtt" => {
            let pages: Vec<u64> = req
                .get("pages")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            p.text(format!("input: {} page address(es)", pages.len()));
            match resp {
                Some(r) => {
                    let b = crate::cli::unhex(r.get("hex").and_then(Value::as_str).unwrap_or(""))?;
                    mtt(&mut p, &b, pages.len());
                }
                None => {
                    for (i, pg) in pages.iter().enumerate().take(MAX_LINES) {
                        p.push(format!("  [{i:>3}] {pg:#x}"), None, Some(i as u64), None);
                    }
                }
            }
        }
        "mlx5-klm" => {
            segments(&mut p, "input DMA segments", &segs);
            if let Some(r) = resp {
                let b = crate::cli::unhex(r.get("hex").and_then(Value::as_str).unwrap_or(""))?;
                let n = physvec::rdma::klm_count(
                    &segs
                        .iter()
                        .filter_map(|&[a, l]| physvec::DmaRange::try_new(a, l).ok())
                        .collect::<Vec<_>>(),
                );
                klm(&mut p, &b, n as usize);
            }
        }
        "map" => {
            segments(&mut p, "input physical segments", &segs);
            if let Some(r) = resp {
                let tr = pairs(r.get("translations"));
                p.text(format!(
                    "through the {} mapper: each segment's first byte lands at",
                    req.get("mapper").and_then(Value::as_str).unwrap_or("?")
                ));
                for (i, [dma, phys]) in tr.iter().enumerate().take(MAX_LINES) {
                    p.text(format!("  [{i}] phys {phys:#x} -> dma {dma:#x}"));
                }
                segments(&mut p, "device-visible DMA ranges", &pairs(r.get("dma")));
                p.text(format!(
                    "IOVA syncs: {}",
                    r.get("iova_syncs").and_then(Value::as_u64).unwrap_or(0)
                ));
            }
        }
        _ => unreachable!("checked by the caller"),
    }
    if let Verdict::Rejected { extra, .. } = v {
        let at = extra.get("at").and_then(Value::as_u64).map(target_kind);
        mark(&mut p, v, at);
    }
    if let (Some(r), true) = (resp, command.starts_with("decode-")) {
        let out = r.get("segments").and_then(Value::as_array);
        p.text(format!(
            "decoded: {} segment(s) (coalesced)",
            out.map_or(0, Vec::len)
        ));
        for (i, s) in out.into_iter().flatten().enumerate().take(MAX_LINES) {
            let a = s.get(0).and_then(Value::as_u64);
            let l = s.get(1).and_then(Value::as_u64).unwrap_or(0);
            match a {
                Some(a) => p.text(format!("  [{i}] {a:#x} {}", Bytes(l))),
                None => p.text(format!("  [{i}] bit bucket {}", Bytes(l))),
            }
        }
    }
    Ok(p)
}

fn mark(p: &mut Picture, v: &Verdict, target: Option<Target>) {
    if let Verdict::Rejected {
        kind,
        message,
        extra,
    } = v
    {
        let status = extra
            .get("nvme_status")
            .and_then(Value::as_u64)
            .map(|s| format!(" (nvme_status {s:#06x})"))
            .unwrap_or_default();
        p.mark(target, &format!("{kind}{status}: {message}"));
    }
}

/// The commands `explain` draws.
pub const COMMANDS: [&str; 12] = [
    "prp",
    "sgl",
    "decode-prp",
    "decode-sgl",
    "sg",
    "decode-sg",
    "mr-pages",
    "mlx5-mtt",
    "mlx5-klm",
    "map",
    "vtd",
    "vtd-translate",
];

/// `physvec explain`: reads the request, runs its command, prints the picture.
/// Returns the exit code.
pub fn run(input: &str) -> i32 {
    match explain(input) {
        Ok((text, code)) => {
            print!("{text}");
            code
        }
        Err(CliError::Malformed(m)) => {
            eprintln!("physvec explain: {m}");
            2
        }
        Err(CliError::Rejected { kind, message, .. }) => {
            eprintln!("physvec explain: {kind}: {message}");
            2
        }
    }
}

/// The picture's text and the exit code for a request.
pub fn explain(input: &str) -> Result<(String, i32), CliError> {
    let mut req: Map<String, Value> = serde_json::from_str(input)
        .map_err(|e| CliError::Malformed(format!("bad request: {e}")))?;
    let command = match req.remove("command") {
        Some(Value::String(c)) if COMMANDS.contains(&c.as_str()) => c,
        Some(c) => {
            return Err(CliError::Malformed(format!(
                "\"command\" must be one of {COMMANDS:?}, got {c}"
            )))
        }
        None => {
            return Err(CliError::Malformed(format!(
                "missing \"command\" (one of {COMMANDS:?})"
            )))
        }
    };
    if command.starts_with("vtd") {
        return crate::vtd::explain(&command, &req);
    }
    let f = crate::command(&command).ok_or_else(|| CliError::Malformed(command.clone()))?;
    let verdict = match f(&Value::Object(req.clone()).to_string()) {
        Ok(v) => Verdict::Ok(v),
        Err(CliError::Rejected {
            kind,
            message,
            extra,
        }) => Verdict::Rejected {
            kind,
            message,
            extra,
        },
        Err(e) => return Err(e),
    };
    let p = draw(&command, &req, &verdict)?;
    let mut text = format!("physvec explain: {command}\n\n");
    text.push_str(&p.render());
    let code = match &verdict {
        Verdict::Ok(_) => {
            text.push_str("\nok\n");
            0
        }
        Verdict::Rejected { kind, message, .. } => {
            let _ = writeln!(text, "\nrejected: {kind}: {message}");
            1
        }
    };
    Ok((text, code))
}
