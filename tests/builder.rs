//! Property tests of `RangeBuilder` against a plain `Vec<(u64, u64)>` model: the bytes
//! are the same, every output segment satisfies every constraint, coalescing is maximal,
//! and rejected inputs change nothing.

use physvec::DmaMask;
use physvec::{BuildError, DmaConstraints, PhysArray, PhysRange, PhysVec, RangeBuilder};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Merges contiguous neighbours: two lists describe the same bytes iff their coalesced
/// forms are equal.
fn coalesce(list: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &(a, l) in list {
        if let Some(last) = out.last_mut() {
            if last.0 as u128 + last.1 as u128 == a as u128 {
                last.1 += l;
                continue;
            }
        }
        out.push((a, l));
    }
    out
}

fn constraints() -> impl Strategy<Value = DmaConstraints> {
    (
        prop_oneof![
            Just(u64::MAX),
            1u64..0x10000,
            Just(0x1000u64),
            Just(0x3000u64)
        ],
        prop_oneof![Just(u64::MAX), (9u32..20).prop_map(|k| (1u64 << k) - 1)],
        prop_oneof![
            Just(DmaMask::BITS_64),
            Just(DmaMask::BITS_32),
            Just(DmaMask::new::<20>())
        ],
        (0u32..10).prop_map(|k| 1u64 << k),
        prop_oneof![Just(usize::MAX), 1usize..40],
    )
        .prop_filter_map("contradictory", |(max, mask, dma, align, segs)| {
            DmaConstraints::new()
                .with_max_segment_size(max)
                .with_segment_boundary_mask(mask)
                .with_dma_mask(dma)
                .with_alignment(align)
                .ok()?
                .with_max_segments(segs)
                .validate()
                .ok()
        })
}

/// Inputs that are often contiguous with the previous one, often aligned, sometimes not.
fn inputs() -> impl Strategy<Value = Vec<(u64, u64)>> {
    prop::collection::vec(
        (
            prop_oneof![3 => Just(None), 2 => (0u64..0x40_0000).prop_map(Some), 1 => Just(Some(u64::MAX - 0x1_0000))],
            prop_oneof![1u64..0x200, 0x200u64..0x20000, Just(0x1000u64)],
            0u32..10,
        ),
        0..24,
    )
    .prop_map(|v| {
        let mut next = 0x10_0000u64;
        v.into_iter()
            .map(|(addr, len, align_shift)| {
                let a = match addr {
                    None => next,
                    Some(a) => a & !((1u64 << align_shift) - 1),
                };
                let room = (1u128 << 64) - a as u128;
                let len = (len as u128).min(room) as u64;
                next = a.wrapping_add(len);
                (a, len)
            })
            .collect()
    })
}

