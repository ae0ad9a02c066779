//! SGL decoder on hostile input: SGL1, the transfer length, SGLS and the memory holding
//! the segments come from the fuzzer. Checks: no panic; the documented work bound (at
//! most `max_descriptors` 16-byte reads, output ≤ reads + 1 items, segments ≤ reads + 1);
//! on success the items cover exactly the transfer, none empty, neighbours never
//! mergeable; `DataOnly` into a range sink and `decode_command` (PSDT 01b) agree with
//! the item decoder; a small fixed sink either agrees or reports `OutputFull`.
#![no_main]

mod common;

use arbitrary::Arbitrary;
use common::FuzzMem;
use libfuzzer_sys::fuzz_target;
use physvec::nvme::{
    decode_command, decode_sgl, DataOnly, DataPointer, DecodeError, DecodeOptions, MemoryPageSize,
    SglCapabilities, SglDescriptor, SglItem, SubmissionQueueEntry,
};
use physvec::{DmaArray, DmaRange};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    sgl1: [u8; 16],
    len: u64,
    short: Option<u16>,
    /// SGLS bits 0-1 (support, dword granularity), 2 (keyed), 16 (bit bucket), 18
    /// (excess length) taken from these bits.
    sgls: u8,
    budget: u16,
    compat: bool,
    fold: bool,
    /// Where `mem` lives when not folded.
    base: u32,
    /// The memory: raw bytes (the rest of the input).
    mem: &'a [u8],
}

fn caps(b: u8) -> SglCapabilities {
    let raw = u32::from(b & 3)
        | u32::from(b >> 2 & 1) << 2
        | u32::from(b >> 3 & 1) << 16
        | u32::from(b >> 4 & 1) << 18;
    SglCapabilities::from_raw(raw)
}

fuzz_target!(|input: Input<'_>| {
    let len = input.short.map_or(input.len, u64::from);
    let mem = FuzzMem::new(input.mem, u64::from(input.base), input.fold);
    let budget = u64::from(input.budget % 1536);
    let o = DecodeOptions::default()
        .with_sgls(caps(input.sgls))
        .with_qemu_compat(input.compat)
        .with_max_descriptors(budget);
    let sgl1 = SglDescriptor::from_bytes(input.sgl1);

    let mut items: Vec<SglItem> = Vec::new();
    let r = decode_sgl(sgl1, len, &mem, &mut items, &o);
    let reads = mem.reads.get();
    assert!(reads <= budget, "{reads} reads with a budget of {budget}");
    assert!(mem.max_read.get() <= 16);
    assert!(
        items.len() as u64 <= reads + 1,
        "output not bounded by reads"
    );
    for it in &items {
        assert!(!it.is_empty());
    }
    for w in items.windows(2) {
        assert!(w[0].merge(w[1]).is_none(), "unmerged neighbours {w:?}");
    }
    let total: u128 = items.iter().map(|i| i.len() as u128).sum();
    match &r {
        Ok(sum) => {
            assert_eq!(sum.descriptors_read, reads);
            assert!(sum.segments <= reads + 1);
            assert_eq!(total, len as u128, "items do not cover the transfer");
        }
        Err(e) => {
            // A failed decode leaves its output exactly as it found it (empty here).
            assert!(items.is_empty(), "a failed decode left {items:?}");
            assert_eq!(total, 0);
            let _ = (e.to_string(), e.nvme_status(), e.kind(), e.at());
        }
    }

    // DataOnly into a growable range sink: same result, data items only.
    mem.reset();
    let mut ranges: Vec<DmaRange> = Vec::new();
    let mut d = DataOnly::new(&mut ranges);
    let rd = decode_sgl(sgl1, len, &mem, &mut d, &o);
    let discarded = d.discarded();
    assert_eq!(rd, r);
    let data: Vec<DmaRange> = items.iter().filter_map(|i| i.range()).collect();
    assert_eq!(ranges, data);
    let bucket: u64 = items
        .iter()
        .map(|i| match i {
            SglItem::BitBucket(l) => *l,
            _ => 0,
        })
        .sum();
    assert_eq!(discarded, bucket);

    // A small fixed sink.
    mem.reset();
    let mut small = DmaArray::<2>::new();
    let rs = decode_sgl(sgl1, len, &mem, &mut DataOnly::new(&mut small), &o);
    match rs {
        // Full before the end: either the transfer has more than 2 data ranges, or the
        // decode fails later anyway (and then nothing is kept either way).
        Err(DecodeError::OutputFull) => {
            assert!(data.len() > 2 || r.is_err());
            assert!(small.is_empty(), "a failed decode left {small:?}");
        }
        _ => {
            assert_eq!(rs, r);
            assert_eq!(small.as_slice(), &data[..small.len()]);
            if rs.is_err() {
                assert!(small.is_empty());
            }
        }
    }

    // The same DPTR through a submission queue entry.
    mem.reset();
    let mut sqe = SubmissionQueueEntry::new(0x02);
    sqe.set_data_pointer(DataPointer::Sgl(sgl1));
    let mut via_cmd: Vec<SglItem> = Vec::new();
    let rc = decode_command(&sqe, len, MemoryPageSize::SIZE_4K, &mem, &mut via_cmd, &o);
    assert_eq!(rc, r);
    assert_eq!(via_cmd, items);
});
