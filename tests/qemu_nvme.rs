//! Conformance of physvec's NVMe PRP/SGL encoders and decoders against QEMU's emulated NVMe
//! controller, driven over the qtest protocol with no guest OS (see DESIGN.md, "Conformance
//! (QEMU)"). Skipped with a printed reason when `qemu-system-x86_64` is missing, unless
//! `PHYSVEC_REQUIRE_QEMU=1`. Set `PHYSVEC_QEMU_SEED` to replay a run.

mod qemu;

use std::time::Instant;

use physvec::nvme::{
    decode_command, encode_prp, encode_sgl, prp_entries as crate_prp_entries,
    prp_list_pages_needed, DataPointer, DecodeOptions, MemoryPageSize, PrpListPage, Psdt,
    SglCapabilities, SglDescriptor, SglItem, SglOptions, SglSegmentPage, SubmissionQueueEntry,
};
use physvec::{DmaAddr, DmaRange};
use qemu::layout::{
    prp_entries, qemu72_sgl_defect, Desc, PrpLayout, SglLayout, BIT_BUCKET, KEYED_DATA_BLOCK,
    LAST_SEGMENT, SEGMENT, VENDOR,
};
use qemu::nvme_host::{prp_dptr, NvmeHost, OPC_READ, OPC_WRITE};
use qemu::qtest::{qemu_or_skip, GUEST_RAM};
use qemu::GuestMemory;
use qemu::Rng;

/// Disk image size: 8 MiB (16384 LBAs of 512 B).
const IMAGE_LEN: usize = 8 << 20;
/// Guest RAM for PRP list pages and SGL segments.
const DESC_LO: u64 = 0x20_0000;
const DESC_HI: u64 = 0x100_0000;
/// Guest RAM for data destinations.
const DATA_LO: u64 = 0x100_0000;
const DATA_HI: u64 = 0x800_0000;
/// Bytes checked on each side of every destination segment.
const GUARD: u64 = 64;
/// Memory page sizes (CC.MPS 0..=4).
const PAGE_SIZES: [u64; 5] = [4 << 10, 8 << 10, 16 << 10, 32 << 10, 64 << 10];

/// Position-dependent image contents: every little-endian u32 holds its own byte offset
/// XOR `salt`, so misplaced, shifted or reordered data is detected.
fn pattern_image(salt: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(IMAGE_LEN);
    for off in (0..IMAGE_LEN as u32).step_by(4) {
        v.extend_from_slice(&(off ^ salt).to_le_bytes());
    }
    v
}

fn prp(prp1: u64, prp2: u64) -> DataPointer {
    DataPointer::Prp {
        prp1: physvec::DmaAddr::new(prp1),
        prp2: physvec::DmaAddr::new(prp2),
    }
}

/// Identify, then reads with hand-computed PRPs: a page-offset PRP1 + PRP2 data pointer,
/// and a three-entry PRP list.
#[test]
fn smoke_identify_and_read() {
    let Some(qemu) = qemu_or_skip("smoke_identify_and_read") else {
        return;
    };
    let image = pattern_image(0x5a00_0000);
    let mut h = NvmeHost::start(&qemu, &image);
    assert_eq!(h.lba_size, 512);
    assert_eq!(h.nsze, (IMAGE_LEN / 512) as u64);
    assert_ne!(h.sgls & 3, 0, "controller reports no SGL support");
    assert!(h.mdts_bytes >= 64 << 10);
    assert_eq!(h.page_size_range(), (4096, 64 << 10));

    // 4 KiB from LBA 8 to 0x1000800 (2 KiB in PRP1's page) and 0x1005000 (PRP2).
    h.qt.memset(0x100_0000, 0x1_0000, 0xa5);
    let c = h.rw(OPC_READ, 8, 8, prp(0x100_0800, 0x100_5000));
    assert!(c.ok(), "{c}");
    assert_eq!(h.qt.read_vec(0x100_0800, 0x800), image[0x1000..0x1800]);
    assert_eq!(h.qt.read_vec(0x100_5000, 0x800), image[0x1800..0x2000]);
    assert_eq!(h.qt.read_vec(0x100_07f0, 0x10), [0xa5; 16]);
    assert_eq!(h.qt.read_vec(0x100_5800, 0x10), [0xa5; 16]);

    // 16 KiB from LBA 0 through a PRP list at 0x200000: [0x1002000, 0x1009000, 0x1004000].
    let list: Vec<u8> = [0x100_2000u64, 0x100_9000, 0x100_4000]
        .iter()
        .flat_map(|e| e.to_le_bytes())
        .collect();
    h.qt.write(0x20_0000, &list);
    let c = h.rw(OPC_READ, 0, 32, prp(0x100_7000, 0x20_0000));
    assert!(c.ok(), "{c}");
    for (i, page) in [0x100_7000u64, 0x100_2000, 0x100_9000, 0x100_4000]
        .iter()
        .enumerate()
    {
        assert_eq!(
            h.qt.read_vec(*page, 0x1000),
            image[i * 0x1000..(i + 1) * 0x1000],
            "page {i}"
        );
    }

    // A PRP2 data pointer with an offset is PRP Offset Invalid (13h) with DNR.
    let c = h.rw(OPC_READ, 0, 16, prp(0x100_0800, 0x100_5200));
    assert_eq!((c.status, c.dnr), (0x13, true), "{c}");

    // Page size 64 KiB via CC.MPS: 8 KiB at offset 0xf000 of a 64 KiB page, then PRP2.
    h.enable(64 << 10);
    let c = h.rw(OPC_READ, 16, 16, prp(0x102_f000, 0x105_0000));
    assert!(c.ok(), "{c}");
    assert_eq!(h.qt.read_vec(0x102_f000, 0x1000), image[0x2000..0x3000]);
    assert_eq!(h.qt.read_vec(0x105_0000, 0x1000), image[0x3000..0x4000]);
    eprintln!(
        "qemu smoke: {} {} (VS {:#x}, MDTS {} KiB, SGLS {:#x}): {} commands, {} round-trips",
        h.model,
        h.firmware,
        h.vs,
        h.mdts_bytes >> 10,
        h.sgls,
        h.commands,
        h.qt.round_trips
    );
}

// ---------------------------------------------------------------------------------------
// Placement of per-command regions in guest RAM.

/// Hands out non-overlapping regions for one command.
#[derive(Default)]
struct Placer {
    used: Vec<(u64, u64)>,
}

