//! Tests of the VFIO mapper against a fake type1 container.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic
)]
use super::*;
use std::cell::RefCell;

/// A fake container: records mappings with the kernel's type1 rules (EEXIST on an
/// overlapping IOVA, unmap must cover whole mappings, size reported).
#[derive(Default)]
struct Fake {
    maps: RefCell<BTreeMap<u64, (u64, u64)>>, // iova -> (vaddr, len)
    fail_map_at: Cell<Option<u64>>,           // fail the n-th map call
    calls: Cell<u64>,
}

// SAFETY: maps nothing for any device; only records.
unsafe impl VfioBackend for Fake {
    unsafe fn map_dma(
        &self,
        vaddr: VirtAddr,
        iova: DmaAddr,
        len: u64,
        _: DataDirection,
    ) -> Result<(), VfioError> {
        let n = self.calls.get();
        self.calls.set(n + 1);
        let (i, v) = (iova.as_u64(), vaddr.as_u64());
        let err = |errno| VfioError::MapDma {
            vaddr: v,
            iova: i,
            len,
            errno: Some(errno),
        };
        if self.fail_map_at.get() == Some(n) {
            return Err(err(libc::ENOMEM));
        }
        assert_eq!((i | v | len) & 0xfff, 0, "type1 maps whole pages");
        assert!(i != 0 && !(MSI_WINDOW.0..=MSI_WINDOW.1).contains(&i));
        let mut m = self.maps.borrow_mut();
        if m.iter().any(|(&s, &(_, l))| s < i + len && i < s + l) {
            return Err(err(libc::EEXIST));
        }
        m.insert(i, (v, len));
        Ok(())
    }
    fn unmap_dma(&self, iova: DmaAddr, len: u64) -> Result<(), VfioError> {
        let (i, end) = (iova.as_u64(), iova.as_u64() + len);
        let mut m = self.maps.borrow_mut();
        let inside: Vec<u64> = m
            .iter()
            .filter(|(&s, &(_, l))| s >= i && s + l <= end)
            .map(|(&s, _)| s)
            .collect();
        let mut unmapped = 0;
        for s in inside {
            unmapped += m.remove(&s).unwrap().1;
        }
        if unmapped != len {
            return Err(VfioError::UnmapDma {
                iova: i,
                len,
                errno: None,
            });
        }
        Ok(())
    }
}

fn reg(m: &VfioMapper<Fake>, r: VirtRange, d: DataDirection) -> Result<DmaRange, VfioError> {
    // SAFETY: the fake backend makes no memory device-visible.
    unsafe { m.register(r, d) }
}

fn mio<'a>(
    m: &'a VfioMapper<Fake>,
    v: &[VirtRange],
    d: DataDirection,
) -> Result<IoMapping<'a, Fake>, VfioError> {
    // SAFETY: the fake backend makes no memory device-visible.
    unsafe { m.map_io(v, d) }
}

fn mapper(width: u32) -> VfioMapper<Fake> {
    VfioMapper::new(Fake::default(), VfioIovaConfig::new(width)).unwrap()
}

#[test]
fn registered_lookup_needs_no_ioctl() {
    let m = mapper(39);
    let region = VirtRange::new(0x7000_0000_0000, 0x40_0000);
    let d = reg(&m, region, DataDirection::Bidirectional).unwrap();
    assert_eq!(
        d.addr().as_u64() % (2 << 20),
        0,
        "2 MiB aligned for large leaves"
    );
    assert_ne!(d.addr().as_u64(), 0);
    for off in [0u64, 1, 0xfff, 0x3f_ff00] {
        let t = m
            .translate(VirtRange::new(0x7000_0000_0000 + off, 0x100))
            .unwrap();
        assert_eq!(t.addr().as_u64(), d.addr().as_u64() + off);
    }
    // Past the end, before the start, empty, overflowing.
    for (a, l, kind) in [
        (0x7000_003f_ff01, 0x100, "not_registered"),
        (0x6fff_ffff_ffff, 2, "not_registered"),
        (u64::MAX, 1, "address_overflow"),
    ] {
        assert_eq!(m.translate(VirtRange::new(a, l)).unwrap_err().kind(), kind);
    }
    let s = m.stats();
    assert_eq!((s.map_ioctls, s.unmap_ioctls, s.lookups), (1, 0, 4));
    let mut out = Vec::new();
    let v = [
        VirtRange::new(0x7000_0000_0000, 8),
        VirtRange::new(0x1000, 8),
    ];
    assert_eq!(
        m.translate_all(&v, &mut out).unwrap_err().kind(),
        "not_registered"
    );
    assert_eq!(out.len(), 1);
    assert_eq!((s.regions, s.registered_bytes), (1, 0x40_0000));
    m.unregister(region).unwrap();
    assert!(m.is_idle());
    m.verify_released().unwrap();
}