fn check_output(c: &DmaConstraints, out: &[PhysRange], model: &[(u64, u64)]) {
    let got: Vec<(u64, u64)> = out.iter().map(|r| (r.addr().as_u64(), r.len())).collect();
    assert_eq!(coalesce(&got), coalesce(model), "bytes differ");
    assert!(out.len() <= c.max_segments());
    for r in out {
        assert!(
            c.segment_ok(r.addr().as_u64(), r.len()),
            "segment {r:?} violates {c:?}"
        );
    }
    for w in out.windows(2) {
        if w[0].is_contiguous_with(w[1]) {
            assert!(
                !c.segment_ok(w[0].addr().as_u64(), w[0].len() + w[1].len()),
                "{:?} and {:?} could have been one segment under {c:?}",
                w[0],
                w[1]
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/builder.txt"
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn builder_matches_model(c in constraints(), input in inputs()) {
        let mut b = RangeBuilder::new(c, PhysVec::new()).unwrap();
        let mut model: Vec<(u64, u64)> = Vec::new();
        for (i, &(a, l)) in input.iter().enumerate() {
            let before: Vec<PhysRange> = b.segments().to_vec();
            let total_before = b.total_len();
            match b.push_raw(a, l) {
                Ok(()) => model.push((a, l)),
                Err(e) => {
                    prop_assert_eq!(e.index(), model.len());
                    prop_assert_eq!(b.segments(), &before[..], "rejected input {} changed the builder", i);
                    prop_assert_eq!(b.total_len(), total_before);
                    match e {
                        BuildError::Unaligned { addr, alignment, .. } => {
                            prop_assert_eq!(addr, a);
                            prop_assert!(addr % alignment != 0);
                        }
                        BuildError::AboveDmaMask { last, mask, .. } => {
                            prop_assert_eq!(last, a + (l - 1));
                            prop_assert!(last > mask);
                        }
                        BuildError::TooManySegments { .. } | BuildError::TotalOverflow { .. } => {}
                        other => prop_assert!(false, "unexpected {:?}", other),
                    }
                }
            }
        }
        check_output(&c, b.segments(), &model);
        prop_assert_eq!(b.total_len(), model.iter().map(|x| x.1).sum::<u64>());
    }

    /// A fixed-capacity sink gives the same result as a growable one until it is full,
    /// and rejects the input that does not fit as a whole.
    #[test]
    fn fixed_capacity_agrees_with_growable(c in constraints(), input in inputs()) {
        let mut grow = RangeBuilder::new(c, PhysVec::new()).unwrap();
        let mut fixed = RangeBuilder::new(c, PhysArray::<6>::new()).unwrap();
        for &(a, l) in &input {
            let g = grow.push_raw(a, l);
            let before = fixed.segments().to_vec();
            let f = fixed.push_raw(a, l);
            match (g, f) {
                (Ok(()), Ok(())) => {}
                (Ok(()), Err(BuildError::CapacityExceeded { .. })) => {
                    prop_assert_eq!(fixed.segments(), &before[..]);
                    break;
                }
                (Err(ge), Err(fe)) => prop_assert_eq!(ge, fe),
                (g, f) => prop_assert!(false, "growable {:?} vs fixed {:?}", g, f),
            }
            prop_assert_eq!(grow.segments(), fixed.segments());
        }
    }
}

fn seg(max: u64) -> DmaConstraints {
    DmaConstraints::new().with_max_segment_size(max)
}

#[test]
fn inputs_counts_what_was_accepted_and_errors_carry_it() {
    let c = DmaConstraints::new().with_alignment(0x200).unwrap();
    let mut b = RangeBuilder::new(c, PhysVec::new()).unwrap();
    b.push_raw(0x1000, 0x200).unwrap();
    b.push_raw(0x4000, 0x200).unwrap();
    assert_eq!(b.inputs(), 2);
    let e = b.push_raw(0x5001, 0x10).unwrap_err();
    assert_eq!(e.index(), 2);
    assert_eq!(b.inputs(), 2);
}

#[test]
fn an_address_equal_to_the_alignment_mask_is_unaligned() {
    // 0x1ff is `alignment - 1`: off the 512-byte alignment by 511 bytes.
    let c = DmaConstraints::new().with_alignment(0x200).unwrap();
    let mut b = RangeBuilder::new(c, PhysVec::new()).unwrap();
    assert_eq!(
        b.push_raw(0x1ff, 0x10),
        Err(BuildError::Unaligned {
            index: 0,
            addr: 0x1ff,
            alignment: 0x200
        })
    );
    assert!(b.segments().is_empty());
}

#[test]
fn a_range_split_into_exactly_the_free_slots_fits() {
    // 0x2000 bytes at a 4 KiB max segment size need two segments: a sink with two free
    // slots and a limit of two segments both hold them.
    let c = seg(0x1000).with_max_segments(2);
    let mut b = RangeBuilder::new(c, PhysArray::<2>::new()).unwrap();
    b.push_raw(0x10_0000, 0x2000).unwrap();
    assert_eq!(
        b.segments(),
        [
            PhysRange::new(0x10_0000, 0x1000),
            PhysRange::new(0x10_1000, 0x1000)
        ]
    );
    assert!(matches!(
        b.push_raw(0x20_0000, 0x10),
        Err(BuildError::TooManySegments { index: 1, .. })
    ));
    let mut b = RangeBuilder::new(seg(0x1000), PhysArray::<2>::new()).unwrap();
    b.push_raw(0x10_0000, 0x2000).unwrap();
    assert_eq!(b.segments().len(), 2);
}

#[test]
fn a_sink_refusing_a_piece_leaves_the_builder_unchanged() {
    // The sink already holds almost 2^64 bytes; the builder's own total is small, so only
    // the sink notices that its total would overflow.
    let mut sink = PhysVec::new();
    sink.push(PhysRange::new(0, u64::MAX - 0x1800));
    let mut b = RangeBuilder::new(seg(0x1000), sink).unwrap();
    b.push_raw(0x10_0000, 0x800).unwrap();
    // Contiguous: 0x800 bytes join the tail (the sink accepts that), the remaining 0x1000
    // bytes would be a new segment the sink refuses.
    assert_eq!(
        b.push_raw(0x10_0800, 0x1800),
        Err(BuildError::TotalOverflow { index: 1 })
    );
    assert_eq!(b.segments(), [PhysRange::new(0x10_0000, 0x800)]);
    assert_eq!(b.total_len(), 0x800);
    let sink = b.finish();
    assert_eq!(sink.total_len(), u64::MAX - 0x1000);
}

#[test]
fn constraints_debug_shows_sizes_and_masks_in_hex() {
    let c = seg(0x1000).with_segment_boundary_mask(0xffff);
    let text = format!("{c:?}");
    assert!(text.starts_with("DmaConstraints"), "{text}");
    assert!(text.contains("max_segment_size: 0x1000"), "{text}");
    assert!(text.contains("segment_boundary_mask: 0xffff"), "{text}");
}

#[test]
fn a_boundary_window_as_small_as_the_alignment_is_valid() {
    // Aligned to 4 KiB, never crossing a 4 KiB boundary: every segment is one block.
    let c = DmaConstraints::new()
        .with_alignment(0x1000)
        .unwrap()
        .with_segment_boundary_mask(0xfff);
    assert_eq!(c.validate(), Ok(c));
    let mut b = RangeBuilder::new(c, PhysVec::new()).unwrap();
    b.push_raw(0x10_0000, 0x2000).unwrap();
    assert_eq!(
        b.segments(),
        [
            PhysRange::new(0x10_0000, 0x1000),
            PhysRange::new(0x10_1000, 0x1000)
        ]
    );
    // One byte smaller is below the alignment.
    assert!(DmaConstraints::new()
        .with_alignment(0x1000)
        .unwrap()
        .with_segment_boundary_mask(0x7ff)
        .validate()
        .is_err());
}

#[test]
fn segment_ok_refuses_each_broken_rule_alone() {
    let c = DmaConstraints::new().with_alignment(0x200).unwrap();
    assert!(c.segment_ok(0x200, 0x10));
    // Misaligned start, nothing else wrong.
    assert!(!c.segment_ok(0x100, 0x10));
    // Empty, nothing else wrong.
    assert!(!c.segment_ok(0x200, 0));
}

#[test]
fn dma_bit_mask_is_the_kernels_macro() {
    use physvec::dma_bit_mask;
    assert_eq!(dma_bit_mask(0), 0);
    assert_eq!(dma_bit_mask(1), 1);
    assert_eq!(dma_bit_mask(12), 0xfff);
    assert_eq!(dma_bit_mask(32), 0xffff_ffff);
    assert_eq!(dma_bit_mask(63), u64::MAX >> 1);
    assert_eq!(dma_bit_mask(64), u64::MAX);
    assert_eq!(dma_bit_mask(65), u64::MAX);
}
