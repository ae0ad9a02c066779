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

/// An SGL as comparable words: the data pointer's two halves and the segment pages.
fn sgl_out(s: physvec::nvme::Sgl, pages: &[Vec<SglDescriptor>]) -> (u64, u64, Vec<u64>) {
    let words = |b: &[u8]| -> Vec<u64> {
        b.chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let dptr = words(&s.dptr.to_bytes());
    let list = pages
        .concat()
        .iter()
        .flat_map(|d| words(&d.to_bytes()))
        .collect();
    (dptr[0], dptr[1], list)
}

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

/// A mapper without [`DmaMapper::linear`]: the fused paths take the general route
/// (`MapStream::push` then the writer's `push`) for every range.
struct NoLinear<'a>(&'a DirectMapper);

impl DmaMapper for NoLinear<'_> {
    fn granule(&self) -> PageSize {
        self.0.granule()
    }
    fn dma_mask(&self) -> DmaMask {
        self.0.dma_mask()
    }
    fn map_phys(
        &self,
        phys: PhysRange,
        dir: DataDirection,
        attrs: Attrs,
    ) -> Result<DmaRange, MapError> {
        self.0.map_phys(phys, dir, attrs)
    }
    fn need_unmap(&self) -> bool {
        self.0.need_unmap()
    }
    fn unmap_phys(&self, dma: DmaRange, dir: DataDirection, attrs: Attrs) -> Result<(), MapError> {
        self.0.unmap_phys(dma, dir, attrs)
    }
}

/// Mostly whole scattered pages (the fused loop's input), with the ranges that must
/// stop it: odd lengths and offsets, a BAR page (P2P), pages at and above a 36-bit
/// mask.
fn page_layout() -> impl Strategy<Value = Vec<PhysRange>> {
    prop::collection::vec((0u64..0x40, 0u8..24), 1..40).prop_map(|v| {
        v.into_iter()
            .map(|(page, what)| match what {
                0 => PhysRange::new(0x100_0000 + page * 0x2000 + 0x800, 0x800),
                1 => PhysRange::new(0x100_0000 + page * 0x2000, 0x800),
                2 => PhysRange::new(0x100_0000 + page * 0x2000, 0x2000),
                3 => PhysRange::new(BAR.addr().as_u64() + page * 0x1000, 0x1000),
                // The last page under the mask (offset 0) and the first above it.
                4 => PhysRange::new((1 << 36) - 0x1000 - (page % 2) * 0x1000, 0x1000),
                5 => PhysRange::new((1 << 36) + (page % 2) * 0x1000, 0x1000),
                // A run long enough for the vectorised fill.
                6 => PhysRange::new(0x200_0000 + page * 0x10_0000, 0x2_1000),
                // Two pages whose last one is the last under the mask, or above it.
                7 => PhysRange::new((1 << 36) - 0x2000 + (page % 2) * 0x1000, 0x2000),
                _ => PhysRange::new(0x100_0000 + page * 0x2000, 0x1000),
            })
            .collect()
    })
}

