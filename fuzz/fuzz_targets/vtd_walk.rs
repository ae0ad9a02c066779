//! The VT-d walker (`vtd::translate`) on fuzzed tables: never panics, reads at most
//! 2 + 2 + 9 quadwords (root entry, context entry, one entry per level), and agrees with
//! a simple model written from `shared/reference/vtd.md` (QEMU 7.2's check order).
#![no_main]

mod common;

use arbitrary::Arbitrary;
use common::FuzzMem;
use libfuzzer_sys::fuzz_target;
use physvec::map::vtd::{self, Access, VtdCaps, WalkError};
use physvec::mem::{MemoryError, MemoryReader};

#[derive(Arbitrary, Debug)]
struct Input {
    aw48: bool,
    custom_caps: Option<(u8, bool, bool)>,
    root: u64,
    sid: u16,
    iova: u64,
    write: bool,
    fold: bool,
    bytes: Vec<u8>,
    /// Sequence mode: the n-th distinct quadword the walk reads is `seq[n]` (so every
    /// walk goes as deep as the values allow, whatever the pointers say).
    seq: Option<Vec<u64>>,
}

/// Memory that hands out `vals` in first-read order, per 8-byte address.
struct SeqMem {
    vals: Vec<u64>,
    seen: std::cell::RefCell<std::collections::HashMap<u64, u64>>,
    reads: std::cell::Cell<u64>,
}

