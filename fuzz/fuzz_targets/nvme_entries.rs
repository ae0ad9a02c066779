//! Submission and completion queue entries from hostile bytes, as a controller model
//! reads a guest's queue and a driver reads the completion queue. Checks: no panic;
//! `lba_range` agrees with CDW10–12; `Display`/`Debug` are one line; a completion's
//! fields round-trip through `CompletionQueueEntry::new`; every byte string is an entry.
#![no_main]

use libfuzzer_sys::fuzz_target;
use physvec::nvme::{CompletionQueueEntry, LbaRange, SubmissionQueueEntry};

fuzz_target!(|data: &[u8]| {
    let mut sq = [0u8; 64];
    let mut cq = [0u8; 16];
    for (d, s) in sq.iter_mut().chain(cq.iter_mut()).zip(data) {
        *d = *s;
    }
    let sqe = SubmissionQueueEntry::from_bytes(sq);
    let slba = u64::from(sqe.cdw10()) | u64::from(sqe.cdw11()) << 32;
    let blocks = (sqe.cdw12() & 0xffff) + 1;
    assert_eq!(sqe.lba_range(), LbaRange::try_new(slba, blocks).ok());
    if let Some(r) = sqe.lba_range() {
        assert_eq!((r.slba(), r.nlb()), (slba, (blocks - 1) as u16));
    }
    let _ = sqe.data_pointer();
    assert!(!sqe.to_string().contains('\n'));
    assert!(!format!("{sqe:?}").contains('\n'));

    let cqe = CompletionQueueEntry::from_bytes(cq);
    assert_eq!(cqe.as_bytes(), &cq);
    assert!(!cqe.to_string().contains('\n'));
    let again = CompletionQueueEntry::new(
        cqe.cid(),
        cqe.sq_id(),
        cqe.sq_head(),
        cqe.status(),
        cqe.phase(),
    )
    .with_dw0(cqe.dw0());
    assert_eq!(&again.as_bytes()[..4], &cq[..4]);
    assert_eq!(&again.as_bytes()[8..], &cq[8..]);
    assert_eq!(
        cqe.status().nvme_status(),
        physvec::nvme::NvmeStatus::new(cqe.status().sct(), cqe.status().sc())
    );
});
