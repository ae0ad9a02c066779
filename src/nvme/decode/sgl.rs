//! SGL decoder (device side): SGL1 and the segments it chains → the transfer as data
//! ranges and bit buckets, or the status a controller returns (NVMe Base 1.4 §4.4).
//!
//! Checks, in the order a segment is processed (strict mode):
//! - Segment / Last Segment descriptor: length a non-zero multiple of 16, address qword
//!   aligned, segment not wrapping past 2^64 → else 0Dh; a segment visited twice → 0Dh
//!   ([`DecodeError::LoopDetected`], Brent's cycle detection in O(1) memory).
//! - Each descriptor of a segment, in order: a Segment / Last Segment descriptor that is
//!   not last → 0Eh; one inside a segment reached through Last Segment → 0Dh; a type the
//!   controller does not support (SGLS), a reserved type, or a data subtype other than
//!   Address (Keyed: Address or Invalidate Key) → 11h; dword granularity (SGLS 10b) →
//!   1Dh; a block wrapping past 2^64 → 0Fh; zero-length blocks are skipped.
//! - Length: data past the transfer length → 0Fh unless SGLS bit 18; too little → 0Fh.
//!
//! The segment holding SGL1's target is read one descriptor at a time (16-byte reads),
//! so a huge segment length costs nothing until its descriptors are read, and the
//! descriptor budget stops it. A segment reached through a Segment descriptor may end in
//! a data descriptor: it is then the last segment (the specification defines the last
//! segment as one without segment descriptors; QEMU agrees).
//!
//! QEMU's defect (module docs of [`crate::nvme`]) is not reproduced: whether the current
//! segment may chain is decided by the type of the descriptor that pointed at it, which
//! this decoder keeps in its own variable.

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
use super::output::{data, with_items, Emit, SglItemSink};
use crate::addr::DmaAddr;
use crate::mem::MemoryReader;
use crate::nvme::descriptor::{SglDescriptor, SglDescriptorType, SglItem};
use crate::nvme::descriptor::{SGL_SUBTYPE_ADDRESS, SGL_SUBTYPE_INVALIDATE_KEY};

/// Decodes SGL1 for a transfer of `len` bytes, reading segments through `mem`, and
/// appends the transfer to `out` as [`SglItem`]s (adjacent contiguous data merged,
/// adjacent bit buckets merged).
///
/// A zero length decodes to nothing without looking at SGL1.
///
/// # Errors
/// [`DecodeError`] carrying the controller's status (0Dh, 0Eh, 0Fh, 11h, 1Dh, 04h for an
/// unreadable segment, 02h, 06h); see the module documentation for the order of checks.
/// On error `out` is left exactly as it was found.
///
/// # Examples
/// ```
/// use physvec::nvme::{decode_sgl, DecodeOptions, SglDescriptor, SglItem};
/// use physvec::mem::SliceMemory;
/// use physvec::{DmaAddr, DmaRange};
/// // DPTR = Last Segment → [Data Block 0x200 @ 0x10000, Bit Bucket 0x100]
/// let seg = [SglDescriptor::data_block(DmaAddr::new(0x10000), 0x200), SglDescriptor::bit_bucket(0x100)];
/// let mem = SliceMemory::new(DmaAddr::new(0x80000), bytemuck::cast_slice(&seg));
/// let mut out = Vec::new();
/// decode_sgl(SglDescriptor::last_segment(DmaAddr::new(0x80000), 32), 0x300, &mem, &mut out,
///            &DecodeOptions::default())?;
/// assert_eq!(out, [SglItem::Data(DmaRange::new(0x10000, 0x200)), SglItem::BitBucket(0x100)]);
/// # Ok::<(), physvec::nvme::DecodeError>(())
/// ```
pub fn decode_sgl<M, K>(
    sgl1: SglDescriptor,
    len: u64,
    mem: &M,
    out: &mut K,
    opts: &DecodeOptions,
) -> Result<DecodeSummary, DecodeError>
where
    M: MemoryReader + ?Sized,
    K: SglItemSink,
{
    with_items(out, |emit| decode_sgl_into(sgl1, len, mem, emit, opts))
}

struct State<'o, E> {
    remaining: u64,
    opts: &'o DecodeOptions,
    out: &'o mut E,
    sum: DecodeSummary,
}

