//! Property tests of the PRP encoder and decoder (`physvec::nvme`).

use physvec::mem::SparseMemory;
use physvec::nvme::{
    decode_prp, encode_prp, is_prp_compatible, prp_entries, prp_list_pages_needed, DecodeOptions,
    MemoryPageSize, PrpError, PrpListPage,
};
use physvec::{DmaAddr, DmaRange};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Coalesces adjacent contiguous ranges (the model the decoder output is compared with).
fn coalesce(rs: &[DmaRange]) -> Vec<DmaRange> {
    let mut out: Vec<DmaRange> = Vec::new();
    for &r in rs {
        match out.last().and_then(|l| l.merge(r)) {
            Some(m) => *out.last_mut().unwrap() = m,
            None => out.push(r),
        }
    }
    out
}

/// Independent model of "PRPs can express this": the first byte dword aligned, and at
/// every discontinuity the bytes before end on a page boundary and the bytes after start
/// on one.
fn expressible(rs: &[DmaRange], ps: u64) -> bool {
    if rs.is_empty() || rs[0].addr().as_u64() % 4 != 0 {
        return false;
    }
    rs.windows(2).all(|w| {
        let end = w[0].addr().as_u64() as u128 + w[0].len() as u128;
        end == w[1].addr().as_u64() as u128
            || (end % ps as u128 == 0 && w[1].addr().as_u64() % ps == 0)
    })
}

struct Encoded {
    prp1: u64,
    prp2: u64,
    used: usize,
    memory: SparseMemory,
}

/// Encodes with `pages` list pages at 0xF000_0000_0000 + i * 2 * ps (far from data).
fn encode(rs: &[DmaRange], mps: MemoryPageSize, pages: usize) -> Result<Encoded, PrpError> {
    let ps = mps.get();
    let n = prp_entries(rs.iter().copied(), mps).unwrap_or(0);
    let slots = (ps / 8).min(n + 1) as usize;
    let addrs: Vec<u64> = (0..pages as u64)
        .map(|i| 0xF000_0000_0000 + i * 2 * ps)
        .collect();
    let mut bufs: Vec<Vec<u64>> = (0..pages).map(|_| vec![0; slots]).collect();
    let pool = addrs
        .iter()
        .zip(bufs.iter_mut())
        .map(|(&a, b)| PrpListPage::new(DmaAddr::new(a), b));
    let prp = encode_prp(rs.iter().copied(), mps, pool)?;
    let mut memory = SparseMemory::new();
    for i in 0..prp.list_pages_used() {
        let k = prp.list_page_entries(i) as usize;
        memory.add(
            physvec::DmaAddr::new(addrs[i]),
            bufs[i][..k]
                .iter()
                .flat_map(|e| u64::from_le(*e).to_le_bytes())
                .collect(),
        );
    }
    Ok(Encoded {
        prp1: prp.prp1.as_u64(),
        prp2: prp.prp2.as_u64(),
        used: prp.list_pages_used(),
        memory,
    })
}

fn page_shift() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(12u32),
        Just(13),
        Just(14),
        Just(16),
        Just(21),
        Just(27)
    ]
}

