//! SGL encode → decode round trip: data ranges and bit buckets are encoded into segment
//! pages of a fuzzed size, the pages are put in memory at their bus addresses, and
//! `decode_sgl` (with the same SGLS, keyed or not) must give back exactly the input
//! items, merged. Also: `sgl_descriptors` agrees with the encoding, and the QEMU chain
//! workaround never changes what is decoded.
#![no_main]

mod common;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use physvec::mem::SparseMemory;
use physvec::nvme::{
    decode_sgl, encode_sgl, sgl_descriptors, DecodeOptions, SglCapabilities, SglDescriptor,
    SglError, SglItem, SglOptions, SglSegmentPage,
};
use physvec::{DmaAddr, DmaRange};

#[derive(Arbitrary, Debug)]
enum Piece {
    Data(u64, u32),
    /// Continue the previous data range.
    Contig(u32),
    Bucket(u32),
    /// A range longer than one descriptor can hold (split by the encoder).
    Huge(u32, u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// SGLS as in sgl_decode: bits 0-1 support/dword, 2 keyed, 3 bit bucket, 4 excess.
    sgls: u8,
    key: Option<u32>,
    workaround: bool,
    /// Descriptors per segment page: 1 + slots % 16.
    slots: u8,
    pool: u8,
    pieces: Vec<Piece>,
}

const SEG_BASE: u64 = 0x50_0000_0000;

fn caps(b: u8) -> SglCapabilities {
    let raw = u32::from(b & 3)
        | u32::from(b >> 2 & 1) << 2
        | u32::from(b >> 3 & 1) << 16
        | u32::from(b >> 4 & 1) << 18;
    SglCapabilities::from_raw(raw)
}

fn merged(items: &[SglItem]) -> Vec<SglItem> {
    let mut out: Vec<SglItem> = Vec::new();
    for &it in items {
        match out.last().and_then(|l| l.merge(it)) {
            Some(m) => *out.last_mut().unwrap() = m,
            None => out.push(it),
        }
    }
    out
}

fuzz_target!(|input: Input| {
    let mut items: Vec<SglItem> = Vec::new();
    let mut next = 0u64;
    for p in input.pieces.iter().take(40) {
        let it = match *p {
            Piece::Data(a, l) => DmaRange::try_new(a, u64::from(l)).ok().map(SglItem::Data),
            Piece::Contig(l) => DmaRange::try_new(next, u64::from(l))
                .ok()
                .map(SglItem::Data),
            Piece::Bucket(l) => Some(SglItem::BitBucket(u64::from(l))),
            Piece::Huge(pfn, gib) => {
                DmaRange::try_new(u64::from(pfn) << 12, (u64::from(gib % 9) + 1) << 30)
                    .ok()
                    .map(SglItem::Data)
            }
        };
        let Some(it) = it else { continue };
        if let SglItem::Data(r) = it {
            next = r.end_u64().unwrap_or(0);
        }
        items.push(it);
    }
    let total: u128 = items.iter().map(|i| u128::from(i.len())).sum();
    if total > u128::from(u64::MAX) {
        return;
    }
    let caps = caps(input.sgls);
    let opts = SglOptions::new(caps)
        .with_key(input.key)
        .with_qemu_chain_workaround(input.workaround);
    let slots = 1 + usize::from(input.slots % 16);
    let npool = usize::from(input.pool % 8);
    let mut storage: Vec<Vec<SglDescriptor>> = (0..npool)
        .map(|_| vec![SglDescriptor::default(); slots])
        .collect();
    let pool = storage
        .iter_mut()
        .enumerate()
        .map(|(i, s)| SglSegmentPage::new(DmaAddr::new(SEG_BASE + 0x1000 * i as u64), s));
    let counted = sgl_descriptors(items.iter().copied(), &opts);
    let sgl = match encode_sgl(items.iter().copied(), opts, pool) {
        Ok(s) => s,
        Err(SglError::TooFewSegmentPages { .. } | SglError::SegmentPageTooSmall { .. }) => {
            assert!(counted.is_ok());
            return;
        }
        Err(e) => {
            assert_eq!(counted, Err(e), "counting and encoding disagree");
            return;
        }
    };
    assert_eq!(counted, Ok(sgl.data_descriptors()));
    assert!(sgl.segments_used() <= npool);
    assert!(caps.supported());

    let mut mem = SparseMemory::new();
    for (i, s) in storage.iter().enumerate().take(sgl.segments_used()) {
        mem.add(
            physvec::DmaAddr::new(SEG_BASE + 0x1000 * i as u64),
            s.iter().flat_map(|d| d.to_bytes()).collect(),
        );
    }
    let mut dcaps = caps;
    if input.key.is_some() {
        dcaps = dcaps.with_bit(2, true);
    }
    let o = DecodeOptions::default()
        .with_sgls(dcaps)
        .with_max_descriptors(1 << 16);
    let mut out: Vec<SglItem> = Vec::new();
    let sum = decode_sgl(sgl.dptr, total as u64, &mem, &mut out, &o)
        .unwrap_or_else(|e| panic!("decode of an encoding failed: {e:?} ({sgl:?})"));
    assert_eq!(out, merged(&items));
    // Every data descriptor plus one segment descriptor per chained page is read.
    assert!(sum.descriptors_read <= sgl.data_descriptors() + sgl.segments_used() as u64);
});
