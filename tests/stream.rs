//! The streaming core against the list APIs: for every input (small proptest case
//! counts), a `MapStream` fed range by range gives the same DMA view, the same errors
//! and the same unwinding as `map_into`, and the fused `map_prp` / `map_sgl` give the
//! same command data pointer and list pages as `map_into` + `encode_prp` / `encode_sgl`.

use physvec::map::{
    map_into, merge_boundary_ok, Attrs, BouncePool, Coalesce, DataDirection, DirectMapper,
    DmaMapper, Keep, MapError, MapStream, P2pMapType, P2pProviders, P2pRegion, SoftIommu,
    StreamOptions,
};
use physvec::nvme::{
    encode_prp, encode_sgl, map_prp, map_sgl, MemoryPageSize, PrpListPage, SglDescriptor,
    SglOptions, SglSegmentPage,
};
use physvec::{DmaAddr, DmaMask, DmaRange, PageSize, PhysAddr, PhysRange, RangeView};
use proptest::prelude::*;

const BAR: PhysRange = PhysRange::new(0xE000_0000, 0x100_0000);

fn regions(kind: u8) -> [P2pRegion; 1] {
    [P2pRegion {
        bar: BAR,
        map: match kind {
            0 => P2pMapType::BusAddr {
                bus_offset: 0x10_0000_0000,
            },
            1 => P2pMapType::ThruHostBridge,
            _ => P2pMapType::NotSupported,
        },
    }]
}

/// Ranges on a coarse grid: page-aligned or not, contiguous or not, sometimes in the BAR.
fn layout() -> impl Strategy<Value = Vec<PhysRange>> {
    prop::collection::vec((0u64..64, 0u8..4, 0u8..4, any::<bool>(), 0u8..10), 1..12).prop_map(|v| {
        let mut out: Vec<PhysRange> = Vec::new();
        for (page, off, len, contiguous, bar) in v {
            let len = [0x1000u64, 0x800, 0x3000, 0x200][len as usize];
            let base = if bar == 0 {
                BAR.addr().as_u64()
            } else {
                0x100_0000
            };
            let a = match out.last() {
                Some(p) if contiguous => p.addr().as_u64() + p.len(),
                _ => base + page * 0x4000 + [0u64, 0x800, 0x200, 0x4][off as usize],
            };
            out.push(PhysRange::new(a, len));
        }
        out
    })
}

/// `map_into` and a stream with the plan `map_into` would choose: DMA view or error.
fn both<M: DmaMapper>(
    m: &M,
    p2p: &P2pProviders<'_>,
    phys: &[PhysRange],
) -> (
    Result<Vec<DmaRange>, MapError>,
    Result<Vec<DmaRange>, MapError>,
) {
    let dir = DataDirection::ToDevice;
    let view = RangeView::full(phys).unwrap();
    let list = map_into(m, view, dir, Attrs::empty(), p2p, Vec::<DmaRange>::new())
        .map(|io| io.dma().to_vec());
    let coalesce = if merge_boundary_ok(view, m.granule()) {
        Coalesce::IfPossible
    } else {
        Coalesce::Never
    };
    let opts = StreamOptions::new(dir)
        .with_coalesce(coalesce)
        .with_keep(Keep::All);
    let stream = (|| {
        let mut s = MapStream::start(m, p2p, phys[0], view.len(), opts, Vec::<DmaRange>::new())?;
        let mut pieces: Vec<DmaRange> = Vec::new();
        for &r in phys {
            pieces.push(s.push(r)?);
        }
        let io = s.finish()?;
        // What the stream handed out, coalesced, is the DMA view it keeps.
        let mut merged: Vec<DmaRange> = Vec::new();
        for p in pieces {
            match merged.last_mut().and_then(|l| l.merge(p).map(|m| (l, m))) {
                Some((l, m)) if io.is_coalesced() => *l = m,
                _ => merged.push(p),
            }
        }
        assert_eq!(merged, io.dma());
        Ok(io.dma().to_vec())
    })();
    (list, stream)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn stream_equals_map_into(phys in layout(), kind in 0u8..3, which in 0u8..3) {
        let r = regions(kind);
        let p2p = P2pProviders::new(&r);
        let iommu = SoftIommu::new_4k();
        let (list, stream) = match which {
            0 => both(&iommu, &p2p, &phys),
            1 => both(&DirectMapper::new(0, DmaMask::BITS_64), &p2p, &phys),
            _ => {
                // A 32-bit device with a small bounce pool: per-range mappings that need
                // unmapping, some failing part-way.
                let d = DirectMapper::new(0, DmaMask::BITS_32)
                    .with_bounce_pool(BouncePool::new(PhysAddr::new(0x1_0000), PageSize::SIZE_4K, 4).unwrap());
                let hi: Vec<PhysRange> = phys
                    .iter()
                    .map(|r| PhysRange::new(r.addr().as_u64() + 0xffff_0000, r.len()))
                    .collect();
                let b = both(&d, &p2p, &hi);
                prop_assert_eq!(d.bounce_pool().map(|p| p.live()), Some(0));
                b
            }
        };
        prop_assert_eq!(list, stream);
        prop_assert_eq!(iommu.stats().mapped_bytes, 0);
        prop_assert_eq!(iommu.stats().allocations, 0);
    }

    /// The fused paths equal map_into + the list encoders, through an IOMMU and direct.
    #[test]
    fn fused_equals_list(phys in layout(), direct in any::<bool>(), sgl in any::<bool>()) {
        prop_assume!(!phys.iter().any(|r| BAR.overlaps(*r)));
        let iommu = SoftIommu::new_4k();
        let d = DirectMapper::new(0x1_0000_0000, DmaMask::BITS_64);
        let (list, stream) = if direct {
            fused(&d, &phys, sgl)
        } else {
            fused(&iommu, &phys, sgl)
        };
        prop_assert_eq!(list, stream);
        prop_assert_eq!(iommu.stats().mapped_bytes, 0);
    }
}

