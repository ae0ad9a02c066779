//! SGL decoder: every chain of up to four descriptors (SGL1 included) over every
//! descriptor type and data subtype, aligned and unaligned, well-formed and malformed
//! segment descriptors, decoded under every combination of the SGLS bits the decoder
//! reads, and compared with a model of NVMe Base §4.4 written here.

use arrayvec::ArrayVec;
use physvec::mem::SparseMemory;
use physvec::nvme::{decode_sgl, DataOnly, DecodeOptions, SglCapabilities, SglDescriptor, SglItem};
use physvec::{DmaAddr, DmaRange};

/// Segments live at `SEG + k * 0x1000` (segment k of the chain).
const SEG: u64 = 0x80_0000;

/// One descriptor of the universe, before it is placed.
#[derive(Clone, Copy, Debug, PartialEq)]
enum D {
    /// Data Block / Keyed / Bit Bucket / other type `ty`, subtype `sub`, with a
    /// dword-aligned or unaligned address (`odd`), length `len`.
    Data {
        ty: u8,
        sub: u8,
        odd: bool,
        len: u32,
    },
    /// Segment (`last`: Last Segment) to the next segment, holding `n` descriptors.
    Seg {
        last: bool,
        n: u32,
    },
    /// Malformed segment descriptors: length 0, length 24, address 4 off a qword.
    SegLen0,
    SegLen24,
    SegMisaligned,
    /// A Segment descriptor to the start of its own segment, equal to the descriptor
    /// that led there (a cycle).
    SelfLoop,
    /// The same, but a Last Segment descriptor (not a cycle: the segment is then read as
    /// the last one, where a segment descriptor is invalid).
    SelfLoopLast,
}

fn data_alphabet() -> Vec<D> {
    let mut v = Vec::new();
    // Data Block, Keyed Data Block and Bit Bucket with subtypes Address, Offset and
    // Invalidate Key; data also with an unaligned address and a length that is not a
    // dword multiple; a zero-length Data Block.
    for ty in [0u8, 4, 1] {
        for sub in [0u8, 1, 0xf] {
            v.push(D::Data {
                ty,
                sub,
                odd: false,
                len: 0x200,
            });
        }
        if ty != 1 {
            v.push(D::Data {
                ty,
                sub: 0,
                odd: true,
                len: 0x200,
            });
            v.push(D::Data {
                ty,
                sub: 0,
                odd: false,
                len: 0x1ff,
            });
            // Address and length off their dword by the same amount.
            v.push(D::Data {
                ty,
                sub: 0,
                odd: true,
                len: 0x1ff,
            });
        }
    }
    v.push(D::Data {
        ty: 0,
        sub: 0,
        odd: false,
        len: 0,
    });
    // A reserved type and Vendor Specific.
    for ty in [5u8, 0xf] {
        v.push(D::Data {
            ty,
            sub: 0,
            odd: false,
            len: 0x200,
        });
    }
    v
}

fn seg_alphabet() -> Vec<D> {
    let mut v = Vec::new();
    for last in [false, true] {
        for n in 1..=3 {
            v.push(D::Seg { last, n });
        }
    }
    v.extend([
        D::SegLen0,
        D::SegLen24,
        D::SegMisaligned,
        D::SelfLoop,
        D::SelfLoopLast,
    ]);
    v
}

/// Builds the descriptor at position `pos` (0: SGL1), in segment `seg` (SGL1: none).
/// `into`: the descriptor that pointed at `seg` (for the self loop).
fn build(d: D, pos: usize, seg: usize, into: Option<SglDescriptor>) -> SglDescriptor {
    let next = DmaAddr::new(SEG + 0x1000 * seg as u64);
    match d {
        D::Data { ty, sub, odd, len } => {
            let a = 0x10_0000 * (pos as u64 + 1) + if odd { 3 } else { 0 };
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&a.to_le_bytes());
            if ty == 4 {
                // Keyed: 24-bit length, 32-bit key.
                b[8..11].copy_from_slice(&len.to_le_bytes()[..3]);
                b[11..15].copy_from_slice(&0x1234u32.to_le_bytes());
            } else {
                b[8..12].copy_from_slice(&len.to_le_bytes());
            }
            b[15] = ty << 4 | sub;
            SglDescriptor::from_bytes(b)
        }
        D::Seg { last: false, n } => SglDescriptor::segment(next, 16 * n),
        D::Seg { last: true, n } => SglDescriptor::last_segment(next, 16 * n),
        D::SegLen0 => SglDescriptor::segment(next, 0),
        D::SegLen24 => SglDescriptor::segment(next, 24),
        D::SegMisaligned => SglDescriptor::segment(DmaAddr::new(next.as_u64() + 4), 32),
        D::SelfLoop => into.unwrap_or(SglDescriptor::segment(next, 16)),
        D::SelfLoopLast => {
            let d = into.unwrap_or(SglDescriptor::segment(next, 16));
            SglDescriptor::last_segment(DmaAddr::new(d.address().as_u64()), d.length())
        }
    }
}

