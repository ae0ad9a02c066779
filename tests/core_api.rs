//! The core model's public contracts that a driver relies on directly: addresses, ranges,
//! lists, views, sinks and the errors' text, kinds and NVMe statuses. (Found by the
//! `core` mutation run: items that only doctests reached.)

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use physvec::error::{ErrorInfo, Position};
use physvec::fmt::Hex;
use physvec::mem::{MemoryError, SparseMemory};
use physvec::nvme::{DecodeError, NvmeStatus, PrpError};
use physvec::sink::Coalescing;
use physvec::{
    AddrError, BuildError, ConstraintsError, DmaAddr, DmaMask, DmaMaskError, Error, PageSize,
    PhysAddr, PhysArray, PhysRange, RangeError, RangeSink, RangeVec, RangeView, RawRange,
    TotalLenOverflow, ViewError, VirtAddr,
};

fn hash_of<T: Hash>(v: &T) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

#[test]
fn addresses_from_pointers_hash_by_value() {
    let x = 7u32;
    let v = VirtAddr::from_ptr(&x);
    assert_eq!(v.as_u64(), &x as *const u32 as u64);
    assert_ne!(v.as_u64(), 0);
    // Equal addresses hash equally and like their value; different ones differ.
    assert_eq!(
        hash_of(&PhysAddr::new(0x1000)),
        hash_of(&PhysAddr::new(0x1000))
    );
    assert_eq!(hash_of(&PhysAddr::new(0x1000)), hash_of(&0x1000u64));
    assert_ne!(
        hash_of(&PhysAddr::new(0x1000)),
        hash_of(&PhysAddr::new(0x2000))
    );
    assert_eq!(PageSize::SIZE_4K.mask(), 0xfff);
}

#[test]
fn a_range_contains_its_first_and_last_byte_only() {
    let r = PhysRange::new(0x1000, 0x10);
    assert!(r.contains(PhysAddr::new(0x1000)));
    assert!(r.contains(PhysAddr::new(0x100f)));
    assert!(!r.contains(PhysAddr::new(0xfff)));
    assert!(!r.contains(PhysAddr::new(0x1010)));
    let top = PhysRange::new(u64::MAX - 0xf, 0x10);
    assert!(top.contains(PhysAddr::new(u64::MAX)));
    assert!(!top.contains(PhysAddr::new(0)));
}

#[test]
fn views_at_address_zero_iterate_and_count_down() {
    // A range at address 0: the view's segments start below their length.
    let list = [
        PhysRange::new(0, 0x10),
        PhysRange::new(0x20, 0x10),
        PhysRange::new(0x40, 8),
    ];
    let v = RangeView::full(&list).unwrap();
    #[allow(clippy::clone_on_copy)]
    let copy = v.clone();
    assert_eq!(copy.len(), 0x28);
    assert_eq!(copy, v);
    let mut it = v.iter();
    assert_eq!(it.size_hint(), (3, Some(3)));
    assert_eq!(it.next(), Some(PhysRange::new(0, 0x10)));
    assert_eq!(it.size_hint(), (2, Some(2)));
    assert_eq!(it.len(), 2);
    assert_eq!(it.next_back(), Some(PhysRange::new(0x40, 8)));
    assert_eq!(it.size_hint(), (1, Some(1)));
    assert_eq!(it.next(), Some(PhysRange::new(0x20, 0x10)));
    assert_eq!(it.size_hint(), (0, Some(0)));
    assert_eq!(it.next(), None);
    // A window that starts inside the first range at 0.
    let w = v.window(4, 0x20).unwrap();
    assert_eq!(
        w.iter().collect::<Vec<_>>(),
        [
            PhysRange::new(4, 0xc),
            PhysRange::new(0x20, 0x10),
            PhysRange::new(0x40, 4)
        ]
    );
}

#[test]
fn views_are_equal_when_their_segments_are() {
    let a = [PhysRange::new(0x100, 8), PhysRange::new(0x200, 8)];
    let b = [PhysRange::new(0x100, 8), PhysRange::new(0x300, 8)];
    let c = [PhysRange::new(0xf8, 0x10), PhysRange::new(0x200, 0x10)];
    let va = RangeView::full(&a).unwrap();
    let vb = RangeView::full(&b).unwrap();
    // Same count, different segments.
    assert_ne!(va, vb);
    // Same segments from different underlying ranges (trimmed).
    assert_eq!(va, RangeView::new(&c, 8, 0x10).unwrap());
    // Same first segments, different counts.
    assert_ne!(va, RangeView::new(&a, 0, 8).unwrap());
}

