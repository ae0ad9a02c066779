//! Hardening: every decoder's documented bound on work and memory holds on worst-case
//! input (maximal chains, self-referencing segments, chain loops), decoders allocate
//! nothing, and every crash the fuzz targets found stays fixed (see FUZZING.md).
//!
//! Reads are counted through a wrapping [`MemoryReader`]; allocations through a
//! counting global allocator (per thread, so tests may run in parallel).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use physvec::map::{Attrs, DataDirection, DmaMapper, MapError, SoftIommu};
use physvec::mem::{MemoryError, MemoryReader, SliceMemory};
use physvec::nvme::{
    decode_prp, decode_sgl, DataOnly, DecodeError, DecodeOptions, MemoryPageSize, SglDescriptor,
    SglItem,
};
use physvec::sg::{
    import, PageModel, Scatterlist, SgChunk, SgImportError, SgWalk, Vmemmap, SG_WALK_DEFAULT_LIMIT,
};
use physvec::{DmaAddr, DmaArray, DmaRange, PhysAddr, PhysArray, PhysRange};

// ------------------------------------------------------------------ allocation counting

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn bump() {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: forwards every call to `System`, which upholds the `GlobalAlloc` contract; the
// per-thread counter has no effect on the memory returned.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        bump();
        // SAFETY: `ptr` came from `System` with `layout`; forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns how many allocations this thread made meanwhile.
fn allocations<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = ALLOCS.with(Cell::get);
    let r = f();
    (r, ALLOCS.with(Cell::get) - before)
}

// ------------------------------------------------------------------ counting memory

/// Wraps a reader and counts reads and the largest read.
struct Counted<M> {
    inner: M,
    reads: Cell<u64>,
    max_read: Cell<usize>,
}

impl<M> Counted<M> {
    fn new(inner: M) -> Self {
        Self {
            inner,
            reads: Cell::new(0),
            max_read: Cell::new(0),
        }
    }
}

impl<S: physvec::AddrSpace, M: MemoryReader<S>> MemoryReader<S> for Counted<M> {
    fn read(&self, addr: physvec::Addr<S>, buf: &mut [u8]) -> Result<(), MemoryError<S>> {
        self.reads.set(self.reads.get() + 1);
        self.max_read.set(self.max_read.get().max(buf.len()));
        self.inner.read(addr, buf)
    }
}

/// Memory computed from the address: `f(addr)` gives the bytes of the aligned
/// `N`-byte cell holding `addr`. Endless, never repeating structures without storing them.
struct Procedural<F, const N: usize>(F);

impl<S: physvec::AddrSpace, F: Fn(u64) -> [u8; N], const N: usize> MemoryReader<S>
    for Procedural<F, N>
{
    fn read(&self, addr: physvec::Addr<S>, buf: &mut [u8]) -> Result<(), MemoryError<S>> {
        let addr = addr.as_u64();
        for (i, b) in buf.iter_mut().enumerate() {
            let a = addr + i as u64;
            let cell = (self.0)(a - a % N as u64);
            *b = cell[(a % N as u64) as usize];
        }
        Ok(())
    }
}

const DEFAULT_BUDGET: u64 = 1 << 20;

// ------------------------------------------------------------------ PRP

#[test]
fn prp_maximal_chain_stops_at_the_budget() {
    // An endless chain of distinct list pages: slot 511 of each page points at the next
    // page, the other slots at consecutive data pages (so the output coalesces into one
    // range and only the read budget can stop the walk).
    const LIST: u64 = 0x8000_0000;
    const DATA: u64 = 0x1_0000_0000;
    let mem = Counted::new(Procedural(|a: u64| {
        let page = (a - LIST) / 4096;
        let slot = (a % 4096) / 8;
        let v = if slot == 511 {
            LIST + (page + 1) * 4096
        } else {
            DATA + (page * 511 + slot) * 4096
        };
        v.to_le_bytes()
    }));
    let mut out = DmaArray::<1>::new();
    let opts = DecodeOptions::default();
    let (r, allocs) = allocations(|| {
        decode_prp(
            physvec::DmaAddr::new(DATA - 4096),
            physvec::DmaAddr::new(LIST),
            u64::MAX,
            MemoryPageSize::SIZE_4K,
            &mem,
            &mut out,
            &opts,
        )
    });
    assert_eq!(
        r,
        Err(DecodeError::LimitExceeded {
            limit: DEFAULT_BUDGET
        })
    );
    assert_eq!(mem.reads.get(), DEFAULT_BUDGET, "reads past the budget");
    assert_eq!(mem.max_read.get(), 8);
    assert!(out.is_empty(), "sink not restored");
    assert_eq!(allocs, 0);
}

