//! The streaming pipeline against the list pipeline (issue 15): for an arbitrary physical
//! layout, through a software IOMMU or a direct mapper, the fused one-pass paths
//! (`MapStream` → `map_prp` / `map_sgl`) must give exactly what `map_into` followed by
//! `encode_prp` / `encode_sgl` gives: the same data pointer and list-page bytes, or the
//! same error; and both must leave the mapper idle (nothing mapped or reserved) once the
//! I/O is released or has failed.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use physvec::map::{
    map_into, merge_boundary_ok, Attrs, Coalesce, DataDirection, DirectMapper, DmaMapper,
    MapStream, NoP2p, SoftIommu, StreamOptions,
};
use physvec::nvme::{
    encode_prp, encode_sgl, map_prp, map_sgl, MemoryPageSize, Prp, PrpListPage, Sgl, SglDescriptor,
    SglOptions, SglSegmentPage,
};
use physvec::{DmaAddr, DmaMask, DmaRange, PhysRange, RangeView};

#[derive(Arbitrary, Debug)]
struct Input {
    direct: bool,
    sgl: bool,
    /// (page frame, byte offset, length) per range; lengths and offsets are folded so most
    /// layouts are PRP-compatible and some are not.
    ranges: Vec<(u16, u16, u16)>,
}

type Out = Result<(u64, u64, Vec<u64>), String>;

fn prp_out(p: Prp, pages: &[Vec<u64>]) -> (u64, u64, Vec<u64>) {
    (p.prp1.as_u64(), p.prp2.as_u64(), pages.concat())
}

fn sgl_out(s: Sgl, pages: &[Vec<SglDescriptor>]) -> (u64, u64, Vec<u64>) {
    let word = |b: &[u8]| {
        let mut w = [0u8; 8];
        w.copy_from_slice(b);
        u64::from_le_bytes(w)
    };
    let b = s.dptr.to_bytes();
    let words = pages
        .concat()
        .iter()
        .flat_map(|d| {
            let bytes = d.to_bytes();
            [word(&bytes[..8]), word(&bytes[8..])]
        })
        .collect();
    (word(&b[..8]), word(&b[8..]), words)
}

fn prp_pool(pages: &mut [Vec<u64>]) -> impl Iterator<Item = PrpListPage<'_>> {
    pages
        .iter_mut()
        .enumerate()
        .map(|(i, p)| PrpListPage::new(DmaAddr::new(0x8_0000 + 0x1000 * i as u64), p))
}

fn sgl_pool(pages: &mut [Vec<SglDescriptor>]) -> impl Iterator<Item = SglSegmentPage<'_>> {
    pages
        .iter_mut()
        .enumerate()
        .map(|(i, p)| SglSegmentPage::new(DmaAddr::new(0x9_0000 + 0x1000 * i as u64), p))
}

/// (list, fused) for one mapper.
fn compare<M: DmaMapper>(m: &M, phys: &[PhysRange], sgl: bool) -> (Out, Out) {
    let dir = DataDirection::ToDevice;
    let view = RangeView::full(phys).expect("the total fits: at most 64 ranges of 64 KiB");
    let mps = MemoryPageSize::SIZE_4K;
    let list: Out = (|| {
        let io = map_into(m, view, dir, Attrs::empty(), &NoP2p, Vec::<DmaRange>::new())
            .map_err(|e| e.to_string())?;
        if sgl {
            let mut pages = vec![vec![SglDescriptor::default(); 8]; 8];
            let s = encode_sgl(io.dma(), SglOptions::default(), sgl_pool(&mut pages))
                .map_err(|e| e.to_string())?;
            Ok(sgl_out(s, &pages))
        } else {
            let mut pages = vec![vec![0u64; 512]; 2];
            let p = encode_prp(io.dma(), mps, prp_pool(&mut pages)).map_err(|e| e.to_string())?;
            Ok(prp_out(p, &pages))
        }
    })();
    let coalesce = if merge_boundary_ok(view, m.granule()) {
        Coalesce::IfPossible
    } else {
        Coalesce::Never
    };
    let fused: Out = (|| {
        let opts = StreamOptions::new(dir).with_coalesce(coalesce);
        let s = MapStream::start(m, &NoP2p, phys[0], view.len(), opts, Vec::<DmaRange>::new())
            .map_err(|e| e.to_string())?;
        if sgl {
            let segments = 1 + phys
                .windows(2)
                .filter(|w| !w[0].is_contiguous_with(w[1]))
                .count() as u64;
            let mut pages = vec![vec![SglDescriptor::default(); 8]; 8];
            let (io, s) = map_sgl(
                s,
                phys.iter().copied(),
                segments,
                SglOptions::default(),
                sgl_pool(&mut pages),
            )
            .map_err(|e| e.to_string())?;
            drop(io);
            Ok(sgl_out(s, &pages))
        } else {
            let mut pages = vec![vec![0u64; 512]; 2];
            let (io, p) = map_prp(s, phys.iter().copied(), mps, prp_pool(&mut pages))
                .map_err(|e| e.to_string())?;
            drop(io);
            Ok(prp_out(p, &pages))
        }
    })();
    (list, fused)
}

fuzz_target!(|input: Input| {
    let phys: Vec<PhysRange> = input
        .ranges
        .iter()
        .take(64)
        .map(|&(frame, off, len)| {
            // Mostly page-aligned pieces (PRP-compatible), sometimes an odd offset/length.
            let off = if off % 4 == 0 {
                0
            } else {
                u64::from(off % 4096)
            };
            let len = if len % 3 == 0 {
                4096 - off
            } else {
                1 + u64::from(len) % (0x1_0000 - off)
            };
            PhysRange::new(0x10_0000 + u64::from(frame) * 0x1000 + off, len)
        })
        .collect();
    if phys.is_empty() {
        return;
    }
    if input.direct {
        let d = DirectMapper::new(0, DmaMask::BITS_64);
        let (list, fused) = compare(&d, &phys, input.sgl);
        assert_eq!(list, fused, "direct, {phys:x?}");
    } else {
        let iommu = SoftIommu::new_4k();
        let (list, fused) = compare(&iommu, &phys, input.sgl);
        assert_eq!(list, fused, "iommu, {phys:x?}");
        assert!(iommu.is_idle(), "something stayed mapped: {phys:x?}");
    }
});
