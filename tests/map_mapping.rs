//! The generic `map` entry point: fault injection (a mapper failing the N-th link, sync
//! or map for every N leaves nothing linked, mapped or reserved), P2P kinds, the direct
//! mapper, and the allocation-free variant.

use std::cell::Cell;

use physvec::map::{
    self, Attrs, BouncePool, DataDirection, DirectMapper, DmaMapper, IovaSpace, Linking, MapError,
    MappingKind, NoP2p, P2pMapType, P2pProviders, P2pRegion, SoftIommu, SpaceState, SyncError,
    Synced,
};
use physvec::{DmaArray, DmaRange, PageSize, PhysAddr, PhysRange, RangeView};

/// Wraps a mapper and fails operation number `fail_at` (counting links, syncs and
/// map_phys calls together).
struct Faulty<M> {
    inner: M,
    fail_at: usize,
    count: Cell<usize>,
}

impl<M> Faulty<M> {
    fn new(inner: M, fail_at: usize) -> Self {
        Self {
            inner,
            fail_at,
            count: Cell::new(0),
        }
    }
    fn fail_now(&self) -> bool {
        let n = self.count.get();
        self.count.set(n + 1);
        n == self.fail_at
    }
}

const INJECTED: MapError = MapError::IovaExhausted { size: 0xdead };

impl<M: DmaMapper> DmaMapper for Faulty<M> {
    fn granule(&self) -> PageSize {
        self.inner.granule()
    }
    fn dma_mask(&self) -> physvec::DmaMask {
        self.inner.dma_mask()
    }
    fn reserve(&self, hint: PhysAddr, size: u64) -> Result<Option<IovaSpace>, MapError> {
        self.inner.reserve(hint, size)
    }
    fn link(
        &self,
        s: &mut IovaSpace<Linking>,
        p: PhysRange,
        o: u64,
        d: DataDirection,
        a: Attrs,
    ) -> Result<(), MapError> {
        if self.fail_now() {
            return Err(INJECTED);
        }
        self.inner.link(s, p, o, d, a)
    }
    fn sync(&self, s: IovaSpace<Linking>, o: u64, n: u64) -> Result<IovaSpace<Synced>, SyncError> {
        if self.fail_now() {
            return Err(SyncError {
                space: s,
                error: INJECTED,
            });
        }
        self.inner.sync(s, o, n)
    }
    fn unlink<St: SpaceState>(
        &self,
        s: &mut IovaSpace<St>,
        o: u64,
        n: u64,
        d: DataDirection,
        a: Attrs,
    ) -> Result<(), MapError> {
        self.inner.unlink(s, o, n, d, a)
    }
    fn free<St: SpaceState>(&self, s: IovaSpace<St>) -> Result<(), MapError> {
        self.inner.free(s)
    }
    fn destroy<St: SpaceState>(
        &self,
        s: IovaSpace<St>,
        d: DataDirection,
        a: Attrs,
    ) -> Result<(), MapError> {
        self.inner.destroy(s, d, a)
    }
    fn map_phys(&self, p: PhysRange, d: DataDirection, a: Attrs) -> Result<DmaRange, MapError> {
        if self.fail_now() {
            return Err(INJECTED);
        }
        self.inner.map_phys(p, d, a)
    }
    fn unmap_phys(&self, r: DmaRange, d: DataDirection, a: Attrs) -> Result<(), MapError> {
        self.inner.unmap_phys(r, d, a)
    }
}

fn coalescable() -> Vec<PhysRange> {
    vec![
        PhysRange::new(0x10_0800, 0x800),
        PhysRange::new(0x20_0000, 0x3000),
        PhysRange::new(0x40_0000, 0x1000),
        PhysRange::new(0x50_0000, 0x10),
    ]
}

fn scattered() -> Vec<PhysRange> {
    vec![
        PhysRange::new(0x10_0800, 0x100),
        PhysRange::new(0x20_0100, 0x3000),
        PhysRange::new(0x1_0000_0000, 0x1000),
        PhysRange::new(0x50_0000, 0x10),
    ]
}