impl Placer {
    /// A random `align`-aligned start plus `offset` in `[lo, hi)` for `len` bytes, at
    /// least `gap` bytes away from everything placed before.
    fn place(&mut self, rng: &mut Rng, lo: u64, hi: u64, len: u64, align: u64, offset: u64) -> u64 {
        for _ in 0..10_000 {
            let slots = (hi - lo - len - offset) / align;
            let a = lo + rng.range(0, slots - 1) * align + offset;
            if self
                .used
                .iter()
                .all(|&(s, e)| a + len + GUARD <= s || e + GUARD <= a)
            {
                self.used.push((a, a + len));
                return a;
            }
        }
        panic!("guest RAM too fragmented for {len:#x} bytes")
    }
}

// ---------------------------------------------------------------------------------------
// Valid layouts: data lands where the encoding says.

/// A transfer's data segments (guest address, length) in transfer order.
type Segs = Vec<(u64, u64)>;

/// Random PRP-compatible segments for `len` bytes at page size `page`: the first starts at a
/// dword-aligned offset, the rest are page aligned, runs of 1..=4 contiguous pages each.
fn gen_prp_segs(rng: &mut Rng, p: &mut Placer, page: u64, len: u64) -> Segs {
    let off = if rng.chance(1, 3) {
        0
    } else {
        rng.range(0, page / 4 - 1) * 4
    };
    let mut segs = Vec::new();
    let mut done = 0;
    while done < len {
        let o = if segs.is_empty() { off } else { 0 };
        let run = (rng.range(1, 4) * page - o).min(len - done);
        let a = p.place(rng, DATA_LO, DATA_HI, run, page, o);
        segs.push((a, run));
        done += run;
    }
    segs
}

/// Random byte-granular segments for `len` bytes, at most `max_n` of them.
fn gen_sgl_segs(rng: &mut Rng, p: &mut Placer, len: u64, max_n: u64) -> Segs {
    let n = rng.log_range(1, max_n.min(len));
    let mut cuts: Vec<u64> = (1..n).map(|_| rng.range(1, len - 1)).collect();
    cuts.push(0);
    cuts.push(len);
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2)
        .map(|w| {
            let l = w[1] - w[0];
            (p.place(rng, DATA_LO, DATA_HI, l, 1, 0), l)
        })
        .collect()
}

/// An encoded transfer ready to submit.
struct Encoded {
    dp: DataPointer,
    /// List pages / segments to store in guest memory first.
    writes: Vec<(u64, Vec<u8>)>,
    /// The layout as sent (for failure messages).
    text: String,
    /// Whether QEMU 7.2's §7 defect makes it reject this valid layout.
    qemu_defect: bool,
}

fn dma_ranges(segs: &Segs) -> Vec<DmaRange> {
    segs.iter().map(|&(a, l)| DmaRange::new(a, l)).collect()
}

/// The crate's PRP encoder, with list pages scattered over guest RAM (the first at a
/// random qword offset a quarter of the time, often close to its page end so that lists
/// chain).
fn encode_prp_crate(
    rng: &mut Rng,
    p: &mut Placer,
    segs: &Segs,
    page: u64,
) -> Result<Encoded, String> {
    let mps = MemoryPageSize::new(page).map_err(|e| e.to_string())?;
    let ranges = dma_ranges(segs);
    let n =
        crate_prp_entries(ranges.iter().copied(), mps).map_err(|e| format!("prp_entries: {e}"))?;
    let first_off = match rng.range(0, 7) {
        0 => rng.range(0, page / 8 - 1) * 8,
        1 => page - 8 * rng.range(2, 8),
        _ => 0,
    };
    let pages = prp_list_pages_needed(n, mps, first_off);
    let addrs: Vec<u64> = (0..pages)
        .map(|i| {
            p.place(
                rng,
                DESC_LO,
                DESC_HI,
                page,
                page,
                if i == 0 { first_off } else { 0 },
            )
        })
        .collect();
    let mut bufs: Vec<Vec<u64>> = addrs
        .iter()
        .map(|a| vec![0u64; ((page - a % page) / 8) as usize])
        .collect();
    let pool = addrs
        .iter()
        .zip(bufs.iter_mut())
        .map(|(a, b)| PrpListPage::new(DmaAddr::new(*a), b));
    let enc =
        encode_prp(ranges.iter().copied(), mps, pool).map_err(|e| format!("encode_prp: {e}"))?;
    let lists: Vec<(u64, Vec<u64>)> = (0..enc.list_pages_used())
        .map(|i| {
            (
                addrs[i],
                bufs[i][..enc.list_page_entries(i) as usize]
                    .iter()
                    .map(|e| u64::from_le(*e))
                    .collect(),
            )
        })
        .collect();
    let l = PrpLayout {
        prp1: enc.prp1.as_u64(),
        prp2: enc.prp2.as_u64(),
        lists,
    };
    // An independent check of the encoding: the same PRPs as the reference builder.
    let reference = PrpLayout::build(&prp_entries(segs, page), page, &addrs);
    if l != reference {
        return Err(format!(
            "encode_prp gave {l}, the reference builder {reference}"
        ));
    }
    Ok(Encoded {
        dp: enc.data_pointer(),
        writes: l.writes(),
        text: l.to_string(),
        qemu_defect: false,
    })
}

/// The shape asked of the SGL encoder (through the size of the segment pages offered).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum SglShape {
    /// One Data Block in DPTR.
    Single,
    /// DPTR = Last Segment → all Data Blocks.
    LastSegment,
    /// DPTR = Segment → … → Last Segment.
    Chained,
}

/// Follows an SGL from DPTR through segment pages held in `pages` (bus address, slots).
fn walk_sgl(dptr: SglDescriptor, pages: &[(u64, Vec<SglDescriptor>)]) -> Result<SglLayout, String> {
    let conv = |d: &SglDescriptor| Desc::from_bytes(&d.to_bytes());
    let mut l = SglLayout {
        dptr: Some(conv(&dptr)),
        segments: vec![],
    };
    let mut link = conv(&dptr);
    while link.ty == SEGMENT || link.ty == LAST_SEGMENT {
        let (_, slots) = pages
            .iter()
            .find(|(a, _)| *a == link.addr)
            .ok_or_else(|| format!("segment descriptor {link} points outside the pages offered"))?;
        let n = link.len as usize / 16;
        if n == 0 || n > slots.len() || l.segments.len() > pages.len() {
            return Err(format!("bad segment descriptor {link}"));
        }
        let seg: Vec<Desc> = slots[..n].iter().map(conv).collect();
        let last = seg[n - 1];
        l.segments.push((link.addr, seg));
        link = last;
    }
    Ok(l)
}