#[test]
fn copy_into_copies_all_or_nothing() {
    let list = [
        PhysRange::new(0x100, 8),
        PhysRange::new(0x200, 8),
        PhysRange::new(0x300, 8),
    ];
    let v = RangeView::new(&list, 2, 20).unwrap();
    let mut out = PhysArray::<4>::new();
    v.copy_into(&mut out).unwrap();
    assert_eq!(
        out.as_slice(),
        [
            PhysRange::new(0x102, 6),
            PhysRange::new(0x200, 8),
            PhysRange::new(0x300, 6)
        ]
    );
    let mut small = PhysArray::<2>::new();
    small.try_push(PhysRange::new(0x9000, 1)).unwrap();
    let e = v.copy_into(&mut small).unwrap_err();
    assert_eq!(e.element(), PhysRange::new(0x200, 8));
    assert_eq!(small.as_slice(), [PhysRange::new(0x9000, 1)]);
}

#[test]
fn sinks_by_reference_and_fixed_arrays() {
    fn remaining<K: RangeSink<physvec::Phys>>(k: K) -> usize {
        k.remaining_capacity()
    }
    let mut a = PhysArray::<4>::new();
    a.try_push(PhysRange::new(0x1000, 0x10)).unwrap();
    assert_eq!(remaining(&mut a), 3);
    a.try_push(PhysRange::new(0x3000, 0x20)).unwrap();
    assert_eq!(a.pop(), Some(PhysRange::new(0x3000, 0x20)));
    assert_eq!(a.total_len(), 0x10);
    assert_eq!(a.pop(), Some(PhysRange::new(0x1000, 0x10)));
    assert_eq!(a.pop(), None);
    assert_eq!(a.total_len(), 0);
}

#[test]
fn lists_print_half_open_ranges() {
    let mut a = PhysArray::<4>::new();
    a.try_push(PhysRange::new(0x1000, 0x10)).unwrap();
    a.try_push(PhysRange::new(0x3000, 0x200)).unwrap();
    assert_eq!(
        a.to_string(),
        "2 segments, 528 B: 0x1000..0x1010, 0x3000..0x3200"
    );
}

#[test]
fn error_text_kinds_and_statuses() {
    assert_eq!(Hex(0x1f).to_string(), "0x1f");
    assert_eq!(format!("{:?}", Hex(0x1f)), "0x1f");
    assert_eq!(
        MemoryError::at(DmaAddr::new(0x2000), 1).to_string(),
        "1 byte at 0x2000 is not backed by memory"
    );
    assert_eq!(
        MemoryError::at(DmaAddr::new(0x2000), 16).to_string(),
        "16 bytes at 0x2000 are not backed by memory"
    );
    let t = TotalLenOverflow {
        total: u64::MAX,
        len: 1,
    };
    assert_eq!(t.kind(), "length_overflow");
    let cases = [
        (
            ConstraintsError::ZeroMaxSegmentSize,
            "max_segment_size is zero",
        ),
        (ConstraintsError::ZeroMaxSegments, "max_segments is zero"),
        (
            ConstraintsError::BoundaryMaskNotContiguous { mask: 0x1001 },
            "segment boundary mask 0x1001 is not 2^k - 1",
        ),
        (
            ConstraintsError::AlignmentNotPowerOfTwo { alignment: 3 },
            "alignment 0x3 is not a power of two",
        ),
        (
            ConstraintsError::MaxSegmentBelowAlignment {
                max_segment_size: 0x800,
                alignment: 0x1000,
            },
            "max_segment_size 0x800 is below the alignment 0x1000",
        ),
        (
            ConstraintsError::BoundaryBelowAlignment {
                mask: 0x7ff,
                alignment: 0x1000,
            },
            "segment boundary 0x800 is below the alignment 0x1000",
        ),
    ];
    for (e, text) in cases {
        assert_eq!(e.to_string(), text);
    }
    // The flow error keeps the wrapped error's NVMe status.
    let d = DecodeError::PrpOffsetInvalid {
        entry: DmaAddr::new(0x30200),
        at: None,
    };
    let e = Error::from(d);
    assert_eq!(e.nvme_status(), Some(NvmeStatus::PRP_OFFSET_INVALID));
    assert_eq!(Error::from(t).nvme_status(), None);
}