#[test]
fn iommu_failure_at_every_step_unwinds_everything() {
    for list in [coalescable(), scattered()] {
        // links + 1 sync, or one map_phys per range.
        let ops = list.len() + 1;
        let mut failures = 0;
        for n in 0..=ops {
            let iommu = SoftIommu::new_4k();
            let f = Faulty::new(&iommu, n);
            match map::map(&f, &list, DataDirection::ToDevice) {
                Ok(m) => {
                    assert!(n >= f.count.get(), "op {n} should have failed");
                    m.unmap().unwrap();
                }
                Err(e) => {
                    assert_eq!(e, INJECTED);
                    failures += 1;
                }
            }
            let s = iommu.stats();
            assert_eq!(
                (s.mapped_bytes, s.allocations, s.tables),
                (0, 0, 0),
                "after failing op {n}"
            );
            assert!(iommu.is_idle(), "after failing op {n}");
        }
        assert!(failures >= list.len());
    }
}

#[test]
fn direct_failure_at_every_map_unwinds_bounces() {
    let list = scattered();
    for n in 0..=list.len() {
        let pool = BouncePool::new(PhysAddr::new(0x100_0000), PageSize::SIZE_4K, 8).unwrap();
        let d = DirectMapper::new(0, physvec::DmaMask::BITS_32).with_bounce_pool(pool);
        let f = Faulty::new(&d, n);
        let r = map::map(&f, &list, DataDirection::FromDevice);
        assert_eq!(r.is_err(), n < list.len());
        drop(r);
        assert_eq!(
            d.bounce_pool().unwrap().used_slots(),
            0,
            "after failing op {n}"
        );
        assert_eq!(d.bounce_pool().unwrap().live(), 0);
    }
}

#[test]
fn direct_mapper_maps_per_range_and_checks_the_mask() {
    let d = DirectMapper::new(0x8000_0000, physvec::DmaMask::BITS_32);
    let m = map::map(
        &d,
        &[
            PhysRange::new(0x1000, 0x800),
            PhysRange::new(0x2000, 0x1000),
        ],
        DataDirection::ToDevice,
    )
    .unwrap();
    assert_eq!(m.kind(), MappingKind::PerRange);
    assert_eq!(
        m.dma(),
        [
            DmaRange::new(0x8000_1000, 0x800),
            DmaRange::new(0x8000_2000, 0x1000)
        ]
    );
    assert_eq!(m.iova_syncs(), 0);
    let e = map::map(
        &d,
        &[PhysRange::new(0x8000_0000, 0x1000)],
        DataDirection::ToDevice,
    )
    .unwrap_err();
    assert_eq!(e.kind(), "above_dma_mask");
    assert_eq!(
        map::map(&d, &[], DataDirection::ToDevice)
            .unwrap_err()
            .kind(),
        "empty"
    );
    assert!(d.reserve(PhysAddr::new(0), 0x1000).unwrap().is_none());
}

#[test]
fn allocation_free_variant_and_capacity() {
    let iommu = SoftIommu::new_4k();
    let list = scattered();
    let view = RangeView::full(&list).unwrap();
    let e = map::map_into(
        &iommu,
        view,
        DataDirection::ToDevice,
        Attrs::empty(),
        &NoP2p,
        DmaArray::<2>::new(),
    )
    .unwrap_err();
    assert_eq!(
        e,
        MapError::TooManySegments {
            needed: 4,
            capacity: 2
        }
    );
    assert!(iommu.is_idle());
    let m = map::map_into(
        &iommu,
        view,
        DataDirection::ToDevice,
        Attrs::empty(),
        &NoP2p,
        DmaArray::<4>::new(),
    )
    .unwrap();
    assert_eq!(m.dma().len(), 4);
    drop(m);
    // A coalescable list needs one slot only; a window of it too.
    let list = coalescable();
    let w = RangeView::full(&list)
        .unwrap()
        .window(0x400, 0x3800)
        .unwrap();
    let m = map::map_into(
        &iommu,
        w,
        DataDirection::ToDevice,
        Attrs::empty(),
        &NoP2p,
        DmaArray::<1>::new(),
    )
    .unwrap();
    assert_eq!(m.dma()[0].len(), 0x3800);
    assert_eq!(
        iommu.translate(m.dma()[0].addr()),
        Some(PhysAddr::new(0x10_0c00))
    );
    m.unmap().unwrap();
    assert!(iommu.is_idle());
}