impl<E: Emit> State<'_, E> {
    fn read<M: MemoryReader + ?Sized>(
        &mut self,
        mem: &M,
        at: u64,
    ) -> Result<SglDescriptor, DecodeError> {
        if self.sum.descriptors_read >= self.opts.max_descriptors {
            return Err(DecodeError::LimitExceeded {
                limit: self.opts.max_descriptors,
            });
        }
        let mut b = [0u8; 16];
        mem.read(DmaAddr::new(at), &mut b)
            .map_err(|e| DecodeError::MemoryUnreadable {
                addr: e.addr,
                len: e.len,
            })?;
        // `descriptors_read < max_descriptors <= u64::MAX` by the check above.
        #[allow(clippy::arithmetic_side_effects)]
        {
            self.sum.descriptors_read += 1;
        }
        Ok(SglDescriptor::from_bytes(b))
    }

    /// A descriptor that is not Segment / Last Segment.
    fn data_descriptor(&mut self, d: SglDescriptor, at: Option<u64>) -> Result<(), DecodeError> {
        let at = at.map(DmaAddr::new);
        let caps = self.opts.sgls;
        let compat = self.opts.qemu_compat;
        let type_invalid = DecodeError::DescriptorTypeInvalid {
            at,
            identifier: d.identifier(),
        };
        let (len, is_data) = match d.descriptor_type() {
            SglDescriptorType::DataBlock => {
                if !compat && d.subtype() != SGL_SUBTYPE_ADDRESS {
                    return Err(type_invalid);
                }
                (d.length() as u64, true)
            }
            SglDescriptorType::KeyedDataBlock => {
                if !caps.keyed()
                    || (!compat
                        && !matches!(
                            d.subtype(),
                            SGL_SUBTYPE_ADDRESS | SGL_SUBTYPE_INVALIDATE_KEY
                        ))
                {
                    return Err(type_invalid);
                }
                (d.keyed_length() as u64, true)
            }
            SglDescriptorType::BitBucket => {
                if !caps.bit_bucket() || (!compat && d.subtype() != SGL_SUBTYPE_ADDRESS) {
                    return Err(type_invalid);
                }
                (d.length() as u64, false)
            }
            _ => return Err(type_invalid),
        };
        if len == 0 {
            return Ok(());
        }
        if is_data {
            if caps.dword_aligned() && (d.address().as_u64() | len) & 3 != 0 {
                return Err(DecodeError::GranularityInvalid { at });
            }
            if data(d.address().as_u64(), len).is_none() {
                return Err(DecodeError::SglLengthInvalid {
                    at,
                    uncovered: self.remaining,
                });
            }
        }
        if self.remaining == 0 {
            if caps.excess_length() {
                return Ok(());
            }
            return Err(DecodeError::SglLengthInvalid { at, uncovered: 0 });
        }
        let take = len.min(self.remaining);
        if take < len && !caps.excess_length() && !compat {
            return Err(DecodeError::SglLengthInvalid { at, uncovered: 0 });
        }
        let item = if is_data {
            data(d.address().as_u64(), take).ok_or(DecodeError::SglLengthInvalid {
                at,
                uncovered: self.remaining,
            })?
        } else {
            SglItem::BitBucket(take)
        };
        self.out.emit(item)?;
        // `take = len.min(self.remaining) <= self.remaining`.
        #[allow(clippy::arithmetic_side_effects)]
        {
            self.remaining -= take;
        }
        Ok(())
    }
}

/// Identity of a segment for cycle detection: what the next step depends on.
fn key(d: SglDescriptor) -> (u64, u32, u8) {
    (d.address().as_u64(), d.length(), d.identifier() >> 4)
}

