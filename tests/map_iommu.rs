//! Software IOMMU against a model: every byte of every input range translates to the DMA
//! address the mapping reports; one IOTLB sync per coalesced mapping; after unmap no
//! translation remains and the IOVA allocator has all its space back.

use physvec::map::{self, DataDirection, DmaMapper, IommuConfig, SoftIommu};
use physvec::{DmaAddr, PageSize, PhysAddr, PhysRange, RangeView};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Byte offsets inside `r` to check: the first and last byte and every granule start.
/// Translation is linear inside a granule (offsets are preserved), so these cover every
/// byte.
fn probes(r: PhysRange, g: PageSize) -> Vec<u64> {
    let mut v = vec![0, r.len() - 1];
    let first_boundary = (g.get() - r.addr().page_offset(g)) % g.get();
    let mut k = first_boundary;
    while k < r.len() {
        v.push(k);
        if k > 0 {
            v.push(k - 1);
        }
        k += g.get();
    }
    v
}

/// A list of physical ranges; with `aligned`, it obeys the merge-boundary rule.
fn phys_list(g: u64) -> impl Strategy<Value = (Vec<PhysRange>, bool)> {
    let seg = (
        0u64..1 << 22,
        0u64..4,
        1u64..600,
        any::<u16>(),
        any::<u16>(),
        any::<bool>(),
    );
    (prop::collection::vec(seg, 1..6), any::<bool>()).prop_map(move |(segs, aligned)| {
        let n = segs.len();
        let list = segs
            .iter()
            .enumerate()
            .map(|(i, &(page, big, pages, head, tail, huge))| {
                // Sometimes 2 MiB-aligned (large leaves), else granule-aligned.
                let base = if huge && g == 4096 {
                    (page % 64) << 21
                } else {
                    page * g
                } + (big << 34);
                let (head, tail) = if aligned {
                    (
                        if i == 0 { head as u64 % g } else { 0 },
                        if i + 1 == n { tail as u64 % g } else { 0 },
                    )
                } else {
                    (head as u64 % g, tail as u64 % g)
                };
                let len = (pages * g).saturating_sub(head).saturating_sub(tail).max(1);
                PhysRange::new(base + head, len)
            })
            .collect();
        (list, aligned)
    })
}

fn granule() -> impl Strategy<Value = PageSize> {
    prop_oneof![
        Just(PageSize::SIZE_4K),
        Just(PageSize::new(16384).unwrap()),
        Just(PageSize::SIZE_64K)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("proptest-regressions/map_iommu.txt"))),
        ..ProptestConfig::default() })]

    #[test]
    fn every_byte_translates_and_unmap_leaves_nothing(
        (g, (phys, aligned)) in granule().prop_flat_map(|g| (Just(g), phys_list(g.get()))),
        dir in prop_oneof![Just(DataDirection::ToDevice), Just(DataDirection::FromDevice), Just(DataDirection::Bidirectional)],
    ) {
        let iommu = SoftIommu::new(IommuConfig::new(g)).unwrap();
        let coalesce = map::merge_boundary_ok(RangeView::full(&phys).unwrap(), g);
        prop_assert!(!aligned || coalesce, "an aligned list must obey the rule");
        let syncs_before = iommu.stats().iotlb_syncs;
        let m = map::map(&iommu, &phys, dir).unwrap();
        let syncs = iommu.stats().iotlb_syncs - syncs_before;
        prop_assert_eq!(m.is_coalesced(), coalesce);
        if coalesce {
            prop_assert_eq!(m.dma().len(), 1);
            prop_assert_eq!(syncs, 1);
            prop_assert_eq!(m.iova_syncs(), 1);
        } else {
            prop_assert_eq!(m.dma().len(), phys.len());
            prop_assert_eq!(m.iova_syncs(), 0);
        }
        let total: u64 = phys.iter().map(|r| r.len()).sum();
        prop_assert_eq!(m.total_len(), total);
        let mut checked: Vec<DmaAddr> = Vec::new();
        let mut off = 0;
        for r in &phys {
            for k in probes(*r, g) {
                let dma = m.dma_addr_at(off + k).unwrap();
                prop_assert!(iommu.dma_mask().reaches(dma));
                prop_assert_eq!(iommu.translate(dma), Some(PhysAddr::new(r.addr().as_u64() + k)));
                // The device view and the page-table view agree.
                prop_assert_eq!(iommu.walk(dma).map(|w| w.0), Some(PhysAddr::new(r.addr().as_u64() + k)));
                checked.push(dma);
            }
            off += r.len();
        }
        m.unmap().unwrap();
        for dma in checked {
            prop_assert_eq!(iommu.translate(dma), None);
        }
        prop_assert!(iommu.is_idle());
    }
}

