//! Property and golden tests of the RDMA adapters: `ib_sg_to_pages` against a direct
//! model, the best page size against a brute-force check, byte-exact mlx5 entries.

use physvec::nvme::{SglDescriptorType, SGL_SUBTYPE_INVALIDATE_KEY};
use physvec::rdma::{
    best_page_size, build_sges, encode_klm, encode_ksm, encode_mtt, keyed_sgl, sg_to_pages, IbSge,
    RegisteredRegion, MLX5_EN_RD, MLX5_EN_WR,
};
use physvec::{DmaRange, PageSize, RangeView};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Segments mixing page-aligned, contiguous-unaligned and gapped neighbours.
fn segments(ps: u64) -> impl Strategy<Value = Vec<DmaRange>> {
    prop::collection::vec((0u8..3, 0u64..4, 0u64..ps, 1u64..4 * ps), 1..10).prop_map(move |v| {
        let mut out: Vec<DmaRange> = Vec::new();
        let mut next = 0x100_0000u64;
        for (kind, pages, off, len) in v {
            let addr = match kind {
                0 => next,                                // contiguous
                1 => next.div_ceil(ps) * ps + pages * ps, // aligned
                _ => next + pages * ps + off + 1,         // anywhere
            };
            let len = if kind == 1 && off % 2 == 0 {
                len.div_ceil(ps) * ps
            } else {
                len
            };
            out.push(DmaRange::new(addr, len));
            next = addr + len;
        }
        out
    })
}

type ModelOut = Option<(u64, u64, Vec<u64>, u32, u64)>;

/// `ib_sg_to_pages` restated: classify the prefix, list every element's pages, cut the
/// list at `max_pages`.
fn model(segs: &[DmaRange], off: u64, ps: u64, max_pages: usize) -> ModelOut {
    let raw: Vec<(u64, u64)> = segs.iter().map(|s| (s.addr().as_u64(), s.len())).collect();
    let el: Vec<(u64, u64)> = raw
        .iter()
        .enumerate()
        .map(|(i, &(a, l))| if i == 0 { (a + off, l - off) } else { (a, l) })
        .collect();
    let iova = el[0].0;
    let mut all: Vec<(u64, usize)> = Vec::new(); // (page, owner)
    let mut prefix = 0;
    for (i, &(a, l)) in el.iter().enumerate() {
        let end = a + l;
        let first = if i == 0 {
            a / ps * ps
        } else {
            let prev_end = el[i - 1].0 + el[i - 1].1;
            if prev_end % ps == 0 && a % ps == 0 {
                a
            } else if prev_end == a {
                a / ps * ps + ps
            } else {
                break;
            }
        };
        let mut p = first;
        if i == 0 {
            all.push((p, i));
            p += ps;
        }
        while p < end {
            all.push((p, i));
            p += ps;
        }
        prefix = i + 1;
    }
    if all.len() <= max_pages {
        let length = el[..prefix].iter().map(|e| e.1).sum();
        return Some((
            iova,
            length,
            all.iter().map(|p| p.0).collect(),
            prefix as u32,
            0,
        ));
    }
    let k = max_pages;
    let i = all[k].1;
    let dma_addr = el[i].0;
    let prev = if k > 0 && all[k - 1].1 == i {
        all[k - 1].0
    } else {
        dma_addr
    };
    if prev < dma_addr {
        return None;
    }
    let resume = prev - raw[i].0;
    if i == 0 && resume == 0 {
        return None;
    }
    let length = el[..i].iter().map(|e| e.1).sum::<u64>() + (prev - dma_addr);
    Some((
        iova,
        length,
        all[..k].iter().map(|p| p.0).collect(),
        i as u32,
        resume,
    ))
}

fn bits_per(n: u64) -> u32 {
    if n < 2 {
        1
    } else {
        64 - n.leading_zeros()
    }
}