#[test]
fn clones_raw_ranges_and_page_alignment() {
    let a = PhysAddr::new(0x1234);
    #[allow(clippy::clone_on_copy)]
    let b = a.clone();
    assert_eq!(b, PhysAddr::new(0x1234));
    let r = PhysRange::new(0x1000, 0x200);
    let raw = RawRange::from(r);
    assert_eq!(raw, RawRange::from(PhysRange::new(0x1000, 0x200)));
    assert_ne!(raw, RawRange::from(PhysRange::new(0x1000, 0x201)));
    assert_ne!(raw, RawRange::from(PhysRange::new(0x1001, 0x200)));
    assert!(PhysRange::new(0x2000, 0x3000).is_page_aligned(PageSize::SIZE_4K));
    assert!(!PhysRange::new(0x2000, 0x3001).is_page_aligned(PageSize::SIZE_4K));
    assert!(!PhysRange::new(0x2800, 0x1000).is_page_aligned(PageSize::SIZE_4K));
}

#[test]
fn positions_capacity_and_mask_errors_print() {
    assert_eq!(Position::index(3).to_string(), "index 3");
    assert_eq!(Position::Address(0x1000).to_string(), "0x1000");
    assert_eq!(Position::Address(0x1000).raw(), 0x1000);
    assert_eq!(Position::index(7).raw(), 7);
    let mut a = PhysArray::<1>::new();
    a.try_push(PhysRange::new(0, 1)).unwrap();
    let e = a.try_push(PhysRange::new(0x10, 1)).unwrap_err();
    assert_eq!(e.to_string(), "container is full");
    assert_eq!(
        DmaMask::bits(99).unwrap_err().kind(),
        "invalid_dma_mask_width"
    );
    assert_eq!(
        DmaMask::from_mask(0x1001).unwrap_err().kind(),
        "invalid_dma_mask"
    );
}

#[test]
fn sparse_memory_lists_its_regions_in_order() {
    let mut m = SparseMemory::<physvec::Phys>::default();
    m.add_zeroed(PhysAddr::new(0x3000), 8);
    m.add_zeroed(PhysAddr::new(0x1000), 16);
    let regions: Vec<_> = m.regions().map(|(a, b)| (a.as_u64(), b.len())).collect();
    assert_eq!(regions, [(0x1000, 16), (0x3000, 8)]);
}

#[test]
fn pushing_through_a_reference_and_list_windows() {
    fn push<K: RangeSink<physvec::Phys>>(mut k: K, r: PhysRange) {
        k.push_range(r).unwrap();
    }
    let mut a = PhysArray::<4>::new();
    push(&mut a, PhysRange::new(0x1000, 0x100));
    push(&mut a, PhysRange::new(0x3000, 0x100));
    assert_eq!(
        a.as_slice(),
        [PhysRange::new(0x1000, 0x100), PhysRange::new(0x3000, 0x100)]
    );
    let v = a.window(0xf0, 0x20).unwrap();
    assert_eq!(
        v.iter().collect::<Vec<_>>(),
        [PhysRange::new(0x10f0, 0x10), PhysRange::new(0x3000, 0x10)]
    );
    assert!(!v.is_empty());
    assert_eq!(v.first(), Some(PhysRange::new(0x10f0, 0x10)));
    assert!(a.window(0x1f0, 0x20).is_err());
    let empty = a.window(0x10, 0).unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty.first(), None);
    let by_ref: Vec<PhysRange> = (&a).into_iter().copied().collect();
    assert_eq!(by_ref, a.as_slice());
    let v = RangeVec::<physvec::Phys, 4>::new();
    assert_eq!(v.capacity(), 4);
}