pub(crate) fn decode_sgl_into<M, E>(
    sgl1: SglDescriptor,
    len: u64,
    mem: &M,
    out: &mut E,
    opts: &DecodeOptions,
) -> Result<DecodeSummary, DecodeError>
where
    M: MemoryReader + ?Sized,
    E: Emit,
{
    if len == 0 {
        return Ok(DecodeSummary::default());
    }
    if len > opts.max_transfer_len {
        return Err(DecodeError::TransferTooLarge {
            len,
            max: opts.max_transfer_len,
        });
    }
    if !opts.sgls.supported() {
        return Err(DecodeError::SglNotSupported);
    }
    let mut st = State {
        remaining: len,
        opts,
        out,
        sum: DecodeSummary::default(),
    };
    let compat = opts.qemu_compat;
    if !sgl1.descriptor_type().is_segment() {
        if compat && sgl1.descriptor_type() != SglDescriptorType::DataBlock {
            return Err(DecodeError::InvalidSegmentDescriptor { at: None });
        }
        st.data_descriptor(sgl1, None)?;
        return finish(st);
    }

    let mut cur = sgl1;
    let mut cur_at: Option<u64> = None;
    // Brent: `saved` is the tortoise, `cur` the hare.
    let mut saved = key(sgl1);
    let (mut power, mut lam) = (1u64, 1u64);
    loop {
        let is_last = cur.descriptor_type() == SglDescriptorType::LastSegment;
        let seg_len = cur.length() as u64;
        let addr = cur.address().as_u64();
        let bad_segment = DecodeError::InvalidSegmentDescriptor {
            at: cur_at.map(DmaAddr::new),
        };
        if seg_len == 0 || seg_len % 16 != 0 {
            return Err(bad_segment);
        }
        if !compat && addr & 7 != 0 {
            return Err(bad_segment);
        }
        // `seg_len != 0` was checked just above.
        #[allow(clippy::arithmetic_side_effects)]
        let seg_end = addr.checked_add(seg_len - 1);
        if seg_end.is_none() {
            return Err(bad_segment);
        }
        let n = seg_len / 16;
        // Each earlier segment read >= 1 descriptor counted in `descriptors_read`, so
        // before this increment `segments <= descriptors_read`; u64::MAX needs 2^64 reads.
        #[allow(clippy::arithmetic_side_effects)]
        {
            st.sum.segments += 1;
        }
        if compat {
            // QEMU looks at the segment's last descriptor before the others.
            // `n >= 1` (`seg_len` is a non-zero multiple of 16) and
            // `addr + 16 * (n - 1) = addr + seg_len - 16 <= addr + seg_len - 1`, checked.
            #[allow(clippy::arithmetic_side_effects)]
            let last_at = addr + 16 * (n - 1);
            let t = st.read(mem, last_at)?.descriptor_type();
            if t != SglDescriptorType::DataBlock && (is_last || !t.is_segment()) {
                return Err(DecodeError::InvalidSegmentDescriptor {
                    at: Some(DmaAddr::new(last_at)),
                });
            }
        }
        let mut next = None;
        for i in 0..n {
            // `i < n`, so `addr + 16 * i <= addr + seg_len - 16`, checked above.
            #[allow(clippy::arithmetic_side_effects)]
            let at = addr + 16 * i;
            let d = st.read(mem, at)?;
            if d.descriptor_type().is_segment() {
                // `i < n <= u32::MAX / 16`.
                #[allow(clippy::arithmetic_side_effects)]
                let not_last = i + 1 != n;
                if not_last {
                    return Err(DecodeError::InvalidDescriptorCount {
                        at: DmaAddr::new(at),
                    });
                }
                if is_last {
                    return Err(DecodeError::InvalidSegmentDescriptor {
                        at: Some(DmaAddr::new(at)),
                    });
                }
                next = Some((d, at));
            } else {
                st.data_descriptor(d, Some(at))?;
            }
        }
        let Some((d, at)) = next else { break };
        if key(d) == saved {
            return Err(DecodeError::LoopDetected {
                at: DmaAddr::new(at),
            });
        }
        if power == lam {
            saved = key(d);
            power = power.saturating_mul(2);
            lam = 0;
        }
        // `lam <= loop iterations <= descriptors_read` (each iteration reads >= 1
        // descriptor); reaching u64::MAX would take 2^64 reads.
        #[allow(clippy::arithmetic_side_effects)]
        {
            lam += 1;
        }
        cur = d;
        cur_at = Some(at);
    }
    finish(st)
}