/// The crate's SGL encoder. The page capacity steers the shape: room for everything gives
/// DPTR = Last Segment, small pages (2..=8 slots) give chains; `workaround` turns on
/// [`SglOptions::qemu_chain_workaround`].
fn encode_sgl_crate(
    rng: &mut Rng,
    p: &mut Placer,
    segs: &Segs,
    caps: u32,
    chained: bool,
    workaround: bool,
) -> Result<(Encoded, SglShape), String> {
    let opts =
        SglOptions::new(SglCapabilities::from_raw(caps)).with_qemu_chain_workaround(workaround);
    let items: Vec<SglItem> = dma_ranges(segs).into_iter().map(SglItem::Data).collect();
    let n = segs.len() as u64;
    let slots = if chained {
        rng.range(2, 8)
    } else {
        n.max(2) + rng.range(0, 4)
    };
    // Enough pages for any layout (each holds at least one data descriptor).
    let count = if chained { n + 1 } else { 1 };
    let mut pages: Vec<(u64, Vec<SglDescriptor>)> = (0..count)
        .map(|_| {
            (
                p.place(rng, DESC_LO, DESC_HI, 16 * slots, 16, 0),
                vec![SglDescriptor::default(); slots as usize],
            )
        })
        .collect();
    let pool = pages
        .iter_mut()
        .map(|(a, d)| SglSegmentPage::new(DmaAddr::new(*a), d));
    let enc =
        encode_sgl(items.iter().copied(), opts, pool).map_err(|e| format!("encode_sgl: {e}"))?;
    let l = walk_sgl(enc.dptr, &pages)?;
    if l.segments.len() != enc.segments_used() {
        return Err(format!(
            "encode_sgl reports {} segments, the chain has {}: {l}",
            enc.segments_used(),
            l.segments.len()
        ));
    }
    let shape = match l.segments.len() {
        0 => SglShape::Single,
        1 => SglShape::LastSegment,
        _ => SglShape::Chained,
    };
    let defect = qemu72_sgl_defect(&l);
    if workaround && defect.is_some() {
        return Err(format!(
            "qemu_chain_workaround on, yet the chain triggers QEMU's defect: {l}"
        ));
    }
    let enc = Encoded {
        dp: enc.data_pointer(),
        writes: l.writes(),
        text: l.to_string(),
        qemu_defect: defect == Some(true),
    };
    Ok((enc, shape))
}

#[derive(Default)]
struct Stats {
    cases: u64,
    round_trips: u64,
    prp: u64,
    sgl: u64,
    writes: u64,
    bytes: u64,
    compared: u64,
    classes: std::collections::BTreeMap<&'static str, u64>,
    shapes: std::collections::BTreeMap<SglShape, u64>,
    defect: u64,
    failures: Vec<String>,
}

impl Stats {
    fn fail(&mut self, msg: String) {
        eprintln!("FAIL: {msg}");
        self.failures.push(msg);
    }
}

