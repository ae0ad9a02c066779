//! The picture renderer shared by `explain` and the tour: PRP1/PRP2 and each PRP list
//! page with its chain pointer, SGL segments and their descriptors, scatterlist chunks
//! and chain entries, MR pages, MTT/KLM entries, DMA segments. Addresses are hex, sizes
//! human ([`Bytes`]); a line can be marked `<== ERROR`.
//!
//! The walks here are for display only and bounded ([`MAX_LINES`] entries, loops cut);
//! validation is always the library's.

use physvec::mem::MemoryReader;
use physvec::nvme::{SglDescriptor, SglDescriptorType};
use physvec::sg::{PageModel, Scatterlist, Vmemmap};
use std::collections::HashSet;
use std::fmt;
use std::fmt::Write as _;

/// An exact size: `4 KiB`, `7.5 KiB` or `512 B` when [`physvec::fmt::Bytes`] shows it
/// exactly, else the byte count (`3328 B`).
#[derive(Clone, Copy)]
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let human = physvec::fmt::Bytes(self.0).to_string();
        // Exact when whole, or when one decimal is exact (n * 10 a multiple of the unit).
        let unit = (0..7u32)
            .rev()
            .find(|&u| self.0 >> (10 * u) >= 1)
            .unwrap_or(0);
        let scale = 1u128 << (10 * unit);
        if (self.0 as u128 * 10) % scale == 0 {
            f.write_str(&human)
        } else {
            write!(f, "{} B", self.0)
        }
    }
}

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

    pub fn push(&mut self, text: String, addr: Option<u64>, index: Option<u64>, dptr: Option<u8>) {
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
        Size(u64::try_from(total).unwrap_or(u64::MAX))
    ));
    for (i, &[a, l]) in segs.iter().enumerate().take(MAX_LINES) {
        let end = match a.checked_add(l) {
            Some(e) => format!("{e:#x}"),
            None if u128::from(a) + u128::from(l) == 1 << 64 => "2^64".into(),
            None => "past 2^64".into(),
        };
        p.push(
            format!("  [{i}] {a:#x}..{end} ({})", Size(l)),
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
        Size(len),
        Size(mps)
    ));
    if len == 0 {
        p.text("  zero-length transfer: DPTR unused");
        return;
    }
    let first = len.min(mps - (prp1 & mask));
    p.push(
        format!(
            "  PRP1  {prp1:#018x}  data  {} (offset {:#x} in page {:#x})",
            Size(first),
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
            format!("  PRP2  {prp2:#018x}  data  {}", Size(rem)),
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
                p.text(format!("    ... {} more to describe", Size(rem)));
                return;
            }
            shown += 1;
            let Ok(e) = mem.read_u64_le(physvec::DmaAddr::new(at)) else {
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
                format!("    [{slot:>3}] {at:#x}  {e:#018x}  data  {}", Size(l)),
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
            Size(u64::from(d.length()))
        ),
        SglDescriptorType::BitBucket => {
            format!(
                "Bit Bucket        {} discarded",
                Size(u64::from(d.length()))
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
            Size(u64::from(d.keyed_length())),
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
        Some(l) => p.text(format!("SGL data pointer: {} transfer", Size(l))),
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
        let addr = ptr.address().as_u64();
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
            if mem.read(physvec::DmaAddr::new(at), &mut b).is_err() {
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
        Size(data),
        if bucket > 0 {
            format!(" and {} of bit buckets", Size(bucket))
        } else {
            String::new()
        }
    ));
}

/// A Linux `struct scatterlist` table from `sgl`: chunks, data entries (index = data
/// entry number) and chain entries.
pub fn scatterlist<M: MemoryReader<physvec::Virt> + ?Sized>(
    p: &mut Picture,
    sgl: u64,
    vm: &Vmemmap,
    mem: &M,
) {
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
        if mem.read(physvec::VirtAddr::new(at), &mut b).is_err() {
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
                Size(u64::from(e.dma_length))
            )
        } else {
            String::new()
        };
        p.push(
            format!(
                "    {at:#x}  [{index}] page {page:#x} +{:#x} {} ({phys}){dma}{}",
                e.offset,
                Size(u64::from(e.length)),
                if e.is_last() { "  SG_END" } else { "" }
            ),
            Some(at),
            Some(index),
            None,
        );
        total = total.saturating_add(e.length.into());
        index += 1;
        if e.is_last() {
            p.text(format!("  {index} data entries, {}", Size(total)));
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
        Size(length),
        pages.len(),
        Size(page_size)
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
        Size(bytes.len() as u64)
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
        Size(bytes.len() as u64)
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
                Size(u64::from(bcount))
            ),
            None,
            Some(i as u64),
            None,
        );
    }
}
