//! Property tests of `RangeView` against a model that materialises the window.

use physvec::{PhysRange, PhysVec, RangeView};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// The model: the trimmed segments of bytes `[off, off + len)` of `list`.
fn model_window(list: &[(u64, u64)], off: u64, len: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut pos = 0u64;
    let end = off + len;
    for &(a, l) in list {
        let (s, e) = (pos.max(off), (pos + l).min(end));
        if s < e {
            out.push((a + (s - pos), e - s));
        }
        pos += l;
    }
    out
}

fn list() -> impl Strategy<Value = Vec<(u64, u64)>> {
    prop::collection::vec((0u64..1 << 40, 1u64..0x5000), 0..12)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/view.txt"
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn windows_equal_model(l in list(), a in any::<u64>(), b in any::<u64>(), c in any::<u64>()) {
        let ranges: PhysVec = l.iter().map(|&(x, n)| PhysRange::new(x, n)).collect();
        let total = ranges.total_len();
        let off = if total == 0 { 0 } else { a % (total + 1) };
        let len = if total - off == 0 { 0 } else { b % (total - off + 1) };
        let v = RangeView::new(&ranges, off, len).unwrap();
        let got: Vec<(u64, u64)> = v.iter().map(|r| (r.addr().as_u64(), r.len())).collect();
        prop_assert_eq!(&got, &model_window(&l, off, len));
        prop_assert_eq!(v.len(), len);
        prop_assert_eq!(v.segment_count(), got.len());
        // Split anywhere: the halves concatenate to the whole.
        let at = if len == 0 { 0 } else { c % (len + 1) };
        let (x, y) = v.split_at(at).unwrap();
        prop_assert_eq!(x.len() + y.len(), len);
        let joined: Vec<(u64, u64)> = x.iter().chain(y.iter()).map(|r| (r.addr().as_u64(), r.len())).collect();
        let coalesce = |s: &[(u64, u64)]| {
            let mut o: Vec<(u64, u64)> = Vec::new();
            for &(p, n) in s { match o.last_mut() { Some(q) if q.0 + q.1 == p => q.1 += n, _ => o.push((p, n)) } }
            o
        };
        prop_assert_eq!(coalesce(&joined), coalesce(&got));
        // Seek agrees with the model's byte addresses.
        if len > 0 {
            let byte = c % len;
            let (i, o) = v.seek(byte).unwrap();
            let mut pos = 0;
            for (j, &(p, n)) in got.iter().enumerate() {
                if byte < pos + n {
                    prop_assert_eq!((i, o), (j, byte - pos));
                    prop_assert_eq!(v.addr_at(byte).unwrap().as_u64(), p + (byte - pos));
                    break;
                }
                pos += n;
            }
        }
        // Out of bounds is an error, not a panic.
        prop_assert!(v.window(len, 1).is_err());
        prop_assert!(v.window(u64::MAX, u64::MAX).is_err());
    }
}
