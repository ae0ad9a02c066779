//! Property tests of the scatterlist adapter: export → import round trips for every chunk
//! size, the DMA view's limits, and bounded walks over arbitrary bytes.

use physvec::mem::SliceMemory;
use physvec::sg::{
    entries_needed, export, import, import_dma, iommu_iova_len, iommu_map_sg, IommuSgParams,
    Scatterlist, SgChunk, SgWalk, Vmemmap,
};
use physvec::{DmaAddr, DmaRange, PageSize, PhysRange, RangeView};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

const VM: Vmemmap = Vmemmap::new(Vmemmap::X86_64_DEFAULT_BASE);

/// Ranges that are often contiguous with their predecessor (so merging is exercised).
fn ranges() -> impl Strategy<Value = Vec<PhysRange>> {
    prop::collection::vec(
        (any::<bool>(), 0u64..0x40, 0u64..0x1000, 1u64..0x6000),
        1..24,
    )
    .prop_map(|v| {
        let mut out: Vec<PhysRange> = Vec::new();
        let mut next = 0x10_0000u64;
        for (contig, gap_pages, off, len) in v {
            let addr = if contig {
                next
            } else {
                next + (gap_pages + 1) * 0x1000 + off
            };
            out.push(PhysRange::new(addr, len));
            next = addr + len;
        }
        out
    })
}

fn coalesce<S: physvec::AddrSpace>(v: &[physvec::Range<S>]) -> Vec<physvec::Range<S>> {
    let mut out: Vec<physvec::Range<S>> = Vec::new();
    for &r in v {
        match out.last_mut().and_then(|l| l.merge(r).map(|m| (l, m))) {
            Some((l, m)) => *l = m,
            None => out.push(r),
        }
    }
    out
}

fn alloc_chunks(n: usize, cap: usize) -> Vec<Vec<Scatterlist>> {
    vec![vec![Scatterlist::default(); cap]; n]
}