#[test]
fn p2p_kinds() {
    let regions = [
        P2pRegion {
            bar: PhysRange::new(0xe000_0000, 0x100_0000),
            map: P2pMapType::BusAddr {
                bus_offset: 0x1_0000_0000,
            },
        },
        P2pRegion {
            bar: PhysRange::new(0xf000_0000, 0x100_0000),
            map: P2pMapType::ThruHostBridge,
        },
        P2pRegion {
            bar: PhysRange::new(0xd000_0000, 0x100_0000),
            map: P2pMapType::NotSupported,
        },
    ];
    let p2p = P2pProviders::new(&regions);
    let iommu = SoftIommu::new_4k();
    let dir = DataDirection::FromDevice;
    let map_it = |list: &[PhysRange]| {
        map::map_into(
            &iommu,
            RangeView::full(list).unwrap(),
            dir,
            Attrs::empty(),
            &p2p,
            physvec::DmaVec::new(),
        )
    };

    // Bus addresses bypass the IOMMU.
    let bus = [
        PhysRange::new(0xe000_1000, 0x1000),
        PhysRange::new(0xe000_5000, 0x200),
    ];
    let m = map_it(&bus).unwrap();
    assert_eq!(m.kind(), MappingKind::BusAddr);
    assert_eq!(
        m.dma(),
        [
            DmaRange::new(0x1_e000_1000, 0x1000),
            DmaRange::new(0x1_e000_5000, 0x200)
        ]
    );
    assert_eq!(iommu.stats().maps, 0);
    drop(m);

    // Host bridge: mapped through the IOMMU with MMIO.
    let hb = [PhysRange::new(0xf000_0000, 0x2000)];
    let m = map_it(&hb).unwrap();
    assert!(m.attrs().contains(Attrs::MMIO));
    let (_, perm, _) = iommu.walk(m.dma()[0].addr()).unwrap();
    assert!(perm.contains(physvec::map::IoPerm::MMIO));
    drop(m);

    // Not reachable, and mixed kinds, are refused with the index.
    let bad = [
        PhysRange::new(0x1000, 0x1000),
        PhysRange::new(0xd000_0000, 0x1000),
    ];
    assert_eq!(
        map_it(&bad).unwrap_err(),
        MapError::P2pNotSupported {
            index: 1,
            phys: 0xd000_0000
        }
    );
    let mixed = [
        PhysRange::new(0x1000, 0x1000),
        PhysRange::new(0xf000_0000, 0x1000),
    ];
    assert_eq!(map_it(&mixed).unwrap_err(), MapError::MixedP2p { index: 1 });
    assert!(iommu.is_idle());
}

#[test]
fn merge_boundary_violations_in_manual_links_are_errors() {
    let iommu = SoftIommu::new_4k();
    let dir = DataDirection::ToDevice;
    let a = Attrs::empty();
    let mut s = iommu
        .reserve(PhysAddr::new(0x100), 0x5000)
        .unwrap()
        .unwrap();
    // First link must keep the hint's sub-granule offset.
    assert!(matches!(
        iommu.link(&mut s, PhysRange::new(0x2200, 0x100), 0, dir, a),
        Err(MapError::SubGranuleMismatch { .. })
    ));
    iommu
        .link(&mut s, PhysRange::new(0x2100, 0xf00), 0, dir, a)
        .unwrap();
    // Later links start aligned.
    assert!(matches!(
        iommu.link(&mut s, PhysRange::new(0x7010, 0x100), 0xf00, dir, a),
        Err(MapError::MergeBoundary { .. })
    ));
    // A link ending off-granule must be the last one.
    iommu
        .link(&mut s, PhysRange::new(0x7000, 0x800), 0xf00, dir, a)
        .unwrap();
    assert!(matches!(
        iommu.link(&mut s, PhysRange::new(0x9000, 0x1000), 0x1f00, dir, a),
        Err(MapError::MergeBoundary { .. })
    ));
    assert!(matches!(
        iommu.link(&mut s, PhysRange::new(0x9000, 0x1000), 0x4f00, dir, a),
        Err(MapError::OutOfReservation { .. })
    ));
    // Partial unlink, then destroy the rest.
    iommu.unlink(&mut s, 0xf00, 0x800, dir, a).unwrap();
    assert_eq!(s.linked_bytes(), 0xf00);
    assert!(iommu.unlink(&mut s, 0xf00, 0x800, dir, a).is_err());
    let s = iommu.sync(s, 0, 0xf00).unwrap();
    iommu.destroy(s, dir, a).unwrap();
    assert!(iommu.is_idle());
}

