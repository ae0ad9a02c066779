//! PRP decoder (device side): PRP1/PRP2 and PRP lists in memory → the transfer's
//! ranges, or the status a controller returns (NVMe Base 1.4 §4.3).
//!
//! Entries are consumed exactly as a controller does (QEMU `nvme_map_prp`): PRP1 covers
//! up to the end of its page; if one more page remains PRP2 is a data entry, otherwise a
//! list pointer whose list runs to the end of its page; at the last slot of a list page,
//! when more than one page of data remains, the slot is a pointer to the next list page.
//!
//! A chained list page always yields at least `MPS / 8 - 1` data entries, so a chain
//! always progresses; one that revisits a list page just describes repeated buffers,
//! which the specification does not forbid. Work is bounded by the transfer length and
//! [`DecodeOptions::max_descriptors`].

#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

use super::error::DecodeError;
use super::options::{DecodeOptions, DecodeSummary};
use super::output::{data, Emit, RangeEmit};
use crate::nvme::page::MemoryPageSize;

use crate::addr::{Dma, DmaAddr};
use crate::mem::MemoryReader;
use crate::sink::RangeSink;

/// Decodes PRP1/PRP2 for a transfer of `len` bytes with memory page size `mps`, reading
/// PRP lists through `mem`, and appends the transfer's ranges (coalesced) to `out`.
///
/// Strict by default: PRP1 must be dword aligned and a list pointer qword aligned (the
/// specification lets a controller report 13h for both); with
/// [`DecodeOptions::qemu_compat`] both are used as they are, as QEMU does. A zero
/// length decodes to nothing without looking at DPTR.
///
/// # Errors
/// [`DecodeError`] with the controller's status: `PrpOffsetInvalid` (13h),
/// `MemoryUnreadable` (04h), `TransferTooLarge` (02h), `LimitExceeded` / `OutputFull`
/// (06h). On error `out` is left exactly as it was found.
///
/// # Examples
/// ```
/// use physvec::nvme::{decode_prp, DecodeOptions, MemoryPageSize};
/// use physvec::mem::SliceMemory;
/// use physvec::{DmaAddr, DmaArray, DmaRange};
/// // PRP2 points at a list with two entries at 0x80000.
/// let mut list = Vec::new();
/// for e in [0x12000u64, 0x13000] { list.extend_from_slice(&e.to_le_bytes()); }
/// let mem = SliceMemory::new(DmaAddr::new(0x80000), &list);
/// let mut out = DmaArray::<4>::new();
/// decode_prp(DmaAddr::new(0x10800), DmaAddr::new(0x80000), 0x2800, MemoryPageSize::SIZE_4K, &mem, &mut out, &DecodeOptions::default())?;
/// assert_eq!(out.as_slice(), [DmaRange::new(0x10800, 0x800), DmaRange::new(0x12000, 0x2000)]);
/// # Ok::<(), physvec::nvme::DecodeError>(())
/// ```
pub fn decode_prp<M, K>(
    prp1: DmaAddr,
    prp2: DmaAddr,
    len: u64,
    mps: MemoryPageSize,
    mem: &M,
    out: &mut K,
    opts: &DecodeOptions,
) -> Result<DecodeSummary, DecodeError>
where
    M: MemoryReader + ?Sized,
    K: RangeSink<Dma>,
{
    let mut out = crate::sink::Coalescing::new(out);
    let r = decode_prp_into(
        prp1.as_u64(),
        prp2.as_u64(),
        len,
        mps,
        mem,
        &mut RangeEmit { out: &mut out },
        opts,
    );
    if r.is_err() {
        out.rollback();
    }
    r
}