fn chunk_refs(store: &mut [Vec<Scatterlist>]) -> Vec<SgChunk<'_>> {
    store
        .iter_mut()
        .enumerate()
        .map(|(i, e)| SgChunk {
            addr: physvec::VirtAddr::new(0x4000_0000 + (i as u64) * 0x10_0000),
            entries: e,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("proptest-regressions/sg.txt"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn export_import_round_trips(r in ranges(), cap in 2usize..12, max_pages in 1u32..8) {
        let max = max_pages * 0x1000 + 0x123; // rounded down to pages by the exporter
        let view = RangeView::full(&r).unwrap();
        let n = entries_needed(&view, max).unwrap() as usize;
        let mut store = alloc_chunks(n, cap);
        let mut chunks = chunk_refs(&mut store);
        let x = export(&view, &VM, max, &mut chunks).unwrap();
        prop_assert_eq!(x.table.orig_nents as usize, n);
        prop_assert_eq!(x.table.nents as usize, n);
        // Every entry respects the kernel's page rules.
        let mut seen = 0;
        for e in SgWalk::new(&chunks[..], physvec::VirtAddr::new(x.table.sgl), Some(x.table.orig_nents), 1 << 16) {
            let e = e.unwrap().entry;
            prop_assert!(e.offset < 4096);
            prop_assert!(e.length > 0);
            prop_assert!(u64::from(e.offset) + u64::from(e.length) <= u64::from(max & !0xfff));
            seen += 1;
        }
        prop_assert_eq!(seen, n);
        // Round trip, with and without the entry count.
        let mut back: Vec<PhysRange> = Vec::new();
        import(&chunks[..], physvec::VirtAddr::new(x.table.sgl), None, &VM, 1 << 16, &mut back).unwrap();
        prop_assert_eq!(&back, &coalesce(&r));
        let mut back2: Vec<PhysRange> = Vec::new();
        import(&chunks[..], physvec::VirtAddr::new(x.table.sgl), Some(x.table.orig_nents), &VM, 1 << 16, &mut back2).unwrap();
        prop_assert_eq!(back2, back);
        // Full chunks hold cap - 1 entries and a chain to the next chunk.
        for c in 0..x.chunks.saturating_sub(1) {
            prop_assert!(chunks[c].entries[cap - 1].is_chain());
            prop_assert_eq!(chunks[c].entries[cap - 1].chain_ptr(), chunks[c + 1].addr.as_u64());
        }
    }

    #[test]
    fn dma_view_respects_limits(
        r in ranges(),
        boundary_shift in 13u32..22,
        max_pages in 1u32..6,
        extra in 0u32..0x1000,
    ) {
        let mask = (1u64 << boundary_shift) - 1;
        let max_seg = max_pages * 0x1000 + extra;
        // Entries may not exceed the max segment size: export with that limit.
        let export_max = max_seg.max(0x1000);
        let view = RangeView::full(&r).unwrap();
        let n = entries_needed(&view, export_max).unwrap() as usize;
        let mut store = alloc_chunks(1, n);
        let mut chunks = chunk_refs(&mut store);
        let mut t = export(&view, &VM, export_max, &mut chunks).unwrap().table;
        let p = IommuSgParams { granule: PageSize::SIZE_4K, seg_boundary_mask: mask, max_seg_size: max_seg };
        let len = match iommu_iova_len(&chunks[..], &t, &VM, p, 1 << 16) {
            Ok(len) => len,
            Err(e) => { prop_assert!(matches!(e.kind(), "segment_too_long" | "crosses_boundary")); return Ok(()); }
        };
        let base = 1u64 << 40; // aligned to every boundary
        let mut spans: Vec<(DmaAddr, PhysRange)> = Vec::new();
        let nents = iommu_map_sg(&mut chunks[..], &mut t, &VM, p, DmaAddr::new(base), 1 << 16, |_, d, s| {
            spans.push((d, s));
            true
        }).unwrap();
        prop_assert!(nents <= t.orig_nents);
        prop_assert_eq!(spans.len(), t.orig_nents as usize);
        // IOVA spans are granule-aligned, ordered, disjoint, inside the allocation.
        let mut end = base;
        for (d, s) in &spans {
            prop_assert_eq!(d.as_u64() % 0x1000, 0);
            prop_assert!(d.as_u64() >= end);
            end = d.as_u64() + s.len();
        }
        prop_assert!(end <= base + len);
        // The DMA segments: within max_seg, never across a boundary.
        let mut segs: Vec<DmaRange> = Vec::new();
        import_dma(&chunks[..], &t, 1 << 16, &mut segs).unwrap();
        prop_assert_eq!(segs.len(), nents as usize);
        for s in &segs {
            prop_assert!(s.len() <= u64::from(max_seg));
            prop_assert_eq!(s.addr().as_u64() & !mask, s.last().as_u64() & !mask);
        }
        // Byte for byte, the DMA segments are the entries' IOVA ranges.
        let mut per_entry: Vec<DmaRange> = Vec::new();
        for (e, (d, s)) in SgWalk::new(&chunks[..], physvec::VirtAddr::new(t.sgl), Some(t.orig_nents), 1 << 16).zip(&spans) {
            let e = e.unwrap().entry;
            let phys = physvec::sg::entry_phys(&VM, 0, &e).unwrap();
            let off = phys.addr().as_u64() - s.addr().as_u64();
            per_entry.push(DmaRange::new(d.as_u64() + off, phys.len()));
        }
        prop_assert_eq!(coalesce(&segs), coalesce(&per_entry));
    }

    #[test]
    fn walks_of_arbitrary_bytes_are_bounded(bytes in prop::collection::vec(any::<u8>(), 0..512), start in 0u64..16, mutate in prop::collection::vec((0usize..16, 0u64..0x300), 0..8)) {
        let mut bytes = bytes;
        // Sprinkle plausible chain links into the garbage.
        for (slot, target) in mutate {
            let at = slot * 32;
            if at + 8 <= bytes.len() {
                bytes[at..at + 8].copy_from_slice(&((0x1000 + target * 8) | 1).to_le_bytes());
            }
        }
        let mem = SliceMemory::new(physvec::VirtAddr::new(0x1000), &bytes);
        let mut out: Vec<PhysRange> = Vec::new();
        let limit = 64;
        let r = import(&mem, physvec::VirtAddr::new(0x1000 + start * 8), None, &Vmemmap::new(0), limit, &mut out);
        if let Ok(n) = r {
            prop_assert!(n <= limit);
        }
        let steps = SgWalk::new(&mem, physvec::VirtAddr::new(0x1000), None, limit).count();
        prop_assert!(steps <= limit as usize + 1);
    }
}

#[test]
fn every_small_chunk_size_round_trips_a_long_list() {
    let r: Vec<PhysRange> = (0..300)
        .map(|i| PhysRange::new(0x100_0000 + i * 0x3000, 0x1000))
        .collect();
    let view = RangeView::full(&r).unwrap();
    for cap in 2..=130 {
        let mut store = alloc_chunks(300, cap);
        let mut chunks = chunk_refs(&mut store);
        let x = export(&view, &VM, u32::MAX, &mut chunks).unwrap();
        let mut back: Vec<PhysRange> = Vec::new();
        import(
            &chunks[..],
            physvec::VirtAddr::new(x.table.sgl),
            Some(300),
            &VM,
            1 << 12,
            &mut back,
        )
        .unwrap();
        assert_eq!(back, r, "chunk size {cap}");
        let expected_chunks = if cap >= 300 {
            1
        } else {
            (300 - 1 + cap - 2) / (cap - 1)
        };
        assert_eq!(x.chunks, expected_chunks, "chunk size {cap}");
    }
}

/// A two-entry table (one chunk) whose DMA fields are given.
fn dma_table(dma: [(u64, u32); 2]) -> (Vec<Scatterlist>, physvec::sg::SgTable) {
    let page = physvec::sg::PageModel::page_of(&VM, 0x100).unwrap();
    let mut e = vec![Scatterlist::default(); 2];
    for (i, (addr, len)) in dma.into_iter().enumerate() {
        e[i].page_link = page;
        e[i].length = 0x1000;
        e[i].dma_address = addr;
        e[i].dma_length = len;
    }
    e[1].page_link |= physvec::sg::SG_END;
    let t = physvec::sg::SgTable {
        sgl: 0x4000_0000,
        nents: 2,
        orig_nents: 2,
    };
    (e, t)
}

#[test]
fn import_dma_refuses_an_entry_without_a_dma_mapping() {
    use physvec::sg::{SgImportError, DMA_MAPPING_ERROR};
    // Either mark of "not mapped" alone is enough: a mapping error address, or a length 0.
    for bad in [(DMA_MAPPING_ERROR, 0x1000), (0x8000_0000, 0)] {
        let (mut e, t) = dma_table([(0x7000_0000, 0x1000), bad]);
        let chunks = [SgChunk {
            addr: physvec::VirtAddr::new(t.sgl),
            entries: &mut e,
        }];
        let mut segs: Vec<DmaRange> = Vec::new();
        assert_eq!(
            import_dma(&chunks[..], &t, 16, &mut segs),
            Err(SgImportError::NotDmaMapped { index: 1 }),
            "{bad:x?}"
        );
    }
    let (mut e, t) = dma_table([(0x7000_0000, 0x1000), (0x8000_0000, 0x200)]);
    let chunks = [SgChunk {
        addr: physvec::VirtAddr::new(t.sgl),
        entries: &mut e,
    }];
    let mut segs: Vec<DmaRange> = Vec::new();
    assert_eq!(import_dma(&chunks[..], &t, 16, &mut segs), Ok(2));
    assert_eq!(
        segs,
        [
            DmaRange::new(0x7000_0000, 0x1000),
            DmaRange::new(0x8000_0000, 0x200)
        ]
    );
}

#[test]
fn import_errors_say_what_and_where() {
    use physvec::sg::SgImportError as E;
    // `at` is the CLI's position: a byte address for walk errors, an entry index for
    // entry errors, none for table-wide ones.
    let cases: [(E, Option<u64>, &str); 8] = [
        (E::Unreadable { addr: 0x4000 }, Some(0x4000), "0x4000"),
        (E::LoopDetected { at: 0x4020 }, Some(0x4020), "0x4020"),
        (
            E::InvalidChain {
                at: 0x4040,
                target: 0x7,
            },
            Some(0x4040),
            "0x4040",
        ),
        (E::AddressOverflow { at: 0x4060 }, Some(0x4060), "0x4060"),
        (
            E::BadPageLink {
                index: 3,
                page: 0x401,
            },
            Some(3),
            "entry 3",
        ),
        (E::EmptyEntry { index: 4 }, Some(4), "entry 4"),
        (E::SinkFull { index: 5 }, Some(5), "5"),
        (
            E::Truncated {
                expected: 4,
                found: 2,
            },
            None,
            "2 entries",
        ),
    ];
    for (e, at, text) in cases {
        assert_eq!(e.at(), at, "{e:?}");
        let shown = e.to_string();
        assert!(shown.contains(text), "{shown}");
    }
    assert_eq!(E::EntryOverflow { index: 6 }.at(), Some(6));
    assert_eq!(E::NotDmaMapped { index: 7 }.at(), Some(7));
    assert_eq!(E::TooManyEntries { limit: 8 }.at(), None);
    // Debug shows addresses and page pointers in hex.
    assert_eq!(
        format!(
            "{:?}",
            E::BadPageLink {
                index: 2,
                page: 0xffffea0000000401
            }
        ),
        "BadPageLink { index: 2, page: 0xffffea0000000401 }"
    );
    assert_eq!(
        format!("{:?}", E::Unreadable { addr: 0x4000 }),
        "Unreadable { addr: 0x4000 }"
    );
}

#[test]
fn import_bio_vecs_counts_every_bvec_and_rolls_back_on_error() {
    use physvec::sg::{import_bio_vecs, BioVec, SgImportError};
    let page = |pfn: u64| physvec::sg::PageModel::page_of(&VM, pfn).unwrap();
    let bv = [
        BioVec {
            bv_page: page(5),
            bv_len: 0x200,
            bv_offset: 0xe00,
        },
        // A multi-page bvec: the offset is past the first page.
        BioVec {
            bv_page: page(5),
            bv_len: 0x1000,
            bv_offset: 0x1000,
        },
        BioVec {
            bv_page: page(9),
            bv_len: 0x80,
            bv_offset: 0x10,
        },
    ];
    let mut out: Vec<PhysRange> = Vec::new();
    assert_eq!(import_bio_vecs(&bv, &VM, &mut out), Ok(3));
    assert_eq!(
        out,
        [PhysRange::new(0x5e00, 0x1200), PhysRange::new(0x9010, 0x80)]
    );
    let bad = [bv[0], BioVec { bv_len: 0, ..bv[2] }];
    let mut out: Vec<PhysRange> = vec![PhysRange::new(0x1000, 0x10)];
    assert_eq!(
        import_bio_vecs(&bad, &VM, &mut out),
        Err(SgImportError::EmptyEntry { index: 1 })
    );
    assert_eq!(out, [PhysRange::new(0x1000, 0x10)]);
}

/// The IOVA length a table of `entries` needs under `p` (one range per entry).
fn iova_len_of(entries: &[PhysRange], p: IommuSgParams) -> Result<u64, physvec::sg::SgDmaError> {
    let view = RangeView::full(entries).unwrap();
    let mut store = alloc_chunks(1, entries.len());
    let mut chunks = chunk_refs(&mut store);
    let t = export(&view, &VM, u32::MAX, &mut chunks).unwrap().table;
    assert_eq!(t.orig_nents as usize, entries.len(), "one entry per range");
    iommu_iova_len(&chunks[..], &t, &VM, p, 1 << 16)
}

/// `dma_get_max_seg_size()` is inclusive: an entry of exactly that length is mapped, one
/// byte more is refused with the entry's index and length.
#[test]
fn max_segment_size_is_inclusive() {
    use physvec::sg::SgDmaError;
    let p = IommuSgParams {
        granule: PageSize::SIZE_4K,
        seg_boundary_mask: u64::MAX,
        max_seg_size: 0x3000,
    };
    let first = PhysRange::new(0x10_0000, 0x1000);
    assert_eq!(
        iova_len_of(&[first, PhysRange::new(0x20_0000, 0x3000)], p),
        Ok(0x4000)
    );
    assert_eq!(
        iova_len_of(&[first, PhysRange::new(0x20_0000, 0x3001)], p),
        Err(SgDmaError::SegmentTooLong {
            index: 1,
            len: 0x3001
        })
    );
}

/// An entry whose granule-aligned span fills a whole segment-boundary window exactly is
/// placed (padded to the window); a span one granule larger can never fit and is refused.
#[test]
fn an_entry_may_fill_a_boundary_window_exactly() {
    use physvec::sg::SgDmaError;
    let p = IommuSgParams {
        granule: PageSize::SIZE_4K,
        seg_boundary_mask: 0xffff,
        max_seg_size: u32::MAX,
    };
    let first = PhysRange::new(0x10_0000, 0x1000);
    // 0x800 into a granule, 0xf800 long: its aligned span is exactly 64 KiB, padded
    // from 0x1000 to the next window.
    assert_eq!(
        iova_len_of(&[first, PhysRange::new(0x20_0800, 0xf800)], p),
        Ok(0x2_0000)
    );
    assert_eq!(
        iova_len_of(&[first, PhysRange::new(0x20_0800, 0xf801)], p),
        Err(SgDmaError::CrossesBoundary { index: 1 })
    );
}

/// Every DMA-view error explains itself and names where.
#[test]
fn sg_dma_errors_name_what_and_where() {
    use physvec::sg::SgDmaError;
    let cases = [
        (SgDmaError::InvalidParams, "segment boundary mask"),
        (
            SgDmaError::SegmentTooLong {
                index: 3,
                len: 0x3001,
            },
            "entry 3 of 0x3001 bytes exceeds the max segment size",
        ),
        (
            SgDmaError::CrossesBoundary { index: 2 },
            "entry 2 is larger than a segment boundary window",
        ),
        (
            SgDmaError::BadIovaBase {
                base: 0x1800,
                len: 0x2000,
            },
            "IOVA base 0x1800 cannot hold 0x2000 bytes",
        ),
        (SgDmaError::IovaOverflow, "exceeds 2^64"),
        (SgDmaError::MapFailed { index: 5 }, "mapping entry 5 failed"),
        (SgDmaError::Unwritable { addr: 0x4000 }, "entry at 0x4000"),
    ];
    for (e, text) in cases {
        let s = e.to_string();
        assert!(s.contains(text), "{s:?} lacks {text:?}");
    }
}

/// Padding happens only when an entry would cross into the next boundary window: an
/// entry that exactly fills the rest of the window is placed without padding, one
/// granule more is padded to the next window (the kernel's `pad_len < s_length - 1`).
#[test]
fn an_entry_that_fills_the_window_is_not_padded() {
    let first = PhysRange::new(0x10_0000, 0x1000);
    for granule in [PageSize::SIZE_4K, PageSize::new(1).unwrap()] {
        let p = IommuSgParams {
            granule,
            seg_boundary_mask: 0xffff,
            max_seg_size: u32::MAX,
        };
        // 0x1000 + 0xf000 ends exactly at the window's end.
        assert_eq!(
            iova_len_of(&[first, PhysRange::new(0x20_0000, 0xf000)], p),
            Ok(0x1_0000),
            "granule {granule:?}"
        );
        // One byte more crosses: padded by 0xf000 to 0x1_0000, then the entry's
        // granule-aligned span.
        let aligned = if granule == PageSize::SIZE_4K {
            0x1_0000
        } else {
            0xf001
        };
        assert_eq!(
            iova_len_of(&[first, PhysRange::new(0x20_0000, 0xf001)], p),
            Ok(0x1_0000 + aligned),
            "granule {granule:?}"
        );
    }
}

/// Maps a one-range-per-entry table through `iommu_map_sg` at `base`; returns `nents`
/// and the DMA segments.
fn iommu_segments(entries: &[PhysRange], p: IommuSgParams, base: u64) -> (u32, Vec<DmaRange>) {
    let view = RangeView::full(entries).unwrap();
    let mut store = alloc_chunks(1, entries.len());
    let mut chunks = chunk_refs(&mut store);
    let mut t = export(&view, &VM, u32::MAX, &mut chunks).unwrap().table;
    let n = iommu_map_sg(
        &mut chunks[..],
        &mut t,
        &VM,
        p,
        DmaAddr::new(base),
        64,
        |_, _, _| true,
    )
    .unwrap();
    let mut segs: Vec<DmaRange> = Vec::new();
    import_dma(&chunks[..], &t, 64, &mut segs).unwrap();
    (n, segs)
}

/// `__finalise_sg` merges an entry into the previous DMA segment only when the previous
/// entry ended on a granule: after a short entry the IOVA has a hole up to the granule,
/// and the next entry starts a new segment.
#[test]
fn a_short_entry_ends_its_dma_segment() {
    let p = IommuSgParams {
        granule: PageSize::SIZE_4K,
        seg_boundary_mask: u64::MAX,
        max_seg_size: 0x10000,
    };
    let base = 0xf000_0000;
    let b = PhysRange::new(0x20_0000, 0x1000);
    // Ends on a granule: one segment.
    assert_eq!(
        iommu_segments(&[PhysRange::new(0x10_0000, 0x1000), b], p, base),
        (1, vec![DmaRange::new(base, 0x2000)])
    );
    // Ends 0x800 into a granule: IOVA [base + 0x800, base + 0x1000) maps nothing of
    // the transfer, so the next entry is its own segment.
    assert_eq!(
        iommu_segments(&[PhysRange::new(0x10_0000, 0x800), b], p, base),
        (
            2,
            vec![
                DmaRange::new(base, 0x800),
                DmaRange::new(base + 0x1000, 0x1000)
            ]
        )
    );
}

/// Without an IOMMU every entry is its own DMA segment at `phys + dma_offset`, and
/// `nents == orig_nents`. A DMA range may end exactly at 2^64; one that would pass it
/// is refused.
#[test]
fn direct_map_sg_offsets_every_entry() {
    use physvec::sg::{direct_map_sg, SgDmaError};
    let entries = [
        PhysRange::new(0x10_0000, 0x1000),
        PhysRange::new(0x10_3000, 0x800),
        PhysRange::new(0x30_0000, 0x2000),
    ];
    let map = |entries: &[PhysRange], offset: u64| {
        let view = RangeView::full(entries).unwrap();
        let mut store = alloc_chunks(1, entries.len());
        let mut chunks = chunk_refs(&mut store);
        let mut t = export(&view, &VM, u32::MAX, &mut chunks).unwrap().table;
        let n = direct_map_sg(&mut chunks[..], &mut t, &VM, offset, 64)?;
        assert_eq!((n, t.nents), (t.orig_nents, t.orig_nents));
        let mut segs: Vec<DmaRange> = Vec::new();
        import_dma(&chunks[..], &t, 64, &mut segs).unwrap();
        Ok::<_, SgDmaError>(segs)
    };
    assert_eq!(
        map(&entries, 0x8000_0000).unwrap(),
        [
            DmaRange::new(0x8010_0000, 0x1000),
            DmaRange::new(0x8010_3000, 0x800),
            DmaRange::new(0x8030_0000, 0x2000),
        ]
    );
    let last = [PhysRange::new(0x10_0000, 0x1000)];
    let to_top = u64::MAX - 0x10_0fff;
    assert_eq!(
        map(&last, to_top).unwrap(),
        [DmaRange::new(u64::MAX - 0xfff, 0x1000)]
    );
    assert_eq!(map(&last, to_top + 1), Err(SgDmaError::IovaOverflow));
}

/// Export errors: `Debug` with addresses and frame numbers in hex, `Display` that says
/// what is wrong and where.
#[test]
fn sg_export_errors_print_what_and_where() {
    use physvec::sg::SgExportError;
    let cases = [
        (SgExportError::Empty, "Empty", "no ranges to export"),
        (
            SgExportError::InvalidMaxSegmentSize {
                max_segment_size: 0x800,
            },
            "InvalidMaxSegmentSize { max_segment_size: 0x800 }",
            "max_segment_size 0x800 is below one 4 KiB page",
        ),
        (
            SgExportError::NoStructPage {
                index: 2,
                pfn: 0x1234,
            },
            "NoStructPage { index: 2, pfn: 0x1234 }",
            "entry 2: the page model has no aligned struct page for pfn 0x1234",
        ),
        (
            SgExportError::TooManyEntries,
            "TooManyEntries",
            "more than u32::MAX entries",
        ),
        (
            SgExportError::TooFewChunks {
                entries: 1,
                needed: 2,
                chunks: 1,
            },
            "TooFewChunks { entries: 1, needed: 2, chunks: 1 }",
            "1 entry need 2 chunks (with chain entries), only 1 was supplied",
        ),
        (
            SgExportError::ChunkTooSmall { chunk: 3 },
            "ChunkTooSmall { chunk: 3 }",
            "chunk 3 is too small to hold an entry and a chain link",
        ),
        (
            SgExportError::MisalignedChunk {
                chunk: 1,
                addr: 0x8004,
            },
            "MisalignedChunk { chunk: 1, addr: 0x8004 }",
            "chunk 1",
        ),
    ];
    for (e, debug, display) in cases {
        assert_eq!(format!("{e:?}"), debug);
        let s = e.to_string();
        assert!(s.contains(display), "{s:?} lacks {display:?}");
    }
}

/// Memory with `struct page`s only for frames below `end_pfn` (a vmemmap at 0 for them;
/// MMIO and P2P memory above).
/// `tagged_pfn`'s page pointer has a low bit set, as no real `struct page *` has.
struct PagesBelow {
    end_pfn: u64,
    tagged_pfn: u64,
}

impl physvec::sg::PageModel for PagesBelow {
    fn page_of(&self, pfn: u64) -> Option<u64> {
        (pfn < self.end_pfn).then(|| pfn * 64 + u64::from(pfn == self.tagged_pfn) * 2)
    }
    fn pfn_of(&self, page: u64) -> Option<u64> {
        (page % 64 == 0 && page / 64 < self.end_pfn).then_some(page / 64)
    }
}

/// A range in memory without `struct page` cannot go into a scatterlist: export names
/// the entry and its frame, and writes nothing.
#[test]
fn export_refuses_memory_without_struct_page() {
    use physvec::sg::SgExportError;
    let model = PagesBelow {
        end_pfn: 0x1000,
        tagged_pfn: 0x300,
    };
    let r = [
        PhysRange::new(0x10_0000, 0x1000),
        PhysRange::new(0x20_0800, 0x800),
        PhysRange::new(0x1234_5000, 0x2000),
    ];
    let view = RangeView::full(&r).unwrap();
    let mut store = alloc_chunks(1, 4);
    let mut chunks = chunk_refs(&mut store);
    let e = export(&view, &model, u32::MAX, &mut chunks).unwrap_err();
    assert_eq!(
        e,
        SgExportError::NoStructPage {
            index: 2,
            pfn: 0x12345
        }
    );
    assert!(store[0].iter().all(|e| *e == Scatterlist::default()));
    // Below the limit the same model exports.
    let view = RangeView::full(&r[..2]).unwrap();
    let mut chunks = chunk_refs(&mut store);
    assert_eq!(
        export(&view, &model, u32::MAX, &mut chunks)
            .unwrap()
            .table
            .orig_nents,
        2
    );
    // A page pointer with tag bits set cannot be stored in `page_link`.
    let r = [
        PhysRange::new(0x10_0000, 0x1000),
        PhysRange::new(0x30_0000, 0x10),
    ];
    let view = RangeView::full(&r).unwrap();
    let mut chunks = chunk_refs(&mut store);
    assert_eq!(
        export(&view, &model, u32::MAX, &mut chunks).unwrap_err(),
        SgExportError::NoStructPage {
            index: 1,
            pfn: 0x300
        }
    );
}

/// Too few chunks: the error says how many chunks of the last one's size the table
/// needs (each holds `cap - 1` entries and a chain link, the last one `cap`).
#[test]
fn too_few_chunks_says_how_many_are_needed() {
    use physvec::sg::SgExportError;
    // `n` separate pages.
    let pages = |n: u64| -> Vec<PhysRange> {
        (0..n)
            .map(|i| PhysRange::new(0x10_0000 + i * 0x2000, 0x1000))
            .collect()
    };
    for (n, caps, needed) in [
        (10u64, vec![4usize], 3usize), // 3 + 3 + 4
        (6, vec![4], 2),               // 3 + 3 (the last may hold 4)
        (10, vec![4, 4], 3),           // 3 + 3 + 4
        (11, vec![4, 4], 4),           // 3 + 3 + 3 + 2
        (5, vec![], 1),                // no chunk to measure: at least one
    ] {
        let r = pages(n);
        let view = RangeView::full(&r).unwrap();
        let mut store: Vec<Vec<Scatterlist>> = caps
            .iter()
            .map(|&c| vec![Scatterlist::default(); c])
            .collect();
        let mut chunks = chunk_refs(&mut store);
        assert_eq!(
            export(&view, &VM, u32::MAX, &mut chunks).unwrap_err(),
            SgExportError::TooFewChunks {
                entries: n as u32,
                needed,
                chunks: caps.len()
            },
            "{n} entries in chunks of {caps:?}"
        );
        // And that many chunks of the last size are enough (with none supplied, the
        // count is only a lower bound).
        let Some(&cap) = caps.last() else { continue };
        let mut store: Vec<Vec<Scatterlist>> = caps
            .iter()
            .copied()
            .chain(std::iter::repeat(cap))
            .take(needed.max(caps.len()))
            .map(|c| vec![Scatterlist::default(); c])
            .collect();
        let mut chunks = chunk_refs(&mut store);
        assert_eq!(
            export(&view, &VM, u32::MAX, &mut chunks).map(|e| e.table.orig_nents),
            Ok(n as u32),
            "{n} entries in {needed} chunks"
        );
    }
}

/// A chunk address must be 8-byte aligned, and the chunk must end below 2^64.
#[test]
fn misaligned_or_wrapping_chunks_are_refused() {
    use physvec::sg::{SgChunk, SgExportError};
    let r = [PhysRange::new(0x10_0000, 0x1000)];
    let view = RangeView::full(&r).unwrap();
    let size = physvec::sg::Scatterlist::SIZE as u64;
    // The end (one past the last byte) must be a u64: a chunk may end 8 bytes below
    // 2^64, not at it.
    let top = 0u64.wrapping_sub(size);
    for (addr, ok) in [
        (0x1004u64, false),
        (0x1008, true),
        (top - 8, true),
        (top, false),
        (top + 8, false),
    ] {
        let mut e = [Scatterlist::default(); 1];
        let mut chunks = [SgChunk {
            addr: physvec::VirtAddr::new(addr),
            entries: &mut e,
        }];
        let got = export(&view, &VM, u32::MAX, &mut chunks).map(|x| x.table.orig_nents);
        if ok {
            assert_eq!(got, Ok(1), "chunk at {addr:#x}");
        } else {
            assert_eq!(
                got,
                Err(SgExportError::MisalignedChunk { chunk: 0, addr }),
                "chunk at {addr:#x}"
            );
        }
    }
}

/// The `struct scatterlist` ABI values a device-side or kernel-side consumer relies on.
#[test]
fn scatterlist_abi_constants() {
    use physvec::sg::{
        DMA_MAPPING_ERROR, SG_CHAIN, SG_DMA_BUS_ADDRESS, SG_DMA_SWIOTLB, SG_END, SG_PAGE_LINK_MASK,
    };
    assert_eq!((SG_CHAIN, SG_END, SG_PAGE_LINK_MASK), (1, 2, 3));
    assert_eq!((SG_DMA_BUS_ADDRESS, SG_DMA_SWIOTLB), (1, 2));
    assert_eq!(DMA_MAPPING_ERROR, u64::MAX);
}

/// The kernel structures print with every address and pointer field in hex, as a
/// kernel developer reads them in a crash dump.
#[test]
fn kernel_structures_debug_in_hex() {
    use physvec::sg::{BioVec, SgTable};
    let e = Scatterlist::page_entry(0xffff_ea00_0000_0400, 0x200, 0x1000, true);
    assert_eq!(
        format!("{e:?}"),
        "Scatterlist { page_link: 0xffffea0000000402, offset: 0x200, length: 0x1000, \
         dma_address: 0x0, dma_length: 0x0, dma_flags: 0x0 }"
    );
    let t = SgTable {
        sgl: 0x8_0000,
        nents: 2,
        orig_nents: 3,
    };
    assert_eq!(
        format!("{t:?}"),
        "SgTable { sgl: 0x80000, nents: 2, orig_nents: 3 }"
    );
    let b = BioVec {
        bv_page: 0xffff_ea00_0000_0040,
        bv_len: 0x1000,
        bv_offset: 0x10,
    };
    assert_eq!(
        format!("{b:?}"),
        "BioVec { bv_page: 0xffffea0000000040, bv_len: 0x1000, bv_offset: 0x10 }"
    );
}

/// A page model behind a reference is the model itself; `Vmemmap::base` drops the two
/// tag bits.
#[test]
fn page_models_by_reference_and_vmemmap_base() {
    use physvec::sg::PageModel;
    let vm = Vmemmap::new(Vmemmap::X86_64_DEFAULT_BASE | 3);
    assert_eq!(vm.base(), Vmemmap::X86_64_DEFAULT_BASE);
    let by_ref = &vm;
    for pfn in [0u64, 1, 0x12345] {
        let page = vm.page_of(pfn);
        assert_eq!(PageModel::page_of(&by_ref, pfn), page);
        assert_eq!(page, Some(Vmemmap::X86_64_DEFAULT_BASE + pfn * 64));
        assert_eq!(PageModel::pfn_of(&by_ref, page.unwrap()), Some(pfn));
    }
    // Exporting through `&&Vmemmap` writes the same table.
    let r = [
        PhysRange::new(0x10_0000, 0x1000),
        PhysRange::new(0x30_0200, 0x800),
    ];
    let view = RangeView::full(&r).unwrap();
    let mut a = alloc_chunks(1, 2);
    let mut b = alloc_chunks(1, 2);
    export(&view, &vm, u32::MAX, &mut chunk_refs(&mut a)).unwrap();
    export(&view, &by_ref, u32::MAX, &mut chunk_refs(&mut b)).unwrap();
    assert_eq!(a, b);
}