/// Disjoint windows `[a - GUARD, a + l + GUARD)` around the segments, merged.
fn windows(segs: &Segs) -> Vec<(u64, u64)> {
    let mut w: Vec<(u64, u64)> = segs
        .iter()
        .map(|&(a, l)| (a - GUARD, a + l + GUARD))
        .collect();
    w.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in w {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// Runs one Read (`write == false`) or Write of `segs` encoded as `enc`, and checks every
/// destination byte and the guard bytes (Read) or the image file (Write).
#[allow(clippy::too_many_arguments)]
fn transfer(
    h: &mut NvmeHost,
    rng: &mut Rng,
    model: &mut [u8],
    write: bool,
    slba: u64,
    segs: &Segs,
    enc: &Encoded,
) -> Result<(), String> {
    let len: u64 = segs.iter().map(|s| s.1).sum();
    let lba = h.lba_size;
    let what = format!(
        "{} page {} KiB LBA {slba} len {len:#x} segs {:x?} encoded as {}",
        if write { "Write" } else { "Read" },
        h.page_size >> 10,
        segs,
        enc.text
    );
    let fill = rng.next_u64() as u8;
    let wins = windows(segs);
    for &(s, e) in &wins {
        h.qt.memset(s, e - s, fill);
    }
    let mut data = vec![0u8; len as usize];
    if write {
        rng.fill(&mut data);
        let mut off = 0;
        for &(a, l) in segs {
            h.qt.write(a, &data[off..off + l as usize]);
            off += l as usize;
        }
    }
    for (a, b) in &enc.writes {
        h.qt.write(*a, b);
    }
    let op = if write { OPC_WRITE } else { OPC_READ };
    let c = h.rw(op, slba, (len / lba) as u32, enc.dp);
    if enc.qemu_defect {
        return if c.status == 0x0d {
            Ok(())
        } else {
            Err(format!("{what}: expected QEMU's §7 defect (0Dh), got {c}"))
        };
    }
    if !c.ok() {
        return Err(format!("{what}: QEMU rejected a valid layout: {c}"));
    }
    let image_at = (slba * lba) as usize;
    if write {
        let got = h.qt.read_image(slba * lba, len as usize);
        if let Some(i) = first_difference(&got, &data) {
            return Err(format!(
                "{what}: image byte {:#x} of the transfer is {:#04x}, expected {:#04x}",
                i, got[i], data[i]
            ));
        }
        model[image_at..image_at + len as usize].copy_from_slice(&data);
        return Ok(());
    }
    for &(s, e) in &wins {
        let mut want = vec![fill; (e - s) as usize];
        let mut off = image_at;
        for &(a, l) in segs {
            let l = l as usize;
            if a >= s && a < e {
                let at = (a - s) as usize;
                want[at..at + l].copy_from_slice(&model[off..off + l]);
            }
            off += l;
        }
        let got = h.qt.read_vec(s, want.len());
        if let Some(i) = first_difference(&got, &want) {
            let addr = s + i as u64;
            let inside = segs.iter().any(|&(a, l)| addr >= a && addr < a + l);
            return Err(format!(
                "{what}: guest byte {addr:#x} ({}) is {:#04x}, expected {:#04x}",
                if inside {
                    "destination"
                } else {
                    "guard: outside every destination"
                },
                got[i],
                want[i]
            ));
        }
    }
    Ok(())
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    if a == b {
        return None;
    }
    Some(
        a.iter()
            .zip(b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len())),
    )
}

/// A random transfer: LBA-multiple length log-uniform in one LBA..=MDTS, random start LBA.
fn gen_io(rng: &mut Rng, h: &NvmeHost) -> (u64, u64) {
    let lba = h.lba_size;
    let max_blocks = (h.mdts_bytes / lba).min(h.nsze);
    let blocks = rng.log_range(1, max_blocks);
    let slba = rng.range(0, h.nsze - blocks);
    (slba, blocks * lba)
}

/// Data-landing cases: PRP (every page size) and SGL (every shape, with and without the
/// QEMU chain workaround), Reads and Writes; every layout encoded by the crate.
fn data_lands(h: &mut NvmeHost, rng: &mut Rng, model: &mut [u8], per_page: u64, st: &mut Stats) {
    for &page in &PAGE_SIZES {
        h.enable(page);
        for i in 0..per_page {
            let write = i % 5 == 4;
            // PRP
            let (slba, len) = gen_io(rng, h);
            let mut p = Placer::default();
            let segs = gen_prp_segs(rng, &mut p, page, len);
            match encode_prp_crate(rng, &mut p, &segs, page) {
                Ok(enc) => {
                    if let Err(e) = transfer(h, rng, model, write, slba, &segs, &enc)
                        .and_then(|()| check_round_trip(h, &enc, &segs, st))
                    {
                        st.fail(e);
                    }
                }
                Err(e) => st.fail(format!("PRP page {page:#x} segs {segs:x?}: {e}")),
            }
            st.prp += 1;
            // SGL
            let (slba, len) = gen_io(rng, h);
            let mut p = Placer::default();
            let segs = gen_sgl_segs(rng, &mut p, len, 64);
            let chained = segs.len() > 2 && rng.chance(1, 2);
            let workaround = rng.chance(1, 2);
            match encode_sgl_crate(rng, &mut p, &segs, h.sgls, chained, workaround) {
                Ok((enc, shape)) => {
                    *st.shapes.entry(shape).or_default() += 1;
                    st.defect += u64::from(enc.qemu_defect);
                    if let Err(e) = transfer(h, rng, model, write, slba, &segs, &enc)
                        .and_then(|()| check_round_trip(h, &enc, &segs, st))
                    {
                        st.fail(e);
                    }
                }
                Err(e) => st.fail(format!("SGL segs {segs:x?} workaround {workaround}: {e}")),
            }
            st.sgl += 1;
            st.writes += u64::from(write) * 2;
            st.bytes += len;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Malformed (and edge) layouts: the crate's decoders return QEMU's status.

/// A layout as sent to the controller.
#[derive(Clone, Debug)]
enum Layout {
    Prp(PrpLayout),
    Sgl(SglLayout),
}

impl Layout {
    fn writes(&self) -> Vec<(u64, Vec<u8>)> {
        match self {
            Layout::Prp(l) => l.writes(),
            Layout::Sgl(l) => l.writes(),
        }
    }
    fn dptr(&self) -> [u8; 16] {
        match self {
            Layout::Prp(l) => prp_dptr(l.prp1, l.prp2),
            Layout::Sgl(l) => l.dptr_bytes(),
        }
    }
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Layout::Prp(l) => write!(f, "{l}"),
            Layout::Sgl(l) => write!(f, "{l}"),
        }
    }
}

/// One status-comparison case.
struct Case {
    /// Class name (printed; the `STRICTER` table is keyed by it).
    class: &'static str,
    layout: Layout,
    psdt: u8,
    /// Transfer length in bytes (a multiple of the LBA size).
    len: u64,
    /// The status QEMU 7.2 returns for this class (`nvme-prp-sgl.md` §5-§7).
    qemu: u16,
}

/// Classes where the crate deliberately differs from QEMU 7.2, explicitly: (class, QEMU's
/// status, the crate's status strict, the crate's status with `qemu_compat`). Every other
/// class must get QEMU's status in both modes.
///
/// Strict mode checks what QEMU leaves unchecked: PRP1 dword alignment and PRP list
/// pointer qword alignment (bits 1:0 / 2:0 are reserved), the Data Block subtype (only 0h
/// Address on PCIe), an SGL longer than the transfer without SGLS bit 18, and it names a
/// bad descriptor type SGL Descriptor Type Invalid (11h) where QEMU's walk says Invalid
/// SGL Segment Descriptor (0Dh) because it first asks whether the segment ends in data.
/// MDTS is in units of CAP.MPSMIN pages (the crate's limit comes from the host's Identify),
/// QEMU 7.2 scales it by CC.MPS.
/// In both modes the crate does not copy QEMU's §7 defect: it accepts the valid chain QEMU
/// rejects and rejects the Last Segment → chaining segment QEMU lets through.
const DIFFERENCES: &[(&str, u16, u16, u16)] = &[
    ("qemu72_mdts_in_cc_mps_units", 0x00, 0x02, 0x02),
    ("prp1_not_dword_aligned", 0x00, 0x13, 0x00),
    ("prp_list_pointer_not_qword_aligned", 0x00, 0x13, 0x00),
    ("sgl_subtype_not_address", 0x00, 0x11, 0x00),
    ("sgl_length_too_long_last_block", 0x00, 0x0f, 0x00),
    ("sgl_bad_type_in_dptr", 0x0d, 0x11, 0x0d),
    ("sgl_bad_type_last_in_last_segment", 0x0d, 0x11, 0x0d),
    ("qemu72_valid_chain_rejected", 0x0d, 0x00, 0x00),
    ("qemu72_last_segment_chain_missed", 0x00, 0x0d, 0x0d),
];

/// PRP-compatible segments with exactly `n` PRP entries for a transfer starting at page
/// offset `off` (a multiple of 512); returns (segments, length).
fn prp_segs_n(rng: &mut Rng, p: &mut Placer, page: u64, n: u64, off: u64) -> (Segs, u64) {
    let len = if n == 1 {
        rng.range(1, (page - off) / 512) * 512
    } else {
        (page - off) + (n - 2) * page + rng.range(1, page / 512) * 512
    };
    let mut segs = Vec::new();
    let mut done = 0;
    while done < len {
        let o = if segs.is_empty() { off } else { 0 };
        let run = (rng.range(1, 3) * page - o).min(len - done);
        segs.push((p.place(rng, DATA_LO, DATA_HI, run, page, o), run));
        done += run;
    }
    (segs, len)
}

fn prp_layout(rng: &mut Rng, p: &mut Placer, segs: &Segs, page: u64, first_off: u64) -> PrpLayout {
    let entries = prp_entries(segs, page);
    let n = PrpLayout::lists_needed(entries.len(), page, first_off);
    let lists: Vec<u64> = (0..n)
        .map(|i| {
            p.place(
                rng,
                DESC_LO,
                DESC_HI,
                page,
                page,
                if i == 0 { first_off } else { 0 },
            )
        })
        .collect();
    PrpLayout::build(&entries, page, &lists)
}

/// Malformed and edge PRP cases at page size `page` (max `max_len` bytes per transfer).
fn prp_cases(rng: &mut Rng, page: u64, max_len: u64) -> Vec<Case> {
    let max_n = (max_len / page).max(3);
    let mut cases = Vec::new();
    let off512 = |rng: &mut Rng| rng.range(0, page / 512 - 1) * 512;
    let mut case = |class, layout: PrpLayout, len, qemu| {
        cases.push(Case {
            class,
            layout: Layout::Prp(layout),
            psdt: 0,
            len,
            qemu,
        })
    };
    // PRP2 as a data pointer with an offset.
    let mut p = Placer::default();
    let off = off512(rng);
    let (segs, len) = prp_segs_n(rng, &mut p, page, 2, off);
    let mut l = prp_layout(rng, &mut p, &segs, page, 0);
    l.prp2 += rng.range(1, page / 4 - 1) * 4;
    case("prp2_data_offset", l, len, 0x13);
    // A list entry (not a chain pointer) with an offset.
    let mut p = Placer::default();
    let n = rng.range(3, max_n.min(24));
    let off = off512(rng);
    let (segs, len) = prp_segs_n(rng, &mut p, page, n, off);
    let mut l = prp_layout(rng, &mut p, &segs, page, 0);
    let i = rng.range(0, l.lists[0].1.len() as u64 - 1) as usize;
    l.lists[0].1[i] += rng.range(1, page / 8 - 1) * 8;
    case("prp_list_entry_offset", l, len, 0x13);
    // A chain pointer with an offset: the first list starts c slots before its page end.
    let mut p = Placer::default();
    let n = rng.range(4, max_n.min(24));
    let c = rng.range(2, n - 2);
    let (segs, len) = prp_segs_n(rng, &mut p, page, n, 0);
    let mut l = prp_layout(rng, &mut p, &segs, page, page - 8 * c);
    assert!(l.lists.len() >= 2);
    *l.lists[0].1.last_mut().unwrap() += rng.range(1, page / 8 - 1) * 8;
    case("prp_chain_pointer_offset", l, len, 0x13);
    // Valid edge: a chained list whose first page starts at an offset (like the previous
    // case, untouched).
    let mut p = Placer::default();
    let n = rng.range(4, max_n.min(24));
    let c = rng.range(2, n - 2);
    let off = off512(rng);
    let (segs, len) = prp_segs_n(rng, &mut p, page, n, off);
    let l = prp_layout(rng, &mut p, &segs, page, page - 8 * c);
    case("prp_chained_list_at_offset", l, len, 0x00);
    // Valid edge: exactly filling the first list (no chain pointer needed).
    let mut p = Placer::default();
    let n = rng.range(3, max_n.min(24));
    let off = off512(rng);
    let (segs, len) = prp_segs_n(rng, &mut p, page, n, off);
    let l = prp_layout(rng, &mut p, &segs, page, page - 8 * (n - 1));
    case("prp_list_exactly_full", l, len, 0x00);
    // Stricter than QEMU: PRP1 not dword aligned.
    let mut p = Placer::default();
    let off = rng.range(0, page / 512 - 2) * 512;
    let (segs, len) = prp_segs_n(rng, &mut p, page, 1, off);
    let len = len.min(page - off - 512);
    let mut l = prp_layout(rng, &mut p, &segs, page, 0);
    l.prp1 += rng.range(1, 3);
    case("prp1_not_dword_aligned", l, len.max(512), 0x00);
    // Stricter than QEMU: a PRP list pointer that is dword but not qword aligned.
    let mut p = Placer::default();
    let n = rng.range(3, max_n.min(24));
    let off = off512(rng);
    let (segs, len) = prp_segs_n(rng, &mut p, page, n, off);
    let first = rng.range(0, page / 8 - u64::from(n as u32) - 1) * 8 + 4;
    let l = prp_layout(rng, &mut p, &segs, page, first);
    case("prp_list_pointer_not_qword_aligned", l, len, 0x00);
    // Longer than MDTS (512 KiB = 2^7 pages of CAP.MPSMIN). QEMU 7.2 counts MDTS in pages
    // of the *current* CC.MPS, so above 4 KiB pages it accepts what the spec forbids.
    let mut p = Placer::default();
    let len = max_len + rng.range(1, 64) * 512;
    let segs = gen_prp_segs(rng, &mut p, page, len);
    let l = prp_layout(rng, &mut p, &segs, page, 0);
    if page == 4096 {
        case("transfer_above_mdts", l, len, 0x02);
    } else {
        case("qemu72_mdts_in_cc_mps_units", l, len, 0x00);
    }
    cases
}

/// Random Data Blocks summing to `len` bytes: (address, length).
fn data_blocks(rng: &mut Rng, p: &mut Placer, len: u64, max_n: u64) -> Vec<(u64, u32)> {
    gen_sgl_segs(rng, p, len, max_n)
        .into_iter()
        .map(|(a, l)| (a, l as u32))
        .collect()
}

/// As [`data_blocks`], with at least `min_n` blocks (`len >= min_n`).
fn data_blocks_min(
    rng: &mut Rng,
    p: &mut Placer,
    len: u64,
    min_n: usize,
    max_n: u64,
) -> Vec<(u64, u32)> {
    loop {
        let mut q = Placer {
            used: p.used.clone(),
        };
        let d = data_blocks(rng, &mut q, len, max_n);
        if d.len() >= min_n {
            *p = q;
            return d;
        }
    }
}

fn seg_at(rng: &mut Rng, p: &mut Placer, n: usize) -> u64 {
    p.place(rng, DESC_LO, DESC_HI, 16 * n as u64, 16, 0)
}

/// Segment layout from explicit descriptor lists: segment `i` holds `segs[i]`, each link
/// descriptor's address is patched to the next segment's address.
fn sgl_from(rng: &mut Rng, p: &mut Placer, dptr: Desc, mut segs: Vec<Vec<Desc>>) -> SglLayout {
    let addrs: Vec<u64> = segs
        .iter()
        .map(|s| seg_at(rng, p, s.len().max(1)))
        .collect();
    let mut dptr = dptr;
    if !segs.is_empty() && (dptr.ty == SEGMENT || dptr.ty == LAST_SEGMENT) {
        dptr.addr = addrs[0];
    }
    for i in 0..segs.len() {
        if let Some(last) = segs[i].last_mut() {
            if (last.ty == SEGMENT || last.ty == LAST_SEGMENT) && i + 1 < addrs.len() {
                last.addr = addrs[i + 1];
            }
        }
    }
    SglLayout {
        dptr: Some(dptr),
        segments: addrs.into_iter().zip(segs).collect(),
    }
}

fn dbs(d: &[(u64, u32)]) -> Vec<Desc> {
    d.iter().map(|&(a, l)| Desc::data(a, l)).collect()
}

/// Malformed and edge SGL cases.
fn sgl_cases(rng: &mut Rng, max_len: u64) -> Vec<Case> {
    let mut cases = Vec::new();
    let lba_len = |rng: &mut Rng| rng.log_range(1, max_len.min(64 << 10) / 512) * 512;
    let mut add = |class, layout: SglLayout, len, qemu| {
        cases.push(Case {
            class,
            layout: Layout::Sgl(layout),
            psdt: 1,
            len,
            qemu,
        })
    };
    let link = |n: usize, last: bool| Desc::link(0, n, last);
    // Bad (Last) Segment length in DPTR: 0 or not a multiple of 16.
    for last in [false, true] {
        let mut p = Placer::default();
        let len = lba_len(rng);
        let d = data_blocks(rng, &mut p, len, 8);
        let mut dp = link(d.len(), last);
        dp.len = if rng.chance(1, 3) {
            0
        } else {
            dp.len + rng.range(1, 15) as u32
        };
        add(
            "sgl_bad_segment_length",
            sgl_from(rng, &mut p, dp, vec![dbs(&d)]),
            len,
            0x0d,
        );
    }
    // Bad Last Segment length in a segment's link descriptor.
    {
        let mut p = Placer::default();
        let len = lba_len(rng);
        let d = data_blocks(rng, &mut p, len, 8);
        let k = rng.range(0, d.len() as u64 - 1) as usize;
        let mut a = dbs(&d[..k]);
        let mut l = link(d.len() - k, true);
        l.len = if rng.chance(1, 3) {
            0
        } else {
            l.len - 16 + rng.range(1, 15) as u32
        };
        a.push(l);
        let dp = link(a.len(), false);
        add(
            "sgl_bad_segment_length",
            sgl_from(rng, &mut p, dp, vec![a, dbs(&d[k..])]),
            len,
            0x0d,
        );
    }
    // A (Last) Segment descriptor in the middle of a segment.
    {
        let mut p = Placer::default();
        let len = lba_len(rng);
        let d = data_blocks(rng, &mut p, len, 8);
        let mut a = dbs(&d);
        let at = rng.range(0, a.len() as u64 - 1) as usize;
        let mut mid = link(1, rng.chance(1, 2));
        mid.addr = seg_at(rng, &mut p, 1);
        a.insert(at, mid);
        let dp = link(a.len(), true);
        add(
            "sgl_segment_descriptor_mid_segment",
            sgl_from(rng, &mut p, dp, vec![a]),
            len,
            0x0e,
        );
    }
    // DPTR = Last Segment pointing at a segment that chains further.
    {
        let mut p = Placer::default();
        let len = lba_len(rng).max(1024);
        let d = data_blocks_min(rng, &mut p, len, 2, 8);
        let k = rng.range(1, d.len() as u64 - 1) as usize;
        let mut a = dbs(&d[..k]);
        a.push(link(d.len() - k, rng.chance(1, 2)));
        let dp = link(a.len(), true);
        let l = sgl_from(rng, &mut p, dp, vec![a, dbs(&d[k..])]);
        add("sgl_last_segment_chains", l, len, 0x0d);
    }
    // A Last Segment inside a segment pointing at a segment that chains: QEMU 7.2 catches
    // it only when its defect reads the right slot by accident.
    {
        let mut p = Placer::default();
        let len = lba_len(rng).max(1536);
        let d = data_blocks_min(rng, &mut p, len, 3, 12);
        let k1 = rng.range(1, d.len() as u64 - 2) as usize;
        let k2 = rng.range(k1 as u64 + 1, d.len() as u64 - 1) as usize;
        let mut a = dbs(&d[..k1]);
        let mut b = dbs(&d[k1..k2]);
        let c = dbs(&d[k2..]);
        b.push(link(c.len(), false));
        a.push(link(b.len(), true));
        let dp = link(a.len(), false);
        let l = sgl_from(rng, &mut p, dp, vec![a, b, c]);
        match qemu72_sgl_defect(&l) {
            Some(false) => add("qemu72_last_segment_chain_missed", l, len, 0x00),
            _ => add("sgl_last_segment_chains", l, len, 0x0d),
        }
    }
    // A descriptor type other than Segment / Last Segment / Data Block in DPTR.
    {
        let mut p = Placer::default();
        let len = lba_len(rng);
        let d = data_blocks(rng, &mut p, len, 1);
        let ty = *rng.pick(&[BIT_BUCKET, KEYED_DATA_BLOCK, 5, 6, 0xa, 0xe, VENDOR]);
        let dp = Desc {
            addr: d[0].0,
            len: d[0].1,
            ty,
            subtype: 0,
        };
        add(
            "sgl_bad_type_in_dptr",
            SglLayout {
                dptr: Some(dp),
                segments: vec![],
            },
            len,
            0x0d,
        );
    }
    // A bad type inside a segment (not its last descriptor).
    {
        let mut p = Placer::default();
        let len = lba_len(rng);
        let d = data_blocks(rng, &mut p, len, 6);
        let mut a = dbs(&d);
        let ty = *rng.pick(&[BIT_BUCKET, KEYED_DATA_BLOCK, 5, 7, 0xd, VENDOR]);
        let at = rng.range(0, a.len() as u64 - 1) as usize;
        a.insert(
            at,
            Desc {
                addr: d[0].0,
                len: rng.range(1, 512) as u32,
                ty,
                subtype: 0,
            },
        );
        let dp = link(a.len(), true);
        add(
            "sgl_bad_type_in_segment",
            sgl_from(rng, &mut p, dp, vec![a]),
            len,
            0x11,
        );
    }
    // A bad type as the last descriptor of the last segment (QEMU: 0Dh, it first asks
    // whether the segment ends in data).
    {
        let mut p = Placer::default();
        let len = lba_len(rng);
        let d = data_blocks(rng, &mut p, len, 6);
        let mut a = dbs(&d);
        let ty = *rng.pick(&[BIT_BUCKET, KEYED_DATA_BLOCK, 5, 9, VENDOR]);
        a.push(Desc {
            addr: d[0].0,
            len: rng.range(1, 512) as u32,
            ty,
            subtype: 0,
        });
        let dp = link(a.len(), true);
        add(
            "sgl_bad_type_last_in_last_segment",
            sgl_from(rng, &mut p, dp, vec![a]),
            len,
            0x0d,
        );
    }
    // Data shorter than the transfer: a single Data Block, or a segment.
    for single in [true, false] {
        let mut p = Placer::default();
        let len = lba_len(rng);
        let mut d = data_blocks(rng, &mut p, len, if single { 1 } else { 8 });
        let last = d.len() - 1;
        let cut = rng.range(1, u64::from(d[last].1)) as u32;
        d[last].1 -= cut;
        if d[last].1 == 0 {
            d.pop();
        }
        let l = if single && d.len() == 1 {
            SglLayout {
                dptr: Some(Desc::data(d[0].0, d[0].1)),
                segments: vec![],
            }
        } else if d.is_empty() {
            continue;
        } else {
            sgl_from(rng, &mut p, link(d.len(), true), vec![dbs(&d)])
        };
        add("sgl_length_too_short", l, len, 0x0f);
    }
    // An extra Data Block after the transfer length is met.
    {
        let mut p = Placer::default();
        let len = lba_len(rng);
        let d = data_blocks(rng, &mut p, len, 8);
        let mut a = dbs(&d);
        let extra = rng.range(1, 4096);
        a.push(Desc::data(
            p.place(rng, DATA_LO, DATA_HI, extra, 1, 0),
            extra as u32,
        ));
        let dp = link(a.len(), true);
        add(
            "sgl_length_too_long_extra_descriptor",
            sgl_from(rng, &mut p, dp, vec![a]),
            len,
            0x0f,
        );
    }
    // The last Data Block longer than needed (QEMU accepts, takes what it needs).
    for single in [true, false] {
        let mut p = Placer::default();
        let len = lba_len(rng);
        let mut d = data_blocks(rng, &mut p, len, if single { 1 } else { 8 });
        let last = d.len() - 1;
        let more = rng.range(1, 512);
        d[last].1 += more as u32;
        p.used.push((d[last].0, d[last].0 + u64::from(d[last].1)));
        let l = if d.len() == 1 && single {
            SglLayout {
                dptr: Some(Desc::data(d[0].0, d[0].1)),
                segments: vec![],
            }
        } else {
            sgl_from(rng, &mut p, link(d.len(), true), vec![dbs(&d)])
        };
        add("sgl_length_too_long_last_block", l, len, 0x00);
    }
    // Subtype other than 0h (Address) on a Data Block: QEMU ignores subtypes.
    {
        let mut p = Placer::default();
        let len = lba_len(rng);
        let d = data_blocks(rng, &mut p, len, 4);
        let mut a = dbs(&d);
        let i = rng.range(0, a.len() as u64 - 1) as usize;
        a[i].subtype = *rng.pick(&[1, 0xa, 0xf]);
        let l = if a.len() == 1 && rng.chance(1, 2) {
            SglLayout {
                dptr: Some(a[0]),
                segments: vec![],
            }
        } else {
            sgl_from(rng, &mut p, link(a.len(), true), vec![a])
        };
        add("sgl_subtype_not_address", l, len, 0x00);
    }
    // Valid edges: a zero-length Data Block inside a segment; a segment holding only a
    // Last Segment descriptor.
    {
        let mut p = Placer::default();
        let len = lba_len(rng);
        let d = data_blocks(rng, &mut p, len, 6);
        let mut a = dbs(&d);
        let at = rng.range(0, a.len() as u64 - 1) as usize;
        a.insert(at, Desc::data(d[0].0, 0));
        let dp = link(a.len(), true);
        add(
            "sgl_zero_length_data_block",
            sgl_from(rng, &mut p, dp, vec![a]),
            len,
            0x00,
        );
    }
    {
        let mut p = Placer::default();
        let len = lba_len(rng);
        let d = data_blocks(rng, &mut p, len, 6);
        let l = sgl_from(
            rng,
            &mut p,
            link(1, false),
            vec![vec![link(d.len(), true)], dbs(&d)],
        );
        add("sgl_segment_holding_only_a_link", l, len, 0x00);
    }
    // QEMU 7.2 §7: a valid chain of three segments whose second and first have the same
    // number of descriptors, the second ending in a Last Segment descriptor.
    {
        let mut p = Placer::default();
        let len = lba_len(rng).max(2048);
        let d = data_blocks_min(rng, &mut p, len, 3, 12);
        let k = rng.range(1, (d.len() as u64 - 1) / 2) as usize;
        let mut a = dbs(&d[..k]);
        let mut b = dbs(&d[k..2 * k]);
        let c = dbs(&d[2 * k..]);
        b.push(link(c.len(), true));
        a.push(link(b.len(), false));
        let l = sgl_from(rng, &mut p, link(a.len(), false), vec![a, b, c]);
        assert_eq!(qemu72_sgl_defect(&l), Some(true), "{l}");
        add("qemu72_valid_chain_rejected", l, len, 0x0d);
    }
    // PSDT 11b (reserved) on an otherwise valid single Data Block.
    {
        let mut p = Placer::default();
        let len = lba_len(rng);
        let d = data_blocks(rng, &mut p, len, 1);
        let l = SglLayout {
            dptr: Some(Desc::data(d[0].0, d[0].1)),
            segments: vec![],
        };
        cases.push(Case {
            class: "psdt_reserved",
            layout: Layout::Sgl(l),
            psdt: 3,
            len,
            qemu: 0x02,
        });
    }
    cases
}

/// Sends every case to QEMU (a Read of LBA `slba`) and to the crate's decoder, strict and
/// with `qemu_compat`; records disagreements. Where both accept, checks that the data
/// landed exactly in the ranges the decoder returned.
fn compare_statuses(h: &mut NvmeHost, rng: &mut Rng, model: &[u8], cases: &[Case], st: &mut Stats) {
    for c in cases {
        for (a, b) in c.layout.writes() {
            h.qt.write(a, &b);
        }
        let nlb = c.len / h.lba_size;
        let slba = rng.range(0, h.nsze.saturating_sub(nlb));
        let q = h.rw_raw(
            OPC_READ,
            slba,
            nlb.min(0x1_0000) as u32,
            c.psdt,
            c.layout.dptr(),
        );
        let what = format!(
            "class {} page {} KiB LBA {slba} len {:#x} PSDT {}: {}",
            c.class,
            h.page_size >> 10,
            c.len,
            c.psdt,
            c.layout
        );
        st.cases += 1;
        if q.status != c.qemu {
            let hint = if c.class.starts_with("qemu72_") {
                " (QEMU no longer behaves like 7.2 here: update DIFFERENCES and layout.rs)"
            } else {
                ""
            };
            st.fail(format!(
                "{what}: QEMU returned {q}, its documented status is {:#x}{hint}",
                c.qemu
            ));
            continue;
        }
        let diff = DIFFERENCES.iter().find(|d| d.0 == c.class);
        for compat in [false, true] {
            let (ours, items) = crate_decode(h, c.psdt, c.layout.dptr(), c.len, compat);
            st.compared += 1;
            *st.classes.entry(c.class).or_default() += 1;
            let want = match diff {
                Some(&(_, _, strict, qc)) => {
                    if compat {
                        qc
                    } else {
                        strict
                    }
                }
                None => q.status,
            };
            let mode = if compat { "qemu_compat" } else { "strict" };
            if ours != want {
                st.fail(format!(
                    "{what}: QEMU status {q}, crate decoder ({mode}) status {ours:#x}, expected {want:#x}"
                ));
            } else if ours == 0 && q.ok() {
                if let Err(e) = check_landed(h, model, slba, c.len, &items) {
                    st.fail(format!("{what}: decoded ({mode}) {items:x?}: {e}"));
                }
            }
        }
    }
}

/// The crate's decoder on a command with this PSDT and DPTR (`decode_command`, reading
/// guest memory through qtest): (status, items decoded).
fn crate_decode(
    h: &mut NvmeHost,
    psdt: u8,
    dptr: [u8; 16],
    len: u64,
    compat: bool,
) -> (u16, Vec<SglItem>) {
    let mut sqe = SubmissionQueueEntry::new(OPC_READ);
    sqe.set_psdt(Psdt::from_bits(psdt));
    sqe.set_dptr(dptr);
    let opts = DecodeOptions::default()
        .with_sgls(SglCapabilities::from_raw(h.sgls))
        .with_max_transfer_len(h.mdts_bytes)
        .with_qemu_compat(compat);
    let mps = MemoryPageSize::new(h.page_size).expect("page size");
    let mem = GuestMemory::new(&mut h.qt, GUEST_RAM);
    let mut out = Vec::new();
    match decode_command(&sqe, len, mps, &mem, &mut out, &opts) {
        Ok(_) => (0, out),
        Err(e) => (e.nvme_status().raw(), out),
    }
}

/// The image bytes of `[slba, slba + len)` are in guest memory at the decoded ranges, in
/// order, and the ranges cover exactly `len` bytes.
fn check_landed(
    h: &mut NvmeHost,
    model: &[u8],
    slba: u64,
    len: u64,
    items: &[SglItem],
) -> Result<(), String> {
    let mut off = (slba * h.lba_size) as usize;
    let end = off + len as usize;
    for it in items {
        let SglItem::Data(r) = it else {
            return Err(format!("unexpected item {it:?}"));
        };
        let l = r.len() as usize;
        if off + l > end {
            return Err(format!("ranges cover more than {len:#x} bytes"));
        }
        let got = h.qt.read_vec(r.addr().as_u64(), l);
        if let Some(i) = first_difference(&got, &model[off..off + l]) {
            return Err(format!(
                "guest byte {:#x} is {:#04x}, the controller should have put {:#04x} there",
                r.addr().as_u64() + i as u64,
                got[i],
                model[off + i]
            ));
        }
        off += l;
    }
    if off != end {
        return Err(format!(
            "ranges cover {:#x} of {len:#x} bytes",
            len as usize - (end - off)
        ));
    }
    Ok(())
}

/// The crate's decoder gives back exactly the segments an encoding was made from.
fn check_round_trip(
    h: &mut NvmeHost,
    enc: &Encoded,
    segs: &Segs,
    st: &mut Stats,
) -> Result<(), String> {
    let len: u64 = segs.iter().map(|s| s.1).sum();
    let (psdt, dptr) = match enc.dp {
        DataPointer::Prp { .. } => (0, enc.dp.to_bytes()),
        DataPointer::Sgl(_) => (1, enc.dp.to_bytes()),
    };
    let want: Vec<SglItem> = dma_ranges(segs).into_iter().map(SglItem::Data).collect();
    for compat in [false, true] {
        let (status, items) = crate_decode(h, psdt, dptr, len, compat);
        st.round_trips += 1;
        if status != 0 || items != want {
            return Err(format!(
                "decode (qemu_compat {compat}) of {} gave status {status:#x}, items {items:x?}; encoded from {segs:x?}",
                enc.text
            ));
        }
    }
    Ok(())
}

/// ≥300 seeded layouts per run land exactly where the encoders put them, and nothing
/// outside the destinations changes; malformed layouts get the same status from the
/// crate's decoders as from QEMU.
#[test]
fn conformance() {
    let Some(qemu) = qemu_or_skip("conformance") else {
        return;
    };
    let seed = qemu::seed();
    eprintln!("qemu conformance: seed {seed:#x} (replay with PHYSVEC_QEMU_SEED={seed:#x})");
    let t0 = Instant::now();
    let mut rng = Rng::new(seed);
    let mut model = pattern_image(rng.next_u64() as u32);
    let mut h = NvmeHost::start(&qemu, &model);
    let mut st = Stats::default();
    data_lands(&mut h, &mut rng, &mut model, 32, &mut st);
    for &page in &PAGE_SIZES {
        h.enable(page);
        for _ in 0..2 {
            let cases = prp_cases(&mut rng, page, h.mdts_bytes);
            compare_statuses(&mut h, &mut rng, &model, &cases, &mut st);
            let cases = sgl_cases(&mut rng, h.mdts_bytes);
            compare_statuses(&mut h, &mut rng, &model, &cases, &mut st);
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "qemu conformance: seed {seed:#x}: {} layouts landed (PRP {} over MPS 4..64 KiB, SGL {} {:?}; \
         {} writes; {} MiB) and decoded back {}x; {} malformed/edge cases in {} classes, \
         {} statuses compared (strict + qemu_compat); {} commands; QEMU §7 defect hit {}x \
         (expected); {} failures; {secs:.2} s",
        st.prp + st.sgl,
        st.prp,
        st.sgl,
        st.shapes,
        st.writes,
        st.bytes >> 20,
        st.round_trips,
        st.cases,
        st.classes.len(),
        st.compared,
        h.commands,
        st.defect,
        st.failures.len()
    );
    assert!(
        st.failures.is_empty(),
        "{} failures (seed {seed:#x}); first: {}",
        st.failures.len(),
        st.failures[0]
    );
}