fn expressible(segs: &[DmaRange], va: u64, p: u64) -> bool {
    let mut v = va;
    let mut prev_end: Option<u64> = None;
    for (i, s) in segs.iter().enumerate() {
        let a = s.addr().as_u64();
        if prev_end != Some(a) && ((a ^ v) % p != 0 || (i != 0 && v % p != 0)) {
            return false;
        }
        v += s.len();
        prev_end = Some(a + s.len());
    }
    true
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("proptest-regressions/rdma.txt"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn page_list_matches_model(
        (shift, segs) in (9u32..17).prop_flat_map(|s| (Just(s), segments(1 << s))),
        off_frac in 0u64..=100,
        max_pages in 0usize..24,
    ) {
        let ps = 1u64 << shift;
        let off = segs[0].len() * off_frac / 100;
        let mut pages = vec![0u64; max_pages];
        let got = sg_to_pages(&segs, off, PageSize::from_shift(shift).unwrap(), &mut pages);
        let want = model(&segs, off, ps, max_pages);
        match (got, want) {
            (Ok(m), Some((iova, length, list, mapped, sg_offset))) => {
                prop_assert_eq!(m.iova, iova);
                prop_assert_eq!(m.length, length);
                prop_assert_eq!(&pages[..m.npages], &list[..]);
                prop_assert_eq!(m.mapped, mapped);
                prop_assert_eq!(m.sg_offset, sg_offset);
                // Listed pages are aligned and the length never exceeds their span.
                prop_assert!(list.iter().all(|p| p % ps == 0));
            }
            (Err(e), None) => prop_assert_eq!(e.kind(), "page_list_too_small"),
            (g, w) => prop_assert!(false, "got {:?}, model {:?}", g, w),
        }
    }

    #[test]
    fn best_page_size_is_largest_expressible(
        segs in segments(4096),
        va_page in 0u64..0x1000,
        va_low in prop::sample::select(vec![0u64, 0x100, 0x1000, 0x10000]),
        bitmap in prop::sample::select(vec![0xffff_f000u64, 0x4020_1000, 0x1000, 0x20_0000, u64::MAX << 12, 0x1_0000 | 0x4000_0000]),
    ) {
        let va = 0x7f00_0000_0000 + va_page * 0x20_0000 + va_low + (segs[0].addr().as_u64() & 0xfff);
        let total: u64 = segs.iter().map(|s| s.len()).sum();
        let b = bits_per((va + total - 1) ^ va);
        let cap = (0..64).map(|k| 1u64 << k).find(|p| bitmap & p != 0 && *p >= (1u64 << b.min(63)) && b < 64);
        let want = (0..64)
            .rev()
            .map(|k| 1u64 << k)
            .find(|&p| bitmap & p != 0 && cap.map_or(true, |c| p <= c) && expressible(&segs, va, p));
        let got = best_page_size(&segs, va, bitmap).unwrap().map(|p| p.get());
        prop_assert_eq!(got, want);
    }

    #[test]
    fn sges_are_the_merged_ranges_split_at_max_len(segs in segments(4096), max_len in 1u32..0x5000, max_sge in 0usize..40) {
        // The model: contiguous neighbours merged, each run cut into max_len pieces.
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for s in &segs {
            let (a, l) = (s.addr().as_u64(), s.len());
            match runs.last_mut() {
                Some((ra, rl)) if ra.checked_add(*rl) == Some(a) => *rl += l,
                _ => runs.push((a, l)),
            }
        }
        let mut want: Vec<IbSge> = Vec::new();
        for (mut a, mut l) in runs {
            while l > 0 {
                let take = l.min(u64::from(max_len));
                want.push(IbSge { addr: a, length: take as u32, lkey: 9 });
                a += take;
                l -= take;
            }
        }
        let view = RangeView::full(&segs).unwrap();
        prop_assert_eq!(physvec::rdma::sge_count(&view, max_len), want.len() as u64);
        let mut out = vec![IbSge::default(); max_sge];
        match build_sges(&view, 9, max_len, &mut out) {
            Ok(n) => prop_assert_eq!(&out[..n], &want[..]),
            Err(e) => {
                prop_assert!(want.len() > max_sge);
                prop_assert_eq!(e, physvec::rdma::SgeError::TooManySges { needed: want.len() as u64, max_sge });
                prop_assert!(out.iter().all(|s| *s == IbSge::default()), "out changed on error");
            }
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn mtt_golden() {
    let mut out = [0xaau8; 128];
    let n = encode_mtt(&[0x10000, 0x20000], MLX5_EN_RD | MLX5_EN_WR, &mut out).unwrap();
    assert_eq!(n, 64);
    assert_eq!(
        hex(&out[..64]),
        format!(
            "{}{}{}",
            "0000000000010003",
            "0000000000020003",
            "00".repeat(48)
        )
    );
    assert_eq!(out[64], 0xaa); // nothing past the padded length
    let n = encode_mtt(&[0xffff_ffff_ffff_f000; 9], MLX5_EN_RD, &mut out).unwrap();
    assert_eq!(n, 128);
    assert_eq!(hex(&out[..8]), "fffffffffffff001");
    assert_eq!(hex(&out[64..72]), "fffffffffffff001");
    assert!(out[72..].iter().all(|&b| b == 0));
    assert_eq!(
        encode_mtt(&[0x1800], 0, &mut out).unwrap_err().kind(),
        "misaligned_page"
    );
    assert_eq!(
        encode_mtt(&[0x1000; 9], 0, &mut [0u8; 64])
            .unwrap_err()
            .kind(),
        "buffer_too_small"
    );
}

#[test]
fn klm_and_ksm_golden() {
    let mut out = [0u8; 128];
    let segs = [
        DmaRange::new(0x10000, 0x100),
        DmaRange::new(0x1_2345_6789, 0xC000_0000),
    ];
    let n = encode_klm(&segs, 0x0102_0304, &mut out).unwrap();
    assert_eq!(n, 64);
    assert_eq!(
        hex(&out[..64]),
        [
            "00000100",
            "01020304",
            "0000000000010000",
            "80000000",
            "01020304",
            "0000000123456789",
            "40000000",
            "01020304",
            "00000001a3456789",
            &"00".repeat(16),
        ]
        .concat()
    );
    let n = encode_ksm(
        &[DmaRange::new(0x20_0000, 0x40_0000)],
        5,
        PageSize::SIZE_2M,
        &mut out,
    )
    .unwrap();
    assert_eq!(n, 64);
    assert_eq!(
        hex(&out[..64]),
        [
            "00000000",
            "00000005",
            "0000000000200000",
            "00000000",
            "00000005",
            "0000000000400000",
            &"00".repeat(32)
        ]
        .concat()
    );
}

#[test]
fn keyed_descriptor_from_registration() {
    let d = keyed_sgl(
        &RegisteredRegion {
            iova: 0xdead_beef_0000,
            length: 0xff_ffff,
            rkey: 0xa5a5_0001,
        },
        true,
    )
    .unwrap();
    assert_eq!(d.descriptor_type(), SglDescriptorType::KeyedDataBlock);
    assert_eq!(d.subtype(), SGL_SUBTYPE_INVALIDATE_KEY);
    assert_eq!(
        (d.address(), d.keyed_length(), d.key()),
        (
            physvec::DmaAddr::new(0xdead_beef_0000),
            0xff_ffff,
            0xa5a5_0001
        )
    );
    assert_eq!(hex(&d.to_bytes()), "0000efbeadde0000ffffff0100a5a54f");
    let e = keyed_sgl(
        &RegisteredRegion {
            iova: 0,
            length: 1 << 24,
            rkey: 1,
        },
        false,
    )
    .unwrap_err();
    assert_eq!(e.kind(), "length_too_large");
}

/// Entry counts whose padded byte size passes `usize::MAX` are a buffer error, not an
/// overflow (257 KSM segments of 2^52 - 1 entities each need 2^64 bytes and more).
#[test]
fn ksm_and_klm_sizes_past_usize_are_buffer_errors() {
    use physvec::rdma::{encode_klm, encode_ksm, Mlx5Error};
    let huge = DmaRange::new(0x1000, u64::MAX - 0xfff);
    let segs = vec![huge; 257];
    let mut out = [0xaau8; 64];
    let e = encode_ksm(&segs, 1, PageSize::SIZE_4K, &mut out).unwrap_err();
    assert!(matches!(e, Mlx5Error::BufferTooSmall { .. }), "{e:?}");
    let e = encode_klm(&segs, 1, &mut out).unwrap_err();
    assert!(matches!(e, Mlx5Error::BufferTooSmall { .. }), "{e:?}");
    assert!(out.iter().all(|&b| b == 0xaa), "out changed on error");
}

#[test]
fn mr_errors_say_what_and_where() {
    use physvec::rdma::MrError;
    let cases = [
        (MrError::Empty, "empty", "no segments"),
        (
            MrError::InvalidSgOffset {
                sg_offset: 0x1200,
                len: 0x1000,
            },
            "invalid_sg_offset",
            "sg_offset 0x1200 exceeds the first segment's 0x1000 bytes",
        ),
        (
            MrError::PageListTooSmall { max_pages: 3 },
            "page_list_too_small",
            "3 pages",
        ),
        (MrError::LengthOverflow, "length_overflow", "u64::MAX"),
    ];
    for (e, kind, text) in cases {
        assert_eq!(e.kind(), kind);
        let shown = e.to_string();
        assert!(shown.contains(text), "{shown}");
    }
}

/// The mlx5 ABI values: MTT enable bits and the 2 GiB KLM limit. A segment above it
/// takes several KLMs, `bcount`s of 2 GiB then the rest, each `va` advanced.
#[test]
fn mlx5_constants_and_klm_splitting() {
    use physvec::rdma::{encode_klm, klm_count, MLX5_EN_RD, MLX5_EN_WR, MLX5_MAX_KLM_BYTE_COUNT};
    assert_eq!((MLX5_EN_RD, MLX5_EN_WR), (1, 2));
    assert_eq!(MLX5_MAX_KLM_BYTE_COUNT, 2 << 30);
    let segs = [
        DmaRange::new(0x1_0000, 5 << 30),
        DmaRange::new(0x9000_0000_0000, 0x100),
    ];
    assert_eq!(klm_count(&segs), 4);
    assert_eq!(klm_count(&segs[..1]), 3);
    let mut out = [0u8; 64];
    assert_eq!(encode_klm(&segs, 7, &mut out), Ok(64));
    // {bcount u32, key u32, va u64}, big endian.
    let entry = |i: usize| {
        let e = &out[i * 16..i * 16 + 16];
        (
            u32::from_be_bytes(e[..4].try_into().unwrap()),
            u32::from_be_bytes(e[4..8].try_into().unwrap()),
            u64::from_be_bytes(e[8..].try_into().unwrap()),
        )
    };
    assert_eq!(entry(0), (0x8000_0000, 7, 0x1_0000));
    assert_eq!(entry(1), (0x8000_0000, 7, 0x8001_0000));
    assert_eq!(entry(2), (0x4000_0000, 7, 0x1_0001_0000));
    assert_eq!(entry(3), (0x100, 7, 0x9000_0000_0000));
}

/// RDMA errors explain themselves, and their stable kinds name them for the CLI.
#[test]
fn rdma_errors_messages_and_kinds() {
    use physvec::rdma::{KeyedLengthError, Mlx5Error, PgszError};
    let mlx5 = [
        (Mlx5Error::Empty, "no entries to encode"),
        (
            Mlx5Error::MisalignedPage {
                index: 2,
                addr: 0x1234,
            },
            "page 2 at 0x1234 is not 4 KiB aligned",
        ),
        (
            Mlx5Error::MisalignedSegment { index: 1 },
            "segment 1 is not a whole number of KSM entities",
        ),
        (
            Mlx5Error::BufferTooSmall { needed: 128 },
            "output buffer needs 128 bytes",
        ),
    ];
    for (e, text) in mlx5 {
        assert_eq!(e.to_string(), text);
    }
    let k = KeyedLengthError { length: 0x100_0000 };
    assert_eq!(
        k.to_string(),
        "0x1000000 bytes exceed a keyed SGL data block (16 MiB - 1)"
    );
    assert_eq!(k.kind(), "length_too_large");
    assert_eq!(PgszError::Empty.kind(), "empty");
    assert_eq!(PgszError::AddressOverflow.kind(), "address_overflow");
    assert_eq!(PgszError::Empty.to_string(), "no segments");
    use physvec::rdma::RwError;
    for (e, kind, text) in [
        (RwError::Empty, "empty", "no segments"),
        (
            RwError::InvalidCaps,
            "invalid_caps",
            "a needed device capability is 0",
        ),
        (
            RwError::MrCannotMap { segment: 3 },
            "mr_cannot_map",
            "the MR chunk starting at segment 3 cannot be registered whole",
        ),
        (
            RwError::TooManySegments,
            "too_many_segments",
            "more than u32::MAX segments",
        ),
    ] {
        assert_eq!((e.kind(), e.to_string().as_str()), (kind, text));
    }
}

/// `bits_per` as the kernel defines it (1 for 0 and 1): with byte-sized page sizes
/// supported, a 3-byte region at 0 spans bits 0..1 and takes one 4-byte page; a 1-byte
/// region takes a 2-byte page, as `ib_umem_find_best_pgsz` computes.
#[test]
fn best_page_size_for_tiny_spans() {
    use physvec::rdma::best_page_size;
    let tiny = 0b111; // 1, 2 and 4 bytes
    assert_eq!(
        best_page_size(&[DmaRange::new(0, 3)], 0, tiny),
        Ok(PageSize::new(4).ok())
    );
    assert_eq!(
        best_page_size(&[DmaRange::new(0, 1)], 0, tiny),
        Ok(PageSize::new(2).ok())
    );
}

/// The span cap uses the region's last byte (`length - 1 + va`): a 2 MiB region at a
/// 2 MiB-aligned VA takes 2 MiB pages, not 4 MiB.
#[test]
fn best_page_size_span_ends_at_the_last_byte() {
    use physvec::rdma::best_page_size;
    let sizes = (1u64 << 12) | (1 << 21) | (1 << 22); // 4 KiB, 2 MiB, 4 MiB
    let seg = [DmaRange::new(0x4020_0000, 0x20_0000)];
    assert_eq!(
        best_page_size(&seg, 0x7f00_0020_0000, sizes),
        Ok(Some(PageSize::SIZE_2M))
    );
}

/// DMA address 0 is an address like any other: a region whose DMA side starts there
/// still has its VA/DMA offset checked (VA 0x1000 against DMA 0 allows 4 KiB only).
#[test]
fn best_page_size_with_dma_at_zero() {
    use physvec::rdma::best_page_size;
    let sizes = (1u64 << 12) | (1 << 13);
    assert_eq!(
        best_page_size(&[DmaRange::new(0, 0x2000)], 0x1000, sizes),
        Ok(Some(PageSize::SIZE_4K))
    );
    assert_eq!(
        best_page_size(&[DmaRange::new(0, 0x2000)], 0x2000, sizes),
        Ok(PageSize::new(0x2000).ok())
    );
}

/// `rdma_rw_io_needs_mr`: iWARP READs, READs above `max_sgl_rd` entries, and
/// `force_mr` need an MR; everything else posts SGEs directly.
#[test]
fn io_needs_mr_follows_the_kernel() {
    use physvec::rdma::{io_needs_mr, RwCaps, RwDirection};
    let roce = RwCaps::mlx5_like();
    assert!(!io_needs_mr(&roce, RwDirection::Read, 64));
    assert!(!io_needs_mr(&roce, RwDirection::Write, 64));
    let iwarp = RwCaps {
        iwarp: true,
        ..roce
    };
    assert!(io_needs_mr(&iwarp, RwDirection::Read, 1));
    assert!(!io_needs_mr(&iwarp, RwDirection::Write, 1));
    let limited = RwCaps {
        max_sgl_rd: 4,
        ..roce
    };
    assert!(!io_needs_mr(&limited, RwDirection::Read, 4));
    assert!(io_needs_mr(&limited, RwDirection::Read, 5));
    assert!(!io_needs_mr(&limited, RwDirection::Write, 5));
    let forced = RwCaps {
        force_mr: true,
        ..roce
    };
    assert!(io_needs_mr(&forced, RwDirection::Write, 1));
}

/// `coalesced_count`: contiguous neighbours count once; nothing counts zero.
#[test]
fn coalesced_count_merges_neighbours_only() {
    use physvec::rdma::coalesced_count;
    assert_eq!(coalesced_count(&[]), 0);
    assert_eq!(coalesced_count(&[DmaRange::new(0x1000, 0x10)]), 1);
    let s = [
        DmaRange::new(0x1000, 0x1000),
        DmaRange::new(0x2000, 0x800),
        DmaRange::new(0x9000, 0x10),
        DmaRange::new(0x9010, 0x10),
        DmaRange::new(0x1000, 0x10),
    ];
    assert_eq!(coalesced_count(&s), 3);
}

/// `rdma_rw_ctx_init`'s three plans and their limits.
#[test]
fn plan_rw_single_multi_and_mr() {
    use physvec::rdma::{plan_rw, RwCaps, RwDirection, RwError, RwPlan};
    let roce = RwCaps::mlx5_like();
    let page = |i: u64| DmaRange::new(0x10_0000 + i * 0x10_000, 0x1000);
    assert_eq!(plan_rw(&[], RwDirection::Write, &roce), Err(RwError::Empty));
    // One coalesced segment: one SGE, whatever the pieces.
    let one = [DmaRange::new(0x1000, 0x800), DmaRange::new(0x1800, 0x800)];
    for dir in [RwDirection::Read, RwDirection::Write] {
        assert_eq!(plan_rw(&one, dir, &roce), Ok(RwPlan::SingleSge));
    }
    // Several: SGEs over ceil(n / per-WR) work requests, per direction.
    let five: Vec<DmaRange> = (0..5).map(page).collect();
    let caps = RwCaps {
        max_write_sge: 2,
        max_read_sge: 3,
        ..roce
    };
    assert_eq!(
        plan_rw(&five, RwDirection::Write, &caps),
        Ok(RwPlan::MultiSge { sges: 5, wrs: 3 })
    );
    assert_eq!(
        plan_rw(&five, RwDirection::Read, &caps),
        Ok(RwPlan::MultiSge { sges: 5, wrs: 2 })
    );
    for caps in [
        RwCaps {
            max_write_sge: 0,
            ..roce
        },
        RwCaps {
            max_read_sge: 0,
            ..roce
        },
    ] {
        let dir = if caps.max_write_sge == 0 {
            RwDirection::Write
        } else {
            RwDirection::Read
        };
        assert_eq!(plan_rw(&five, dir, &caps), Err(RwError::InvalidCaps));
    }
    // MRs: chunks of `pages_per_mr` pages, capped at 256.
    let mr = |ppm: u32| RwCaps {
        force_mr: true,
        max_fast_reg_page_list_len: ppm,
        ..roce
    };
    assert_eq!(
        plan_rw(&five, RwDirection::Write, &mr(0)),
        Err(RwError::InvalidCaps)
    );
    assert_eq!(
        plan_rw(&five, RwDirection::Write, &mr(1000)),
        Ok(RwPlan::Mr {
            mrs: 1,
            pages_per_mr: 256
        })
    );
    assert_eq!(
        plan_rw(&five, RwDirection::Write, &mr(2)),
        Ok(RwPlan::Mr {
            mrs: 3,
            pages_per_mr: 2
        })
    );
    assert_eq!(
        plan_rw(&five, RwDirection::Write, &mr(5)),
        Ok(RwPlan::Mr {
            mrs: 1,
            pages_per_mr: 5
        })
    );
    // Two half pages that are contiguous count once, as one page.
    let halves = [
        DmaRange::new(0x1000, 0x800),
        DmaRange::new(0x1800, 0x800),
        page(1),
        page(2),
        page(3),
    ];
    assert_eq!(
        plan_rw(&halves, RwDirection::Write, &mr(2)),
        Ok(RwPlan::Mr {
            mrs: 2,
            pages_per_mr: 2
        })
    );
}

/// A chunk that one fast registration cannot map (a gap after a partial page) is
/// refused with the index of the chunk's first segment.
#[test]
fn plan_rw_names_the_chunk_that_cannot_map() {
    use physvec::rdma::{plan_rw, RwCaps, RwDirection, RwError};
    let caps = RwCaps {
        force_mr: true,
        max_fast_reg_page_list_len: 2,
        ..RwCaps::mlx5_like()
    };
    let segs = [
        DmaRange::new(0x10_0000, 0x1000),
        DmaRange::new(0x20_0000, 0x1000),
        DmaRange::new(0x30_0000, 0x800),  // ends mid page...
        DmaRange::new(0x40_0000, 0x1000), // ...and a gap follows in the same chunk
    ];
    assert_eq!(
        plan_rw(&segs, RwDirection::Write, &caps),
        Err(RwError::MrCannotMap { segment: 2 })
    );
    // The first chunk alone is fine.
    assert!(plan_rw(&segs[..2], RwDirection::Write, &caps).is_ok());
    // A chunk whose pages exceed the MR's page list: three pages in one segment.
    let big = [DmaRange::new(0x10_0000, 0x3000)];
    assert_eq!(
        plan_rw(&big, RwDirection::Write, &caps),
        Err(RwError::MrCannotMap { segment: 0 })
    );
}

/// SGE edge cases: a range ending at 2^64 is not contiguous with one at 0, an exact fit
/// in `max_sge` is accepted, and the errors explain themselves.
#[test]
fn sge_edges_and_errors() {
    use physvec::rdma::{sge_count, SgeError};
    let wrap = [
        DmaRange::new(u64::MAX - 0xfff, 0x1000),
        DmaRange::new(0, 0x1000),
    ];
    let view = RangeView::full(&wrap).unwrap();
    assert_eq!(sge_count(&view, u32::MAX), 2);
    let mut out = [IbSge::default(); 2];
    assert_eq!(build_sges(&view, 1, u32::MAX, &mut out), Ok(2));
    assert_eq!(
        out[1],
        IbSge {
            addr: 0,
            length: 0x1000,
            lkey: 1
        }
    );
    let mut one = [IbSge::default(); 1];
    assert_eq!(
        build_sges(&view, 1, u32::MAX, &mut one),
        Err(SgeError::TooManySges {
            needed: 2,
            max_sge: 1
        })
    );
    assert_eq!(
        build_sges(&view, 1, 0, &mut out),
        Err(SgeError::InvalidMaxLength)
    );
    for (e, kind, text) in [
        (SgeError::Empty, "empty", "no ranges"),
        (
            SgeError::InvalidMaxLength,
            "invalid_max_length",
            "maximum SGE length is 0",
        ),
        (
            SgeError::TooManySges {
                needed: 3,
                max_sge: 2,
            },
            "too_many_sges",
            "3 SGEs needed, at most 2 allowed",
        ),
    ] {
        assert_eq!((e.kind(), e.to_string().as_str()), (kind, text));
    }
}

/// KLM byte counts: a segment of exactly 2 GiB is one entry, one byte more is two.
#[test]
fn klm_exactly_two_gib_is_one_entry() {
    use physvec::rdma::{encode_klm, klm_count};
    let two = [DmaRange::new(0x1_0000_0000, 2 << 30)];
    assert_eq!(klm_count(&two), 1);
    let mut out = [0xffu8; 64];
    assert_eq!(encode_klm(&two, 5, &mut out), Ok(64));
    assert_eq!(&out[..4], &0x8000_0000u32.to_be_bytes());
    assert!(out[16..].iter().all(|&b| b == 0), "one entry, then padding");
    let more = [DmaRange::new(0x1_0000_0000, (2 << 30) + 1)];
    assert_eq!(klm_count(&more), 2);
    assert_eq!(encode_klm(&more, 5, &mut out), Ok(64));
    assert_eq!(&out[16..20], &1u32.to_be_bytes());
    assert_eq!(&out[24..32], &0x1_8000_0000u64.to_be_bytes());
}