/// A PRP-compatible layout: (page shift, ranges). Up to ~1100 pages at 4 KiB so lists
/// chain, fewer pages for big page sizes.
fn compatible_layout() -> impl Strategy<Value = (u32, Vec<DmaRange>)> {
    (page_shift(), 1usize..6).prop_flat_map(|(shift, n)| {
        let ps = 1u64 << shift;
        let max_pages: u64 = if shift == 12 { 400 } else { 6 };
        (
            Just(shift),
            prop::collection::vec(
                (0u64..1 << 20, 1u64..=max_pages, 0u64..ps / 4, 1u64..=ps),
                n,
            ),
        )
            .prop_map(move |(shift, parts)| {
                let ps = 1u64 << shift;
                let last = parts.len() - 1;
                let mut out = Vec::new();
                for (i, &(page, pages, off4, tail)) in parts.iter().enumerate() {
                    // Spread the ranges apart: page numbers of range i lie in their own window.
                    let base = ((i as u64) << 30 | page) * ps;
                    let start = if i == 0 { base + off4 * 4 } else { base };
                    let end = if i == last {
                        base + (pages - 1) * ps + tail
                    } else {
                        base + pages * ps
                    };
                    if end > start {
                        out.push(DmaRange::new(start, end - start));
                    }
                }
                (shift, out)
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("proptest-regressions/nvme_prp.txt"))),
        ..ProptestConfig::default()
    })]

    /// encode → decode gives back the input (coalesced), with the minimum number of list
    /// pages, for every page size.
    #[test]
    fn roundtrip_and_minimal_pages((shift, rs) in compatible_layout()) {
        prop_assume!(!rs.is_empty());
        let mps = MemoryPageSize::new(1 << shift).unwrap();
        prop_assert!(is_prp_compatible(rs.iter().copied(), mps));
        let n = prp_entries(rs.iter().copied(), mps).unwrap();
        let needed = prp_list_pages_needed(n, mps, 0) as usize;
        let enc = encode(&rs, mps, needed + 2).unwrap();
        prop_assert_eq!(enc.used, needed);
        // One page fewer is not enough.
        if needed > 0 {
            let short = encode(&rs, mps, needed - 1);
            let too_few = matches!(short, Err(PrpError::TooFewListPages { .. }));
            prop_assert!(too_few);
        }
        let total: u64 = rs.iter().map(|r| r.len()).sum();
        let mut out: Vec<DmaRange> = Vec::new();
        decode_prp(physvec::DmaAddr::new(enc.prp1), physvec::DmaAddr::new(enc.prp2), total, mps, &enc.memory, &mut out, &DecodeOptions::default()).unwrap();
        prop_assert_eq!(out, coalesce(&rs));
    }

    /// Arbitrary layouts: the encoder accepts exactly what the model calls expressible,
    /// and a rejection names a range the model agrees is at fault.
    #[test]
    fn rejections_are_inexpressible(
        shift in prop_oneof![Just(12u32), Just(13)],
        raw in prop::collection::vec((0u64..64, 0u64..0x2000, 1u64..0x3000), 1..5),
    ) {
        let ps = 1u64 << shift;
        let mps = MemoryPageSize::new(ps).unwrap();
        let rs: Vec<DmaRange> = raw.iter().map(|&(p, off, len)| DmaRange::new(p * 0x1000 + off, len)).collect();
        let model = expressible(&rs, ps);
        match encode(&rs, mps, 4) {
            Ok(enc) => {
                prop_assert!(model);
                let total: u64 = rs.iter().map(|r| r.len()).sum();
                let mut out: Vec<DmaRange> = Vec::new();
                decode_prp(physvec::DmaAddr::new(enc.prp1), physvec::DmaAddr::new(enc.prp2), total, mps, &enc.memory, &mut out, &DecodeOptions::default()).unwrap();
                prop_assert_eq!(out, coalesce(&rs));
            }
            Err(PrpError::NotPrpCompatible { index, .. }) => {
                prop_assert!(!model);
                // The named range touches a bad boundary: its start (first, or after a
                // discontinuity) or its end (before a discontinuity).
                let r = rs[index];
                let a = r.addr().as_u64();
                let end = a + r.len();
                let bad_start = (index == 0 && a % 4 != 0)
                    || (index > 0 && rs[index - 1].addr().as_u64() + rs[index - 1].len() != a && a % ps != 0);
                let bad_end = index + 1 < rs.len() && rs[index + 1].addr().as_u64() != end && end % ps != 0;
                // A coalesced run may also be rejected for its *other* end: the start of the
                // run containing `index` may be what is misaligned.
                let run_start_bad = {
                    let mut i = index;
                    while i > 0 && rs[i - 1].addr().as_u64() + rs[i - 1].len() == rs[i].addr().as_u64() { i -= 1; }
                    let s = rs[i].addr().as_u64();
                    (i == 0 && s % 4 != 0) || (i > 0 && s % ps != 0)
                };
                prop_assert!(bad_start || bad_end || run_start_bad, "index {} not at fault in {:?}", index, rs);
            }
            Err(PrpError::TooFewListPages { .. }) => prop_assert!(model),
            Err(e) => prop_assert!(false, "unexpected {e:?}"),
        }
    }

    /// Malformed PRPs get the status a controller returns.
    #[test]
    fn malformed_statuses(page in 1u64..1 << 20, off in 1u64..0x1000, n in 3u64..40, bad in 0usize..40) {
        let mps = MemoryPageSize::SIZE_4K;
        let none = SparseMemory::new();
        let o = DecodeOptions::default();
        let mut out: Vec<DmaRange> = Vec::new();
        let base = page << 12;
        // PRP2 used as data with an offset → 13h.
        let e = decode_prp(physvec::DmaAddr::new(base), physvec::DmaAddr::new(base + 0x1000 + off), 0x2000, mps, &none, &mut out, &o).unwrap_err();
        prop_assert_eq!(e.nvme_status().raw(), 0x13);
        // PRP1 not dword aligned → 13h strict, accepted by the QEMU-compatible decoder.
        if off % 4 != 0 {
            let e = decode_prp(physvec::DmaAddr::new(base + off), physvec::DmaAddr::new(0), 0x10, mps, &none, &mut out, &o).unwrap_err();
            prop_assert_eq!(e.nvme_status().raw(), 0x13);
            prop_assert!(decode_prp(physvec::DmaAddr::new(base + off), physvec::DmaAddr::new(0), 0x10, mps, &none, &mut out, &o.with_qemu_compat(true)).is_ok());
        }
        // A list entry with an offset → 13h at that entry's address.
        let list = 0xF000_0000u64;
        let bad = bad % (n as usize - 1);
        let entries: Vec<u64> = (0..n - 1).map(|i| base + (i + 1) * 0x1000 + if i as usize == bad { off & !3 | 4 } else { 0 }).collect();
        let mut m = SparseMemory::new();
        m.add(physvec::DmaAddr::new(list), entries.iter().flat_map(|e| e.to_le_bytes()).collect());
        let e = decode_prp(physvec::DmaAddr::new(base), physvec::DmaAddr::new(list), n * 0x1000, mps, &m, &mut out, &o).unwrap_err();
        prop_assert_eq!((e.nvme_status().raw(), e.at()), (0x13, Some(physvec::DmaAddr::new(list + 8 * bad as u64))));
        // The list is missing → Data Transfer Error; the sink is left as it was.
        out.clear();
        let e = decode_prp(physvec::DmaAddr::new(base), physvec::DmaAddr::new(list), n * 0x1000, mps, &none, &mut out, &o).unwrap_err();
        prop_assert_eq!((e.kind(), e.nvme_status().raw()), ("memory_unreadable", 0x04));
        prop_assert!(out.is_empty());
    }
}

