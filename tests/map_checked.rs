//! The DMA-API debugging wrapper catches each misuse (one test each).

use physvec::map::{self, Attrs, Checked, DataDirection, DmaMapper, MapError, OnLeak, SoftIommu};
use physvec::{PhysAddr, PhysRange};

const TO: DataDirection = DataDirection::ToDevice;
const NO: Attrs = Attrs::empty();

fn checked() -> Checked<SoftIommu> {
    Checked::new(SoftIommu::new_4k())
}

#[test]
fn unmap_of_unknown_address() {
    let c = checked();
    let r = c.unmap_phys(physvec::DmaRange::new(0xdead_0000, 0x1000), TO, NO);
    assert_eq!(r, Err(MapError::UnknownUnmap { dma: 0xdead_0000 }));
    assert_eq!(
        c.violations(),
        [MapError::UnknownUnmap { dma: 0xdead_0000 }]
    );
}

#[test]
fn size_mismatch() {
    let c = checked();
    let d = c.map_phys(PhysRange::new(0x1000, 0x800), TO, NO).unwrap();
    let wrong = physvec::DmaRange::new(d.addr().as_u64(), 0x400);
    assert_eq!(
        c.unmap_phys(wrong, TO, NO),
        Err(MapError::SizeMismatch {
            dma: d.addr().as_u64(),
            mapped: 0x800,
            unmapped: 0x400
        })
    );
    // The refused unmap did not reach the IOMMU: the mapping is intact.
    assert_eq!(c.inner().translate(d.addr()), Some(PhysAddr::new(0x1000)));
    c.unmap_phys(d, TO, NO).unwrap();
}

#[test]
fn direction_mismatch() {
    let c = checked();
    let d = c.map_phys(PhysRange::new(0x1000, 0x800), TO, NO).unwrap();
    assert!(matches!(
        c.unmap_phys(d, DataDirection::FromDevice, NO),
        Err(MapError::DirectionMismatch {
            mapped: DataDirection::ToDevice,
            unmapped: DataDirection::FromDevice,
            ..
        })
    ));
    c.unmap_phys(d, TO, NO).unwrap();
}

#[test]
fn double_unmap() {
    let c = checked();
    let d = c.map_phys(PhysRange::new(0x1000, 0x800), TO, NO).unwrap();
    c.unmap_phys(d, TO, NO).unwrap();
    assert_eq!(
        c.unmap_phys(d, TO, NO),
        Err(MapError::DoubleUnmap {
            dma: d.addr().as_u64()
        })
    );
}

#[test]
fn sync_outside_the_linked_range() {
    let c = checked();
    let mut s = c.reserve(PhysAddr::new(0), 0x3000).unwrap().unwrap();
    c.link(&mut s, PhysRange::new(0x1000, 0x1000), 0, TO, NO)
        .unwrap();
    let e = c.sync(s, 0, 0x3000).unwrap_err();
    assert_eq!(
        e.error,
        MapError::SyncOutOfRange {
            offset: 0,
            len: 0x3000
        }
    );
    let s = c.sync(e.space, 0, 0x1000).unwrap();
    c.destroy(s, TO, NO).unwrap();
    c.check_leaks().unwrap();
}

#[test]
fn overlapping_links() {
    let c = checked();
    let mut s = c.reserve(PhysAddr::new(0), 0x3000).unwrap().unwrap();
    c.link(&mut s, PhysRange::new(0x1000, 0x2000), 0, TO, NO)
        .unwrap();
    assert_eq!(
        c.link(&mut s, PhysRange::new(0x8000, 0x1000), 0x1000, TO, NO),
        Err(MapError::OverlappingLink {
            offset: 0x1000,
            len: 0x1000
        })
    );
    c.destroy(s, TO, NO).unwrap();
    assert!(c.inner().is_idle());
}

