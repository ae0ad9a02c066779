//! PRP: every layout in a small universe encoded, compared with a model of NVMe Base
//! §4.3 written here, and decoded back; every small PRP1/PRP2/list combination decoded
//! and compared with a model decoder.

use physvec::mem::SparseMemory;
use physvec::nvme::{
    decode_prp, encode_prp, DecodeOptions, MemoryPageSize, PrpError, PrpIncompatibility,
    PrpListPage,
};
use physvec::{DmaAddr, DmaRange};

const DATA: u64 = 0x10_0000;
const LIST: u64 = 0x80_0000;

/// Coalesces contiguous neighbours.
pub fn coalesce(rs: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &(a, l) in rs {
        match out.last_mut() {
            Some(last) if last.0 + last.1 == a => last.1 += l,
            _ => out.push((a, l)),
        }
    }
    out
}

/// What the specification says the encoding of `rs` is: PRP1, PRP2 and the list pages
/// (bus address, slots), or the first input range that cannot be expressed.
#[derive(Debug, PartialEq)]
struct ModelPrp {
    prp1: u64,
    prp2: u64,
    lists: Vec<(u64, Vec<u64>)>,
}

fn model_encode(rs: &[(u64, u64)], ps: u64, pool: &[u64]) -> Result<ModelPrp, PrpError> {
    // Runs of contiguous input ranges, with the input index of their first and last range.
    let mut runs: Vec<(u64, u64, usize, usize)> = Vec::new();
    for (i, &(a, l)) in rs.iter().enumerate() {
        match runs.last_mut() {
            Some(r) if r.1 == a => {
                r.1 = a + l;
                r.3 = i;
            }
            _ => runs.push((a, a + l, i, i)),
        }
    }
    let last = runs.len() - 1;
    let bad = |index, reason| Err(PrpError::NotPrpCompatible { index, reason });
    for (k, &(s, e, first, lasti)) in runs.iter().enumerate() {
        // PRP1 may carry an offset, but its bits 1:0 are 0; every later entry is a page.
        if k == 0 && s % 4 != 0 {
            return bad(first, PrpIncompatibility::Prp1NotDwordAligned);
        }
        if k > 0 && s % ps != 0 {
            return bad(first, PrpIncompatibility::StartNotPageAligned);
        }
        // Data continues on the next entry's page only if this run filled its last page.
        if k < last && e % ps != 0 {
            return bad(lasti, PrpIncompatibility::EndNotPageAligned);
        }
    }
    let mut entries = Vec::new();
    for (k, &(s, e, _, _)) in runs.iter().enumerate() {
        if k == 0 {
            entries.push(s);
        }
        let mut p = if k == 0 { (s / ps + 1) * ps } else { s };
        while p < e {
            entries.push(p);
            p += ps;
        }
    }
    let prp1 = entries[0];
    let rest = &entries[1..];
    let (prp2, lists) = match rest.len() {
        0 => (0, Vec::new()),
        1 => (rest[0], Vec::new()),
        _ => {
            // Each list runs to the end of its page; when more entries remain than slots,
            // the last slot points to the next list page.
            let mut lists = Vec::new();
            let mut left = rest;
            for (j, &bus) in pool.iter().enumerate() {
                let cap = ((ps - bus % ps) / 8) as usize;
                if left.len() <= cap {
                    lists.push((bus, left.to_vec()));
                    left = &[];
                    break;
                }
                let mut slots = left[..cap - 1].to_vec();
                left = &left[cap - 1..];
                match pool.get(j + 1) {
                    Some(&next) => slots.push(next),
                    None => slots.push(u64::MAX),
                }
                lists.push((bus, slots));
            }
            if !left.is_empty() {
                let mut n = 0;
                let mut l = rest.len();
                // Counted from the first page's offset (a whole page when none was given).
                let mut cap = ((ps - pool.first().map_or(0, |b| b % ps)) / 8) as usize;
                while l > cap {
                    n += 1;
                    l -= cap - 1;
                    cap = (ps / 8) as usize;
                }
                return Err(PrpError::TooFewListPages {
                    needed: n + 1,
                    supplied: pool.len(),
                });
            }
            (pool[0], lists)
        }
    };
    Ok(ModelPrp { prp1, prp2, lists })
}

