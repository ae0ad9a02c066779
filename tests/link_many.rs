//! `DmaMapper::link_many`: the software IOMMU's one-pass batch (runs of scattered
//! granules mapped with one page-table pass per leaf table) is observably the default,
//! one `link` per range: the same count, the same error, the same translations,
//! statistics and bookkeeping, and both tear down to idle.

use physvec::map::{
    Attrs, DataDirection, DmaMapper, IommuConfig, IovaSpace, Linking, MapError, SoftIommu,
    SyncError,
};
use physvec::{DmaAddr, DmaMask, PageSize, PhysAddr, PhysRange};
use proptest::prelude::*;

/// How [`Wrap`] links a batch.
#[derive(Clone, Copy, PartialEq)]
enum Batch {
    /// The trait's default `link_many`: one `link` per range.
    PerLink,
    /// Link only the first half and report success (outside the trait's contract):
    /// the stream must link the rest itself.
    Half,
    /// The software IOMMU's own batch, with the `link` / `link_many` calls counted.
    Counted,
}

/// The software IOMMU behind a wrapper that changes how batches are linked.
struct Wrap<'a>(&'a SoftIommu, Batch, std::cell::Cell<(usize, usize)>);

fn per_link(iommu: &SoftIommu) -> Wrap<'_> {
    Wrap(iommu, Batch::PerLink, Default::default())
}

impl DmaMapper for Wrap<'_> {
    fn granule(&self) -> PageSize {
        self.0.granule()
    }
    fn dma_mask(&self) -> DmaMask {
        self.0.dma_mask()
    }
    fn reserve(&self, hint: PhysAddr, size: u64) -> Result<Option<IovaSpace>, MapError> {
        self.0.reserve(hint, size)
    }
    fn link(
        &self,
        space: &mut IovaSpace<Linking>,
        phys: PhysRange,
        offset: u64,
        dir: DataDirection,
        attrs: Attrs,
    ) -> Result<(), MapError> {
        let (l, m) = self.2.get();
        self.2.set((l + 1, m));
        self.0.link(space, phys, offset, dir, attrs)
    }
    fn link_many(
        &self,
        space: &mut IovaSpace<Linking>,
        phys: &[PhysRange],
        offset: u64,
        dir: DataDirection,
        attrs: Attrs,
    ) -> (usize, Result<(), MapError>) {
        let (l, m) = self.2.get();
        self.2.set((l, m + 1));
        match self.1 {
            Batch::PerLink => {
                let mut at = offset;
                for (k, &r) in phys.iter().enumerate() {
                    if let Err(e) = self.0.link(space, r, at, dir, attrs) {
                        return (k, Err(e));
                    }
                    at += r.len();
                }
                (phys.len(), Ok(()))
            }
            Batch::Half => {
                let half = phys.get(..phys.len() / 2).unwrap_or_default();
                self.0.link_many(space, half, offset, dir, attrs)
            }
            Batch::Counted => self.0.link_many(space, phys, offset, dir, attrs),
        }
    }
    fn sync(
        &self,
        space: IovaSpace<Linking>,
        offset: u64,
        size: u64,
    ) -> Result<IovaSpace<physvec::map::Synced>, SyncError> {
        self.0.sync(space, offset, size)
    }
    fn destroy<St: physvec::map::SpaceState>(
        &self,
        space: IovaSpace<St>,
        dir: DataDirection,
        attrs: Attrs,
    ) -> Result<(), MapError> {
        self.0.destroy(space, dir, attrs)
    }
    fn map_phys(
        &self,
        phys: PhysRange,
        dir: DataDirection,
        attrs: Attrs,
    ) -> Result<physvec::DmaRange, MapError> {
        self.0.map_phys(phys, dir, attrs)
    }
    fn unmap_phys(
        &self,
        dma: physvec::DmaRange,
        dir: DataDirection,
        attrs: Attrs,
    ) -> Result<(), MapError> {
        self.0.unmap_phys(dma, dir, attrs)
    }
}