/// Every core error: its text, its kind (inherent and through `ErrorInfo`, also wrapped
/// in the flow `Error`), its position and that it carries no NVMe status.
#[test]
fn every_core_error_says_what_and_where() {
    fn check<E: ErrorInfo + std::fmt::Display + Into<Error> + Copy>(
        e: E,
        text: &str,
        kind: &str,
        position: Option<Position>,
    ) {
        assert_eq!(e.to_string(), text);
        assert_eq!(ErrorInfo::kind(&e), kind, "{text}");
        assert_eq!(e.position(), position, "{text}");
        assert_eq!(e.nvme_status(), None, "{text}");
        let wrapped: Error = e.into();
        assert_eq!(wrapped.to_string(), text);
        assert_eq!(wrapped.kind(), kind);
        assert_eq!(wrapped.position(), position);
    }
    let addr = [
        (
            AddrError::Overflow {
                addr: 0xff,
                delta: 2,
            },
            "address overflow: 0xff + 0x2 exceeds 2^64 - 1",
            "address_overflow",
        ),
        (
            AddrError::Underflow { addr: 1, delta: 2 },
            "address underflow: 0x1 - 0x2 is below zero",
            "address_underflow",
        ),
        (
            AddrError::PfnOverflow {
                pfn: 0x10,
                page_size: 0x1000,
            },
            "page frame 0x10 of 0x1000-byte pages lies beyond 2^64",
            "address_overflow",
        ),
        (
            AddrError::NotPowerOfTwo { value: 6 },
            "0x6 is not a power of two",
            "not_power_of_two",
        ),
    ];
    for (e, text, kind) in addr {
        assert_eq!(e.kind(), kind);
        check(e, text, kind, None);
    }
    let range = [
        (
            RangeError::Empty { addr: 0x10 },
            "empty range at 0x10",
            "empty_segment",
        ),
        (
            RangeError::Overflow {
                addr: 0x10,
                len: 0x20,
            },
            "range 0x10+0x20 ends beyond the 64-bit address space",
            "address_overflow",
        ),
        (
            RangeError::OffsetOutOfRange { offset: 8, len: 4 },
            "offset 0x8 is not inside a range of 0x4 bytes",
            "offset_out_of_range",
        ),
    ];
    for (e, text, kind) in range {
        assert_eq!(e.kind(), kind);
        check(e, text, kind, None);
    }
    let view = [
        (
            ViewError::OutOfBounds {
                offset: 1,
                len: 2,
                total: 3,
            },
            "window 0x1+0x2 is outside the 0x3 bytes of the list",
            "out_of_bounds",
            None,
        ),
        (
            ViewError::TotalOverflow { index: 4 },
            "total length overflows u64 at segment 4",
            "length_overflow",
            Some(Position::Index(4)),
        ),
    ];
    for (e, text, kind, pos) in view {
        assert_eq!(e.kind(), kind);
        check(e, text, kind, pos);
    }
    let constraints = [
        (
            ConstraintsError::ZeroMaxSegmentSize,
            "zero_max_segment_size",
        ),
        (ConstraintsError::ZeroMaxSegments, "zero_max_segments"),
        (
            ConstraintsError::BoundaryMaskNotContiguous { mask: 5 },
            "invalid_boundary_mask",
        ),
        (
            ConstraintsError::AlignmentNotPowerOfTwo { alignment: 3 },
            "not_power_of_two",
        ),
        (
            ConstraintsError::MaxSegmentBelowAlignment {
                max_segment_size: 1,
                alignment: 2,
            },
            "max_segment_below_alignment",
        ),
        (
            ConstraintsError::BoundaryBelowAlignment {
                mask: 1,
                alignment: 4,
            },
            "boundary_below_alignment",
        ),
    ];
    for (e, kind) in constraints {
        assert_eq!(e.kind(), kind);
        check(e, &e.to_string(), kind, None);
    }
    let build = [
        (
            BuildError::Unaligned {
                index: 1,
                addr: 0x1001,
                alignment: 0x200,
            },
            "input 1: start 0x1001 is not aligned to 0x200",
            "unaligned",
        ),
        (
            BuildError::AboveDmaMask {
                index: 2,
                last: 0x1_0000_0000,
                mask: 0xffff_ffff,
            },
            "input 2: byte 0x100000000 is above the DMA mask 0xffffffff",
            "above_dma_mask",
        ),
        (
            BuildError::TooManySegments {
                index: 3,
                max_segments: 4,
            },
            "input 3: would exceed the limit of 4 segments",
            "too_many_segments",
        ),
        (
            BuildError::CapacityExceeded {
                index: 4,
                needed: 2,
                available: 1,
            },
            "input 4: needs 2 more segments, container has room for 1",
            "capacity_exceeded",
        ),
        (
            BuildError::TotalOverflow { index: 5 },
            "input 5: total length exceeds u64::MAX bytes",
            "length_overflow",
        ),
        (
            BuildError::InvalidRange {
                index: 6,
                error: RangeError::Empty { addr: 0x10 },
            },
            "input 6: empty range at 0x10",
            "empty_segment",
        ),
    ];
    for (e, text, kind) in build {
        assert_eq!(e.kind(), kind);
        check(e, text, kind, Some(Position::Index(e.index() as u64)));
    }
    let t = TotalLenOverflow {
        total: 0x10,
        len: 0x20,
    };
    check(
        t,
        "total length 0x10 + 0x20 exceeds u64::MAX bytes",
        "length_overflow",
        None,
    );
    let masks = [
        (
            DmaMaskError::InvalidWidth { bits: 65 },
            "a DMA mask of 65 bits: the width must be 1 to 64",
            "invalid_dma_mask_width",
        ),
        (
            DmaMaskError::NotLowBits { mask: 6 },
            "0x6 is not a DMA mask (2^n - 1 for n = 1..64)",
            "invalid_dma_mask",
        ),
    ];
    for (e, text, kind) in masks {
        assert_eq!(e.kind(), kind);
        check(e, text, kind, None);
    }
    let m = MemoryError::at(DmaAddr::new(0x80), 8);
    assert_eq!(ErrorInfo::kind(&m), "memory_unreadable");
    let c = PhysArray::<0>::new()
        .try_push(PhysRange::new(0, 1))
        .unwrap_err();
    assert_eq!(ErrorInfo::kind(&c), "capacity_exceeded");
}