/// Runs the encoder with list pages at `pool`; the result in model form.
fn encode(rs: &[(u64, u64)], mps: MemoryPageSize, pool: &[u64]) -> Result<ModelPrp, PrpError> {
    let ps = mps.get();
    let mut bufs: Vec<Vec<u64>> = pool
        .iter()
        .map(|&b| vec![0u64; ((ps - b % ps) / 8) as usize])
        .collect();
    let pages = pool
        .iter()
        .zip(bufs.iter_mut())
        .map(|(&b, buf)| PrpListPage::new(DmaAddr::new(b), buf));
    let prp = encode_prp(rs.iter().map(|&(a, l)| DmaRange::new(a, l)), mps, pages)?;
    let lists = (0..prp.list_pages_used())
        .map(|i| {
            let n = prp.list_page_entries(i) as usize;
            (
                pool[i],
                bufs[i][..n].iter().map(|e| u64::from_le(*e)).collect(),
            )
        })
        .collect();
    Ok(ModelPrp {
        prp1: prp.prp1.as_u64(),
        prp2: prp.prp2.as_u64(),
        lists,
    })
}

fn memory_of(lists: &[(u64, Vec<u64>)]) -> SparseMemory {
    let mut m = SparseMemory::new();
    for (bus, slots) in lists {
        m.add(
            physvec::DmaAddr::new(*bus),
            slots.iter().flat_map(|e| e.to_le_bytes()).collect(),
        );
    }
    m
}

/// A layout: (address, length) of each range, in transfer order.
type Layout = [(u64, u64)];

/// Every sequence of 1..=4 ranges with endpoints on a quarter-page grid in `pages` pages,
/// in ascending order, and for two or more ranges also in descending order.
fn layouts(ps: u64, pages: u64, f: &mut dyn FnMut(&Layout)) {
    let step = ps / 4;
    let n = pages * 4;
    fn rec(pos: u64, n: u64, step: u64, cur: &mut Vec<(u64, u64)>, f: &mut dyn FnMut(&Layout)) {
        if !cur.is_empty() {
            f(cur);
            if cur.len() > 1 {
                let rev: Vec<_> = cur.iter().rev().copied().collect();
                f(&rev);
            }
        }
        if cur.len() == 4 {
            return;
        }
        for s in pos..n {
            for e in s + 1..=n {
                cur.push((DATA + s * step, (e - s) * step));
                rec(e, n, step, cur, f);
                cur.pop();
            }
        }
    }
    rec(0, n, step, &mut Vec::new(), f);
}

/// Checks every layout at `mps`; returns (layouts, encodings compared).
pub fn check_layouts(mps: MemoryPageSize, pages: u64) -> (u64, u64) {
    let ps = mps.get();
    let o = DecodeOptions::default();
    let (mut nl, mut ne) = (0u64, 0u64);
    layouts(ps, pages, &mut |rs| {
        nl += 1;
        // Also with PRP1 off its dword (bits 1:0 set) when the first range allows.
        let shifted: Vec<(u64, u64)> = {
            let mut v = rs.to_vec();
            v[0] = (v[0].0 + 2, v[0].1 - 2);
            v
        };
        for rs in [rs, &shifted[..]] {
            // List placements: page-aligned pages, or a first list with only 2 slots left
            // in its page (the chain pointer comes early).
            for first_off in [0, ps - 16] {
                let pool: Vec<u64> = (0..4)
                    .map(|j| LIST + j * ps + if j == 0 { first_off } else { 0 })
                    .collect();
                let want = model_encode(rs, ps, &pool);
                let got = encode(rs, mps, &pool);
                ne += 1;
                assert_eq!(got, want, "encode {rs:x?} mps {ps:#x} pool {pool:x?}");
                let Ok(prp) = want else { break };
                // Decode the model's encoding: the device sees the coalesced input.
                let total: u64 = rs.iter().map(|r| r.1).sum();
                let mut out: Vec<DmaRange> = Vec::new();
                decode_prp(
                    physvec::DmaAddr::new(prp.prp1),
                    physvec::DmaAddr::new(prp.prp2),
                    total,
                    mps,
                    &memory_of(&prp.lists),
                    &mut out,
                    &o,
                )
                .unwrap_or_else(|e| panic!("decode {rs:x?} {prp:x?}: {e:?}"));
                let out: Vec<(u64, u64)> =
                    out.iter().map(|r| (r.addr().as_u64(), r.len())).collect();
                assert_eq!(out, coalesce(rs), "decode {rs:x?} {prp:x?}");
                // One list page fewer than the layout needs is refused.
                if !prp.lists.is_empty() {
                    let short = &pool[..prp.lists.len() - 1];
                    let e = encode(rs, mps, short).unwrap_err();
                    assert!(
                        matches!(e, PrpError::TooFewListPages { .. }),
                        "{rs:x?}: {e:?}"
                    );
                    assert_eq!(Err(e), model_encode(rs, ps, short).map(|_| ()));
                }
                if prp.lists.is_empty() {
                    break;
                }
            }
        }
    });
    (nl, ne)
}