#[test]
fn prp_self_referencing_list_is_bounded() {
    // One list page whose every slot (data and chain) is its own address.
    let page = [0x8_0000u64.to_le(); 512];
    let bytes: &[u8] = bytemuck::cast_slice(&page);
    let mem = Counted::new(SliceMemory::new(physvec::DmaAddr::new(0x8_0000), bytes));
    let mut out = DmaArray::<4>::new();
    let opts = DecodeOptions::default().with_max_descriptors(5000);
    let r = decode_prp(
        physvec::DmaAddr::new(0x1_0000),
        physvec::DmaAddr::new(0x8_0000),
        u64::MAX,
        MemoryPageSize::SIZE_4K,
        &mem,
        &mut out,
        &opts,
    );
    // Repeated buffers are legal PRPs; the output sink or the budget stops it.
    assert!(matches!(
        r,
        Err(DecodeError::OutputFull | DecodeError::LimitExceeded { .. })
    ));
    assert!(mem.reads.get() <= 5000);
}

#[test]
fn prp_summary_counts_entries_and_pages() {
    // PRP2 → 3 chained list pages, 1 + 511 + 511 + 2 data pages.
    const LIST: u64 = 0x8000_0000;
    let pages = 1 + 511 + 511 + 2;
    let mem = Counted::new(Procedural(|a: u64| {
        let page = (a - LIST) / 4096;
        let slot = (a % 4096) / 8;
        let v = if slot == 511 {
            LIST + (page + 1) * 4096
        } else {
            0x1_0000_0000 + (1 + page * 511 + slot) * 4096
        };
        v.to_le_bytes()
    }));
    let mut out = DmaArray::<1>::new();
    let sum = decode_prp(
        physvec::DmaAddr::new(0x1_0000_0000),
        physvec::DmaAddr::new(LIST),
        pages * 4096,
        MemoryPageSize::SIZE_4K,
        &mem,
        &mut out,
        &DecodeOptions::default(),
    )
    .unwrap();
    assert_eq!(out.as_slice(), [DmaRange::new(0x1_0000_0000, pages * 4096)]);
    // 1024 data entries + 2 chain pointers, 3 list pages.
    assert_eq!((sum.descriptors_read, sum.segments), (1026, 3));
    assert_eq!(mem.reads.get(), 1026);
}

// ------------------------------------------------------------------ SGL

fn db(a: u64, l: u32) -> SglDescriptor {
    SglDescriptor::data_block(DmaAddr::new(a), l)
}

#[test]
fn sgl_self_referencing_segment_is_a_loop() {
    let seg = SglDescriptor::segment(DmaAddr::new(0xa000), 16);
    let bytes = seg.to_bytes();
    let mem = Counted::new(SliceMemory::new(physvec::DmaAddr::new(0xa000), &bytes));
    let mut out: Vec<SglItem> = Vec::new();
    let r = decode_sgl(seg, 0x200, &mem, &mut out, &DecodeOptions::default());
    assert_eq!(
        r,
        Err(DecodeError::LoopDetected {
            at: physvec::DmaAddr::new(0xa000)
        })
    );
    assert_eq!(r.unwrap_err().nvme_status().raw(), 0x0d);
    assert_eq!(mem.reads.get(), 1);

    // Same with data in the segment and the longest transfer: still found at once.
    let segs = [
        db(0x10000, 0x10),
        SglDescriptor::segment(DmaAddr::new(0xa000), 32),
    ];
    let bytes: Vec<u8> = segs.iter().flat_map(|d| d.to_bytes()).collect();
    let mem = Counted::new(SliceMemory::new(physvec::DmaAddr::new(0xa000), &bytes));
    let r = decode_sgl(segs[1], u64::MAX, &mem, &mut out, &DecodeOptions::default());
    assert_eq!(
        r,
        Err(DecodeError::LoopDetected {
            at: physvec::DmaAddr::new(0xa010)
        })
    );
    assert_eq!(mem.reads.get(), 2);
}

