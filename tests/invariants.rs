//! Issue 12's reproducers and their siblings: every public constructor, container and
//! sink fed zero lengths, end-of-space ranges and `u64::MAX` totals returns an error (or
//! does not compile, see the `compile_fail` doctests on `RawRange`); none panics, in
//! debug or release.

use physvec::map::{Attrs, DataDirection, DirectMapper, DmaMapper};
use physvec::nvme::{self, MemoryPageSize};
use physvec::sink::Coalescing;
use physvec::{
    DmaArray, DmaConstraints, DmaMask, DmaRange, DmaVec, PhysAddr, PhysArray, PhysRange, PhysVec,
    RangeBuilder, RangeSink, RangeView, RawRange,
};

const TOP: u64 = u64::MAX;

#[test]
fn ranges_are_valid_by_construction() {
    assert!(PhysRange::try_new(0x1000, 0).is_err());
    assert!(PhysRange::try_new(TOP, 1).is_ok()); // ends exactly at 2^64
    assert!(PhysRange::try_new(TOP, 2).is_err());
    assert!(PhysRange::try_new(1, TOP).is_ok());
    assert!(PhysRange::try_new(2, TOP).is_err());
    assert!(PhysRange::from_addr(PhysAddr::new(TOP), 0).is_err());
    // The old reproducer's bytes, `[0x1000, 0]`, now only exist as a RawRange.
    let raw: RawRange<physvec::Phys> = bytemuck::cast([0x1000u64, 0]);
    assert!(PhysRange::try_from(raw).is_err());
    assert!(bytemuck::checked::try_cast::<[u64; 2], PhysRange>([0x1000, 0]).is_err());
    let r = PhysRange::new(TOP, 1);
    assert_eq!((r.end(), r.last().as_u64()), (None, TOP));
    assert!(r.split_at(1).is_err());
    assert!(r.slice(0, 0).is_err());
    assert!(r.slice(1, 1).is_err());
}

/// The first reproducer: a range the mapper could not have been given is now rejected
/// at the door, and the end of the address space maps or fails cleanly.
#[test]
fn direct_mapper_at_the_end_of_the_space() {
    let d = DirectMapper::new(0, DmaMask::BITS_64);
    let top = PhysRange::new(TOP - 0xfff, 0x1000);
    let dma = d
        .map_phys(top, DataDirection::ToDevice, Attrs::empty())
        .unwrap();
    assert_eq!(dma, DmaRange::new(TOP - 0xfff, 0x1000));
    let shifted = DirectMapper::new(0x1000, DmaMask::BITS_64);
    assert!(shifted
        .map_phys(top, DataDirection::ToDevice, Attrs::empty())
        .is_err());
    let narrow = DirectMapper::new(0, DmaMask::BITS_32);
    assert!(narrow
        .map_phys(top, DataDirection::ToDevice, Attrs::empty())
        .is_err());
}

/// The second reproducer: `replace_last` on a full-total array, and every other way a
/// cached total could overflow.
#[test]
fn container_totals_never_overflow() {
    let mut a = PhysArray::<4>::new();
    a.try_push(PhysRange::new(0, TOP)).unwrap();
    assert!(a.try_push(PhysRange::new(0, 1)).is_err());
    assert!(a.replace_last(PhysRange::new(0, TOP)).is_ok()); // same length: fine
    let mut b = PhysArray::<4>::new();
    b.try_push(PhysRange::new(0, TOP - 1)).unwrap();
    b.try_push(PhysRange::new(0x10, 1)).unwrap();
    assert!(b.replace_last(PhysRange::new(0x10, 2)).is_err());
    assert_eq!(b.total_len(), TOP);
    assert!(b.push_coalesced(PhysRange::new(0x11, 1)).is_err());
    assert!(b
        .try_extend_from_slice(&[PhysRange::new(0, 1), PhysRange::new(0, 1)])
        .is_err());
    assert_eq!((b.len(), b.total_len()), (2, TOP));

    let mut v = PhysVec::new();
    v.try_push(PhysRange::new(0, TOP)).unwrap();
    assert!(v.try_push(PhysRange::new(0, 1)).is_err());
    assert!(PhysVec::try_from_slice(&[PhysRange::new(0, TOP), PhysRange::new(0, 1)]).is_err());
    assert!(DmaVec::try_from(&[DmaRange::new(0, TOP), DmaRange::new(0, 1)][..]).is_err());
    assert!(DmaArray::<1>::try_from(&[DmaRange::new(0, 1), DmaRange::new(9, 1)][..]).is_err());

    let mut empty = PhysArray::<1>::new();
    assert!(empty.replace_last(PhysRange::new(0, 1)).is_err());
    let mut c = Coalescing::new(&mut b);
    assert!(c.push(PhysRange::new(0x100, 1)).is_err());
    assert_eq!(c.pushed(), 0);
}

#[test]
fn views_and_builders_refuse_overflowing_totals() {
    let big = [PhysRange::new(0, TOP), PhysRange::new(0, 1)];
    assert!(RangeView::full(&big).is_err());
    assert!(RangeView::new(&big[..1], TOP, 1).is_err());
    let mut b = RangeBuilder::new(DmaConstraints::new(), PhysVec::new()).unwrap();
    b.push(PhysRange::new(0, TOP)).unwrap();
    assert!(b.push(PhysRange::new(TOP, 1)).is_err());
    assert!(b.push_raw(0x1000, 0).is_err());
    assert!(b.push_raw(TOP, 2).is_err());
    let list = b.finish();
    assert_eq!(list.total_len(), TOP);
}

#[test]
fn masks_and_encoders_at_the_edges() {
    assert!(DmaMask::bits(0).is_err());
    assert!(DmaMask::bits(65).is_err());
    assert!(DmaMask::from_mask(0).is_err());
    let mps = MemoryPageSize::SIZE_4K;
    // A transfer of 2^64 - 4 KiB bytes in one range ending at 2^64: PRP counting must
    // not overflow; the encoder reports the list pages it needs.
    let huge = [DmaRange::new(0x1000, TOP - 0xfff)];
    let e = nvme::encode_prp(&huge[..], mps, core::iter::empty()).unwrap_err();
    assert_eq!(e.kind(), "too_few_list_pages");
    assert!(nvme::prp_entries(&huge[..], mps).is_ok());
    assert!(nvme::encode_prp(&[][..], mps, core::iter::empty()).is_err());
}