#[test]
fn addresses_page_sizes_and_masks_print_in_hex() {
    assert_eq!(PhysAddr::new(0x1000).to_string(), "0x1000");
    assert_eq!(format!("{:x}", DmaAddr::new(0xabc)), "abc");
    assert_eq!(format!("{:#010x}", DmaAddr::new(0xabc)), "0x00000abc");
    assert_eq!(format!("{:X}", DmaAddr::new(0xabc)), "ABC");
    assert_eq!(PageSize::SIZE_4K.to_string(), "4 KiB");
    assert_eq!(PageSize::SIZE_2M.to_string(), "2 MiB");
    assert_eq!(format!("{:?}", PageSize::SIZE_4K), "PageSize(0x1000)");
    assert_eq!(PageSize::SIZE_64K.get(), 0x1_0000);
    assert_eq!(PageSize::SIZE_2M.get(), 0x20_0000);
    assert_eq!(PageSize::SIZE_1G.get(), 0x4000_0000);
    assert_eq!(
        format!("{:?}", DmaMask::BITS_32),
        "DmaMask(32 bits, 0xffffffff)"
    );
    assert_eq!(DmaMask::BITS_32.to_string(), "32-bit (0xffffffff)");
}

#[test]
fn counted_words_agree_in_number() {
    let one = PrpError::TooFewListPages {
        needed: 1,
        supplied: 1,
    };
    assert_eq!(
        one.to_string(),
        "the transfer needs 1 PRP list page, only 1 was supplied"
    );
    let many = PrpError::TooFewListPages {
        needed: 3,
        supplied: 2,
    };
    assert_eq!(
        many.to_string(),
        "the transfer needs 3 PRP list pages, only 2 were supplied"
    );
}