/// Mostly scattered whole pages, with what must break a batch: a sub-page piece, a
/// multi-page run, a misaligned page (merge boundary), pages past the reservation.
fn ranges() -> impl Strategy<Value = Vec<PhysRange>> {
    prop::collection::vec(
        prop_oneof![
            30 => (1u64..0x4000).prop_map(|p| PhysRange::new(p << 12, 0x1000)),
            1 => (1u64..0x4000).prop_map(|p| PhysRange::new(p << 12, 0x800)),
            1 => (1u64..0x4000).prop_map(|p| PhysRange::new((p << 12) + 0x800, 0x800)),
            1 => (1u64..0x400).prop_map(|p| PhysRange::new(p << 16, 0x3000)),
            1 => (1u64..0x4000).prop_map(|p| PhysRange::new((p << 12) + 0x200, 0x1000)),
        ],
        1..700,
    )
}

/// What a scenario shows: each call's result, the bytes linked, the translations of
/// the reservation's pages, the IOMMU's statistics.
type Observed = (
    Vec<(usize, Result<(), MapError>)>,
    u64,
    Vec<Option<u64>>,
    String,
);

/// Runs one scenario on `m`: reserve `size` bytes (sub-page offset of the first range),
/// then each `(offset, batch)` call of `link_many` in order (later calls may overlap,
/// leave holes or go below earlier ones), then report everything observable.
fn run<M: DmaMapper>(
    m: &M,
    iommu: &SoftIommu,
    calls: &[(u64, &[PhysRange])],
    size: u64,
) -> Observed {
    let dir = DataDirection::ToDevice;
    let mut space = m
        .reserve(calls[0].1[0].addr(), size)
        .unwrap()
        .expect("an IOMMU reserves");
    let results = calls
        .iter()
        .map(|&(offset, batch)| m.link_many(&mut space, batch, offset, dir, Attrs::empty()))
        .collect();
    let linked = space.linked_bytes();
    let base = space.addr().as_u64();
    let seen: Vec<Option<u64>> = (0..size.div_ceil(0x1000) + 1)
        .map(|k| {
            iommu
                .translate(DmaAddr::new(base + k * 0x1000 + 0x18))
                .map(|p| p.as_u64())
        })
        .collect();
    let mut stats = iommu.stats();
    // Translations above went through (and filled) the IOTLB on both sides alike.
    stats.iotlb_hits = 0;
    let report = format!("{stats:?}");
    m.destroy(space, dir, Attrs::empty()).unwrap();
    assert!(iommu.is_idle(), "destroy left the IOMMU busy");
    (results, linked, seen, report)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// One or two calls: the second links the rest of the ranges at the exact end of
    /// the first (a continuation), at the next granule (a hole after an off-granule
    /// end: sealed), at offset 0 (below what is linked) or over the first call's
    /// IOVA (already mapped).
    #[test]
    fn batch_equals_one_link_per_range(
        mut batch in ranges(),
        pure in any::<bool>(),
        split in any::<prop::sample::Index>(),
        second in 0u8..5,
        slack in prop::sample::select(vec![0u64, 0, 0x1000, 0x10_0000, 0]),
        short in prop::sample::select(vec![0u64, 0, 0, 0x3000]),
        offset_pages in prop::sample::select(vec![0u64, 0, 1, 3]),
    ) {
        if pure {
            // Whole pages only: batches run to the end of the reservation.
            batch.retain(|r| r.len() == 0x1000 && r.addr().as_u64() & 0xfff == 0);
            prop_assume!(!batch.is_empty());
        }
        let total: u64 = batch.iter().map(|r| r.len()).sum();
        // Sometimes too small for the batch: links past the end are refused.
        let size = (total + slack + (offset_pages << 12) + 0x1000).saturating_sub(short).max(1);
        let offset = offset_pages << 12;
        let k = split.index(batch.len()) + 1;
        let (one, two) = batch.split_at(k);
        let first_len: u64 = one.iter().map(|r| r.len()).sum();
        let calls: Vec<(u64, &[PhysRange])> = match second {
            0 => vec![(offset, &batch[..])],
            _ if two.is_empty() => vec![(offset, one)],
            1 => vec![(offset, one), (offset + first_len, two)],
            2 => vec![(offset, one), ((offset + first_len).next_multiple_of(0x1000), two)],
            3 => vec![(offset, one), (0, two)],
            _ => vec![(offset, one), (offset, two)],
        };
        let (a, b) = (SoftIommu::new_4k(), SoftIommu::new_4k());
        let fast = run(&a, &a, &calls, size);
        let slow = run(&per_link(&b), &b, &calls, size);
        prop_assert_eq!(fast, slow);
    }
}

