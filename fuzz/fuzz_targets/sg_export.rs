//! Scatterlist export of arbitrary range lists into arbitrary chunks (capacities,
//! addresses, a page model whose `struct page`s may run out). Checks: no panic; the
//! entry count equals `entries_needed`; nothing is written unless the whole table fits;
//! every entry obeys the kernel's rules (offset < 4 KiB, non-zero length, page span at
//! most the rounded-down maximum segment); chunks chain as `chunk_split` says; and
//! walking the table back (`import`) gives the input, coalesced.
#![no_main]

mod common;

use arbitrary::Arbitrary;
use common::coalesce;
use libfuzzer_sys::fuzz_target;
use physvec::sg::{
    chunk_split, entries_needed, export, import, PageModel, Scatterlist, SgChunk, SgExportError,
    Vmemmap,
};
use physvec::{PhysRange, PhysVec, RangeView};

#[derive(Arbitrary, Debug)]
enum Piece {
    /// `pages` whole frames at `pfn` plus `tail` bytes, starting `head` bytes in.
    Pages {
        pfn: u32,
        head: u16,
        pages: u8,
        tail: u16,
    },
    /// Continues the previous range.
    Contig(u16),
    /// Anywhere (frames near 2^52 reach the page model's limit).
    Raw(u64, u16),
}

#[derive(Arbitrary, Debug)]
struct Input {
    max_segment_size: u32,
    /// Vmemmap base: low (every frame has a page) or high (frames above a limit have none).
    high_base: bool,
    chunks: Vec<(u8, u8)>,
    pieces: Vec<Piece>,
}

const MARK: u64 = 0xdead_beef_dead_beef;

fuzz_target!(|input: Input| {
    let mut ranges: Vec<PhysRange> = Vec::new();
    for p in input.pieces.iter().take(24) {
        let r = match *p {
            Piece::Pages {
                pfn,
                head,
                pages,
                tail,
            } => {
                let a = (u64::from(pfn) << 12) + u64::from(head % 4096);
                let l = (u64::from(pages) << 12) + u64::from(tail);
                PhysRange::try_new(a, l)
            }
            Piece::Contig(l) => match ranges.last().and_then(|r| r.end_u64()) {
                Some(e) => PhysRange::try_new(e, u64::from(l)),
                None => continue,
            },
            Piece::Raw(a, l) => PhysRange::try_new(a, u64::from(l)),
        };
        if let Ok(r) = r {
            ranges.push(r);
        }
    }
    let Ok(view) = RangeView::full(&ranges) else {
        return;
    };
    let vm = Vmemmap::new(if input.high_base {
        0xffff_f000_0000_0000
    } else {
        Vmemmap::X86_64_DEFAULT_BASE & 0xffff_0000_0000
    });
    let mut store: Vec<Vec<Scatterlist>> = input
        .chunks
        .iter()
        .take(16)
        .map(|&(cap, _)| {
            vec![
                Scatterlist {
                    page_link: MARK,
                    ..Scatterlist::default()
                };
                usize::from(cap % 40)
            ]
        })
        .collect();
    let addrs: Vec<u64> = input
        .chunks
        .iter()
        .take(16)
        .enumerate()
        // Chunk i at 1 MiB * (i + 1), sometimes 4 bytes off (misaligned).
        .map(|(i, &(_, skew))| ((i as u64 + 1) << 20) + if skew >= 250 { 4 } else { 0 })
        .collect();
    let mut chunks: Vec<SgChunk> = store
        .iter_mut()
        .zip(&addrs)
        .map(|(e, &addr)| SgChunk {
            addr: physvec::VirtAddr::new(addr),
            entries: e,
        })
        .collect();
    let needed = entries_needed(&view, input.max_segment_size);
    let r = export(&view, &vm, input.max_segment_size, &mut chunks);
    let untouched = |chunks: &[SgChunk]| {
        chunks
            .iter()
            .all(|c| c.entries.iter().all(|e| e.page_link == MARK))
    };
    let x = match r {
        Ok(x) => x,
        Err(e) => {
            assert!(untouched(&chunks), "export wrote before failing with {e:?}");
            if let Err(n) = needed {
                assert_eq!(e, n);
            }
            let _ = (e.kind(), e.to_string());
            return;
        }
    };
    let n = needed.expect("export succeeded where entries_needed failed");
    assert_eq!((x.table.nents, x.table.orig_nents), (n, n));
    assert_eq!(x.table.sgl, chunks[0].addr.as_u64());
    let max = u64::from(input.max_segment_size) & !0xfff;
    // Chunks chain as chunk_split says; every data entry obeys the rules.
    let mut left = n;
    for (i, c) in chunks.iter().enumerate().take(x.chunks) {
        let (data, chained) = chunk_split(left, c.entries.len()).expect("a chunk export used");
        for e in &c.entries[..data] {
            assert!(!e.is_chain());
            assert!(e.offset < 4096 && e.length > 0);
            assert!(
                u64::from(e.offset) + u64::from(e.length) <= max,
                "{e:?} max {max:#x}"
            );
            assert!(vm.pfn_of(e.page()).is_some());
        }
        left -= data as u32;
        if chained {
            assert_eq!(
                c.entries[data],
                Scatterlist::chain_entry(chunks[i + 1].addr.as_u64())
            );
        } else {
            assert_eq!(i + 1, x.chunks);
            assert_eq!(data, x.last_chunk_entries);
            assert!(c.entries[data - 1].is_last());
        }
        // Slots after the last entry are not touched.
        let used = data + usize::from(chained);
        assert!(c.entries[used..].iter().all(|e| e.page_link == MARK));
    }
    assert_eq!(left, 0);
    assert!(chunks[x.chunks..]
        .iter()
        .all(|c| c.entries.iter().all(|e| e.page_link == MARK)));
    // The table reads back as the input.
    let mut back = PhysVec::new();
    let walked = import(
        &chunks[..],
        physvec::VirtAddr::new(x.table.sgl),
        Some(n),
        &vm,
        u32::MAX,
        &mut back,
    )
    .expect("an exported table imports");
    assert_eq!(walked, n);
    let got: Vec<(u64, u64)> = back.iter().map(|r| (r.addr().as_u64(), r.len())).collect();
    let want: Vec<(u64, u64)> = ranges
        .iter()
        .map(|r| (r.addr().as_u64(), r.len()))
        .collect();
    assert_eq!(got, coalesce(&want));
    let _ = SgExportError::Empty.kind();
});