/// The fused PRP path through `m`: data pointer, list pages (partial lists on errors
/// included) and error. The first list page starts `first_slots` slots before the end
/// of its memory page, so short transfers chain too.
fn fused_prp<M: DmaMapper>(
    m: &M,
    phys: &[PhysRange],
    total: u64,
    p2p_kind: u8,
    first_slots: u64,
    list_pages: usize,
) -> Out {
    let regions = regions(p2p_kind);
    let p2p = P2pProviders::new(&regions);
    let opts = StreamOptions::new(DataDirection::FromDevice);
    let mut pages = vec![vec![0u64; 512]; list_pages];
    let r = (|| -> Result<(u64, u64), String> {
        let s = MapStream::start(m, &p2p, phys[0], total, opts, Vec::<DmaRange>::new())
            .map_err(|e| e.to_string())?;
        let pool = pages.iter_mut().enumerate().map(|(i, p)| {
            let bus = 0x8_0000 + 0x1000 * i as u64;
            if i == 0 {
                let skip = 512 - first_slots as usize;
                PrpListPage::new(DmaAddr::new(bus + 8 * skip as u64), &mut p[skip..])
            } else {
                PrpListPage::new(DmaAddr::new(bus), p)
            }
        });
        let (io, p) = map_prp(s, phys.iter().copied(), MemoryPageSize::SIZE_4K, pool)
            .map_err(|e| e.to_string())?;
        assert!(io.dma().is_empty(), "a direct mapping keeps nothing");
        Ok((p.prp1.as_u64(), p.prp2.as_u64()))
    })();
    r.map(|(a, b)| (a, b, pages.concat())).map_err(|e: String| {
        format!(
            "{e}; pages {:x?}",
            pages
                .concat()
                .iter()
                .filter(|&&x| x != 0)
                .collect::<Vec<_>>()
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The fused direct loop (pages straight from the input into the list page) is
    /// exactly the general path: same PRPs, same list bytes, same errors at the same
    /// range, for wrong totals, P2P pages, pages above the mask and chained lists.
    #[test]
    fn linear_loop_equals_general_path(
        phys in page_layout(),
        off in prop::sample::select(vec![0u64, 0x1_0000_0000, 0x800, 0u64.wrapping_sub(1 << 36)]),
        total_delta in prop::sample::select(vec![0i64, 0, 0, -0x1000, 0x1000, -1, 0x800]),
        p2p_kind in 0u8..3,
        first_slots in prop::sample::select(vec![512u64, 8, 2, 1]),
        bits in prop::sample::select(vec![36u32, 64]),
        list_pages in prop::sample::select(vec![3usize, 3, 1, 0]),
    ) {
        // 64 bits with the last offset: pages at 2^36 wrap past 2^64.
        let mask = DmaMask::bits(bits).unwrap();
        let d = DirectMapper::new(off, mask);
        prop_assert!(d.linear().is_some());
        let sum: u64 = phys.iter().map(|r| r.len()).sum();
        let total = sum.saturating_add_signed(total_delta);
        let fast = fused_prp(&d, &phys, total, p2p_kind, first_slots, list_pages);
        let general = fused_prp(&NoLinear(&d), &phys, total, p2p_kind, first_slots, list_pages);
        prop_assert_eq!(fast, general);
    }
}

/// 600 whole pages, most through the fused loop: the list chains from page to page and
/// the output is the list encoder's.
#[test]
fn linear_loop_chains_list_pages() {
    let phys: Vec<PhysRange> = (0..600u64)
        .map(|i| PhysRange::new(0x100_0000 + i * 0x3000, 0x1000))
        .collect();
    let d = DirectMapper::new(0x1000_0000, DmaMask::BITS_64);
    let total = 600 * 0x1000;
    let fast = fused_prp(&d, &phys, total, 0, 512, 3).unwrap();
    assert_eq!(
        fast,
        fused_prp(&NoLinear(&d), &phys, total, 0, 512, 3).unwrap()
    );
    // PRP1 is page 0; the first list page holds pages 1..=511 and the chain pointer.
    assert_eq!(fast.0, 0x1100_0000);
    assert_eq!(fast.1, 0x8_0000);
    assert_eq!(fast.2[510], (0x1100_0000u64 + 511 * 0x3000).to_le());
    assert_eq!(fast.2[511], 0x8_1000u64.to_le());
    assert_eq!(fast.2[512], (0x1100_0000u64 + 512 * 0x3000).to_le());
}

/// Ranges with byte offsets and lengths that break the dword rule, and contiguous runs.
fn sgl_layout() -> impl Strategy<Value = Vec<PhysRange>> {
    prop::collection::vec((0u64..64, 0u8..5, 0u8..5, any::<bool>()), 1..24).prop_map(|v| {
        let mut out: Vec<PhysRange> = Vec::new();
        for (page, off, len, contiguous) in v {
            let len = [0x1000u64, 0x800, 0x3000, 0x200, 0x3][len as usize];
            let a = match out.last() {
                Some(p) if contiguous => p.addr().as_u64() + p.len(),
                _ => 0x100_0000 + page * 0x4000 + [0u64, 0x800, 0x200, 0x4, 0x3][off as usize],
            };
            out.push(PhysRange::new(a, len));
        }
        out
    })
}

/// `map_sgl` (list pages, data pointer, errors) against `map_into` + `encode_sgl`.
fn sgl_both<M: DmaMapper>(
    m: &M,
    phys: &[PhysRange],
    opts: SglOptions,
    pool_pages: usize,
    slots: usize,
) -> (Out, Out) {
    let dir = DataDirection::ToDevice;
    let view = RangeView::full(phys).unwrap();
    let p2p = physvec::map::NoP2p;
    let coalesce = if merge_boundary_ok(view, m.granule()) {
        Coalesce::IfPossible
    } else {
        Coalesce::Never
    };
    let run = |fused: bool| -> Out {
        let mut pages = vec![vec![SglDescriptor::default(); slots]; pool_pages];
        let pool = pages
            .iter_mut()
            .enumerate()
            .map(|(i, p)| SglSegmentPage::new(DmaAddr::new(0x9_0000 + 0x1000 * i as u64), p));
        let s = if fused {
            let segments = 1 + phys
                .windows(2)
                .filter(|w| !w[0].is_contiguous_with(w[1]))
                .count() as u64;
            let opts_s = StreamOptions::new(dir).with_coalesce(coalesce);
            let s = MapStream::start(m, &p2p, phys[0], view.len(), opts_s, Vec::<DmaRange>::new())
                .map_err(|e| e.to_string())?;
            map_sgl(s, phys.iter().copied(), segments, opts, pool)
                .map(|(_, s)| s)
                .map_err(|e| e.to_string())?
        } else {
            let io = map_into(m, view, dir, Attrs::empty(), &p2p, Vec::<DmaRange>::new())
                .map_err(|e| e.to_string())?;
            encode_sgl(io.dma(), opts, pool).map_err(|e| e.to_string())?
        };
        Ok(sgl_out(s, &pages))
    };
    (run(false), run(true))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The fused SGL path (its in-place data-run fast path included) equals the list
    /// encoder for every capability set, key, chain workaround and pool shape: same
    /// data pointer, same segment pages, same error naming the same range.
    #[test]
    fn fused_sgl_equals_list_for_every_option(
        phys in sgl_layout(),
        direct in any::<bool>(),
        caps in prop::sample::select(vec![0x1u32, 0x2, 0x2, 0x5, 0x6, 0x6, 0x0]),
        key in prop::sample::select(vec![None, None, Some(0xabcdu32)]),
        workaround in any::<bool>(),
        pool_pages in 0usize..4,
        slots in 1usize..5,
    ) {
        let opts = SglOptions::new(physvec::nvme::SglCapabilities::from_raw(caps))
            .with_key(key)
            .with_qemu_chain_workaround(workaround);
        let iommu = SoftIommu::new_4k();
        let d = DirectMapper::new(0x1_0000_0000, DmaMask::BITS_64);
        let (list, fused) = if direct {
            sgl_both(&d, &phys, opts, pool_pages, slots)
        } else {
            sgl_both(&iommu, &phys, opts, pool_pages, slots)
        };
        prop_assert_eq!(list, fused);
        prop_assert!(iommu.is_idle());
    }
}
/// A misaligned range that starts a new data run after the fast path emitted the
/// previous one: the error names that range, as the list encoder does.
#[test]
fn fused_sgl_names_the_range_that_breaks_the_dword_rule() {
    let d = DirectMapper::new(0x1_0000_0000, DmaMask::BITS_64);
    let phys = [
        PhysRange::new(0x100_0000, 0x1000),
        PhysRange::new(0x100_8000, 0x1000),
        PhysRange::new(0x101_0000, 0x1000),
        PhysRange::new(0x101_8003, 0x1000),
    ];
    let opts = SglOptions::new(physvec::nvme::SglCapabilities::from_raw(0x2));
    let (list, fused) = sgl_both(&d, &phys, opts, 2, 4);
    assert_eq!(list, fused);
    assert!(fused.unwrap_err().starts_with("segment 3:"));
}

/// A direct mapper that counts `map_phys` calls (and hands out its linear map).
struct CountingDirect(DirectMapper, std::cell::Cell<usize>);

impl DmaMapper for CountingDirect {
    fn granule(&self) -> PageSize {
        self.0.granule()
    }
    fn dma_mask(&self) -> DmaMask {
        self.0.dma_mask()
    }
    fn map_phys(
        &self,
        phys: PhysRange,
        dir: DataDirection,
        attrs: Attrs,
    ) -> Result<DmaRange, MapError> {
        self.1.set(self.1.get() + 1);
        self.0.map_phys(phys, dir, attrs)
    }
    fn need_unmap(&self) -> bool {
        self.0.need_unmap()
    }
    fn linear(&self) -> Option<physvec::map::LinearMap> {
        self.0.linear()
    }
    fn unmap_phys(&self, dma: DmaRange, dir: DataDirection, attrs: Attrs) -> Result<(), MapError> {
        self.0.unmap_phys(dma, dir, attrs)
    }
}

/// The fused direct path really is one loop: 600 pages (two list pages) through
/// `map_prp` or `map_sgl` never call `map_phys`, through a reference to the mapper
/// too, and give what the general path gives.
#[test]
fn linear_path_is_taken() {
    let phys: Vec<PhysRange> = (0..600u64)
        .map(|i| PhysRange::new(0x100_0000 + i * 0x3000, 0x1000))
        .collect();
    let total = 600 * 0x1000;
    let d = CountingDirect(
        DirectMapper::new(0x1000_0000, DmaMask::BITS_64),
        Default::default(),
    );
    let via_ref = &d;
    let fast = fused_prp(&via_ref, &phys, total, 0, 512, 3);
    assert_eq!(d.1.get(), 0, "map_phys called on the fused PRP path");
    let plain = DirectMapper::new(0x1000_0000, DmaMask::BITS_64);
    assert_eq!(fast, fused_prp(&NoLinear(&plain), &phys, total, 0, 512, 3));
    let (list, fused) = sgl_both(&via_ref, &phys, SglOptions::default(), 3, 256);
    assert_eq!(list, fused);
    // The list path (map_into) maps every range with map_phys; the fused SGL path none.
    assert_eq!(d.1.get(), 600, "map_phys called on the fused SGL path");
}

/// `map_sgl` told the wrong number of DMA runs: too few or too many is
/// `SglError::StreamLength`, whatever the pool, and nothing written past the
/// announced count is handed to the device.
#[test]
fn fused_sgl_with_a_wrong_segment_count_is_refused() {
    let d = DirectMapper::new(0, DmaMask::BITS_64);
    let phys: Vec<PhysRange> = (0..40u64)
        .map(|k| PhysRange::new(0x100_0000 + k * 0x3000, 0x1000))
        .collect();
    let total = 40 * 0x1000;
    for segments in [39u64, 41, 1, 2] {
        let mut seg = vec![SglDescriptor::default(); 64];
        let s = MapStream::start(
            &d,
            &physvec::map::NoP2p,
            phys[0],
            total,
            StreamOptions::new(DataDirection::ToDevice),
            Vec::<DmaRange>::new(),
        )
        .unwrap();
        let pool = [SglSegmentPage::new(DmaAddr::new(0x9_0000), &mut seg)];
        let r = map_sgl(
            s,
            phys.iter().copied(),
            segments,
            SglOptions::default(),
            pool,
        );
        let e = r
            .err()
            .unwrap_or_else(|| panic!("{segments} segments accepted"));
        assert!(
            matches!(
                e,
                physvec::Error::Sgl(physvec::nvme::SglError::StreamLength { declared, streamed })
                    if declared == segments && streamed != segments
            ),
            "{segments}: {e:?}"
        );
    }
}

/// A pool that runs out several pages before the end: the fused SGL path names the
/// same number of pages needed as the list encoder, for every page size and pool.
#[test]
fn fused_sgl_counts_the_pages_still_needed() {
    let d = DirectMapper::new(0, DmaMask::BITS_64);
    let phys: Vec<PhysRange> = (0..30u64)
        .map(|k| PhysRange::new(0x100_0000 + k * 0x3000, 0x1000))
        .collect();
    for slots in [2usize, 3, 4, 7] {
        // With pages in hand the writer knows their size: the count is exact.
        let needed = physvec::nvme::sgl_segment_pages_needed(30, slots as u64);
        for pool_pages in 1..4 {
            let (list, fused) = sgl_both(&d, &phys, SglOptions::default(), pool_pages, slots);
            assert_eq!(list, fused, "{slots} slots, {pool_pages} pages");
            let want = format!("the SGL needs {needed} segment pages, only {pool_pages} ");
            assert!(
                fused.unwrap_err().starts_with(&want),
                "{slots} slots, {pool_pages} pages: want {want}"
            );
        }
    }
}

/// A run of pages that reaches past the first list page's chain slot, with more
/// entries after it: the chain pointer stays in the last slot and the run continues in
/// the next page (the writer's run fast path must not take a run that crosses it).
#[test]
fn prp_run_across_the_chain_slot() {
    use physvec::nvme::PrpWriter;
    let ranges = [
        DmaRange::new(0x10_0000, 0x1000),
        DmaRange::new(0x200_0000, 505 * 0x1000),
        // Fits in the page's slots but not before the chain slot.
        DmaRange::new(0x800_0000, 7 * 0x1000),
        DmaRange::new(0x800_7000, 13 * 0x1000),
    ];
    let mut a = vec![0u64; 512];
    let mut b = vec![0u64; 512];
    let total = 526 * 0x1000;
    let pool = [
        PrpListPage::new(DmaAddr::new(0x7000_0000), &mut a),
        PrpListPage::new(DmaAddr::new(0x7000_1000), &mut b),
    ];
    let mut w = PrpWriter::new(MemoryPageSize::SIZE_4K, total, pool);
    for r in ranges {
        w.push(r).unwrap();
    }
    let prp = w.finish().unwrap();
    assert_eq!(
        (prp.prp1.as_u64(), prp.prp2.as_u64()),
        (0x10_0000, 0x7000_0000)
    );
    let entry = |k: u64| {
        if k <= 505 {
            0x200_0000 + (k - 1) * 0x1000
        } else {
            0x800_0000 + (k - 506) * 0x1000
        }
    };
    for s in 0..511u64 {
        assert_eq!(u64::from_le(a[s as usize]), entry(s + 1), "page 1 slot {s}");
    }
    assert_eq!(u64::from_le(a[511]), 0x7000_1000, "chain pointer");
    for s in 0..14u64 {
        assert_eq!(
            u64::from_le(b[s as usize]),
            entry(512 + s),
            "page 2 slot {s}"
        );
    }
    assert_eq!(b[14], 0);
}

/// What a stream reports about itself while it runs: the I/O's P2P kind, the bytes
/// pushed so far, the announced total, whether it coalesces and stores ranges.
#[test]
fn stream_reports_its_kind_and_progress() {
    let regions = regions(0);
    let p2p = P2pProviders::new(&regions);
    let d = DirectMapper::new(0, DmaMask::BITS_64);
    let bar_page = PhysRange::new(BAR.addr().as_u64() + 0x2000, 0x1000);
    let opts = StreamOptions::new(DataDirection::ToDevice);
    let mut s = MapStream::start(&d, &p2p, bar_page, 0x2000, opts, Vec::<DmaRange>::new()).unwrap();
    assert_eq!(
        s.p2p(),
        P2pMapType::BusAddr {
            bus_offset: 0x10_0000_0000
        }
    );
    assert_eq!((s.streamed(), s.total()), (0, 0x2000));
    assert!(!s.is_coalesced() && !s.stores_ranges());
    let out = s.push(bar_page).unwrap();
    assert_eq!(
        out,
        DmaRange::new(0x10_0000_0000 + bar_page.addr().as_u64(), 0x1000)
    );
    assert_eq!(s.streamed(), 0x1000);
    s.push(PhysRange::new(BAR.addr().as_u64() + 0x8000, 0x1000))
        .unwrap();
    assert_eq!(s.streamed(), 0x2000);
    s.finish().unwrap().unmap().unwrap();

    let iommu = SoftIommu::new_4k();
    let page = PhysRange::new(0x10_0000, 0x1000);
    let mut s = MapStream::start(&iommu, &p2p, page, 0x3000, opts, Vec::<DmaRange>::new()).unwrap();
    assert_eq!(s.p2p(), P2pMapType::None);
    assert!(s.is_coalesced() && !s.stores_ranges());
    s.push(page).unwrap();
    assert_eq!((s.streamed(), s.total()), (0x1000, 0x3000));
    drop(s);
    assert!(iommu.is_idle());
}

/// The fused direct loop with page runs that reach the first list page's chain slot
/// with more entries after them (505 + 7 + 13 pages after PRP1: the run of 7 fits the
/// page's slots but not before the chain slot): the same list as without the loop.
#[test]
fn linear_runs_across_the_chain_slot() {
    let phys = [
        PhysRange::new(0x10_0000, 0x1000),
        PhysRange::new(0x200_0000, 505 * 0x1000),
        PhysRange::new(0x800_0000, 7 * 0x1000),
        PhysRange::new(0x900_0000, 13 * 0x1000),
    ];
    let d = DirectMapper::new(0x1000_0000, DmaMask::BITS_64);
    let total = 526 * 0x1000;
    let fast = fused_prp(&d, &phys, total, 0, 512, 3).unwrap();
    assert_eq!(
        fast,
        fused_prp(&NoLinear(&d), &phys, total, 0, 512, 3).unwrap()
    );
    assert_eq!(fast.2[510], (0x1800_0000u64 + 5 * 0x1000).to_le());
    assert_eq!(fast.2[511], 0x8_1000u64.to_le(), "chain pointer");
    assert_eq!(fast.2[512], (0x1800_0000u64 + 6 * 0x1000).to_le());
}
