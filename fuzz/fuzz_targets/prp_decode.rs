//! PRP decoder on hostile input: PRP1/PRP2/length/MPS and the memory holding the PRP
//! lists come from the fuzzer. Checks: no panic; the documented work bound (at most
//! `max_descriptors` reads of 8 bytes each, output ≤ reads + 2 ranges); on success the
//! output is the transfer exactly (checked against an independent model of QEMU's
//! `nvme_map_prp`); on error the sink is restored; a small fixed sink agrees with a
//! growable one; strict acceptance implies `qemu_compat` acceptance with the same output.
#![no_main]

mod common;

use arbitrary::Arbitrary;
use common::{coalesce, FuzzMem};
use libfuzzer_sys::fuzz_target;
use physvec::mem::MemoryReader;
use physvec::nvme::{decode_prp, DecodeError, DecodeOptions, MemoryPageSize};
use physvec::{DmaArray, DmaRange};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    prp1: u64,
    prp2: u64,
    len: u64,
    /// MPS = 4 KiB << (mps % 6) (up to 128 KiB keeps list pages small).
    mps: u8,
    /// Descriptor budget (small so an execution stays cheap; the default budget is
    /// covered by tests/hardening.rs).
    budget: u16,
    compat: bool,
    fold: bool,
    /// Small transfer length instead of `len` (most interesting inputs are short).
    short: Option<u16>,
    /// Where `mem` lives when not folded.
    base: u32,
    /// The memory: raw bytes (the rest of the input).
    mem: &'a [u8],
}

/// Independent model: `Ok(entries as (addr, len))` or the error kind.
fn model(
    prp1: u64,
    prp2: u64,
    len: u64,
    ps: u64,
    mem: &FuzzMem,
    o: &DecodeOptions,
) -> Result<Vec<(u64, u64)>, &'static str> {
    let mut out = Vec::new();
    if len == 0 {
        return Ok(out);
    }
    if !o.qemu_compat && prp1 % 4 != 0 {
        return Err("invalid_prp_offset");
    }
    let first = (ps - prp1 % ps).min(len);
    if prp1.checked_add(first - 1).is_none() {
        return Err("invalid_prp_offset");
    }
    out.push((prp1, first));
    let mut rem = len - first;
    if rem == 0 {
        return Ok(out);
    }
    if rem <= ps {
        if prp2 % ps != 0 {
            return Err("invalid_prp_offset");
        }
        out.push((prp2, rem));
        return Ok(out);
    }
    if !o.qemu_compat && prp2 % 8 != 0 {
        return Err("invalid_prp_offset");
    }
    // Slot addresses of the current list page.
    let mut slot = prp2;
    let mut page_end = (prp2 / ps) as u128 * ps as u128 + ps as u128;
    if (slot as u128) + 8 > page_end {
        return Err("invalid_prp_offset");
    }
    let mut reads = 0u64;
    while rem > 0 {
        if reads == o.max_descriptors {
            return Err("limit_exceeded");
        }
        reads += 1;
        let e = mem
            .read_u64_le(physvec::DmaAddr::new(slot))
            .map_err(|_| "memory_unreadable")?;
        if e % ps != 0 {
            return Err("invalid_prp_offset");
        }
        let last_slot = slot as u128 + 16 > page_end;
        if last_slot && rem > ps {
            slot = e;
            page_end = e as u128 + ps as u128;
            continue;
        }
        let n = rem.min(ps);
        if e.checked_add(n - 1).is_none() {
            return Err("invalid_prp_offset");
        }
        out.push((e, n));
        rem -= n;
        slot += 8;
    }
    Ok(out)
}

fn pairs(r: &[DmaRange]) -> Vec<(u64, u64)> {
    r.iter().map(|r| (r.addr().as_u64(), r.len())).collect()
}

fuzz_target!(|input: Input<'_>| {
    let Ok(mps) = MemoryPageSize::new(4096 << (input.mps % 6)) else {
        return;
    };
    let len = input.short.map_or(input.len, u64::from);
    let mem = FuzzMem::new(input.mem, u64::from(input.base), input.fold);
    let budget = u64::from(input.budget % 1536);
    let o = DecodeOptions::default()
        .with_qemu_compat(input.compat)
        .with_max_descriptors(budget);

    // Growable sink with a sentinel range that must survive.
    let sentinel = DmaRange::new(0x1, 0x1);
    let mut out = vec![sentinel];
    let r = decode_prp(
        physvec::DmaAddr::new(input.prp1),
        physvec::DmaAddr::new(input.prp2),
        len,
        mps,
        &mem,
        &mut out,
        &o,
    );
    let reads = mem.reads.get();
    assert!(reads <= budget, "{reads} reads with a budget of {budget}");
    assert!(mem.max_read.get() <= 8);
    assert!(
        out.len() as u64 <= 1 + reads + 2,
        "output not bounded by reads"
    );
    assert_eq!(out[0], sentinel);

    let expect = model(input.prp1, input.prp2, len, mps.get(), &mem, &o);
    match (&r, &expect) {
        (Ok(sum), Ok(entries)) => {
            assert_eq!(sum.descriptors_read, reads);
            assert!(sum.segments <= reads + 1);
            let got = pairs(&out[1..]);
            assert_eq!(got, coalesce(entries), "output differs from the model");
            let total: u128 = got.iter().map(|&(_, l)| l as u128).sum();
            assert_eq!(total, len as u128);
            // Coalesced: no two neighbours contiguous.
            for w in out[1..].windows(2) {
                assert!(!w[0].is_contiguous_with(w[1]));
            }
        }
        (Err(e), Err(kind)) => {
            assert_eq!(e.kind(), *kind, "{e:?}");
            assert_eq!(out, [sentinel], "sink not restored on error");
            let _ = e.to_string();
            let _ = e.nvme_status();
        }
        _ => panic!("decoder {r:?} vs model {expect:?}"),
    }

    // A small fixed sink: the same result, or OutputFull when the output is larger.
    mem.reset();
    let mut small = DmaArray::<3>::new();
    let rs = decode_prp(
        physvec::DmaAddr::new(input.prp1),
        physvec::DmaAddr::new(input.prp2),
        len,
        mps,
        &mem,
        &mut small,
        &o,
    );
    match rs {
        Err(DecodeError::OutputFull) => {
            assert!(small.is_empty());
            assert!(out.len() - 1 > 3 || r.is_err());
        }
        _ => {
            assert_eq!(rs, r);
            if rs.is_ok() {
                assert_eq!(small.as_slice(), &out[1..]);
            }
        }
    }

    // Strict acceptance implies QEMU-compatible acceptance, with the same output.
    if r.is_ok() && !input.compat {
        let mut c = Vec::new();
        let oc = o.with_qemu_compat(true);
        let rc = decode_prp(
            physvec::DmaAddr::new(input.prp1),
            physvec::DmaAddr::new(input.prp2),
            len,
            mps,
            &mem,
            &mut c,
            &oc,
        );
        assert_eq!(rc, r);
        assert_eq!(c, &out[1..]);
    }
});
