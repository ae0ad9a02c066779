//! PRP encode → decode round trip: ranges built from page-ish pieces (so PRP-compatible
//! lists are common) are encoded into list pages from a pool, the pages are put in
//! memory at their bus addresses, and `decode_prp` must give back exactly the input
//! (coalesced). Also: `prp_entries` / `prp_list_pages_needed` agree with the encoding,
//! and an incompatible list is rejected by `encode_prp` iff `is_prp_compatible` says so.
#![no_main]

mod common;

use arbitrary::Arbitrary;
use common::coalesce;
use libfuzzer_sys::fuzz_target;
use physvec::mem::SparseMemory;
use physvec::nvme::{
    decode_prp, encode_prp, is_prp_compatible, prp_entries, prp_list_pages_needed, DecodeOptions,
    MemoryPageSize, PrpError, PrpListPage,
};
use physvec::{DmaAddr, DmaRange};

#[derive(Arbitrary, Debug)]
enum Piece {
    /// `pages` whole pages at page frame `pfn`.
    Pages { pfn: u32, pages: u8 },
    /// Continue the previous piece with `len` bytes.
    Contig(u16),
    /// Any range.
    Raw(u64, u32),
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// MPS = 4 KiB << (mps % 5).
    mps: u8,
    /// Byte offset of the first list inside its page (rounded down to 8).
    first_list_offset: u16,
    /// List pages in the pool.
    pool: u8,
    /// Offset into the first range (partial first page).
    head: u16,
    pieces: Vec<Piece>,
}

const LIST_BASE: u64 = 0x40_0000_0000;

fuzz_target!(|input: Input| {
    let mps = MemoryPageSize::new(4096 << (input.mps % 5)).unwrap();
    let ps = mps.get();
    let mut ranges: Vec<DmaRange> = Vec::new();
    let mut next = 0u64;
    for p in input.pieces.iter().take(24) {
        let r = match *p {
            Piece::Pages { pfn, pages } => {
                DmaRange::try_new(u64::from(pfn) * ps, u64::from(pages.max(1) % 9) * ps)
            }
            Piece::Contig(l) => DmaRange::try_new(next, u64::from(l)),
            Piece::Raw(a, l) => DmaRange::try_new(a, u64::from(l)),
        };
        let Ok(mut r) = r else { continue };
        if ranges.is_empty() && input.head != 0 {
            let h = u64::from(input.head) % r.len();
            r = DmaRange::try_new(r.addr().as_u64() + h, r.len() - h).unwrap();
        }
        next = r.end_u64().unwrap_or(0);
        ranges.push(r);
    }
    let total: u128 = ranges.iter().map(|r| u128::from(r.len())).sum();
    if ranges.is_empty() || total > u128::from(u64::MAX) {
        return;
    }

    let off = (u64::from(input.first_list_offset) % ps) & !7;
    let npool = usize::from(input.pool % 8);
    let mut storage: Vec<Vec<u64>> = (0..npool)
        .map(|i| vec![0u64; ((ps - if i == 0 { off } else { 0 }) / 8) as usize])
        .collect();
    let bus: Vec<u64> = (0..npool)
        .map(|i| LIST_BASE + i as u64 * ps + if i == 0 { off } else { 0 })
        .collect();
    let pool = storage
        .iter_mut()
        .zip(&bus)
        .map(|(s, &b)| PrpListPage::new(DmaAddr::new(b), s));

    let counted = prp_entries(ranges.iter().copied(), mps);
    let compatible = is_prp_compatible(ranges.iter().copied(), mps);
    let r = encode_prp(ranges.iter().copied(), mps, pool);
    assert_eq!(counted.is_ok(), compatible);
    let prp = match r {
        Ok(p) => p,
        Err(PrpError::TooFewListPages { .. }) => {
            let n = counted.unwrap();
            assert!(prp_list_pages_needed(n, mps, off) > npool as u64);
            return;
        }
        Err(e) => {
            if compatible {
                panic!("compatible list rejected: {e:?}");
            }
            assert_eq!(counted.err(), Some(e));
            return;
        }
    };
    let n = counted.unwrap();
    assert_eq!(prp.data_entries(), n);
    assert_eq!(
        prp.list_pages_used() as u64,
        prp_list_pages_needed(n, mps, off)
    );

    let mut mem = SparseMemory::new();
    for (i, (s, &b)) in storage.iter().zip(&bus).enumerate() {
        let used = prp.list_page_entries(i) as usize;
        if used > 0 {
            mem.add(
                physvec::DmaAddr::new(b),
                s[..used].iter().flat_map(|e| e.to_ne_bytes()).collect(),
            );
        }
    }
    let mut out: Vec<DmaRange> = Vec::new();
    let o = DecodeOptions::default();
    decode_prp(prp.prp1, prp.prp2, total as u64, mps, &mem, &mut out, &o)
        .unwrap_or_else(|e| panic!("decode of an encoding failed: {e:?} ({prp:?})"));
    let pairs = |v: &[DmaRange]| -> Vec<(u64, u64)> {
        v.iter().map(|r| (r.addr().as_u64(), r.len())).collect()
    };
    assert_eq!(coalesce(&pairs(&out)), coalesce(&pairs(&ranges)));
});