#[test]
fn large_leaves_are_used_when_aligned() {
    let iommu = SoftIommu::new_4k();
    let phys = [PhysRange::new(0x4000_0000, 4 << 20)];
    let m = map::map(&iommu, &phys, DataDirection::ToDevice).unwrap();
    assert_eq!(iommu.stats().leaves, [0, 2, 0]);
    let d = m.dma()[0].addr();
    assert_eq!(iommu.walk(d).unwrap().2, PageSize::SIZE_2M);
    drop(m);
    assert!(iommu.is_idle());
}

#[test]
fn aperture_under_the_mask_is_respected_and_exhausts() {
    let cfg = IommuConfig::new(PageSize::SIZE_4K)
        .with_dma_mask(physvec::DmaMask::BITS_32)
        .with_aperture(0x10_0000, 0x10_ffff);
    let iommu = SoftIommu::new(cfg).unwrap();
    let ranges: Vec<PhysRange> = (0..16).map(|i| PhysRange::new(i << 30, 0x1000)).collect();
    let m = map::map(&iommu, &ranges, DataDirection::ToDevice).unwrap();
    assert!((0x10_0000..0x11_0000).contains(&m.dma()[0].addr().as_u64()));
    let err = map::map(&iommu, &ranges[..1], DataDirection::ToDevice).unwrap_err();
    assert_eq!(err.kind(), "iova_exhausted");
    drop(m);
    assert!(iommu.is_idle());
    assert!(SoftIommu::new(
        IommuConfig::new(PageSize::SIZE_4K)
            .with_dma_mask(physvec::DmaMask::new::<16>())
            .with_aperture(0x1000, 0x1_ffff)
    )
    .is_err());
}

/// 10,000 random map/unmap cycles with up to 8 live mappings: the allocator never grows
/// and ends pristine.
#[test]
fn ten_thousand_cycles_do_not_leak() {
    let cfg = IommuConfig::new(PageSize::SIZE_4K).with_aperture(0x1000, (1 << 24) - 1);
    let iommu = SoftIommu::new(cfg).unwrap();
    let full = iommu.stats().free_iova_bytes;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut live = Vec::new();
    for _ in 0..10_000 {
        if live.len() == 8 || (!live.is_empty() && next() % 3 == 0) {
            let i = (next() % live.len() as u64) as usize;
            let m: map::Mapping<'_, SoftIommu, physvec::DmaVec> = live.swap_remove(i);
            m.unmap().unwrap();
        } else {
            let n = 1 + next() % 4;
            let phys: Vec<PhysRange> = (0..n)
                .map(|_| {
                    let r = next();
                    let head = if next() % 2 == 0 { r % 4096 } else { 0 };
                    PhysRange::new(((r >> 20) % (1 << 20)) << 12 | head, 1 + (r >> 8) % 0x4000)
                })
                .collect();
            live.push(map::map(&iommu, &phys, DataDirection::Bidirectional).unwrap());
        }
        let s = iommu.stats();
        assert!(s.allocations <= 8 * 4);
    }
    drop(live);
    let s = iommu.stats();
    assert_eq!(s.free_iova_bytes, full);
    assert_eq!((s.mapped_bytes, s.tables, s.allocations), (0, 0, 0));
    assert!(iommu.is_idle());
}

/// A reservation of `size` bytes (no sub-granule offset) with `links` linked:
/// (physical address, length, offset in the reservation).
fn linked(iommu: &SoftIommu, size: u64, links: &[(u64, u64, u64)]) -> map::IovaSpace {
    let mut s = iommu.reserve(PhysAddr::new(0), size).unwrap().unwrap();
    for &(phys, len, offset) in links {
        let (to, no) = (DataDirection::ToDevice, map::Attrs::empty());
        iommu
            .link(&mut s, PhysRange::new(phys, len), offset, to, no)
            .unwrap();
    }
    s
}