/// The model: what a controller with `caps` makes of SGL1 and memory `mem` for a
/// transfer of `len` bytes (strict mode). Items coalesced; errors by kind and position.
fn model(
    sgl1: SglDescriptor,
    len: u64,
    mem: &dyn Fn(u64) -> Option<SglDescriptor>,
    caps: SglCapabilities,
) -> Result<Vec<SglItem>, (&'static str, Option<u64>)> {
    let mut out: Vec<SglItem> = Vec::new();
    if len == 0 {
        return Ok(out);
    }
    if !caps.supported() {
        return Err(("sgl_not_supported", None));
    }
    let mut remaining = len;
    let mut data = |d: SglDescriptor, at: Option<u64>, out: &mut Vec<SglItem>| {
        let ty = d.identifier() >> 4;
        let sub = d.identifier() & 0xf;
        let bad = Err(("invalid_descriptor", at));
        // Which types the controller accepts (SGLS), and their valid subtypes.
        let (n, is_data) = match ty {
            0 if sub == 0 => (d.length() as u64, true),
            4 if caps.keyed() && (sub == 0 || sub == 0xf) => (d.keyed_length() as u64, true),
            1 if caps.bit_bucket() && sub == 0 => (d.length() as u64, false),
            _ => return bad,
        };
        if n == 0 {
            return Ok(());
        }
        // SGLS 10b: data addresses and lengths are dword multiples.
        if is_data && caps.dword_aligned() && (d.address().as_u64() % 4 != 0 || n % 4 != 0) {
            return Err(("invalid_granularity", at));
        }
        // More data than the transfer: only with SGLS bit 18.
        if remaining == 0 {
            return if caps.excess_length() {
                Ok(())
            } else {
                Err(("sgl_length_invalid", at))
            };
        }
        let take = n.min(remaining);
        if take < n && !caps.excess_length() {
            return Err(("sgl_length_invalid", at));
        }
        let item = if is_data {
            SglItem::Data(DmaRange::new(d.address().as_u64(), take))
        } else {
            SglItem::BitBucket(take)
        };
        match (out.last_mut(), item) {
            (Some(SglItem::BitBucket(a)), SglItem::BitBucket(b)) => *a += b,
            (Some(SglItem::Data(a)), SglItem::Data(b))
                if a.end_u64() == Some(b.addr().as_u64()) =>
            {
                *a = DmaRange::new(a.addr().as_u64(), a.len() + b.len())
            }
            _ => out.push(item),
        }
        remaining -= take;
        Ok(())
    };
    let is_seg = |d: SglDescriptor| matches!(d.identifier() >> 4, 2 | 3);
    if !is_seg(sgl1) {
        data(sgl1, None, &mut out)?;
    } else {
        let (mut cur, mut cur_at) = (sgl1, None);
        let mut seen = vec![(
            sgl1.address().as_u64(),
            sgl1.length(),
            sgl1.identifier() >> 4,
        )];
        loop {
            let last = cur.identifier() >> 4 == 3;
            let (addr, n) = (cur.address().as_u64(), cur.length() as u64);
            // A segment: a non-zero multiple of 16 bytes at a qword-aligned address.
            if n == 0 || n % 16 != 0 || addr % 8 != 0 {
                return Err(("invalid_segment_descriptor", cur_at));
            }
            let mut next = None;
            for i in 0..n / 16 {
                let at = addr + 16 * i;
                let d = mem(at).ok_or(("memory_unreadable", None))?;
                if is_seg(d) {
                    // Only the last descriptor of a segment may chain, and not from the
                    // last segment.
                    if i + 1 != n / 16 {
                        return Err(("invalid_descriptor_count", Some(at)));
                    }
                    if last {
                        return Err(("invalid_segment_descriptor", Some(at)));
                    }
                    next = Some((d, at));
                } else {
                    data(d, Some(at), &mut out)?;
                }
            }
            let Some((d, at)) = next else { break };
            let key = (d.address().as_u64(), d.length(), d.identifier() >> 4);
            if seen.contains(&key) {
                return Err(("loop_detected", Some(at)));
            }
            seen.push(key);
            (cur, cur_at) = (d, Some(at));
        }
    }
    if remaining > 0 {
        return Err(("sgl_length_invalid", None));
    }
    Ok(out)
}