impl MemoryReader<physvec::Phys> for SeqMem {
    fn read(
        &self,
        at: physvec::PhysAddr,
        buf: &mut [u8],
    ) -> Result<(), MemoryError<physvec::Phys>> {
        self.reads.set(self.reads.get() + 1);
        let err = MemoryError::at(at, buf.len());
        let addr = at.as_u64();
        if buf.len() != 8 {
            return Err(err);
        }
        let mut seen = self.seen.borrow_mut();
        let n = seen.len();
        let v = match seen.get(&addr) {
            Some(v) => *v,
            None => {
                let v = *self.vals.get(n).ok_or(err)?;
                seen.insert(addr, v);
                v
            }
        };
        buf.copy_from_slice(&v.to_le_bytes());
        Ok(())
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Out {
    Ok(u64, u64, u16),
    Fault(u8, bool),
    Mem,
    Irq,
}

/// The model: a direct transcription of the reference's walk.
fn model(
    m: &dyn MemoryReader<physvec::Phys>,
    caps: VtdCaps,
    root: u64,
    sid: u16,
    iova: u64,
    write: bool,
) -> Out {
    let rd = |a: u64| -> Result<u64, MemoryError<physvec::Phys>> {
        m.read_u64_le(physvec::PhysAddr::new(a))
    };
    if (0xFEE0_0000..=0xFEEF_FFFF).contains(&iova) {
        return Out::Irq;
    }
    let haw = if caps.haw >= 64 {
        u64::MAX
    } else {
        (1u64 << caps.haw) - 1
    };
    let re = (root & !0xfff) + u64::from(sid >> 8) * 16;
    let Ok(lo) = rd(re) else { return Out::Mem };
    let Some(Ok(hi)) = re.checked_add(8).map(rd) else {
        return Out::Mem;
    };
    if lo & 1 == 0 {
        return Out::Fault(1, true);
    }
    if hi != 0 || lo & (0xffe | !haw) != 0 {
        return Out::Fault(0xA, true);
    }
    let ce = (lo & !0xfff) + u64::from(sid & 0xff) * 16;
    let Ok(clo) = rd(ce) else { return Out::Mem };
    let Some(Ok(chi)) = ce.checked_add(8).map(rd) else {
        return Out::Mem;
    };
    let fpd = clo & 2 != 0;
    let rec = |r: u8| Out::Fault(r, !(fpd && ![0xA, 0xB, 1, 8, 9].contains(&r)));
    if clo & 1 == 0 {
        return rec(2);
    }
    if chi & 0xffff_ffff_ff00_0080 != 0 || clo & (0xff0 | !haw) != 0 {
        return rec(0xB);
    }
    let aw = (chi & 7) as u32;
    if u32::from(caps.sagaw) >> aw & 1 == 0 {
        return rec(3);
    }
    let did = (chi >> 8) as u16;
    match (clo >> 2) & 3 {
        0 => {}
        1 if caps.device_tlb => {}
        2 if caps.pass_through => return Out::Ok(iova, 4096, did),
        _ => return rec(3),
    }
    let agaw = 30 + 9 * aw;
    let lim = agaw.min(caps.haw);
    if lim < 64 && iova >> lim != 0 {
        return rec(4);
    }
    let levels = aw + 2;
    let mut table = clo & !0xfff;
    for level in (1..=levels).rev() {
        let shift = 12 + 9 * (level - 1);
        let idx = if shift < 64 {
            (iova >> shift) & 0x1ff
        } else {
            0
        };
        let Ok(e) = rd(table | idx << 3) else {
            return Out::Mem;
        };
        if e == u64::MAX {
            return rec(if level == levels { 3 } else { 7 });
        }
        if e & if write { 2 } else { 1 } == 0 {
            return rec(if write { 5 } else { 6 });
        }
        let ign = 0xbff0_0000_0000_0000u64;
        let high = !(haw | ign);
        let ps = e & 0x80 != 0;
        let rsvd = match level {
            2 if ps => 0x1f_f800,
            3 if ps => 0x3fff_f800,
            4 => 0x880,
            _ => 0x800,
        } | high;
        if e & rsvd != 0 {
            return rec(0xC);
        }
        if level == 1 || ps {
            let size = 1u64 << shift;
            let base = e & haw & !0xfff & !(size - 1);
            if !(base > 0xFEEF_FFFF || base + (size - 1) < 0xFEE0_0000) {
                return rec(0xE);
            }
            return Out::Ok(base | (iova & (size - 1)), size, did);
        }
        table = e & haw & !0xfff;
    }
    unreachable!("level 1 always returns")
}

fuzz_target!(|input: Input| {
    let access = if input.write {
        Access::Write
    } else {
        Access::Read
    };
    let caps0 = VtdCaps::qemu(if input.aw48 { 48 } else { 39 });
    let conv = |r: Result<vtd::Translation, WalkError>| match r {
        Ok(t) => Out::Ok(t.phys, t.page_size, t.domain_id),
        Err(WalkError::Fault(f)) => Out::Fault(f.reason.code(), f.recorded),
        Err(WalkError::Memory(_)) => Out::Mem,
        Err(WalkError::InterruptWindow) => Out::Irq,
    };
    if let Some(vals) = &input.seq {
        let mk = || SeqMem {
            vals: vals.clone(),
            seen: Default::default(),
            reads: Default::default(),
        };
        let mem = mk();
        let got = conv(vtd::translate(
            &mem, input.root, caps0, input.sid, input.iova, access,
        ));
        assert!(mem.reads.get() <= 13, "{} reads", mem.reads.get());
        let want = model(&mk(), caps0, input.root, input.sid, input.iova, input.write);
        assert_eq!(got, want, "{input:?}");
        return;
    }
    if input.bytes.is_empty() {
        return;
    }
    let caps = match input.custom_caps {
        None => VtdCaps::qemu(if input.aw48 { 48 } else { 39 }),
        Some((sagaw, pt, dt)) => VtdCaps {
            haw: if input.aw48 { 48 } else { 39 },
            sagaw: sagaw & 0x1f,
            pass_through: pt,
            device_tlb: dt,
        },
    };
    // Tables near the root so pointers land in the input (folded: everywhere below 2^40).
    let base = input.root & !0xfff & ((1 << 40) - 1);
    let mem = FuzzMem::new(&input.bytes, base, input.fold);
    let got = conv(vtd::translate(
        &mem, input.root, caps, input.sid, input.iova, access,
    ));
    assert!(mem.reads.get() <= 13, "{} reads", mem.reads.get());
    let mem = FuzzMem::new(&input.bytes, base, input.fold);
    let want = model(&mem, caps, input.root, input.sid, input.iova, input.write);
    assert_eq!(got, want, "{input:?}");
});