/// The model decoder: the rules of §4.3 as a controller applies them (strict mode).
fn model_decode(
    prp1: u64,
    prp2: u64,
    len: u64,
    ps: u64,
    mem: &dyn Fn(u64) -> Option<u64>,
) -> Result<Vec<(u64, u64)>, &'static str> {
    let mut out = Vec::new();
    if len == 0 {
        return Ok(out);
    }
    if prp1 % 4 != 0 {
        return Err("invalid_prp_offset");
    }
    let first = len.min(ps - prp1 % ps);
    out.push((prp1, first));
    let mut rem = len - first;
    if rem == 0 {
    } else if rem <= ps {
        if prp2 % ps != 0 {
            return Err("invalid_prp_offset");
        }
        out.push((prp2, rem));
    } else {
        if prp2 % 8 != 0 {
            return Err("invalid_prp_offset");
        }
        let mut list = prp2;
        let mut slot = 0;
        while rem > 0 {
            let at = list + 8 * slot;
            let entry = mem(at).ok_or("memory_unreadable")?;
            if entry % ps != 0 {
                return Err("invalid_prp_offset");
            }
            let last_slot = (at + 8) % ps == 0;
            if last_slot && rem > ps {
                list = entry;
                slot = 0;
                continue;
            }
            let n = rem.min(ps);
            out.push((entry, n));
            rem -= n;
            slot += 1;
        }
    }
    Ok(coalesce(&out))
}

/// Every PRP1 × PRP2 × length × list contents in a small universe, decoded and compared
/// with [`model_decode`]; returns the number of cases.
pub fn check_decoder(mps: MemoryPageSize) -> u64 {
    let ps = mps.get();
    let o = DecodeOptions::default();
    let prp1s = [DATA, DATA + 2, DATA + 4, DATA + ps / 2, DATA + ps - 4];
    let lens = [
        0,
        4,
        ps / 2,
        ps - 4,
        ps,
        ps + 4,
        2 * ps,
        2 * ps + ps / 2,
        3 * ps,
        4 * ps,
    ];
    let next_list = LIST + 4 * ps;
    let prp2s = [
        0,
        DATA + 8 * ps,
        DATA + 8 * ps + ps / 2,
        DATA + 8 * ps + 4,
        LIST,
        LIST + 4,
        LIST + ps - 16,
        LIST + ps - 8,
    ];
    // Slot values: a page, a page with an offset, the next list page.
    let values = [DATA + 16 * ps, DATA + 16 * ps + ps / 2, next_list];
    let mut n = 0;
    // Contents of the 2 first slots, and of the last 2 slots of the list page (where a
    // list placed near its page end starts); the next list page holds pages.
    for a in 0..4usize {
        for b in 0..4usize {
            let mut m = SparseMemory::new();
            let mut map = std::collections::BTreeMap::new();
            let put = |m: &mut SparseMemory,
                       map: &mut std::collections::BTreeMap<u64, u64>,
                       at: u64,
                       v: u64| {
                m.add(physvec::DmaAddr::new(at), v.to_le_bytes().to_vec());
                map.insert(at, v);
            };
            for (k, &sel) in [a, b].iter().enumerate() {
                if let Some(&v) = values.get(sel) {
                    put(&mut m, &mut map, LIST + 8 * k as u64, v + 2 * k as u64 * ps);
                    put(
                        &mut m,
                        &mut map,
                        LIST + ps - 16 + 8 * k as u64,
                        v + 2 * k as u64 * ps,
                    );
                }
            }
            for k in 0..4 {
                put(&mut m, &mut map, next_list + 8 * k, DATA + (32 + k) * ps);
            }
            let read = |at: u64| map.get(&at).copied();
            for &p1 in &prp1s {
                for &p2 in &prp2s {
                    for &len in &lens {
                        n += 1;
                        let want = model_decode(p1, p2, len, ps, &read);
                        let mut out: Vec<DmaRange> = Vec::new();
                        let got = decode_prp(
                            physvec::DmaAddr::new(p1),
                            physvec::DmaAddr::new(p2),
                            len,
                            mps,
                            &m,
                            &mut out,
                            &o,
                        )
                        .map(|_| {
                            out.iter()
                                .map(|r| (r.addr().as_u64(), r.len()))
                                .collect::<Vec<_>>()
                        })
                        .map_err(|e| e.kind());
                        assert_eq!(
                            got, want,
                            "prp1 {p1:#x} prp2 {p2:#x} len {len:#x} slots {a} {b}"
                        );
                    }
                }
            }
        }
    }
    n
}