pub(crate) fn decode_prp_into<M, E>(
    prp1: u64,
    prp2: u64,
    len: u64,
    mps: MemoryPageSize,
    mem: &M,
    out: &mut E,
    opts: &DecodeOptions,
) -> Result<DecodeSummary, DecodeError>
where
    M: MemoryReader + ?Sized,
    E: Emit,
{
    let mut sum = DecodeSummary::default();
    if len == 0 {
        return Ok(sum);
    }
    if len > opts.max_transfer_len {
        return Err(DecodeError::TransferTooLarge {
            len,
            max: opts.max_transfer_len,
        });
    }
    let ps = mps.get();
    let mask = mps.mask();
    if !opts.qemu_compat && prp1 & 3 != 0 {
        return Err(DecodeError::PrpOffsetInvalid {
            entry: DmaAddr::new(prp1),
            at: None,
        });
    }
    // `prp1 & mask <= mask < ps`, so the subtraction cannot underflow.
    #[allow(clippy::arithmetic_side_effects)]
    let first = len.min(ps - (prp1 & mask));
    let bad = |entry, at| DecodeError::PrpOffsetInvalid {
        entry: DmaAddr::new(entry),
        at,
    };
    out.emit(data(prp1, first).ok_or(bad(prp1, None))?)?;
    // `first = len.min(..) <= len`.
    #[allow(clippy::arithmetic_side_effects)]
    let mut rem = len - first;
    if rem == 0 {
        return Ok(sum);
    }
    if rem <= ps {
        if prp2 & mask != 0 {
            return Err(bad(prp2, None));
        }
        out.emit(data(prp2, rem).ok_or(bad(prp2, None))?)?;
        return Ok(sum);
    }
    if !opts.qemu_compat && prp2 & 7 != 0 {
        return Err(bad(prp2, None));
    }
    let mut list = prp2;
    // `list & mask < ps`; the divisor is a non-zero constant.
    #[allow(clippy::arithmetic_side_effects)]
    let mut nents = (ps - (list & mask)) / 8;
    if nents == 0 {
        // A list pointer in the last 7 bytes of a page has no whole slot.
        return Err(bad(prp2, None));
    }
    let mut i: u64 = 0;
    sum.segments = 1;
    while rem > 0 {
        // `i < nents <= (ps - (list & mask)) / 8`, so `list + 8 * i` stays inside list's
        // page, which ends at or below 2^64.
        #[allow(clippy::arithmetic_side_effects)]
        let at = list + 8 * i;
        if sum.descriptors_read >= opts.max_descriptors {
            return Err(DecodeError::LimitExceeded {
                limit: opts.max_descriptors,
            });
        }
        let entry =
            mem.read_u64_le(DmaAddr::new(at))
                .map_err(|e| DecodeError::MemoryUnreadable {
                    addr: e.addr,
                    len: e.len,
                })?;
        // `descriptors_read < max_descriptors <= u64::MAX` by the check above.
        #[allow(clippy::arithmetic_side_effects)]
        {
            sum.descriptors_read += 1;
        }
        if entry & mask != 0 {
            return Err(bad(entry, Some(DmaAddr::new(at))));
        }
        // `i < nents <= ps / 8`, so `i + 1` cannot overflow.
        #[allow(clippy::arithmetic_side_effects)]
        let last_slot = i + 1 == nents;
        if last_slot && rem > ps {
            list = entry;
            i = 0;
            nents = ps / 8;
            // Follows after the first are `ps / 8 >= 512` counted reads apart, so
            // `segments <= 2 + descriptors_read / 512 < u64::MAX`.
            #[allow(clippy::arithmetic_side_effects)]
            {
                sum.segments += 1;
            }
            continue;
        }
        let n = rem.min(ps);
        out.emit(data(entry, n).ok_or(bad(entry, Some(DmaAddr::new(at))))?)?;
        // `n = rem.min(ps) <= rem`; `i < nents <= ps / 8 < u64::MAX`.
        #[allow(clippy::arithmetic_side_effects)]
        {
            rem -= n;
            i += 1;
        }
    }
    Ok(sum)
}

#[cfg(test)]
#[allow(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]
mod tests {
    use super::*;
    use crate::mem::SparseMemory;
    use crate::range::DmaRange;
    use std::vec::Vec;

    fn mem(entries: &[(u64, &[u64])]) -> SparseMemory {
        let mut m = SparseMemory::new();
        for (a, e) in entries {
            m.add(
                crate::DmaAddr::new(*a),
                e.iter().flat_map(|x| x.to_le_bytes()).collect(),
            );
        }
        m
    }

