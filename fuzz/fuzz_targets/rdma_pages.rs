//! RDMA fast-registration page list (`sg_to_pages`) against a line-by-line model of the
//! kernel's `ib_sg_to_pages()` (drivers/infiniband/core/verbs.c) in 128-bit arithmetic.
//! Where the kernel's result is defined the two must agree exactly (page list, iova,
//! length, segments mapped, resume offset); where the kernel would wrap (resume before
//! the first byte, a list that takes no page, a length past 2^64) the library must
//! return its documented error. Also: listed pages are page aligned, the first is the
//! page of `iova`, and `[iova, iova + length)` fits in the listed pages.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use physvec::rdma::{sg_to_pages, MrError};
use physvec::{DmaRange, PageSize};

#[derive(Arbitrary, Debug)]
enum Piece {
    /// `pages` whole pages at frame `pfn`, then `tail` bytes.
    Pages {
        pfn: u32,
        pages: u8,
        tail: u16,
    },
    /// Continue the previous segment.
    Contig(u32),
    Raw(u64, u32),
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Page size 4 KiB << (shift % 10).
    shift: u8,
    max_pages: u8,
    sg_offset: u32,
    head: u16,
    pieces: Vec<Piece>,
}

#[derive(Debug, PartialEq)]
enum Model {
    Ok {
        iova: u64,
        length: u128,
        mapped: usize,
        sg_offset: u64,
    },
    /// The kernel computes a wrapped offset/length or returns set_page's error.
    TooSmall,
    Empty,
    BadOffset,
}

fn model(segs: &[DmaRange], sg_offset: u64, ps: u128, max: usize, pages: &mut Vec<u64>) -> Model {
    let Some(first) = segs.first() else {
        return Model::Empty;
    };
    if sg_offset > first.len() {
        return Model::BadOffset;
    }
    let iova = u128::from(first.addr().as_u64()) + u128::from(sg_offset);
    if iova > u128::from(u64::MAX) {
        return Model::BadOffset;
    }
    let mask = !(ps - 1);
    let mut length: u128 = 0;
    let mut last_end: u128 = 0;
    let mut last_page_off: u128 = 0;
    let mut off = u128::from(sg_offset);
    let ok = |length, mapped, sg_offset| Model::Ok {
        iova: iova as u64,
        length,
        mapped,
        sg_offset,
    };
    for (i, sg) in segs.iter().enumerate() {
        let sg_addr = u128::from(sg.addr().as_u64());
        let dma_addr = sg_addr + off;
        let mut prev = dma_addr;
        let dma_len = u128::from(sg.len()) - off;
        let end = dma_addr + dma_len;
        let mut page = dma_addr & mask;
        let mut skip = false;
        if i > 0 && (last_page_off != 0 || page != dma_addr) {
            if last_end != dma_addr {
                return ok(length, i, 0);
            }
            skip = true; // goto next_page
        }
        loop {
            if !skip {
                if pages.len() == max {
                    // set_page failed.
                    if prev < dma_addr {
                        return Model::TooSmall;
                    }
                    let resume = prev - sg_addr;
                    length += prev - dma_addr;
                    if i == 0 && resume == 0 {
                        return Model::TooSmall;
                    }
                    return ok(length, i, resume as u64);
                }
                pages.push(page as u64);
                prev = page;
            }
            skip = false;
            page += ps;
            if page >= end {
                break;
            }
        }
        length += dma_len;
        last_end = end;
        last_page_off = end & (ps - 1);
        off = 0;
    }
    ok(length, segs.len(), 0)
}

fuzz_target!(|input: Input| {
    let page = PageSize::from_shift(12 + u32::from(input.shift % 10)).unwrap();
    let ps = page.get();
    let mut segs: Vec<DmaRange> = Vec::new();
    let mut next = 0u64;
    for p in input.pieces.iter().take(32) {
        let r = match *p {
            Piece::Pages { pfn, pages, tail } => DmaRange::try_new(
                u64::from(pfn) * ps,
                u64::from(pages % 5) * ps + u64::from(tail),
            ),
            Piece::Contig(l) => DmaRange::try_new(next, u64::from(l)),
            Piece::Raw(a, l) => DmaRange::try_new(a, u64::from(l)),
        };
        let Ok(mut r) = r else { continue };
        if segs.is_empty() && input.head != 0 && r.len() > 1 {
            let h = u64::from(input.head) % r.len();
            r = DmaRange::try_new(r.addr().as_u64() + h, r.len() - h).unwrap();
        }
        next = r.end_u64().unwrap_or(0);
        segs.push(r);
    }
    let max = usize::from(input.max_pages);
    // Offsets inside the first segment are the interesting ones.
    let sg_offset = match segs.first() {
        Some(f) if input.sg_offset & 1 == 0 => u64::from(input.sg_offset >> 1) % (f.len() + 1),
        _ => u64::from(input.sg_offset),
    };
    let mut want_pages = Vec::new();
    let want = model(&segs, sg_offset, u128::from(ps), max, &mut want_pages);
    let mut buf = vec![0u64; max];
    let got = sg_to_pages(&segs, sg_offset, page, &mut buf);
    match (&got, &want) {
        (
            Ok(m),
            Model::Ok {
                iova,
                length,
                mapped,
                sg_offset: resume,
            },
        ) => {
            assert_eq!(u128::from(m.length), *length);
            assert_eq!(
                (m.iova, m.mapped as usize, m.sg_offset),
                (*iova, *mapped, *resume)
            );
            assert_eq!(&buf[..m.npages], &want_pages[..], "page lists differ");
            for p in &buf[..m.npages] {
                assert_eq!(p % ps, 0, "unaligned page {p:#x}");
            }
            // The region starts in the first listed page and fits in the listed pages
            // (the MR's address space is virtual: page i backs [i * ps, (i + 1) * ps)).
            if m.npages > 0 {
                assert_eq!(buf[0], m.iova & !(ps - 1));
                let span = u128::from(m.iova % ps) + u128::from(m.length);
                assert!(
                    span <= m.npages as u128 * u128::from(ps),
                    "region exceeds its pages"
                );
            }
        }
        (Err(MrError::LengthOverflow), Model::Ok { length, .. }) => {
            assert!(*length > u128::from(u64::MAX))
        }
        (Err(MrError::PageListTooSmall { .. }), Model::TooSmall)
        | (Err(MrError::Empty), Model::Empty)
        | (Err(MrError::InvalidSgOffset { .. }), Model::BadOffset) => {}
        _ => panic!("sg_to_pages {got:?} vs kernel model {want:?}"),
    }
    if let Err(e) = got {
        let _ = (e.to_string(), e.kind());
    }
});
