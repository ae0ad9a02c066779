//! mlx5 MTT / KLM / KSM encoders on arbitrary pages, segments, keys, entity sizes and
//! output buffers. Checks: no panic; success exactly when a model of the layout
//! (include/linux/mlx5/qp.h, big-endian, zero-padded to 64 bytes) says the input is
//! encodable and fits; the bytes written decode back to the model's entries and the
//! padding is zero; on error the buffer is unchanged and the error is the model's.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use physvec::rdma::{
    encode_klm, encode_ksm, encode_mtt, Mlx5Error, MLX5_EN_RD, MLX5_EN_WR, MLX5_MAX_KLM_BYTE_COUNT,
};
use physvec::{DmaRange, PageSize};

#[derive(Arbitrary, Debug)]
enum Seg {
    /// `pages` entities at entity frame `frame` (aligned), plus `tail` bytes.
    Aligned {
        frame: u32,
        pages: u16,
        tail: u16,
    },
    /// Near the top of the address space, up to 2^64.
    High {
        back: u64,
        len: u64,
    },
    Raw {
        addr: u64,
        len: u32,
    },
}

#[derive(Arbitrary, Debug)]
enum Op {
    Mtt {
        pages: Vec<u64>,
        aligned: bool,
        access: u64,
    },
    Klm {
        key: u32,
    },
    Ksm {
        key: u32,
        shift: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    op: Op,
    /// Output buffer length in bytes.
    out_len: u16,
    segs: Vec<Seg>,
}

const FILL: u8 = 0xa5;

/// 64-byte padding, saturating.
fn padded(bytes: u128) -> u128 {
    bytes.div_ceil(64) * 64
}

fn segments(raw: &[Seg], entity: u64) -> Vec<DmaRange> {
    raw.iter()
        .take(64)
        .filter_map(|s| {
            let (a, l) = match *s {
                Seg::Aligned { frame, pages, tail } => (
                    u64::from(frame).checked_mul(entity)?,
                    (u64::from(pages) * entity).checked_add(u64::from(tail))?,
                ),
                Seg::High { back, len } => {
                    let a = u64::MAX - (back % (1 << 40));
                    (a, len.min(u64::MAX - a).saturating_add(1))
                }
                Seg::Raw { addr, len } => (addr, u64::from(len)),
            };
            DmaRange::try_new(a, l).ok()
        })
        .collect()
}

fuzz_target!(|input: Input| {
    let mut out = vec![FILL; usize::from(input.out_len)];
    // (entries as 8- or 16-byte big-endian records) or the model's error.
    let (got, want): (Result<usize, Mlx5Error>, Result<Vec<Vec<u8>>, Mlx5Error>) = match &input.op {
        Op::Mtt {
            pages,
            aligned,
            access,
        } => {
            let pages: Vec<u64> = pages
                .iter()
                .take(512)
                .map(|&p| if *aligned { p & !0xfff } else { p })
                .collect();
            let bits = access & (MLX5_EN_RD | MLX5_EN_WR);
            let want = if pages.is_empty() {
                Err(Mlx5Error::Empty)
            } else if let Some((index, &addr)) =
                pages.iter().enumerate().find(|(_, &p)| p % 4096 != 0)
            {
                Err(Mlx5Error::MisalignedPage { index, addr })
            } else {
                Ok(pages
                    .iter()
                    .map(|p| (p | bits).to_be_bytes().to_vec())
                    .collect())
            };
            (encode_mtt(&pages, *access, &mut out), want)
        }
        Op::Klm { key } => {
            let segs = segments(&input.segs, 4096);
            let want = if segs.is_empty() {
                Err(Mlx5Error::Empty)
            } else {
                let mut v = Vec::new();
                let mut n: u128 = 0;
                for s in &segs {
                    n += u128::from(s.len().div_ceil(MLX5_MAX_KLM_BYTE_COUNT));
                }
                // Entries beyond what any buffer here holds are not listed.
                if n <= 4096 {
                    for s in &segs {
                        let (mut va, mut left) = (s.addr().as_u64(), s.len());
                        while left > 0 {
                            let b = left.min(MLX5_MAX_KLM_BYTE_COUNT);
                            let mut e = (b as u32).to_be_bytes().to_vec();
                            e.extend(key.to_be_bytes());
                            e.extend(va.to_be_bytes());
                            v.push(e);
                            va = va.wrapping_add(b);
                            left -= b;
                        }
                    }
                } else {
                    v.resize(4097, Vec::new());
                }
                Ok(v)
            };
            (encode_klm(&segs, *key, &mut out), want)
        }
        Op::Ksm { key, shift } => {
            let entity = PageSize::new(4096 << (shift % 20)).unwrap();
            let e = entity.get();
            let segs = segments(&input.segs, e);
            let want = if segs.is_empty() {
                Err(Mlx5Error::Empty)
            } else if let Some(index) = segs
                .iter()
                .position(|s| s.addr().as_u64() % e != 0 || s.len() % e != 0)
            {
                Err(Mlx5Error::MisalignedSegment { index })
            } else {
                let n: u128 = segs.iter().map(|s| u128::from(s.len() / e)).sum();
                let mut v = Vec::new();
                if n <= 4096 {
                    for s in &segs {
                        for k in 0..s.len() / e {
                            let mut r = vec![0u8; 4];
                            r.extend(key.to_be_bytes());
                            r.extend((s.addr().as_u64() + k * e).to_be_bytes());
                            v.push(r);
                        }
                    }
                } else {
                    v.resize(4097, Vec::new());
                }
                Ok(v)
            };
            (encode_ksm(&segs, *key, entity, &mut out), want)
        }
    };
    match (got, want) {
        (Ok(n), Ok(entries)) => {
            let size = entries.first().map_or(0, Vec::len);
            assert_eq!(n as u128, padded((entries.len() * size) as u128));
            let body: Vec<u8> = entries.concat();
            assert_eq!(&out[..body.len()], &body[..]);
            assert!(
                out[body.len()..n].iter().all(|&b| b == 0),
                "padding not zero"
            );
            assert!(
                out[n..].iter().all(|&b| b == FILL),
                "wrote past the encoding"
            );
        }
        (Err(Mlx5Error::BufferTooSmall { needed }), Ok(entries)) => {
            let size = match input.op {
                Op::Mtt { .. } => 8,
                _ => 16,
            };
            let want = padded(entries.len() as u128 * size).min(usize::MAX as u128);
            // Past 4096 entries the model only knows "more than fits".
            if entries.len() <= 4096 {
                assert_eq!(needed as u128, want);
            }
            assert!(needed > out.len());
            assert!(out.iter().all(|&b| b == FILL), "buffer changed on error");
            let _ = (Mlx5Error::BufferTooSmall { needed }).to_string();
        }
        (Err(e), Err(w)) => {
            assert_eq!(e, w);
            assert!(out.iter().all(|&b| b == FILL), "buffer changed on error");
            let _ = (e.kind(), e.to_string());
        }
        (g, w) => panic!("encoder {g:?}, model {w:?}"),
    }
});