/// Granules that cross leaf tables (a 2 MiB boundary of the IOVA) with the large-leaf
/// configuration: the batch still maps 4 KiB leaves, as separate links would.
#[test]
fn batch_across_leaf_tables() {
    let cfg = IommuConfig {
        large_leaves: true,
        ..IommuConfig::default()
    };
    let a = SoftIommu::new(cfg).unwrap();
    let b = SoftIommu::new(cfg).unwrap();
    let batch: Vec<PhysRange> = (0..1500u64)
        .map(|k| PhysRange::new(0x4000_0000 + ((k * 7919) % 0x8000) * 0x1000, 0x1000))
        .collect();
    let size = 1500 * 0x1000;
    let fast = run(&a, &a, &[(0, &batch)], size);
    assert_eq!(fast.0, vec![(1500, Ok(()))]);
    assert_eq!(fast, run(&per_link(&b), &b, &[(0, &batch)], size));
}

/// Whole-granule runs in a batch: each is mapped as its own `link` would map it, a 2 MiB
/// run at a 2 MiB-aligned IOVA and physical address with one large leaf, 64 KiB runs
/// with granule leaves, single pages in one pass; the same leaves, counts and
/// translations as one `link` per range.
#[test]
fn batch_with_runs_and_large_leaves() {
    let cfg = IommuConfig {
        large_leaves: true,
        ..IommuConfig::default()
    };
    let a = SoftIommu::new(cfg).unwrap();
    let b = SoftIommu::new(cfg).unwrap();
    let mut batch = vec![PhysRange::new(0x4000_0000, 0x20_0000)];
    batch.extend((0..40u64).map(|k| PhysRange::new(0x5000_0000 + k * 0x7000, 0x1000)));
    batch.extend((0..8u64).map(|k| PhysRange::new(0x6000_0000 + k * 0x2_0000, 0x1_0000)));
    batch.push(PhysRange::new(0x7000_0000, 0x20_0000));
    let size: u64 = batch.iter().map(|r| r.len()).sum();
    let fast = run(&a, &a, &[(0, &batch)], size);
    assert_eq!(fast.0, vec![(batch.len(), Ok(()))]);
    // The first run lands 2 MiB-aligned: one large leaf; the rest are 4 KiB leaves.
    assert!(fast.3.contains("leaves: [680, 1, 0]"), "{}", fast.3);
    assert_eq!(fast, run(&per_link(&b), &b, &[(0, &batch)], size));
}

/// Runs `pages` through `MapStream` + `map_prp` on `m` (backed by `iommu`) and checks,
/// while the mapping is live, that the device reaches every page where its PRP entry
/// says; then unmaps and checks the IOMMU is idle.
fn fused_prp_translates<M: DmaMapper>(m: &M, iommu: &SoftIommu, pages: &[PhysRange]) {
    use physvec::map::{MapStream, NoP2p, StreamOptions};
    use physvec::nvme::{map_prp, MemoryPageSize, PrpListPage};
    let total: u64 = pages.iter().map(|r| r.len()).sum();
    let mut list = vec![0u64; 512];
    let opts = StreamOptions::new(DataDirection::FromDevice);
    let s = MapStream::start(m, &NoP2p, pages[0], total, opts, Vec::new()).unwrap();
    let pool = [PrpListPage::new(DmaAddr::new(0x7000_0000), &mut list)];
    let (io, prp) = map_prp(s, pages.iter().copied(), MemoryPageSize::SIZE_4K, pool).unwrap();
    assert_eq!(io.iova_syncs(), 1);
    let entries: Vec<u64> = std::iter::once(prp.prp1.as_u64())
        .chain(list.iter().take(pages.len() - 1).map(|&e| u64::from_le(e)))
        .collect();
    for (k, (&dma, page)) in entries.iter().zip(pages).enumerate() {
        let seen = iommu
            .translate(DmaAddr::new(dma + 0x18))
            .map(|p| p.as_u64());
        assert_eq!(seen, Some(page.addr().as_u64() + 0x18), "page {k}");
    }
    io.unmap().unwrap();
    assert!(iommu.is_idle());
}