fn finish<E>(st: State<'_, E>) -> Result<DecodeSummary, DecodeError> {
    if st.remaining > 0 {
        return Err(DecodeError::SglLengthInvalid {
            at: None,
            uncovered: st.remaining,
        });
    }
    Ok(st.sum)
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
    use crate::addr::DmaAddr;
    use crate::mem::SparseMemory;
    use crate::nvme::SglCapabilities;
    use crate::range::DmaRange;
    use std::vec::Vec;

    fn db(a: u64, l: u32) -> SglDescriptor {
        SglDescriptor::data_block(DmaAddr::new(a), l)
    }
    fn seg(a: u64, n: u32) -> SglDescriptor {
        SglDescriptor::segment(DmaAddr::new(a), n * 16)
    }
    fn last(a: u64, n: u32) -> SglDescriptor {
        SglDescriptor::last_segment(DmaAddr::new(a), n * 16)
    }
    fn mem(segs: &[(u64, &[SglDescriptor])]) -> SparseMemory {
        let mut m = SparseMemory::new();
        for (a, d) in segs {
            m.add(crate::DmaAddr::new(*a), bytemuck::cast_slice(d).to_vec());
        }
        m
    }
    /// Status as QEMU (SGLS = 1) would see it, strict and compat.
    fn status(sgl1: SglDescriptor, len: u64, m: &SparseMemory, compat: bool) -> u16 {
        let o = DecodeOptions::default()
            .with_sgls(SglCapabilities::from_raw(1))
            .with_qemu_compat(compat);
        let mut out: Vec<SglItem> = Vec::new();
        match decode_sgl(sgl1, len, m, &mut out, &o) {
            Ok(_) => 0,
            Err(e) => e.nvme_status().raw(),
        }
    }
    fn both(sgl1: SglDescriptor, len: u64, m: &SparseMemory) -> (u16, u16) {
        (status(sgl1, len, m, false), status(sgl1, len, m, true))
    }

    #[test]
    fn qemu_observed_table() {
        let none = SparseMemory::new();
        assert_eq!(both(db(0x10000, 0x1000), 0x1000, &none), (0, 0));
        assert_eq!(both(db(0x10801, 0x1000), 0x1000, &none), (0, 0));
        assert_eq!(both(db(0x10000, 0x800), 0x1000, &none), (0x0f, 0x0f));
        // Longer single block: QEMU accepts; strict (SGLS bit 18 clear) rejects.
        assert_eq!(both(db(0x10000, 0x2000), 0x1000, &none), (0x0f, 0));
        let m = mem(&[(
            0x80000,
            &[db(0x10001, 0x100), db(0x20003, 0x200), db(0x30005, 0x300)],
        )]);
        assert_eq!(both(last(0x80000, 3), 0x600, &m), (0, 0));
        // Segment → [DB, LastSeg] → [DB, DB]
        let m = mem(&[
            (0x80000, &[db(0x10000, 0x200), last(0x90000, 2)]),
            (0x90000, &[db(0x20000, 0x200), db(0x30000, 0x200)]),
        ]);
        assert_eq!(both(seg(0x80000, 2), 0x600, &m), (0, 0));
        // Same chain, DPTR typed Last Segment.
        assert_eq!(both(last(0x80000, 2), 0x600, &m), (0x0d, 0x0d));
        // Segment len 24 / 0.
        let bad = SglDescriptor::segment(DmaAddr::new(0x80000), 24);
        assert_eq!(both(bad, 0x600, &m), (0x0d, 0x0d));
        assert_eq!(both(seg(0x80000, 0), 0x600, &m), (0x0d, 0x0d));
        // Segment descriptor in the middle of a segment.
        let m = mem(&[
            (0x80000, &[last(0x90000, 1), db(0x20000, 0x200)]),
            (0x90000, &[db(0, 0x200)]),
        ]);
        assert_eq!(both(last(0x80000, 2), 0x400, &m), (0x0e, 0x0e));
        // Extra Data Block after the length is met.
        let m = mem(&[(0x80000, &[db(0x10000, 0x200), db(0x20000, 0x200)])]);
        assert_eq!(both(last(0x80000, 2), 0x200, &m), (0x0f, 0x0f));
        // LastSeg [DB, BitBucket]: QEMU 0Dh (checks the last descriptor first); strict 11h
        // (SGLS = 1 has no bit bucket).
        let m = mem(&[(
            0x80000,
            &[db(0x10000, 0x200), SglDescriptor::bit_bucket(0x200)],
        )]);
        assert_eq!(both(last(0x80000, 2), 0x400, &m), (0x11, 0x0d));
        // [BitBucket, DB] / [Keyed, DB] → 11h.
        let m = mem(&[(
            0x80000,
            &[SglDescriptor::bit_bucket(0x200), db(0x10000, 0x200)],
        )]);
        assert_eq!(both(last(0x80000, 2), 0x400, &m), (0x11, 0x11));
        let k = SglDescriptor::keyed_data_block(DmaAddr::new(0x10000), 0x200, 1).unwrap();
        let m = mem(&[(0x80000, &[k, db(0x10000, 0x200)])]);
        assert_eq!(both(last(0x80000, 2), 0x400, &m), (0x11, 0x11));
        // Keyed or vendor type in DPTR.
        assert_eq!(both(k, 0x200, &none), (0x11, 0x0d));
        let vendor = db(0x10000, 0x200).with_subtype(0).to_bytes();
        let mut v = vendor;
        v[15] = 0xf0;
        assert_eq!(
            both(SglDescriptor::from_bytes(v), 0x200, &none),
            (0x11, 0x0d)
        );
        // Data Block subtype 1: QEMU ignores it.
        assert_eq!(
            both(db(0x10000, 0x200).with_subtype(1), 0x200, &none),
            (0x11, 0)
        );
        // Zero-length DB inside a segment is skipped.
        let m = mem(&[(0x80000, &[db(0x10000, 0), db(0x20000, 0x200)])]);
        assert_eq!(both(last(0x80000, 2), 0x200, &m), (0, 0));
        // A segment containing only a Last Segment descriptor.
        let m = mem(&[
            (0x80000, &[last(0x90000, 1)]),
            (0x90000, &[db(0x20000, 0x200)]),
        ]);
        assert_eq!(both(seg(0x80000, 1), 0x200, &m), (0, 0));
        // Unreadable segment.
        assert_eq!(both(last(0xa0000, 1), 0x200, &none), (0x04, 0x04));
    }

    #[test]
    fn qemu_defect_chain_is_valid_here() {
        // DPTR = Segment → A [DB, Segment→B], B [DB, LastSeg→C], C [DB, DB]: valid; QEMU 0Dh.
        let m = mem(&[
            (0xa000, &[db(0x10000, 0x100), seg(0xb000, 2)]),
            (0xb000, &[db(0x20000, 0x100), last(0xc000, 2)]),
            (0xc000, &[db(0x30000, 0x100), db(0x40000, 0x100)]),
        ]);
        assert_eq!(both(seg(0xa000, 2), 0x400, &m), (0, 0));
        let mut out: Vec<SglItem> = Vec::new();
        decode_sgl(
            seg(0xa000, 2),
            0x400,
            &m,
            &mut out,
            &DecodeOptions::default(),
        )
        .unwrap();
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn loops_are_detected() {
        // Self loop without data.
        let m = mem(&[(0xa000, &[seg(0xa000, 1)])]);
        let mut out: Vec<SglItem> = Vec::new();
        let e = decode_sgl(
            seg(0xa000, 1),
            0x200,
            &m,
            &mut out,
            &DecodeOptions::default(),
        )
        .unwrap_err();
        assert_eq!((e.kind(), e.nvme_status().raw()), ("loop_detected", 0x0d));
        // Two-page cycle with data.
        let m = mem(&[
            (0xa000, &[db(0x10000, 0x10), seg(0xb000, 2)]),
            (0xb000, &[db(0x20000, 0x10), seg(0xa000, 2)]),
        ]);
        let e = decode_sgl(
            seg(0xa000, 2),
            u64::MAX,
            &m,
            &mut out,
            &DecodeOptions::default(),
        )
        .unwrap_err();
        assert_eq!(e.kind(), "loop_detected");
    }

    #[test]
    fn bit_bucket_and_keyed_output() {
        let k = SglDescriptor::keyed_data_block(DmaAddr::new(0x10000), 0x200, 9).unwrap();
        let m = mem(&[(
            0x80000,
            &[
                k,
                SglDescriptor::bit_bucket(0x10),
                SglDescriptor::bit_bucket(0x20),
                db(0x10200, 0x100),
            ],
        )]);
        let mut out: Vec<SglItem> = Vec::new();
        decode_sgl(
            last(0x80000, 4),
            0x330,
            &m,
            &mut out,
            &DecodeOptions::default(),
        )
        .unwrap();
        assert_eq!(
            out,
            [
                SglItem::Data(DmaRange::new(0x10000, 0x200)),
                SglItem::BitBucket(0x30),
                SglItem::Data(DmaRange::new(0x10200, 0x100)),
            ]
        );
    }
}