type Out = Result<(u64, u64, Vec<u64>), String>;

/// (list, fused): the data pointer as two u64s and the list pages' content.
fn fused<M: DmaMapper>(m: &M, phys: &[PhysRange], sgl: bool) -> (Out, Out) {
    let dir = DataDirection::ToDevice;
    let view = RangeView::full(phys).unwrap();
    let p2p = physvec::map::NoP2p;
    let mergeable = merge_boundary_ok(view, m.granule());
    let coalesce = if mergeable {
        Coalesce::IfPossible
    } else {
        Coalesce::Never
    };
    let mps = MemoryPageSize::SIZE_4K;
    let prp_out = |p: physvec::nvme::Prp, pages: &[Vec<u64>]| {
        (p.prp1.as_u64(), p.prp2.as_u64(), pages.concat())
    };
    let sgl_out = |s: physvec::nvme::Sgl, pages: &[Vec<SglDescriptor>]| {
        let b = s.dptr.to_bytes();
        let words: Vec<u64> = pages
            .concat()
            .iter()
            .flat_map(|d| {
                d.to_bytes()
                    .chunks(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                    .collect::<Vec<_>>()
            })
            .collect();
        (
            u64::from_le_bytes(b[..8].try_into().unwrap()),
            u64::from_le_bytes(b[8..].try_into().unwrap()),
            words,
        )
    };
    let list: Out = (|| {
        let io = map_into(m, view, dir, Attrs::empty(), &p2p, Vec::<DmaRange>::new())
            .map_err(|e| e.to_string())?;
        if sgl {
            let mut pages = vec![vec![SglDescriptor::default(); 4]; 4];
            let pool = pages
                .iter_mut()
                .enumerate()
                .map(|(i, p)| SglSegmentPage::new(DmaAddr::new(0x9_0000 + 0x1000 * i as u64), p));
            let s = encode_sgl(io.dma(), SglOptions::default(), pool).map_err(|e| e.to_string())?;
            Ok(sgl_out(s, &pages))
        } else {
            let mut pages = vec![vec![0u64; 512]; 2];
            let pool = pages
                .iter_mut()
                .enumerate()
                .map(|(i, p)| PrpListPage::new(DmaAddr::new(0x8_0000 + 0x1000 * i as u64), p));
            let p = encode_prp(io.dma(), mps, pool).map_err(|e| e.to_string())?;
            Ok(prp_out(p, &pages))
        }
    })();
    let stream: Out = (|| {
        let opts = StreamOptions::new(dir).with_coalesce(coalesce);
        let s = MapStream::start(m, &p2p, phys[0], view.len(), opts, Vec::<DmaRange>::new())
            .map_err(|e| e.to_string())?;
        if sgl {
            let segments = 1 + phys
                .windows(2)
                .filter(|w| !w[0].is_contiguous_with(w[1]))
                .count() as u64;
            let mut pages = vec![vec![SglDescriptor::default(); 4]; 4];
            let pool = pages
                .iter_mut()
                .enumerate()
                .map(|(i, p)| SglSegmentPage::new(DmaAddr::new(0x9_0000 + 0x1000 * i as u64), p));
            let (io, s) = map_sgl(
                s,
                phys.iter().copied(),
                segments,
                SglOptions::default(),
                pool,
            )
            .map_err(|e| e.to_string())?;
            drop(io);
            Ok(sgl_out(s, &pages))
        } else {
            let mut pages = vec![vec![0u64; 512]; 2];
            let pool = pages
                .iter_mut()
                .enumerate()
                .map(|(i, p)| PrpListPage::new(DmaAddr::new(0x8_0000 + 0x1000 * i as u64), p));
            let (io, p) = map_prp(s, phys.iter().copied(), mps, pool).map_err(|e| e.to_string())?;
            drop(io);
            Ok(prp_out(p, &pages))
        }
    })();
    (list, stream)
}