#[test]
fn register_rejects_bad_regions_without_side_effects() {
    let m = mapper(39);
    let r = VirtRange::new(0x10000, 0x2000);
    let bad = [
        (VirtRange::new(0x10100, 0x1000), "unaligned"),
        (VirtRange::new(0x10000, 0x1001), "unaligned"),
        (VirtRange::new(!0xfff, 0x1000), "address_overflow"),
    ];
    for (v, kind) in bad {
        let e = reg(&m, v, DataDirection::ToDevice).unwrap_err();
        assert_eq!(e.kind(), kind, "{v:?}");
    }
    reg(&m, r, DataDirection::ToDevice).unwrap();
    for v in [
        VirtRange::new(0x11000, 0x1000),
        VirtRange::new(0xf000, 0x2000),
        VirtRange::new(0x10000, 0x2000),
    ] {
        let e = reg(&m, v, DataDirection::ToDevice).unwrap_err();
        assert_eq!(e.kind(), "overlap", "{v:?}");
    }
    // Adjacent is fine.
    let adj = VirtRange::new(0x12000, 0x1000);
    reg(&m, adj, DataDirection::ToDevice).unwrap();
    assert_eq!(m.stats().map_ioctls, 2);
    // A failing MAP_DMA frees the IOVA and registers nothing.
    m.backend().fail_map_at.set(Some(m.backend().calls.get()));
    let e = reg(&m, VirtRange::new(0x40000, 0x1000), DataDirection::ToDevice).unwrap_err();
    assert_eq!(e.kind(), "map_dma");
    assert!(e.to_string().contains("errno"), "{e}");
    assert_eq!(
        m.unregister(VirtRange::new(0x10000, 0x1000))
            .unwrap_err()
            .kind(),
        "not_registered"
    );
    m.unregister(r).unwrap();
    m.unregister(adj).unwrap();
    assert!(m.is_idle());
}

#[test]
fn per_io_keeps_offsets_merges_on_page_boundaries_and_unwinds() {
    let m = mapper(39);
    let v = [
        VirtRange::new(0x1_0234, 0xdcc),  // ends on a page boundary ...
        VirtRange::new(0x5_0000, 0x1800), // ... so this one merges
        VirtRange::new(0x9_0010, 0x10),   // mid-page: a new DMA range
    ];
    let io = mio(&m, &v, DataDirection::FromDevice).unwrap();
    let d = io.dma();
    assert_eq!(d.len(), 2);
    assert_eq!(d[0].addr().as_u64() & 0xfff, 0x234);
    assert_eq!(d[0].len(), 0xdcc + 0x1800);
    assert_eq!(d[1].addr().as_u64() & 0xfff, 0x10);
    assert_eq!(io.reservation().len(), 0x1000 + 0x2000 + 0x1000);
    assert_eq!(m.stats().live_io, 1);
    assert_eq!(m.backend().maps.borrow().len(), 3);
    io.unmap().unwrap();
    let s = m.stats();
    assert_eq!((s.map_ioctls, s.unmap_ioctls, s.live_io), (3, 1, 0));
    assert!(m.backend().maps.borrow().is_empty());
    assert!(m.is_idle());
    m.verify_released().unwrap();

    // A MAP_DMA failure in the middle unlinks what was linked, frees the space.
    m.backend()
        .fail_map_at
        .set(Some(m.backend().calls.get() + 1));
    let e = mio(&m, &v, DataDirection::ToDevice).unwrap_err();
    assert_eq!(e.kind(), "map_dma");
    assert!(m.backend().maps.borrow().is_empty());
    assert!(m.is_idle());
    // Drop unmaps too.
    {
        let _io = mio(&m, &v[..1], DataDirection::ToDevice).unwrap();
        assert_eq!(m.backend().maps.borrow().len(), 1);
    }
    assert!(m.backend().maps.borrow().is_empty() && m.is_idle());
    for (bad, kind) in [
        (VirtRange::new(u64::MAX, 1), "address_overflow"),
        (VirtRange::new(u64::MAX - 0x800, 0x100), "address_overflow"),
    ] {
        let e = mio(&m, &[bad], DataDirection::ToDevice).unwrap_err();
        assert_eq!(e.kind(), kind, "{bad:?}");
    }
    assert_eq!(
        mio(&m, &[], DataDirection::ToDevice).unwrap_err().kind(),
        "empty"
    );
}