/// A chain: SGL1 and the contents of each segment.
struct Chain {
    sgl1: SglDescriptor,
    segs: Vec<Vec<SglDescriptor>>,
}

/// Every chain of up to `max` descriptors: SGL1 any descriptor; a segment holds 1..=3
/// descriptors, any of which may be data or a segment descriptor (only a Segment
/// descriptor that is well-formed is followed; the others are checked where they are).
fn chains(max: usize, f: &mut dyn FnMut(&Chain)) {
    let data = data_alphabet();
    let segs = seg_alphabet();
    let all: Vec<D> = data.iter().chain(segs.iter()).copied().collect();
    for &d in &data {
        f(&Chain {
            sgl1: build(d, 0, 0, None),
            segs: vec![],
        });
    }
    // SGL1 a segment descriptor to segment 1.
    for &s in &segs {
        let sgl1 = build(s, 0, 1, None);
        let n = match s {
            D::Seg { n, .. } => n as usize,
            D::SelfLoop | D::SelfLoopLast => 1,
            // Malformed: nothing behind it is read.
            _ => {
                f(&Chain { sgl1, segs: vec![] });
                continue;
            }
        };
        if 1 + n > max {
            continue;
        }
        let level = Level {
            sgl1,
            into: sgl1,
            seg: 1,
            n,
        };
        fill(&all, max, 1 + n, level, vec![Vec::new()], f);
    }
}

/// Where [`fill`] is: SGL1, the descriptor that led to the segment being filled, its
/// number and how many descriptors it holds.
#[derive(Clone, Copy)]
struct Level {
    sgl1: SglDescriptor,
    into: SglDescriptor,
    seg: usize,
    n: usize,
}

/// Fills the last segment of `segs` (`used` counts every descriptor so far, the ones of
/// this segment included).
fn fill(
    all: &[D],
    max: usize,
    used: usize,
    at: Level,
    segs: Vec<Vec<SglDescriptor>>,
    f: &mut dyn FnMut(&Chain),
) {
    let cur = segs.len() - 1;
    if segs[cur].len() == at.n {
        // Segment complete; follow its last descriptor if it chains to the next one.
        let last = segs[cur][at.n - 1];
        let next_n = (last.length() / 16) as usize;
        let follows = matches!(last.identifier() >> 4, 2 | 3)
            && last.address().as_u64() == SEG + 0x1000 * (at.seg as u64 + 1)
            && last.length() % 16 == 0
            && next_n > 0;
        if follows && used + next_n <= max {
            let mut s = segs;
            s.push(Vec::new());
            let next = Level {
                sgl1: at.sgl1,
                into: last,
                seg: at.seg + 1,
                n: next_n,
            };
            fill(all, max, used + next_n, next, s, f);
        } else if !follows {
            f(&Chain {
                sgl1: at.sgl1,
                segs,
            });
        }
        return;
    }
    let pos = used - at.n + segs[cur].len();
    for &d in all {
        let mut s = segs.clone();
        s[cur].push(build(d, pos, at.seg + 1, Some(at.into)));
        fill(all, max, used, at, s, f);
    }
}

