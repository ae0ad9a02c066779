//! What the device-side decoders share: [`DecodeOptions`], [`DecodeError`] (each with
//! the NVMe status a controller returns), [`DecodeSummary`], the output sinks
//! ([`SglItemSink`], [`DataOnly`]) and [`decode_command`], which dispatches on PSDT.
//!
//! # Bounds on untrusted input
//! A decoder reads at most [`DecodeOptions::max_descriptors`] PRP entries or SGL
//! descriptors (8 or 16 bytes each, one read per entry) and pushes at most one output
//! item per entry read (plus one for PRP1/PRP2 or SGL1); it keeps O(1) state of its own
//! (no allocation). PRP list pages followed and SGL segments followed are each bounded by
//! the entries read. SGL segment chains are checked for cycles with Brent's algorithm in
//! O(1) memory.

#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo
)]

mod error;
mod options;
mod output;
mod prp;
mod sgl;

pub use error::DecodeError;
pub use options::{DecodeOptions, DecodeSummary};
pub use output::{DataOnly, DataOnlyMark, SglItemSink};
pub use prp::decode_prp;
pub use sgl::decode_sgl;

use super::cmd::{Psdt, SubmissionQueueEntry};
use super::descriptor::SglDescriptor;
use super::page::MemoryPageSize;
use crate::mem::MemoryReader;
use output::with_items;

/// Decodes the data pointer of `sqe` for a transfer of `len` bytes: PRPs when PSDT is
/// 00b (with memory page size `mps`), SGL1 when it is 01b or 10b.
///
/// # Errors
/// [`DecodeError::InvalidPsdt`] for PSDT 11b; otherwise as [`super::decode_prp`] and
/// [`super::decode_sgl`]. On error `out` is left exactly as it was found.
///
/// ```
/// use physvec::nvme::{decode_command, DecodeOptions, MemoryPageSize, SglItem, SubmissionQueueEntry, DataPointer};
/// use physvec::mem::SliceMemory;
/// use physvec::DmaRange;
/// let mut sqe = SubmissionQueueEntry::new(0x02);
/// sqe.set_data_pointer(DataPointer::Prp { prp1: physvec::DmaAddr::new(0x10800), prp2: physvec::DmaAddr::new(0x11000) });
/// let mut out = Vec::new();
/// decode_command(&sqe, 0x1000, MemoryPageSize::SIZE_4K, &SliceMemory::new(physvec::DmaAddr::new(0), &[]), &mut out,
///                &DecodeOptions::default())?;
/// assert_eq!(out, [SglItem::Data(DmaRange::new(0x10800, 0x1000))]);
/// # Ok::<(), physvec::nvme::DecodeError>(())
/// ```
pub fn decode_command<M, K>(
    sqe: &SubmissionQueueEntry,
    len: u64,
    mps: MemoryPageSize,
    mem: &M,
    out: &mut K,
    opts: &DecodeOptions,
) -> Result<DecodeSummary, DecodeError>
where
    M: MemoryReader + ?Sized,
    K: SglItemSink,
{
    let dptr = sqe.dptr();
    with_items(out, |emit| match sqe.psdt() {
        Psdt::Reserved => Err(DecodeError::InvalidPsdt),
        Psdt::Prp => {
            let mut a = [0u8; 8];
            let mut b = [0u8; 8];
            a.copy_from_slice(&dptr[..8]);
            b.copy_from_slice(&dptr[8..]);
            prp::decode_prp_into(
                u64::from_le_bytes(a),
                u64::from_le_bytes(b),
                len,
                mps,
                mem,
                emit,
                opts,
            )
        }
        _ => sgl::decode_sgl_into(SglDescriptor::from_bytes(dptr), len, mem, emit, opts),
    })
}

#[cfg(all(test, feature = "alloc"))]
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
    use crate::mem::SliceMemory;
    use crate::nvme::{DataPointer, SglItem};
    use crate::{DmaArray, DmaRange};

    /// Every decoder leaves a reused output exactly as it found it on error: no items of
    /// a failed command mixed with those of earlier ones.
    #[test]
    fn failed_decodes_leave_the_output_untouched() {
        let prior = SglItem::Data(DmaRange::new(0x9000, 0x10));
        // PRP2 is a list pointer whose second entry is not page aligned.
        let mut list = Vec::new();
        for e in [0x12000u64, 0x13004] {
            list.extend_from_slice(&e.to_le_bytes());
        }
        let mem = SliceMemory::new(crate::DmaAddr::new(0x80000), &list);
        let mut sqe = SubmissionQueueEntry::new(0x02);
        sqe.set_data_pointer(DataPointer::Prp {
            prp1: crate::DmaAddr::new(0x10800),
            prp2: crate::DmaAddr::new(0x80000),
        });
        let opts = DecodeOptions::default();
        let mps = MemoryPageSize::SIZE_4K;

        let mut items = vec![prior];
        let e = decode_command(&sqe, 0x2800, mps, &mem, &mut items, &opts).unwrap_err();
        assert_eq!(e.kind(), "invalid_prp_offset");
        assert_eq!(items, [prior]);

        let mut ranges = DmaArray::<8>::new();
        ranges.try_push(DmaRange::new(0x9000, 0x10)).unwrap();
        assert!(decode_prp(
            crate::DmaAddr::new(0x10800),
            crate::DmaAddr::new(0x80000),
            0x2800,
            mps,
            &mem,
            &mut ranges,
            &opts
        )
        .is_err());
        assert_eq!(ranges.as_slice(), [DmaRange::new(0x9000, 0x10)]);

        // An SGL whose segment is unreadable after a data block in DPTR... a Last
        // Segment pointing at memory that is not there.
        let sgl = crate::nvme::SglDescriptor::last_segment(crate::DmaAddr::new(0x7_0000), 32);
        let mut items = vec![prior];
        assert!(decode_sgl(sgl, 0x100, &mem, &mut items, &opts).is_err());
        assert_eq!(items, [prior]);
        let mut data = DmaArray::<4>::new();
        let mut only = DataOnly::new(&mut data);
        only.push_item(prior).unwrap();
        assert!(decode_sgl(sgl, 0x100, &mem, &mut only, &opts).is_err());
        assert_eq!(only.last_item(), Some(prior));
        assert_eq!(data.as_slice(), [DmaRange::new(0x9000, 0x10)]);
    }
}