#[test]
fn iova_rules_zero_msi_window_width() {
    // 32-bit IOMMU: the space stops below the interrupt window; 4 GiB of mappings
    // fill it without ever touching 0 or the window.
    let m = mapper(32);
    let mut regions = Vec::new();
    let chunk = 0x1000_0000u64;
    let mut va = 0x1_0000_0000u64;
    loop {
        let r = VirtRange::new(va, chunk);
        match reg(&m, r, DataDirection::Bidirectional) {
            Ok(d) => {
                let (s, e) = (d.addr().as_u64(), d.addr().as_u64() + chunk - 1);
                assert!(s != 0 && e < MSI_WINDOW.0, "{d:?}");
                regions.push(r);
            }
            Err(e) => {
                assert_eq!(e.kind(), "iova_exhausted");
                break;
            }
        }
        va += chunk;
    }
    assert_eq!(
        regions.len(),
        15,
        "0x1000..0xfee00000 holds 15 aligned 256 MiB"
    );
    // Small pieces still fit below the window, never inside it.
    let small = VirtRange::new(0x100_0000_0000, 0x1000);
    let d = reg(&m, small, DataDirection::ToDevice).unwrap();
    assert!(d.addr().as_u64() < MSI_WINDOW.0);
    // 40 bits: space above the window too.
    let m40 = mapper(40);
    let big = VirtRange::new(0x1000_0000_0000, 0x1_0000_0000);
    let d = reg(&m40, big, DataDirection::ToDevice).unwrap();
    assert!(d.addr().as_u64() > MSI_WINDOW.1);
    assert!(d.end().unwrap().as_u64() <= 1 << 40);
    assert_eq!(
        VfioMapper::new(Fake::default(), VfioIovaConfig::new(12))
            .unwrap_err()
            .kind(),
        "invalid_config"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 48, ..proptest::prelude::ProptestConfig::default()
    })]

    /// Random register / unregister / per-I/O map / unmap / translate sequences on a
    /// narrow (33-bit) IOMMU: the kernel-side mappings always equal the mapper's
    /// books, never touch IOVA 0, the interrupt window or past the width, and
    /// everything is released at the end.
    #[test]
    fn books_match_the_kernel(ops in proptest::collection::vec(
        (0u8..5, 0usize..4, 1u64..0x9000, 0u64..0x3000), 1..60)) {
        let m = mapper(33);
        let regions: [VirtRange; 4] = [
            VirtRange::new(0x10_0000_0000, 0x20_0000),
            VirtRange::new(0x10_0020_0000, 0x1000),
            VirtRange::new(0x20_0000_0000, 0x4000_0000),
            VirtRange::new(0x30_0000_0000, 0x3000),
        ];
        let mut registered = [None::<DmaRange>; 4];
        let mut ios: Vec<IoMapping<'_, Fake>> = Vec::new();
        for (op, i, len, off) in ops {
            match op {
                0 => match reg(&m, regions[i], DataDirection::Bidirectional) {
                    Ok(d) => {
                        proptest::prop_assert!(registered[i].is_none());
                        registered[i] = Some(d);
                    }
                    Err(e) => proptest::prop_assert!(
                        registered[i].is_some() && e.kind() == "overlap"
                            || e.kind() == "iova_exhausted",
                        "{e}"
                    ),
                },
                1 => proptest::prop_assert_eq!(
                    m.unregister(regions[i]).is_ok(),
                    registered[i].take().is_some()
                ),
                2 => {
                    let v = [
                        VirtRange::new(0x40_0000_0000 + off, len),
                        VirtRange::new(0x50_0000_0000 + off * 3, len + 7),
                    ];
                    let io = mio(&m, &v[..1 + i % 2], DataDirection::FromDevice).unwrap();
                    let total: u64 = io.dma().iter().map(|r| r.len()).sum();
                    proptest::prop_assert_eq!(
                        total,
                        v[..1 + i % 2].iter().map(|r| r.len()).sum::<u64>()
                    );
                    ios.push(io);
                }
                3 => {
                    if !ios.is_empty() {
                        let io = ios.swap_remove(i % ios.len());
                        if i % 2 == 0 { io.unmap().unwrap() } else { drop(io) }
                    }
                }
                _ => {
                    let r = regions[i];
                    let probe = VirtRange::new(r.addr().as_u64() + off % r.len(), 1);
                    match (m.translate(probe), registered[i]) {
                        (Ok(d), Some(reg)) => proptest::prop_assert_eq!(
                            d.addr().as_u64(),
                            reg.addr().as_u64() + off % r.len()
                        ),
                        (Err(e), None) => proptest::prop_assert_eq!(e.kind(), "not_registered"),
                        (got, want) => proptest::prop_assert!(false, "{got:?} vs {want:?}"),
                    }
                }
            }
            // The kernel's mappings are exactly the books.
            let maps = m.backend().maps.borrow();
            let reg_bytes: u64 = registered.iter().flatten().map(|d| d.len()).sum();
            let io_bytes: u64 = ios.iter().map(|io| io.reservation().len()).sum();
            let kernel_bytes: u64 = maps.values().map(|&(_, l)| l).sum();
            proptest::prop_assert_eq!(kernel_bytes, reg_bytes + io_bytes);
            for (&iova, &(_, l)) in maps.iter() {
                proptest::prop_assert!(iova != 0 && iova + l <= 1 << 33);
                proptest::prop_assert!(iova + l <= MSI_WINDOW.0 || iova > MSI_WINDOW.1);
            }
        }
        drop(ios);
        for (i, r) in regions.iter().enumerate() {
            if registered[i].is_some() {
                m.unregister(*r).unwrap();
            }
        }
        proptest::prop_assert!(m.is_idle());
        proptest::prop_assert!(m.backend().maps.borrow().is_empty());
        m.verify_released().unwrap();
    }
}

