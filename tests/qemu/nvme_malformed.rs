//! Malformed and edge layouts, as case tables: each row names a class, the status QEMU
//! 7.2 returns for it and how to build one; the crate's decoders must return the same
//! status (or the one `DIFFERENCES` documents) on the same guest memory.

use physvec::nvme::{
    decode_command, DecodeOptions, MemoryPageSize, Psdt, SglCapabilities, SglItem,
    SubmissionQueueEntry,
};

use crate::common::{first_difference, gen_prp_segs, gen_sgl_segs, Placer, Segs, Stats};
use crate::common::{DATA_HI, DATA_LO, DESC_HI, DESC_LO};
use crate::qemu::layout::{
    prp_entries, qemu72_sgl_defect, Desc, PrpLayout, SglLayout, BIT_BUCKET, KEYED_DATA_BLOCK,
    LAST_SEGMENT, SEGMENT, VENDOR,
};
use crate::qemu::nvme_host::{prp_dptr, NvmeHost, OPC_READ};
use crate::qemu::qtest::GUEST_RAM;
use crate::qemu::{GuestMemory, Rng};

/// A layout as sent to the controller.
#[derive(Clone, Debug)]
pub enum Layout {
    /// PRP1/PRP2 and lists.
    Prp(PrpLayout),
    /// DPTR and segments.
    Sgl(SglLayout),
}