#[test]
fn bounce_pool_debug_shows_its_geometry_and_use() {
    let p = BouncePool::new(PhysAddr::new(0x10_0000), PageSize::SIZE_4K, 4).unwrap();
    let text = format!("{p:?}");
    assert!(text.starts_with("BouncePool"), "{text}");
    assert!(text.contains("nslots: 4"), "{text}");
    assert!(text.contains("live: 0"), "{text}");
}

#[test]
fn bounce_pool_accounts_for_every_bounce() {
    let pool = BouncePool::new(PhysAddr::new(0x100_0000), PageSize::SIZE_4K, 8).unwrap();
    assert_eq!(pool.range(), PhysRange::new(0x100_0000, 0x8000));
    let d = DirectMapper::new(0, physvec::DmaMask::BITS_32).with_bounce_pool(pool);
    let to = DataDirection::ToDevice;
    let a = d
        .map_phys(PhysRange::new(0x1_0000_0000, 0x1800), to, Attrs::empty())
        .unwrap();
    let b = d
        .map_phys(PhysRange::new(0x2_0000_0000, 0x10), to, Attrs::empty())
        .unwrap();
    // Below the mask: not bounced.
    let c = d
        .map_phys(PhysRange::new(0x5000, 0x10), to, Attrs::empty())
        .unwrap();
    // First fit: slots 0-1 and 2 of the pool.
    assert_eq!(a, DmaRange::new(0x100_0000, 0x1800));
    assert_eq!(b, DmaRange::new(0x100_2000, 0x10));
    let p = d.bounce_pool().unwrap();
    assert_eq!((p.live(), p.used_slots(), p.total_bounced()), (2, 3, 2));
    d.unmap_phys(a, to, Attrs::empty()).unwrap();
    let p = d.bounce_pool().unwrap();
    assert_eq!((p.live(), p.used_slots(), p.total_bounced()), (1, 1, 2));
    d.unmap_phys(b, to, Attrs::empty()).unwrap();
    d.unmap_phys(c, to, Attrs::empty()).unwrap();
    let p = d.bounce_pool().unwrap();
    assert_eq!((p.live(), p.used_slots(), p.total_bounced()), (0, 0, 2));
}

#[test]
fn bounce_pool_uses_every_slot_and_no_more() {
    let pool = BouncePool::new(PhysAddr::new(0x100_0000), PageSize::SIZE_4K, 8).unwrap();
    let d = DirectMapper::new(0, physvec::DmaMask::BITS_32).with_bounce_pool(pool);
    let to = DataDirection::ToDevice;
    let no = Attrs::empty();
    let high = |i: u64, len: u64| PhysRange::new(0x1_0000_0000 + i * 0x10_0000, len);
    // More than the pool: refused up front.
    assert_eq!(
        d.map_phys(high(0, 0x8001), to, no),
        Err(MapError::BounceExhausted { len: 0x8001 })
    );
    // Exactly the pool.
    let all = d.map_phys(high(0, 0x8000), to, no).unwrap();
    assert_eq!(all, DmaRange::new(0x100_0000, 0x8000));
    d.unmap_phys(all, to, no).unwrap();
    // Six single slots, then two slots fit only at the very end of the pool.
    let singles: Vec<DmaRange> = (0..6)
        .map(|i| d.map_phys(high(i, 0x1000), to, no).unwrap())
        .collect();
    let last_two = d.map_phys(high(7, 0x2000), to, no).unwrap();
    assert_eq!(last_two, DmaRange::new(0x100_6000, 0x2000));
    assert_eq!(
        d.map_phys(high(8, 0x10), to, no),
        Err(MapError::BounceExhausted { len: 0x10 })
    );
    for m in singles.into_iter().chain([last_two]) {
        d.unmap_phys(m, to, no).unwrap();
    }
    assert_eq!(d.bounce_pool().unwrap().used_slots(), 0);
}

