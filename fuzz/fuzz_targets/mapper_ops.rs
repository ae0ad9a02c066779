//! Mapper op-interpreter: reserve / link / sync / unlink / free / destroy / map_phys /
//! unmap_phys in any order through the checking wrapper (`Checked`, DMA API debug) on a
//! `SoftIommu` (fuzzed granule, aperture, DMA mask, leaf sizes), against a model of what
//! is linked where. After every operation each live
//! link and single mapping must translate (first and last byte) to the model's physical
//! address, the reservation's byte accounting must equal the model's, and whatever was
//! unlinked, freed or unmapped must no longer translate (no stale IOTLB entry), and the
//! wrapper's count of live mappings and spaces must equal the model's. At the end
//! everything is torn down: the wrapper reports no leak and the IOMMU is idle.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use physvec::map::{
    Attrs, Checked, DataDirection, DmaMapper, IommuConfig, IovaSpace, Linking, MapError, SoftIommu,
    Synced,
};
use physvec::{DmaAddr, DmaRange, PageSize, PhysAddr, PhysRange};

#[derive(Arbitrary, Debug)]
enum Op {
    Reserve {
        hint: u16,
        size: u32,
    },
    /// A link likely to satisfy the merge-boundary rule: at granule `k` of space `s`.
    Link {
        s: u8,
        k: u8,
        pfn: u32,
        pages: u8,
        tail: u16,
    },
    RawLink {
        s: u8,
        phys: u64,
        len: u32,
        offset: u64,
    },
    Sync {
        s: u8,
        whole: bool,
        offset: u32,
        size: u32,
    },
    /// Unlink link `l % 128` of space `s` exactly (`l < 128`) or its granule span
    /// (which the wrapper refuses when it holds unlinked bytes), or a raw range.
    Unlink {
        s: u8,
        l: u8,
        raw: Option<(u32, u32)>,
    },
    Free {
        s: u8,
    },
    Destroy {
        s: u8,
    },
    MapPhys {
        phys: u64,
        len: u32,
        dir: u8,
    },
    UnmapPhys {
        i: u8,
        bogus: bool,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    granule: u8,
    aperture_bits: u8,
    mask_bits: u8,
    large_leaves: bool,
    ops: Vec<Op>,
}

enum Space {
    Linking(IovaSpace<Linking>),
    Synced(IovaSpace<Synced>),
}

struct Live {
    space: Option<Space>,
    /// Model: (offset, len, phys) byte intervals currently linked.
    links: Vec<(u64, u64, u64)>,
}

impl Live {
    fn dma(&self) -> (u64, u64, u64, u64) {
        match self.space.as_ref().unwrap() {
            Space::Linking(s) => (s.addr().as_u64(), s.size(), s.pad(), s.linked_bytes()),
            Space::Synced(s) => (s.addr().as_u64(), s.size(), s.pad(), s.linked_bytes()),
        }
    }
}

const DIR: DataDirection = DataDirection::Bidirectional;

fn remove_interval(links: &mut Vec<(u64, u64, u64)>, o: u64, e: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut removed = Vec::new();
    for &(lo, ll, p) in links.iter() {
        let le = lo + ll;
        if le <= o || lo >= e {
            out.push((lo, ll, p));
            continue;
        }
        let (a, b) = (lo.max(o), le.min(e));
        removed.push((a, b - a));
        if lo < a {
            out.push((lo, a - lo, p));
        }
        if b < le {
            out.push((b, le - b, p + (b - lo)));
        }
    }
    *links = out;
    removed
}

fn check(iommu: &SoftIommu, spaces: &[Live], singles: &[(DmaRange, PhysRange, DataDirection)]) {
    for l in spaces {
        let (addr, _, _, linked) = l.dma();
        let model: u64 = l.links.iter().map(|x| x.1).sum();
        assert_eq!(linked, model, "linked bytes differ from the model");
        for &(o, len, p) in &l.links {
            let first = DmaAddr::new(addr + o);
            let last = DmaAddr::new(addr + o + len - 1);
            assert_eq!(
                iommu.translate(first),
                Some(PhysAddr::new(p)),
                "link at +{o:#x}"
            );
            assert_eq!(iommu.translate(last), Some(PhysAddr::new(p + len - 1)));
        }
    }
    for (d, p, _) in singles {
        assert_eq!(iommu.translate(d.addr()), Some(p.addr()));
        assert_eq!(iommu.translate(d.last()), Some(p.last()));
    }
}

fuzz_target!(|input: Input| {
    let gshift = [12u32, 13, 14, 16, 21][usize::from(input.granule % 5)];
    let g = PageSize::from_shift(gshift).unwrap();
    let gs = g.get();
    let ap_bits = 24 + u32::from(input.aperture_bits % 40);
    let mut cfg = IommuConfig::new(g)
        .with_aperture(gs, (1u64 << ap_bits) - 1)
        .with_large_leaves(input.large_leaves);
    if input.mask_bits % 4 == 0 {
        cfg = cfg
            .with_dma_mask(physvec::DmaMask::bits(24 + u32::from(input.mask_bits % 40)).unwrap());
    }
    let Ok(iommu) = SoftIommu::new(cfg) else {
        return;
    };
    let m = Checked::new(&iommu);
    let mut spaces: Vec<Live> = Vec::new();
    let mut singles: Vec<(DmaRange, PhysRange, DataDirection)> = Vec::new();
    let mut dead: Vec<DmaAddr> = Vec::new();

    for op in input.ops.iter().take(48) {
        dead.clear();
        match *op {
            Op::Reserve { hint, size } => {
                // Size 0 exercises the Empty error.
                let size = u64::from(size) * 64;
                if let Ok(Some(s)) = m.reserve(PhysAddr::new(u64::from(hint)), size) {
                    assert_eq!(s.pad(), u64::from(hint) % gs);
                    assert_eq!(s.size(), size);
                    assert!(s.iova_base().is_aligned(g));
                    spaces.push(Live {
                        space: Some(Space::Linking(s)),
                        links: Vec::new(),
                    });
                }
            }
            Op::Link { s, .. } | Op::RawLink { s, .. } if spaces.is_empty() => {
                let _ = s;
            }
            Op::Link {
                s,
                k,
                pfn,
                pages,
                tail,
            } => {
                let n = spaces.len();
                let l = &mut spaces[usize::from(s) % n];
                let (_, _, pad, _) = l.dma();
                let k = u64::from(k % 8);
                let (offset, phys) = if k == 0 {
                    (0, u64::from(pfn) * gs + pad)
                } else {
                    (k * gs - pad, u64::from(pfn) * gs)
                };
                let len = (u64::from(pages % 4) * gs + u64::from(tail)).max(1);
                let Ok(pr) = PhysRange::try_new(phys, len) else {
                    continue;
                };
                if let Some(Space::Linking(sp)) = l.space.as_mut() {
                    if m.link(sp, pr, offset, DIR, Attrs::empty()).is_ok() {
                        for &(o, ll, _) in &l.links {
                            assert!(o + ll <= offset || offset + len <= o, "overlapping link");
                        }
                        l.links.push((offset, len, phys));
                    }
                }
            }
            Op::RawLink {
                s,
                phys,
                len,
                offset,
            } => {
                let n = spaces.len();
                let l = &mut spaces[usize::from(s) % n];
                let Ok(pr) = PhysRange::try_new(phys, u64::from(len % (1 << 22))) else {
                    continue;
                };
                if let Some(Space::Linking(sp)) = l.space.as_mut() {
                    if m.link(sp, pr, offset, DIR, Attrs::empty()).is_ok() {
                        for &(o, ll, _) in &l.links {
                            assert!(
                                o + ll <= offset || offset + pr.len() <= o,
                                "overlapping link"
                            );
                        }
                        assert!(offset + pr.len() <= sp.size());
                        l.links.push((offset, pr.len(), phys));
                    }
                }
            }
            Op::Sync {
                s,
                whole,
                offset,
                size,
            } => {
                if spaces.is_empty() {
                    continue;
                }
                let n = spaces.len();
                let l = &mut spaces[usize::from(s) % n];
                if let Some(Space::Linking(_)) = l.space {
                    let Some(Space::Linking(sp)) = l.space.take() else {
                        unreachable!()
                    };
                    let (o, z) = if whole {
                        (0, sp.size())
                    } else {
                        (u64::from(offset), u64::from(size))
                    };
                    l.space = Some(match m.sync(sp, o, z) {
                        Ok(synced) => {
                            assert!(!l.links.is_empty(), "sync before any link accepted");
                            Space::Synced(synced)
                        }
                        Err(e) => Space::Linking(e.space),
                    });
                }
            }
            Op::Unlink { s, l: li, raw } => {
                if spaces.is_empty() {
                    continue;
                }
                let n = spaces.len();
                let l = &mut spaces[usize::from(s) % n];
                let (addr, size, pad, _) = l.dma();
                let (o, len) = match raw {
                    Some((o, z)) => (u64::from(o), u64::from(z)),
                    None if l.links.is_empty() => (0, size),
                    None if li < 128 => {
                        let (lo, ll, _) = l.links[usize::from(li) % l.links.len()];
                        (lo, ll)
                    }
                    None => {
                        // The link's granule span, clipped to the reservation.
                        let (lo, ll, _) = l.links[usize::from(li) % l.links.len()];
                        let start = (pad + lo) / gs * gs;
                        let end = ((pad + lo + ll).div_ceil(gs) * gs).min(pad + size);
                        let start = start.max(pad);
                        (start - pad, end - start)
                    }
                };
                let r = match l.space.as_mut().unwrap() {
                    Space::Linking(sp) => m.unlink(sp, o, len, DIR, Attrs::empty()),
                    Space::Synced(sp) => m.unlink(sp, o, len, DIR, Attrs::empty()),
                };
                if r.is_ok() {
                    for (a, _) in remove_interval(&mut l.links, o, o + len) {
                        dead.push(DmaAddr::new(addr + a));
                    }
                }
            }
            Op::Free { s } | Op::Destroy { s } => {
                if spaces.is_empty() {
                    continue;
                }
                let n = spaces.len();
                let l = spaces.remove(usize::from(s) % n);
                let (addr, ..) = l.dma();
                let destroy = matches!(op, Op::Destroy { .. });
                let r = match (l.space.unwrap(), destroy) {
                    (Space::Linking(sp), false) => m.free(sp),
                    (Space::Synced(sp), false) => m.free(sp),
                    (Space::Linking(sp), true) => m.destroy(sp, DIR, Attrs::empty()),
                    (Space::Synced(sp), true) => m.destroy(sp, DIR, Attrs::empty()),
                };
                match r {
                    Ok(()) => assert!(destroy || l.links.is_empty(), "free with links said Ok"),
                    Err(MapError::StillLinked { .. }) => {
                        assert!(!destroy && !l.links.is_empty(), "StillLinked without links")
                    }
                    Err(e) => panic!("free/destroy of a live space: {e:?}"),
                }
                for &(o, _, _) in &l.links {
                    dead.push(DmaAddr::new(addr + o));
                }
            }
            Op::MapPhys { phys, len, dir } => {
                // At most 4 MiB: page-table work stays small per execution.
                let Ok(pr) = PhysRange::try_new(phys, u64::from(len % (1 << 22))) else {
                    continue;
                };
                let dir =
                    [DataDirection::ToDevice, DataDirection::FromDevice, DIR][usize::from(dir % 3)];
                if let Ok(d) = m.map_phys(pr, dir, Attrs::empty()) {
                    assert_eq!(d.len(), pr.len());
                    assert!(iommu.dma_mask().covers(d));
                    singles.push((d, pr, dir));
                }
            }
            Op::UnmapPhys { i, bogus } => {
                if singles.is_empty() {
                    continue;
                }
                let k = usize::from(i) % singles.len();
                let (d, _, dir) = singles[k];
                if bogus {
                    // Not a live mapping: must be refused, and nothing unmapped.
                    let wrong = DmaRange::try_new(d.addr().as_u64(), d.len() + 1)
                        .or_else(|_| DmaRange::try_new(d.addr().as_u64() - 1, d.len()))
                        .unwrap();
                    assert!(m.unmap_phys(wrong, dir, Attrs::empty()).is_err());
                } else {
                    m.unmap_phys(d, dir, Attrs::empty())
                        .expect("unmap of a live mapping");
                    singles.remove(k);
                    dead.push(d.addr());
                    assert!(
                        m.unmap_phys(d, dir, Attrs::empty()).is_err(),
                        "double unmap"
                    );
                }
            }
        }
        check(&iommu, &spaces, &singles);
        assert_eq!(
            m.live(),
            (singles.len(), spaces.len()),
            "wrapper bookkeeping"
        );
        for &a in &dead {
            assert_eq!(iommu.translate(a), None, "stale translation at {a:?}");
        }
    }

    // Tear down: nothing may leak.
    for l in spaces {
        let r = match l.space.unwrap() {
            Space::Linking(sp) => m.destroy(sp, DIR, Attrs::empty()),
            Space::Synced(sp) => m.destroy(sp, DIR, Attrs::empty()),
        };
        r.expect("destroy");
    }
    for (d, _, dir) in singles {
        m.unmap_phys(d, dir, Attrs::empty()).expect("unmap");
    }
    assert_eq!(m.check_leaks(), Ok(()));
    let st = iommu.stats();
    assert_eq!(st.mapped_bytes, 0);
    assert!(iommu.is_idle(), "IOMMU not idle after teardown: {st:?}");
});
