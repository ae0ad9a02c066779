//! Valid layouts: seeded transfers encoded by the crate's PRP and SGL encoders land exactly
//! where the encoding says (checked byte for byte with guard bytes around every
//! destination, Writes in the image file), and the crate's decoders give the segments back.

use physvec::nvme::{
    encode_prp, encode_sgl, prp_entries as crate_prp_entries, prp_list_pages_needed, DataPointer,
    MemoryPageSize, PrpListPage, SglCapabilities, SglDescriptor, SglItem, SglOptions,
    SglSegmentPage,
};
use physvec::{DmaAddr, DmaRange};

use crate::common::{
    first_difference, gen_prp_segs, gen_sgl_segs, Placer, Segs, Stats, DESC_HI, DESC_LO, GUARD,
    PAGE_SIZES,
};
use crate::malformed::crate_decode;
use crate::qemu::layout::{
    prp_entries, qemu72_sgl_defect, Desc, PrpLayout, SglLayout, LAST_SEGMENT, SEGMENT,
};
use crate::qemu::nvme_host::{NvmeHost, OPC_READ, OPC_WRITE};
use crate::qemu::Rng;

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
    let addrs = p.list_pages(rng, pages, page, first_off);
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
pub enum SglShape {
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
pub fn data_lands(
    h: &mut NvmeHost,
    rng: &mut Rng,
    model: &mut [u8],
    per_page: u64,
    st: &mut Stats,
) {
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