#[test]
fn leaks_are_reported_by_check_leaks() {
    let c = checked().with_on_leak(OnLeak::Ignore);
    let m = map::map(&c, &[PhysRange::new(0x1000, 0x1000)], TO).unwrap();
    let s = c.reserve(PhysAddr::new(0), 0x1000).unwrap().unwrap();
    std::mem::forget(m);
    assert_eq!(
        c.check_leaks(),
        Err(MapError::Leaked {
            mappings: 0,
            spaces: 2
        })
    );
    c.free(s).unwrap();
    let _d = c.map_phys(PhysRange::new(0x5000, 0x10), TO, NO).unwrap();
    assert_eq!(
        c.check_leaks(),
        Err(MapError::Leaked {
            mappings: 1,
            spaces: 1
        })
    );
}

#[test]
#[should_panic(expected = "leaked")]
fn leaks_panic_on_drop() {
    let c = checked();
    let _d = c.map_phys(PhysRange::new(0x5000, 0x10), TO, NO).unwrap();
}

#[test]
fn clean_use_through_map_reports_nothing() {
    let c = checked();
    for list in [
        vec![
            PhysRange::new(0x1800, 0x800),
            PhysRange::new(0x9000, 0x1000),
        ],
        vec![
            PhysRange::new(0x1800, 0x100),
            PhysRange::new(0x9000, 0x1000),
        ],
    ] {
        map::map(&c, &list, DataDirection::Bidirectional)
            .unwrap()
            .unmap()
            .unwrap();
    }
    assert!(c.violations().is_empty());
    c.check_leaks().unwrap();
}

#[test]
fn links_that_touch_are_not_overlapping_in_any_order() {
    let c = checked();
    let mut s = c.reserve(PhysAddr::new(0), 0x3000).unwrap().unwrap();
    // Linked from the top down: each link ends exactly where the one above starts.
    c.link(&mut s, PhysRange::new(0x12000, 0x1000), 0x2000, TO, NO)
        .unwrap();
    c.link(&mut s, PhysRange::new(0x11000, 0x1000), 0x1000, TO, NO)
        .unwrap();
    c.link(&mut s, PhysRange::new(0x10000, 0x1000), 0, TO, NO)
        .unwrap();
    let s = c.sync(s, 0, 0x3000).unwrap();
    c.destroy(s, TO, NO).unwrap();
    assert!(c.violations().is_empty());
    c.check_leaks().unwrap();
}

#[test]
fn sync_of_part_of_a_link_and_across_a_hole() {
    let c = checked();
    let mut s = c.reserve(PhysAddr::new(0), 0x4000).unwrap().unwrap();
    c.link(&mut s, PhysRange::new(0x10000, 0x2000), 0, TO, NO)
        .unwrap();
    c.link(&mut s, PhysRange::new(0x20000, 0x1000), 0x3000, TO, NO)
        .unwrap();
    // [0x2000, 0x3000) was never linked: a sync across it is a violation.
    let e = c.sync(s, 0x1000, 0x3000).unwrap_err();
    assert_eq!(
        e.error,
        MapError::SyncOutOfRange {
            offset: 0x1000,
            len: 0x3000
        }
    );
    // The second half of the first link alone is fine.
    let s = c.sync(e.space, 0x1000, 0x1000).unwrap();
    c.destroy(s, TO, NO).unwrap();
    assert_eq!(
        c.violations(),
        [MapError::SyncOutOfRange {
            offset: 0x1000,
            len: 0x3000
        }]
    );
    c.check_leaks().unwrap();
}