#[test]
fn open_pci_reports_the_failing_step() {
    // No such device (and usually no /dev/vfio here): a typed error, never a panic.
    let Err(e) = super::super::open_pci("ffff:ff:1f.7") else {
        panic!("opened a device that does not exist");
    };
    assert_eq!(e.kind(), "open");
    assert!(e.to_string().starts_with("cannot open VFIO "), "{e}");
}

#[test]
fn history_is_bounded() {
    let m = mapper(39);
    let v = VirtRange::new(0x1000, 0x1000);
    // Distinct extents: hold one mapping each time so the IOVA moves.
    let mut held = Vec::new();
    for _ in 0..HISTORY_MAX + 10 {
        held.push(mio(&m, &[v], DataDirection::ToDevice).unwrap());
    }
    assert_eq!(m.state.borrow().history.len(), HISTORY_MAX);
    drop(held);
    m.verify_released().unwrap();
}

#[test]
fn verify_released_catches_a_kernel_side_leak() {
    let m = mapper(39);
    let r = VirtRange::new(0x20000, 0x1000);
    let d = reg(&m, r, DataDirection::ToDevice).unwrap();
    assert_eq!(m.verify_released().unwrap_err().kind(), "still_mapped");
    m.unregister(r).unwrap();
    // Simulate a mapping the books lost: the kernel still has it.
    // SAFETY: the fake backend makes no memory device-visible.
    unsafe {
        m.backend().map_dma(
            VirtAddr::new(0x20000),
            d.addr(),
            0x1000,
            DataDirection::ToDevice,
        )
    }
    .unwrap();
    assert_eq!(
        m.verify_released(),
        Err(VfioError::StillMapped {
            iova: d.addr().as_u64(),
            len: 0x1000
        })
    );
    m.verify_released().unwrap(); // the check unmapped it
    for e in [
        VfioError::Open {
            what: "group",
            detail: "x".into(),
        },
        VfioError::UnmapDma {
            iova: 1,
            len: 2,
            errno: Some(libc::EINVAL),
        },
        VfioError::IovaExhausted { len: 3 },
        VfioError::InvalidConfig { what: "w" },
        VfioError::Unaligned {
            addr: 1,
            len: 2,
            granule: 4096,
        },
        VfioError::Overlap { addr: 1, len: 2 },
        VfioError::AddressOverflow { addr: 1, len: 2 },
        VfioError::StillMapped { iova: 1, len: 2 },
        VfioError::Empty,
    ] {
        assert!(!e.to_string().is_empty() && !e.kind().is_empty());
    }
}