#[test]
fn sgl_maximal_chain_stops_at_the_budget() {
    // An endless chain of distinct 2-descriptor segments: [Data, Segment → next].
    const SEG: u64 = 0x8000_0000;
    let mem = Counted::new(Procedural(|a: u64| {
        let i = (a - SEG) / 32;
        let d = if a % 32 == 0 {
            db(0x1_0000_0000 + i * 0x1000, 0x1000)
        } else {
            SglDescriptor::segment(DmaAddr::new(a + 16), 32)
        };
        d.to_bytes()
    }));
    let mut ranges = DmaArray::<1>::new();
    let opts = DecodeOptions::default();
    let (r, allocs) = allocations(|| {
        let mut sink = DataOnly::new(&mut ranges);
        decode_sgl(
            SglDescriptor::segment(DmaAddr::new(SEG), 32),
            u64::MAX,
            &mem,
            &mut sink,
            &opts,
        )
    });
    assert_eq!(
        r,
        Err(DecodeError::LimitExceeded {
            limit: DEFAULT_BUDGET
        })
    );
    assert_eq!(mem.reads.get(), DEFAULT_BUDGET);
    assert_eq!(mem.max_read.get(), 16);
    // A failed decode leaves its output as it found it (empty).
    assert_eq!(ranges.len(), 0);
    assert_eq!(allocs, 0);
}

#[test]
fn sgl_huge_segment_length_costs_nothing_up_front() {
    // A Last Segment of 2^32 - 16 bytes (268 M descriptors) over unreadable memory:
    // one read fails, nothing else happens.
    let last = SglDescriptor::last_segment(DmaAddr::new(0x10_0000), u32::MAX - 15);
    let mem = Counted::new(SliceMemory::new(physvec::DmaAddr::new(0), &[]));
    let mut out: Vec<SglItem> = Vec::new();
    let r = decode_sgl(last, 0x1000, &mem, &mut out, &DecodeOptions::default());
    assert_eq!(r.unwrap_err().kind(), "memory_unreadable");
    assert_eq!(mem.reads.get(), 1);
}

// ------------------------------------------------------------------ scatterlists

#[test]
fn sg_chain_loop_is_detected() {
    let vm = Vmemmap::new(0);
    let mut a = [
        Scatterlist::page_entry(0x10 * 64, 0, 0x1000, false),
        Scatterlist::chain_entry(0x1000),
    ];
    let chunks = [SgChunk {
        addr: physvec::VirtAddr::new(0x1000),
        entries: &mut a,
    }];
    let mem = Counted::new(&chunks[..]);
    let mut out = PhysArray::<4>::new();
    let r = import(
        &mem,
        physvec::VirtAddr::new(0x1000),
        None,
        &vm,
        SG_WALK_DEFAULT_LIMIT,
        &mut out,
    );
    assert_eq!(r, Err(SgImportError::LoopDetected { at: 0x1000 }));
    assert!(mem.reads.get() <= 3, "{} reads", mem.reads.get());
}

#[test]
fn sg_loop_found_within_brent_bound() {
    // A tail of mu data entries then a cycle of lambda (each chunk of 2 slots: data,
    // chain), for several shapes; the walk reports the loop by step 2 max(mu, lambda)
    // + lambda (module docs of physvec::sg import).
    for (mu, lambda) in [(0usize, 1usize), (5, 1), (1, 5), (7, 3), (16, 16), (33, 2)] {
        let n = mu + lambda;
        let mut storage: Vec<[Scatterlist; 2]> = (0..n)
            .map(|i| {
                let next = if i + 1 < n { i + 1 } else { mu };
                [
                    Scatterlist::page_entry(i as u64 * 64, 0, 0x1000, false),
                    Scatterlist::chain_entry(0x10_0000 + next as u64 * 0x100),
                ]
            })
            .collect();
        let chunks: Vec<SgChunk> = storage
            .iter_mut()
            .enumerate()
            .map(|(i, e)| SgChunk {
                addr: physvec::VirtAddr::new(0x10_0000 + i as u64 * 0x100),
                entries: e,
            })
            .collect();
        let steps = SgWalk::new(
            &chunks[..],
            physvec::VirtAddr::new(0x10_0000),
            None,
            SG_WALK_DEFAULT_LIMIT,
        )
        .take_while(Result::is_ok)
        .count();
        let last = SgWalk::new(
            &chunks[..],
            physvec::VirtAddr::new(0x10_0000),
            None,
            SG_WALK_DEFAULT_LIMIT,
        )
        .last();
        assert!(matches!(
            last,
            Some(Err(SgImportError::LoopDetected { .. }))
        ));
        assert!(
            steps <= 2 * mu.max(lambda) + lambda,
            "mu {mu} lambda {lambda}: {steps} entries before the loop was found"
        );
    }
}