/// A decode coalesces only with what it pushed itself: a sink reused across commands keeps
/// each command's ranges apart, even when they touch.
#[test]
fn decode_does_not_merge_into_an_earlier_commands_ranges() {
    let none = SparseMemory::new();
    let o = DecodeOptions::default();
    let mut out = vec![DmaRange::new(0x10_0000, 0x1000)];
    decode_prp(
        physvec::DmaAddr::new(0x10_1000),
        physvec::DmaAddr::new(0x10_2000),
        0x2000,
        MemoryPageSize::SIZE_4K,
        &none,
        &mut out,
        &o,
    )
    .unwrap();
    assert_eq!(
        out,
        [
            DmaRange::new(0x10_0000, 0x1000),
            DmaRange::new(0x10_1000, 0x2000)
        ]
    );
}

/// A rejected PRP names what is wrong, where it was read and the status a controller
/// completes with.
#[test]
fn decode_errors_say_what_and_where() {
    let list = 0xF000_0000u64;
    let mut m = SparseMemory::new();
    m.add(
        physvec::DmaAddr::new(list),
        [0x11000u64, 0x12200]
            .iter()
            .flat_map(|e| e.to_le_bytes())
            .collect(),
    );
    let mut out: Vec<DmaRange> = Vec::new();
    let o = DecodeOptions::default();
    let e = decode_prp(
        physvec::DmaAddr::new(0x10000),
        physvec::DmaAddr::new(list),
        0x3000,
        MemoryPageSize::SIZE_4K,
        &m,
        &mut out,
        &o,
    )
    .unwrap_err();
    let text = e.to_string();
    for part in ["0x12200", "at 0xf0000008", &e.nvme_status().to_string()] {
        assert!(text.contains(part), "{text:?} lacks {part:?}");
    }
    assert_eq!(e.at(), Some(physvec::DmaAddr::new(list + 8)));
    // A list that is not there: the address that could not be read.
    let e = decode_prp(
        physvec::DmaAddr::new(0x10000),
        physvec::DmaAddr::new(list + 0x1000),
        0x3000,
        MemoryPageSize::SIZE_4K,
        &m,
        &mut out,
        &o,
    )
    .unwrap_err();
    assert_eq!(
        (e.kind(), e.at()),
        (
            "memory_unreadable",
            Some(physvec::DmaAddr::new(list + 0x1000))
        )
    );
    assert!(e.to_string().contains("0xf0001000"), "{e}");
}

