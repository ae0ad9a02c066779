//! Builder op-interpreter: drives `RangeBuilder` with arbitrary constraints and pushes
//! (raw ranges, page frames, pages) into a fixed-capacity and a growable sink, and checks
//! every result against a plain `Vec<(u64, u64)>` model of the accepted bytes.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use physvec::{
    BuildError, DmaConstraints, PageSize, PhysAddr, PhysArray, PhysRange, PhysVec, RangeBuilder,
};

#[derive(Arbitrary, Debug)]
struct Input {
    max_segment_size: u64,
    boundary_shift: u8,
    dma_mask_bits: u8,
    align_shift: u8,
    max_segments: u8,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// A raw `(addr, len)`, possibly invalid.
    Raw(u64, u64),
    /// A range contiguous with the previous accepted input.
    Next(u16),
    /// Page frame `pfn` of 2^(12 + shift % 10) bytes.
    Pfn(u64, u8),
    /// A whole 4 KiB page at an arbitrary address.
    Page(u64),
}

fn coalesce(list: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &(a, l) in list {
        match out.last_mut() {
            Some(last) if last.0 as u128 + last.1 as u128 == a as u128 => last.1 += l,
            _ => out.push((a, l)),
        }
    }
    out
}

fuzz_target!(|input: Input| {
    let boundary = if input.boundary_shift >= 64 {
        u64::MAX
    } else {
        (1u64 << (input.boundary_shift % 64)).wrapping_sub(1) | 0xfff
    };
    let Ok(c) = DmaConstraints::new()
        .with_max_segment_size(input.max_segment_size)
        .with_segment_boundary_mask(boundary)
        .with_dma_mask(
            physvec::DmaMask::bits(u32::from(input.dma_mask_bits))
                .unwrap_or(physvec::DmaMask::BITS_64),
        )
        .with_alignment(1u64 << (input.align_shift % 13))
        .map(|c| c.with_max_segments(usize::from(input.max_segments).max(1)))
    else {
        return;
    };
    // Invalid constraints must be rejected, never panic.
    let Ok(mut grow) = RangeBuilder::new(c, PhysVec::new()) else {
        return;
    };
    let mut fixed = RangeBuilder::new(c, PhysArray::<16>::new()).unwrap();
    let mut fixed_full = false;
    let mut model: Vec<(u64, u64)> = Vec::new();
    let mut next = 0u64;

    for op in input.ops.iter().take(64) {
        let (addr, len) = match *op {
            Op::Raw(a, l) => (a, l),
            Op::Next(l) => (next, u64::from(l)),
            Op::Pfn(pfn, s) => {
                let page = PageSize::from_shift(12 + u32::from(s % 10)).unwrap();
                match PhysAddr::from_pfn(pfn, page) {
                    Ok(a) => (a.as_u64(), page.get()),
                    Err(_) => {
                        assert!(grow.push_pfn(pfn, page).is_err());
                        continue;
                    }
                }
            }
            Op::Page(a) => (a, 4096),
        };
        let before = grow.segments().to_vec();
        let result = grow.push_raw(addr, len);
        match result {
            Ok(()) => {
                model.push((addr, len));
                next = addr.wrapping_add(len);
            }
            Err(e) => {
                assert_eq!(
                    grow.segments(),
                    &before[..],
                    "rejection changed the builder"
                );
                assert_eq!(e.index(), model.len());
                match e {
                    BuildError::InvalidRange { .. } => {
                        assert!(PhysRange::try_new(addr, len).is_err())
                    }
                    BuildError::Unaligned { alignment, .. } => assert!(addr % alignment != 0),
                    BuildError::AboveDmaMask { last, mask, .. } => assert!(last > mask),
                    BuildError::TooManySegments { .. } | BuildError::TotalOverflow { .. } => {}
                    BuildError::CapacityExceeded { .. } => panic!("growable sink full"),
                }
            }
        }
        if !fixed_full {
            match fixed.push_raw(addr, len) {
                Err(BuildError::CapacityExceeded { .. }) => fixed_full = true,
                r => assert_eq!(r, result, "fixed and growable sinks disagree"),
            }
            if !fixed_full {
                assert_eq!(fixed.segments(), grow.segments());
            }
        }
    }

    let out = grow.segments();
    let got: Vec<(u64, u64)> = out.iter().map(|r| (r.addr().as_u64(), r.len())).collect();
    assert_eq!(coalesce(&got), coalesce(&model));
    assert!(out.len() <= c.max_segments());
    for r in out {
        assert!(
            c.segment_ok(r.addr().as_u64(), r.len()),
            "{r:?} violates {c:?}"
        );
    }
    for w in out.windows(2) {
        if w[0].is_contiguous_with(w[1]) {
            assert!(!c.segment_ok(w[0].addr().as_u64(), w[0].len() + w[1].len()));
        }
    }
});