#[test]
fn direct_mapper_offset_mmio_and_equal_length_bounces() {
    let pool = BouncePool::new(PhysAddr::new(0x100_0000), PageSize::SIZE_4K, 4).unwrap();
    let d = DirectMapper::new(0x1000_0000, physvec::DmaMask::BITS_32).with_bounce_pool(pool);
    assert_eq!(d.dma_offset(), 0x1000_0000);
    let to = DataDirection::ToDevice;
    let no = Attrs::empty();
    assert_eq!(
        d.map_phys(PhysRange::new(0x5000, 0x10), to, no),
        Ok(DmaRange::new(0x1000_5000, 0x10))
    );
    // MMIO (a BAR) above the mask is never bounced: copying would not reach the device.
    assert_eq!(
        d.map_phys(PhysRange::new(0x1_0000_0000, 0x10), to, Attrs::MMIO),
        Err(MapError::AboveDmaMask {
            dma: 0x1_1000_0000,
            len: 0x10,
            mask: u32::MAX as u64
        })
    );
    assert_eq!(d.bounce_pool().unwrap().live(), 0);
    // Two bounces of the same length: unmapping the second frees its slot, not the first's.
    let a = d
        .map_phys(PhysRange::new(0x1_0000_0000, 0x10), to, no)
        .unwrap();
    let b = d
        .map_phys(PhysRange::new(0x2_0000_0000, 0x10), to, no)
        .unwrap();
    assert_eq!(
        (a.addr().as_u64(), b.addr().as_u64()),
        (0x1100_0000, 0x1100_1000)
    );
    d.unmap_phys(b, to, no).unwrap();
    let c = d
        .map_phys(PhysRange::new(0x3_0000_0000, 0x10), to, no)
        .unwrap();
    assert_eq!(c, b);
    d.unmap_phys(a, to, no).unwrap();
    d.unmap_phys(c, to, no).unwrap();
}

#[test]
fn bounce_copies_exactly_the_mapped_bytes_each_way() {
    use physvec::mem::{MemoryReader, MemoryWriter, SparseMemory};
    let pool = BouncePool::new(PhysAddr::new(0x100_0000), PageSize::SIZE_4K, 4).unwrap();
    let d = DirectMapper::new(0x1000_0000, physvec::DmaMask::BITS_32).with_bounce_pool(pool);
    let no = Attrs::empty();
    // 0x310 bytes: two full 256-byte copy chunks and a short one. The memory holds exactly
    // the original and its bounce slot, so a byte too many is an error.
    let len = 0x310;
    let orig = PhysRange::new(0x1_0000_0000, len);
    let payload: Vec<u8> = (0..len).map(|i| i as u8 ^ 0x5a).collect();
    let mut ram = SparseMemory::<physvec::Phys>::default();
    ram.add(orig.addr(), payload.clone());
    ram.add_zeroed(PhysAddr::new(0x100_0000), len as usize);

    let out = d.map_phys(orig, DataDirection::ToDevice, no).unwrap();
    // The device does not write: nothing to copy back.
    assert_eq!(d.sync_for_cpu(out, &mut ram), Ok(false));
    assert_eq!(d.sync_for_device(out, &mut ram), Ok(true));
    let mut buf = vec![0u8; len as usize];
    ram.read(PhysAddr::new(0x100_0000), &mut buf).unwrap();
    assert_eq!(buf, payload);
    d.unmap_phys(out, DataDirection::ToDevice, no).unwrap();

    let back = d.map_phys(orig, DataDirection::FromDevice, no).unwrap();
    // The device does not read: nothing to copy in.
    assert_eq!(d.sync_for_device(back, &mut ram), Ok(false));
    ram.write(PhysAddr::new(0x100_0000), &vec![0xee; len as usize])
        .unwrap();
    assert_eq!(d.sync_for_cpu(back, &mut ram), Ok(true));
    ram.read(orig.addr(), &mut buf).unwrap();
    assert_eq!(buf, vec![0xee; len as usize]);
    d.unmap_phys(back, DataDirection::FromDevice, no).unwrap();
    // Not bounced: nothing to copy either way.
    let low = d
        .map_phys(
            PhysRange::new(0x5000, 0x10),
            DataDirection::Bidirectional,
            no,
        )
        .unwrap();
    assert_eq!(d.sync_for_device(low, &mut ram), Ok(false));
    assert_eq!(d.sync_for_cpu(low, &mut ram), Ok(false));
}

