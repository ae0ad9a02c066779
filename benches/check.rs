//! Output check run before benchmarking (and in quick mode): decode each pipeline's
//! PRP/SGL like a controller, translate every DMA byte back to a physical address through
//! the pipeline's own IOMMU (or bus offset), and compare with the workload.

use physvec::PhysRange;

use crate::workloads::Dptr;

/// Data ranges `(dma, len)` a PRP pair describes for `total` bytes; `read(bus)` returns
/// the list slots from `bus` to the end of its 4 KiB page.
pub fn prp_data(
    prp1: u64,
    prp2: u64,
    total: u64,
    read: &dyn Fn(u64) -> Vec<u64>,
) -> Vec<(u64, u64)> {
    let first = total.min(4096 - (prp1 & 4095));
    let mut out = vec![(prp1, first)];
    let mut rem = total - first;
    if rem == 0 {
        return out;
    }
    if rem <= 4096 {
        out.push((prp2, rem));
        return out;
    }
    let mut list = read(prp2);
    let mut i = 0;
    while rem > 0 {
        if i + 1 == list.len() && rem > 4096 {
            list = read(u64::from_le(list[i]));
            i = 0;
            continue;
        }
        let l = rem.min(4096);
        out.push((u64::from_le(list[i]), l));
        rem -= l;
        i += 1;
    }
    out
}

/// Data ranges an SGL1 (Data Block, or Last Segment of Data Blocks) describes.
pub fn sgl_data(d: [u64; 2], read: &dyn Fn(u64) -> Vec<u64>) -> Vec<(u64, u64)> {
    let (addr, w1) = (u64::from_le(d[0]), u64::from_le(d[1]));
    let len = w1 & 0xffff_ffff;
    match w1 >> 60 {
        0 => vec![(addr, len)],
        3 => {
            let list = read(addr);
            (0..len as usize / 16)
                .map(|i| {
                    let (a, b) = (u64::from_le(list[2 * i]), u64::from_le(list[2 * i + 1]));
                    assert_eq!(b >> 60, 0, "not a Data Block");
                    (a, b & 0xffff_ffff)
                })
                .collect()
        }
        t => panic!("unexpected SGL1 type {t:#x}"),
    }
}

/// Translate DMA ranges to coalesced physical ranges, page piece by page piece.
pub fn to_phys(data: &[(u64, u64)], translate: &dyn Fn(u64) -> Option<u64>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &(dma, len) in data {
        let mut off = 0;
        while off < len {
            let a = dma + off;
            let l = (len - off).min(4096 - (a & 4095));
            let p = translate(a).unwrap_or_else(|| panic!("DMA address {a:#x} is not mapped"));
            match out.last_mut() {
                Some(last) if last.0 + last.1 == p => last.1 += l,
                _ => out.push((p, l)),
            }
            off += l;
        }
    }
    out
}

/// The workload's physical ranges, coalesced.
pub fn expected(phys: &[PhysRange]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for r in phys {
        let (a, l) = (r.addr().as_u64(), r.len());
        match out.last_mut() {
            Some(last) if last.0 + last.1 == a => last.1 += l,
            _ => out.push((a, l)),
        }
    }
    out
}

/// Decode, translate and compare; panics with `what` on a mismatch.
pub fn verify(
    what: &str,
    dptr: Dptr,
    d: [u64; 2],
    phys: &[PhysRange],
    read: &dyn Fn(u64) -> Vec<u64>,
    translate: &dyn Fn(u64) -> Option<u64>,
) {
    let total: u64 = phys.iter().map(|r| r.len()).sum();
    let data = match dptr {
        Dptr::Prp => prp_data(u64::from_le(d[0]), u64::from_le(d[1]), total, read),
        Dptr::Sgl => sgl_data(d, read),
    };
    let got = to_phys(&data, translate);
    assert_eq!(
        got,
        expected(phys),
        "{what}: the data pointer does not describe the I/O"
    );
}