/// Every page of a fused `map_prp` through the IOMMU is reachable by the device where
/// its PRP entry says (the device-visible result, not just the PRP bytes), through the
/// real batch, through a reference, and through a mapper that links only half of each
/// batch and claims success (the stream links the rest).
#[test]
fn fused_prp_pages_translate_to_their_frames() {
    let pages: Vec<PhysRange> = (0..300u64)
        .map(|k| PhysRange::new(0x10_0000 + ((k * 7919) % 0x4000) * 0x1000, 0x1000))
        .collect();
    let iommu = SoftIommu::new_4k();
    fused_prp_translates(&iommu, &iommu, &pages);
    fused_prp_translates(&&iommu, &iommu, &pages);
    fused_prp_translates(
        &Wrap(&iommu, Batch::Half, Default::default()),
        &iommu,
        &pages,
    );
    // The batches really are batches: the first range alone, then one call per 64.
    let counting = Wrap(&iommu, Batch::Counted, Default::default());
    fused_prp_translates(&counting, &iommu, &pages);
    assert_eq!(counting.2.get(), (1, 299usize.div_ceil(64)));
}

/// `push_batch` is for a stream that links into an IOVA reservation: `None` (nothing
/// done) on a direct stream, for an empty batch, and once the stream has failed.
#[test]
fn push_batch_only_on_a_linking_stream() {
    use physvec::map::{DirectMapper, MapStream, NoP2p, StreamOptions};
    use physvec::DmaArray;
    let pages = [
        PhysRange::new(0x5000, 0x1000),
        PhysRange::new(0x9000, 0x1000),
    ];
    let opts = StreamOptions::new(DataDirection::ToDevice);
    let d = DirectMapper::new(0, DmaMask::BITS_64);
    let mut s = MapStream::start(&d, &NoP2p, pages[0], 0x2000, opts, DmaArray::<0>::new()).unwrap();
    assert!(
        s.push_batch(&pages).is_none(),
        "a direct stream maps range by range"
    );
    let iommu = SoftIommu::new_4k();
    let mut s =
        MapStream::start(&iommu, &NoP2p, pages[0], 0x2000, opts, DmaArray::<0>::new()).unwrap();
    assert!(s.push_batch(&[]).is_none());
    // Past the announced total: the stream fails, unwinds, and takes no more batches.
    let three = [pages[0], pages[1], PhysRange::new(0xd000, 0x1000)];
    assert!(matches!(s.push_batch(&three), Some(Err(_))));
    assert!(s.push_batch(&pages).is_none());
    drop(s);
    assert!(iommu.is_idle());
}

/// A peer-memory range inside a batch of ordinary pages through the IOMMU: refused with
/// its index, as when pushed alone, and nothing stays mapped.
#[test]
fn a_p2p_range_inside_a_link_batch_is_refused_with_its_index() {
    use physvec::map::{MapStream, P2pMapType, P2pProviders, P2pRegion, StreamOptions};
    use physvec::nvme::{map_prp, MemoryPageSize, PrpListPage};
    let bar = PhysRange::new(0xE000_0000, 0x10_0000);
    let regions = [P2pRegion {
        bar,
        map: P2pMapType::BusAddr {
            bus_offset: 0x10_0000_0000,
        },
    }];
    let p2p = P2pProviders::new(&regions);
    let mut pages: Vec<PhysRange> = (0..40u64)
        .map(|k| PhysRange::new(0x10_0000 + k * 0x3000, 0x1000))
        .collect();
    pages[10] = PhysRange::new(0xE000_4000, 0x1000);
    let iommu = SoftIommu::new_4k();
    let mut list = vec![0u64; 512];
    let s = MapStream::start(
        &iommu,
        &p2p,
        pages[0],
        40 * 0x1000,
        StreamOptions::new(DataDirection::ToDevice),
        Vec::new(),
    )
    .unwrap();
    let pool = [PrpListPage::new(DmaAddr::new(0x7000_0000), &mut list)];
    let r = map_prp(s, pages.iter().copied(), MemoryPageSize::SIZE_4K, pool);
    assert!(
        matches!(
            r,
            Err(physvec::Error::Map(MapError::MixedP2p { index: 10 }))
        ),
        "{r:?}"
    );
    assert!(iommu.is_idle());
}