#[test]
fn p2p_ranges_touching_a_bar_by_one_byte_are_not_ram() {
    use physvec::map::P2pClassifier;
    let regions = [P2pRegion {
        bar: PhysRange::new(0xf000_0000, 0x10_0000),
        map: P2pMapType::BusAddr {
            bus_offset: 0x1000_0000,
        },
    }];
    let p = P2pProviders::new(&regions);
    // The last byte is the BAR's first byte; the first byte is the BAR's last byte.
    assert_eq!(
        p.map_type(PhysRange::new(0xefff_f000, 0x1001)),
        P2pMapType::NotSupported
    );
    assert_eq!(
        p.map_type(PhysRange::new(0xf00f_ffff, 0x10)),
        P2pMapType::NotSupported
    );
    // One byte short of it on either side: RAM.
    assert_eq!(
        p.map_type(PhysRange::new(0xefff_f000, 0x1000)),
        P2pMapType::None
    );
    assert_eq!(
        p.map_type(PhysRange::new(0xf010_0000, 0x10)),
        P2pMapType::None
    );
    // A borrowed classifier classifies as the classifier.
    let by_ref: &P2pProviders<'_> = &p;
    let inside = PhysRange::new(0xf000_1000, 0x1000);
    assert_eq!(P2pClassifier::map_type(&by_ref, inside), regions[0].map);
    // The stable names (JSON output of the CLI).
    assert_eq!(
        [
            P2pMapType::None,
            regions[0].map,
            P2pMapType::ThruHostBridge,
            P2pMapType::NotSupported
        ]
        .map(P2pMapType::as_str),
        ["none", "bus_addr", "thru_host_bridge", "not_supported"]
    );
}

#[test]
fn a_mapping_reports_its_p2p_kind_and_debug() {
    let regions = [P2pRegion {
        bar: PhysRange::new(0xf000_0000, 0x10_0000),
        map: P2pMapType::BusAddr {
            bus_offset: 0x1000_0000,
        },
    }];
    let p2p = P2pProviders::new(&regions);
    let d = DirectMapper::new(0, physvec::DmaMask::BITS_64);
    let phys = [PhysRange::new(0xf000_1000, 0x200)];
    let m = map::map_into(
        &d,
        RangeView::full(&phys).unwrap(),
        DataDirection::ToDevice,
        Attrs::empty(),
        &p2p,
        DmaArray::<2>::new(),
    )
    .unwrap();
    assert_eq!(m.p2p(), regions[0].map);
    assert_eq!(m.dma(), [DmaRange::new(0x1_0000_1000, 0x200)]);
    let text = format!("{m:?}");
    assert!(text.starts_with("Mapping"), "{text}");
    assert!(text.contains("BusAddr"), "{text}");
    assert!(text.contains("ToDevice"), "{text}");
}

#[test]
fn unmap_reports_what_the_mapper_reports() {
    let c = map::Checked::new(SoftIommu::new_4k()).with_on_leak(map::OnLeak::Ignore);
    // A gap inside a granule: one mapping per range.
    let phys = [
        PhysRange::new(0x1000, 0x800),
        PhysRange::new(0x3000, 0x1000),
    ];
    let m = map::map(&c, &phys, DataDirection::ToDevice).unwrap();
    assert_eq!(m.kind(), MappingKind::PerRange);
    let first = m.dma()[0];
    // Unmapped behind the mapping's back: its own unmap must say so.
    c.unmap_phys(first, DataDirection::ToDevice, Attrs::empty())
        .unwrap();
    assert_eq!(
        m.unmap(),
        Err(MapError::DoubleUnmap {
            dma: first.addr().as_u64()
        })
    );
}