/// Issue 15: after unlinking the highest link, the highest link still present bounds
/// where a short last link may go, not the start of the removed range. Here P stays at
/// `[0, 0x1000)`, so a short link R at `[0x1000, 0x1800)` ends the transfer legally.
#[test]
fn short_last_link_after_unlinking_the_highest_link() {
    use physvec::map::{Attrs, MapError};
    let (to, no) = (DataDirection::ToDevice, Attrs::empty());
    let iommu = SoftIommu::new_4k();
    let mut s = linked(
        &iommu,
        0x3000,
        &[(0x10_0000, 0x1000, 0), (0x20_0000, 0x1000, 0x2000)],
    );
    iommu.unlink(&mut s, 0x2000, 0x1000, to, no).unwrap();
    iommu
        .link(&mut s, PhysRange::new(0x30_0000, 0x800), 0x1000, to, no)
        .unwrap();
    // R is the last link now: nothing may follow it ...
    assert!(matches!(
        iommu.link(&mut s, PhysRange::new(0x40_0000, 0x1000), 0x2000, to, no),
        Err(MapError::MergeBoundary { .. })
    ));
    // ... and the device sees P then R.
    let base = s.addr().as_u64();
    assert_eq!(
        iommu.translate(DmaAddr::new(base + 0xfff)),
        Some(PhysAddr::new(0x10_0fff))
    );
    assert_eq!(
        iommu.translate(DmaAddr::new(base + 0x17ff)),
        Some(PhysAddr::new(0x30_07ff))
    );
    let s = iommu.sync(s, 0, 0x1800).unwrap();
    iommu.destroy(s, to, no).unwrap();
    assert!(iommu.is_idle());
}

/// The other side of the same rule: with a link still above, a short link below it is
/// refused (it would leave a hole inside the transfer).
#[test]
fn short_link_below_a_remaining_link_is_refused() {
    use physvec::map::{Attrs, MapError};
    let (to, no) = (DataDirection::ToDevice, Attrs::empty());
    let iommu = SoftIommu::new_4k();
    let mut s = linked(
        &iommu,
        0x4000,
        &[
            (0x10_0000, 0x1000, 0),
            (0x20_0000, 0x1000, 0x2000),
            (0x50_0000, 0x1000, 0x3000),
        ],
    );
    iommu.unlink(&mut s, 0x3000, 0x1000, to, no).unwrap();
    assert!(matches!(
        iommu.link(&mut s, PhysRange::new(0x30_0000, 0x800), 0x1000, to, no),
        Err(MapError::MergeBoundary { .. })
    ));
    iommu.destroy(s, to, no).unwrap();
    assert!(iommu.is_idle());
}

/// `sync` refuses an empty range and one reaching past the reservation, and hands the
/// space back unchanged so the caller can still unwind it.
#[test]
fn sync_out_of_the_reservation_is_refused() {
    use physvec::map::{Attrs, MapError};
    let (to, no) = (DataDirection::ToDevice, Attrs::empty());
    let iommu = SoftIommu::new_4k();
    let mut s = linked(&iommu, 0x2000, &[(0x10_0000, 0x2000, 0)]);
    for (offset, len) in [(0, 0), (0x1000, 0x1001), (0x2000, 1), (u64::MAX, 2)] {
        let e = iommu.sync(s, offset, len).unwrap_err();
        assert_eq!(e.error, MapError::SyncOutOfRange { offset, len });
        s = e.space;
    }
    // The returned error explains itself as the mapper's error does.
    let e = iommu.sync(s, 0x2000, 1).unwrap_err();
    {
        use physvec::error::ErrorInfo;
        assert_eq!(e.to_string(), e.error.to_string());
        assert_eq!(ErrorInfo::kind(&e), "sync_out_of_range");
        // A mapper's own sync may fail on a range it can name (fields are public).
        let named = physvec::map::SyncError {
            space: e.space,
            error: MapError::MixedP2p { index: 3 },
        };
        assert_eq!(
            ErrorInfo::position(&named),
            Some(physvec::error::Position::index(3))
        );
        s = named.space;
    }
    let s = iommu.sync(s, 0x1000, 0x1000).unwrap();
    iommu.destroy(s, to, no).unwrap();
    assert!(iommu.is_idle());
}

/// A reservation's Debug output names where it is and how much is linked (what a
/// driver author reads in a log).
#[test]
fn space_debug_shows_address_size_and_links() {
    use physvec::map::Attrs;
    let iommu = SoftIommu::new_4k();
    let mut s = iommu
        .reserve(PhysAddr::new(0x800), 0x1800)
        .unwrap()
        .unwrap();
    iommu
        .link(
            &mut s,
            PhysRange::new(0x10_0800, 0x800),
            0,
            DataDirection::ToDevice,
            Attrs::empty(),
        )
        .unwrap();
    // The accessors a mapper implementor and a driver read.
    assert_eq!((s.pad(), s.size(), s.link_count()), (0x800, 0x1800, 1));
    assert_eq!(
        (s.iova_base().as_u64() + 0x800, s.reserved_len()),
        (s.addr().as_u64(), 0x2000)
    );
    let d = format!("{s:?}");
    assert!(d.starts_with("IovaSpace"), "{d}");
    for part in [
        format!("{:?}", s.addr()),
        "size: 6144".into(),
        "linked: 2048".into(),
        "links: 1".into(),
    ] {
        assert!(d.contains(&part), "{d} lacks {part}");
    }
    iommu
        .destroy(s, DataDirection::ToDevice, Attrs::empty())
        .unwrap();
}