impl Layout {
    pub fn writes(&self) -> Vec<(u64, Vec<u8>)> {
        match self {
            Layout::Prp(l) => l.writes(),
            Layout::Sgl(l) => l.writes(),
        }
    }
    pub fn dptr(&self) -> [u8; 16] {
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
pub struct Case {
    /// Class name (printed; the `STRICTER` table is keyed by it).
    pub class: &'static str,
    pub layout: Layout,
    pub psdt: u8,
    /// Transfer length in bytes (a multiple of the LBA size).
    pub len: u64,
    /// The status QEMU 7.2 returns for this class (`nvme-prp-sgl.md` §5-§7).
    pub qemu: u16,
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
pub const DIFFERENCES: &[(&str, u16, u16, u16)] = &[
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
    let lists = p.list_pages(rng, n as u64, page, first_off);
    PrpLayout::build(&entries, page, &lists)
}

// ---------------------------------------------------------------------------------------
// PRP cases: one recipe per class.

/// How many PRP entries the transfer has.
#[derive(Clone, Copy)]
enum Entries {
    /// One (PRP1 only).
    One,
    /// Two (PRP2 a data pointer).
    Two,
    /// 3..=24 (a list).
    List,
    /// 4..=24, with a first list `c` slots before its page end (2 <= c <= n - 2), so
    /// that the list chains.
    Chained,
}

/// Where the first data byte is in its page.
#[derive(Clone, Copy)]
enum First {
    /// Page aligned.
    Aligned,
    /// Any multiple of 512.
    Any512,
    /// A multiple of 512 with at least 512 bytes of the page after it (room for the
    /// PRP1 shift below).
    Shiftable,
}

/// Where the first PRP list starts in its page.
#[derive(Clone, Copy)]
enum ListAt {
    PageStart,
    /// `c` slots before its page end (with [`Entries::Chained`]).
    ChainSoon,
    /// Exactly as many slots before its page end as the list has entries.
    ExactlyFull,
    /// A random dword- but not qword-aligned offset.
    DwordNotQword,
}

/// What is broken after building a valid layout.
#[derive(Clone, Copy)]
enum Break {
    Nothing,
    /// PRP2 (a data pointer) gets a dword-aligned offset.
    Prp2Offset,
    /// A random data entry of the first list gets a qword-aligned offset.
    ListEntryOffset,
    /// The chain pointer of the first list gets a qword-aligned offset.
    ChainPointerOffset,
    /// PRP1 moves 1..=3 bytes (off its dword).
    Prp1Offset,
}

/// One PRP class: how to build its layout, and QEMU 7.2's status.
struct PrpRow {
    class: &'static str,
    qemu: u16,
    entries: Entries,
    first: First,
    list_at: ListAt,
    brk: Break,
}

const fn row(
    class: &'static str,
    qemu: u16,
    entries: Entries,
    first: First,
    list_at: ListAt,
    brk: Break,
) -> PrpRow {
    PrpRow {
        class,
        qemu,
        entries,
        first,
        list_at,
        brk,
    }
}

/// The PRP classes, in the order they are generated.
#[rustfmt::skip]
const PRP_ROWS: &[PrpRow] = {
    use Break::*;
    use Entries::*;
    use First::*;
    use ListAt::*;
    &[
        row("prp2_data_offset",           0x13, Two,     Any512,  PageStart, Prp2Offset),
        row("prp_list_entry_offset",      0x13, List,    Any512,  PageStart, ListEntryOffset),
        row("prp_chain_pointer_offset",   0x13, Chained, Aligned, ChainSoon, ChainPointerOffset),
        // Valid edges: a chained list whose first page starts at an offset; a first list
        // filled exactly (no chain pointer needed).
        row("prp_chained_list_at_offset", 0x00, Chained, Any512,  ChainSoon, Nothing),
        row("prp_list_exactly_full",      0x00, List,    Any512,  ExactlyFull, Nothing),
        // Stricter than QEMU: PRP1 not dword aligned, a list pointer not qword aligned.
        row("prp1_not_dword_aligned",     0x00, One,     Shiftable, PageStart, Prp1Offset),
        row("prp_list_pointer_not_qword_aligned", 0x00, List, Any512, DwordNotQword, Nothing),
    ]
};

/// Builds one case of `r` at page size `page`; random choices in a fixed order (entries,
/// chain position, first offset, segments, list placement, the break).
fn prp_case(rng: &mut Rng, r: &PrpRow, page: u64, max_n: u64) -> Case {
    let mut p = Placer::default();
    let n = match r.entries {
        Entries::One => 1,
        Entries::Two => 2,
        Entries::List => rng.range(3, max_n.min(24)),
        Entries::Chained => rng.range(4, max_n.min(24)),
    };
    let c = match r.entries {
        Entries::Chained => rng.range(2, n - 2),
        _ => 0,
    };
    let off = match r.first {
        First::Aligned => 0,
        First::Any512 => rng.range(0, page / 512 - 1) * 512,
        First::Shiftable => rng.range(0, page / 512 - 2) * 512,
    };
    let (segs, mut len) = prp_segs_n(rng, &mut p, page, n, off);
    let first_off = match r.list_at {
        ListAt::PageStart => 0,
        ListAt::ChainSoon => page - 8 * c,
        ListAt::ExactlyFull => page - 8 * (n - 1),
        ListAt::DwordNotQword => rng.range(0, page / 8 - n - 1) * 8 + 4,
    };
    let mut l = prp_layout(rng, &mut p, &segs, page, first_off);
    match r.brk {
        Break::Nothing => {}
        Break::Prp2Offset => l.prp2 += rng.range(1, page / 4 - 1) * 4,
        Break::ListEntryOffset => {
            let i = rng.range(0, l.lists[0].1.len() as u64 - 1) as usize;
            l.lists[0].1[i] += rng.range(1, page / 8 - 1) * 8;
        }
        Break::ChainPointerOffset => {
            assert!(l.lists.len() >= 2);
            *l.lists[0].1.last_mut().unwrap() += rng.range(1, page / 8 - 1) * 8;
        }
        Break::Prp1Offset => {
            // The transfer stays inside PRP1's page.
            len = len.min(page - off - 512).max(512);
            l.prp1 += rng.range(1, 3);
        }
    }
    Case {
        class: r.class,
        layout: Layout::Prp(l),
        psdt: 0,
        len,
        qemu: r.qemu,
    }
}

/// Malformed and edge PRP cases at page size `page` (max `max_len` bytes per transfer):
/// one per row of [`PRP_ROWS`], then a transfer above MDTS.
pub fn prp_cases(rng: &mut Rng, page: u64, max_len: u64) -> Vec<Case> {
    let max_n = (max_len / page).max(3);
    let mut cases: Vec<Case> = PRP_ROWS
        .iter()
        .map(|r| prp_case(rng, r, page, max_n))
        .collect();
    // Longer than MDTS (512 KiB = 2^7 pages of CAP.MPSMIN). QEMU 7.2 counts MDTS in pages
    // of the *current* CC.MPS, so above 4 KiB pages it accepts what the spec forbids.
    let mut p = Placer::default();
    let len = max_len + rng.range(1, 64) * 512;
    let segs = gen_prp_segs(rng, &mut p, page, len);
    let layout = Layout::Prp(prp_layout(rng, &mut p, &segs, page, 0));
    let (class, qemu) = if page == 4096 {
        ("transfer_above_mdts", 0x02)
    } else {
        ("qemu72_mdts_in_cc_mps_units", 0x00)
    };
    cases.push(Case {
        class,
        layout,
        psdt: 0,
        len,
        qemu,
    });
    cases
}

// ---------------------------------------------------------------------------------------
// SGL cases: one builder per class, over a shared generator.

/// Random choices and guest RAM placement for one SGL case.
struct Gen<'a> {
    rng: &'a mut Rng,
    p: Placer,
    max_len: u64,
}

impl Gen<'_> {
    /// A transfer length: LBA multiple, log-uniform up to 64 KiB (or MDTS).
    fn lba_len(&mut self) -> u64 {
        self.rng.log_range(1, self.max_len.min(64 << 10) / 512) * 512
    }
    /// A transfer length and up to `max_n` random Data Blocks for it.
    fn transfer(&mut self, max_n: u64) -> (u64, Vec<(u64, u32)>) {
        let len = self.lba_len();
        (len, self.blocks(len, max_n))
    }
    /// Random Data Blocks summing to `len` bytes: (address, length).
    fn blocks(&mut self, len: u64, max_n: u64) -> Vec<(u64, u32)> {
        gen_sgl_segs(self.rng, &mut self.p, len, max_n)
            .into_iter()
            .map(|(a, l)| (a, l as u32))
            .collect()
    }
    /// As [`Gen::blocks`], with at least `min_n` blocks (`len >= min_n`).
    fn blocks_min(&mut self, len: u64, min_n: usize, max_n: u64) -> Vec<(u64, u32)> {
        loop {
            let saved = self.p.used.clone();
            let d = self.blocks(len, max_n);
            if d.len() >= min_n {
                return d;
            }
            self.p.used = saved;
        }
    }
    fn seg_at(&mut self, n: usize) -> u64 {
        self.p
            .place(self.rng, DESC_LO, DESC_HI, 16 * n as u64, 16, 0)
    }
    /// Segment layout from explicit descriptor lists: segment `i` holds `segs[i]`, each
    /// link descriptor's address is patched to the next segment's address.
    fn sgl(&mut self, dptr: Desc, mut segs: Vec<Vec<Desc>>) -> SglLayout {
        let addrs: Vec<u64> = segs.iter().map(|s| self.seg_at(s.len().max(1))).collect();
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
    /// DPTR = Last Segment holding `a`.
    fn last_segment(&mut self, a: Vec<Desc>) -> SglLayout {
        self.sgl(link(a.len(), true), vec![a])
    }
    /// A descriptor of type `ty` (not Data Block) at `addr` with a random length.
    fn typed(&mut self, addr: u64, ty: u8) -> Desc {
        Desc {
            addr,
            len: self.rng.range(1, 512) as u32,
            ty,
            subtype: 0,
        }
    }
}

fn link(n: usize, last: bool) -> Desc {
    Desc::link(0, n, last)
}

fn dbs(d: &[(u64, u32)]) -> Vec<Desc> {
    d.iter().map(|&(a, l)| Desc::data(a, l)).collect()
}

/// DPTR holding `d` itself.
fn in_dptr(d: Desc) -> SglLayout {
    SglLayout {
        dptr: Some(d),
        segments: vec![],
    }
}

/// What a builder made: the layout, the transfer length, and (rarely) a class other than
/// its row's, when the draw decided which class it is.
struct Made {
    layout: SglLayout,
    len: u64,
    reclass: Option<(&'static str, u16)>,
}

fn made(layout: SglLayout, len: u64) -> Option<Made> {
    Some(Made {
        layout,
        len,
        reclass: None,
    })
}

type Build = fn(&mut Gen) -> Option<Made>;

/// Bad (Last) Segment length in DPTR: 0 or not a multiple of 16.
fn bad_dptr_segment_length<const LAST: bool>(g: &mut Gen) -> Option<Made> {
    let (len, d) = g.transfer(8);
    let mut dp = link(d.len(), LAST);
    dp.len = if g.rng.chance(1, 3) {
        0
    } else {
        dp.len + g.rng.range(1, 15) as u32
    };
    made(g.sgl(dp, vec![dbs(&d)]), len)
}

/// Bad Last Segment length in a segment's link descriptor.
fn bad_link_segment_length(g: &mut Gen) -> Option<Made> {
    let (len, d) = g.transfer(8);
    let k = g.rng.range(0, d.len() as u64 - 1) as usize;
    let mut a = dbs(&d[..k]);
    let mut l = link(d.len() - k, true);
    l.len = if g.rng.chance(1, 3) {
        0
    } else {
        l.len - 16 + g.rng.range(1, 15) as u32
    };
    a.push(l);
    made(g.sgl(link(a.len(), false), vec![a, dbs(&d[k..])]), len)
}

/// A (Last) Segment descriptor in the middle of a segment.
fn segment_descriptor_mid_segment(g: &mut Gen) -> Option<Made> {
    let (len, d) = g.transfer(8);
    let mut a = dbs(&d);
    let at = g.rng.range(0, a.len() as u64 - 1) as usize;
    let mut mid = link(1, g.rng.chance(1, 2));
    mid.addr = g.seg_at(1);
    a.insert(at, mid);
    made(g.last_segment(a), len)
}

/// DPTR = Last Segment pointing at a segment that chains further.
fn last_segment_chains(g: &mut Gen) -> Option<Made> {
    let len = g.lba_len().max(1024);
    let d = g.blocks_min(len, 2, 8);
    let k = g.rng.range(1, d.len() as u64 - 1) as usize;
    let mut a = dbs(&d[..k]);
    a.push(link(d.len() - k, g.rng.chance(1, 2)));
    made(g.sgl(link(a.len(), true), vec![a, dbs(&d[k..])]), len)
}

/// A Last Segment inside a segment pointing at a segment that chains: QEMU 7.2 catches
/// it only when its defect reads the right slot by accident.
fn last_segment_chains_deeper(g: &mut Gen) -> Option<Made> {
    let len = g.lba_len().max(1536);
    let d = g.blocks_min(len, 3, 12);
    let k1 = g.rng.range(1, d.len() as u64 - 2) as usize;
    let k2 = g.rng.range(k1 as u64 + 1, d.len() as u64 - 1) as usize;
    let mut a = dbs(&d[..k1]);
    let mut b = dbs(&d[k1..k2]);
    let c = dbs(&d[k2..]);
    b.push(link(c.len(), false));
    a.push(link(b.len(), true));
    let layout = g.sgl(link(a.len(), false), vec![a, b, c]);
    let reclass = match qemu72_sgl_defect(&layout) {
        Some(false) => Some(("qemu72_last_segment_chain_missed", 0x00)),
        _ => None,
    };
    Some(Made {
        layout,
        len,
        reclass,
    })
}

/// A descriptor type other than Segment / Last Segment / Data Block in DPTR.
fn bad_type_in_dptr(g: &mut Gen) -> Option<Made> {
    let (len, d) = g.transfer(1);
    let ty = *g
        .rng
        .pick(&[BIT_BUCKET, KEYED_DATA_BLOCK, 5, 6, 0xa, 0xe, VENDOR]);
    let dp = Desc {
        addr: d[0].0,
        len: d[0].1,
        ty,
        subtype: 0,
    };
    made(in_dptr(dp), len)
}

/// A bad type inside a segment (not its last descriptor).
fn bad_type_in_segment(g: &mut Gen) -> Option<Made> {
    let (len, d) = g.transfer(6);
    let mut a = dbs(&d);
    let ty = *g
        .rng
        .pick(&[BIT_BUCKET, KEYED_DATA_BLOCK, 5, 7, 0xd, VENDOR]);
    let at = g.rng.range(0, a.len() as u64 - 1) as usize;
    a.insert(at, g.typed(d[0].0, ty));
    made(g.last_segment(a), len)
}

/// A bad type as the last descriptor of the last segment (QEMU: 0Dh, it first asks
/// whether the segment ends in data).
fn bad_type_last_in_last_segment(g: &mut Gen) -> Option<Made> {
    let (len, d) = g.transfer(6);
    let mut a = dbs(&d);
    let ty = *g.rng.pick(&[BIT_BUCKET, KEYED_DATA_BLOCK, 5, 9, VENDOR]);
    a.push(g.typed(d[0].0, ty));
    made(g.last_segment(a), len)
}

/// Data shorter than the transfer: a single Data Block, or a segment.
fn length_too_short<const SINGLE: bool>(g: &mut Gen) -> Option<Made> {
    let (len, mut d) = g.transfer(if SINGLE { 1 } else { 8 });
    let last = d.len() - 1;
    let cut = g.rng.range(1, u64::from(d[last].1)) as u32;
    d[last].1 -= cut;
    if d[last].1 == 0 {
        d.pop();
    }
    if SINGLE && d.len() == 1 {
        made(in_dptr(Desc::data(d[0].0, d[0].1)), len)
    } else if d.is_empty() {
        None
    } else {
        made(g.last_segment(dbs(&d)), len)
    }
}

/// An extra Data Block after the transfer length is met.
fn length_too_long_extra_descriptor(g: &mut Gen) -> Option<Made> {
    let (len, d) = g.transfer(8);
    let mut a = dbs(&d);
    let extra = g.rng.range(1, 4096);
    a.push(Desc::data(
        g.p.place(g.rng, DATA_LO, DATA_HI, extra, 1, 0),
        extra as u32,
    ));
    made(g.last_segment(a), len)
}

/// The last Data Block longer than needed (QEMU accepts, takes what it needs).
fn length_too_long_last_block<const SINGLE: bool>(g: &mut Gen) -> Option<Made> {
    let (len, mut d) = g.transfer(if SINGLE { 1 } else { 8 });
    let last = d.len() - 1;
    d[last].1 += g.rng.range(1, 512) as u32;
    g.p.used.push((d[last].0, d[last].0 + u64::from(d[last].1)));
    if d.len() == 1 && SINGLE {
        made(in_dptr(Desc::data(d[0].0, d[0].1)), len)
    } else {
        made(g.last_segment(dbs(&d)), len)
    }
}

/// Subtype other than 0h (Address) on a Data Block: QEMU ignores subtypes.
fn subtype_not_address(g: &mut Gen) -> Option<Made> {
    let (len, d) = g.transfer(4);
    let mut a = dbs(&d);
    let i = g.rng.range(0, a.len() as u64 - 1) as usize;
    a[i].subtype = *g.rng.pick(&[1, 0xa, 0xf]);
    if a.len() == 1 && g.rng.chance(1, 2) {
        made(in_dptr(a[0]), len)
    } else {
        made(g.last_segment(a), len)
    }
}

/// Valid edge: a zero-length Data Block inside a segment.
fn zero_length_data_block(g: &mut Gen) -> Option<Made> {
    let (len, d) = g.transfer(6);
    let mut a = dbs(&d);
    let at = g.rng.range(0, a.len() as u64 - 1) as usize;
    a.insert(at, Desc::data(d[0].0, 0));
    made(g.last_segment(a), len)
}

/// Valid edge: a segment holding only a Last Segment descriptor.
fn segment_holding_only_a_link(g: &mut Gen) -> Option<Made> {
    let (len, d) = g.transfer(6);
    made(
        g.sgl(link(1, false), vec![vec![link(d.len(), true)], dbs(&d)]),
        len,
    )
}

/// QEMU 7.2 §7: a valid chain of three segments whose second and first have the same
/// number of descriptors, the second ending in a Last Segment descriptor.
fn valid_chain_qemu_rejects(g: &mut Gen) -> Option<Made> {
    let len = g.lba_len().max(2048);
    let d = g.blocks_min(len, 3, 12);
    let k = g.rng.range(1, (d.len() as u64 - 1) / 2) as usize;
    let mut a = dbs(&d[..k]);
    let mut b = dbs(&d[k..2 * k]);
    let c = dbs(&d[2 * k..]);
    b.push(link(c.len(), true));
    a.push(link(b.len(), false));
    let l = g.sgl(link(a.len(), false), vec![a, b, c]);
    assert_eq!(qemu72_sgl_defect(&l), Some(true), "{l}");
    made(l, len)
}

/// A single Data Block in DPTR (sent with PSDT 11b, reserved).
fn single_data_block(g: &mut Gen) -> Option<Made> {
    let (len, d) = g.transfer(1);
    made(in_dptr(Desc::data(d[0].0, d[0].1)), len)
}

/// The SGL classes, in the order they are generated: (class, QEMU 7.2's status, PSDT,
/// builder).
#[rustfmt::skip]
const SGL_ROWS: &[(&str, u16, u8, Build)] = &[
    ("sgl_bad_segment_length", 0x0d, 1, bad_dptr_segment_length::<false>),
    ("sgl_bad_segment_length", 0x0d, 1, bad_dptr_segment_length::<true>),
    ("sgl_bad_segment_length", 0x0d, 1, bad_link_segment_length),
    ("sgl_segment_descriptor_mid_segment", 0x0e, 1, segment_descriptor_mid_segment),
    ("sgl_last_segment_chains", 0x0d, 1, last_segment_chains),
    ("sgl_last_segment_chains", 0x0d, 1, last_segment_chains_deeper),
    ("sgl_bad_type_in_dptr", 0x0d, 1, bad_type_in_dptr),
    ("sgl_bad_type_in_segment", 0x11, 1, bad_type_in_segment),
    ("sgl_bad_type_last_in_last_segment", 0x0d, 1, bad_type_last_in_last_segment),
    ("sgl_length_too_short", 0x0f, 1, length_too_short::<true>),
    ("sgl_length_too_short", 0x0f, 1, length_too_short::<false>),
    ("sgl_length_too_long_extra_descriptor", 0x0f, 1, length_too_long_extra_descriptor),
    ("sgl_length_too_long_last_block", 0x00, 1, length_too_long_last_block::<true>),
    ("sgl_length_too_long_last_block", 0x00, 1, length_too_long_last_block::<false>),
    ("sgl_subtype_not_address", 0x00, 1, subtype_not_address),
    ("sgl_zero_length_data_block", 0x00, 1, zero_length_data_block),
    ("sgl_segment_holding_only_a_link", 0x00, 1, segment_holding_only_a_link),
    ("qemu72_valid_chain_rejected", 0x0d, 1, valid_chain_qemu_rejects),
    ("psdt_reserved", 0x02, 3, single_data_block),
];

/// Malformed and edge SGL cases: one per row of [`SGL_ROWS`] (a row may draw nothing).
pub fn sgl_cases(rng: &mut Rng, max_len: u64) -> Vec<Case> {
    let mut cases = Vec::new();
    for &(class, qemu, psdt, build) in SGL_ROWS {
        let mut g = Gen {
            rng: &mut *rng,
            p: Placer::default(),
            max_len,
        };
        if let Some(m) = build(&mut g) {
            let (class, qemu) = m.reclass.unwrap_or((class, qemu));
            cases.push(Case {
                class,
                layout: Layout::Sgl(m.layout),
                psdt,
                len: m.len,
                qemu,
            });
        }
    }
    cases
}

/// Sends every case to QEMU (a Read of LBA `slba`) and to the crate's decoder, strict and
/// with `qemu_compat`; records disagreements. Where both accept, checks that the data
/// landed exactly in the ranges the decoder returned.
pub fn compare_statuses(
    h: &mut NvmeHost,
    rng: &mut Rng,
    model: &[u8],
    cases: &[Case],
    st: &mut Stats,
) {
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
pub fn crate_decode(
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