#[test]
fn unlink_of_parts_of_links_keeps_the_rest_tracked() {
    let c = checked();
    let mut s = c.reserve(PhysAddr::new(0), 0x4000).unwrap().unwrap();
    c.link(&mut s, PhysRange::new(0x10000, 0x2000), 0, TO, NO)
        .unwrap();
    c.link(&mut s, PhysRange::new(0x20000, 0x2000), 0x2000, TO, NO)
        .unwrap();
    // The tail of the first link and the head of the second.
    c.unlink(&mut s, 0x1000, 0x2000, TO, NO).unwrap();
    // What was unlinked may be linked again ...
    c.link(&mut s, PhysRange::new(0x30000, 0x1000), 0x1000, TO, NO)
        .unwrap();
    // ... what is still unlinked may not be unlinked again ...
    assert_eq!(
        c.unlink(&mut s, 0x2000, 0x1000, TO, NO),
        Err(MapError::NotLinked {
            offset: 0x2000,
            len: 0x1000
        })
    );
    // ... and the untouched head and tail are still linked: freeing reports exactly them
    // plus the new link (the IOMMU tears them down and says so too).
    assert_eq!(c.free(s), Err(MapError::StillLinked { bytes: 0x3000 }));
    assert_eq!(
        c.violations(),
        [
            MapError::NotLinked {
                offset: 0x2000,
                len: 0x1000
            },
            MapError::StillLinked { bytes: 0x3000 }
        ]
    );
}

#[test]
fn an_unlinked_head_or_tail_can_be_linked_again_by_a_larger_link() {
    let c = checked();
    let mut s = c.reserve(PhysAddr::new(0), 0x4000).unwrap().unwrap();
    c.link(&mut s, PhysRange::new(0x11000, 0x2000), 0x1000, TO, NO)
        .unwrap();
    // Unlink the head of the link, then link [0, 0x2000): it only touches what is left.
    c.unlink(&mut s, 0x1000, 0x1000, TO, NO).unwrap();
    c.link(&mut s, PhysRange::new(0x20000, 0x2000), 0, TO, NO)
        .unwrap();
    // Unlink the tail of the first link, then link [0x2000, 0x4000).
    c.unlink(&mut s, 0x2000, 0x1000, TO, NO).unwrap();
    c.link(&mut s, PhysRange::new(0x30000, 0x2000), 0x2000, TO, NO)
        .unwrap();
    let s = c.sync(s, 0, 0x4000).unwrap();
    c.destroy(s, TO, NO).unwrap();
    assert!(c.violations().is_empty());
    c.check_leaks().unwrap();
}

#[test]
fn the_wrapper_reports_the_inner_mappers_limits_and_its_own_state() {
    let d = map::DirectMapper::new(0, physvec::DmaMask::BITS_32);
    let c = Checked::new(d).with_on_leak(OnLeak::Ignore);
    // A driver sizes its buffers by the mask: the wrapper must not change it.
    assert_eq!(c.dma_mask(), physvec::DmaMask::BITS_32);
    let _m = c.map_phys(PhysRange::new(0x5000, 0x10), TO, NO).unwrap();
    let _ = c.unmap_phys(physvec::DmaRange::new(0xdead_0000, 0x10), TO, NO);
    let text = format!("{c:?}");
    assert!(text.starts_with("Checked"), "{text}");
    assert!(text.contains("live_mappings: 1"), "{text}");
    assert!(text.contains("violations: 1"), "{text}");
}

#[test]
fn an_empty_sync_is_a_recorded_violation() {
    let c = checked();
    let mut s = c.reserve(PhysAddr::new(0), 0x1000).unwrap().unwrap();
    c.link(&mut s, PhysRange::new(0x1000, 0x1000), 0, TO, NO)
        .unwrap();
    let empty = MapError::SyncOutOfRange {
        offset: 0x800,
        len: 0,
    };
    let e = c.sync(s, 0x800, 0).unwrap_err();
    assert_eq!(e.error, empty);
    assert_eq!(c.violations(), [empty]);
    let s = c.sync(e.space, 0, 0x1000).unwrap();
    c.destroy(s, TO, NO).unwrap();
}