/// An unlink of nothing, or reaching past the reservation, is `OutOfReservation` (the
/// caller's range is wrong), not `NotLinked`; nothing changes.
#[test]
fn unlink_out_of_the_reservation_is_refused() {
    use physvec::map::{Attrs, MapError};
    let (to, no) = (DataDirection::ToDevice, Attrs::empty());
    let iommu = SoftIommu::new_4k();
    let mut s = linked(
        &iommu,
        0x2000,
        &[(0x10_0000, 0x1000, 0), (0x30_0000, 0x1000, 0x1000)],
    );
    for (offset, len) in [(0, 0), (0x1000, 0), (0x1000, 0x2000), (u64::MAX, 2)] {
        assert_eq!(
            iommu.unlink(&mut s, offset, len, to, no),
            Err(MapError::OutOfReservation {
                offset,
                len,
                size: 0x2000
            })
        );
    }
    assert_eq!((s.linked_bytes(), s.link_count()), (0x2000, 2));
    iommu.unlink(&mut s, 0, 0x2000, to, no).unwrap();
    assert_eq!(s.linked_bytes(), 0);
    iommu.free(s).unwrap();
    assert!(iommu.is_idle());
}

/// For mapper implementors: `unlink_with` asks `is_mapped` only after removing the
/// highest link while others remain, and a mapper that finds nothing mapped below makes
/// the whole space below free for a short last link (no hang, no refusal).
#[test]
fn unlink_with_scans_down_with_the_mappers_answer() {
    use physvec::map::{IovaSpace, MapperId};
    let mut s = IovaSpace::new(
        MapperId::fresh(),
        DmaAddr::new(0x40_0000),
        0,
        0x3000,
        PageSize::SIZE_4K,
    )
    .unwrap();
    s.link_with(PhysRange::new(0x10_0000, 0x1000), 0, |_, _| Ok(()))
        .unwrap();
    s.link_with(PhysRange::new(0x20_0000, 0x1000), 0x2000, |_, _| Ok(()))
        .unwrap();
    let mut asked = Vec::new();
    s.unlink_with(
        0x2000,
        0x1000,
        |_| Ok(()),
        |iova| {
            asked.push(iova.as_u64());
            false
        },
    )
    .unwrap();
    // Granules below offset 0x2000, top down.
    assert_eq!(asked, [0x40_1000, 0x40_0000]);
    s.link_with(PhysRange::new(0x30_0000, 0x800), 0x1000, |_, _| Ok(()))
        .unwrap();
    assert_eq!(s.linked_bytes(), 0x1800);
}

/// An operation on an [`IovaAllocator`], in granules of 4 KiB.
#[derive(Clone, Debug)]
enum IovaOp {
    Alloc {
        pages: u64,
        align_shift: u32,
    },
    /// An unaligned size or start when `skew` is not 0.
    Reserve {
        page: u64,
        pages: u64,
        skew: u64,
    },
    Free {
        page: u64,
        pages: u64,
        skew: u64,
    },
}

fn iova_op() -> impl Strategy<Value = IovaOp> {
    let skew = prop_oneof![6 => Just(0u64), 1 => Just(0x800u64)];
    prop_oneof![
        (0u64..6, 12u32..16).prop_map(|(pages, align_shift)| IovaOp::Alloc { pages, align_shift }),
        (0u64..40, 0u64..6, skew.clone()).prop_map(|(page, pages, skew)| IovaOp::Reserve {
            page,
            pages,
            skew
        }),
        (0u64..40, 0u64..6, skew).prop_map(|(page, pages, skew)| IovaOp::Free {
            page,
            pages,
            skew
        }),
    ]
}

/// The allocator as a map of free granules over pages `[first, last]`.
struct IovaModel {
    first: u64,
    last: u64,
    free: Vec<bool>, // indexed by page number, 0..64
}