#[test]
fn list_pages_needed_counts_the_slots_left_on_the_first_list_page() {
    use physvec::nvme::{prp_list_pages_needed, MemoryPageSize};
    let mps = MemoryPageSize::SIZE_4K;
    // A first list page starting 16 bytes before its end has 2 slots: one entry and the
    // chain pointer, then full pages of 511 entries and a chain pointer.
    assert_eq!(prp_list_pages_needed(3, mps, 0xff0), 1);
    assert_eq!(prp_list_pages_needed(4, mps, 0xff0), 2);
    assert_eq!(prp_list_pages_needed(514, mps, 0xff0), 2);
    assert_eq!(prp_list_pages_needed(515, mps, 0xff0), 3);
    // Half a page left: 256 slots.
    assert_eq!(prp_list_pages_needed(257, mps, 0x800), 1);
    assert_eq!(prp_list_pages_needed(258, mps, 0x800), 2);
}

/// CC.MPS and the memory page size (NVMe base spec, "Controller Configuration"):
/// `2^(12 + MPS)` for MPS 0..=15, 4 KiB to 128 MiB, and a typed error otherwise.
#[test]
fn memory_page_size_follows_cc_mps() {
    assert_eq!(MemoryPageSize::MIN_BYTES, 4096);
    assert_eq!(MemoryPageSize::MAX_BYTES, 128 << 20);
    for mps in 0u8..16 {
        let p = MemoryPageSize::from_cc_mps(mps).expect("MPS 0..=15");
        assert_eq!(p.get(), 4096 << mps);
        assert_eq!(MemoryPageSize::new(4096 << mps), Ok(p));
        assert_eq!(p.cc_mps(), mps);
        assert_eq!(p.mask(), p.get() - 1);
        assert_eq!(p.entries_per_list_page(), p.get() / 8);
    }
    assert_eq!(MemoryPageSize::SIZE_4K.to_string(), "4 KiB");
    assert_eq!(
        MemoryPageSize::new(128 << 20).unwrap().to_string(),
        "128 MiB"
    );
    let e = MemoryPageSize::from_cc_mps(16).unwrap_err();
    assert_eq!((e.bytes, e.kind()), (0, "invalid_page_size"));
    for bad in [0, 2048, 4095, 6000, 256 << 20] {
        let e = MemoryPageSize::new(bad).unwrap_err();
        assert_eq!(e.bytes, bad);
        assert_eq!(
            e.to_string(),
            format!("memory page size {bad:#x} is not a power of two from 4 KiB to 128 MiB")
        );
    }
}