/// Runs every chain under every SGLS combination and three transfer lengths (exact,
/// one byte short, one byte more); returns the number of decodes.
pub fn check_all(max: usize) -> (u64, u64, u64) {
    let mut caps_list = Vec::new();
    // SGLs not supported: the other bits do not matter.
    caps_list.push(SglCapabilities::from_raw(0));
    for support in [1u32, 2] {
        for keyed in [false, true] {
            for bb in [false, true] {
                for excess in [false, true] {
                    caps_list.push(
                        SglCapabilities::from_raw(support)
                            .with_bit(2, keyed)
                            .with_bit(16, bb)
                            .with_bit(18, excess),
                    );
                }
            }
        }
    }
    let (mut nchains, mut ndecodes, mut deep) = (0u64, 0u64, 0u64);
    chains(max, &mut |c| {
        nchains += 1;
        deep += u64::from(c.segs.len() > 1);
        let mut m = SparseMemory::new();
        for (k, s) in c.segs.iter().enumerate() {
            m.add(
                physvec::DmaAddr::new(SEG + 0x1000 * (k as u64 + 1)),
                bytemuck::cast_slice(s).to_vec(),
            );
        }
        let read = |at: u64| {
            let k = at.checked_sub(SEG + 0x1000)? / 0x1000;
            let s = c.segs.get(k as usize)?;
            let off = at - (SEG + 0x1000 * (k + 1));
            (off % 16 == 0)
                .then(|| s.get((off / 16) as usize).copied())
                .flatten()
        };
        // Transfer length: what the data and bit bucket descriptors add up to (ignoring
        // types the controller may refuse), then one short and one over.
        let described: u64 = std::iter::once(c.sgl1)
            .chain(c.segs.iter().flatten().copied())
            .filter_map(|d| match d.identifier() >> 4 {
                0 | 1 => Some(d.length() as u64),
                4 => Some(d.keyed_length() as u64),
                _ => None,
            })
            .sum();
        for len in [described, described.saturating_sub(1), described + 1] {
            for &caps in &caps_list {
                ndecodes += 1;
                let o = DecodeOptions::default().with_sgls(caps);
                let want = model(c.sgl1, len, &read, caps);
                // Rotate the sinks: a Vec, a fixed-capacity ArrayVec, and DataOnly over a
                // range list (data ranges kept, bit-bucket bytes counted).
                let got = match ndecodes % 3 {
                    0 => {
                        let mut out: Vec<SglItem> = Vec::new();
                        decode_sgl(c.sgl1, len, &m, &mut out, &o).map(|_| out)
                    }
                    1 => {
                        let mut out: ArrayVec<SglItem, 8> = ArrayVec::new();
                        decode_sgl(c.sgl1, len, &m, &mut out, &o).map(|_| out.to_vec())
                    }
                    _ => {
                        let mut ranges: Vec<DmaRange> = Vec::new();
                        let mut sink = DataOnly::new(&mut ranges);
                        let r = decode_sgl(c.sgl1, len, &m, &mut sink, &o);
                        let discarded = sink.discarded();
                        r.map(|_| {
                            let want = want.as_ref().map_or(Vec::new(), |w| w.clone());
                            let buckets: u64 = want
                                .iter()
                                .map(|i| match i {
                                    SglItem::BitBucket(l) => *l,
                                    SglItem::Data(_) => 0,
                                })
                                .sum();
                            assert_eq!(discarded, buckets, "bit-bucket bytes");
                            let n_data = want.iter().filter(|i| i.range().is_some()).count();
                            assert_eq!(ranges.len(), n_data, "data ranges {ranges:x?}");
                            // The model's items, with the buckets where DataOnly counted them.
                            let mut data = ranges.iter().map(|&r| SglItem::Data(r));
                            want.iter()
                                .map(|i| match i {
                                    SglItem::Data(_) => data.next().unwrap_or(*i),
                                    b => *b,
                                })
                                .collect()
                        })
                    }
                };
                let got = got.map_err(|e| (e.kind(), e.at().map(|a| a.as_u64())));
                assert_eq!(
                    got,
                    want,
                    "sgl1 {:x?} segs {:x?} len {len:#x} caps {:#x}",
                    c.sgl1,
                    c.segs,
                    caps.raw()
                );
            }
        }
    });
    (nchains, ndecodes, deep)
}
