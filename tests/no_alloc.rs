//! Proves the allocation-free paths allocate nothing: a counting global allocator wraps
//! the system allocator and the test asserts a zero delta around each path.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use physvec::{DmaConstraints, PageSize, PhysArray, PhysRange, RangeBuilder, RangeView};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to `System`, which upholds the `GlobalAlloc` contract;
// the counter has no effect on the returned memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: `ptr` came from `System` with `layout`; forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns how many allocations it made. Tests in this file run on one
/// thread (see `main`-less harness note below), so the count is exact.
fn allocations<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = ALLOCS.load(Ordering::SeqCst);
    let r = f();
    (r, ALLOCS.load(Ordering::SeqCst) - before)
}

// One #[test] only: the harness may run tests on several threads, and a second test's
// allocations would be counted here.
#[test]
fn allocation_free_paths_do_not_allocate() {
    let c = DmaConstraints::new()
        .with_max_segment_size(0x10000)
        .with_segment_boundary_mask(0xffff_ffff);
    let pfns: [u64; 64] = core::array::from_fn(|i| 0x1000 + (i as u64 / 4) * 8 + (i as u64 % 4));

    // Builder into a fixed-capacity array.
    let (out, n) = allocations(|| {
        let mut b = RangeBuilder::new(c, PhysArray::<32>::new()).unwrap();
        for &p in &pfns {
            b.push_pfn(p, PageSize::SIZE_4K).unwrap();
        }
        // A rejected push allocates nothing either.
        assert!(b.push_raw(0, 0).is_err());
        b.finish()
    });
    assert_eq!(n, 0, "builder into PhysArray allocated");
    assert_eq!(out.len(), 16);

    // Builder into an inline PhysVec that does not spill.
    let (v, n) = allocations(|| {
        let mut b = RangeBuilder::new(c, physvec::RangeVec::<physvec::Phys, 16>::new()).unwrap();
        for &p in &pfns {
            b.push_pfn(p, PageSize::SIZE_4K).unwrap();
        }
        b.finish()
    });
    assert_eq!(n, 0, "builder into inline PhysVec allocated");
    assert!(!v.spilled());

    // Views, windows, seeking and page iteration.
    let (sum, n) = allocations(|| {
        let w = RangeView::full(&out)
            .unwrap()
            .window(0x800, 0x20000)
            .unwrap();
        let (a, b) = w.split_at(0x1234).unwrap();
        let pages: u64 = a
            .iter()
            .chain(b.iter())
            .flat_map(|r| r.pages(PageSize::SIZE_4K))
            .map(|(_, _, l)| l)
            .sum();
        assert_eq!(w.seek(0x1000).map(|x| x.0), Some(0));
        pages
    });
    assert_eq!(n, 0, "views allocated");
    assert_eq!(sum, 0x20000);

    // The streaming per-I/O paths (issue 13): pages -> MapStream -> PRP / SGL writer,
    // direct (the fused page loop) and through the software IOMMU (link batches), with
    // list pages and per-request storage set up once, as a driver does.
    use physvec::map::{DataDirection, DirectMapper, MapStream, NoP2p, SoftIommu, StreamOptions};
    use physvec::nvme::{map_prp, map_sgl, MemoryPageSize, PrpListPage, SglDescriptor};
    use physvec::nvme::{SglOptions, SglSegmentPage};
    use physvec::{DmaAddr, DmaArray, DmaMask};
    let pages: Vec<PhysRange> = (0..512u64)
        .map(|i| PhysRange::new(0x100_0000 + i * 0x3000, 0x1000))
        .collect();
    let total = 512 * 0x1000;
    let mut list = vec![0u64; 1024];
    let mut segs = vec![SglDescriptor::default(); 600];
    let direct = DirectMapper::new(0, DmaMask::BITS_64);
    let iommu = SoftIommu::new_4k();
    let opts = StreamOptions::new(DataDirection::ToDevice);
    let prp_io = |list: &mut [u64], iommu_mode: bool| {
        let (a, b) = list.split_at_mut(512);
        let pool = [
            PrpListPage::new(DmaAddr::new(0x7000_0000), a),
            PrpListPage::new(DmaAddr::new(0x7000_1000), b),
        ];
        if iommu_mode {
            let s = MapStream::start(&iommu, &NoP2p, pages[0], total, opts, DmaArray::<4>::new())
                .unwrap();
            let (m, prp) =
                map_prp(s, pages.iter().copied(), MemoryPageSize::SIZE_4K, pool).unwrap();
            m.unmap().unwrap();
            prp.data_entries()
        } else {
            let s = MapStream::start(&direct, &NoP2p, pages[0], total, opts, DmaArray::<4>::new())
                .unwrap();
            let (m, prp) =
                map_prp(s, pages.iter().copied(), MemoryPageSize::SIZE_4K, pool).unwrap();
            m.unmap().unwrap();
            prp.data_entries()
        }
    };
    let (entries, n) = allocations(|| prp_io(&mut list, false));
    assert_eq!(n, 0, "direct pages -> PRP allocated");
    assert_eq!(entries, 512);
    // The first I/O through the IOMMU builds its page-table tables (kept afterwards, as
    // a real IOMMU's are); the next one allocates nothing.
    prp_io(&mut list, true);
    let (entries, n) = allocations(|| prp_io(&mut list, true));
    assert_eq!(n, 0, "pages -> IOMMU link batches -> PRP allocated");
    assert_eq!(entries, 512);
    assert!(iommu.is_idle());
    let (descs, n) = allocations(|| {
        let s =
            MapStream::start(&direct, &NoP2p, pages[0], total, opts, DmaArray::<4>::new()).unwrap();
        let pool = [SglSegmentPage::new(DmaAddr::new(0x7100_0000), &mut segs)];
        let (m, sgl) = map_sgl(s, pages.iter().copied(), 512, SglOptions::default(), pool).unwrap();
        m.unmap().unwrap();
        sgl.data_descriptors()
    });
    assert_eq!(n, 0, "direct pages -> SGL allocated");
    assert_eq!(descs, 512);

    // Spilling is the one path that allocates, and the counter sees it.
    let (_, n) = allocations(|| {
        let mut v = physvec::RangeVec::<physvec::Phys, 2>::new();
        for i in 0..3 {
            v.push(PhysRange::new(i * 0x10000, 0x1000));
        }
        v
    });
    assert!(n > 0, "the counter must observe a spill");
}