#[test]
fn address_arithmetic_on_pages() {
    let p4k = PageSize::SIZE_4K;
    let a = DmaAddr::new(0x12345);
    assert_eq!(a.align_down(p4k), DmaAddr::new(0x12000));
    assert_eq!(a.align_up(p4k), Ok(DmaAddr::new(0x13000)));
    assert_eq!(
        DmaAddr::new(0x13000).align_up(p4k),
        Ok(DmaAddr::new(0x13000))
    );
    assert_eq!(
        DmaAddr::new(u64::MAX - 0xffe).align_up(p4k),
        Err(AddrError::Overflow {
            addr: u64::MAX - 0xffe,
            delta: 0x1000
        })
    );
    assert_eq!(
        DmaAddr::new(u64::MAX - 0xfff).align_up(p4k),
        Ok(DmaAddr::new(u64::MAX - 0xfff))
    );
    assert!(a.align_down(p4k).is_aligned(p4k));
    assert!(!a.is_aligned(p4k));
    assert!(DmaAddr::new(0x10_0000).is_aligned(PageSize::SIZE_64K));
    assert!(!DmaAddr::new(0x1_8000).is_aligned(PageSize::SIZE_64K));
    assert_eq!(a.page_offset(p4k), 0x345);
    assert_eq!(a.page_number(p4k), 0x12);
    assert_eq!(a.page_number(PageSize::SIZE_64K), 1);
    assert_eq!(a.split_page(p4k), (DmaAddr::new(0x12000), 0x345));
    assert_eq!(a.offset_from(DmaAddr::new(0x12000)), Some(0x345));
    assert_eq!(a.offset_from(a), Some(0));
    assert_eq!(DmaAddr::new(0x12000).offset_from(a), None);
    assert_eq!(p4k.shift(), 12);
    assert_eq!(PageSize::SIZE_2M.shift(), 21);
    // Page frames: the highest frame that fits and the first that does not.
    assert_eq!(PhysAddr::from_pfn(0x12, p4k), Ok(PhysAddr::new(0x12000)));
    assert_eq!(
        PhysAddr::from_pfn((1 << 52) - 1, p4k),
        Ok(PhysAddr::new(u64::MAX - 0xfff))
    );
    assert_eq!(
        PhysAddr::from_pfn(1 << 52, p4k),
        Err(AddrError::PfnOverflow {
            pfn: 1 << 52,
            page_size: 0x1000
        })
    );
    let one = PageSize::new(1).unwrap();
    assert_eq!(
        PhysAddr::from_pfn(u64::MAX, one),
        Ok(PhysAddr::new(u64::MAX))
    );
}

#[test]
fn ranges_contain_ranges_and_span_pages() {
    let r = PhysRange::new(0x1000, 0x2000);
    assert!(r.contains_range(r));
    assert!(r.contains_range(PhysRange::new(0x1800, 0x800)));
    assert!(r.contains_range(PhysRange::new(0x2fff, 1)));
    assert!(!r.contains_range(PhysRange::new(0xfff, 2)));
    assert!(!r.contains_range(PhysRange::new(0x2fff, 2)));
    assert!(!r.contains_range(PhysRange::new(0x4000, 0x10)));
    let p4k = PageSize::SIZE_4K;
    assert_eq!(PhysRange::new(0xfff, 2).pages_spanned(p4k), 2);
    assert_eq!(PhysRange::new(0x1000, 0x1000).pages_spanned(p4k), 1);
    assert_eq!(PhysRange::new(0x1001, 0x1000).pages_spanned(p4k), 2);
    assert_eq!(PhysRange::new(0x1000, 0x3001).pages_spanned(p4k), 4);
    assert_eq!(
        PhysRange::new(u64::MAX - 0xfff, 0x1000).pages_spanned(p4k),
        1
    );
    let buf = [0u8; 100];
    let v = physvec::VirtRange::from_slice(&buf[10..]).unwrap();
    assert_eq!((v.addr().as_u64(), v.len()), (buf.as_ptr() as u64 + 10, 90));
    assert_eq!(
        physvec::VirtRange::from_slice(&buf[..0]),
        Err(RangeError::Empty {
            addr: buf.as_ptr() as u64
        })
    );
    // Equal ranges hash equally; a different length or start hashes differently.
    assert_eq!(hash_of(&r), hash_of(&PhysRange::new(0x1000, 0x2000)));
    assert_ne!(hash_of(&r), hash_of(&PhysRange::new(0x1000, 0x2001)));
    assert_ne!(hash_of(&r), hash_of(&PhysRange::new(0x1001, 0x2000)));
}

#[test]
fn masks_cover_up_to_their_highest_address() {
    let m = DmaMask::bits(40).unwrap();
    assert_eq!(m.width(), 40);
    assert_eq!(m.highest(), DmaAddr::new((1 << 40) - 1));
    assert!(m.covers(PhysRange::new((1 << 40) - 0x1000, 0x1000)));
    assert!(!m.covers(PhysRange::new((1 << 40) - 0x1000, 0x1001)));
    assert!(!m.covers(PhysRange::new(1 << 40, 1)));
    assert_eq!(DmaMask::BITS_64.width(), 64);
    assert!(DmaMask::BITS_64.covers(PhysRange::new(u64::MAX, 1)));
    assert_eq!(DmaMask::bits(1).unwrap().width(), 1);
}