#[test]
fn unlink_and_destroy_in_the_wrong_direction_name_the_address() {
    let c = checked();
    let mut s = c.reserve(PhysAddr::new(0), 0x3000).unwrap().unwrap();
    let base = s.addr().as_u64();
    c.link(&mut s, PhysRange::new(0x10000, 0x1000), 0, TO, NO)
        .unwrap();
    c.link(&mut s, PhysRange::new(0x21000, 0x2000), 0x1000, TO, NO)
        .unwrap();
    let from = DataDirection::FromDevice;
    let wrong = MapError::DirectionMismatch {
        dma: base + 0x2000,
        mapped: TO,
        unmapped: from,
    };
    assert_eq!(c.unlink(&mut s, 0x2000, 0x1000, from, NO), Err(wrong));
    // The refused unlink left the IOMMU alone.
    assert_eq!(
        c.inner().translate(physvec::DmaAddr::new(base + 0x2000)),
        Some(PhysAddr::new(0x22000))
    );
    c.unlink(&mut s, 0, 0x1000, TO, NO).unwrap();
    // Destroy reports the first link of another direction, by its address.
    let s = c.sync(s, 0x1000, 0x2000).unwrap();
    c.destroy(s, from, NO).unwrap();
    assert_eq!(
        c.violations(),
        [
            wrong,
            MapError::DirectionMismatch {
                dma: base + 0x1000,
                mapped: TO,
                unmapped: from,
            }
        ]
    );
    c.check_leaks().unwrap();
}

#[test]
fn a_double_unmap_is_recognised_after_other_unmaps() {
    let c = checked();
    let a = c.map_phys(PhysRange::new(0x1000, 0x800), TO, NO).unwrap();
    let b = c.map_phys(PhysRange::new(0x9000, 0x800), TO, NO).unwrap();
    c.unmap_phys(a, TO, NO).unwrap();
    c.unmap_phys(b, TO, NO).unwrap();
    assert_eq!(
        c.unmap_phys(a, TO, NO),
        Err(MapError::DoubleUnmap {
            dma: a.addr().as_u64()
        })
    );
}

#[test]
fn unlink_leaves_links_on_either_side_as_they_were() {
    let c = checked();
    let mut s = c.reserve(PhysAddr::new(0), 0x5000).unwrap().unwrap();
    // Links with holes between them: [0, 0x1000), [0x2000, 0x3000), [0x4000, 0x5000).
    for (phys, offset) in [(0x10000, 0), (0x12000, 0x2000), (0x14000, 0x4000)] {
        c.link(&mut s, PhysRange::new(phys, 0x1000), offset, TO, NO)
            .unwrap();
    }
    c.unlink(&mut s, 0x2000, 0x1000, TO, NO).unwrap();
    // The holes and the unlinked range are free; the neighbours did not grow into them.
    for (phys, offset) in [(0x21000, 0x1000), (0x22000, 0x2000), (0x23000, 0x3000)] {
        c.link(&mut s, PhysRange::new(phys, 0x1000), offset, TO, NO)
            .unwrap();
    }
    let s = c.sync(s, 0, 0x5000).unwrap();
    c.destroy(s, TO, NO).unwrap();
    assert!(c.violations().is_empty());
    c.check_leaks().unwrap();
}

#[test]
fn unlink_of_the_tail_of_a_link_keeps_its_head() {
    let c = checked();
    let mut s = c.reserve(PhysAddr::new(0), 0x4000).unwrap().unwrap();
    c.link(&mut s, PhysRange::new(0x11000, 0x2000), 0x1000, TO, NO)
        .unwrap();
    c.unlink(&mut s, 0x2000, 0x1000, TO, NO).unwrap();
    // The head [0x1000, 0x2000) is still linked, the tail is free again.
    c.link(&mut s, PhysRange::new(0x22000, 0x2000), 0x2000, TO, NO)
        .unwrap();
    assert_eq!(
        c.link(&mut s, PhysRange::new(0x31000, 0x1000), 0x1000, TO, NO),
        Err(MapError::OverlappingLink {
            offset: 0x1000,
            len: 0x1000
        })
    );
    assert_eq!(c.free(s), Err(MapError::StillLinked { bytes: 0x3000 }));
}