#[test]
fn sg_maximal_chain_stops_at_the_limit() {
    // An endless table of distinct, contiguous data entries (no SG_END).
    let vm = Vmemmap::new(0xffff_ea00_0000_0000);
    let mem = Counted::new(Procedural(move |a: u64| {
        let pfn = 0x100 + a / 32;
        Scatterlist::page_entry(vm.page_of(pfn).unwrap(), 0, 0x1000, false).to_le_bytes()
    }));
    let mut out = PhysArray::<1>::new();
    let (r, allocs) = allocations(|| {
        import(
            &mem,
            physvec::VirtAddr::new(0),
            None,
            &vm,
            SG_WALK_DEFAULT_LIMIT,
            &mut out,
        )
    });
    assert_eq!(
        r,
        Err(SgImportError::TooManyEntries {
            limit: SG_WALK_DEFAULT_LIMIT
        })
    );
    assert_eq!(mem.reads.get(), u64::from(SG_WALK_DEFAULT_LIMIT));
    assert_eq!(mem.max_read.get(), 32);
    // A failed import leaves its output as it found it (empty).
    assert_eq!(out.len(), 0);
    assert_eq!(allocs, 0);
}

// ------------------------------------------------------------------ fuzz regressions

/// fuzz/mapper_ops crash-c691828f: a link ending off-granule was accepted below an
/// existing link, leaving a hole inside the contiguous DMA range (the granule after
/// its end mapped bytes outside the transfer).
#[test]
fn regression_off_granule_link_below_another_is_refused() {
    let iommu = SoftIommu::new_4k();
    let dir = DataDirection::Bidirectional;
    let mut s = iommu.reserve(PhysAddr::new(0), 0x10_0000).unwrap().unwrap();
    iommu
        .link(
            &mut s,
            PhysRange::new(0x50_0000, 0x3d2d),
            0x5000,
            dir,
            Attrs::empty(),
        )
        .unwrap();
    let e = iommu
        .link(
            &mut s,
            PhysRange::new(0x60_0000, 0x3d2d),
            0,
            dir,
            Attrs::empty(),
        )
        .unwrap_err();
    assert!(matches!(e, MapError::MergeBoundary { .. }), "{e:?}");
    assert_eq!(s.linked_bytes(), 0x3d2d);
    // Aligned links below are still fine.
    iommu
        .link(
            &mut s,
            PhysRange::new(0x60_0000, 0x5000),
            0,
            dir,
            Attrs::empty(),
        )
        .unwrap();
    iommu.destroy(s, dir, Attrs::empty()).unwrap();
    assert!(iommu.is_idle());
}

/// fuzz/mapper_ops, same crash: unlinking the granule span of an off-granule last link
/// counted the never-linked bytes after it, so `linked_bytes` went wrong.
#[test]
fn regression_unlink_of_sealed_tail_counts_linked_bytes_only() {
    let iommu = SoftIommu::new_4k();
    let dir = DataDirection::Bidirectional;
    let mut s = iommu.reserve(PhysAddr::new(0), 0x10_0000).unwrap().unwrap();
    iommu
        .link(
            &mut s,
            PhysRange::new(0x60_0000, 0x5000),
            0,
            dir,
            Attrs::empty(),
        )
        .unwrap();
    iommu
        .link(
            &mut s,
            PhysRange::new(0x50_0000, 0x3d2d),
            0x5000,
            dir,
            Attrs::empty(),
        )
        .unwrap();
    iommu
        .unlink(&mut s, 0x5000, 0x4000, dir, Attrs::empty())
        .unwrap();
    assert_eq!(s.linked_bytes(), 0x5000);
    assert_eq!(
        iommu.translate(DmaAddr::new(s.addr().as_u64() + 0x5000)),
        None
    );
    iommu
        .unlink(&mut s, 0, 0x5000, dir, Attrs::empty())
        .unwrap();
    assert_eq!(s.linked_bytes(), 0);
    iommu.free(s).unwrap();
    assert!(iommu.is_idle());
}