#[test]
fn fixed_lists_fill_truncate_and_view() {
    let mut a = PhysArray::<3>::new();
    assert_eq!(a.capacity(), 3);
    assert!(!a.is_full());
    for i in 0..3 {
        a.try_push(PhysRange::new(0x1000 * (2 * i + 1), 0x100))
            .unwrap();
    }
    assert!(a.is_full());
    assert_eq!(a.total_len(), 0x300);
    let v = a.view();
    assert_eq!(v.len(), 0x300);
    assert_eq!(v.segment_count(), 3);
    a.truncate(1);
    assert_eq!((a.len(), a.total_len()), (1, 0x100));
    assert!(!a.is_full());
    a.truncate(5);
    assert_eq!(a.len(), 1);
    let mut h = RangeVec::<physvec::Phys, 2>::with_capacity(100);
    assert!(h.capacity() >= 100);
    h.push(PhysRange::new(0, 1));
    h.push(PhysRange::new(0x10, 2));
    h.push(PhysRange::new(0x20, 4));
    assert_eq!((h.len(), h.total_len()), (3, 7));
    h.truncate(1);
    assert_eq!((h.len(), h.total_len()), (1, 1));
    assert_eq!(h.pop(), Some(PhysRange::new(0, 1)));
    assert_eq!(h.pop(), None);
}

#[test]
fn views_know_their_underlying_ranges_and_print_them() {
    let list = [
        PhysRange::new(0, 8),
        PhysRange::new(16, 8),
        PhysRange::new(32, 8),
    ];
    let v = RangeView::new(&list, 3, 10).unwrap();
    assert_eq!(v.underlying(), &list[..2]);
    assert_eq!(v.head_offset(), 3);
    assert_eq!(
        v.iter().collect::<Vec<_>>(),
        [PhysRange::new(3, 5), PhysRange::new(16, 5)]
    );
    let dbg = format!("{v:?}");
    assert!(dbg.contains("2 segs") && dbg.contains("0xa bytes"), "{dbg}");
}

#[test]
fn growable_sinks_and_the_coalescing_adaptor() {
    let mut v: Vec<PhysRange> = Vec::new();
    assert_eq!(RangeSink::remaining_capacity(&v), usize::MAX);
    v.push(PhysRange::new(0x100, 1));
    let mut c = Coalescing::new(&mut v);
    assert_eq!(c.start().len(), 1);
    c.push(PhysRange::new(0, 1)).unwrap();
    c.push(PhysRange::new(1, 1)).unwrap();
    c.push(PhysRange::new(0x10, 1)).unwrap();
    assert_eq!(c.pushed(), 2);
    assert_eq!(c.written(), [PhysRange::new(0, 2), PhysRange::new(0x10, 1)]);
    c.rollback();
    assert_eq!(v, [PhysRange::new(0x100, 1)]);
    // Through a reference: truncate and remaining capacity reach the sink.
    let mut a = PhysArray::<4>::new();
    a.try_push(PhysRange::new(0, 1)).unwrap();
    a.try_push(PhysRange::new(0x10, 1)).unwrap();
    {
        let mut r = &mut a;
        RangeSink::truncate_ranges(&mut r, 1);
        assert_eq!(RangeSink::remaining_capacity(&r), 3);
    }
    assert_eq!(a.as_slice(), [PhysRange::new(0, 1)]);
}

#[test]
fn ranges_lists_and_masks_print_and_convert() {
    let r = PhysRange::new(0x1000, 0x1000);
    assert_eq!(format!("{r:?}"), "phys:[0x1000+0x1000]");
    let top = PhysRange::new(u64::MAX - 0xfff, 0x1000);
    assert_eq!(
        top.to_string(),
        "0xfffffffffffff000..0x10000000000000000 (4 KiB)"
    );
    let mut a = PhysArray::<2>::new();
    a.try_push(r).unwrap();
    a.try_push(PhysRange::new(0x8000, 0x100)).unwrap();
    assert_eq!(
        format!("{a:?}"),
        "[2 segs, 0x1100 bytes] [phys:[0x1000+0x1000], phys:[0x8000+0x100]]"
    );
    let m = DmaMask::BITS_32;
    assert_eq!(u64::from(m), 0xffff_ffff);
    assert!(m.reaches(DmaAddr::new(0xffff_ffff)));
    assert!(!m.reaches(DmaAddr::new(0x1_0000_0000)));
    let e = MemoryError::at(DmaAddr::new(0x80), 8);
    assert_eq!(e.position(), Some(Position::Address(0x80)));
}