/// `prp_list_pages_needed` against a walk of the specification's rule: PRP1 takes the
/// first entry; with more than two, PRP2 points at a list that fills each page up to its
/// last slot, which links to the next page while entries remain.
#[test]
fn list_pages_needed_follows_the_chaining_rule() {
    use physvec::nvme::{prp_list_pages_needed, MemoryPageSize};
    for mps in [MemoryPageSize::SIZE_4K, MemoryPageSize::new(8192).unwrap()] {
        let full = mps.get() / 8;
        for off in [
            0,
            7,
            8,
            16,
            mps.get() / 2,
            mps.get() - 16,
            mps.get() - 8,
            mps.get() - 1,
        ] {
            for entries in (0..=3 * full + 5).chain([u64::from(u32::MAX)]) {
                let model = if entries <= 2 {
                    0
                } else {
                    let mut left = entries - 1;
                    let mut cap = (mps.get() - (off & !7)) / 8;
                    let mut pages = 1;
                    while left > cap {
                        left -= cap - 1;
                        cap = full;
                        pages += 1;
                    }
                    pages
                };
                assert_eq!(
                    prp_list_pages_needed(entries, mps, off),
                    model,
                    "{entries} entries, list at offset {off}, MPS {}",
                    mps.get()
                );
            }
        }
    }
}

/// Every PRP encoder error: its text, its kind and the index it points at.
#[test]
fn prp_errors_say_what_and_where() {
    use physvec::nvme::{PrpError, PrpIncompatibility};
    let cases = [
        (PrpError::Empty, "empty", None, "no ranges to encode".to_string()),
        (
            PrpError::NotPrpCompatible { index: 0, reason: PrpIncompatibility::Prp1NotDwordAligned },
            "not_prp_compatible",
            Some(0),
            "segment 0 cannot be expressed with PRPs: its first byte is not dword aligned (PRP1 bits 1:0 must be 0)".to_string(),
        ),
        (
            PrpError::NotPrpCompatible { index: 2, reason: PrpIncompatibility::StartNotPageAligned },
            "not_prp_compatible",
            Some(2),
            "segment 2 cannot be expressed with PRPs: it starts inside a memory page but is not the first segment".to_string(),
        ),
        (
            PrpError::NotPrpCompatible { index: 3, reason: PrpIncompatibility::EndNotPageAligned },
            "not_prp_compatible",
            Some(3),
            "segment 3 cannot be expressed with PRPs: it ends inside a memory page but is not the last segment".to_string(),
        ),
        (
            PrpError::TooFewListPages { needed: 2, supplied: 1 },
            "too_few_list_pages",
            None,
            "the transfer needs 2 PRP list pages, only 1 was supplied".to_string(),
        ),
        (
            PrpError::ListPageMisaligned { index: 4, bus: 0x1004 },
            "list_page_misaligned",
            Some(4),
            "PRP list page 4 at 0x1004 is misaligned (first: 8 bytes, later: a memory page)".to_string(),
        ),
        (
            PrpError::ListPageTooSmall { index: 5, slots: 2, needed: 3 },
            "list_page_too_small",
            Some(5),
            "PRP list page 5 has 2 slots, 3 are needed".to_string(),
        ),
        (
            PrpError::StreamLength { declared: 0x2000, streamed: 0x1000 },
            "stream_length",
            None,
            "the PRP writer was created for 0x2000 bytes but 0x1000 were pushed".to_string(),
        ),
    ];
    for (e, kind, index, text) in cases {
        assert_eq!((e.kind(), e.index(), e.to_string()), (kind, index, text));
    }
}

/// PRP1 plus exactly one full list page: the last slot holds data, no chain and no
/// second page (1 + 512 scattered pages at MPS 4 KiB); one more page chains.
#[test]
fn a_list_that_fills_its_page_exactly_does_not_chain() {
    let mps = MemoryPageSize::SIZE_4K;
    let rs: Vec<DmaRange> = (0..513u64)
        .map(|i| DmaRange::new(0x100_0000 + i * 0x2000, 0x1000))
        .collect();
    let e = encode(&rs, mps, 1).unwrap();
    assert_eq!(e.used, 1);
    let two: Vec<DmaRange> = (0..514u64)
        .map(|i| DmaRange::new(0x100_0000 + i * 0x2000, 0x1000))
        .collect();
    assert_eq!(
        encode(&two, mps, 1).map(|_| ()),
        Err(PrpError::TooFewListPages {
            needed: 2,
            supplied: 1
        })
    );
    assert_eq!(encode(&two, mps, 2).unwrap().used, 2);
}
