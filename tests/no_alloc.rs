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