#[test]
fn addresses_order_and_ranges_overlap_and_slice() {
    assert!(PhysAddr::new(1) < PhysAddr::new(2));
    assert_eq!(
        PhysAddr::new(3).partial_cmp(&PhysAddr::new(2)),
        Some(std::cmp::Ordering::Greater)
    );
    assert_eq!(u64::from(PhysAddr::new(0x1234)), 0x1234);
    let r = PhysRange::new(0x1000, 0x100);
    assert!(r.overlaps(PhysRange::new(0x10ff, 0x10)));
    assert!(r.overlaps(PhysRange::new(0xff0, 0x11)));
    assert!(!r.overlaps(PhysRange::new(0x1100, 0x10)));
    assert!(!r.overlaps(PhysRange::new(0xff0, 0x10)));
    assert_eq!(r.slice(0x10, 0x20), Ok(PhysRange::new(0x1010, 0x20)));
    assert_eq!(r.slice(0xf0, 0x10), Ok(PhysRange::new(0x10f0, 0x10)));
    assert_eq!(
        r.slice(0xf0, 0x20),
        Err(RangeError::OffsetOutOfRange {
            offset: 0xf0,
            len: 0x100
        })
    );
    assert_eq!(r.slice(0x10, 0), Err(RangeError::Empty { addr: 0x1010 }));
    // A range at address 0 prints its end as the start plus the length.
    assert_eq!(PhysRange::new(0, 0x10).to_string(), "0x0..0x10 (16 B)");
}

#[test]
fn masks_from_values_raw_ranges_print_and_view_ends() {
    assert_eq!(DmaMask::try_from(0xffff_ffffu64), Ok(DmaMask::BITS_32));
    assert_eq!(
        DmaMask::try_from(6u64),
        Err(DmaMaskError::NotLowBits { mask: 6 })
    );
    let raw = RawRange::from(PhysRange::new(0x1000, 0x200));
    assert_eq!(format!("{raw:?}"), "raw phys:[0x1000+0x200]");
    let list = [PhysRange::new(0x100, 8), PhysRange::new(0x200, 8)];
    let v = RangeView::new(&list, 2, 10).unwrap();
    assert_eq!(v.first(), Some(PhysRange::new(0x102, 6)));
    assert_eq!(v.last(), Some(PhysRange::new(0x200, 4)));
    assert_eq!(RangeView::<physvec::Phys>::empty().last(), None);
}

#[test]
fn ranges_order_lists_compare_and_slices_become_views() {
    let a = PhysRange::new(0x1000, 0x10);
    let b = PhysRange::new(0x1000, 0x20);
    assert_eq!(a.partial_cmp(&b), Some(std::cmp::Ordering::Less));
    assert!(PhysRange::new(0x2000, 1) > b);
    let mut x = PhysArray::<2>::new();
    let mut y = PhysArray::<2>::new();
    x.try_push(a).unwrap();
    y.try_push(a).unwrap();
    assert_eq!(x, y);
    y.try_push(b).unwrap();
    assert_ne!(x, y);
    // Through a reference, replacing the last range reaches the sink.
    {
        let mut r = &mut x;
        RangeSink::replace_last(&mut r, PhysRange::new(0x1000, 0x30)).unwrap();
    }
    assert_eq!(x.as_slice(), [PhysRange::new(0x1000, 0x30)]);
    let list = [a, PhysRange::new(0x3000, 0x10)];
    let v = RangeView::try_from(&list[..]).unwrap();
    assert_eq!((v.len(), v.segment_count()), (0x20, 2));
    let huge = [PhysRange::new(0, u64::MAX), PhysRange::new(0, 2)];
    assert_eq!(
        RangeView::try_from(&huge[..]),
        Err(ViewError::TotalOverflow { index: 1 })
    );
}