    fn run(
        prp1: u64,
        prp2: u64,
        len: u64,
        m: &SparseMemory,
        compat: bool,
    ) -> Result<Vec<DmaRange>, DecodeError> {
        let mut out = Vec::new();
        let o = DecodeOptions::default().with_qemu_compat(compat);
        decode_prp(
            crate::DmaAddr::new(prp1),
            crate::DmaAddr::new(prp2),
            len,
            MemoryPageSize::SIZE_4K,
            m,
            &mut out,
            &o,
        )
        .map(|_| out)
    }

    #[test]
    fn qemu_observed_cases() {
        let none = SparseMemory::new();
        assert!(run(0x10000, 0, 0x1000, &none, false).is_ok());
        assert_eq!(
            run(0x10800, 0x11000, 0x1000, &none, false).unwrap(),
            [DmaRange::new(0x10800, 0x1000)]
        );
        // PRP1 off 0x802: QEMU accepts, strict rejects.
        assert_eq!(
            run(0x10802, 0x11000, 0x1000, &none, false)
                .unwrap_err()
                .nvme_status()
                .raw(),
            0x13
        );
        assert!(run(0x10802, 0x11000, 0x1000, &none, true).is_ok());
        // PRP2 data with offset.
        assert_eq!(
            run(0x10000, 0x11200, 0x2000, &none, false)
                .unwrap_err()
                .nvme_status()
                .raw(),
            0x13
        );
        // List pointer with offset 0x10.
        let m = mem(&[(0x80010, &[0x20000, 0x30000, 0x40000])]);
        assert_eq!(
            run(0x10000, 0x80010, 0x4000, &m, false).unwrap(),
            [
                DmaRange::new(0x10000, 0x1000),
                DmaRange::new(0x20000, 0x1000),
                DmaRange::new(0x30000, 0x1000),
                DmaRange::new(0x40000, 0x1000)
            ]
        );
        // List entry with offset.
        let m = mem(&[(0x80000, &[0x20000, 0x30100])]);
        let e = run(0x10000, 0x80000, 0x3000, &m, false).unwrap_err();
        assert_eq!(
            (e.nvme_status().raw(), e.at()),
            (0x13, Some(crate::DmaAddr::new(0x80008)))
        );
        // Chained: PRP2 = list + 0xff0 (2 slots), slot 1 → next page.
        let m = mem(&[
            (0x80ff0, &[0x20000, 0x90000]),
            (0x90000, &[0x21000, 0x22000]),
        ]);
        assert_eq!(
            run(0x10000, 0x80ff0, 0x4000, &m, false).unwrap(),
            [
                DmaRange::new(0x10000, 0x1000),
                DmaRange::new(0x20000, 0x3000)
            ]
        );
        // Chain pointer with offset 8.
        let m = mem(&[(0x80ff0, &[0x20000, 0x90008])]);
        assert_eq!(
            run(0x10000, 0x80ff0, 0x4000, &m, false).unwrap_err().at(),
            Some(crate::DmaAddr::new(0x80ff8))
        );
        // Unreadable list.
        let e = run(0x10000, 0x80000, 0x3000, &none, false).unwrap_err();
        assert_eq!(
            (e.kind(), e.nvme_status().raw()),
            ("memory_unreadable", 0x04)
        );
    }

    #[test]
    fn self_referencing_chain_is_bounded() {
        // A list page whose last slot points at itself: every pass yields 511 data
        // entries; the budget stops it.
        let mut page = [0x20000u64; 512];
        page[511] = 0x80000;
        let m = mem(&[(0x80000, &page)]);
        let mut out = Vec::new();
        let o = DecodeOptions::default().with_max_descriptors(4096);
        let e = decode_prp(
            crate::DmaAddr::new(0x10000),
            crate::DmaAddr::new(0x80000),
            u64::MAX,
            MemoryPageSize::SIZE_4K,
            &m,
            &mut out,
            &o,
        )
        .unwrap_err();
        assert_eq!(e, DecodeError::LimitExceeded { limit: 4096 });
        assert!(out.is_empty());
    }
}