/// A mapper that declares `need_unmap() == false` and counts `unmap_phys` calls.
struct NoUnmap(Cell<usize>);

impl DmaMapper for NoUnmap {
    fn granule(&self) -> PageSize {
        PageSize::SIZE_4K
    }
    fn dma_mask(&self) -> physvec::DmaMask {
        physvec::DmaMask::BITS_64
    }
    fn map_phys(&self, p: PhysRange, _: DataDirection, _: Attrs) -> Result<DmaRange, MapError> {
        Ok(p.cast())
    }
    fn need_unmap(&self) -> bool {
        false
    }
    fn unmap_phys(&self, _: DmaRange, _: DataDirection, _: Attrs) -> Result<(), MapError> {
        self.0.set(self.0.get() + 1);
        Ok(())
    }
}

#[test]
fn a_mapper_that_needs_no_unmap_is_not_called_to_unmap() {
    let d = NoUnmap(Cell::new(0));
    let phys = [
        PhysRange::new(0x1000, 0x800),
        PhysRange::new(0x3000, 0x1000),
    ];
    let m = map::map(&d, &phys, DataDirection::ToDevice).unwrap();
    assert_eq!(m.dma().len(), 2);
    m.unmap().unwrap();
    drop(map::map(&d, &phys, DataDirection::ToDevice).unwrap());
    assert_eq!(d.0.get(), 0);
}

#[test]
fn direct_unmap_of_what_it_never_mapped_is_refused() {
    let pool = BouncePool::new(PhysAddr::new(0x100_0000), PageSize::SIZE_4K, 4).unwrap();
    let d = DirectMapper::new(0x1000_0000, physvec::DmaMask::BITS_32).with_bounce_pool(pool);
    let to = DataDirection::ToDevice;
    let no = Attrs::empty();
    // Physical address 0 maps to exactly the offset.
    let zero = d.map_phys(PhysRange::new(0, 0x10), to, no).unwrap();
    assert_eq!(zero, DmaRange::new(0x1000_0000, 0x10));
    assert_eq!(d.unmap_phys(zero, to, no), Ok(()));
    // Below the offset: no physical address maps there.
    let below = DmaRange::new(0xfff_f000, 0x10);
    assert_eq!(
        d.unmap_phys(below, to, no),
        Err(MapError::NotMapped {
            dma: 0xfff_f000,
            len: 0x10
        })
    );
    // A bounce slot after its bounce was unmapped: a stale unmap.
    let b = d
        .map_phys(PhysRange::new(0x1_0000_0000, 0x10), to, no)
        .unwrap();
    d.unmap_phys(b, to, no).unwrap();
    assert_eq!(
        d.unmap_phys(b, to, no),
        Err(MapError::NotMapped {
            dma: b.addr().as_u64(),
            len: 0x10
        })
    );
}

/// Directions print as the tool's snake_case names, and say who touches memory.
#[test]
fn data_directions_name_themselves() {
    use physvec::map::DataDirection;
    for (d, name, reads, writes) in [
        (DataDirection::ToDevice, "to_device", true, false),
        (DataDirection::FromDevice, "from_device", false, true),
        (DataDirection::Bidirectional, "bidirectional", true, true),
    ] {
        assert_eq!((d.as_str(), d.to_string().as_str()), (name, name));
        assert_eq!((d.device_reads(), d.device_writes()), (reads, writes));
    }
}