impl IovaModel {
    fn range_free(&self, p: u64, n: u64) -> bool {
        (p..p + n).all(|q| self.free[q as usize])
    }
    fn alloc(&mut self, pages: u64, align_pages: u64) -> Option<u64> {
        if pages == 0 {
            return None;
        }
        let a = (self.first..=self.last)
            .filter(|p| p % align_pages == 0)
            .find(|&p| p + pages - 1 <= self.last && self.range_free(p, pages))?;
        (a..a + pages).for_each(|q| self.free[q as usize] = false);
        Some(a)
    }
    fn extents(&self) -> usize {
        (self.first..=self.last)
            .filter(|&p| self.free[p as usize] && (p == self.first || !self.free[p as usize - 1]))
            .count()
    }
    fn free_pages(&self) -> u64 {
        (self.first..=self.last)
            .filter(|&p| self.free[p as usize])
            .count() as u64
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    /// `IovaAllocator` against a granule map: first fit at the alignment, fixed
    /// reservations clipped to the aperture and refused when any granule is taken,
    /// frees refused when outside, misaligned or double, and its counters.
    #[test]
    fn iova_allocator_matches_a_granule_map(
        first_page in 0u64..4,
        first_skew in prop_oneof![Just(0u64), Just(0x800u64)],
        last_page in 20u64..48,
        ops in prop::collection::vec(iova_op(), 1..40),
    ) {
        use physvec::map::{IovaAllocator, MapError};
        const G: u64 = 0x1000;
        // A first address inside a granule rounds up; the last page is inclusive.
        let mut a = IovaAllocator::new(
            PageSize::SIZE_4K,
            DmaAddr::new(first_page * G + first_skew),
            DmaAddr::new(last_page * G + G - 1),
        ).unwrap();
        let first = first_page + u64::from(first_skew != 0);
        let mut m = IovaModel { first, last: last_page, free: vec![false; 64] };
        (first..=last_page).for_each(|p| m.free[p as usize] = true);
        prop_assert_eq!(a.first(), DmaAddr::new(first * G));
        prop_assert_eq!(a.last(), DmaAddr::new(last_page * G + G - 1));
        for op in ops {
            match op {
                IovaOp::Alloc { pages, align_shift } => {
                    let align = PageSize::from_shift(align_shift).unwrap();
                    let want = m.alloc(pages, 1 << (align_shift - 12)).map(|p| DmaAddr::new(p * G));
                    prop_assert_eq!(a.alloc(pages * G, align), want);
                    // A size that is not a granule multiple is never allocated.
                    prop_assert_eq!(a.alloc(pages * G + 0x800, align), None);
                }
                IovaOp::Reserve { page, pages, skew } => {
                    let (start, size) = (page * G + skew, pages * G);
                    let got = a.reserve_range(DmaAddr::new(start), size);
                    let want = if skew != 0 {
                        Err(MapError::Misaligned { value: start, granule: G })
                    } else if pages == 0 {
                        Ok(())
                    } else {
                        let (lo, hi) = (page.max(m.first), (page + pages - 1).min(m.last));
                        if lo > hi {
                            Ok(())
                        } else if m.range_free(lo, hi - lo + 1) {
                            (lo..=hi).for_each(|q| m.free[q as usize] = false);
                            Ok(())
                        } else {
                            Err(MapError::AlreadyMapped { iova: lo * G })
                        }
                    };
                    prop_assert_eq!(got, want);
                    // A misaligned size is refused too.
                    if pages > 0 && skew == 0 {
                        prop_assert_eq!(
                            a.reserve_range(DmaAddr::new(start), size - 0x800),
                            Err(MapError::Misaligned { value: size - 0x800, granule: G })
                        );
                    }
                }
                IovaOp::Free { page, pages, skew } => {
                    let (start, size) = (page * G + skew, pages * G);
                    let got = a.free(DmaAddr::new(start), size);
                    let ok = skew == 0
                        && pages > 0
                        && page >= m.first
                        && page + pages - 1 <= m.last
                        && (page..page + pages).all(|q| !m.free[q as usize]);
                    if ok {
                        (page..page + pages).for_each(|q| m.free[q as usize] = true);
                        prop_assert_eq!(got, Ok(()));
                    } else {
                        prop_assert_eq!(got, Err(MapError::NotMapped { dma: start, len: size }));
                    }
                }
            }
            prop_assert_eq!(a.free_bytes(), m.free_pages() * G);
            prop_assert_eq!(a.free_extents(), m.extents());
            prop_assert_eq!(a.is_pristine(), m.free_pages() == m.last - m.first + 1);
        }
    }
}

/// The IOTLB is direct mapped on the low 6 bits of the page number: neighbouring pages
/// hit in their own slots, a page 64 pages away evicts; an unmap invalidates exactly
/// its pages (no stale translation) and 64 pages or more flush it whole.
#[test]
fn iotlb_slots_hits_and_invalidation() {
    use physvec::map::Attrs;
    // IOVAs above 256 KiB, where a page number and its slot differ.
    let cfg = IommuConfig::new(PageSize::SIZE_4K).with_aperture(0x1000_0000, 0x1fff_ffff);
    let iommu = SoftIommu::new(cfg).unwrap();
    let dir = DataDirection::ToDevice;
    // 65 separate pages, each mapped alone at its own IOVA.
    let maps: Vec<physvec::DmaRange> = (0..65u64)
        .map(|i| {
            iommu
                .map_phys(
                    PhysRange::new(0x1_0000_0000 + i * 0x2000, 0x1000),
                    dir,
                    Attrs::empty(),
                )
                .unwrap()
        })
        .collect();
    let iova = |i: usize| maps[i].addr();
    // Find two mappings whose IOVA pages are adjacent and two that share a slot.
    let page = |d: DmaAddr| d.as_u64() >> 12;
    let (x, y) = (0..64)
        .flat_map(|i| (0..65).map(move |j| (i, j)))
        .find(|&(i, j)| page(iova(j)) == page(iova(i)) + 1)
        .expect("adjacent IOVA pages");
    let s0 = iommu.stats();
    for _ in 0..2 {
        assert_eq!(
            iommu.translate(iova(x)),
            Some(PhysAddr::new(0x1_0000_0000 + x as u64 * 0x2000))
        );
        assert_eq!(
            iommu.translate(iova(y)),
            Some(PhysAddr::new(0x1_0000_0000 + y as u64 * 0x2000))
        );
    }
    let s1 = iommu.stats();
    assert_eq!(
        (
            s1.iotlb_misses - s0.iotlb_misses,
            s1.iotlb_hits - s0.iotlb_hits
        ),
        (2, 2)
    );
    // 65 distinct pages after x's: one of them shares its slot (pigeonhole).
    let z = (0..65)
        .find(|&z| z != x && page(iova(z)) % 64 == page(iova(x)) % 64)
        .expect("a page in x's slot");
    iommu.translate(iova(z)).unwrap();
    iommu.translate(iova(x)).unwrap();
    let s2 = iommu.stats();
    assert_eq!(s2.iotlb_misses - s1.iotlb_misses, 2, "same slot: evicted");
    // Unmapping one page invalidates it without a full flush; nothing stale remains.
    iommu.unmap_phys(maps[x], dir, Attrs::empty()).unwrap();
    let s3 = iommu.stats();
    assert_eq!(s3.iotlb_flushes, s1.iotlb_flushes);
    assert_eq!(iommu.translate(iova(x)), None);
    assert_eq!(
        iommu.translate(iova(y)),
        Some(PhysAddr::new(0x1_0000_0000 + y as u64 * 0x2000))
    );
    for (i, m) in maps.iter().enumerate() {
        if i != x {
            iommu.unmap_phys(*m, dir, Attrs::empty()).unwrap();
        }
    }
    // A 64-page mapping: its unmap flushes the IOTLB whole, and nothing stale remains.
    let big = iommu
        .map_phys(
            PhysRange::new(0x2_0000_0000, 64 * 0x1000),
            dir,
            Attrs::empty(),
        )
        .unwrap();
    for k in 0..64 {
        iommu
            .translate(DmaAddr::new(big.addr().as_u64() + k * 0x1000))
            .unwrap();
    }
    let before = iommu.stats().iotlb_flushes;
    iommu.unmap_phys(big, dir, Attrs::empty()).unwrap();
    assert_eq!(iommu.stats().iotlb_flushes, before + 1);
    for k in 0..64 {
        assert_eq!(
            iommu.translate(DmaAddr::new(big.addr().as_u64() + k * 0x1000)),
            None
        );
    }
    assert!(iommu.is_idle());
}

/// A leaf keeps the permissions of its transfer: what the device may do there (read,
/// write, both) and whether it is device memory.
#[test]
fn leaves_keep_the_transfer_permissions() {
    use physvec::map::{Attrs, IoPerm};
    let iommu = SoftIommu::new_4k();
    for dir in [
        DataDirection::ToDevice,
        DataDirection::FromDevice,
        DataDirection::Bidirectional,
    ] {
        for attrs in [Attrs::empty(), Attrs::MMIO] {
            let d = iommu
                .map_phys(PhysRange::new(0x4000_0000, 0x1000), dir, attrs)
                .unwrap();
            let (phys, perm, size) = iommu.walk(d.addr()).unwrap();
            assert_eq!(
                (phys, perm, size),
                (
                    PhysAddr::new(0x4000_0000),
                    IoPerm::for_transfer(dir, attrs),
                    PageSize::SIZE_4K
                ),
                "{dir:?} {attrs:?}"
            );
            iommu.unmap_phys(d, dir, attrs).unwrap();
        }
    }
    assert!(iommu.is_idle());
}

/// `IoPageTable` on its own (a VMM's shadow table): its geometry, its `Debug` summary,
/// scattered granules mapped in one call, and table memory that map/unmap cycles reuse
/// instead of growing.
#[test]
fn io_page_table_standalone() {
    use physvec::map::{IoPageTable, IoPerm};
    let mut pt = IoPageTable::new(PageSize::SIZE_4K, 39, false).unwrap();
    assert_eq!(
        (pt.granule(), pt.levels(), pt.va_bits()),
        (PageSize::SIZE_4K, 3, 39)
    );
    assert_eq!((pt.tables(), pt.table_memory()), (0, 0x1000));
    let pages: Vec<PhysRange> = (0..600u64)
        .map(|k| PhysRange::new(0x10_0000 + k * 0x3000, 0x1000))
        .collect();
    let base = DmaAddr::new(0x40_0000_0000 - 0x10_0000); // crosses a 1 GiB table boundary
    assert_eq!(pt.map_granules(base, &pages, IoPerm::READ), (600, Ok(())));
    for (k, p) in pages.iter().enumerate() {
        assert_eq!(
            pt.translate(DmaAddr::new(base.as_u64() + k as u64 * 0x1000 + 0x123)),
            Some(PhysAddr::new(p.addr().as_u64() + 0x123))
        );
    }
    // Two leaf tables on each side of the 1 GiB boundary, under two level-1 tables.
    assert_eq!(pt.tables(), 4);
    assert_eq!(pt.mapped_bytes(), 600 * 0x1000);
    assert_eq!(
        format!("{pt:?}"),
        "IoPageTable { granule: PageSize(0x1000), levels: 3, va_bits: 39, \
         mapped_bytes: 2457600, tables: 4, leaves: [600, 0, 0] }"
    );
    let held = pt.table_memory();
    assert_eq!(held, 5 * 0x1000);
    for _ in 0..3 {
        pt.unmap(base, 600 * 0x1000).unwrap();
        assert_eq!((pt.tables(), pt.mapped_bytes()), (0, 0));
        assert_eq!(pt.map_granules(base, &pages, IoPerm::WRITE), (600, Ok(())));
        assert_eq!(pt.table_memory(), held, "freed tables are reused");
    }
}

/// The configuration is what was asked for: `with_large_leaves(false)` maps an aligned
/// 2 MiB range with 4 KiB leaves; `config()` returns it; `Debug` shows it with the
/// statistics; `is_idle` is false while anything is mapped.
#[test]
fn soft_iommu_config_debug_and_idle() {
    use physvec::map::{Attrs, IommuConfig};
    let dir = DataDirection::ToDevice;
    let two_m = PhysRange::new(0x4000_0000, 2 << 20);
    for large in [true, false] {
        let cfg = IommuConfig::new(PageSize::SIZE_4K)
            .with_dma_mask(physvec::DmaMask::new::<40>())
            .with_aperture(0x4000_0000, 0x7fff_ffff)
            .with_large_leaves(large);
        let iommu = SoftIommu::new(cfg).unwrap();
        assert_eq!(iommu.config(), cfg);
        assert_eq!(DmaMapper::dma_mask(&iommu), physvec::DmaMask::new::<40>());
        assert!(iommu.is_idle());
        let d = iommu.map_phys(two_m, dir, Attrs::empty()).unwrap();
        assert!(!iommu.is_idle(), "a live mapping");
        let want = if large { [0, 1, 0] } else { [512, 0, 0] };
        assert_eq!(iommu.stats().leaves, want, "large leaves {large}");
        let dbg = format!("{iommu:?}");
        assert!(
            dbg.starts_with("SoftIommu { cfg: IommuConfig {")
                && dbg.contains("stats: IommuStats {"),
            "{dbg}"
        );
        assert!(dbg.contains(&format!("large_leaves: {large}")), "{dbg}");
        iommu.unmap_phys(d, dir, Attrs::empty()).unwrap();
        assert!(iommu.is_idle());
    }
}

/// An IOVA reservation with nothing linked yet is not idle either: `is_idle` is the
/// teardown check, and a forgotten reservation is a leak. Freeing it costs no unmap.
#[test]
fn a_bare_reservation_is_not_idle() {
    let iommu = SoftIommu::new_4k();
    let space = iommu
        .reserve(PhysAddr::new(0x4000_0000), 0x4000)
        .unwrap()
        .expect("an IOMMU reserves");
    assert!(!iommu.is_idle());
    let before = iommu.stats();
    iommu.free(space).unwrap();
    assert!(iommu.is_idle());
    // Nothing was mapped: no unmap and no IOTLB invalidation to pay for.
    let after = iommu.stats();
    assert_eq!(
        (after.unmaps, after.iotlb_invalidations),
        (before.unmaps, before.iotlb_invalidations)
    );
}

/// A space rebuilt by hand from a live one's owner, base, pad, size and granule (its
/// slot hint absent) is found by its key and acts on that reservation, and only on it;
/// the original is then foreign.
#[test]
fn a_rebuilt_space_finds_its_reservation() {
    use physvec::map::{Attrs, IovaSpace, MapError};
    let iommu = SoftIommu::new_4k();
    let dir = DataDirection::ToDevice;
    let mut spaces = Vec::new();
    for k in 0..3u64 {
        let phys = PhysRange::new(0x1_0000_0000 + k * 0x10_0000, 0x2000);
        let mut s = iommu.reserve(phys.addr(), 0x2000).unwrap().unwrap();
        iommu.link(&mut s, phys, 0, dir, Attrs::empty()).unwrap();
        spaces.push((s, phys));
    }
    let (third, _) = spaces.pop().unwrap();
    let rebuilt = IovaSpace::new(
        third.owner(),
        third.iova_base(),
        third.pad(),
        third.size(),
        third.granule(),
    )
    .unwrap();
    let third_iova = third.addr();
    iommu.destroy(rebuilt, dir, Attrs::empty()).unwrap();
    assert_eq!(iommu.translate(third_iova), None);
    for (s, phys) in &spaces {
        assert_eq!(
            iommu.translate(s.addr()),
            Some(phys.addr()),
            "other reservations untouched"
        );
    }
    assert!(matches!(
        iommu.destroy(third, dir, Attrs::empty()),
        Err(MapError::ForeignSpace { .. })
    ));
    for (s, _) in spaces {
        iommu.destroy(s, dir, Attrs::empty()).unwrap();
    }
    assert!(iommu.is_idle());
}

/// IOVA placement: small mappings are packed from the bottom of the aperture at the
/// granule, a 2 MiB one goes to a 2 MiB boundary so that one large leaf maps it.
#[test]
fn iova_alignment_follows_the_mapping_size() {
    use physvec::map::Attrs;
    let iommu = SoftIommu::new_4k();
    let dir = DataDirection::ToDevice;
    let small = iommu
        .map_phys(PhysRange::new(0x1_0000_0000, 0x1000), dir, Attrs::empty())
        .unwrap();
    let small2 = iommu
        .map_phys(PhysRange::new(0x1_0001_0000, 0x3000), dir, Attrs::empty())
        .unwrap();
    assert_eq!(
        small.addr(),
        DmaAddr::new(0x1000),
        "the aperture's first granule"
    );
    assert_eq!(small2.addr(), DmaAddr::new(0x2000), "packed after it");
    let big = iommu
        .map_phys(PhysRange::new(0x1_4000_0000, 2 << 20), dir, Attrs::empty())
        .unwrap();
    assert_eq!(big.addr(), DmaAddr::new(2 << 20), "the next 2 MiB boundary");
    assert_eq!(iommu.walk(big.addr()).unwrap().2, PageSize::SIZE_2M);
    for d in [small, small2, big] {
        iommu.unmap_phys(d, dir, Attrs::empty()).unwrap();
    }
    assert!(iommu.is_idle());
}

/// With a 1-byte granule, a 1-byte fixed reservation is taken like any other.
#[test]
fn iova_allocator_reserves_a_single_granule() {
    use physvec::map::IovaAllocator;
    let one = PageSize::new(1).unwrap();
    let mut a = IovaAllocator::new(one, DmaAddr::new(0), DmaAddr::new(15)).unwrap();
    a.reserve_range(DmaAddr::new(3), 1).unwrap();
    assert_eq!((a.free_bytes(), a.free_extents()), (15, 2));
    let got: Vec<u64> = (0..4).map(|_| a.alloc(1, one).unwrap().as_u64()).collect();
    assert_eq!(got, [0, 1, 2, 4]);
}

/// `free` of a reservation that still has links (`dma_iova_free` without the unlink)
/// tears it down anyway and says so: the linked bytes it knew of, or 0 for a space
/// rebuilt by hand that never saw the links.
#[test]
fn freeing_a_linked_space_is_reported() {
    use physvec::map::{Attrs, IovaSpace, MapError};
    let iommu = SoftIommu::new_4k();
    let dir = DataDirection::ToDevice;
    let phys = PhysRange::new(0x1_0000_0000, 0x1000);
    let mut s = iommu.reserve(phys.addr(), 0x2000).unwrap().unwrap();
    iommu.link(&mut s, phys, 0, dir, Attrs::empty()).unwrap();
    assert_eq!(iommu.free(s), Err(MapError::StillLinked { bytes: 0x1000 }));
    assert!(iommu.is_idle(), "torn down anyway");
    let mut s = iommu.reserve(phys.addr(), 0x2000).unwrap().unwrap();
    iommu.link(&mut s, phys, 0, dir, Attrs::empty()).unwrap();
    let rebuilt = IovaSpace::new(s.owner(), s.iova_base(), s.pad(), s.size(), s.granule()).unwrap();
    assert_eq!(iommu.free(rebuilt), Err(MapError::StillLinked { bytes: 0 }));
    assert!(iommu.is_idle());
    drop(s);
}