/// `DMA_ATTR_*` values are the kernel's, so attributes pass through to a kernel-side
/// consumer unchanged.
#[test]
fn attrs_have_the_kernel_values() {
    use physvec::map::Attrs;
    assert_eq!(Attrs::SKIP_CPU_SYNC.bits(), 1 << 5);
    assert_eq!(Attrs::MMIO.bits(), 1 << 10);
    assert_eq!(Attrs::empty().bits(), 0);
    assert!(Attrs::empty().is_empty() && !Attrs::MMIO.is_empty());
    let both = Attrs::MMIO | Attrs::SKIP_CPU_SYNC;
    assert_eq!(
        Attrs::from_bits_retain(both.bits() | 1),
        Attrs::from_bits_retain(0x421)
    );
    assert!(both.contains(Attrs::MMIO) && both.contains(Attrs::SKIP_CPU_SYNC));
    assert!(!Attrs::MMIO.contains(Attrs::SKIP_CPU_SYNC));
    assert_eq!(Attrs::MMIO | Attrs::MMIO, Attrs::MMIO);
    let mut a = Attrs::MMIO;
    a |= Attrs::SKIP_CPU_SYNC;
    assert_eq!(a, both);
    // Debug names the known bits and shows the rest in hex.
    for (attrs, text) in [
        (Attrs::empty(), "Attrs(empty)"),
        (both, "Attrs(SKIP_CPU_SYNC | MMIO)"),
        (Attrs::from_bits_retain(0x401), "Attrs(MMIO | 0x1)"),
        (Attrs::from_bits_retain(0x1), "Attrs(0x1)"),
    ] {
        assert_eq!(format!("{attrs:?}"), text);
    }
}

/// A mapper without IOVA space (the kernel's `!CONFIG_IOMMU_DMA` stubs): `reserve` says
/// "none", every IOVA operation on a space refuses, through a reference too.
#[test]
fn a_mapper_without_iova_space_refuses_every_iova_step() {
    use physvec::map::{
        Attrs, DataDirection, DirectMapper, DmaMapper, IovaSpace, MapError, MapperId,
    };
    fn check<M: DmaMapper>(m: &M) {
        let (dir, no) = (DataDirection::ToDevice, Attrs::empty());
        assert!(m.reserve(PhysAddr::new(0x1000), 0x2000).unwrap().is_none());
        let space = || {
            IovaSpace::new(
                MapperId::fresh(),
                physvec::DmaAddr::new(0x10_0000),
                0,
                0x2000,
                PageSize::SIZE_4K,
            )
            .unwrap()
        };
        let mut s = space();
        let r = PhysRange::new(0x4000, 0x1000);
        assert_eq!(m.link(&mut s, r, 0, dir, no), Err(MapError::NoIovaSpace));
        assert_eq!(
            m.link_many(&mut s, &[r, r], 0, dir, no),
            (0, Err(MapError::NoIovaSpace))
        );
        assert_eq!(m.link_many(&mut s, &[], 0, dir, no), (0, Ok(())));
        assert_eq!(
            m.unlink(&mut s, 0, 0x1000, dir, no),
            Err(MapError::NoIovaSpace)
        );
        let e = m.sync(s, 0, 0x1000).unwrap_err();
        assert_eq!(e.error, MapError::NoIovaSpace);
        let foreign = MapError::ForeignSpace { addr: 0x10_0000 };
        assert_eq!(m.free(e.space), Err(foreign));
        assert_eq!(m.destroy(space(), dir, no), Err(foreign));
        assert_eq!(m.dma_mask(), physvec::DmaMask::BITS_32);
    }
    let d = DirectMapper::new(0, physvec::DmaMask::BITS_32);
    check(&d);
    check(&&d);
    // Through a reference, a mapper still says whether its mappings need unmapping.
    let iommu = SoftIommu::new_4k();
    assert!(DmaMapper::need_unmap(&&iommu) && !DmaMapper::need_unmap(&&d));
}

/// I/O permissions: what a transfer needs, containment, union, and `Debug` as `rwm`.
#[test]
fn io_permissions() {
    use physvec::map::IoPerm;
    let rw = IoPerm::READ | IoPerm::WRITE;
    assert!(rw.contains(IoPerm::READ) && rw.contains(IoPerm::WRITE));
    assert!(!IoPerm::READ.contains(IoPerm::WRITE));
    assert!(!IoPerm::READ.contains(rw));
    assert_eq!(IoPerm::READ.union(IoPerm::READ), IoPerm::READ);
    assert_eq!(rw.bits(), 3);
    assert_eq!(
        IoPerm::for_transfer(DataDirection::FromDevice, Attrs::MMIO),
        IoPerm::WRITE | IoPerm::MMIO
    );
    for (p, text) in [
        (IoPerm::default(), "IoPerm(---)"),
        (rw, "IoPerm(rw-)"),
        (IoPerm::MMIO, "IoPerm(--m)"),
    ] {
        assert_eq!(format!("{p:?}"), text);
    }
}
